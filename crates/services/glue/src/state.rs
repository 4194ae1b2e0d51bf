//! Glue's state: jobs, job runs and triggers in memory, each change written through to the
//! store before the request that made it is answered. The only module that names Glue's store
//! namespaces.
//!
//! Records are kept in AWS's own shapes (`Job`, `JobRun`, `Trigger` as the model defines
//! them), so Get operations answer them as they are. Store layout: `glue.job`
//! (`account/region/name`), `glue.run` (`account/region/job\nrunId`: names may hold `/` but
//! not a newline), `glue.trigger` (`account/region/name`), `glue.bookmark`
//! (`account/region/job`: the job's bookmark entries, oldest first).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_store::{Batch, Store, StoreError};

const NS_JOB: &str = "glue.job";
const NS_RUN: &str = "glue.run";
const NS_TRIGGER: &str = "glue.trigger";
const NS_WORKFLOW: &str = "glue.workflow";
const NS_WORKFLOW_RUN: &str = "glue.wfrun";
const NS_BOOKMARK: &str = "glue.bookmark";

/// A resource's identity: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl Key {
    fn store_key(&self) -> String {
        format!("{}/{}/{}", self.account, self.region, self.name)
    }

    pub fn with_name(&self, name: &str) -> Key {
        Key {
            account: self.account.clone(),
            region: self.region.clone(),
            name: name.to_string(),
        }
    }
}

/// A job: AWS's `Job` shape and its tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A trigger: AWS's `Trigger` shape, its tags, and when its schedule last fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub trigger: Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Clock time the schedule last fired, or was activated (occurrences count from here).
    #[serde(default)]
    pub schedule_from_ms: i64,
    /// An EVENT trigger's batch so far: the ids of the events received, oldest first.
    #[serde(default)]
    pub batch: Vec<String>,
    /// When the batch's first event arrived (its `BatchWindow` counts from here).
    #[serde(default)]
    pub batch_from_ms: i64,
}

#[derive(Debug, Default)]
pub struct State {
    pub jobs: BTreeMap<Key, JobRecord>,
    /// By job, then run id: AWS's `JobRun` shape.
    pub runs: BTreeMap<(Key, String), Value>,
    pub triggers: BTreeMap<Key, TriggerRecord>,
    /// AWS's `Workflow` shape (without `LastRun` and `Graph`, which are computed).
    pub workflows: BTreeMap<Key, Value>,
    /// By workflow, then run id: AWS's `WorkflowRun` shape (without `Statistics`).
    pub workflow_runs: BTreeMap<(Key, String), Value>,
    /// By job: AWS's `JobBookmarkEntry` after each run that advanced it, oldest first.
    pub bookmarks: BTreeMap<Key, Vec<Value>>,
}

pub fn put_bookmarks(batch: &mut Batch, key: &Key, entries: &[Value]) {
    if entries.is_empty() {
        batch.delete(NS_BOOKMARK, key.store_key());
    } else {
        batch.put(
            NS_BOOKMARK,
            key.store_key(),
            serde_json::to_vec(entries).unwrap_or_default(),
        );
    }
}

pub fn put_job(batch: &mut Batch, key: &Key, job: &JobRecord) {
    batch.put(
        NS_JOB,
        key.store_key(),
        serde_json::to_vec(job).unwrap_or_default(),
    );
}

pub fn delete_job(batch: &mut Batch, key: &Key) {
    batch.delete(NS_JOB, key.store_key());
    batch.delete(NS_BOOKMARK, key.store_key());
    batch.delete_prefix(NS_RUN, format!("{}\n", key.store_key()));
}

pub fn put_run(batch: &mut Batch, job: &Key, run_id: &str, run: &Value) {
    batch.put(
        NS_RUN,
        format!("{}\n{run_id}", job.store_key()),
        serde_json::to_vec(run).unwrap_or_default(),
    );
}

