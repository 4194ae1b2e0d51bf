//! Lambda through the AWS SDK for Rust: functions in python, node, a shell custom runtime and
//! AWS's own `lambda_runtime` crate, all running as real processes against tsumiki's Runtime API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, InvocationType, LogType, Runtime};
use base64::Engine;
use serde_json::{Value, json};
use tsumiki_testkit::{Options, Server};

use crate::{in_memory, lambda_client, server};

const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A zip of `(path, contents, executable)` entries.
fn zip_of(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, data, exec) in files {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(if *exec {
                0o755
            } else {
                0o644
            });
            w.start_file(*name, opts).expect("zip entry");
            w.write_all(data).expect("zip write");
        }
        w.finish().expect("zip finish");
    }
    out.into_inner()
}

async fn create(
    c: &aws_sdk_lambda::Client,
    name: &str,
    runtime: Runtime,
    handler: &str,
    zip: Vec<u8>,
    timeout: i32,
) {
    c.create_function()
        .function_name(name)
        .runtime(runtime)
        .role(ROLE)
        .handler(handler)
        .timeout(timeout)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

/// Invokes synchronously; returns (payload as JSON, function error, executed version).
async fn invoke(
    c: &aws_sdk_lambda::Client,
    name: &str,
    payload: Value,
) -> (Value, Option<String>, Option<String>) {
    let out = c
        .invoke()
        .function_name(name)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {name}: {e:?}"));
    assert_eq!(out.status_code(), 200);
    let body = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (
        value,
        out.function_error().map(String::from),
        out.executed_version().map(String::from),
    )
}

const PY_ECHO: &str = r#"
import os, time
count = 0
def handler(event, context):
    global count
    count += 1
    print("event", event)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("block"):
        time.sleep(3600)
    return {
        "event": event,
        "pid": os.getpid(),
        "count": count,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "_HANDLER", "GREETING", "AWS_ENDPOINT_URL"]},
        "cwd": os.getcwd(),
        "tmp": os.environ.get("TMPDIR"),
    }
def boom(event, context):
    raise KeyError("missing")
"#;

#[test]
fn python_function_gets_event_context_environment_and_tail() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let created = c
            .create_function()
            .function_name("py")
            .runtime(Runtime::Python312)
            .role(ROLE)
            .handler("app.handler")
            .memory_size(256)
            .environment(
                aws_sdk_lambda::types::Environment::builder()
                    .variables("GREETING", "hi")
                    .build(),
            )
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(zip_of(&[("app.py", PY_ECHO.as_bytes(), false)])))
                    .build(),
            )
            .send()
            .await
            .expect("create");
        assert_eq!(created.state().map(|s| s.as_str()), Some("Pending"));
        assert_eq!(created.code_size(), created.code_size().max(1));

        let out = c
            .invoke()
            .function_name("py")
            .payload(Blob::new(r#"{"a":1}"#))
            .log_type(LogType::Tail)
            .send()
            .await
            .expect("invoke");
        assert_eq!(out.status_code(), 200);
        assert_eq!(out.function_error(), None);
        assert_eq!(out.executed_version(), Some("$LATEST"));
        let v: Value =
            serde_json::from_slice(out.payload().expect("payload").as_ref()).expect("json");
        assert_eq!(v["event"], json!({"a": 1}));
        assert_eq!(v["memory"], json!("256"));
        assert_eq!(
            v["arn"],
            json!("arn:aws:lambda:us-east-1:123456789012:function:py")
        );
        assert!(v["remaining"].as_i64().expect("remaining") > 2000, "{v}");
        assert_eq!(v["env"]["AWS_LAMBDA_FUNCTION_NAME"], json!("py"));
        assert_eq!(v["env"]["AWS_REGION"], json!("us-east-1"));
        assert_eq!(v["env"]["_HANDLER"], json!("app.handler"));
        assert_eq!(v["env"]["GREETING"], json!("hi"));
        assert_eq!(v["env"]["AWS_ENDPOINT_URL"], json!(s.endpoint));
        let request_id = v["request_id"].as_str().expect("request id").to_string();
        let tail = base64::engine::general_purpose::STANDARD
            .decode(out.log_result().expect("log result"))
            .expect("base64");
        let tail = String::from_utf8(tail).expect("utf8");
        assert!(
            tail.contains(&format!("START RequestId: {request_id} Version: $LATEST")),
            "{tail}"
        );
        assert!(tail.contains("event {'a': 1}"), "{tail}");
        assert!(
            tail.contains(&format!("END RequestId: {request_id}")),
            "{tail}"
        );
        assert!(tail.contains("Memory Size: 256 MB"), "{tail}");
        assert!(
            tail.contains("Init Duration:"),
            "a cold start reports its init: {tail}"
        );

        let state = c
            .get_function()
            .function_name("py")
            .send()
            .await
            .expect("get")
            .configuration()
            .and_then(|c| c.state().cloned());
        assert_eq!(state.map(|s| s.as_str().to_string()), Some("Active".into()));
    });
}

