//! AWS Lambda's control plane and `Invoke`: functions, code, published versions, aliases,
//! layers, reserved concurrency, tags and resource policies, with AWS's validation and error
//! codes. Running code is compute's job: `Invoke` turns a version into a
//! [`tsumiki_compute::FunctionSpec`] and hands it over.
//!
//! Read `functions.rs` (create/update/delete and the configuration AWS returns), `invoke.rs`
//! and `state.rs` first.

mod async_config;
mod code;
mod errors;
mod functions;
mod invoke;
mod layers;
mod location;
mod mappings;
mod names;
mod state;
mod streaming;
mod urls;
mod versions;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tsumiki_compute::Compute;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_store::{Batch, Store};

use state::{Function, Layer};

pub use invoke::{Invocation, InvocationOutput};

/// The Lambda model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/lambda.json");

/// Concurrent executions per account and region (AWS's default quota).
pub const ACCOUNT_CONCURRENCY: u32 = 1000;
/// Reservations must leave at least this much unreserved (AWS).
const MIN_UNRESERVED: u32 = 100;

/// The Lambda service.
pub struct Lambda {
    store: Store,
    clock: Arc<Clock>,
    compute: Arc<Compute>,
    code: code::CodeCache,
    /// Signs `Code.Location` / `Content.Location` URLs.
    signer: location::Signer,
    inner: parking_lot::Mutex<Inner>,
    /// Where `Event` invocations go: the triggers layer's durable async invoker.
    async_invoke: std::sync::OnceLock<Arc<dyn tsumiki_ports::AsyncInvoke>>,
    /// Who runs event source mappings: the triggers layer's pollers.
    pollers: std::sync::OnceLock<Arc<dyn tsumiki_ports::EventSourcePollers>>,
    /// Where `S3Bucket`/`S3Key` code comes from.
    objects: std::sync::OnceLock<Arc<dyn tsumiki_ports::ObjectStore>>,
}

#[derive(Default)]
struct Inner {
    /// By `account/region/name`.
    functions: BTreeMap<String, Function>,
    layers: BTreeMap<String, Layer>,
    /// Specs handed to compute, by `arn:version:revision`, so warm invokes build nothing.
    specs: HashMap<String, Arc<tsumiki_compute::FunctionSpec>>,
    /// Event source mappings by UUID.
    mappings: BTreeMap<String, mappings::Mapping>,
}

impl Lambda {
    /// Loads functions and layers from `store`; unpacked code lives under `work_dir`.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        compute: Arc<Compute>,
        work_dir: PathBuf,
    ) -> Result<Arc<Lambda>, AwsError> {
        let (functions, layers) = state::load(&store).await?;
        let mappings = mappings::load(&store).await?;
        let signer = location::Signer::load(&store).await?;
        std::fs::create_dir_all(&work_dir).map_err(state::store_error)?;
        Ok(Arc::new(Lambda {
            code: code::CodeCache::new(work_dir, store.clone()),
            signer,
            store,
            clock,
            compute,
            inner: parking_lot::Mutex::new(Inner {
                functions,
                layers,
                specs: HashMap::new(),
                mappings,
            }),
            async_invoke: std::sync::OnceLock::new(),
            pollers: std::sync::OnceLock::new(),
            objects: std::sync::OnceLock::new(),
        }))
    }

    /// Connects the event source pollers and starts every stored mapping.
    pub fn set_pollers(&self, pollers: Arc<dyn tsumiki_ports::EventSourcePollers>) {
        let specs: Vec<_> = self
            .inner
            .lock()
            .mappings
            .values()
            .map(mappings::Mapping::spec)
            .collect();
        for spec in specs {
            pollers.configure(spec);
        }
        let _ = self.pollers.set(pollers);
    }

    /// Connects the asynchronous invoker (built after Lambda, since it runs functions through
    /// Lambda).
    pub fn set_async_invoke(&self, queue: Arc<dyn tsumiki_ports::AsyncInvoke>) {
        let _ = self.async_invoke.set(queue);
    }

    /// Gives Lambda the S3 it reads `S3Bucket`/`S3Key` packages from.
    pub fn set_object_store(&self, objects: Arc<dyn tsumiki_ports::ObjectStore>) {
        let _ = self.objects.set(objects);
    }

    /// The package a `FunctionCode`/`LayerVersionContentInput`/UpdateFunctionCode input names:
    /// an inline `ZipFile`, or an S3 object read as AWS reads it (errors say what GetObject said).
    pub(crate) async fn package_of(
        &self,
        ctx: &RequestContext,
        source: &Value,
        what: &str,
    ) -> Result<code::Package, AwsError> {
        if let Some(zip) = source.get("ZipFile").and_then(Value::as_str) {
            return code::check(zip);
        }
        let (Some(bucket), Some(key)) = (
            source.get("S3Bucket").and_then(Value::as_str),
            source.get("S3Key").and_then(Value::as_str),
        ) else {
            return Err(errors::invalid(format!(
                "Please provide a source for {what}."
            )));
        };
        let Some(objects) = self.objects.get() else {
            return Err(errors::invalid(
                "Code from S3 needs the S3 service, which this server does not run.",
            ));
        };
        let bytes = objects.get_object(ctx, bucket, key).await.map_err(|e| {
            errors::invalid(format!(
                "Error occurred while GetObject. S3 Error Code: {}. S3 Error Message: {}",
                e.code, e.message
            ))
        })?;
        code::check_bytes(bytes.to_vec())
    }

    /// Writes `batch` durably; every mutation answers only after this.
    async fn commit(&self, batch: Batch) -> Result<(), AwsError> {
        self.store.commit(batch).await.map_err(state::store_error)
    }

    fn unreserved_pool(inner: &Inner, account: &str, region: &str) -> u32 {
        let reserved: u32 = inner
            .functions
            .values()
            .filter(|f| f.account == account && f.region == region)
            .filter_map(|f| f.reserved_concurrency)
            .sum();
        ACCOUNT_CONCURRENCY.saturating_sub(reserved)
    }
}

