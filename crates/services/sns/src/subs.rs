//! Subscriptions: subscribe (SQS and Lambda confirmed at once; HTTP and email through the
//! confirmation handshake), confirm, unsubscribe, list, attributes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::filter_policy::{FilterPolicy, Scope};
use tsumiki_store::Batch;

use crate::state::{self, Subscription};
use crate::{Sns, invalid, store_error, str_of, string_map, topic_arn, topic_not_found};

const PAGE: usize = 100;

const SETTABLE: &[&str] = &[
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
];

fn sub_not_found() -> AwsError {
    AwsError::new("NotFound", 404, "Subscription does not exist")
}

/// Checks one subscription attribute against the subscription's protocol and the attributes
/// it will have; answers the compiled filter when the attribute is a filter setting.
fn check_attribute(
    protocol: &str,
    name: &str,
    value: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    if !SETTABLE.contains(&name) {
        return Err(invalid("AttributeName"));
    }
    match name {
        "RawMessageDelivery" => {
            if value != "true" && value != "false" {
                return Err(invalid(
                    "Attributes Reason: RawMessageDelivery: Invalid value",
                ));
            }
            if !matches!(protocol, "sqs" | "http" | "https" | "firehose") {
                return Err(invalid(format!(
                    "Attributes Reason: Delivery protocol [{protocol}] does not support raw message delivery."
                )));
            }
        }
        "FilterPolicy" | "FilterPolicyScope" => {
            let scope_text = if name == "FilterPolicyScope" {
                value
            } else {
                attributes
                    .get("FilterPolicyScope")
                    .map_or("MessageAttributes", String::as_str)
            };
            let scope = match scope_text {
                "MessageAttributes" => Scope::MessageAttributes,
                "MessageBody" => Scope::MessageBody,
                other => {
                    return Err(invalid(format!(
                        "Attributes Reason: FilterPolicyScope: Invalid filter policy scope: {other}"
                    )));
                }
            };
            let policy = if name == "FilterPolicy" {
                Some(value)
            } else {
                attributes.get("FilterPolicy").map(String::as_str)
            };
            if let Some(p) = policy.filter(|p| !p.is_empty()) {
                FilterPolicy::parse(p, scope)
                    .map_err(|e| invalid(format!("FilterPolicy: {}", e.reason())))?;
            }
        }
        "RedrivePolicy" if !value.is_empty() => {
            let v: Value = serde_json::from_str(value)
                .map_err(|_| invalid("RedrivePolicy: Redrive policy is not a valid JSON"))?;
            let target = str_of(&v, "deadLetterTargetArn").ok_or_else(|| {
                invalid("RedrivePolicy: deadLetterTargetArn is missing in the redrive policy")
            })?;
            if !matches!(tsumiki_core::ids::parse_arn(target), Some(("sqs", _, _, q)) if !q.is_empty())
            {
                return Err(invalid(
                    "RedrivePolicy: deadLetterTargetArn is an invalid arn",
                ));
            }
        }
        "DeliveryPolicy" if !value.is_empty() && serde_json::from_str::<Value>(value).is_err() => {
            return Err(invalid("DeliveryPolicy: failed to parse JSON"));
        }
        _ => {}
    }
    Ok(())
}

fn apply_attribute(attributes: &mut BTreeMap<String, String>, name: &str, value: &str) {
    if value.is_empty() && matches!(name, "FilterPolicy" | "RedrivePolicy" | "DeliveryPolicy") {
        attributes.remove(name);
    } else {
        attributes.insert(name.to_string(), value.to_string());
    }
}

fn check_endpoint(protocol: &str, endpoint: &str) -> Result<(), AwsError> {
    let arn_of = |service: &str| matches!(tsumiki_core::ids::parse_arn(endpoint), Some((s, _, _, r)) if s == service && !r.is_empty());
    match protocol {
        "sqs" if !arn_of("sqs") => Err(invalid("SQS endpoint ARN")),
        "lambda" if !arn_of("lambda") => Err(invalid("Lambda endpoint ARN")),
        "http" if !endpoint.starts_with("http://") => {
            Err(invalid("Endpoint must match the specified protocol"))
        }
        "https" if !endpoint.starts_with("https://") => {
            Err(invalid("Endpoint must match the specified protocol"))
        }
        "email" | "email-json" if !endpoint.contains('@') => Err(invalid("Email address")),
        "firehose" if !arn_of("firehose") => Err(invalid("Firehose endpoint ARN")),
        "sqs" | "lambda" | "http" | "https" | "email" | "email-json" | "firehose" => Ok(()),
        "sms" | "application" => Err(AwsError::not_implemented(
            "sns",
            &format!("Subscribe (protocol {protocol})"),
        )),
        other => Err(invalid(format!(
            "Amazon SNS does not support this protocol string: {other}"
        ))),
    }
}

