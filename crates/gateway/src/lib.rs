//! The one-port HTTP front door (DESIGN.md decision 1): every request gets a request id, its
//! caller (account from the SigV4 access key, region from the scope), its service and its
//! operation; the protocol layer decodes it, the service runs it, the protocol layer encodes
//! the answer.
//!
//! The gateway knows services only as [`tsumiki_ports::Service`] plus their models; it never
//! names one. Admin routes (`/_tsumiki/...`, `/moto-api/reset`) live in `admin.rs`.
//! Start reading at [`Gateway::handle`] and [`route`].

mod admin;
pub mod sigv4;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, boxed_body, full_body};
use tsumiki_ports::{DomainEvent, EventSink, Service};
use tsumiki_protocol::{Model, Protocol};

/// Largest request body read into memory: AWS's own limit for Lambda's CreateFunction with an
/// inline zip (50 MB zipped, base64 in JSON), the largest request a served service accepts.
/// Services check their own, smaller limits (SQS: 1 MiB).
pub const MAX_BODY_BYTES: usize = 70_167_211;

/// A served service: its model and its implementation.
#[derive(Clone)]
pub struct Served {
    pub model: Arc<Model>,
    pub service: Arc<dyn Service>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The account of requests whose access key is not a 12-digit account id.
    pub default_account: String,
    /// The region of unsigned requests.
    pub default_region: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            default_account: "000000000000".into(),
            default_region: "us-east-1".into(),
        }
    }
}

pub struct Gateway {
    config: GatewayConfig,
    clock: Arc<Clock>,
    served: Vec<Served>,
    by_target_prefix: HashMap<String, usize>,
    /// Several services may share a signing name (API Gateway's v1 and v2 both sign as
    /// `apigateway`); the first whose model knows the request's operation takes it.
    by_signing_name: HashMap<String, Vec<usize>>,
    by_query_action: HashMap<String, usize>,
    event_sink: Option<Arc<dyn EventSink>>,
    endpoints: Vec<Arc<dyn HttpEndpoint>>,
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Admin,
    Service {
        index: usize,
        protocol: Protocol,
    },
    /// No signal in the request names a service.
    Unidentified {
        protocol: Protocol,
        hint: String,
    },
    /// A service tsumiki does not serve (yet); the name is as the request gave it.
    Unknown {
        name: String,
        protocol: Protocol,
    },
}

impl Gateway {
    pub fn new(config: GatewayConfig, clock: Arc<Clock>, served: Vec<Served>) -> Gateway {
        let mut by_target_prefix = HashMap::new();
        let mut by_signing_name = HashMap::new();
        let mut by_query_action = HashMap::new();
        for (i, s) in served.iter().enumerate() {
            let m = &s.model.metadata;
            if let Some(prefix) = &m.target_prefix {
                by_target_prefix.insert(prefix.clone(), i);
            }
            for name in [
                s.model.signing_name().to_string(),
                m.endpoint_prefix.clone(),
            ] {
                let entry: &mut Vec<usize> = by_signing_name.entry(name).or_default();
                if !entry.contains(&i) {
                    entry.push(i);
                }
            }
            if s.model.protocols().contains(&"query") {
                for op in s.model.operations.keys() {
                    by_query_action.entry(op.clone()).or_insert(i);
                }
            }
        }
        Gateway {
            config,
            clock,
            served,
            by_target_prefix,
            by_signing_name,
            by_query_action,
            event_sink: None,
            endpoints: Vec::new(),
        }
    }

    /// Adds a service that handles raw HTTP (S3, invoke URLs). Endpoints are asked in the
    /// order they were added, after the admin routes and before the model-driven services.
    pub fn add_endpoint(&mut self, endpoint: Arc<dyn HttpEndpoint>) {
        self.endpoints.push(endpoint);
    }

