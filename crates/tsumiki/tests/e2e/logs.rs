//! CloudWatch Logs through the AWS SDK for Rust, and the `tsumiki logs` command.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, OrderBy};
use tsumiki_testkit::{Options, Server, wait_for};

use crate::{in_memory, server};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn logs_client(server: &Server) -> Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
        .build();
    Client::from_conf(config)
}

/// The server's clock: event timestamps must be near it, and the test may not read its own.
fn server_now(server: &Server) -> i64 {
    let (status, body) = server.http("GET", "/_tsumiki/clock", &[], b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("json")["now_ms"]
        .as_i64()
        .expect("now_ms")
}

fn event(ts: i64, message: impl Into<String>) -> InputLogEvent {
    InputLogEvent::builder()
        .timestamp(ts)
        .message(message)
        .build()
        .expect("event")
}

async fn put(c: &Client, group: &str, stream: &str, events: Vec<InputLogEvent>) {
    c.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put log events");
}

async fn group_with_stream(c: &Client, group: &str, stream: &str) {
    c.create_log_group()
        .log_group_name(group)
        .send()
        .await
        .expect("create group");
    c.create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        .expect("create stream");
}

/// Every message of a stream, read forward from the head until the token comes back.
async fn read_all(c: &Client, group: &str, stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("get log events");
        out.extend(
            page.events()
                .iter()
                .map(|e| e.message().unwrap_or_default().to_string()),
        );
        let next = page.next_forward_token().map(str::to_string);
        if next == token {
            return out;
        }
        token = next;
    }
}

