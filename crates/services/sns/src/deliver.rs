//! Deliveries: one lane per subscription, each a task that takes its due deliveries in
//! message order, attempts them, and records the outcome in the store.
//!
//! A delivery enters its lane under the state lock when its message is published (so lanes
//! see messages in sequence order), but a lane attempts it only once the publish's batch is
//! durable (`durable_seq`): nothing reaches a subscriber that a crash could take back. Its
//! record (`sns.dlv`) leaves the store after the outcome is final: delivered, dead-lettered or
//! dropped. A crash between a delivery and that commit repeats it after restart: at least
//! once, as AWS.
//!
//! Retries follow AWS: SQS and Lambda (AWS-managed endpoints) retry server-side errors 3
//! times at once, twice after 1 s, 10 times backing off from 1 s to 20 s, then every 20 s up
//! to 100,015 attempts; HTTP endpoints follow the subscription's or topic's `DeliveryPolicy`
//! (default: 3 retries 20 s apart). Client-side errors (a queue or endpoint that does not
//! exist, an HTTP 4xx) are not retried. A delivery that failed for good goes to the
//! subscription's `RedrivePolicy` dead-letter queue, or is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::Sns;
use crate::envelope;
use crate::state::{self, Delivery, Message, Pending, Subscription};

/// How long an HTTP endpoint has to answer (AWS: 15 s).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries a lane attempts before recording their outcomes.
const ROUND: usize = 16;

#[derive(Default)]
pub struct Dispatch {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Lanes start once the server is wired (services, endpoint).
    ready: bool,
    /// Every message up to this sequence is durable.
    durable_seq: u64,
    /// Messages with deliveries left, and how many.
    messages: HashMap<u64, (Arc<Message>, usize)>,
    /// Subscriptions with deliveries of messages not yet durable, by sequence.
    undurable: BTreeMap<u64, Vec<String>>,
    lanes: HashMap<String, Lane>,
}

#[derive(Default)]
struct Lane {
    queue: BTreeMap<u64, Delivery>,
    running: bool,
    wake: Arc<Notify>,
}

/// What one attempt came to.
enum Outcome {
    Done,
    Retry(i64),
}

/// Why an attempt failed.
struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }

    fn from_aws(e: &AwsError) -> Failure {
        Failure {
            message: format!("{}: {}", e.code, e.message),
            retryable: e.status == 429 || e.status >= 500,
        }
    }
}

impl Dispatch {
    /// Takes back what a previous run left undelivered; lanes start at `set_ready`.
    pub fn restore(&self, pending: Pending) {
        let mut inner = self.inner.lock();
        for m in pending.messages {
            inner.durable_seq = inner.durable_seq.max(m.seq);
            inner.messages.insert(m.seq, (Arc::new(m), 0));
        }
        for d in pending.deliveries {
            let Some(entry) = inner.messages.get_mut(&d.seq) else {
                continue;
            };
            entry.1 += 1;
            inner
                .lanes
                .entry(d.sub_arn.clone())
                .or_default()
                .queue
                .insert(d.seq, d);
        }
        inner.messages.retain(|_, (_, n)| *n > 0);
    }

    pub fn set_ready(&self, sns: &Sns) {
        let mut inner = self.inner.lock();
        inner.ready = true;
        let arns: Vec<String> = inner.lanes.keys().cloned().collect();
        for arn in arns {
            wake(&mut inner, sns, &arn);
        }
    }

    /// Queues a message's deliveries (called under the state lock, in sequence order).
    pub fn add(&self, message: Arc<Message>, deliveries: Vec<Delivery>) {
        let mut inner = self.inner.lock();
        let seq = message.seq;
        inner.messages.insert(seq, (message, deliveries.len()));
        let arns: Vec<String> = deliveries.iter().map(|d| d.sub_arn.clone()).collect();
        for d in deliveries {
            inner
                .lanes
                .entry(d.sub_arn.clone())
                .or_default()
                .queue
                .insert(seq, d);
        }
        inner.undurable.insert(seq, arns);
    }

    /// Every message up to `seq` is durable: their lanes may go.
    pub fn durable(&self, sns: &Sns, seq: u64) {
        let mut inner = self.inner.lock();
        inner.durable_seq = inner.durable_seq.max(seq);
        let later = inner.undurable.split_off(&(seq + 1));
        let now_durable = std::mem::replace(&mut inner.undurable, later);
        let mut arns: Vec<String> = now_durable.into_values().flatten().collect();
        arns.sort_unstable();
        arns.dedup();
        for arn in arns {
            wake(&mut inner, sns, &arn);
        }
    }

