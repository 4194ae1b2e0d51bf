//! Step Functions' records and store layout; the only module that names the
//! `stepfunctions.*` namespaces.
//!
//! `stepfunctions.machine` holds one record per state machine (key: ARN);
//! `stepfunctions.activity` one per activity; `stepfunctions.exec` one per Standard execution
//! (the interpreter's persisted [`Execution`], its timers' deadlines and its metadata; key:
//! [`exec_key`], in start order, or the ARN in older stores),
//! `stepfunctions.deftext` the definitions executions ran, each once under its SHA-256
//! (`stepfunctions.execdef`, one copy per execution keyed by its ARN, is read from older
//! stores), and `stepfunctions.event` its
//! history, one row per step keyed by the step's first event (`{exec key}/0000000042`), so
//! a step writes the execution record and one row of new events. Express executions are
//! never stored.
//! `stepfunctions.version` and `stepfunctions.alias` hold published versions and aliases,
//! `stepfunctions.maprun` Distributed Map runs (key: their ARNs), `stepfunctions.job` the
//! Glue job runs and ECS tasks `.sync` tasks wait for (key: `executionArn/task`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tsumiki_lang::asl::{Execution, HistoryEvent};
use tsumiki_store::{Batch, Store, StoreError};

const NS_MACHINE: &str = "stepfunctions.machine";
const NS_ACTIVITY: &str = "stepfunctions.activity";
const NS_EXEC: &str = "stepfunctions.exec";
const NS_EVENT: &str = "stepfunctions.event";
const NS_EXECDEF: &str = "stepfunctions.execdef";
const NS_DEFTEXT: &str = "stepfunctions.deftext";
const NS_VERSION: &str = "stepfunctions.version";
const NS_ALIAS: &str = "stepfunctions.alias";
const NS_MAPRUN: &str = "stepfunctions.maprun";
const NS_JOB: &str = "stepfunctions.job";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub arn: String,
    pub name: String,
    pub account: String,
    pub region: String,
    /// Shared by the machine's executions, which used to hold a copy each.
    pub definition: std::sync::Arc<str>,
    pub role_arn: String,
    pub express: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub revision_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub logging: serde_json::Value,
    #[serde(default)]
    pub tracing: serde_json::Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The last version number published; numbers are never reused, even after a delete.
    #[serde(default)]
    pub last_version: u64,
}

/// A published version: an immutable snapshot of its machine (key: version ARN).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub arn: String,
    pub machine_arn: String,
    pub number: u64,
    pub description: Option<String>,
    pub created_ms: i64,
    pub snapshot: Machine,
}

