//! CloudWatch Logs' state: log groups, their streams and every retained event in memory, each
//! change written through to the store before the request that made it is answered. The only
//! module that names the service's store namespaces.
//!
//! Why memory first: the store can only scan a whole namespace, so GetLogEvents and
//! FilterLogEvents read ordered in-memory indexes and the store is the durable log, loaded
//! back at start. Events are stored one key each, ordered by (stream, timestamp, sequence), so
//! an append writes its new events and the small stream record, never the stream's history.
//! Each group has one lock; a change and the store write that records it are queued under it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tsumiki_store::{Batch, Store, StoreError};

const NS_GROUP: &str = "logs.group";
const NS_STREAM: &str = "logs.stream";
const NS_EVENT: &str = "logs.event";
const ALL_NS: &[&str] = &[NS_GROUP, NS_STREAM, NS_EVENT];

pub const DAY_MS: i64 = 86_400_000;

/// A log group's identity: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl GroupKey {
    fn store_key(&self) -> Vec<u8> {
        format!("{}/{}/{}", self.account, self.region, self.name).into_bytes()
    }

    /// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME`, the form tagging APIs take
    /// (DescribeLogGroups' `arn` adds `:*`).
    pub fn arn(&self) -> String {
        tsumiki_core::ids::arn(
            "logs",
            &self.region,
            &self.account,
            &format!("log-group:{}", self.name),
        )
    }

    pub fn stream_arn(&self, stream: &str) -> String {
        format!("{}:log-stream:{stream}", self.arn())
    }
}

/// (timestamp, sequence): an event's place in its stream. The sequence makes events with the
/// same timestamp distinct and keeps them in the order they arrived.
pub type EventKey = (i64, u64);

#[derive(Debug, Clone)]
pub struct Event {
    pub ingestion_ms: i64,
    pub message: String,
}

#[derive(Debug)]
pub struct Stream {
    /// Unique across groups: event keys start with it.
    pub id: u64,
    pub created_ms: i64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub last_ingestion_ms: Option<i64>,
    pub next_seq: u64,
    /// PutLogEvents calls so far; the sequence token is made from it.
    pub uploads: u64,
    pub stored_bytes: i64,
    pub events: BTreeMap<EventKey, Event>,
}

impl Stream {
    pub fn new(now: i64) -> Stream {
        Stream {
            id: new_id(),
            created_ms: now,
            first_event_ms: None,
            last_event_ms: None,
            last_ingestion_ms: None,
            next_seq: 0,
            uploads: 0,
            stored_bytes: 0,
            events: BTreeMap::new(),
        }
    }

    /// Adds one event and returns its key.
    pub fn append(&mut self, timestamp: i64, message: String, now: i64) -> EventKey {
        let key = (timestamp, self.next_seq);
        self.next_seq += 1;
        self.first_event_ms = Some(self.first_event_ms.map_or(timestamp, |t| t.min(timestamp)));
        self.last_event_ms = Some(self.last_event_ms.map_or(timestamp, |t| t.max(timestamp)));
        self.last_ingestion_ms = Some(now);
        self.stored_bytes += message.len() as i64;
        self.events.insert(
            key,
            Event {
                ingestion_ms: now,
                message,
            },
        );
        key
    }

    /// AWS's sequence tokens are 56 digits; this one counts uploads.
    pub fn sequence_token(&self) -> String {
        format!("{:056}", self.uploads + 1)
    }
}

#[derive(Debug)]
pub struct Group {
    pub id: u64,
    pub created_ms: i64,
    pub retention_days: Option<i64>,
    pub tags: BTreeMap<String, String>,
    pub class: String,
    pub kms_key_id: Option<String>,
    pub streams: BTreeMap<String, Stream>,
    /// Subscription filters (at most two).
    pub subscriptions: Vec<crate::subscription::SubscriptionFilter>,
    /// Metric filters (at most 100).
    pub metric_filters: Vec<crate::metric::MetricFilter>,
    /// Set under the lock when the group is deleted, so a request that found the group just
    /// before writes nothing for it afterwards.
    pub deleted: bool,
    /// False until a batch carrying the group's record has been queued; whoever writes under
    /// the lock first queues it, so no stream is ever stored without its group.
    pub persisted: bool,
}

