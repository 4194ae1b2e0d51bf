//! What subscribers receive: AWS's JSON notification (SQS without raw delivery, HTTP,
//! `email-json`), the Lambda event (`Records[].Sns`), the subscription confirmation, and the
//! URLs in them. Members are written in AWS's order, as AWS formats them.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::state::{Message, Subscription};

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

pub fn unsubscribe_url(endpoint: &str, sub_arn: &str) -> String {
    format!(
        "{endpoint}/?Action=Unsubscribe&SubscriptionArn={}",
        enc(sub_arn)
    )
}

pub fn subscribe_url(endpoint: &str, topic_arn: &str, token: &str) -> String {
    format!(
        "{endpoint}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
        enc(topic_arn),
        enc(token)
    )
}

/// Messages are not signed (yet); the URL names where a certificate would be served.
pub fn signing_cert_url(endpoint: &str) -> String {
    format!("{endpoint}{}", crate::signing::CERT_PATH)
}

pub fn timestamp(ms: i64) -> String {
    tsumiki_core::clock::iso8601_ms(ms)
}

/// `{"Type": ..., "Value": ...}` per attribute, as notifications carry them.
fn attributes_json(m: &Message) -> Value {
    let mut out = serde_json::Map::new();
    for (name, a) in &m.attributes {
        let value = a
            .string_value
            .clone()
            .or_else(|| a.binary_value.clone())
            .unwrap_or_default();
        out.insert(name.clone(), json!({"Type": a.data_type, "Value": value}));
    }
    Value::Object(out)
}

/// Writes `"Key" : value` members the way SNS formats its JSON documents.
struct Doc(Vec<String>);

impl Doc {
    fn member(&mut self, key: &str, value: &Value) {
        self.0.push(format!("  \"{key}\" : {value}"));
    }

    fn text(&mut self, key: &str, value: &str) {
        self.member(key, &Value::String(value.to_string()));
    }

    fn finish(self) -> String {
        format!("{{\n{}\n}}", self.0.join(",\n"))
    }
}

/// The JSON notification for `sub` (SQS, HTTP and `email-json` subscribers without raw
/// delivery).
pub fn notification(m: &Message, sub: &Subscription, endpoint: &str) -> String {
    notification_signed(m, sub, endpoint, None)
}

/// The JSON notification, signed with `SignatureVersion` `version` when one is given (HTTP and
/// HTTPS deliveries), else with an empty `Signature`.
pub fn notification_signed(
    m: &Message,
    sub: &Subscription,
    endpoint: &str,
    version: Option<&str>,
) -> String {
    let stamp = timestamp(m.timestamp_ms);
    let text = m.text_for(&sub.protocol);
    let mut d = Doc(Vec::new());
    d.text("Type", "Notification");
    d.text("MessageId", &m.id);
    if let Some(seq) = &m.sequence_number {
        d.text("SequenceNumber", seq);
    }
    d.text("TopicArn", &m.topic_arn);
    if let Some(subject) = &m.subject {
        d.text("Subject", subject);
    }
    d.text("Message", text);
    d.text("Timestamp", &stamp);
    let signature = match version {
        Some(v) => {
            let mut signed = vec![("Message", text), ("MessageId", m.id.as_str())];
            if let Some(subject) = &m.subject {
                signed.push(("Subject", subject));
            }
            signed.extend([
                ("Timestamp", stamp.as_str()),
                ("TopicArn", m.topic_arn.as_str()),
                ("Type", "Notification"),
            ]);
            crate::signing::sign(v, &crate::signing::string_to_sign(&signed))
        }
        None => String::new(),
    };
    d.text("SignatureVersion", version.unwrap_or("1"));
    d.text("Signature", &signature);
    d.text("SigningCertURL", &signing_cert_url(endpoint));
    d.text("UnsubscribeURL", &unsubscribe_url(endpoint, &sub.arn));
    if !m.attributes.is_empty() {
        d.member("MessageAttributes", &attributes_json(m));
    }
    d.finish()
}

