//! EventBridge and EventBridge Scheduler through the AWS SDK for Rust: pattern rules to SQS,
//! input transformers, disabled rules, TestEventPattern, schedules on the manual clock
//! (rate rules, Scheduler `at()` and `cron()` in a time zone), API-call events, a Lambda
//! target, dead-letter queues after retries, and exactly-once firing across `kill -9`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use aws_sdk_eventbridge::error::ProvideErrorMetadata;
use aws_sdk_eventbridge::types::{
    DeadLetterConfig, InputTransformer, PutEventsRequestEntry, RetryPolicy, RuleState, Target,
};
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};
use tsumiki_testkit::{Options, Server};

use crate::{in_memory, server, sqs_client_as};

const ACCOUNT: &str = "123456789012";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn manual() -> Server {
    server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    })
}

fn events_client(s: &Server) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .endpoint_url(&s.endpoint)
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            ACCOUNT, "test", None, None, "e2e",
        ))
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

fn scheduler_client(s: &Server) -> aws_sdk_scheduler::Client {
    let config = aws_sdk_scheduler::Config::builder()
        .behavior_version(aws_sdk_scheduler::config::BehaviorVersion::latest())
        .endpoint_url(&s.endpoint)
        .region(aws_sdk_scheduler::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_scheduler::config::Credentials::new(
            ACCOUNT, "test", None, None, "e2e",
        ))
        .build();
    aws_sdk_scheduler::Client::from_conf(config)
}

fn sqs(s: &Server) -> aws_sdk_sqs::Client {
    sqs_client_as(s, ACCOUNT, "us-east-1")
}

/// Creates a queue; returns (url, arn).
async fn queue(c: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = c
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url");
    (url, format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"))
}

/// Receives (and deletes) what arrives within `wait_s` seconds of real time, until a
/// receive comes back empty.
async fn drain(c: &aws_sdk_sqs::Client, url: &str, wait_s: i32) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let got = c
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_s)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        for m in &got {
            c.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
        out.extend(got);
    }
}

/// Waits (real time, bounded) until at least `n` messages arrived; returns all that did.
async fn expect_messages(c: &aws_sdk_sqs::Client, url: &str, n: usize) -> Vec<Message> {
    let mut out = Vec::new();
    for _ in 0..20 {
        out.extend(drain(c, url, 1).await);
        if out.len() >= n {
            break;
        }
    }
    out
}

fn body(m: &Message) -> Value {
    serde_json::from_str(m.body().expect("body")).expect("a JSON body")
}

fn server_now_ms(s: &Server) -> i64 {
    let (status, text) = s.http("GET", "/_tsumiki/clock", &[], b"");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("json")["now_ms"]
        .as_i64()
        .expect("now_ms")
}

fn entry(source: &str, detail: Value) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .source(source)
        .detail_type("Order Placed")
        .detail(detail.to_string())
        .resources("arn:aws:example:us-east-1:123456789012:thing/1")
        .build()
}

fn sqs_target(id: &str, arn: &str) -> Target {
    Target::builder().id(id).arn(arn).build().expect("target")
}

