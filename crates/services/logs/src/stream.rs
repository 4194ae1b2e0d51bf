//! Log streams: create, delete, describe.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};

use crate::Logs;
use crate::error::{constraint, invalid_parameter, stream_exists, stream_not_found};
use crate::input::{opt_bool, opt_int, opt_str, req_str};
use crate::paging::{decode_token, encode_token};
use crate::state::{GroupKey, Stream, writes};

const DEFAULT_DESCRIBE_LIMIT: i64 = 50;

pub fn valid_stream_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.chars().count() > 512 || name.contains([':', '*']) {
        return Err(constraint(
            "logStreamName",
            name,
            "Member must satisfy regular expression pattern: [^:*]*",
        ));
    }
    Ok(())
}

pub async fn create_log_stream(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "logStreamName")?;
    valid_stream_name(name)?;
    let now = logs.clock.now_ms();
    logs.write_group(&cell, |g, batch| {
        if g.streams.contains_key(name) {
            return Err(stream_exists());
        }
        let stream = Stream::new(now);
        writes::stream(batch, g.id, name, &stream);
        g.streams.insert(name.to_string(), stream);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn delete_log_stream(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "logStreamName")?;
    logs.write_group(&cell, |g, batch| {
        let stream = g.streams.remove(name).ok_or_else(stream_not_found)?;
        writes::delete_stream(batch, g.id, name, stream.id);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn stream_json(key: &GroupKey, name: &str, s: &Stream) -> Value {
    let mut v = json!({
        "logStreamName": name,
        "creationTime": s.created_ms,
        "arn": key.stream_arn(name),
        "uploadSequenceToken": s.sequence_token(),
        // AWS has reported zero here since 2019 (the member is deprecated).
        "storedBytes": 0,
    });
    if let Some(t) = s.first_event_ms {
        v["firstEventTimestamp"] = json!(t);
    }
    if let Some(t) = s.last_event_ms {
        v["lastEventTimestamp"] = json!(t);
    }
    if let Some(t) = s.last_ingestion_ms {
        v["lastIngestionTime"] = json!(t);
    }
    v
}

/// Where the next DescribeLogStreams page starts: after this (sort key, name).
#[derive(Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct After {
    k: i64,
    n: String,
}

pub fn describe_log_streams(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_identified(ctx, input)?;
    let prefix = opt_str(input, "logStreamNamePrefix");
    let by_time = opt_str(input, "orderBy") == Some("LastEventTime");
    if by_time && prefix.is_some() {
        return Err(invalid_parameter(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let descending = opt_bool(input, "descending").unwrap_or(false);
    let limit = opt_int(input, "limit")
        .unwrap_or(DEFAULT_DESCRIBE_LIMIT)
        .max(1) as usize;
    let after: Option<After> = match opt_str(input, "nextToken") {
        Some(t) => Some(
            decode_token(t)
                .ok_or_else(|| invalid_parameter("The specified nextToken is invalid."))?,
        ),
        None => None,
    };
    logs.read_group(&cell, |g| {
        let mut rows: Vec<(After, &Stream)> = g
            .streams
            .iter()
            .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
            .map(|(name, s)| {
                let k = if by_time {
                    s.last_event_ms.unwrap_or(i64::MIN)
                } else {
                    0
                };
                (After { k, n: name.clone() }, s)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if descending {
            rows.reverse();
        }
        let rows: Vec<&(After, &Stream)> = rows
            .iter()
            .filter(|(pos, _)| match &after {
                None => true,
                Some(a) if descending => pos < a,
                Some(a) => pos > a,
            })
            .collect();
        let page: Vec<Value> = rows
            .iter()
            .take(limit)
            .map(|(pos, s)| stream_json(&cell.key, &pos.n, s))
            .collect();
        let mut response = json!({ "logStreams": page });
        if rows.len() > limit {
            response["nextToken"] = json!(encode_token(&rows[limit - 1].0));
        }
        Ok(response)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for ok in [
            "a",
            "2024/01/01/[$LATEST]abc",
            "with space",
            &"x".repeat(512),
        ] {
            assert!(valid_stream_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a*", &"x".repeat(513)] {
            assert!(valid_stream_name(bad).is_err(), "{bad}");
        }
    }
}
