//! API Gateway's state: every API in memory, one store record each (`apigw.api`, key
//! `account/region/apiId`) holding the API and all its sub-resources, written through before
//! the request that changed it is answered. The only module that names the store namespace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_store::{Batch, Store, StoreError};

const NS_API: &str = "apigw.api";

/// What a deployment froze: the routes, integrations and authorizers at the time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub routes: BTreeMap<String, Value>,
    pub integrations: BTreeMap<String, Value>,
    pub authorizers: BTreeMap<String, Value>,
}

/// One HTTP API with everything under it. Resources are the model-shaped values AWS returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiRecord {
    pub account: String,
    pub region: String,
    pub api: Value,
    #[serde(default)]
    pub live: Snapshot,
    #[serde(default)]
    pub stages: BTreeMap<String, Value>,
    #[serde(default)]
    pub deployments: BTreeMap<String, Value>,
    /// What each deployment froze, by deployment id.
    #[serde(default)]
    pub frozen: BTreeMap<String, Snapshot>,
}

impl ApiRecord {
    pub fn id(&self) -> &str {
        self.api["ApiId"].as_str().unwrap_or_default()
    }

    pub fn key(&self) -> String {
        key(&self.account, &self.region, self.id())
    }

    /// Queues this record's write.
    pub fn write(&self, batch: &mut Batch) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        batch.put(NS_API, self.key(), bytes);
    }
}

pub fn key(account: &str, region: &str, id: &str) -> String {
    format!("{account}/{region}/{id}")
}

#[derive(Default)]
pub struct State {
    /// By `account/region/apiId`.
    pub apis: BTreeMap<String, ApiRecord>,
}

pub fn delete(batch: &mut Batch, key: &str) {
    batch.delete(NS_API, key.to_string());
}

pub fn reset(batch: &mut Batch) {
    batch.delete_prefix(NS_API, Vec::new());
}

pub async fn load(store: &Store) -> Result<State, StoreError> {
    let mut state = State::default();
    for (k, v) in store.scan(NS_API).await? {
        match serde_json::from_slice::<ApiRecord>(&v) {
            Ok(r) => {
                state
                    .apis
                    .insert(String::from_utf8_lossy(&k).into_owned(), r);
            }
            Err(e) => tracing::error!(error = %e, "Skipped an unreadable API record."),
        }
    }
    Ok(state)
}
