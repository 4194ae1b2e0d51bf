//! Lambda function URLs: the `*FunctionUrlConfig` operations, and the HTTP endpoint answering
//! `http://{urlId}.lambda-url.{region}.localhost:{port}/` and `/_aws/lambda-url/{urlId}/...`
//! with the payload format 2.0 event (`tsumiki_proxy`).
//!
//! A function's URL configs live in its record (`Function::urls`, by qualifier: `$LATEST` for
//! the unqualified function, else an alias), so they are written and deleted with it. An
//! `AWS_IAM` URL requires a SigV4-signed request (403 otherwise); signatures are not verified,
//! as nowhere in tsumiki yet. A `RESPONSE_STREAM` URL sends the body chunked as the function
//! writes it (its status, headers and cookies from the HTTP prelude, see `streaming.rs`); a
//! stream that fails midway is cut off, as the headers are already gone.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use rand::Rng;
use serde_json::{Value, json};
use tsumiki_compute::Streamed;
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, full_body};
use tsumiki_proxy::{EventContext, HttpRequest, ProxyResponse};

use crate::errors::{conflict, invalid, not_found};
use crate::streaming::{PRELUDE_CONTENT_TYPE, Prelude, channel_body, split_prelude};
use crate::{Lambda, names};

const PATH_PREFIX: &str = "/_aws/lambda-url/";
/// Function URLs' request payload quota (6 MB, as synchronous Invoke).
const MAX_BODY: usize = 6 * 1024 * 1024;

fn url_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn port_of(base_url: &str) -> &str {
    base_url
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("4566")
}

fn check_auth_type(v: &Value) -> Result<(), AwsError> {
    match v.as_str() {
        None | Some("NONE") | Some("AWS_IAM") => Ok(()),
        Some(other) => Err(invalid(format!(
            "1 validation error detected: Value '{other}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"
        ))),
    }
}

/// The config as AWS returns it (the stored value keeps `UrlId` beside).
fn render(stored: &Value, with_modified: bool) -> Value {
    let mut out = stored.clone();
    if let Some(o) = out.as_object_mut() {
        o.remove("UrlId");
        if !with_modified {
            o.remove("LastModifiedTime");
        }
    }
    out
}

impl Lambda {
    fn url_target(
        &self,
        ctx: &RequestContext,
        input: &Value,
    ) -> Result<(names::FunctionRef, String), AwsError> {
        let r = names::of_input(ctx, input)?;
        let q = r.qualifier.clone().unwrap_or_else(|| "$LATEST".into());
        if q != "$LATEST" && q.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "Function URLs can be created on an alias or the unqualified function only.",
            ));
        }
        Ok((r, q))
    }

    pub(crate) async fn create_function_url(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        check_auth_type(&input["AuthType"])?;
        let (r, q) = self.url_target(ctx, &input)?;
        let now = crate::functions::timestamp(self.clock.now_ms());
        let port = port_of(&ctx.base_url).to_string();
        self.update_function(ctx, &r, |f, _| {
            if q != "$LATEST" && !f.aliases.contains_key(&q) {
                return Err(crate::errors::function_not_found(&format!("{}:{q}", f.arn)));
            }
            let arn = names::qualified(&f.arn, r.qualifier.as_deref());
            if f.urls.contains_key(&q) {
                return Err(conflict(format!(
                    "Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
                )));
            }
            let id = url_id();
            let mut config = json!({
                "UrlId": id,
                "FunctionUrl": format!("http://{id}.lambda-url.{}.localhost:{port}/", f.region),
                "FunctionArn": arn,
                "AuthType": input["AuthType"],
                "CreationTime": now,
                "LastModifiedTime": now,
                "InvokeMode": input.get("InvokeMode").cloned().unwrap_or(json!("BUFFERED")),
            });
            if let Some(c) = input.get("Cors") {
                config["Cors"] = c.clone();
            }
            f.urls.insert(q.clone(), config.clone());
            Ok(render(&config, false))
        })
        .await
    }

    pub(crate) fn get_function_url(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let (r, q) = self.url_target(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            f.urls
                .get(&q)
                .map(|c| render(c, true))
                .ok_or_else(|| not_found("The resource you requested does not exist."))
        })
    }

    pub(crate) fn list_function_urls(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            let configs: Vec<Value> = f.urls.values().map(|c| render(c, true)).collect();
            Ok(json!({ "FunctionUrlConfigs": configs }))
        })
    }

    pub(crate) async fn update_function_url(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        if let Some(a) = input.get("AuthType") {
            check_auth_type(a)?;
        }
        let (r, q) = self.url_target(ctx, &input)?;
        let now = crate::functions::timestamp(self.clock.now_ms());
        self.update_function(ctx, &r, |f, _| {
            let c = f
                .urls
                .get_mut(&q)
                .ok_or_else(|| not_found("The resource you requested does not exist."))?;
            for m in ["AuthType", "Cors", "InvokeMode"] {
                if let Some(v) = input.get(m) {
                    c[m] = v.clone();
                }
            }
            c["LastModifiedTime"] = json!(now);
            Ok(render(c, true))
        })
        .await
    }

    pub(crate) async fn delete_function_url(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let (r, q) = self.url_target(ctx, &input)?;
        self.update_function(ctx, &r, |f, _| {
            f.urls
                .remove(&q)
                .ok_or_else(|| not_found("The resource you requested does not exist."))?;
            Ok(json!({}))
        })
        .await
    }

    /// The endpoint answering this Lambda's function URLs.
    pub fn url_endpoint(self: &Arc<Self>) -> Arc<dyn HttpEndpoint> {
        Arc::new(FunctionUrls {
            lambda: Arc::downgrade(self),
        })
    }

    /// The function (ARN, qualified by alias) and config a URL id names.
    fn url_config(&self, id: &str) -> Option<(String, String, String, Value)> {
        let inner = self.inner.lock();
        inner.functions.values().find_map(|f| {
            f.urls.iter().find_map(|(q, c)| {
                (c["UrlId"] == id).then(|| {
                    let target = if q == "$LATEST" {
                        f.arn.clone()
                    } else {
                        format!("{}:{q}", f.arn)
                    };
                    (target, f.account.clone(), f.region.clone(), c.clone())
                })
            })
        })
    }
}

