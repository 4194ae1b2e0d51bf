//! SQS event source mappings through the AWS SDK for Rust: batches invoke the function and are
//! deleted on success, failed items come back after the visibility timeout (manual clock), and
//! filtered-out messages are deleted without an invocation.

use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Filter, FilterCriteria, FunctionCode, FunctionResponseType, Runtime};
use aws_sdk_sqs::types::QueueAttributeName;
use tsumiki_testkit::{Options, Server};

use crate::{lambda_client, server, sqs_client_as};

/// Copies every record's body to the `out` queue; fails the records whose body is "bad".
const CONSUMER: &str = r#"
import boto3
sqs = boto3.client("sqs")
def handler(event, context):
    out = sqs.get_queue_url(QueueName="out")["QueueUrl"]
    failures = []
    for r in event["Records"]:
        assert r["eventSource"] == "aws:sqs"
        sqs.send_message(QueueUrl=out, MessageBody=r["body"])
        if r["body"] == "bad":
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
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

async fn setup(s: &Server, filter: Option<&str>) -> (aws_sdk_sqs::Client, String, String) {
    let sqs = sqs_client_as(s, "123456789012", "us-east-1");
    let lambda = lambda_client(s);
    let input = sqs
        .create_queue()
        .queue_name("in")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("in")
        .queue_url
        .expect("url");
    let out = sqs
        .create_queue()
        .queue_name("out")
        .send()
        .await
        .expect("out")
        .queue_url
        .expect("url");
    lambda
        .create_function()
        .function_name("consumer")
        .runtime(Runtime::Python312)
        .role("arn:aws:iam::123456789012:role/r")
        .handler("app.handler")
        .timeout(30)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip_of("app.py", CONSUMER.as_bytes())))
                .build(),
        )
        .send()
        .await
        .expect("function");
    let mut mapping = lambda
        .create_event_source_mapping()
        .function_name("consumer")
        .event_source_arn("arn:aws:sqs:us-east-1:123456789012:in")
        .batch_size(10)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures);
    if let Some(p) = filter {
        mapping = mapping.filter_criteria(
            FilterCriteria::builder()
                .filters(Filter::builder().pattern(p).build())
                .build(),
        );
    }
    let created = mapping.send().await.expect("mapping");
    assert_eq!(created.batch_size(), Some(10));
    assert!(created.uuid().is_some());
    (sqs, input, out)
}

/// Bodies that reach `out` within `seconds` (real time), sorted.
async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str, want: usize, seconds: u64) -> Vec<String> {
    let mut got = Vec::new();
    // Each receive long-polls for a second.
    for _ in 0..seconds {
        if got.len() >= want {
            break;
        }
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in r.messages() {
            got.push(m.body().unwrap_or_default().to_string());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    got.sort();
    got
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (String, String) {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let attrs = a.attributes().expect("attrs");
    (
        attrs[&QueueAttributeName::ApproximateNumberOfMessages].clone(),
        attrs[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible].clone(),
    )
}

#[test]
fn batches_are_processed_then_deleted_and_failed_items_come_back() {
    let s = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    rt().block_on(async {
        let (sqs, input, out) = setup(&s, None).await;
        for body in ["one", "two", "bad"] {
            sqs.send_message()
                .queue_url(&input)
                .message_body(body)
                .send()
                .await
                .expect("send");
        }
        assert_eq!(bodies(&sqs, &out, 3, 30).await, vec!["bad", "one", "two"]);
        // The processed messages are gone; the failed one waits out its visibility timeout.
        tsumiki_core::Clock::pause_real(Duration::from_millis(500)).await;
        assert_eq!(depth(&sqs, &input).await, ("0".into(), "1".into()));
        s.advance_clock(31.0);
        assert_eq!(
            bodies(&sqs, &out, 1, 30).await,
            vec!["bad"],
            "the failed item is retried"
        );
    });
}

#[test]
fn filtered_out_messages_are_deleted_without_an_invocation() {
    let s = server(Options {
        in_memory: true,
        ..Options::default()
    });
    rt().block_on(async {
        let (sqs, input, out) = setup(&s, Some(r#"{"body": {"keep": [true]}}"#)).await;
        sqs.send_message()
            .queue_url(&input)
            .message_body(r#"{"keep": false, "n": 1}"#)
            .send()
            .await
            .expect("send");
        sqs.send_message()
            .queue_url(&input)
            .message_body(r#"{"keep": true, "n": 2}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(
            bodies(&sqs, &out, 2, 5).await,
            vec![r#"{"keep": true, "n": 2}"#.to_string()]
        );
        assert_eq!(depth(&sqs, &input).await, ("0".into(), "0".into()));
    });
}
