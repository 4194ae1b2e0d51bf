//! Queue attributes: names, AWS's defaults and the values each may take.

use std::collections::BTreeMap;

use serde_json::Value;
use tsumiki_core::AwsError;

use crate::error::{invalid_attribute_name, invalid_attribute_value, sqs_error};

/// Attributes a caller may set, with their defaults ("" means unset and not reported).
pub const SETTABLE: &[(&str, &str)] = &[
    ("DelaySeconds", "0"),
    ("MaximumMessageSize", "1048576"),
    ("MessageRetentionPeriod", "345600"),
    ("Policy", ""),
    ("ReceiveMessageWaitTimeSeconds", "0"),
    ("VisibilityTimeout", "30"),
    ("RedrivePolicy", ""),
    ("RedriveAllowPolicy", ""),
    ("KmsMasterKeyId", ""),
    // Reported only while a KMS key is set (AWS lists 12 attributes for a plain queue).
    ("KmsDataKeyReusePeriodSeconds", ""),
    ("SqsManagedSseEnabled", "true"),
    ("FifoQueue", ""),
    ("ContentBasedDeduplication", ""),
    ("DeduplicationScope", ""),
    ("FifoThroughputLimit", ""),
];

/// Attributes SQS computes; readable, never settable.
pub const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

pub const FIFO_ONLY: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

pub const MAX_MESSAGE_SIZE: i64 = 1_048_576;
pub const MAX_VISIBILITY_TIMEOUT: i64 = 43_200;
pub const MAX_DELAY_SECONDS: i64 = 900;
pub const MAX_WAIT_TIME_SECONDS: i64 = 20;

/// The attributes of a new queue: defaults, then what the caller gave.
pub fn for_new_queue(
    fifo: bool,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut attrs: BTreeMap<String, String> = SETTABLE
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if fifo {
        attrs.insert("FifoQueue".into(), "true".into());
        attrs.insert("ContentBasedDeduplication".into(), "false".into());
        attrs.insert("DeduplicationScope".into(), "queue".into());
        attrs.insert("FifoThroughputLimit".into(), "perQueue".into());
    }
    if given.contains_key("KmsMasterKeyId") {
        attrs.remove("SqsManagedSseEnabled");
    }
    apply(&mut attrs, fifo, given, true)?;
    Ok(attrs)
}

/// Validates `given` and merges it into `attrs`.
pub fn apply(
    attrs: &mut BTreeMap<String, String>,
    fifo: bool,
    given: &BTreeMap<String, String>,
    creating: bool,
) -> Result<(), AwsError> {
    for (name, value) in given {
        if !SETTABLE.iter().any(|(n, _)| n == name) {
            return Err(invalid_attribute_name(name));
        }
        if FIFO_ONLY.contains(&name.as_str()) && !fifo {
            return Err(invalid_attribute_name(name));
        }
        validate(name, value, fifo, creating)?;
    }
    for (name, value) in given {
        match name.as_str() {
            // Setting one encryption mode turns the other off, as SQS does.
            "KmsMasterKeyId" if !value.is_empty() => {
                attrs.insert("SqsManagedSseEnabled".into(), "false".into());
                attrs
                    .entry("KmsDataKeyReusePeriodSeconds".into())
                    .or_insert_with(|| "300".into());
            }
            "SqsManagedSseEnabled" if value == "true" => {
                attrs.remove("KmsMasterKeyId");
                attrs.remove("KmsDataKeyReusePeriodSeconds");
            }
            _ => {}
        }
        if value.is_empty()
            && matches!(
                name.as_str(),
                "Policy" | "RedrivePolicy" | "RedriveAllowPolicy" | "KmsMasterKeyId"
            )
        {
            attrs.remove(name);
        } else {
            attrs.insert(name.clone(), normalize(name, value));
        }
    }
    Ok(())
}

