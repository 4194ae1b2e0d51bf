//! REST APIs' Lambda authorizers (`TOKEN` and `REQUEST`), run before the integration as AWS
//! does: the identity sources are read first (missing ones answer 401 without calling the
//! function), a `TOKEN` authorizer's `identityValidationExpression` is checked, the answer is
//! cached for `authorizerResultTtlInSeconds` by identity, and the cached policy is evaluated
//! against each request's `methodArn`. The function's `context` and `principalId` reach the
//! integration as `requestContext.authorizer`.

use serde_json::{Map, Value, json};
use tsumiki_ports::http::HttpBody;
use tsumiki_proxy::{EventContext, HttpRequest, ProxyResponse};

use crate::execute::{ExecuteApi, Outcome, function_target, policy_decision, respond};
use crate::rest::RestTarget;

/// A Lambda authorizer's function raised `Unauthorized` (AWS's way to answer 401).
pub(crate) fn says_unauthorized(error_payload: &[u8]) -> bool {
    serde_json::from_slice::<Value>(error_payload)
        .is_ok_and(|v| v["errorMessage"] == "Unauthorized")
}

/// REST APIs' gateway responses: a JSON `message` and the `x-amzn-ErrorType` header.
fn gateway_response(status: u16, error_type: &str, text: Value) -> http::Response<HttpBody> {
    respond(ProxyResponse {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-amzn-ErrorType".into(), error_type.into()),
        ],
        body: json!({ "message": text }).to_string().into_bytes(),
    })
}

pub(crate) fn unauthorized() -> http::Response<HttpBody> {
    gateway_response(401, "UnauthorizedException", json!("Unauthorized"))
}

fn configuration_error() -> http::Response<HttpBody> {
    gateway_response(500, "AuthorizerConfigurationException", Value::Null)
}

/// One `identitySource` entry of a REST authorizer (`method.request.header.Auth`,
/// `method.request.querystring.q`, `stageVariables.v`, `context.x`).
fn identity_value(
    src: &str,
    req: &HttpRequest,
    target: &RestTarget,
    ectx: &EventContext,
) -> Option<String> {
    let src = src.trim();
    let v = if let Some(h) = src.strip_prefix("method.request.header.") {
        req.header(h).map(String::from)
    } else if let Some(q) = src
        .strip_prefix("method.request.querystring.")
        .or_else(|| src.strip_prefix("method.request.multivaluequerystring."))
    {
        let all: Vec<String> = req
            .query_pairs()
            .into_iter()
            .filter(|(k, _)| k == q)
            .map(|(_, v)| v)
            .collect();
        (!all.is_empty()).then(|| all.join(","))
    } else if let Some(p) = src.strip_prefix("method.request.path.") {
        ectx.path_parameters
            .iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.clone())
    } else if let Some(s) = src.strip_prefix("stageVariables.") {
        target
            .variables
            .iter()
            .find(|(k, _)| k == s)
            .map(|(_, v)| v.clone())
    } else if let Some(c) = src.strip_prefix("context.") {
        match c {
            "stage" => Some(target.stage.clone()),
            "httpMethod" => Some(req.method.clone()),
            "resourcePath" => Some(ectx.resource_path.clone()),
            "requestId" => Some(ectx.request_id.clone()),
            "accountId" => Some(target.account.clone()),
            "apiId" => Some(ectx.api_id.clone()),
            _ => None,
        }
    } else {
        None
    };
    v.filter(|s| !s.is_empty())
}

/// What a successful authorization hands on.
pub(crate) struct Authorized {
    /// `requestContext.authorizer`.
    pub context: Value,
    /// The API key the authorizer chose (`usageIdentifierKey`), for `AUTHORIZER` key sources.
    pub usage_key: Option<String>,
}

