//! DynamoDB Streams: one stream record per item change, written in the item's store batch;
//! shards (one open shard per stream, rolled after 4 hours as AWS does, the new one naming the
//! old as its parent); 24-hour retention; and the DynamoDB Streams API (ListStreams,
//! DescribeStream, GetShardIterator, GetRecords).
//!
//! A shard iterator is opaque: base64 of a small JSON document naming the stream, the shard,
//! the lowest sequence number to read next and when it was handed out (it expires after 15
//! minutes, as AWS's do).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::Item;
use tsumiki_lang::dynamodb::value::{item_size, item_to_json};
use tsumiki_store::Batch;

use crate::state::{self, ShardMeta, State, StreamMeta, StreamRecord, Table, TableKey};
use crate::{Inner, validation};

const HOUR_MS: i64 = 3_600_000;
const SHARD_LIFETIME_MS: i64 = 4 * HOUR_MS;
const RETENTION_MS: i64 = 24 * HOUR_MS;
const ITERATOR_TTL_MS: i64 = 15 * 60 * 1000;

fn shard_id(created_ms: i64) -> String {
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("shardId-{:020}-{}", created_ms, &r[..8])
}

/// Opens a shard when the stream has none open, or rolls one open for 4 hours. `seq` reserves
/// the new shard's starting sequence number. Returns whether the shards changed.
pub(crate) fn ensure_shard(
    stream: &mut StreamMeta,
    records: &BTreeMap<u128, StreamRecord>,
    last_seq: &mut u128,
    now_ms: i64,
) -> bool {
    let open = stream.shards.iter().position(|s| s.end_seq.is_none());
    let parent = match open {
        Some(i) if stream.shards[i].created_ms + SHARD_LIFETIME_MS > now_ms => return false,
        Some(i) => {
            close(&mut stream.shards[i], records, now_ms);
            Some(stream.shards[i].id.clone())
        }
        None if stream.shards.is_empty() => None,
        None => return false,
    };
    let floor = now_ms.max(0) as u128 * 1_000_000_000;
    *last_seq = (*last_seq + 1).max(floor);
    stream.shards.push(ShardMeta {
        id: shard_id(now_ms),
        parent,
        created_ms: now_ms,
        start_seq: *last_seq,
        end_seq: None,
        closed_ms: None,
    });
    true
}

fn close(shard: &mut ShardMeta, records: &BTreeMap<u128, StreamRecord>, now_ms: i64) {
    let last = records
        .values()
        .filter(|r| r.shard == shard.id)
        .map(|r| r.seq)
        .next_back();
    shard.end_seq = Some(last.unwrap_or(shard.start_seq));
    shard.closed_ms = Some(now_ms);
}

/// Closes a stream's open shard (the stream is being disabled).
pub(crate) fn close_all(
    stream: &mut StreamMeta,
    records: &BTreeMap<u128, StreamRecord>,
    now_ms: i64,
) {
    for shard in stream.shards.iter_mut().filter(|s| s.end_seq.is_none()) {
        close(shard, records, now_ms);
    }
}

