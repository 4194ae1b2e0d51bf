//! SQS's state: queues and their messages in memory, every change written through to the
//! store before the request that made it is answered. The only module that names SQS's
//! store namespaces.
//!
//! Why memory first: receive, visibility and FIFO group rules are decided on ordered in-memory
//! indexes in microseconds; the store is the durable log of those decisions, loaded back at
//! start. Each queue has its own lock; a change and the store write that records it are queued
//! under that lock, so the store sees a queue's changes in the order they happened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tsumiki_store::{Batch, Store, StoreError};

const NS_QUEUE: &str = "sqs.queue";
const NS_BODY: &str = "sqs.body";
const NS_MSTATE: &str = "sqs.mstate";
const NS_DEDUP: &str = "sqs.dedup";
const NS_TASK: &str = "sqs.task";
const ALL_NS: &[&str] = &[NS_QUEUE, NS_BODY, NS_MSTATE, NS_DEDUP, NS_TASK];

/// A queue's identity: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl QueueKey {
    fn store_key(&self) -> Vec<u8> {
        format!("{}/{}/{}", self.account, self.region, self.name).into_bytes()
    }

    pub fn arn(&self) -> String {
        tsumiki_core::ids::arn("sqs", &self.region, &self.account, &self.name)
    }
}

/// The immutable part of a message, written once when it is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageBody {
    pub id: String,
    pub body: String,
    pub md5_body: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_attributes: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub system_attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_system_attributes: Option<String>,
    pub sent_ms: i64,
    /// When the message first becomes visible (after its delay); the state record, written
    /// only once the message is received, supersedes it.
    #[serde(default)]
    pub visible_from_ms: i64,
    pub sender_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_source_arn: Option<String>,
}

/// A message in a queue: the body plus what receiving changes.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    pub body: Arc<MessageBody>,
    /// When the message may next be received (delay or visibility timeout).
    pub visible_at: i64,
    pub receive_count: u32,
    pub first_receive_ms: Option<i64>,
    /// When it was last received; bounds the total visibility timeout to 12 hours.
    pub last_receive_ms: i64,
    /// Changes on every receive, so only the newest receipt handle moves the message.
    pub nonce: u32,
}

impl Message {
    pub fn in_flight(&self, now: i64) -> bool {
        self.receive_count > 0 && self.visible_at > now
    }

