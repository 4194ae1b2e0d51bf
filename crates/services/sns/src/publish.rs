//! Publish and PublishBatch: validation with SNS's messages and limits, FIFO deduplication
//! (5 minutes on the clock) and sequence numbers, filter policies, then one store batch with
//! the message and a delivery record per matching subscription. The request is answered once
//! that batch is durable; deliveries run afterwards (`deliver.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::filter_policy::{Attribute, Scope};
use tsumiki_store::Batch;

use crate::state::{self, Attr, DEDUP_WINDOW_MS, Dedup, Delivery, Message, Topic};
use crate::{Sns, invalid, store_error, str_of, topic_arn, topic_not_found};

/// 256 KiB: the message plus its attributes.
pub const MAX_SIZE: usize = 262_144;
const MAX_BATCH: usize = 10;

/// A validated entry, before it gets its sequence.
struct Draft {
    message: String,
    subject: Option<String>,
    per_protocol: Option<BTreeMap<String, String>>,
    attributes: BTreeMap<String, Attr>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

fn size_of(entry: &Value) -> usize {
    let mut n = str_of(entry, "Message").map_or(0, str::len);
    if let Some(attrs) = entry.get("MessageAttributes").and_then(Value::as_object) {
        for (name, a) in attrs {
            n += name.len();
            n += str_of(a, "DataType").map_or(0, str::len);
            n += str_of(a, "StringValue").map_or(0, str::len);
            n += str_of(a, "BinaryValue").map_or(0, |b| b.len() * 3 / 4);
        }
    }
    n
}

fn attributes_of(entry: &Value) -> Result<BTreeMap<String, Attr>, AwsError> {
    let mut out = BTreeMap::new();
    let Some(attrs) = entry.get("MessageAttributes").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, a) in attrs {
        let reason = |r: String| invalid(format!("MessageAttributes Reason: {r}"));
        let data_type = str_of(a, "DataType").unwrap_or_default();
        if data_type.is_empty() {
            return Err(reason(format!(
                "The message attribute '{name}' must contain non-empty message attribute type."
            )));
        }
        let base = data_type.split('.').next().unwrap_or_default();
        if !matches!(base, "String" | "Number" | "Binary") {
            return Err(reason(format!(
                "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
            )));
        }
        let string_value = str_of(a, "StringValue").map(String::from);
        let binary_value = str_of(a, "BinaryValue").map(String::from);
        let empty = match base {
            "Binary" => binary_value.as_deref().is_none_or(str::is_empty),
            _ => string_value.as_deref().is_none_or(str::is_empty),
        };
        if empty {
            return Err(reason(format!(
                "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{data_type}'."
            )));
        }
        if base == "Number"
            && string_value
                .as_deref()
                .is_some_and(|v| v.trim().parse::<f64>().is_err())
        {
            return Err(reason(format!(
                "Could not cast message attribute '{name}' value to number."
            )));
        }
        if data_type == "String.Array"
            && string_value
                .as_deref()
                .is_some_and(|v| !serde_json::from_str::<Value>(v).is_ok_and(|j| j.is_array()))
        {
            return Err(reason(format!(
                "The message attribute '{name}' with type 'String.Array' has an invalid value."
            )));
        }
        out.insert(
            name.clone(),
            Attr {
                data_type: data_type.to_string(),
                string_value: if base == "Binary" { None } else { string_value },
                binary_value: if base == "Binary" { binary_value } else { None },
            },
        );
    }
    Ok(out)
}

