//! Messages: send, receive (with long polling and dead-letter redrive), delete, change
//! visibility, their batch forms, and the retention sweeper.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use base64::Engine;
use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::attributes::{MAX_DELAY_SECONDS, MAX_VISIBILITY_TIMEOUT, MAX_WAIT_TIME_SECONDS};
use crate::digest::{md5_hex, md5_of_attributes};
use crate::error::{invalid_parameter, receipt_handle_invalid, sqs_error};
use crate::input::{key_from_arn, opt_int, opt_str, string_list};
use crate::state::{DedupEntry, Message, MessageBody, Queue, QueueCell, writes};
use crate::{Sqs, store_error};

/// How long a FIFO deduplication id is remembered.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 1_048_576;
const MAX_MESSAGE_ATTRIBUTES: usize = 10;
const MAX_TOTAL_VISIBILITY_MS: i64 = MAX_VISIBILITY_TIMEOUT * 1000;

// ---------------------------------------------------------------- receipt handles

/// SQS's own handles start with this; it also keeps a handle from starting with `-`, which
/// aws-cli (argparse) would take for an option and reject the command.
const RECEIPT_PREFIX: &str = "AQEB";

/// A receipt handle names the queue generation, the message and the receive that produced it.
fn encode_receipt(queue_id: u64, seq: u64, nonce: u32) -> String {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&queue_id.to_be_bytes());
    bytes.extend_from_slice(&seq.to_be_bytes());
    bytes.extend_from_slice(&nonce.to_be_bytes());
    let mut handle = String::from(RECEIPT_PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut handle);
    handle
}

fn decode_receipt(handle: &str) -> Option<(u64, u64, u32)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle.strip_prefix(RECEIPT_PREFIX)?)
        .ok()?;
    if bytes.len() != 20 {
        return None;
    }
    Some((
        u64::from_be_bytes(bytes[0..8].try_into().ok()?),
        u64::from_be_bytes(bytes[8..16].try_into().ok()?),
        u32::from_be_bytes(bytes[16..20].try_into().ok()?),
    ))
}

/// The (seq, nonce) a handle names in `q`, or `ReceiptHandleIsInvalid`.
fn receipt_in(q: &Queue, handle: &str) -> Result<(u64, u32), AwsError> {
    match decode_receipt(handle) {
        Some((id, seq, nonce)) if id == q.id => Ok((seq, nonce)),
        _ => Err(receipt_handle_invalid(handle)),
    }
}

// ---------------------------------------------------------------- sending

/// One message to send, as SendMessage or a SendMessageBatch entry gives it.
struct Outgoing<'a> {
    body: &'a str,
    delay_seconds: Option<i64>,
    attributes: Map<String, Value>,
    system_attributes: Map<String, Value>,
    dedup_id: Option<&'a str>,
    group_id: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    fn from_input(input: &'a Value) -> Outgoing<'a> {
        let map = |k: &str| {
            input
                .get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Outgoing {
            body: opt_str(input, "MessageBody").unwrap_or(""),
            delay_seconds: opt_int(input, "DelaySeconds"),
            attributes: map("MessageAttributes"),
            system_attributes: map("MessageSystemAttributes"),
            dedup_id: opt_str(input, "MessageDeduplicationId"),
            group_id: opt_str(input, "MessageGroupId"),
        }
    }

    /// The size SQS counts against `MaximumMessageSize`: body plus attribute names, types and values.
    fn size(&self) -> usize {
        let attrs: usize = self
            .attributes
            .iter()
            .map(|(name, v)| {
                let value_len = v
                    .get("StringValue")
                    .and_then(Value::as_str)
                    .map(str::len)
                    .or_else(|| {
                        v.get("BinaryValue")
                            .and_then(Value::as_str)
                            .map(|b| b.len() / 4 * 3)
                    })
                    .unwrap_or(0);
                name.len()
                    + v.get("DataType")
                        .and_then(Value::as_str)
                        .map(str::len)
                        .unwrap_or(0)
                    + value_len
            })
            .sum();
        self.body.len() + attrs
    }
}

fn valid_body_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn valid_group_or_dedup_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn validate_attribute_name(name: &str) -> Result<(), AwsError> {
    let lower = name.to_ascii_lowercase();
    let bad = |why: &str| {
        AwsError::invalid_parameter_value(format!(
            "The message attribute name '{name}' is invalid. {why}"
        ))
    };
    if name.is_empty() || name.len() > 256 {
        return Err(bad("Attribute name must be 1 to 256 characters long."));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(bad(
            "Attribute name can contain A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters.",
        ));
    }
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(bad(
            "Attribute name must not start with AWS-reserved prefixes AWS. or Amazon.",
        ));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(bad(
            "Attribute name must not start or end with a period (.), or have successive periods (..).",
        ));
    }
    Ok(())
}

