//! Delivery: the flusher (one task sleeping on the clock until the next buffer is due by
//! interval, woken early when records arrive), one flush (intent, transformation,
//! compression, the S3 writes through `ObjectStore`, then the records leave the store), and
//! the Kinesis source reader (GetRecords through `Services`, records and checkpoint
//! committed together).
//!
//! A flush is recorded as an intent before its first S3 write and ended in the batch that
//! deletes its records, so a crash in between redoes it with the same object keys: S3 sees
//! the same objects overwritten, and every acknowledged record is delivered exactly once.
//! A failed S3 write keeps the records and retries after `RETRY_MS` (AWS retries S3 for up
//! to 24 hours).

use std::sync::{Arc, Weak};

use base64::Engine;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::Firehose;
use crate::records::KinesisMeta;
use crate::state::{self, BufRecord, Intent, StreamKey, StreamMeta};
use crate::streams::{Destination, LambdaProcessor};

/// After a failed delivery, the next attempt waits this long.
const RETRY_MS: i64 = 10_000;
/// How often Kinesis sources are read.
const POLL_MS: i64 = 1_000;
/// When nothing is buffered, the flusher still looks again this often.
const IDLE_MS: i64 = 60_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn ctx_for(account: &str, region: &str) -> RequestContext {
    RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        request_id: tsumiki_core::ids::request_id(),
        base_url: String::new(),
        access_key: None,
        path: "/".into(),
    }
}

pub(crate) async fn flusher(weak: Weak<Firehose>) {
    loop {
        let Some(fh) = weak.upgrade() else {
            return;
        };
        let now = fh.clock.now_ms();
        let (due, next) = fh.due(now);
        for key in due {
            let worker = fh.clone();
            tokio::spawn(async move { worker.flush(key).await });
        }
        let (clock, wake) = (fh.clock.clone(), fh.wake.clone());
        drop(fh);
        tokio::select! {
            _ = clock.sleep_until(next.min(now + IDLE_MS)) => {}
            _ = wake.notified() => {}
        }
    }
}

impl Firehose {
    /// The streams whose buffer is due now (marked as flushing), and when the next one is.
    fn due(&self, now: i64) -> (Vec<StreamKey>, i64) {
        if self.objects.get().is_none() {
            return (Vec::new(), i64::MAX);
        }
        let mut state = self.state.lock();
        let mut due = Vec::new();
        let mut next = i64::MAX;
        for (key, stream) in state.streams.iter_mut() {
            if stream.flushing {
                continue;
            }
            let at = if stream.intent.is_some() {
                stream.retry_at_ms
            } else if let Some(oldest) = stream.buffer.values().next() {
                let Ok(dest) = Destination::parse(&stream.meta.destination) else {
                    continue;
                };
                if stream.buffered_bytes >= dest.size_bytes {
                    now
                } else {
                    (oldest.arrival_ms + dest.interval_ms).max(stream.retry_at_ms)
                }
            } else {
                continue;
            };
            if at <= now {
                stream.flushing = true;
                due.push(key.clone());
            } else {
                next = next.min(at);
            }
        }
        (due, next)
    }

    async fn flush(self: Arc<Self>, key: StreamKey) {
        let result = self.flush_once(&key).await;
        {
            let mut state = self.state.lock();
            if let Some(stream) = state.streams.get_mut(&key) {
                stream.flushing = false;
                if let Err(e) = &result {
                    stream.retry_at_ms = self.clock.now_ms() + RETRY_MS;
                    tracing::warn!(
                        delivery_stream = %key.name, error = %e,
                        "Firehose could not deliver a buffer; it will retry."
                    );
                }
            }
        }
        self.wake.notify_one();
    }

