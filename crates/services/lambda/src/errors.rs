//! Lambda's errors as AWS sends them: the model's shape name, its status, and `"Type":"User"`
//! (or `"Service"`) beside the message.

use serde_json::{Map, Value, json};
use tsumiki_core::AwsError;

fn with_type(mut err: AwsError, kind: &str) -> AwsError {
    let mut extra = Map::new();
    extra.insert("Type".into(), json!(kind));
    err.extra = Some(Box::new(extra));
    err
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    with_type(
        AwsError::new("InvalidParameterValueException", 400, message),
        "User",
    )
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    with_type(
        AwsError::new("ResourceNotFoundException", 404, message),
        "User",
    )
}

pub(crate) fn function_not_found(arn: &str) -> AwsError {
    not_found(format!("Function not found: {arn}"))
}

pub(crate) fn conflict(message: impl Into<String>) -> AwsError {
    with_type(
        AwsError::new("ResourceConflictException", 409, message),
        "User",
    )
}

pub(crate) fn precondition(message: impl Into<String>) -> AwsError {
    with_type(
        AwsError::new("PreconditionFailedException", 412, message),
        "User",
    )
}

pub(crate) fn too_large(message: impl Into<String>) -> AwsError {
    with_type(
        AwsError::new("RequestTooLargeException", 413, message),
        "User",
    )
}

pub(crate) fn throttled(reason: &str) -> AwsError {
    let mut err = AwsError::new("TooManyRequestsException", 429, "Rate Exceeded.");
    let mut extra = Map::new();
    extra.insert("Type".into(), json!("User"));
    extra.insert("Reason".into(), Value::String(reason.to_string()));
    err.extra = Some(Box::new(extra));
    err
}

/// AWS's Coral-style validation error, which Lambda answers for pattern and range failures.
pub(crate) fn validation(field: &str, value: &str, constraint: &str) -> AwsError {
    AwsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}
