//! CloudWatch Logs' errors, in AWS's words. Every code used here is an error shape of the
//! model (`models/logs.json`), which a unit test checks.

use tsumiki_core::AwsError;

/// The error shapes this service answers with; the model gives them no HTTP status, so they
/// are all 400s, as AWS sends them.
pub const CODES: &[&str] = &[
    "InvalidParameterException",
    "ResourceAlreadyExistsException",
    "ResourceNotFoundException",
    "TooManyTagsException",
    "LimitExceededException",
];

pub(crate) fn logs_error(code: &'static str, message: impl Into<String>) -> AwsError {
    debug_assert!(CODES.contains(&code), "{code} is missing from CODES");
    AwsError::new(code, 400, message)
}

pub fn invalid_parameter(message: impl Into<String>) -> AwsError {
    logs_error("InvalidParameterException", message)
}

pub fn group_not_found() -> AwsError {
    logs_error(
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
}

pub fn stream_not_found() -> AwsError {
    logs_error(
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )
}

pub fn resource_not_found(message: impl Into<String>) -> AwsError {
    logs_error("ResourceNotFoundException", message)
}

pub fn group_exists() -> AwsError {
    logs_error(
        "ResourceAlreadyExistsException",
        "The specified log group already exists",
    )
}

pub fn stream_exists() -> AwsError {
    logs_error(
        "ResourceAlreadyExistsException",
        "The specified log stream already exists",
    )
}

pub fn too_many_tags(resource: &str) -> AwsError {
    let mut err = logs_error(
        "TooManyTagsException",
        "A resource can have no more than 50 tags.",
    );
    err.extra = Some(Box::new(serde_json::Map::from_iter([(
        "resourceName".to_string(),
        serde_json::Value::String(resource.to_string()),
    )])));
    err
}

/// The Coral-style wording AWS uses for a member that breaks a constraint of the model.
pub fn constraint(member: &str, value: &str, constraint: &str) -> AwsError {
    invalid_parameter(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_error_shapes_of_the_model() {
        let model =
            tsumiki_protocol::Model::from_json("logs", crate::MODEL_JSON).expect("model loads");
        for code in CODES {
            let shape = model.shapes.get(*code).unwrap_or_else(|| panic!("{code}"));
            assert!(shape.exception, "{code} is not an error shape");
            assert_eq!(model.error(code, "m").status, 400, "{code}");
        }
    }
}
