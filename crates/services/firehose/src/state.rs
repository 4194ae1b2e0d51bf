//! Firehose's state: delivery streams, their buffered records, flush intents and Kinesis
//! checkpoints in memory, each change written through to the store before the request (or
//! the read from Kinesis) that made it counts as done. The only module that names
//! Firehose's store namespaces.
//!
//! Store layout (keys start with `account/region/name/`):
//! - `firehose.stream`: one record per delivery stream (its configuration and tags);
//! - `firehose.rec`: one key per buffered record, `.../{seq:020}`, deleted in the batch that
//!   ends the flush that delivered it;
//! - `firehose.flush`: the flush in progress, `.../{first seq:020}`: which records, the object
//!   name's time and random part. Written before the first S3 write of a flush, so a flush cut
//!   short by `kill -9` is redone after the restart under the same object keys (S3 overwrites
//!   them): every acknowledged record lands in S3 exactly once;
//! - `firehose.ckpt`: per Kinesis shard, the last sequence number buffered, written in the same
//!   batch as the records it covers.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_store::{Batch, Store, StoreError};

const NS_STREAM: &str = "firehose.stream";
const NS_RECORD: &str = "firehose.rec";
const NS_FLUSH: &str = "firehose.flush";
const NS_CHECKPOINT: &str = "firehose.ckpt";

/// A delivery stream's identity: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl StreamKey {
    fn prefix(&self) -> String {
        format!("{}/{}/{}/", self.account, self.region, self.name)
    }

    pub fn arn(&self) -> String {
        tsumiki_core::ids::arn(
            "firehose",
            &self.region,
            &self.account,
            &format!("deliverystream/{}", self.name),
        )
    }

    fn parse(key: &str) -> Option<(StreamKey, &str)> {
        let mut parts = key.splitn(4, '/');
        let account = parts.next()?;
        let region = parts.next()?;
        let name = parts.next()?;
        let rest = parts.next().unwrap_or("");
        Some((
            StreamKey {
                account: account.into(),
                region: region.into(),
                name: name.into(),
            },
            rest,
        ))
    }
}

/// A delivery stream's configuration, the stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// `DirectPut` or `KinesisStreamAsSource`.
    pub stream_type: String,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    pub version: u32,
    /// `KinesisStreamSourceConfiguration` as given.
    #[serde(default)]
    pub kinesis_source: Option<Value>,
    /// The extended S3 destination configuration as given (a plain `S3DestinationConfiguration`
    /// is stored in this shape too).
    pub destination: Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One buffered record as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BufRecord {
    /// Base64, as the model shapes blobs.
    pub data: String,
    pub arrival_ms: i64,
    /// The id PutRecord answered (and the transformation Lambda sees).
    pub id: String,
    /// Kinesis source: (shard id, partition key, sequence number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<(String, String, String)>,
}

impl BufRecord {
    /// The decoded length of the data.
    pub fn len(&self) -> usize {
        let pad = self.data.bytes().rev().take_while(|b| *b == b'=').count();
        (self.data.len() / 4 * 3).saturating_sub(pad)
    }
}

/// A flush that began: the records `first..=last` go to objects named from `at_ms` and
/// `random`; redone unchanged after a crash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Intent {
    pub first: u64,
    pub last: u64,
    pub at_ms: i64,
    pub random: String,
    /// The stream's version and destination when the flush began, so a redo names and
    /// shapes its objects as the first attempt did even if UpdateDestination came between.
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub destination: Option<Value>,
}

/// A delivery stream in memory.
#[derive(Debug)]
pub struct Stream {
    pub meta: StreamMeta,
    pub buffer: BTreeMap<u64, BufRecord>,
    pub buffered_bytes: usize,
    pub next_seq: u64,
    /// Kinesis source: shard id -> last sequence number buffered.
    pub checkpoints: HashMap<String, String>,
    /// The flush that began and has not ended (loaded after a crash, or failed and waiting).
    pub intent: Option<Intent>,
    /// A flush task is running for this stream.
    pub flushing: bool,
    /// After a failed delivery: no new attempt before this time.
    pub retry_at_ms: i64,
}

