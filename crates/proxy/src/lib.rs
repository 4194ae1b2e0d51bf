//! AWS's Lambda proxy payloads, shared by API Gateway (HTTP APIs and REST APIs) and Lambda
//! function URLs: the event a function receives for an HTTP request (payload format versions
//! 1.0 and 2.0) and the mapping of its response back to HTTP. Pure: no IO, no clock.
//!
//! The shapes follow AWS's "Working with AWS Lambda proxy integrations for HTTP APIs" and
//! "Lambda proxy integration" (REST) pages: 2.0 lowercases header names and joins repeated
//! headers and query parameters with commas, moves `Cookie` into `cookies`, and omits empty
//! members; 1.0 keeps the last value in `headers`/`queryStringParameters`, every value in the
//! `multiValue*` members, and writes `null` for empty ones.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

/// An HTTP request as a proxy integration sees it.
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    pub method: String,
    /// The path as the function sees it (without the stage segment or routing prefix),
    /// still percent-encoded.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Header names as received, in order (repeated names repeat).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: String,
    /// `HTTP/1.1` and the like.
    pub protocol: String,
}

impl HttpRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query parameters decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode_component(k), decode_component(v))
            })
            .collect()
    }

    /// The body as the event carries it, and whether it is base64.
    fn event_body(&self) -> (Value, bool) {
        if self.body.is_empty() {
            return (Value::Null, false);
        }
        match std::str::from_utf8(&self.body) {
            Ok(text) if is_text(self.header("content-type"), true) => (json!(text), false),
            _ => (json!(B64.encode(&self.body)), true),
        }
    }
}

fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a body of this content type travels as text (else base64). A request without a
/// content type whose bytes are UTF-8 counts as text.
pub fn is_text(content_type: Option<&str>, absent: bool) -> bool {
    let Some(ct) = content_type else {
        return absent;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.contains("x-www-form-urlencoded")
        || ct.contains("yaml")
}

/// What API Gateway (or a function URL) adds to the request in the event.
#[derive(Clone, Debug, Default)]
pub struct EventContext {
    pub account_id: String,
    pub api_id: String,
    /// `{apiId}.execute-api.localhost` and the like.
    pub domain_name: String,
    pub request_id: String,
    /// `GET /items/{id}`, `$default`.
    pub route_key: String,
    /// `$default` or the stage's name.
    pub stage: String,
    /// Epoch milliseconds of the request.
    pub time_ms: i64,
    pub path_parameters: Vec<(String, String)>,
    pub stage_variables: Vec<(String, String)>,
    /// `requestContext.authorizer` (what an authorizer returned), if any.
    pub authorizer: Option<Value>,
    /// For 1.0: the resource (`/items/{id}`); REST APIs also a resource id.
    pub resource_path: String,
    pub resource_id: Option<String>,
    /// For REST APIs, the path as the caller sent it (with the stage), for
    /// `requestContext.path`.
    pub full_path: Option<String>,
}

/// AWS's CLF-style request time: `12/Mar/2020:19:03:58 +0000`.
pub fn clf_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%d/%b/%Y:%H:%M:%S +0000")
        .to_string()
}

fn map_or_absent(pairs: &[(String, String)]) -> Option<Value> {
    if pairs.is_empty() {
        return None;
    }
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.clone(), json!(v));
    }
    Some(Value::Object(m))
}

fn domain_prefix(domain: &str) -> &str {
    domain.split('.').next().unwrap_or(domain)
}

