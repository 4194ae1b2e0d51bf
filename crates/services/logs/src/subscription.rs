//! Subscription filters: Put/Describe/DeleteSubscriptionFilter (two a log group, as AWS), and
//! delivery of the events they match to Lambda (asynchronously, through the `AsyncInvoke`
//! port), Kinesis or Firehose (PutRecord through `Services`), as AWS's `awslogs` payload: gzip'd JSON
//! (`messageType: DATA_MESSAGE`, owner, logGroup, logStream, subscriptionFilters, logEvents),
//! base64 for Lambda's `{"awslogs": {"data": ...}}`.
//!
//! Batching: the events one write (PutLogEvents or a function's output) adds to a stream and a
//! filter matches go as one payload, split so none exceeds 256 KiB of events. Delivery runs
//! after the write is durable and before it is answered: a Lambda destination's event is then
//! in Lambda's durable asynchronous queue, a Kinesis record in its stream. A crash between the
//! two loses the delivery of events whose write was never acknowledged. A destination that
//! refuses (no such function or stream) is logged, not retried.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};

use crate::Logs;
use crate::error::logs_error;
use crate::error::{invalid_parameter, resource_not_found};
use crate::filter::FilterPattern;
use crate::input::{opt_str, req_str};
use crate::state::writes;

/// AWS allows two subscription filters per log group.
const MAX_FILTERS: usize = 2;
const MAX_PAYLOAD_EVENTS_BYTES: usize = 256 * 1024;

/// One subscription filter, stored in its group's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionFilter {
    pub name: String,
    pub pattern: String,
    pub destination_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub distribution: String,
    pub created_ms: i64,
    #[serde(skip)]
    pub compiled: Option<Arc<FilterPattern>>,
}

impl SubscriptionFilter {
    pub fn compile(&mut self) {
        self.compiled = FilterPattern::parse(&self.pattern).ok().map(Arc::new);
    }

    pub fn matches(&self, message: &str) -> bool {
        self.compiled.as_ref().is_some_and(|p| p.matches(message))
    }
}

/// Events one write made that a filter matched: what one delivery carries.
pub struct Matched {
    pub account: String,
    pub group: String,
    pub stream: String,
    pub filter: String,
    pub destination_arn: String,
    /// (id, timestamp, message)
    pub events: Vec<(String, i64, String)>,
}

fn check_destination(arn: &str) -> Result<(), AwsError> {
    match tsumiki_core::ids::parse_arn(arn) {
        Some(("lambda", _, _, r)) if r.starts_with("function:") => Ok(()),
        Some(("kinesis", _, _, r)) if r.starts_with("stream/") => Ok(()),
        Some(("firehose", _, _, r)) if r.starts_with("deliverystream/") => Ok(()),
        Some(("logs", _, _, _)) => Err(AwsError::not_implemented(
            "logs",
            "PutSubscriptionFilter (cross-account destinations)",
        )),
        _ => Err(invalid_parameter(format!(
            "Could not deliver test message to specified destination. Check if the destination is valid. ({arn})"
        ))),
    }
}