impl ExecuteApi {
    /// Runs a method's `CUSTOM` authorizer: what to pass on, or the response to send.
    pub(crate) async fn rest_authorize(
        &self,
        target: &RestTarget,
        method: &Value,
        req: &HttpRequest,
        ectx: &EventContext,
    ) -> Result<Authorized, http::Response<HttpBody>> {
        let aid = method["authorizerId"].as_str().unwrap_or_default();
        let Some(authorizer) = target.authorizers.get(aid) else {
            return Err(configuration_error());
        };
        let token_kind = authorizer["type"] == "TOKEN";
        let ttl = authorizer["authorizerResultTtlInSeconds"]
            .as_i64()
            .unwrap_or(300);
        let sources: Vec<&str> = authorizer["identitySource"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut identity = Vec::new();
        for src in &sources {
            match identity_value(src, req, target, ectx) {
                Some(v) => identity.push(v),
                // A REQUEST authorizer without caching runs even with sources missing.
                None if !token_kind && ttl == 0 => {}
                None => return Err(unauthorized()),
            }
        }
        if token_kind && identity.is_empty() {
            return Err(unauthorized());
        }
        if token_kind
            && let Some(expr) = authorizer["identityValidationExpression"]
                .as_str()
                .filter(|e| !e.is_empty())
        {
            let ok = regex::Regex::new(&format!("^(?:{expr})$"))
                .map(|re| re.is_match(&identity[0]))
                .unwrap_or(false);
            if !ok {
                return Err(unauthorized());
            }
        }
        let method_arn = format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
            target.region, target.account, ectx.api_id, target.stage, req.method, req.path
        );
        let cache_key = (format!("rest/{}/{aid}", ectx.api_id), identity.join(","));
        let now = self.gw.clock.now_ms();
        let caching = ttl > 0 && !identity.is_empty();
        let cached = caching
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
                let event = if token_kind {
                    json!({
                        "type": "TOKEN",
                        "authorizationToken": identity[0],
                        "methodArn": method_arn,
                    })
                } else {
                    let mut e = tsumiki_proxy::event_v1(req, ectx);
                    if let Some(o) = e.as_object_mut() {
                        o.remove("body");
                        o.remove("isBase64Encoded");
                        o.insert("type".into(), json!("REQUEST"));
                        o.insert("methodArn".into(), json!(method_arn));
                    }
                    e
                };
                let function = function_target(
                    authorizer["authorizerUri"].as_str().unwrap_or_default(),
                    &target.account,
                    &target.region,
                );
                let payload = serde_json::to_vec(&event).unwrap_or_default();
                match self
                    .run_function(&function, payload, &ectx.request_id, 29_000)
                    .await
                {
                    Outcome::Ok(p) => match serde_json::from_slice::<Value>(&p) {
                        Ok(v) if v["policyDocument"].is_object() => v,
                        _ => return Err(configuration_error()),
                    },
                    Outcome::FunctionError(e) if says_unauthorized(&e) => {
                        return Err(unauthorized());
                    }
                    _ => return Err(configuration_error()),
                }
            }
        };
        let context = authorizer_context(&answer).ok_or_else(configuration_error)?;
        if caching {
            self.auth_cache
                .lock()
                .insert(cache_key, (now + ttl * 1000, answer.clone()));
        }
        match policy_decision(&answer["policyDocument"], &method_arn) {
            Some(true) => Ok(Authorized {
                context,
                usage_key: answer["usageIdentifierKey"].as_str().map(String::from),
            }),
            Some(false) => Err(gateway_response(
                403,
                "AccessDeniedException",
                json!("User is not authorized to access this resource with an explicit deny"),
            )),
            None => Err(gateway_response(
                403,
                "AccessDeniedException",
                json!("User is not authorized to access this resource"),
            )),
        }
    }
}

/// `requestContext.authorizer` for REST APIs: the `context` map flattened beside
/// `principalId`. AWS accepts only strings, numbers and booleans as context values; anything
/// else is an authorizer configuration error (`None`).
fn authorizer_context(answer: &Value) -> Option<Value> {
    let mut out = Map::new();
    if let Some(ctx) = answer.get("context").filter(|c| !c.is_null()) {
        for (k, v) in ctx.as_object()? {
            if v.is_object() || v.is_array() {
                return None;
            }
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert(
        "principalId".into(),
        answer.get("principalId").cloned().unwrap_or(Value::Null),
    );
    out.insert("integrationLatency".into(), json!(0));
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_flattens_primitives_only() {
        let a = json!({"principalId": "u1", "context": {"user": "alice", "n": 2, "ok": true}});
        let c = authorizer_context(&a).unwrap();
        assert_eq!(c["user"], "alice");
        assert_eq!(c["n"], 2);
        assert_eq!(c["principalId"], "u1");
        assert!(authorizer_context(&json!({"context": {"x": {"nested": 1}}})).is_none());
    }

    #[test]
    fn unauthorized_errors() {
        assert!(says_unauthorized(
            br#"{"errorMessage":"Unauthorized","errorType":"Exception"}"#
        ));
        assert!(!says_unauthorized(br#"{"errorMessage":"boom"}"#));
    }
}
