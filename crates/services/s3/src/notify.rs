//! S3 event notifications: the configuration's validation (AWS's rules for event names,
//! filter rules and overlapping configurations), the event records AWS sends (version 2.1 for
//! SQS, SNS and Lambda; the EventBridge shape for `EventBridgeConfiguration`), and delivery.
//!
//! Records are built when the object change commits and written in the same store batch
//! (`state::Pending`), then delivered by one background task; a record is deleted only after
//! its destination accepted it, so delivery is at least once across crashes.

use s3s::dto::{FilterRule, NotificationConfiguration, NotificationConfigurationFilter};
use serde_json::{Value, json};

/// Every event type a configuration may name.
const EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:Replication:OperationFailedReplication",
    "s3:Replication:OperationNotTracked",
    "s3:Replication:OperationMissedThreshold",
    "s3:Replication:OperationReplicatedAfterThreshold",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:ObjectAcl:Put",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
];

/// One destination of a configuration, flattened.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `sqs`, `sns` or `lambda`.
    pub target: &'static str,
    pub arn: String,
    pub id: String,
    pub events: Vec<String>,
    pub prefix: String,
    pub suffix: String,
}

fn rules(filter: &Option<NotificationConfigurationFilter>) -> Result<(String, String), String> {
    let mut prefix = None;
    let mut suffix = None;
    let list: Vec<FilterRule> = filter
        .as_ref()
        .and_then(|f| f.key.as_ref())
        .and_then(|k| k.filter_rules.clone())
        .unwrap_or_default();
    for rule in list {
        let name = rule
            .name
            .as_ref()
            .map(|n| n.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let value = rule.value.unwrap_or_default();
        let slot = match name.as_str() {
            "prefix" => &mut prefix,
            "suffix" => &mut suffix,
            _ => {
                return Err("filter rule name must be either prefix or suffix".to_string());
            }
        };
        if slot.is_some() {
            return Err(format!(
                "Cannot specify more than one {name} rule in a filter."
            ));
        }
        *slot = Some(value);
    }
    Ok((prefix.unwrap_or_default(), suffix.unwrap_or_default()))
}

/// Flattens and validates a configuration; an `Err` is the `InvalidArgument` message AWS gives.
pub fn destinations(config: &NotificationConfiguration) -> Result<Vec<Destination>, String> {
    let mut out = Vec::new();
    let mut add = |target: &'static str,
                   arn: &str,
                   id: &Option<String>,
                   events: &[String],
                   filter: &Option<NotificationConfigurationFilter>|
     -> Result<(), String> {
        if events.is_empty() {
            return Err("At least one event must be specified.".into());
        }
        for e in events {
            if !EVENTS.contains(&e.as_str()) {
                return Err("The event is not supported for notifications".into());
            }
        }
        let (prefix, suffix) = rules(filter)?;
        out.push(Destination {
            target,
            arn: arn.to_string(),
            id: id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            events: events.to_vec(),
            prefix,
            suffix,
        });
        Ok(())
    };
    for c in config.queue_configurations.iter().flatten() {
        let events: Vec<String> = c.events.iter().map(|e| e.as_ref().to_string()).collect();
        add("sqs", &c.queue_arn, &c.id, &events, &c.filter)?;
    }
    for c in config.topic_configurations.iter().flatten() {
        let events: Vec<String> = c.events.iter().map(|e| e.as_ref().to_string()).collect();
        add("sns", &c.topic_arn, &c.id, &events, &c.filter)?;
    }
    for c in config.lambda_function_configurations.iter().flatten() {
        let events: Vec<String> = c.events.iter().map(|e| e.as_ref().to_string()).collect();
        add("lambda", &c.lambda_function_arn, &c.id, &events, &c.filter)?;
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            if events_overlap(&a.events, &b.events)
                && (a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix))
                && (a.suffix.ends_with(&b.suffix) || b.suffix.ends_with(&a.suffix))
            {
                return Err("Configurations overlap. Configurations on the same bucket cannot share a common event type.".into());
            }
        }
    }
    Ok(out)
}

fn event_matches(configured: &str, event: &str) -> bool {
    match configured.strip_suffix('*') {
        Some(family) => event.starts_with(family),
        None => configured == event,
    }
}

fn events_overlap(a: &[String], b: &[String]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| event_matches(x, y) || event_matches(y, x)))
}

impl Destination {
    /// Whether an `event` (e.g. `s3:ObjectCreated:Put`) on `key` goes here.
    pub fn wants(&self, event: &str, key: &str) -> bool {
        self.events.iter().any(|e| event_matches(e, event))
            && key.starts_with(&self.prefix)
            && key.ends_with(&self.suffix)
    }
}

/// What happened to an object, for the records.
pub struct Change<'a> {
    /// e.g. `s3:ObjectCreated:Put`.
    pub event: &'a str,
    pub bucket: &'a str,
    pub bucket_owner: &'a str,
    pub key: &'a str,
    pub size: Option<u64>,
    pub etag: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub sequencer: String,
    pub region: &'a str,
    pub time_ms: i64,
    pub request_id: &'a str,
    pub requester: &'a str,
    /// EventBridge's `reason` (`PutObject`, `CopyObject`, `DeleteObject`, ...).
    pub reason: &'a str,
}

/// S3 URL-encodes keys in event records as form values (spaces as `+`), slashes kept.
pub fn encode_key(key: &str) -> String {
    form_encode(key)
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn host_id(request_id: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(request_id.as_bytes()))
}

