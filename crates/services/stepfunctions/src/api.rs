//! State machines, activities, tags and ValidateStateMachineDefinition.

use std::sync::Arc;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::asl;
use tsumiki_store::Batch;

use crate::state::{self, Activity, Machine};
use crate::{
    StepFunctions, check_name, err, page_size, page_start, parse_states_arn, required_str, secs,
};

/// The parsed definition, or AWS's `InvalidDefinition`.
pub(crate) fn parse_definition(text: &str) -> Result<asl::Definition, AwsError> {
    asl::parse(text).map_err(|d| err("InvalidDefinition", asl::invalid_definition_message(&d)))
}

fn machine_arn(ctx: &RequestContext, name: &str) -> String {
    tsumiki_core::ids::arn(
        "states",
        &ctx.region,
        &ctx.account,
        &format!("stateMachine:{name}"),
    )
}

/// The machine an ARN names, checked for shape and the caller's account.
pub(crate) fn machine(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Arc<Machine>, AwsError> {
    match parse_states_arn(arn) {
        Some((region, account, kind, _))
            if kind == "stateMachine" && region == ctx.region && account == ctx.account => {}
        _ => {
            return Err(err(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            ));
        }
    }
    sfn.machines.read().get(arn).cloned().ok_or_else(|| {
        err(
            "StateMachineDoesNotExist",
            format!("State Machine Does Not Exist: '{arn}'"),
        )
    })
}

fn tags_in(input: &Value) -> Vec<(String, String)> {
    input
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t.get("key")?.as_str()?.to_string(),
                t.get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect()
}

pub(crate) async fn create_state_machine(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = required_str(input, "name")?;
    check_name(name)?;
    let definition = required_str(input, "definition")?;
    let role_arn = required_str(input, "roleArn")?;
    let express = match input.get("type").and_then(Value::as_str) {
        None | Some("STANDARD") => false,
        Some("EXPRESS") => true,
        Some(other) => return Err(AwsError::validation(format!("Invalid type: {other}"))),
    };
    parse_definition(definition)?;
    let publish = publish_in(input)?;
    let arn = machine_arn(ctx, name);
    let now = sfn.clock.now_ms();
    let mut version = None;
    let commit = {
        let mut machines = sfn.machines.write();
        if let Some(existing) = machines.get(&arn) {
            // Same settings: AWS answers with the existing machine (idempotent create).
            if &*existing.definition == definition
                && existing.role_arn == role_arn
                && existing.express == express
            {
                return Ok(
                    json!({"stateMachineArn": arn, "creationDate": secs(existing.created_ms)}),
                );
            }
            return Err(err(
                "StateMachineAlreadyExists",
                format!("State Machine Already Exists: '{arn}'"),
            ));
        }
        let m = Machine {
            arn: arn.clone(),
            name: name.to_string(),
            account: ctx.account.clone(),
            region: ctx.region.clone(),
            definition: definition.into(),
            role_arn: role_arn.to_string(),
            express,
            created_ms: now,
            updated_ms: now,
            revision_id: uuid::Uuid::new_v4().to_string(),
            description: None,
            logging: input
                .get("loggingConfiguration")
                .cloned()
                .unwrap_or(json!({"level": "OFF", "includeExecutionData": false})),
            tracing: input
                .get("tracingConfiguration")
                .cloned()
                .unwrap_or(json!({"enabled": false})),
            tags: tags_in(input).into_iter().collect(),
            last_version: 0,
        };
        let mut batch = Batch::new();
        let mut m = m;
        if let Some(description) = publish {
            version =
                Some(crate::versions::publish_into(sfn, &mut m, description, now, &mut batch)?.0);
        }
        state::put_machine(&mut batch, &m);
        machines.insert(arn.clone(), Arc::new(m));
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    let mut out = json!({"stateMachineArn": arn, "creationDate": secs(now)});
    if let Some(v) = version {
        out["stateMachineVersionArn"] = json!(v);
    }
    Ok(out)
}

/// `Some(versionDescription)` when the request asks to publish a version.
fn publish_in(input: &Value) -> Result<Option<Option<&str>>, AwsError> {
    let description = input.get("versionDescription").and_then(Value::as_str);
    if input.get("publish") == Some(&Value::Bool(true)) {
        return Ok(Some(description));
    }
    if description.is_some() {
        return Err(AwsError::validation(
            "Version description can only be set when publish is true",
        ));
    }
    Ok(None)
}

pub(crate) fn render_machine(m: &Machine) -> Value {
    json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": if m.express { "EXPRESS" } else { "STANDARD" },
        "creationDate": secs(m.created_ms),
        "loggingConfiguration": m.logging,
        "tracingConfiguration": m.tracing,
        "revisionId": m.revision_id,
    })
}

