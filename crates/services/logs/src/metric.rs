//! Metric filters: Put/Describe/DeleteMetricFilter (100 a log group, as AWS) stored in the
//! group's record, and TestMetricFilter, all on the filter pattern language of
//! `tsumiki_lang::log_filter` (the metric value is a number, `$.selector` of a JSON pattern or
//! `$field` of a space-delimited one). tsumiki serves no CloudWatch metrics API, so matched
//! events are not turned into metric data points.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};

use crate::Logs;
use crate::error::{invalid_parameter, logs_error, resource_not_found};
use crate::filter::FilterPattern;
use crate::input::{opt_int, opt_str, req_str};
use crate::paging::{decode_token, encode_token};
use crate::state::writes;

/// AWS allows 100 metric filters per log group.
const MAX_FILTERS: usize = 100;

/// One metric filter, stored in its group's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricFilter {
    pub name: String,
    pub pattern: String,
    /// `metricTransformations` as given (one entry).
    pub transformations: Value,
    pub created_ms: i64,
    #[serde(default)]
    pub apply_on_transformed_logs: bool,
}

fn parse(pattern: &str) -> Result<FilterPattern, AwsError> {
    FilterPattern::parse(pattern).map_err(|_| invalid_parameter("Invalid metric filter pattern"))
}

pub async fn put_metric_filter(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "filterName")?.to_string();
    let pattern = opt_str(input, "filterPattern").unwrap_or("").to_string();
    let compiled = parse(&pattern)?;
    let transformations = input
        .get("metricTransformations")
        .cloned()
        .unwrap_or(json!([]));
    for t in transformations.as_array().into_iter().flatten() {
        let value = t.get("metricValue").and_then(Value::as_str).unwrap_or("");
        compiled
            .check_metric_value(value)
            .map_err(|_| invalid_parameter(format!("Invalid metric value: {value}")))?;
        let has_dimensions = t
            .get("dimensions")
            .and_then(Value::as_object)
            .is_some_and(|d| !d.is_empty());
        if has_dimensions && t.get("defaultValue").is_some() {
            return Err(invalid_parameter(
                "Invalid metric transformation: defaultValue cannot be set together with dimensions",
            ));
        }
        if t.get("dimensions")
            .and_then(Value::as_object)
            .is_some_and(|d| d.len() > 3)
        {
            return Err(invalid_parameter(
                "Invalid metric transformation: at most 3 dimensions are allowed",
            ));
        }
    }
    let mut filter = MetricFilter {
        name: name.clone(),
        pattern,
        transformations,
        created_ms: logs.clock.now_ms(),
        apply_on_transformed_logs: input
            .get("applyOnTransformedLogs")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    logs.write_group(&cell, |g, batch| {
        match g.metric_filters.iter_mut().find(|f| f.name == name) {
            Some(existing) => {
                filter.created_ms = existing.created_ms;
                *existing = filter;
            }
            None => {
                if g.metric_filters.len() >= MAX_FILTERS {
                    return Err(logs_error(
                        "LimitExceededException",
                        "Resource limit exceeded.",
                    ));
                }
                g.metric_filters.push(filter);
            }
        }
        writes::group(batch, &cell.key, g);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

fn describe(group: &str, f: &MetricFilter) -> Value {
    json!({
        "filterName": f.name,
        "filterPattern": f.pattern,
        "metricTransformations": f.transformations,
        "creationTime": f.created_ms,
        "logGroupName": group,
        "applyOnTransformedLogs": f.apply_on_transformed_logs,
    })
}

pub fn describe_metric_filters(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let prefix = opt_str(input, "filterNamePrefix");
    let metric_name = opt_str(input, "metricName");
    let namespace = opt_str(input, "metricNamespace");
    if metric_name.is_some() != namespace.is_some() {
        return Err(invalid_parameter(
            "metricName and metricNamespace must be specified together.",
        ));
    }
    let group_name = opt_str(input, "logGroupName");
    if prefix.is_some() && group_name.is_none() {
        return Err(invalid_parameter(
            "logGroupName is required when filterNamePrefix is specified.",
        ));
    }
    let limit = opt_int(input, "limit").unwrap_or(50).clamp(1, 50) as usize;
    let after: Option<(String, String)> = match opt_str(input, "nextToken") {
        Some(t) => Some(
            decode_token(t)
                .ok_or_else(|| invalid_parameter("The specified nextToken is invalid."))?,
        ),
        None => None,
    };
    let cells = match group_name {
        Some(_) => vec![logs.group_named(ctx, input)?],
        None => logs
            .state
            .groups
            .read()
            .iter()
            .filter(|(k, _)| k.account == ctx.account && k.region == ctx.region)
            .map(|(_, c)| c.clone())
            .collect(),
    };
    let mut found: Vec<(String, String, Value)> = Vec::new();
    for cell in cells {
        let g = cell.group.lock();
        if g.deleted {
            continue;
        }
        for f in &g.metric_filters {
            if prefix.is_some_and(|p| !f.name.starts_with(p)) {
                continue;
            }
            if let (Some(n), Some(ns)) = (metric_name, namespace) {
                let hit = f.transformations.as_array().into_iter().flatten().any(|t| {
                    t.get("metricName").and_then(Value::as_str) == Some(n)
                        && t.get("metricNamespace").and_then(Value::as_str) == Some(ns)
                });
                if !hit {
                    continue;
                }
            }
            found.push((
                cell.key.name.clone(),
                f.name.clone(),
                describe(&cell.key.name, f),
            ));
        }
    }
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let rest: Vec<(String, String, Value)> = found
        .into_iter()
        .filter(|(g, f, _)| after.as_ref().is_none_or(|(ag, af)| (g, f) > (ag, af)))
        .collect();
    let more = rest.len() > limit;
    let page: Vec<(String, String, Value)> = rest.into_iter().take(limit).collect();
    let mut out = json!({
        "metricFilters": page.iter().map(|(_, _, v)| v.clone()).collect::<Vec<_>>(),
    });
    if more && let Some((g, f, _)) = page.last() {
        out["nextToken"] = json!(encode_token(&(g, f)));
    }
    Ok(out)
}

pub async fn delete_metric_filter(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let name = req_str(input, "filterName")?.to_string();
    logs.write_group(&cell, |g, batch| {
        let before = g.metric_filters.len();
        g.metric_filters.retain(|f| f.name != name);
        if g.metric_filters.len() == before {
            return Err(resource_not_found(
                "The specified metric filter does not exist.",
            ));
        }
        writes::group(batch, &cell.key, g);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn test_metric_filter(input: &Value) -> Result<Value, AwsError> {
    let pattern = parse(opt_str(input, "filterPattern").unwrap_or(""))?;
    let matches: Vec<Value> = input
        .get("logEventMessages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .enumerate()
        .filter(|(_, m)| pattern.matches(m))
        .map(|(i, m)| {
            let extracted: serde_json::Map<String, Value> = pattern
                .extracted_values(m)
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            json!({"eventNumber": i + 1, "eventMessage": m, "extractedValues": extracted})
        })
        .collect();
    Ok(json!({"matches": matches}))
}
