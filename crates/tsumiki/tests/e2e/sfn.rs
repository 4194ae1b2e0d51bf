//! Step Functions through the AWS SDK for Rust: a Lambda task with Retry and Catch, a
//! `.waitForTaskToken` over SQS completed by SendTaskSuccess, Map and Parallel, a nested
//! `states:startExecution.sync`, StopExecution, and an Express StartSyncExecution.

use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_sfn::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType, StateMachineType};
use serde_json::{Value, json};
use tsumiki_testkit::Server;

use crate::{in_memory, lambda_client, sqs_client};

const ROLE: &str = "arn:aws:iam::123456789012:role/sfn";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The SDK sends StartSyncExecution to the `sync-` host prefix, which a loopback endpoint
/// does not have; boto3 turns this off with `inject_host_prefix=False`, the Rust SDK has no
/// switch, so the prefix is taken off again before signing.
#[derive(Debug)]
struct NoHostPrefix;

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let req = context.request_mut();
        let uri = req.uri().replacen("://sync-", "://", 1);
        req.set_uri(uri)?;
        Ok(())
    }
}

fn client(server: &Server) -> Client {
    let config = aws_sdk_sfn::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .interceptor(NoHostPrefix)
        .endpoint_url(&server.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("123456789012", "test", None, None, "e2e"))
        .build();
    Client::from_conf(config)
}

async fn machine(c: &Client, name: &str, definition: Value, kind: StateMachineType) -> String {
    c.create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn(ROLE)
        .r#type(kind)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .state_machine_arn
}

async fn start(c: &Client, arn: &str, input: Value) -> String {
    c.start_execution()
        .state_machine_arn(arn)
        .input(input.to_string())
        .send()
        .await
        .expect("start")
        .execution_arn
}

/// Waits (real time) until the execution has ended; returns its status and output.
async fn finished(c: &Client, arn: &str) -> (ExecutionStatus, Option<Value>, Option<String>) {
    for _ in 0..600 {
        let d = c
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .expect("describe");
        if d.status != ExecutionStatus::Running {
            let out = d
                .output
                .as_deref()
                .map(|o| serde_json::from_str(o).expect("json"));
            return (d.status, out, d.error);
        }
        tsumiki_core::Clock::pause_real(Duration::from_millis(50)).await;
    }
    panic!("{arn} did not end");
}

async fn history(c: &Client, arn: &str) -> Vec<HistoryEvent> {
    c.get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .send()
        .await
        .expect("history")
        .events
}

const PY: &str = r#"
def handler(event, context):
    if event.get("fail"):
        raise ValueError("no good")
    return {"doubled": event["n"] * 2}
"#;

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        w.write_all(data).expect("zip write");
        w.finish().expect("zip finish");
    }
    out.into_inner()
}

#[test]
fn lambda_task_with_retry_and_catch() {
    let server = in_memory();
    rt().block_on(async {
        let lambda = lambda_client(&server);
        lambda
            .create_function()
            .function_name("doubler")
            .runtime(Runtime::Python312)
            .role(ROLE)
            .handler("app.handler")
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(zip_of("app.py", PY.as_bytes())))
                    .build(),
            )
            .send()
            .await
            .expect("create function");
        let c = client(&server);
        let arn = machine(
            &c,
            "retry-catch",
            json!({"StartAt": "Call", "States": {
                "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "doubler", "Payload.$": "$"},
                         "ResultSelector": {"value.$": "$.Payload.doubled"},
                         "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}],
                         "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "Recovered"}],
                         "End": true},
                "Recovered": {"Type": "Pass", "End": true}}}),
            StateMachineType::Standard,
        )
        .await;

        let ok = start(&c, &arn, json!({"n": 21})).await;
        let (status, out, _) = finished(&c, &ok).await;
        assert_eq!(status, ExecutionStatus::Succeeded);
        assert_eq!(out, Some(json!({"value": 42})));

        let bad = start(&c, &arn, json!({"n": 1, "fail": true})).await;
        let (status, out, _) = finished(&c, &bad).await;
        assert_eq!(status, ExecutionStatus::Succeeded);
        let out = out.expect("output");
        assert_eq!(out["caught"]["Error"], "ValueError");
        assert!(out["caught"]["Cause"].as_str().unwrap().contains("no good"));
        let events = history(&c, &bad).await;
        let failures = events
            .iter()
            .filter(|e| e.r#type == HistoryEventType::TaskFailed)
            .count();
        assert_eq!(failures, 3, "the first call and two retries");
    });
}