fn normalize(name: &str, value: &str) -> String {
    match name {
        "RedrivePolicy" => serde_json::from_str::<Value>(value)
            .ok()
            .and_then(|v| {
                let arn = v.get("deadLetterTargetArn")?.as_str()?.to_string();
                let count = count_value(v.get("maxReceiveCount")?)?;
                Some(
                    serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": count})
                        .to_string(),
                )
            })
            .unwrap_or_else(|| value.to_string()),
        "FifoQueue" | "ContentBasedDeduplication" | "SqsManagedSseEnabled" => {
            value.to_ascii_lowercase()
        }
        _ => value.to_string(),
    }
}

fn count_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn int_in(name: &str, value: &str, min: i64, max: i64) -> Result<(), AwsError> {
    match value.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(()),
        _ => Err(invalid_attribute_value(name)),
    }
}

fn validate(name: &str, value: &str, fifo: bool, creating: bool) -> Result<(), AwsError> {
    match name {
        "DelaySeconds" => int_in(name, value, 0, MAX_DELAY_SECONDS),
        "MaximumMessageSize" => int_in(name, value, 1024, MAX_MESSAGE_SIZE),
        "MessageRetentionPeriod" => int_in(name, value, 60, 1_209_600),
        "ReceiveMessageWaitTimeSeconds" => int_in(name, value, 0, MAX_WAIT_TIME_SECONDS),
        "VisibilityTimeout" => int_in(name, value, 0, MAX_VISIBILITY_TIMEOUT),
        "KmsDataKeyReusePeriodSeconds" => int_in(name, value, 60, 86_400),
        "SqsManagedSseEnabled" | "ContentBasedDeduplication" => {
            match value.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err(invalid_attribute_value(name)),
            }
        }
        "FifoQueue" => match value.to_ascii_lowercase().as_str() {
            "true" if fifo => Ok(()),
            "false" if !fifo && creating => Ok(()),
            // A standard queue has no FifoQueue attribute to set.
            _ if !creating && !fifo => Err(invalid_attribute_name(name)),
            _ if !creating => Err(sqs_error(
                "InvalidAttributeValue",
                "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.",
            )),
            _ => Err(invalid_attribute_value(name)),
        },
        "DeduplicationScope" => match value {
            "messageGroup" | "queue" => Ok(()),
            _ => Err(invalid_attribute_value(name)),
        },
        "FifoThroughputLimit" => match value {
            "perQueue" | "perMessageGroupId" => Ok(()),
            _ => Err(invalid_attribute_value(name)),
        },
        "Policy" => {
            if value.is_empty() || serde_json::from_str::<Value>(value).is_ok_and(|v| v.is_object())
            {
                Ok(())
            } else {
                Err(invalid_attribute_value(name))
            }
        }
        "RedrivePolicy" => validate_redrive_policy(value),
        "RedriveAllowPolicy" => validate_redrive_allow_policy(value),
        _ => Ok(()),
    }
}

