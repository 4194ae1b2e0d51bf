//! Step Functions end to end over its JSON 1.0 wire protocol (the harness's own HTTP client,
//! so this test binary needs no Step Functions SDK): executions, and the crash test: Standard
//! executions in a Wait and in a running Map survive `kill -9` and each finishes exactly once
//! with the right output.

use std::time::Duration;

use serde_json::{Value, json};
use tsumiki_testkit::{Options, Server, wait_for};

use crate::server;

fn call(s: &Server, op: &str, body: Value) -> (u16, Value) {
    let target = format!("AWSStepFunctions.{op}");
    let (status, text) = s.http(
        "POST",
        "/",
        &[
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        body.to_string().as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ok(s: &Server, op: &str, body: Value) -> Value {
    let (status, v) = call(s, op, body);
    assert_eq!(status, 200, "{op}: {v}");
    v
}

fn machine(s: &Server, name: &str, definition: Value) -> String {
    let v = ok(
        s,
        "CreateStateMachine",
        json!({"name": name, "definition": definition.to_string(), "roleArn": "arn:aws:iam::000000000000:role/r"}),
    );
    v["stateMachineArn"].as_str().expect("arn").to_string()
}

fn start(s: &Server, machine: &str, input: Value) -> String {
    let v = ok(
        s,
        "StartExecution",
        json!({"stateMachineArn": machine, "input": input.to_string()}),
    );
    v["executionArn"].as_str().expect("arn").to_string()
}

fn describe(s: &Server, arn: &str) -> Value {
    ok(s, "DescribeExecution", json!({"executionArn": arn}))
}

fn history(s: &Server, arn: &str) -> Vec<String> {
    ok(
        s,
        "GetExecutionHistory",
        json!({"executionArn": arn, "maxResults": 1000}),
    )["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_string())
        .collect()
}

#[test]
fn pass_execution_and_errors_over_the_wire() {
    let s = crate::in_memory();
    let m = machine(
        &s,
        "wire",
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "States.MathAdd($.a, 1)"}, "End": true}}}),
    );
    let ex = start(&s, &m, json!({"a": 1}));
    let d = wait_for(Duration::from_secs(10), || {
        let d = describe(&s, &ex);
        (d["status"] != "RUNNING").then_some(d)
    })
    .expect("finished");
    assert_eq!(d["status"], "SUCCEEDED");
    assert_eq!(d["output"], json!({"x": 2}).to_string());
    let (status, v) = call(
        &s,
        "DescribeExecution",
        json!({"executionArn": format!("{m}x")}),
    );
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "InvalidArn");
    let (status, v) = call(
        &s,
        "CreateStateMachine",
        json!({"name": "bad", "definition": "{\"StartAt\":\"A\",\"States\":{}}", "roleArn": "arn:aws:iam::000000000000:role/r"}),
    );
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "InvalidDefinition", "{v}");
}

#[test]
fn standard_executions_survive_kill_9_and_finish_once() {
    let mut s = server(Options {
        manual_clock: true,
        ..Options::default()
    });
    let wait_machine = machine(
        &s,
        "hour",
        json!({"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
            "Done": {"Type": "Pass", "Parameters": {"waited.$": "$.id"}, "End": true}}}),
    );
    let map_machine = machine(
        &s,
        "map",
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "W", "States": {
                "W": {"Type": "Wait", "SecondsPath": "$", "Next": "Sq"},
                "Sq": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, 1000)"}, "End": true}}},
            "End": true}}}),
    );
    let waits: Vec<String> = (0..3)
        .map(|i| start(&s, &wait_machine, json!({"id": i})))
        .collect();
    let items = [10, 20, 30, 40, 50, 60];
    let maps: Vec<String> = (0..2)
        .map(|_| start(&s, &map_machine, json!({"items": items})))
        .collect();
    // Let the Maps get going: the first iteration of each finishes, others are in their Wait.
    s.advance_clock(10.0);
    wait_for(Duration::from_secs(20), || {
        maps.iter()
            .all(|m| {
                history(&s, m)
                    .iter()
                    .filter(|t| *t == "MapIterationSucceeded")
                    .count()
                    >= 1
            })
            .then_some(())
    })
    .expect("the Maps are running");
    for arn in waits.iter().chain(&maps) {
        assert_eq!(describe(&s, arn)["status"], "RUNNING");
    }

    s.kill9();
    s.restart();
    for arn in waits.iter().chain(&maps) {
        assert_eq!(
            describe(&s, arn)["status"],
            "RUNNING",
            "{arn} after restart"
        );
    }
    // Move time in steps: each Map iteration arms its Wait when the one before it ends.
    let done = wait_for(Duration::from_secs(60), || {
        s.advance_clock(30.0);
        waits
            .iter()
            .chain(&maps)
            .all(|arn| describe(&s, arn)["status"] != "RUNNING")
            .then_some(())
    });
    assert!(
        done.is_some(),
        "executions did not finish after the restart"
    );
    for (i, arn) in waits.iter().enumerate() {
        let d = describe(&s, arn);
        assert_eq!(d["status"], "SUCCEEDED");
        assert_eq!(d["output"], json!({"waited": i}).to_string());
        let h = history(&s, arn);
        assert_eq!(h.iter().filter(|t| *t == "ExecutionSucceeded").count(), 1);
        assert_eq!(h.iter().filter(|t| *t == "WaitStateExited").count(), 1);
    }
    let expected: Vec<Value> = items.iter().map(|n| json!({"v": n + 1000})).collect();
    for arn in &maps {
        let d = describe(&s, arn);
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
        assert_eq!(d["output"], Value::Array(expected.clone()).to_string());
        let h = history(&s, arn);
        for (kind, n) in [
            ("MapIterationStarted", 6),
            ("MapIterationSucceeded", 6),
            ("ExecutionSucceeded", 1),
        ] {
            assert_eq!(
                h.iter().filter(|t| *t == kind).count(),
                n,
                "{kind} in {h:?}"
            );
        }
    }
}
