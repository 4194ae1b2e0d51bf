//! Lambda's state: functions (with their `$LATEST`, published versions, aliases, reserved
//! concurrency, tags and policy) and layers, in memory and written through to the store.
//!
//! Namespaces: `lambda.fn` (one record per function, key `account/region/name`),
//! `lambda.layer` (one record per layer), `lambda.code` (zip packages by hex SHA-256, shared by
//! every function and layer version that uses the same bytes), `lambda.secret` (the key that
//! signs package locations, see `location.rs`; kept across resets).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tsumiki_core::AwsError;
use tsumiki_store::{Batch, Store};

pub(crate) const NS_FUNCTION: &str = "lambda.fn";
pub(crate) const NS_LAYER: &str = "lambda.layer";
pub(crate) const NS_CODE: &str = "lambda.code";
pub(crate) const NS_SECRET: &str = "lambda.secret";

/// One version's configuration: `$LATEST` (mutable) or a published number (frozen).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Config {
    pub version: String,
    pub description: String,
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub ephemeral_mb: u32,
    pub environment: Option<BTreeMap<String, String>>,
    /// Base64 SHA-256 of the zip, as AWS reports `CodeSha256`.
    pub code_sha256: String,
    /// Hex SHA-256: the key of the zip in `lambda.code` and of its unpacked directory.
    pub code_id: String,
    pub code_size: u64,
    pub layers: Vec<LayerRef>,
    pub architectures: Vec<String>,
    pub dead_letter_target: Option<String>,
    pub tracing_mode: String,
    pub kms_key_arn: Option<String>,
    pub logging: Option<serde_json::Value>,
    pub last_modified: String,
    pub revision_id: String,
    pub state: String,
    pub last_update_status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRef {
    pub arn: String,
    pub code_size: u64,
    pub code_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Alias {
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// Extra versions and their weights (`RoutingConfig.AdditionalVersionWeights`).
    pub weights: BTreeMap<String, f64>,
    pub revision_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Function {
    pub account: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    pub latest: Config,
    pub versions: BTreeMap<u64, Config>,
    /// The highest version number ever published (numbers are never reused).
    pub last_version: u64,
    pub aliases: BTreeMap<String, Alias>,
    pub reserved_concurrency: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// Resource-based policy statements (AddPermission).
    pub policy: Vec<serde_json::Value>,
    pub policy_revision: String,
    /// `FunctionEventInvokeConfig`s by qualifier (`$LATEST` for the unqualified function).
    #[serde(default)]
    pub event_invoke: BTreeMap<String, crate::async_config::EventInvokeConfig>,
    /// Function URL configs by qualifier (`$LATEST` or an alias), as `urls.rs` stores them.
    #[serde(default)]
    pub urls: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerVersion {
    pub version: u64,
    pub description: String,
    pub created: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license: Option<String>,
    pub code_sha256: String,
    pub code_id: String,
    pub code_size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Layer {
    pub account: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    pub versions: BTreeMap<u64, LayerVersion>,
    pub last_version: u64,
}

pub(crate) fn key(account: &str, region: &str, name: &str) -> String {
    format!("{account}/{region}/{name}")
}

impl Function {
    pub(crate) fn key(&self) -> String {
        key(&self.account, &self.region, &self.name)
    }

    pub(crate) fn put(&self, batch: &mut Batch) {
        batch.put(NS_FUNCTION, self.key(), encode(self));
    }
}

impl Layer {
    pub(crate) fn key(&self) -> String {
        key(&self.account, &self.region, &self.name)
    }

    pub(crate) fn put(&self, batch: &mut Batch) {
        batch.put(NS_LAYER, self.key(), encode(self));
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Everything in the store at startup.
pub(crate) async fn load(
    store: &Store,
) -> Result<(BTreeMap<String, Function>, BTreeMap<String, Layer>), AwsError> {
    let mut functions = BTreeMap::new();
    for (key, value) in store.scan(NS_FUNCTION).await.map_err(store_error)? {
        let key = String::from_utf8_lossy(&key).into_owned();
        match serde_json::from_slice::<Function>(&value) {
            Ok(f) => {
                functions.insert(key, f);
            }
            Err(e) => tracing::error!(%key, error = %e, "unreadable function record skipped"),
        }
    }
    let mut layers = BTreeMap::new();
    for (key, value) in store.scan(NS_LAYER).await.map_err(store_error)? {
        let key = String::from_utf8_lossy(&key).into_owned();
        match serde_json::from_slice::<Layer>(&value) {
            Ok(l) => {
                layers.insert(key, l);
            }
            Err(e) => tracing::error!(%key, error = %e, "unreadable layer record skipped"),
        }
    }
    Ok((functions, layers))
}

pub(crate) fn store_error<E: std::fmt::Display>(e: E) -> AwsError {
    tracing::error!(error = %e, "store failure");
    AwsError::new("ServiceException", 500, "An internal error occurred.")
}
