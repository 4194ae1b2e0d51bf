//! AWS Step Functions (json 1.0): state machines, activities, and executions run by the pure
//! interpreter in `tsumiki_lang::asl`.
//!
//! Standard executions are durable: after every interpreter step the execution record and
//! its new history events are committed before any command (run a task, arm a timer) is
//! carried out, and a restart re-arms timers and re-runs tasks that were in flight (tasks
//! handed to a token holder keep waiting). Express executions run the same way in memory.
//! Tasks reach Lambda through `ports::FunctionInvoker` and other services through
//! `ports::Services` by model name. Read `run.rs` (the driver), then `tasks.rs`.
//!
//! Not yet: TestState, JSONata; those
//! operations answer `NotImplemented`.

mod api;
mod items;
mod jobs;
mod maprun;
mod run;
mod state;
mod tasks;
mod test_state;
mod versions;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{FunctionInvoker, Services};
use tsumiki_store::{Batch, Store};

use crate::run::Exec;
use crate::state::{Activity, Alias, Machine, MapRun, Version};

/// The Step Functions model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/stepfunctions.json");

/// A task waiting in an activity's queue for `GetActivityTask`.
#[derive(Debug, Clone)]
pub(crate) struct ActivityTask {
    pub exec_arn: String,
    pub task: u64,
    pub token: String,
    pub input: Value,
}

/// The Step Functions service.
pub struct StepFunctions {
    store: Store,
    clock: Arc<Clock>,
    machines: RwLock<BTreeMap<String, Arc<Machine>>>,
    activities: RwLock<BTreeMap<String, Activity>>,
    executions: RwLock<HashMap<String, Arc<Mutex<Exec>>>>,
    activity_queues: Mutex<HashMap<String, VecDeque<ActivityTask>>>,
    activity_signal: tokio::sync::Notify,
    services: RwLock<Services>,
    endpoint: RwLock<String>,
    /// Parsed definitions by their text, so starting an execution does not parse again.
    /// With each its SHA-256 (`state::definition_sha`), which every execution records.
    definitions: Mutex<HashMap<String, ParsedDefinition>>,
    /// SHA-256 of the definition texts the store holds (`state::put_exec`).
    stored_definitions: Mutex<std::collections::HashSet<String>>,
    /// The next Standard execution's sequence number (`state::exec_key`).
    next_exec_seq: std::sync::atomic::AtomicU64,
    functions: Weak<dyn FunctionInvoker>,
    myself: Weak<StepFunctions>,
    /// Published versions and aliases by ARN (lock order: machines, versions, aliases).
    versions: RwLock<BTreeMap<String, Version>>,
    aliases: RwLock<BTreeMap<String, Alias>>,
    /// Distributed Map runs by ARN, and where item readers and result writers reach S3.
    map_runs: RwLock<BTreeMap<String, MapRun>>,
    objects: std::sync::OnceLock<Arc<dyn tsumiki_ports::ObjectStore>>,
    /// EventBridge, asked whether status change events can reach a rule.
    event_sink: std::sync::OnceLock<Arc<dyn tsumiki_ports::EventSink>>,
}

/// A parsed definition and the SHA-256 of its text.
type ParsedDefinition = (Arc<tsumiki_lang::asl::Definition>, Arc<str>);