#[test]
fn pattern_rule_delivers_the_envelope_to_sqs_and_a_disabled_rule_matches_nothing() {
    let s = in_memory();
    rt().block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "orders-out").await;
        let rule_arn = ev
            .put_rule()
            .name("orders")
            .event_pattern(
                json!({"source": ["shop"], "detail": {"total": [{"numeric": [">", 10]}]}})
                    .to_string(),
            )
            .send()
            .await
            .expect("put rule")
            .rule_arn
            .expect("arn");
        assert_eq!(
            rule_arn,
            format!("arn:aws:events:us-east-1:{ACCOUNT}:rule/orders")
        );
        let put = ev
            .put_targets()
            .rule("orders")
            .targets(sqs_target("q", &arn))
            .send()
            .await
            .expect("put targets");
        assert_eq!(put.failed_entry_count, 0);

        let out = ev
            .put_events()
            .entries(entry("shop", json!({"total": 42})))
            .entries(entry("shop", json!({"total": 3})))
            .entries(entry("other", json!({"total": 42})))
            .entries(
                PutEventsRequestEntry::builder()
                    .source("shop")
                    .detail_type("x")
                    .detail("not json")
                    .build(),
            )
            .send()
            .await
            .expect("put events");
        assert_eq!(out.failed_entry_count, 1);
        let entries = out.entries();
        assert_eq!(entries[3].error_code(), Some("MalformedDetail"));
        let id = entries[0].event_id().expect("event id").to_string();

        let got = expect_messages(&q, &url, 1).await;
        assert_eq!(got.len(), 1, "only the matching event is delivered");
        let raw = got[0].body().expect("body");
        assert!(
            raw.starts_with("{\"version\":\"0\",\"id\":"),
            "AWS's member order: {raw}"
        );
        let e = body(&got[0]);
        assert_eq!(e["version"], "0");
        assert_eq!(e["id"], id.as_str());
        assert_eq!(e["detail-type"], "Order Placed");
        assert_eq!(e["source"], "shop");
        assert_eq!(e["account"], ACCOUNT);
        assert_eq!(e["region"], "us-east-1");
        assert_eq!(
            e["resources"],
            json!(["arn:aws:example:us-east-1:123456789012:thing/1"])
        );
        assert_eq!(e["detail"], json!({"total": 42}));
        let time = e["time"].as_str().expect("time");
        assert_eq!(time.len(), 20, "second precision: {time}");
        assert!(time.ends_with('Z'));

        ev.disable_rule()
            .name("orders")
            .send()
            .await
            .expect("disable");
        let described = ev
            .describe_rule()
            .name("orders")
            .send()
            .await
            .expect("describe");
        assert_eq!(described.state(), Some(&RuleState::Disabled));
        ev.put_events()
            .entries(entry("shop", json!({"total": 50})))
            .send()
            .await
            .expect("put events");
        assert!(
            drain(&q, &url, 1).await.is_empty(),
            "a disabled rule matches nothing"
        );
        ev.enable_rule()
            .name("orders")
            .send()
            .await
            .expect("enable");
        ev.put_events()
            .entries(entry("shop", json!({"total": 51})))
            .send()
            .await
            .expect("put events");
        let got = expect_messages(&q, &url, 1).await;
        assert_eq!(body(&got[0])["detail"]["total"], 51);

        let err = ev
            .delete_rule()
            .name("orders")
            .send()
            .await
            .expect_err("a rule with targets");
        assert_eq!(err.code(), Some("ValidationException"));
        let listed = ev
            .list_rule_names_by_target()
            .target_arn(&arn)
            .send()
            .await
            .expect("by target");
        assert_eq!(listed.rule_names(), ["orders"]);
        ev.remove_targets()
            .rule("orders")
            .ids("q")
            .send()
            .await
            .expect("remove");
        ev.delete_rule()
            .name("orders")
            .send()
            .await
            .expect("delete");
        let err = ev
            .describe_rule()
            .name("orders")
            .send()
            .await
            .expect_err("gone");
        assert_eq!(err.code(), Some("ResourceNotFoundException"));
    });
}