pub fn put_trigger(batch: &mut Batch, key: &Key, trigger: &TriggerRecord) {
    batch.put(
        NS_TRIGGER,
        key.store_key(),
        serde_json::to_vec(trigger).unwrap_or_default(),
    );
}

pub fn delete_trigger(batch: &mut Batch, key: &Key) {
    batch.delete(NS_TRIGGER, key.store_key());
}

pub fn put_workflow(batch: &mut Batch, key: &Key, w: &Value) {
    batch.put(
        NS_WORKFLOW,
        key.store_key(),
        serde_json::to_vec(w).unwrap_or_default(),
    );
}

pub fn delete_workflow(batch: &mut Batch, key: &Key) {
    batch.delete(NS_WORKFLOW, key.store_key());
    batch.delete_prefix(NS_WORKFLOW_RUN, format!("{}\n", key.store_key()));
}

pub fn put_workflow_run(batch: &mut Batch, workflow: &Key, run_id: &str, run: &Value) {
    batch.put(
        NS_WORKFLOW_RUN,
        format!("{}\n{run_id}", workflow.store_key()),
        serde_json::to_vec(run).unwrap_or_default(),
    );
}

pub fn reset(batch: &mut Batch) {
    batch.delete_prefix(NS_BOOKMARK, "");
    batch.delete_prefix(NS_WORKFLOW, "");
    batch.delete_prefix(NS_WORKFLOW_RUN, "");
    batch.delete_prefix(NS_JOB, "");
    batch.delete_prefix(NS_RUN, "");
    batch.delete_prefix(NS_TRIGGER, "");
}

fn split_key(raw: &[u8], parts: usize) -> Option<Vec<String>> {
    let text = std::str::from_utf8(raw).ok()?;
    let v: Vec<String> = text.splitn(parts, '/').map(str::to_string).collect();
    (v.len() == parts).then_some(v)
}

/// Loads everything. Runs that were in progress when the server stopped lost their process
/// with it; the caller ends them.
pub async fn load(store: &Store) -> Result<State, StoreError> {
    let mut state = State::default();
    for (k, v) in store.scan(NS_JOB).await? {
        let (Some(p), Ok(job)) = (split_key(&k, 3), serde_json::from_slice::<JobRecord>(&v)) else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: p[2].clone(),
        };
        state.jobs.insert(key, job);
    }
    for (k, v) in store.scan(NS_RUN).await? {
        let (Some(p), Ok(run)) = (split_key(&k, 3), serde_json::from_slice::<Value>(&v)) else {
            continue;
        };
        let Some((name, run_id)) = p[2].split_once('\n') else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: name.to_string(),
        };
        state.runs.insert((key, run_id.to_string()), run);
    }
    for (k, v) in store.scan(NS_TRIGGER).await? {
        let (Some(p), Ok(t)) = (
            split_key(&k, 3),
            serde_json::from_slice::<TriggerRecord>(&v),
        ) else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: p[2].clone(),
        };
        state.triggers.insert(key, t);
    }
    for (k, v) in store.scan(NS_WORKFLOW).await? {
        let (Some(p), Ok(w)) = (split_key(&k, 3), serde_json::from_slice::<Value>(&v)) else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: p[2].clone(),
        };
        state.workflows.insert(key, w);
    }
    for (k, v) in store.scan(NS_WORKFLOW_RUN).await? {
        let (Some(p), Ok(run)) = (split_key(&k, 3), serde_json::from_slice::<Value>(&v)) else {
            continue;
        };
        let Some((name, run_id)) = p[2].split_once('\n') else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: name.to_string(),
        };
        state.workflow_runs.insert((key, run_id.to_string()), run);
    }
    for (k, v) in store.scan(NS_BOOKMARK).await? {
        let (Some(p), Ok(entries)) = (split_key(&k, 3), serde_json::from_slice::<Vec<Value>>(&v))
        else {
            continue;
        };
        let key = Key {
            account: p[0].clone(),
            region: p[1].clone(),
            name: p[2].clone(),
        };
        state.bookmarks.insert(key, entries);
    }
    Ok(state)
}
