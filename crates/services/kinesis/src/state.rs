//! Kinesis's state: streams, their shards and every retained record in memory, each change
//! written through to the store before the request that made it is answered. The only module
//! that names Kinesis's store namespaces.
//!
//! Store layout: `kinesis.stream` holds one record per stream (`account/region/name`);
//! `kinesis.record` one key per record, `account/region/name/shardId/sequence`, so a stream's
//! records sort by shard and sequence and a deleted stream's records go with one prefix delete.

use std::collections::{BTreeMap, HashMap};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tsumiki_store::{Batch, Store, StoreError};

const NS_STREAM: &str = "kinesis.stream";
const NS_RECORD: &str = "kinesis.record";

/// AWS's sequence numbers start with 49; ours are 38 decimal digits:
/// `49 * 10^36 + shard index * 10^24 + counter`, so within a stream they are unique, within a
/// shard they grow, and comparing them as strings of equal length compares them as numbers.
const SEQ_BASE: u128 = 49 * 10u128.pow(36);
const SEQ_SHARD: u128 = 10u128.pow(24);

/// The sequence number of the `counter`th position of shard `index`.
pub fn sequence_number(index: usize, counter: u128) -> u128 {
    SEQ_BASE + index as u128 * SEQ_SHARD + counter
}

/// The shard index and counter of a sequence number of ours, or `None` for a foreign one.
pub fn parse_sequence(s: &str) -> Option<(usize, u128)> {
    let n: u128 = s.parse().ok()?;
    if n < SEQ_BASE {
        return None;
    }
    let rest = n - SEQ_BASE;
    Some(((rest / SEQ_SHARD) as usize, rest % SEQ_SHARD))
}

/// The 128-bit hash key of a partition key: its MD5 digest read as a big-endian number, as AWS
/// maps partition keys to shards.
pub fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// `n` hash key ranges splitting the 128-bit space evenly (the last takes the remainder).
pub fn hash_ranges(n: usize) -> Vec<(u128, u128)> {
    if n <= 1 {
        return vec![(0, u128::MAX)];
    }
    let n = n as u128;
    // floor(2^128 / n), without computing 2^128.
    let size = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * size;
            let end = if i == n - 1 {
                u128::MAX
            } else {
                (i + 1) * size - 1
            };
            (start, end)
        })
        .collect()
}

/// A stream's identity: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl StreamKey {
    fn store_key(&self) -> String {
        format!("{}/{}/{}", self.account, self.region, self.name)
    }

    pub fn arn(&self) -> String {
        tsumiki_core::ids::arn(
            "kinesis",
            &self.region,
            &self.account,
            &format!("stream/{}", self.name),
        )
    }
}

/// One shard: its hash key range, where its sequence numbers start, and (after resharding)
/// its parents and where it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: String,
    pub start_hash: String,
    pub end_hash: String,
    pub start_seq: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjacent_parent: Option<String>,
    /// Set when a split or merge closed the shard: it takes no more records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seq: Option<String>,
    /// When the shard was created (absent: with its stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<i64>,
}

impl ShardMeta {
    pub fn range(&self) -> (u128, u128) {
        (
            self.start_hash.parse().unwrap_or(0),
            self.end_hash.parse().unwrap_or(u128::MAX),
        )
    }
}

/// A stream's configuration, the stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub created_ms: i64,
    pub on_demand: bool,
    pub retention_hours: u32,
    pub shards: Vec<ShardMeta>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One record as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub partition_key: String,
    /// Base64, as the model shapes blobs.
    pub data: String,
    pub arrival_ms: i64,
}

/// A stream in memory.
#[derive(Debug)]
pub struct Stream {
    pub meta: StreamMeta,
    /// Per shard (by index): records by sequence number.
    pub records: Vec<BTreeMap<u128, Record>>,
    /// Per shard: the last counter handed out.
    pub counters: Vec<u128>,
}

impl Stream {
    pub fn new(meta: StreamMeta) -> Stream {
        let n = meta.shards.len();
        let counters = meta
            .shards
            .iter()
            .map(|s| parse_sequence(&s.start_seq).map_or(0, |(_, c)| c))
            .collect();
        Stream {
            meta,
            records: vec![BTreeMap::new(); n],
            counters,
        }
    }

    /// The open shard whose range holds `hash`.
    pub fn shard_for(&self, hash: u128) -> usize {
        self.meta
            .shards
            .iter()
            .position(|s| {
                let (a, b) = s.range();
                s.end_seq.is_none() && a <= hash && hash <= b
            })
            .unwrap_or(0)
    }

