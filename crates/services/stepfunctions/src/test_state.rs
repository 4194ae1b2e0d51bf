//! TestState: runs one state's definition on an input through the interpreter, without a
//! state machine. The state is wrapped in a one-state machine whose transition targets
//! (and `End`) lead to parked Wait states, so the run stops as the state leaves, with its
//! output, its next state and the variables it assigned still in hand. A Task calls its
//! resource (or answers with `mock`); a Wait does not wait; a matching Retry stops the run
//! as `RETRIABLE`, a Catch as `CAUGHT_ERROR`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::asl::{
    self, Command, Execution, HistoryEvent, Input, MapSettings, StartSpec, Status,
};

use crate::tasks::{self, Outcome, TaskCall};
use crate::{StepFunctions, err, required_str};

/// Where `End` leads in the wrapper machine (a name with a control character, which no
/// real definition uses).
const END: &str = "\u{1}end";
/// Where a transition back to the tested state itself leads.
const SELF: &str = "\u{1}self";

fn validation(message: impl Into<String>) -> AwsError {
    err("ValidationException", message)
}

fn json_field(input: &Value, field: &str) -> Result<Option<Value>, AwsError> {
    match input.get(field).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => serde_json::from_str(s).map(Some).map_err(|_| {
            err(
                "InvalidExecutionInput",
                format!("Invalid {field}: the value is not valid JSON"),
            )
        }),
    }
}

/// Points every transition of `st` named `from` at `to`.
fn retarget(st: &mut Map<String, Value>, name: &str, targets: &mut Vec<String>) {
    let mut fix = |v: &mut Value| {
        if let Some(t) = v.as_str() {
            let t = if t == name { SELF } else { t };
            targets.push(t.to_string());
            *v = Value::String(t.to_string());
        }
    };
    if let Some(n) = st.get_mut("Next") {
        fix(n);
    }
    if let Some(d) = st.get_mut("Default") {
        fix(d);
    }
    for list in ["Choices", "Catch"] {
        if let Some(Value::Array(a)) = st.get_mut(list) {
            for c in a {
                if let Some(n) = c.get_mut("Next") {
                    fix(n);
                }
            }
        }
    }
}

/// The Task a mocked Map or Parallel state runs as. AWS tests these only with a mock, which
/// stands for the whole state's result (every iteration or branch): what is left to test is the
/// state's own input and output processing, variables, Retry and Catch, all of which a Task
/// with the same fields does alike. The resource is never called: the mock answers for it.
fn as_mocked_task(st: &mut Map<String, Value>, kind: &str) {
    for field in [
        "Iterator",
        "ItemProcessor",
        "Branches",
        "ItemsPath",
        "Items",
        "ItemSelector",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ItemReader",
        "ResultWriter",
        "ItemBatcher",
        "Label",
        "ProcessorConfig",
    ] {
        st.remove(field);
    }
    if kind == "Map" {
        // A Map's `Parameters` is the older name of ItemSelector: per item, not the state's.
        st.remove("Parameters");
    }
    st.insert("Type".into(), json!("Task"));
    st.insert("Resource".into(), json!(MOCKED_RESOURCE));
}

/// What a mocked Map or Parallel state's Task names (any served integration would do).
const MOCKED_RESOURCE: &str = "arn:aws:states:::lambda:invoke";

/// What a Map fails with when more iterations failed than it tolerates.
const THRESHOLD_ERROR: (&str, &str) = (
    "States.ExceedToleratedFailureThreshold",
    "The specified tolerated failure threshold was exceeded",
);

/// `stateConfiguration`: the situation the tested state runs in.
#[derive(Default)]
struct Config {
    /// Retries already made by the Retry that takes the (mocked) error.
    retrier_retry_count: Option<u32>,
    /// Map iterations that failed (checked against the Map's tolerated failures).
    map_iteration_failure_count: Option<u64>,
    /// What the Map's ItemReader read.
    map_item_reader_data: Option<Value>,
}