#[test]
fn group_and_stream_lifecycle() {
    let s = in_memory();
    rt().block_on(async {
        let c = logs_client(&s);
        c.create_log_group()
            .log_group_name("/app/one")
            .tags("team", "core")
            .send()
            .await
            .expect("create");
        let err = c
            .create_log_group()
            .log_group_name("/app/one")
            .send()
            .await
            .expect_err("duplicate");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_resource_already_exists_exception()),
            "{err:?}"
        );
        assert_eq!(
            err.message(),
            Some("The specified log group already exists")
        );
        let err = c
            .create_log_group()
            .log_group_name("bad:name")
            .send()
            .await
            .expect_err("bad name");
        assert_eq!(err.code(), Some("InvalidParameterException"));
        for name in ["/app/two", "/other"] {
            c.create_log_group()
                .log_group_name(name)
                .send()
                .await
                .expect("create");
        }

        let groups = c
            .describe_log_groups()
            .log_group_name_prefix("/app/")
            .send()
            .await
            .expect("describe");
        let names: Vec<&str> = groups
            .log_groups()
            .iter()
            .filter_map(|g| g.log_group_name())
            .collect();
        assert_eq!(names, ["/app/one", "/app/two"]);
        let one = &groups.log_groups()[0];
        assert_eq!(
            one.arn(),
            Some("arn:aws:logs:us-east-1:000000000000:log-group:/app/one:*")
        );
        assert_eq!(
            one.log_group_arn(),
            Some("arn:aws:logs:us-east-1:000000000000:log-group:/app/one")
        );
        assert_eq!(one.stored_bytes(), Some(0));
        assert!(one.creation_time().is_some());
        let page = c
            .describe_log_groups()
            .limit(2)
            .send()
            .await
            .expect("describe");
        assert_eq!(page.log_groups().len(), 2);
        let rest = c
            .describe_log_groups()
            .limit(2)
            .set_next_token(page.next_token().map(str::to_string))
            .send()
            .await
            .expect("describe");
        let names: Vec<&str> = rest
            .log_groups()
            .iter()
            .filter_map(|g| g.log_group_name())
            .collect();
        assert_eq!(names, ["/other"]);
        assert!(rest.next_token().is_none());
        let by_pattern = c
            .describe_log_groups()
            .log_group_name_pattern("APP/T")
            .send()
            .await
            .expect("describe");
        assert_eq!(by_pattern.log_groups().len(), 1, "patterns ignore case");

        // Retention.
        let err = c
            .put_retention_policy()
            .log_group_name("/app/one")
            .retention_in_days(2)
            .send()
            .await
            .expect_err("2 days is not allowed");
        assert_eq!(err.code(), Some("InvalidParameterException"));
        c.put_retention_policy()
            .log_group_name("/app/one")
            .retention_in_days(14)
            .send()
            .await
            .expect("retention");
        let described = c
            .describe_log_groups()
            .log_group_name_prefix("/app/one")
            .send()
            .await
            .expect("describe");
        assert_eq!(described.log_groups()[0].retention_in_days(), Some(14));

        // Tags by name and by ARN.
        let arn = "arn:aws:logs:us-east-1:000000000000:log-group:/app/one";
        c.tag_resource()
            .resource_arn(arn)
            .tags("env", "dev")
            .send()
            .await
            .expect("tag");
        let tags = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .expect("tags");
        let tags = tags.tags().expect("tags");
        assert_eq!(
            (
                tags.get("team").map(String::as_str),
                tags.get("env").map(String::as_str)
            ),
            (Some("core"), Some("dev"))
        );
        c.untag_resource()
            .resource_arn(arn)
            .tag_keys("team")
            .send()
            .await
            .expect("untag");
        #[allow(deprecated)]
        let tags = c
            .list_tags_log_group()
            .log_group_name("/app/one")
            .send()
            .await
            .expect("tags");
        assert_eq!(tags.tags().map(|t| t.len()), Some(1));

        // Streams.
        for stream in ["b", "a", "c/1"] {
            c.create_log_stream()
                .log_group_name("/app/one")
                .log_stream_name(stream)
                .send()
                .await
                .expect("create stream");
        }
        let err = c
            .create_log_stream()
            .log_group_name("/app/one")
            .log_stream_name("a")
            .send()
            .await
            .expect_err("duplicate stream");
        assert_eq!(err.code(), Some("ResourceAlreadyExistsException"));
        let err = c
            .create_log_stream()
            .log_group_name("/missing")
            .log_stream_name("a")
            .send()
            .await
            .expect_err("no group");
        assert_eq!(
            err.message(),
            Some("The specified log group does not exist.")
        );
        let now = server_now(&s);
        put(&c, "/app/one", "b", vec![event(now - 1000, "b1")]).await;
        put(&c, "/app/one", "a", vec![event(now - 500, "a1")]).await;
        let streams = c
            .describe_log_streams()
            .log_group_name("/app/one")
            .send()
            .await
            .expect("streams");
        let names: Vec<&str> = streams
            .log_streams()
            .iter()
            .filter_map(|s| s.log_stream_name())
            .collect();
        assert_eq!(names, ["a", "b", "c/1"]);
        let a = &streams.log_streams()[0];
        assert_eq!(a.first_event_timestamp(), Some(now - 500));
        assert_eq!(a.last_event_timestamp(), Some(now - 500));
        assert!(a.last_ingestion_time().is_some());
        assert!(a.upload_sequence_token().is_some());
        assert_eq!(
            a.arn(),
            Some("arn:aws:logs:us-east-1:000000000000:log-group:/app/one:log-stream:a")
        );
        let by_time = c
            .describe_log_streams()
            .log_group_name("/app/one")
            .order_by(OrderBy::LastEventTime)
            .descending(true)
            .limit(1)
            .send()
            .await
            .expect("streams");
        assert_eq!(by_time.log_streams()[0].log_stream_name(), Some("a"));
        let next = c
            .describe_log_streams()
            .log_group_name("/app/one")
            .order_by(OrderBy::LastEventTime)
            .descending(true)
            .limit(1)
            .set_next_token(by_time.next_token().map(str::to_string))
            .send()
            .await
            .expect("streams");
        assert_eq!(next.log_streams()[0].log_stream_name(), Some("b"));
        let err = c
            .describe_log_streams()
            .log_group_name("/app/one")
            .order_by(OrderBy::LastEventTime)
            .log_stream_name_prefix("a")
            .send()
            .await
            .expect_err("prefix with LastEventTime");
        assert_eq!(err.code(), Some("InvalidParameterException"));

        c.delete_log_stream()
            .log_group_name("/app/one")
            .log_stream_name("a")
            .send()
            .await
            .expect("delete stream");
        let err = c
            .get_log_events()
            .log_group_name("/app/one")
            .log_stream_name("a")
            .send()
            .await
            .expect_err("deleted stream");
        assert_eq!(
            err.message(),
            Some("The specified log stream does not exist.")
        );
        c.delete_log_group()
            .log_group_name("/app/one")
            .send()
            .await
            .expect("delete group");
        let err = c
            .describe_log_streams()
            .log_group_name("/app/one")
            .send()
            .await
            .expect_err("deleted group");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()),
            "{err:?}"
        );
        let err = c
            .start_query()
            .log_group_name("/other")
            .start_time(0)
            .end_time(1)
            .query_string("fields @message")
            .send()
            .await
            .expect_err("not implemented");
        assert_eq!(err.code(), Some("NotImplemented"));
    });
}

