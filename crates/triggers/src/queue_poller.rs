//! Event source mappings for SQS, with AWS's semantics: long-poll the queue, gather up to
//! `BatchSize` messages for up to `MaximumBatchingWindowInSeconds`, invoke the function
//! synchronously with AWS's SQS event, delete the batch on success. On a function error the
//! messages stay and come back after their visibility timeout (the queue's redrive policy
//! moves them to a dead-letter queue); with `ReportBatchItemFailures` only the failed ones stay.
//! Messages that no `FilterCriteria` pattern matches are deleted without an invocation, as AWS
//! does for SQS.
//!
//! FIFO queues keep each message group in order: SQS itself hands out no message of a group
//! while another of it is in flight, so one batch per group runs at a time; a failed message
//! keeps the rest of its group in the queue (see `succeeded`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_lang::event_pattern::Pattern;
use tsumiki_ports::{EventSourcePollers, FunctionInvoker, MappingSpec, Services};

/// The pollers of every SQS event source mapping.
pub struct QueuePollers {
    clock: Arc<Clock>,
    invoker: Weak<dyn FunctionInvoker>,
    services: OnceLock<Services>,
    running: Mutex<HashMap<String, (MappingSpec, tokio::task::AbortHandle)>>,
    me: Weak<QueuePollers>,
}

