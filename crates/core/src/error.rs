//! One error type for everything that reaches a client.
//!
//! Services build these from their model's error shapes; the protocol layer encodes them per
//! protocol. Bugs and IO failures become `internal` errors that carry no internals.

use std::borrow::Cow;
use std::fmt;

/// Who is to blame, as AWS says in query errors and `x-amzn-query-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Sender,
    Receiver,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Sender => "Sender",
            Fault::Receiver => "Receiver",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AwsError {
    /// The error shape's name, e.g. `QueueDoesNotExist`; json protocols send it as `__type`.
    pub code: Cow<'static, str>,
    pub message: String,
    pub status: u16,
    pub fault: Fault,
    /// The code awsQuery clients see for this error, e.g. `AWS.SimpleQueueService.NonExistentQueue`,
    /// when it differs from `code`.
    pub query_code: Option<Cow<'static, str>>,
    /// Extra top-level members of the error body (DynamoDB's `Item`, say). Boxed: with
    /// serde_json's `preserve_order` (which jsonata-core turns on) a map is large, and every
    /// `Result<_, AwsError>` carries this.
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl AwsError {
    pub fn new(
        code: impl Into<Cow<'static, str>>,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        let status_code = status;
        AwsError {
            code: code.into(),
            message: message.into(),
            status: status_code,
            fault: if status_code >= 500 {
                Fault::Receiver
            } else {
                Fault::Sender
            },
            query_code: None,
            extra: None,
        }
    }

    pub fn with_query_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.query_code = Some(code.into());
        self
    }

    /// The code an awsQuery client sees.
    pub fn wire_query_code(&self) -> &str {
        self.query_code.as_deref().unwrap_or(&self.code)
    }

    /// A client error with AWS's generic `ValidationException` shape.
    pub fn validation(message: impl Into<String>) -> Self {
        AwsError::new("ValidationException", 400, message)
    }

    pub fn invalid_parameter_value(message: impl Into<String>) -> Self {
        AwsError::new("InvalidParameterValue", 400, message)
    }

    pub fn missing_parameter(message: impl Into<String>) -> Self {
        AwsError::new("MissingParameter", 400, message)
    }

    /// A bug or an IO failure: logged by the caller with the request id, never shown in detail.
    pub fn internal() -> Self {
        AwsError::new(
            "InternalFailure",
            500,
            "The request processing has failed because of an unknown error, exception or failure.",
        )
    }

    pub fn unknown_operation(service: &str, operation: &str) -> Self {
        AwsError::new(
            "UnknownOperationException",
            400,
            format!("Unknown operation {operation} for service {service}."),
        )
    }

    /// An operation the model knows and tsumiki does not implement yet.
    pub fn not_implemented(service: &str, operation: &str) -> Self {
        AwsError::new(
            "NotImplemented",
            501,
            format!("The operation {service}.{operation} is not implemented by tsumiki yet."),
        )
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for AwsError {}
