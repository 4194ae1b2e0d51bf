//! SNS's state: topics, subscriptions, FIFO deduplication windows and undelivered messages,
//! in memory and written through to the store. The only module that names SNS's store
//! namespaces.
//!
//! Store layout: `sns.topic` and `sns.sub` hold one record per topic and subscription, keyed
//! by ARN (a subscription's ARN starts with its topic's, so a topic's subscriptions are one
//! range). `sns.msg` holds each published message until every delivery of it is done, keyed
//! by its sequence (20 digits, so keys sort as numbers); `sns.dlv` one record per pending
//! delivery, `seq/subscriptionArn`, written in the same batch as the message. `sns.dedup`
//! holds FIFO deduplication ids until their 5-minute window closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tsumiki_lang::filter_policy::{FilterPolicy, Scope};
use tsumiki_store::{Batch, Store, StoreError};

const NS_TOPIC: &str = "sns.topic";
const NS_SUB: &str = "sns.sub";
const NS_MSG: &str = "sns.msg";
const NS_DLV: &str = "sns.dlv";
const NS_DEDUP: &str = "sns.dedup";
const ALL_NS: &[&str] = &[NS_TOPIC, NS_SUB, NS_MSG, NS_DLV, NS_DEDUP];

/// FIFO topics drop a message whose deduplication id was seen in the last 5 minutes.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Topic {
    pub arn: String,
    pub name: String,
    pub account: String,
    pub region: String,
    /// Attributes as set (DisplayName, Policy, DeliveryPolicy, FifoTopic, ...).
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
}

impl Topic {
    pub fn fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    pub fn content_dedup(&self) -> bool {
        self.attributes
            .get("ContentBasedDeduplication")
            .is_some_and(|v| v == "true")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub arn: String,
    pub topic_arn: String,
    pub protocol: String,
    pub endpoint: String,
    pub owner: String,
    pub attributes: BTreeMap<String, String>,
    pub confirmed: bool,
    /// The confirmation token handed to the endpoint.
    pub token: String,
    #[serde(skip)]
    pub filter: Option<Arc<FilterPolicy>>,
}

impl Subscription {
    pub fn raw(&self) -> bool {
        self.attributes
            .get("RawMessageDelivery")
            .is_some_and(|v| v == "true")
    }

    /// Compiles the stored filter policy (validated when it was set).
    pub fn compile_filter(&mut self) {
        self.filter = self.attributes.get("FilterPolicy").and_then(|text| {
            let scope = match self.attributes.get("FilterPolicyScope").map(String::as_str) {
                Some("MessageBody") => Scope::MessageBody,
                _ => Scope::MessageAttributes,
            };
            FilterPolicy::parse(text, scope).ok().map(Arc::new)
        });
    }

    pub fn dead_letter_arn(&self) -> Option<String> {
        let policy: serde_json::Value =
            serde_json::from_str(self.attributes.get("RedrivePolicy")?).ok()?;
        policy
            .get("deadLetterTargetArn")
            .and_then(|v| v.as_str())
            .map(String::from)
    }
}

/// A message attribute as published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attr {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// Base64, as the model shapes blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

/// A published message, kept until every delivery of it is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub id: String,
    pub topic_arn: String,
    pub account: String,
    pub region: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `MessageStructure: json`: the message per protocol (`default` always present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_protocol: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Attr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    /// FIFO topics' sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    pub timestamp_ms: i64,
}

impl Message {
    /// The text a subscription of `protocol` receives.
    pub fn text_for(&self, protocol: &str) -> &str {
        match &self.per_protocol {
            Some(map) => map
                .get(protocol)
                .or_else(|| map.get("default"))
                .map(String::as_str)
                .unwrap_or(&self.message),
            None => &self.message,
        }
    }
}

/// One pending delivery of a message to a subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub sub_arn: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dedup {
    pub message_id: String,
    pub sequence_number: Option<String>,
    pub expires_ms: i64,
}

/// Topics and subscriptions, behind one lock in `Sns`.
#[derive(Debug, Default)]
pub struct State {
    /// By ARN, so listing pages in ARN order.
    pub topics: BTreeMap<String, Topic>,
    /// By ARN; a topic's subscriptions are the range starting with `topicArn:`.
    pub subs: BTreeMap<String, Subscription>,
    /// FIFO deduplication: (topic ARN, deduplication id) -> what the first publish got.
    pub dedup: HashMap<(String, String), Dedup>,
    /// The last message sequence handed out.
    pub last_seq: u64,
}