#[test]
fn wait_for_task_token_over_sqs() {
    let server = in_memory();
    rt().block_on(async {
        let sqs = sqs_client(&server);
        let queue = sqs
            .create_queue()
            .queue_name("approvals")
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let c = client(&server);
        let arn = machine(
            &c,
            "approval",
            json!({"StartAt": "Ask", "States": {"Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
                "ResultPath": "$.approval", "End": true}}}),
            StateMachineType::Standard,
        )
        .await;
        let ex = start(&c, &arn, json!({"order": 7})).await;
        let msg = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(5)
            .send()
            .await
            .expect("receive")
            .messages
            .and_then(|m| m.into_iter().next())
            .expect("a message");
        let body: Value = serde_json::from_str(msg.body.as_deref().expect("body")).expect("json");
        assert_eq!(body["order"], 7);
        c.send_task_success()
            .task_token(body["token"].as_str().expect("token"))
            .output(json!({"approved": true}).to_string())
            .send()
            .await
            .expect("send task success");
        let (status, out, _) = finished(&c, &ex).await;
        assert_eq!(status, ExecutionStatus::Succeeded);
        assert_eq!(out, Some(json!({"order": 7, "approval": {"approved": true}})));
    });
}

#[test]
fn map_parallel_and_nested_sync_execution() {
    let server = in_memory();
    rt().block_on(async {
        let c = client(&server);
        let child = machine(
            &c,
            "child",
            json!({"StartAt": "Both", "States": {"Both": {"Type": "Parallel", "Branches": [
                {"StartAt": "Sum", "States": {"Sum": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": true}}},
                {"StartAt": "Squares", "States": {"Squares": {"Type": "Map", "ItemsPath": "$.list", "MaxConcurrency": 2,
                    "ItemProcessor": {"StartAt": "Sq", "States": {"Sq": {"Type": "Pass", "Parameters": {"v.$": "$$.Map.Item.Value"}, "End": true}}},
                    "End": true}}}
            ], "End": true}}}),
            StateMachineType::Standard,
        )
        .await;
        let parent = machine(
            &c,
            "parent",
            json!({"StartAt": "Run", "States": {"Run": {
                "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": child, "Input.$": "$"},
                "OutputPath": "$.Output", "End": true}}}),
            StateMachineType::Standard,
        )
        .await;
        let ex = start(&c, &parent, json!({"a": 2, "b": 3, "list": [1, 2, 3]})).await;
        let (status, out, _) = finished(&c, &ex).await;
        assert_eq!(status, ExecutionStatus::Succeeded);
        assert_eq!(
            out,
            Some(json!([{"sum": 5}, [{"v": 1}, {"v": 2}, {"v": 3}]]))
        );
        let children = c
            .list_executions()
            .state_machine_arn(&child)
            .send()
            .await
            .expect("list")
            .executions;
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].status, ExecutionStatus::Succeeded);
    });
}

#[test]
fn stop_execution_and_express_sync_execution() {
    let server = in_memory();
    rt().block_on(async {
        let c = client(&server);
        let waits = machine(
            &c,
            "waits",
            json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
            StateMachineType::Standard,
        )
        .await;
        let ex = start(&c, &waits, json!({})).await;
        c.stop_execution()
            .execution_arn(&ex)
            .error("Operator")
            .cause("no longer needed")
            .send()
            .await
            .expect("stop");
        let d = c
            .describe_execution()
            .execution_arn(&ex)
            .send()
            .await
            .expect("describe");
        assert_eq!(d.status, ExecutionStatus::Aborted);
        assert_eq!(d.error.as_deref(), Some("Operator"));
        assert!(d.stop_date.is_some());
        let last = history(&c, &ex).await.pop().expect("events");
        assert_eq!(last.r#type, HistoryEventType::ExecutionAborted);

        let express = machine(
            &c,
            "express",
            json!({"StartAt": "P", "States": {"P": {"Type": "Pass",
                "Parameters": {"greeting.$": "States.Format('hello {}', $.who)"}, "End": true}}}),
            StateMachineType::Express,
        )
        .await;
        let out = c
            .start_sync_execution()
            .state_machine_arn(&express)
            .input(json!({"who": "rust"}).to_string())
            .send()
            .await
            .expect("sync");
        assert_eq!(out.status, aws_sdk_sfn::types::SyncExecutionStatus::Succeeded);
        let v: Value = serde_json::from_str(out.output.as_deref().expect("output")).expect("json");
        assert_eq!(v, json!({"greeting": "hello rust"}));
        assert!(out.billing_details.is_some());
        let err = c
            .start_sync_execution()
            .state_machine_arn(&waits)
            .send()
            .await
            .expect_err("a Standard machine");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_state_machine_type_not_supported()),
            "{err:?}"
        );
    });
}
