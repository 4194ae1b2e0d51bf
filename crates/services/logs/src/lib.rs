//! Amazon CloudWatch Logs: log groups, streams and events, and the [`LogSink`] compute writes
//! function output into.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{LogEvent, LogSink};
use tsumiki_store::Store;

/// The CloudWatch Logs model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/logs.json");

/// The CloudWatch Logs service.
pub struct Logs {
    _store: Store,
    _clock: Arc<Clock>,
}

impl Logs {
    /// Loads every log group from `store`.
    pub async fn start(store: Store, clock: Arc<Clock>) -> Result<Arc<Logs>, AwsError> {
        Ok(Arc::new(Logs {
            _store: store,
            _clock: clock,
        }))
    }
}

#[async_trait]
impl tsumiki_ports::Service for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    async fn call(
        &self,
        _ctx: &RequestContext,
        operation: &str,
        _input: Value,
    ) -> Result<Value, AwsError> {
        Err(AwsError::not_implemented("logs", operation))
    }

    async fn reset(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

#[async_trait]
impl LogSink for Logs {
    async fn append(
        &self,
        _account: &str,
        _region: &str,
        _group: &str,
        _stream: &str,
        _events: Vec<LogEvent>,
    ) -> Result<(), AwsError> {
        Err(AwsError::not_implemented("logs", "append"))
    }
}