impl Group {
    pub fn new(now: i64) -> Group {
        Group {
            id: new_id(),
            created_ms: now,
            retention_days: None,
            tags: BTreeMap::new(),
            class: "STANDARD".into(),
            kms_key_id: None,
            streams: BTreeMap::new(),
            subscriptions: Vec::new(),
            metric_filters: Vec::new(),
            deleted: false,
            persisted: false,
        }
    }

    /// Events stamped before this are past the retention period and no longer visible.
    pub fn cutoff(&self, now: i64) -> i64 {
        match self.retention_days {
            Some(days) => now.saturating_sub(days.saturating_mul(DAY_MS)),
            None => i64::MIN,
        }
    }

    pub fn stored_bytes(&self) -> i64 {
        self.streams.values().map(|s| s.stored_bytes).sum()
    }
}

fn new_id() -> u64 {
    rand::random::<u64>() | 1
}

#[derive(Debug)]
pub struct GroupCell {
    pub key: GroupKey,
    pub group: Mutex<Group>,
}

#[derive(Serialize, Deserialize)]
struct GroupRecord {
    id: u64,
    created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subscriptions: Vec<crate::subscription::SubscriptionFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metric_filters: Vec<crate::metric::MetricFilter>,
}

#[derive(Serialize, Deserialize)]
struct StreamRecord {
    id: u64,
    created_ms: i64,
    #[serde(default)]
    first_event_ms: Option<i64>,
    #[serde(default)]
    last_event_ms: Option<i64>,
    #[serde(default)]
    last_ingestion_ms: Option<i64>,
    next_seq: u64,
    uploads: u64,
}

/// Every log group of every account and region, ordered by (account, region, name) so
/// DescribeLogGroups pages in name order.
pub struct State {
    pub store: Store,
    pub groups: RwLock<BTreeMap<GroupKey, Arc<GroupCell>>>,
}

/// Counts of what [`State::load`] found, for the start-up log line.
pub struct Loaded {
    pub groups: usize,
    pub streams: usize,
    pub events: usize,
}

