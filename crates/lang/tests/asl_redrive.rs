//! RedriveExecution in the interpreter: a failed execution resumes at the top-level state
//! that failed, with that state's input, and the states before it do not run again.

use serde_json::{Value, json};
use tsumiki_lang::asl::{self, Command, Execution, Input, StartSpec, Status};

fn start(def: &asl::Definition, input: Value) -> (Execution, Vec<asl::HistoryEvent>, Vec<Command>) {
    let mut exec = Execution::new(StartSpec {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:sm:ex".into(),
        name: "ex".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sm".into(),
        state_machine_name: "sm".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        region: "us-east-1".into(),
        input,
        start_ms: 1_000,
        token_prefix: "tok-".into(),
        seed: 7,
    });
    let fx = exec.step(def, Input::Start, 1_000);
    (exec, fx.events, fx.commands)
}

fn task_of(commands: &[Command]) -> (u64, Value) {
    commands
        .iter()
        .find_map(|c| match c {
            Command::RunTask { task, input, .. } => Some((*task, input.clone())),
            _ => None,
        })
        .expect("a task was started")
}

#[test]
fn a_failed_task_is_run_again_with_its_input_and_the_states_before_it_are_not() {
    let def = asl::parse(
        &json!({"StartAt": "Before", "States": {
            "Before": {"Type": "Pass", "Result": {"n": 1}, "ResultPath": "$.before", "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"n.$": "$.before.n", "redrives.$": "$$.Execution.RedriveCount"}, "ResultSelector": {"r.$": "$.Payload"}, "End": true}}})
        .to_string(),
    )
    .unwrap();
    let (mut exec, history, commands) = start(&def, json!({"x": 1}));
    assert!(!exec.redrivable());
    let (task, input) = task_of(&commands);
    assert_eq!(input, json!({"n": 1, "redrives": 0}));
    let fx = exec.step(
        &def,
        Input::TaskFailed {
            task,
            error: "Boom".into(),
            cause: "bad".into(),
        },
        2_000,
    );
    assert_eq!(exec.status, Status::Failed);
    assert!(exec.redrivable());
    let last_id = fx.events.last().unwrap().id;
    assert_eq!(fx.events.last().unwrap().kind, "ExecutionFailed");
    let before_events = history.len() + fx.events.len();

    let fx = exec.redrive(&def, 1, 3_000).expect("redrivable");
    assert_eq!(exec.status, Status::Running);
    assert_eq!(exec.error, None);
    assert_eq!(fx.events[0].kind, "ExecutionRedriven");
    assert_eq!(fx.events[0].id, last_id + 1);
    assert_eq!(fx.events[0].details, json!({"redriveCount": 1}));
    let kinds: Vec<&str> = fx.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(!kinds.contains(&"PassStateEntered"), "{kinds:?}");
    assert_eq!(kinds[1], "TaskStateEntered");
    assert_eq!(
        fx.events[1].details["input"],
        json!(json!({"x": 1, "before": {"n": 1}}).to_string())
    );
    let (task, input) = task_of(&fx.commands);
    assert_eq!(input, json!({"n": 1, "redrives": 1}));
    exec.step(
        &def,
        Input::TaskSucceeded {
            task,
            output: json!({"Payload": "ok"}),
        },
        4_000,
    );
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(exec.output, Some(json!({"r": "ok"})));
    assert!(!exec.redrivable());
    assert!(exec.redrive(&def, 2, 5_000).is_none());
    assert!(before_events > 0);
}

#[test]
fn an_aborted_execution_resumes_at_the_state_it_was_in() {
    let def = asl::parse(
        &json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Result": "a", "ResultPath": "$.a", "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 10, "Next": "B"},
            "B": {"Type": "Pass", "End": true}}})
        .to_string(),
    )
    .unwrap();
    let (mut exec, _, _) = start(&def, json!({}));
    exec.step(
        &def,
        Input::Stop {
            error: None,
            cause: None,
        },
        2_000,
    );
    assert_eq!(exec.status, Status::Aborted);
    let fx = exec.redrive(&def, 1, 3_000).expect("redrivable");
    let timer = fx
        .commands
        .iter()
        .find_map(|c| match c {
            Command::StartTimer { timer, at_ms } => Some((*timer, *at_ms)),
            _ => None,
        })
        .expect("the Wait starts again");
    assert_eq!(timer.1, 13_000);
    exec.step(&def, Input::TimerFired { timer: timer.0 }, 13_000);
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(exec.output, Some(json!({"a": "a"})));
}

#[test]
fn a_succeeded_execution_is_not_redrivable() {
    let def = asl::parse(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}).to_string(),
    )
    .unwrap();
    let (mut exec, _, _) = start(&def, json!({}));
    assert_eq!(exec.status, Status::Succeeded);
    assert!(exec.redrive(&def, 1, 2_000).is_none());
}