impl StepFunctions {
    /// Loads every state machine, activity and Standard execution from `store`, and resumes
    /// the executions that were running.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        functions: Weak<dyn FunctionInvoker>,
    ) -> Result<Arc<StepFunctions>, tsumiki_store::StoreError> {
        let loaded = state::load(&store).await?;
        let sfn = Arc::new_cyclic(|me| StepFunctions {
            store,
            clock,
            machines: RwLock::new(
                loaded
                    .machines
                    .into_iter()
                    .map(|m| (m.arn.clone(), Arc::new(m)))
                    .collect(),
            ),
            activities: RwLock::new(
                loaded
                    .activities
                    .into_iter()
                    .map(|a| (a.arn.clone(), a))
                    .collect(),
            ),
            executions: RwLock::new(HashMap::new()),
            activity_queues: Mutex::new(HashMap::new()),
            activity_signal: tokio::sync::Notify::new(),
            services: RwLock::new(Services::default()),
            endpoint: RwLock::new("http://127.0.0.1:4566".into()),
            definitions: Mutex::new(HashMap::new()),
            stored_definitions: Mutex::new(loaded.definition_shas.into_iter().collect()),
            next_exec_seq: std::sync::atomic::AtomicU64::new(loaded.next_exec_seq),
            functions,
            myself: me.clone(),
            versions: RwLock::new(
                loaded
                    .versions
                    .into_iter()
                    .map(|v| (v.arn.clone(), v))
                    .collect(),
            ),
            aliases: RwLock::new(
                loaded
                    .aliases
                    .into_iter()
                    .map(|a| (a.arn.clone(), a))
                    .collect(),
            ),
            map_runs: RwLock::new(
                loaded
                    .map_runs
                    .into_iter()
                    .map(|r| (r.arn.clone(), r))
                    .collect(),
            ),
            objects: std::sync::OnceLock::new(),
            event_sink: std::sync::OnceLock::new(),
        });
        let resumed = sfn.resume(loaded.executions);
        sfn.resume_map_runs();
        sfn.resume_jobs(loaded.jobs);
        tracing::info!(
            machines = sfn.machines.read().len(),
            executions = sfn.executions.read().len(),
            resumed,
            "Step Functions state loaded."
        );
        Ok(sfn)
    }

    /// The services tasks call by name (SQS, SNS, EventBridge, DynamoDB, ...), and where
    /// execution status changes go (`events`).
    /// Where status change events go; until set, they are always sent.
    pub fn set_event_sink(&self, sink: Arc<dyn tsumiki_ports::EventSink>) {
        let _ = self.event_sink.set(sink);
    }

    pub fn set_services(&self, services: Services) {
        *self.services.write() = services;
    }

    /// Where Distributed Map item readers and result writers reach S3.
    pub fn set_object_store(&self, objects: Arc<dyn tsumiki_ports::ObjectStore>) {
        let _ = self.objects.set(objects);
    }

    /// The server's own URL, for requests tasks make to other services (SQS queue URLs).
    pub fn set_endpoint(&self, url: &str) {
        *self.endpoint.write() = url.to_string();
    }

    pub(crate) fn me(&self) -> Arc<StepFunctions> {
        self.myself
            .upgrade()
            .expect("the service outlives its calls")
    }
}

