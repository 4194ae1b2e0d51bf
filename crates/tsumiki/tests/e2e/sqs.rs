//! SQS through the AWS SDK for Rust, as an application would use it.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use tsumiki_testkit::Options;

use crate::{in_memory, server, sqs_client, sqs_client_as};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn send_receive_delete_with_attributes() {
    let s = in_memory();
    rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .create_queue()
            .queue_name("basic")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        assert!(url.ends_with("/000000000000/basic"), "{url}");
        let sent = c
            .send_message()
            .queue_url(&url)
            .message_body("hello")
            .message_attributes(
                "color",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("blue")
                    .build()
                    .expect("attr"),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(
            sent.md5_of_message_body(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        assert!(sent.md5_of_message_attributes().is_some());

        let got = c
            .receive_message()
            .queue_url(&url)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let msgs = got.messages();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.body(), Some("hello"));
        assert_eq!(m.message_id(), sent.message_id());
        assert_eq!(
            m.md5_of_message_attributes(),
            sent.md5_of_message_attributes()
        );
        let attrs = m.attributes().expect("system attributes");
        assert_eq!(
            attrs
                .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            m.message_attributes()
                .and_then(|a| a.get("color"))
                .and_then(|v| v.string_value()),
            Some("blue")
        );

        // In flight: a second receive sees nothing.
        let again = c
            .receive_message()
            .queue_url(&url)
            .send()
            .await
            .expect("receive");
        assert!(again.messages().is_empty());

        c.delete_message()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle().expect("handle"))
            .send()
            .await
            .expect("delete");
        let attrs = c
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes");
        let attrs = attrs.attributes().expect("map");
        assert_eq!(attrs[&QueueAttributeName::ApproximateNumberOfMessages], "0");
        assert_eq!(
            attrs[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
            "0"
        );
        assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "30");
        assert_eq!(
            attrs[&QueueAttributeName::QueueArn],
            "arn:aws:sqs:us-east-1:000000000000:basic"
        );
    });
}

#[test]
fn typed_errors_reach_the_sdk() {
    let s = in_memory();
    rt().block_on(async {
        let c = sqs_client(&s);
        let err = c
            .get_queue_url()
            .queue_name("missing")
            .send()
            .await
            .expect_err("no such queue");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()),
            "{err:?}"
        );

        let url = c
            .create_queue()
            .queue_name("errs")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        let err = c
            .create_queue()
            .queue_name("errs")
            .attributes(QueueAttributeName::VisibilityTimeout, "99")
            .send()
            .await
            .expect_err("different attributes");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_queue_name_exists()),
            "{err:?}"
        );

        let err = c
            .delete_message()
            .queue_url(&url)
            .receipt_handle("garbage")
            .send()
            .await
            .expect_err("bad handle");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_receipt_handle_is_invalid()),
            "{err:?}"
        );

        let entries: Vec<_> = (0..11)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body("x")
                    .build()
                    .expect("entry")
            })
            .collect();
        let err = c
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect_err("too many");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_too_many_entries_in_batch_request()),
            "{err:?}"
        );

        let big = "x".repeat(1_048_577);
        let err = c
            .send_message()
            .queue_url(&url)
            .message_body(big)
            .send()
            .await
            .expect_err("too big");
        assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    });
}

#[test]
fn accounts_and_regions_are_isolated() {
    let s = in_memory();
    rt().block_on(async {
        let a = sqs_client_as(&s, "111111111111", "us-east-1");
        let b = sqs_client_as(&s, "222222222222", "us-east-1");
        let a_west = sqs_client_as(&s, "111111111111", "eu-west-1");
        let url = a
            .create_queue()
            .queue_name("mine")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        assert!(url.contains("/111111111111/mine"), "{url}");
        assert!(
            b.list_queues()
                .send()
                .await
                .expect("list")
                .queue_urls()
                .is_empty()
        );
        assert!(
            a_west
                .list_queues()
                .send()
                .await
                .expect("list")
                .queue_urls()
                .is_empty()
        );
        assert_eq!(
            a.list_queues()
                .send()
                .await
                .expect("list")
                .queue_urls()
                .len(),
            1
        );
    });
}

