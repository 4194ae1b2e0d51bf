//! Records: PutRecord/PutRecords, shard iterators, GetRecords, and the retention sweep.
//!
//! A shard iterator is opaque to clients: base64 of a small JSON document naming the stream,
//! the shard, the position (records with a greater sequence number come next) and when the
//! iterator expires (5 minutes after it was handed out, as AWS).

use std::ops::Bound;
use std::sync::Weak;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Record, Stream, StreamKey};
use crate::streams::with_stream;
use crate::{Kinesis, invalid, not_found, store_error, stream_key};

/// AWS: a record (data plus partition key) holds at most 1 MiB.
const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// AWS: a PutRecords request holds at most 5 MiB.
const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// AWS: GetRecords answers at most 10 MiB.
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;
const ITERATOR_TTL_MS: i64 = 5 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The decoded length of a base64 blob.
fn data_len(data: &str) -> usize {
    let pad = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(pad)
}

/// Where one record goes, or why it cannot.
fn route(stream: &Stream, entry: &Value) -> Result<(usize, String, String), AwsError> {
    let pk = entry
        .get("PartitionKey")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let data = entry
        .get("Data")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let size = data_len(&data) + pk.len();
    if size > MAX_RECORD_BYTES {
        return Err(invalid(format!(
            "Record size {size} bytes (data plus partition key) exceeds the maximum of {MAX_RECORD_BYTES} bytes (1 MiB)."
        )));
    }
    let hash = match entry.get("ExplicitHashKey").and_then(Value::as_str) {
        Some(h) => h.parse::<u128>().map_err(|_| {
            invalid(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
            ))
        })?,
        None => state::hash_key(&pk),
    };
    Ok((stream.shard_for(hash), pk, data))
}

/// Appends one routed record under the state lock; answers (shard id, sequence number).
fn append(
    key: &StreamKey,
    stream: &mut Stream,
    batch: &mut Batch,
    (shard, pk, data): (usize, String, String),
    now: i64,
) -> (String, String) {
    let seq = stream.next_sequence(shard, now);
    let record = Record {
        partition_key: pk,
        data,
        arrival_ms: now,
    };
    let shard_id = stream.meta.shards[shard].id.clone();
    state::put_record(batch, key, &shard_id, seq, &record);
    stream.records[shard].insert(seq, record);
    (shard_id, seq.to_string())
}

pub(crate) async fn put_record(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let now = k.clock.now_ms();
    let (commit, (shard, seq)) = {
        let mut st = k.state.lock();
        let stream = st.streams.get_mut(&key).ok_or_else(|| not_found(&key))?;
        let routed = route(stream, input)?;
        let mut batch = Batch::new();
        let out = append(&key, stream, &mut batch, routed, now);
        (k.store.commit(batch), out)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"ShardId": shard, "SequenceNumber": seq, "EncryptionType": "NONE"}))
}

pub(crate) async fn put_records(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let entries = input
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total: usize = entries
        .iter()
        .map(|e| {
            data_len(e.get("Data").and_then(Value::as_str).unwrap_or_default())
                + e.get("PartitionKey")
                    .and_then(Value::as_str)
                    .map_or(0, str::len)
        })
        .sum();
    if total > MAX_REQUEST_BYTES {
        return Err(invalid(format!(
            "Records size {total} bytes exceeds the PutRecords limit of {MAX_REQUEST_BYTES} bytes (5 MiB)."
        )));
    }
    let now = k.clock.now_ms();
    let (commit, results, failed) = {
        let mut st = k.state.lock();
        let stream = st.streams.get_mut(&key).ok_or_else(|| not_found(&key))?;
        let mut batch = Batch::new();
        let mut results = Vec::with_capacity(entries.len());
        let mut failed = 0;
        for e in &entries {
            match route(stream, e) {
                Ok(routed) => {
                    let (shard, seq) = append(&key, stream, &mut batch, routed, now);
                    results.push(json!({"ShardId": shard, "SequenceNumber": seq}));
                }
                Err(err) => {
                    failed += 1;
                    results.push(json!({"ErrorCode": err.code, "ErrorMessage": err.message}));
                }
            }
        }
        (k.store.commit(batch), results, failed)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}))
}