/// The function URL endpoint.
struct FunctionUrls {
    lambda: Weak<Lambda>,
}

fn text(status: u16, body: &str, content_type: &str) -> http::Response<HttpBody> {
    respond(ProxyResponse {
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.as_bytes().to_vec(),
    })
}

fn respond(r: ProxyResponse) -> http::Response<HttpBody> {
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

/// `{urlId}` from a Host `{urlId}.lambda-url.{region}.localhost`.
fn id_from_host(host: &str) -> Option<&str> {
    let (id, rest) = host.split_once(".lambda-url.")?;
    rest.ends_with(".localhost").then_some(id)
}

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

#[async_trait]
impl HttpEndpoint for FunctionUrls {
    fn name(&self) -> &'static str {
        "lambda-url"
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        if head.parts.uri.path().starts_with(PATH_PREFIX) || id_from_host(&head.host()).is_some() {
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
        let Some(lambda) = self.lambda.upgrade() else {
            return text(503, "Service Unavailable", "text/plain");
        };
        let (parts, body) = req.into_parts();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let (id, path) = match parts.uri.path().strip_prefix(PATH_PREFIX) {
            Some(rest) => {
                let (id, p) = rest.split_once('/').unwrap_or((rest, ""));
                (id.to_string(), format!("/{p}"))
            }
            None => (
                id_from_host(&host).unwrap_or("").to_string(),
                parts.uri.path().to_string(),
            ),
        };
        let Some((function, account, region, config)) = lambda.url_config(&id) else {
            return text(403, r#"{"Message":"Forbidden"}"#, "application/json");
        };
        let signed = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
        let iam = config["AuthType"] == "AWS_IAM";
        if iam && !signed {
            return text(403, r#"{"Message":"Forbidden"}"#, "application/json");
        }
        let Some(body) = read_body(body).await else {
            return text(413, "Request Entity Too Large", "text/plain");
        };
        let request = HttpRequest {
            method: parts.method.as_str().to_string(),
            path,
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
        let origin = request.header("origin").map(String::from);
        let cors = config.get("Cors").filter(|c| c.is_object()).cloned();
        if let (Some(cors), Some(origin)) = (&cors, &origin)
            && request.method == "OPTIONS"
            && request.header("access-control-request-method").is_some()
        {
            return respond(ProxyResponse {
                status: 200,
                headers: tsumiki_proxy::cors_headers(cors, origin, true),
                body: Vec::new(),
            });
        }
        let ectx = EventContext {
            // AWS names the caller's account for AWS_IAM URLs, "anonymous" otherwise.
            account_id: if iam {
                ctx.account.clone()
            } else {
                "anonymous".into()
            },
            api_id: id.clone(),
            domain_name: host.clone(),
            request_id: ctx.request_id.clone(),
            route_key: "$default".into(),
            stage: "$default".into(),
            time_ms: lambda.clock.to_wall_ms(lambda.clock.now_ms()),
            ..Default::default()
        };
        let event = tsumiki_proxy::event_v2(&request, &ectx);
        let target = tsumiki_ports::FunctionTarget {
            account,
            region,
            function,
            qualifier: None,
        };
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        let streaming = config["InvokeMode"] == "RESPONSE_STREAM";
        let mut response = if streaming {
            stream_response(&lambda, &target, payload, &ctx.request_id).await
        } else {
            buffered_response(&lambda, &target, payload, &ctx.request_id).await
        };
        if let (Some(cors), Some(origin)) = (&cors, &origin) {
            for (k, v) in tsumiki_proxy::cors_headers(cors, origin, false) {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    response.headers_mut().insert(k, v);
                }
            }
        }
        if let Ok(v) = http::HeaderValue::from_str(&ctx.request_id) {
            response.headers_mut().insert("x-amzn-requestid", v);
        }
        response
    }
}

/// A `BUFFERED` URL's answer: the whole payload read as a payload format 2.0 response.
async fn buffered_response(
    lambda: &Lambda,
    target: &tsumiki_ports::FunctionTarget,
    payload: Vec<u8>,
    request_id: &str,
) -> http::Response<HttpBody> {
    let result = tsumiki_ports::FunctionInvoker::invoke(lambda, target, payload, request_id).await;
    match result {
        Ok(out) if out.function_error.is_none() => match tsumiki_proxy::response_v2(&out.payload) {
            Ok(r) => respond(r),
            Err(e) => {
                tracing::info!(reason = %e.0, "The function's response is malformed.");
                text(502, "Internal Server Error", "text/plain")
            }
        },
        Ok(_) => text(502, "Internal Server Error", "text/plain"),
        Err(e) if e.status == 429 => {
            text(429, r#"{"Message":"Rate Exceeded."}"#, "application/json")
        }
        Err(e) => {
            tracing::info!(code = %e.code, message = %e.message, "A function URL's function could not run.");
            text(502, "Internal Server Error", "text/plain")
        }
    }
}

/// A `RESPONSE_STREAM` URL's answer: headers once the function's prelude is in, then each
/// chunk as the function writes it.
async fn stream_response(
    lambda: &Lambda,
    target: &tsumiki_ports::FunctionTarget,
    payload: Vec<u8>,
    request_id: &str,
) -> http::Response<HttpBody> {
    let ctx = crate::async_config::context(target, request_id);
    let invocation = crate::Invocation {
        function: target.function.clone(),
        qualifier: target.qualifier.clone(),
        payload: payload.into(),
        client_context: None,
        tail: false,
    };
    let (mut stream, end) = match lambda.invoke_streaming(&ctx, invocation).await {
        Ok((Streamed::Stream { stream, end, .. }, _)) => (stream, end),
        Ok((Streamed::Whole(out), _)) if out.function_error.is_none() => {
            return match tsumiki_proxy::response_v2(&out.payload) {
                Ok(r) => respond(r),
                Err(e) => {
                    tracing::info!(reason = %e.0, "The function's response is malformed.");
                    text(502, "Internal Server Error", "text/plain")
                }
            };
        }
        Ok(_) => return text(502, "Internal Server Error", "text/plain"),
        Err(e) if e.status == 429 => {
            return text(429, r#"{"Message":"Rate Exceeded."}"#, "application/json");
        }
        Err(e) => {
            tracing::info!(code = %e.code, message = %e.message, "A function URL's function could not run.");
            return text(502, "Internal Server Error", "text/plain");
        }
    };
    let mut head = Prelude {
        status: 200,
        headers: Vec::new(),
        cookies: Vec::new(),
    };
    let mut first = Bytes::new();
    let content_type = stream.content_type.clone();
    if content_type.as_deref() == Some(PRELUDE_CONTENT_TYPE) {
        let mut buf = Vec::new();
        loop {
            let Some(chunk) = stream.chunks.recv().await else {
                // The stream ended (or failed) before its prelude did.
                return text(502, "Internal Server Error", "text/plain");
            };
            buf.extend_from_slice(&chunk);
            match split_prelude(&buf) {
                Ok(Some((prelude, rest))) => {
                    head = prelude;
                    first = rest;
                    break;
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::info!(%reason, "The function's response prelude is malformed.");
                    return text(502, "Internal Server Error", "text/plain");
                }
            }
        }
    } else {
        head.headers.push((
            "content-type".into(),
            content_type.unwrap_or_else(|| "application/octet-stream".into()),
        ));
    }
    if !head
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.headers
            .push(("content-type".into(), "application/octet-stream".into()));
    }
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let mut open = first.is_empty() || tx.send(Ok(first)).await.is_ok();
        while let Some(chunk) = stream.chunks.recv().await {
            if open && tx.send(Ok(chunk)).await.is_err() {
                open = false;
            }
        }
        if let Ok(result) = end.await
            && result.function_error.is_some()
        {
            tracing::info!(payload = %String::from_utf8_lossy(&result.payload), "A function URL's stream failed midway.");
            let _ = tx
                .send(Err("the function's response stream failed".into()))
                .await;
        }
    });
    let mut b = http::Response::builder().status(head.status);
    for (k, v) in &head.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            b = b.header(k, v);
        }
    }
    for c in &head.cookies {
        if let Ok(v) = http::HeaderValue::from_str(c) {
            b = b.header(http::header::SET_COOKIE, v);
        }
    }
    b.body(body)
        .unwrap_or_else(|_| http::Response::new(full_body(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_url_ids() {
        assert_eq!(
            id_from_host("abc123.lambda-url.us-east-1.localhost"),
            Some("abc123")
        );
        assert_eq!(id_from_host("abc123.lambda-url.us-east-1.on.aws"), None);
        assert_eq!(id_from_host("localhost"), None);
        assert_eq!(port_of("http://127.0.0.1:4567"), "4567");
    }
}
