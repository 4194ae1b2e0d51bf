//! Placeholder while the codec is written.

use serde_json::Value;
use tsumiki_core::AwsError;

use crate::model::{Model, Operation};
use crate::{Request, Response};

pub fn decode(model: &Model, op: &Operation, _req: &Request<'_>) -> Result<Value, AwsError> {
    Err(AwsError::not_implemented(&model.metadata.service_id, &op.name))
}

pub fn encode(_model: &Model, _op: &Operation, _output: &Value) -> Response {
    crate::response(501, "application/json", "{}")
}

pub fn encode_error(model: Option<&Model>, err: &AwsError) -> Response {
    crate::json::encode_error(model, err)
}