#[test]
fn custom_buses_input_transformers_and_test_event_pattern() {
    let s = in_memory();
    rt().block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "transformed").await;
        let bus_arn = ev
            .create_event_bus()
            .name("app")
            .send()
            .await
            .expect("create bus")
            .event_bus_arn
            .expect("arn");
        assert_eq!(bus_arn, format!("arn:aws:events:us-east-1:{ACCOUNT}:event-bus/app"));
        let err = ev
            .put_rule()
            .name("tick")
            .event_bus_name("app")
            .schedule_expression("rate(1 minute)")
            .send()
            .await
            .expect_err("schedules only on the default bus");
        assert_eq!(err.code(), Some("ValidationException"));
        ev.put_rule()
            .name("t")
            .event_bus_name(&bus_arn)
            .event_pattern(json!({"source": ["shop"]}).to_string())
            .send()
            .await
            .expect("put rule");
        ev.put_targets()
            .rule("t")
            .event_bus_name("app")
            .targets(
                Target::builder()
                    .id("q")
                    .arn(&arn)
                    .input_transformer(
                        InputTransformer::builder()
                            .input_paths_map("total", "$.detail.total")
                            .input_paths_map("who", "$.detail.customer")
                            .input_template(
                                "{\"msg\": \"<who> paid <total>\", \"total\": <total>, \"who\": <who>, \"rule\": <aws.events.rule-name>}",
                            )
                            .build()
                            .expect("transformer"),
                    )
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        ev.put_events()
            .entries({
                let mut e = entry("shop", json!({"total": 12.5, "customer": "Ann"}));
                e.event_bus_name = Some("app".into());
                e
            })
            .send()
            .await
            .expect("put events");
        let got = expect_messages(&q, &url, 1).await;
        assert_eq!(
            body(&got[0]),
            json!({"msg": "Ann paid 12.5", "total": 12.5, "who": "Ann", "rule": "t"})
        );

        let err = ev
            .test_event_pattern()
            .event_pattern("{\"source\": \"shop\"}")
            .event(json!({"id": "1", "account": ACCOUNT, "source": "shop", "time": "2030-01-01T00:00:00Z", "region": "us-east-1", "detail-type": "x", "detail": {}}).to_string())
            .send()
            .await
            .expect_err("invalid pattern");
        assert_eq!(err.code(), Some("InvalidEventPatternException"));
        assert_eq!(
            err.message(),
            Some("Event pattern is not valid. Reason: \"source\" must be an object or an array")
        );
        let event = json!({"id": "1", "account": ACCOUNT, "source": "shop", "time": "2030-01-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail-type": "x", "detail": {"n": 5}});
        for (pattern, want) in [
            (json!({"detail": {"n": [{"numeric": [">", 3]}]}}), true),
            (json!({"detail": {"n": [{"numeric": [">", 7]}]}}), false),
        ] {
            let r = ev
                .test_event_pattern()
                .event_pattern(pattern.to_string())
                .event(event.to_string())
                .send()
                .await
                .expect("test");
            assert_eq!(r.result, want, "{pattern}");
        }
    });
}

#[test]
fn rate_rule_fires_once_per_minute_advanced() {
    let s = manual();
    rt().block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "ticks").await;
        let rule_arn = ev
            .put_rule()
            .name("every-minute")
            .schedule_expression("rate(1 minute)")
            .send()
            .await
            .expect("put rule")
            .rule_arn
            .expect("arn");
        ev.put_targets()
            .rule("every-minute")
            .targets(sqs_target("q", &arn))
            .send()
            .await
            .expect("put targets");
        assert!(
            drain(&q, &url, 1).await.is_empty(),
            "nothing before a minute passed"
        );
        let mut times = BTreeSet::new();
        for _ in 0..3 {
            s.advance_clock(60.0);
            let got = expect_messages(&q, &url, 1).await;
            assert_eq!(got.len(), 1, "exactly one firing per minute advanced");
            let e = body(&got[0]);
            assert_eq!(e["source"], "aws.events");
            assert_eq!(e["detail-type"], "Scheduled Event");
            assert_eq!(e["resources"], json!([rule_arn]));
            assert_eq!(e["detail"], json!({}));
            times.insert(e["time"].as_str().expect("time").to_string());
        }
        assert_eq!(times.len(), 3, "three distinct occurrences: {times:?}");
        ev.disable_rule()
            .name("every-minute")
            .send()
            .await
            .expect("disable");
        s.advance_clock(120.0);
        assert!(
            drain(&q, &url, 1).await.is_empty(),
            "a disabled schedule does not fire"
        );
    });
}