impl State {
    pub fn subs_of<'a>(&'a self, topic_arn: &str) -> impl Iterator<Item = &'a Subscription> + 'a {
        let prefix = format!("{topic_arn}:");
        self.subs
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, s)| s)
    }
}

/// What a restart hands the dispatcher.
pub struct Pending {
    pub messages: Vec<Message>,
    pub deliveries: Vec<Delivery>,
}

pub async fn load(store: &Store, now_ms: i64) -> Result<(State, Pending), StoreError> {
    let mut state = State::default();
    for (_, v) in store.scan(NS_TOPIC).await? {
        if let Ok(t) = serde_json::from_slice::<Topic>(&v) {
            state.topics.insert(t.arn.clone(), t);
        }
    }
    for (_, v) in store.scan(NS_SUB).await? {
        if let Ok(mut s) = serde_json::from_slice::<Subscription>(&v) {
            s.compile_filter();
            state.subs.insert(s.arn.clone(), s);
        }
    }
    for (k, v) in store.scan(NS_DEDUP).await? {
        let key = String::from_utf8_lossy(&k).to_string();
        if let (Some((topic, id)), Ok(d)) =
            (key.split_once('\n'), serde_json::from_slice::<Dedup>(&v))
            && d.expires_ms > now_ms
        {
            state.dedup.insert((topic.to_string(), id.to_string()), d);
        }
    }
    let mut messages = Vec::new();
    for (_, v) in store.scan(NS_MSG).await? {
        if let Ok(m) = serde_json::from_slice::<Message>(&v) {
            state.last_seq = state.last_seq.max(m.seq);
            messages.push(m);
        }
    }
    let mut deliveries = Vec::new();
    for (_, v) in store.scan(NS_DLV).await? {
        if let Ok(d) = serde_json::from_slice::<Delivery>(&v) {
            deliveries.push(d);
        }
    }
    Ok((
        state,
        Pending {
            messages,
            deliveries,
        },
    ))
}

pub fn put_topic(batch: &mut Batch, t: &Topic) {
    batch.put(
        NS_TOPIC,
        t.arn.clone(),
        serde_json::to_vec(t).unwrap_or_default(),
    );
}

pub fn delete_topic(batch: &mut Batch, arn: &str) {
    batch.delete(NS_TOPIC, arn.to_string());
    batch.delete_prefix(NS_SUB, format!("{arn}:"));
}

pub fn put_sub(batch: &mut Batch, s: &Subscription) {
    batch.put(
        NS_SUB,
        s.arn.clone(),
        serde_json::to_vec(s).unwrap_or_default(),
    );
}

pub fn delete_sub(batch: &mut Batch, arn: &str) {
    batch.delete(NS_SUB, arn.to_string());
}

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

pub fn put_message(batch: &mut Batch, m: &Message) {
    batch.put(
        NS_MSG,
        seq_key(m.seq),
        serde_json::to_vec(m).unwrap_or_default(),
    );
}

pub fn delete_message(batch: &mut Batch, seq: u64) {
    batch.delete(NS_MSG, seq_key(seq));
}

pub fn put_delivery(batch: &mut Batch, d: &Delivery) {
    batch.put(
        NS_DLV,
        format!("{}/{}", seq_key(d.seq), d.sub_arn),
        serde_json::to_vec(d).unwrap_or_default(),
    );
}

pub fn delete_delivery(batch: &mut Batch, seq: u64, sub_arn: &str) {
    batch.delete(NS_DLV, format!("{}/{}", seq_key(seq), sub_arn));
}

pub fn put_dedup(batch: &mut Batch, topic_arn: &str, id: &str, d: &Dedup) {
    batch.put(
        NS_DEDUP,
        format!("{topic_arn}\n{id}"),
        serde_json::to_vec(d).unwrap_or_default(),
    );
}

pub fn delete_dedup(batch: &mut Batch, topic_arn: &str, id: &str) {
    batch.delete(NS_DEDUP, format!("{topic_arn}\n{id}"));
}

pub fn reset(batch: &mut Batch) {
    for ns in ALL_NS {
        batch.delete_prefix(ns, Vec::new());
    }
}
