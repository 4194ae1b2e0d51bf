//! Topics: create (idempotent for equal attributes), delete, list, attributes, tags, data
//! protection policies (stored, not enforced).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Topic};
use crate::{Sns, invalid, store_error, str_of, string_map, topic_arn, topic_not_found};

const PAGE: usize = 100;
const MAX_TAGS: usize = 50;

/// Attributes SetTopicAttributes and CreateTopic accept.
const SETTABLE: &[&str] = &[
    "DeliveryPolicy",
    "DisplayName",
    "Policy",
    "TracingConfig",
    "KmsMasterKeyId",
    "SignatureVersion",
    "ContentBasedDeduplication",
    "FifoThroughputScope",
    "ArchivePolicy",
    "DataProtectionPolicy",
    // Delivery status logging attributes are stored as given.
    "ApplicationSuccessFeedbackRoleArn",
    "ApplicationSuccessFeedbackSampleRate",
    "ApplicationFailureFeedbackRoleArn",
    "HTTPSuccessFeedbackRoleArn",
    "HTTPSuccessFeedbackSampleRate",
    "HTTPFailureFeedbackRoleArn",
    "LambdaSuccessFeedbackRoleArn",
    "LambdaSuccessFeedbackSampleRate",
    "LambdaFailureFeedbackRoleArn",
    "SQSSuccessFeedbackRoleArn",
    "SQSSuccessFeedbackSampleRate",
    "SQSFailureFeedbackRoleArn",
    "FirehoseSuccessFeedbackRoleArn",
    "FirehoseSuccessFeedbackSampleRate",
    "FirehoseFailureFeedbackRoleArn",
];

fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 256
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_attribute(name: &str, value: &str, fifo: bool) -> Result<(), AwsError> {
    if name == "FifoTopic" {
        return Ok(());
    }
    if !SETTABLE.contains(&name) {
        return Err(invalid(format!(
            "Attributes Reason: Unknown attribute {name}"
        )));
    }
    match name {
        "ContentBasedDeduplication" => {
            if !fifo {
                return Err(invalid(
                    "ContentBasedDeduplication Reason: Content based deduplication can only be set for FIFO topics",
                ));
            }
            if value != "true" && value != "false" {
                return Err(invalid(
                    "ContentBasedDeduplication Reason: Invalid value for ContentBasedDeduplication",
                ));
            }
        }
        "DeliveryPolicy" | "Policy" | "DataProtectionPolicy" | "ArchivePolicy"
            if !value.is_empty() && serde_json::from_str::<Value>(value).is_err() =>
        {
            return Err(invalid(format!(
                "Attributes Reason: {name}: failed to parse JSON"
            )));
        }
        "DisplayName" if value.len() > 100 => {
            return Err(invalid("DisplayName"));
        }
        "SignatureVersion" if value != "1" && value != "2" => {
            return Err(invalid(
                "Attributes Reason: SignatureVersion: Invalid value [".to_string() + value + "]",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn tags_of(input: &Value) -> Result<BTreeMap<String, String>, AwsError> {
    let mut tags = BTreeMap::new();
    for t in input
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = str_of(t, "Key").unwrap_or_default();
        let value = str_of(t, "Value").unwrap_or_default();
        if key.starts_with("aws:") {
            return Err(invalid("Tags Reason: Tag keys cannot start with aws:"));
        }
        tags.insert(key.to_string(), value.to_string());
    }
    Ok(tags)
}

fn tag_limit() -> AwsError {
    AwsError::new(
        "TagLimitExceeded",
        400,
        "Could not complete request: tag quota of per resource exceeded",
    )
}

pub async fn create_topic(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let mut attributes = string_map(input.get("Attributes"));
    if let Some(p) = str_of(input, "DataProtectionPolicy") {
        attributes.insert("DataProtectionPolicy".into(), p.to_string());
    }
    let fifo_attr = attributes.get("FifoTopic").map(String::as_str);
    let fifo = fifo_attr == Some("true");
    if !valid_name(name) || (name.ends_with(".fifo") != fifo) {
        if fifo || name.ends_with(".fifo") {
            return Err(invalid(
                "Topic Name: Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long.",
            ));
        }
        return Err(invalid("Topic Name"));
    }
    if fifo_attr.is_some_and(|v| v != "true" && v != "false") {
        return Err(invalid("Attributes Reason: FifoTopic: Invalid value"));
    }
    if !fifo {
        attributes.remove("FifoTopic");
    }
    for (k, v) in &attributes {
        check_attribute(k, v, fifo)?;
    }
    let tags = tags_of(input)?;
    if tags.len() > MAX_TAGS {
        return Err(tag_limit());
    }
    let arn = tsumiki_core::ids::arn("sns", &ctx.region, &ctx.account, name);
    let commit = {
        let mut state = sns.state.lock();
        if let Some(existing) = state.topics.get_mut(&arn) {
            // CreateTopic is idempotent, but not across different attributes.
            let differs = attributes
                .iter()
                .any(|(k, v)| existing.attributes.get(k) != Some(v));
            if differs {
                return Err(invalid(
                    "Attributes Reason: Topic already exists with different attributes",
                ));
            }
            if !tags.is_empty() && tags.iter().any(|(k, v)| existing.tags.get(k) != Some(v)) {
                return Err(invalid(
                    "Tags Reason: Topic already exists with different tags",
                ));
            }
            return Ok(json!({"TopicArn": arn}));
        }
        if state
            .topics
            .values()
            .filter(|t| t.account == ctx.account && t.region == ctx.region)
            .count()
            >= 100_000
        {
            return Err(AwsError::new(
                "TopicLimitExceeded",
                403,
                "Topic limit exceeded",
            ));
        }
        let topic = Topic {
            arn: arn.clone(),
            name: name.to_string(),
            account: ctx.account.clone(),
            region: ctx.region.clone(),
            attributes,
            tags,
            created_ms: sns.clock.now_ms(),
        };
        let mut batch = Batch::new();
        state::put_topic(&mut batch, &topic);
        state.topics.insert(arn.clone(), topic);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"TopicArn": arn}))
}

pub async fn delete_topic(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = topic_arn(
        ctx,
        str_of(input, "TopicArn").unwrap_or_default(),
        "TopicArn",
    );
    // Deleting a topic that does not exist succeeds, as in AWS.
    let Ok(arn) = arn else {
        return match arn {
            Err(e) if e.code == "NotFound" => Ok(json!({})),
            Err(e) => Err(e),
            Ok(_) => Ok(json!({})),
        };
    };
    let commit = {
        let mut state = sns.state.lock();
        if state.topics.remove(arn).is_none() {
            return Ok(json!({}));
        }
        let subs: Vec<String> = state.subs_of(arn).map(|s| s.arn.clone()).collect();
        for s in &subs {
            state.subs.remove(s);
            sns.dispatch.forget_subscription(s);
        }
        state.dedup.retain(|(t, _), _| t != arn);
        let mut batch = Batch::new();
        state::delete_topic(&mut batch, arn);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub fn list_topics(sns: &Sns, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let after = str_of(input, "NextToken");
    let state = sns.state.lock();
    let mut topics: Vec<&Topic> = state
        .topics
        .values()
        .filter(|t| t.account == ctx.account && t.region == ctx.region)
        .filter(|t| after.is_none_or(|a| t.arn.as_str() > a))
        .take(PAGE + 1)
        .collect();
    let more = topics.len() > PAGE;
    topics.truncate(PAGE);
    let mut out = json!({
        "Topics": topics.iter().map(|t| json!({"TopicArn": t.arn})).collect::<Vec<_>>()
    });
    if more && let Some(last) = topics.last() {
        out["NextToken"] = json!(last.arn);
    }
    Ok(out)
}

const DEFAULT_DELIVERY_POLICY: &str = r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,"numMinDelayRetries":0,"backoffFunction":"linear"},"disableSubscriptionOverrides":false,"defaultRequestPolicy":{"headerContentType":"text/plain; charset=UTF-8"}}}"#;

fn default_policy(t: &Topic) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Effect": "Allow",
            "Sid": "__default_statement_ID",
            "Principal": {"AWS": "*"},
            "Action": [
                "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
                "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe",
                "SNS:ListSubscriptionsByTopic", "SNS:Publish"
            ],
            "Resource": t.arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": t.account}}
        }]
    })
    .to_string()
}

