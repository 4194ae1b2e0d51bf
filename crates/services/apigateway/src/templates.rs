//! REST APIs' non-proxy integrations: `MOCK` (the request template's `statusCode` stands in
//! for a backend) and the integration responses that map a backend status onto a method
//! response (`selectionPattern` regexes, `responseTemplates`, `responseParameters`), plus
//! `HTTP_PROXY`. Templates are rendered by `tsumiki_lang::vtl`, a documented subset of VTL.

use serde_json::{Value, json};
use tsumiki_lang::vtl;
use tsumiki_ports::http::HttpBody;
use tsumiki_proxy::{EventContext, HttpRequest, ProxyResponse};

use crate::execute::{ExecuteApi, message, respond};

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

/// The integration response for a backend status: the first whose `selectionPattern`
/// matches it whole, else the default (no pattern).
fn select_response<'a>(integration: &'a Value, status: &str) -> Option<&'a Value> {
    let responses = integration["integrationResponses"].as_object()?;
    let mut default = None;
    for r in responses.values() {
        match r["selectionPattern"].as_str().filter(|p| !p.is_empty()) {
            Some(p) => {
                if regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(status)) {
                    return Some(r);
                }
            }
            None => default = default.or(Some(r)),
        }
    }
    default
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
        let ct = content_type(req);
        let templates = integration["requestTemplates"].as_object();
        let template = templates.and_then(|t| t.get(&ct)).and_then(Value::as_str);
        let passthrough = integration["passthroughBehavior"]
            .as_str()
            .unwrap_or("WHEN_NO_MATCH");
        let has_templates = templates.is_some_and(|t| !t.is_empty());
        if template.is_none()
            && (passthrough == "NEVER" || (passthrough == "WHEN_NO_TEMPLATES" && has_templates))
        {
            return message(415, "Unsupported Media Type");
        }
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let status = match template {
            Some(t) => match vtl::render(t, &template_input(req, ectx, body)) {
                Ok(out) => serde_json::from_str::<Value>(&out)
                    .ok()
                    .and_then(|v| v["statusCode"].as_i64())
                    .unwrap_or(200),
                Err(e) => {
                    tracing::info!(error = %e.0, "A MOCK request template does not render.");
                    return message(500, "Internal server error");
                }
            },
            None => 200,
        };
        self.integration_response(
            integration,
            &status.to_string(),
            Vec::new(),
            Vec::new(),
            req,
            ectx,
        )
    }

    /// Maps a non-proxy backend answer through the integration responses.
    fn integration_response(
        &self,
        integration: &Value,
        status: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> http::Response<HttpBody> {
        let Some(chosen) = select_response(integration, status) else {
            tracing::info!(
                status,
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
        assert_eq!(select_response(&i, "404").unwrap()["statusCode"], "400");
        assert_eq!(select_response(&i, "503").unwrap()["statusCode"], "500");
        assert_eq!(select_response(&i, "201").unwrap()["statusCode"], "200");
        assert!(select_response(&json!({}), "200").is_none());
    }
}
