//! Triggers (DESIGN.md decision 6): what turns events into invocations, each with AWS's own
//! retry rules. `async_invoke` is Lambda's asynchronous invocation: a durable queue, retries
//! on function errors (about 1 then 2 minutes apart), back-off on throttles up to the maximum
//! event age, then destinations or a dead-letter queue.
//!
//! `queue_poller` runs SQS event source mappings (receive, invoke, delete on success).
//! `shard_poller` runs stream event source mappings (per shard, in order, parents before
//! children, checkpoints, retries, bisect, on-failure destinations) over a `ShardSource`
//! (Kinesis or DynamoDB Streams); its `PollerRouter` hands each mapping to the poller of its
//! source.
//!
//! Triggers see functions only through `ports::FunctionInvoker` and other services only
//! through `ports::Services`, so they never depend on a service crate.

pub mod async_invoke;
mod deliver;
pub mod queue_poller;
pub mod shard_poller;
pub mod shard_source;

pub use async_invoke::AsyncInvoker;
pub use queue_poller::QueuePollers;
pub use shard_poller::{PollerRouter, ShardPollers};