/// An alias routing executions to one or two versions by weight (key: alias ARN).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alias {
    pub arn: String,
    pub machine_arn: String,
    pub name: String,
    pub description: Option<String>,
    /// `(version ARN, weight)`; weights sum to 100.
    pub routing: Vec<(String, u32)>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activity {
    pub arn: String,
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One execution as stored (Standard) or kept in memory (Express).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRecord {
    pub arn: String,
    pub name: String,
    pub machine_arn: String,
    pub machine_name: String,
    pub account: String,
    pub region: String,
    pub express: bool,
    pub input: String,
    pub start_ms: i64,
    /// Stored once per distinct text (`stepfunctions.deftext`, under `definition_sha`), not
    /// with every step or every execution.
    #[serde(default, skip_serializing)]
    pub definition: std::sync::Arc<str>,
    #[serde(default)]
    pub definition_sha: Option<String>,
    pub role_arn: String,
    pub exec: Execution,
    /// Deadlines of the interpreter's live timers, so a restart re-arms them.
    pub timers: BTreeMap<u64, i64>,
    /// The version started, directly or through `alias_arn`.
    #[serde(default)]
    pub version_arn: Option<String>,
    #[serde(default)]
    pub alias_arn: Option<String>,
    /// RedriveExecution: how many times, when last, and the last client token.
    #[serde(default)]
    pub redrive_count: u64,
    #[serde(default)]
    pub redrive_ms: Option<i64>,
    #[serde(default)]
    pub redrive_token: Option<String>,
    /// The map run this execution is a child workflow of.
    #[serde(default)]
    pub map_run_arn: Option<String>,
    /// The key the record and its history rows are stored under ([`exec_key`]); older stores
    /// keyed them by the ARN (None).
    #[serde(default)]
    pub store_key: Option<String>,
}

impl ExecRecord {
    /// Where the record and its history rows are stored.
    pub fn key(&self) -> &str {
        self.store_key.as_deref().unwrap_or(&self.arn)
    }
}

/// The store key of the `seq`th Standard execution. Keys in start order put each commit's
/// records and history rows beside the previous commit's in the store's index, where ARNs
/// (random names) scattered them over a random index page each.
pub fn exec_key(seq: u64) -> String {
    format!("{seq:016x}")
}

/// A Distributed Map's run (key: map run ARN): its items' inputs, settings, and progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRun {
    pub arn: String,
    pub exec_arn: String,
    pub machine_arn: String,
    pub task: u64,
    pub account: String,
    pub region: String,
    /// RUNNING, SUCCEEDED, FAILED or ABORTED.
    pub status: String,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub max_concurrency: u64,
    pub tolerated_pct: Option<f64>,
    pub tolerated_count: Option<u64>,
    /// The child workflow (the ItemProcessor) as a state machine.
    pub child: Machine,
    /// Each child execution's input (one per item, or per batch).
    pub inputs: Vec<serde_json::Value>,
    /// ResultWriter's rendered `{Bucket, Prefix}`.
    pub writer: Option<serde_json::Value>,
    /// Finished children: index -> the child as ResultWriter reports it (`ExecutionArn`,
    /// `Status`, `Input`, `Output` or `Error`/`Cause`, dates).
    #[serde(default)]
    pub done: BTreeMap<usize, serde_json::Value>,
    /// Children started and not yet finished: index -> child ARN.
    #[serde(default)]
    pub running: BTreeMap<usize, String>,
    /// Whether each input is a batch of items (`ItemBatcher`): item counts then count the
    /// batch's `Items`.
    #[serde(default)]
    pub batched: bool,
    /// Redrives of the run (with its parent): how many, and when the last one was.
    #[serde(default)]
    pub redrive_count: u64,
    #[serde(default)]
    pub redrive_ms: Option<i64>,
    /// Unsuccessful children waiting to be redriven (index -> child ARN).
    #[serde(default)]
    pub pending_redrive: BTreeMap<usize, String>,
    /// Unsuccessful children a redrive could not redrive.
    #[serde(default)]
    pub not_redrivable: std::collections::BTreeSet<usize>,
    /// Whether a driver runs this map run now (a restart and a re-dispatched task must not
    /// both drive it).
    #[serde(skip)]
    pub driving: bool,
}

/// A Glue job run or ECS task a `.sync` task of a Standard execution waits for, stored when
/// the task is submitted so a restarted server polls the same run instead of starting one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobWatch {
    pub exec_arn: String,
    pub task: u64,
    /// The task's resource, to tell the task from a later one with the same number.
    pub resource: String,
    pub account: String,
    pub region: String,
    /// `glue` (target `{JobName, RunId}`) or `ecs` (target `{cluster, task}`).
    pub kind: String,
    pub target: serde_json::Value,
}

impl JobWatch {
    fn key(&self) -> String {
        format!("{}/{}", self.exec_arn, self.task)
    }
}

pub fn put_job(batch: &mut Batch, w: &JobWatch) {
    batch.put(NS_JOB, w.key(), to_json(w));
}

pub fn delete_job(batch: &mut Batch, w: &JobWatch) {
    batch.delete(NS_JOB, w.key());
}

pub fn event_key(arn: &str, id: i64) -> String {
    format!("{arn}/{id:010}")
}

pub fn put_machine(batch: &mut Batch, m: &Machine) {
    batch.put(NS_MACHINE, m.arn.clone(), to_json(m));
}

pub fn delete_machine(batch: &mut Batch, arn: &str) {
    batch.delete(NS_MACHINE, arn.to_string());
}

pub fn put_version(batch: &mut Batch, v: &Version) {
    batch.put(NS_VERSION, v.arn.clone(), to_json(v));
}