/// A notification as a Firehose subscription stores it: one line of compact JSON, in AWS's
/// member order and without the signature members.
pub fn firehose_record(m: &Message, sub: &Subscription, endpoint: &str) -> String {
    let mut members: Vec<(&str, Value)> = vec![
        ("Type", json!("Notification")),
        ("MessageId", json!(m.id)),
        ("TopicArn", json!(m.topic_arn)),
    ];
    if let Some(subject) = &m.subject {
        members.push(("Subject", json!(subject)));
    }
    members.push(("Message", json!(m.text_for(&sub.protocol))));
    members.push(("Timestamp", json!(timestamp(m.timestamp_ms))));
    members.push(("UnsubscribeURL", json!(unsubscribe_url(endpoint, &sub.arn))));
    if !m.attributes.is_empty() {
        members.push(("MessageAttributes", attributes_json(m)));
    }
    let fields: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The event a Lambda subscriber is invoked with.
pub fn lambda_event(m: &Message, sub: &Subscription, endpoint: &str) -> Value {
    json!({
        "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": sub.arn,
            "Sns": {
                "Type": "Notification",
                "MessageId": m.id,
                "TopicArn": m.topic_arn,
                "Subject": m.subject,
                "Message": m.text_for(&sub.protocol),
                "Timestamp": timestamp(m.timestamp_ms),
                "SignatureVersion": "1",
                "Signature": "",
                "SigningCertUrl": signing_cert_url(endpoint),
                "UnsubscribeUrl": unsubscribe_url(endpoint, &sub.arn),
                "MessageAttributes": attributes_json(m),
            }
        }]
    })
}

/// The confirmation request an HTTP or email endpoint receives, and its message id.
pub fn confirmation(
    sub: &Subscription,
    endpoint: &str,
    now_ms: i64,
    version: &str,
) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let message = format!(
        "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
        sub.topic_arn
    );
    let subscribe = subscribe_url(endpoint, &sub.topic_arn, &sub.token);
    let stamp = timestamp(now_ms);
    let signature = crate::signing::sign(
        version,
        &crate::signing::string_to_sign(&[
            ("Message", &message),
            ("MessageId", &id),
            ("SubscribeURL", &subscribe),
            ("Timestamp", &stamp),
            ("Token", &sub.token),
            ("TopicArn", &sub.topic_arn),
            ("Type", "SubscriptionConfirmation"),
        ]),
    );
    let mut d = Doc(Vec::new());
    d.text("Type", "SubscriptionConfirmation");
    d.text("MessageId", &id);
    d.text("Token", &sub.token);
    d.text("TopicArn", &sub.topic_arn);
    d.text("Message", &message);
    d.text("SubscribeURL", &subscribe);
    d.text("Timestamp", &stamp);
    d.text("SignatureVersion", version);
    d.text("Signature", &signature);
    d.text("SigningCertURL", &signing_cert_url(endpoint));
    (id, d.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn notification_is_json_with_aws_members() {
        let m = Message {
            seq: 1,
            id: "m1".into(),
            topic_arn: "arn:aws:sns:us-east-1:000000000000:t".into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            message: "hello \"world\"".into(),
            subject: Some("s".into()),
            per_protocol: None,
            attributes: BTreeMap::from([(
                "color".to_string(),
                crate::state::Attr {
                    data_type: "String".into(),
                    string_value: Some("red".into()),
                    binary_value: None,
                },
            )]),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            timestamp_ms: 0,
        };
        let sub = Subscription {
            arn: "arn:aws:sns:us-east-1:000000000000:t:x".into(),
            topic_arn: m.topic_arn.clone(),
            protocol: "sqs".into(),
            endpoint: "arn:aws:sqs:us-east-1:000000000000:q".into(),
            owner: "000000000000".into(),
            attributes: BTreeMap::new(),
            confirmed: true,
            token: "t".into(),
            filter: None,
        };
        let text = notification(&m, &sub, "http://h:1");
        assert!(text.starts_with("{\n  \"Type\" : \"Notification\",\n  \"MessageId\" : \"m1\""));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Message"], "hello \"world\"");
        assert_eq!(v["Subject"], "s");
        assert_eq!(v["Timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["MessageAttributes"]["color"]["Value"], "red");
        assert_eq!(
            v["UnsubscribeURL"],
            "http://h:1/?Action=Unsubscribe&SubscriptionArn=arn%3Aaws%3Asns%3Aus%2Deast%2D1%3A000000000000%3At%3Ax"
        );
        let event = lambda_event(&m, &sub, "http://h:1");
        assert_eq!(event["Records"][0]["EventSource"], "aws:sns");
        assert_eq!(
            event["Records"][0]["Sns"]["MessageAttributes"]["color"]["Type"],
            "String"
        );
    }
}