pub fn get_topic_attributes(
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
    let t = state.topics.get(arn).ok_or_else(topic_not_found)?;
    let (mut confirmed, mut pending) = (0, 0);
    for s in state.subs_of(arn) {
        if s.confirmed {
            confirmed += 1;
        } else {
            pending += 1;
        }
    }
    let mut attrs = serde_json::Map::new();
    attrs.insert("TopicArn".into(), json!(t.arn));
    attrs.insert("Owner".into(), json!(t.account));
    attrs.insert("DisplayName".into(), json!(""));
    attrs.insert("Policy".into(), json!(default_policy(t)));
    attrs.insert(
        "SubscriptionsConfirmed".into(),
        json!(confirmed.to_string()),
    );
    attrs.insert("SubscriptionsPending".into(), json!(pending.to_string()));
    attrs.insert("SubscriptionsDeleted".into(), json!("0"));
    attrs.insert(
        "EffectiveDeliveryPolicy".into(),
        json!(DEFAULT_DELIVERY_POLICY),
    );
    if t.fifo() {
        attrs.insert("FifoTopic".into(), json!("true"));
        attrs.insert("ContentBasedDeduplication".into(), json!("false"));
    }
    for (k, v) in &t.attributes {
        if k == "DeliveryPolicy" {
            attrs.insert("EffectiveDeliveryPolicy".into(), json!(v));
        }
        attrs.insert(k.clone(), json!(v));
    }
    Ok(json!({"Attributes": attrs}))
}

pub async fn set_topic_attributes(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = topic_arn(
        ctx,
        str_of(input, "TopicArn").unwrap_or_default(),
        "TopicArn",
    )?;
    let name = str_of(input, "AttributeName").unwrap_or_default();
    let value = str_of(input, "AttributeValue").unwrap_or_default();
    if name == "FifoTopic" {
        return Err(invalid("AttributeName"));
    }
    if !SETTABLE.contains(&name) {
        return Err(invalid("AttributeName"));
    }
    let commit = {
        let mut state = sns.state.lock();
        let t = state.topics.get_mut(arn).ok_or_else(topic_not_found)?;
        check_attribute(name, value, t.fifo())?;
        t.attributes.insert(name.to_string(), value.to_string());
        let mut batch = Batch::new();
        state::put_topic(&mut batch, t);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

fn resource_not_found() -> AwsError {
    AwsError::new("ResourceNotFound", 404, "Resource does not exist")
}

fn resource_topic<'a>(ctx: &RequestContext, input: &'a Value) -> Result<&'a str, AwsError> {
    let arn = str_of(input, "ResourceArn").unwrap_or_default();
    topic_arn(ctx, arn, "ResourceArn").map_err(|e| {
        if e.code == "NotFound" {
            resource_not_found()
        } else {
            e
        }
    })
}

pub async fn tag_resource(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = resource_topic(ctx, input)?;
    let tags = tags_of(input)?;
    let commit = {
        let mut state = sns.state.lock();
        let t = state.topics.get_mut(arn).ok_or_else(resource_not_found)?;
        let mut merged = t.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(tag_limit());
        }
        t.tags = merged;
        let mut batch = Batch::new();
        state::put_topic(&mut batch, t);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub async fn untag_resource(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = resource_topic(ctx, input)?;
    let commit = {
        let mut state = sns.state.lock();
        let t = state.topics.get_mut(arn).ok_or_else(resource_not_found)?;
        for k in input
            .get("TagKeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = k.as_str() {
                t.tags.remove(k);
            }
        }
        let mut batch = Batch::new();
        state::put_topic(&mut batch, t);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub fn list_tags_for_resource(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = resource_topic(ctx, input)?;
    let state = sns.state.lock();
    let t = state.topics.get(arn).ok_or_else(resource_not_found)?;
    Ok(json!({
        "Tags": t.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()
    }))
}

pub fn get_data_protection_policy(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = resource_topic(ctx, input)?;
    let state = sns.state.lock();
    let t = state.topics.get(arn).ok_or_else(resource_not_found)?;
    Ok(match t.attributes.get("DataProtectionPolicy") {
        Some(p) => json!({"DataProtectionPolicy": p}),
        None => json!({}),
    })
}

pub async fn put_data_protection_policy(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = resource_topic(ctx, input)?;
    let policy = str_of(input, "DataProtectionPolicy").unwrap_or_default();
    check_attribute("DataProtectionPolicy", policy, false)?;
    let commit = {
        let mut state = sns.state.lock();
        let t = state.topics.get_mut(arn).ok_or_else(resource_not_found)?;
        t.attributes
            .insert("DataProtectionPolicy".into(), policy.to_string());
        let mut batch = Batch::new();
        state::put_topic(&mut batch, t);
        sns.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}
