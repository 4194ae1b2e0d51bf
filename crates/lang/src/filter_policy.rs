//! SNS subscription filter policies: the event-pattern language with SNS's own envelope and
//! limits, evaluated by [`Pattern`](crate::event_pattern::Pattern).
//!
//! What differs from EventBridge (see `tests/conformance/event-patterns/README.md`):
//!
//! * `FilterPolicyScope: MessageAttributes` (the default) matches the message attributes: a
//!   flat policy whose keys are attribute names. `String` attributes are strings, `Number`
//!   attributes numbers, `String.Array` attributes arrays (each element matched separately),
//!   `Binary` attributes are ignored. `MessageBody` matches the message as JSON, nested
//!   policies allowed.
//! * At most 5 keys (for body policies the top-level keys), and at most 150 combinations: the
//!   product of the sizes of the value arrays, summed over `$or` branches.
//! * `anything-but` with `suffix` is rejected, and so is `wildcard` (SNS does not document it).
//!
//! [`FilterPolicyError::reason`] is the text SNS puts after `FilterPolicy: ` in its
//! `InvalidParameter` message.

use serde_json::{Map, Value};

use crate::event_pattern::Pattern;

/// Where a policy looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The message attributes (the default).
    MessageAttributes,
    /// The message body, as JSON.
    MessageBody,
}

/// Why a filter policy is not valid, in SNS's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterPolicyError(String);

impl FilterPolicyError {
    /// The reason, e.g. `Filter policy can not have more than 5 keys`.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FilterPolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterPolicyError {}

/// SNS's limits.
pub const MAX_KEYS: usize = 5;
/// The largest number of value combinations a policy may expand to.
pub const MAX_COMBINATIONS: u64 = 150;

/// One message attribute as the filter sees it.
#[derive(Clone, Debug)]
pub struct Attribute<'a> {
    /// The attribute's name.
    pub name: &'a str,
    /// `String`, `Number`, `Binary`, `String.Array`, or one of those with a custom suffix.
    pub data_type: &'a str,
    /// The string value (absent for `Binary`).
    pub value: Option<&'a str>,
}

/// A validated filter policy.
#[derive(Clone, Debug)]
pub struct FilterPolicy {
    /// `None` for `{}`, which lets every message through.
    pattern: Option<Pattern>,
    scope: Scope,
}

impl FilterPolicy {
    /// Parses and validates `text` for `scope`.
    pub fn parse(text: &str, scope: Scope) -> Result<FilterPolicy, FilterPolicyError> {
        let err = |s: &str| FilterPolicyError(s.to_string());
        let value: Value = serde_json::from_str(text).map_err(|e| {
            FilterPolicyError(format!(
                "failed to parse JSON. {}",
                capitalize(&e.to_string())
            ))
        })?;
        let Value::Object(top) = &value else {
            return Err(err("Filter policy must be a JSON object"));
        };
        if top.is_empty() {
            return Ok(FilterPolicy {
                pattern: None,
                scope,
            });
        }
        if scope == Scope::MessageAttributes {
            check_flat(top)?;
        }
        check_operators(&value)?;
        if count_keys(top) > MAX_KEYS {
            return Err(err("Filter policy can not have more than 5 keys"));
        }
        if combinations(top) > MAX_COMBINATIONS {
            return Err(err("Filter policy is too complex"));
        }
        let pattern = Pattern::parse(text).map_err(|e| err(e.reason()))?;
        Ok(FilterPolicy {
            pattern: Some(pattern),
            scope,
        })
    }

