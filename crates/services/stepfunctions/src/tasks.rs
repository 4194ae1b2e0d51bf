//! Task states' resources: Lambda (the optimized `lambda:invoke` and bare function ARNs)
//! through `ports::FunctionInvoker`; SQS, SNS, EventBridge, DynamoDB and every `aws-sdk:*`
//! call through `ports::Services` by model name; nested executions (`states:startExecution`,
//! `.sync`, `.sync:2`); activities; Glue and ECS in `jobs.rs`. Each integration pattern is a suffix: `.waitForTaskToken`
//! makes the call and then waits for SendTaskSuccess/Failure.

use serde_json::{Value, json};
use tsumiki_lang::asl::Status;
use tsumiki_ports::FunctionTarget;

use crate::{ActivityTask, StepFunctions, parse_states_arn, secs};

pub(crate) struct TaskCall {
    pub exec_arn: String,
    pub account: String,
    pub region: String,
    pub task: u64,
    pub resource: String,
    pub input: Value,
    pub token: String,
}

pub(crate) enum Outcome {
    Done(Value),
    Failed(String, String),
    /// The request was sent; the answer comes with the task token.
    Submitted(Value),
    /// An activity task waits for a worker.
    Queued,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Pattern {
    RequestResponse,
    Sync,
    Sync2,
    WaitForToken,
}

fn split_pattern(resource: &str) -> (&str, Pattern) {
    if let Some(r) = resource.strip_suffix(".waitForTaskToken") {
        (r, Pattern::WaitForToken)
    } else if let Some(r) = resource.strip_suffix(".sync:2") {
        (r, Pattern::Sync2)
    } else if let Some(r) = resource.strip_suffix(".sync") {
        (r, Pattern::Sync)
    } else {
        (resource, Pattern::RequestResponse)
    }
}

/// `sendMessage` -> `SendMessage`.
fn operation_name(action: &str) -> String {
    let mut c = action.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The model key of an SDK service name as integrations spell it.
fn model_key(sdk: &str) -> &str {
    match sdk {
        "sfn" | "states" => "stepfunctions",
        "eventbridge" => "events",
        "cloudwatchlogs" => "logs",
        other => other,
    }
}

/// The prefix AWS puts before a service's error codes in task errors.
fn error_prefix(sdk: &str) -> String {
    match sdk {
        "sqs" => "SQS".into(),
        "sns" => "SNS".into(),
        "dynamodb" => "DynamoDB".into(),
        "events" | "eventbridge" => "EventBridge".into(),
        "lambda" => "Lambda".into(),
        "sfn" | "states" => "Sfn".into(),
        other => operation_name(other),
    }
}

pub(crate) async fn run(sfn: &StepFunctions, call: TaskCall) -> Outcome {
    if call.resource == tsumiki_lang::asl::DISTRIBUTED_MAP {
        return crate::maprun::run(sfn, call).await;
    }
    let (base, pattern) = split_pattern(&call.resource);
    let base = base.to_string();
    if base == "arn:aws:states:::lambda:invoke" {
        return lambda_invoke(sfn, &call, pattern).await;
    }
    if let Some(("lambda", _, _, res)) = tsumiki_core::ids::parse_arn(&base)
        && res.starts_with("function:")
    {
        return bare_lambda(sfn, &call, &base).await;
    }
    if let Some((_, _, kind, _)) = parse_states_arn(&base)
        && kind == "activity"
    {
        if !sfn.activities.read().contains_key(&base) {
            return Outcome::Failed(
                "States.TaskFailed".into(),
                format!("Activity Does Not Exist: '{base}'"),
            );
        }
        sfn.queue_activity_task(
            &base,
            ActivityTask {
                exec_arn: call.exec_arn.clone(),
                task: call.task,
                token: call.token.clone(),
                input: call.input.clone(),
            },
        );
        return Outcome::Queued;
    }
    let Some(rest) = base.strip_prefix("arn:aws:states:::") else {
        return Outcome::Failed(
            "States.TaskFailed".into(),
            format!(
                "The resource {} is not supported by tsumiki.",
                call.resource
            ),
        );
    };
    if rest == "states:startExecution" {
        return start_execution(sfn, &call, pattern).await;
    }
    let sync = matches!(pattern, Pattern::Sync | Pattern::Sync2);
    let token = pattern == Pattern::WaitForToken;
    if let Some(out) = crate::jobs::run(sfn, &call, rest, sync, token).await {
        return out;
    }
    let (sdk, action, generic) = match rest.strip_prefix("aws-sdk:") {
        Some(r) => {
            let (s, a) = r.split_once(':').unwrap_or((r, ""));
            (s, a, true)
        }
        None => {
            let (s, a) = rest.split_once(':').unwrap_or((rest, ""));
            (s, a, false)
        }
    };
    if pattern == Pattern::Sync || pattern == Pattern::Sync2 {
        return Outcome::Failed(
            "States.TaskFailed".into(),
            format!("The .sync pattern of {rest} is not supported by tsumiki yet."),
        );
    }
    let key = model_key(sdk);
    let Some(service) = sfn.services.read().get(key).cloned() else {
        return Outcome::Failed(
            "States.TaskFailed".into(),
            format!(
                "tsumiki does not serve {sdk} yet, so the task {} cannot run.",
                call.resource
            ),
        );
    };
    let mut input = call.input.clone();
    if !generic {
        stringify_bodies(sdk, action, &mut input);
    }
    let ctx = sfn.internal_ctx(&call.account, &call.region);
    match service.call(&ctx, &operation_name(action), input).await {
        Ok(out) if pattern == Pattern::WaitForToken => Outcome::Submitted(out),
        Ok(out) => Outcome::Done(out),
        Err(e) => Outcome::Failed(format!("{}.{}", error_prefix(sdk), e.code), e.message),
    }
}

/// Optimized integrations take JSON for bodies the API wants as strings.
fn stringify_bodies(sdk: &str, action: &str, input: &mut Value) {
    let field = match (sdk, action) {
        ("sqs", "sendMessage") => "MessageBody",
        ("sns", "publish") => "Message",
        _ => "",
    };
    if !field.is_empty()
        && let Some(v) = input.get_mut(field)
        && !v.is_string()
    {
        *v = Value::String(v.to_string());
    }
    if sdk == "events"
        && let Some(entries) = input.get_mut("Entries").and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(d) = e.get_mut("Detail")
                && !d.is_string()
            {
                *d = Value::String(d.to_string());
            }
        }
    }
}

