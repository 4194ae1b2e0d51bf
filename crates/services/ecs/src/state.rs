//! ECS's state: clusters, task definitions (every revision) and tasks in memory, each change
//! written through to the store before the request that made it is answered. The only module
//! that names ECS's store namespaces.
//!
//! Records are AWS's own shapes (`Cluster`, `TaskDefinition`, `Task`), so Describe operations
//! answer them as they are. Store layout: `ecs.cluster` (`account/region/name`),
//! `ecs.taskdef` (`account/region/family/revision`, the revision zero-padded so revisions sort),
//! `ecs.task` (`account/region/taskId`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_store::{Batch, Store, StoreError};

const NS_CLUSTER: &str = "ecs.cluster";
const NS_TASKDEF: &str = "ecs.taskdef";
const NS_TASK: &str = "ecs.task";

/// Account and region: resources are isolated per both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    fn prefix(&self) -> String {
        format!("{}/{}/", self.account, self.region)
    }
}

/// A record and its tags (`[{key, value}]`, as the model shapes them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tagged {
    pub value: Value,
    #[serde(default)]
    pub tags: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct State {
    pub clusters: BTreeMap<(Scope, String), Tagged>,
    /// By family, then revision.
    pub taskdefs: BTreeMap<(Scope, String), BTreeMap<u32, Tagged>>,
    /// By task id.
    pub tasks: BTreeMap<(Scope, String), Tagged>,
}

pub fn put_cluster(batch: &mut Batch, scope: &Scope, name: &str, c: &Tagged) {
    batch.put(
        NS_CLUSTER,
        format!("{}{name}", scope.prefix()),
        serde_json::to_vec(c).unwrap_or_default(),
    );
}

pub fn delete_cluster(batch: &mut Batch, scope: &Scope, name: &str) {
    batch.delete(NS_CLUSTER, format!("{}{name}", scope.prefix()));
}

pub fn put_taskdef(batch: &mut Batch, scope: &Scope, family: &str, revision: u32, t: &Tagged) {
    batch.put(
        NS_TASKDEF,
        format!("{}{family}/{revision:010}", scope.prefix()),
        serde_json::to_vec(t).unwrap_or_default(),
    );
}

pub fn put_task(batch: &mut Batch, scope: &Scope, id: &str, t: &Tagged) {
    batch.put(
        NS_TASK,
        format!("{}{id}", scope.prefix()),
        serde_json::to_vec(t).unwrap_or_default(),
    );
}

pub fn reset(batch: &mut Batch) {
    batch.delete_prefix(NS_CLUSTER, "");
    batch.delete_prefix(NS_TASKDEF, "");
    batch.delete_prefix(NS_TASK, "");
}

fn parts(raw: &[u8]) -> Option<(Scope, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut it = text.splitn(3, '/');
    let scope = Scope {
        account: it.next()?.to_string(),
        region: it.next()?.to_string(),
    };
    Some((scope, it.next()?.to_string()))
}

pub async fn load(store: &Store) -> Result<State, StoreError> {
    let mut state = State::default();
    for (k, v) in store.scan(NS_CLUSTER).await? {
        if let (Some(key), Ok(c)) = (parts(&k), serde_json::from_slice(&v)) {
            state.clusters.insert(key, c);
        }
    }
    for (k, v) in store.scan(NS_TASKDEF).await? {
        let (Some((scope, rest)), Ok(t)) = (parts(&k), serde_json::from_slice(&v)) else {
            continue;
        };
        let Some((family, rev)) = rest.rsplit_once('/') else {
            continue;
        };
        let Ok(rev) = rev.parse::<u32>() else {
            continue;
        };
        state
            .taskdefs
            .entry((scope, family.to_string()))
            .or_default()
            .insert(rev, t);
    }
    for (k, v) in store.scan(NS_TASK).await? {
        if let (Some(key), Ok(t)) = (parts(&k), serde_json::from_slice(&v)) {
            state.tasks.insert(key, t);
        }
    }
    Ok(state)
}