fn keys_of(table: &Table, item: &Item) -> Item {
    let k = &table.meta.key;
    std::iter::once(&k.hash)
        .chain(k.range.as_ref())
        .filter_map(|(name, _)| item.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

/// Records one item change in the table's stream, if it has an enabled one: the record joins
/// `batch`, next to the item write. A change that changes nothing is not recorded (AWS).
#[allow(clippy::too_many_arguments)]
pub(crate) fn append(
    st: &mut State,
    key: &TableKey,
    old: Option<&Item>,
    new: Option<&Item>,
    now_ms: i64,
    by_ttl: bool,
    batch: &mut Batch,
) {
    let State {
        tables, last_seq, ..
    } = st;
    let Some(table) = tables.get_mut(key) else {
        return;
    };
    let Some(stream) = table.meta.stream.as_mut().filter(|s| s.enabled) else {
        return;
    };
    let mut meta_changed = ensure_shard(stream, &table.records, last_seq, now_ms);
    let floor = now_ms.max(0) as u128 * 1_000_000_000;
    *last_seq = (*last_seq + 1).max(floor);
    let seq = *last_seq;
    let stream = table.meta.stream.as_ref().expect("checked above");
    let shard = stream
        .shards
        .iter()
        .rev()
        .find(|s| s.end_seq.is_none())
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let view = stream.view_type.clone();
    let label = stream.label.clone();
    let any = new.or(old).expect("a change has an old or a new item");
    let keys = keys_of(table, any);
    let event = match (old, new) {
        (None, Some(_)) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    let mut size = item_size(&keys);
    let mut body = json!({
        "ApproximateCreationDateTime": now_ms / 1000,
        "Keys": item_to_json(&keys),
        "SequenceNumber": format!("{seq}"),
        "StreamViewType": view,
    });
    if matches!(view.as_str(), "NEW_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(new) = new
    {
        size += item_size(new);
        body["NewImage"] = item_to_json(new);
    }
    if matches!(view.as_str(), "OLD_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(old) = old
    {
        size += item_size(old);
        body["OldImage"] = item_to_json(old);
    }
    body["SizeBytes"] = json!(size);
    let mut record = json!({
        "eventID": uuid::Uuid::new_v4().simple().to_string(),
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": key.region,
        "dynamodb": body,
    });
    if by_ttl {
        record["userIdentity"] =
            json!({"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"});
    }
    let rec = StreamRecord {
        seq,
        label,
        shard,
        created_ms: now_ms,
        record,
    };
    state::put_record(batch, key, &rec);
    table.records.insert(seq, rec);
    if meta_changed {
        state::put_table(batch, key, &table.meta);
        meta_changed = false;
    }
    let _ = meta_changed;
}

/// Drops records older than 24 hours, shards closed for 24 hours, and disabled streams with
/// nothing left; rolls shards open for 4 hours.
pub(crate) fn trim(st: &mut State, batch: &mut Batch, now_ms: i64) {
    let cutoff = now_ms - RETENTION_MS;
    let State {
        tables, last_seq, ..
    } = st;
    for (key, table) in tables.iter_mut() {
        let old: Vec<u128> = table
            .records
            .range(..)
            .take_while(|(_, r)| r.created_ms < cutoff)
            .map(|(s, _)| *s)
            .collect();
        for seq in old {
            table.records.remove(&seq);
            state::delete_record(batch, key, seq);
        }
        let mut changed = false;
        if let Some(stream) = table.meta.stream.as_mut().filter(|s| s.enabled) {
            changed |= ensure_shard(stream, &table.records, last_seq, now_ms);
        }
        for stream in table
            .meta
            .stream
            .iter_mut()
            .chain(table.meta.old_streams.iter_mut())
        {
            let before = stream.shards.len();
            stream
                .shards
                .retain(|s| s.closed_ms.is_none_or(|c| c >= cutoff));
            changed |= stream.shards.len() != before;
        }
        let before = table.meta.old_streams.len();
        table.meta.old_streams.retain(|s| !s.shards.is_empty());
        changed |= table.meta.old_streams.len() != before;
        if changed {
            state::put_table(batch, key, &table.meta);
        }
    }
}

fn stream_arn(key: &TableKey, label: &str) -> String {
    format!("{}/stream/{label}", key.arn())
}

fn stream_not_found(arn: &str) -> AwsError {
    AwsError::new(
        "ResourceNotFoundException",
        400,
        format!("Requested resource not found: Stream: {arn} not found"),
    )
}

/// The table and stream label an ARN names.
fn parse_stream_arn(arn: &str) -> Option<(TableKey, String)> {
    let (_, region, account, res) = tsumiki_core::ids::parse_arn(arn)?;
    let rest = res.strip_prefix("table/")?;
    let (name, label) = rest.split_once("/stream/")?;
    Some((
        TableKey {
            account: account.to_string(),
            region: region.to_string(),
            name: name.to_string(),
        },
        label.to_string(),
    ))
}

fn find<'a>(
    st: &'a State,
    arn: &str,
) -> Result<(&'a TableKey, &'a Table, &'a StreamMeta), AwsError> {
    let (key, label) = parse_stream_arn(arn).ok_or_else(|| stream_not_found(arn))?;
    let (key, table) = st
        .tables
        .get_key_value(&key)
        .ok_or_else(|| stream_not_found(arn))?;
    let stream = table
        .meta
        .stream
        .iter()
        .chain(&table.meta.old_streams)
        .find(|s| s.label == label)
        .ok_or_else(|| stream_not_found(arn))?;
    Ok((key, table, stream))
}

pub(crate) fn list_streams(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let table_name = input.get("TableName").and_then(Value::as_str);
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let start = input.get("ExclusiveStartStreamArn").and_then(Value::as_str);
    let st = d.state.lock();
    let mut all = Vec::new();
    for (key, table) in &st.tables {
        if key.account != ctx.account || key.region != ctx.region {
            continue;
        }
        if table_name.is_some_and(|n| n != key.name) {
            continue;
        }
        for s in table.meta.old_streams.iter().chain(&table.meta.stream) {
            all.push(json!({"StreamArn": stream_arn(key, &s.label), "TableName": key.name, "StreamLabel": s.label}));
        }
    }
    if let Some(name) = table_name
        && !st
            .tables
            .keys()
            .any(|k| k.account == ctx.account && k.region == ctx.region && k.name == name)
    {
        return Err(AwsError::new(
            "ResourceNotFoundException",
            400,
            format!("Requested resource not found: Table: {name} not found"),
        ));
    }
    let skip = match start {
        Some(arn) => all
            .iter()
            .position(|s| s["StreamArn"] == arn)
            .map_or(0, |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(skip).take(limit).cloned().collect();
    let mut out = json!({"Streams": page});
    if all.len() > skip + limit
        && let Some(last) = page.last()
    {
        out["LastEvaluatedStreamArn"] = last["StreamArn"].clone();
    }
    Ok(out)
}

pub(crate) fn describe_stream(
    d: &Inner,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = input
        .get("StreamArn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let start = input.get("ExclusiveStartShardId").and_then(Value::as_str);
    let st = d.state.lock();
    let (key, table, stream) = find(&st, arn)?;
    let skip = match start {
        Some(id) => stream
            .shards
            .iter()
            .position(|s| s.id == id)
            .map_or(0, |i| i + 1),
        None => 0,
    };
    let shards: Vec<Value> = stream
        .shards
        .iter()
        .skip(skip)
        .take(limit)
        .map(|s| {
            let mut range = json!({"StartingSequenceNumber": format!("{}", s.start_seq)});
            if let Some(end) = s.end_seq {
                range["EndingSequenceNumber"] = json!(format!("{end}"));
            }
            let mut v = json!({"ShardId": s.id, "SequenceNumberRange": range});
            if let Some(p) = &s.parent {
                v["ParentShardId"] = json!(p);
            }
            v
        })
        .collect();
    let created = stream
        .shards
        .first()
        .map_or(table.meta.created_ms, |s| s.created_ms);
    let mut desc = json!({
        "StreamArn": stream_arn(key, &stream.label),
        "StreamLabel": stream.label,
        "StreamStatus": if stream.enabled { "ENABLED" } else { "DISABLED" },
        "StreamViewType": stream.view_type,
        "CreationRequestDateTime": created as f64 / 1000.0,
        "TableName": key.name,
        "KeySchema": table.meta.key_schema,
        "Shards": shards,
    });
    if stream.shards.len() > skip + limit
        && let Some(last) = stream.shards.get(skip + limit - 1)
    {
        desc["LastEvaluatedShardId"] = json!(last.id);
    }
    Ok(json!({"StreamDescription": desc}))
}

#[derive(Serialize, Deserialize)]
struct Iterator {
    a: String,
    s: String,
    /// The lowest sequence number to read next.
    p: String,
    t: i64,
}

fn encode_iterator(it: &Iterator) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(it).unwrap_or_default())
}

pub(crate) fn get_shard_iterator(
    d: &Inner,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = input
        .get("StreamArn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let shard_id = input
        .get("ShardId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = input
        .get("ShardIteratorType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let seq_in = input.get("SequenceNumber").and_then(Value::as_str);
    let now = d.clock.now_ms();
    let st = d.state.lock();
    let (_, table, stream) = find(&st, arn)?;
    let shard = stream
        .shards
        .iter()
        .find(|s| s.id == shard_id)
        .ok_or_else(|| {
            AwsError::new(
                "ResourceNotFoundException",
                400,
                "Requested resource not found: Shard does not exist",
            )
        })?;
    let seq = |kind: &str| -> Result<u128, AwsError> {
        let Some(s) = seq_in else {
            return Err(validation(format!(
                "Must provide SequenceNumber for ShardIteratorType {kind}"
            )));
        };
        s.parse::<u128>()
            .map_err(|_| validation(format!("Invalid SequenceNumber: {s}")))
    };
    let oldest = table
        .records
        .values()
        .find(|r| r.shard == shard.id)
        .map(|r| r.seq);
    let position = match kind {
        "TRIM_HORIZON" => shard.start_seq,
        "LATEST" => match shard.end_seq {
            Some(end) => end + 1,
            None => st.last_seq + 1,
        },
        "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER" => {
            let n = seq(kind)?;
            if n < shard.start_seq || shard.end_seq.is_some_and(|e| n > e) {
                return Err(validation(format!(
                    "Invalid SequenceNumber for ShardId {shard_id}: {n}"
                )));
            }
            if oldest.is_some_and(|o| n < o) && n != shard.start_seq {
                return Err(AwsError::new(
                    "TrimmedDataAccessException",
                    400,
                    "The operation attempted to read past the oldest stream record in a shard.",
                ));
            }
            if kind == "AT_SEQUENCE_NUMBER" {
                n
            } else {
                n + 1
            }
        }
        other => return Err(validation(format!("Invalid ShardIteratorType: {other}"))),
    };
    Ok(json!({"ShardIterator": encode_iterator(&Iterator {
        a: arn.to_string(),
        s: shard.id.clone(),
        p: position.to_string(),
        t: now,
    })}))
}

pub(crate) fn get_records(
    d: &Inner,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let raw = input
        .get("ShardIterator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let limit = input
        .get("Limit")
        .and_then(Value::as_u64)
        .unwrap_or(1000)
        .min(1000) as usize;
    let it: Iterator = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| validation("Invalid ShardIterator"))?;
    let now = d.clock.now_ms();
    if now - it.t > ITERATOR_TTL_MS {
        return Err(AwsError::new(
            "ExpiredIteratorException",
            400,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                tsumiki_core::clock::iso8601_ms(it.t),
                tsumiki_core::clock::iso8601_ms(now)
            ),
        ));
    }
    let from: u128 =
        it.p.parse()
            .map_err(|_| validation("Invalid ShardIterator"))?;
    let st = d.state.lock();
    let (_, table, stream) = find(&st, &it.a)?;
    let shard = stream.shards.iter().find(|s| s.id == it.s).ok_or_else(|| {
        AwsError::new(
            "ResourceNotFoundException",
            400,
            "Requested resource not found: Shard does not exist",
        )
    })?;
    let records: Vec<&StreamRecord> = table
        .records
        .range(from..)
        .map(|(_, r)| r)
        .filter(|r| r.shard == shard.id)
        .take(limit)
        .collect();
    let next = records.last().map_or(from, |r| r.seq + 1);
    let mut out = json!({"Records": records.iter().map(|r| r.record.clone()).collect::<Vec<_>>()});
    let exhausted = shard.end_seq.is_some_and(|end| next > end)
        || (shard.end_seq.is_some()
            && !table
                .records
                .range(next..)
                .any(|(_, r)| r.shard == shard.id));
    if !exhausted {
        out["NextShardIterator"] = json!(encode_iterator(&Iterator {
            a: it.a.clone(),
            s: it.s.clone(),
            p: next.to_string(),
            t: now,
        }));
    }
    Ok(out)
}
