//! The invoke URLs of HTTP APIs: `http://HOST:PORT/_aws/execute-api/{apiId}/{stage}/{path}` and
//! Host `{apiId}.execute-api.localhost`. A named stage is addressed by its first path segment;
//! the `$default` stage serves paths without one, as AWS.
//!
//! Answers as AWS's HTTP APIs do: `404 {"message":"Not Found"}` when no route matches, `502
//! {"message":"Internal Server Error"}` for a function error or a malformed response, `503
//! {"message":"Service Unavailable"}` when the integration outlasts its `TimeoutInMillis`
//! (30 s by default; HTTP APIs answer 503 where REST APIs answer 504), `401 Unauthorized` and
//! `403 Forbidden` from authorizers, and CORS preflights answered by the gateway itself.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tsumiki_core::RequestContext;
use tsumiki_ports::FunctionTarget;
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, full_body};
use tsumiki_proxy::{EventContext, HttpRequest, ProxyResponse};

use crate::ApiGateway;
use crate::state::Snapshot;

const PATH_PREFIX: &str = "/_aws/execute-api/";
const HOST_SUFFIX: &str = ".execute-api.localhost";
/// HTTP APIs' request payload quota.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// The invoke-URL endpoint.
pub struct ExecuteApi {
    pub(crate) gw: Arc<ApiGateway>,
    /// Lambda authorizer answers by authorizer and identity: (expiry in clock ms, answer).
    pub(crate) auth_cache: Mutex<HashMap<(String, String), (i64, Value)>>,
    /// JWT authorizers' issuer keys.
    pub(crate) jwks: crate::jwt::JwksCache,
}

impl ExecuteApi {
    pub(crate) fn new(gw: Arc<ApiGateway>) -> ExecuteApi {
        ExecuteApi {
            gw,
            auth_cache: Mutex::new(HashMap::new()),
            jwks: Default::default(),
        }
    }
}

pub(crate) fn message(status: u16, text: &str) -> http::Response<HttpBody> {
    let mut r = respond(ProxyResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({ "message": text }).to_string().into_bytes(),
    });
    r.extensions_mut()
        .insert(crate::access_log::ErrorMessage(text.to_string()));
    r
}

/// What an access log line adds once the response is known.
fn finish_log(ctx: &mut Value, r: &http::Response<HttpBody>, started_ms: i64, now_ms: i64) {
    use http_body::Body as _;
    ctx["status"] = json!(r.status().as_u16());
    ctx["responseLength"] = json!(r.body().size_hint().exact().unwrap_or(0));
    ctx["responseLatency"] = json!(now_ms - started_ms);
    if let Some(e) = r.extensions().get::<crate::access_log::ErrorMessage>() {
        ctx["error"] = json!({"message": e.0, "messageString": format!("\"{}\"", e.0)});
    }
    if let Some(n) = r.extensions().get::<LogNote>() {
        if let Some(a) = &n.authorizer {
            ctx["authorizer"] = a.clone();
            // HTTP APIs name JWT claims `$context.authorizer.claims.*`.
            if let Some(claims) = a.get("jwt").and_then(|j| j.get("claims")) {
                ctx["authorizer"]["claims"] = claims.clone();
            }
            if let Some(p) = a.get("lambda").and_then(|l| l.get("principalId")) {
                ctx["authorizer"]["principalId"] = p.clone();
            }
        }
        ctx["integrationLatency"] = json!(now_ms - n.started_ms);
        ctx["integration"] = json!({"latency": now_ms - n.started_ms});
    }
    if let Some(k) = r.extensions().get::<ResourcePath>() {
        ctx["resourcePath"] = json!(k.0);
        ctx["resourceId"] = json!(k.1);
    }
}

/// What the route or method added, for access logs: the authorizer's output, and when the
/// integration started (an upper bound on its latency).
#[derive(Clone)]
struct LogNote {
    authorizer: Option<Value>,
    started_ms: i64,
}

