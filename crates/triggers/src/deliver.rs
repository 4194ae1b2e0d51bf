//! Sending a document to a destination ARN (SQS queue, SNS topic, Lambda function, EventBridge
//! bus) by
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
    Sns {
        region: &'a str,
        account: &'a str,
        arn: &'a str,
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
        ["arn", _, "sns", region, account, topic] if !topic.is_empty() && !topic.contains(':') => {
            Destination::Sns {
                region,
                account,
                arn,
            }
        }
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

/// Publishes `message` to an SNS topic (with optional message attributes), as Lambda's service
/// principal does for SNS destinations and dead-letter topics.
pub(crate) async fn to_sns(
    services: &Services,
    region: &str,
    account: &str,
    topic_arn: &str,
    message: &str,
    attributes: Option<Value>,
) -> Result<(), AwsError> {
    let sns = services.get("sns").ok_or_else(|| {
        AwsError::not_implemented("sns", "Publish (SNS destinations and dead-letter topics)")
    })?;
    let mut ctx = context(account, region);
    ctx.base_url = format!("https://sns.{region}.amazonaws.com");
    let mut input = json!({"TopicArn": topic_arn, "Message": message});
    if let Some(a) = attributes {
        input["MessageAttributes"] = a;
    }
    sns.call(&ctx, "Publish", input).await.map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::Arc;

    /// An SNS stand-in that remembers what was published.
    struct Topic(parking_lot::Mutex<Vec<Value>>);

    #[async_trait]
    impl tsumiki_ports::Service for Topic {
        fn name(&self) -> &'static str {
            "sns"
        }
        async fn call(
            &self,
            _ctx: &RequestContext,
            operation: &str,
            input: Value,
        ) -> Result<Value, AwsError> {
            assert_eq!(operation, "Publish");
            self.0.lock().push(input);
            Ok(json!({"MessageId": "m"}))
        }
        async fn reset(&self) -> Result<(), AwsError> {
            Ok(())
        }
    }

    #[test]
    fn destination_arns_are_told_apart() {
        let arn = "arn:aws:sns:us-east-1:123456789012:alerts";
        assert!(
            matches!(parse(arn), Destination::Sns { arn: a, region: "us-east-1", .. } if a == arn)
        );
        assert!(matches!(
            parse("arn:aws:sqs:us-east-1:123456789012:q"),
            Destination::Sqs { name: "q", .. }
        ));
        assert!(matches!(
            parse("arn:aws:s3:::bucket"),
            Destination::Unsupported(_)
        ));
    }

    #[tokio::test]
    async fn sns_destinations_publish_to_the_topic_or_fail_clearly() {
        let arn = "arn:aws:sns:us-east-1:123456789012:alerts";
        let e = to_sns(
            &Services::default(),
            "us-east-1",
            "123456789012",
            arn,
            "m",
            None,
        )
        .await
        .expect_err("no SNS served");
        assert_eq!(e.code, AwsError::not_implemented("sns", "x").code);
        let topic = Arc::new(Topic(parking_lot::Mutex::new(Vec::new())));
        let mut services = Services::default();
        services.register(topic.clone());
        let attrs = json!({"RequestID": {"DataType": "String", "StringValue": "r"}});
        to_sns(
            &services,
            "us-east-1",
            "123456789012",
            arn,
            "{\"a\":1}",
            Some(attrs.clone()),
        )
        .await
        .expect("published");
        let sent = topic.0.lock().clone();
        assert_eq!(
            sent,
            vec![json!({"TopicArn": arn, "Message": "{\"a\":1}", "MessageAttributes": attrs})]
        );
    }
}