    /// The batch holding these messages failed: they were never published.
    pub fn abandon(&self, seqs: &[u64]) {
        let mut inner = self.inner.lock();
        for seq in seqs {
            inner.messages.remove(seq);
            if let Some(arns) = inner.undurable.remove(seq) {
                for arn in arns {
                    if let Some(lane) = inner.lanes.get_mut(&arn) {
                        lane.queue.remove(seq);
                    }
                }
            }
        }
    }

    /// A subscription went away: its lane drops what it holds at its next turn.
    pub fn forget_subscription(&self, arn: &str) {
        let mut inner = self.inner.lock();
        if let Some(lane) = inner.lanes.get_mut(arn) {
            for d in lane.queue.values_mut() {
                d.next_ms = 0;
            }
            lane.wake.notify_one();
        }
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.messages.clear();
        inner.undurable.clear();
        for lane in inner.lanes.values_mut() {
            lane.queue.clear();
            lane.wake.notify_one();
        }
    }
}

/// Starts the lane of `arn` if it is idle, or wakes it.
fn wake(inner: &mut Inner, sns: &Sns, arn: &str) {
    if !inner.ready {
        return;
    }
    let Some(lane) = inner.lanes.get_mut(arn) else {
        return;
    };
    if lane.running {
        lane.wake.notify_one();
        return;
    }
    let Some(me) = sns.myself() else { return };
    lane.running = true;
    let arn = arn.to_string();
    tokio::spawn(async move { me.run_lane(arn).await });
}

/// The pause before retry `n` (1-based) of an AWS-managed endpoint (SQS, Lambda), or `None`
/// when the retries are used up.
fn managed_delay_ms(n: u32) -> Option<i64> {
    match n {
        1..=3 => Some(0),
        4..=5 => Some(1_000),
        6..=15 => Some(1_000 + (n as i64 - 5) * 1_900),
        16..=100_015 => Some(20_000),
        _ => None,
    }
}

/// An HTTP delivery policy's `healthyRetryPolicy`, with AWS's defaults.
#[derive(Debug, Clone, PartialEq)]
struct RetryPolicy {
    min_delay_s: i64,
    max_delay_s: i64,
    num_retries: u32,
    num_no_delay: u32,
    num_min_delay: u32,
    num_max_delay: u32,
    backoff: String,
}

impl RetryPolicy {
    fn from_json(v: Option<&Value>) -> RetryPolicy {
        let n = |k: &str, d: i64| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_i64)
                .unwrap_or(d)
        };
        RetryPolicy {
            min_delay_s: n("minDelayTarget", 20),
            max_delay_s: n("maxDelayTarget", 20),
            num_retries: n("numRetries", 3) as u32,
            num_no_delay: n("numNoDelayRetries", 0) as u32,
            num_min_delay: n("numMinDelayRetries", 0) as u32,
            num_max_delay: n("numMaxDelayRetries", 0) as u32,
            backoff: v
                .and_then(|v| v.get("backoffFunction"))
                .and_then(Value::as_str)
                .unwrap_or("linear")
                .to_string(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "minDelayTarget": self.min_delay_s,
            "maxDelayTarget": self.max_delay_s,
            "numRetries": self.num_retries,
            "numMaxDelayRetries": self.num_max_delay,
            "numNoDelayRetries": self.num_no_delay,
            "numMinDelayRetries": self.num_min_delay,
            "backoffFunction": self.backoff,
        })
    }

    /// The pause before retry `n` (1-based): no-delay retries, then minimum-delay ones, then
    /// the back-off phase from the minimum to the maximum, then maximum-delay ones.
    fn delay_ms(&self, n: u32) -> Option<i64> {
        if n > self.num_retries {
            return None;
        }
        let (min, max) = (self.min_delay_s * 1000, self.max_delay_s * 1000);
        if n <= self.num_no_delay {
            return Some(0);
        }
        if n <= self.num_no_delay + self.num_min_delay {
            return Some(min);
        }
        if n > self.num_retries.saturating_sub(self.num_max_delay) {
            return Some(max);
        }
        let backoff = self
            .num_retries
            .saturating_sub(self.num_no_delay + self.num_min_delay + self.num_max_delay)
            .max(1) as f64;
        let i = (n - self.num_no_delay - self.num_min_delay) as f64;
        let fraction = (i / backoff).min(1.0);
        let ms = match self.backoff.as_str() {
            "exponential" if min > 0 => (min as f64) * ((max as f64) / (min as f64)).powf(fraction),
            "geometric" => min as f64 + (max - min) as f64 * fraction * fraction,
            "arithmetic" => min as f64 + (max - min) as f64 * fraction.sqrt(),
            _ => min as f64 + (max - min) as f64 * fraction,
        };
        Some(ms.round() as i64)
    }
}