/// The REST resource a request matched, for access logs.
#[derive(Clone)]
struct ResourcePath(String, String);

pub(crate) fn respond(r: ProxyResponse) -> http::Response<HttpBody> {
    let mut b = http::Response::builder().status(r.status);
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            b = b.header(k, v);
        }
    }
    b.body(full_body(r.body))
        .unwrap_or_else(|_| http::Response::new(full_body(Bytes::new())))
}

/// What a request resolved to before its integration runs.
struct Resolved {
    account: String,
    region: String,
    api_id: String,
    stage: String,
    stage_variables: Vec<(String, String)>,
    snapshot: Snapshot,
    cors: Option<Value>,
    /// The path after the stage segment.
    path: String,
    /// The stage as stored (route settings, access log settings).
    stage_value: Value,
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl ExecuteApi {
    fn resolve(&self, api_id: &str, path: &str) -> Option<Resolved> {
        let state = self.gw.state.lock();
        let r = state.apis.values().find(|r| r.id() == api_id)?;
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let (stage_name, rest) = match r.stages.get(first) {
            Some(_) if first != "$default" && !first.is_empty() => {
                let rest = &path[1 + first.len()..];
                (first.to_string(), if rest.is_empty() { "/" } else { rest })
            }
            _ if r.stages.contains_key("$default") => ("$default".to_string(), path),
            _ => return None,
        };
        let stage = &r.stages[&stage_name];
        let deployment = stage["DeploymentId"].as_str()?;
        let snapshot = r.frozen.get(deployment)?.clone();
        Some(Resolved {
            account: r.account.clone(),
            region: r.region.clone(),
            api_id: api_id.to_string(),
            stage: stage_name,
            stage_variables: pairs(&stage["StageVariables"]),
            snapshot,
            cors: r.api.get("CorsConfiguration").cloned(),
            path: rest.to_string(),
            stage_value: stage.clone(),
        })
    }
}

/// A function ARN from an integration or authorizer URI (a Lambda ARN, or API Gateway's
/// `arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations`).
pub(crate) fn function_target(uri: &str, account: &str, region: &str) -> FunctionTarget {
    let arn = match uri.split_once("/functions/") {
        Some((_, rest)) => rest.strip_suffix("/invocations").unwrap_or(rest),
        None => uri,
    };
    let (acct, reg) = match tsumiki_core::ids::parse_arn(arn) {
        Some((_, r, a, _)) => (a.to_string(), r.to_string()),
        None => (account.to_string(), region.to_string()),
    };
    FunctionTarget {
        account: acct,
        region: reg,
        function: arn.to_string(),
        qualifier: None,
    }
}

pub(crate) enum Outcome {
    Ok(Vec<u8>),
    /// The function ran and failed: its error payload.
    FunctionError(Vec<u8>),
    /// The function did not run (500).
    Failed(u16),
    TimedOut,
}

impl ExecuteApi {
    pub(crate) async fn run_function(
        &self,
        target: &FunctionTarget,
        payload: Vec<u8>,
        request_id: &str,
        timeout_ms: i64,
    ) -> Outcome {
        let Some(invoker) = self.gw.invoker.get().and_then(|w| w.upgrade()) else {
            return Outcome::Failed(500);
        };
        tokio::select! {
            r = invoker.invoke(target, payload, request_id) => match r {
                Ok(out) if out.function_error.is_none() => Outcome::Ok(out.payload),
                Ok(out) => {
                    tracing::debug!(error = %String::from_utf8_lossy(&out.payload), "The integration's function failed.");
                    Outcome::FunctionError(out.payload)
                }
                Err(e) => {
                    tracing::info!(code = %e.code, message = %e.message, "The integration's function could not run.");
                    Outcome::Failed(500)
                }
            },
            _ = self.gw.clock.sleep_ms(timeout_ms) => Outcome::TimedOut,
        }
    }

