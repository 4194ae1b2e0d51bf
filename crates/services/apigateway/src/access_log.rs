//! Access logs of stages (`accessLogSettings` of REST APIs, `AccessLogSettings` of HTTP APIs):
//! one line per request, the stage's `format` with its `$context.*` variables filled in,
//! appended to the destination log group through [`tsumiki_ports::LogSink`] in the stream
//! `{apiId}_{stage}`. A variable without a value renders as `-`, as AWS's do. The line is
//! written after the response is sent, so logging never delays a caller.

use serde_json::{Value, json};
use tsumiki_ports::LogEvent;

use crate::execute::ExecuteApi;

/// Carried in a response's extensions by gateway-made answers, for `$context.error.message`.
#[derive(Clone, Debug)]
pub(crate) struct ErrorMessage(pub String);

/// `(account, region, group)` of a log group ARN (`...:log-group:name` or `...:name:*`).
fn destination(arn: &str) -> Option<(String, String, String)> {
    let (head, name) = arn.split_once(":log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    let mut parts = head.split(':');
    let (_, _, _, region, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (!name.is_empty()).then(|| (account.to_string(), region.to_string(), name.to_string()))
}

/// Fills `$context.a.b` (and `${context.a.b}`) references from `ctx`.
pub(crate) fn render(format: &str, ctx: &Value) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (braced, body) = match after.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let Some(path) = body.strip_prefix("context.") else {
            out.push('$');
            rest = after;
            continue;
        };
        let len = path
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
            .unwrap_or(path.len());
        // A trailing dot belongs to the text (`$context.status.`), not the name.
        let name = path[..len].trim_end_matches('.');
        let value = name
            .split('.')
            .try_fold(ctx, |v, k| v.get(k))
            .filter(|v| !v.is_null())
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into());
        out.push_str(&value);
        let consumed = "context.".len() + name.len();
        rest = &body[consumed..];
        if braced {
            rest = rest.strip_prefix('}').unwrap_or(rest);
        }
    }
    out.push_str(rest);
    out
}

impl ExecuteApi {
    /// Writes one access log line when `settings` (a stage's access log settings, in either
    /// API's casing) name a destination.
    pub(crate) fn access_log(&self, settings: &Value, api_id: &str, stage: &str, ctx: Value) {
        let pick = |a: &str, b: &str| {
            settings
                .get(a)
                .or_else(|| settings.get(b))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let (Some(arn), Some(format)) = (
            pick("destinationArn", "DestinationArn"),
            pick("format", "Format"),
        ) else {
            return;
        };
        let Some((account, region, group)) = destination(&arn) else {
            return;
        };
        let Some(sink) = self.gw.log_sink.get().cloned() else {
            return;
        };
        let line = render(&format, &ctx);
        let stream = format!("{api_id}_{stage}");
        let event = LogEvent {
            timestamp_ms: self.gw.clock.now_ms(),
            message: line,
        };
        tokio::spawn(async move {
            if let Err(e) = sink
                .append(&account, &region, &group, &stream, vec![event])
                .await
            {
                tracing::info!(code = %e.code, group, "Could not write an access log line.");
            }
        });
    }
}

/// The `$context` of an access log line.
#[allow(clippy::too_many_arguments)]
pub(crate) fn context(
    request_id: &str,
    account: &str,
    api_id: &str,
    stage: &str,
    method: &str,
    path: &str,
    protocol: &str,
    user_agent: &str,
    domain: &str,
    started_ms: i64,
) -> Value {
    json!({
        "requestId": request_id,
        "extendedRequestId": request_id,
        "accountId": account,
        "apiId": api_id,
        "stage": stage,
        "httpMethod": method,
        "path": path,
        "protocol": protocol,
        "domainName": domain,
        "domainPrefix": domain.split('.').next().unwrap_or(domain),
        "identity": {"sourceIp": "127.0.0.1", "userAgent": user_agent},
        "requestTime": tsumiki_proxy::clf_time(started_ms),
        "requestTimeEpoch": started_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ctx = json!({"requestId": "r1", "status": 200, "identity": {"sourceIp": "1.2.3.4"}, "error": {"message": null}});
        assert_eq!(
            render(
                "$context.requestId $context.identity.sourceIp $context.status.",
                &ctx
            ),
            "r1 1.2.3.4 200."
        );
        assert_eq!(
            render(
                r#"{"id":"$context.requestId","err":"$context.error.message","x":"${context.status}"}"#,
                &ctx
            ),
            r#"{"id":"r1","err":"-","x":"200"}"#
        );
        assert_eq!(render("cost $5 $other", &ctx), "cost $5 $other");
    }

    #[test]
    fn destinations() {
        assert_eq!(
            destination("arn:aws:logs:eu-west-1:111122223333:log-group:access:*"),
            Some(("111122223333".into(), "eu-west-1".into(), "access".into()))
        );
        assert_eq!(destination("arn:aws:s3:::bucket"), None);
    }
}