impl QueuePollers {
    pub fn new(clock: Arc<Clock>, invoker: Weak<dyn FunctionInvoker>) -> Arc<QueuePollers> {
        Arc::new_cyclic(|me| QueuePollers {
            clock,
            invoker,
            services: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Gives the pollers the served services (the SQS they poll).
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }
}

impl EventSourcePollers for QueuePollers {
    fn configure(&self, spec: MappingSpec) {
        let mut running = self.running.lock();
        if let Some((old, handle)) = running.get(&spec.uuid) {
            if *old == spec {
                return;
            }
            handle.abort();
        }
        running.remove(&spec.uuid);
        if !spec.enabled || !spec.source_arn.starts_with("arn:aws:sqs:") {
            return;
        }
        let handle = tokio::spawn(poll(self.me.clone(), spec.clone())).abort_handle();
        running.insert(spec.uuid.clone(), (spec, handle));
    }

    fn remove(&self, uuid: &str) {
        if let Some((_, handle)) = self.running.lock().remove(uuid) {
            handle.abort();
        }
    }
}

struct Queue {
    url: String,
    ctx: RequestContext,
}

fn queue_of(arn: &str) -> Option<Queue> {
    let (_, region, account, name) = tsumiki_core::ids::parse_arn(arn)?;
    Some(Queue {
        url: format!("https://sqs.{region}.amazonaws.com/{account}/{name}"),
        ctx: RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: String::new(),
            base_url: format!("https://sqs.{region}.amazonaws.com"),
            access_key: None,
            path: "/".to_string(),
        },
    })
}

/// One mapping's poll loop; runs until the mapping is disabled, changed or deleted.
async fn poll(pollers: Weak<QueuePollers>, spec: MappingSpec) {
    let Some(queue) = queue_of(&spec.source_arn) else {
        return;
    };
    let filters: Vec<Pattern> = spec
        .filters
        .iter()
        .filter_map(|f| Pattern::parse(f).ok())
        .collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        spec.max_concurrency.max(1) as usize
    ));
    loop {
        let Some(p) = pollers.upgrade() else {
            return;
        };
        let Some(sqs) = p.services.get().and_then(|s| s.get("sqs")).cloned() else {
            drop(p);
            Clock::pause_real(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let clock = p.clock.clone();
        let invoker = p.invoker.clone();
        drop(p);
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = match gather(&*sqs, &queue, &spec, &clock).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(mapping = %spec.uuid, error = %e.message, "polling the queue failed");
                // A deleted queue: AWS keeps the mapping and retries; so do we, gently.
                clock.sleep_ms(10_000).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let spec = spec.clone();
        let queue_url = queue.url.clone();
        let ctx = queue.ctx.clone();
        let filters_ok: Vec<bool> = batch
            .iter()
            .map(|m| filters.is_empty() || filters.iter().any(|f| matches(f, m)))
            .collect();
        tokio::spawn(async move {
            let _permit = permit;
            type Marked = Vec<(Value, bool)>;
            let (kept, dropped): (Marked, Marked) =
                batch.into_iter().zip(filters_ok).partition(|(_, ok)| *ok);
            let dropped: Vec<Value> = dropped.into_iter().map(|(m, _)| m).collect();
            let kept: Vec<Value> = kept.into_iter().map(|(m, _)| m).collect();
            if !dropped.is_empty() {
                let _ = delete(&*sqs, &ctx, &queue_url, &dropped).await;
            }
            if kept.is_empty() {
                return;
            }
            let Some(invoker) = invoker.upgrade() else {
                return;
            };
            let event = json!({"Records": kept});
            let request_id = tsumiki_core::ids::request_id();
            match invoker
                .invoke(&spec.function, event.to_string().into_bytes(), &request_id)
                .await
            {
                Ok(r) if r.function_error.is_none() => {
                    let failed = if spec.report_item_failures {
                        failed_ids(&r.payload)
                    } else {
                        Vec::new()
                    };
                    let fifo = spec.source_arn.ends_with(".fifo");
                    let done = succeeded(kept, &failed, fifo);
                    if let Err(e) = delete(&*sqs, &ctx, &queue_url, &done).await {
                        tracing::warn!(mapping = %spec.uuid, error = %e.message, "deleting a processed batch failed");
                    }
                }
                Ok(_) => {
                    tracing::info!(mapping = %spec.uuid, "function error; the batch returns to the queue after its visibility timeout");
                }
                Err(e) => {
                    tracing::info!(mapping = %spec.uuid, error = %e.code, "batch not processed; it returns to the queue");
                }
            }
        });
    }
}

/// Receives up to `batch_size` messages, waiting at most the batching window for more.
async fn gather(
    sqs: &dyn tsumiki_ports::Service,
    queue: &Queue,
    spec: &MappingSpec,
    clock: &Clock,
) -> Result<Vec<Value>, AwsError> {
    let deadline = clock.now_ms() + i64::from(spec.batching_window_s) * 1000;
    let mut batch = Vec::new();
    loop {
        let want = (spec.batch_size as usize - batch.len()).min(10);
        // The first receive long-polls; later ones only top the batch up within the window.
        let wait = if batch.is_empty() {
            20
        } else {
            ((deadline - clock.now_ms()) / 1000).clamp(0, 20)
        };
        let out = sqs
            .call(
                &queue.ctx,
                "ReceiveMessage",
                json!({
                    "QueueUrl": queue.url,
                    "MaxNumberOfMessages": want,
                    "WaitTimeSeconds": wait,
                    "MessageSystemAttributeNames": ["All"],
                    "MessageAttributeNames": ["All"],
                }),
            )
            .await?;
        let messages = out
            .get("Messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let got = messages.len();
        batch.extend(
            messages
                .into_iter()
                .map(|m| record(m, &spec.source_arn, &queue.ctx.region)),
        );
        if batch.len() >= spec.batch_size as usize
            || clock.now_ms() >= deadline
            || (got == 0 && !batch.is_empty())
        {
            return Ok(batch);
        }
    }
}

/// AWS's SQS event record for one received message.
fn record(m: Value, source_arn: &str, region: &str) -> Value {
    let attributes = m.get("Attributes").cloned().unwrap_or(json!({}));
    let mut message_attributes = Map::new();
    if let Some(attrs) = m.get("MessageAttributes").and_then(Value::as_object) {
        for (name, a) in attrs {
            let mut out = json!({
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": a.get("DataType").cloned().unwrap_or(Value::Null),
            });
            if let Some(s) = a.get("StringValue") {
                out["stringValue"] = s.clone();
            }
            if let Some(b) = a.get("BinaryValue") {
                out["binaryValue"] = b.clone();
            }
            message_attributes.insert(name.clone(), out);
        }
    }
    json!({
        "messageId": m.get("MessageId").cloned().unwrap_or(Value::Null),
        "receiptHandle": m.get("ReceiptHandle").cloned().unwrap_or(Value::Null),
        "body": m.get("Body").cloned().unwrap_or(Value::Null),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.get("MD5OfBody").cloned().unwrap_or(Value::Null),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    })
}

/// Filters see a JSON body as JSON (AWS's rule for SQS), anything else as a string.
fn matches(pattern: &Pattern, record: &Value) -> bool {
    let mut view = record.clone();
    if let Some(body) = record["body"].as_str()
        && let Ok(parsed) = serde_json::from_str::<Value>(body)
        && parsed.is_object()
    {
        view["body"] = parsed;
    }
    pattern.matches(&view.to_string()).unwrap_or(false)
}

/// The messages of a batch to delete after a partial batch response. In a FIFO queue a failed
/// message also keeps every later message of its group, so the group is processed again in
/// order whether or not the function reported them.
fn succeeded(batch: Vec<Value>, failed: &[String], fifo: bool) -> Vec<Value> {
    let mut stopped: Vec<String> = Vec::new();
    batch
        .into_iter()
        .filter(|m| {
            let group = m["attributes"]["MessageGroupId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let is_failed = failed.iter().any(|id| m["messageId"] == json!(id));
            if fifo && (is_failed || stopped.contains(&group)) {
                stopped.push(group);
                return false;
            }
            !is_failed
        })
        .collect()
}

/// `batchItemFailures[].itemIdentifier` of a partial batch response.
fn failed_ids(payload: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("batchItemFailures")
                .and_then(Value::as_array)
                .cloned()
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|f| {
            f.get("itemIdentifier")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

async fn delete(
    sqs: &dyn tsumiki_ports::Service,
    ctx: &RequestContext,
    url: &str,
    messages: &[Value],
) -> Result<(), AwsError> {
    for chunk in messages.chunks(10) {
        let entries: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m["receiptHandle"]}))
            .collect();
        sqs.call(
            ctx,
            "DeleteMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, group: &str) -> Value {
        json!({"messageId": id, "attributes": {"MessageGroupId": group}})
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().filter_map(|m| m["messageId"].as_str()).collect()
    }

    /// The SQS event parses with the `aws_lambda_events` types, as real Rust functions read it.
    #[test]
    fn sqs_records_parse_as_aws_lambda_events_types() {
        let received = json!({
            "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "Body": "hello",
            "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185",
            },
            "MessageAttributes": {
                "kind": {"DataType": "String", "StringValue": "greeting"},
                "raw": {"DataType": "Binary", "BinaryValue": "AQID"},
            },
        });
        let arn = "arn:aws:sqs:us-east-1:123456789012:q";
        let event = json!({"Records": [record(received, arn, "us-east-1")]});
        let parsed: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(event).expect("an SqsEvent");
        let m = &parsed.records[0];
        assert_eq!(m.body.as_deref(), Some("hello"));
        assert_eq!(m.event_source_arn.as_deref(), Some(arn));
        assert_eq!(
            m.message_attributes["kind"].string_value.as_deref(),
            Some("greeting")
        );
        assert_eq!(
            m.message_attributes["raw"]
                .binary_value
                .as_ref()
                .map(|b| b.0.clone()),
            Some(vec![1, 2, 3])
        );
        assert_eq!(m.attributes["ApproximateReceiveCount"], "1");
    }

    #[test]
    fn a_failed_fifo_message_keeps_the_rest_of_its_group() {
        let batch = vec![
            msg("a1", "a"),
            msg("b1", "b"),
            msg("a2", "a"),
            msg("a3", "a"),
            msg("b2", "b"),
        ];
        let failed = vec!["a2".to_string()];
        assert_eq!(
            ids(&succeeded(batch.clone(), &failed, true)),
            ["a1", "b1", "b2"]
        );
        // A standard queue keeps only the failed message.
        assert_eq!(
            ids(&succeeded(batch, &failed, false)),
            ["a1", "b1", "a3", "b2"]
        );
    }
}
