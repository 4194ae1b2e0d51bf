//! Reading decoded input values, and finding the log group a request names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tsumiki_core::{AwsError, RequestContext};

use crate::Logs;
use crate::error::{group_not_found, invalid_parameter};
use crate::state::{GroupCell, GroupKey};

pub fn opt_str<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// A required member; the protocol layer has checked it is there, so this only guards
/// callers that skip validation.
pub fn req_str<'a>(input: &'a Value, key: &str) -> Result<&'a str, AwsError> {
    opt_str(input, key)
        .ok_or_else(|| invalid_parameter(format!("Missing required parameter {key}.")))
}

pub fn opt_int(input: &Value, key: &str) -> Option<i64> {
    input.get(key).and_then(Value::as_i64)
}

pub fn opt_bool(input: &Value, key: &str) -> Option<bool> {
    input.get(key).and_then(Value::as_bool)
}

pub fn string_map(input: &Value, key: &str) -> BTreeMap<String, String> {
    input
        .get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn string_list(input: &Value, key: &str) -> Vec<String> {
    input
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The group a log group ARN names: `arn:aws:logs:REGION:ACCOUNT:log-group:NAME`, with or
/// without the `:*` DescribeLogGroups appends.
pub fn key_from_arn(arn: &str) -> Option<GroupKey> {
    let (service, region, account, resource) = tsumiki_core::ids::parse_arn(arn)?;
    let name = resource.strip_prefix("log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    if service != "logs" || name.is_empty() || name.contains(':') {
        return None;
    }
    Some(GroupKey {
        account: account.into(),
        region: region.into(),
        name: name.into(),
    })
}

pub fn key_for_name(ctx: &RequestContext, name: &str) -> GroupKey {
    GroupKey {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: name.into(),
    }
}

impl Logs {
    /// The group `logGroupName` names.
    pub(crate) fn group_named(
        &self,
        ctx: &RequestContext,
        input: &Value,
    ) -> Result<Arc<GroupCell>, AwsError> {
        let name = req_str(input, "logGroupName")?;
        self.state
            .get(&key_for_name(ctx, name))
            .ok_or_else(group_not_found)
    }

    /// The group `logGroupName` or `logGroupIdentifier` (a name or an ARN) names; exactly one
    /// of the two must be given.
    pub(crate) fn group_identified(
        &self,
        ctx: &RequestContext,
        input: &Value,
    ) -> Result<Arc<GroupCell>, AwsError> {
        let key = match (
            opt_str(input, "logGroupName"),
            opt_str(input, "logGroupIdentifier"),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid_parameter(
                    "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
                ));
            }
            (None, None) => {
                return Err(invalid_parameter(
                    "Should provide either name or ARN of the log group.",
                ));
            }
            (Some(name), None) => key_for_name(ctx, name),
            (None, Some(id)) if id.starts_with("arn:") => {
                key_from_arn(id).ok_or_else(group_not_found)?
            }
            (None, Some(name)) => key_for_name(ctx, name),
        };
        self.state.get(&key).ok_or_else(group_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let k = key_from_arn("arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f:*")
            .expect("key");
        assert_eq!(
            (k.account.as_str(), k.region.as_str(), k.name.as_str()),
            ("123456789012", "eu-west-1", "/aws/lambda/f")
        );
        assert_eq!(
            key_from_arn("arn:aws:logs:eu-west-1:123456789012:log-group:g")
                .expect("key")
                .arn(),
            "arn:aws:logs:eu-west-1:123456789012:log-group:g"
        );
        assert!(key_from_arn("arn:aws:logs:r:1:destination:d").is_none());
        assert!(key_from_arn("arn:aws:sqs:r:1:log-group:g").is_none());
        assert!(key_from_arn("arn:aws:logs:r:1:log-group:g:log-stream:s").is_none());
        assert!(key_from_arn("nope").is_none());
    }
}
