//! Queue tags.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};

use crate::Sqs;
use crate::input::{string_list, string_map};

const MAX_TAGS: usize = 50;

pub async fn tag_queue(sqs: &Sqs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let tags = string_map(input, "Tags");
    if tags.is_empty() {
        return Err(AwsError::missing_parameter(
            "The request must contain the parameter Tags.",
        ));
    }
    for (k, v) in &tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(AwsError::invalid_parameter_value(format!(
                "Tag {k} is not valid: keys are 1-128 and values 0-256 characters."
            )));
        }
    }
    sqs.update_queue(&cell, |q| {
        let mut merged = q.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(AwsError::invalid_parameter_value(format!(
                "Too many tags added for queue {}.",
                cell.key.name
            )));
        }
        q.tags = merged;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_queue(
    sqs: &Sqs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let keys = string_list(input, "TagKeys");
    if keys.is_empty() || keys.iter().any(|k| k.is_empty() || k.chars().count() > 128) {
        return Err(AwsError::invalid_parameter_value(
            "Tag keys must be between 1 and 128 characters in length.",
        ));
    }
    sqs.update_queue(&cell, |q| {
        for k in &keys {
            q.tags.remove(k);
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn list_queue_tags(sqs: &Sqs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let cell = sqs.queue(ctx, input)?;
    let q = cell.queue.lock();
    if q.tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Tags": q.tags}))
}
