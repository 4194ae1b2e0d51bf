//! Lambda's asynchronous invocation through the AWS SDK for Rust: retries about 1 and 2
//! minutes apart (driven by the manual clock), destinations with AWS's invocation record, the
//! dead-letter queue, and no accepted event lost to a `kill -9`.

use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    DeadLetterConfig, DestinationConfig, FunctionCode, InvocationType, OnFailure, OnSuccess,
    Runtime,
};
use serde_json::{Value, json};
use tsumiki_testkit::{Options, Server};

use crate::{lambda_client, server, sqs_client_as};

const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";

/// Records every attempt in the `attempts` queue, then fails unless the event says otherwise.
const RECORDER: &str = r#"
import boto3, json, os
sqs = boto3.client("sqs")
def handler(event, context):
    url = sqs.get_queue_url(QueueName="attempts")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    if event.get("ok"):
        return {"fine": event}
    raise RuntimeError("always failing")
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("entry");
        w.write_all(data).expect("write");
        w.finish().expect("finish");
    }
    out.into_inner()
}

struct Fixture {
    lambda: aws_sdk_lambda::Client,
    sqs: aws_sdk_sqs::Client,
    attempts: String,
    dest: String,
    dest_arn: String,
}

async fn fixture(s: &Server, dead_letter: bool) -> Fixture {
    let lambda = lambda_client(s);
    let sqs = sqs_client_as(s, "123456789012", "us-east-1");
    let mut urls = Vec::new();
    for q in ["attempts", "dest"] {
        urls.push(
            sqs.create_queue()
                .queue_name(q)
                .send()
                .await
                .expect("queue")
                .queue_url
                .expect("url"),
        );
    }
    let dest_arn = "arn:aws:sqs:us-east-1:123456789012:dest".to_string();
    let mut create = lambda
        .create_function()
        .function_name("rec")
        .runtime(Runtime::Python312)
        .role(ROLE)
        .handler("app.handler")
        .timeout(30)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip_of("app.py", RECORDER.as_bytes())))
                .build(),
        );
    if dead_letter {
        create = create.dead_letter_config(
            DeadLetterConfig::builder()
                .target_arn(dest_arn.clone())
                .build(),
        );
    }
    create.send().await.expect("create");
    Fixture {
        lambda,
        sqs,
        attempts: urls[0].clone(),
        dest: urls[1].clone(),
        dest_arn,
    }
}

/// Waits (real time) for up to `n` messages of `url`, deleting what it takes.
async fn take(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_s: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_s)
        .send()
        .await
        .expect("receive");
    for m in got.messages() {
        sqs.delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("delete");
    }
    got.messages().to_vec()
}

async fn invoke_event(c: &aws_sdk_lambda::Client, payload: Value) {
    let out = c
        .invoke()
        .function_name("rec")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.status_code(), 202);
}

/// The function records an attempt before it fails; give the failure time to reach the
/// invoker and be scheduled before the test moves the clock (the next attempt's time is
/// counted from the failure).
async fn settle() {
    tsumiki_core::Clock::pause_real(Duration::from_millis(1000)).await;
}

fn manual() -> Server {
    server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    })
}

#[test]
fn function_errors_retry_one_then_two_minutes_apart_then_reach_the_failure_destination() {
    let s = manual();
    rt().block_on(async {
        let f = fixture(&s, false).await;
        f.lambda
            .put_function_event_invoke_config()
            .function_name("rec")
            .destination_config(
                DestinationConfig::builder()
                    .on_failure(OnFailure::builder().destination(f.dest_arn.clone()).build())
                    .build(),
            )
            .send()
            .await
            .expect("event invoke config");
        invoke_event(&f.lambda, json!({"n": 1})).await;

        assert_eq!(
            take(&f.sqs, &f.attempts, 20).await.len(),
            1,
            "first attempt at once"
        );
        settle().await;
        s.advance_clock(50.0);
        assert!(
            take(&f.sqs, &f.attempts, 1).await.is_empty(),
            "no retry before a minute"
        );
        s.advance_clock(11.0);
        assert_eq!(
            take(&f.sqs, &f.attempts, 20).await.len(),
            1,
            "second attempt after 1 min"
        );
        settle().await;
        s.advance_clock(100.0);
        assert!(
            take(&f.sqs, &f.attempts, 1).await.is_empty(),
            "no retry before 2 more min"
        );
        s.advance_clock(21.0);
        assert_eq!(
            take(&f.sqs, &f.attempts, 20).await.len(),
            1,
            "third attempt"
        );

        let records = take(&f.sqs, &f.dest, 20).await;
        assert_eq!(records.len(), 1);
        let r: Value = serde_json::from_str(records[0].body().unwrap_or_default()).expect("json");
        assert_eq!(r["version"], json!("1.0"));
        assert_eq!(r["requestContext"]["condition"], json!("RetriesExhausted"));
        assert_eq!(r["requestContext"]["approximateInvokeCount"], json!(3));
        assert_eq!(
            r["requestContext"]["functionArn"],
            json!("arn:aws:lambda:us-east-1:123456789012:function:rec:$LATEST")
        );
        assert_eq!(r["requestPayload"], json!({"n": 1}));
        assert_eq!(r["responseContext"]["functionError"], json!("Unhandled"));
        assert_eq!(
            r["responsePayload"]["errorMessage"],
            json!("always failing")
        );
        s.advance_clock(600.0);
        assert!(
            take(&f.sqs, &f.attempts, 1).await.is_empty(),
            "no fourth attempt"
        );
    });
}