fn config(input: &Value, kind: &str, st: &Map<String, Value>) -> Result<Config, AwsError> {
    let Some(c) = input.get("stateConfiguration") else {
        return Ok(Config::default());
    };
    let count = |field: &str| -> Result<Option<u64>, AwsError> {
        match c.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                validation(format!(
                    "1 validation error detected: Value '{v}' at 'stateConfiguration.{field}' failed to satisfy constraint: Member must have value greater than or equal to 0"
                ))
            }),
        }
    };
    let retrier_retry_count = count("retrierRetryCount")?.map(|n| n.min(u32::MAX as u64) as u32);
    let map_iteration_failure_count = count("mapIterationFailureCount")?;
    if let Some(name) = c.get("errorCausedByState").and_then(Value::as_str)
        && matches!(kind, "Map" | "Parallel")
        && !has_inner_state(&Value::Object(st.clone()), name)
    {
        return Err(validation(format!(
            "errorCausedByState '{name}' does not name a state of the tested {kind} state"
        )));
    }
    let map_item_reader_data =
        match c.get("mapItemReaderData").and_then(Value::as_str) {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|_| {
                validation("stateConfiguration.mapItemReaderData must be valid JSON")
            })?),
        };
    Ok(Config {
        retrier_retry_count,
        map_iteration_failure_count,
        map_item_reader_data,
    })
}

/// Whether `name` is a state of a Map's processor or a Parallel's branches (at any depth).
fn has_inner_state(st: &Value, name: &str) -> bool {
    let mut graphs: Vec<&Value> = Vec::new();
    for field in ["ItemProcessor", "Iterator"] {
        graphs.extend(st.get(field));
    }
    if let Some(Value::Array(b)) = st.get("Branches") {
        graphs.extend(b);
    }
    graphs.into_iter().any(|g| {
        g.get("States")
            .and_then(Value::as_object)
            .is_some_and(|states| {
                states.contains_key(name) || states.values().any(|s| has_inner_state(s, name))
            })
    })
}

/// The tested Map state's settings (items, MaxConcurrency, tolerated failures), evaluated on
/// the input as the Map would (`Err` inside: the error the Map fails with): the mock stands
/// for its iterations, not for these. A Map that is not a valid state is `InvalidDefinition`.
#[allow(clippy::type_complexity)]
fn map_settings(
    original: &Map<String, Value>,
    name: &str,
    query_language: Option<&Value>,
    spec: &StartSpec,
    vars: Option<&Map<String, Value>>,
    reader_data: Option<&Value>,
    now: i64,
) -> Result<Result<MapSettings, (String, String)>, AwsError> {
    let mut st = original.clone();
    for field in ["Next", "Catch", "Retry"] {
        st.remove(field);
    }
    st.insert("End".into(), json!(true));
    let mut machine = json!({"StartAt": name, "States": {name: st}});
    if let Some(q) = query_language {
        machine["QueryLanguage"] = q.clone();
    }
    let def = asl::parse(&machine.to_string())
        .map_err(|d| err("InvalidDefinition", asl::invalid_definition_message(&d)))?;
    let mut exec = Execution::new(spec.clone());
    if let Some(v) = vars {
        exec.seed_variables(v.clone());
    }
    // An ItemReader's items are what `mapItemReaderData` says it read.
    let items = original
        .contains_key("ItemReader")
        .then(|| match reader_data {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        });
    Ok(exec.map_settings(&def, name, items, now))
}

