//! Log groups: create, delete, describe, retention policies and tags (by name and by ARN).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::error::{
    constraint, group_exists, group_not_found, invalid_parameter, resource_not_found, too_many_tags,
};
use crate::input::{
    key_for_name, key_from_arn, opt_int, opt_str, req_str, string_list, string_map,
};
use crate::paging::{decode_token, encode_token};
use crate::state::{Group, GroupCell, GroupKey, writes};
use crate::{Logs, store_error};

const MAX_TAGS: usize = 50;
const DEFAULT_DESCRIBE_LIMIT: i64 = 50;

/// The only retention periods AWS accepts, in days.
pub const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

fn valid_group_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty()
        || name.len() > 512
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
    {
        return Err(constraint(
            "logGroupName",
            name,
            "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
        ));
    }
    if name.starts_with("aws/") {
        return Err(invalid_parameter(
            "Log group names can't start with the string aws/",
        ));
    }
    Ok(())
}

/// Tag keys and values as the model's patterns allow; `aws:` keys are AWS's own.
fn valid_tags<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    values: impl IntoIterator<Item = &'a String>,
) -> Result<(), AwsError> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    for k in keys {
        if k.is_empty() || k.chars().count() > 128 || !k.chars().all(allowed) {
            return Err(constraint(
                "tags",
                k,
                "Member must satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+)$",
            ));
        }
        if k.starts_with("aws:") {
            return Err(invalid_parameter(
                "Tag keys prefixed with 'aws:' are reserved for AWS use.",
            ));
        }
    }
    for v in values {
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(constraint(
                "tags",
                v,
                "Member must satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
            ));
        }
    }
    Ok(())
}

pub async fn create_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = req_str(input, "logGroupName")?;
    valid_group_name(name)?;
    let tags = string_map(input, "tags");
    valid_tags(tags.keys(), tags.values())?;
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags(name));
    }
    let key = key_for_name(ctx, name);
    let mut group = Group::new(logs.clock.now_ms());
    group.tags = tags;
    if let Some(class) = opt_str(input, "logGroupClass") {
        group.class = class.to_string();
    }
    group.kms_key_id = opt_str(input, "kmsKeyId").map(str::to_string);
    let cell = {
        let mut groups = logs.state.groups.write();
        if groups.contains_key(&key) {
            return Err(group_exists());
        }
        let cell = Arc::new(GroupCell {
            key: key.clone(),
            group: Mutex::new(group),
        });
        groups.insert(key.clone(), cell.clone());
        cell
    };
    // The group is not yet persisted, so this queues its record.
    logs.write_group(&cell, |_, _| Ok(())).await?;
    tracing::info!(group = %key.name, account = %key.account, region = %key.region, "Created a log group.");
    Ok(json!({}))
}

pub async fn delete_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let commit = {
        // The map stays locked until the delete is queued, so a group created again under the
        // same name queues its record after this delete, not before it.
        let mut groups = logs.state.groups.write();
        if !groups.get(&cell.key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            return Err(group_not_found());
        }
        groups.remove(&cell.key);
        let mut g = cell.group.lock();
        g.deleted = true;
        let mut batch = Batch::new();
        writes::delete_group(&mut batch, &cell.key, &g);
        logs.state.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    tracing::info!(group = %cell.key.name, "Deleted a log group.");
    Ok(json!({}))
}

fn group_json(key: &GroupKey, g: &Group) -> Value {
    let arn = key.arn();
    let mut v = json!({
        "logGroupName": key.name,
        "creationTime": g.created_ms,
        "metricFilterCount": 0,
        "arn": format!("{arn}:*"),
        "logGroupArn": arn,
        "storedBytes": g.stored_bytes(),
        "logGroupClass": g.class,
    });
    if let Some(days) = g.retention_days {
        v["retentionInDays"] = json!(days);
    }
    if let Some(kms) = &g.kms_key_id {
        v["kmsKeyId"] = json!(kms);
    }
    v
}

pub fn describe_log_groups(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let prefix = opt_str(input, "logGroupNamePrefix");
    let pattern = opt_str(input, "logGroupNamePattern").map(str::to_lowercase);
    if prefix.is_some() && pattern.is_some() {
        return Err(invalid_parameter(
            "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
        ));
    }
    let class = opt_str(input, "logGroupClass");
    let identifiers: Vec<String> = string_list(input, "logGroupIdentifiers")
        .iter()
        .map(|id| match key_from_arn(id) {
            Some(k) => k.name,
            None => id.clone(),
        })
        .collect();
    let limit = opt_int(input, "limit")
        .unwrap_or(DEFAULT_DESCRIBE_LIMIT)
        .max(1) as usize;
    let after: Option<String> = match opt_str(input, "nextToken") {
        Some(t) => Some(
            decode_token(t)
                .ok_or_else(|| invalid_parameter("The specified nextToken is invalid."))?,
        ),
        None => None,
    };
    let start = key_for_name(ctx, after.as_deref().unwrap_or(""));
    let cells: Vec<Arc<GroupCell>> = {
        let groups = logs.state.groups.read();
        groups
            .range(start..)
            .take_while(|(k, _)| k.account == ctx.account && k.region == ctx.region)
            .filter(|(k, _)| after.as_deref() != Some(k.name.as_str()))
            .filter(|(k, _)| prefix.is_none_or(|p| k.name.starts_with(p)))
            .filter(|(k, _)| {
                pattern
                    .as_deref()
                    .is_none_or(|p| k.name.to_lowercase().contains(p))
            })
            .filter(|(k, _)| identifiers.is_empty() || identifiers.contains(&k.name))
            .map(|(_, c)| c.clone())
            .collect()
    };
    let mut out = Vec::new();
    let mut next = None;
    for cell in cells {
        let g = cell.group.lock();
        if g.deleted || class.is_some_and(|c| c != g.class) {
            continue;
        }
        if out.len() == limit {
            next = out
                .last()
                .and_then(|v: &Value| v["logGroupName"].as_str().map(encode_token));
            break;
        }
        out.push(group_json(&cell.key, &g));
    }
    let mut response = json!({ "logGroups": out });
    if let Some(token) = next {
        response["nextToken"] = json!(token);
    }
    Ok(response)
}

