//! `Invoke`: resolve the qualifier (an alias may split traffic between two versions), check
//! the payload as AWS does, and run the version in compute. `Event` invocations are accepted
//! (202) and run in the background; their retries, event age and destinations belong to the
//! async invoker of the triggers layer.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use tsumiki_compute::{Concurrency, FunctionSpec, InvokeError, InvokeRequest, Streamed};
use tsumiki_core::{AwsError, RequestContext};

use crate::errors::{invalid, too_large};
use crate::functions::version_config;
use crate::names;
use crate::state::{self, Function};
use crate::{Lambda, str_of};

/// AWS: 6 MB for synchronous requests.
const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// AWS: 1 MB for asynchronous requests.
const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;

/// One invocation as a caller (the API, or a trigger) asks for it.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// A name, partial ARN or ARN, optionally with `:qualifier`.
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Bytes,
    pub client_context: Option<String>,
    pub tail: bool,
}

/// What a synchronous invocation returned.
#[derive(Clone, Debug)]
pub struct InvocationOutput {
    pub payload: Bytes,
    pub function_error: Option<String>,
    pub log_result: Option<String>,
    pub executed_version: String,
}

impl Lambda {
    pub(crate) async fn invoke_api(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let payload = match str_of(&input, "Payload") {
            Some(b64) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| invalid("Payload is not valid base64."))?,
            ),
            None => Bytes::new(),
        };
        let kind = str_of(&input, "InvocationType").unwrap_or("RequestResponse");
        let invocation = Invocation {
            function: str_of(&input, "FunctionName")
                .unwrap_or_default()
                .to_string(),
            qualifier: str_of(&input, "Qualifier").map(String::from),
            payload,
            client_context: str_of(&input, "ClientContext").map(String::from),
            tail: str_of(&input, "LogType") == Some("Tail"),
        };
        match kind {
            "DryRun" => {
                self.prepare(ctx, &invocation, MAX_SYNC_PAYLOAD)?;
                Ok(json!({"StatusCode": 204}))
            }
            "Event" => {
                let (spec, _, qualifier) = self.prepare(ctx, &invocation, MAX_ASYNC_PAYLOAD)?;
                let queue = self.async_invoke.get().ok_or_else(AwsError::internal)?;
                let payload = if invocation.payload.is_empty() {
                    b"{}".to_vec()
                } else {
                    invocation.payload.to_vec()
                };
                // Durable before the 202: a crash after it loses no event.
                queue
                    .enqueue(
                        tsumiki_ports::FunctionTarget {
                            account: ctx.account.clone(),
                            region: ctx.region.clone(),
                            function: spec.function_name.clone(),
                            qualifier,
                        },
                        payload,
                        ctx.request_id.clone(),
                    )
                    .await?;
                Ok(json!({"StatusCode": 202}))
            }
            _ => {
                let out = self.invoke(ctx, invocation).await?;
                let mut v = json!({
                    "StatusCode": 200,
                    "Payload": base64::engine::general_purpose::STANDARD.encode(&out.payload),
                    "ExecutedVersion": out.executed_version,
                });
                if let Some(e) = out.function_error {
                    v["FunctionError"] = json!(e);
                }
                if let Some(l) = out.log_result {
                    v["LogResult"] = json!(l);
                }
                Ok(v)
            }
        }
    }

    /// Runs a synchronous invocation to its end (the path of `RequestResponse` and of the
    /// synchronous triggers).
    pub async fn invoke(
        &self,
        ctx: &RequestContext,
        invocation: Invocation,
    ) -> Result<InvocationOutput, AwsError> {
        let (spec, limits, qualifier) = self.prepare(ctx, &invocation, MAX_SYNC_PAYLOAD)?;
        let request = request(ctx, &invocation, &spec, qualifier.as_deref());
        let spec = self.ready(spec).await?;
        match self.compute.invoke(&spec, request, limits).await {
            Ok(r) => Ok(InvocationOutput {
                payload: r.payload,
                function_error: r.function_error.map(String::from),
                log_result: r.log_tail,
                executed_version: spec.version.clone(),
            }),
            Err(e) => Err(invoke_error(&spec, e)),
        }
    }

    /// Runs a synchronous invocation whose response may stream (InvokeWithResponseStream,
    /// `RESPONSE_STREAM` function URLs): answers once the function answered whole or began
    /// streaming, with the version that runs.
    pub async fn invoke_streaming(
        &self,
        ctx: &RequestContext,
        invocation: Invocation,
    ) -> Result<(Streamed, String), AwsError> {
        let (spec, limits, qualifier) = self.prepare(ctx, &invocation, MAX_SYNC_PAYLOAD)?;
        let request = request(ctx, &invocation, &spec, qualifier.as_deref());
        let spec = self.ready(spec).await?;
        match self.compute.invoke_streaming(&spec, request, limits).await {
            Ok(streamed) => Ok((streamed, spec.version.clone())),
            Err(e) => Err(invoke_error(&spec, e)),
        }
    }

    /// Checks an invocation as `DryRun` does: the function exists and the payload is valid.
    pub(crate) fn dry_run(
        &self,
        ctx: &RequestContext,
        invocation: &Invocation,
    ) -> Result<(), AwsError> {
        self.prepare(ctx, invocation, MAX_SYNC_PAYLOAD).map(|_| ())
    }

    /// Checks the request and finds the version to run, without unpacking anything.
    fn prepare(
        &self,
        ctx: &RequestContext,
        invocation: &Invocation,
        max_payload: usize,
    ) -> Result<(Arc<FunctionSpec>, Concurrency, Option<String>), AwsError> {
        if invocation.payload.len() > max_payload {
            let op = if max_payload == MAX_ASYNC_PAYLOAD {
                "InvokeAsync"
            } else {
                "InvokeFunction"
            };
            return Err(too_large(format!(
                "Request must be smaller than {max_payload} bytes for the {op} operation"
            )));
        }
        if !invocation.payload.is_empty()
            && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&invocation.payload)
        {
            return Err(AwsError::new(
                "InvalidRequestContentException",
                400,
                format!(
                    "Could not parse request body into json: Could not parse payload into json: {e}"
                ),
            ));
        }
        if let Some(cc) = &invocation.client_context {
            let ok = base64::engine::general_purpose::STANDARD
                .decode(cc)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v.is_object());
            if !ok {
                return Err(AwsError::new(
                    "InvalidRequestContentException",
                    400,
                    "Client context must be a valid Base64-encoded JSON object.",
                ));
            }
        }
        let r = names::parse(ctx, &invocation.function, invocation.qualifier.as_deref())?;
        let mut inner = self.inner.lock();
        let key = state::key(&ctx.account, &ctx.region, &r.name);
        let Some(f) = inner.functions.get(&key) else {
            return Err(crate::errors::function_not_found(&names::qualified(
                &names::function_arn(ctx, &r.name),
                r.qualifier.as_deref(),
            )));
        };
        let qualifier = pick_version(f, r.qualifier.as_deref());
        let config = version_config(f, qualifier.as_deref())?;
        if config.state == "Failed" {
            return Err(AwsError::new(
                "ResourceConflictException",
                409,
                "The operation cannot be performed at this time. The function is currently in the following state: Failed",
            ));
        }
        let limits = Concurrency {
            reserved: f.reserved_concurrency,
            unreserved_pool: Lambda::unreserved_pool(&inner, &ctx.account, &ctx.region),
        };
        let spec_key = format!("{}:{}:{}", f.arn, config.version, config.revision_id);
        if let Some(spec) = inner.specs.get(&spec_key) {
            return Ok((spec.clone(), limits, r.qualifier));
        }
        let spec = Arc::new(build_spec(f, config, self.code.dir()));
        inner.specs.insert(spec_key, spec.clone());
        Ok((spec, limits, r.qualifier))
    }

    /// Makes sure the spec's code and layers are unpacked where it says.
    async fn ready(&self, spec: Arc<FunctionSpec>) -> Result<Arc<FunctionSpec>, AwsError> {
        if spec.code_dir.is_dir() && spec.layer_dirs.iter().all(|d| d.is_dir()) {
            return Ok(spec);
        }
        let id = spec
            .code_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.code.unpacked(&id).await?;
        for dir in &spec.layer_dirs {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.code.unpacked(&id).await?;
        }
        Ok(spec)
    }
}