    async fn flush_once(&self, key: &StreamKey) -> Result<(), String> {
        let (meta, intent, records, commit) = {
            let mut state = self.state.lock();
            let Some(stream) = state.streams.get_mut(key) else {
                return Ok(());
            };
            let dest = Destination::parse(&stream.meta.destination).map_err(|e| e.message)?;
            let mut batch = Batch::new();
            let intent = match &stream.intent {
                Some(i) => i.clone(),
                None => {
                    let Some((&first, oldest)) = stream.buffer.iter().next() else {
                        return Ok(());
                    };
                    let mut last = first;
                    let mut size = 0;
                    for (&seq, r) in &stream.buffer {
                        if size > 0 && size + r.len() > dest.size_bytes {
                            break;
                        }
                        size += r.len();
                        last = seq;
                    }
                    let intent = Intent {
                        first,
                        last,
                        at_ms: oldest.arrival_ms,
                        random: uuid::Uuid::new_v4().to_string(),
                        version: Some(stream.meta.version),
                        destination: Some(stream.meta.destination.clone()),
                    };
                    state::put_intent(&mut batch, key, &intent);
                    stream.intent = Some(intent.clone());
                    intent
                }
            };
            let records: Vec<BufRecord> = stream
                .buffer
                .range(intent.first..=intent.last)
                .map(|(_, r)| r.clone())
                .collect();
            (
                stream.meta.clone(),
                intent,
                records,
                self.store.commit(batch),
            )
        };
        commit.await.map_err(|e| e.to_string())?;
        self.deliver(key, &meta, &intent, &records).await?;
        let commit = {
            let mut state = self.state.lock();
            let Some(stream) = state.streams.get_mut(key) else {
                return Ok(());
            };
            let mut batch = Batch::new();
            for seq in intent.first..=intent.last {
                if let Some(r) = stream.buffer.remove(&seq) {
                    stream.buffered_bytes = stream.buffered_bytes.saturating_sub(r.len());
                    state::delete_record(&mut batch, key, seq);
                }
            }
            state::delete_intent(&mut batch, key, &intent);
            stream.intent = None;
            stream.retry_at_ms = 0;
            self.store.commit(batch)
        };
        commit.await.map_err(|e| e.to_string())
    }

    /// Transforms, compresses and writes one flush's objects.
    async fn deliver(
        &self,
        key: &StreamKey,
        meta: &StreamMeta,
        intent: &Intent,
        records: &[BufRecord],
    ) -> Result<(), String> {
        let dest = Destination::parse(intent.destination.as_ref().unwrap_or(&meta.destination))
            .map_err(|e| e.message)?;
        let version = intent.version.unwrap_or(meta.version);
        let objects = self.objects.get().cloned().ok_or("S3 is not served.")?;
        let (body, failed) = match &dest.lambda {
            Some(lambda) => self.transform(key, meta, lambda, records).await,
            None => {
                let mut body = Vec::new();
                for r in records {
                    body.extend(b64().decode(&r.data).unwrap_or_default());
                }
                (body, Vec::new())
            }
        };
        let ctx = ctx_for(&key.account, &key.region);
        if !body.is_empty() {
            let naming = crate::keys::Naming {
                stream: &meta.name,
                version,
                at_ms: intent.at_ms,
                random: &intent.random,
                extension: &dest.extension,
            };
            let object_key = crate::keys::object_key(&dest.prefix, &naming)?;
            let body = if dest.gzip { gzip(&body) } else { body };
            objects
                .put_object(&ctx, &dest.bucket, &object_key, body.into(), None)
                .await
                .map_err(|e| format!("{}: {}", e.code, e.message))?;
        }
        if !failed.is_empty() {
            let naming = crate::keys::Naming {
                stream: &meta.name,
                version,
                at_ms: intent.at_ms,
                random: &intent.random,
                extension: "",
            };
            let error_key = crate::keys::error_key(
                dest.error_prefix.as_deref(),
                &dest.prefix,
                "processing-failed",
                &naming,
            )?;
            let mut lines = String::new();
            for f in &failed {
                lines.push_str(&f.to_string());
                lines.push('\n');
            }
            objects
                .put_object(
                    &ctx,
                    &dest.bucket,
                    &error_key,
                    lines.into_bytes().into(),
                    None,
                )
                .await
                .map_err(|e| format!("{}: {}", e.code, e.message))?;
        }
        Ok(())
    }

