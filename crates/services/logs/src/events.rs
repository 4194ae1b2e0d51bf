//! Log events: PutLogEvents, GetLogEvents, FilterLogEvents, the [`LogSink`](tsumiki_ports::LogSink)
//! path compute writes through, and the retention sweep.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::LogEvent;
use tsumiki_store::Batch;

use crate::error::{invalid_parameter, stream_not_found};
use crate::filter::FilterPattern;
use crate::input::{opt_bool, opt_int, opt_str, req_str, string_list};
use crate::paging::{Cursor, Start, decode_token, encode_token, page};
use crate::state::{DAY_MS, Event, EventKey, Group, GroupCell, GroupKey, Stream, writes};
use crate::{Logs, store_error};

/// PutLogEvents' batch limit, counting each event's UTF-8 message plus 26 bytes.
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_BATCH_SPAN_MS: i64 = DAY_MS;
const TOO_NEW_MS: i64 = 2 * 3_600_000;
const TOO_OLD_MS: i64 = 14 * DAY_MS;
/// GetLogEvents and FilterLogEvents return up to 10,000 events or 1 MB.
const DEFAULT_EVENTS_LIMIT: i64 = 10_000;
const PAGE_BYTES: usize = 1_048_576;
/// Events one FilterLogEvents call examines before it answers with what it found and a token,
/// so a selective pattern over a large group never holds the group's lock for long. AWS too
/// may answer a page with few or no events and a token.
const FILTER_SCAN_BUDGET: usize = 200_000;
/// How often (in clock time) the sweep deletes events past their group's retention.
const SWEEP_EVERY_MS: i64 = 60_000;

fn event_cost(message: &str) -> usize {
    message.len() + EVENT_OVERHEAD
}

