//! JWT authorizers of HTTP APIs: the token from the identity source (a `Bearer ` prefix
//! dropped), its signature checked against the issuer's JWKS (found through
//! `{issuer}/.well-known/openid-configuration` -> `jwks_uri`, fetched over `http://` or `https://`,
//! kept two hours as AWS does and refetched when a token names an unknown `kid`), then `iss`,
//! `aud` (or `client_id`), `exp` and `nbf` against the clock, then the route's
//! `AuthorizationScopes` against the token's `scope`/`scp`. Failures answer 401
//! `{"message":"Unauthorized"}` with a `www-authenticate` header saying why; a token lacking
//! every required scope answers 403 `{"message":"Forbidden"}`. RS256/384/512 and ES256/384.

use std::collections::{HashMap, HashSet};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tsumiki_ports::http::HttpBody;
use tsumiki_proxy::{HttpRequest, ProxyResponse};

use crate::execute::{ExecuteApi, message, respond};

/// AWS keeps an issuer's public keys for two hours.
const JWKS_TTL_MS: i64 = 2 * 3600 * 1000;
const FETCH_TIMEOUT_MS: i64 = 5_000;

/// JWKS by issuer: (fetched at, clock ms; the `keys` array).
#[derive(Default)]
pub(crate) struct JwksCache(Mutex<HashMap<String, (i64, Vec<Value>)>>);

fn unauthorized(description: &str) -> http::Response<HttpBody> {
    respond(ProxyResponse {
        status: 401,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "www-authenticate".into(),
                format!(
                    r#"Bearer scope="" error="invalid_token" error_description="{description}""#
                ),
            ),
        ],
        body: br#"{"message":"Unauthorized"}"#.to_vec(),
    })
}

/// The token in `Authorization: Bearer <jwt>` (or a bare token, as AWS accepts).
fn token_from(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim(),
        _ => v,
    }
}

async fn fetch_json(url: &str) -> Result<Value, String> {
    let req = HttpRequest {
        method: "GET".into(),
        headers: vec![("accept".into(), "application/json".into())],
        ..Default::default()
    };
    let r = crate::http_proxy::forward(url, &req).await?;
    if r.status != 200 {
        return Err(format!("{url} answered {}", r.status));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("{url}: {e}"))
}

fn decoding_key(jwk: &Value) -> Option<DecodingKey> {
    let s = |k: &str| jwk[k].as_str();
    match s("kty")? {
        "RSA" => DecodingKey::from_rsa_components(s("n")?, s("e")?).ok(),
        "EC" => DecodingKey::from_ec_components(s("x")?, s("y")?).ok(),
        _ => None,
    }
}