#[derive(Serialize, Deserialize)]
struct Iterator {
    /// The stream's ARN.
    a: String,
    /// The shard's index.
    s: usize,
    /// Records with a greater sequence number come next.
    p: String,
    /// When it was handed out and when it expires (clock ms).
    c: i64,
    e: i64,
}

impl Iterator {
    fn encode(&self) -> String {
        b64().encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(s: &str) -> Option<Iterator> {
        serde_json::from_slice(&b64().decode(s).ok()?).ok()
    }
}

fn cutoff(stream: &Stream, now: i64) -> i64 {
    now - i64::from(stream.meta.retention_hours) * HOUR_MS
}

pub(crate) fn get_shard_iterator(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input)?;
    let shard_id = input
        .get("ShardId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = input
        .get("ShardIteratorType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let now = k.clock.now_ms();
    with_stream(k, &key, |stream| {
        let index = stream.shard_index(shard_id).ok_or_else(|| {
            AwsError::new(
                "ResourceNotFoundException",
                400,
                format!(
                    "Shard {shard_id} in stream {} under account {} does not exist",
                    key.name, key.account
                ),
            )
        })?;
        let records = &stream.records[index];
        let sequence = || -> Result<u128, AwsError> {
            let s = input
                .get("StartingSequenceNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(format!(
                        "The StartingSequenceNumber parameter is required for ShardIteratorType {kind}."
                    ))
                })?;
            match state::parse_sequence(s) {
                Some((i, _)) if i == index => Ok(s.parse().unwrap_or(0)),
                Some((i, _)) if i < stream.meta.shards.len() => Err(invalid(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {shard_id}",
                    stream.meta.shards[i].id
                ))),
                _ => Err(invalid(format!(
                    "StartingSequenceNumber {s} used in GetShardIterator on shard {shard_id} in stream {} under account {} is invalid.",
                    key.name, key.account
                ))),
            }
        };
        let position = match kind {
            "TRIM_HORIZON" => 0,
            "LATEST" => state::sequence_number(index, stream.counters[index]),
            "AT_SEQUENCE_NUMBER" => sequence()?.saturating_sub(1),
            "AFTER_SEQUENCE_NUMBER" => sequence()?,
            "AT_TIMESTAMP" => {
                let ts = input
                    .get("Timestamp")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| {
                        invalid("The Timestamp parameter is required for ShardIteratorType AT_TIMESTAMP.")
                    })?;
                let ts_ms = (ts * 1000.0).round() as i64;
                // Just before the first record that arrived at or after the timestamp.
                match records.iter().find(|(_, r)| r.arrival_ms >= ts_ms) {
                    Some((seq, _)) => seq - 1,
                    None => records.keys().next_back().copied().unwrap_or(0),
                }
            }
            other => {
                return Err(invalid(format!("Invalid ShardIteratorType {other}.")));
            }
        };
        let it = Iterator {
            a: key.arn(),
            s: index,
            p: position.to_string(),
            c: now,
            e: now + ITERATOR_TTL_MS,
        };
        Ok(json!({"ShardIterator": it.encode()}))
    })
}