#[test]
fn unhandled_errors_answer_200_with_the_error_payload() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let zip = zip_of(&[("app.py", PY_ECHO.as_bytes(), false)]);
        create(&c, "boom", Runtime::Python312, "app.boom", zip.clone(), 3).await;
        let (v, err, _) = invoke(&c, "boom", json!({})).await;
        assert_eq!(err.as_deref(), Some("Unhandled"));
        assert_eq!(v["errorType"], json!("KeyError"));
        assert_eq!(v["errorMessage"], json!("'missing'"));
        assert!(
            v["stackTrace"].as_array().is_some_and(|t| !t.is_empty()),
            "{v}"
        );

        create(
            &c,
            "noimport",
            Runtime::Python312,
            "nothere.handler",
            zip,
            3,
        )
        .await;
        let (v, err, _) = invoke(&c, "noimport", json!({})).await;
        assert_eq!(err.as_deref(), Some("Unhandled"));
        assert_eq!(v["errorType"], json!("Runtime.ImportModuleError"), "{v}");

        let missing = c
            .invoke()
            .function_name("nope")
            .send()
            .await
            .expect_err("missing");
        assert_eq!(missing.code(), Some("ResourceNotFoundException"));
        assert_eq!(
            missing.message(),
            Some("Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope")
        );
    });
}

#[test]
fn node_function_runs_async_handlers() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let js = br#"
exports.handler = async (event, context) => {
  console.log("node got", JSON.stringify(event));
  return { doubled: event.n * 2, name: context.functionName, id: context.awsRequestId };
};
"#;
        create(
            &c,
            "node",
            Runtime::Nodejs20x,
            "index.handler",
            zip_of(&[("index.js", js, false)]),
            3,
        )
        .await;
        let (v, err, _) = invoke(&c, "node", json!({"n": 21})).await;
        assert_eq!(err, None, "{v}");
        assert_eq!(v["doubled"], json!(42));
        assert_eq!(v["name"], json!("node"));
    });
}

#[test]
fn custom_runtime_in_shell_with_curl() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        // The Runtime API loop as AWS's tutorial writes it, in sh and curl.
        let bootstrap = br#"#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "shell handling $ID"
  curl -sS -X POST "$API/invocation/$ID/response" -d "{\"shell\":true,\"event\":$EVENT}" > /dev/null
done
"#;
        create(
            &c,
            "shell",
            Runtime::Providedal2023,
            "unused",
            zip_of(&[("bootstrap", bootstrap, true)]),
            3,
        )
        .await;
        for i in 0..3 {
            let (v, err, _) = invoke(&c, "shell", json!({"i": i})).await;
            assert_eq!(err, None, "{v}");
            assert_eq!(v, json!({"shell": true, "event": {"i": i}}));
        }
    });
}

/// The `rust_echo` binary of `tsumiki-testfns`, built with AWS's `lambda_runtime` crate.
fn rust_echo() -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    std::fs::read(BUILT.get_or_init(|| testfn("rust_echo"))).expect("rust_echo binary")
}

/// The `rust_stream` binary of `tsumiki-testfns`: `lambda_runtime`'s streaming API.
fn rust_stream() -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    std::fs::read(BUILT.get_or_init(|| testfn("rust_stream"))).expect("rust_stream binary")
}

/// Builds a `tsumiki-testfns` binary beside the server's unless it is there.
fn testfn(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_tsumiki"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "tsumiki-testfns", "--bin", name])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building {name}");
    }
    bin
}

#[test]
fn lambda_runtime_crate_function_works_unchanged() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "rusty",
            Runtime::Providedal2023,
            "bootstrap",
            zip_of(&[("bootstrap", &rust_echo(), true)]),
            3,
        )
        .await;
        let (v, err, _) = invoke(&c, "rusty", json!({"hello": "rust"})).await;
        assert_eq!(err, None, "{v}");
        assert_eq!(v["echo"], json!({"hello": "rust"}));
        assert_eq!(v["function_name"], json!("rusty"));
        assert_eq!(v["memory"], json!(128));
        let (v, err, _) = invoke(&c, "rusty", json!({"fail": true})).await;
        assert_eq!(err.as_deref(), Some("Unhandled"));
        assert_eq!(v["errorMessage"], json!("asked to fail"), "{v}");
        // The environment survived its function's error.
        let (v, err, _) = invoke(&c, "rusty", json!({"again": 1})).await;
        assert_eq!(err, None, "{v}");
    });
}

