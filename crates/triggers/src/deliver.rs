//! Sending a document to a destination ARN (SQS queue, Lambda function, EventBridge bus) by
//! calling that service's operation through `Services`, as AWS's service principals do.

use std::sync::OnceLock;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::Services;

/// The registry of served services, filled in once every service exists.
pub(crate) type Registry = OnceLock<Services>;

fn context(account: &str, region: &str) -> RequestContext {
    RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        request_id: tsumiki_core::ids::request_id(),
        base_url: format!("https://sqs.{region}.amazonaws.com"),
        access_key: None,
        path: "/".to_string(),
    }
}

/// Where a destination ARN points.
pub(crate) enum Destination<'a> {
    Sqs {
        region: &'a str,
        account: &'a str,
        name: &'a str,
    },
    Lambda {
        region: &'a str,
        account: &'a str,
        function: &'a str,
    },
    EventBus {
        region: &'a str,
        account: &'a str,
        arn: &'a str,
    },
    Unsupported(&'a str),
}

pub(crate) fn parse(arn: &str) -> Destination<'_> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", region, account, name] => Destination::Sqs {
            region,
            account,
            name,
        },
        ["arn", _, "lambda", region, account, rest] if rest.starts_with("function:") => {
            Destination::Lambda {
                region,
                account,
                function: &rest["function:".len()..],
            }
        }
        ["arn", _, "events", region, account, rest] if rest.starts_with("event-bus/") => {
            Destination::EventBus {
                region,
                account,
                arn,
            }
        }
        _ => Destination::Unsupported(arn),
    }
}

/// Sends `body` to an SQS queue with optional message attributes.
pub(crate) async fn to_sqs(
    services: &Services,
    region: &str,
    account: &str,
    name: &str,
    body: &str,
    attributes: Option<Value>,
) -> Result<(), AwsError> {
    let sqs = services.get("sqs").ok_or_else(AwsError::internal)?.clone();
    let ctx = context(account, region);
    let mut input = json!({
        "QueueUrl": format!("https://sqs.{region}.amazonaws.com/{account}/{name}"),
        "MessageBody": body,
    });
    if let Some(a) = attributes {
        input["MessageAttributes"] = a;
    }
    sqs.call(&ctx, "SendMessage", input).await.map(|_| ())
}

/// Puts one event on an EventBridge bus.
pub(crate) async fn to_event_bus(
    services: &Services,
    region: &str,
    account: &str,
    bus_arn: &str,
    detail_type: &str,
    detail: &Value,
) -> Result<(), AwsError> {
    let events = services.get("events").ok_or_else(|| {
        AwsError::not_implemented("events", "PutEvents (EventBridge destinations)")
    })?;
    let ctx = context(account, region);
    let out = events
        .call(
            &ctx,
            "PutEvents",
            json!({"Entries": [{
                "Source": "lambda",
                "DetailType": detail_type,
                "Detail": detail.to_string(),
                "EventBusName": bus_arn,
            }]}),
        )
        .await?;
    if out
        .get("FailedEntryCount")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0
    {
        return Err(AwsError::new(
            "EventBridgeDeliveryFailed",
            500,
            out.to_string(),
        ));
    }
    Ok(())
}