pub fn delete_version(batch: &mut Batch, arn: &str) {
    batch.delete(NS_VERSION, arn.to_string());
}

pub fn put_alias(batch: &mut Batch, a: &Alias) {
    batch.put(NS_ALIAS, a.arn.clone(), to_json(a));
}

pub fn delete_alias(batch: &mut Batch, arn: &str) {
    batch.delete(NS_ALIAS, arn.to_string());
}

pub fn put_map_run(batch: &mut Batch, r: &MapRun) {
    batch.put(NS_MAPRUN, r.arn.clone(), to_json(r));
}

pub fn put_activity(batch: &mut Batch, a: &Activity) {
    batch.put(NS_ACTIVITY, a.arn.clone(), to_json(a));
}

pub fn delete_activity(batch: &mut Batch, arn: &str) {
    batch.delete(NS_ACTIVITY, arn.to_string());
}

/// The key a definition text is stored under.
pub fn definition_sha(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Stores a step: the record, and the step's events as one row keyed by the first one's id
/// (a step that runs ten states writes one row, not thirty). `new_definition`: the record's
/// definition text is not stored yet (the first execution of it).
pub fn put_exec(batch: &mut Batch, r: &ExecRecord, events: &[HistoryEvent], new_definition: bool) {
    batch.put(NS_EXEC, r.key().to_string(), pack(to_json(r)));
    if new_definition && let Some(sha) = &r.definition_sha {
        batch.put(NS_DEFTEXT, sha.clone(), r.definition.as_bytes().to_vec());
    }
    if let Some(e) = events.first() {
        batch.put(NS_EVENT, event_key(r.key(), e.id), pack(to_json(&events)));
    }
}

pub fn reset(batch: &mut Batch) {
    for ns in [
        NS_MACHINE,
        NS_ACTIVITY,
        NS_EXEC,
        NS_EVENT,
        NS_VERSION,
        NS_ALIAS,
        NS_MAPRUN,
        NS_JOB,
        NS_EXECDEF,
        NS_DEFTEXT,
    ] {
        batch.delete_prefix(ns, Vec::new());
    }
}

/// The first byte of a compressed row (JSON never starts with NUL).
const PACKED: u8 = 0;
/// Rows up to this size are stored as they are.
const PACK_OVER: usize = 512;

/// Execution records and history rows are LZ4-compressed: their JSON repeats the ARNs, field
/// names and event shapes (a 10-Pass execution's 5.8 KB became 1.7 KB), and every byte a
/// commit stores is written twice (WAL, then checkpoint). At that size one page holds several
/// executions' rows, where the history row alone needed a page and an overflow page.
fn pack(json: Vec<u8>) -> Vec<u8> {
    if json.len() <= PACK_OVER {
        return json;
    }
    // The layout of `lz4_flex::block::compress_prepend_size`, behind the marker byte.
    let mut out = vec![0; 5 + lz4_flex::block::get_maximum_output_size(json.len())];
    out[0] = PACKED;
    out[1..5].copy_from_slice(&(json.len() as u32).to_le_bytes());
    match lz4_flex::block::compress_into(&json, &mut out[5..]) {
        Ok(n) => {
            out.truncate(5 + n);
            out
        }
        Err(_) => json,
    }
}

/// A stored row's JSON, compressed or not.
fn unpack(v: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match v.split_first() {
        Some((&PACKED, rest)) => lz4_flex::block::decompress_size_prepended(rest)
            .map(std::borrow::Cow::Owned)
            .unwrap_or(std::borrow::Cow::Borrowed(v)),
        _ => std::borrow::Cow::Borrowed(v),
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// An execution's history events, in order, as committed. Histories are read from the store
/// on demand and never kept in memory: they are most of an execution's size (a 10-Pass
/// execution's 22 events held 20 KB of maps), and only GetExecutionHistory reads them.
pub async fn history(store: &Store, key: &str) -> Result<Vec<HistoryEvent>, StoreError> {
    let mut list = Vec::new();
    for (_, v) in store
        .scan_prefix(NS_EVENT, format!("{key}/").as_bytes())
        .await?
    {
        let v = unpack(&v);
        // A row holds one step's events (older stores: one event).
        if let Ok(many) = serde_json::from_slice::<Vec<HistoryEvent>>(&v) {
            list.extend(many);
        } else if let Ok(e) = serde_json::from_slice(&v) {
            list.push(e);
        }
    }
    Ok(list)
}

pub struct Loaded {
    /// The SHA-256 of every definition text stored.
    pub definition_shas: Vec<String>,
    pub machines: Vec<Machine>,
    pub activities: Vec<Activity>,
    /// Without their histories, which stay in the store (see [`history`]).
    pub executions: Vec<ExecRecord>,
    /// The sequence number the next execution's [`exec_key`] takes.
    pub next_exec_seq: u64,
    pub versions: Vec<Version>,
    pub aliases: Vec<Alias>,
    pub map_runs: Vec<MapRun>,
    pub jobs: Vec<JobWatch>,
}

pub async fn load(store: &Store) -> Result<Loaded, StoreError> {
    let mut machines = Vec::new();
    for (_, v) in store.scan(NS_MACHINE).await? {
        match serde_json::from_slice(&v) {
            Ok(m) => machines.push(m),
            Err(e) => tracing::error!(error = %e, "A stored state machine is unreadable."),
        }
    }
    let mut activities = Vec::new();
    for (_, v) in store.scan(NS_ACTIVITY).await? {
        if let Ok(a) = serde_json::from_slice(&v) {
            activities.push(a);
        }
    }
    let mut definitions: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in store.scan(NS_EXECDEF).await? {
        definitions.insert(
            String::from_utf8_lossy(&k).to_string(),
            String::from_utf8_lossy(&v).to_string(),
        );
    }
    let mut texts: BTreeMap<String, std::sync::Arc<str>> = BTreeMap::new();
    let mut definition_shas = Vec::new();
    for (k, v) in store.scan(NS_DEFTEXT).await? {
        definition_shas.push(String::from_utf8_lossy(&k).to_string());
        texts.insert(
            String::from_utf8_lossy(&k).to_string(),
            String::from_utf8_lossy(&v).into(),
        );
    }
    let mut executions = Vec::new();
    let mut next_exec_seq = 0;
    for (k, v) in store.scan(NS_EXEC).await? {
        if k.len() == 16
            && let Some(seq) = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| u64::from_str_radix(k, 16).ok())
        {
            next_exec_seq = next_exec_seq.max(seq + 1);
        }
        match serde_json::from_slice::<ExecRecord>(&unpack(&v)) {
            Ok(mut r) => {
                if let Some(d) = definitions.remove(&r.arn) {
                    r.definition = d.into();
                } else if let Some(d) = r.definition_sha.as_ref().and_then(|s| texts.get(s)) {
                    r.definition = d.clone();
                }
                executions.push(r);
            }
            Err(e) => tracing::error!(error = %e, "A stored execution is unreadable."),
        }
    }
    let mut versions = Vec::new();
    for (_, v) in store.scan(NS_VERSION).await? {
        match serde_json::from_slice(&v) {
            Ok(x) => versions.push(x),
            Err(e) => tracing::error!(error = %e, "A stored state machine version is unreadable."),
        }
    }
    let mut aliases = Vec::new();
    for (_, v) in store.scan(NS_ALIAS).await? {
        match serde_json::from_slice(&v) {
            Ok(x) => aliases.push(x),
            Err(e) => tracing::error!(error = %e, "A stored state machine alias is unreadable."),
        }
    }
    let mut map_runs = Vec::new();
    for (_, v) in store.scan(NS_MAPRUN).await? {
        match serde_json::from_slice(&v) {
            Ok(x) => map_runs.push(x),
            Err(e) => tracing::error!(error = %e, "A stored map run is unreadable."),
        }
    }
    let mut jobs = Vec::new();
    for (_, v) in store.scan(NS_JOB).await? {
        match serde_json::from_slice(&v) {
            Ok(x) => jobs.push(x),
            Err(e) => tracing::error!(error = %e, "A stored .sync job watch is unreadable."),
        }
    }
    Ok(Loaded {
        jobs,
        definition_shas,
        machines,
        activities,
        executions,
        next_exec_seq,
        versions,
        aliases,
        map_runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arn: &str, store_key: Option<String>) -> ExecRecord {
        let exec = Execution::new(tsumiki_lang::asl::StartSpec {
            execution_arn: arn.into(),
            name: "e".into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:m".into(),
            state_machine_name: "m".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            region: "us-east-1".into(),
            input: serde_json::json!({}),
            start_ms: 0,
            token_prefix: "t".into(),
            seed: 1,
        });
        ExecRecord {
            arn: arn.into(),
            name: "e".into(),
            machine_arn: "arn:aws:states:us-east-1:1:stateMachine:m".into(),
            machine_name: "m".into(),
            account: "1".into(),
            region: "us-east-1".into(),
            express: false,
            input: "{}".into(),
            start_ms: 0,
            definition: "".into(),
            definition_sha: None,
            role_arn: "arn:aws:iam::1:role/r".into(),
            exec,
            timers: BTreeMap::new(),
            version_arn: None,
            alias_arn: None,
            redrive_count: 0,
            redrive_ms: None,
            redrive_token: None,
            map_run_arn: None,
            store_key,
        }
    }

    fn event(id: i64) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_id: id - 1,
            timestamp_ms: 0,
            kind: "PassStateEntered".into(),
            details_key: Some("stateEnteredEventDetails".into()),
            details: serde_json::json!({"name": "P", "input": "{}".repeat(200)}),
        }
    }

    #[tokio::test]
    async fn stores_of_before_start_order_keys_still_load_and_read_histories() {
        let store = Store::open(None, tsumiki_store::SyncMode::Normal).expect("open");
        let legacy = "arn:aws:states:us-east-1:1:execution:m:old";
        // As older versions wrote them: keyed by the ARN, plain JSON, one event per row.
        let mut b = Batch::new();
        b.put(NS_EXEC, legacy, to_json(&record(legacy, None)));
        b.put(NS_EVENT, event_key(legacy, 1), to_json(&event(1)));
        b.put(
            NS_EVENT,
            event_key(legacy, 2),
            to_json(&vec![event(2), event(3)]),
        );
        store.commit(b).await.expect("legacy rows");
        let loaded = load(&store).await.expect("load");
        assert_eq!(loaded.next_exec_seq, 0);
        assert_eq!(loaded.executions[0].key(), legacy);
        let ids: Vec<i64> = history(&store, legacy)
            .await
            .expect("history")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);

        // New executions: start-order keys, compressed rows, the sequence resumes after them.
        let fresh = record(
            "arn:aws:states:us-east-1:1:execution:m:new",
            Some(exec_key(41)),
        );
        let mut b = Batch::new();
        put_exec(&mut b, &fresh, &[event(1), event(2)], false);
        store.commit(b).await.expect("new rows");
        let loaded = load(&store).await.expect("reload");
        assert_eq!(loaded.next_exec_seq, 42);
        let new = loaded
            .executions
            .iter()
            .find(|r| r.arn.ends_with(":new"))
            .expect("new");
        assert_eq!(new.key(), "0000000000000029");
        let ids: Vec<i64> = history(&store, new.key())
            .await
            .expect("history")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![1, 2]);
        // Each history stays its own: the legacy one did not pick up the new rows.
        assert_eq!(history(&store, legacy).await.expect("history").len(), 3);
    }

    #[test]
    fn rows_pack_and_unpack() {
        let small = br#"{"a":1}"#.to_vec();
        assert_eq!(pack(small.clone()), small, "small rows stay as they are");
        assert_eq!(unpack(&small).as_ref(), &small[..]);
        let big = serde_json::to_vec(&vec![
            serde_json::json!({"kind": "PassStateEntered", "name": "S1"});
            40
        ])
        .expect("json");
        let packed = pack(big.clone());
        assert_eq!(packed[0], PACKED);
        assert!(
            packed.len() < big.len() / 4,
            "{} of {}",
            packed.len(),
            big.len()
        );
        assert_eq!(unpack(&packed).as_ref(), &big[..]);
        // Rows stored before compression (JSON) read as they are.
        assert_eq!(unpack(&big).as_ref(), &big[..]);
    }
}