    /// Runs the records through the Lambda processor in invocations of at most its buffer
    /// size; answers the transformed data (in record order) and the `processing-failed`
    /// documents of the records that failed.
    async fn transform(
        &self,
        key: &StreamKey,
        meta: &StreamMeta,
        lambda: &LambdaProcessor,
        records: &[BufRecord],
    ) -> (Vec<u8>, Vec<Value>) {
        let mut body = Vec::new();
        let mut failed = Vec::new();
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut size = 0;
            while end < records.len()
                && (end == start || size + records[end].len() <= lambda.buffer_bytes)
            {
                size += records[end].len();
                end += 1;
            }
            let chunk = &records[start..end];
            start = end;
            self.transform_chunk(key, meta, lambda, chunk, &mut body, &mut failed)
                .await;
        }
        (body, failed)
    }

    async fn transform_chunk(
        &self,
        key: &StreamKey,
        meta: &StreamMeta,
        lambda: &LambdaProcessor,
        chunk: &[BufRecord],
        body: &mut Vec<u8>,
        failed: &mut Vec<Value>,
    ) {
        let source_arn = meta
            .kinesis_source
            .as_ref()
            .and_then(|k| k.get("KinesisStreamARN"))
            .cloned();
        let mut event = json!({
            "invocationId": uuid::Uuid::new_v4().to_string(),
            "deliveryStreamArn": key.arn(),
            "region": key.region,
            "records": chunk.iter().map(|r| {
                let mut rec = json!({
                    "recordId": r.id,
                    "approximateArrivalTimestamp": r.arrival_ms,
                    "data": r.data,
                });
                if let Some((shard, pk, seq)) = &r.kinesis {
                    rec["kinesisRecordMetadata"] = json!({
                        "shardId": shard,
                        "partitionKey": pk,
                        "approximateArrivalTimestamp": r.arrival_ms,
                        "sequenceNumber": seq,
                        "subsequenceNumber": "",
                    });
                }
                rec
            }).collect::<Vec<_>>(),
        });
        if let Some(arn) = source_arn {
            event["sourceKinesisStreamArn"] = arn;
        }
        let payload = event.to_string().into_bytes();
        let (account, region) = match tsumiki_core::ids::parse_arn(&lambda.arn) {
            Some((_, region, account, _)) => (account.to_string(), region.to_string()),
            None => (key.account.clone(), key.region.clone()),
        };
        let target = tsumiki_ports::FunctionTarget {
            account,
            region,
            function: lambda.arn.clone(),
            qualifier: None,
        };
        let invoker = self.invoker.get().and_then(Weak::upgrade);
        let mut attempts = 0;
        let mut last_error = ("Lambda.FunctionError".to_string(), String::new());
        let response = loop {
            attempts += 1;
            let Some(invoker) = &invoker else {
                last_error = (
                    "Lambda.ServiceUnavailable".into(),
                    "Lambda is not served.".into(),
                );
                break None;
            };
            match invoker
                .invoke(&target, payload.clone(), &tsumiki_core::ids::request_id())
                .await
            {
                Ok(r) if r.function_error.is_none() => break Some(r.payload),
                Ok(_) => last_error = (
                    "Lambda.FunctionError".into(),
                    "The Lambda function was successfully invoked but it returned an error result."
                        .into(),
                ),
                Err(e) => last_error = (format!("Lambda.{}", e.code), e.message),
            }
            if attempts > lambda.retries {
                break None;
            }
        };
        let now = self.clock.now_ms();
        let fail = |r: &BufRecord, code: &str, message: &str| {
            json!({
                "attemptsMade": attempts,
                "arrivalTimestamp": r.arrival_ms,
                "errorCode": code,
                "errorMessage": message,
                "attemptEndingTimestamp": now,
                "rawData": r.data,
                "lambdaArn": lambda.arn,
            })
        };
        let Some(response) = response else {
            failed.extend(chunk.iter().map(|r| fail(r, &last_error.0, &last_error.1)));
            return;
        };
        let outputs: Vec<Value> = match serde_json::from_slice::<Value>(&response) {
            Ok(v) => match v.get("records").and_then(Value::as_array) {
                Some(a) => a.clone(),
                None => {
                    failed.extend(chunk.iter().map(|r| {
                        fail(
                            r,
                            "Lambda.MissingRecordId",
                            "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.",
                        )
                    }));
                    return;
                }
            },
            Err(_) => {
                failed.extend(chunk.iter().map(|r| {
                    fail(
                        r,
                        "Lambda.JsonProcessingException",
                        "The Lambda function's response is not valid JSON.",
                    )
                }));
                return;
            }
        };
        for r in chunk {
            let out = outputs
                .iter()
                .find(|o| o.get("recordId").and_then(Value::as_str) == Some(r.id.as_str()));
            let Some(out) = out else {
                failed.push(fail(
                    r,
                    "Lambda.MissingRecordId",
                    "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.",
                ));
                continue;
            };
            match out.get("result").and_then(Value::as_str) {
                Some("Ok") => {
                    let data = out.get("data").and_then(Value::as_str).unwrap_or_default();
                    match b64().decode(data) {
                        Ok(bytes) => body.extend(bytes),
                        Err(_) => failed.push(fail(
                            r,
                            "Lambda.InvalidRecordData",
                            "The record data returned by the Lambda function is not valid base64.",
                        )),
                    }
                }
                Some("Dropped") => {}
                Some("ProcessingFailed") => failed.push(fail(
                    r,
                    "Lambda.ProcessingFailedStatus",
                    "ProcessingFailed status set for record",
                )),
                other => failed.push(fail(
                    r,
                    "Lambda.InvalidRecordResult",
                    &format!(
                        "Invalid result {} for record; expected Ok, Dropped or ProcessingFailed.",
                        other.unwrap_or("(missing)")
                    ),
                )),
            }
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

/// Reads every Kinesis-sourced delivery stream's shards once a second (on the clock).
pub(crate) async fn kinesis_reader(weak: Weak<Firehose>) {
    loop {
        let Some(fh) = weak.upgrade() else {
            return;
        };
        fh.read_kinesis_once().await;
        let clock = fh.clock.clone();
        drop(fh);
        clock.sleep_ms(POLL_MS).await;
    }
}

/// A Kinesis-sourced delivery stream as the reader needs it: its key, the source stream's
/// ARN, when it was created, and its checkpoints (shard id, last sequence number buffered).
type Source = (StreamKey, String, i64, Vec<(String, String)>);

impl Firehose {
    async fn read_kinesis_once(&self) {
        let sources: Vec<Source> = {
            let state = self.state.lock();
            state
                .streams
                .iter()
                .filter_map(|(key, s)| {
                    let arn = s
                        .meta
                        .kinesis_source
                        .as_ref()?
                        .get("KinesisStreamARN")?
                        .as_str()?;
                    Some((
                        key.clone(),
                        arn.to_string(),
                        s.meta.created_ms,
                        s.checkpoints
                            .iter()
                            .map(|(a, b)| (a.clone(), b.clone()))
                            .collect(),
                    ))
                })
                .collect()
        };
        if sources.is_empty() {
            return;
        }
        let kinesis = self
            .services
            .read()
            .as_ref()
            .and_then(|s| s.get("kinesis").cloned());
        let Some(kinesis) = kinesis else {
            return;
        };
        for (key, arn, created_ms, checkpoints) in sources {
            if let Err(e) = self
                .read_stream(&kinesis, &key, &arn, created_ms, &checkpoints)
                .await
            {
                tracing::debug!(
                    delivery_stream = %key.name, source = %arn, error = %e,
                    "Firehose could not read its Kinesis source."
                );
            }
        }
    }

    async fn read_stream(
        &self,
        kinesis: &Arc<dyn tsumiki_ports::Service>,
        key: &StreamKey,
        arn: &str,
        created_ms: i64,
        checkpoints: &[(String, String)],
    ) -> Result<(), AwsError> {
        let (region, account) = match tsumiki_core::ids::parse_arn(arn) {
            Some((_, region, account, _)) => (region.to_string(), account.to_string()),
            None => return Ok(()),
        };
        let ctx = ctx_for(&account, &region);
        let shards = kinesis
            .call(&ctx, "ListShards", json!({"StreamARN": arn}))
            .await?;
        for shard in shards
            .get("Shards")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(shard_id) = shard.get("ShardId").and_then(Value::as_str) else {
                continue;
            };
            let mut request = json!({"StreamARN": arn, "ShardId": shard_id});
            match checkpoints.iter().find(|(s, _)| s == shard_id) {
                Some((_, seq)) => {
                    request["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                    request["StartingSequenceNumber"] = json!(seq);
                }
                // A new delivery stream reads what arrives after it was created.
                None => {
                    request["ShardIteratorType"] = json!("AT_TIMESTAMP");
                    request["Timestamp"] = json!(created_ms as f64 / 1000.0);
                }
            }
            let iterator = kinesis.call(&ctx, "GetShardIterator", request).await?;
            let Some(iterator) = iterator.get("ShardIterator").and_then(Value::as_str) else {
                continue;
            };
            let got = kinesis
                .call(
                    &ctx,
                    "GetRecords",
                    json!({"ShardIterator": iterator, "Limit": 10000}),
                )
                .await?;
            let records: Vec<(String, Option<KinesisMeta>)> = got
                .get("Records")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let data = r.get("Data")?.as_str()?.to_string();
                    let pk = r.get("PartitionKey")?.as_str()?.to_string();
                    let seq = r.get("SequenceNumber")?.as_str()?.to_string();
                    Some((data, Some((shard_id.to_string(), pk, seq))))
                })
                .collect();
            let Some(last) = records
                .last()
                .and_then(|(_, m)| m.as_ref())
                .map(|m| m.2.clone())
            else {
                continue;
            };
            self.append(key, records, Some((shard_id.to_string(), last)), false)
                .await?;
        }
        Ok(())
    }
}