/// The payload format 2.0 event.
pub fn event_v2(req: &HttpRequest, ctx: &EventContext) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (k, v) in &req.headers {
        let name = k.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                v.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| json!(c)),
            );
            continue;
        }
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                headers.insert(name, json!(v));
            }
        }
    }
    let mut query = Map::new();
    for (k, v) in req.query_pairs() {
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, json!(v));
            }
        }
    }
    let (body, b64) = req.event_body();
    let mut rc = json!({
        "accountId": ctx.account_id,
        "apiId": ctx.api_id,
        "domainName": ctx.domain_name,
        "domainPrefix": domain_prefix(&ctx.domain_name),
        "http": {
            "method": req.method,
            "path": req.path,
            "protocol": req.protocol,
            "sourceIp": req.source_ip,
            "userAgent": req.header("user-agent").unwrap_or(""),
        },
        "requestId": ctx.request_id,
        "routeKey": ctx.route_key,
        "stage": ctx.stage,
        "time": clf_time(ctx.time_ms),
        "timeEpoch": ctx.time_ms,
    });
    if let Some(a) = &ctx.authorizer {
        rc["authorizer"] = a.clone();
    }
    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(ctx.route_key));
    event.insert("rawPath".into(), json!(req.path));
    event.insert("rawQueryString".into(), json!(req.query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert("requestContext".into(), rc);
    if let Some(p) = map_or_absent(&ctx.path_parameters) {
        event.insert("pathParameters".into(), p);
    }
    if let Some(s) = map_or_absent(&ctx.stage_variables) {
        event.insert("stageVariables".into(), s);
    }
    if !body.is_null() {
        event.insert("body".into(), body);
    }
    event.insert("isBase64Encoded".into(), json!(b64));
    Value::Object(event)
}

/// The payload format 1.0 event (REST APIs' proxy event; HTTP APIs with version 1.0).
pub fn event_v1(req: &HttpRequest, ctx: &EventContext) -> Value {
    let mut headers = Map::new();
    let mut multi_headers: Map<String, Value> = Map::new();
    for (k, v) in &req.headers {
        headers.insert(k.clone(), json!(v));
        push_multi(&mut multi_headers, k, v);
    }
    let mut query = Map::new();
    let mut multi_query: Map<String, Value> = Map::new();
    for (k, v) in req.query_pairs() {
        query.insert(k.clone(), json!(v));
        push_multi(&mut multi_query, &k, &v);
    }
    let null_if_empty = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let (body, b64) = req.event_body();
    let mut rc = json!({
        "accountId": ctx.account_id,
        "apiId": ctx.api_id,
        "domainName": ctx.domain_name,
        "domainPrefix": domain_prefix(&ctx.domain_name),
        "extendedRequestId": ctx.request_id,
        "httpMethod": req.method,
        "identity": {
            "accessKey": null, "accountId": null, "caller": null, "cognitoAuthenticationProvider": null,
            "cognitoAuthenticationType": null, "cognitoIdentityId": null, "cognitoIdentityPoolId": null,
            "principalOrgId": null, "sourceIp": req.source_ip, "user": null,
            "userAgent": req.header("user-agent").unwrap_or(""), "userArn": null,
        },
        "path": ctx.full_path.clone().unwrap_or_else(|| req.path.clone()),
        "protocol": req.protocol,
        "requestId": ctx.request_id,
        "requestTime": clf_time(ctx.time_ms),
        "requestTimeEpoch": ctx.time_ms,
        "resourceId": ctx.resource_id,
        "resourcePath": ctx.resource_path,
        "stage": ctx.stage,
    });
    if let Some(a) = &ctx.authorizer {
        rc["authorizer"] = a.clone();
    }
    json!({
        "version": "1.0",
        "resource": ctx.resource_path,
        "path": req.path,
        "httpMethod": req.method,
        "headers": null_if_empty(headers),
        "multiValueHeaders": null_if_empty(multi_headers),
        "queryStringParameters": null_if_empty(query),
        "multiValueQueryStringParameters": null_if_empty(multi_query),
        "requestContext": rc,
        "pathParameters": map_or_absent(&ctx.path_parameters),
        "stageVariables": map_or_absent(&ctx.stage_variables),
        "body": body,
        "isBase64Encoded": b64,
    })
}

fn push_multi(m: &mut Map<String, Value>, k: &str, v: &str) {
    match m.get_mut(k) {
        Some(Value::Array(a)) => a.push(json!(v)),
        _ => {
            m.insert(k.to_string(), json!([v]));
        }
    }
}

/// What the caller receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a function's response could not be mapped (API Gateway answers 502).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn status_of(v: &Value) -> Result<u16, Malformed> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if (100..=599).contains(&n) => Ok(n as u16),
        _ => Err(Malformed(format!("invalid statusCode {v}"))),
    }
}