pub async fn put_log_events(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let stream_name = req_str(input, "logStreamName")?;
    let mut batch_events: Vec<(i64, &str)> = Vec::new();
    for e in input
        .get("logEvents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(ts), Some(message)) = (
            e.get("timestamp").and_then(Value::as_i64),
            e.get("message").and_then(Value::as_str),
        ) else {
            return Err(invalid_parameter(
                "Every log event needs a timestamp and a message.",
            ));
        };
        batch_events.push((ts, message));
    }
    let size: usize = batch_events.iter().map(|(_, m)| event_cost(m)).sum();
    if size > MAX_BATCH_BYTES {
        return Err(invalid_parameter(format!(
            "Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if batch_events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(invalid_parameter(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (batch_events.first(), batch_events.last())
        && last.0.saturating_sub(first.0) > MAX_BATCH_SPAN_MS
    {
        return Err(invalid_parameter(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    let now = logs.clock.now_ms();
    let mut matched = Vec::new();
    let (token, rejected) = logs
        .write_group(&cell, |g, batch| {
            let filters = g.subscriptions.clone();
            let retained_from = g.retention_days.map(|_| g.cutoff(now));
            let group_id = g.id;
            let stream = g
                .streams
                .get_mut(stream_name)
                .ok_or_else(stream_not_found)?;
            // The batch is in order, so each kind of rejection is a run at one end of it.
            let too_new_start = batch_events
                .iter()
                .position(|(ts, _)| *ts > now + TOO_NEW_MS);
            let too_old_end = batch_events
                .iter()
                .rposition(|(ts, _)| *ts < now - TOO_OLD_MS);
            let expired_end =
                retained_from.and_then(|from| batch_events.iter().rposition(|(ts, _)| *ts < from));
            let accepted_from = too_old_end.max(expired_end).map_or(0, |i| i + 1);
            let accepted_to = too_new_start.unwrap_or(batch_events.len());
            let mut added = Vec::new();
            for (ts, message) in batch_events.iter().take(accepted_to).skip(accepted_from) {
                let key = stream.append(*ts, message.to_string(), now);
                writes::event(batch, stream.id, key, &stream.events[&key]);
                added.push((key, *message));
            }
            matched = match_subscriptions(&cell.key, stream_name, stream.id, &filters, &added);
            stream.uploads += 1;
            writes::stream(batch, group_id, stream_name, stream);
            let mut rejected = serde_json::Map::new();
            if let Some(i) = too_new_start {
                rejected.insert("tooNewLogEventStartIndex".into(), json!(i));
            }
            if let Some(i) = too_old_end {
                rejected.insert("tooOldLogEventEndIndex".into(), json!(i));
            }
            if let Some(i) = expired_end {
                rejected.insert("expiredLogEventEndIndex".into(), json!(i));
            }
            Ok((stream.sequence_token(), rejected))
        })
        .await?;
    logs.deliver_matched(matched).await;
    let mut response = json!({ "nextSequenceToken": token });
    if !rejected.is_empty() {
        response["rejectedLogEventsInfo"] = Value::Object(rejected);
    }
    Ok(response)
}

/// The window of timestamps a read covers: `[startTime, endTime)`, never before the group's
/// retention cutoff.
fn window(g: &Group, input: &Value, now: i64) -> (EventKey, EventKey) {
    let from = opt_int(input, "startTime")
        .unwrap_or(i64::MIN)
        .max(g.cutoff(now));
    let to = match opt_int(input, "endTime") {
        Some(t) => (t, 0),
        None => (i64::MAX, u64::MAX),
    };
    ((from, 0), to)
}

fn events_limit(input: &Value) -> usize {
    opt_int(input, "limit")
        .unwrap_or(DEFAULT_EVENTS_LIMIT)
        .clamp(1, DEFAULT_EVENTS_LIMIT) as usize
}

fn invalid_token() -> AwsError {
    invalid_parameter("The specified nextToken is invalid.")
}

pub fn get_log_events(logs: &Logs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let cell = logs.group_identified(ctx, input)?;
    let stream_name = req_str(input, "logStreamName")?;
    let limit = events_limit(input);
    // A token carries its own direction; startFromHead only picks where a first call starts.
    let start = match opt_str(input, "nextToken") {
        Some(t) => Start::Token(Cursor::decode(t).ok_or_else(invalid_token)?),
        None if opt_bool(input, "startFromHead") == Some(true) => Start::Head,
        None => Start::Tail,
    };
    let now = logs.clock.now_ms();
    logs.read_group(&cell, |g| {
        let stream = g.streams.get(stream_name).ok_or_else(stream_not_found)?;
        let (lo, hi) = window(g, input, now);
        let p = page(
            &stream.events,
            lo,
            hi,
            start,
            limit,
            PAGE_BYTES,
            |e: &Event| event_cost(&e.message),
        );
        let events: Vec<Value> = p
            .items
            .iter()
            .map(|((ts, _), e)| {
                json!({"timestamp": ts, "message": e.message, "ingestionTime": e.ingestion_ms})
            })
            .collect();
        Ok(json!({
            "events": events,
            "nextForwardToken": p.forward.encode(),
            "nextBackwardToken": p.backward.encode(),
        }))
    })
}

/// Where the next FilterLogEvents page starts: after this event, in the order
/// (timestamp, stream name, sequence) in which events of all streams are interleaved.
#[derive(Serialize, Deserialize)]
struct FilterAfter {
    t: i64,
    s: String,
    q: u64,
}

/// The first key of a stream named `name` that comes after `a` in the interleaved order.
fn resume_key(name: &str, a: &FilterAfter) -> EventKey {
    match name.cmp(a.s.as_str()) {
        Ordering::Less => (a.t.saturating_add(1), 0),
        Ordering::Equal => match a.q.checked_add(1) {
            Some(q) => (a.t, q),
            None => (a.t.saturating_add(1), 0),
        },
        Ordering::Greater => (a.t, 0),
    }
}

/// A page of FilterLogEvents, for a group already locked.
fn filter_group(
    g: &Group,
    input: &Value,
    pattern: &FilterPattern,
    after: Option<&FilterAfter>,
    now: i64,
) -> Value {
    let names = string_list(input, "logStreamNames");
    let prefix = opt_str(input, "logStreamNamePrefix");
    let limit = events_limit(input);
    let (lo, hi) = window(g, input, now);
    let streams: Vec<(&String, &Stream)> = g
        .streams
        .iter()
        .filter(|(name, _)| names.is_empty() || names.contains(name))
        .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
        .collect();
    // A k-way merge of the streams' ordered events, by (timestamp, stream, sequence); the
    // streams are in name order, so their index stands for their name.
    let mut ranges = Vec::with_capacity(streams.len());
    let mut heads: BinaryHeap<Reverse<(i64, usize, u64)>> = BinaryHeap::new();
    let mut current: Vec<Option<&Event>> = Vec::with_capacity(streams.len());
    for (i, (name, s)) in streams.iter().enumerate() {
        let from = after.map_or(lo, |a| lo.max(resume_key(name, a)));
        let mut range = (from < hi).then(|| s.events.range(from..hi));
        let first = range.as_mut().and_then(Iterator::next);
        if let Some(((ts, seq), e)) = first {
            heads.push(Reverse((*ts, i, *seq)));
            current.push(Some(e));
        } else {
            current.push(None);
        }
        ranges.push(range);
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut scanned = 0usize;
    let mut next = None;
    while let Some(Reverse((ts, i, seq))) = heads.pop() {
        let Some(event) = current[i].take() else {
            continue;
        };
        if let Some(((t, q), e)) = ranges[i].as_mut().and_then(Iterator::next) {
            heads.push(Reverse((*t, i, *q)));
            current[i] = Some(e);
        }
        scanned += 1;
        let name = streams[i].0;
        if pattern.matches(&event.message) {
            bytes += event_cost(&event.message);
            out.push(json!({
                "logStreamName": name,
                "timestamp": ts,
                "message": event.message,
                "ingestionTime": event.ingestion_ms,
                "eventId": format!("{:020}{:020}{:020}", ts.max(0), streams[i].1.id, seq),
            }));
        }
        let full = out.len() >= limit || bytes >= PAGE_BYTES || scanned >= FILTER_SCAN_BUDGET;
        if full && !heads.is_empty() {
            next = Some(FilterAfter {
                t: ts,
                s: name.clone(),
                q: seq,
            });
            break;
        }
    }
    let mut response = json!({
        "events": out,
        // AWS has answered an empty list here since 2020 (the member is deprecated).
        "searchedLogStreams": [],
    });
    if let Some(a) = next {
        response["nextToken"] = json!(encode_token(&a));
    }
    response
}

pub fn filter_log_events(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_identified(ctx, input)?;
    if input.get("logStreamNames").is_some() && opt_str(input, "logStreamNamePrefix").is_some() {
        return Err(invalid_parameter(
            "Cannot specify both logStreamNames and logStreamNamePrefix.",
        ));
    }
    let pattern = FilterPattern::parse(opt_str(input, "filterPattern").unwrap_or(""))
        .map_err(|e| invalid_parameter(e.to_string()))?;
    let after: Option<FilterAfter> = match opt_str(input, "nextToken") {
        Some(t) => Some(decode_token(t).ok_or_else(invalid_token)?),
        None => None,
    };
    let now = logs.clock.now_ms();
    logs.read_group(&cell, |g| {
        Ok(filter_group(g, input, &pattern, after.as_ref(), now))
    })
}

/// The [`LogSink`](tsumiki_ports::LogSink) path: one store commit per call, creating the
/// group and the stream when they are missing.
pub async fn append(
    logs: &Logs,
    account: &str,
    region: &str,
    group: &str,
    stream: &str,
    events: Vec<LogEvent>,
) -> Result<(), AwsError> {
    let key = GroupKey {
        account: account.into(),
        region: region.into(),
        name: group.into(),
    };
    let mut pending = Some(events);
    let mut matched = Vec::new();
    // A group deleted between the lookup and the write is created again, once.
    for _ in 0..2 {
        let now = logs.clock.now_ms();
        let cell = match logs.state.get(&key) {
            Some(cell) => cell,
            None => logs
                .state
                .groups
                .write()
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(GroupCell {
                        key: key.clone(),
                        group: Mutex::new(Group::new(now)),
                    })
                })
                .clone(),
        };
        let written = logs
            .write_group(&cell, |g, batch| {
                let events = pending.take().unwrap_or_default();
                let group_id = g.id;
                let filters = g.subscriptions.clone();
                let s = g
                    .streams
                    .entry(stream.to_string())
                    .or_insert_with(|| Stream::new(now));
                let mut keys = Vec::new();
                for e in events {
                    let k = s.append(e.timestamp_ms, e.message, now);
                    writes::event(batch, s.id, k, &s.events[&k]);
                    keys.push(k);
                }
                if !filters.is_empty() {
                    let added: Vec<_> = keys
                        .iter()
                        .map(|k| (*k, s.events[k].message.as_str()))
                        .collect();
                    matched = match_subscriptions(&key, stream, s.id, &filters, &added);
                }
                writes::stream(batch, group_id, stream, s);
                Ok(())
            })
            .await;
        match written {
            Err(e) if e.code == "ResourceNotFoundException" && pending.is_some() => continue,
            other => {
                logs.deliver_matched(std::mem::take(&mut matched)).await;
                return other;
            }
        }
    }
    Err(crate::error::group_not_found())
}

/// The events of one write that each subscription filter matches.
fn match_subscriptions(
    key: &GroupKey,
    stream: &str,
    stream_id: u64,
    filters: &[crate::subscription::SubscriptionFilter],
    added: &[(EventKey, &str)],
) -> Vec<crate::subscription::Matched> {
    filters
        .iter()
        .filter_map(|f| {
            let events: Vec<(String, i64, String)> = added
                .iter()
                .filter(|(_, message)| f.matches(message))
                .map(|((ts, seq), message)| {
                    (
                        format!("{:020}{:020}{:020}", (*ts).max(0), stream_id, seq),
                        *ts,
                        message.to_string(),
                    )
                })
                .collect();
            (!events.is_empty()).then(|| crate::subscription::Matched {
                account: key.account.clone(),
                group: key.name.clone(),
                stream: stream.to_string(),
                filter: f.name.clone(),
                destination_arn: f.destination_arn.clone(),
                events,
            })
        })
        .collect()
}

/// Deletes every event older than its group's retention; returns how many.
pub async fn sweep_expired(logs: &Logs) -> Result<usize, AwsError> {
    let now = logs.clock.now_ms();
    let mut total = 0;
    for cell in logs.state.all() {
        let commit = {
            let mut g = cell.group.lock();
            if g.deleted || g.retention_days.is_none() {
                continue;
            }
            let cutoff = g.cutoff(now);
            let mut batch = Batch::new();
            for s in g.streams.values_mut() {
                let keep = s.events.split_off(&(cutoff, 0));
                let expired = std::mem::replace(&mut s.events, keep);
                for (k, e) in expired {
                    s.stored_bytes -= e.message.len() as i64;
                    writes::delete_event(&mut batch, s.id, k);
                    total += 1;
                }
            }
            if batch.is_empty() {
                continue;
            }
            logs.state.store.commit(batch)
        };
        commit.await.map_err(store_error)?;
    }
    Ok(total)
}

/// Sweeps every [`SWEEP_EVERY_MS`] of clock time, so a manual clock's jump sweeps at once.
/// Ends when the service is dropped.
pub async fn retention_sweeper(logs: Weak<Logs>) {
    loop {
        let Some(service) = logs.upgrade() else {
            return;
        };
        match sweep_expired(&service).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(events = n, "Deleted log events past retention."),
            Err(e) => tracing::warn!(error = %e, "The retention sweep failed."),
        }
        let clock = service.clock.clone();
        drop(service);
        clock.sleep_ms(SWEEP_EVERY_MS).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsumiki_core::Clock;
    use tsumiki_ports::{LogSink, Service};
    use tsumiki_store::{Store, SyncMode};

    fn ctx() -> RequestContext {
        RequestContext {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            request_id: "r".into(),
            base_url: "http://localhost".into(),
            access_key: None,
            path: "/".into(),
        }
    }

    async fn service() -> (Arc<Logs>, Store, Arc<Clock>) {
        let store = Store::open(None, SyncMode::Normal).expect("store");
        let clock = Arc::new(Clock::manual());
        let logs = Logs::start(store.clone(), clock.clone())
            .await
            .expect("start");
        (logs, store, clock)
    }

    async fn call(logs: &Logs, op: &str, input: Value) -> Result<Value, AwsError> {
        logs.call(&ctx(), op, input).await
    }

    #[tokio::test]
    async fn put_rejects_and_accepts_by_aws_rules() {
        let (logs, _, clock) = service().await;
        call(&logs, "CreateLogGroup", json!({"logGroupName": "g"}))
            .await
            .expect("group");
        call(
            &logs,
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": "s"}),
        )
        .await
        .expect("stream");
        let now = clock.now_ms();
        let put = |events: Value| {
            let logs = logs.clone();
            async move {
                call(
                    &logs,
                    "PutLogEvents",
                    json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events}),
                )
                .await
            }
        };
        let err = put(
            json!([{"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}]),
        )
        .await
        .expect_err("out of order");
        assert_eq!(err.code, "InvalidParameterException");
        assert!(
            err.message.contains("chronological order"),
            "{}",
            err.message
        );
        let err = put(json!([{"timestamp": now - DAY_MS - 1, "message": "a"}, {"timestamp": now, "message": "b"}]))
            .await
            .expect_err("span");
        assert!(err.message.contains("24 hours"), "{}", err.message);
        let big = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD + 1);
        let err = put(json!([{"timestamp": now, "message": big}]))
            .await
            .expect_err("size");
        assert!(
            err.message.starts_with("Upload too large"),
            "{}",
            err.message
        );
        let fits = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD);
        put(json!([{"timestamp": now, "message": fits}]))
            .await
            .expect("exactly the limit fits");

        let out = put(json!([
            {"timestamp": now - 15 * DAY_MS + 10, "message": "too old"},
            {"timestamp": now, "message": "ok"},
            {"timestamp": now + 3 * 3_600_000, "message": "too new"},
        ]))
        .await
        .err()
        .map(|e| e.message);
        assert!(out.is_some(), "a 15-day span is more than 24 hours");

        let out = put(json!([
            {"timestamp": now - 15 * DAY_MS + 10, "message": "too old"},
            {"timestamp": now - 15 * DAY_MS + 20, "message": "too old too"},
        ]))
        .await
        .expect("a batch of old events");
        assert_eq!(
            out["rejectedLogEventsInfo"],
            json!({"tooOldLogEventEndIndex": 1})
        );

        let out = put(json!([
            {"timestamp": now, "message": "ok"},
            {"timestamp": now + 3 * 3_600_000, "message": "too new"},
        ]))
        .await
        .expect("partly too new");
        assert_eq!(
            out["rejectedLogEventsInfo"],
            json!({"tooNewLogEventStartIndex": 1})
        );
        assert_eq!(out["nextSequenceToken"].as_str().map(str::len), Some(56));

        call(
            &logs,
            "PutRetentionPolicy",
            json!({"logGroupName": "g", "retentionInDays": 1}),
        )
        .await
        .expect("retention");
        let out = put(json!([
            {"timestamp": now - DAY_MS - 1000, "message": "expired"},
            {"timestamp": now - DAY_MS / 2, "message": "kept"},
        ]))
        .await
        .expect("partly expired");
        assert_eq!(
            out["rejectedLogEventsInfo"],
            json!({"expiredLogEventEndIndex": 0})
        );

        // The 1 MB event needs a page of its own; page forward until the token repeats.
        let mut messages = Vec::new();
        let mut input = json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true});
        loop {
            let got = call(&logs, "GetLogEvents", input.clone())
                .await
                .expect("get");
            for e in got["events"].as_array().expect("events") {
                messages.push(e["message"].as_str().expect("message").to_string());
            }
            if input["nextToken"] == got["nextForwardToken"] {
                break;
            }
            input["nextToken"] = got["nextForwardToken"].clone();
        }
        assert_eq!(messages.len(), 3);
        messages.retain(|m| m.len() < 100);
        assert_eq!(messages, ["kept", "ok"]);
    }

    #[tokio::test]
    async fn sweep_deletes_expired_events_from_memory_and_store() {
        let (logs, store, clock) = service().await;
        let now = clock.now_ms();
        logs.append(
            "000000000000",
            "us-east-1",
            "/aws/lambda/f",
            "s1",
            vec![
                LogEvent {
                    timestamp_ms: now - 2 * DAY_MS,
                    message: "old".into(),
                },
                LogEvent {
                    timestamp_ms: now,
                    message: "new".into(),
                },
            ],
        )
        .await
        .expect("append");
        assert_eq!(store.scan("logs.event").await.expect("scan").len(), 2);
        assert_eq!(
            sweep_expired(&logs).await.expect("sweep"),
            0,
            "no retention, no sweep"
        );
        call(
            &logs,
            "PutRetentionPolicy",
            json!({"logGroupName": "/aws/lambda/f", "retentionInDays": 1}),
        )
        .await
        .expect("retention");
        assert_eq!(sweep_expired(&logs).await.expect("sweep"), 1);
        assert_eq!(store.scan("logs.event").await.expect("scan").len(), 1);
        clock.advance_ms(2 * DAY_MS).expect("manual");
        assert_eq!(sweep_expired(&logs).await.expect("sweep"), 1);
        assert!(store.scan("logs.event").await.expect("scan").is_empty());
    }

    #[tokio::test]
    async fn sink_creates_group_and_stream_and_survives_reload() {
        let (logs, store, clock) = service().await;
        let now = clock.now_ms();
        for i in 0..3 {
            logs.append(
                "111111111111",
                "eu-west-1",
                "/aws/lambda/f",
                "2024/01/01/[$LATEST]abc",
                vec![LogEvent {
                    timestamp_ms: now + i,
                    message: format!("line {i}"),
                }],
            )
            .await
            .expect("append");
        }
        // Another account sees nothing.
        let err = call(
            &logs,
            "DescribeLogStreams",
            json!({"logGroupName": "/aws/lambda/f"}),
        )
        .await
        .expect_err("isolated");
        assert_eq!(err.code, "ResourceNotFoundException");

        let reloaded = Logs::start(store, clock).await.expect("reload");
        let ctx = RequestContext {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            ..ctx()
        };
        let got = reloaded
            .call(
                &ctx,
                "FilterLogEvents",
                json!({"logGroupName": "/aws/lambda/f", "filterPattern": "line"}),
            )
            .await
            .expect("filter");
        let messages: Vec<&str> = got["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert_eq!(messages, ["line 0", "line 1", "line 2"]);
    }

    #[tokio::test]
    async fn filter_interleaves_streams_and_pages() {
        let (logs, _, clock) = service().await;
        let now = clock.now_ms();
        for (stream, offsets) in [("a", [0, 3, 6]), ("b", [1, 3, 7]), ("c", [2, 5, 8])] {
            logs.append(
                "000000000000",
                "us-east-1",
                "g",
                stream,
                offsets
                    .iter()
                    .map(|o| LogEvent {
                        timestamp_ms: now + o,
                        message: format!("{stream}{o}"),
                    })
                    .collect(),
            )
            .await
            .expect("append");
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut input = json!({"logGroupName": "g", "limit": 2});
            if let Some(t) = &token {
                input["nextToken"] = json!(t);
            }
            let page = call(&logs, "FilterLogEvents", input).await.expect("filter");
            for e in page["events"].as_array().expect("events") {
                seen.push(e["message"].as_str().expect("message").to_string());
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, ["a0", "b1", "c2", "a3", "b3", "c5", "a6", "b7", "c8"]);

        let page = call(
            &logs,
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNames": ["a", "c"], "startTime": now + 3,
                   "endTime": now + 8, "filterPattern": "?a3 ?c5 ?c8"}),
        )
        .await
        .expect("filter");
        let messages: Vec<&str> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert_eq!(messages, ["a3", "c5"], "endTime is exclusive");

        let err = call(
            &logs,
            "FilterLogEvents",
            json!({"logGroupName": "g", "filterPattern": "{ $.a = "}),
        )
        .await
        .expect_err("bad pattern");
        assert_eq!(err.code, "InvalidParameterException");
        assert!(
            err.message.starts_with("Invalid filter pattern"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn reset_forgets_everything() {
        let (logs, store, _) = service().await;
        logs.append(
            "000000000000",
            "us-east-1",
            "g",
            "s",
            vec![LogEvent {
                timestamp_ms: 1,
                message: "m".into(),
            }],
        )
        .await
        .expect("append");
        logs.reset().await.expect("reset");
        let groups = call(&logs, "DescribeLogGroups", json!({}))
            .await
            .expect("describe");
        assert_eq!(groups["logGroups"], json!([]));
        for ns in ["logs.group", "logs.stream", "logs.event"] {
            assert!(store.scan(ns).await.expect("scan").is_empty(), "{ns}");
        }
        let err = call(&logs, "StartQuery", json!({}))
            .await
            .expect_err("not implemented");
        assert_eq!((err.code.as_ref(), err.status), ("NotImplemented", 501));
    }
}