pub(crate) fn describe_state_machine(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    if let Some(v) = crate::versions::describe_version(sfn, ctx, arn)? {
        return Ok(v);
    }
    Ok(render_machine(&*machine(sfn, ctx, arn)?))
}

pub(crate) async fn update_state_machine(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    let definition = input.get("definition").and_then(Value::as_str);
    let role = input.get("roleArn").and_then(Value::as_str);
    let logging = input.get("loggingConfiguration");
    let tracing_cfg = input.get("tracingConfiguration");
    let publish = publish_in(input)?;
    if definition.is_none()
        && role.is_none()
        && logging.is_none()
        && tracing_cfg.is_none()
        && publish.is_none()
    {
        return Err(err(
            "MissingRequiredParameter",
            "Either the definition, the roleArn, the loggingConfiguration or the tracingConfiguration must be specified",
        ));
    }
    if let Some(d) = definition {
        parse_definition(d)?;
    }
    machine(sfn, ctx, arn)?;
    let now = sfn.clock.now_ms();
    let mut version = None;
    let (commit, revision) = {
        let mut machines = sfn.machines.write();
        let m = Arc::make_mut(machines.get_mut(arn).ok_or_else(|| {
            err(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            )
        })?);
        if let Some(d) = definition {
            m.definition = d.into();
        }
        if let Some(r) = role {
            m.role_arn = r.to_string();
        }
        if let Some(l) = logging {
            m.logging = l.clone();
        }
        if let Some(t) = tracing_cfg {
            m.tracing = t.clone();
        }
        // Publishing alone does not make a new revision.
        if definition.is_some() || role.is_some() || logging.is_some() || tracing_cfg.is_some() {
            m.updated_ms = now;
            m.revision_id = uuid::Uuid::new_v4().to_string();
        }
        let mut batch = Batch::new();
        if let Some(description) = publish {
            version = Some(crate::versions::publish_into(sfn, m, description, now, &mut batch)?.0);
        }
        state::put_machine(&mut batch, m);
        (sfn.store.commit(batch), m.revision_id.clone())
    };
    commit.await.map_err(crate::store_error)?;
    let mut out = json!({"updateDate": secs(now), "revisionId": revision});
    if let Some(v) = version {
        out["stateMachineVersionArn"] = json!(v);
    }
    Ok(out)
}