pub(crate) async fn test_state(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let text = required_str(input, "definition")?;
    let level = input
        .get("inspectionLevel")
        .and_then(Value::as_str)
        .unwrap_or("INFO");
    if !matches!(level, "INFO" | "DEBUG" | "TRACE") {
        return Err(validation(format!(
            "1 validation error detected: Value '{level}' at 'inspectionLevel' failed to satisfy constraint: Member must satisfy enum value set: [INFO, DEBUG, TRACE]"
        )));
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        err(
            "InvalidDefinition",
            format!("Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: {e}'"),
        )
    })?;
    // A whole machine with `stateName`, or one state.
    let (name, state_def, query_language) = match doc.get("States").and_then(Value::as_object) {
        Some(states) => {
            let name = input
                .get("stateName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    validation("stateName is required when the definition is a state machine")
                })?;
            let st = states.get(name).ok_or_else(|| {
                validation(format!("The state '{name}' is not in the definition"))
            })?;
            (
                name.to_string(),
                st.clone(),
                doc.get("QueryLanguage").cloned(),
            )
        }
        None => ("TestState".to_string(), doc.clone(), None),
    };
    let Value::Object(mut st) = state_def else {
        return Err(err(
            "InvalidDefinition",
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Expected value of type: Object'",
        ));
    };
    let mock = input.get("mock");
    let kind = st
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let cfg = config(input, &kind, &st)?;
    let original = st.clone();
    if matches!(kind.as_str(), "Map" | "Parallel") {
        if mock.is_none() {
            return Err(validation(
                "TestState only supports Activity tasks, .sync or .waitForTaskToken service integration patterns, Parallel, or Map states when a mock is specified",
            ));
        }
        as_mocked_task(&mut st, &kind);
    }
    if kind == "Task" && mock.is_none() {
        let resource = st
            .get("Resource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if resource.ends_with(".waitForTaskToken")
            || resource.contains(".sync")
            || resource.contains(":activity:")
        {
            return Err(validation(
                "TestState only supports Activity tasks, .sync or .waitForTaskToken service integration patterns when a mock is specified",
            ));
        }
    }
    let mut targets = Vec::new();
    retarget(&mut st, &name, &mut targets);
    if st.remove("End") == Some(Value::Bool(true)) {
        st.insert("Next".into(), Value::String(END.into()));
        targets.push(END.into());
    }
    let mut states = Map::new();
    states.insert(name.clone(), Value::Object(st.clone()));
    for t in &targets {
        // Parked: the run stops when the tested state hands over to one of these.
        states.insert(
            t.clone(),
            json!({"Type": "Wait", "Seconds": 99_999_999, "End": true}),
        );
    }
    let jsonata = match st.get("QueryLanguage") {
        Some(q) => q == "JSONata",
        None => query_language.as_ref().is_some_and(|q| q == "JSONata"),
    };
    let ql = query_language.clone();
    let mut machine = json!({"StartAt": name, "States": states});
    if let Some(q) = query_language {
        machine["QueryLanguage"] = q;
    }
    let def = asl::parse(&machine.to_string())
        .map_err(|d| err("InvalidDefinition", asl::invalid_definition_message(&d)))?;
    let state_input = json_field(input, "input")?.unwrap_or_else(|| json!({}));
    let now = sfn.clock.now_ms();
    let machine_arn = format!(
        "arn:aws:states:{}:{}:stateMachine:TestStateStateMachine",
        ctx.region, ctx.account
    );
    let spec = StartSpec {
        execution_arn: format!(
            "arn:aws:states:{}:{}:execution:TestStateStateMachine:{}",
            ctx.region,
            ctx.account,
            uuid::Uuid::new_v4()
        ),
        name: "TestState".into(),
        state_machine_arn: machine_arn,
        state_machine_name: "TestStateStateMachine".into(),
        role_arn: input
            .get("roleArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        region: ctx.region.clone(),
        input: state_input.clone(),
        start_ms: now,
        token_prefix: "teststate-".into(),
        seed: now as u64,
    };
    let mut exec = Execution::new(spec.clone());
    let vars = match json_field(input, "variables")? {
        Some(Value::Object(vars)) => Some(vars),
        Some(_) => return Err(validation("variables must be a JSON object")),
        None => None,
    };
    if let Some(v) = &vars {
        exec.seed_variables(v.clone());
    }
    if let Some(n) = cfg.retrier_retry_count {
        exec.seed_retry_count(n);
    }
    // A mocked Map's own fields still count: its items and tolerated failures, against which
    // `mapIterationFailureCount` failed iterations are checked.
    let settings = match kind.as_str() {
        "Map" => Some(map_settings(
            &original,
            &name,
            ql.as_ref(),
            &spec,
            vars.as_ref(),
            cfg.map_item_reader_data.as_ref(),
            now,
        )?),
        _ => None,
    };
    let threshold_exceeded = match (&settings, cfg.map_iteration_failure_count) {
        (Some(Ok(s)), Some(n)) => s.exceeded_by(n),
        _ => false,
    };
    let map_error = match &settings {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    let mut history: Vec<HistoryEvent> = Vec::new();
    let mut timers: BTreeMap<i64, u64> = BTreeMap::new();
    let mut waited = false;
    let mut next = Some(Input::Start);
    let mut parked = None;
    while let Some(step_input) = next.take() {
        let fx = exec.step(&def, step_input, sfn.clock.now_ms());
        let mut task = None;
        for c in fx.commands {
            match c {
                Command::RunTask {
                    task: id,
                    resource,
                    input,
                    token,
                    ..
                } => task = Some((id, resource, input, token)),
                Command::StartTimer { timer, at_ms } => {
                    timers.insert(at_ms, timer);
                }
            }
        }
        let entered_target = fx.events.iter().find_map(|e| {
            let n = e.details.get("name")?.as_str()?;
            (e.kind.ends_with("StateEntered") && n != name).then(|| n.to_string())
        });
        history.extend(fx.events);
        if exec.status != Status::Running {
            break;
        }
        if let Some(t) = entered_target {
            parked = Some(t);
            break;
        }
        if let Some((id, resource, task_input, token)) = task {
            timers.clear();
            next = Some(match mock {
                // The Map's own fields did not evaluate: it fails before any iteration.
                Some(_) if map_error.is_some() => {
                    let (error, cause) = map_error.clone().unwrap_or_default();
                    Input::TaskFailed {
                        task: id,
                        error,
                        cause,
                    }
                }
                Some(m) if m.get("errorOutput").is_some() => Input::TaskFailed {
                    task: id,
                    error: m
                        .pointer("/errorOutput/error")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    cause: m
                        .pointer("/errorOutput/cause")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                },
                Some(_) if threshold_exceeded => Input::TaskFailed {
                    task: id,
                    error: THRESHOLD_ERROR.0.into(),
                    cause: THRESHOLD_ERROR.1.into(),
                },
                Some(m) => Input::TaskSucceeded {
                    task: id,
                    output: m
                        .get("result")
                        .and_then(Value::as_str)
                        .map(|s| {
                            serde_json::from_str(s)
                                .map_err(|_| validation("mock.result must be valid JSON"))
                        })
                        .transpose()?
                        .unwrap_or(Value::Null),
                },
                None => {
                    let call = TaskCall {
                        exec_arn: String::new(),
                        account: ctx.account.clone(),
                        region: ctx.region.clone(),
                        task: id,
                        resource,
                        input: task_input,
                        token,
                    };
                    match tasks::run(sfn, call).await {
                        Outcome::Done(output) => Input::TaskSucceeded { task: id, output },
                        Outcome::Failed(error, cause) => Input::TaskFailed {
                            task: id,
                            error,
                            cause,
                        },
                        Outcome::Submitted(_) | Outcome::Queued => Input::TaskFailed {
                            task: id,
                            error: "States.Runtime".into(),
                            cause: "TestState cannot wait for a task token".into(),
                        },
                    }
                }
            });
            continue;
        }
        // Blocked on a timer: a Wait state's (fired at once: TestState does not wait) or a
        // retry's (the run stops as RETRIABLE).
        if kind == "Wait" && !waited {
            waited = true;
            if let Some((_, timer)) = timers.pop_last() {
                next = Some(Input::TimerFired { timer });
            }
        }
    }
    let mut out = Map::new();
    let handled = exec.last_handled.clone();
    let status = if exec.status == Status::Succeeded {
        out.insert(
            "output".into(),
            json!(exec.output.clone().unwrap_or(Value::Null).to_string()),
        );
        "SUCCEEDED"
    } else if exec.status != Status::Running {
        out.insert(
            "error".into(),
            json!(exec.error.clone().unwrap_or_default()),
        );
        out.insert(
            "cause".into(),
            json!(exec.cause.clone().unwrap_or_default()),
        );
        "FAILED"
    } else if let Some(target) = &parked {
        let output = history
            .iter()
            .rev()
            .find(|e| e.kind.ends_with("StateExited"))
            .and_then(|e| e.details.get("output").cloned())
            .unwrap_or(Value::Null);
        out.insert("output".into(), output);
        if target != END {
            let n = if target == SELF { &name } else { target };
            out.insert("nextState".into(), json!(n));
        }
        match handled {
            Some((error, cause, false)) => {
                out.insert("error".into(), json!(error));
                out.insert("cause".into(), json!(cause));
                "CAUGHT_ERROR"
            }
            _ => "SUCCEEDED",
        }
    } else {
        let (error, cause) = handled.map(|(e, c, _)| (e, c)).unwrap_or_default();
        out.insert("error".into(), json!(error));
        out.insert("cause".into(), json!(cause));
        "RETRIABLE"
    };
    out.insert("status".into(), json!(status));
    if level != "INFO" {
        out.insert(
            "inspectionData".into(),
            inspection(
                &st,
                jsonata,
                &state_input,
                &history,
                &exec,
                settings.and_then(Result::ok).as_ref(),
            ),
        );
    }
    Ok(Value::Object(out))
}

/// What DEBUG and TRACE add: the stages of the state's data flow that the run shows.
fn inspection(
    st: &Map<String, Value>,
    jsonata: bool,
    input: &Value,
    history: &[HistoryEvent],
    exec: &Execution,
    map: Option<&MapSettings>,
) -> Value {
    let mut d = Map::new();
    d.insert("input".into(), json!(input.to_string()));
    // The request a Task sent, and what came back.
    let sent = history.iter().find_map(|e| match e.kind.as_str() {
        "TaskScheduled" => e.details.get("parameters").cloned(),
        "LambdaFunctionScheduled" | "ActivityScheduled" => e.details.get("input").cloned(),
        _ => None,
    });
    let result = history.iter().find_map(|e| {
        e.kind
            .ends_with("Succeeded")
            .then(|| e.details.get("output").cloned())
            .flatten()
            .filter(|_| e.kind != "ExecutionSucceeded")
    });
    if jsonata {
        if let Some(p) = sent {
            d.insert("afterArguments".into(), p);
        }
    } else {
        let after_input = match st.get("InputPath") {
            None => Some(input.clone()),
            Some(Value::Null) => Some(json!({})),
            Some(Value::String(p)) => asl::eval_path(p, input).ok().flatten(),
            Some(_) => None,
        };
        if let Some(v) = after_input {
            d.insert("afterInputPath".into(), json!(v.to_string()));
            if !st.contains_key("Parameters") {
                d.insert("afterParameters".into(), json!(v.to_string()));
            }
        }
        if let Some(p) = sent {
            d.insert("afterParameters".into(), p);
        }
        if let Some(r) = &result
            && !st.contains_key("ResultSelector")
        {
            d.insert("afterResultSelector".into(), r.clone());
        }
        let exited = history
            .iter()
            .rev()
            .find(|e| e.kind.ends_with("StateExited"))
            .and_then(|e| e.details.get("output").cloned());
        if let Some(o) = exited
            && !st.contains_key("OutputPath")
        {
            d.insert("afterResultPath".into(), o);
        }
    }
    if let Some(r) = result {
        d.insert("result".into(), r);
    }
    let vars = exec.variables();
    if !vars.is_empty() {
        d.insert("variables".into(), json!(Value::Object(vars).to_string()));
    }
    if let Some(m) = map {
        if !jsonata {
            d.insert(
                "afterItemsPath".into(),
                json!(Value::Array(m.items.clone()).to_string()),
            );
        }
        d.insert("maxConcurrency".into(), json!(m.max_concurrency));
        if let Some(c) = m.tolerated_count {
            d.insert("toleratedFailureCount".into(), json!(c));
        }
        if let Some(p) = m.tolerated_pct {
            d.insert("toleratedFailurePercentage".into(), json!(p));
        }
    }
    let h = &exec.error_handling;
    let mut details = Map::new();
    if let Some(i) = h.catch_index {
        details.insert("catchIndex".into(), json!(i));
    }
    if let Some(i) = h.retry_index {
        details.insert("retryIndex".into(), json!(i));
    }
    if let Some(b) = h.retry_backoff_s {
        details.insert(
            "retryBackoffIntervalSeconds".into(),
            json!(b.round() as u64),
        );
    }
    if !details.is_empty() {
        d.insert("errorDetails".into(), Value::Object(details));
    }
    Value::Object(d)
}