#[async_trait]
impl tsumiki_ports::Service for Lambda {
    fn name(&self) -> &'static str {
        "lambda"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateFunction" => self.create_function(ctx, input).await,
            "GetFunction" => self.get_function(ctx, input),
            "GetFunctionConfiguration" => self.get_function_configuration(ctx, input),
            "ListFunctions" => self.list_functions(ctx, input),
            "UpdateFunctionCode" => self.update_function_code(ctx, input).await,
            "UpdateFunctionConfiguration" => self.update_function_configuration(ctx, input).await,
            "DeleteFunction" => self.delete_function(ctx, input).await,
            "Invoke" => self.invoke_api(ctx, input).await,
            "PublishVersion" => self.publish_version(ctx, input).await,
            "ListVersionsByFunction" => self.list_versions(ctx, input),
            "CreateAlias" => self.create_alias(ctx, input).await,
            "GetAlias" => self.get_alias(ctx, input),
            "UpdateAlias" => self.update_alias(ctx, input).await,
            "DeleteAlias" => self.delete_alias(ctx, input).await,
            "ListAliases" => self.list_aliases(ctx, input),
            "PutFunctionConcurrency" => self.put_concurrency(ctx, input).await,
            "GetFunctionConcurrency" => self.get_concurrency(ctx, input),
            "DeleteFunctionConcurrency" => self.delete_concurrency(ctx, input).await,
            "GetAccountSettings" => Ok(self.account_settings(ctx)),
            "TagResource" => self.tag_resource(ctx, input).await,
            "UntagResource" => self.untag_resource(ctx, input).await,
            "ListTags" => self.list_tags(ctx, input),
            "AddPermission" => self.add_permission(ctx, input).await,
            "RemovePermission" => self.remove_permission(ctx, input).await,
            "GetPolicy" => self.get_policy(ctx, input),
            "PublishLayerVersion" => self.publish_layer_version(ctx, input).await,
            "GetLayerVersion" => self.get_layer_version(ctx, input),
            "GetLayerVersionByArn" => self.get_layer_version_by_arn(ctx, input),
            "ListLayerVersions" => self.list_layer_versions(ctx, input),
            "ListLayers" => self.list_layers(ctx, input),
            "DeleteLayerVersion" => self.delete_layer_version(ctx, input).await,
            "PutFunctionEventInvokeConfig" => self.put_event_invoke_config(ctx, input, false).await,
            "UpdateFunctionEventInvokeConfig" => {
                self.put_event_invoke_config(ctx, input, true).await
            }
            "GetFunctionEventInvokeConfig" => self.get_event_invoke_config(ctx, input),
            "DeleteFunctionEventInvokeConfig" => self.delete_event_invoke_config(ctx, input).await,
            "ListFunctionEventInvokeConfigs" => self.list_event_invoke_configs(ctx, input),
            "CreateEventSourceMapping" => self.create_mapping(ctx, input).await,
            "GetEventSourceMapping" => self.get_mapping(ctx, input),
            "ListEventSourceMappings" => self.list_mappings(ctx, input),
            "UpdateEventSourceMapping" => self.update_mapping(ctx, input).await,
            "DeleteEventSourceMapping" => self.delete_mapping(ctx, input).await,
            "CreateFunctionUrlConfig" => self.create_function_url(ctx, input).await,
            "GetFunctionUrlConfig" => self.get_function_url(ctx, input),
            "UpdateFunctionUrlConfig" => self.update_function_url(ctx, input).await,
            "DeleteFunctionUrlConfig" => self.delete_function_url(ctx, input).await,
            "ListFunctionUrlConfigs" => self.list_function_urls(ctx, input),
            _ => Err(AwsError::not_implemented("lambda", operation)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let (arns, uuids): (Vec<String>, Vec<String>) = {
            let mut inner = self.inner.lock();
            let arns = inner.functions.values().map(|f| f.arn.clone()).collect();
            let uuids = inner.mappings.keys().cloned().collect();
            *inner = Inner::default();
            (arns, uuids)
        };
        for arn in arns {
            self.compute.retire(&arn, None);
        }
        if let Some(p) = self.pollers.get() {
            for uuid in uuids {
                p.remove(&uuid);
            }
        }
        let mut batch = Batch::new();
        batch.delete_prefix(state::NS_FUNCTION, Vec::new());
        batch.delete_prefix(state::NS_LAYER, Vec::new());
        batch.delete_prefix(state::NS_CODE, Vec::new());
        batch.delete_prefix(mappings::NS_MAPPING, Vec::new());
        self.commit(batch).await
    }
}

/// A string member of a decoded input.
pub(crate) fn str_of<'v>(input: &'v Value, name: &str) -> Option<&'v str> {
    input.get(name).and_then(Value::as_str)
}