pub async fn put_retention_policy(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    let days = opt_int(input, "retentionInDays").unwrap_or(0);
    if !RETENTION_DAYS.contains(&days) {
        let allowed: Vec<String> = RETENTION_DAYS.iter().map(i64::to_string).collect();
        return Err(constraint(
            "retentionInDays",
            &days.to_string(),
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        ));
    }
    logs.update_group(&cell, |g| {
        g.retention_days = Some(days);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn delete_retention_policy(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    logs.update_group(&cell, |g| {
        g.retention_days = None;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// Merges `tags` into the group's; `too_many` is the error past 50.
async fn add_tags(
    logs: &Logs,
    cell: &GroupCell,
    tags: BTreeMap<String, String>,
    too_many: fn(&str) -> AwsError,
) -> Result<(), AwsError> {
    valid_tags(tags.keys(), tags.values())?;
    logs.update_group(cell, |g| {
        let mut merged = g.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(too_many(&cell.key.name));
        }
        g.tags = merged;
        Ok(())
    })
    .await
}

async fn remove_tags(logs: &Logs, cell: &GroupCell, keys: Vec<String>) -> Result<(), AwsError> {
    logs.update_group(cell, |g| {
        for k in &keys {
            g.tags.remove(k);
        }
        Ok(())
    })
    .await
}

fn list_tags(logs: &Logs, cell: &GroupCell) -> Result<Value, AwsError> {
    logs.read_group(cell, |g| Ok(json!({ "tags": g.tags })))
}

fn tag_limit_as_invalid_parameter(_: &str) -> AwsError {
    invalid_parameter("A resource can have no more than 50 tags.")
}

pub async fn tag_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    // TagLogGroup's model lists no TooManyTagsException.
    add_tags(
        logs,
        &cell,
        string_map(input, "tags"),
        tag_limit_as_invalid_parameter,
    )
    .await?;
    Ok(json!({}))
}

pub async fn untag_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    remove_tags(logs, &cell, string_list(input, "tags")).await?;
    Ok(json!({}))
}

pub fn list_tags_log_group(
    logs: &Logs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = logs.group_named(ctx, input)?;
    list_tags(logs, &cell)
}

/// The group a `resourceArn` names; only log groups carry tags here.
fn group_by_arn(logs: &Logs, input: &Value) -> Result<Arc<GroupCell>, AwsError> {
    let arn = req_str(input, "resourceArn")?;
    if tsumiki_core::ids::parse_arn(arn).is_none() {
        return Err(invalid_parameter(format!("Invalid ARN: {arn}")));
    }
    let key = key_from_arn(arn).ok_or_else(|| {
        resource_not_found(format!("The specified resource does not exist: {arn}"))
    })?;
    logs.state.get(&key).ok_or_else(group_not_found)
}

pub async fn tag_resource(logs: &Logs, input: &Value) -> Result<Value, AwsError> {
    let cell = group_by_arn(logs, input)?;
    add_tags(logs, &cell, string_map(input, "tags"), too_many_tags).await?;
    Ok(json!({}))
}

pub async fn untag_resource(logs: &Logs, input: &Value) -> Result<Value, AwsError> {
    let cell = group_by_arn(logs, input)?;
    remove_tags(logs, &cell, string_list(input, "tagKeys")).await?;
    Ok(json!({}))
}

pub fn list_tags_for_resource(logs: &Logs, input: &Value) -> Result<Value, AwsError> {
    let cell = group_by_arn(logs, input)?;
    list_tags(logs, &cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for ok in ["a", "/aws/lambda/my-fn", "A.b_c-d#e/f", &"x".repeat(512)] {
            assert!(valid_group_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a*", "é", "aws/x", &"x".repeat(513)] {
            let err = valid_group_name(bad).expect_err(bad);
            assert_eq!(err.code, "InvalidParameterException");
        }
    }

    #[test]
    fn tags() {
        let ok = BTreeMap::from([("team:a".to_string(), "x y".to_string())]);
        assert!(valid_tags(ok.keys(), ok.values()).is_ok());
        let reserved = BTreeMap::from([("aws:x".to_string(), "v".to_string())]);
        assert!(valid_tags(reserved.keys(), reserved.values()).is_err());
        let bad = BTreeMap::from([("k".to_string(), "v!".to_string())]);
        assert!(valid_tags(bad.keys(), bad.values()).is_err());
    }
}