/// The token's claims when its signature verifies with one of `keys` and its `iss`, `aud` or
/// `client_id`, `exp` and `nbf` hold at `now_s`; otherwise why not.
pub(crate) fn verify(
    token: &str,
    keys: &[Value],
    issuer: &str,
    audience: &[String],
    now_s: i64,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
    let alg = match header.alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => header.alg,
        Algorithm::ES256 | Algorithm::ES384 => header.alg,
        other => return Err(format!("the signing algorithm {other:?} is not supported")),
    };
    let candidates: Vec<&Value> = keys
        .iter()
        .filter(|k| match &header.kid {
            Some(kid) => k["kid"].as_str() == Some(kid.as_str()),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err("the signing key of the token is unknown".into());
    }
    let mut validation = Validation::new(alg);
    // Times and audiences are checked below, on tsumiki's clock and with AWS's client_id rule.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = candidates
        .iter()
        .filter_map(|k| decoding_key(k))
        .find_map(|key| jsonwebtoken::decode::<Value>(token, &key, &validation).ok())
        .ok_or("the token signature is invalid")?
        .claims;
    if claims["iss"].as_str() != Some(issuer) {
        return Err("the token issuer is invalid".into());
    }
    let auds: Vec<&str> = match &claims["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let client = claims["client_id"].as_str();
    let aud_ok = audience
        .iter()
        .any(|a| auds.contains(&a.as_str()) || client == Some(a.as_str()));
    if !aud_ok {
        return Err("the token does not have a valid audience".into());
    }
    match claims["exp"].as_f64() {
        Some(exp) if (exp as i64) > now_s => {}
        Some(_) => return Err("the token has expired".into()),
        None => return Err("the token has no expiration time".into()),
    }
    if claims["nbf"].as_f64().is_some_and(|nbf| nbf as i64 > now_s) {
        return Err("the token is not valid yet".into());
    }
    Ok(claims)
}

/// The token's scopes: `scope` (space-separated) or `scp` (a list or a string).
fn scopes_of(claims: &Value) -> Vec<String> {
    let split = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    match (&claims["scope"], &claims["scp"]) {
        (Value::String(s), _) => split(s),
        (_, Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        (_, Value::String(s)) => split(s),
        _ => Vec::new(),
    }
}

/// AWS hands claims to the integration as strings (`[a b]` for a list).
fn stringify(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        Value::Array(a) => json!(format!(
            "[{}]",
            a.iter()
                .map(|x| x
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        other => json!(other.to_string()),
    }
}

impl ExecuteApi {
    async fn issuer_keys(&self, issuer: &str, refresh: bool) -> Result<Vec<Value>, String> {
        let now = self.gw.clock.now_ms();
        if !refresh
            && let Some((at, keys)) = self.jwks.0.lock().get(issuer)
            && now - at < JWKS_TTL_MS
        {
            return Ok(keys.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let fetch = async {
            let config = fetch_json(&discovery).await?;
            let uri = config["jwks_uri"]
                .as_str()
                .ok_or_else(|| format!("{discovery} names no jwks_uri"))?;
            let jwks = fetch_json(uri).await?;
            jwks["keys"]
                .as_array()
                .cloned()
                .ok_or_else(|| format!("{uri} holds no keys"))
        };
        let keys = tokio::select! {
            r = fetch => r?,
            _ = self.gw.clock.sleep_ms(FETCH_TIMEOUT_MS) => return Err(format!("{discovery} timed out")),
        };
        self.jwks
            .0
            .lock()
            .insert(issuer.to_string(), (now, keys.clone()));
        Ok(keys)
    }

    /// Runs a route's JWT authorizer: `requestContext.authorizer`, or the response to send.
    pub(crate) async fn authorize_jwt(
        &self,
        authorizer: &Value,
        route: &Value,
        req: &HttpRequest,
        v2: bool,
    ) -> Result<Value, http::Response<HttpBody>> {
        let source = authorizer["IdentitySource"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or("$request.header.Authorization");
        let raw = match source.strip_prefix("$request.header.") {
            Some(h) => req.header(h),
            None => None,
        };
        let Some(token) = raw.map(token_from).filter(|t| !t.is_empty()) else {
            return Err(unauthorized("the token is missing"));
        };
        let config = &authorizer["JwtConfiguration"];
        let issuer = config["Issuer"].as_str().unwrap_or_default();
        let audience: Vec<String> = config["Audience"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let now_s = self.gw.clock.now_ms() / 1000;
        let keys = match self.issuer_keys(issuer, false).await {
            Ok(k) => k,
            Err(e) => {
                tracing::info!(error = %e, issuer, "Could not fetch the issuer's JWKS.");
                return Err(unauthorized("unable to fetch the issuer's signing keys"));
            }
        };
        let mut result = verify(token, &keys, issuer, &audience, now_s);
        // The issuer may have rotated its keys since they were fetched.
        if matches!(&result, Err(e) if e.contains("signing key"))
            && let Ok(fresh) = self.issuer_keys(issuer, true).await
        {
            result = verify(token, &fresh, issuer, &audience, now_s);
        }
        let claims = result.map_err(|e| unauthorized(&e))?;
        let scopes = scopes_of(&claims);
        let required: Vec<&str> = route["AuthorizationScopes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !required.is_empty() && !required.iter().any(|r| scopes.iter().any(|s| s == r)) {
            return Err(message(403, "Forbidden"));
        }
        let claims: Map<String, Value> = claims
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
            .unwrap_or_default();
        let scopes = if scopes.is_empty() {
            Value::Null
        } else {
            json!(scopes)
        };
        Ok(if v2 {
            json!({"jwt": {"claims": claims, "scopes": scopes}})
        } else {
            json!({"claims": claims, "scopes": scopes})
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefix_and_scopes() {
        assert_eq!(token_from("Bearer abc"), "abc");
        assert_eq!(token_from("bearer  abc "), "abc");
        assert_eq!(token_from("abc"), "abc");
        assert_eq!(scopes_of(&json!({"scope": "a b"})), vec!["a", "b"]);
        assert_eq!(scopes_of(&json!({"scp": ["x"]})), vec!["x"]);
        assert!(scopes_of(&json!({})).is_empty());
        assert_eq!(stringify(&json!(["a", "b"])), json!("[a b]"));
        assert_eq!(stringify(&json!(17)), json!("17"));
    }

    #[test]
    fn garbage_tokens_are_rejected() {
        let keys = vec![json!({"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"})];
        assert!(verify("not-a-jwt", &keys, "i", &[], 0).is_err());
        // A well-formed header naming an unknown key.
        let t = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im90aGVyIn0.e30.c2ln";
        assert_eq!(
            verify(t, &keys, "i", &[], 0).unwrap_err(),
            "the signing key of the token is unknown"
        );
    }
}
