//! The optimized Glue and ECS integrations: `glue:startJobRun` and `ecs:runTask`, each
//! request-response, `.sync` (start, then poll the run or task on the clock until it ends)
//! and `.waitForTaskToken`. Both services are reached through `ports::Services` by model name.
//!
//! AWS's shapes: Glue's answers pass through (Glue speaks PascalCase); ECS's parameters are
//! written in PascalCase in the state machine and its answers come back in PascalCase, so keys
//! are converted at the border. A `.sync` run that does not succeed fails the task with
//! `States.TaskFailed` and the final run or task as the cause; a `RunTask` with `Failures`
//! fails `.sync` and token tasks with `AmazonECS.Unknown`. A `.sync` task whose execution no
//! longer waits for it (stopped, timed out) stops its run or task.
//!
//! A `.sync` task (these, and `states:startExecution.sync` from `tasks.rs`), once its run,
//! task or child execution started, records TaskSubmitted (the StartJobRun, RunTask or
//! StartExecution answer, as AWS) and, for a Standard execution, a [`JobWatch`] committed
//! before that; a restarted server polls the watched run or task again ([`StepFunctions::resume_jobs`])
//! instead of starting another. Glue and ECS end runs and tasks a restart interrupted (ERROR,
//! STOPPED), so the task then fails as for any unsuccessful run.
//! **Invariant:** a watch is deleted only after the task's result is recorded.

use serde_json::{Map, Value, json};

use tsumiki_lang::asl::Input;
use tsumiki_store::Batch;

use crate::StepFunctions;
use crate::state::{self, JobWatch};
use crate::tasks::{Outcome, TaskCall};

/// How often `.sync` looks at a run or task.
const POLL_MS: i64 = 500;

/// Whether the interpreter still waits for this task (it gives up on a stopped execution).
fn still_wanted(sfn: &StepFunctions, exec_arn: &str, task: u64) -> bool {
    sfn.executions
        .read()
        .get(exec_arn)
        .is_some_and(|e| e.lock().rec.exec.task_resource(task).is_some())
}

/// `Some(outcome)` when `rest` (after `arn:aws:states:::`, without the pattern) is one of
/// these integrations.
pub(crate) async fn run(
    sfn: &StepFunctions,
    call: &TaskCall,
    rest: &str,
    sync: bool,
    token: bool,
) -> Option<Outcome> {
    match rest {
        "glue:startJobRun" => Some(glue(sfn, call, sync, token).await),
        "ecs:runTask" => Some(ecs(sfn, call, sync, token).await),
        _ => None,
    }
}

fn service(
    sfn: &StepFunctions,
    key: &str,
) -> Result<std::sync::Arc<dyn tsumiki_ports::Service>, Outcome> {
    sfn.services.read().get(key).cloned().ok_or_else(|| {
        Outcome::Failed(
            "States.TaskFailed".into(),
            format!("tsumiki does not serve {key} here, so the task cannot run."),
        )
    })
}

async fn glue(sfn: &StepFunctions, call: &TaskCall, sync: bool, token: bool) -> Outcome {
    let glue = match service(sfn, "glue") {
        Ok(s) => s,
        Err(o) => return o,
    };
    let ctx = sfn.internal_ctx(&call.account, &call.region);
    let started = match glue.call(&ctx, "StartJobRun", call.input.clone()).await {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("Glue.{}", e.code), e.message),
    };
    if token {
        return Outcome::Submitted(started);
    }
    if !sync {
        return Outcome::Done(started);
    }
    let job = call.input.get("JobName").cloned().unwrap_or(Value::Null);
    let run_id = started.get("JobRunId").cloned().unwrap_or(Value::Null);
    let watch = watch_of(call, "glue", json!({"JobName": job, "RunId": run_id}));
    submit(sfn, &watch, started).await;
    let outcome = poll(sfn, &watch).await;
    finish(sfn, &watch, outcome).await;
    Outcome::Queued
}

pub(crate) fn watch_of(call: &TaskCall, kind: &str, target: Value) -> JobWatch {
    JobWatch {
        exec_arn: call.exec_arn.clone(),
        task: call.task,
        resource: call.resource.clone(),
        account: call.account.clone(),
        region: call.region.clone(),
        kind: kind.to_string(),
        target,
    }
}