#[test]
fn scheduler_at_and_cron_in_a_time_zone() {
    let s = manual();
    rt().block_on(async {
        let (sc, q) = (scheduler_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "scheduled").await;
        let now = server_now_ms(&s);
        let at = chrono::DateTime::from_timestamp_millis(now + 120_000)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let target = |input: &str| {
            aws_sdk_scheduler::types::Target::builder()
                .arn(&arn)
                .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/scheduler"))
                .input(input)
                .build()
                .expect("target")
        };
        let off = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .expect("window");
        sc.create_schedule()
            .name("once")
            .schedule_expression(format!("at({at})"))
            .flexible_time_window(off.clone())
            .action_after_completion(aws_sdk_scheduler::types::ActionAfterCompletion::Delete)
            .target(target("{\"at\": \"<aws.scheduler.scheduled-time>\"}"))
            .send()
            .await
            .expect("create at schedule");
        let got = sc.get_schedule().name("once").send().await.expect("get");
        assert_eq!(
            got.schedule_expression(),
            Some(format!("at({at})").as_str())
        );
        s.advance_clock(60.0);
        assert!(drain(&q, &url, 1).await.is_empty(), "not yet");
        s.advance_clock(61.0);
        let msgs = expect_messages(&q, &url, 1).await;
        assert_eq!(msgs.len(), 1);
        assert_eq!(body(&msgs[0])["at"], format!("{at}Z"));
        let err = sc
            .get_schedule()
            .name("once")
            .send()
            .await
            .expect_err("deleted after completion");
        assert_eq!(err.code(), Some("ResourceNotFoundException"));

        sc.create_schedule()
            .name("tokyo-nine")
            .schedule_expression("cron(0 9 * * ? *)")
            .schedule_expression_timezone("Asia/Tokyo")
            .flexible_time_window(off)
            .target(target("{\"at\": \"<aws.scheduler.scheduled-time>\"}"))
            .send()
            .await
            .expect("create cron schedule");
        let now = server_now_ms(&s);
        let day = 86_400_000;
        let next_midnight_utc = (now / day + 1) * day;
        // Ten seconds of margin: the manual clock still runs in real time, and a loaded machine
        // may take seconds between reading the time and advancing it.
        s.advance_clock((next_midnight_utc - now - 10_000) as f64 / 1000.0);
        assert!(
            drain(&q, &url, 1).await.is_empty(),
            "seconds before 09:00 in Tokyo"
        );
        s.advance_clock(11.0);
        let msgs = expect_messages(&q, &url, 1).await;
        assert_eq!(msgs.len(), 1, "09:00 in Tokyo is 00:00 UTC");
        let at = body(&msgs[0])["at"].as_str().expect("time").to_string();
        assert!(at.ends_with("T00:00:00Z"), "{at}");
        let listed = sc.list_schedules().send().await.expect("list");
        assert_eq!(listed.schedules().len(), 1);
    });
}

#[test]
fn api_calls_arrive_as_cloudtrail_events() {
    let s = in_memory();
    rt().block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "trail").await;
        ev.put_rule()
            .name("queue-created")
            .event_pattern(
                json!({"source": ["aws.sqs"], "detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": ["CreateQueue"]}})
                    .to_string(),
            )
            .send()
            .await
            .expect("put rule");
        ev.put_targets()
            .rule("queue-created")
            .targets(sqs_target("q", &arn))
            .send()
            .await
            .expect("put targets");
        q.create_queue().queue_name("watched").send().await.expect("create");
        q.get_queue_url().queue_name("watched").send().await.expect("a read");
        let got = expect_messages(&q, &url, 1).await;
        assert_eq!(got.len(), 1, "one record, for the mutating call only");
        let e = body(&got[0]);
        assert_eq!(e["source"], "aws.sqs");
        assert_eq!(e["detail-type"], "AWS API Call via CloudTrail");
        let d = &e["detail"];
        assert_eq!(d["eventName"], "CreateQueue");
        assert_eq!(d["eventSource"], "sqs.amazonaws.com");
        assert_eq!(d["eventType"], "AwsApiCall");
        assert_eq!(d["awsRegion"], "us-east-1");
        assert_eq!(d["requestParameters"]["QueueName"], "watched");
        assert!(d["responseElements"]["QueueUrl"].as_str().expect("url").ends_with("/watched"));
        assert!(d["requestID"].is_string() && d["eventID"].is_string());
        assert_eq!(d["userIdentity"]["accountId"], ACCOUNT);
    });
}