fn http_policy(sub: &Subscription, topic_policy: Option<&str>) -> RetryPolicy {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    if let Some(v) = sub.attributes.get("DeliveryPolicy").and_then(|s| parse(s))
        && let Some(h) = v.get("healthyRetryPolicy")
    {
        return RetryPolicy::from_json(Some(h));
    }
    if let Some(v) = topic_policy.and_then(parse)
        && let Some(h) = v
            .get("http")
            .and_then(|h| h.get("defaultHealthyRetryPolicy"))
    {
        return RetryPolicy::from_json(Some(h));
    }
    RetryPolicy::from_json(None)
}

/// The `EffectiveDeliveryPolicy` GetSubscriptionAttributes shows for HTTP subscriptions.
pub fn effective_http_policy(sub: &Subscription) -> Value {
    json!({
        "healthyRetryPolicy": http_policy(sub, None).to_json(),
        "sicklyRetryPolicy": null,
        "throttlePolicy": null,
        "requestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
        "guaranteed": false,
    })
}

impl Sns {
    async fn run_lane(self: Arc<Sns>, arn: String) {
        loop {
            let now = self.clock.now_ms();
            let (due, next, wake) = {
                let mut guard = self.dispatch.inner.lock();
                let inner = &mut *guard;
                let durable = inner.durable_seq;
                let Some(lane) = inner.lanes.get_mut(&arn) else {
                    return;
                };
                let mut due = Vec::new();
                let mut next: Option<i64> = None;
                for (seq, d) in &lane.queue {
                    if *seq > durable {
                        break;
                    }
                    if d.next_ms <= now {
                        if due.len() == ROUND {
                            next = Some(now);
                            break;
                        }
                        let message = inner.messages.get(seq).map(|(m, _)| m.clone());
                        due.push((d.clone(), message));
                    } else {
                        next = Some(next.map_or(d.next_ms, |n: i64| n.min(d.next_ms)));
                    }
                }
                if due.is_empty() && next.is_none() {
                    lane.running = false;
                    if lane.queue.is_empty() {
                        inner.lanes.remove(&arn);
                    }
                    return;
                }
                (due, next, lane.wake.clone())
            };
            if due.is_empty() {
                let until = next.unwrap_or(now);
                tokio::select! {
                    _ = self.clock.sleep_until(until) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
            let found = {
                let state = self.state.lock();
                state.subs.get(&arn).cloned().map(|s| {
                    let policy = state
                        .topics
                        .get(&s.topic_arn)
                        .and_then(|t| t.attributes.get("DeliveryPolicy").cloned());
                    (s, policy)
                })
            };
            let mut outcomes = Vec::with_capacity(due.len());
            match &found {
                // Several messages for one queue go as SendMessageBatch calls of 10: one
                // commit in SQS instead of one each.
                Some((sub, policy)) if sub.protocol == "sqs" && due.len() > 1 => {
                    for chunk in due.chunks(10) {
                        let results = self.send_batch(sub, chunk).await;
                        for ((d, message), result) in chunk.iter().zip(results) {
                            let outcome = match message {
                                Some(m) => self.settle(sub, policy.as_deref(), m, d, result).await,
                                None => Outcome::Done,
                            };
                            outcomes.push((d.clone(), outcome));
                        }
                    }
                }
                _ => {
                    for (d, message) in due {
                        let outcome = match (&found, message) {
                            (Some((sub, policy)), Some(m)) => {
                                let result = self.deliver_once(sub, &m).await;
                                self.settle(sub, policy.as_deref(), &m, &d, result).await
                            }
                            _ => Outcome::Done,
                        };
                        outcomes.push((d, outcome));
                    }
                }
            }
            let commit = {
                let mut guard = self.dispatch.inner.lock();
                let inner = &mut *guard;
                let mut batch = Batch::new();
                for (d, outcome) in outcomes {
                    match outcome {
                        Outcome::Done => {
                            if let Some(lane) = inner.lanes.get_mut(&arn) {
                                lane.queue.remove(&d.seq);
                            }
                            state::delete_delivery(&mut batch, d.seq, &d.sub_arn);
                            if let Some(entry) = inner.messages.get_mut(&d.seq) {
                                entry.1 = entry.1.saturating_sub(1);
                                if entry.1 == 0 {
                                    inner.messages.remove(&d.seq);
                                    state::delete_message(&mut batch, d.seq);
                                }
                            } else {
                                state::delete_message(&mut batch, d.seq);
                            }
                        }
                        Outcome::Retry(at) => {
                            let next = Delivery {
                                attempts: d.attempts + 1,
                                next_ms: at,
                                ..d
                            };
                            state::put_delivery(&mut batch, &next);
                            if let Some(lane) = inner.lanes.get_mut(&arn)
                                && let Some(slot) = lane.queue.get_mut(&next.seq)
                            {
                                *slot = next;
                            }
                        }
                    }
                }
                self.store.commit(batch)
            };
            if let Err(e) = commit.await {
                tracing::error!(error = %e, "SNS could not record delivery outcomes.");
            }
        }
    }

    /// What follows from an attempt's result: done, a retry, or the dead-letter queue.
    async fn settle(
        &self,
        sub: &Subscription,
        topic_policy: Option<&str>,
        m: &Message,
        d: &Delivery,
        result: Result<(), Failure>,
    ) -> Outcome {
        let failure = match result {
            Ok(()) => return Outcome::Done,
            Err(f) => f,
        };
        let retry = d.attempts + 1;
        if failure.retryable {
            let delay = match sub.protocol.as_str() {
                "http" | "https" => http_policy(sub, topic_policy).delay_ms(retry),
                _ => managed_delay_ms(retry),
            };
            if let Some(delay) = delay {
                tracing::debug!(
                    subscription = %sub.arn, retry, error = %failure.message,
                    "SNS will retry a delivery."
                );
                return Outcome::Retry(self.clock.now_ms() + delay);
            }
        }
        tracing::info!(
            subscription = %sub.arn, error = %failure.message,
            "SNS gave up on a delivery."
        );
        if let Some(dlq) = sub.dead_letter_arn() {
            let body = if sub.raw() && sub.protocol == "sqs" {
                m.text_for(&sub.protocol).to_string()
            } else {
                envelope::notification(m, sub, &self.endpoint())
            };
            let attributes = (sub.raw() && sub.protocol == "sqs").then(|| sqs_attributes(m));
            if let Err(f) = self.send_to_queue(&dlq, body, attributes, m).await {
                tracing::warn!(
                    subscription = %sub.arn, dead_letter_queue = %dlq, error = %f.message,
                    "SNS could not move a failed delivery to the dead-letter queue."
                );
            }
        }
        Outcome::Done
    }

    async fn deliver_once(&self, sub: &Subscription, m: &Message) -> Result<(), Failure> {
        let endpoint = self.endpoint();
        match sub.protocol.as_str() {
            "sqs" => {
                let (body, attributes) = if sub.raw() {
                    (m.text_for("sqs").to_string(), Some(sqs_attributes(m)))
                } else {
                    (envelope::notification(m, sub, &endpoint), None)
                };
                self.send_to_queue(&sub.endpoint, body, attributes, m).await
            }
            "lambda" => {
                let invoker = self.lambda.read().clone();
                let Some(invoker) = invoker else {
                    return Err(Failure::permanent("Lambda is not served."));
                };
                let (account, region) = match tsumiki_core::ids::parse_arn(&sub.endpoint) {
                    Some((_, region, account, _)) => (account.to_string(), region.to_string()),
                    None => (m.account.clone(), m.region.clone()),
                };
                let payload = envelope::lambda_event(m, sub, &endpoint).to_string();
                invoker
                    .enqueue(
                        tsumiki_ports::FunctionTarget {
                            account,
                            region,
                            function: sub.endpoint.clone(),
                            qualifier: None,
                        },
                        payload.into_bytes(),
                        tsumiki_core::ids::request_id(),
                    )
                    .await
                    .map_err(|e| Failure::from_aws(&e))
            }
            "http" | "https" => {
                let body = if sub.raw() {
                    m.text_for(&sub.protocol).to_string()
                } else {
                    let version = self.signature_version(&sub.topic_arn);
                    envelope::notification_signed(m, sub, &endpoint, Some(&version))
                };
                let headers = vec![
                    ("x-amz-sns-message-type", "Notification".to_string()),
                    ("x-amz-sns-message-id", m.id.clone()),
                    ("x-amz-sns-topic-arn", m.topic_arn.clone()),
                    ("x-amz-sns-subscription-arn", sub.arn.clone()),
                    ("x-amz-sns-rawdelivery", sub.raw().to_string()),
                ];
                http_post(&sub.endpoint, headers, body).await
            }
            "firehose" => {
                let body = if sub.raw() {
                    m.text_for(&sub.protocol).to_string()
                } else {
                    envelope::firehose_record(m, sub, &endpoint)
                };
                self.send_to_firehose(&sub.endpoint, body).await
            }
            "email" | "email-json" => {
                let text = if sub.protocol == "email" {
                    email_text(sub, m, &endpoint)
                } else {
                    envelope::notification(m, sub, &endpoint)
                };
                self.write_mail(sub, &m.id, &text)
            }
            other => Err(Failure::permanent(format!(
                "Protocol {other} is not delivered by tsumiki."
            ))),
        }
    }

    /// One record per message, ended by a newline (AWS separates SNS messages in the
    /// delivered objects with line breaks).
    async fn send_to_firehose(&self, stream_arn: &str, body: String) -> Result<(), Failure> {
        let Some((_, region, account, resource)) = tsumiki_core::ids::parse_arn(stream_arn) else {
            return Err(Failure::permanent(format!(
                "{stream_arn} is not a delivery stream ARN."
            )));
        };
        let service = self.services.read().get("firehose").cloned();
        let Some(firehose) = service else {
            return Err(Failure::permanent("Firehose is not served."));
        };
        let data = base64::engine::general_purpose::STANDARD.encode(body + "\n");
        let ctx = RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: String::new(),
            access_key: None,
            path: "/".into(),
        };
        firehose
            .call(
                &ctx,
                "PutRecord",
                json!({
                    "DeliveryStreamName": resource.trim_start_matches("deliverystream/"),
                    "Record": {"Data": data},
                }),
            )
            .await
            .map(|_| ())
            .map_err(|e| Failure::from_aws(&e))
    }

    async fn send_to_queue(
        &self,
        queue_arn: &str,
        body: String,
        attributes: Option<Value>,
        m: &Message,
    ) -> Result<(), Failure> {
        let Some((_, region, account, name)) = tsumiki_core::ids::parse_arn(queue_arn) else {
            return Err(Failure::permanent(format!(
                "{queue_arn} is not a queue ARN."
            )));
        };
        let service = self.services.read().get("sqs").cloned();
        let Some(sqs) = service else {
            return Err(Failure::permanent("SQS is not served."));
        };
        let endpoint = self.endpoint();
        let mut input = json!({
            "QueueUrl": format!("{endpoint}/{account}/{name}"),
            "MessageBody": body,
        });
        if let Some(a) = attributes.filter(|a| a.as_object().is_some_and(|o| !o.is_empty())) {
            input["MessageAttributes"] = a;
        }
        if name.ends_with(".fifo") {
            input["MessageGroupId"] =
                json!(m.group_id.clone().unwrap_or_else(|| m.topic_arn.clone()));
            input["MessageDeduplicationId"] =
                json!(m.dedup_id.clone().unwrap_or_else(|| m.id.clone()));
        }
        let ctx = RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: endpoint,
            access_key: None,
            path: "/".into(),
        };
        sqs.call(&ctx, "SendMessage", input)
            .await
            .map(|_| ())
            .map_err(|e| Failure::from_aws(&e))
    }