/// Stores the watch (Standard executions), then records TaskSubmitted with `answer`.
pub(crate) async fn submit(sfn: &StepFunctions, watch: &JobWatch, answer: Value) {
    let durable = sfn
        .executions
        .read()
        .get(&watch.exec_arn)
        .is_some_and(|e| !e.lock().rec.express);
    if durable {
        let mut batch = Batch::new();
        state::put_job(&mut batch, watch);
        if let Err(e) = sfn.store.commit(batch).await {
            tracing::error!(error = %e, "A .sync task's job could not be stored; a restart starts it again.");
        }
    }
    let submitted = Input::TaskSubmitted {
        task: watch.task,
        output: answer,
    };
    if let Err(e) = sfn.me().advance(watch.exec_arn.clone(), submitted).await {
        tracing::error!(execution = %watch.exec_arn, error = %e, "TaskSubmitted could not be recorded.");
    }
}

/// Records the task's result (none when the execution gave up on it), then drops the watch.
pub(crate) async fn finish(sfn: &StepFunctions, watch: &JobWatch, outcome: Option<Outcome>) {
    let task = watch.task;
    let next = match outcome {
        Some(Outcome::Done(output)) => Some(Input::TaskSucceeded { task, output }),
        Some(Outcome::Failed(error, cause)) => Some(Input::TaskFailed { task, error, cause }),
        _ => None,
    };
    if let Some(next) = next
        && let Err(e) = sfn.me().advance(watch.exec_arn.clone(), next).await
    {
        // The watch stays: a restart polls the run again and records its end then.
        tracing::error!(execution = %watch.exec_arn, error = %e, "A .sync task's result could not be recorded.");
        return;
    }
    let mut batch = Batch::new();
    state::delete_job(&mut batch, watch);
    if let Err(e) = sfn.store.commit(batch).await {
        tracing::warn!(error = %e, "A finished .sync task's job watch could not be deleted.");
    }
}

/// Polls the watched run or task until it ends: `None` when the execution no longer waits
/// for it (then it is stopped). A child execution (`states`) is waited for, not polled.
pub(crate) async fn poll(sfn: &StepFunctions, watch: &JobWatch) -> Option<Outcome> {
    if watch.kind == "states" {
        let arn = watch.target["ExecutionArn"].as_str().unwrap_or("");
        let sync2 = watch.target["Sync2"].as_bool().unwrap_or(false);
        return Some(crate::tasks::child_outcome(sfn, arn, sync2).await);
    }
    let service = match service(sfn, &watch.kind) {
        Ok(s) => s,
        Err(o) => return Some(o),
    };
    let ctx = sfn.internal_ctx(&watch.account, &watch.region);
    loop {
        let ended = match watch.kind.as_str() {
            "glue" => glue_ended(&*service, &ctx, &watch.target).await,
            _ => ecs_ended(&*service, &ctx, &watch.target).await,
        };
        if let Some(outcome) = ended {
            return Some(outcome);
        }
        sfn.clock.sleep_ms(POLL_MS).await;
        if !still_wanted(sfn, &watch.exec_arn, watch.task) {
            let (op, stop) = match watch.kind.as_str() {
                "glue" => (
                    "BatchStopJobRun",
                    json!({"JobName": watch.target["JobName"], "JobRunIds": [watch.target["RunId"]]}),
                ),
                _ => (
                    "StopTask",
                    json!({"cluster": watch.target["cluster"], "task": watch.target["task"], "reason": "Execution stopped"}),
                ),
            };
            if let Err(e) = service.call(&ctx, op, stop).await {
                tracing::warn!(error = %e, "The job run or task of a stopped execution could not be stopped.");
            }
            return None;
        }
    }
}

/// The task's outcome once the Glue job run has ended.
async fn glue_ended(
    glue: &dyn tsumiki_ports::Service,
    ctx: &tsumiki_core::RequestContext,
    target: &Value,
) -> Option<Outcome> {
    let run = match glue.call(ctx, "GetJobRun", target.clone()).await {
        Ok(v) => v.get("JobRun").cloned().unwrap_or(Value::Null),
        Err(e) => return Some(Outcome::Failed(format!("Glue.{}", e.code), e.message)),
    };
    match run.get("JobRunState").and_then(Value::as_str) {
        Some("SUCCEEDED") => Some(Outcome::Done(run)),
        Some("FAILED" | "TIMEOUT" | "STOPPED" | "ERROR" | "EXPIRED") => {
            Some(Outcome::Failed("States.TaskFailed".into(), run.to_string()))
        }
        _ => None,
    }
}

