//! The interpreter's hooks for TestState's `stateConfiguration`: a Map state's settings
//! evaluated on an input (checked against simulated failed iterations) and retries counted
//! as already made.

use serde_json::{Value, json};
use tsumiki_lang::asl::{self, Command, Execution, Input, StartSpec, Status};

fn exec(input: Value) -> Execution {
    Execution::new(StartSpec {
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
    })
}

fn map(fields: Value) -> asl::Definition {
    let mut m = json!({"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}});
    for (k, v) in fields.as_object().unwrap() {
        m[k] = v.clone();
    }
    asl::parse(&json!({"StartAt": "M", "States": {"M": m}}).to_string()).unwrap()
}

#[test]
fn map_settings_follow_the_state_fields_and_tolerances() {
    // (fields, input, failures, exceeded)
    let cases = [
        (
            json!({"ItemsPath": "$.v"}),
            json!({"v": [1, 2, 3]}),
            3,
            false,
        ),
        (
            json!({"ItemsPath": "$.v", "ToleratedFailureCount": 1}),
            json!({"v": [1, 2, 3]}),
            1,
            false,
        ),
        (
            json!({"ItemsPath": "$.v", "ToleratedFailureCount": 1}),
            json!({"v": [1, 2, 3]}),
            2,
            true,
        ),
        (
            json!({"ItemsPath": "$.v", "ToleratedFailurePercentage": 50}),
            json!({"v": [1, 2, 3, 4]}),
            2,
            false,
        ),
        (
            json!({"ItemsPath": "$.v", "ToleratedFailurePercentage": 50}),
            json!({"v": [1, 2, 3, 4]}),
            3,
            true,
        ),
        // Either tolerance tolerating is enough.
        (
            json!({"ItemsPath": "$.v", "ToleratedFailureCount": 0, "ToleratedFailurePercentage": 50}),
            json!({"v": [1, 2]}),
            1,
            false,
        ),
        (
            json!({"ItemsPath": "$.v", "ToleratedFailureCountPath": "$.t"}),
            json!({"v": [1, 2], "t": 1}),
            2,
            true,
        ),
        (
            json!({"QueryLanguage": "JSONata", "Items": "{% $states.input.v %}", "ToleratedFailureCount": "{% $states.input.t %}"}),
            json!({"v": [1, 2, 3], "t": 2}),
            2,
            false,
        ),
    ];
    for (fields, input, failures, exceeded) in cases {
        let def = map(fields.clone());
        let s = exec(input.clone())
            .map_settings(&def, "M", None, 1_000)
            .unwrap_or_else(|e| panic!("{fields} on {input}: {e:?}"));
        assert_eq!(
            s.exceeded_by(failures),
            exceeded,
            "{fields} on {input} with {failures} failures: {s:?}"
        );
    }
    let s = exec(json!({"v": [1, 2], "m": 3}))
        .map_settings(
            &map(json!({"ItemsPath": "$.v", "MaxConcurrencyPath": "$.m"})),
            "M",
            None,
            1_000,
        )
        .unwrap();
    assert_eq!((s.items, s.max_concurrency), (vec![json!(1), json!(2)], 3));
    // An ItemReader's items stand in for the ItemsPath.
    let s = exec(json!({"Bucket": "b"}))
        .map_settings(
            &map(json!({"ToleratedFailurePercentage": 25})),
            "M",
            Some(vec![json!(1), json!(2), json!(3), json!(4)]),
            1_000,
        )
        .unwrap();
    assert!(!s.exceeded_by(1) && s.exceeded_by(2));
    let e = exec(json!({"v": 1}))
        .map_settings(&map(json!({"ItemsPath": "$.v"})), "M", None, 1_000)
        .unwrap_err();
    assert_eq!(e.0, "States.Runtime");
}

#[test]
fn seeded_retries_count_against_max_attempts_and_the_backoff() {
    let def = asl::parse(
        &json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Retry": [{"ErrorEquals": ["Other"]}, {"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0}],
            "End": true}}})
        .to_string(),
    )
    .unwrap();
    for (seed, retried) in [(4, true), (5, false)] {
        let mut e = exec(json!({}));
        e.seed_retry_count(seed);
        let fx = e.step(&def, Input::Start, 1_000);
        let task = fx
            .commands
            .iter()
            .find_map(|c| match c {
                Command::RunTask { task, .. } => Some(*task),
                _ => None,
            })
            .unwrap();
        let fx = e.step(
            &def,
            Input::TaskFailed {
                task,
                error: "Boom".into(),
                cause: "c".into(),
            },
            2_000,
        );
        assert_eq!(e.error_handling.retry_index, Some(1));
        if retried {
            assert_eq!(e.error_handling.retry_backoff_s, Some(16.0));
            assert!(fx.commands.iter().any(
                |c| matches!(c, Command::StartTimer { at_ms, .. } if *at_ms == 2_000 + 16_000)
            ));
            assert_eq!(e.status, Status::Running);
        } else {
            assert_eq!(e.error_handling.retry_backoff_s, None);
            assert_eq!(e.status, Status::Failed);
        }
    }
}