    /// The policy's scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether a message with these attributes passes (scope `MessageAttributes`).
    pub fn matches_attributes(&self, attributes: &[Attribute<'_>]) -> bool {
        let Some(pattern) = &self.pattern else {
            return true;
        };
        let mut object = Map::new();
        for a in attributes {
            let Some(text) = a.value else { continue };
            let base = a.data_type.split('.').next().unwrap_or_default();
            let value = if a.data_type.starts_with("String.Array") {
                match serde_json::from_str::<Value>(text) {
                    Ok(v @ Value::Array(_)) => v,
                    _ => Value::String(text.to_string()),
                }
            } else if base == "Number" {
                match serde_json::from_str::<Value>(text.trim()) {
                    Ok(v @ Value::Number(_)) => v,
                    _ => Value::String(text.to_string()),
                }
            } else if base == "String" {
                Value::String(text.to_string())
            } else {
                continue;
            };
            object.insert(a.name.to_string(), value);
        }
        let text = Value::Object(object).to_string();
        pattern.matches(&text).unwrap_or(false)
    }

    /// Whether a message body passes (scope `MessageBody`); a body that is not a JSON object
    /// never does.
    pub fn matches_body(&self, body: &str) -> bool {
        match &self.pattern {
            None => true,
            Some(p) => p.matches(body).unwrap_or(false),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn is_or(key: &str, value: &Value) -> bool {
    key == "$or"
        && value
            .as_array()
            .is_some_and(|a| a.len() >= 2 && a.iter().all(Value::is_object))
}

/// Attribute policies are flat: every key holds an array (or is an `$or` of flat policies).
fn check_flat(object: &Map<String, Value>) -> Result<(), FilterPolicyError> {
    for (key, value) in object {
        if is_or(key, value) {
            for branch in value.as_array().into_iter().flatten() {
                if let Value::Object(o) = branch {
                    check_flat(o)?;
                }
            }
        } else if value.is_object() {
            return Err(FilterPolicyError(
                "Filter policy scope MessageAttributes does not support nested filter policy"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn check_operators(value: &Value) -> Result<(), FilterPolicyError> {
    match value {
        Value::Object(o) => {
            for (key, v) in o {
                match key.as_str() {
                    "wildcard" => {
                        return Err(FilterPolicyError("Unrecognized match type wildcard".into()));
                    }
                    "anything-but" => {
                        if let Value::Object(inner) = v {
                            if inner.contains_key("suffix") {
                                return Err(FilterPolicyError(
                                    "Unsupported anything-but pattern: suffix".into(),
                                ));
                            }
                            if inner.contains_key("wildcard") {
                                return Err(FilterPolicyError(
                                    "Unsupported anything-but pattern: wildcard".into(),
                                ));
                            }
                        }
                    }
                    _ => {}
                }
                check_operators(v)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(check_operators),
        _ => Ok(()),
    }
}

/// Top-level keys; an `$or` counts the keys of its branches.
fn count_keys(object: &Map<String, Value>) -> usize {
    let mut keys = std::collections::BTreeSet::new();
    collect_keys(object, &mut keys);
    keys.len()
}

fn collect_keys<'a>(
    object: &'a Map<String, Value>,
    keys: &mut std::collections::BTreeSet<&'a str>,
) {
    for (key, value) in object {
        if is_or(key, value) {
            for branch in value.as_array().into_iter().flatten() {
                if let Value::Object(o) = branch {
                    collect_keys(o, keys);
                }
            }
        } else {
            keys.insert(key);
        }
    }
}

/// The number of value combinations: the product of the leaf arrays' sizes, an `$or` adding
/// up its branches.
fn combinations(object: &Map<String, Value>) -> u64 {
    let mut total: u64 = 1;
    for (key, value) in object {
        let n = if is_or(key, value) {
            value
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| b.as_object().map_or(1, combinations))
                .fold(0u64, |a, b| a.saturating_add(b))
        } else {
            match value {
                Value::Array(a) => a.len().max(1) as u64,
                Value::Object(o) => combinations(o),
                _ => 1,
            }
        };
        total = total.saturating_mul(n);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(list: &'a [(&'a str, &'a str, &'a str)]) -> Vec<Attribute<'a>> {
        list.iter()
            .map(|(name, data_type, value)| Attribute {
                name,
                data_type,
                value: Some(value),
            })
            .collect()
    }

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str, &'a str)], bool);

    /// (policy, attributes, expected): the data-driven table.
    #[test]
    fn matching_table() {
        let cases: &[Case<'_>] = &[
            (r#"{"color": ["red"]}"#, &[("color", "String", "red")], true),
            (
                r#"{"color": ["red"]}"#,
                &[("color", "String", "blue")],
                false,
            ),
            (r#"{"color": ["red"]}"#, &[], false),
            (
                r#"{"price": [{"numeric": [">", 10]}]}"#,
                &[("price", "Number", "11.5")],
                true,
            ),
            (
                r#"{"price": [{"numeric": [">", 10]}]}"#,
                &[("price", "Number", "9")],
                false,
            ),
            // A number sent as a String attribute is a string.
            (
                r#"{"price": [{"numeric": [">", 10]}]}"#,
                &[("price", "String", "11")],
                false,
            ),
            (
                r#"{"tags": ["b"]}"#,
                &[("tags", "String.Array", r#"["a","b"]"#)],
                true,
            ),
            (
                r#"{"tags": ["c"]}"#,
                &[("tags", "String.Array", r#"["a","b"]"#)],
                false,
            ),
            (
                r#"{"color": [{"anything-but": "red"}]}"#,
                &[("color", "String", "blue")],
                true,
            ),
            (r#"{"color": [{"anything-but": "red"}]}"#, &[], false),
            (r#"{"color": [{"exists": false}]}"#, &[], true),
            (
                r#"{"color": [{"prefix": "re"}]}"#,
                &[("color", "String", "red")],
                true,
            ),
            (
                r#"{"ip": [{"cidr": "10.0.0.0/24"}]}"#,
                &[("ip", "String", "10.0.0.7")],
                true,
            ),
            (
                r#"{"blob": [{"exists": true}]}"#,
                &[("blob", "Binary", "AP8=")],
                false,
            ),
            (
                r#"{"$or": [{"a": ["1"]}, {"b": ["2"]}]}"#,
                &[("b", "String", "2")],
                true,
            ),
            (r#"{}"#, &[], true),
        ];
        for (policy, list, expected) in cases {
            let p = FilterPolicy::parse(policy, Scope::MessageAttributes)
                .unwrap_or_else(|e| panic!("{policy}: {e}"));
            assert_eq!(
                p.matches_attributes(&attrs(list)),
                *expected,
                "{policy} {list:?}"
            );
        }
    }

    #[test]
    fn body_scope() {
        let p = FilterPolicy::parse(
            r#"{"order": {"kind": ["book"], "total": [{"numeric": [">=", 100]}]}}"#,
            Scope::MessageBody,
        )
        .unwrap();
        assert!(p.matches_body(r#"{"order": {"kind": "book", "total": 120}}"#));
        assert!(!p.matches_body(r#"{"order": {"kind": "book", "total": 99}}"#));
        assert!(!p.matches_body("not json"));
    }

    #[test]
    fn validation_reasons() {
        let cases = [
            (
                r#"{"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}"#,
                Scope::MessageAttributes,
                "Filter policy can not have more than 5 keys",
            ),
            (
                r#"{"a":[1,2,3,4,5,6],"b":[1,2,3,4,5],"c":[1,2,3,4,5,6]}"#,
                Scope::MessageAttributes,
                "Filter policy is too complex",
            ),
            (
                r#"{"a": {"b": ["c"]}}"#,
                Scope::MessageAttributes,
                "Filter policy scope MessageAttributes does not support nested filter policy",
            ),
            (
                r#"{"a": [{"anything-but": {"suffix": "x"}}]}"#,
                Scope::MessageAttributes,
                "Unsupported anything-but pattern: suffix",
            ),
            (
                r#"[1]"#,
                Scope::MessageBody,
                "Filter policy must be a JSON object",
            ),
            (
                r#"{"a": []}"#,
                Scope::MessageBody,
                "Empty arrays are not allowed",
            ),
        ];
        for (policy, scope, reason) in cases {
            let e = FilterPolicy::parse(policy, scope).unwrap_err();
            assert_eq!(e.reason(), reason, "{policy}");
        }
        // Exactly 150 combinations is allowed; nested body keys do not count as top-level keys.
        FilterPolicy::parse(
            r#"{"a":[1,2,3,4,5,6],"b":[1,2,3,4,5],"c":[1,2,3,4,5]}"#,
            Scope::MessageAttributes,
        )
        .unwrap();
        FilterPolicy::parse(
            r#"{"x": {"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}}"#,
            Scope::MessageBody,
        )
        .unwrap();
        assert!(
            FilterPolicy::parse("{", Scope::MessageBody)
                .unwrap_err()
                .reason()
                .starts_with("failed to parse JSON.")
        );
    }
}
