//! Queue lifecycle: create, delete, find, list, attributes, purge, permissions, and the
//! dead-letter source lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::attributes::{self, COMPUTED, SETTABLE};
use crate::error::{invalid_attribute_name, invalid_parameter, queue_does_not_exist, sqs_error};
use crate::input::{key_from_arn, opt_int, opt_str, queue_url, req_str, string_list, string_map};
use crate::state::{Queue, QueueCell, QueueKey, writes};
use crate::{Sqs, store_error};

/// How long a deleted queue's name stays taken, and how often a queue may be purged.
const COOLDOWN_MS: i64 = 60_000;
const MAX_TAGS: usize = 50;

fn valid_queue_name(name: &str, fifo: bool) -> bool {
    let base = if fifo {
        match name.strip_suffix(".fifo") {
            Some(b) => b,
            None => return false,
        }
    } else {
        name
    };
    !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn create_queue(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = req_str(input, "QueueName")?;
    let given = string_map(input, "Attributes");
    let tags = string_map(input, "tags");
    let fifo = given
        .get("FifoQueue")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !valid_queue_name(name, fifo) {
        return Err(AwsError::invalid_parameter_value(if fifo {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length."
        } else {
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        }));
    }
    if tags.len() > MAX_TAGS {
        return Err(AwsError::invalid_parameter_value(format!(
            "Too many tags added for queue {name}."
        )));
    }
    let attrs = attributes::for_new_queue(fifo, &given)?;
    let key = QueueKey {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: name.to_string(),
    };
    check_dead_letter_target(sqs, &attrs, fifo)?;
    let now = sqs.clock.now_ms();
    let commit = {
        let mut queues = sqs.state.queues.write();
        if let Some(existing) = queues.get(&key) {
            let q = existing.queue.lock();
            for (attr, value) in &given {
                let current = q.attributes.get(attr).map(String::as_str).unwrap_or("");
                if !same_attribute(attr, current, value) {
                    return Err(sqs_error(
                        "QueueNameExists",
                        format!(
                            "A queue already exists with the same name and a different value for attribute {attr}"
                        ),
                    ));
                }
            }
            return Ok(json!({"QueueUrl": queue_url(ctx, &key)}));
        }
        {
            let mut recent = sqs.state.recently_deleted.lock();
            recent.retain(|_, at| now - *at < COOLDOWN_MS);
            if recent.contains_key(&key) {
                return Err(sqs_error(
                    "QueueDeletedRecently",
                    "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
                ));
            }
        }
        let q = Queue::new(rand::random::<u64>() | 1, fifo, attrs, tags, now);
        let mut batch = Batch::new();
        writes::queue(&mut batch, &key, &q);
        queues.insert(
            key.clone(),
            Arc::new(QueueCell {
                key: key.clone(),
                queue: Mutex::new(q),
                arrivals: Notify::new(),
            }),
        );
        sqs.state.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    tracing::info!(queue = %key.name, account = %key.account, region = %key.region, fifo, "Created a queue.");
    Ok(json!({"QueueUrl": queue_url(ctx, &key)}))
}

fn same_attribute(name: &str, current: &str, given: &str) -> bool {
    match name {
        "FifoQueue" | "ContentBasedDeduplication" | "SqsManagedSseEnabled" => {
            current.eq_ignore_ascii_case(given)
        }
        "RedrivePolicy" | "Policy" | "RedriveAllowPolicy" => {
            serde_json::from_str::<Value>(current).ok() == serde_json::from_str::<Value>(given).ok()
                || current == given
                || attributes::redrive_policy(&BTreeMap::from([(
                    "RedrivePolicy".to_string(),
                    current.to_string(),
                )])) == attributes::redrive_policy(&BTreeMap::from([(
                    "RedrivePolicy".to_string(),
                    given.to_string(),
                )]))
        }
        _ => current == given,
    }
}

/// A redrive policy must name an existing queue of the same type.
fn check_dead_letter_target(
    sqs: &Sqs,
    attrs: &BTreeMap<String, String>,
    fifo: bool,
) -> Result<(), AwsError> {
    let Some((arn, _)) = attributes::redrive_policy(attrs) else {
        return Ok(());
    };
    let policy = attrs.get("RedrivePolicy").cloned().unwrap_or_default();
    let cell = key_from_arn(&arn).and_then(|k| sqs.state.get(&k)).ok_or_else(|| {
        AwsError::invalid_parameter_value(format!(
            "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist."
        ))
    })?;
    if cell.queue.lock().fifo != fifo {
        return Err(AwsError::invalid_parameter_value(format!(
            "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source."
        )));
    }
    Ok(())
}

pub async fn delete_queue(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let commit = {
        let mut queues = sqs.state.queues.write();
        if !queues.get(&cell.key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            return Err(queue_does_not_exist());
        }
        queues.remove(&cell.key);
        sqs.state
            .recently_deleted
            .lock()
            .insert(cell.key.clone(), sqs.clock.now_ms());
        let q = cell.queue.lock();
        let mut batch = Batch::new();
        writes::delete_queue(&mut batch, &cell.key, q.id);
        sqs.state.store.commit(batch)
    };
    cell.arrivals.notify_waiters();
    commit.await.map_err(store_error)?;
    tracing::info!(queue = %cell.key.name, "Deleted a queue.");
    Ok(json!({}))
}

pub fn get_queue_url(sqs: &Sqs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let name = req_str(input, "QueueName")?;
    let account = opt_str(input, "QueueOwnerAWSAccountId").unwrap_or(&ctx.account);
    let key = QueueKey {
        account: account.to_string(),
        region: ctx.region.clone(),
        name: name.to_string(),
    };
    if sqs.state.get(&key).is_none() {
        return Err(queue_does_not_exist());
    }
    Ok(json!({"QueueUrl": queue_url(ctx, &key)}))
}

fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(last)
}

fn decode_token(token: &str) -> Result<String, AwsError> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid_parameter("NextToken", token, "Invalid NextToken value."))
}