pub(crate) async fn delete_state_machine(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    match parse_states_arn(arn) {
        Some((_, _, kind, _)) if kind == "stateMachine" => {}
        _ => return Err(err("InvalidArn", format!("Invalid Arn: '{arn}'"))),
    }
    let _ = ctx;
    let commit = {
        let mut machines = sfn.machines.write();
        if machines.remove(arn).is_none() {
            // AWS answers success for a machine that does not exist.
            return Ok(json!({}));
        }
        let mut batch = Batch::new();
        state::delete_machine(&mut batch, arn);
        crate::versions::delete_all(sfn, arn, &mut batch);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

pub(crate) fn list_state_machines(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let machines = sfn.machines.read();
    let mine: Vec<&Machine> = machines
        .values()
        .map(|m| &**m)
        .filter(|m| m.account == ctx.account && m.region == ctx.region)
        .collect();
    let page: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|m| json!({"stateMachineArn": m.arn, "name": m.name, "type": if m.express { "EXPRESS" } else { "STANDARD" }, "creationDate": secs(m.created_ms)}))
        .collect();
    let mut out = json!({"stateMachines": page});
    if start + size < mine.len() {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

pub(crate) fn validate_definition(input: &Value) -> Result<Value, AwsError> {
    let definition = required_str(input, "definition")?;
    let max = page_size(input, 100);
    match asl::parse(definition) {
        Ok(_) => Ok(json!({"result": "OK", "diagnostics": [], "truncated": false})),
        Err(diags) => {
            let truncated = diags.len() > max;
            let list: Vec<Value> = diags
                .iter()
                .take(max)
                .map(|d| {
                    let mut v = json!({"severity": "ERROR", "code": d.code, "message": d.message});
                    if let Some(l) = &d.location {
                        v["location"] = json!(l);
                    }
                    v
                })
                .collect();
            Ok(json!({"result": "FAIL", "diagnostics": list, "truncated": truncated}))
        }
    }
}

fn activity_arn(ctx: &RequestContext, name: &str) -> String {
    tsumiki_core::ids::arn(
        "states",
        &ctx.region,
        &ctx.account,
        &format!("activity:{name}"),
    )
}

pub(crate) fn activity(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Activity, AwsError> {
    match parse_states_arn(arn) {
        Some((region, account, kind, _))
            if kind == "activity" && region == ctx.region && account == ctx.account => {}
        _ => {
            return Err(err(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            ));
        }
    }
    sfn.activities.read().get(arn).cloned().ok_or_else(|| {
        err(
            "ActivityDoesNotExist",
            format!("Activity Does Not Exist: '{arn}'"),
        )
    })
}

pub(crate) async fn create_activity(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = required_str(input, "name")?;
    check_name(name)?;
    let arn = activity_arn(ctx, name);
    let now = sfn.clock.now_ms();
    let commit = {
        let mut acts = sfn.activities.write();
        if let Some(a) = acts.get(&arn) {
            return Ok(json!({"activityArn": arn, "creationDate": secs(a.created_ms)}));
        }
        let a = Activity {
            arn: arn.clone(),
            name: name.to_string(),
            created_ms: now,
            tags: tags_in(input).into_iter().collect(),
        };
        let mut batch = Batch::new();
        state::put_activity(&mut batch, &a);
        acts.insert(arn.clone(), a);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"activityArn": arn, "creationDate": secs(now)}))
}

pub(crate) fn describe_activity(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let a = activity(sfn, ctx, required_str(input, "activityArn")?)?;
    Ok(json!({"activityArn": a.arn, "name": a.name, "creationDate": secs(a.created_ms)}))
}

pub(crate) async fn delete_activity(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "activityArn")?;
    let _ = ctx;
    let commit = {
        let mut acts = sfn.activities.write();
        if acts.remove(arn).is_none() {
            return Ok(json!({}));
        }
        let mut batch = Batch::new();
        state::delete_activity(&mut batch, arn);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

pub(crate) fn list_activities(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let acts = sfn.activities.read();
    let prefix = activity_arn(ctx, "");
    let mine: Vec<&Activity> = acts
        .values()
        .filter(|a| a.arn.starts_with(&prefix))
        .collect();
    let page: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|a| json!({"activityArn": a.arn, "name": a.name, "creationDate": secs(a.created_ms)}))
        .collect();
    let mut out = json!({"activities": page});
    if start + size < mine.len() {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

fn not_found(arn: &str) -> AwsError {
    err("ResourceNotFound", format!("Resource not found: '{arn}'"))
}

/// Applies `change` to the tags of the machine or activity `arn`, then stores it.
async fn with_tags(
    sfn: &StepFunctions,
    arn: &str,
    change: impl FnOnce(&mut std::collections::BTreeMap<String, String>) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let commit = {
        let mut batch = Batch::new();
        let mut machines = sfn.machines.write();
        if let Some(m) = machines.get_mut(arn) {
            let m = Arc::make_mut(m);
            change(&mut m.tags)?;
            state::put_machine(&mut batch, m);
        } else {
            let mut acts = sfn.activities.write();
            let a = acts.get_mut(arn).ok_or_else(|| not_found(arn))?;
            change(&mut a.tags)?;
            state::put_activity(&mut batch, a);
        }
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)
}

pub(crate) async fn tag_resource(
    sfn: &StepFunctions,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "resourceArn")?;
    let tags = tags_in(input);
    with_tags(sfn, arn, |t| {
        for (k, v) in tags {
            t.insert(k, v);
        }
        if t.len() > 50 {
            return Err(err(
                "TooManyTags",
                format!("Too many tags on resource '{arn}': at most 50 are allowed."),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn untag_resource(
    sfn: &StepFunctions,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "resourceArn")?;
    let keys: Vec<String> = input
        .get("tagKeys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    with_tags(sfn, arn, |t| {
        for k in keys {
            t.remove(&k);
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) fn list_tags(
    sfn: &StepFunctions,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "resourceArn")?;
    let tags = if let Some(m) = sfn.machines.read().get(arn) {
        m.tags.clone()
    } else if let Some(a) = sfn.activities.read().get(arn) {
        a.tags.clone()
    } else {
        return Err(not_found(arn));
    };
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Ok(json!({"tags": list}))
}