fn token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub async fn subscribe(sns: &Sns, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let arn = topic_arn(
        ctx,
        str_of(input, "TopicArn").unwrap_or_default(),
        "TopicArn",
    )?;
    let protocol = str_of(input, "Protocol")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let endpoint = str_of(input, "Endpoint").unwrap_or_default().to_string();
    let given = string_map(input.get("Attributes"));
    let return_arn = input
        .get("ReturnSubscriptionArn")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    check_endpoint(&protocol, &endpoint)?;
    // SNS writes to a delivery stream with the role the subscriber names.
    if protocol == "firehose" && !given.contains_key("SubscriptionRoleArn") {
        return Err(invalid(
            "Attributes Reason: SubscriptionRoleArn is required for the firehose protocol",
        ));
    }
    let mut attributes = BTreeMap::new();
    for (k, v) in &given {
        apply_attribute(&mut attributes, k, v);
    }
    for (k, v) in &given {
        check_attribute(&protocol, k, v, &attributes).map_err(|e| {
            if e.message == "Invalid parameter: AttributeName" {
                invalid(format!("Attributes Reason: Unknown attribute {k}"))
            } else {
                e
            }
        })?;
    }
    let (commit, sub) = {
        let mut state = sns.state.lock();
        let topic = state.topics.get(arn).ok_or_else(topic_not_found)?;
        if topic.fifo() && protocol != "sqs" {
            return Err(invalid(format!("Invalid protocol type: {protocol}")));
        }
        if !topic.fifo() && protocol == "sqs" && endpoint.ends_with(".fifo") {
            return Err(invalid(
                "Endpoint Reason: FIFO SQS Queues can not be subscribed to standard SNS topics",
            ));
        }
        if let Some(existing) = state
            .subs_of(arn)
            .find(|s| s.protocol == protocol && s.endpoint == endpoint)
        {
            let same = given
                .iter()
                .all(|(k, v)| existing.attributes.get(k) == Some(v));
            if !same {
                return Err(invalid(
                    "Attributes Reason: Subscription already exists with different attributes",
                ));
            }
            let shown = if existing.confirmed || return_arn {
                existing.arn.clone()
            } else {
                "pending confirmation".to_string()
            };
            return Ok(json!({"SubscriptionArn": shown}));
        }
        let confirmed = matches!(protocol.as_str(), "sqs" | "lambda" | "firehose");
        let mut sub = Subscription {
            arn: format!("{arn}:{}", uuid::Uuid::new_v4()),
            topic_arn: arn.to_string(),
            protocol: protocol.clone(),
            endpoint,
            owner: ctx.account.clone(),
            attributes,
            confirmed,
            token: token(),
            filter: None,
        };
        sub.compile_filter();
        let mut batch = Batch::new();
        state::put_sub(&mut batch, &sub);
        state.subs.insert(sub.arn.clone(), sub.clone());
        (sns.store.commit(batch), sub)
    };
    commit.await.map_err(store_error)?;
    if !sub.confirmed {
        sns.request_confirmation(&sub);
    }
    let shown = if sub.confirmed || return_arn {
        sub.arn.clone()
    } else {
        "pending confirmation".to_string()
    };
    Ok(json!({"SubscriptionArn": shown}))
}

/// Confirms by token. The SubscribeURL reaches this unsigned, so the topic is found by its
/// ARN alone, not in the caller's account.
pub async fn confirm_subscription(
    sns: &Sns,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = str_of(input, "TopicArn").unwrap_or_default();
    let token = str_of(input, "Token").unwrap_or_default();
    if !matches!(tsumiki_core::ids::parse_arn(arn), Some(("sns", _, _, n)) if !n.is_empty()) {
        return Err(invalid("TopicArn"));
    }
    let (commit, sub_arn) = {
        let mut state = sns.state.lock();
        if !state.topics.contains_key(arn) {
            return Err(topic_not_found());
        }
        let Some(sub_arn) = state
            .subs_of(arn)
            .find(|s| s.token == token)
            .map(|s| s.arn.clone())
        else {
            return Err(invalid("Token"));
        };
        let sub = state.subs.get_mut(&sub_arn).expect("found above");
        if sub.confirmed {
            return Ok(json!({"SubscriptionArn": sub_arn}));
        }
        sub.confirmed = true;
        let mut batch = Batch::new();
        state::put_sub(&mut batch, sub);
        (sns.store.commit(batch), sub_arn)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"SubscriptionArn": sub_arn}))
}

fn parse_sub_arn(arn: &str) -> Result<(), AwsError> {
    let parts = arn.split(':').count();
    if arn == "pending confirmation" || parts < 6 {
        return Err(invalid(format!(
            "SubscriptionArn Reason: An ARN must have at least 6 elements, not {parts}"
        )));
    }
    match tsumiki_core::ids::parse_arn(arn) {
        Some(("sns", _, _, r)) if r.contains(':') => Ok(()),
        _ => Err(invalid("SubscriptionArn")),
    }
}