    /// Runs a route's Lambda authorizer: `Ok(context)` to pass on, or the response to send.
    async fn authorize(
        &self,
        res: &Resolved,
        authorizer: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> Result<Option<Value>, http::Response<HttpBody>> {
        let identity: Option<Vec<String>> = authorizer["IdentitySource"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|src| identity_value(src, req, res))
                    .collect::<Option<Vec<String>>>()
            })
            .unwrap_or(Some(Vec::new()));
        let Some(identity) = identity else {
            return Err(message(401, "Unauthorized"));
        };
        let route_arn = format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
            res.region, res.account, res.api_id, res.stage, req.method, req.path
        );
        let id = authorizer["AuthorizerId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ttl = authorizer["AuthorizerResultTtlInSeconds"]
            .as_i64()
            .unwrap_or(0);
        let cache_key = (id, identity.join(","));
        let now = self.gw.clock.now_ms();
        let cached = (ttl > 0 && !identity.is_empty())
            .then(|| {
                self.auth_cache
                    .lock()
                    .get(&cache_key)
                    .filter(|(exp, _)| *exp > now)
                    .map(|(_, v)| v.clone())
            })
            .flatten();
        let answer = match cached {
            Some(a) => a,
            None => {
                let v2 = authorizer["AuthorizerPayloadFormatVersion"] == "2.0";
                let mut event = if v2 {
                    tsumiki_proxy::event_v2(req, ectx)
                } else {
                    tsumiki_proxy::event_v1(req, ectx)
                };
                if let Some(o) = event.as_object_mut() {
                    o.remove("body");
                    o.remove("isBase64Encoded");
                    o.insert("type".into(), json!("REQUEST"));
                    if v2 {
                        o.insert("routeArn".into(), json!(route_arn));
                        o.insert("identitySource".into(), json!(identity));
                    } else {
                        o.insert("methodArn".into(), json!(route_arn));
                        o.insert("identitySource".into(), json!(identity.join(",")));
                    }
                }
                let target = function_target(
                    authorizer["AuthorizerUri"].as_str().unwrap_or_default(),
                    &res.account,
                    &res.region,
                );
                let payload = serde_json::to_vec(&event).unwrap_or_default();
                match self
                    .run_function(&target, payload, &ectx.request_id, 10_000)
                    .await
                {
                    Outcome::Ok(p) => match serde_json::from_slice::<Value>(&p) {
                        Ok(v) if v.is_object() => {
                            if ttl > 0 && !identity.is_empty() {
                                self.auth_cache
                                    .lock()
                                    .insert(cache_key, (now + ttl * 1000, v.clone()));
                            }
                            v
                        }
                        _ => return Err(message(500, "Internal Server Error")),
                    },
                    Outcome::FunctionError(e) if crate::rest_auth::says_unauthorized(&e) => {
                        return Err(message(401, "Unauthorized"));
                    }
                    Outcome::TimedOut | Outcome::Failed(_) | Outcome::FunctionError(_) => {
                        return Err(message(500, "Internal Server Error"));
                    }
                }
            }
        };
        let allowed = if authorizer["EnableSimpleResponses"] == true {
            answer["isAuthorized"] == true
        } else {
            policy_allows(&answer["policyDocument"], &route_arn)
        };
        if !allowed {
            return Err(message(403, "Forbidden"));
        }
        let context = answer.get("context").cloned().unwrap_or(json!({}));
        let mut a = json!({ "lambda": context });
        if let Some(p) = answer.get("principalId") {
            a["principalId"] = p.clone();
        }
        Ok(Some(a))
    }
}

/// A `$request.header.X`, `$request.querystring.X` or `$stageVariables.X` value, `None` when
/// missing or empty.
fn identity_value(src: &str, req: &HttpRequest, res: &Resolved) -> Option<String> {
    let v = if let Some(h) = src.strip_prefix("$request.header.") {
        req.header(h).map(String::from)
    } else if let Some(q) = src.strip_prefix("$request.querystring.") {
        req.query_pairs()
            .into_iter()
            .find(|(k, _)| k == q)
            .map(|(_, v)| v)
    } else if let Some(s) = src.strip_prefix("$stageVariables.") {
        res.stage_variables
            .iter()
            .find(|(k, _)| k == s)
            .map(|(_, v)| v.clone())
    } else {
        Some(String::new())
    };
    v.filter(|s| !s.is_empty())
}