fn body_of(r: &Map<String, Value>) -> Result<Vec<u8>, Malformed> {
    let b64 = r
        .get("isBase64Encoded")
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    let text = match r.get("body") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s.clone(),
        // AWS requires a string; a structured body is a malformed response.
        Some(other) => return Err(Malformed(format!("body must be a string, got {other}"))),
    };
    if b64 {
        B64.decode(text.trim())
            .map_err(|e| Malformed(format!("body is not base64: {e}")))
    } else {
        Ok(text.into_bytes())
    }
}

fn headers_of(r: &Map<String, Value>) -> Result<Vec<(String, String)>, Malformed> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(h) = r.get("headers").filter(|v| !v.is_null()) {
        let h = h
            .as_object()
            .ok_or_else(|| Malformed("headers must be an object".into()))?;
        for (k, v) in h {
            let v =
                value_text(v).ok_or_else(|| Malformed(format!("header {k} is not a string")))?;
            out.push((k.clone(), v));
        }
    }
    if let Some(h) = r.get("multiValueHeaders").filter(|v| !v.is_null()) {
        let h = h
            .as_object()
            .ok_or_else(|| Malformed("multiValueHeaders must be an object".into()))?;
        for (k, vs) in h {
            let vs = vs
                .as_array()
                .ok_or_else(|| Malformed(format!("multiValueHeaders.{k} is not a list")))?;
            // multiValueHeaders win over headers of the same name, as AWS merges them.
            out.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            for v in vs {
                let v = value_text(v)
                    .ok_or_else(|| Malformed(format!("header {k} is not a string")))?;
                out.push((k.clone(), v));
            }
        }
    }
    Ok(out)
}

/// Maps a payload format 2.0 response. A JSON object with `statusCode` is the structured form;
/// any other valid JSON becomes a 200 `application/json` response whose body is the payload.
pub fn response_v2(payload: &[u8]) -> Result<ProxyResponse, Malformed> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Malformed(format!("the response is not JSON: {e}")))?;
    let structured = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(r) = structured else {
        // A JSON string body is its text, as AWS passes a returned string through.
        let body = match &value {
            Value::String(s) => s.clone().into_bytes(),
            _ => payload.to_vec(),
        };
        return Ok(ProxyResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        });
    };
    let status = status_of(&r["statusCode"])?;
    let mut headers = headers_of(r)?;
    if let Some(c) = r.get("cookies").filter(|v| !v.is_null()) {
        let c = c
            .as_array()
            .ok_or_else(|| Malformed("cookies must be a list".into()))?;
        for v in c {
            let v = v
                .as_str()
                .ok_or_else(|| Malformed("a cookie is not a string".into()))?;
            headers.push(("set-cookie".into(), v.to_string()));
        }
    }
    let body = body_of(r)?;
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        && !body.is_empty()
    {
        headers.push(("content-type".into(), "text/plain; charset=utf-8".into()));
    }
    Ok(ProxyResponse {
        status,
        headers,
        body,
    })
}

/// Maps a payload format 1.0 response: `statusCode` is required.
pub fn response_v1(payload: &[u8]) -> Result<ProxyResponse, Malformed> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Malformed(format!("the response is not JSON: {e}")))?;
    let r = value
        .as_object()
        .ok_or_else(|| Malformed("the response is not an object".into()))?;
    let status = status_of(
        r.get("statusCode")
            .ok_or_else(|| Malformed("statusCode is missing".into()))?,
    )?;
    let mut headers = headers_of(r)?;
    let body = body_of(r)?;
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Ok(ProxyResponse {
        status,
        headers,
        body,
    })
}

