//! Data-driven tests of the States Language interpreter: every file in `test_data/asl/` is an
//! array of cases. A case runs a definition on an input; its `tasks` script answers the
//! task commands in the order they are issued (`{"succeed": v}`, `{"echo": true}`,
//! `{"fail": {"error", "cause"}}`, `{"submit": v, "succeed": w}`), optionally checking the
//! task's `resource` and `input`; timers fire in deadline order, moving time forward. The
//! case then checks `output` or `error`/`cause`, the `status`, the history's event `types`
//! (when given), and `elapsed_ms`. A case with `invalid` checks the validation message.
//! After every step the execution is continued from its stored (serialized) form, so every
//! case also checks that nothing (variables included) is lost across a restart.

use std::collections::VecDeque;

use serde_json::{Value, json};
use tsumiki_lang::asl::{self, Command, Execution, Input, StartSpec, Status};

const START_MS: i64 = 1_700_000_000_000;

fn run_case(case: &Value) -> Result<(), String> {
    let def_text = case["definition"].to_string();
    let parsed = asl::parse(&def_text);
    if let Some(want) = case.get("invalid") {
        let msg = match parsed {
            Ok(_) => return Err("the definition was accepted".into()),
            Err(d) => asl::invalid_definition_message(&d),
        };
        let want = want.as_str().expect("invalid is a string");
        return if msg.contains(want) {
            Ok(())
        } else {
            Err(format!("message {msg:?} lacks {want:?}"))
        };
    }
    let def = parsed.map_err(|d| asl::invalid_definition_message(&d))?;
    let mut exec = Execution::new(StartSpec {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:sm:ex".into(),
        name: "ex".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sm".into(),
        state_machine_name: "sm".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        region: "us-east-1".into(),
        input: case.get("input").cloned().unwrap_or(json!({})),
        start_ms: START_MS,
        token_prefix: "tok-".into(),
        seed: 42,
    });
    let mut script: VecDeque<Value> = case
        .get("tasks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into();
    let mut now = START_MS;
    let mut history = Vec::new();
    let mut tasks: VecDeque<(u64, String, Value, String)> = VecDeque::new();
    let mut timers: Vec<(i64, u64)> = Vec::new();
    let mut submitted: Vec<(u64, Value)> = Vec::new();
    let mut next = Some(Input::Start);
    for _ in 0..100_000 {
        let Some(input) = next.take() else { break };
        let fx = exec.step(&def, input, now);
        // Continue from the stored form, as a restarted service does.
        exec = serde_json::from_str(&serde_json::to_string(&exec).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        history.extend(fx.events);
        for c in fx.commands {
            match c {
                Command::RunTask {
                    task,
                    resource,
                    input,
                    token,
                    ..
                } => tasks.push_back((task, resource, input, token)),
                Command::StartTimer { timer, at_ms } => timers.push((at_ms, timer)),
            }
        }
        if exec.status != Status::Running {
            break;
        }
        if let Some((task, resource, input, token)) = tasks.pop_front() {
            let entry = script
                .pop_front()
                .ok_or_else(|| format!("no scripted answer for task {resource} {input}"))?;
            if let Some(r) = entry.get("resource")
                && r != &json!(resource)
            {
                return Err(format!("task resource {resource}, expected {r}"));
            }
            if let Some(i) = entry.get("input")
                && i != &input
            {
                return Err(format!("task input {input}, expected {i}"));
            }
            if exec.task_for_token(&token) != Some(task) {
                return Err(format!("token {token} does not lead back to task {task}"));
            }
            next = if let Some(out) = entry.get("submit") {
                submitted.push((task, entry.get("succeed").cloned().unwrap_or(Value::Null)));
                Some(Input::TaskSubmitted {
                    task,
                    output: out.clone(),
                })
            } else if let Some(f) = entry.get("fail") {
                Some(Input::TaskFailed {
                    task,
                    error: f["error"].as_str().unwrap_or_default().into(),
                    cause: f["cause"].as_str().unwrap_or_default().into(),
                })
            } else if entry.get("echo").is_some() {
                Some(Input::TaskSucceeded {
                    task,
                    output: input,
                })
            } else if let Some(v) = entry.get("succeed") {
                Some(Input::TaskSucceeded {
                    task,
                    output: v.clone(),
                })
            } else {
                // Leave it hanging (timeouts fire instead).
                next_timer(&mut timers, &mut now)
            };
            continue;
        }
        if let Some((task, out)) = submitted.pop() {
            next = Some(Input::TaskSucceeded { task, output: out });
            continue;
        }
        next = next_timer(&mut timers, &mut now);
    }
    let types: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    // Event ids count up from 1 and every previous id names an earlier event.
    for (i, e) in history.iter().enumerate() {
        if e.id != i as i64 + 1 || e.previous_id >= e.id {
            return Err(format!("event ids out of order at {i}: {e:?}"));
        }
    }
    let want_status =
        case.get("status")
            .and_then(Value::as_str)
            .unwrap_or(if case.get("error").is_some() {
                "FAILED"
            } else {
                "SUCCEEDED"
            });
    if exec.status.as_str() != want_status {
        return Err(format!(
            "status {} (error {:?}, cause {:?}), expected {want_status}; history {types:?}",
            exec.status.as_str(),
            exec.error,
            exec.cause
        ));
    }
    if let Some(out) = case.get("output")
        && exec.output.as_ref() != Some(out)
    {
        return Err(format!("output {:?}, expected {out}", exec.output));
    }
    if let Some(e) = case.get("error")
        && exec.error.as_deref() != e.as_str()
    {
        return Err(format!(
            "error {:?} ({:?}), expected {e}",
            exec.error, exec.cause
        ));
    }
    if let Some(c) = case.get("cause").and_then(Value::as_str)
        && !exec.cause.as_deref().unwrap_or_default().contains(c)
    {
        return Err(format!("cause {:?} lacks {c:?}", exec.cause));
    }
    if let Some(t) = case.get("types") {
        let want: Vec<&str> = t
            .as_array()
            .expect("types")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if want != types {
            return Err(format!("history {types:?}, expected {want:?}"));
        }
    }
    if let Some(ms) = case.get("elapsed_ms").and_then(Value::as_i64)
        && now - START_MS != ms
    {
        return Err(format!("elapsed {} ms, expected {ms}", now - START_MS));
    }
    if !script.is_empty() {
        return Err(format!(
            "{} scripted task answers were not used",
            script.len()
        ));
    }
    // The execution survives a round trip through its stored form.
    let stored = serde_json::to_string(&exec).map_err(|e| e.to_string())?;
    let _: Execution = serde_json::from_str(&stored).map_err(|e| e.to_string())?;
    Ok(())
}

fn next_timer(timers: &mut Vec<(i64, u64)>, now: &mut i64) -> Option<Input> {
    timers.sort();
    if timers.is_empty() {
        return None;
    }
    let (at, timer) = timers.remove(0);
    *now = (*now).max(at);
    Some(Input::TimerFired { timer })
}

#[test]
fn asl_cases() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/asl");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("test_data/asl exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        let cases: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for case in &cases {
            count += 1;
            if let Err(e) = run_case(case) {
                failures.push(format!(
                    "{} / {}: {e}",
                    f.file_name().expect("name").to_string_lossy(),
                    case["name"]
                ));
            }
        }
    }
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