/// IAM policy evaluation for `execute-api:Invoke` on `arn`: an explicit Deny wins, then an
/// Allow is needed.
pub(crate) fn policy_allows(policy: &Value, arn: &str) -> bool {
    policy_decision(policy, arn) == Some(true)
}

/// `Some(false)` for an explicit Deny, `Some(true)` for an Allow, `None` when no statement
/// matches (an implicit deny).
pub(crate) fn policy_decision(policy: &Value, arn: &str) -> Option<bool> {
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![policy["Statement"].clone()],
        _ => return None,
    };
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut allow = false;
    for s in &statements {
        let actions = list(&s["Action"]);
        let action_ok = actions
            .iter()
            .any(|a| wildcard(a, "execute-api:Invoke") || a == "*");
        let resource_ok = list(&s["Resource"]).iter().any(|r| wildcard(r, arn));
        if !(action_ok && resource_ok) {
            continue;
        }
        match s["Effect"].as_str() {
            Some("Deny") => return Some(false),
            Some("Allow") => allow = true,
            _ => {}
        }
    }
    allow.then_some(true)
}

/// IAM's `*` and `?` wildcards.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[async_trait]
impl HttpEndpoint for ExecuteApi {
    fn name(&self) -> &'static str {
        "execute-api"
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        if head.parts.uri.path().starts_with(PATH_PREFIX) || head.host().ends_with(HOST_SUFFIX) {
            Claim::Yes
        } else {
            Claim::No
        }
    }

    async fn handle(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> http::Response<HttpBody> {
        let (parts, body) = req.into_parts();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let host_lc = host.split(':').next().unwrap_or("").to_ascii_lowercase();
        let raw_path = parts.uri.path();
        let (api_id, path) = match raw_path.strip_prefix(PATH_PREFIX) {
            Some(rest) => {
                let (id, p) = rest.split_once('/').unwrap_or((rest, ""));
                (id.to_string(), format!("/{p}"))
            }
            None => (
                host_lc.strip_suffix(HOST_SUFFIX).unwrap_or("").to_string(),
                raw_path.to_string(),
            ),
        };
        let started = self.gw.clock.now_ms();
        let log_ctx = |stage: &str, account: &str, stage_path: &str| {
            crate::access_log::context(
                &ctx.request_id,
                account,
                &api_id,
                stage,
                parts.method.as_str(),
                stage_path,
                &format!("{:?}", parts.version),
                parts
                    .headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                host.split(':').next().unwrap_or(&host),
                started,
            )
        };
        let Some(res) = self.resolve(&api_id, &path) else {
            if let Some(target) = self.gw.resolve_rest(&api_id, &path) {
                let settings = target.stage_settings["accessLogSettings"].clone();
                let stage = target.stage.clone();
                let mut lctx = log_ctx(&stage, &target.account, &path);
                let response = self
                    .rest_request(ctx.clone(), parts, body, &api_id, target, &host)
                    .await;
                if settings.is_object() {
                    finish_log(&mut lctx, &response, started, self.gw.clock.now_ms());
                    self.access_log(&settings, &api_id, &stage, lctx);
                }
                return response;
            }
            return message(404, "Not Found");
        };
        let log_settings = res.stage_value["AccessLogSettings"].clone();
        let mut lctx = log_settings
            .is_object()
            .then(|| log_ctx(&res.stage, &res.account, &res.path));
        if let Some(l) = lctx.as_mut() {
            let routes: Vec<&str> = res
                .snapshot
                .routes
                .values()
                .filter_map(|r| r["RouteKey"].as_str())
                .collect();
            let route_key = crate::routing::select(&routes, parts.method.as_str(), &res.path)
                .map(|s| routes[s.index].to_string());
            l["routeKey"] = json!(route_key);
        }
        let body = match read_body(body).await {
            Some(b) => b,
            None => return message(413, "Request Entity Too Large"),
        };
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let request = HttpRequest {
            method: parts.method.as_str().to_string(),
            path: res.path.clone(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers,
            body,
            source_ip: "127.0.0.1".into(),
            protocol: format!("{:?}", parts.version),
        };
        let origin = request.header("origin").map(String::from);
        // With CORS configured the gateway answers preflights itself, before any route.
        if let (Some(cors), Some(origin)) = (&res.cors, &origin)
            && request.method == "OPTIONS"
            && request.header("access-control-request-method").is_some()
        {
            let mut r = respond(ProxyResponse {
                status: 204,
                headers: tsumiki_proxy::cors_headers(cors, origin, true),
                body: Vec::new(),
            });
            add_request_id(&mut r, &ctx.request_id);
            return r;
        }
        let mut response = self.route(&ctx, &res, request, &host).await;
        if let Some(mut l) = lctx {
            finish_log(&mut l, &response, started, self.gw.clock.now_ms());
            self.access_log(&log_settings, &res.api_id, &res.stage, l);
        }
        if let (Some(cors), Some(origin)) = (&res.cors, &origin) {
            for (k, v) in tsumiki_proxy::cors_headers(cors, origin, false) {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    response.headers_mut().insert(k, v);
                }
            }
        }
        add_request_id(&mut response, &ctx.request_id);
        response
    }
}