impl State {
    pub fn new(store: Store) -> State {
        State {
            store,
            groups: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn get(&self, key: &GroupKey) -> Option<Arc<GroupCell>> {
        self.groups.read().get(key).cloned()
    }

    /// Every group, so callers can lock them one at a time without holding the map.
    pub fn all(&self) -> Vec<Arc<GroupCell>> {
        self.groups.read().values().cloned().collect()
    }

    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let mut groups: BTreeMap<u64, (GroupKey, Group)> = BTreeMap::new();
        for (k, v) in self.store.scan(NS_GROUP).await? {
            let Ok(text) = String::from_utf8(k) else {
                continue;
            };
            let mut parts = text.splitn(3, '/');
            let (Some(account), Some(region), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<GroupRecord>(&v) else {
                tracing::warn!(group = %text, "Skipped an unreadable log group record.");
                continue;
            };
            let key = GroupKey {
                account: account.into(),
                region: region.into(),
                name: name.into(),
            };
            let group = Group {
                id: rec.id,
                created_ms: rec.created_ms,
                retention_days: rec.retention_days,
                tags: rec.tags,
                class: rec.class,
                kms_key_id: rec.kms_key_id,
                streams: BTreeMap::new(),
                subscriptions: rec
                    .subscriptions
                    .into_iter()
                    .map(|mut f| {
                        f.compile();
                        f
                    })
                    .collect(),
                metric_filters: rec.metric_filters,
                deleted: false,
                persisted: true,
            };
            groups.insert(rec.id, (key, group));
        }
        // Stream id -> (group id, stream name).
        let mut owners: BTreeMap<u64, (u64, String)> = BTreeMap::new();
        let mut streams = 0;
        for (k, v) in self.store.scan(NS_STREAM).await? {
            if k.len() < 8 {
                continue;
            }
            let group_id = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
            let (Some((_, group)), Ok(name), Ok(rec)) = (
                groups.get_mut(&group_id),
                String::from_utf8(k[8..].to_vec()),
                serde_json::from_slice::<StreamRecord>(&v),
            ) else {
                continue;
            };
            let stream = Stream {
                id: rec.id,
                created_ms: rec.created_ms,
                first_event_ms: rec.first_event_ms,
                last_event_ms: rec.last_event_ms,
                last_ingestion_ms: rec.last_ingestion_ms,
                next_seq: rec.next_seq,
                uploads: rec.uploads,
                stored_bytes: 0,
                events: BTreeMap::new(),
            };
            owners.insert(rec.id, (group_id, name.clone()));
            group.streams.insert(name, stream);
            streams += 1;
        }
        let mut events = 0;
        for (k, v) in self.store.scan(NS_EVENT).await? {
            let (Some((stream_id, key)), Some(event)) = (split_event_key(&k), decode_event(&v))
            else {
                continue;
            };
            let Some((group_id, name)) = owners.get(&stream_id) else {
                continue;
            };
            let Some(stream) = groups
                .get_mut(group_id)
                .and_then(|(_, g)| g.streams.get_mut(name))
            else {
                continue;
            };
            // A sequence is never handed out twice, even if the record lags its events.
            stream.next_seq = stream.next_seq.max(key.1 + 1);
            stream.stored_bytes += event.message.len() as i64;
            stream.events.insert(key, event);
            events += 1;
        }
        let loaded = Loaded {
            groups: groups.len(),
            streams,
            events,
        };
        let mut map = self.groups.write();
        for (_, (key, group)) in groups {
            map.insert(
                key.clone(),
                Arc::new(GroupCell {
                    key,
                    group: Mutex::new(group),
                }),
            );
        }
        Ok(loaded)
    }

    /// Forgets everything, in memory and in the store.
    pub async fn reset(&self) -> Result<(), StoreError> {
        let cells: Vec<Arc<GroupCell>> = {
            let mut groups = self.groups.write();
            std::mem::take(&mut *groups).into_values().collect()
        };
        for cell in cells {
            cell.group.lock().deleted = true;
        }
        let mut batch = Batch::new();
        for ns in ALL_NS {
            batch.delete_prefix(ns, Vec::new());
        }
        self.store.commit(batch).await
    }
}

fn stream_key(group_id: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&group_id.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Flips the sign bit so big-endian bytes sort like the signed timestamps.
fn sortable(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn event_key(stream_id: u64, key: EventKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&stream_id.to_be_bytes());
    k.extend_from_slice(&sortable(key.0));
    k.extend_from_slice(&key.1.to_be_bytes());
    k
}

fn split_event_key(k: &[u8]) -> Option<(u64, EventKey)> {
    if k.len() != 24 {
        return None;
    }
    let stream_id = u64::from_be_bytes(k[0..8].try_into().ok()?);
    let ts = (u64::from_be_bytes(k[8..16].try_into().ok()?) ^ (1 << 63)) as i64;
    let seq = u64::from_be_bytes(k[16..24].try_into().ok()?);
    Some((stream_id, (ts, seq)))
}

fn encode_event(event: &Event) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + event.message.len());
    v.extend_from_slice(&event.ingestion_ms.to_be_bytes());
    v.extend_from_slice(event.message.as_bytes());
    v
}

fn decode_event(v: &[u8]) -> Option<Event> {
    if v.len() < 8 {
        return None;
    }
    Some(Event {
        ingestion_ms: i64::from_be_bytes(v[..8].try_into().ok()?),
        message: String::from_utf8(v[8..].to_vec()).ok()?,
    })
}

/// Store writes, named after what they record.
pub mod writes {
    use super::*;