async fn invoke(
    sfn: &StepFunctions,
    call: &TaskCall,
    function: &str,
    qualifier: Option<String>,
    payload: &Value,
) -> Result<(Value, Option<String>, String), (String, String)> {
    let Some(invoker) = sfn.functions.upgrade() else {
        return Err(("States.TaskFailed".into(), "Lambda is not served.".into()));
    };
    let target = FunctionTarget {
        account: call.account.clone(),
        region: call.region.clone(),
        function: function.to_string(),
        qualifier,
    };
    let bytes = if payload.is_null() {
        b"{}".to_vec()
    } else {
        payload.to_string().into_bytes()
    };
    match invoker
        .invoke(&target, bytes, &tsumiki_core::ids::request_id())
        .await
    {
        Ok(r) => {
            let text = String::from_utf8_lossy(&r.payload).to_string();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok((value, r.function_error, r.executed_version))
        }
        Err(e) => Err((format!("Lambda.{}", e.code), e.message)),
    }
}

/// A function error's task error: its `errorType` (AWS's rule), the payload as the cause.
fn function_failure(payload: &Value) -> (String, String) {
    let error = payload
        .get("errorType")
        .and_then(Value::as_str)
        .unwrap_or("Lambda.Unknown")
        .to_string();
    let cause = match payload {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (error, cause)
}

async fn lambda_invoke(sfn: &StepFunctions, call: &TaskCall, pattern: Pattern) -> Outcome {
    let Some(function) = call.input.get("FunctionName").and_then(Value::as_str) else {
        return Outcome::Failed(
            "States.Runtime".into(),
            "The field 'FunctionName' is required by lambda:invoke.".into(),
        );
    };
    let qualifier = call
        .input
        .get("Qualifier")
        .and_then(Value::as_str)
        .map(str::to_string);
    let payload = call.input.get("Payload").cloned().unwrap_or(Value::Null);
    match invoke(sfn, call, function, qualifier, &payload).await {
        Err((e, c)) => Outcome::Failed(e, c),
        Ok((value, Some(_), _)) => {
            let (e, c) = function_failure(&value);
            Outcome::Failed(e, c)
        }
        Ok((value, None, version)) => {
            let request_id = tsumiki_core::ids::request_id();
            let out = json!({
                "ExecutedVersion": version,
                "Payload": value,
                "SdkHttpMetadata": {"HttpStatusCode": 200, "HttpHeaders": {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": version}},
                "SdkResponseMetadata": {"RequestId": request_id},
                "StatusCode": 200,
            });
            if pattern == Pattern::WaitForToken {
                Outcome::Submitted(out)
            } else {
                Outcome::Done(out)
            }
        }
    }
}

async fn bare_lambda(sfn: &StepFunctions, call: &TaskCall, arn: &str) -> Outcome {
    match invoke(sfn, call, arn, None, &call.input).await {
        Err((e, c)) => Outcome::Failed(e, c),
        Ok((value, Some(_), _)) => {
            let (e, c) = function_failure(&value);
            Outcome::Failed(e, c)
        }
        Ok((value, None, _)) => Outcome::Done(value),
    }
}

/// A child execution's name that a restarted parent finds again (FNV-1a of the parent).
fn child_name(parent: &str, task: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parent.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}-{task}")
}

async fn start_execution(sfn: &StepFunctions, call: &TaskCall, pattern: Pattern) -> Outcome {
    let Some(machine) = call.input.get("StateMachineArn").and_then(Value::as_str) else {
        return Outcome::Failed(
            "States.Runtime".into(),
            "The field 'StateMachineArn' is required by states:startExecution.".into(),
        );
    };
    let input_text = match call.input.get("Input") {
        None => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let name = call
        .input
        .get("Name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| child_name(&call.exec_arn, call.task));
    let ctx = sfn.internal_ctx(&call.account, &call.region);
    let req = json!({"stateMachineArn": machine, "name": name, "input": input_text});
    let started = sfn.start_one(&ctx, &req, None).await;
    let (arn, start_ms) = match started {
        Ok((arn, start_ms, _)) => (arn, start_ms),
        Err(e) if e.code == "ExecutionAlreadyExists" => {
            // A restarted parent re-runs this task: the child it started before is the one.
            let arn = tsumiki_core::ids::arn(
                "states",
                &call.region,
                &call.account,
                &format!(
                    "execution:{}:{}",
                    machine.rsplit(':').next().unwrap_or(""),
                    name
                ),
            );
            match sfn.executions.read().get(&arn) {
                Some(e) => {
                    let start = e.lock().rec.start_ms;
                    (arn, start)
                }
                None => return Outcome::Failed(format!("Sfn.{}", e.code), e.message),
            }
        }
        Err(e) => return Outcome::Failed(format!("Sfn.{}", e.code), e.message),
    };
    match pattern {
        Pattern::RequestResponse => {
            Outcome::Done(json!({"ExecutionArn": arn, "StartDate": secs(start_ms)}))
        }
        Pattern::WaitForToken => {
            Outcome::Submitted(json!({"ExecutionArn": arn, "StartDate": secs(start_ms)}))
        }
        Pattern::Sync | Pattern::Sync2 => {
            // As AWS: TaskSubmitted with StartExecution's answer, then the child's end. The
            // watch lets a restarted server wait for the same child.
            let watch = crate::jobs::watch_of(
                call,
                "states",
                json!({"ExecutionArn": arn, "Sync2": pattern == Pattern::Sync2}),
            );
            let answer = json!({"ExecutionArn": arn, "StartDate": secs(start_ms)});
            crate::jobs::submit(sfn, &watch, answer).await;
            let outcome = crate::jobs::poll(sfn, &watch).await;
            crate::jobs::finish(sfn, &watch, outcome).await;
            Outcome::Queued
        }
    }
}

/// The end of a `.sync` child execution as the parent's task sees it: its description
/// (`.sync:2`: input and output as JSON), failing with `States.TaskFailed` unless it
/// succeeded.
pub(crate) async fn child_outcome(sfn: &StepFunctions, arn: &str, sync2: bool) -> Outcome {
    let Some(entry) = sfn.wait_for(arn).await else {
        return Outcome::Failed(
            "States.TaskFailed".into(),
            format!("The execution {arn} ended and is gone."),
        );
    };
    let e = entry.lock();
    let r = &e.rec;
    let output = r.exec.output.clone();
    let mut d = json!({
        "ExecutionArn": r.arn,
        "StateMachineArn": r.machine_arn,
        "Name": r.name,
        "Status": r.exec.status.as_str(),
        "StartDate": r.start_ms,
        "StopDate": r.exec.stop_ms,
        "Input": if sync2 { serde_json::from_str(&r.input).unwrap_or(Value::Null) } else { json!(r.input) },
        "InputDetails": {"Included": true},
    });
    if let Some(o) = output {
        d["Output"] = if sync2 { o } else { json!(o.to_string()) };
        d["OutputDetails"] = json!({"Included": true});
    }
    if let Some(er) = &r.exec.error {
        d["Error"] = json!(er);
    }
    if let Some(c) = &r.exec.cause {
        d["Cause"] = json!(c);
    }
    if r.exec.status == Status::Succeeded {
        Outcome::Done(d)
    } else {
        Outcome::Failed("States.TaskFailed".into(), d.to_string())
    }
}