    /// Delivers up to 10 messages to an SQS subscription in one SendMessageBatch; answers a
    /// result per delivery, in order.
    async fn send_batch(
        &self,
        sub: &Subscription,
        chunk: &[(Delivery, Option<Arc<Message>>)],
    ) -> Vec<Result<(), Failure>> {
        let endpoint = self.endpoint();
        let mut entries = Vec::new();
        let mut size = 0;
        for (i, (_, message)) in chunk.iter().enumerate() {
            let Some(m) = message else { continue };
            let body = if sub.raw() {
                m.text_for("sqs").to_string()
            } else {
                envelope::notification(m, sub, &endpoint)
            };
            size += body.len();
            let mut entry = json!({"Id": i.to_string(), "MessageBody": body});
            if sub.raw() && !m.attributes.is_empty() {
                entry["MessageAttributes"] = sqs_attributes(m);
                size += m
                    .attributes
                    .values()
                    .map(|a| {
                        a.string_value.as_deref().map_or(0, str::len)
                            + a.binary_value.as_deref().map_or(0, str::len)
                            + 64
                    })
                    .sum::<usize>();
            }
            if sub.endpoint.ends_with(".fifo") {
                entry["MessageGroupId"] =
                    json!(m.group_id.clone().unwrap_or_else(|| m.topic_arn.clone()));
                entry["MessageDeduplicationId"] =
                    json!(m.dedup_id.clone().unwrap_or_else(|| m.id.clone()));
            }
            entries.push(entry);
        }
        // SQS caps a batch at 256 KiB; larger ones go one by one.
        if size > 200 * 1024 {
            let mut out = Vec::with_capacity(chunk.len());
            for (_, message) in chunk {
                out.push(match message {
                    Some(m) => self.deliver_once(sub, m).await,
                    None => Ok(()),
                });
            }
            return out;
        }
        let Some((_, region, account, name)) = tsumiki_core::ids::parse_arn(&sub.endpoint) else {
            return chunk
                .iter()
                .map(|_| {
                    Err(Failure::permanent(format!(
                        "{} is not a queue ARN.",
                        sub.endpoint
                    )))
                })
                .collect();
        };
        let service = self.services.read().get("sqs").cloned();
        let Some(sqs) = service else {
            return chunk
                .iter()
                .map(|_| Err(Failure::permanent("SQS is not served.")))
                .collect();
        };
        let ctx = RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: endpoint.clone(),
            access_key: None,
            path: "/".into(),
        };
        let input = json!({
            "QueueUrl": format!("{endpoint}/{account}/{name}"),
            "Entries": entries,
        });
        match sqs.call(&ctx, "SendMessageBatch", input).await {
            Err(e) => chunk.iter().map(|_| Err(Failure::from_aws(&e))).collect(),
            Ok(out) => {
                let failed: HashMap<String, Failure> = out
                    .get("Failed")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        let id = f.get("Id").and_then(Value::as_str).unwrap_or_default();
                        let sender = f
                            .get("SenderFault")
                            .and_then(Value::as_bool)
                            .unwrap_or(true);
                        let code = f.get("Code").and_then(Value::as_str).unwrap_or_default();
                        let message = f.get("Message").and_then(Value::as_str).unwrap_or_default();
                        (
                            id.to_string(),
                            Failure {
                                message: format!("{code}: {message}"),
                                retryable: !sender,
                            },
                        )
                    })
                    .collect();
                let mut failed = failed;
                (0..chunk.len())
                    .map(|i| match failed.remove(&i.to_string()) {
                        Some(f) => Err(f),
                        None => Ok(()),
                    })
                    .collect()
            }
        }
    }

    fn write_mail(&self, sub: &Subscription, id: &str, text: &str) -> Result<(), Failure> {
        let folder = self.mailbox.join(sanitize(&sub.endpoint));
        let ext = if sub.protocol == "email" {
            "eml"
        } else {
            "json"
        };
        let path = folder.join(format!("{:020}-{id}.{ext}", self.clock.now_ms()));
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| Failure {
                message: format!("Writing {}: {e}", path.display()),
                retryable: true,
            })
    }

    /// The topic's `SignatureVersion` (AWS's default 1).
    fn signature_version(&self, topic_arn: &str) -> String {
        self.state
            .lock()
            .topics
            .get(topic_arn)
            .and_then(|t| t.attributes.get("SignatureVersion").cloned())
            .unwrap_or_else(|| "1".to_string())
    }

    /// Sends the confirmation request of a new HTTP or email subscription.
    pub(crate) async fn send_confirmation(&self, sub: &Subscription) {
        let endpoint = self.endpoint();
        let version = self.signature_version(&sub.topic_arn);
        let (id, doc) = envelope::confirmation(sub, &endpoint, self.clock.now_ms(), &version);
        let result = match sub.protocol.as_str() {
            "http" | "https" => {
                let headers = vec![
                    (
                        "x-amz-sns-message-type",
                        "SubscriptionConfirmation".to_string(),
                    ),
                    ("x-amz-sns-message-id", id.clone()),
                    ("x-amz-sns-topic-arn", sub.topic_arn.clone()),
                ];
                http_post(&sub.endpoint, headers, doc).await
            }
            "email" => {
                let url = envelope::subscribe_url(&endpoint, &sub.topic_arn, &sub.token);
                let text = format!(
                    "From: AWS Notifications <no-reply@sns.amazonaws.com>\r\nTo: {}\r\nSubject: AWS Notification - Subscription Confirmation\r\n\r\nYou have chosen to subscribe to the topic:\r\n{}\r\n\r\nTo confirm this subscription, click or visit the link below (If this was in error no action is necessary):\r\n{url}\r\n",
                    sub.endpoint, sub.topic_arn
                );
                self.write_mail(sub, &id, &text)
            }
            _ => self.write_mail(sub, &id, &doc),
        };
        if let Err(f) = result {
            tracing::warn!(
                subscription = %sub.arn, error = %f.message,
                "SNS could not deliver a subscription confirmation."
            );
        }
    }
}

