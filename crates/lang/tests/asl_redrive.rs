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

fn tasks_of(commands: &[Command]) -> Vec<(u64, Value)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::RunTask { task, input, .. } => Some((*task, input.clone())),
            _ => None,
        })
        .collect()
}

fn succeed(exec: &mut Execution, def: &asl::Definition, task: u64, output: Value) -> Vec<Command> {
    exec.step(def, Input::TaskSucceeded { task, output }, 2_000)
        .commands
}

fn fail(exec: &mut Execution, def: &asl::Definition, task: u64) -> Vec<Command> {
    exec.step(
        def,
        Input::TaskFailed {
            task,
            error: "Boom".into(),
            cause: "bad".into(),
        },
        2_000,
    )
    .commands
}

/// The task whose input has `"item": n`.
fn task_for(tasks: &[(u64, Value)], n: i64) -> u64 {
    tasks
        .iter()
        .find(|(_, i)| i["item"] == json!(n))
        .unwrap_or_else(|| panic!("no task for item {n} in {tasks:?}"))
        .0
}

fn kinds(events: &[asl::HistoryEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The execution as a restarted service has it: its record, stored as JSON and read back.
fn reloaded(exec: &Execution) -> Execution {
    serde_json::from_slice(&serde_json::to_vec(exec).unwrap()).unwrap()
}

fn map_def(extra: Value) -> asl::Definition {
    let mut map = json!({"Type": "Map", "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "Prep", "States": {
            "Prep": {"Type": "Pass", "Parameters": {"item.$": "$", "redrives.$": "$$.Execution.RedriveCount"}, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}}},
        "End": true});
    for (k, v) in extra.as_object().unwrap() {
        map[k] = v.clone();
    }
    asl::parse(
        &json!({"StartAt": "Before", "States": {
        "Before": {"Type": "Pass", "Next": "M"},
        "M": map}})
        .to_string(),
    )
    .unwrap()
}

#[test]
fn a_redriven_map_runs_only_the_iterations_that_did_not_succeed() {
    let def = map_def(json!({}));
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1, 2, 3]}));
    let tasks = tasks_of(&commands);
    assert_eq!(tasks.len(), 4);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("first-0"));
    succeed(&mut exec, &def, task_for(&tasks, 3), json!("first-3"));
    // Item 1 fails: the Map fails and item 2, still running, is aborted.
    fail(&mut exec, &def, task_for(&tasks, 1));
    assert_eq!(exec.status, Status::Failed);
    let mut exec = reloaded(&exec);

    let fx = exec.redrive(&def, 1, 3_000).expect("redrivable");
    let k = kinds(&fx.events);
    assert_eq!(
        &k[..3],
        &["ExecutionRedriven", "MapStateEntered", "MapStateStarted"]
    );
    assert_eq!(fx.events[2].details, json!({"length": 4}));
    let started: Vec<&Value> = fx
        .events
        .iter()
        .filter(|e| e.kind == "MapIterationStarted")
        .map(|e| &e.details["index"])
        .collect();
    assert_eq!(started, [&json!(1), &json!(2)]);
    // Each re-run iteration resumes at the Task it stopped in: Prep does not run again, so
    // the task input still shows the redrive count of the first attempt.
    assert!(!k.contains(&"PassStateEntered"), "{k:?}");
    let tasks = tasks_of(&fx.commands);
    assert_eq!(
        tasks.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(),
        [
            json!({"item": 1, "redrives": 0}),
            json!({"item": 2, "redrives": 0})
        ]
    );
    let mut exec = reloaded(&exec);
    succeed(&mut exec, &def, task_for(&tasks, 2), json!("second-2"));
    succeed(&mut exec, &def, task_for(&tasks, 1), json!("second-1"));
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(
        exec.output,
        Some(json!(["first-0", "second-1", "second-2", "first-3"]))
    );
}

#[test]
fn iterations_a_map_had_not_started_run_on_redrive() {
    let def = map_def(json!({"MaxConcurrency": 1}));
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1, 2]}));
    let c = succeed(
        &mut exec,
        &def,
        task_for(&tasks_of(&commands), 0),
        json!("a"),
    );
    fail(&mut exec, &def, task_for(&tasks_of(&c), 1));
    assert_eq!(exec.status, Status::Failed);
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    // One at a time, as MaxConcurrency says: item 1 again (at its Task), then item 2 fresh.
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].1, json!({"item": 1, "redrives": 0}));
    let c = succeed(&mut exec, &def, tasks[0].0, json!("b"));
    let tasks = tasks_of(&c);
    assert_eq!(tasks[0].1, json!({"item": 2, "redrives": 1}));
    succeed(&mut exec, &def, tasks[0].0, json!("c"));
    assert_eq!(exec.output, Some(json!(["a", "b", "c"])));
}

#[test]
fn tolerated_failures_run_again_when_the_map_fails() {
    let def = map_def(json!({"ToleratedFailureCount": 1}));
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1, 2]}));
    let tasks = tasks_of(&commands);
    succeed(&mut exec, &def, task_for(&tasks, 2), json!("kept"));
    fail(&mut exec, &def, task_for(&tasks, 0));
    assert_eq!(exec.status, Status::Running, "one failure is tolerated");
    fail(&mut exec, &def, task_for(&tasks, 1));
    assert_eq!(exec.status, Status::Failed);
    assert_eq!(
        exec.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 2);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("x"));
    succeed(&mut exec, &def, task_for(&tasks, 1), json!("y"));
    assert_eq!(exec.output, Some(json!(["x", "y", "kept"])));
}

