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
//! After a restart a `.sync` task still in flight is run again (a new job run or ECS task):
//! the services interrupt what was running when the process died.

use serde_json::{Map, Value, json};

use crate::StepFunctions;
use crate::tasks::{Outcome, TaskCall};

/// How often `.sync` looks at a run or task.
const POLL_MS: i64 = 500;

/// Whether the interpreter still waits for this task (it gives up on a stopped execution).
fn still_wanted(sfn: &StepFunctions, call: &TaskCall) -> bool {
    sfn.executions
        .read()
        .get(&call.exec_arn)
        .is_some_and(|e| e.lock().rec.exec.task_resource(call.task).is_some())
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
    loop {
        let run = match glue
            .call(&ctx, "GetJobRun", json!({"JobName": job, "RunId": run_id}))
            .await
        {
            Ok(v) => v.get("JobRun").cloned().unwrap_or(Value::Null),
            Err(e) => return Outcome::Failed(format!("Glue.{}", e.code), e.message),
        };
        match run.get("JobRunState").and_then(Value::as_str) {
            Some("SUCCEEDED") => return Outcome::Done(run),
            Some("FAILED" | "TIMEOUT" | "STOPPED" | "ERROR" | "EXPIRED") => {
                return Outcome::Failed("States.TaskFailed".into(), run.to_string());
            }
            _ => {}
        }
        sfn.clock.sleep_ms(POLL_MS).await;
        if !still_wanted(sfn, call) {
            let stop = json!({"JobName": job, "JobRunIds": [run_id]});
            if let Err(e) = glue.call(&ctx, "BatchStopJobRun", stop).await {
                tracing::warn!(error = %e, "A Glue job run of a stopped execution could not be stopped.");
            }
            return Outcome::Queued;
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
    loop {
        let described = ecs
            .call(
                &ctx,
                "DescribeTasks",
                json!({"cluster": cluster, "tasks": [task_arn]}),
            )
            .await;
        let task = match described {
            Ok(v) => v.pointer("/tasks/0").cloned().unwrap_or(Value::Null),
            Err(e) => return Outcome::Failed(format!("ECS.{}", e.code), e.message),
        };
        if task.get("lastStatus").and_then(Value::as_str) == Some("STOPPED") {
            // The task succeeded when every container exited with 0.
            let failed = task
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c.get("exitCode").and_then(Value::as_i64) != Some(0));
            let out = pascal(&task);
            return if failed {
                Outcome::Failed("States.TaskFailed".into(), out.to_string())
            } else {
                Outcome::Done(out)
            };
        }
        sfn.clock.sleep_ms(POLL_MS).await;
        if !still_wanted(sfn, call) {
            let stop = json!({"cluster": cluster, "task": task_arn, "reason": "Execution stopped"});
            if let Err(e) = ecs.call(&ctx, "StopTask", stop).await {
                tracing::warn!(error = %e, "An ECS task of a stopped execution could not be stopped.");
            }
            return Outcome::Queued;
        }
    }
}