/// The version 2.1 record SQS, SNS and Lambda destinations receive.
pub fn record(c: &Change<'_>, configuration_id: &str) -> Value {
    let mut object = json!({"key": encode_key(c.key), "sequencer": c.sequencer});
    if let Some(size) = c.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = c.etag {
        object["eTag"] = json!(etag);
    }
    if let Some(v) = c.version_id {
        object["versionId"] = json!(v);
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": c.region,
        "eventTime": tsumiki_core::clock::iso8601_ms(c.time_ms),
        "eventName": c.event.trim_start_matches("s3:"),
        "userIdentity": {"principalId": format!("AWS:{}", c.requester)},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": c.request_id,
            "x-amz-id-2": host_id(c.request_id),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": c.bucket,
                "ownerIdentity": {"principalId": c.bucket_owner},
                "arn": format!("arn:aws:s3:::{}", c.bucket),
            },
            "object": object,
        },
    }]})
}

/// The PutEvents entry of an `Object Created`/`Object Deleted` event.
pub fn eventbridge_entry(c: &Change<'_>) -> Option<Value> {
    let created = c.event.starts_with("s3:ObjectCreated:");
    let deleted =
        c.event.starts_with("s3:ObjectRemoved:") || c.event.starts_with("s3:LifecycleExpiration:");
    if !created && !deleted {
        return None;
    }
    let mut object = json!({"key": c.key, "sequencer": c.sequencer});
    if let Some(size) = c.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = c.etag {
        object["etag"] = json!(etag);
    }
    if let Some(v) = c.version_id {
        object["version-id"] = json!(v);
    }
    let mut detail = json!({
        "version": "0",
        "bucket": {"name": c.bucket},
        "object": object,
        "request-id": c.request_id,
        "requester": c.requester,
        "source-ip-address": "127.0.0.1",
        "reason": c.reason,
    });
    if deleted {
        detail["deletion-type"] = json!(if c.event.ends_with("DeleteMarkerCreated") {
            "Delete Marker Created"
        } else {
            "Permanently Deleted"
        });
    }
    Some(json!({
        "Source": "aws.s3",
        "DetailType": if created { "Object Created" } else { "Object Deleted" },
        "Detail": detail.to_string(),
        "Resources": [format!("arn:aws:s3:::{}", c.bucket)],
        "EventBusName": "default",
    }))
}

/// The message SQS and SNS destinations get when a configuration is set.
pub fn test_event(bucket: &str, time_ms: i64, request_id: &str) -> Value {
    json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": tsumiki_core::clock::iso8601_ms(time_ms),
        "Bucket": bucket,
        "RequestId": request_id,
        "HostId": host_id(request_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::{FilterRuleName, QueueConfiguration, S3KeyFilter};

    fn queue(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> QueueConfiguration {
        let mut rules = Vec::new();
        if let Some(p) = prefix {
            rules.push(FilterRule {
                name: Some(FilterRuleName::from_static("prefix")),
                value: Some(p.into()),
            });
        }
        if let Some(s) = suffix {
            rules.push(FilterRule {
                name: Some(FilterRuleName::from_static("suffix")),
                value: Some(s.into()),
            });
        }
        QueueConfiguration {
            events: events.iter().map(|e| (*e).to_string().into()).collect(),
            filter: Some(NotificationConfigurationFilter {
                key: Some(S3KeyFilter {
                    filter_rules: Some(rules),
                }),
            }),
            id: None,
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:q".into(),
        }
    }

    fn check(queues: Vec<QueueConfiguration>) -> Result<Vec<Destination>, String> {
        destinations(&NotificationConfiguration {
            queue_configurations: Some(queues),
            ..Default::default()
        })
    }

    #[test]
    fn overlapping_configurations_are_rejected_and_disjoint_filters_allowed() {
        let overlap = check(vec![
            queue(&["s3:ObjectCreated:*"], Some("images/"), None),
            queue(&["s3:ObjectCreated:Put"], Some("images/raw/"), None),
        ]);
        assert!(overlap.unwrap_err().contains("overlap"));
        let disjoint = check(vec![
            queue(&["s3:ObjectCreated:*"], Some("images/"), None),
            queue(&["s3:ObjectCreated:*"], Some("docs/"), None),
            queue(&["s3:ObjectRemoved:*"], Some("images/"), None),
            queue(&["s3:ObjectCreated:*"], Some("images/"), Some(".jpg")).clone(),
        ]);
        // The last one overlaps the first (same prefix, and no suffix matches every suffix).
        assert!(disjoint.is_err());
        let ok = check(vec![
            queue(&["s3:ObjectCreated:*"], None, Some(".jpg")),
            queue(&["s3:ObjectCreated:*"], None, Some(".png")),
        ])
        .expect("different suffixes do not overlap");
        assert!(ok[0].wants("s3:ObjectCreated:Put", "a/b.jpg"));
        assert!(!ok[0].wants("s3:ObjectCreated:Put", "a/b.png"));
        assert!(!ok[0].wants("s3:ObjectRemoved:Delete", "a/b.jpg"));
    }

    #[test]
    fn unknown_events_and_duplicate_rules_are_rejected() {
        assert!(check(vec![queue(&["s3:ObjectCreated:Get"], None, None)]).is_err());
        let mut q = queue(&["s3:ObjectCreated:*"], Some("a"), None);
        if let Some(f) = &mut q.filter
            && let Some(k) = &mut f.key
            && let Some(r) = &mut k.filter_rules
        {
            r.push(r[0].clone());
        }
        assert!(check(vec![q]).unwrap_err().contains("more than one prefix"));
    }

    #[test]
    fn keys_are_form_encoded() {
        assert_eq!(encode_key("a b/c+d=é"), "a+b/c%2Bd%3D%C3%A9");
    }
}
