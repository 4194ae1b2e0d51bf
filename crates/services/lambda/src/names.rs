//! Function names as callers give them: a name, a partial ARN (`123456789012:function:name`)
//! or a full ARN, each with an optional `:qualifier` (version or alias).

use serde_json::Value;
use tsumiki_core::{AwsError, RequestContext};

use crate::errors::{invalid, validation};

const FUNCTION_NAME_PATTERN: &str = "Member must satisfy regular expression pattern: \
    (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?\
    ([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

/// A resolved reference to a function in the caller's account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(is_name_char)
}

fn valid_qualifier(q: &str) -> bool {
    q == "$LATEST" || (!q.is_empty() && q.len() <= 128 && q.chars().all(is_name_char))
}

/// Parses `raw` (the `FunctionName` member) and merges the `Qualifier` member.
pub(crate) fn parse(
    ctx: &RequestContext,
    raw: &str,
    qualifier: Option<&str>,
) -> Result<FunctionRef, AwsError> {
    let bad = || validation("functionName", raw, FUNCTION_NAME_PATTERN);
    let parts: Vec<&str> = raw.split(':').collect();
    let (account, region, name, derived) = match parts.as_slice() {
        [name] => (None, None, *name, None),
        [name, q] => (None, None, *name, Some(*q)),
        [account, "function", name] => (Some(*account), None, *name, None),
        [account, "function", name, q] => (Some(*account), None, *name, Some(*q)),
        ["arn", _, "lambda", region, account, "function", name] => {
            (Some(*account), Some(*region), *name, None)
        }
        ["arn", _, "lambda", region, account, "function", name, q] => {
            (Some(*account), Some(*region), *name, Some(*q))
        }
        _ => return Err(bad()),
    };
    // Lookups accept longer names than creation (64) allows, as AWS's pattern does.
    if name.is_empty() || name.len() > 140 || !name.chars().all(is_name_char) {
        return Err(bad());
    }
    if let Some(a) = account
        && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(q) = derived
        && !valid_qualifier(q)
    {
        return Err(bad());
    }
    // A function of another account or region is not visible from here.
    if account.is_some_and(|a| a != ctx.account) || region.is_some_and(|r| r != ctx.region) {
        return Err(crate::errors::function_not_found(&format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            region.unwrap_or(&ctx.region),
            account.unwrap_or(&ctx.account)
        )));
    }
    let qualifier = match (derived, qualifier.filter(|q| !q.is_empty())) {
        (Some(d), Some(q)) if d != q => {
            return Err(invalid(
                "The derived qualifier from the function name does not match the specified qualifier.",
            ));
        }
        (Some(d), _) => Some(d.to_string()),
        (None, Some(q)) => {
            if !valid_qualifier(q) {
                return Err(validation(
                    "qualifier",
                    q,
                    "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)",
                ));
            }
            Some(q.to_string())
        }
        (None, None) => None,
    };
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier,
    })
}

/// The function a request's `FunctionName` and `Qualifier` members name.
pub(crate) fn of_input(ctx: &RequestContext, input: &Value) -> Result<FunctionRef, AwsError> {
    parse(
        ctx,
        crate::str_of(input, "FunctionName").unwrap_or_default(),
        crate::str_of(input, "Qualifier"),
    )
}

/// The function a request's `FunctionName` names, for operations that act on the function as
/// a whole (a qualifier inside the name is still parsed, and callers decide what it means).
pub(crate) fn of_input_unqualified(
    ctx: &RequestContext,
    input: &Value,
) -> Result<FunctionRef, AwsError> {
    parse(
        ctx,
        crate::str_of(input, "FunctionName").unwrap_or_default(),
        None,
    )
}

pub(crate) fn function_arn(ctx: &RequestContext, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:{name}",
        ctx.region, ctx.account
    )
}

pub(crate) fn qualified(arn: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{arn}:{q}"),
        None => arn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            request_id: "test".into(),
            base_url: String::new(),
            access_key: None,
            path: "/".into(),
        }
    }

    #[test]
    fn accepts_every_form() {
        let c = ctx();
        let plain = FunctionRef {
            name: "f".into(),
            qualifier: None,
        };
        assert_eq!(parse(&c, "f", None).unwrap(), plain);
        assert_eq!(parse(&c, "123456789012:function:f", None).unwrap(), plain);
        assert_eq!(
            parse(&c, "arn:aws:lambda:us-east-1:123456789012:function:f", None).unwrap(),
            plain
        );
        let q = parse(
            &c,
            "arn:aws:lambda:us-east-1:123456789012:function:f:live",
            None,
        )
        .unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("live"));
        assert_eq!(
            parse(&c, "f:$LATEST", None).unwrap().qualifier.as_deref(),
            Some("$LATEST")
        );
        assert_eq!(
            parse(&c, "f", Some("3")).unwrap().qualifier.as_deref(),
            Some("3")
        );
    }

    #[test]
    fn rejects_bad_names_and_mismatched_qualifiers() {
        let c = ctx();
        assert_eq!(
            parse(&c, "a b", None).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            parse(&c, "a:b:c:d:e", None).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            parse(&c, "f:1", Some("2")).unwrap_err().code,
            "InvalidParameterValueException"
        );
        assert_eq!(
            parse(&c, "arn:aws:lambda:eu-west-1:123456789012:function:f", None)
                .unwrap_err()
                .code,
            "ResourceNotFoundException"
        );
    }
}
