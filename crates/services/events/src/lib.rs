//! Amazon EventBridge (`events`, json 1.1) and EventBridge Scheduler (`scheduler`, rest-json)
//! in one crate, because they share targets, retries, dead-letter queues and the clock-driven
//! schedule loop.
//!
//! What it does: event buses (the default bus of each account and region exists implicitly),
//! permissions and tags; PutEvents with AWS's per-entry checks and envelope; rules with event
//! patterns (one compiled `tsumiki_lang` matcher per bus, so matching does not grow with the number
//! of rules) or `rate()`/`cron()` schedules; targets with `Input`, `InputPath` and
//! `InputTransformer`; delivery to SQS, Lambda (through Lambda's durable async invoker), another
//! event bus, CloudWatch Logs and Kinesis (`PartitionKeyPath`), with retry policies and SQS dead-
//! letter queues on the clock; Scheduler's groups and schedules (`at()`, `rate()`, `cron()` in a
//! time zone, start and end dates, delete after completion); and the `EventSink` through which the
//! gateway's API-call records become `AWS API Call via CloudTrail` events. What it does not: SNS,
//! Step Functions, ECS and API-destination targets are stored but their deliveries fail (logged,
//! then retried or dead-lettered as any failure); archives, replays, endpoints, connections,
//! partner sources and policy enforcement answer `NotImplemented` or are stored only.
//! Read `state.rs`, then `put.rs` (routing) and `deliver.rs` (targets and retries).

mod api;
mod deliver;
mod put;
pub use tsumiki_lang::schedule;
mod scheduler;
mod state;
mod timers;
pub mod transform;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::Notify;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{DomainEvent, EventSink, Services};
use tsumiki_store::Store;

use crate::state::State;

/// The EventBridge model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/events.json");
/// The EventBridge Scheduler model.
pub const SCHEDULER_MODEL_JSON: &str = include_str!("../../../../models/scheduler.json");

/// Amazon EventBridge; [`Events::scheduler`] gives the Scheduler service that shares it.
pub struct Events {
    state: State,
    clock: Arc<Clock>,
    services: Services,
    lambda: Arc<dyn tsumiki_ports::AsyncInvoke>,
    /// `http://host:port` other services' URLs are built on (SQS queue URLs).
    endpoint: RwLock<String>,
    /// Wakes the timer loop when a schedule or a retry changes.
    wake: Notify,
    /// This service itself, for the tasks it spawns.
    me: Weak<Events>,
}

impl Events {
    /// Loads state from `store` and starts the timer loop (schedules and retries). `services`
    /// are the targets' services (`sqs`, `logs`), called by name.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        services: Services,
        lambda: Arc<dyn tsumiki_ports::AsyncInvoke>,
    ) -> Result<Arc<Events>, AwsError> {
        let state = State::new(store);
        let (buses, rules, schedules, retries) = state.load().await.map_err(store_error)?;
        tracing::info!(
            buses,
            rules,
            schedules,
            retries,
            "EventBridge state loaded."
        );
        let events = Arc::new_cyclic(|me| Events {
            state,
            clock,
            services,
            lambda,
            endpoint: RwLock::new("http://localhost:4566".into()),
            wake: Notify::new(),
            me: me.clone(),
        });
        let weak = Arc::downgrade(&events);
        tokio::spawn(async move { timers::run(weak).await });
        Ok(events)
    }

    /// The address tsumiki listens on, for the URLs of target resources.
    pub fn set_endpoint(&self, endpoint: &str) {
        *self.endpoint.write() = endpoint.to_string();
    }

    /// The EventBridge Scheduler service, sharing this state and delivery machinery.
    pub fn scheduler(self: &Arc<Self>) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            events: self.clone(),
        })
    }

    /// A context for calls this service makes on its own behalf (deliveries, schedules).
    pub(crate) fn internal_context(&self, scope: &state::Scope) -> RequestContext {
        RequestContext {
            account: scope.account.clone(),
            region: scope.region.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
            base_url: self.endpoint.read().clone(),
            access_key: None,
            path: "/".into(),
        }
    }

    pub(crate) fn myself(&self) -> Option<Arc<Events>> {
        self.me.upgrade()
    }

    /// Tells the timer loop that what it waits for changed.
    pub(crate) fn poke_timers(&self) {
        self.wake.notify_one();
    }
}