pub async fn unsubscribe(
    sns: &Sns,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = str_of(input, "SubscriptionArn").unwrap_or_default();
    parse_sub_arn(arn)?;
    let commit = {
        let mut state = sns.state.lock();
        if state.subs.remove(arn).is_none() {
            return Err(sub_not_found());
        }
        sns.dispatch.forget_subscription(arn);
        let mut batch = Batch::new();
        state::delete_sub(&mut batch, arn);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

fn listed(s: &Subscription) -> Value {
    json!({
        "SubscriptionArn": if s.confirmed { s.arn.as_str() } else { "PendingConfirmation" },
        "Owner": s.owner,
        "Protocol": s.protocol,
        "Endpoint": s.endpoint,
        "TopicArn": s.topic_arn,
    })
}

fn page<'a>(subs: impl Iterator<Item = &'a Subscription>, after: Option<&str>) -> Value {
    let mut items: Vec<&Subscription> = subs
        .filter(|s| after.is_none_or(|a| s.arn.as_str() > a))
        .take(PAGE + 1)
        .collect();
    let more = items.len() > PAGE;
    items.truncate(PAGE);
    let mut out = json!({"Subscriptions": items.iter().map(|s| listed(s)).collect::<Vec<_>>()});
    if more && let Some(last) = items.last() {
        out["NextToken"] = json!(last.arn);
    }
    out
}

pub fn list_subscriptions(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let state = sns.state.lock();
    let prefix = format!("arn:aws:sns:{}:{}:", ctx.region, ctx.account);
    Ok(page(
        state.subs.values().filter(|s| s.arn.starts_with(&prefix)),
        str_of(input, "NextToken"),
    ))
}

pub fn list_subscriptions_by_topic(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = topic_arn(
        ctx,
        str_of(input, "TopicArn").unwrap_or_default(),
        "TopicArn",
    )?;
    let state = sns.state.lock();
    if !state.topics.contains_key(arn) {
        return Err(topic_not_found());
    }
    Ok(page(state.subs_of(arn), str_of(input, "NextToken")))
}

pub fn get_subscription_attributes(
    sns: &Sns,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = str_of(input, "SubscriptionArn").unwrap_or_default();
    parse_sub_arn(arn)?;
    let state = sns.state.lock();
    let s = state.subs.get(arn).ok_or_else(sub_not_found)?;
    let mut attrs = serde_json::Map::new();
    attrs.insert("SubscriptionArn".into(), json!(s.arn));
    attrs.insert("TopicArn".into(), json!(s.topic_arn));
    attrs.insert("Owner".into(), json!(s.owner));
    attrs.insert("Protocol".into(), json!(s.protocol));
    attrs.insert("Endpoint".into(), json!(s.endpoint));
    attrs.insert(
        "ConfirmationWasAuthenticated".into(),
        json!(s.confirmed.to_string()),
    );
    attrs.insert(
        "PendingConfirmation".into(),
        json!((!s.confirmed).to_string()),
    );
    attrs.insert("RawMessageDelivery".into(), json!("false"));
    attrs.insert(
        "SubscriptionPrincipal".into(),
        json!(format!("arn:aws:iam::{}:root", s.owner)),
    );
    if matches!(s.protocol.as_str(), "http" | "https") {
        attrs.insert(
            "EffectiveDeliveryPolicy".into(),
            json!(crate::deliver::effective_http_policy(s).to_string()),
        );
    }
    for (k, v) in &s.attributes {
        attrs.insert(k.clone(), json!(v));
    }
    if s.attributes.contains_key("FilterPolicy") && !s.attributes.contains_key("FilterPolicyScope")
    {
        attrs.insert("FilterPolicyScope".into(), json!("MessageAttributes"));
    }
    Ok(json!({"Attributes": attrs}))
}

pub async fn set_subscription_attributes(
    sns: &Sns,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = str_of(input, "SubscriptionArn").unwrap_or_default();
    parse_sub_arn(arn)?;
    let name = str_of(input, "AttributeName").unwrap_or_default();
    let value = str_of(input, "AttributeValue").unwrap_or_default();
    let commit = {
        let mut state = sns.state.lock();
        let s = state.subs.get_mut(arn).ok_or_else(sub_not_found)?;
        let mut attributes = s.attributes.clone();
        apply_attribute(&mut attributes, name, value);
        check_attribute(&s.protocol, name, value, &attributes)?;
        s.attributes = attributes;
        s.compile_filter();
        let mut batch = Batch::new();
        state::put_sub(&mut batch, s);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

impl Sns {
    /// Sends the confirmation request of a new HTTP or email subscription, in the background.
    fn request_confirmation(&self, sub: &Subscription) {
        let Some(me) = self.myself() else { return };
        let sub = Arc::new(sub.clone());
        tokio::spawn(async move { me.send_confirmation(&sub).await });
    }
}
