//! The seams between tsumiki's layers: traits and plain data, no logic.
//!
//! The gateway calls services through [`Service`]; later ports (`Invoker`, `Compute`,
//! `QueueSource`, `ShardSource`, `EventBus`) join here as the triggers and compute layers grow.
//! A change here is an API change: keep it in its own commit and say why.
#![warn(missing_docs)]

pub mod http;

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

    /// Headers computed from an encoded response body, added to every response of this
    /// service (DynamoDB's clients check `x-amz-crc32`, the CRC32 of the body). Most services
    /// add none.
    fn response_headers(&self, _body: &[u8]) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The error as this service names it on the wire. A json service's `__type` is the bare
    /// shape name for most services; DynamoDB's carries AWS's namespaces
    /// (`com.amazon.coral.validate#ValidationException`), which strict clients compare.
    fn wire_error(&self, err: AwsError) -> AwsError {
        err
    }

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

/// A function as triggers address it: name (or ARN) and qualifier in an account and region.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionTarget {
    /// The function's account.
    pub account: String,
    /// The function's region.
    pub region: String,
    /// Name, partial ARN or ARN; a `:qualifier` suffix is allowed.
    pub function: String,
    /// A version or alias; `None` runs `$LATEST` (unless `function` carries one).
    pub qualifier: Option<String>,
}

/// What a synchronous invocation returned, as triggers see it.
#[derive(Clone, Debug)]
pub struct FunctionResult {
    /// The function's response, or its error document.
    pub payload: Vec<u8>,
    /// `Unhandled` when the function failed; its error document is the payload.
    pub function_error: Option<String>,
    /// The version that ran.
    pub executed_version: String,
    /// The invocation's request id.
    pub request_id: String,
}

/// How a function wants asynchronous invocations handled (`PutFunctionEventInvokeConfig` and
/// the function's `DeadLetterConfig`), with AWS's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncSettings {
    /// The function's ARN, qualified when the invocation named a qualifier.
    pub function_arn: String,
    /// 0 to 2; AWS's default is 2.
    pub max_retries: u32,
    /// 60 to 21,600 seconds; AWS's default is 21,600 (6 hours).
    pub max_event_age_s: u32,
    /// Destination ARN for successful invocations.
    pub on_success: Option<String>,
    /// Destination ARN for events that failed every attempt or aged out.
    pub on_failure: Option<String>,
    /// The function's dead-letter queue or topic (used when there is no on-failure destination).
    pub dead_letter: Option<String>,
}

/// Runs functions for triggers (Lambda implements it; triggers never see Lambda's API).
#[async_trait]
pub trait FunctionInvoker: Send + Sync + 'static {
    /// Runs `target` synchronously with `payload` under `request_id`. An `Err` means the
    /// invocation did not run (throttled, not found, ...); a function error is an `Ok`.
    async fn invoke(
        &self,
        target: &FunctionTarget,
        payload: Vec<u8>,
        request_id: &str,
    ) -> Result<FunctionResult, AwsError>;

    /// The target's asynchronous-invocation settings, or an error when it does not exist.
    fn async_settings(&self, target: &FunctionTarget) -> Result<AsyncSettings, AwsError>;
}

/// Accepts asynchronous invocations (`InvocationType: Event` and every async event source).
#[async_trait]
pub trait AsyncInvoke: Send + Sync + 'static {
    /// Queues one event for `target`; `Ok` means it is durable and will be attempted.
    async fn enqueue(
        &self,
        target: FunctionTarget,
        payload: Vec<u8>,
        request_id: String,
    ) -> Result<(), AwsError>;
}

/// A record of one successful mutating API call, as CloudTrail would log it: what EventBridge
/// turns into an `AWS API Call via CloudTrail` event. The gateway publishes one per call; it
/// knows nothing of rules or buses.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainEvent {
    /// The model key of the service called, e.g. `sqs` (the event's source is `aws.sqs`).
    pub service: String,
    /// CloudTrail's `eventSource`, e.g. `sqs.amazonaws.com`.
    pub event_source: String,
    /// The operation, e.g. `CreateQueue`.
    pub event_name: String,
    /// The operation's decoded input, shaped by the service model.
    pub request_parameters: Value,
    /// The operation's output, shaped by the service model.
    pub response_elements: Value,
    /// The caller's account.
    pub account: String,
    /// The region the call was made in.
    pub region: String,
    /// When the call was made, in milliseconds since the epoch (the clock's time).
    pub time_ms: i64,
    /// The request id of the call.
    pub request_id: String,
    /// The caller's access key id, when the request was signed.
    pub access_key: Option<String>,
}