#[async_trait]
impl tsumiki_ports::Service for StepFunctions {
    fn name(&self) -> &'static str {
        "stepfunctions"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateStateMachine" => api::create_state_machine(self, ctx, &input).await,
            "DescribeStateMachine" => api::describe_state_machine(self, ctx, &input),
            "UpdateStateMachine" => api::update_state_machine(self, ctx, &input).await,
            "DeleteStateMachine" => api::delete_state_machine(self, ctx, &input).await,
            "ListStateMachines" => api::list_state_machines(self, ctx, &input),
            "ValidateStateMachineDefinition" => api::validate_definition(&input),
            "CreateActivity" => api::create_activity(self, ctx, &input).await,
            "DescribeActivity" => api::describe_activity(self, ctx, &input),
            "DeleteActivity" => api::delete_activity(self, ctx, &input).await,
            "ListActivities" => api::list_activities(self, ctx, &input),
            "TagResource" => api::tag_resource(self, ctx, &input).await,
            "UntagResource" => api::untag_resource(self, ctx, &input).await,
            "ListTagsForResource" => api::list_tags(self, ctx, &input),
            "StartExecution" => run::start_execution(self, ctx, &input).await,
            "StartSyncExecution" => run::start_sync_execution(self, ctx, &input).await,
            "DescribeExecution" => run::describe_execution(self, ctx, &input),
            "ListExecutions" => run::list_executions(self, ctx, &input),
            "StopExecution" => run::stop_execution(self, ctx, &input).await,
            "GetExecutionHistory" => run::get_execution_history(self, ctx, &input).await,
            "DescribeStateMachineForExecution" => {
                run::describe_state_machine_for_execution(self, ctx, &input)
            }
            "SendTaskSuccess" => run::send_task_success(self, &input).await,
            "SendTaskFailure" => run::send_task_failure(self, &input).await,
            "SendTaskHeartbeat" => run::send_task_heartbeat(self, &input).await,
            "GetActivityTask" => run::get_activity_task(self, ctx, &input).await,
            "PublishStateMachineVersion" => versions::publish(self, ctx, &input).await,
            "ListStateMachineVersions" => versions::list_versions(self, ctx, &input),
            "DeleteStateMachineVersion" => versions::delete_version(self, ctx, &input).await,
            "CreateStateMachineAlias" => versions::create_alias(self, ctx, &input).await,
            "DescribeStateMachineAlias" => versions::describe_alias(self, ctx, &input),
            "UpdateStateMachineAlias" => versions::update_alias(self, ctx, &input).await,
            "DeleteStateMachineAlias" => versions::delete_alias(self, ctx, &input).await,
            "ListStateMachineAliases" => versions::list_aliases(self, ctx, &input),
            "RedriveExecution" => run::redrive_execution(self, ctx, &input).await,
            "DescribeMapRun" => maprun::describe_map_run(self, ctx, &input),
            "ListMapRuns" => maprun::list_map_runs(self, ctx, &input),
            "UpdateMapRun" => maprun::update_map_run(self, ctx, &input).await,
            "TestState" => test_state::test_state(self, ctx, &input).await,
            other => Err(AwsError::not_implemented("stepfunctions", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let commit = {
            self.machines.write().clear();
            self.activities.write().clear();
            self.executions.write().clear();
            self.activity_queues.lock().clear();
            self.versions.write().clear();
            self.aliases.write().clear();
            self.map_runs.write().clear();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "Step Functions could not write to the store.");
    AwsError::internal()
}

pub(crate) fn err(code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::new(code, 400, message)
}

pub(crate) fn required_str<'a>(input: &'a Value, field: &str) -> Result<&'a str, AwsError> {
    input.get(field).and_then(Value::as_str).ok_or_else(|| {
        err(
            "MissingRequiredParameter",
            format!("The field {field} is required."),
        )
    })
}

pub(crate) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `(region, account, type, name...)` of a Step Functions ARN.
pub(crate) fn parse_states_arn(arn: &str) -> Option<(String, String, String, String)> {
    let (service, region, account, resource) = tsumiki_core::ids::parse_arn(arn)?;
    if service != "states" {
        return None;
    }
    let (kind, name) = resource.split_once(':')?;
    Some((
        region.to_string(),
        account.to_string(),
        kind.to_string(),
        name.to_string(),
    ))
}

/// AWS's rule for names of state machines, executions and activities.
pub(crate) fn check_name(name: &str) -> Result<(), AwsError> {
    let bad = name.is_empty()
        || name.chars().count() > 80
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c));
    if bad {
        return Err(err("InvalidName", format!("Invalid Name: '{name}'")));
    }
    Ok(())
}

/// Offset-based paging tokens.
pub(crate) fn page_start(input: &Value) -> Result<usize, AwsError> {
    match input.get("nextToken").and_then(Value::as_str) {
        None => Ok(0),
        Some(t) => t
            .parse()
            .map_err(|_| err("InvalidToken", format!("Invalid Token: '{t}'"))),
    }
}

pub(crate) fn page_size(input: &Value, default: usize) -> usize {
    match input.get("maxResults").and_then(Value::as_u64) {
        Some(0) | None => default,
        Some(n) => (n as usize).min(1000),
    }
}