pub async fn put_subscription_filter(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "filterName")?.to_string();
    let pattern = opt_str(input, "filterPattern").unwrap_or("").to_string();
    FilterPattern::parse(&pattern).map_err(|_| invalid_parameter("Invalid filter pattern"))?;
    let destination_arn = req_str(input, "destinationArn")?.to_string();
    check_destination(&destination_arn)?;
    let now = logs.clock.now_ms();
    let mut filter = SubscriptionFilter {
        name: name.clone(),
        pattern,
        destination_arn,
        role_arn: opt_str(input, "roleArn").map(String::from),
        distribution: opt_str(input, "distribution")
            .unwrap_or("ByLogStream")
            .to_string(),
        created_ms: now,
        compiled: None,
    };
    filter.compile();
    logs.write_group(&cell, |g, batch| {
        match g.subscriptions.iter_mut().find(|f| f.name == name) {
            Some(existing) => {
                filter.created_ms = existing.created_ms;
                *existing = filter;
            }
            None => {
                if g.subscriptions.len() >= MAX_FILTERS {
                    return Err(logs_error(
                        "LimitExceededException",
                        "Resource limit exceeded.",
                    ));
                }
                g.subscriptions.push(filter);
            }
        }
        writes::group(batch, &cell.key, g);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn describe_subscription_filters(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let prefix = opt_str(input, "filterNamePrefix").unwrap_or("");
    logs.read_group(&cell, |g| {
        let filters: Vec<Value> = g
            .subscriptions
            .iter()
            .filter(|f| f.name.starts_with(prefix))
            .map(|f| {
                let mut v = json!({
                    "filterName": f.name,
                    "logGroupName": cell.key.name,
                    "filterPattern": f.pattern,
                    "destinationArn": f.destination_arn,
                    "distribution": f.distribution,
                    "creationTime": f.created_ms,
                });
                if let Some(r) = &f.role_arn {
                    v["roleArn"] = json!(r);
                }
                v
            })
            .collect();
        Ok(json!({"subscriptionFilters": filters}))
    })
}

pub async fn delete_subscription_filter(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "filterName")?.to_string();
    logs.write_group(&cell, |g, batch| {
        let before = g.subscriptions.len();
        g.subscriptions.retain(|f| f.name != name);
        if g.subscriptions.len() == before {
            return Err(resource_not_found(
                "The specified subscription filter does not exist.",
            ));
        }
        writes::group(batch, &cell.key, g);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// AWS's payload: the JSON document, gzip'd.
pub fn payload(m: &Matched, events: &[(String, i64, String)]) -> Vec<u8> {
    let doc = json!({
        "messageType": "DATA_MESSAGE",
        "owner": m.account,
        "logGroup": m.group,
        "logStream": m.stream,
        "subscriptionFilters": [m.filter],
        "logEvents": events
            .iter()
            .map(|(id, ts, message)| json!({"id": id, "timestamp": ts, "message": message}))
            .collect::<Vec<_>>(),
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(doc.to_string().as_bytes());
    gz.finish().unwrap_or_default()
}

/// Splits a delivery's events into payload-sized chunks.
fn chunks(events: &[(String, i64, String)]) -> Vec<&[(String, i64, String)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, e) in events.iter().enumerate() {
        let cost = e.2.len() + 26;
        if i > start && size + cost > MAX_PAYLOAD_EVENTS_BYTES {
            out.push(&events[start..i]);
            start = i;
            size = 0;
        }
        size += cost;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

impl Logs {
    /// Hands what subscription filters matched to their destinations; the write that made
    /// the events answers after this, so an acknowledged event's delivery is durable in
    /// Lambda's asynchronous queue or the Kinesis stream (at least once, as AWS).
    pub(crate) async fn deliver_matched(&self, matched: Vec<Matched>) {
        if matched.is_empty() {
            return;
        }
        let targets = self.targets.read().clone();
        let Some(targets) = targets else {
            tracing::warn!("CloudWatch Logs has no subscription targets wired; dropped events.");
            return;
        };
        {
            for m in matched {
                for chunk in chunks(&m.events) {
                    let gz = payload(&m, chunk);
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
                    let result = match tsumiki_core::ids::parse_arn(&m.destination_arn) {
                        Some(("lambda", region, account, _)) => {
                            let event = json!({"awslogs": {"data": b64}});
                            targets
                                .invoker
                                .enqueue(
                                    tsumiki_ports::FunctionTarget {
                                        account: account.to_string(),
                                        region: region.to_string(),
                                        function: m.destination_arn.clone(),
                                        qualifier: None,
                                    },
                                    event.to_string().into_bytes(),
                                    tsumiki_core::ids::request_id(),
                                )
                                .await
                        }
                        Some(("kinesis", region, account, _)) => {
                            match targets.services.get("kinesis") {
                                Some(kinesis) => {
                                    let ctx = RequestContext {
                                        account: account.to_string(),
                                        region: region.to_string(),
                                        request_id: tsumiki_core::ids::request_id(),
                                        base_url: String::new(),
                                        access_key: None,
                                        path: "/".into(),
                                    };
                                    kinesis
                                        .call(
                                            &ctx,
                                            "PutRecord",
                                            json!({
                                                "StreamARN": m.destination_arn,
                                                "Data": b64,
                                                "PartitionKey": format!("{}/{}", m.group, m.stream),
                                            }),
                                        )
                                        .await
                                        .map(|_| ())
                                }
                                None => Err(AwsError::not_implemented("kinesis", "PutRecord")),
                            }
                        }
                        // Firehose takes the gzip'd document as the record, as AWS sends it.
                        Some(("firehose", region, account, resource)) => {
                            match targets.services.get("firehose") {
                                Some(firehose) => {
                                    let ctx = RequestContext {
                                        account: account.to_string(),
                                        region: region.to_string(),
                                        request_id: tsumiki_core::ids::request_id(),
                                        base_url: String::new(),
                                        access_key: None,
                                        path: "/".into(),
                                    };
                                    let name = resource.trim_start_matches("deliverystream/");
                                    firehose
                                        .call(
                                            &ctx,
                                            "PutRecord",
                                            json!({
                                                "DeliveryStreamName": name,
                                                "Record": {"Data": b64},
                                            }),
                                        )
                                        .await
                                        .map(|_| ())
                                }
                                None => Err(AwsError::not_implemented("firehose", "PutRecord")),
                            }
                        }
                        _ => Err(invalid_parameter("Unsupported destination.")),
                    };
                    if let Err(e) = result {
                        tracing::warn!(
                            destination = %m.destination_arn, error = %e,
                            "A subscription filter could not deliver its events."
                        );
                    }
                }
            }
        }
    }
}

/// Where subscription filters deliver.
#[derive(Clone)]
pub struct Targets {
    pub invoker: Arc<dyn tsumiki_ports::AsyncInvoke>,
    pub services: tsumiki_ports::Services,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn payload_is_gzip_of_aws_document() {
        let m = Matched {
            account: "123456789012".into(),
            group: "g".into(),
            stream: "s".into(),
            filter: "f".into(),
            destination_arn: "arn:aws:lambda:us-east-1:123456789012:function:x".into(),
            events: vec![("1".into(), 5, "hello".into())],
        };
        let gz = payload(&m, &m.events);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["messageType"], "DATA_MESSAGE");
        assert_eq!(v["owner"], "123456789012");
        assert_eq!(v["subscriptionFilters"], json!(["f"]));
        assert_eq!(
            v["logEvents"][0],
            json!({"id": "1", "timestamp": 5, "message": "hello"})
        );
    }

    #[test]
    fn chunks_split_large_batches() {
        let big = "x".repeat(100 * 1024);
        let events: Vec<_> = (0..5).map(|i| (i.to_string(), i, big.clone())).collect();
        let parts = chunks(&events);
        assert_eq!(parts.iter().map(|c| c.len()).collect::<Vec<_>>(), [2, 2, 1]);
    }
}