#[test]
fn batch_send_reports_entries_separately() {
    let s = in_memory();
    rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .create_queue()
            .queue_name("batch")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        let out = c
            .send_message_batch()
            .queue_url(&url)
            .entries(
                SendMessageBatchRequestEntry::builder()
                    .id("ok")
                    .message_body("one")
                    .build()
                    .expect("entry"),
            )
            .entries(
                SendMessageBatchRequestEntry::builder()
                    .id("bad")
                    .message_body("two")
                    .delay_seconds(901)
                    .build()
                    .expect("entry"),
            )
            .send()
            .await
            .expect("batch");
        assert_eq!(out.successful().len(), 1);
        assert_eq!(out.successful()[0].id(), "ok");
        assert_eq!(out.failed().len(), 1);
        assert_eq!(out.failed()[0].id(), "bad");
        assert!(out.failed()[0].sender_fault());
    });
}

#[test]
#[allow(clippy::disallowed_methods)] // A real pause lets the poll reach the server first.
fn long_poll_returns_when_a_message_arrives() {
    // With a manual clock that never moves, a 20 s poll can only end because a message came.
    let s = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .create_queue()
            .queue_name("poll")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        let (c2, url2) = (c.clone(), url.clone());
        let poll = tokio::spawn(async move {
            c2.receive_message()
                .queue_url(url2)
                .wait_time_seconds(20)
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !poll.is_finished(),
            "the poll returned before any message was sent"
        );
        c.send_message()
            .queue_url(&url)
            .message_body("wake")
            .send()
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_secs(60), poll)
            .await
            .expect("the poll woke on arrival")
            .expect("join")
            .expect("receive");
        assert_eq!(got.messages().len(), 1);
    });
}

#[test]
fn visibility_delay_and_redrive_follow_the_clock() {
    let s = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    rt().block_on(async {
        let c = sqs_client(&s);
        let dlq = c
            .create_queue()
            .queue_name("dlq")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        let dlq_arn = "arn:aws:sqs:us-east-1:000000000000:dlq";
        let url = c
            .create_queue()
            .queue_name("work")
            .attributes(QueueAttributeName::VisibilityTimeout, "600")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#),
            )
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        c.send_message()
            .queue_url(&url)
            .message_body("delayed")
            .delay_seconds(900)
            .send()
            .await
            .expect("send");
        assert!(
            c.receive_message()
                .queue_url(&url)
                .send()
                .await
                .expect("receive")
                .messages()
                .is_empty()
        );
        s.advance_clock(900.0);
        for round in 1..=2 {
            let got = c
                .receive_message()
                .queue_url(&url)
                .send()
                .await
                .expect("receive");
            assert_eq!(got.messages().len(), 1, "round {round}");
            assert!(
                c.receive_message()
                    .queue_url(&url)
                    .send()
                    .await
                    .expect("receive")
                    .messages()
                    .is_empty()
            );
            s.advance_clock(600.0);
        }
        // The third receive finds the message past maxReceiveCount: it goes to the DLQ.
        assert!(
            c.receive_message()
                .queue_url(&url)
                .send()
                .await
                .expect("receive")
                .messages()
                .is_empty()
        );
        let dead = c
            .receive_message()
            .queue_url(&dlq)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive dlq");
        assert_eq!(dead.messages().len(), 1);
        assert_eq!(dead.messages()[0].body(), Some("delayed"));
        let sources = c
            .list_dead_letter_source_queues()
            .queue_url(&dlq)
            .send()
            .await
            .expect("sources");
        assert_eq!(sources.queue_urls(), std::slice::from_ref(&url));

        // Retention: messages older than the retention period disappear.
        c.set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "60")
            .send()
            .await
            .expect("set");
        c.send_message()
            .queue_url(&url)
            .message_body("old")
            .send()
            .await
            .expect("send");
        s.advance_clock(61.0);
        assert!(
            c.receive_message()
                .queue_url(&url)
                .send()
                .await
                .expect("receive")
                .messages()
                .is_empty()
        );
    });
}

