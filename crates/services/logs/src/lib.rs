//! Amazon CloudWatch Logs: log groups, streams and events, and the [`LogSink`] compute writes
//! function output into.
//!
//! What it does: group and stream lifecycle with AWS's names, limits and errors; PutLogEvents
//! with AWS's batch rules (order, size, 24-hour span, too old, too new, expired);
//! GetLogEvents with AWS's forward and backward tokens; FilterLogEvents across streams with the
//! filter pattern language (`filter.rs`); retention policies, enforced on read and by a sweep
//! that follows the clock; tags by group name and by ARN; subscription filters delivering to
//! Lambda, Kinesis and Firehose (`subscription.rs`); metric filters and TestMetricFilter
//! (`metric.rs`; no metric data is emitted: tsumiki serves no CloudWatch metrics API). What it
//! does not: cross-account subscription destinations, Logs Insights queries, exports, deliveries, KMS encryption (the key id
//! is stored, nothing is encrypted), deletion protection, anomaly detection; those operations
//! answer `NotImplemented`.
//! Read `state.rs` (data and durability), then `events.rs`.

mod error;
mod events;
pub use tsumiki_lang::log_filter as filter;
mod group;
mod input;
mod metric;
mod paging;
mod state;
mod stream;
mod subscription;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{LogEvent, LogSink};
use tsumiki_store::{Batch, Store};

use crate::error::group_not_found;
use crate::state::{Group, GroupCell, State, writes};

/// The CloudWatch Logs model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/logs.json");

/// The CloudWatch Logs service.
pub struct Logs {
    state: Arc<State>,
    clock: Arc<Clock>,
    /// Where subscription filters deliver; wired after the other services exist.
    targets: parking_lot::RwLock<Option<subscription::Targets>>,
}

impl Logs {
    /// Loads every log group, stream and event from `store` and starts the retention sweep.
    pub async fn start(store: Store, clock: Arc<Clock>) -> Result<Arc<Logs>, AwsError> {
        let state = Arc::new(State::new(store));
        let loaded = state.load().await.map_err(store_error)?;
        tracing::info!(
            groups = loaded.groups,
            streams = loaded.streams,
            events = loaded.events,
            "CloudWatch Logs state loaded."
        );
        let logs = Arc::new(Logs {
            state,
            clock,
            targets: parking_lot::RwLock::new(None),
        });
        let sweeper = Arc::downgrade(&logs);
        tokio::spawn(async move { events::retention_sweeper(sweeper).await });
        Ok(logs)
    }

    /// Where subscription filters deliver: Lambda functions through `invoker`, Kinesis streams
    /// through `services`.
    pub fn set_subscription_targets(
        &self,
        invoker: Arc<dyn tsumiki_ports::AsyncInvoke>,
        services: tsumiki_ports::Services,
    ) {
        *self.targets.write() = Some(subscription::Targets { invoker, services });
    }

    /// Runs `change` on a group under its lock and queues the store writes it made (plus the
    /// group's own record if it was never stored) before the lock is let go; answers once
    /// they are durable. A group deleted meanwhile answers ResourceNotFoundException.
    pub(crate) async fn write_group<T>(
        &self,
        cell: &GroupCell,
        change: impl FnOnce(&mut Group, &mut Batch) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let (out, commit) = {
            let mut g = cell.group.lock();
            if g.deleted {
                return Err(group_not_found());
            }
            let mut batch = Batch::new();
            let out = change(&mut g, &mut batch)?;
            if !g.persisted {
                writes::group(&mut batch, &cell.key, &g);
                g.persisted = true;
            }
            (out, self.state.store.commit(batch))
        };
        commit.await.map_err(store_error)?;
        Ok(out)
    }

    /// Changes a group's own settings (retention, tags) and rewrites its record.
    pub(crate) async fn update_group<T>(
        &self,
        cell: &GroupCell,
        change: impl FnOnce(&mut Group) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        self.write_group(cell, |g, batch| {
            let out = change(g)?;
            writes::group(batch, &cell.key, g);
            Ok(out)
        })
        .await
    }

    /// Reads a group under its lock.
    pub(crate) fn read_group<T>(
        &self,
        cell: &GroupCell,
        read: impl FnOnce(&Group) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let g = cell.group.lock();
        if g.deleted {
            return Err(group_not_found());
        }
        read(&g)
    }
}

#[async_trait]
impl tsumiki_ports::Service for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateLogGroup" => group::create_log_group(self, ctx, &input).await,
            "DeleteLogGroup" => group::delete_log_group(self, ctx, &input).await,
            "DescribeLogGroups" => group::describe_log_groups(self, ctx, &input),
            "PutRetentionPolicy" => group::put_retention_policy(self, ctx, &input).await,
            "DeleteRetentionPolicy" => group::delete_retention_policy(self, ctx, &input).await,
            "TagLogGroup" => group::tag_log_group(self, ctx, &input).await,
            "UntagLogGroup" => group::untag_log_group(self, ctx, &input).await,
            "ListTagsLogGroup" => group::list_tags_log_group(self, ctx, &input),
            "TagResource" => group::tag_resource(self, &input).await,
            "UntagResource" => group::untag_resource(self, &input).await,
            "ListTagsForResource" => group::list_tags_for_resource(self, &input),
            "CreateLogStream" => stream::create_log_stream(self, ctx, &input).await,
            "DeleteLogStream" => stream::delete_log_stream(self, ctx, &input).await,
            "DescribeLogStreams" => stream::describe_log_streams(self, ctx, &input),
            "PutSubscriptionFilter" => {
                subscription::put_subscription_filter(self, ctx, &input).await
            }
            "DescribeSubscriptionFilters" => {
                subscription::describe_subscription_filters(self, ctx, &input)
            }
            "DeleteSubscriptionFilter" => {
                subscription::delete_subscription_filter(self, ctx, &input).await
            }
            "PutMetricFilter" => metric::put_metric_filter(self, ctx, &input).await,
            "DescribeMetricFilters" => metric::describe_metric_filters(self, ctx, &input),
            "DeleteMetricFilter" => metric::delete_metric_filter(self, ctx, &input).await,
            "TestMetricFilter" => metric::test_metric_filter(&input),
            "PutLogEvents" => events::put_log_events(self, ctx, &input).await,
            "GetLogEvents" => events::get_log_events(self, ctx, &input),
            "FilterLogEvents" => events::filter_log_events(self, ctx, &input),
            other => Err(AwsError::not_implemented("logs", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        self.state.reset().await.map_err(store_error)
    }
}

#[async_trait]
impl LogSink for Logs {
    async fn append(
        &self,
        account: &str,
        region: &str,
        group: &str,
        stream: &str,
        events: Vec<LogEvent>,
    ) -> Result<(), AwsError> {
        events::append(self, account, region, group, stream, events).await
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "CloudWatch Logs could not write to the store.");
    AwsError::internal()
}