#[test]
fn put_and_get_with_paging_tokens_both_ways() {
    let s = in_memory();
    rt().block_on(async {
        let c = logs_client(&s);
        group_with_stream(&c, "paging", "s").await;
        let now = server_now(&s);
        let events: Vec<InputLogEvent> = (0..25)
            .map(|i| event(now - 60_000 + i * 1000, format!("m{i:02}")))
            .collect();
        let out = c
            .put_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .set_log_events(Some(events))
            .send()
            .await
            .expect("put");
        assert!(out.next_sequence_token().is_some());
        assert!(out.rejected_log_events_info().is_none());

        let err = c
            .put_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .log_events(event(now, "later"))
            .log_events(event(now - 10, "earlier"))
            .send()
            .await
            .expect_err("out of order");
        assert_eq!(
            err.message(),
            Some("Log events in a single PutLogEvents request must be in chronological order.")
        );
        let out = c
            .put_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .log_events(event(now + 3 * 3_600_000, "from the future"))
            .send()
            .await
            .expect("too new is a rejection, not an error");
        assert_eq!(
            out.rejected_log_events_info()
                .and_then(|r| r.too_new_log_event_start_index()),
            Some(0)
        );

        // Forward from the head, 10 at a time.
        let messages = |page: &aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput| -> Vec<String> {
            page.events()
                .iter()
                .map(|e| e.message().unwrap_or_default().to_string())
                .collect()
        };
        let p1 = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .start_from_head(true)
            .limit(10)
            .send()
            .await
            .expect("get");
        assert_eq!(messages(&p1).first().map(String::as_str), Some("m00"));
        assert_eq!(messages(&p1).len(), 10);
        let forward = p1.next_forward_token().expect("forward token");
        assert!(forward.starts_with("f/"), "{forward}");
        assert!(p1.next_backward_token().is_some_and(|t| t.starts_with("b/")));
        let p2 = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .next_token(forward)
            .start_from_head(true)
            .limit(10)
            .send()
            .await
            .expect("get");
        assert_eq!(messages(&p2).first().map(String::as_str), Some("m10"));
        let p3 = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .next_token(p2.next_forward_token().expect("token"))
            .start_from_head(true)
            .limit(10)
            .send()
            .await
            .expect("get");
        assert_eq!(messages(&p3).len(), 5);
        let end = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .next_token(p3.next_forward_token().expect("token"))
            .start_from_head(true)
            .limit(10)
            .send()
            .await
            .expect("get");
        assert!(end.events().is_empty());
        assert_eq!(
            end.next_forward_token(),
            p3.next_forward_token(),
            "at the end the same token comes back"
        );

        // The default reads the latest events; backward tokens walk to the start.
        let tail = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .limit(10)
            .send()
            .await
            .expect("get");
        assert_eq!(messages(&tail).first().map(String::as_str), Some("m15"));
        assert_eq!(messages(&tail).last().map(String::as_str), Some("m24"));
        let mut older = Vec::new();
        let mut token = tail.next_backward_token().map(str::to_string);
        loop {
            let page = c
                .get_log_events()
                .log_group_name("paging")
                .log_stream_name("s")
                .set_next_token(token.clone())
                .limit(10)
                .send()
                .await
                .expect("get");
            let mut page_messages = messages(&page);
            page_messages.append(&mut older);
            older = page_messages;
            let next = page.next_backward_token().map(str::to_string);
            if next == token {
                break;
            }
            token = next;
        }
        assert_eq!(older.len(), 15);
        assert_eq!(older.first().map(String::as_str), Some("m00"));

        // A time window: [startTime, endTime).
        let window = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .start_time(now - 60_000 + 5000)
            .end_time(now - 60_000 + 8000)
            .start_from_head(true)
            .send()
            .await
            .expect("get");
        assert_eq!(messages(&window), ["m05", "m06", "m07"]);
        let err = c
            .get_log_events()
            .log_group_name("paging")
            .log_stream_name("s")
            .next_token("garbage")
            .send()
            .await
            .expect_err("bad token");
        assert_eq!(err.code(), Some("InvalidParameterException"));
    });
}