    /// The indexes of the open shards, by starting hash key.
    pub fn open_shards(&self) -> Vec<usize> {
        let mut open: Vec<usize> = (0..self.meta.shards.len())
            .filter(|i| self.meta.shards[*i].end_seq.is_none())
            .collect();
        open.sort_by_key(|i| self.meta.shards[*i].range().0);
        open
    }

    /// Appends a new open shard over `[start, end]`; answers its index.
    fn add_shard(
        &mut self,
        (start, end): (u128, u128),
        parents: (String, Option<String>),
        now_ms: i64,
    ) -> usize {
        let index = self.meta.shards.len();
        let floor = (now_ms.max(0) as u128) * 1000;
        self.meta.shards.push(ShardMeta {
            id: format!("shardId-{index:012}"),
            start_hash: start.to_string(),
            end_hash: end.to_string(),
            start_seq: sequence_number(index, floor).to_string(),
            parent: Some(parents.0),
            adjacent_parent: parents.1,
            end_seq: None,
            created_ms: Some(now_ms),
            closed_ms: None,
        });
        self.records.push(BTreeMap::new());
        self.counters.push(floor);
        index
    }

    /// Closes shard `index`: its ending sequence number is the greatest its numbers can reach.
    fn close(&mut self, index: usize, now_ms: i64) {
        let shard = &mut self.meta.shards[index];
        shard.end_seq = Some(sequence_number(index, SEQ_SHARD - 1).to_string());
        shard.closed_ms = Some(now_ms);
    }

    /// Splits open shard `index` at `at` (the second child's starting hash key); answers the
    /// two children's indexes.
    pub fn split(&mut self, index: usize, at: u128, now_ms: i64) -> (usize, usize) {
        let (a, b) = self.meta.shards[index].range();
        let parent = self.meta.shards[index].id.clone();
        self.close(index, now_ms);
        let left = self.add_shard((a, at - 1), (parent.clone(), None), now_ms);
        let right = self.add_shard((at, b), (parent, None), now_ms);
        (left, right)
    }

    /// Merges open shards `first` and `adjacent` (whose range follows `first`'s); answers the
    /// child's index.
    pub fn merge(&mut self, first: usize, adjacent: usize, now_ms: i64) -> usize {
        let (a, _) = self.meta.shards[first].range();
        let (_, b) = self.meta.shards[adjacent].range();
        let parents = (
            self.meta.shards[first].id.clone(),
            Some(self.meta.shards[adjacent].id.clone()),
        );
        self.close(first, now_ms);
        self.close(adjacent, now_ms);
        self.add_shard((a, b), parents, now_ms)
    }

    /// UpdateShardCount's UNIFORM_SCALING, as AWS performs it: each open shard is split at
    /// every boundary of the `target` even ranges inside it, then the pieces of each range are
    /// merged pairwise from the left. Every step is an ordinary split or merge, so every child
    /// names its parents and readers keep each key's order.
    pub fn scale_uniformly(&mut self, target: usize, now_ms: i64) {
        let ranges = hash_ranges(target);
        let boundaries: Vec<u128> = ranges.iter().skip(1).map(|r| r.0).collect();
        let mut pieces = Vec::new();
        for index in self.open_shards() {
            let mut current = index;
            loop {
                let (a, b) = self.meta.shards[current].range();
                match boundaries.iter().find(|x| **x > a && **x <= b) {
                    Some(&at) => {
                        let (left, right) = self.split(current, at, now_ms);
                        pieces.push(left);
                        current = right;
                    }
                    None => {
                        pieces.push(current);
                        break;
                    }
                }
            }
        }
        for (a, b) in ranges {
            let group: Vec<usize> = pieces
                .iter()
                .copied()
                .filter(|p| {
                    let (s, e) = self.meta.shards[*p].range();
                    a <= s && e <= b
                })
                .collect();
            let Some((first, rest)) = group.split_first() else {
                continue;
            };
            let mut merged = *first;
            for next in rest {
                merged = self.merge(merged, *next, now_ms);
            }
        }
    }

    pub fn shard_index(&self, shard_id: &str) -> Option<usize> {
        self.meta.shards.iter().position(|s| s.id == shard_id)
    }

