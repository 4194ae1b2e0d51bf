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
    json!({
        "ShardId": s.id,
        "HashKeyRange": {"StartingHashKey": s.start_hash, "EndingHashKey": s.end_hash},
        "SequenceNumberRange": {"StartingSequenceNumber": s.start_seq},
    })
}

pub(crate) fn describe_stream(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let after = input.get("ExclusiveStartShardId").and_then(Value::as_str);
    with_stream(k, &key, |s| {
        let all: Vec<&ShardMeta> = s
            .meta
            .shards
            .iter()
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
            "OpenShardCount": s.meta.shards.len(),
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
    with_stream(k, &key, |s| {
        let all: Vec<&ShardMeta> = s
            .meta
            .shards
            .iter()
            .filter(|sh| after.as_deref().is_none_or(|a| sh.id.as_str() > a))
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
