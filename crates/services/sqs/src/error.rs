//! SQS's errors, with the status and awsQuery code the model (`models/sqs.json`) gives each.
//! A unit test checks this table against the model, so the two cannot drift.

use tsumiki_core::{AwsError, Fault};

/// (shape name, awsQuery code, HTTP status) for every SQS error shape.
pub const ERRORS: &[(&str, &str, u16)] = &[
    (
        "BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        400,
    ),
    (
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        400,
    ),
    (
        "EmptyBatchRequest",
        "AWS.SimpleQueueService.EmptyBatchRequest",
        400,
    ),
    ("InvalidAddress", "InvalidAddress", 404),
    ("InvalidAttributeName", "InvalidAttributeName", 400),
    ("InvalidAttributeValue", "InvalidAttributeValue", 400),
    (
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        400,
    ),
    ("InvalidIdFormat", "InvalidIdFormat", 400),
    ("InvalidMessageContents", "InvalidMessageContents", 400),
    ("InvalidSecurity", "InvalidSecurity", 403),
    (
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        400,
    ),
    ("OverLimit", "OverLimit", 403),
    (
        "PurgeQueueInProgress",
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        403,
    ),
    (
        "QueueDeletedRecently",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        400,
    ),
    (
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        400,
    ),
    ("QueueNameExists", "QueueAlreadyExists", 400),
    ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 404),
    ("RequestThrottled", "RequestThrottled", 403),
    (
        "ResourceNotFoundException",
        "ResourceNotFoundException",
        404,
    ),
    (
        "TooManyEntriesInBatchRequest",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        400,
    ),
    (
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        400,
    ),
];

/// An error of the model's shape `shape`.
pub fn sqs_error(shape: &'static str, message: impl Into<String>) -> AwsError {
    let (code, status) = ERRORS
        .iter()
        .find(|(name, _, _)| *name == shape)
        .map(|(_, code, status)| (*code, *status))
        .unwrap_or((shape, 400));
    let mut err = AwsError::new(shape, status, message);
    err.fault = Fault::Sender;
    if code != shape {
        err = err.with_query_code(code);
    }
    err
}

pub fn queue_does_not_exist() -> AwsError {
    sqs_error("QueueDoesNotExist", "The specified queue does not exist.")
}

pub fn invalid_parameter(name: &str, value: &str, reason: &str) -> AwsError {
    AwsError::invalid_parameter_value(format!(
        "Value {value} for parameter {name} is invalid. Reason: {reason}"
    ))
}

pub fn invalid_attribute_value(name: &str) -> AwsError {
    sqs_error(
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}."),
    )
}

pub fn invalid_attribute_name(name: &str) -> AwsError {
    sqs_error("InvalidAttributeName", format!("Unknown Attribute {name}."))
}

pub fn receipt_handle_invalid(handle: &str) -> AwsError {
    sqs_error(
        "ReceiptHandleIsInvalid",
        format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_model() {
        let model =
            tsumiki_protocol::Model::from_json("sqs", crate::MODEL_JSON).expect("model loads");
        let mut from_model = Vec::new();
        for (name, shape) in &model.shapes {
            if !shape.exception || name.starts_with("Kms") {
                continue;
            }
            let err = model.error(name, "m");
            from_model.push((name.clone(), err.wire_query_code().to_string(), err.status));
        }
        from_model.sort();
        let mut table: Vec<_> = ERRORS
            .iter()
            .map(|(n, c, s)| (n.to_string(), c.to_string(), *s))
            .collect();
        table.sort();
        assert_eq!(table, from_model);
    }
}
