//! tsumiki's own endpoints and the gateway's answers to requests it cannot route.

use tsumiki_testkit::Options;

use crate::{in_memory, server};

#[test]
fn health_names_version_and_services() {
    let s = in_memory();
    let (status, body) = s.http("GET", "/_tsumiki/health", &[], b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "running");
    assert_eq!(v["services"]["sqs"], "running");
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn clock_advance_needs_manual_clock() {
    let s = in_memory();
    let (status, _) = s.http("POST", "/_tsumiki/clock/advance", &[], br#"{"seconds": 5}"#);
    assert_eq!(status, 409);

    let m = server(Options {
        in_memory: true,
        manual_clock: true,
        ..Options::default()
    });
    let before: serde_json::Value =
        serde_json::from_str(&m.http("GET", "/_tsumiki/clock", &[], b"").1).expect("json");
    let (status, body) = m.http(
        "POST",
        "/_tsumiki/clock/advance",
        &[],
        br#"{"seconds": 3600}"#,
    );
    assert_eq!(status, 200, "{body}");
    let after: serde_json::Value = serde_json::from_str(&body).expect("json");
    let moved = after["now_ms"].as_i64().expect("ms") - before["now_ms"].as_i64().expect("ms");
    assert!(moved >= 3_600_000, "the clock moved {moved} ms");
    let (status, _) = m.http("POST", "/_tsumiki/clock/advance", &[], b"{\"seconds\": -1}");
    assert_eq!(status, 400);
}

#[test]
fn unknown_services_and_operations_answer_aws_errors() {
    let s = in_memory();
    let (status, body) = s.http(
        "POST",
        "/",
        &[
            (
                "X-Amz-Target",
                "AWSCognitoIdentityProviderService.ListUserPools",
            ),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        b"{}",
    );
    assert_eq!(status, 501);
    assert!(
        body.contains("NotImplemented") && body.contains("AWSCognitoIdentityProviderService"),
        "{body}"
    );

    let (status, body) = s.http(
        "POST",
        "/",
        &[
            ("X-Amz-Target", "AmazonSQS.FlyToTheMoon"),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        b"{}",
    );
    assert_eq!(status, 400);
    assert!(body.contains("UnknownOperationException"), "{body}");

    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=00";
    let (status, body) = s.http("GET", "/some/path", &[("Authorization", auth)], b"");
    assert_eq!(status, 501);
    assert!(body.contains("cognito-idp"), "{body}");
}

#[test]
fn reset_forgets_everything() {
    let s = in_memory();
    let form = "Action=CreateQueue&QueueName=resetme";
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(s.http("POST", "/", &ct, form.as_bytes()).0, 200);
    assert!(
        s.http("POST", "/", &ct, b"Action=ListQueues")
            .1
            .contains("resetme")
    );
    assert_eq!(s.http("POST", "/moto-api/reset", &[], b"").0, 200);
    assert!(
        !s.http("POST", "/", &ct, b"Action=ListQueues")
            .1
            .contains("resetme")
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut s = server(Options::default());
    assert!(
        s.terminate(),
        "tsumiki did not exit cleanly on SIGTERM:\n{}",
        s.log_text()
    );
}