    /// Where successful mutating calls are reported (EventBridge's CloudTrail events).
    pub fn set_event_sink(&mut self, sink: Arc<dyn EventSink>) {
        self.event_sink = Some(sink);
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Handles one HTTP request; never fails at the HTTP level.
    pub async fn handle(&self, req: Request<Incoming>) -> http::Response<HttpBody> {
        let request_id = tsumiki_core::ids::request_id();
        let (parts, body) = req.into_parts();
        let credential = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(sigv4::from_authorization)
            .or_else(|| parts.uri.query().and_then(sigv4::from_query));
        let mut fallback = None;
        if !is_admin_path(parts.uri.path()) {
            let head = RequestHead {
                parts: &parts,
                signing_service: credential.as_ref().map(|c| c.service.as_str()),
            };
            for endpoint in &self.endpoints {
                match endpoint.claims(&head) {
                    Claim::Yes => {
                        let ctx = self.context(&parts, credential, &request_id);
                        let req = Request::from_parts(parts, boxed_body(body));
                        let span =
                            tracing::debug_span!("request", request_id, endpoint = endpoint.name());
                        let resp = endpoint.handle(ctx, req).instrument(span).await;
                        return finish(resp, &request_id);
                    }
                    Claim::Fallback if fallback.is_none() => fallback = Some(endpoint.clone()),
                    Claim::Fallback | Claim::No => {}
                }
            }
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let err = AwsError::new(
                    "RequestEntityTooLarge",
                    413,
                    format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
                );
                let resp = tsumiki_protocol::encode_error(None, Protocol::Json, &err, &request_id);
                return finish(resp.map(full_body), &request_id);
            }
        };
        let protocol_req = tsumiki_protocol::Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
        };
        let route = self.route(&protocol_req, credential.as_ref());
        // Only a request with no signal at all (no target, no Action, no scope) falls back.
        if let (
            Some(endpoint),
            Route::Unidentified {
                protocol: Protocol::RestJson,
                ..
            },
        ) = (fallback, &route)
        {
            let ctx = self.context(&parts, credential, &request_id);
            let req = Request::from_parts(parts, full_body(body));
            let span = tracing::debug_span!("request", request_id, endpoint = endpoint.name());
            let resp = endpoint.handle(ctx, req).instrument(span).await;
            return finish(resp, &request_id);
        }
        let resp = self
            .dispatch(route, &protocol_req, &parts, credential, &request_id)
            .await;
        finish(resp.map(full_body), &request_id)
    }

    async fn dispatch(
        &self,
        route: Route,
        req: &tsumiki_protocol::Request<'_>,
        parts: &http::request::Parts,
        credential: Option<sigv4::Credential>,
        request_id: &str,
    ) -> tsumiki_protocol::Response {
        match route {
            Route::Admin => admin::handle(self, req).await,
            Route::Unidentified { protocol, hint } => {
                let code = if protocol == Protocol::Query {
                    "InvalidAction"
                } else {
                    "UnknownOperationException"
                };
                let err = AwsError::new(code, 400, hint);
                tsumiki_protocol::encode_error(None, protocol, &err, request_id)
            }
            Route::Unknown { name, protocol } => {
                let err = AwsError::new(
                    "NotImplemented",
                    501,
                    format!("The service '{name}' is not served by tsumiki yet."),
                );
                tracing::info!(service = %name, request_id, "Request for a service tsumiki does not serve.");
                tsumiki_protocol::encode_error(None, protocol, &err, request_id)
            }
            Route::Service { index, protocol } => {
                let served = &self.served[index];
                let ctx = self.context(parts, credential, request_id);
                let span = tracing::debug_span!(
                    "request",
                    request_id,
                    service = served.service.name(),
                    operation = tracing::field::Empty
                );
                let sink = self.event_sink.as_deref().map(|s| (s, self.clock.as_ref()));
                let mut resp = call(served, protocol, req, ctx, sink)
                    .instrument(span)
                    .await;
                for (name, value) in served.service.response_headers(resp.body()) {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        resp.headers_mut().insert(name, value);
                    }
                }
                resp
            }
        }
    }

    fn context(
        &self,
        parts: &http::request::Parts,
        credential: Option<sigv4::Credential>,
        request_id: &str,
    ) -> RequestContext {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost:4566");
        let (account, region, access_key) = match credential {
            Some(c) => (
                tsumiki_core::ids::account_from_access_key(
                    &c.access_key,
                    &self.config.default_account,
                ),
                c.region,
                Some(c.access_key),
            ),
            None => (
                self.config.default_account.clone(),
                self.config.default_region.clone(),
                None,
            ),
        };
        RequestContext {
            account,
            region,
            request_id: request_id.to_string(),
            base_url: format!("http://{host}"),
            access_key,
            path: parts.uri.path().to_string(),
        }
    }

    /// The service signing as `name`; among several, the first whose model identifies the
    /// request's operation (else the first).
    fn by_scope(&self, name: &str, req: &tsumiki_protocol::Request<'_>) -> Option<usize> {
        let candidates = self.by_signing_name.get(name)?;
        if candidates.len() > 1 {
            for &i in candidates {
                let model = &self.served[i].model;
                let knows = model.protocols().into_iter().any(|p| {
                    Protocol::from_model_name(p).is_some_and(|protocol| {
                        tsumiki_protocol::identify_operation(model, protocol, req).is_ok()
                    })
                });
                if knows {
                    return Some(i);
                }
            }
        }
        candidates.first().copied()
    }

    /// Finds the service from, in order: the admin paths, `X-Amz-Target`, a query `Action`
    /// (with the credential scope choosing among query services), then the scope alone.
    fn route(
        &self,
        req: &tsumiki_protocol::Request<'_>,
        credential: Option<&sigv4::Credential>,
    ) -> Route {
        if is_admin_path(req.uri.path()) {
            return Route::Admin;
        }
        if let Some(target) = req.header("x-amz-target") {
            let prefix = target.split_once('.').map(|(p, _)| p).unwrap_or(target);
            return match self.by_target_prefix.get(prefix) {
                Some(&index) => Route::Service {
                    index,
                    protocol: Protocol::Json,
                },
                // A served service's scope with an unknown target is an unknown operation of
                // that service, answered by its model.
                None => match credential.and_then(|c| self.by_scope(c.service.as_str(), req)) {
                    Some(index) => Route::Service {
                        index,
                        protocol: Protocol::Json,
                    },
                    None => Route::Unknown {
                        name: credential
                            .map(|c| c.service.clone())
                            .unwrap_or_else(|| prefix.to_string()),
                        protocol: Protocol::Json,
                    },
                },
            };
        }
        let scoped =
            credential.map(|c| (c.service.as_str(), self.by_scope(c.service.as_str(), req)));
        if let Some(action) = tsumiki_protocol::query::action(req) {
            return match scoped {
                Some((_, Some(index))) => Route::Service {
                    index,
                    protocol: Protocol::Query,
                },
                Some((name, None)) => Route::Unknown {
                    name: name.to_string(),
                    protocol: Protocol::Query,
                },
                None => match self.by_query_action.get(&action) {
                    Some(&index) => Route::Service {
                        index,
                        protocol: Protocol::Query,
                    },
                    None => Route::Unidentified {
                        protocol: Protocol::Query,
                        hint: format!(
                            "The action {action} is not valid for any service tsumiki serves."
                        ),
                    },
                },
            };
        }
        match scoped {
            Some((_, Some(index))) => {
                let model = &self.served[index].model;
                let protocol = model
                    .protocols()
                    .into_iter()
                    .find_map(|p| match Protocol::from_model_name(p) {
                        Some(Protocol::RestJson) => Some(Protocol::RestJson),
                        Some(Protocol::RestXml) => Some(Protocol::RestXml),
                        _ => None,
                    })
                    .unwrap_or(Protocol::Json);
                Route::Service { index, protocol }
            }
            Some((name, None)) => Route::Unknown {
                name: name.to_string(),
                protocol: Protocol::RestJson,
            },
            None => Route::Unidentified {
                protocol: Protocol::RestJson,
                hint: "Sign the request with SigV4, or send X-Amz-Target or a query Action, so tsumiki can tell which AWS service it is for.".into(),
            },
        }
    }
}