#[test]
fn warm_environments_are_reused_and_scale_out_under_concurrency() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "warm",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", PY_ECHO.as_bytes(), false)]),
            10,
        )
        .await;
        let (a, _, _) = invoke(&c, "warm", json!({})).await;
        let (b, _, _) = invoke(&c, "warm", json!({})).await;
        assert_eq!(a["pid"], b["pid"], "the warm environment answers again");
        assert_eq!(b["count"], json!(2));
        assert_ne!(a["tmp"], json!(null));

        let calls = (0..3).map(|_| {
            let c = c.clone();
            async move { invoke(&c, "warm", json!({"sleep": 0.5})).await }
        });
        let results = futures_join(calls).await;
        let mut pids: Vec<i64> = results
            .iter()
            .map(|(v, _, _)| v["pid"].as_i64().expect("pid"))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(
            pids.len(),
            3,
            "three concurrent invokes need three environments"
        );
    });
}

async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[test]
fn reserved_concurrency_throttles_with_429() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "one",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", PY_ECHO.as_bytes(), false)]),
            10,
        )
        .await;
        c.put_function_concurrency()
            .function_name("one")
            .reserved_concurrent_executions(1)
            .send()
            .await
            .expect("reserve");
        // Two invocations that each hold the one slot for seconds: whichever arrives second
        // is throttled, however slowly a loaded machine starts the first.
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.invoke()
                        .function_name("one")
                        .payload(Blob::new(r#"{"sleep": 3}"#))
                        .send()
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        let mut throttled = Vec::new();
        for call in calls {
            match call.await.expect("task") {
                Ok(out) => {
                    assert_eq!(out.function_error(), None);
                    ok += 1;
                }
                Err(e) => throttled.push(e),
            }
        }
        assert_eq!(ok, 1, "one invocation ran");
        assert_eq!(throttled.len(), 1, "the other was throttled");
        assert_eq!(throttled[0].code(), Some("TooManyRequestsException"));
        assert_eq!(throttled[0].message(), Some("Rate Exceeded."));

        let settings = c.get_account_settings().send().await.expect("settings");
        let limit = settings.account_limit().expect("limit");
        assert_eq!(limit.concurrent_executions(), 1000);
        assert_eq!(limit.unreserved_concurrent_executions(), Some(999));
    });
}

#[test]
fn versions_and_aliases_keep_old_code_running() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let code = |tag: &str| {
            zip_of(&[(
                "app.py",
                format!("def handler(e, c):\n    return '{tag}'\n").as_bytes(),
                false,
            )])
        };
        create(&c, "ver", Runtime::Python312, "app.handler", code("one"), 3).await;
        let v1 = c
            .publish_version()
            .function_name("ver")
            .send()
            .await
            .expect("publish");
        assert_eq!(v1.version(), Some("1"));
        c.update_function_code()
            .function_name("ver")
            .zip_file(Blob::new(code("two")))
            .send()
            .await
            .expect("update code");
        c.create_alias()
            .function_name("ver")
            .name("live")
            .function_version("1")
            .send()
            .await
            .expect("alias");

        let (latest, _, version) = invoke(&c, "ver", json!({})).await;
        assert_eq!(latest, json!("two"));
        assert_eq!(version.as_deref(), Some("$LATEST"));
        let (old, _, version) = invoke(&c, "ver:1", json!({})).await;
        assert_eq!(old, json!("one"));
        assert_eq!(version.as_deref(), Some("1"));
        let (live, _, version) = invoke(&c, "ver:live", json!({})).await;
        assert_eq!(live, json!("one"));
        assert_eq!(version.as_deref(), Some("1"));

        let versions = c
            .list_versions_by_function()
            .function_name("ver")
            .send()
            .await
            .expect("versions");
        let names: Vec<&str> = versions
            .versions()
            .iter()
            .filter_map(|v| v.version())
            .collect();
        assert_eq!(names, vec!["$LATEST", "1"]);
    });
}