/// The `Access-Control-*` headers for a request from `origin` under a CORS configuration
/// (API Gateway's `CorsConfiguration` and Lambda's `Cors` share member names), or none when the
/// origin is not allowed. `preflight` answers an `OPTIONS` preflight.
pub fn cors_headers(cors: &Value, origin: &str, preflight: bool) -> Vec<(String, String)> {
    let strings = |m: &str| -> Vec<String> {
        cors[m]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let origins = strings("AllowOrigins");
    let allowed = if origins.iter().any(|o| o == "*") {
        "*".to_string()
    } else if origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
        origin.to_string()
    } else {
        return Vec::new();
    };
    let mut h = vec![("access-control-allow-origin".to_string(), allowed)];
    if cors["AllowCredentials"] == true {
        h.push(("access-control-allow-credentials".into(), "true".into()));
    }
    if preflight {
        let methods = strings("AllowMethods");
        if !methods.is_empty() {
            h.push(("access-control-allow-methods".into(), methods.join(",")));
        }
        let headers = strings("AllowHeaders");
        if !headers.is_empty() {
            h.push(("access-control-allow-headers".into(), headers.join(",")));
        }
        if let Some(age) = cors["MaxAge"].as_i64().filter(|a| *a >= 0) {
            h.push(("access-control-max-age".into(), age.to_string()));
        }
    } else {
        let expose = strings("ExposeHeaders");
        if !expose.is_empty() {
            h.push(("access-control-expose-headers".into(), expose.join(",")));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/items/42".into(),
            query: "a=1&a=2&b=x%20y".into(),
            headers: vec![
                ("Host".into(), "abc.execute-api.localhost".into()),
                ("X-Multi".into(), "one".into()),
                ("x-multi".into(), "two".into()),
                ("Cookie".into(), "c1=v1; c2=v2".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: b"{\"k\":1}".to_vec(),
            source_ip: "127.0.0.1".into(),
            protocol: "HTTP/1.1".into(),
        }
    }

    fn context() -> EventContext {
        EventContext {
            account_id: "000000000000".into(),
            api_id: "abc".into(),
            domain_name: "abc.execute-api.localhost".into(),
            request_id: "r1".into(),
            route_key: "POST /items/{id}".into(),
            stage: "$default".into(),
            time_ms: 1_583_348_638_390,
            path_parameters: vec![("id".into(), "42".into())],
            resource_path: "/items/{id}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn v2_event_joins_repeats_moves_cookies_and_omits_empties() {
        let e = event_v2(&request(), &context());
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["headers"]["x-multi"], "one,two");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e["pathParameters"], json!({"id": "42"}));
        assert!(e.get("stageVariables").is_none());
        assert_eq!(e["requestContext"]["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(e["requestContext"]["domainPrefix"], "abc");
        assert_eq!(e["body"], "{\"k\":1}");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn v1_event_keeps_last_and_all_values_and_nulls_empties() {
        let mut r = request();
        r.body = vec![0, 159, 146, 150];
        r.headers.retain(|(k, _)| k != "content-type");
        let e = event_v1(&r, &context());
        assert_eq!(e["resource"], "/items/{id}");
        assert_eq!(e["httpMethod"], "POST");
        assert_eq!(e["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(
            e["multiValueQueryStringParameters"],
            json!({"a": ["1", "2"], "b": ["x y"]})
        );
        assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["one"]));
        assert_eq!(e["stageVariables"], Value::Null);
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], B64.encode([0u8, 159, 146, 150]));
        assert_eq!(e["requestContext"]["resourcePath"], "/items/{id}");
    }

    #[test]
    fn v2_responses() {
        let r = response_v2(
            br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["s=1","t=2"],"body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"hi");
        assert!(r.headers.contains(&("set-cookie".into(), "t=2".into())));
        let plain = response_v2(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, br#"{"hello":"world"}"#);
        assert_eq!(
            plain.headers,
            vec![("content-type".into(), "application/json".into())]
        );
        let bin =
            response_v2(br#"{"statusCode":200,"body":"AJ+Slg==","isBase64Encoded":true}"#).unwrap();
        assert_eq!(bin.body, vec![0, 159, 146, 150]);
        assert!(response_v2(b"not json").is_err());
        assert!(response_v2(br#"{"statusCode":"abc"}"#).is_err());
    }

    #[test]
    fn v1_responses_need_a_status_and_merge_multi_value_headers() {
        assert!(response_v1(br#"{"body":"x"}"#).is_err());
        let r = response_v1(
            br#"{"statusCode":200,"headers":{"a":"1","b":"2"},"multiValueHeaders":{"b":["3","4"]},"body":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            r.headers,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("b".into(), "4".into()),
                ("content-type".into(), "application/json".into())
            ]
        );
    }
}