/// The whole body, or `None` past HTTP APIs' 10 MB (or when the client broke off).
async fn read_body(mut body: HttpBody) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            out.extend_from_slice(&data);
            if out.len() > MAX_BODY {
                return None;
            }
        }
    }
    Some(out)
}

impl ExecuteApi {
    /// A request to a REST API's stage: the 1.0 proxy event, and REST APIs' own answers (403
    /// `Missing Authentication Token` for an unknown resource or method, 502 `Internal server
    /// error`, 504 `Endpoint request timed out`).
    async fn rest_request(
        &self,
        ctx: RequestContext,
        parts: http::request::Parts,
        body: HttpBody,
        api_id: &str,
        target: crate::rest::RestTarget,
        host: &str,
    ) -> http::Response<HttpBody> {
        let mut keys = Vec::new();
        let mut found = Vec::new();
        for res in target.resources.values() {
            let path = res["path"].as_str().unwrap_or("/");
            if let Some(methods) = res["resourceMethods"].as_object() {
                for (m, def) in methods {
                    keys.push(format!("{m} {path}"));
                    found.push((res, def));
                }
            }
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let method = parts.method.as_str().to_string();
        let mut response = match crate::routing::select(&key_refs, &method, &target.path) {
            None => message(403, "Missing Authentication Token"),
            Some(selected) => {
                let (res, def) = found[selected.index];
                let Some(body) = read_body(body).await else {
                    return message(413, "Request Entity Too Large");
                };
                let request = HttpRequest {
                    method: method.clone(),
                    path: target.path.clone(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body,
                    source_ip: "127.0.0.1".into(),
                    protocol: format!("{:?}", parts.version),
                };
                let resource_path = res["path"].as_str().unwrap_or("/").to_string();
                let mut ectx = EventContext {
                    account_id: target.account.clone(),
                    api_id: api_id.to_string(),
                    domain_name: host.split(':').next().unwrap_or(host).to_string(),
                    request_id: ctx.request_id.clone(),
                    route_key: String::new(),
                    stage: target.stage.clone(),
                    time_ms: self.gw.clock.to_wall_ms(self.gw.clock.now_ms()),
                    path_parameters: selected.params,
                    stage_variables: target.variables.clone(),
                    authorizer: None,
                    resource_path,
                    resource_id: res["id"].as_str().map(String::from),
                    full_path: Some(format!("/{}{}", target.stage, target.path)),
                };
                let resource = ResourcePath(
                    ectx.resource_path.clone(),
                    ectx.resource_id.clone().unwrap_or_default(),
                );
                let started_ms = self.gw.clock.now_ms();
                let mut r = self
                    .rest_method(&ctx, &target, def, request, &mut ectx)
                    .await;
                r.extensions_mut().insert(resource);
                r.extensions_mut().insert(LogNote {
                    authorizer: ectx.authorizer.clone(),
                    started_ms,
                });
                r
            }
        };
        if let Ok(v) = http::HeaderValue::from_str(&ctx.request_id) {
            response.headers_mut().insert("x-amzn-requestid", v);
        }
        response
    }
}

impl ExecuteApi {
    /// A matched REST method: its authorizer, then its integration.
    async fn rest_method(
        &self,
        ctx: &RequestContext,
        target: &crate::rest::RestTarget,
        def: &Value,
        request: HttpRequest,
        ectx: &mut EventContext,
    ) -> http::Response<HttpBody> {
        let mut usage_key = None;
        match def["authorizationType"].as_str().unwrap_or("NONE") {
            "NONE" => {}
            "CUSTOM" => match self.rest_authorize(target, def, &request, ectx).await {
                Ok(a) => {
                    ectx.authorizer = Some(a.context);
                    usage_key = a.usage_key;
                }
                Err(r) => return r,
            },
            // IAM-signed invoke requests are not verified by tsumiki: nothing can pass.
            _ => return message(403, "Forbidden"),
        }
        if def["apiKeyRequired"] == true {
            let key = if target.api_key_source == "AUTHORIZER" {
                usage_key
            } else {
                request.header("x-api-key").map(String::from)
            };
            if let Err((status, text)) = self
                .gw
                .admit_key(
                    &target.account,
                    &target.region,
                    &ectx.api_id,
                    &target.stage,
                    key.as_deref(),
                )
                .await
            {
                return message(status, text);
            }
        }
        if let Some((rate, burst)) = rest_throttle(target, &ectx.resource_path, &request.method)
            && !self.gw.take_stage_token(
                format!(
                    "rest/{}/{}/{}",
                    ectx.api_id, target.stage, ectx.resource_path
                ),
                rate,
                burst,
            )
        {
            return message(429, "Too Many Requests");
        }
        let integration = &def["methodIntegration"];
        match integration["type"].as_str() {
            Some("AWS_PROXY") => {}
            Some("MOCK") => return self.mock(integration, &request, ectx),
            Some("HTTP_PROXY") => return self.rest_http_proxy(integration, &request, ectx).await,
            Some("HTTP") => return self.http_custom(integration, &request, ectx).await,
            Some("AWS") => return self.lambda_custom(integration, &request, ectx).await,
            _ => return message(500, "Internal server error"),
        }
        let event = tsumiki_proxy::event_v1(&request, ectx);
        let function = function_target(
            integration["uri"].as_str().unwrap_or_default(),
            &target.account,
            &target.region,
        );
        let timeout = integration["timeoutInMillis"].as_i64().unwrap_or(29_000);
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        match self
            .run_function(&function, payload, &ctx.request_id, timeout)
            .await
        {
            Outcome::Ok(out) => match tsumiki_proxy::response_v1(&out) {
                Ok(r) => respond(r),
                Err(e) => {
                    tracing::info!(reason = %e.0, "Malformed Lambda proxy response.");
                    message(502, "Internal server error")
                }
            },
            Outcome::Failed(status) => message(status, "Internal server error"),
            Outcome::FunctionError(_) => message(502, "Internal server error"),
            Outcome::TimedOut => message(504, "Endpoint request timed out"),
        }
    }
}

/// A REST stage's throttle for a method: its own `methodSettings` entry (`/items/GET`, keyed
/// `items/GET`), else `*/*`.
fn rest_throttle(
    target: &crate::rest::RestTarget,
    resource: &str,
    method: &str,
) -> Option<(f64, f64)> {
    let settings = &target.stage_settings["methodSettings"];
    let own = format!("{}/{method}", resource.trim_start_matches('/'));
    [own.as_str(), "*/*"].iter().find_map(|k| {
        let m = settings.get(*k)?;
        Some((
            m["throttlingRateLimit"].as_f64()?,
            m["throttlingBurstLimit"].as_f64()?,
        ))
    })
}

/// An HTTP API stage's throttle for a route: its `RouteSettings` entry, else the stage's
/// `DefaultRouteSettings`.
fn http_throttle(stage: &Value, route_key: &str) -> Option<(f64, f64)> {
    let pick = |s: &Value| {
        Some((
            s["ThrottlingRateLimit"].as_f64()?,
            s["ThrottlingBurstLimit"].as_f64()?,
        ))
    };
    stage["RouteSettings"]
        .get(route_key)
        .and_then(pick)
        .or_else(|| pick(&stage["DefaultRouteSettings"]))
}

fn add_request_id(r: &mut http::Response<HttpBody>, id: &str) {
    if let Ok(v) = http::HeaderValue::from_str(id) {
        r.headers_mut().insert("apigw-requestid", v);
    }
}

impl ExecuteApi {
    async fn route(
        &self,
        ctx: &RequestContext,
        res: &Resolved,
        request: HttpRequest,
        host: &str,
    ) -> http::Response<HttpBody> {
        let routes: Vec<&Value> = res.snapshot.routes.values().collect();
        let keys: Vec<&str> = routes
            .iter()
            .map(|r| r["RouteKey"].as_str().unwrap_or_default())
            .collect();
        let Some(selected) = crate::routing::select(&keys, &request.method, &request.path) else {
            return message(404, "Not Found");
        };
        let route = routes[selected.index];
        let route_key = keys[selected.index].to_string();
        if let Some((rate, burst)) = http_throttle(&res.stage_value, &route_key)
            && !self.gw.take_stage_token(
                format!("http/{}/{}/{route_key}", res.api_id, res.stage),
                rate,
                burst,
            )
        {
            return message(429, "Too Many Requests");
        }
        let mut ectx = EventContext {
            account_id: res.account.clone(),
            api_id: res.api_id.clone(),
            domain_name: host.split(':').next().unwrap_or(host).to_string(),
            request_id: ctx.request_id.clone(),
            route_key: route_key.clone(),
            stage: res.stage.clone(),
            time_ms: self.gw.clock.to_wall_ms(self.gw.clock.now_ms()),
            path_parameters: selected.params,
            stage_variables: res.stage_variables.clone(),
            authorizer: None,
            resource_path: route_key
                .split_once(' ')
                .map(|(_, p)| p.to_string())
                .unwrap_or(route_key.clone()),
            resource_id: None,
            full_path: None,
        };
        let integration = route["Target"]
            .as_str()
            .and_then(|t| t.strip_prefix("integrations/"))
            .and_then(|id| res.snapshot.integrations.get(id));
        let kind = route["AuthorizationType"].as_str().unwrap_or("NONE");
        if kind == "CUSTOM" || kind == "JWT" {
            let aid = route["AuthorizerId"].as_str().unwrap_or_default();
            let Some(authorizer) = res.snapshot.authorizers.get(aid) else {
                return message(500, "Internal Server Error");
            };
            let outcome = if kind == "JWT" {
                let v2 = integration.is_none_or(|i| i["PayloadFormatVersion"] != "1.0");
                self.authorize_jwt(authorizer, route, &request, v2)
                    .await
                    .map(Some)
            } else {
                self.authorize(res, authorizer, &request, &ectx).await
            };
            match outcome {
                Ok(a) => ectx.authorizer = a,
                Err(r) => return r,
            }
        }
        let note = LogNote {
            authorizer: ectx.authorizer.clone(),
            started_ms: self.gw.clock.now_ms(),
        };
        let mut r = self
            .integrate_http(ctx, res, integration, request, &ectx)
            .await;
        r.extensions_mut().insert(note);
        r
    }

    /// Runs an HTTP API route's integration.
    async fn integrate_http(
        &self,
        ctx: &RequestContext,
        res: &Resolved,
        integration: Option<&Value>,
        request: HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let Some(integration) = integration else {
            return message(404, "Not Found");
        };
        match integration["IntegrationType"].as_str() {
            Some("AWS_PROXY") => {}
            Some("HTTP_PROXY") => {
                let uri = integration["IntegrationUri"].as_str().unwrap_or_default();
                let timeout = integration["TimeoutInMillis"].as_i64().unwrap_or(30_000);
                let url = crate::http_proxy::target_url(uri, &ectx.path_parameters, &request);
                return tokio::select! {
                    r = crate::http_proxy::forward(&url, &request) => match r {
                        Ok(r) => respond(r),
                        Err(e) => {
                            tracing::info!(error = %e, url, "The HTTP integration failed.");
                            message(500, "Internal Server Error")
                        }
                    },
                    _ = self.gw.clock.sleep_ms(timeout) => message(503, "Service Unavailable"),
                };
            }
            other => {
                tracing::warn!(
                    integration = ?other,
                    "tsumiki runs AWS_PROXY (Lambda) integrations of HTTP APIs only."
                );
                return message(500, "Internal Server Error");
            }
        }
        let v2 = integration["PayloadFormatVersion"] == "2.0";
        let event = if v2 {
            tsumiki_proxy::event_v2(&request, ectx)
        } else {
            tsumiki_proxy::event_v1(&request, ectx)
        };
        let target = function_target(
            integration["IntegrationUri"].as_str().unwrap_or_default(),
            &res.account,
            &res.region,
        );
        let timeout = integration["TimeoutInMillis"].as_i64().unwrap_or(30_000);
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        match self
            .run_function(&target, payload, &ctx.request_id, timeout)
            .await
        {
            Outcome::Ok(out) => {
                let mapped = if v2 {
                    tsumiki_proxy::response_v2(&out)
                } else {
                    tsumiki_proxy::response_v1(&out)
                };
                match mapped {
                    Ok(r) => respond(r),
                    Err(e) => {
                        tracing::info!(reason = %e.0, "The function's response is malformed.");
                        message(502, "Internal Server Error")
                    }
                }
            }
            Outcome::Failed(status) => message(status, "Internal Server Error"),
            Outcome::FunctionError(_) => message(502, "Internal Server Error"),
            Outcome::TimedOut => message(503, "Service Unavailable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_wildcards() {
        let arn = "arn:aws:execute-api:us-east-1:000000000000:abc/$default/GET/items/1";
        let allow = json!({"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ["arn:aws:execute-api:us-east-1:000000000000:abc/*"]}]});
        assert!(policy_allows(&allow, arn));
        let deny = json!({"Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:*", "Effect": "Deny", "Resource": "arn:aws:execute-api:*:*:abc/*/GET/items/*"}]});
        assert!(!policy_allows(&deny, arn));
        assert!(!policy_allows(&json!({}), arn));
        assert!(wildcard("a?c*", "abcdef"));
        assert!(!wildcard("a?c", "abcd"));
    }

    #[test]
    fn integration_uris_name_functions() {
        let t = function_target(
            "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:111122223333:function:f/invocations",
            "000000000000",
            "us-east-1",
        );
        assert_eq!(t.account, "111122223333");
        assert_eq!(t.region, "eu-west-1");
        assert_eq!(
            t.function,
            "arn:aws:lambda:eu-west-1:111122223333:function:f"
        );
        let plain = function_target("f", "000000000000", "us-east-1");
        assert_eq!(plain.account, "000000000000");
    }
}
