//! DynamoDB's state: tables, every item and every retained stream record in memory, each change
//! written through to the store before the request that made it is answered. The only module
//! that names DynamoDB's store namespaces.
//!
//! Store layout: `dynamodb.table` holds one record per table (`account/region/name`: its
//! description, TTL, tags and stream with its shards); `dynamodb.item` one key per item,
//! `account/region/name/` + partition key length (u32, big-endian) + partition key bytes + sort
//! key bytes, in the byte encoding that sorts as DynamoDB orders keys; `dynamodb.record` one key
//! per stream record, `account/region/name/` + its 22-digit sequence number. An item change and
//! its stream record go in one batch, so a crash never separates them. `dynamodb.token` holds
//! the transactions' ClientRequestTokens (`account/token`: when, and the request's hash), in
//! the batch of the writes they guard, so a replay after a restart is still recognised.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_lang::dynamodb::Item;
use tsumiki_lang::dynamodb::value::{item_from_json, item_to_json};
use tsumiki_store::{Batch, Store, StoreError};

const NS_TABLE: &str = "dynamodb.table";
const NS_ITEM: &str = "dynamodb.item";
const NS_RECORD: &str = "dynamodb.record";
const NS_TOKEN: &str = "dynamodb.token";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl TableKey {
    fn prefix(&self) -> String {
        format!("{}/{}/{}/", self.account, self.region, self.name)
    }

    pub fn arn(&self) -> String {
        tsumiki_core::ids::arn(
            "dynamodb",
            &self.region,
            &self.account,
            &format!("table/{}", self.name),
        )
    }
}

/// A key schema: attribute names and their types (`S`, `N` or `B`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyDef {
    pub hash: (String, String),
    pub range: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexMeta {
    pub name: String,
    pub key: KeyDef,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
    #[serde(default)]
    pub non_key: Vec<String>,
    pub global: bool,
    /// The request's own members (KeySchema, Projection, throughput), answered back.
    pub raw: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: String,
    pub parent: Option<String>,
    pub created_ms: i64,
    pub start_seq: u128,
    /// Set when the shard closed.
    pub end_seq: Option<u128>,
    #[serde(default)]
    pub closed_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamMeta {
    pub label: String,
    pub view_type: String,
    pub enabled: bool,
    pub shards: Vec<ShardMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableMeta {
    pub name: String,
    pub id: String,
    pub key: KeyDef,
    pub attribute_definitions: Value,
    pub key_schema: Value,
    pub indexes: Vec<IndexMeta>,
    pub billing_mode: String,
    pub read_capacity: i64,
    pub write_capacity: i64,
    pub created_ms: i64,
    pub stream: Option<StreamMeta>,
    /// Earlier streams of this table (disabled, still readable for 24 hours).
    #[serde(default)]
    pub old_streams: Vec<StreamMeta>,
    pub ttl_attribute: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub sse: Option<Value>,
    #[serde(default)]
    pub table_class: Option<String>,
    #[serde(default)]
    pub deletion_protection: bool,
    /// Kinesis Data Streams this table's item changes are published to.
    #[serde(default)]
    pub kinesis: Vec<KinesisDest>,
}

/// A Kinesis streaming destination: the stream, `ACTIVE` or `DISABLED`, and the precision of
/// `ApproximateCreationDateTime` (`MILLISECOND` or `MICROSECOND`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KinesisDest {
    pub stream_arn: String,
    pub status: String,
    pub precision: String,
}

/// An item change waiting to be put to a Kinesis stream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub account: String,
    pub region: String,
    pub stream_arn: String,
    pub partition_key: String,
    pub record: Value,
}

/// One stream record as kept and stored: the record AWS returns, and where it belongs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub seq: u128,
    pub label: String,
    pub shard: String,
    pub created_ms: i64,
    pub record: Value,
}

