//! Amazon API Gateway HTTP APIs (`apigatewayv2`, rest-json) and their invoke URLs.
//!
//! The control plane (`api.rs`) keeps each API as one record: the API itself, its routes,
//! integrations, authorizers, stages and deployments, each resource as the model-shaped JSON
//! value AWS returns. The data plane (`execute.rs`) is an [`tsumiki_ports::http::HttpEndpoint`]
//! answering `/_aws/execute-api/{apiId}/...` and Host `{apiId}.execute-api.localhost`: it picks
//! the stage and the route (`routing.rs`, AWS's priority rules), runs the integration (Lambda
//! through [`tsumiki_ports::FunctionInvoker`], payloads from `tsumiki_proxy`) on the clock's
//! timeout, and maps the answer back to HTTP.
//!
//! REST APIs (`apigateway` v1, `rest.rs`) share the invoke endpoint: resources, methods,
//! `AWS_PROXY`, `HTTP_PROXY`, and `MOCK`, `HTTP` and `AWS` (Lambda) integrations with mapping
//! templates (`templates.rs`), deployments, stages,
//! Lambda authorizers (`rest_auth.rs`), API keys and usage plans (`keys.rs`). HTTP APIs add
//! JWT authorizers (`jwt.rs`); both write stage access logs (`access_log.rs`).
//!
//! Not (yet): WebSocket APIs, `AWS` integrations with services other than Lambda, Cognito and
//! IAM authorization, custom domain names, VPC links, HTTPS backends and JWKS over HTTPS; they
//! answer `NotImplemented` (or, for an IAM-authorized method, 403).

mod access_log;
mod api;
mod execute;
mod http_proxy;
mod jwt;
mod keys;
mod rest;
mod rest_auth;
pub mod routing;
mod state;
mod templates;

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{FunctionInvoker, LogSink};
use tsumiki_store::{Batch, Store};

pub use execute::ExecuteApi;
pub use rest::RestApis;

/// The API Gateway v2 model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/apigatewayv2.json");

/// The API Gateway (v1, REST APIs) model (botocore's, docs stripped).
pub const V1_MODEL_JSON: &str = include_str!("../../../../models/apigateway.json");

/// The API Gateway v2 service (HTTP APIs).
pub struct ApiGateway {
    state: Mutex<state::State>,
    /// REST APIs by `account/region/restApiId`.
    rest: Mutex<std::collections::BTreeMap<String, rest::RestRecord>>,
    /// API keys, usage plans and their usage.
    keys: Mutex<keys::KeysState>,
    store: Store,
    clock: Arc<Clock>,
    invoker: OnceLock<Weak<dyn FunctionInvoker>>,
    /// Where stages' access logs go (CloudWatch Logs).
    log_sink: OnceLock<Arc<dyn LogSink>>,
}

impl ApiGateway {
    /// Loads every API from `store`.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Arc<ApiGateway>, tsumiki_store::StoreError> {
        let state = state::load(&store).await?;
        let rest = rest::load(&store).await?;
        let keys = keys::load(&store).await?;
        tracing::info!(
            apis = state.apis.len(),
            rest_apis = rest.len(),
            "API Gateway state loaded."
        );
        Ok(Arc::new(ApiGateway {
            state: Mutex::new(state),
            rest: Mutex::new(rest),
            keys: Mutex::new(keys),
            store,
            clock,
            invoker: OnceLock::new(),
            log_sink: OnceLock::new(),
        }))
    }

    /// Who runs Lambda integrations.
    pub fn set_invoker(&self, invoker: Weak<dyn FunctionInvoker>) {
        let _ = self.invoker.set(invoker);
    }

    /// Where stages' access logs are written.
    pub fn set_log_sink(&self, sink: Arc<dyn LogSink>) {
        let _ = self.log_sink.set(sink);
    }

    /// The `apigateway` (v1) service: REST APIs, on the same state and invoke endpoint.
    pub fn rest_service(self: &Arc<Self>) -> Arc<RestApis> {
        Arc::new(RestApis(self.clone()))
    }

    /// The invoke-URL endpoint serving this service's APIs.
    pub fn endpoint(self: &Arc<Self>) -> Arc<ExecuteApi> {
        Arc::new(ExecuteApi::new(self.clone()))
    }
}

#[async_trait]
impl tsumiki_ports::Service for ApiGateway {
    fn name(&self) -> &'static str {
        "apigatewayv2"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        api::dispatch(self, ctx, operation, input).await
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let commit = {
            let mut state = self.state.lock();
            state.apis.clear();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "API Gateway could not write to the store.");
    AwsError::internal()
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new("NotFoundException", 404, message)
}

pub(crate) fn bad_request(message: impl Into<String>) -> AwsError {
    AwsError::new("BadRequestException", 400, message)
}

pub(crate) fn conflict(message: impl Into<String>) -> AwsError {
    AwsError::new("ConflictException", 409, message)
}