    /// The next sequence number of shard `index`: above every earlier one, and at least the
    /// clock's time in microseconds, so numbers keep growing across restarts even after the
    /// records that held the last ones were trimmed.
    pub fn next_sequence(&mut self, index: usize, now_ms: i64) -> u128 {
        let floor = (now_ms.max(0) as u128) * 1000;
        let next = (self.counters[index] + 1).max(floor);
        self.counters[index] = next;
        sequence_number(index, next)
    }
}

/// Everything, behind one lock in `Kinesis`.
#[derive(Debug, Default)]
pub struct State {
    pub streams: HashMap<StreamKey, Stream>,
}

pub fn put_stream(batch: &mut Batch, key: &StreamKey, meta: &StreamMeta) {
    batch.put(
        NS_STREAM,
        key.store_key(),
        serde_json::to_vec(meta).unwrap_or_default(),
    );
}

pub fn delete_stream(batch: &mut Batch, key: &StreamKey) {
    batch.delete(NS_STREAM, key.store_key());
    batch.delete_prefix(NS_RECORD, format!("{}/", key.store_key()));
}

pub fn put_record(batch: &mut Batch, key: &StreamKey, shard: &str, seq: u128, r: &Record) {
    batch.put(
        NS_RECORD,
        format!("{}/{shard}/{seq}", key.store_key()),
        serde_json::to_vec(r).unwrap_or_default(),
    );
}

pub fn delete_record(batch: &mut Batch, key: &StreamKey, shard: &str, seq: u128) {
    batch.delete(NS_RECORD, format!("{}/{shard}/{seq}", key.store_key()));
}

pub fn reset(batch: &mut Batch) {
    batch.delete_prefix(NS_STREAM, Vec::new());
    batch.delete_prefix(NS_RECORD, Vec::new());
}