#[test]
fn filter_log_events_with_json_and_term_patterns() {
    let s = in_memory();
    rt().block_on(async {
        let c = logs_client(&s);
        group_with_stream(&c, "filtering", "api").await;
        c.create_log_stream()
            .log_group_name("filtering")
            .log_stream_name("worker")
            .send()
            .await
            .expect("stream");
        let now = server_now(&s);
        put(
            &c,
            "filtering",
            "api",
            vec![
                event(
                    now - 5000,
                    r#"{"level": "ERROR", "status": 500, "path": "/orders"}"#,
                ),
                event(
                    now - 3000,
                    r#"{"level": "INFO", "status": 200, "path": "/orders"}"#,
                ),
                event(now - 1000, "[ERROR] Unhandled Exception in handler"),
            ],
        )
        .await;
        put(
            &c,
            "filtering",
            "worker",
            vec![
                event(
                    now - 4000,
                    r#"{"level": "WARN", "status": 503, "path": "/jobs"}"#,
                ),
                event(now - 2000, "ERROR retrying job 7"),
            ],
        )
        .await;
        let filter = |pattern: &'static str| {
            let c = c.clone();
            async move {
                let out = c
                    .filter_log_events()
                    .log_group_name("filtering")
                    .filter_pattern(pattern)
                    .send()
                    .await
                    .expect("filter");
                out.events()
                    .iter()
                    .map(|e| {
                        format!(
                            "{}:{}",
                            e.log_stream_name().unwrap_or_default(),
                            e.timestamp().unwrap_or_default() - now
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            filter("{ $.status >= 500 }").await,
            ["api:-5000", "worker:-4000"],
            "interleaved by time across streams"
        );
        assert_eq!(
            filter(r#"{ $.level = "ERROR" || $.path = "/jobs" }"#).await,
            ["api:-5000", "worker:-4000"]
        );
        assert_eq!(
            filter("ERROR").await,
            ["api:-5000", "worker:-2000", "api:-1000"]
        );
        assert_eq!(filter("ERROR -job").await, ["api:-5000", "api:-1000"]);
        assert_eq!(
            filter("?WARN ?Unhandled").await,
            ["worker:-4000", "api:-1000"]
        );
        assert_eq!(filter("[level, ..., n = 7]").await, ["worker:-2000"]);
        assert_eq!(filter("%retry.*[0-9]$%").await, ["worker:-2000"]);

        let out = c
            .filter_log_events()
            .log_group_name("filtering")
            .log_stream_names("api")
            .start_time(now - 4000)
            .send()
            .await
            .expect("filter");
        let first = &out.events()[0];
        assert_eq!(first.log_stream_name(), Some("api"));
        assert_eq!(first.timestamp(), Some(now - 3000));
        assert!(first.ingestion_time().is_some());
        assert!(first.event_id().is_some());
        assert_eq!(out.events().len(), 2);

        // Paging with nextToken yields every event once.
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let out = c
                .filter_log_events()
                .log_group_name("filtering")
                .limit(2)
                .set_next_token(token)
                .send()
                .await
                .expect("filter");
            seen.extend(
                out.events()
                    .iter()
                    .filter_map(|e| e.event_id().map(str::to_string)),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);

        let err = c
            .filter_log_events()
            .log_group_name("filtering")
            .filter_pattern("{ $.status > }")
            .send()
            .await
            .expect_err("invalid pattern");
        assert_eq!(err.code(), Some("InvalidParameterException"));
        assert!(
            err.message()
                .is_some_and(|m| m.starts_with("Invalid filter pattern")),
            "{err:?}"
        );
    });
}

#[test]
fn retention_expires_events_as_the_clock_moves() {
    let mut s = server(Options {
        manual_clock: true,
        ..Options::default()
    });
    let rt = rt();
    rt.block_on(async {
        let c = logs_client(&s);
        group_with_stream(&c, "retained", "s").await;
        let now = server_now(&s);
        put(
            &c,
            "retained",
            "s",
            vec![event(now - 1000, "old"), event(now, "new")],
        )
        .await;
        c.put_retention_policy()
            .log_group_name("retained")
            .retention_in_days(1)
            .send()
            .await
            .expect("retention");
        assert_eq!(read_all(&c, "retained", "s").await, ["old", "new"]);
    });
    // A day and a half later both events are past retention.
    s.advance_clock(1.5 * 86_400.0);
    rt.block_on(async {
        let c = logs_client(&s);
        assert!(read_all(&c, "retained", "s").await.is_empty());
        let filtered = c
            .filter_log_events()
            .log_group_name("retained")
            .send()
            .await
            .expect("filter");
        assert!(filtered.events().is_empty());
    });
    // The sweep the clock's jump woke deletes them for good: storedBytes drops to 0.
    let swept = wait_for(Duration::from_secs(10), || {
        let stored = rt.block_on(async {
            logs_client(&s)
                .describe_log_groups()
                .log_group_name_prefix("retained")
                .send()
                .await
                .expect("describe")
                .log_groups()[0]
                .stored_bytes()
        });
        (stored == Some(0)).then_some(())
    });
    assert!(
        swept.is_some(),
        "the sweep never deleted the expired events"
    );
    rt.block_on(async {
        let c = logs_client(&s);
        // An event older than the retention period is rejected as expired.
        let now = server_now(&s);
        let out = c
            .put_log_events()
            .log_group_name("retained")
            .log_stream_name("s")
            .log_events(event(now - 86_400_000 - 1000, "expired on arrival"))
            .log_events(event(now - 2000, "fresh"))
            .send()
            .await
            .expect("put");
        assert_eq!(
            out.rejected_log_events_info()
                .and_then(|r| r.expired_log_event_end_index()),
            Some(0)
        );
    });
    // A restart starts the manual clock afresh, so "old" and "new" would be inside the
    // retention window again: that they stay gone shows the sweep deleted them from the store.
    // After a restart the swept events stay gone and the fresh one is there.
    s.restart();
    rt.block_on(async {
        let c = logs_client(&s);
        assert_eq!(read_all(&c, "retained", "s").await, ["fresh"]);
    });
}

const WRITERS: usize = 4;
const BATCH: usize = 20;
/// Acknowledged batches to wait for before the kill, so it lands mid-load.
const BATCHES_BEFORE_KILL: usize = 150;

#[derive(Default)]
struct Ledger {
    /// Per writer, the batch numbers whose PutLogEvents was acknowledged.
    acked: Mutex<HashMap<usize, Vec<usize>>>,
    batches: AtomicUsize,
    stop: AtomicBool,
}

async fn writer(c: Client, id: usize, base: i64, ledger: Arc<Ledger>) {
    for b in 0.. {
        if ledger.stop.load(Ordering::Relaxed) {
            return;
        }
        let events: Vec<InputLogEvent> = (0..BATCH)
            .map(|i| event(base + (b * BATCH + i) as i64, format!("w{id}-{b}-{i}")))
            .collect();
        let out = c
            .put_log_events()
            .log_group_name("crash")
            .log_stream_name(format!("w{id}"))
            .set_log_events(Some(events))
            .send()
            .await;
        match out {
            Ok(_) => {
                ledger
                    .acked
                    .lock()
                    .expect("lock")
                    .entry(id)
                    .or_default()
                    .push(b);
                ledger.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

#[test]
fn kill_dash_nine_keeps_every_acknowledged_event_once() {
    let mut s = server(Options::default());
    let rt = rt();
    let ledger = Arc::new(Ledger::default());
    let base = server_now(&s) - 60 * 60_000;
    let tasks = rt.block_on(async {
        let c = logs_client(&s);
        c.create_log_group()
            .log_group_name("crash")
            .send()
            .await
            .expect("group");
        for id in 0..WRITERS {
            c.create_log_stream()
                .log_group_name("crash")
                .log_stream_name(format!("w{id}"))
                .send()
                .await
                .expect("stream");
        }
        (0..WRITERS)
            .map(|id| tokio::spawn(writer(c.clone(), id, base, ledger.clone())))
            .collect::<Vec<_>>()
    });
    let reached = wait_for(Duration::from_secs(120), || {
        (ledger.batches.load(Ordering::Relaxed) >= BATCHES_BEFORE_KILL).then_some(())
    });
    assert!(
        reached.is_some(),
        "the load never reached {BATCHES_BEFORE_KILL} batches"
    );
    s.kill9();
    ledger.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    s.restart();
    let acked = ledger.acked.lock().expect("lock").clone();
    rt.block_on(async {
        let c = logs_client(&s);
        let mut stored = 0;
        for id in 0..WRITERS {
            let messages = read_all(&c, "crash", &format!("w{id}")).await;
            let unique: HashSet<&String> = messages.iter().collect();
            assert_eq!(unique.len(), messages.len(), "writer {id}: duplicated events");
            let mut batches: HashMap<usize, usize> = HashMap::new();
            for m in &messages {
                let b: usize = m.split('-').nth(1).and_then(|b| b.parse().ok()).expect("w-b-i");
                *batches.entry(b).or_default() += 1;
            }
            let acked = acked.get(&id).cloned().unwrap_or_default();
            for b in &acked {
                assert_eq!(
                    batches.get(b),
                    Some(&BATCH),
                    "writer {id}: acknowledged batch {b} is not all there"
                );
            }
            // A batch is atomic, and only the one in flight at the kill may be extra.
            assert!(batches.values().all(|n| *n == BATCH), "writer {id}: a torn batch");
            assert!(
                batches.len() <= acked.len() + 1,
                "writer {id}: {} batches stored, {} acknowledged",
                batches.len(),
                acked.len()
            );
            // Events come back in timestamp order.
            let mut expected = messages.clone();
            expected.sort_by_key(|m| {
                let mut parts = m.trim_start_matches('w').split('-').skip(1);
                let b: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or_default();
                let i: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or_default();
                b * BATCH + i
            });
            assert_eq!(messages, expected, "writer {id}: out of order");
            stored += messages.len();
        }
        eprintln!(
            "logs crash test: {} batches acknowledged before the kill, {stored} events after restart",
            acked.values().map(Vec::len).sum::<usize>()
        );
    });
}

fn tsumiki_logs_command(s: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsumiki"));
    cmd.arg("logs")
        .args(args)
        .arg("--endpoint")
        .arg(&s.endpoint)
        .env("TSUMIKI_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn tsumiki_logs_prints_and_follows_a_function_log_group() {
    let s = in_memory();
    let rt = rt();
    let now = server_now(&s);
    rt.block_on(async {
        let c = logs_client(&s);
        group_with_stream(&c, "/aws/lambda/cli-fn", "2024/01/01/[$LATEST]aaa").await;
        c.create_log_stream()
            .log_group_name("/aws/lambda/cli-fn")
            .log_stream_name("2024/01/01/[$LATEST]bbb")
            .send()
            .await
            .expect("stream");
        put(
            &c,
            "/aws/lambda/cli-fn",
            "2024/01/01/[$LATEST]aaa",
            vec![event(now - 3000, "first\n"), event(now - 1000, "third")],
        )
        .await;
        put(
            &c,
            "/aws/lambda/cli-fn",
            "2024/01/01/[$LATEST]bbb",
            vec![
                event(now - 7_200_000, "too early for --since"),
                event(now - 2000, "second"),
            ],
        )
        .await;
    });

    let out = tsumiki_logs_command(&s, &["cli-fn", "--since", "1h"])
        .output()
        .expect("run tsumiki logs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, (stream, message)) in
        lines
            .iter()
            .zip([("aaa", "first"), ("bbb", "second"), ("aaa", "third")])
    {
        assert!(
            line.ends_with(&format!("2024/01/01/[$LATEST]{stream} {message}")),
            "{line}"
        );
        assert!(
            line.contains('T') && line.contains('Z'),
            "an ISO 8601 time: {line}"
        );
    }

    let out = tsumiki_logs_command(&s, &["no-such-fn"])
        .output()
        .expect("run tsumiki logs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/aws/lambda/no-such-fn"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // -f prints what is there, then what arrives.
    let mut child = tsumiki_logs_command(&s, &["-f", "cli-fn", "--since", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tsumiki logs -f");
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let printed = printed.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                printed.lock().expect("lock").push(line);
            }
        })
    };
    let count = |n: usize| {
        let printed = printed.clone();
        move || (printed.lock().expect("lock").len() >= n).then_some(())
    };
    assert!(
        wait_for(Duration::from_secs(30), count(3)).is_some(),
        "the existing events"
    );
    rt.block_on(async {
        let c = logs_client(&s);
        put(
            &c,
            "/aws/lambda/cli-fn",
            "2024/01/01/[$LATEST]bbb",
            vec![event(server_now(&s), "fourth, while following")],
        )
        .await;
    });
    let arrived = wait_for(Duration::from_secs(30), count(4));
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let printed = printed.lock().expect("lock");
    assert!(arrived.is_some(), "the new event never showed: {printed:?}");
    assert_eq!(printed.len(), 4, "nothing printed twice: {printed:?}");
    assert!(
        printed[3].ends_with("fourth, while following"),
        "{printed:?}"
    );
}
