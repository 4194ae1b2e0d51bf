//! Events in: PutEvents with AWS's per-entry checks, the envelope every target sees, routing
//! through a bus's compiled matcher, TestEventPattern, and API-call records from the gateway.

use std::sync::Arc;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::event_pattern::Pattern;
use tsumiki_ports::DomainEvent;

use crate::api::{bus_name, invalid_pattern, scope};
use crate::schedule::iso_seconds;
use crate::state::{Delivery, Rule, Scope};
use crate::transform::{Context, InputSpec};
use crate::{Events, str_of};

/// AWS's limit for one PutEvents request, counted as AWS's size formula counts (1 MB since
/// January 2026; it was 256 KB before).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// An event as it travels: its value (for transforms) and its text (for the matcher and for
/// targets that take the whole event).
pub(crate) struct Envelope {
    pub id: String,
    pub time_ms: i64,
    pub value: Value,
    pub text: String,
}

/// The fields of an event in AWS's order.
pub(crate) struct EventFields<'a> {
    pub detail_type: &'a str,
    pub source: &'a str,
    pub time_ms: i64,
    pub resources: Vec<String>,
    pub detail: Value,
}

impl Envelope {
    pub fn new(scope: &Scope, f: EventFields<'_>) -> Envelope {
        let id = uuid::Uuid::new_v4().to_string();
        // Written by hand so the members keep AWS's order whatever serde_json's map is.
        let text = format!(
            "{{\"version\":\"0\",\"id\":{},\"detail-type\":{},\"source\":{},\"account\":{},\"time\":{},\"region\":{},\"resources\":{},\"detail\":{}}}",
            Value::String(id.clone()),
            Value::String(f.detail_type.to_string()),
            Value::String(f.source.to_string()),
            Value::String(scope.account.clone()),
            Value::String(iso_seconds(f.time_ms)),
            Value::String(scope.region.clone()),
            json!(f.resources),
            f.detail,
        );
        let value = serde_json::from_str(&text).expect("the envelope is JSON");
        Envelope {
            id,
            time_ms: f.time_ms,
            value,
            text,
        }
    }

    /// An event that arrived whole (from another bus).
    pub fn from_text(text: &str, now: i64) -> Option<Envelope> {
        let value: Value = serde_json::from_str(text).ok()?;
        Some(Envelope {
            id: str_of(&value, "id").unwrap_or_default().to_string(),
            time_ms: now,
            text: text.to_string(),
            value,
        })
    }
}

fn entry_error(code: &str, message: impl Into<String>) -> Value {
    json!({"ErrorCode": code, "ErrorMessage": message.into()})
}

/// AWS's entry size: Time counts 14 bytes, the strings their UTF-8 length.
fn entry_size(entry: &Value) -> usize {
    let len = |k: &str| str_of(entry, k).map_or(0, str::len);
    let resources: usize = entry
        .get("Resources")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::len).sum())
        .unwrap_or(0);
    let time = if entry.get("Time").is_some() { 14 } else { 0 };
    time + len("Source") + len("DetailType") + len("Detail") + resources
}

pub async fn put_events(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let entries = input
        .get("Entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.iter().map(entry_size).sum::<usize>() > MAX_REQUEST_BYTES {
        return Err(AwsError::validation(
            "Total size of the entries in the request is over the limit.",
        ));
    }
    let scope = scope(ctx);
    let now = ev.clock.now_ms();
    let mut results = Vec::with_capacity(entries.len());
    let mut failed = 0;
    let mut deliveries = Vec::new();
    for entry in &entries {
        match check_entry(ev, &scope, entry, now) {
            Ok((bus, envelope)) => {
                results.push(json!({"EventId": envelope.id}));
                deliveries.extend(ev.route(&scope, &bus, &envelope, now));
            }
            Err(e) => {
                failed += 1;
                results.push(e);
            }
        }
    }
    ev.dispatch(deliveries, false).await;
    Ok(json!({"FailedEntryCount": failed, "Entries": results}))
}

/// An entry's bus and envelope, or its per-entry error.
fn check_entry(
    ev: &Events,
    scope: &Scope,
    entry: &Value,
    now: i64,
) -> Result<(String, Envelope), Value> {
    let required = |k: &str| str_of(entry, k).filter(|s| !s.is_empty());
    let Some(source) = required("Source") else {
        return Err(entry_error(
            "InvalidArgument",
            "Parameter Source is not valid. Reason: Source is a required argument.",
        ));
    };
    let Some(detail_type) = required("DetailType") else {
        return Err(entry_error(
            "InvalidArgument",
            "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
        ));
    };
    let Some(detail) = required("Detail") else {
        return Err(entry_error(
            "InvalidArgument",
            "Parameter Detail is not valid. Reason: Detail is a required argument.",
        ));
    };
    let detail: Value = match serde_json::from_str(detail) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(entry_error("MalformedDetail", "Detail is malformed.")),
    };
    let bus = bus_name(entry, "EventBusName");
    if bus != "default"
        && !ev
            .state
            .inner
            .read()
            .buses
            .contains_key(&(scope.clone(), bus.clone()))
    {
        return Err(entry_error(
            "ResourceNotFoundException",
            format!("Event bus {bus} does not exist."),
        ));
    }
    let time_ms = entry
        .get("Time")
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0) as i64)
        .unwrap_or(now);
    let resources = entry
        .get("Resources")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let envelope = Envelope::new(
        scope,
        EventFields {
            detail_type,
            source,
            time_ms,
            resources,
            detail,
        },
    );
    Ok((bus, envelope))
}

