//! REST APIs' non-proxy integrations: `MOCK` (the request template's `statusCode` stands in
//! for a backend) and the integration responses that map a backend status onto a method
//! response (`selectionPattern` regexes, `responseTemplates`, `responseParameters`), plus
//! `HTTP_PROXY`. Templates are rendered by `tsumiki_lang::vtl`, a documented subset of VTL.

use serde_json::{Value, json};
use tsumiki_lang::vtl;
use tsumiki_ports::http::HttpBody;
use tsumiki_proxy::{EventContext, HttpRequest, ProxyResponse};

use crate::execute::{ExecuteApi, Outcome, message, respond};

/// `$context` for templates: the proxy event's `requestContext` (AWS's names).
pub(crate) fn template_context(req: &HttpRequest, ectx: &EventContext) -> Value {
    tsumiki_proxy::event_v1(req, ectx)["requestContext"].clone()
}

fn template_input(req: &HttpRequest, ectx: &EventContext, body: String) -> vtl::Input {
    vtl::Input {
        body,
        path_params: ectx.path_parameters.clone(),
        query: req.query_pairs(),
        headers: req.headers.clone(),
        context: template_context(req, ectx),
        stage_variables: Value::Object(
            ectx.stage_variables
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        ),
    }
}

/// The media type of the request body, as templates are keyed.
fn content_type(req: &HttpRequest) -> String {
    req.header("content-type")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "application/json".into())
}

/// The integration response for a backend answer: the first whose `selectionPattern` matches
/// `selector` whole (an HTTP backend's status, a Lambda function's `errorMessage`), else the
/// default (no pattern). A successful Lambda function has no selector: the default.
fn select_response<'a>(integration: &'a Value, selector: Option<&str>) -> Option<&'a Value> {
    let responses = integration["integrationResponses"].as_object()?;
    let mut default = None;
    for r in responses.values() {
        match r["selectionPattern"].as_str().filter(|p| !p.is_empty()) {
            Some(p) => {
                if let Some(sel) = selector
                    && regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(sel))
                {
                    return Some(r);
                }
            }
            None => default = default.or(Some(r)),
        }
    }
    default
}

/// The body a non-proxy integration sends: the request template for the request's media type
/// rendered, or the request body passed through as `passthroughBehavior` allows (else 415).
#[allow(clippy::result_large_err)]
fn request_body(
    integration: &Value,
    req: &HttpRequest,
    ectx: &EventContext,
) -> Result<Vec<u8>, http::Response<HttpBody>> {
    let ct = content_type(req);
    let templates = integration["requestTemplates"].as_object();
    let template = templates.and_then(|t| t.get(&ct)).and_then(Value::as_str);
    let passthrough = integration["passthroughBehavior"]
        .as_str()
        .unwrap_or("WHEN_NO_MATCH");
    let has_templates = templates.is_some_and(|t| !t.is_empty());
    match template {
        Some(t) => {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            vtl::render(t, &template_input(req, ectx, body))
                .map(String::into_bytes)
                .map_err(|e| {
                    tracing::info!(error = %e.0, "A request template does not render.");
                    message(500, "Internal server error")
                })
        }
        None if passthrough == "NEVER" || (passthrough == "WHEN_NO_TEMPLATES" && has_templates) => {
            Err(message(415, "Unsupported Media Type"))
        }
        None => Ok(req.body.clone()),
    }
}

/// The region in an API Gateway service URI (`arn:aws:apigateway:{region}:lambda:path/...`).
fn region_of(uri: &str) -> String {
    uri.split(':').nth(3).unwrap_or("us-east-1").to_string()
}

impl ExecuteApi {
    /// A `MOCK` integration: the request template names the status, the matching integration
    /// response shapes the answer.
    pub(crate) fn mock(
        &self,
        integration: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let rendered = match request_body(integration, req, ectx) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let status = serde_json::from_slice::<Value>(&rendered)
            .ok()
            .and_then(|v| v["statusCode"].as_i64())
            .unwrap_or(200);
        self.integration_response(
            integration,
            Some(&status.to_string()),
            Vec::new(),
            Vec::new(),
            req,
            ectx,
        )
    }

    /// An `HTTP` (non-proxy) integration: the request template's output sent to the backend,
    /// its status selecting the integration response.
    pub(crate) async fn http_custom(
        &self,
        integration: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let body = match request_body(integration, req, ectx) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let uri = integration["uri"].as_str().unwrap_or_default();
        let url = crate::http_proxy::target_url(uri, &ectx.path_parameters, req);
        let mut forwarded = req.clone();
        forwarded.body = body;
        if let Some(m) = integration["httpMethod"]
            .as_str()
            .filter(|m| *m != "ANY" && !m.is_empty())
        {
            forwarded.method = m.to_string();
        }
        let timeout = integration["timeoutInMillis"].as_i64().unwrap_or(29_000);
        let answer = tokio::select! {
            r = crate::http_proxy::forward(&url, &forwarded) => r,
            _ = self.gw.clock.sleep_ms(timeout) => return message(504, "Endpoint request timed out"),
        };
        match answer {
            Ok(r) => self.integration_response(
                integration,
                Some(&r.status.to_string()),
                r.headers,
                r.body,
                req,
                ectx,
            ),
            Err(e) => {
                tracing::info!(error = %e, url, "The HTTP integration failed.");
                message(500, "Internal server error")
            }
        }
    }