fn validate_redrive_policy(value: &str) -> Result<(), AwsError> {
    if value.is_empty() {
        return Ok(());
    }
    // AWS answers a malformed redrive policy with InvalidParameterValue, not
    // InvalidAttributeValue (recorded answers of SQS agree).
    let bad = |why: &str| {
        AwsError::invalid_parameter_value(format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let v: Value =
        serde_json::from_str(value).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    if tsumiki_core::ids::parse_arn(arn).is_none_or(|(svc, ..)| svc != "sqs") {
        return Err(bad("Invalid value for deadLetterTargetArn."));
    }
    let count = v.get("maxReceiveCount").ok_or_else(|| {
        bad("Redrive policy does not contain mandatory attribute: maxReceiveCount.")
    })?;
    match count_value(count) {
        Some(c) if (1..=1000).contains(&c) => Ok(()),
        _ => Err(bad(
            "Invalid value for maxReceiveCount: must be an integer between 1 and 1000.",
        )),
    }
}

fn validate_redrive_allow_policy(value: &str) -> Result<(), AwsError> {
    if value.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        sqs_error(
            "InvalidAttributeValue",
            format!("Value {value} for parameter RedriveAllowPolicy is invalid. Reason: {why}"),
        )
    };
    let v: Value = serde_json::from_str(value)
        .map_err(|_| bad("Redrive allow policy is not a valid JSON map."))?;
    let permission = v
        .get("redrivePermission")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive allow policy does not contain mandatory attribute: redrivePermission.")
        })?;
    let sources = v.get("sourceQueueArns").and_then(Value::as_array);
    match permission {
        "allowAll" | "denyAll" if sources.is_some_and(|s| !s.is_empty()) => {
            Err(bad("Only byQueue permission allows sourceQueueArns."))
        }
        "allowAll" | "denyAll" => Ok(()),
        "byQueue" => match sources {
            Some(s) if !s.is_empty() && s.len() <= 10 => Ok(()),
            _ => Err(bad(
                "byQueue permission needs between 1 and 10 sourceQueueArns.",
            )),
        },
        _ => Err(bad("Invalid value for redrivePermission.")),
    }
}

/// `RedrivePolicy` as (dead-letter queue ARN, maxReceiveCount).
pub fn redrive_policy(attrs: &BTreeMap<String, String>) -> Option<(String, i64)> {
    let v: Value = serde_json::from_str(attrs.get("RedrivePolicy")?).ok()?;
    Some((
        v.get("deadLetterTargetArn")?.as_str()?.to_string(),
        count_value(v.get("maxReceiveCount")?)?,
    ))
}

pub fn int(attrs: &BTreeMap<String, String>, name: &str) -> i64 {
    attrs
        .get(name)
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            SETTABLE
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, d)| d.parse().ok())
        })
        .unwrap_or(0)
}

pub fn flag(attrs: &BTreeMap<String, String>, name: &str) -> bool {
    attrs.get(name).is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let a = for_new_queue(false, &BTreeMap::new()).expect("valid");
        assert_eq!(a["VisibilityTimeout"], "30");
        assert_eq!(a["MaximumMessageSize"], "1048576");
        assert_eq!(a["MessageRetentionPeriod"], "345600");
        assert!(!a.contains_key("FifoQueue"));
        let f = for_new_queue(true, &given(&[("FifoQueue", "true")])).expect("valid");
        assert_eq!(f["DeduplicationScope"], "queue");
    }

    #[test]
    fn rejects_out_of_range_and_unknown() {
        assert_eq!(
            for_new_queue(false, &given(&[("VisibilityTimeout", "43201")]))
                .unwrap_err()
                .code,
            "InvalidAttributeValue"
        );
        assert_eq!(
            for_new_queue(false, &given(&[("DelaySeconds", "x")]))
                .unwrap_err()
                .code,
            "InvalidAttributeValue"
        );
        assert_eq!(
            for_new_queue(false, &given(&[("Bogus", "1")]))
                .unwrap_err()
                .code,
            "InvalidAttributeName"
        );
        assert_eq!(
            for_new_queue(false, &given(&[("ContentBasedDeduplication", "true")]))
                .unwrap_err()
                .code,
            "InvalidAttributeName"
        );
    }

    #[test]
    fn redrive_policy_round_trip() {
        let mut a = for_new_queue(
            false,
            &given(&[("RedrivePolicy", r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#)]),
        )
        .expect("valid");
        assert_eq!(
            redrive_policy(&a),
            Some(("arn:aws:sqs:us-east-1:000000000000:dlq".into(), 3))
        );
        apply(&mut a, false, &given(&[("RedrivePolicy", "")]), false).expect("valid");
        assert_eq!(redrive_policy(&a), None);
        assert!(
            for_new_queue(
                false,
                &given(&[("RedrivePolicy", r#"{"maxReceiveCount":3}"#)])
            )
            .is_err()
        );
    }
}
