//! AWS Glue (json 1.1): Python shell jobs and their runs, and Glue's own triggers.
//!
//! A `pythonshell` job runs its script with the machine's `python3` as a run-to-completion
//! process (`tsumiki_compute::jobs`): the job's `DefaultArguments` merged with the run's
//! `Arguments` on its command line as `--key value`, a small `awsglue.utils` on its
//! `PYTHONPATH` (so `getResolvedOptions` works), its output and error in CloudWatch Logs
//! (`/aws-glue/python-jobs/output` and `/error`, one stream per run id), its `Timeout` on the
//! clock, retries as new runs (`<id>_attempt_<n>`), and `Glue Job State Change` events sent to
//! EventBridge. `glueetl` and `gluestreaming` jobs are stored, but starting one answers that
//! Spark is not supported. Triggers: `ON_DEMAND`, `SCHEDULED` (Glue's cron on the clock) and
//! `CONDITIONAL` (predicates on job run states); workflows of them (`workflows.rs`).
//!
//! `EVENT` triggers batch events EventBridge delivers to their workflow; job bookmarks
//! (`bookmarks.rs`) and `--extra-py-files`/`--additional-python-modules` (`modules.rs`).
//!
//! Not (yet): crawlers, the Data Catalog, Spark; those answer `NotImplemented` or a clear
//! error.
//! Read `state.rs`, then `runs.rs` (a run's life).

mod bookmarks;
mod jobs;
mod modules;
mod runs;
mod state;
mod triggers;
mod workflows;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tsumiki_compute::jobs::{Processes, Run};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::Services;
use tsumiki_store::{Batch, Store};

use crate::state::{Key, State};

/// The Glue model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/glue.json");

/// The `python3` jobs run with.
#[derive(Clone, Debug)]
pub(crate) struct Python {
    pub path: PathBuf,
    pub version: String,
}

/// The Glue service.
pub struct Glue {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
    processes: Arc<Processes>,
    services: OnceLock<Services>,
    /// Where `s3://` scripts are read from.
    objects: OnceLock<Arc<dyn tsumiki_ports::ObjectStore>>,
    endpoint: RwLock<String>,
    /// Runs' working directories and the `awsglue` shim live here.
    work_dir: PathBuf,
    /// Found in the background at start (asking python takes a few hundred milliseconds that
    /// the server's start should not wait for); the first run waits for it if needed.
    python: tokio::sync::OnceCell<Option<Python>>,
    /// Processes of runs in progress, by run id.
    live: Mutex<HashMap<String, Arc<Run>>>,
    /// Runs asked to stop before their process started.
    stopping: Mutex<HashSet<String>>,
    /// Wakes the schedule loop when a trigger changes.
    wake: Notify,
    /// Runs recorded `STARTING`, for the task that executes them.
    launcher: tokio::sync::mpsc::UnboundedSender<(Key, String)>,
}

impl Glue {
    /// Loads jobs, runs and triggers, ends runs a previous server left in progress, and starts
    /// the schedule loop. `work_dir` holds runs' working directories.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        processes: Arc<Processes>,
        work_dir: PathBuf,
    ) -> Result<Arc<Glue>, AwsError> {
        let mut state = state::load(&store).await.map_err(store_error)?;
        let interrupted = runs::end_interrupted(&mut state, clock.now_ms());
        if !interrupted.is_empty() {
            let mut batch = Batch::new();
            for (key, id) in &interrupted {
                if let Some(run) = state.runs.get(&(key.clone(), id.clone())) {
                    state::put_run(&mut batch, key, id, run);
                }
            }
            store.commit(batch).await.map_err(store_error)?;
        }
        tracing::info!(
            jobs = state.jobs.len(),
            runs = state.runs.len(),
            triggers = state.triggers.len(),
            interrupted = interrupted.len(),
            "Glue state loaded."
        );
        let shim = work_dir.join("shim");
        write_shim(&shim).map_err(|e| {
            tracing::error!(error = %e, "Glue could not write its awsglue module.");
            AwsError::internal()
        })?;
        let (launcher, mut launches) = tokio::sync::mpsc::unbounded_channel();
        let glue = Arc::new(Glue {
            state: Mutex::new(state),
            store,
            clock,
            processes,
            services: OnceLock::new(),
            objects: OnceLock::new(),
            endpoint: RwLock::new("http://localhost:4566".into()),
            work_dir,
            python: tokio::sync::OnceCell::new(),
            live: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            launcher,
        });
        let weak = Arc::downgrade(&glue);
        let finding = Arc::downgrade(&glue);
        tokio::spawn(async move {
            if let Some(glue) = finding.upgrade() {
                glue.python().await;
            }
        });
        tokio::spawn(async move {
            while let Some((job, run)) = launches.recv().await {
                let Some(glue) = weak.upgrade() else {
                    return;
                };
                tokio::spawn(runs::execute(glue, job, run));
            }
        });
        tokio::spawn(triggers::schedule_loop(Arc::downgrade(&glue)));
        Ok(glue)
    }

    /// The served services (EventBridge receives job state changes), once they all exist.
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }

    /// Gives Glue the S3 it reads `s3://` scripts from.
    pub fn set_object_store(&self, objects: Arc<dyn tsumiki_ports::ObjectStore>) {
        let _ = self.objects.set(objects);
    }

    /// Where jobs' SDK calls go: tsumiki itself.
    pub fn set_endpoint(&self, endpoint: &str) {
        *self.endpoint.write() = endpoint.to_string();
    }

    /// A context for calls this service makes on its own behalf.
    pub(crate) fn internal_context(&self, account: &str, region: &str) -> RequestContext {
        RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: self.endpoint.read().clone(),
            access_key: None,
            path: "/".to_string(),
        }
    }
}