/// A zip holding one file.
fn zip_one(name: &str, text: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        w.write_all(text.as_bytes()).expect("zip write");
        w.finish().expect("zip finish");
    }
    out.into_inner()
}

async fn python_function(lc: &aws_sdk_lambda::Client, name: &str, code: &str) -> String {
    lc.create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/lambda"))
        .handler("app.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip_one(
                    "app.py", code,
                )))
                .build(),
        )
        .send()
        .await
        .expect("create function")
        .function_arn
        .expect("arn")
}

#[test]
fn lambda_target_receives_the_event() {
    let s = in_memory();
    rt().block_on(async {
        let ev = events_client(&s);
        let lc = crate::lambda_client(&s);
        let fn_arn = python_function(
            &lc,
            "on-order",
            "import json\ndef handler(event, context):\n    print('GOT ' + json.dumps(event['detail']))\n    return {}\n",
        )
        .await;
        ev.put_rule()
            .name("to-lambda")
            .event_pattern(json!({"source": ["shop"]}).to_string())
            .send()
            .await
            .expect("put rule");
        ev.put_targets()
            .rule("to-lambda")
            .targets(sqs_target("fn", &fn_arn))
            .send()
            .await
            .expect("put targets");
        ev.put_events()
            .entries(entry("shop", json!({"order": "A-17"})))
            .send()
            .await
            .expect("put events");
    });
    let logs = aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .endpoint_url(&s.endpoint)
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                ACCOUNT, "test", None, None, "e2e",
            ))
            .build(),
    );
    let runtime = rt();
    let seen = tsumiki_testkit::wait_for(Duration::from_secs(30), || {
        runtime.block_on(async {
            let out = logs
                .filter_log_events()
                .log_group_name("/aws/lambda/on-order")
                .filter_pattern("GOT")
                .send()
                .await
                .ok()?;
            out.events()
                .iter()
                .any(|e| {
                    e.message()
                        .unwrap_or_default()
                        .contains("\"order\": \"A-17\"")
                })
                .then_some(())
        })
    });
    assert!(seen.is_some(), "the function printed the event's detail");
}

fn attribute(m: &Message, name: &str) -> String {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .unwrap_or_else(|| panic!("attribute {name} on {m:?}"))
        .to_string()
}