/// Loads every stream and record; answers the state and the number of records.
pub async fn load(store: &Store) -> Result<(State, usize), StoreError> {
    let mut state = State::default();
    for (key, value) in store.scan(NS_STREAM).await? {
        let key = String::from_utf8_lossy(&key).to_string();
        let mut parts = key.splitn(3, '/');
        let (Some(account), Some(region), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Ok(meta) = serde_json::from_slice::<StreamMeta>(&value) {
            let k = StreamKey {
                account: account.into(),
                region: region.into(),
                name: name.into(),
            };
            state.streams.insert(k, Stream::new(meta));
        }
    }
    let mut count = 0;
    for (key, value) in store.scan(NS_RECORD).await? {
        let key = String::from_utf8_lossy(&key).to_string();
        let parts: Vec<&str> = key.split('/').collect();
        let [account, region, name, shard, seq] = parts.as_slice() else {
            continue;
        };
        let k = StreamKey {
            account: account.to_string(),
            region: region.to_string(),
            name: name.to_string(),
        };
        let (Some(stream), Ok(seq), Ok(record)) = (
            state.streams.get_mut(&k),
            seq.parse::<u128>(),
            serde_json::from_slice::<Record>(&value),
        ) else {
            continue;
        };
        let Some(i) = stream.shard_index(shard) else {
            continue;
        };
        if let Some((_, c)) = parse_sequence(&seq.to_string()) {
            stream.counters[i] = stream.counters[i].max(c);
        }
        stream.records[i].insert(seq, record);
        count += 1;
    }
    Ok((state, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> Stream {
        let shards = hash_ranges(n)
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| ShardMeta {
                id: format!("shardId-{i:012}"),
                start_hash: a.to_string(),
                end_hash: b.to_string(),
                start_seq: sequence_number(i, 0).to_string(),
                ..ShardMeta::default()
            })
            .collect();
        Stream::new(StreamMeta {
            name: "s".into(),
            created_ms: 0,
            on_demand: false,
            retention_hours: 24,
            shards,
            tags: BTreeMap::new(),
        })
    }

    #[test]
    fn uniform_scaling_ends_with_even_open_shards_whose_parents_are_closed() {
        for (from, to) in [(1, 2), (2, 1), (5, 3), (3, 5), (4, 8), (7, 4), (3, 3)] {
            let mut s = stream(from);
            s.scale_uniformly(to, 1_000);
            let open: Vec<(u128, u128)> = s
                .open_shards()
                .iter()
                .map(|i| s.meta.shards[*i].range())
                .collect();
            assert_eq!(open, hash_ranges(to), "{from} -> {to}");
            let ids: Vec<&str> = s.meta.shards.iter().map(|m| m.id.as_str()).collect();
            for m in &s.meta.shards {
                for p in m.parent.iter().chain(m.adjacent_parent.iter()) {
                    let parent = &s.meta.shards[ids.iter().position(|i| i == p).expect("known")];
                    assert!(parent.end_seq.is_some(), "a parent is closed");
                    let (pa, pb) = parent.range();
                    let (a, b) = m.range();
                    assert!(pa <= b && a <= pb, "a parent overlaps its child");
                }
            }
            assert_eq!(s.records.len(), s.meta.shards.len());
        }
    }

    #[test]
    fn splits_and_merges_route_new_records_to_open_children() {
        let mut s = stream(1);
        let (l, r) = s.split(0, 1 << 127, 5);
        assert_eq!(s.shard_for(0), l);
        assert_eq!(s.shard_for(u128::MAX), r);
        assert_eq!(
            s.meta.shards[l].parent.as_deref(),
            Some("shardId-000000000000")
        );
        let m = s.merge(l, r, 6);
        assert_eq!(s.shard_for(1 << 127), m);
        assert_eq!(
            s.meta.shards[m].adjacent_parent.as_deref(),
            Some("shardId-000000000002")
        );
        assert!(s.meta.shards[0].end_seq.as_deref() > Some(s.meta.shards[0].start_seq.as_str()));
    }

    #[test]
    fn ranges_split_the_space_evenly() {
        let r = hash_ranges(1);
        assert_eq!(r, vec![(0, u128::MAX)]);
        let r = hash_ranges(2);
        // AWS: shard 0 ends at 2^127 - 1, shard 1 starts at 2^127.
        assert_eq!(r[0], (0, (1u128 << 127) - 1));
        assert_eq!(r[1], (1u128 << 127, u128::MAX));
        let r = hash_ranges(4);
        assert_eq!(r[1].0, 1u128 << 126);
        assert_eq!(r[3].1, u128::MAX);
        for n in [3, 5, 7, 100] {
            let r = hash_ranges(n);
            assert_eq!(r.len(), n);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[n - 1].1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0, "ranges are contiguous");
            }
        }
        // AWS's 3-shard stream: shard 0 ends at 113427455640312821154458202477256070484.
        assert_eq!(hash_ranges(3)[0].1, 113427455640312821154458202477256070484);
    }

    #[test]
    fn partition_keys_hash_with_md5() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
        let mut s = Stream::new(StreamMeta {
            name: "s".into(),
            created_ms: 0,
            on_demand: false,
            retention_hours: 24,
            shards: hash_ranges(2)
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| ShardMeta {
                    id: format!("shardId-{i:012}"),
                    start_hash: a.to_string(),
                    end_hash: b.to_string(),
                    start_seq: sequence_number(i, 0).to_string(),
                    ..ShardMeta::default()
                })
                .collect(),
            tags: BTreeMap::new(),
        });
        assert_eq!(s.shard_for(hash_key("a")), 0);
        assert_eq!(s.shard_for(u128::MAX), 1);
        assert_eq!(s.shard_for(1u128 << 127), 1);
        assert_eq!(s.shard_for((1u128 << 127) - 1), 0);
        assert_eq!(s.shard_index("shardId-000000000001"), Some(1));
        let _ = s.next_sequence(0, 0);
    }

    #[test]
    fn sequence_numbers_grow_per_shard_and_compare_as_strings() {
        let mut s = Stream::new(StreamMeta {
            name: "s".into(),
            created_ms: 0,
            on_demand: false,
            retention_hours: 24,
            shards: (0..2)
                .map(|i| ShardMeta {
                    id: format!("shardId-{i:012}"),
                    start_hash: "0".into(),
                    end_hash: "0".into(),
                    start_seq: sequence_number(i, 5).to_string(),
                    ..ShardMeta::default()
                })
                .collect(),
            tags: BTreeMap::new(),
        });
        let a = s.next_sequence(0, 1);
        let b = s.next_sequence(0, 1);
        let c = s.next_sequence(0, 0); // the clock never makes them go back
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().len(), 38);
        assert!(a.to_string().starts_with("49"));
        let d = s.next_sequence(1, 1);
        assert_ne!(d, a);
        assert_eq!(parse_sequence(&d.to_string()).map(|p| p.0), Some(1));
        // A later clock lifts the counter (restarts after trimming never reuse numbers).
        let e = s.next_sequence(0, 1_000_000);
        assert_eq!(parse_sequence(&e.to_string()), Some((0, 1_000_000_000)));
        assert_eq!(parse_sequence("12"), None);
        assert_eq!(parse_sequence("x"), None);
    }
}