async fn call(
    served: &Served,
    protocol: Protocol,
    req: &tsumiki_protocol::Request<'_>,
    ctx: RequestContext,
    sink: Option<(&dyn EventSink, &Clock)>,
) -> tsumiki_protocol::Response {
    let model = &served.model;
    let request_id = ctx.request_id.clone();
    // An awsJson request in CBOR is decoded and answered in CBOR.
    let protocol = protocol.for_request(req);
    let op = match tsumiki_protocol::identify_operation(model, protocol, req) {
        Ok(op) => op,
        Err(err) => {
            return tsumiki_protocol::encode_error(
                Some(model),
                protocol,
                &served.service.wire_error(err),
                &request_id,
            );
        }
    };
    tracing::Span::current().record("operation", op.name.as_str());
    let decoded =
        tsumiki_protocol::decode_unvalidated(model, protocol, op, req).and_then(|mut v| {
            served.service.complete_input(&ctx, &op.name, &mut v);
            tsumiki_protocol::validate_input(model, protocol, op, &v).map(|()| v)
        });
    let input = match decoded {
        Ok(v) => v,
        Err(err) => {
            tracing::debug!(code = %err.code, message = %err.message, "Rejected the request's input.");
            return tsumiki_protocol::encode_error(
                Some(model),
                protocol,
                &served.service.wire_error(err),
                &request_id,
            );
        }
    };
    let recorded = sink
        .filter(|(s, _)| is_mutating(&op.name) && s.interested(&ctx.account, &ctx.region))
        .map(|s| (s, input.clone()));
    match served.service.call(&ctx, &op.name, input).await {
        Ok(output) => {
            if let Some(((sink, clock), input)) = recorded {
                let event = DomainEvent {
                    service: served.service.name().to_string(),
                    event_source: format!("{}.amazonaws.com", model.metadata.endpoint_prefix),
                    event_name: op.name.clone(),
                    request_parameters: input,
                    response_elements: output.clone(),
                    account: ctx.account.clone(),
                    region: ctx.region.clone(),
                    time_ms: clock.now_ms(),
                    request_id: request_id.clone(),
                    access_key: ctx.access_key.clone(),
                };
                sink.publish(&ctx, event);
            }
            tsumiki_protocol::encode_response(model, protocol, op, &output, &request_id)
        }
        Err(err) => {
            if err.status >= 500 && err.status != 501 {
                tracing::warn!(code = %err.code, message = %err.message, "The operation failed.");
            } else {
                tracing::debug!(code = %err.code, message = %err.message, "The operation answered an error.");
            }
            tsumiki_protocol::encode_error(
                Some(model),
                protocol,
                &served.service.wire_error(err),
                &request_id,
            )
        }
    }
}

