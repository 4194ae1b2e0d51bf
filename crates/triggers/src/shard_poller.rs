//! Event source mappings for Kinesis streams, with AWS's semantics:
//!
//! - One poller per shard, in order, one batch at a time (ParallelizationFactor 1). A shard
//!   without a checkpoint starts at the mapping's `StartingPosition` (TRIM_HORIZON, LATEST,
//!   AT_TIMESTAMP); one with a checkpoint continues after it.
//! - A batch is up to `BatchSize` records, gathered for up to `MaximumBatchingWindowInSeconds`,
//!   sent as AWS's Kinesis event.
//! - A failing batch blocks its shard and is retried (back-off on the clock, 1 s doubling up to
//!   1 minute) until `MaximumRetryAttempts` retries are spent (-1: until its records leave the
//!   stream's retention) or its oldest record is older than `MaximumRecordAgeInSeconds`. With
//!   `BisectBatchOnFunctionError` a failing batch is split in two and each half tried in order
//!   (the halves carry the batch's attempt count). With `ReportBatchItemFailures` the records
//!   before the lowest reported sequence number are done and the rest is retried.
//! - A batch that gives up sends its metadata (`KinesisBatchInfo`, AWS's shape) to the
//!   on-failure destination (an SQS queue) and the shard moves on.
//! - Checkpoints (`triggers.shard`, `uuid/shardId` -> last finished sequence number) are
//!   durable before the next batch is read, so a restart never reprocesses a finished batch;
//!   the batch in flight at a crash runs again (AWS is at-least-once too).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};

use serde_json::{Value, json};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{EventSourcePollers, FunctionInvoker, MappingSpec, Service, Services};
use tsumiki_store::{Batch, Store};

use crate::deliver::{self, Destination};

const NS: &str = "triggers.shard";
/// How long an idle shard waits before asking for records again (AWS polls about once a second).
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const BACKOFF_START_MS: i64 = 1_000;
const BACKOFF_MAX_MS: i64 = 60_000;

/// The pollers of every Kinesis event source mapping.
pub struct ShardPollers {
    store: Store,
    clock: Arc<Clock>,
    invoker: Weak<dyn FunctionInvoker>,
    services: OnceLock<Services>,
    running: parking_lot::Mutex<HashMap<String, (MappingSpec, tokio::task::AbortHandle)>>,
    me: Weak<ShardPollers>,
}