fn invoke_error(spec: &FunctionSpec, e: InvokeError) -> AwsError {
    match e {
        InvokeError::Throttled(reason) => crate::errors::throttled(reason),
        InvokeError::RuntimeUnavailable(msg) => AwsError::new("InvalidRuntimeException", 502, msg),
        InvokeError::Internal(msg) => {
            tracing::error!(function = %spec.function_name, %msg, "invoke failed");
            AwsError::new("ServiceException", 500, msg)
        }
    }
}

/// The version an invocation runs: an alias with a routing config sends each invocation to
/// its additional version with that version's weight.
fn pick_version(f: &Function, qualifier: Option<&str>) -> Option<String> {
    let q = qualifier?;
    let Some(alias) = f.aliases.get(q) else {
        return Some(q.to_string());
    };
    let roll: f64 = rand::random();
    let mut acc = 0.0;
    for (version, weight) in &alias.weights {
        acc += weight;
        if roll < acc {
            return Some(version.clone());
        }
    }
    Some(alias.function_version.clone())
}

fn build_spec(f: &Function, c: &crate::state::Config, code: &std::path::Path) -> FunctionSpec {
    let log_group = c
        .logging
        .as_ref()
        .and_then(|l| l.get("LogGroup"))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| format!("/aws/lambda/{}", f.name));
    FunctionSpec {
        account: f.account.clone(),
        region: f.region.clone(),
        function_name: f.name.clone(),
        function_arn: f.arn.clone(),
        version: c.version.clone(),
        revision: c.revision_id.clone(),
        runtime: c.runtime.clone(),
        handler: c.handler.clone(),
        code_dir: code.join(&c.code_id),
        layer_dirs: c.layers.iter().map(|l| code.join(&l.code_id)).collect(),
        memory_mb: c.memory_mb,
        timeout_s: c.timeout_s,
        ephemeral_storage_mb: c.ephemeral_mb,
        environment: c.environment.clone().unwrap_or_default(),
        log_group,
    }
}

fn request(
    ctx: &RequestContext,
    invocation: &Invocation,
    spec: &FunctionSpec,
    qualifier: Option<&str>,
) -> InvokeRequest {
    InvokeRequest {
        request_id: ctx.request_id.clone(),
        payload: if invocation.payload.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            invocation.payload.clone()
        },
        invoked_arn: names::qualified(&spec.function_arn, qualifier),
        client_context: invocation.client_context.clone(),
        cognito_identity: None,
        trace_id: None,
        tail: invocation.tail,
    }
}