    pub fn group(batch: &mut Batch, key: &GroupKey, g: &Group) {
        let rec = GroupRecord {
            id: g.id,
            created_ms: g.created_ms,
            retention_days: g.retention_days,
            tags: g.tags.clone(),
            class: g.class.clone(),
            kms_key_id: g.kms_key_id.clone(),
            subscriptions: g.subscriptions.clone(),
            metric_filters: g.metric_filters.clone(),
        };
        batch.put(
            NS_GROUP,
            key.store_key(),
            serde_json::to_vec(&rec).unwrap_or_default(),
        );
    }

    pub fn delete_group(batch: &mut Batch, key: &GroupKey, g: &Group) {
        batch.delete(NS_GROUP, key.store_key());
        batch.delete_prefix(NS_STREAM, g.id.to_be_bytes().to_vec());
        for s in g.streams.values() {
            batch.delete_prefix(NS_EVENT, s.id.to_be_bytes().to_vec());
        }
    }

    pub fn stream(batch: &mut Batch, group_id: u64, name: &str, s: &Stream) {
        let rec = StreamRecord {
            id: s.id,
            created_ms: s.created_ms,
            first_event_ms: s.first_event_ms,
            last_event_ms: s.last_event_ms,
            last_ingestion_ms: s.last_ingestion_ms,
            next_seq: s.next_seq,
            uploads: s.uploads,
        };
        batch.put(
            NS_STREAM,
            stream_key(group_id, name),
            serde_json::to_vec(&rec).unwrap_or_default(),
        );
    }

    pub fn delete_stream(batch: &mut Batch, group_id: u64, name: &str, stream_id: u64) {
        batch.delete(NS_STREAM, stream_key(group_id, name));
        batch.delete_prefix(NS_EVENT, stream_id.to_be_bytes().to_vec());
    }

    pub fn event(batch: &mut Batch, stream_id: u64, key: EventKey, event: &Event) {
        batch.put(NS_EVENT, event_key(stream_id, key), encode_event(event));
    }

    pub fn delete_event(batch: &mut Batch, stream_id: u64, key: EventKey) {
        batch.delete(NS_EVENT, event_key(stream_id, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_timestamp_then_sequence() {
        let keys = [(-5, 3), (-5, 4), (0, 0), (1, 0), (1, 9), (i64::MAX, 0)];
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| event_key(7, *k)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(split_event_key(e), Some((7, *k)));
        }
    }

    #[tokio::test]
    async fn state_survives_reload() {
        let store = Store::open(None, tsumiki_store::SyncMode::Normal).expect("store");
        let state = State::new(store.clone());
        let key = GroupKey {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            name: "/a/b".into(),
        };
        let mut g = Group::new(10);
        g.retention_days = Some(7);
        let mut s = Stream::new(11);
        let mut batch = Batch::new();
        for (ts, msg) in [(5, "b"), (3, "a"), (5, "c")] {
            let k = s.append(ts, msg.into(), 12);
            writes::event(&mut batch, s.id, k, &s.events[&k]);
        }
        writes::group(&mut batch, &key, &g);
        writes::stream(&mut batch, g.id, "s/1", &s);
        store.commit(batch).await.expect("commit");
        drop(state);

        let state = State::new(store);
        let loaded = state.load().await.expect("load");
        assert_eq!((loaded.groups, loaded.streams, loaded.events), (1, 1, 3));
        let cell = state.get(&key).expect("group");
        let g = cell.group.lock();
        assert_eq!(g.retention_days, Some(7));
        let s = &g.streams["s/1"];
        let msgs: Vec<&str> = s.events.values().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["a", "b", "c"]);
        assert_eq!((s.first_event_ms, s.last_event_ms), (Some(3), Some(5)));
        assert_eq!(s.next_seq, 3);
        assert_eq!(s.stored_bytes, 3);
    }
}