#[test]
fn fifo_orders_per_group_and_deduplicates() {
    let s = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .create_queue()
            .queue_name("orders.fifo")
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        let mut sequence = Vec::new();
        for (i, group) in ["a", "b", "a", "b", "a"].iter().enumerate() {
            let out = c
                .send_message()
                .queue_url(&url)
                .message_body(format!("{group}{i}"))
                .message_group_id(*group)
                .message_deduplication_id(format!("d{i}"))
                .send()
                .await
                .expect("send");
            sequence.push(
                out.sequence_number()
                    .expect("sequence")
                    .parse::<u128>()
                    .expect("number"),
            );
        }
        assert!(sequence.windows(2).all(|w| w[0] < w[1]), "{sequence:?}");
        // A retry with the same deduplication id is accepted and dropped.
        let dup = c
            .send_message()
            .queue_url(&url)
            .message_body("a0-again")
            .message_group_id("a")
            .message_deduplication_id("d0")
            .send()
            .await
            .expect("send duplicate");
        assert_eq!(
            dup.sequence_number()
                .map(|s| s.parse::<u128>().expect("number")),
            Some(sequence[0])
        );

        let got = c
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(2)
            .send()
            .await
            .expect("receive");
        let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
        assert_eq!(
            bodies,
            ["a0", "a2"],
            "the first group's messages come first, in order"
        );
        // Group a is blocked while its messages are in flight; group b is not.
        let got = c
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
        assert_eq!(bodies, ["b1", "b3"]);
        assert!(
            c.receive_message()
                .queue_url(&url)
                .send()
                .await
                .expect("receive")
                .messages()
                .is_empty()
        );

        // After the deduplication window the same id is a new message.
        s.advance_clock(301.0);
        let fresh = c
            .send_message()
            .queue_url(&url)
            .message_body("a0-later")
            .message_group_id("c")
            .message_deduplication_id("d0")
            .send()
            .await
            .expect("send");
        assert_ne!(fresh.message_id(), None);
        let mut seen = HashMap::new();
        loop {
            let got = c
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                *seen.entry(m.body().unwrap_or("").to_string()).or_insert(0) += 1;
                c.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().expect("handle"))
                    .send()
                    .await
                    .expect("delete");
            }
        }
        // Visibility timeouts of the first receives expired with the 301 s advance.
        assert_eq!(seen.get("a0-later"), Some(&1), "{seen:?}");
        assert_eq!(seen.get("a4"), Some(&1), "{seen:?}");
    });
}

#[test]
fn state_survives_a_clean_restart() {
    let mut s = server(Options::default());
    let url_path = rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .create_queue()
            .queue_name("durable")
            .attributes(QueueAttributeName::DelaySeconds, "5")
            .tags("team", "blocks")
            .send()
            .await
            .expect("create")
            .queue_url
            .expect("url");
        c.send_message()
            .queue_url(&url)
            .message_body("kept")
            .delay_seconds(0)
            .send()
            .await
            .expect("send");
        url.split_once("/000000000000/")
            .map(|(_, name)| name.to_string())
            .expect("path")
    });
    assert!(s.terminate(), "clean exit");
    s.restart();
    rt().block_on(async {
        let c = sqs_client(&s);
        let url = c
            .get_queue_url()
            .queue_name(&url_path)
            .send()
            .await
            .expect("url")
            .queue_url
            .expect("url");
        let attrs = c
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::DelaySeconds)
            .send()
            .await
            .expect("attributes");
        assert_eq!(
            attrs.attributes().expect("map")[&QueueAttributeName::DelaySeconds],
            "5"
        );
        let tags = c
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .expect("tags");
        assert_eq!(
            tags.tags().and_then(|t| t.get("team")).map(String::as_str),
            Some("blocks")
        );
        let got = c
            .receive_message()
            .queue_url(&url)
            .send()
            .await
            .expect("receive");
        assert_eq!(got.messages().first().and_then(|m| m.body()), Some("kept"));
    });
}
