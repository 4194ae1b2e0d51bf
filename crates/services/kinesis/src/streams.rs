//! Stream lifecycle, description, shards, retention and tags.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, ShardMeta, Stream, StreamKey, StreamMeta};
use crate::{Kinesis, invalid, not_found, store_error, stream_key};

/// AWS: an on-demand stream starts with 4 shards.
const ON_DEMAND_SHARDS: usize = 4;
const DEFAULT_RETENTION_HOURS: u32 = 24;
const MAX_RETENTION_HOURS: u64 = 8760;
/// AWS's default shard quota per account and region (us-east-1: 500; 200 elsewhere).
const MAX_SHARDS: u64 = 500;
const MAX_TAGS: usize = 50;

pub(crate) async fn create_stream(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let on_demand = input
        .pointer("/StreamModeDetails/StreamMode")
        .and_then(Value::as_str)
        == Some("ON_DEMAND");
    let count = match input.get("ShardCount").and_then(Value::as_u64) {
        Some(n) if on_demand => {
            let _ = n;
            return Err(invalid(
                "ShardCount is not supported for streams in ON_DEMAND mode.",
            ));
        }
        Some(0) => return Err(invalid("ShardCount must be at least 1.")),
        Some(n) if n > MAX_SHARDS => {
            return Err(AwsError::new(
                "LimitExceededException",
                400,
                format!(
                    "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: 0. Limit: {MAX_SHARDS}. Number of additional shards that would have resulted from this request: {n}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
                    key.account, key.region
                ),
            ));
        }
        Some(n) => n as usize,
        None if on_demand => ON_DEMAND_SHARDS,
        None => 1,
    };
    let now = k.clock.now_ms();
    let floor = (now.max(0) as u128) * 1000;
    let shards = state::hash_ranges(count)
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| ShardMeta {
            id: format!("shardId-{i:012}"),
            start_hash: a.to_string(),
            end_hash: b.to_string(),
            start_seq: state::sequence_number(i, floor).to_string(),
            ..ShardMeta::default()
        })
        .collect();
    let mut tags = BTreeMap::new();
    if let Some(t) = input.get("Tags").and_then(Value::as_object) {
        for (name, v) in t {
            tags.insert(name.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let meta = StreamMeta {
        name: key.name.clone(),
        created_ms: now,
        on_demand,
        retention_hours: DEFAULT_RETENTION_HOURS,
        shards,
        tags,
    };
    let commit = {
        let mut st = k.state.lock();
        if st.streams.contains_key(&key) {
            return Err(AwsError::new(
                "ResourceInUseException",
                400,
                format!(
                    "Stream {} under account {} already exists.",
                    key.name, key.account
                ),
            ));
        }
        let mut batch = Batch::new();
        state::put_stream(&mut batch, &key, &meta);
        st.streams.insert(key, Stream::new(meta));
        k.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub(crate) async fn delete_stream(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let commit = {
        let mut st = k.state.lock();
        if st.streams.remove(&key).is_none() {
            return Err(not_found(&key));
        }
        let mut batch = Batch::new();
        state::delete_stream(&mut batch, &key);
        k.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

/// Runs `f` on the named stream under the state lock.
pub(crate) fn with_stream<T>(
    k: &Kinesis,
    key: &StreamKey,
    f: impl FnOnce(&mut Stream) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let mut st = k.state.lock();
    let stream = st.streams.get_mut(key).ok_or_else(|| not_found(key))?;
    f(stream)
}

fn mode(s: &Stream) -> Value {
    json!({"StreamMode": if s.meta.on_demand { "ON_DEMAND" } else { "PROVISIONED" }})
}

fn shard_json(s: &ShardMeta) -> Value {
    let mut out = json!({
        "ShardId": s.id,
        "HashKeyRange": {"StartingHashKey": s.start_hash, "EndingHashKey": s.end_hash},
        "SequenceNumberRange": {"StartingSequenceNumber": s.start_seq},
    });
    if let Some(p) = &s.parent {
        out["ParentShardId"] = json!(p);
    }
    if let Some(p) = &s.adjacent_parent {
        out["AdjacentParentShardId"] = json!(p);
    }
    if let Some(e) = &s.end_seq {
        out["SequenceNumberRange"]["EndingSequenceNumber"] = json!(e);
    }
    out
}

/// The shards a listing shows: a closed shard leaves it once its records have all passed the
/// stream's retention, as AWS.
fn listed(s: &Stream, now_ms: i64) -> impl std::iter::Iterator<Item = &ShardMeta> {
    let horizon = now_ms - i64::from(s.meta.retention_hours) * 3_600_000;
    s.meta
        .shards
        .iter()
        .filter(move |sh| sh.closed_ms.is_none_or(|c| c >= horizon))
}

pub(crate) fn describe_stream(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let after = input.get("ExclusiveStartShardId").and_then(Value::as_str);
    let now = k.clock.now_ms();
    with_stream(k, &key, |s| {
        let all: Vec<&ShardMeta> = listed(s, now)
            .filter(|sh| after.is_none_or(|a| sh.id.as_str() > a))
            .collect();
        let shards: Vec<Value> = all.iter().take(limit).map(|sh| shard_json(sh)).collect();
        Ok(json!({"StreamDescription": {
            "StreamName": key.name,
            "StreamARN": key.arn(),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode(s),
            "Shards": shards,
            "HasMoreShards": all.len() > limit,
            "RetentionPeriodHours": s.meta.retention_hours,
            "StreamCreationTimestamp": s.meta.created_ms as f64 / 1000.0,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
        }}))
    })
}

pub(crate) fn describe_stream_summary(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    with_stream(k, &key, |s| {
        Ok(json!({"StreamDescriptionSummary": {
            "StreamName": key.name,
            "StreamARN": key.arn(),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode(s),
            "RetentionPeriodHours": s.meta.retention_hours,
            "StreamCreationTimestamp": s.meta.created_ms as f64 / 1000.0,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": s.open_shards().len(),
            "ConsumerCount": 0,
            "MaxRecordSizeInKiB": 1024,
        }}))
    })
}

pub(crate) fn list_streams(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    // The next token is the last name of the previous page.
    let after = input
        .get("NextToken")
        .or_else(|| input.get("ExclusiveStartStreamName"))
        .and_then(Value::as_str)
        .map(String::from);
    let st = k.state.lock();
    let mut names: Vec<(&StreamKey, &Stream)> = st
        .streams
        .iter()
        .filter(|(key, _)| key.account == ctx.account && key.region == ctx.region)
        .filter(|(key, _)| after.as_deref().is_none_or(|a| key.name.as_str() > a))
        .collect();
    names.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let more = names.len() > limit;
    names.truncate(limit);
    let mut out = json!({
        "StreamNames": names.iter().map(|(key, _)| key.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": names.iter().map(|(key, s)| json!({
            "StreamName": key.name,
            "StreamARN": key.arn(),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode(s),
            "StreamCreationTimestamp": s.meta.created_ms as f64 / 1000.0,
        })).collect::<Vec<_>>(),
    });
    if more && let Some((key, _)) = names.last() {
        out["NextToken"] = json!(key.name);
    }
    Ok(out)
}

pub(crate) fn list_shards(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let token = input.get("NextToken").and_then(Value::as_str);
    if token.is_some() && (input.get("StreamName").is_some() || input.get("StreamARN").is_some()) {
        return Err(invalid(
            "NextToken and StreamName cannot be provided together.",
        ));
    }
    // Our next token is `stream ARN|last shard id`.
    let (key, after) = match token {
        Some(t) => {
            let (arn, shard) = t
                .split_once('|')
                .ok_or_else(|| invalid(format!("Invalid NextToken: {t}")))?;
            (
                stream_key(ctx, &json!({"StreamARN": arn}))?,
                Some(shard.to_string()),
            )
        }
        None => (
            stream_key(ctx, input)?,
            input
                .get("ExclusiveStartShardId")
                .and_then(Value::as_str)
                .map(String::from),
        ),
    };
    let limit = input
        .get("MaxResults")
        .and_then(Value::as_u64)
        .unwrap_or(1000) as usize;
    let now = k.clock.now_ms();
    let filter = shard_filter(input)?;
    with_stream(k, &key, |s| {
        let created = s.meta.created_ms;
        let horizon = now - i64::from(s.meta.retention_hours) * 3_600_000;
        let all: Vec<&ShardMeta> = listed(s, now)
            .filter(|sh| after.as_deref().is_none_or(|a| sh.id.as_str() > a))
            .filter(|sh| {
                let opened = sh.created_ms.unwrap_or(created);
                match &filter {
                    None => true,
                    Some(ShardFilter::AfterShardId(id)) => sh.id.as_str() > id.as_str(),
                    Some(ShardFilter::AtLatest) => sh.end_seq.is_none(),
                    Some(ShardFilter::FromTrimHorizon) => true,
                    Some(ShardFilter::AtTrimHorizon) => {
                        opened <= horizon.max(created) && sh.closed_ms.is_none_or(|c| c >= horizon)
                    }
                    Some(ShardFilter::AtTimestamp(t)) => {
                        opened <= (*t).max(created) && sh.closed_ms.is_none_or(|c| c >= *t)
                    }
                    Some(ShardFilter::FromTimestamp(t)) => sh.closed_ms.is_none_or(|c| c >= *t),
                }
            })
            .collect();
        let page: Vec<&ShardMeta> = all.iter().take(limit).copied().collect();
        let mut out = json!({"Shards": page.iter().map(|sh| shard_json(sh)).collect::<Vec<_>>()});
        if all.len() > limit
            && let Some(last) = page.last()
        {
            out["NextToken"] = json!(format!("{}|{}", key.arn(), last.id));
        }
        Ok(out)
    })
}

/// ListShards' `ShardFilter`.
enum ShardFilter {
    AfterShardId(String),
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp(i64),
    FromTimestamp(i64),
}

fn shard_filter(input: &Value) -> Result<Option<ShardFilter>, AwsError> {
    let Some(f) = input.get("ShardFilter") else {
        return Ok(None);
    };
    let kind = f.get("Type").and_then(Value::as_str).unwrap_or_default();
    let shard_id = f.get("ShardId").and_then(Value::as_str);
    let timestamp = f
        .get("Timestamp")
        .and_then(Value::as_f64)
        .map(|t| (t * 1000.0).round() as i64);
    if kind != "AFTER_SHARD_ID" && shard_id.is_some() {
        return Err(invalid(format!(
            "ShardId can only be specified with ShardFilter type AFTER_SHARD_ID, not {kind}."
        )));
    }
    if !kind.ends_with("_TIMESTAMP") && timestamp.is_some() {
        return Err(invalid(format!(
            "Timestamp can only be specified with ShardFilter types AT_TIMESTAMP and FROM_TIMESTAMP, not {kind}."
        )));
    }
    let need_time = || {
        timestamp.ok_or_else(|| {
            invalid(format!(
                "Timestamp must be specified for ShardFilter type {kind}."
            ))
        })
    };
    Ok(Some(match kind {
        "AFTER_SHARD_ID" => ShardFilter::AfterShardId(
            shard_id
                .ok_or_else(|| {
                    invalid("ShardId must be specified for ShardFilter type AFTER_SHARD_ID.")
                })?
                .to_string(),
        ),
        "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
        "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
        "AT_LATEST" => ShardFilter::AtLatest,
        "AT_TIMESTAMP" => ShardFilter::AtTimestamp(need_time()?),
        "FROM_TIMESTAMP" => ShardFilter::FromTimestamp(need_time()?),
        other => return Err(invalid(format!("Invalid ShardFilter type {other}."))),
    }))
}

/// Runs a resharding change on the stream under the lock and writes its shards through.
async fn reshard<T>(
    k: &Kinesis,
    key: &StreamKey,
    change: impl FnOnce(&mut Stream, i64) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let now = k.clock.now_ms();
    let (commit, out) = {
        let mut st = k.state.lock();
        let stream = st.streams.get_mut(key).ok_or_else(|| not_found(key))?;
        let out = change(stream, now)?;
        let mut batch = Batch::new();
        state::put_stream(&mut batch, key, &stream.meta);
        (k.store.commit(batch), out)
    };
    commit.await.map_err(store_error)?;
    Ok(out)
}

fn shard_not_found(key: &StreamKey, shard: &str) -> AwsError {
    AwsError::new(
        "ResourceNotFoundException",
        400,
        format!(
            "Could not find shard {shard} in stream {} under account {}.",
            key.name, key.account
        ),
    )
}

/// An open shard of the stream by id.
fn open_shard(stream: &Stream, key: &StreamKey, id: &str) -> Result<usize, AwsError> {
    let index = stream
        .shard_index(id)
        .ok_or_else(|| shard_not_found(key, id))?;
    if stream.meta.shards[index].end_seq.is_some() {
        return Err(AwsError::new(
            "ResourceInUseException",
            400,
            format!(
                "Shard {id} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                key.name, key.account
            ),
        ));
    }
    Ok(index)
}

fn check_shard_limit(key: &StreamKey, open: usize, more: usize) -> Result<(), AwsError> {
    if (open + more) as u64 > MAX_SHARDS {
        return Err(AwsError::new(
            "LimitExceededException",
            400,
            format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {MAX_SHARDS}. Number of additional shards that would have resulted from this request: {more}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
                key.account, key.region
            ),
        ));
    }
    Ok(())
}

fn refuse_on_demand(stream: &Stream, key: &StreamKey, op: &str) -> Result<(), AwsError> {
    if stream.meta.on_demand {
        return Err(AwsError::new(
            "ValidationException",
            400,
            format!(
                "{op} is not supported for stream {} under account {} because it is in ON_DEMAND mode.",
                key.name, key.account
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn split_shard(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let shard = input
        .get("ShardToSplit")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let raw = input
        .get("NewStartingHashKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let at: u128 = raw.parse().map_err(|_| {
        invalid(format!(
            "NewStartingHashKey {raw} used in SplitShard() on shard {shard} in stream {} under account {} is not a number in [0, 2^128-1].",
            key.name, key.account
        ))
    })?;
    reshard(k, &key, |stream, now| {
        refuse_on_demand(stream, &key, "SplitShard")?;
        let index = open_shard(stream, &key, &shard)?;
        check_shard_limit(&key, stream.open_shards().len(), 1)?;
        let (a, b) = stream.meta.shards[index].range();
        if at <= a.saturating_add(1) || at >= b {
            return Err(invalid(format!(
                "NewStartingHashKey {at} used in SplitShard() on shard {shard} in stream {} under account {} is not both greater than one plus the shard's StartingHashKey {a} and less than the shard's EndingHashKey {b}.",
                key.name, key.account
            )));
        }
        stream.split(index, at, now);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn merge_shards(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let first = input
        .get("ShardToMerge")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let adjacent = input
        .get("AdjacentShardToMerge")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    reshard(k, &key, |stream, now| {
        refuse_on_demand(stream, &key, "MergeShards")?;
        let a = open_shard(stream, &key, &first)?;
        let b = open_shard(stream, &key, &adjacent)?;
        let (ra, rb) = (stream.meta.shards[a].range(), stream.meta.shards[b].range());
        // Either order names the same pair; the child's parent is the lower range.
        let (lo, hi) = if ra.1.checked_add(1) == Some(rb.0) {
            (a, b)
        } else if rb.1.checked_add(1) == Some(ra.0) {
            (b, a)
        } else {
            return Err(invalid(format!(
                "Shards {first} and {adjacent} in stream {} under account {} are not an adjacent pair of shards eligible for merging",
                key.name, key.account
            )));
        };
        stream.merge(lo, hi, now);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn update_shard_count(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let target = input
        .get("TargetShardCount")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let current = reshard(k, &key, |stream, now| {
        refuse_on_demand(stream, &key, "UpdateShardCount")?;
        let open = stream.open_shards().len();
        let limit = |m: String| Err(AwsError::new("LimitExceededException", 400, m));
        if target as u64 > MAX_SHARDS {
            return limit(format!(
                "Target shard count or number of open shards cannot be greater than {MAX_SHARDS}. Current open shard count: {open}, Target shard count: {target}"
            ));
        }
        if target > open * 2 {
            return limit(format!(
                "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {open}, Target shard count: {target}"
            ));
        }
        if target * 2 < open {
            return limit(format!(
                "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {open}, Target shard count: {target}"
            ));
        }
        if target != open || !uniform(stream, target) {
            stream.scale_uniformly(target, now);
        }
        Ok(open)
    })
    .await?;
    Ok(json!({
        "StreamName": key.name,
        "StreamARN": key.arn(),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}

/// Whether the open shards already split the key space into `n` even ranges.
fn uniform(stream: &Stream, n: usize) -> bool {
    let open: Vec<(u128, u128)> = stream
        .open_shards()
        .iter()
        .map(|i| stream.meta.shards[*i].range())
        .collect();
    open == state::hash_ranges(n)
}

async fn update(
    k: &Kinesis,
    key: &StreamKey,
    change: impl FnOnce(&mut StreamMeta) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let commit = {
        let mut st = k.state.lock();
        let stream = st.streams.get_mut(key).ok_or_else(|| not_found(key))?;
        let mut meta = stream.meta.clone();
        change(&mut meta)?;
        let mut batch = Batch::new();
        state::put_stream(&mut batch, key, &meta);
        stream.meta = meta;
        k.store.commit(batch)
    };
    commit.await.map_err(store_error)
}

pub(crate) async fn change_retention(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
    increase: bool,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let hours = input
        .get("RetentionPeriodHours")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    update(k, &key, |m| {
        let current = u64::from(m.retention_hours);
        if increase {
            if hours > MAX_RETENTION_HOURS {
                return Err(invalid(format!(
                    "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
                )));
            }
            if hours < current {
                return Err(invalid(format!(
                    "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                    key.name
                )));
            }
        } else {
            if hours < u64::from(DEFAULT_RETENTION_HOURS) {
                return Err(invalid(format!(
                    "Minimum allowed retention period is {DEFAULT_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
                )));
            }
            if hours > current {
                return Err(invalid(format!(
                    "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                    key.name
                )));
            }
        }
        m.retention_hours = hours as u32;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn add_tags(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let tags = input
        .get("Tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    update(k, &key, |m| {
        for (name, v) in tags {
            m.tags.insert(name, v.as_str().unwrap_or_default().to_string());
        }
        if m.tags.len() > MAX_TAGS {
            return Err(invalid(format!(
                "Failed to add tags to stream {} under account {} because a given stream cannot have more than {MAX_TAGS} tags.",
                key.name, key.account
            )));
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn remove_tags(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let names: Vec<String> = input
        .get("TagKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    update(k, &key, |m| {
        for n in &names {
            m.tags.remove(n);
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) fn list_tags(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let after = input.get("ExclusiveStartTagKey").and_then(Value::as_str);
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(50) as usize;
    with_stream(k, &key, |s| {
        let all: Vec<(&String, &String)> = s
            .meta
            .tags
            .iter()
            .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a))
            .collect();
        let tags: Vec<Value> = all
            .iter()
            .take(limit)
            .map(|(n, v)| json!({"Key": n, "Value": v}))
            .collect();
        Ok(json!({"Tags": tags, "HasMoreTags": all.len() > limit}))
    })
}