fn max_results(input: &Value) -> Result<Option<usize>, AwsError> {
    match opt_int(input, "MaxResults") {
        None => Ok(None),
        Some(n) if (1..=1000).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(invalid_parameter(
            "MaxResults",
            &n.to_string(),
            "MaxResults must be an integer between 1 and 1000.",
        )),
    }
}

/// One page of sorted `names`: (page, next token).
fn page(names: Vec<String>, input: &Value) -> Result<(Vec<String>, Option<String>), AwsError> {
    let limit = max_results(input)?;
    let after = opt_str(input, "NextToken").map(decode_token).transpose()?;
    let rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let take = limit.unwrap_or(1000);
    let more = rest.len() > take;
    let page: Vec<String> = rest.into_iter().take(take).collect();
    let next = (more && limit.is_some())
        .then(|| page.last().map(|l| encode_token(l)))
        .flatten();
    Ok((page, next))
}

pub fn list_queues(sqs: &Sqs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let prefix = opt_str(input, "QueueNamePrefix").unwrap_or("");
    let mut names: Vec<String> = sqs
        .state
        .queues
        .read()
        .keys()
        .filter(|k| {
            k.account == ctx.account && k.region == ctx.region && k.name.starts_with(prefix)
        })
        .map(|k| k.name.clone())
        .collect();
    names.sort();
    let (page, next) = page(names, input)?;
    let mut out = serde_json::Map::new();
    if !page.is_empty() {
        let urls: Vec<String> = page
            .iter()
            .map(|n| {
                queue_url(
                    ctx,
                    &QueueKey {
                        account: ctx.account.clone(),
                        region: ctx.region.clone(),
                        name: n.clone(),
                    },
                )
            })
            .collect();
        out.insert("QueueUrls".into(), json!(urls));
    }
    if let Some(t) = next {
        out.insert("NextToken".into(), json!(t));
    }
    Ok(Value::Object(out))
}