#[test]
fn failed_deliveries_are_retried_on_the_clock_then_dead_lettered() {
    let s = manual();
    rt().block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let lc = crate::lambda_client(&s);
        let (dlq_url, dlq_arn) = queue(&q, "dead-letters").await;
        let missing = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-queue");
        let fn_arn = python_function(&lc, "throttled", "def handler(e, c):\n    return {}\n").await;
        lc.put_function_concurrency()
            .function_name("throttled")
            .reserved_concurrent_executions(0)
            .send()
            .await
            .expect("reserve 0");
        let rule_arn = ev
            .put_rule()
            .name("fails")
            .event_pattern(json!({"source": ["shop"]}).to_string())
            .send()
            .await
            .expect("put rule")
            .rule_arn
            .expect("arn");
        let dlq = DeadLetterConfig::builder().arn(&dlq_arn).build();
        ev.put_targets()
            .rule("fails")
            .targets(
                Target::builder()
                    .id("missing")
                    .arn(&missing)
                    .dead_letter_config(dlq.clone())
                    .build()
                    .expect("target"),
            )
            .targets(
                Target::builder()
                    .id("throttled")
                    .arn(&fn_arn)
                    .dead_letter_config(dlq)
                    .retry_policy(
                        RetryPolicy::builder()
                            .maximum_retry_attempts(2)
                            .maximum_event_age_in_seconds(3600)
                            .build(),
                    )
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        ev.put_events()
            .entries(entry("shop", json!({"n": 1})))
            .send()
            .await
            .expect("put events");

        // A queue that does not exist cannot be fixed by retrying: dead-lettered at once.
        let got = expect_messages(&q, &dlq_url, 1).await;
        assert_eq!(got.len(), 1, "only the missing queue's event so far");
        assert_eq!(attribute(&got[0], "TARGET_ARN"), missing);
        assert_eq!(attribute(&got[0], "RULE_ARN"), rule_arn);
        assert_eq!(attribute(&got[0], "ERROR_CODE"), "NO_RESOURCE");
        assert!(attribute(&got[0], "ERROR_MESSAGE").contains("QueueDoesNotExist"));
        assert_eq!(body(&got[0])["detail"], json!({"n": 1}));

        // A Lambda target is invoked asynchronously: Lambda queues the event even while the
        // function is throttled (its async invoker retries it), so EventBridge's delivery
        // succeeded and nothing of it is dead-lettered here.
        s.advance_clock(11.0);
        s.advance_clock(21.0);
        assert!(
            drain(&q, &dlq_url, 2).await.is_empty(),
            "Lambda accepted the event; EventBridge does not retry it"
        );
    });
}

#[test]
#[allow(clippy::disallowed_methods)] // A real pause puts each kill at another moment of the firing.
fn schedule_firings_survive_kill_9_exactly_once() {
    let mut s = server(Options {
        manual_clock: true,
        ..Options::default()
    });
    let runtime = rt();
    let url = runtime.block_on(async {
        let (ev, q) = (events_client(&s), sqs(&s));
        let (url, arn) = queue(&q, "crash-ticks").await;
        q.set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::VisibilityTimeout, "0")
            .send()
            .await
            .expect("attributes");
        ev.put_rule()
            .name("tick")
            .schedule_expression("rate(1 minute)")
            .send()
            .await
            .expect("put rule");
        ev.put_targets()
            .rule("tick")
            .targets(sqs_target("q", &arn))
            .send()
            .await
            .expect("put targets");
        url
    });
    let rounds = 6;
    for i in 0..rounds {
        s.advance_clock(60.0);
        // Kill at varying moments around the firing: at once, or a little later.
        std::thread::sleep(Duration::from_millis([0, 2, 5, 10, 30, 100][i % 6]));
        let before = server_now_ms(&s);
        s.restart();
        // The manual clock restarts at the wall clock; move it back to where it was.
        let lag = before - server_now_ms(&s);
        if lag > 0 {
            s.advance_clock(lag as f64 / 1000.0);
        }
    }
    runtime.block_on(async {
        let q = sqs(&s);
        let url = url.replace(url.split('/').nth(2).expect("authority"), s.authority());
        let got = expect_messages(&q, &url, rounds).await;
        let times: Vec<String> = got
            .iter()
            .map(|m| body(m)["time"].as_str().expect("time").to_string())
            .collect();
        let distinct: BTreeSet<&String> = times.iter().collect();
        assert_eq!(
            distinct.len(),
            rounds,
            "every occurrence delivered: {times:?}"
        );
        // Each occurrence fires once (its firing is recorded before anything is sent), but a
        // kill between a target's acknowledgement and the record of it repeats that one
        // delivery after the restart: at-least-once, as AWS documents for EventBridge targets.
        // So at most one duplicate per kill.
        assert!(
            times.len() <= 2 * rounds,
            "at most one repeat per kill: {times:?}"
        );
    });
}
