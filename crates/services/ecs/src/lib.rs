//! Amazon ECS (json 1.1) on Fargate: clusters, task definitions with revisions and Fargate's
//! cpu/memory rules, and tasks run by the built-in process executor.
//!
//! The executor runs each container as a run-to-completion process (`tsumiki_compute::jobs`),
//! without an image: an image name maps to a command on this machine (`images.rs`: `python:*`
//! runs the machine's python3, shell images run /bin/sh, `--task-image NAME=COMMAND` adds
//! more). RunTask answers a `failures[]` entry when an image maps to nothing. A container's
//! `awslogs` configuration sends its output to CloudWatch Logs (`prefix/container/taskId`).
//! Task state changes go to EventBridge as `ECS Task State Change`.
//!
//! Containers start in `dependsOn` order (START, COMPLETE, SUCCESS, HEALTHY with the
//! container's `healthCheck` run on the clock; a dependency's `startTimeout` on the clock) and
//! stop in reverse order. Clusters are Fargate-only: they have no
//! container instances, so StartTask answers each instance named `MISSING`.
//!
//! Not (yet): services, registering container instances, capacity providers, Docker/Podman,
//! secrets resolution, volumes; those operations answer `NotImplemented`.
//! Read `state.rs`, then `tasks.rs` (a task's life).

mod clusters;
pub mod images;
mod state;
mod taskdefs;
mod tasks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tsumiki_compute::jobs::{Processes, Run};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::Services;
use tsumiki_store::{Batch, Store};

use crate::images::Images;
use crate::state::{Scope, State};

/// The ECS model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/ecs.json");

/// The ECS service.
pub struct Ecs {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
    processes: Arc<Processes>,
    images: Images,
    services: OnceLock<Services>,
    endpoint: RwLock<String>,
    work_dir: PathBuf,
    /// Container processes of running tasks, by task id.
    live: Mutex<HashMap<String, Vec<Arc<Run>>>>,
    /// Tasks asked to stop (task id -> reason), read by their executor.
    stopping: Mutex<HashMap<String, String>>,
    /// Each running task's executor, told of a StopTask (it stops the containers in reverse
    /// dependency order).
    signals: Mutex<HashMap<String, tasks::Signal>>,
    me: Weak<Ecs>,
}

impl Ecs {
    /// Loads clusters, task definitions and tasks; tasks a previous server left running lost
    /// their processes and are recorded `STOPPED`. `images` maps image names to commands.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        processes: Arc<Processes>,
        work_dir: PathBuf,
        images: Images,
    ) -> Result<Arc<Ecs>, AwsError> {
        let mut state = state::load(&store).await.map_err(store_error)?;
        let ended = tasks::end_interrupted(&mut state, clock.now_ms());
        if !ended.is_empty() {
            let mut batch = Batch::new();
            for key in &ended {
                if let Some(t) = state.tasks.get(key) {
                    state::put_task(&mut batch, &key.0, &key.1, t);
                }
            }
            store.commit(batch).await.map_err(store_error)?;
        }
        tracing::info!(
            clusters = state.clusters.len(),
            tasks = state.tasks.len(),
            interrupted = ended.len(),
            "ECS state loaded."
        );
        Ok(Arc::new_cyclic(|me| Ecs {
            state: Mutex::new(state),
            store,
            clock,
            processes,
            images,
            services: OnceLock::new(),
            endpoint: RwLock::new("http://localhost:4566".into()),
            work_dir,
            live: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashMap::new()),
            signals: Mutex::new(HashMap::new()),
            me: me.clone(),
        }))
    }

    /// The served services (EventBridge receives task state changes), once they all exist.
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }

    /// Where containers' SDK calls go: tsumiki itself.
    pub fn set_endpoint(&self, endpoint: &str) {
        *self.endpoint.write() = endpoint.to_string();
    }

    pub(crate) fn myself(&self) -> Option<Arc<Ecs>> {
        self.me.upgrade()
    }

    pub(crate) fn internal_context(&self, scope: &Scope) -> RequestContext {
        RequestContext {
            account: scope.account.clone(),
            region: scope.region.clone(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: self.endpoint.read().clone(),
            access_key: None,
            path: "/".to_string(),
        }
    }
}

#[async_trait]
impl tsumiki_ports::Service for Ecs {
    fn name(&self) -> &'static str {
        "ecs"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateCluster" => clusters::create_cluster(self, ctx, &input).await,
            "DescribeClusters" => clusters::describe_clusters(self, ctx, &input),
            "ListClusters" => clusters::list_clusters(self, ctx, &input),
            "DeleteCluster" => clusters::delete_cluster(self, ctx, &input).await,
            "RegisterTaskDefinition" => taskdefs::register(self, ctx, &input).await,
            "DescribeTaskDefinition" => taskdefs::describe(self, ctx, &input),
            "ListTaskDefinitions" => taskdefs::list(self, ctx, &input),
            "ListTaskDefinitionFamilies" => taskdefs::list_families(self, ctx, &input),
            "DeregisterTaskDefinition" => taskdefs::deregister(self, ctx, &input).await,
            "RunTask" => tasks::run_task(self, ctx, &input).await,
            "DescribeTasks" => tasks::describe_tasks(self, ctx, &input),
            "ListTasks" => tasks::list_tasks(self, ctx, &input),
            "StopTask" => tasks::stop_task(self, ctx, &input).await,
            "StartTask" => tasks::start_task(self, ctx, &input),
            "ListContainerInstances" => tasks::list_container_instances(self, ctx, &input),
            "DescribeContainerInstances" => tasks::describe_container_instances(self, ctx, &input),
            "TagResource" => clusters::tag_resource(self, ctx, &input, true).await,
            "UntagResource" => clusters::tag_resource(self, ctx, &input, false).await,
            "ListTagsForResource" => clusters::list_tags(self, ctx, &input),
            other => Err(AwsError::not_implemented("ecs", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        for runs in self.live.lock().drain().map(|(_, r)| r) {
            for run in runs {
                run.stop();
            }
        }
        let commit = {
            let mut state = self.state.lock();
            *state = State::default();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "ECS could not write to the store.");
    AwsError::internal()
}

pub(crate) fn client_error(message: impl Into<String>) -> AwsError {
    AwsError::new("ClientException", 400, message)
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidParameterException", 400, message)
}

pub(crate) fn cluster_not_found() -> AwsError {
    AwsError::new("ClusterNotFoundException", 400, "Cluster not found.")
}

pub(crate) fn scope(ctx: &RequestContext) -> Scope {
    Scope {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
    }
}

pub(crate) fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

pub(crate) fn arn(scope: &Scope, resource: &str) -> String {
    tsumiki_core::ids::arn("ecs", &scope.region, &scope.account, resource)
}

/// A cluster's name from a name or an ARN (`arn:...:cluster/NAME`); `default` when absent.
pub(crate) fn cluster_name(input: &Value, member: &str) -> String {
    match str_of(input, member) {
        Some(c) => c.rsplit_once(":cluster/").map_or(c, |(_, n)| n).to_string(),
        None => "default".to_string(),
    }
}

/// `nextToken` is the index to resume at; `maxResults` the page size.
pub(crate) fn page<T: Clone>(
    items: &[T],
    input: &Value,
    default: usize,
) -> (Vec<T>, Option<String>) {
    let start = str_of(input, "nextToken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(items.len());
    let size = input
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(default, |n| n as usize)
        .max(1);
    let end = (start + size).min(items.len());
    (
        items[start..end].to_vec(),
        (end < items.len()).then(|| end.to_string()),
    )
}
