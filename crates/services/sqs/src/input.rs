//! Reading decoded input values, and finding the queue a request names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tsumiki_core::{AwsError, RequestContext};

use crate::Sqs;
use crate::error::queue_does_not_exist;
use crate::state::{QueueCell, QueueKey};

pub fn opt_str<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

pub fn req_str<'a>(input: &'a Value, key: &str) -> Result<&'a str, AwsError> {
    opt_str(input, key).ok_or_else(|| {
        AwsError::missing_parameter(format!("The request must contain the parameter {key}."))
    })
}

pub fn opt_int(input: &Value, key: &str) -> Option<i64> {
    input.get(key).and_then(Value::as_i64)
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

/// `http://host:port/ACCOUNT/NAME`: the form of queue URLs tsumiki hands out.
pub fn queue_url(ctx: &RequestContext, key: &QueueKey) -> String {
    format!("{}/{}/{}", ctx.base_url, key.account, key.name)
}

/// The queue a `QueueUrl` names. Accepts tsumiki's URLs, AWS's
/// (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`) and a bare queue name.
pub fn key_from_url(ctx: &RequestContext, url: &str) -> Option<QueueKey> {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.split_once('/') {
            Some((host, path)) => (host, path),
            None => (rest, ""),
        },
        None => ("", url),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (account, name) = match segments.as_slice() {
        [name] => (ctx.account.as_str(), *name),
        [.., account, name] => (*account, *name),
        [] => return None,
    };
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .filter(|r| r.contains('-') && !r.contains(':'))
        .unwrap_or(&ctx.region);
    Some(QueueKey {
        account: account.to_string(),
        region: region.to_string(),
        name: name.to_string(),
    })
}

pub fn key_from_arn(arn: &str) -> Option<QueueKey> {
    let (service, region, account, name) = tsumiki_core::ids::parse_arn(arn)?;
    (service == "sqs").then(|| QueueKey {
        account: account.into(),
        region: region.into(),
        name: name.into(),
    })
}

impl Sqs {
    pub(crate) fn queue(
        &self,
        ctx: &RequestContext,
        input: &Value,
    ) -> Result<Arc<QueueCell>, AwsError> {
        let url = req_str(input, "QueueUrl")?;
        key_from_url(ctx, url)
            .and_then(|k| self.state.get(&k))
            .ok_or_else(queue_does_not_exist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            request_id: "r".into(),
            base_url: "http://localhost:4566".into(),
            access_key: None,
            path: "/".into(),
        }
    }

    #[test]
    fn urls() {
        let k = key_from_url(&ctx(), "http://localhost:4566/123456789012/q1").expect("key");
        assert_eq!(
            (k.account.as_str(), k.region.as_str(), k.name.as_str()),
            ("123456789012", "us-east-1", "q1")
        );
        let k = key_from_url(
            &ctx(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/q2.fifo",
        )
        .expect("key");
        assert_eq!(
            (k.region.as_str(), k.name.as_str()),
            ("eu-west-1", "q2.fifo")
        );
        let k = key_from_url(&ctx(), "q3").expect("key");
        assert_eq!(
            (k.account.as_str(), k.name.as_str()),
            ("000000000000", "q3")
        );
        assert!(key_from_url(&ctx(), "http://host/").is_none());
        assert_eq!(
            queue_url(&ctx(), &k),
            "http://localhost:4566/000000000000/q3"
        );
    }
}