impl ShardPollers {
    pub fn new(
        store: Store,
        clock: Arc<Clock>,
        invoker: Weak<dyn FunctionInvoker>,
    ) -> Arc<ShardPollers> {
        Arc::new_cyclic(|me| ShardPollers {
            store,
            clock,
            invoker,
            services: OnceLock::new(),
            running: parking_lot::Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Gives the pollers the served services (the Kinesis they poll, the SQS they report to).
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }
}

/// Whether a mapping's source is a Kinesis stream.
pub fn is_stream_source(arn: &str) -> bool {
    arn.starts_with("arn:aws:kinesis:")
}

impl EventSourcePollers for ShardPollers {
    fn configure(&self, spec: MappingSpec) {
        let mut running = self.running.lock();
        if let Some((old, handle)) = running.get(&spec.uuid) {
            if *old == spec {
                return;
            }
            handle.abort();
        }
        running.remove(&spec.uuid);
        if !spec.enabled || !is_stream_source(&spec.source_arn) {
            return;
        }
        let handle = tokio::spawn(run(self.me.clone(), spec.clone())).abort_handle();
        running.insert(spec.uuid.clone(), (spec, handle));
    }

    fn remove(&self, uuid: &str) {
        if let Some((_, handle)) = self.running.lock().remove(uuid) {
            handle.abort();
        }
        // A deleted mapping's checkpoints go with it.
        let mut batch = Batch::new();
        batch.delete_prefix(NS, format!("{uuid}/"));
        let commit = self.store.commit(batch);
        tokio::spawn(async move {
            if let Err(e) = commit.await {
                tracing::warn!(error = %e, "could not forget a mapping's checkpoints");
            }
        });
    }
}

/// What a shard's loop needs from its mapping.
struct Shard {
    spec: MappingSpec,
    id: String,
    ctx: RequestContext,
}

fn context(arn: &str) -> Option<RequestContext> {
    let (_, region, account, _) = tsumiki_core::ids::parse_arn(arn)?;
    Some(RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        request_id: String::new(),
        base_url: format!("https://kinesis.{region}.amazonaws.com"),
        access_key: None,
        path: "/".to_string(),
    })
}

/// The pieces a loop takes from the pollers on each turn (they hold the pollers weakly).
struct Parts {
    kinesis: Arc<dyn Service>,
    services: Services,
    clock: Arc<Clock>,
    store: Store,
    invoker: Weak<dyn FunctionInvoker>,
}

async fn parts(pollers: &Weak<ShardPollers>) -> Option<Parts> {
    loop {
        let p = pollers.upgrade()?;
        if let Some(services) = p.services.get()
            && let Some(kinesis) = services.get("kinesis")
        {
            return Some(Parts {
                kinesis: kinesis.clone(),
                services: services.clone(),
                clock: p.clock.clone(),
                store: p.store.clone(),
                invoker: p.invoker.clone(),
            });
        }
        drop(p);
        Clock::pause_real(IDLE_POLL).await;
    }
}

/// One mapping: finds the stream's shards and runs one loop per shard. Aborting this task
/// drops the set, which aborts every shard loop.
async fn run(pollers: Weak<ShardPollers>, spec: MappingSpec) {
    let Some(ctx) = context(&spec.source_arn) else {
        return;
    };
    let shards = loop {
        let Some(p) = parts(&pollers).await else {
            return;
        };
        match p
            .kinesis
            .call(&ctx, "ListShards", json!({"StreamARN": spec.source_arn}))
            .await
        {
            Ok(out) => {
                break out["Shards"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s["ShardId"].as_str().map(String::from))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
            }
            Err(e) => {
                // A stream that does not exist (yet): AWS keeps the mapping; so do we.
                tracing::warn!(mapping = %spec.uuid, error = %e.message, "listing the stream's shards failed");
                drop(p);
                Clock::pause_real(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    let mut set = tokio::task::JoinSet::new();
    for id in shards {
        let shard = Shard {
            spec: spec.clone(),
            id,
            ctx: ctx.clone(),
        };
        set.spawn(shard_loop(pollers.clone(), shard));
    }
    while set.join_next().await.is_some() {}
}

fn checkpoint_key(shard: &Shard) -> String {
    format!("{}/{}", shard.spec.uuid, shard.id)
}

async fn save_checkpoint(store: &Store, shard: &Shard, seq: &str) {
    let mut batch = Batch::new();
    batch.put(NS, checkpoint_key(shard), seq.as_bytes().to_vec());
    if let Err(e) = store.commit(batch).await {
        tracing::error!(mapping = %shard.spec.uuid, shard = %shard.id, error = %e, "could not save a checkpoint");
    }
}

async fn iterator(p: &Parts, shard: &Shard, checkpoint: Option<&str>) -> Result<String, AwsError> {
    let mut input = json!({"StreamARN": shard.spec.source_arn, "ShardId": shard.id});
    match (checkpoint, shard.spec.starting_position.as_deref()) {
        (Some(seq), _) => {
            input["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
            input["StartingSequenceNumber"] = json!(seq);
        }
        (None, Some("AT_TIMESTAMP")) => {
            input["ShardIteratorType"] = json!("AT_TIMESTAMP");
            input["Timestamp"] =
                json!(shard.spec.starting_position_timestamp_ms.unwrap_or(0) as f64 / 1000.0);
        }
        (None, Some("LATEST")) => input["ShardIteratorType"] = json!("LATEST"),
        (None, _) => input["ShardIteratorType"] = json!("TRIM_HORIZON"),
    }
    let out = p
        .kinesis
        .call(&shard.ctx, "GetShardIterator", input)
        .await?;
    Ok(out["ShardIterator"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// One shard: read a batch, process it (with retries), checkpoint, repeat.
async fn shard_loop(pollers: Weak<ShardPollers>, shard: Shard) {
    let mut checkpoint: Option<String> = match pollers.upgrade() {
        Some(p) => p
            .store
            .get(NS, checkpoint_key(&shard).as_bytes())
            .await
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).to_string()),
        None => return,
    };
    let mut iter: Option<String> = None;
    let size = shard.spec.batch_size.max(1) as usize;
    loop {
        let Some(p) = parts(&pollers).await else {
            return;
        };
        let mut batch: Vec<Value> = Vec::new();
        let mut deadline = None;
        loop {
            let it = match &iter {
                Some(it) => it.clone(),
                None => match iterator(&p, &shard, checkpoint.as_deref()).await {
                    Ok(it) => it,
                    Err(e) => {
                        tracing::warn!(mapping = %shard.spec.uuid, shard = %shard.id, error = %e.message, "no shard iterator");
                        Clock::pause_real(std::time::Duration::from_secs(1)).await;
                        break;
                    }
                },
            };
            let want = size - batch.len();
            let out = match p
                .kinesis
                .call(
                    &shard.ctx,
                    "GetRecords",
                    json!({"ShardIterator": it, "Limit": want.min(10_000)}),
                )
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    // An expired iterator is taken again from the checkpoint (records already
                    // gathered are dropped and read again).
                    if e.code != "ExpiredIteratorException" {
                        tracing::warn!(mapping = %shard.spec.uuid, shard = %shard.id, error = %e.message, "GetRecords failed");
                        Clock::pause_real(std::time::Duration::from_secs(1)).await;
                    }
                    iter = None;
                    batch.clear();
                    break;
                }
            };
            iter = out["NextShardIterator"].as_str().map(String::from);
            let got = out["Records"].as_array().cloned().unwrap_or_default();
            let empty = got.is_empty();
            batch.extend(got);
            if batch.is_empty() {
                Clock::pause_real(IDLE_POLL).await;
                continue;
            }
            let due = *deadline
                .get_or_insert(p.clock.now_ms() + i64::from(shard.spec.batching_window_s) * 1000);
            if batch.len() >= size || p.clock.now_ms() >= due {
                break;
            }
            if empty {
                Clock::pause_real(IDLE_POLL).await;
            }
        }
        if batch.is_empty() {
            continue;
        }
        process(&p, &shard, batch, &mut checkpoint).await;
    }
}

fn seq_of(r: &Value) -> &str {
    r["SequenceNumber"].as_str().unwrap_or_default()
}

fn arrival_ms(r: &Value) -> i64 {
    (r["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0) * 1000.0) as i64
}

/// AWS's Kinesis event record for one record read from the shard.
fn event_record(r: &Value, shard: &Shard) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r["PartitionKey"],
            "sequenceNumber": r["SequenceNumber"],
            "data": r["Data"],
            "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"],
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{}:{}", shard.id, seq_of(r)),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": format!("arn:aws:iam::{}:role/tsumiki-event-source-mapping", shard.ctx.account),
        "awsRegion": shard.ctx.region,
        "eventSourceARN": shard.spec.source_arn,
    })
}

/// How one invocation of a batch ended.
enum Outcome {
    Done,
    /// The records from this index on failed (0: all of them).
    Failed {
        from: usize,
        function_error: Option<String>,
        version: String,
    },
    /// The invocation did not run (throttled, function missing): retried without counting.
    NotRun,
}

async fn invoke(p: &Parts, shard: &Shard, records: &[Value]) -> Outcome {
    let Some(invoker) = p.invoker.upgrade() else {
        return Outcome::NotRun;
    };
    let event =
        json!({"Records": records.iter().map(|r| event_record(r, shard)).collect::<Vec<_>>()});
    let request_id = tsumiki_core::ids::request_id();
    match invoker
        .invoke(
            &shard.spec.function,
            event.to_string().into_bytes(),
            &request_id,
        )
        .await
    {
        Ok(r) if r.function_error.is_none() => {
            if !shard.spec.report_item_failures {
                return Outcome::Done;
            }
            match first_failed(&r.payload, records) {
                None => Outcome::Done,
                Some(from) => Outcome::Failed {
                    from,
                    function_error: None,
                    version: r.executed_version,
                },
            }
        }
        Ok(r) => Outcome::Failed {
            from: 0,
            function_error: r.function_error,
            version: r.executed_version,
        },
        Err(e) => {
            tracing::info!(mapping = %shard.spec.uuid, error = %e.code, "batch not processed; retrying");
            Outcome::NotRun
        }
    }
}

/// The index of the first record a partial batch response reports as failed. A response
/// naming a sequence number not in the batch (or an empty identifier) fails the whole batch,
/// as AWS does.
fn first_failed(payload: &[u8], records: &[Value]) -> Option<usize> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let failures = v.get("batchItemFailures")?.as_array()?;
    let mut first: Option<usize> = None;
    for f in failures {
        let id = f
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(i) = records.iter().position(|r| seq_of(r) == id) else {
            return Some(0);
        };
        first = Some(first.map_or(i, |x| x.min(i)));
    }
    first
}

/// Runs one batch to its end: success, or retries spent and reported to the destination. The
/// checkpoint moves after each finished piece.
async fn process(p: &Parts, shard: &Shard, batch: Vec<Value>, checkpoint: &mut Option<String>) {
    // Pieces in shard order, each with the attempts it has had.
    let mut work: VecDeque<(Vec<Value>, u32)> = VecDeque::from([(batch, 0)]);
    let mut backoff = BACKOFF_START_MS;
    while let Some((records, attempts)) = work.pop_front() {
        let spec = &shard.spec;
        let now = p.clock.now_ms();
        let oldest = records.first().map_or(now, arrival_ms);
        if spec.maximum_record_age_s >= 0
            && now - oldest > i64::from(spec.maximum_record_age_s) * 1000
        {
            give_up(p, shard, &records, attempts, "RecordAgeExceeded", None).await;
            finish(p, shard, &records, checkpoint).await;
            continue;
        }
        let (records, attempts, function_error, version) = match invoke(p, shard, &records).await {
            Outcome::Done => {
                finish(p, shard, &records, checkpoint).await;
                backoff = BACKOFF_START_MS;
                continue;
            }
            Outcome::NotRun => {
                p.clock.sleep_ms(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                work.push_front((records, attempts));
                continue;
            }
            Outcome::Failed {
                from,
                function_error,
                version,
            } => {
                let mut records = records;
                let rest = records.split_off(from);
                if !records.is_empty() {
                    finish(p, shard, &records, checkpoint).await;
                }
                (rest, attempts + 1, function_error, version)
            }
        };
        let info = (function_error, version);
        if spec.bisect_on_error && records.len() > 1 {
            let mut first = records;
            let second = first.split_off(first.len() / 2);
            work.push_front((second, attempts));
            work.push_front((first, attempts));
            continue;
        }
        let retries_spent =
            spec.maximum_retry_attempts >= 0 && attempts > spec.maximum_retry_attempts as u32;
        let too_old = spec.maximum_retry_attempts < 0 && expired(p, shard, &records).await;
        if retries_spent || too_old {
            let condition = if too_old {
                "RecordAgeExceeded"
            } else {
                "RetryAttemptsExhausted"
            };
            give_up(p, shard, &records, attempts, condition, Some(info)).await;
            finish(p, shard, &records, checkpoint).await;
            backoff = BACKOFF_START_MS;
            continue;
        }
        tracing::info!(mapping = %spec.uuid, shard = %shard.id, attempts, "batch failed; the shard waits and retries");
        p.clock.sleep_ms(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
        work.push_front((records, attempts));
    }
}

/// Whether the oldest record has left the stream's retention (unlimited retries end there).
async fn expired(p: &Parts, shard: &Shard, records: &[Value]) -> bool {
    let Some(first) = records.first() else {
        return true;
    };
    let Ok(out) = p
        .kinesis
        .call(
            &shard.ctx,
            "DescribeStreamSummary",
            json!({"StreamARN": shard.spec.source_arn}),
        )
        .await
    else {
        // A deleted stream's records are gone.
        return true;
    };
    let hours = out
        .pointer("/StreamDescriptionSummary/RetentionPeriodHours")
        .and_then(Value::as_i64)
        .unwrap_or(24);
    p.clock.now_ms() - arrival_ms(first) > hours * 3_600_000
}

async fn finish(p: &Parts, shard: &Shard, records: &[Value], checkpoint: &mut Option<String>) {
    if let Some(last) = records.last() {
        let seq = seq_of(last).to_string();
        save_checkpoint(&p.store, shard, &seq).await;
        *checkpoint = Some(seq);
    }
}

/// Sends AWS's on-failure record (the batch's metadata, not its records) to the destination.
async fn give_up(
    p: &Parts,
    shard: &Shard,
    records: &[Value],
    attempts: u32,
    condition: &str,
    info: Option<(Option<String>, String)>,
) {
    let spec = &shard.spec;
    tracing::warn!(mapping = %spec.uuid, shard = %shard.id, records = records.len(), condition, "skipping a batch that failed");
    let Some(dest) = &spec.on_failure else {
        return;
    };
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return;
    };
    let function_arn = p
        .invoker
        .upgrade()
        .and_then(|i| i.async_settings(&spec.function).ok())
        .map(|s| s.function_arn)
        .unwrap_or_else(|| spec.function.function.clone());
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if let Some((error, version)) = info {
        response["executedVersion"] = json!(version);
        if let Some(e) = error {
            response["functionError"] = json!(e);
        }
    }
    let body = json!({
        "requestContext": {
            "requestId": tsumiki_core::ids::request_id(),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": tsumiki_core::clock::iso8601_ms(p.clock.now_ms()),
        "KinesisBatchInfo": {
            "shardId": shard.id,
            "startSequenceNumber": seq_of(first),
            "endSequenceNumber": seq_of(last),
            "approximateArrivalOfFirstRecord": tsumiki_core::clock::iso8601_ms(arrival_ms(first)),
            "approximateArrivalOfLastRecord": tsumiki_core::clock::iso8601_ms(arrival_ms(last)),
            "batchSize": records.len(),
            "streamArn": spec.source_arn,
        },
    });
    let result = match deliver::parse(dest) {
        Destination::Sqs {
            region,
            account,
            name,
        } => deliver::to_sqs(&p.services, region, account, name, &body.to_string(), None).await,
        _ => Err(AwsError::not_implemented(
            "lambda",
            "on-failure destinations other than SQS for stream sources",
        )),
    };
    if let Err(e) = result {
        tracing::warn!(mapping = %spec.uuid, destination = %dest, error = %e.message, "could not deliver to the on-failure destination");
    }
}

/// Sends each mapping to the poller of its source: SQS queues to the queue pollers, Kinesis
/// streams to the shard pollers, so Lambda holds one handle.
pub struct PollerRouter {
    queues: Arc<dyn EventSourcePollers>,
    shards: Arc<dyn EventSourcePollers>,
}

impl PollerRouter {
    pub fn new(
        queues: Arc<dyn EventSourcePollers>,
        shards: Arc<dyn EventSourcePollers>,
    ) -> Arc<PollerRouter> {
        Arc::new(PollerRouter { queues, shards })
    }
}

impl EventSourcePollers for PollerRouter {
    fn configure(&self, spec: MappingSpec) {
        if is_stream_source(&spec.source_arn) {
            self.shards.configure(spec);
        } else {
            self.queues.configure(spec);
        }
    }

    fn remove(&self, uuid: &str) {
        self.queues.remove(uuid);
        self.shards.remove(uuid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: &str) -> Value {
        json!({"SequenceNumber": seq, "ApproximateArrivalTimestamp": 1.5, "Data": "aGk=", "PartitionKey": "k"})
    }

    #[test]
    fn partial_batch_responses_name_the_first_failed_record() {
        let records = vec![rec("1"), rec("2"), rec("3")];
        let r = |v: Value| first_failed(v.to_string().as_bytes(), &records);
        assert_eq!(r(json!({"batchItemFailures": []})), None);
        assert_eq!(
            r(json!({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]})),
            Some(1)
        );
        assert_eq!(
            r(json!({"batchItemFailures": [{"itemIdentifier": "9"}]})),
            Some(0)
        );
        assert_eq!(r(json!({"batchItemFailures": [{}]})), Some(0));
        assert_eq!(r(json!(null)), None);
    }

    #[test]
    fn event_records_have_aws_shape() {
        let shard = Shard {
            spec: MappingSpec {
                uuid: "u".into(),
                source_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
                function: tsumiki_ports::FunctionTarget {
                    account: "123456789012".into(),
                    region: "us-east-1".into(),
                    function: "f".into(),
                    qualifier: None,
                },
                batch_size: 100,
                batching_window_s: 0,
                report_item_failures: false,
                filters: vec![],
                max_concurrency: 1,
                enabled: true,
                starting_position: Some("TRIM_HORIZON".into()),
                starting_position_timestamp_ms: None,
                maximum_retry_attempts: -1,
                maximum_record_age_s: -1,
                bisect_on_error: false,
                on_failure: None,
            },
            id: "shardId-000000000000".into(),
            ctx: context("arn:aws:kinesis:us-east-1:123456789012:stream/s").expect("a stream ARN"),
        };
        let e = event_record(&rec("49"), &shard);
        assert_eq!(e["eventID"], "shardId-000000000000:49");
        assert_eq!(e["kinesis"]["data"], "aGk=");
        assert_eq!(e["kinesis"]["kinesisSchemaVersion"], "1.0");
        assert_eq!(e["eventSource"], "aws:kinesis");
        assert_eq!(e["awsRegion"], "us-east-1");
        assert!(is_stream_source(&shard.spec.source_arn));
        assert!(!is_stream_source("arn:aws:sqs:us-east-1:1:q"));
    }
}