/// The task's outcome once the ECS task has stopped: it succeeded when every container
/// exited with 0.
async fn ecs_ended(
    ecs: &dyn tsumiki_ports::Service,
    ctx: &tsumiki_core::RequestContext,
    target: &Value,
) -> Option<Outcome> {
    let described = ecs
        .call(
            ctx,
            "DescribeTasks",
            json!({"cluster": target["cluster"], "tasks": [target["task"]]}),
        )
        .await;
    let task = match described {
        Ok(v) => v.pointer("/tasks/0").cloned().unwrap_or(Value::Null),
        Err(e) => return Some(Outcome::Failed(format!("ECS.{}", e.code), e.message)),
    };
    if task.get("lastStatus").and_then(Value::as_str) != Some("STOPPED") {
        return None;
    }
    let failed = task
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c.get("exitCode").and_then(Value::as_i64) != Some(0));
    let out = pascal(&task);
    Some(if failed {
        Outcome::Failed("States.TaskFailed".into(), out.to_string())
    } else {
        Outcome::Done(out)
    })
}

impl StepFunctions {
    /// Polls again the runs and tasks `.sync` tasks were waiting for when the server stopped.
    pub(crate) fn resume_jobs(&self, watches: Vec<JobWatch>) {
        for watch in watches {
            let me = self.me();
            tokio::spawn(async move {
                // Submitted and still waited for: a task not yet submitted runs again from
                // the start (`Execution::pending`), one that ended needs nothing.
                let waiting = me.executions.read().get(&watch.exec_arn).is_some_and(|e| {
                    let e = e.lock();
                    e.rec.exec.task_resource(watch.task) == Some(watch.resource.as_str())
                        && !e.rec.exec.pending().iter().any(|c| {
                            matches!(c, tsumiki_lang::asl::Command::RunTask { task, .. } if *task == watch.task)
                        })
                });
                if !waiting {
                    let mut batch = Batch::new();
                    state::delete_job(&mut batch, &watch);
                    if let Err(e) = me.store.commit(batch).await {
                        tracing::warn!(error = %e, "A stale .sync job watch could not be deleted.");
                    }
                    return;
                }
                // The services are wired just after Step Functions starts.
                for _ in 0..50 {
                    if watch.kind == "states" || me.services.read().get(&watch.kind).is_some() {
                        break;
                    }
                    tsumiki_core::Clock::pause_real(std::time::Duration::from_millis(100)).await;
                }
                let outcome = poll(&me, &watch).await;
                finish(&me, &watch, outcome).await;
            });
        }
    }
}

/// `Cluster` -> `cluster`, recursively (the ECS API is camelCase).
fn camel(v: &Value) -> Value {
    recase(v, |c| c.to_ascii_lowercase())
}

/// `taskArn` -> `TaskArn`, recursively (what Step Functions answers).
fn pascal(v: &Value) -> Value {
    recase(v, |c| c.to_ascii_uppercase())
}

fn recase(v: &Value, first: fn(char) -> char) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                let mut chars = k.chars();
                let key: String = match chars.next() {
                    Some(c) => std::iter::once(first(c)).chain(chars).collect(),
                    None => String::new(),
                };
                out.insert(key, recase(x, first));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| recase(x, first)).collect()),
        other => other.clone(),
    }
}

async fn ecs(sfn: &StepFunctions, call: &TaskCall, sync: bool, token: bool) -> Outcome {
    let ecs = match service(sfn, "ecs") {
        Ok(s) => s,
        Err(o) => return o,
    };
    let ctx = sfn.internal_ctx(&call.account, &call.region);
    let request = camel(&call.input);
    let answer = match ecs.call(&ctx, "RunTask", request.clone()).await {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("ECS.{}", e.code), e.message),
    };
    let failures = answer
        .get("failures")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if (sync || token) && failures {
        return Outcome::Failed("AmazonECS.Unknown".into(), pascal(&answer).to_string());
    }
    if token {
        return Outcome::Submitted(pascal(&answer));
    }
    if !sync {
        return Outcome::Done(pascal(&answer));
    }
    let cluster = request.get("cluster").cloned().unwrap_or(json!("default"));
    let Some(task_arn) = answer
        .pointer("/tasks/0/taskArn")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Outcome::Failed("AmazonECS.Unknown".into(), pascal(&answer).to_string());
    };
    let watch = watch_of(call, "ecs", json!({"cluster": cluster, "task": task_arn}));
    submit(sfn, &watch, pascal(&answer)).await;
    let outcome = poll(sfn, &watch).await;
    finish(sfn, &watch, outcome).await;
    Outcome::Queued
}