    /// An `AWS` integration with Lambda (a custom, non-proxy integration): the request
    /// template's output is the payload; success takes the default integration response, a
    /// function error the one whose pattern matches its `errorMessage`.
    pub(crate) async fn lambda_custom(
        &self,
        integration: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let uri = integration["uri"].as_str().unwrap_or_default();
        if !uri.contains(":lambda:path/") {
            tracing::warn!(uri, "tsumiki runs AWS integrations with Lambda only.");
            return message(500, "Internal server error");
        }
        let mut payload = match request_body(integration, req, ectx) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if payload.is_empty() {
            payload = b"{}".to_vec();
        }
        let (account, region) = (ectx.account_id.clone(), region_of(uri));
        let target = crate::execute::function_target(uri, &account, &region);
        let timeout = integration["timeoutInMillis"].as_i64().unwrap_or(29_000);
        match self
            .run_function(&target, payload, &ectx.request_id, timeout)
            .await
        {
            Outcome::Ok(out) => {
                self.integration_response(integration, None, Vec::new(), out, req, ectx)
            }
            Outcome::FunctionError(err) => {
                let msg = serde_json::from_slice::<Value>(&err)
                    .ok()
                    .and_then(|v| v["errorMessage"].as_str().map(String::from))
                    .unwrap_or_default();
                self.integration_response(integration, Some(&msg), Vec::new(), err, req, ectx)
            }
            Outcome::Failed(status) => message(status, "Internal server error"),
            Outcome::TimedOut => message(504, "Endpoint request timed out"),
        }
    }

    /// Maps a non-proxy backend answer through the integration responses.
    fn integration_response(
        &self,
        integration: &Value,
        status: Option<&str>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let Some(chosen) = select_response(integration, status) else {
            tracing::info!(
                selector = status.unwrap_or_default(),
                "No integration response matches and none is the default."
            );
            return message(500, "Internal server error");
        };
        let out_status: u16 = chosen["statusCode"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let body_text = String::from_utf8_lossy(&body).into_owned();
        let input = template_input(req, ectx, body_text);
        let templates = chosen["responseTemplates"].as_object();
        let template = templates.and_then(|t| {
            t.get("application/json")
                .or_else(|| t.values().next())
                .and_then(Value::as_str)
        });
        let out_body = match template {
            Some(t) if !t.is_empty() => match vtl::render(t, &input) {
                Ok(s) => s.into_bytes(),
                Err(e) => {
                    tracing::info!(error = %e.0, "A response template does not render.");
                    return message(500, "Internal server error");
                }
            },
            _ => body,
        };
        let mut out_headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(params) = chosen["responseParameters"].as_object() {
            for (target, source) in params {
                let Some(name) = target.strip_prefix("method.response.header.") else {
                    continue;
                };
                let Some(source) = source.as_str() else {
                    continue;
                };
                let value = if let Some(lit) =
                    source.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                {
                    Some(lit.to_string())
                } else if let Some(h) = source.strip_prefix("integration.response.header.") {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(h))
                        .map(|(_, v)| v.clone())
                } else if let Some(c) = source.strip_prefix("context.") {
                    c.split('.')
                        .try_fold(&input.context, |v, k| v.get(k))
                        .map(|v| v.as_str().map(String::from).unwrap_or(v.to_string()))
                } else if let Some(s) = source.strip_prefix("stageVariables.") {
                    input.stage_variables[s].as_str().map(String::from)
                } else {
                    None
                };
                if let Some(v) = value {
                    out_headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
                    out_headers.push((name.to_string(), v));
                }
            }
        }
        respond(ProxyResponse {
            status: out_status,
            headers: out_headers,
            body: out_body,
        })
    }

    /// An `HTTP_PROXY` integration of a REST API: the request passed through, `{name}` path
    /// variables of the URI filled from the method's path parameters.
    pub(crate) async fn rest_http_proxy(
        &self,
        integration: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let uri = integration["uri"].as_str().unwrap_or_default();
        let timeout = integration["timeoutInMillis"].as_i64().unwrap_or(29_000);
        let url = crate::http_proxy::target_url(uri, &ectx.path_parameters, req);
        let mut forwarded = req.clone();
        if let Some(m) = integration["httpMethod"]
            .as_str()
            .filter(|m| *m != "ANY" && !m.is_empty())
        {
            forwarded.method = m.to_string();
        }
        tokio::select! {
            r = crate::http_proxy::forward(&url, &forwarded) => match r {
                Ok(r) => respond(r),
                Err(e) => {
                    tracing::info!(error = %e, url, "The HTTP integration failed.");
                    message(500, "Internal server error")
                }
            },
            _ = self.gw.clock.sleep_ms(timeout) => message(504, "Endpoint request timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_patterns_then_default() {
        let i = json!({"integrationResponses": {
            "200": {"statusCode": "200"},
            "400": {"statusCode": "400", "selectionPattern": "4\\d{2}"},
            "500": {"statusCode": "500", "selectionPattern": "5.*"},
        }});
        assert_eq!(
            select_response(&i, Some("404")).unwrap()["statusCode"],
            "400"
        );
        assert_eq!(
            select_response(&i, Some("503")).unwrap()["statusCode"],
            "500"
        );
        assert_eq!(
            select_response(&i, Some("201")).unwrap()["statusCode"],
            "200"
        );
        assert_eq!(select_response(&i, None).unwrap()["statusCode"], "200");
        assert!(select_response(&json!({}), Some("200")).is_none());
    }
}
