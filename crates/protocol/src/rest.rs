//! Shared parts of the REST protocols: matching a request to an operation by method and URI
//! template, and reading URI labels, query strings and headers.

use tsumiki_core::AwsError;

use crate::model::{Model, Operation};
use crate::Request;

pub fn identify<'m>(model: &'m Model, req: &Request<'_>) -> Result<&'m Operation, AwsError> {
    Err(AwsError::unknown_operation(&model.metadata.service_id, req.uri.path()))
}