#[async_trait]
impl tsumiki_ports::Service for Glue {
    fn name(&self) -> &'static str {
        "glue"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateJob" => jobs::create_job(self, ctx, &input).await,
            "UpdateJob" => jobs::update_job(self, ctx, &input).await,
            "GetJob" => jobs::get_job(self, ctx, &input),
            "GetJobs" => jobs::get_jobs(self, ctx, &input),
            "ListJobs" => jobs::list_jobs(self, ctx, &input),
            "BatchGetJobs" => jobs::batch_get_jobs(self, ctx, &input),
            "DeleteJob" => jobs::delete_job(self, ctx, &input).await,
            "StartJobRun" => runs::start_job_run(self, ctx, &input).await,
            "GetJobRun" => runs::get_job_run(self, ctx, &input),
            "GetJobRuns" => runs::get_job_runs(self, ctx, &input),
            "BatchStopJobRun" => runs::batch_stop_job_run(self, ctx, &input).await,
            "GetJobBookmark" => bookmarks::get_job_bookmark(self, ctx, &input),
            "ResetJobBookmark" => bookmarks::reset_job_bookmark(self, ctx, &input).await,
            "CreateTrigger" => triggers::create_trigger(self, ctx, &input).await,
            "GetTrigger" => triggers::get_trigger(self, ctx, &input),
            "GetTriggers" => triggers::get_triggers(self, ctx, &input),
            "ListTriggers" => triggers::list_triggers(self, ctx, &input),
            "BatchGetTriggers" => triggers::batch_get_triggers(self, ctx, &input),
            "StartTrigger" => triggers::start_trigger(self, ctx, &input).await,
            "StopTrigger" => triggers::stop_trigger(self, ctx, &input).await,
            "UpdateTrigger" => triggers::update_trigger(self, ctx, &input).await,
            "DeleteTrigger" => triggers::delete_trigger(self, ctx, &input).await,
            "CreateWorkflow" => workflows::create_workflow(self, ctx, &input).await,
            "GetWorkflow" => workflows::get_workflow(self, ctx, &input),
            "ListWorkflows" => workflows::list_workflows(self, ctx, &input),
            "DeleteWorkflow" => workflows::delete_workflow(self, ctx, &input).await,
            "StartWorkflowRun" => workflows::start_workflow_run(self, ctx, &input).await,
            "GetWorkflowRun" => workflows::get_workflow_run(self, ctx, &input),
            "GetWorkflowRuns" => workflows::get_workflow_runs(self, ctx, &input),
            // Not in Glue's model, so only other services reach it: EventBridge delivering
            // an event to a workflow target.
            "tsumiki:WorkflowEvent" => triggers::on_event(self, ctx, &input).await,
            other => Err(AwsError::not_implemented("glue", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        for run in self.live.lock().drain().map(|(_, r)| r) {
            run.stop();
        }
        let commit = {
            let mut state = self.state.lock();
            *state = State::default();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        self.wake.notify_one();
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "Glue could not write to the store.");
    AwsError::internal()
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidInputException", 400, message)
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new("EntityNotFoundException", 400, message)
}

pub(crate) fn already_exists(message: impl Into<String>) -> AwsError {
    AwsError::new("AlreadyExistsException", 400, message)
}

pub(crate) fn key(ctx: &RequestContext, name: &str) -> Key {
    Key {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: name.to_string(),
    }
}

pub(crate) fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// AWS's paging, as the whole answer: `member` holds the page, `NextToken` (the index to resume
/// at) is there while more remain, and `MaxResults` is the page size.
pub(crate) fn page<T: serde::Serialize>(
    member: &str,
    items: &[T],
    input: &Value,
    default: usize,
) -> Value {
    let start = str_of(input, "NextToken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(items.len());
    let size = input
        .get("MaxResults")
        .and_then(Value::as_u64)
        .map_or(default, |n| n as usize)
        .max(1);
    let end = (start + size).min(items.len());
    let mut out = json!({ member: &items[start..end] });
    if end < items.len() {
        out["NextToken"] = json!(end.to_string());
    }
    out
}

const SHIM_INIT: &str = include_str!("shim/awsglue/__init__.py");
const SHIM_UTILS: &str = include_str!("shim/awsglue/utils.py");

fn write_shim(dir: &std::path::Path) -> std::io::Result<()> {
    let pkg = dir.join("awsglue");
    std::fs::create_dir_all(&pkg)?;
    std::fs::write(pkg.join("__init__.py"), SHIM_INIT)?;
    std::fs::write(pkg.join("utils.py"), SHIM_UTILS)
}

impl Glue {
    pub(crate) async fn python(&self) -> Option<&Python> {
        self.python.get_or_init(find_python).await.as_ref()
    }
}

/// The real interpreter behind `python3` on PATH (a pyenv shim needs an environment a job
/// does not get) and its version.
async fn find_python() -> Option<Python> {
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sys, platform; print(sys.executable); print(platform.python_version())",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let path = PathBuf::from(lines.next()?.trim());
    let version = lines.next()?.trim().to_string();
    if !out.status.success() || path.as_os_str().is_empty() {
        return None;
    }
    tracing::info!(python = %path.display(), %version, "Glue Python shell jobs run with this python3.");
    Some(Python { path, version })
}