impl Stream {
    pub fn new(meta: StreamMeta) -> Stream {
        Stream {
            meta,
            buffer: BTreeMap::new(),
            buffered_bytes: 0,
            next_seq: 1,
            checkpoints: HashMap::new(),
            intent: None,
            flushing: false,
            retry_at_ms: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub streams: BTreeMap<StreamKey, Stream>,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records serialize")
}

pub fn put_stream(batch: &mut Batch, key: &StreamKey, meta: &StreamMeta) {
    batch.put(
        NS_STREAM,
        format!("{}/{}/{}", key.account, key.region, key.name),
        json(meta),
    );
}

pub fn delete_stream(batch: &mut Batch, key: &StreamKey) {
    batch.delete(
        NS_STREAM,
        format!("{}/{}/{}", key.account, key.region, key.name),
    );
    for ns in [NS_RECORD, NS_FLUSH, NS_CHECKPOINT] {
        batch.delete_prefix(ns, key.prefix());
    }
}

pub fn put_record(batch: &mut Batch, key: &StreamKey, seq: u64, record: &BufRecord) {
    batch.put(
        NS_RECORD,
        format!("{}{seq:020}", key.prefix()),
        json(record),
    );
}

pub fn delete_record(batch: &mut Batch, key: &StreamKey, seq: u64) {
    batch.delete(NS_RECORD, format!("{}{seq:020}", key.prefix()));
}

pub fn put_intent(batch: &mut Batch, key: &StreamKey, intent: &Intent) {
    batch.put(
        NS_FLUSH,
        format!("{}{:020}", key.prefix(), intent.first),
        json(intent),
    );
}

pub fn delete_intent(batch: &mut Batch, key: &StreamKey, intent: &Intent) {
    batch.delete(NS_FLUSH, format!("{}{:020}", key.prefix(), intent.first));
}

pub fn put_checkpoint(batch: &mut Batch, key: &StreamKey, shard: &str, sequence: &str) {
    batch.put(
        NS_CHECKPOINT,
        format!("{}{shard}", key.prefix()),
        sequence.as_bytes().to_vec(),
    );
}

pub fn reset(batch: &mut Batch) {
    for ns in [NS_STREAM, NS_RECORD, NS_FLUSH, NS_CHECKPOINT] {
        batch.delete_prefix(ns, Vec::new());
    }
}

/// Everything from the store; answers the state and the number of buffered records.
pub async fn load(store: &Store) -> Result<(State, usize), StoreError> {
    let mut state = State::default();
    for (k, v) in store.scan(NS_STREAM).await? {
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some((key, _)) = StreamKey::parse(&(key + "/")) else {
            continue;
        };
        match serde_json::from_slice::<StreamMeta>(&v) {
            Ok(meta) => {
                state.streams.insert(key, Stream::new(meta));
            }
            Err(e) => tracing::error!(error = %e, "A stored delivery stream could not be read."),
        }
    }
    let mut records = 0;
    for (k, v) in store.scan(NS_RECORD).await? {
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some((key, seq)) = StreamKey::parse(&key) else {
            continue;
        };
        let (Ok(seq), Ok(record)) = (seq.parse::<u64>(), serde_json::from_slice::<BufRecord>(&v))
        else {
            continue;
        };
        if let Some(stream) = state.streams.get_mut(&key) {
            stream.buffered_bytes += record.len();
            stream.next_seq = stream.next_seq.max(seq + 1);
            stream.buffer.insert(seq, record);
            records += 1;
        }
    }
    for (k, v) in store.scan(NS_FLUSH).await? {
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some((key, _)) = StreamKey::parse(&key) else {
            continue;
        };
        if let (Some(stream), Ok(intent)) = (
            state.streams.get_mut(&key),
            serde_json::from_slice::<Intent>(&v),
        ) {
            stream.intent = Some(intent);
        }
    }
    for (k, v) in store.scan(NS_CHECKPOINT).await? {
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some((key, shard)) = StreamKey::parse(&key) else {
            continue;
        };
        if let Some(stream) = state.streams.get_mut(&key) {
            stream
                .checkpoints
                .insert(shard.to_string(), String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok((state, records))
}