#[derive(Debug)]
pub struct Table {
    pub meta: TableMeta,
    /// Partition key bytes -> sort key bytes (empty without a sort key) -> item.
    pub items: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Item>>,
    pub item_count: usize,
    pub size_bytes: usize,
    /// Retained stream records of every stream of this table, by sequence number.
    pub records: BTreeMap<u128, StreamRecord>,
}

impl Table {
    pub fn new(meta: TableMeta) -> Table {
        Table {
            meta,
            items: BTreeMap::new(),
            item_count: 0,
            size_bytes: 0,
            records: BTreeMap::new(),
        }
    }

    pub fn get(&self, pk: &[u8], sk: &[u8]) -> Option<&Item> {
        self.items.get(pk).and_then(|p| p.get(sk))
    }

    /// Replaces (or with `None` removes) one item in memory, keeping the counters.
    pub fn set(&mut self, pk: &[u8], sk: &[u8], item: Option<Item>) {
        let old = match &item {
            Some(new) => {
                self.size_bytes += tsumiki_lang::dynamodb::value::item_size(new);
                self.items
                    .entry(pk.to_vec())
                    .or_default()
                    .insert(sk.to_vec(), new.clone())
            }
            None => {
                let part = self.items.get_mut(pk);
                let old = part.and_then(|p| p.remove(sk));
                if self.items.get(pk).is_some_and(BTreeMap::is_empty) {
                    self.items.remove(pk);
                }
                old
            }
        };
        if let Some(old) = &old {
            self.size_bytes = self
                .size_bytes
                .saturating_sub(tsumiki_lang::dynamodb::value::item_size(old));
        }
        match (old.is_some(), item.is_some()) {
            (false, true) => self.item_count += 1,
            (true, false) => self.item_count -= 1,
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub tables: BTreeMap<TableKey, Table>,
    /// The last stream sequence number handed out.
    pub last_seq: u128,
    /// TransactWriteItems tokens: token -> (when, hash of the request).
    pub tokens: HashMap<(String, String), (i64, u64)>,
    /// Item changes for Kinesis streaming destinations, in change order; the publisher drains it.
    pub outbox: Vec<Outgoing>,
    pub outbox_ready: std::sync::Arc<tokio::sync::Notify>,
}

fn item_store_key(key: &TableKey, pk: &[u8], sk: &[u8]) -> Vec<u8> {
    let mut k = key.prefix().into_bytes();
    k.extend_from_slice(&(pk.len() as u32).to_be_bytes());
    k.extend_from_slice(pk);
    k.extend_from_slice(sk);
    k
}

pub fn put_table(batch: &mut Batch, key: &TableKey, meta: &TableMeta) {
    batch.put(
        NS_TABLE,
        format!("{}/{}/{}", key.account, key.region, key.name),
        serde_json::to_vec(meta).unwrap_or_default(),
    );
}

pub fn delete_table(batch: &mut Batch, key: &TableKey) {
    batch.delete(
        NS_TABLE,
        format!("{}/{}/{}", key.account, key.region, key.name),
    );
    batch.delete_prefix(NS_ITEM, key.prefix());
    batch.delete_prefix(NS_RECORD, key.prefix());
}

pub fn put_item(batch: &mut Batch, key: &TableKey, pk: &[u8], sk: &[u8], item: &Item) {
    batch.put(
        NS_ITEM,
        item_store_key(key, pk, sk),
        serde_json::to_vec(&item_to_json(item)).unwrap_or_default(),
    );
}

pub fn delete_item(batch: &mut Batch, key: &TableKey, pk: &[u8], sk: &[u8]) {
    batch.delete(NS_ITEM, item_store_key(key, pk, sk));
}

pub fn put_record(batch: &mut Batch, key: &TableKey, record: &StreamRecord) {
    batch.put(
        NS_RECORD,
        format!("{}{:022}", key.prefix(), record.seq),
        serde_json::to_vec(record).unwrap_or_default(),
    );
}

pub fn delete_record(batch: &mut Batch, key: &TableKey, seq: u128) {
    batch.delete(NS_RECORD, format!("{}{:022}", key.prefix(), seq));
}

#[derive(Serialize, Deserialize)]
struct TokenRecord {
    at: i64,
    hash: u64,
}

fn token_key(account: &str, token: &str) -> String {
    format!("{account}/{token}")
}

pub fn put_token(batch: &mut Batch, account: &str, token: &str, at: i64, hash: u64) {
    batch.put(
        NS_TOKEN,
        token_key(account, token),
        serde_json::to_vec(&TokenRecord { at, hash }).unwrap_or_default(),
    );
}

pub fn delete_token(batch: &mut Batch, account: &str, token: &str) {
    batch.delete(NS_TOKEN, token_key(account, token));
}

pub fn reset(batch: &mut Batch) {
    for ns in [NS_TABLE, NS_ITEM, NS_RECORD, NS_TOKEN] {
        batch.delete_prefix(ns, Vec::new());
    }
}

/// Splits `account/region/name/rest` into the table's key and the rest.
fn split_key(k: &[u8]) -> Option<(TableKey, &[u8])> {
    let mut parts = Vec::with_capacity(3);
    let mut start = 0;
    for (i, b) in k.iter().enumerate() {
        if *b == b'/' {
            parts.push(std::str::from_utf8(&k[start..i]).ok()?.to_string());
            start = i + 1;
            if parts.len() == 3 {
                break;
            }
        }
    }
    if parts.len() != 3 {
        return None;
    }
    let name = parts.pop()?;
    let region = parts.pop()?;
    let account = parts.pop()?;
    Some((
        TableKey {
            account,
            region,
            name,
        },
        &k[start..],
    ))
}

/// Loads every table, item and stream record.
pub async fn load(store: &Store) -> Result<(State, usize), StoreError> {
    let mut state = State::default();
    for (k, v) in store.scan(NS_TABLE).await? {
        let Ok(meta) = serde_json::from_slice::<TableMeta>(&v) else {
            tracing::warn!("Skipping an unreadable DynamoDB table record.");
            continue;
        };
        let text = String::from_utf8_lossy(&k).to_string();
        let mut parts = text.splitn(3, '/');
        let (Some(account), Some(region), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let key = TableKey {
            account: account.into(),
            region: region.into(),
            name: name.into(),
        };
        state.tables.insert(key, Table::new(meta));
    }
    let mut items = 0;
    for (k, v) in store.scan(NS_ITEM).await? {
        let Some((key, rest)) = split_key(&k) else {
            continue;
        };
        let Some(table) = state.tables.get_mut(&key) else {
            continue;
        };
        if rest.len() < 4 {
            continue;
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(pk) = rest.get(4..4 + n) else {
            continue;
        };
        let sk = &rest[4 + n..];
        let Ok(json) = serde_json::from_slice::<Value>(&v) else {
            continue;
        };
        let Ok(item) = item_from_json(&json) else {
            continue;
        };
        table.set(pk, sk, Some(item));
        items += 1;
    }
    for (k, v) in store.scan(NS_RECORD).await? {
        let Some((key, _)) = split_key(&k) else {
            continue;
        };
        let Ok(rec) = serde_json::from_slice::<StreamRecord>(&v) else {
            continue;
        };
        state.last_seq = state.last_seq.max(rec.seq);
        if let Some(table) = state.tables.get_mut(&key) {
            table.records.insert(rec.seq, rec);
        }
    }
    for (k, v) in store.scan(NS_TOKEN).await? {
        let text = String::from_utf8_lossy(&k).to_string();
        let Some((account, token)) = text.split_once('/') else {
            continue;
        };
        if let Ok(rec) = serde_json::from_slice::<TokenRecord>(&v) {
            state
                .tokens
                .insert((account.to_string(), token.to_string()), (rec.at, rec.hash));
        }
    }
    for t in state.tables.values() {
        for s in t.meta.stream.iter().chain(&t.meta.old_streams) {
            for sh in &s.shards {
                state.last_seq = state
                    .last_seq
                    .max(sh.start_seq)
                    .max(sh.end_seq.unwrap_or(0));
            }
        }
    }
    Ok((state, items))
}