#[test]
fn a_redriven_parallel_runs_only_the_failed_branch() {
    let task = |n: i64| {
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"item": n}, "End": true}}})
    };
    let def = asl::parse(
        &json!({"StartAt": "P", "States": {"P": {"Type": "Parallel",
            "Branches": [task(0), task(1), task(2)], "ResultSelector": {"all.$": "$"}, "End": true}}})
        .to_string(),
    )
    .unwrap();
    let (mut exec, _, commands) = start(&def, json!({}));
    let tasks = tasks_of(&commands);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("zero"));
    fail(&mut exec, &def, task_for(&tasks, 1));
    assert_eq!(exec.status, Status::Failed);
    let mut exec = reloaded(&exec);
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    assert_eq!(
        &kinds(&fx.events)[..3],
        &[
            "ExecutionRedriven",
            "ParallelStateEntered",
            "ParallelStateStarted"
        ]
    );
    // Branch 1 failed and branch 2 was aborted with it; branch 0 succeeded and is kept.
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 2);
    succeed(&mut exec, &def, task_for(&tasks, 1), json!("one"));
    succeed(&mut exec, &def, task_for(&tasks, 2), json!("two"));
    assert_eq!(exec.output, Some(json!({"all": ["zero", "one", "two"]})));
}

#[test]
fn a_redrive_reaches_into_a_map_inside_a_parallel_branch() {
    let def = asl::parse(
        &json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"item": 100}, "End": true}}},
            {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
                "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"item.$": "$"}, "End": true}}}}}}]}}})
        .to_string(),
    )
    .unwrap();
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1]}));
    let tasks = tasks_of(&commands);
    assert_eq!(tasks.len(), 3);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("m0"));
    succeed(&mut exec, &def, task_for(&tasks, 100), json!("t"));
    fail(&mut exec, &def, task_for(&tasks, 1));
    assert_eq!(exec.status, Status::Failed);
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    let tasks = tasks_of(&fx.commands);
    assert_eq!(
        tasks.iter().map(|t| &t.1).collect::<Vec<_>>(),
        [&json!({"item": 1})]
    );
    let started: Vec<&Value> = fx
        .events
        .iter()
        .filter(|e| e.kind == "MapIterationStarted")
        .map(|e| &e.details["index"])
        .collect();
    assert_eq!(started, [&json!(1)]);
    succeed(&mut exec, &def, tasks[0].0, json!("m1"));
    assert_eq!(exec.output, Some(json!(["t", ["m0", "m1"]])));
}

#[test]
fn an_aborted_map_reruns_the_iterations_that_were_running() {
    let def = map_def(json!({}));
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1, 2]}));
    let tasks = tasks_of(&commands);
    succeed(&mut exec, &def, task_for(&tasks, 1), json!("done"));
    exec.step(
        &def,
        Input::Stop {
            error: None,
            cause: None,
        },
        2_500,
    );
    assert_eq!(exec.status, Status::Aborted);
    let mut exec = reloaded(&exec);
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 2);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("a"));
    succeed(&mut exec, &def, task_for(&tasks, 2), json!("c"));
    assert_eq!(exec.output, Some(json!(["a", "done", "c"])));
}

#[test]
fn a_map_that_fails_again_after_a_redrive_keeps_both_attempts_successes() {
    let def = map_def(json!({}));
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1, 2]}));
    let tasks = tasks_of(&commands);
    succeed(&mut exec, &def, task_for(&tasks, 0), json!("r0"));
    fail(&mut exec, &def, task_for(&tasks, 1));
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 2);
    succeed(&mut exec, &def, task_for(&tasks, 2), json!("r2"));
    fail(&mut exec, &def, task_for(&tasks, 1));
    assert_eq!(exec.status, Status::Failed);
    let fx = exec.redrive(&def, 2, 4_000).unwrap();
    let tasks = tasks_of(&fx.commands);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    succeed(&mut exec, &def, task_for(&tasks, 1), json!("r1"));
    assert_eq!(exec.output, Some(json!(["r0", "r1", "r2"])));
}

#[test]
fn a_caught_map_failure_leaves_nothing_to_resume() {
    // The Catch sends the Map to a Fail state: the redrive resumes at the Fail state and does
    // not run the Map again.
    let def = asl::parse(
        &json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
                "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"item.$": "$"}, "End": true}}}},
            "Oops": {"Type": "Fail", "Error": "Caught"}}})
        .to_string(),
    )
    .unwrap();
    let (mut exec, _, commands) = start(&def, json!({"items": [0, 1]}));
    fail(&mut exec, &def, task_for(&tasks_of(&commands), 0));
    assert_eq!(exec.error.as_deref(), Some("Caught"));
    let fx = exec.redrive(&def, 1, 3_000).unwrap();
    assert_eq!(
        kinds(&fx.events),
        ["ExecutionRedriven", "FailStateEntered", "ExecutionFailed"]
    );
}