fn validate_attributes(attrs: &Map<String, Value>) -> Result<(), AwsError> {
    if attrs.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(AwsError::invalid_parameter_value(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
            attrs.len()
        )));
    }
    for (name, v) in attrs {
        validate_attribute_name(name)?;
        let data_type = v.get("DataType").and_then(Value::as_str).unwrap_or("");
        let base = data_type.split('.').next().unwrap_or("");
        let string = v.get("StringValue").and_then(Value::as_str);
        let binary = v.get("BinaryValue").and_then(Value::as_str);
        match base {
            "String" | "Number" => {
                let Some(s) = string else {
                    return Err(AwsError::invalid_parameter_value(format!(
                        "The message attribute '{name}' with type '{base}' must use field 'String'."
                    )));
                };
                if base == "Number" && !is_number(s) {
                    return Err(AwsError::invalid_parameter_value(format!(
                        "Could not cast message attribute '{name}' value to number."
                    )));
                }
                if s.is_empty() && base == "String" {
                    return Err(AwsError::invalid_parameter_value(format!(
                        "Message attribute '{name}' must contain a non-empty value of type 'String'."
                    )));
                }
                if let Some(bad) = s.chars().find(|c| !valid_body_char(*c)) {
                    return Err(sqs_error(
                        "InvalidMessageContents",
                        format!(
                            "Message attribute '{name}' contains the invalid character {:#x}.",
                            bad as u32
                        ),
                    ));
                }
            }
            "Binary" => {
                if binary.is_none() {
                    return Err(AwsError::invalid_parameter_value(format!(
                        "The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                    )));
                }
            }
            _ => {
                return Err(AwsError::invalid_parameter_value(format!(
                    "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
                )));
            }
        }
        if data_type.len() > 256 {
            return Err(AwsError::invalid_parameter_value(format!(
                "Message attribute '{name}' has a data type longer than 256 characters."
            )));
        }
    }
    Ok(())
}

fn is_number(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && t.parse::<f64>().is_ok_and(f64::is_finite) && !t.eq_ignore_ascii_case("nan")
}

fn validate_system_attributes(attrs: &Map<String, Value>) -> Result<(), AwsError> {
    for (name, v) in attrs {
        if name != "AWSTraceHeader" {
            return Err(AwsError::invalid_parameter_value(format!(
                "Message system attribute name '{name}' is invalid."
            )));
        }
        if v.get("DataType").and_then(Value::as_str) != Some("String")
            || v.get("StringValue").and_then(Value::as_str).is_none()
        {
            return Err(AwsError::invalid_parameter_value(
                "Message system attribute AWSTraceHeader must have type 'String' and a string value.",
            ));
        }
    }
    Ok(())
}

/// Checks a message against the queue's rules; the error is what SendMessage answers.
fn check_outgoing(q: &Queue, m: &Outgoing<'_>) -> Result<(), AwsError> {
    if m.body.is_empty() {
        return Err(AwsError::missing_parameter(
            "The request must contain the parameter MessageBody.",
        ));
    }
    if !m.body.chars().all(valid_body_char) {
        return Err(sqs_error(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        ));
    }
    validate_attributes(&m.attributes)?;
    validate_system_attributes(&m.system_attributes)?;
    let max = q.config.max_message_size;
    if m.size() as i64 > max {
        return Err(AwsError::invalid_parameter_value(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
        )));
    }
    if let Some(d) = m.delay_seconds {
        if !(0..=MAX_DELAY_SECONDS).contains(&d) {
            return Err(invalid_parameter(
                "DelaySeconds",
                &d.to_string(),
                "DelaySeconds must be >= 0 and <= 900.",
            ));
        }
        if q.fifo && d != 0 {
            return Err(invalid_parameter(
                "DelaySeconds",
                &d.to_string(),
                "The request include parameter that is not valid for this queue type.",
            ));
        }
    }
    if let Some(g) = m.group_id
        && !valid_group_or_dedup_id(g)
    {
        return Err(invalid_parameter(
            "MessageGroupId",
            g,
            "MessageGroupId can only include alphanumeric and punctuation characters. 1 to 128 in length.",
        ));
    }
    if let Some(d) = m.dedup_id
        && !valid_group_or_dedup_id(d)
    {
        return Err(invalid_parameter(
            "MessageDeduplicationId",
            d,
            "MessageDeduplicationId can only include alphanumeric and punctuation characters. 1 to 128 in length.",
        ));
    }
    if q.fifo {
        if m.group_id.is_none() {
            return Err(AwsError::missing_parameter(
                "The request must contain the parameter MessageGroupId.",
            ));
        }
        if m.dedup_id.is_none() && !q.config.content_based_dedup {
            return Err(AwsError::invalid_parameter_value(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
    } else if let Some(d) = m.dedup_id {
        return Err(invalid_parameter(
            "MessageDeduplicationId",
            d,
            "The request include parameter that is not valid for this queue type",
        ));
    }
    Ok(())
}

struct Sent {
    message_id: String,
    md5_body: String,
    md5_attributes: Option<String>,
    md5_system_attributes: Option<String>,
    sequence_number: Option<String>,
}

impl Sent {
    fn to_json(&self, id: Option<&str>) -> Value {
        let mut out = Map::new();
        if let Some(id) = id {
            out.insert("Id".into(), json!(id));
        }
        out.insert("MessageId".into(), json!(self.message_id));
        out.insert("MD5OfMessageBody".into(), json!(self.md5_body));
        if let Some(m) = &self.md5_attributes {
            out.insert("MD5OfMessageAttributes".into(), json!(m));
        }
        if let Some(m) = &self.md5_system_attributes {
            out.insert("MD5OfMessageSystemAttributes".into(), json!(m));
        }
        if let Some(s) = &self.sequence_number {
            out.insert("SequenceNumber".into(), json!(s));
        }
        Value::Object(out)
    }
}

/// Adds a checked message to `q` (or recognises a FIFO duplicate) and records the writes.
fn enqueue(q: &mut Queue, m: Outgoing<'_>, sender_id: &str, now: i64, batch: &mut Batch) -> Sent {
    let md5_body = md5_hex(m.body.as_bytes());
    let md5_attributes = md5_of_attributes(&m.attributes);
    let md5_system_attributes = md5_of_attributes(&m.system_attributes);
    let dedup_id = if q.fifo {
        m.dedup_id.map(str::to_string).or_else(|| {
            // Content-based deduplication: SHA-256 of the body, as AWS.
            Some(hex::encode(sha256(m.body.as_bytes())))
        })
    } else {
        None
    };
    let dedup_key = dedup_id
        .as_ref()
        .map(|d| match (q.config.dedup_per_group, m.group_id) {
            (true, Some(g)) => format!("{g}\u{0}{d}"),
            _ => d.clone(),
        });
    if let Some(key) = &dedup_key
        && let Some(entry) = q.dedup.get(key)
        && entry.expires_ms > now
    {
        return Sent {
            message_id: entry.message_id.clone(),
            md5_body,
            md5_attributes,
            md5_system_attributes,
            sequence_number: entry.sequence_number.clone(),
        };
    }
    let seq = q.next_seq(now);
    let message_id = uuid::Uuid::new_v4().to_string();
    let sequence_number = q.fifo.then(|| crate::message::sequence_number(seq));
    let delay_ms = m
        .delay_seconds
        .map(|d| d * 1000)
        .unwrap_or(q.config.delay_ms);
    let body = MessageBody {
        id: message_id.clone(),
        body: m.body.to_string(),
        md5_body: md5_body.clone(),
        attributes: m.attributes,
        md5_attributes: md5_attributes.clone(),
        system_attributes: m.system_attributes,
        md5_system_attributes: md5_system_attributes.clone(),
        sent_ms: now,
        visible_from_ms: now + delay_ms,
        sender_id: sender_id.to_string(),
        group_id: m.group_id.map(str::to_string),
        dedup_id: dedup_id.clone(),
        sequence_number: sequence_number.clone(),
        dead_letter_source_arn: None,
    };
    let msg = Message {
        seq,
        body: Arc::new(body),
        visible_at: now + delay_ms,
        receive_count: 0,
        first_receive_ms: None,
        last_receive_ms: 0,
        nonce: 0,
    };
    writes::new_message(batch, q.id, &msg);
    q.insert(msg);
    if let Some(key) = dedup_key {
        let entry = DedupEntry {
            expires_ms: now + DEDUP_WINDOW_MS,
            message_id: message_id.clone(),
            sequence_number: sequence_number.clone(),
        };
        writes::dedup(batch, q.id, &key, &entry);
        q.dedup.insert(key, entry);
    }
    Sent {
        message_id,
        md5_body,
        md5_attributes,
        md5_system_attributes,
        sequence_number,
    }
}

/// FIFO sequence numbers are 20-digit decimals, increasing per queue, like AWS's.
pub fn sequence_number(seq: u64) -> String {
    (10_000_000_000_000_000_000u128 + u128::from(seq)).to_string()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn sender_id(ctx: &RequestContext) -> String {
    ctx.access_key
        .clone()
        .unwrap_or_else(|| ctx.account.clone())
}

pub async fn send_message(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let out = Outgoing::from_input(input);
    let sender = sender_id(ctx);
    let (sent, commit) = {
        let mut q = cell.queue.lock();
        check_outgoing(&q, &out)?;
        let now = sqs.clock.now_ms();
        let mut batch = Batch::new();
        let sent = enqueue(&mut q, out, &sender, now, &mut batch);
        (sent, sqs.state.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    cell.arrivals.notify_waiters();
    Ok(sent.to_json(None))
}

/// Checks the shape of a batch: 1-10 entries with distinct, well-formed ids.
/// `entry` names the operation's entry shape, as SQS's messages do
/// (`SendMessageBatchRequestEntry`).
fn check_batch_entries(entries: &[Value], entry: &str) -> Result<(), AwsError> {
    if entries.is_empty() {
        return Err(sqs_error(
            "EmptyBatchRequest",
            format!("There should be at least one {entry} in the request."),
        ));
    }
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(sqs_error(
            "TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for e in entries {
        let id = opt_str(e, "Id").unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(sqs_error(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(sqs_error(
                "BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

/// A FIFO batch with an entry lacking its group or deduplication id, or carrying a delay,
/// fails as a whole (SQS answers so; a standard queue's bad entries fail one by one).
fn check_fifo_batch(q: &Queue, entries: &[Value]) -> Result<(), AwsError> {
    if !q.fifo {
        return Ok(());
    }
    for e in entries {
        let out = Outgoing::from_input(e);
        if out.group_id.is_none() {
            return Err(AwsError::invalid_parameter_value(
                "The request must contain the parameter MessageGroupId.",
            ));
        }
        if out.dedup_id.is_none() && !q.config.content_based_dedup {
            return Err(AwsError::invalid_parameter_value(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
        if let Some(d) = out.delay_seconds.filter(|d| *d != 0) {
            return Err(invalid_parameter(
                "DelaySeconds",
                &d.to_string(),
                "The request include parameter that is not valid for this queue type.",
            ));
        }
    }
    Ok(())
}

fn entries(input: &Value) -> &[Value] {
    input
        .get("Entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn failed_entry(id: &str, err: &AwsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": err.status < 500,
        "Code": err.code,
        "Message": err.message,
    })
}

fn batch_result(successful: Vec<Value>, failed: Vec<Value>) -> Value {
    json!({"Successful": successful, "Failed": failed})
}

pub async fn send_message_batch(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let entries = entries(input);
    check_batch_entries(entries, "SendMessageBatchRequestEntry")?;
    check_fifo_batch(&cell.queue.lock(), entries)?;
    let total: usize = entries.iter().map(|e| Outgoing::from_input(e).size()).sum();
    if total > MAX_BATCH_BYTES {
        return Err(sqs_error(
            "BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let sender = sender_id(ctx);
    let (successful, failed, commit) = {
        let mut q = cell.queue.lock();
        let now = sqs.clock.now_ms();
        let mut batch = Batch::new();
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for e in entries {
            let id = opt_str(e, "Id").unwrap_or("");
            let out = Outgoing::from_input(e);
            match check_outgoing(&q, &out) {
                Ok(()) => successful
                    .push(enqueue(&mut q, out, &sender, now, &mut batch).to_json(Some(id))),
                Err(err) => failed.push(failed_entry(id, &err)),
            }
        }
        (successful, failed, sqs.state.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    if !successful.is_empty() {
        cell.arrivals.notify_waiters();
    }
    Ok(batch_result(successful, failed))
}

// ---------------------------------------------------------------- receiving

struct ReceiveOptions {
    max: usize,
    visibility_ms: Option<i64>,
    system_names: Vec<String>,
    attribute_names: Vec<String>,
}

/// Removes messages past the queue's retention period, oldest first.
fn expire(q: &mut Queue, now: i64, batch: &mut Batch) -> usize {
    let retention = q.config.retention_ms;
    let expired: Vec<u64> = q
        .messages
        .values()
        .take_while(|m| m.body.sent_ms + retention <= now)
        .map(|m| m.seq)
        .collect();
    for seq in &expired {
        q.remove(*seq);
        writes::delete_message(batch, q.id, *seq);
    }
    expired.len()
}

/// The messages a receive may take now, in delivery order.
fn candidates(q: &Queue, now: i64, limit: usize) -> Vec<u64> {
    if !q.fifo {
        return q
            .ready
            .range(..(now + 1, 0))
            .take(limit)
            .map(|(_, seq)| *seq)
            .collect();
    }
    // FIFO: a group with a message in flight is blocked; within a group, order is the send
    // order, and a message not yet visible holds back the ones after it. Messages of the
    // group found first are returned first, as SQS does.
    let mut blocked: HashSet<&str> = q
        .messages
        .values()
        .filter(|m| m.in_flight(now))
        .filter_map(|m| m.body.group_id.as_deref())
        .collect();
    let mut groups: Vec<(&str, Vec<u64>)> = Vec::new();
    let mut found = 0;
    for m in q.messages.values() {
        let group = m.body.group_id.as_deref().unwrap_or("");
        if blocked.contains(group) {
            continue;
        }
        if m.visible_at > now {
            blocked.insert(group);
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, seqs)) => seqs.push(m.seq),
            None => groups.push((group, vec![m.seq])),
        }
        found += 1;
        if found >= limit {
            break;
        }
    }
    groups.into_iter().flat_map(|(_, seqs)| seqs).collect()
}

fn wants(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == "All" || n == name)
}

fn message_json(q: &Queue, m: &Message, opts: &ReceiveOptions) -> Value {
    let b = &m.body;
    let mut out = Map::new();
    out.insert("MessageId".into(), json!(b.id));
    out.insert(
        "ReceiptHandle".into(),
        json!(encode_receipt(q.id, m.seq, m.nonce)),
    );
    out.insert("MD5OfBody".into(), json!(b.md5_body));
    out.insert("Body".into(), json!(b.body));
    let names = &opts.system_names;
    let mut attrs = Map::new();
    let mut put = |k: &str, v: String| {
        if wants(names, k) {
            attrs.insert(k.to_string(), Value::String(v));
        }
    };
    put("SenderId", b.sender_id.clone());
    put("SentTimestamp", b.sent_ms.to_string());
    put("ApproximateReceiveCount", m.receive_count.to_string());
    put(
        "ApproximateFirstReceiveTimestamp",
        m.first_receive_ms.unwrap_or(0).to_string(),
    );
    if let Some(s) = &b.sequence_number {
        put("SequenceNumber", s.clone());
    }
    if let Some(d) = &b.dedup_id {
        put("MessageDeduplicationId", d.clone());
    }
    if let Some(g) = &b.group_id {
        put("MessageGroupId", g.clone());
    }
    if let Some(trace) = b
        .system_attributes
        .get("AWSTraceHeader")
        .and_then(|v| v.get("StringValue"))
        .and_then(Value::as_str)
    {
        put("AWSTraceHeader", trace.to_string());
    }
    if let Some(arn) = &b.dead_letter_source_arn {
        put("DeadLetterQueueSourceArn", arn.clone());
    }
    if !attrs.is_empty() {
        out.insert("Attributes".into(), Value::Object(attrs));
    }
    let selected: Map<String, Value> = b
        .attributes
        .iter()
        .filter(|(name, _)| {
            opts.attribute_names.iter().any(|want| {
                want == "All"
                    || want == ".*"
                    || want == *name
                    || want
                        .strip_suffix(".*")
                        .is_some_and(|prefix| name.starts_with(prefix))
            })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(md5) = md5_of_attributes(&selected) {
        out.insert("MD5OfMessageAttributes".into(), json!(md5));
        out.insert("MessageAttributes".into(), Value::Object(selected));
    }
    Value::Object(out)
}

/// What one pass over a queue produced.
struct Taken {
    messages: Vec<Value>,
    /// Messages past their queue's maxReceiveCount, already removed from it.
    to_dead_letter: Vec<Message>,
}

fn take(q: &mut Queue, opts: &ReceiveOptions, now: i64, redrive: bool, batch: &mut Batch) -> Taken {
    expire(q, now, batch);
    let visibility = opts.visibility_ms.unwrap_or(q.config.visibility_ms);
    let max_receives = q.config.redrive.as_ref().map(|(_, n)| *n as u32);
    // Extra candidates cover messages that go to the dead-letter queue instead.
    let seqs = candidates(q, now, opts.max + 16);
    let mut taken = Taken {
        messages: Vec::new(),
        to_dead_letter: Vec::new(),
    };
    for seq in seqs {
        if taken.messages.len() >= opts.max {
            break;
        }
        let Some(current) = q.messages.get(&seq) else {
            continue;
        };
        if redrive && max_receives.is_some_and(|max| current.receive_count >= max) {
            if let Some(m) = q.remove(seq) {
                taken.to_dead_letter.push(m);
            }
            continue;
        }
        q.set_visible_at(seq, now + visibility);
        let Some(m) = q.messages.get_mut(&seq) else {
            continue;
        };
        m.receive_count += 1;
        m.nonce = m.nonce.wrapping_add(1);
        m.first_receive_ms.get_or_insert(now);
        m.last_receive_ms = now;
        writes::message_state(batch, q.id, m);
        let m = &q.messages[&seq];
        taken.messages.push(message_json(q, m, opts));
    }
    taken
}

fn receive_options(input: &Value) -> Result<ReceiveOptions, AwsError> {
    let max = opt_int(input, "MaxNumberOfMessages").unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(invalid_parameter(
            "MaxNumberOfMessages",
            &max.to_string(),
            "Must be between 1 and 10, if provided.",
        ));
    }
    let visibility = opt_int(input, "VisibilityTimeout");
    if let Some(v) = visibility
        && !(0..=MAX_VISIBILITY_TIMEOUT).contains(&v)
    {
        return Err(invalid_parameter(
            "VisibilityTimeout",
            &v.to_string(),
            "Must be between 0 and 43200, if provided.",
        ));
    }
    let mut system_names = string_list(input, "AttributeNames");
    system_names.extend(string_list(input, "MessageSystemAttributeNames"));
    Ok(ReceiveOptions {
        max: max as usize,
        visibility_ms: visibility.map(|v| v * 1000),
        system_names,
        attribute_names: string_list(input, "MessageAttributeNames"),
    })
}

pub async fn receive_message(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let opts = receive_options(input)?;
    let wait = match opt_int(input, "WaitTimeSeconds") {
        Some(w) if !(0..=MAX_WAIT_TIME_SECONDS).contains(&w) => {
            return Err(invalid_parameter(
                "WaitTimeSeconds",
                &w.to_string(),
                "Must be >= 0 and <= 20, if provided.",
            ));
        }
        Some(w) => w,
        None => cell.queue.lock().config.wait_seconds,
    };
    let deadline = sqs.clock.now_ms() + wait * 1000;
    loop {
        let arrival = cell.arrivals.notified();
        tokio::pin!(arrival);
        arrival.as_mut().enable();
        // Resolve the dead-letter queue before locking this queue: locks are never nested.
        let dead_letter = dead_letter_target(sqs, &cell);
        let now = sqs.clock.now_ms();
        let (taken, next_visible, commit) = {
            let mut q = cell.queue.lock();
            let mut batch = Batch::new();
            let taken = take(&mut q, &opts, now, dead_letter.is_some(), &mut batch);
            for m in &taken.to_dead_letter {
                writes::delete_message(&mut batch, q.id, m.seq);
            }
            (taken, q.next_visible_at(now), sqs.state.store.commit(batch))
        };
        let moved = !taken.to_dead_letter.is_empty();
        if let Some(dlq) = &dead_letter
            && moved
        {
            move_to_dead_letter(sqs, &cell, dlq, taken.to_dead_letter).await?;
        }
        commit.await.map_err(store_error)?;
        if !taken.messages.is_empty() || now >= deadline {
            return Ok(if taken.messages.is_empty() {
                json!({})
            } else {
                json!({"Messages": taken.messages})
            });
        }
        if moved {
            continue;
        }
        if !sqs
            .state
            .get(&cell.key)
            .is_some_and(|c| Arc::ptr_eq(&c, &cell))
        {
            return Ok(json!({}));
        }
        let wake_at = next_visible.map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            _ = &mut arrival => {}
            _ = sqs.clock.sleep_until(wake_at) => {}
        }
    }
}

fn dead_letter_target(sqs: &Sqs, cell: &Arc<QueueCell>) -> Option<Arc<QueueCell>> {
    let arn = cell
        .queue
        .lock()
        .config
        .redrive
        .as_ref()
        .map(|(arn, _)| arn.clone())?;
    let target = key_from_arn(&arn).and_then(|k| sqs.state.get(&k))?;
    (!Arc::ptr_eq(&target, cell)).then_some(target)
}

/// Puts messages into `dlq` and removes them from `source` in the store, in one commit, so
/// a crash leaves each message in exactly one of the two.
async fn move_to_dead_letter(
    sqs: &Sqs,
    source: &QueueCell,
    dlq: &QueueCell,
    messages: Vec<Message>,
) -> Result<(), AwsError> {
    let source_id = source.queue.lock().id;
    transfer(sqs, source_id, dlq, messages, Some(source.key.arn())).await?;
    tracing::debug!(source = %source.key.name, dlq = %dlq.key.name, "Moved messages to the dead-letter queue.");
    Ok(())
}

/// Inserts messages taken out of queue `source_id` into `destination` as new, visible
/// messages, deleting them from the source in the same store commit. `dead_letter_source`
/// is the `DeadLetterQueueSourceArn` the moved messages carry (none when redriven back).
async fn transfer(
    sqs: &Sqs,
    source_id: u64,
    destination: &QueueCell,
    messages: Vec<Message>,
    dead_letter_source: Option<String>,
) -> Result<(), AwsError> {
    let commit = {
        let mut q = destination.queue.lock();
        let now = sqs.clock.now_ms();
        let mut batch = Batch::new();
        for m in messages {
            writes::delete_message(&mut batch, source_id, m.seq);
            let seq = q.next_seq(now);
            let mut body = (*m.body).clone();
            body.dead_letter_source_arn = dead_letter_source.clone();
            body.visible_from_ms = now;
            body.sequence_number = q.fifo.then(|| sequence_number(seq));
            let moved = Message {
                seq,
                body: Arc::new(body),
                visible_at: now,
                receive_count: 0,
                first_receive_ms: None,
                last_receive_ms: 0,
                nonce: 0,
            };
            writes::new_message(&mut batch, q.id, &moved);
            q.insert(moved);
        }
        sqs.state.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    destination.arrivals.notify_waiters();
    Ok(())
}

/// Moves up to `limit` visible messages from `source` to `destination` for a move task;
/// returns how many moved.
/// With `only_from`, only messages that a dead-letter move brought from that queue ARN move.
pub async fn move_messages(
    sqs: &Sqs,
    source: &QueueCell,
    destination: &QueueCell,
    limit: usize,
    only_from: Option<&str>,
) -> Result<usize, AwsError> {
    let now = sqs.clock.now_ms();
    let (messages, source_id) = {
        let mut q = source.queue.lock();
        let seqs: Vec<u64> = q
            .ready
            .range(..(now + 1, 0))
            .filter(|(_, s)| {
                only_from.is_none_or(|arn| {
                    q.messages[s].body.dead_letter_source_arn.as_deref() == Some(arn)
                })
            })
            .take(limit)
            .map(|(_, s)| *s)
            .collect();
        let messages: Vec<Message> = seqs.into_iter().filter_map(|s| q.remove(s)).collect();
        (messages, q.id)
    };
    let n = messages.len();
    if n > 0 {
        transfer(sqs, source_id, destination, messages, None).await?;
    }
    Ok(n)
}

// ---------------------------------------------------------------- deleting and visibility

/// Deletes the message a handle names. A standard queue accepts a handle from an earlier
/// receive of the message (SQS deletes with it, though its docs promise only success); a FIFO
/// queue answers that such a handle has expired, since another receive may own the message.
fn delete_one(q: &mut Queue, handle: &str, now: i64, batch: &mut Batch) -> Result<(), AwsError> {
    let (seq, nonce) = receipt_in(q, handle)?;
    let Some(m) = q.messages.get(&seq) else {
        return Ok(());
    };
    if q.fifo && (m.nonce != nonce || !m.in_flight(now)) {
        return Err(expired_receipt(handle));
    }
    q.remove(seq);
    writes::delete_message(batch, q.id, seq);
    Ok(())
}

fn expired_receipt(handle: &str) -> AwsError {
    invalid_parameter("ReceiptHandle", handle, "The receipt handle has expired.")
}

pub async fn delete_message(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let handle = crate::input::req_str(input, "ReceiptHandle")?;
    let commit = {
        let mut q = cell.queue.lock();
        let mut batch = Batch::new();
        delete_one(&mut q, handle, sqs.clock.now_ms(), &mut batch)?;
        sqs.state.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub async fn delete_message_batch(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let entries = entries(input);
    check_batch_entries(entries, "DeleteMessageBatchRequestEntry")?;
    let (successful, failed, commit) = {
        let mut q = cell.queue.lock();
        let now = sqs.clock.now_ms();
        let mut batch = Batch::new();
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for e in entries {
            let id = opt_str(e, "Id").unwrap_or("");
            let handle = opt_str(e, "ReceiptHandle").unwrap_or("");
            match delete_one(&mut q, handle, now, &mut batch) {
                Ok(()) => successful.push(json!({"Id": id})),
                Err(err) => failed.push(failed_entry(id, &err)),
            }
        }
        (successful, failed, sqs.state.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    Ok(batch_result(successful, failed))
}

fn change_one(
    q: &mut Queue,
    handle: &str,
    timeout: Option<i64>,
    now: i64,
    batch: &mut Batch,
) -> Result<bool, AwsError> {
    let timeout = timeout.ok_or_else(|| {
        AwsError::missing_parameter("The request must contain the parameter VisibilityTimeout.")
    })?;
    let (seq, nonce) = receipt_in(q, handle)?;
    if !(0..=MAX_VISIBILITY_TIMEOUT).contains(&timeout) {
        return Err(invalid_parameter(
            "VisibilityTimeout",
            &timeout.to_string(),
            "Must be between 0 and 43200.",
        ));
    }
    // As with deletes, a standard queue takes an earlier receive's handle; a FIFO queue
    // takes only the newest one.
    let Some(m) = q.messages.get(&seq) else {
        return Err(invalid_parameter(
            "ReceiptHandle",
            handle,
            "Message does not exist or is not available for visibility timeout change.",
        ));
    };
    if q.fifo && m.nonce != nonce {
        return Err(expired_receipt(handle));
    }
    if m.receive_count == 0 {
        return Err(sqs_error(
            "MessageNotInflight",
            "The message referred to isn't in flight.",
        ));
    }
    let visible_at = now + timeout * 1000;
    if visible_at - m.last_receive_ms > MAX_TOTAL_VISIBILITY_MS {
        return Err(invalid_parameter(
            "VisibilityTimeout",
            &timeout.to_string(),
            "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]",
        ));
    }
    q.set_visible_at(seq, visible_at);
    if let Some(m) = q.messages.get(&seq) {
        writes::message_state(batch, q.id, m);
    }
    Ok(timeout == 0)
}

pub async fn change_message_visibility(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let handle = crate::input::req_str(input, "ReceiptHandle")?;
    let (now_visible, commit) = {
        let mut q = cell.queue.lock();
        let mut batch = Batch::new();
        let now_visible = change_one(
            &mut q,
            handle,
            opt_int(input, "VisibilityTimeout"),
            sqs.clock.now_ms(),
            &mut batch,
        )?;
        (now_visible, sqs.state.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    if now_visible {
        cell.arrivals.notify_waiters();
    }
    Ok(json!({}))
}

pub async fn change_message_visibility_batch(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let entries = entries(input);
    check_batch_entries(entries, "ChangeMessageVisibilityBatchRequestEntry")?;
    let (successful, failed, any_visible, commit) = {
        let mut q = cell.queue.lock();
        let now = sqs.clock.now_ms();
        let mut batch = Batch::new();
        let (mut successful, mut failed, mut any_visible) = (Vec::new(), Vec::new(), false);
        for e in entries {
            let id = opt_str(e, "Id").unwrap_or("");
            let handle = opt_str(e, "ReceiptHandle").unwrap_or("");
            match change_one(
                &mut q,
                handle,
                opt_int(e, "VisibilityTimeout"),
                now,
                &mut batch,
            ) {
                Ok(v) => {
                    any_visible |= v;
                    successful.push(json!({"Id": id}));
                }
                Err(err) => failed.push(failed_entry(id, &err)),
            }
        }
        (
            successful,
            failed,
            any_visible,
            sqs.state.store.commit(batch),
        )
    };
    commit.await.map_err(store_error)?;
    if any_visible {
        cell.arrivals.notify_waiters();
    }
    Ok(batch_result(successful, failed))
}

// ---------------------------------------------------------------- retention

/// Once a second of clock time, drops expired messages and deduplication entries, so
/// retention holds for queues nobody reads. Ends when SQS is dropped.
pub async fn retention_sweeper(sqs: Weak<Sqs>) {
    loop {
        let (clock, cells) = {
            let Some(sqs) = sqs.upgrade() else { return };
            let cells: Vec<Arc<QueueCell>> = sqs.state.queues.read().values().cloned().collect();
            (sqs.clock.clone(), cells)
        };
        if let Some(sqs) = sqs.upgrade() {
            let now = clock.now_ms();
            for cell in cells {
                let commit = {
                    let mut q = cell.queue.lock();
                    let mut batch = Batch::new();
                    expire(&mut q, now, &mut batch);
                    let id = q.id;
                    q.dedup.retain(|key, entry| {
                        let keep = entry.expires_ms > now;
                        if !keep {
                            writes::delete_dedup(&mut batch, id, key);
                        }
                        keep
                    });
                    (!batch.is_empty()).then(|| sqs.state.store.commit(batch))
                };
                if let Some(commit) = commit
                    && let Err(e) = commit.await
                {
                    tracing::error!(error = %e, "The retention sweep could not write to the store.");
                }
            }
        }
        clock.sleep_ms(1000).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_handles_round_trip_and_reject_garbage() {
        let h = encode_receipt(7, 99, 3);
        assert_eq!(decode_receipt(&h), Some((7, 99, 3)));
        assert_eq!(decode_receipt("garbage"), None);
        assert_eq!(decode_receipt(""), None);
        assert_eq!(decode_receipt("!!!!"), None);
    }

    #[test]
    fn receipt_handles_never_look_like_a_cli_option() {
        // A queue id whose top bits are all ones encodes to `-`/`_` without the prefix.
        for id in [u64::MAX, 0xF800_0000_0000_0000, 0xFC00_0000_0000_0000, 0] {
            let h = encode_receipt(id, 1, 1);
            assert!(h.starts_with("AQEB"), "{h}");
            assert_eq!(decode_receipt(&h), Some((id, 1, 1)));
        }
    }

    #[test]
    fn body_characters() {
        assert!("hello\tworld\n\r".chars().all(valid_body_char));
        assert!(!valid_body_char('\u{0}'));
        assert!(!valid_body_char('\u{FFFE}'));
        assert!(valid_body_char('\u{1F600}'));
    }

    #[test]
    fn attribute_names() {
        assert!(validate_attribute_name("a.b-c_d").is_ok());
        assert!(validate_attribute_name("AWS.x").is_err());
        assert!(validate_attribute_name("amazon.x").is_err());
        assert!(validate_attribute_name("a..b").is_err());
        assert!(validate_attribute_name(".a").is_err());
        assert!(validate_attribute_name("a b").is_err());
    }

    #[test]
    fn numbers() {
        assert!(is_number("1"));
        assert!(is_number("-1.5e3"));
        assert!(!is_number("abc"));
        assert!(!is_number("NaN"));
        assert!(!is_number(""));
    }
}