/// Every attribute of a queue, computed ones included.
pub fn all_attributes(cell: &QueueCell, q: &Queue, now: i64) -> BTreeMap<String, String> {
    let mut out = q.attributes.clone();
    // Only messages not yet visible need a look: the visible ones are the rest.
    let (mut in_flight, mut delayed) = (0usize, 0usize);
    for (_, seq) in q.ready.range((now + 1, 0)..) {
        if q.messages.get(seq).is_some_and(|m| m.receive_count > 0) {
            in_flight += 1;
        } else {
            delayed += 1;
        }
    }
    let visible = q.messages.len() - in_flight - delayed;
    out.insert("ApproximateNumberOfMessages".into(), visible.to_string());
    out.insert(
        "ApproximateNumberOfMessagesNotVisible".into(),
        in_flight.to_string(),
    );
    out.insert(
        "ApproximateNumberOfMessagesDelayed".into(),
        delayed.to_string(),
    );
    out.insert("CreatedTimestamp".into(), (q.created_ms / 1000).to_string());
    out.insert(
        "LastModifiedTimestamp".into(),
        (q.modified_ms / 1000).to_string(),
    );
    out.insert("QueueArn".into(), cell.key.arn());
    out
}

pub fn get_queue_attributes(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let names = string_list(input, "AttributeNames");
    for n in &names {
        if n != "All" && !SETTABLE.iter().any(|(s, _)| s == n) && !COMPUTED.contains(&n.as_str()) {
            return Err(invalid_attribute_name(n));
        }
    }
    let all = {
        let q = cell.queue.lock();
        all_attributes(&cell, &q, sqs.clock.now_ms())
    };
    let want_all = names.iter().any(|n| n == "All");
    let selected: serde_json::Map<String, Value> = all
        .into_iter()
        .filter(|(k, _)| want_all || names.contains(k))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if selected.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Attributes": selected}))
}

pub async fn set_queue_attributes(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let given = string_map(input, "Attributes");
    let fifo = cell.queue.lock().fifo;
    if given.contains_key("RedrivePolicy") {
        let mut probe = BTreeMap::new();
        attributes::apply(&mut probe, fifo, &given, false)?;
        check_dead_letter_target(sqs, &probe, fifo)?;
    }
    sqs.update_queue(&cell, |q| {
        attributes::apply(&mut q.attributes, fifo, &given, false)?;
        q.refresh_config();
        q.modified_ms = sqs.clock.now_ms();
        Ok(())
    })
    .await?;
    // A shorter delay or visibility may make messages visible sooner.
    cell.arrivals.notify_waiters();
    Ok(json!({}))
}