    fn encode_state(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.visible_at.to_be_bytes());
        v.extend_from_slice(&self.receive_count.to_be_bytes());
        v.extend_from_slice(&self.first_receive_ms.unwrap_or(-1).to_be_bytes());
        v.extend_from_slice(&self.nonce.to_be_bytes());
        v.extend_from_slice(&self.last_receive_ms.to_be_bytes());
        v
    }

    fn decode_state(bytes: &[u8]) -> Option<MessageState> {
        if bytes.len() != 32 {
            return None;
        }
        let first = i64::from_be_bytes(bytes[12..20].try_into().ok()?);
        Some(MessageState {
            visible_at: i64::from_be_bytes(bytes[0..8].try_into().ok()?),
            receive_count: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            first_receive_ms: (first >= 0).then_some(first),
            nonce: u32::from_be_bytes(bytes[20..24].try_into().ok()?),
            last_receive_ms: i64::from_be_bytes(bytes[24..32].try_into().ok()?),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct MessageState {
    visible_at: i64,
    receive_count: u32,
    first_receive_ms: Option<i64>,
    nonce: u32,
    last_receive_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupEntry {
    pub expires_ms: i64,
    pub message_id: String,
    #[serde(default)]
    pub sequence_number: Option<String>,
}

/// A queue's configuration and messages.
#[derive(Debug)]
pub struct Queue {
    /// Distinguishes this queue from an earlier one of the same name (receipt handles, keys).
    pub id: u64,
    pub fifo: bool,
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub purged_at_ms: Option<i64>,
    pub messages: BTreeMap<u64, Message>,
    /// Every message by (visible_at, seq): the receive order of a standard queue.
    pub ready: BTreeSet<(i64, u64)>,
    pub dedup: HashMap<String, DedupEntry>,
    pub last_seq: u64,
    /// The attributes the message paths read, parsed once per attribute change.
    pub config: Config,
}

/// Parsed queue attributes.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub delay_ms: i64,
    pub max_message_size: i64,
    pub retention_ms: i64,
    pub wait_seconds: i64,
    pub visibility_ms: i64,
    pub redrive: Option<(String, i64)>,
    pub content_based_dedup: bool,
    pub dedup_per_group: bool,
}

impl Config {
    pub fn from_attributes(attrs: &BTreeMap<String, String>) -> Config {
        use crate::attributes::{flag, int, redrive_policy};
        Config {
            delay_ms: int(attrs, "DelaySeconds") * 1000,
            max_message_size: int(attrs, "MaximumMessageSize"),
            retention_ms: int(attrs, "MessageRetentionPeriod") * 1000,
            wait_seconds: int(attrs, "ReceiveMessageWaitTimeSeconds"),
            visibility_ms: int(attrs, "VisibilityTimeout") * 1000,
            redrive: redrive_policy(attrs),
            content_based_dedup: flag(attrs, "ContentBasedDeduplication"),
            dedup_per_group: attrs
                .get("DeduplicationScope")
                .is_some_and(|v| v == "messageGroup"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct QueueRecord {
    id: u64,
    fifo: bool,
    attributes: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    created_ms: i64,
    modified_ms: i64,
    #[serde(default)]
    purged_at_ms: Option<i64>,
}

impl Queue {
    pub fn new(
        id: u64,
        fifo: bool,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
        now: i64,
    ) -> Queue {
        let config = Config::from_attributes(&attributes);
        Queue {
            config,
            id,
            fifo,
            attributes,
            tags,
            created_ms: now,
            modified_ms: now,
            purged_at_ms: None,
            messages: BTreeMap::new(),
            ready: BTreeSet::new(),
            dedup: HashMap::new(),
            last_seq: 0,
        }
    }

    /// Re-reads the parsed attributes after a change.
    pub fn refresh_config(&mut self) {
        self.config = Config::from_attributes(&self.attributes);
    }

    /// A sequence for a new message: increasing within the queue and across restarts (it
    /// starts from the clock), so keys and receipt handles of old messages never repeat.
    pub fn next_seq(&mut self, now: i64) -> u64 {
        let from_clock = (now.max(0) as u64) << 16;
        self.last_seq = (self.last_seq + 1).max(from_clock);
        self.last_seq
    }

    pub fn insert(&mut self, msg: Message) {
        self.ready.insert((msg.visible_at, msg.seq));
        self.messages.insert(msg.seq, msg);
    }

    pub fn remove(&mut self, seq: u64) -> Option<Message> {
        let msg = self.messages.remove(&seq)?;
        self.ready.remove(&(msg.visible_at, seq));
        Some(msg)
    }

    /// Moves a message's visibility, keeping the index in step.
    pub fn set_visible_at(&mut self, seq: u64, visible_at: i64) {
        if let Some(msg) = self.messages.get_mut(&seq) {
            self.ready.remove(&(msg.visible_at, seq));
            msg.visible_at = visible_at;
            self.ready.insert((visible_at, seq));
        }
    }

    /// The earliest time a message not yet visible becomes visible.
    pub fn next_visible_at(&self, now: i64) -> Option<i64> {
        self.ready.range((now + 1, 0)..).next().map(|(t, _)| *t)
    }
}

/// A queue and the signal its long-polling receivers wait on.
#[derive(Debug)]
pub struct QueueCell {
    pub key: QueueKey,
    pub queue: Mutex<Queue>,
    pub arrivals: Notify,
}

/// Every queue of every account and region.
pub struct State {
    pub store: Store,
    pub queues: RwLock<HashMap<QueueKey, Arc<QueueCell>>>,
    /// Names deleted less than 60 s ago, which cannot be created again yet.
    pub recently_deleted: Mutex<HashMap<QueueKey, i64>>,
}

impl State {
    pub fn new(store: Store) -> State {
        State {
            store,
            queues: RwLock::new(HashMap::new()),
            recently_deleted: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &QueueKey) -> Option<Arc<QueueCell>> {
        self.queues.read().get(key).cloned()
    }

    /// Loads every queue, message and deduplication entry from the store.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let mut by_id: HashMap<u64, Queue> = HashMap::new();
        let mut keys: HashMap<u64, QueueKey> = HashMap::new();
        for (k, v) in self.store.scan(NS_QUEUE).await? {
            let Ok(text) = String::from_utf8(k) else {
                continue;
            };
            let mut parts = text.splitn(3, '/');
            let (Some(account), Some(region), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<QueueRecord>(&v) else {
                tracing::warn!(queue = %text, "Skipped an unreadable queue record.");
                continue;
            };
            let key = QueueKey {
                account: account.into(),
                region: region.into(),
                name: name.into(),
            };
            let mut q = Queue::new(rec.id, rec.fifo, rec.attributes, rec.tags, rec.created_ms);
            q.modified_ms = rec.modified_ms;
            q.purged_at_ms = rec.purged_at_ms;
            keys.insert(rec.id, key);
            by_id.insert(rec.id, q);
        }
        let mut states: HashMap<(u64, u64), MessageState> = HashMap::new();
        for (k, v) in self.store.scan(NS_MSTATE).await? {
            if let (Some(key), Some(state)) = (split_message_key(&k), Message::decode_state(&v)) {
                states.insert(key, state);
            }
        }
        let mut count = 0;
        for (k, v) in self.store.scan(NS_BODY).await? {
            let Some((id, seq)) = split_message_key(&k) else {
                continue;
            };
            let Some(q) = by_id.get_mut(&id) else {
                continue;
            };
            let Ok(body) = serde_json::from_slice::<MessageBody>(&v) else {
                continue;
            };
            let st = states.get(&(id, seq)).copied().unwrap_or(MessageState {
                visible_at: body.visible_from_ms.max(body.sent_ms),
                receive_count: 0,
                first_receive_ms: None,
                nonce: 0,
                last_receive_ms: 0,
            });
            q.last_seq = q.last_seq.max(seq);
            q.insert(Message {
                seq,
                body: Arc::new(body),
                visible_at: st.visible_at,
                receive_count: st.receive_count,
                first_receive_ms: st.first_receive_ms,
                last_receive_ms: st.last_receive_ms,
                nonce: st.nonce,
            });
            count += 1;
        }
        for (k, v) in self.store.scan(NS_DEDUP).await? {
            if k.len() < 8 {
                continue;
            }
            let id = u64::from_be_bytes(k[0..8].try_into().unwrap_or_default());
            let (Some(q), Ok(dedup_key), Ok(entry)) = (
                by_id.get_mut(&id),
                String::from_utf8(k[8..].to_vec()),
                serde_json::from_slice::<DedupEntry>(&v),
            ) else {
                continue;
            };
            q.dedup.insert(dedup_key, entry);
        }
        let mut queues = self.queues.write();
        for (id, q) in by_id {
            if let Some(key) = keys.remove(&id) {
                queues.insert(
                    key.clone(),
                    Arc::new(QueueCell {
                        key,
                        queue: Mutex::new(q),
                        arrivals: Notify::new(),
                    }),
                );
            }
        }
        Ok(count)
    }

    /// Forgets everything, in memory and in the store.
    pub async fn reset(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        {
            let mut queues = self.queues.write();
            queues.clear();
            self.recently_deleted.lock().clear();
            for ns in ALL_NS {
                batch.delete_prefix(ns, Vec::new());
            }
        }
        self.store.commit(batch).await
    }
}

fn message_key(queue_id: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&queue_id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn split_message_key(k: &[u8]) -> Option<(u64, u64)> {
    if k.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(k[0..8].try_into().ok()?),
        u64::from_be_bytes(k[8..16].try_into().ok()?),
    ))
}

/// Store writes, named after what they record.
pub mod writes {
    use super::*;

    pub fn queue(batch: &mut Batch, key: &QueueKey, q: &Queue) {
        let rec = QueueRecord {
            id: q.id,
            fifo: q.fifo,
            attributes: q.attributes.clone(),
            tags: q.tags.clone(),
            created_ms: q.created_ms,
            modified_ms: q.modified_ms,
            purged_at_ms: q.purged_at_ms,
        };
        batch.put(
            NS_QUEUE,
            key.store_key(),
            serde_json::to_vec(&rec).unwrap_or_default(),
        );
    }

    pub fn delete_queue(batch: &mut Batch, key: &QueueKey, queue_id: u64) {
        batch.delete(NS_QUEUE, key.store_key());
        delete_all_messages(batch, queue_id);
        batch.delete_prefix(NS_DEDUP, queue_id.to_be_bytes().to_vec());
    }

    pub fn delete_all_messages(batch: &mut Batch, queue_id: u64) {
        batch.delete_prefix(NS_BODY, queue_id.to_be_bytes().to_vec());
        batch.delete_prefix(NS_MSTATE, queue_id.to_be_bytes().to_vec());
    }

    /// A new message: its body and its receive state.
    pub fn new_message(batch: &mut Batch, queue_id: u64, msg: &Message) {
        let key = message_key(queue_id, msg.seq);
        batch.put(
            NS_BODY,
            key.clone(),
            serde_json::to_vec(&*msg.body).unwrap_or_default(),
        );
        batch.put(NS_MSTATE, key, msg.encode_state());
    }

    /// A receive or visibility change: only the small state record changes.
    pub fn message_state(batch: &mut Batch, queue_id: u64, msg: &Message) {
        batch.put(
            NS_MSTATE,
            message_key(queue_id, msg.seq),
            msg.encode_state(),
        );
    }

    pub fn delete_message(batch: &mut Batch, queue_id: u64, seq: u64) {
        let key = message_key(queue_id, seq);
        batch.delete(NS_BODY, key.clone());
        batch.delete(NS_MSTATE, key);
    }

    pub fn dedup(batch: &mut Batch, queue_id: u64, dedup_key: &str, entry: &DedupEntry) {
        let mut k = queue_id.to_be_bytes().to_vec();
        k.extend_from_slice(dedup_key.as_bytes());
        batch.put(NS_DEDUP, k, serde_json::to_vec(entry).unwrap_or_default());
    }

    pub fn delete_dedup(batch: &mut Batch, queue_id: u64, dedup_key: &str) {
        let mut k = queue_id.to_be_bytes().to_vec();
        k.extend_from_slice(dedup_key.as_bytes());
        batch.delete(NS_DEDUP, k);
    }

    pub fn task(batch: &mut Batch, handle: &str, record: &[u8]) {
        batch.put(NS_TASK, handle.as_bytes().to_vec(), record.to_vec());
    }
}

/// Move-task records, loaded at start.
pub async fn load_tasks(store: &Store) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .scan(NS_TASK)
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}
