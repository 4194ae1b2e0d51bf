//! The seams between tsumiki's layers: traits and plain data, no logic.
//!
//! The gateway calls services through [`Service`]; later ports (`Invoker`, `Compute`,
//! `QueueSource`, `ShardSource`, `EventBus`) join here as the triggers and compute layers grow.
//! A change here is an API change: keep it in its own commit and say why.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tsumiki_core::{AwsError, RequestContext};

/// One AWS service: an operation's decoded input to its output, or an AWS error.
///
/// Input and output are JSON values shaped by the service model (member names as in the
/// model; blobs as base64 strings; timestamps as epoch seconds). The protocol layer turns
/// them into and out of wire formats, so a service never sees HTTP.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The model's service key, e.g. `sqs`.
    fn name(&self) -> &'static str;

    /// Runs `operation` for the caller in `ctx`. Operations of the model that the service does
    /// not implement answer [`AwsError::not_implemented`].
    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError>;

    /// Fills members the request carried outside the model's places before the input is
    /// validated (SQS's query API takes the queue URL as the request path instead of a
    /// `QueueUrl` member). Most services need nothing here.
    fn complete_input(&self, _ctx: &RequestContext, _operation: &str, _input: &mut Value) {}

    /// Forgets every resource of this service, in every account and region.
    async fn reset(&self) -> Result<(), AwsError>;
}

/// Every served [`Service`] by its model key; Step Functions SDK integrations and rule
/// targets call other services through this, by name.
#[derive(Clone, Default)]
pub struct Services {
    by_name: BTreeMap<&'static str, Arc<dyn Service>>,
}

impl Services {
    /// Adds a service under its own name.
    pub fn register(&mut self, service: Arc<dyn Service>) {
        self.by_name.insert(service.name(), service);
    }

    /// The service with model key `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.by_name.get(name)
    }

    /// Names of all served services.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// All services.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Service>> + '_ {
        self.by_name.values()
    }
}

/// One line of a log stream: milliseconds since the epoch and the text (no trailing newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// When it was written, in milliseconds since the epoch (the clock's time).
    pub timestamp_ms: i64,
    /// The text.
    pub message: String,
}

/// Where compute writes what functions, jobs and tasks print, and their `START`/`END`/`REPORT`
/// lines. CloudWatch Logs implements it; compute sees only this.
#[async_trait]
pub trait LogSink: Send + Sync + 'static {
    /// Appends `events` to `stream` of `group` in the caller's account and region, creating
    /// the group and the stream when they do not exist (as Lambda's service role does). An
    /// `Ok` means the events are durable and visible to GetLogEvents.
    async fn append(
        &self,
        account: &str,
        region: &str,
        group: &str,
        stream: &str,
        events: Vec<LogEvent>,
    ) -> Result<(), AwsError>;
}