#[async_trait]
impl tsumiki_ports::Service for Events {
    fn name(&self) -> &'static str {
        "events"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateEventBus" => api::create_event_bus(self, ctx, &input).await,
            "DescribeEventBus" => api::describe_event_bus(self, ctx, &input),
            "ListEventBuses" => api::list_event_buses(self, ctx, &input),
            "UpdateEventBus" => api::update_event_bus(self, ctx, &input).await,
            "DeleteEventBus" => api::delete_event_bus(self, ctx, &input).await,
            "PutPermission" => api::put_permission(self, ctx, &input).await,
            "RemovePermission" => api::remove_permission(self, ctx, &input).await,
            "PutRule" => api::put_rule(self, ctx, &input).await,
            "DescribeRule" => api::describe_rule(self, ctx, &input),
            "ListRules" => api::list_rules(self, ctx, &input),
            "EnableRule" => api::set_rule_state(self, ctx, &input, true).await,
            "DisableRule" => api::set_rule_state(self, ctx, &input, false).await,
            "DeleteRule" => api::delete_rule(self, ctx, &input).await,
            "ListRuleNamesByTarget" => api::list_rule_names_by_target(self, ctx, &input),
            "PutTargets" => api::put_targets(self, ctx, &input).await,
            "RemoveTargets" => api::remove_targets(self, ctx, &input).await,
            "ListTargetsByRule" => api::list_targets_by_rule(self, ctx, &input),
            "TagResource" => api::tag_resource(self, ctx, &input).await,
            "UntagResource" => api::untag_resource(self, ctx, &input).await,
            "ListTagsForResource" => api::list_tags_for_resource(self, ctx, &input),
            "TestEventPattern" => put::test_event_pattern(&input),
            "PutEvents" => put::put_events(self, ctx, &input).await,
            other => Err(AwsError::not_implemented("EventBridge", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        self.state.reset().await.map_err(store_error)?;
        self.poke_timers();
        Ok(())
    }
}

impl EventSink for Events {
    fn publish(&self, _ctx: &RequestContext, event: DomainEvent) {
        // PutEvents is a data-plane call CloudTrail does not deliver to EventBridge; routing it
        // would also turn every PutEvents into a second event.
        if event.service == "events" && event.event_name == "PutEvents" {
            return;
        }
        put::publish_api_call(self, event);
    }

    fn interested(&self, account: &str, region: &str) -> bool {
        put::default_bus_has_rules(self, account, region)
    }
}

/// Amazon EventBridge Scheduler, a second face of [`Events`].
pub struct Scheduler {
    events: Arc<Events>,
}

#[async_trait]
impl tsumiki_ports::Service for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        let ev = &self.events;
        match operation {
            "CreateScheduleGroup" => scheduler::create_schedule_group(ev, ctx, &input).await,
            "GetScheduleGroup" => scheduler::get_schedule_group(ev, ctx, &input),
            "ListScheduleGroups" => scheduler::list_schedule_groups(ev, ctx, &input),
            "DeleteScheduleGroup" => scheduler::delete_schedule_group(ev, ctx, &input).await,
            "CreateSchedule" => scheduler::put_schedule(ev, ctx, &input, true).await,
            "UpdateSchedule" => scheduler::put_schedule(ev, ctx, &input, false).await,
            "GetSchedule" => scheduler::get_schedule(ev, ctx, &input),
            "ListSchedules" => scheduler::list_schedules(ev, ctx, &input),
            "DeleteSchedule" => scheduler::delete_schedule(ev, ctx, &input).await,
            "TagResource" => scheduler::tag_resource(ev, ctx, &input).await,
            "UntagResource" => scheduler::untag_resource(ev, ctx, &input).await,
            "ListTagsForResource" => scheduler::list_tags_for_resource(ev, ctx, &input),
            other => Err(AwsError::not_implemented("Scheduler", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        // The state is shared with EventBridge, whose reset clears both.
        Ok(())
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "EventBridge could not write to the store.");
    AwsError::internal()
}

pub(crate) fn str_of<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// Epoch milliseconds as the protocol's timestamp value (epoch seconds).
pub(crate) fn epoch_seconds(ms: i64) -> Value {
    serde_json::json!(ms as f64 / 1000.0)
}