#[test]
fn timeouts_follow_the_manual_clock() {
    let s = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "slow",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", PY_ECHO.as_bytes(), false)]),
            5,
        )
        .await;
        let pending = {
            let c = c.clone();
            tokio::spawn(async move { invoke(&c, "slow", json!({"block": true})).await })
        };
        // Time moves only when the test says so; keep moving it until the invoke gives up.
        let mut result = None;
        for _ in 0..60 {
            tsumiki_core::Clock::pause_real(Duration::from_millis(200)).await;
            if pending.is_finished() {
                result = Some(pending.await.expect("invoke task"));
                break;
            }
            advance(&s, 3.0);
        }
        let (v, err, _) = result.expect("the blocked invoke timed out");
        assert_eq!(err.as_deref(), Some("Unhandled"));
        assert_eq!(v["errorType"], json!("Sandbox.Timedout"), "{v}");
        assert!(
            v["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Task timed out after 5.00 seconds")),
            "{v}"
        );
        // The killed environment is replaced by a fresh one.
        let (v, err, _) = invoke(&c, "slow", json!({"after": true})).await;
        assert_eq!(err, None, "{v}");
        assert_eq!(v["count"], json!(1), "a new environment: {v}");
    });
}

fn advance(s: &Server, seconds: f64) {
    s.advance_clock(seconds);
}

#[test]
fn a_function_reaches_sqs_with_no_endpoint_in_its_code() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let sqs = crate::sqs_client_as(&s, "123456789012", "us-east-1");
        let url = sqs
            .create_queue()
            .queue_name("from-lambda")
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let code = br#"
import boto3
def handler(event, context):
    sqs = boto3.client("sqs")
    r = sqs.send_message(QueueUrl=event["queue"], MessageBody="sent by " + context.function_name)
    return r["MessageId"]
"#;
        create(
            &c,
            "sender",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", code, false)]),
            30,
        )
        .await;
        let (v, err, _) = invoke(&c, "sender", json!({"queue": url})).await;
        assert_eq!(err, None, "{v}");
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .send()
            .await
            .expect("receive");
        let msg = got.messages().first().expect("the function's message");
        assert_eq!(msg.body(), Some("sent by sender"));
        assert_eq!(msg.message_id(), v.as_str());
    });
}

#[test]
fn invocation_types_event_and_dry_run() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "ev",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", PY_ECHO.as_bytes(), false)]),
            3,
        )
        .await;
        let dry = c
            .invoke()
            .function_name("ev")
            .invocation_type(InvocationType::DryRun)
            .send()
            .await
            .expect("dry run");
        assert_eq!(dry.status_code(), 204);
        let event = c
            .invoke()
            .function_name("ev")
            .invocation_type(InvocationType::Event)
            .payload(Blob::new("{}"))
            .send()
            .await
            .expect("event");
        assert_eq!(event.status_code(), 202);
        let bad = c
            .invoke()
            .function_name("ev")
            .payload(Blob::new("not json"))
            .send()
            .await
            .expect_err("bad payload");
        assert_eq!(bad.code(), Some("InvalidRequestContentException"));
    });
}

#[test]
fn a_function_over_its_memory_is_killed() {
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        let code = br#"
import time
def handler(event, context):
    hog = b"x" * (event["mb"] * 1024 * 1024)
    time.sleep(1)
    return len(hog)
"#;
        create(
            &c,
            "hog",
            Runtime::Python312,
            "app.handler",
            zip_of(&[("app.py", code, false)]),
            10,
        )
        .await;
        let (v, err, _) = invoke(&c, "hog", json!({"mb": 16})).await;
        assert_eq!(err, None, "a small allocation fits in 128 MB: {v}");
        let (v, err, _) = invoke(&c, "hog", json!({"mb": 300})).await;
        assert_eq!(err.as_deref(), Some("Unhandled"));
        assert_eq!(v["errorType"], json!("Runtime.OutOfMemory"), "{v}");
        let (v, err, _) = invoke(&c, "hog", json!({"mb": 1})).await;
        assert_eq!(err, None, "a fresh environment answers next: {v}");
    });
}

