//! Bucket CORS as S3 applies it: a preflight `OPTIONS` is answered from the bucket's rules, and
//! a request carrying `Origin` gets the `Access-Control-*` headers of the first rule that
//! matches it. S3 evaluates rules in order and uses the first match; an origin or header
//! pattern may hold one `*`; methods match exactly; every requested header must be allowed.

use s3s::dto::{CORSConfiguration, CORSRule};

/// Why a preflight gets no `Access-Control-*` headers, as S3 words it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// 400 BadRequest.
    NoOrigin,
    /// 400 BadRequest.
    NoMethod,
    /// 403 AccessForbidden.
    NotEnabled,
    /// 403 AccessForbidden.
    NotAllowed,
}

impl Denied {
    pub(crate) fn status_code_message(&self) -> (u16, &'static str, &'static str) {
        match self {
            Denied::NoOrigin => (
                400,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            ),
            Denied::NoMethod => (
                400,
                "BadRequest",
                "Invalid Access-Control-Request-Method: null",
            ),
            Denied::NotEnabled => (
                403,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            ),
            Denied::NotAllowed => (
                403,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            ),
        }
    }
}

/// `pattern` with at most one `*` standing for any run of characters.
fn wildcard(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

fn rule_matches(rule: &CORSRule, origin: &str, method: &str, headers: &[String]) -> bool {
    rule.allowed_origins
        .iter()
        .any(|o| wildcard(o, origin, false))
        && rule.allowed_methods.iter().any(|m| m == method)
        && headers.iter().all(|h| {
            rule.allowed_headers
                .iter()
                .flatten()
                .any(|a| wildcard(a, h, true))
        })
}

/// The headers a browser listed in `Access-Control-Request-Headers`.
pub(crate) fn requested_headers(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The answer to a preflight: its headers, or why it is refused.
pub(crate) fn preflight(
    config: Option<&CORSConfiguration>,
    origin: Option<&str>,
    method: Option<&str>,
    headers: &[String],
) -> Result<Vec<(&'static str, String)>, Denied> {
    let origin = origin.ok_or(Denied::NoOrigin)?;
    let method = method.ok_or(Denied::NoMethod)?;
    let config = config.ok_or(Denied::NotEnabled)?;
    let rule = config
        .cors_rules
        .iter()
        .find(|r| rule_matches(r, origin, method, headers))
        .ok_or(Denied::NotAllowed)?;
    let mut out = allow_headers(rule, origin);
    if !headers.is_empty() {
        out.push(("access-control-allow-headers", headers.join(", ")));
    }
    out.push((
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
    ));
    Ok(out)
}

/// The headers S3 adds to an actual request from `origin`: those of the first rule that allows
/// the origin and the method, or none.
pub(crate) fn actual(
    config: Option<&CORSConfiguration>,
    origin: &str,
    method: &str,
) -> Vec<(&'static str, String)> {
    let Some(rule) = config.and_then(|c| {
        c.cors_rules
            .iter()
            .find(|r| rule_matches(r, origin, method, &[]))
    }) else {
        return Vec::new();
    };
    let mut out = allow_headers(rule, origin);
    out.push((
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
    ));
    out
}

fn allow_headers(rule: &CORSRule, origin: &str) -> Vec<(&'static str, String)> {
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    let mut out = vec![
        (
            "access-control-allow-origin",
            if any_origin {
                "*".to_string()
            } else {
                origin.to_string()
            },
        ),
        (
            "access-control-allow-methods",
            rule.allowed_methods.join(", "),
        ),
    ];
    // A wildcard origin cannot carry credentials in a browser, so S3 does not offer them.
    if !any_origin {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    if let Some(expose) = rule.expose_headers.as_ref().filter(|e| !e.is_empty()) {
        out.push(("access-control-expose-headers", expose.join(", ")));
    }
    if let Some(age) = rule.max_age_seconds {
        out.push(("access-control-max-age", age.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CORSRule {
        CORSRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: Some(headers.iter().map(|s| s.to_string()).collect()),
            expose_headers: Some(vec!["ETag".into()]),
            id: None,
            max_age_seconds: Some(300),
        }
    }

    fn config(rules: Vec<CORSRule>) -> CORSConfiguration {
        CORSConfiguration { cors_rules: rules }
    }

    fn get<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn wildcards_hold_one_star() {
        assert!(wildcard(
            "https://*.example.com",
            "https://a.example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "http://a.example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "https://.example.co",
            false
        ));
        assert!(wildcard("x-amz-*", "X-Amz-Date", true));
        assert!(wildcard("*", "", false));
        assert!(!wildcard("ab*ba", "aba", false));
    }

    #[test]
    fn first_matching_rule_answers_a_preflight() {
        let c = config(vec![
            rule(&["https://a.test"], &["PUT"], &["content-type"]),
            rule(&["*"], &["GET", "HEAD"], &[]),
        ]);
        let h = preflight(
            Some(&c),
            Some("https://a.test"),
            Some("PUT"),
            &requested_headers(Some("Content-Type")),
        )
        .unwrap();
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://a.test")
        );
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-max-age"), Some("300"));
        let h = preflight(Some(&c), Some("https://b.test"), Some("GET"), &[]).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn refusals_name_their_reason() {
        let c = config(vec![rule(&["https://a.test"], &["PUT"], &[])]);
        assert_eq!(
            preflight(Some(&c), None, Some("PUT"), &[]),
            Err(Denied::NoOrigin)
        );
        assert_eq!(
            preflight(Some(&c), Some("x"), None, &[]),
            Err(Denied::NoMethod)
        );
        assert_eq!(
            preflight(None, Some("x"), Some("PUT"), &[]),
            Err(Denied::NotEnabled)
        );
        assert_eq!(
            preflight(Some(&c), Some("https://a.test"), Some("DELETE"), &[]),
            Err(Denied::NotAllowed)
        );
        // A header the rule does not list refuses the whole preflight.
        assert_eq!(
            preflight(
                Some(&c),
                Some("https://a.test"),
                Some("PUT"),
                &requested_headers(Some("x-custom"))
            ),
            Err(Denied::NotAllowed)
        );
    }

    #[test]
    fn actual_requests_get_headers_only_when_allowed() {
        let c = config(vec![rule(&["https://a.test"], &["GET"], &[])]);
        assert!(!actual(Some(&c), "https://a.test", "GET").is_empty());
        assert!(actual(Some(&c), "https://a.test", "PUT").is_empty());
        assert!(actual(None, "https://a.test", "GET").is_empty());
    }
}