fn draft(topic: &Topic, entry: &Value) -> Result<Draft, AwsError> {
    let message = str_of(entry, "Message").unwrap_or_default();
    if message.is_empty() {
        return Err(invalid("Empty message"));
    }
    if size_of(entry) > MAX_SIZE {
        return Err(invalid("Message too long"));
    }
    let subject = str_of(entry, "Subject").map(String::from);
    if let Some(s) = &subject
        && (s.is_empty() || s.len() > 100 || s.chars().any(|c| c.is_control()))
    {
        return Err(invalid("Subject"));
    }
    let per_protocol = match str_of(entry, "MessageStructure") {
        None => None,
        Some("json") => {
            let parsed: Value = serde_json::from_str(message)
                .map_err(|_| invalid("Message Structure - JSON message body failed to parse"))?;
            let Value::Object(map) = parsed else {
                return Err(invalid(
                    "Message Structure - JSON message body failed to parse",
                ));
            };
            if !map.contains_key("default") {
                return Err(invalid(
                    "Message Structure - No default entry in JSON message body",
                ));
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, text);
            }
            Some(out)
        }
        Some(_) => return Err(invalid("MessageStructure")),
    };
    let attributes = attributes_of(entry)?;
    let group_id = str_of(entry, "MessageGroupId").map(String::from);
    let mut dedup_id = str_of(entry, "MessageDeduplicationId").map(String::from);
    if topic.fifo() {
        if group_id.is_none() {
            return Err(invalid(
                "The MessageGroupId parameter is required for FIFO topics",
            ));
        }
        if dedup_id.is_none() {
            if !topic.content_dedup() {
                return Err(invalid(
                    "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
            dedup_id = Some(hex::encode(Sha256::digest(message.as_bytes())));
        }
    } else if dedup_id.is_some() {
        return Err(invalid(
            "MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type",
        ));
    }
    for id in [&group_id, &dedup_id].into_iter().flatten() {
        if id.is_empty() || id.len() > 128 {
            return Err(invalid("MessageGroupId or MessageDeduplicationId"));
        }
    }
    Ok(Draft {
        message: message.to_string(),
        subject,
        per_protocol,
        attributes,
        group_id,
        dedup_id,
    })
}

/// The topic a Publish names: `TopicArn`, or a topic `TargetArn`; phone numbers and platform
/// endpoints are answered as not implemented.
fn publish_target<'a>(ctx: &RequestContext, input: &'a Value) -> Result<&'a str, AwsError> {
    if let Some(arn) = str_of(input, "TopicArn") {
        return topic_arn(ctx, arn, "TopicArn");
    }
    if let Some(arn) = str_of(input, "TargetArn") {
        if arn.contains(":endpoint/") {
            return Err(AwsError::not_implemented(
                "sns",
                "Publish (TargetArn of a mobile push endpoint)",
            ));
        }
        return topic_arn(ctx, arn, "TargetArn");
    }
    if str_of(input, "PhoneNumber").is_some() {
        return Err(AwsError::not_implemented(
            "sns",
            "Publish (SMS to a PhoneNumber)",
        ));
    }
    Err(invalid(
        "TopicArn or TargetArn Reason: no value for required parameter",
    ))
}

fn matches(sub: &state::Subscription, m: &Message) -> bool {
    let Some(filter) = &sub.filter else {
        return true;
    };
    match filter.scope() {
        Scope::MessageAttributes => {
            let attrs: Vec<Attribute<'_>> = m
                .attributes
                .iter()
                .map(|(name, a)| Attribute {
                    name,
                    data_type: &a.data_type,
                    value: a.string_value.as_deref(),
                })
                .collect();
            filter.matches_attributes(&attrs)
        }
        Scope::MessageBody => filter.matches_body(m.text_for(&sub.protocol)),
    }
}

/// What one accepted entry answers.
struct Accepted {
    message_id: String,
    sequence_number: Option<String>,
}

impl Sns {
    /// Assigns sequences, applies deduplication and filters, and commits the messages with
    /// their deliveries in one batch; answers once it is durable.
    async fn accept(&self, arn: &str, drafts: Vec<Draft>) -> Result<Vec<Accepted>, AwsError> {
        let now = self.clock.now_ms();
        let mut answers = Vec::with_capacity(drafts.len());
        let mut seqs = Vec::new();
        let commit = {
            let mut state = self.state.lock();
            let topic = state.topics.get(arn).ok_or_else(topic_not_found)?.clone();
            let mut batch = Batch::new();
            for d in drafts {
                if let Some(id) = &d.dedup_id {
                    let key = (arn.to_string(), id.clone());
                    if let Some(seen) = state.dedup.get(&key).filter(|s| s.expires_ms > now) {
                        answers.push(Accepted {
                            message_id: seen.message_id.clone(),
                            sequence_number: seen.sequence_number.clone(),
                        });
                        continue;
                    }
                }
                state.last_seq += 1;
                let seq = state.last_seq;
                let message = Message {
                    seq,
                    id: uuid::Uuid::new_v4().to_string(),
                    topic_arn: arn.to_string(),
                    account: topic.account.clone(),
                    region: topic.region.clone(),
                    message: d.message,
                    subject: d.subject,
                    per_protocol: d.per_protocol,
                    attributes: d.attributes,
                    group_id: d.group_id,
                    dedup_id: d.dedup_id,
                    sequence_number: topic.fifo().then(|| format!("1{seq:019}")),
                    timestamp_ms: now,
                };
                if let Some(id) = &message.dedup_id
                    && topic.fifo()
                {
                    let entry = Dedup {
                        message_id: message.id.clone(),
                        sequence_number: message.sequence_number.clone(),
                        expires_ms: now + DEDUP_WINDOW_MS,
                    };
                    state::put_dedup(&mut batch, arn, id, &entry);
                    state.dedup.insert((arn.to_string(), id.clone()), entry);
                }
                answers.push(Accepted {
                    message_id: message.id.clone(),
                    sequence_number: message.sequence_number.clone(),
                });
                let deliveries: Vec<Delivery> = state
                    .subs_of(arn)
                    .filter(|s| s.confirmed && matches(s, &message))
                    .map(|s| Delivery {
                        seq,
                        sub_arn: s.arn.clone(),
                        attempts: 0,
                        next_ms: now,
                    })
                    .collect();
                if deliveries.is_empty() {
                    continue;
                }
                state::put_message(&mut batch, &message);
                for d in &deliveries {
                    state::put_delivery(&mut batch, d);
                }
                seqs.push(seq);
                self.dispatch.add(Arc::new(message), deliveries);
            }
            // Deduplication ids whose window closed leave with this batch.
            let expired: Vec<(String, String)> = state
                .dedup
                .iter()
                .filter(|(_, d)| d.expires_ms <= now)
                .map(|(k, _)| k.clone())
                .take(64)
                .collect();
            for (t, id) in expired {
                state.dedup.remove(&(t.clone(), id.clone()));
                state::delete_dedup(&mut batch, &t, &id);
            }
            self.store.commit(batch)
        };
        match commit.await {
            Ok(()) => {
                if let Some(&last) = seqs.last() {
                    self.dispatch.durable(self, last);
                }
                Ok(answers)
            }
            Err(e) => {
                self.dispatch.abandon(&seqs);
                Err(store_error(e))
            }
        }
    }
}