/// Where the gateway reports successful mutating calls (DESIGN.md decision 7: services publish,
/// triggers subscribe). EventBridge implements it and routes the records to each account's
/// default event bus.
pub trait EventSink: Send + Sync + 'static {
    /// Takes one record; must not block (delivery happens in the background).
    fn publish(&self, ctx: &RequestContext, event: DomainEvent);

    /// Whether records of calls in `account` and `region` can lead anywhere now, so a caller
    /// may skip building them (copying a large request, say) when nothing listens.
    fn interested(&self, _account: &str, _region: &str) -> bool {
        true
    }
}

/// An event source mapping as its poller needs it (Lambda owns the resource; triggers poll).
#[derive(Clone, Debug, PartialEq)]
pub struct MappingSpec {
    /// The mapping's id.
    pub uuid: String,
    /// The source: an SQS queue ARN or a Kinesis stream ARN (DynamoDB Streams later).
    pub source_arn: String,
    /// The function it invokes.
    pub function: FunctionTarget,
    /// Largest batch (SQS: 1-10,000, default 10).
    pub batch_size: u32,
    /// How long to gather a batch, in seconds (SQS default 0).
    pub batching_window_s: u32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_item_failures: bool,
    /// `FilterCriteria` patterns (EventBridge pattern language); empty lets everything in.
    pub filters: Vec<String>,
    /// Concurrent invocations at most (`ScalingConfig.MaximumConcurrency`).
    pub max_concurrency: u32,
    /// A disabled mapping polls nothing.
    pub enabled: bool,
    /// Stream sources: where a shard without a checkpoint starts (`TRIM_HORIZON`, `LATEST`,
    /// `AT_TIMESTAMP`); `None` for queues.
    pub starting_position: Option<String>,
    /// Stream sources: the time `AT_TIMESTAMP` starts at, in milliseconds since the epoch.
    pub starting_position_timestamp_ms: Option<i64>,
    /// Stream sources: retries of a failing batch (`MaximumRetryAttempts`, 0-10,000); -1
    /// (AWS's default) retries until the records expire.
    pub maximum_retry_attempts: i32,
    /// Stream sources: records older than this many seconds are not processed
    /// (`MaximumRecordAgeInSeconds`, 60-604,800); -1 (AWS's default) means no limit.
    pub maximum_record_age_s: i32,
    /// Stream sources: split a failing batch in two and retry each half
    /// (`BisectBatchOnFunctionError`).
    pub bisect_on_error: bool,
    /// Stream sources: where the metadata of a batch that exhausted its retries or aged out goes
    /// (`DestinationConfig.OnFailure.Destination`: an SQS queue ARN).
    pub on_failure: Option<String>,
    /// Stream sources: batches of one shard processed at once (`ParallelizationFactor`, 1-10);
    /// records of one partition key keep their order.
    pub parallelization_factor: u32,
    /// Stream sources: the tumbling window in seconds (`TumblingWindowInSeconds`, 0-900; 0:
    /// none), whose state the function carries from one invocation to the next.
    pub tumbling_window_s: u32,
}

/// Runs event source mappings (the triggers layer implements it).
pub trait EventSourcePollers: Send + Sync + 'static {
    /// Starts, restarts or stops (when disabled) the poller of `spec.uuid`.
    fn configure(&self, spec: MappingSpec);
    /// Stops and forgets the poller of `uuid`.
    fn remove(&self, uuid: &str);
}

/// Objects as other services read and write them (Firehose's S3 destination, Lambda code and
/// Glue scripts from S3, Step Functions item readers). S3 implements it; callers never see
/// S3's wire protocol.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes `body` to `bucket`/`key` in the caller's account, as a PutObject would (events and
    /// notifications included). Returns the new object's ETag.
    async fn put_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        content_type: Option<&str>,
    ) -> Result<String, AwsError>;

    /// Reads the whole object at `bucket`/`key` (`NoSuchBucket`/`NoSuchKey` when absent).
    async fn get_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
    ) -> Result<bytes::Bytes, AwsError>;

    /// Keys under `prefix` in `bucket`, in S3's order, at most `max` of them.
    async fn list_keys(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, AwsError>;
}