#[test]
fn success_destination_and_zero_retries() {
    let s = manual();
    rt().block_on(async {
        let f = fixture(&s, false).await;
        f.lambda
            .put_function_event_invoke_config()
            .function_name("rec")
            .maximum_retry_attempts(0)
            .destination_config(
                DestinationConfig::builder()
                    .on_success(OnSuccess::builder().destination(f.dest_arn.clone()).build())
                    .on_failure(OnFailure::builder().destination(f.dest_arn.clone()).build())
                    .build(),
            )
            .send()
            .await
            .expect("config");
        let got = f
            .lambda
            .get_function_event_invoke_config()
            .function_name("rec")
            .send()
            .await
            .expect("get config");
        assert_eq!(got.maximum_retry_attempts(), Some(0));

        invoke_event(&f.lambda, json!({"ok": true})).await;
        let records = take(&f.sqs, &f.dest, 20).await;
        assert_eq!(records.len(), 1);
        let r: Value = serde_json::from_str(records[0].body().unwrap_or_default()).expect("json");
        assert_eq!(r["requestContext"]["condition"], json!("Success"));
        assert_eq!(r["responsePayload"], json!({"fine": {"ok": true}}));

        invoke_event(&f.lambda, json!({"ok": false})).await;
        let records = take(&f.sqs, &f.dest, 20).await;
        assert_eq!(
            records.len(),
            1,
            "no retries: the failure goes straight out"
        );
        let r: Value = serde_json::from_str(records[0].body().unwrap_or_default()).expect("json");
        assert_eq!(r["requestContext"]["condition"], json!("RetriesExhausted"));
        assert_eq!(r["requestContext"]["approximateInvokeCount"], json!(1));
    });
}

#[test]
fn failed_events_go_to_the_dead_letter_queue_without_a_destination() {
    let s = manual();
    rt().block_on(async {
        let f = fixture(&s, true).await;
        f.lambda
            .put_function_event_invoke_config()
            .function_name("rec")
            .maximum_retry_attempts(1)
            .send()
            .await
            .expect("config");
        invoke_event(&f.lambda, json!({"dlq": 1})).await;
        assert_eq!(take(&f.sqs, &f.attempts, 20).await.len(), 1);
        settle().await;
        s.advance_clock(61.0);
        assert_eq!(take(&f.sqs, &f.attempts, 20).await.len(), 1);
        let got = f
            .sqs
            .receive_message()
            .queue_url(&f.dest)
            .message_attribute_names("All")
            .wait_time_seconds(20)
            .send()
            .await
            .expect("dlq");
        let m = got.messages().first().expect("dead letter");
        assert_eq!(m.body(), Some(r#"{"dlq":1}"#));
        let attrs = m.message_attributes().expect("attributes");
        assert_eq!(attrs["ErrorMessage"].string_value(), Some("always failing"));
        assert!(attrs.contains_key("RequestID"));
    });
}

#[test]
fn accepted_events_survive_kill_9() {
    let mut s = server(Options::default());
    let runtime = rt();
    runtime.block_on(async {
        let f = fixture(&s, false).await;
        // The function is slow to start here, so the events are still queued at the kill.
        for i in 0..5 {
            invoke_event(&f.lambda, json!({"ok": true, "i": i})).await;
        }
    });
    s.kill9();
    s.restart();
    runtime.block_on(async {
        let sqs = sqs_client_as(&s, "123456789012", "us-east-1");
        let url = sqs
            .get_queue_url()
            .queue_name("attempts")
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            for m in take(&sqs, &url, 2).await {
                let v: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("json");
                seen.insert(v["i"].as_i64().expect("i"));
            }
            if seen.len() == 5 {
                break;
            }
            tsumiki_core::Clock::pause_real(Duration::from_millis(100)).await;
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    });
}