/// Whether a successful call of `operation` changes something, and so is recorded as a
/// CloudTrail management event: every operation except reads, which AWS names with these
/// prefixes (`GetQueueUrl`, `ListRules`, `DescribeLogGroups`, `ReceiveMessage`,
/// `TestEventPattern`, `FilterLogEvents`, ...).
fn is_mutating(operation: &str) -> bool {
    const READS: &[&str] = &[
        "Get", "List", "Describe", "Receive", "Test", "Filter", "Search", "Query", "Scan",
        "BatchGet", "Head", "Lookup", "Select",
    ];
    !READS.iter().any(|p| operation.starts_with(p))
}

fn is_admin_path(path: &str) -> bool {
    path.starts_with("/_tsumiki/") || path == "/_tsumiki" || path.starts_with("/moto-api/")
}

/// Adds the headers every answer carries: `Server`, and a request id unless the answer has
/// its own (S3's `x-amz-request-id`).
fn finish(mut resp: http::Response<HttpBody>, request_id: &str) -> http::Response<HttpBody> {
    let headers = resp.headers_mut();
    headers.insert(http::header::SERVER, HeaderValue::from_static("tsumiki"));
    if !headers.contains_key("x-amzn-requestid")
        && !headers.contains_key("x-amz-request-id")
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        headers.insert("x-amzn-requestid", v);
    }
    resp
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then waits up to 10 s for open
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accepting a connection failed.");
                        Clock::pause_real(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                let service = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(gw.handle(req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "A connection ended with an error.");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = Clock::pause_real(Duration::from_secs(10)) => {
            tracing::warn!("Open connections did not finish within 10 s of shutdown.");
        }
    }
}

/// A JSON response for the admin API.
pub(crate) fn json_response(
    status: StatusCode,
    value: serde_json::Value,
) -> tsumiki_protocol::Response {
    let mut resp = http::Response::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