/// A message's attributes as SQS message attributes (raw delivery).
fn sqs_attributes(m: &Message) -> Value {
    let mut out = serde_json::Map::new();
    for (name, a) in &m.attributes {
        let mut v = json!({"DataType": a.data_type});
        if let Some(s) = &a.string_value {
            v["StringValue"] = json!(s);
        }
        if let Some(b) = &a.binary_value {
            v["BinaryValue"] = json!(b);
        }
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

fn email_text(sub: &Subscription, m: &Message, endpoint: &str) -> String {
    format!(
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}@sns.amazonaws.com>\r\n\r\n{}\r\n\r\n--\r\nIf you wish to stop receiving notifications from this topic, please click or visit the link below to unsubscribe:\r\n{}\r\n",
        sub.endpoint,
        m.subject.as_deref().unwrap_or("AWS Notification Message"),
        m.id,
        m.text_for("email"),
        envelope::unsubscribe_url(endpoint, &sub.arn),
    )
}

/// A file-name-safe form of an email address.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// POSTs `body` to an HTTP or HTTPS endpoint: 2xx is delivered, 5xx and no answer are worth a
/// retry, anything else is the endpoint's refusal.
async fn http_post(
    url: &str,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> Result<(), Failure> {
    let mut all = vec![
        (
            "content-type".to_string(),
            "text/plain; charset=UTF-8".to_string(),
        ),
        (
            "user-agent".to_string(),
            "Amazon Simple Notification Service Agent".to_string(),
        ),
    ];
    all.extend(headers.into_iter().map(|(k, v)| (k.to_string(), v)));
    let resp = tsumiki_outbound::send("POST", url, &all, Bytes::from(body), HTTP_TIMEOUT)
        .await
        .map_err(|e| Failure {
            message: e.message,
            retryable: e.retryable,
        })?;
    let status = resp.status;
    match status {
        200..=299 => Ok(()),
        500..=599 => Err(Failure {
            message: format!("{url} answered {status}."),
            retryable: true,
        }),
        _ => Err(Failure::permanent(format!("{url} answered {status}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_http_policy_is_three_retries_twenty_seconds_apart() {
        let p = RetryPolicy::from_json(None);
        assert_eq!(
            (1..=4).map(|n| p.delay_ms(n)).collect::<Vec<_>>(),
            [Some(20_000), Some(20_000), Some(20_000), None]
        );
    }

    #[test]
    fn http_policy_phases() {
        let p = RetryPolicy::from_json(Some(&json!({
            "minDelayTarget": 1, "maxDelayTarget": 9, "numRetries": 8,
            "numNoDelayRetries": 1, "numMinDelayRetries": 1, "numMaxDelayRetries": 2,
            "backoffFunction": "linear"
        })));
        let delays: Vec<_> = (1..=9).map(|n| p.delay_ms(n)).collect();
        assert_eq!(
            delays,
            [
                Some(0),
                Some(1_000),
                Some(3_000),
                Some(5_000),
                Some(7_000),
                Some(9_000),
                Some(9_000),
                Some(9_000),
                None
            ]
        );
    }

    #[test]
    fn managed_endpoints_retry_for_a_long_time() {
        assert_eq!(managed_delay_ms(1), Some(0));
        assert_eq!(managed_delay_ms(4), Some(1_000));
        assert_eq!(managed_delay_ms(15), Some(20_000));
        assert_eq!(managed_delay_ms(100_015), Some(20_000));
        assert_eq!(managed_delay_ms(100_016), None);
    }
}