pub async fn purge_queue(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let now = sqs.clock.now_ms();
    let commit = {
        let mut q = cell.queue.lock();
        if q.purged_at_ms.is_some_and(|t| now - t < COOLDOWN_MS) {
            return Err(sqs_error(
                "PurgeQueueInProgress",
                format!(
                    "Only one PurgeQueue operation on {} is allowed every 60 seconds.",
                    cell.key.name
                ),
            ));
        }
        q.messages.clear();
        q.ready.clear();
        q.purged_at_ms = Some(now);
        let mut batch = Batch::new();
        writes::delete_all_messages(&mut batch, q.id);
        writes::queue(&mut batch, &cell.key, &q);
        sqs.state.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    tracing::info!(queue = %cell.key.name, "Purged a queue.");
    Ok(json!({}))
}

const PERMISSION_ACTIONS: &[&str] = &[
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ListQueueTags",
];

pub async fn add_permission(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let label = req_str(input, "Label")?;
    let accounts = string_list(input, "AWSAccountIds");
    let actions = string_list(input, "Actions");
    if accounts.is_empty() {
        return Err(invalid_parameter("PrincipalId", "[]", "Unable to verify."));
    }
    if actions.is_empty() {
        return Err(AwsError::missing_parameter(
            "The request must contain the parameter Actions.",
        ));
    }
    if actions.len() > 7 {
        return Err(sqs_error(
            "OverLimit",
            format!(
                "{} Actions were found, maximum allowed is 7.",
                actions.len()
            ),
        ));
    }
    if label.is_empty()
        || label.len() > 80
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid_parameter(
            "Label",
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    for a in &actions {
        if !PERMISSION_ACTIONS.contains(&a.as_str()) {
            return Err(invalid_parameter(
                "ActionName",
                &format!("SQS:{a}"),
                "Only the queue owner is allowed to invoke this action.",
            ));
        }
    }
    sqs.update_queue(&cell, |q| {
        let arn = cell.key.arn();
        let mut policy = q
            .attributes
            .get("Policy")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .unwrap_or_else(|| json!({"Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": []}));
        let statements = policy
            .get_mut("Statement")
            .and_then(Value::as_array_mut)
            .ok_or_else(AwsError::internal)?;
        if statements
            .iter()
            .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
        {
            return Err(invalid_parameter("Label", label, "Already exists."));
        }
        let principals: Vec<String> = accounts
            .iter()
            .map(|a| format!("arn:aws:iam::{a}:root"))
            .collect();
        let action_names: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
        statements.push(json!({
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": if principals.len() == 1 { json!(principals[0]) } else { json!(principals) }},
            "Action": if action_names.len() == 1 { json!(action_names[0]) } else { json!(action_names) },
            "Resource": arn,
        }));
        q.attributes.insert("Policy".into(), policy.to_string());
        q.modified_ms = sqs.clock.now_ms();
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn remove_permission(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let label = req_str(input, "Label")?;
    sqs.update_queue(&cell, |q| {
        let mut policy = q
            .attributes
            .get("Policy")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .unwrap_or(Value::Null);
        let statements = policy.get_mut("Statement").and_then(Value::as_array_mut);
        let Some(statements) = statements else {
            return Err(invalid_parameter(
                "Label",
                label,
                "can't find label on existing policy.",
            ));
        };
        let before = statements.len();
        statements.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label));
        if statements.len() == before {
            return Err(invalid_parameter(
                "Label",
                label,
                "can't find label on existing policy.",
            ));
        }
        if statements.is_empty() {
            q.attributes.remove("Policy");
        } else {
            q.attributes.insert("Policy".into(), policy.to_string());
        }
        q.modified_ms = sqs.clock.now_ms();
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn list_dead_letter_source_queues(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let arn = cell.key.arn();
    let cells: Vec<Arc<QueueCell>> = sqs
        .state
        .queues
        .read()
        .values()
        .filter(|c| c.key.account == cell.key.account && c.key.region == cell.key.region)
        .cloned()
        .collect();
    let mut names: Vec<String> = cells
        .iter()
        .filter(|c| {
            attributes::redrive_policy(&c.queue.lock().attributes)
                .is_some_and(|(target, _)| target == arn)
        })
        .map(|c| c.key.name.clone())
        .collect();
    names.sort();
    let (page, next) = page(names, input)?;
    let urls: Vec<String> = page
        .iter()
        .map(|n| {
            queue_url(
                ctx,
                &QueueKey {
                    name: n.clone(),
                    ..cell.key.clone()
                },
            )
        })
        .collect();
    let mut out = json!({"queueUrls": urls});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

/// The queue an ARN names, or `QueueDoesNotExist`.
pub fn queue_by_arn(sqs: &Sqs, arn: &str) -> Result<Arc<QueueCell>, AwsError> {
    key_from_arn(arn)
        .and_then(|k| sqs.state.get(&k))
        .ok_or_else(queue_does_not_exist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        assert!(valid_queue_name("a-b_C9", false));
        assert!(!valid_queue_name("a.b", false));
        assert!(!valid_queue_name("", false));
        assert!(!valid_queue_name(&"x".repeat(81), false));
        assert!(valid_queue_name(&"x".repeat(80), false));
        assert!(valid_queue_name("q.fifo", true));
        assert!(!valid_queue_name("q", true));
        assert!(!valid_queue_name(".fifo", true));
        assert!(!valid_queue_name(&format!("{}.fifo", "x".repeat(76)), true));
    }
}