#[test]
fn invoke_with_response_stream_delivers_each_write_of_a_lambda_runtime_stream() {
    use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "rstream",
            Runtime::Providedal2023,
            "bootstrap",
            zip_of(&[("bootstrap", &rust_stream(), true)]),
            10,
        )
        .await;
        let payload = json!({"chunks": ["alpha", "beta", "gamma"], "pause_ms": 100, "status": 202});
        let mut out = c
            .invoke_with_response_stream()
            .function_name("rstream")
            .log_type(LogType::Tail)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .expect("invoke_with_response_stream");
        assert_eq!(out.status_code(), 200);
        assert_eq!(out.executed_version(), Some("$LATEST"));
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut complete = None;
        while let Some(event) = out.event_stream.recv().await.expect("event") {
            match event {
                Event::PayloadChunk(chunk) => {
                    assert!(complete.is_none(), "chunks come before InvokeComplete");
                    chunks.push(chunk.payload.expect("payload").into_inner());
                }
                Event::InvokeComplete(done) => complete = Some(done),
                other => panic!("unexpected event {other:?}"),
            }
        }
        let complete = complete.expect("InvokeComplete");
        assert_eq!(complete.error_code(), None, "{complete:?}");
        assert!(complete.log_result().is_some_and(|l| !l.is_empty()));
        // Writes spaced in time stay separate events.
        assert!(chunks.len() >= 3, "{chunks:?}");
        assert_eq!(
            chunks[chunks.len() - 3..],
            [b"alpha".to_vec(), b"beta".to_vec(), b"gamma".to_vec()]
        );
        // The HTTP prelude lambda_runtime opens every stream with, then 8 NUL bytes.
        let all: Vec<u8> = chunks.concat();
        let cut = all
            .windows(8)
            .position(|w| w == [0u8; 8])
            .expect("prelude delimiter");
        let prelude: Value = serde_json::from_slice(&all[..cut]).expect("prelude JSON");
        assert_eq!(prelude["statusCode"], json!(202));
        assert_eq!(&all[cut + 8..], b"alphabetagamma");

        // A buffered function answers through the same operation in one chunk.
        create(
            &c,
            "rbuffered",
            Runtime::Providedal2023,
            "bootstrap",
            zip_of(&[("bootstrap", &rust_echo(), true)]),
            3,
        )
        .await;
        let mut out = c
            .invoke_with_response_stream()
            .function_name("rbuffered")
            .payload(Blob::new(r#"{"fail": true}"#))
            .send()
            .await
            .expect("invoke_with_response_stream");
        let mut events = Vec::new();
        while let Some(event) = out.event_stream.recv().await.expect("event") {
            events.push(event);
        }
        assert_eq!(events.len(), 1, "{events:?}");
        let Event::InvokeComplete(done) = &events[0] else {
            panic!("{events:?}");
        };
        assert!(done.error_code().is_some(), "{done:?}");
        assert_eq!(done.error_details(), Some("asked to fail"));
    });
}

#[test]
fn function_url_streams_a_lambda_runtime_function_chunk_by_chunk() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = in_memory();
    rt().block_on(async {
        let c = lambda_client(&s);
        create(
            &c,
            "urlstream",
            Runtime::Providedal2023,
            "bootstrap",
            zip_of(&[("bootstrap", &rust_stream(), true)]),
            30,
        )
        .await;
        let url = c
            .create_function_url_config()
            .function_name("urlstream")
            .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
            .invoke_mode(aws_sdk_lambda::types::InvokeMode::ResponseStream)
            .send()
            .await
            .expect("create url")
            .function_url;
        let host = url
            .trim_start_matches("http://")
            .split(':')
            .next()
            .expect("host")
            .to_string();
        let signal = tsumiki_testkit::temp_dir("signal").join("go");
        let body = json!({"chunks": ["alpha", "beta", "gamma"], "signal": signal}).to_string();
        let mut tcp = tokio::net::TcpStream::connect(s.authority())
            .await
            .expect("connect");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut seen = Vec::new();
        // Reads until `needle` has arrived; the function holds its next chunk until then.
        async fn until(tcp: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(seen).contains(needle) {
                let n = tcp.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "closed before {needle}: {}",
                    String::from_utf8_lossy(seen)
                );
                seen.extend_from_slice(&buf[..n]);
            }
        }
        until(&mut tcp, &mut seen, "alpha").await;
        let head = String::from_utf8_lossy(&seen).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("transfer-encoding: chunked"), "{head}");
        assert!(lower.contains("x-streamed-by: lambda_runtime"), "{head}");
        assert!(lower.contains("set-cookie: flavour=rust"), "{head}");
        assert!(!head.contains("beta"), "{head}");
        std::fs::write(format!("{}-1", signal.display()), "go").expect("signal 1");
        until(&mut tcp, &mut seen, "beta").await;
        assert!(!String::from_utf8_lossy(&seen).contains("gamma"));
        std::fs::write(format!("{}-2", signal.display()), "go").expect("signal 2");
        until(&mut tcp, &mut seen, "\r\n0\r\n\r\n").await;
        let text = String::from_utf8_lossy(&seen);
        assert!(!text.contains("late:"), "{text}");
        assert!(text.contains("gamma"), "{text}");
    });
}