impl Events {
    /// The deliveries `envelope` causes on `bus`: one per target of every matching rule.
    /// Matching runs on the bus's compiled matcher under the read lock; the rest after it.
    pub(crate) fn route(
        &self,
        scope: &Scope,
        bus: &str,
        envelope: &Envelope,
        now: i64,
    ) -> Vec<Delivery> {
        let rules: Vec<Arc<Rule>> = {
            let inner = self.state.inner.read();
            let Some(b) = inner.buses.get(&(scope.clone(), bus.to_string())) else {
                return Vec::new();
            };
            if b.matcher.is_empty() {
                return Vec::new();
            }
            match b.matcher.matches(&envelope.text) {
                Ok(names) => names
                    .iter()
                    .filter_map(|n| b.rules.get(n).cloned())
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "An event could not be matched.");
                    Vec::new()
                }
            }
        };
        let ingestion = iso_seconds(now);
        let mut out = Vec::new();
        for rule in rules {
            let arn = rule.arn(scope);
            for target in rule.targets.values() {
                let spec = InputSpec::from_target(target);
                // The whole event goes out as written, members in AWS's order.
                let payload = if spec == InputSpec::Event {
                    envelope.text.clone()
                } else {
                    spec.render(
                        &envelope.value,
                        &Context {
                            rule_arn: &arn,
                            rule_name: &rule.name,
                            ingestion_time: &ingestion,
                        },
                    )
                };
                out.push(self.delivery(scope, &arn, false, target, payload, envelope, now));
            }
        }
        out
    }

    /// Routes an event that arrives whole from a rule on another bus. Boxed as a `Send`
    /// future by name, because routing can lead back here (a bus targeting a bus) and the
    /// compiler cannot see through that cycle of opaque futures.
    pub(crate) fn forward_to_bus<'a>(
        &'a self,
        scope: &'a Scope,
        bus: &'a str,
        text: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let Some(envelope) = Envelope::from_text(text, now) else {
                return false;
            };
            let deliveries = self.route(scope, bus, &envelope, now);
            self.dispatch(deliveries, false).await;
            true
        })
    }
}

pub fn test_event_pattern(input: &Value) -> Result<Value, AwsError> {
    let pattern = Pattern::parse(str_of(input, "EventPattern").unwrap_or_default())
        .map_err(|e| invalid_pattern(e.reason()))?;
    let event = str_of(input, "Event").unwrap_or_default();
    let parsed: Value = serde_json::from_str(event)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| AwsError::validation("Parameter Event is not valid."))?;
    for field in ["id", "account", "source", "time", "region", "detail-type"] {
        if parsed.get(field).is_none() {
            return Err(AwsError::validation(format!(
                "Parameter Event is not valid. Reason: Provided Event is missing required field {field}."
            )));
        }
    }
    let result = pattern
        .matches(event)
        .map_err(|_| AwsError::validation("Parameter Event is not valid."))?;
    Ok(json!({"Result": result}))
}

pub(crate) fn default_bus_has_rules(ev: &Events, account: &str, region: &str) -> bool {
    let scope = Scope {
        account: account.to_string(),
        region: region.to_string(),
    };
    ev.state
        .inner
        .read()
        .buses
        .get(&(scope, "default".to_string()))
        .is_some_and(|b| !b.matcher.is_empty())
}

/// Routes an API-call record to its account's default bus in the background. Nothing is
/// built unless the default bus has a rule, so the gateway's hot paths pay one map lookup.
pub(crate) fn publish_api_call(ev: &Events, event: DomainEvent) {
    let scope = Scope {
        account: event.account.clone(),
        region: event.region.clone(),
    };
    if !default_bus_has_rules(ev, &scope.account, &scope.region) {
        return;
    }
    let time = iso_seconds(event.time_ms);
    let access_key = event.access_key.clone().unwrap_or_default();
    let detail = json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "Root",
            "principalId": event.account,
            "arn": format!("arn:aws:iam::{}:root", event.account),
            "accountId": event.account,
            "accessKeyId": access_key,
        },
        "eventTime": time,
        "eventSource": event.event_source,
        "eventName": event.event_name,
        "awsRegion": event.region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": "tsumiki",
        "requestParameters": event.request_parameters,
        "responseElements": event.response_elements,
        "requestID": event.request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": event.account,
    });
    let source = format!("aws.{}", event.service);
    let envelope = Envelope::new(
        &scope,
        EventFields {
            detail_type: "AWS API Call via CloudTrail",
            source: &source,
            time_ms: event.time_ms,
            resources: Vec::new(),
            detail,
        },
    );
    let deliveries = ev.route(&scope, "default", &envelope, ev.clock.now_ms());
    if deliveries.is_empty() {
        return;
    }
    let Some(me) = ev.myself() else {
        return;
    };
    tokio::spawn(async move { me.dispatch(deliveries, false).await });
}