pub(crate) fn get_records(
    k: &Kinesis,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let raw = input
        .get("ShardIterator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let it = Iterator::decode(raw).ok_or_else(|| invalid("Invalid ShardIterator."))?;
    let now = k.clock.now_ms();
    if now > it.e {
        return Err(AwsError::new(
            "ExpiredIteratorException",
            400,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                tsumiki_core::clock::iso8601_ms(it.c),
                tsumiki_core::clock::iso8601_ms(now)
            ),
        ));
    }
    let key = stream_key(ctx, &json!({"StreamARN": it.a}))?;
    let limit = input
        .get("Limit")
        .and_then(Value::as_u64)
        .unwrap_or(10_000)
        .clamp(1, 10_000) as usize;
    let position: u128 = it.p.parse().unwrap_or(0);
    with_stream(k, &key, |stream| {
        let records = stream
            .records
            .get(it.s)
            .ok_or_else(|| invalid("Invalid ShardIterator."))?;
        let oldest = cutoff(stream, now);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut last = position;
        let mut rest = records
            .range((Bound::Excluded(position), Bound::Unbounded))
            .filter(|(_, r)| r.arrival_ms >= oldest)
            .peekable();
        while let Some((seq, r)) = rest.peek() {
            let size = data_len(&r.data) + r.partition_key.len();
            if out.len() >= limit || (!out.is_empty() && bytes + size > MAX_GET_BYTES) {
                break;
            }
            bytes += size;
            last = **seq;
            out.push(json!({
                "SequenceNumber": seq.to_string(),
                "ApproximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
                "Data": r.data,
                "PartitionKey": r.partition_key,
            }));
            rest.next();
        }
        let behind = rest.peek().map_or(0, |(_, r)| (now - r.arrival_ms).max(0));
        let at_end = rest.peek().is_none();
        let shard = &stream.meta.shards[it.s];
        if shard.end_seq.is_some() && at_end {
            // A closed shard read to its end: no next iterator, and its children instead.
            let children: Vec<Value> = stream
                .meta
                .shards
                .iter()
                .filter(|c| {
                    c.parent.as_deref() == Some(shard.id.as_str())
                        || c.adjacent_parent.as_deref() == Some(shard.id.as_str())
                })
                .map(|c| {
                    json!({
                        "ShardId": c.id,
                        "ParentShards": c.parent.iter().chain(c.adjacent_parent.iter()).collect::<Vec<_>>(),
                        "HashKeyRange": {"StartingHashKey": c.start_hash, "EndingHashKey": c.end_hash},
                    })
                })
                .collect();
            return Ok(json!({
                "Records": out,
                "MillisBehindLatest": 0,
                "ChildShards": children,
            }));
        }
        let next = Iterator {
            a: it.a.clone(),
            s: it.s,
            p: last.to_string(),
            c: now,
            e: now + ITERATOR_TTL_MS,
        };
        Ok(json!({
            "Records": out,
            "NextShardIterator": next.encode(),
            "MillisBehindLatest": behind,
        }))
    })
}

/// Deletes records past their stream's retention once a minute of clock time (GetRecords
/// already hides them).
pub(crate) async fn retention_sweeper(kinesis: Weak<Kinesis>) {
    loop {
        let Some(k) = kinesis.upgrade() else {
            return;
        };
        let clock = k.clock.clone();
        drop(k);
        clock.sleep_ms(60_000).await;
        let Some(k) = kinesis.upgrade() else {
            return;
        };
        let now = k.clock.now_ms();
        let commit = {
            let mut st = k.state.lock();
            let mut batch = Batch::new();
            for (key, stream) in st.streams.iter_mut() {
                let oldest = cutoff(stream, now);
                for (i, records) in stream.records.iter_mut().enumerate() {
                    let expired: Vec<u128> = records
                        .iter()
                        .filter(|(_, r)| r.arrival_ms < oldest)
                        .map(|(s, _)| *s)
                        .collect();
                    for seq in expired {
                        records.remove(&seq);
                        state::delete_record(&mut batch, key, &stream.meta.shards[i].id, seq);
                    }
                }
            }
            (!batch.is_empty()).then(|| k.store.commit(batch))
        };
        if let Some(c) = commit
            && let Err(e) = c.await
        {
            tracing::error!(error = %e, "Kinesis could not trim expired records.");
        }
    }
}