pub async fn publish(sns: &Sns, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let arn = publish_target(ctx, input)?;
    let topic = sns
        .state
        .lock()
        .topics
        .get(arn)
        .cloned()
        .ok_or_else(topic_not_found)?;
    let d = draft(&topic, input)?;
    let accepted = sns.accept(arn, vec![d]).await?;
    let a = &accepted[0];
    let mut out = json!({"MessageId": a.message_id});
    if let Some(seq) = &a.sequence_number {
        out["SequenceNumber"] = json!(seq);
    }
    Ok(out)
}

fn valid_entry_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn publish_batch(
    sns: &Sns,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = topic_arn(
        ctx,
        str_of(input, "TopicArn").unwrap_or_default(),
        "TopicArn",
    )?;
    let entries: &[Value] = input
        .get("PublishBatchRequestEntries")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if entries.is_empty() {
        return Err(AwsError::new(
            "EmptyBatchRequest",
            400,
            "The batch request doesn't contain any entries.",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(AwsError::new(
            "TooManyEntriesInBatchRequest",
            400,
            "The batch request contains more entries than permissible.",
        ));
    }
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| str_of(e, "Id").unwrap_or_default())
        .collect();
    if ids.iter().any(|id| !valid_entry_id(id)) {
        return Err(AwsError::new(
            "InvalidBatchEntryId",
            400,
            "The Id of a batch entry in a batch request doesn't abide by the specification.",
        ));
    }
    let distinct: std::collections::BTreeSet<&&str> = ids.iter().collect();
    if distinct.len() != ids.len() {
        return Err(AwsError::new(
            "BatchEntryIdsNotDistinct",
            400,
            "Two or more batch entries in the request have the same Id.",
        ));
    }
    if entries.iter().map(size_of).sum::<usize>() > MAX_SIZE {
        return Err(AwsError::new(
            "BatchRequestTooLong",
            400,
            "The length of all the messages put together is more than the limit.",
        ));
    }
    let topic = sns
        .state
        .lock()
        .topics
        .get(arn)
        .cloned()
        .ok_or_else(topic_not_found)?;
    let mut failed = Vec::new();
    let mut drafts = Vec::new();
    let mut ok_ids = Vec::new();
    for (entry, id) in entries.iter().zip(&ids) {
        match draft(&topic, entry) {
            Ok(d) => {
                drafts.push(d);
                ok_ids.push(*id);
            }
            Err(e) => failed.push(json!({
                "Id": id,
                "Code": e.code,
                "Message": e.message,
                "SenderFault": true,
            })),
        }
    }
    let accepted = if drafts.is_empty() {
        Vec::new()
    } else {
        sns.accept(arn, drafts).await?
    };
    let successful: Vec<Value> = ok_ids
        .iter()
        .zip(&accepted)
        .map(|(id, a)| {
            let mut v = json!({"Id": id, "MessageId": a.message_id});
            if let Some(seq) = &a.sequence_number {
                v["SequenceNumber"] = json!(seq);
            }
            v
        })
        .collect();
    Ok(json!({"Successful": successful, "Failed": failed}))
}
