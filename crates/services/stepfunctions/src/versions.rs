//! State machine versions and aliases: PublishStateMachineVersion (also `publish` on
//! Create/UpdateStateMachine), the version and alias APIs, and resolving a version or alias
//! ARN to the snapshot an execution runs.
//!
//! A version ARN is the machine's ARN plus `:<number>`, an alias ARN the machine's ARN plus
//! `:<name>`; alias names always contain a character that is not a digit, so the qualifier
//! alone tells them apart.

use serde_json::{Value, json};
use std::sync::Arc;
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Alias, Machine, Version};
use crate::{StepFunctions, api, err, page_size, page_start, parse_states_arn, required_str, secs};

/// AWS's quotas: versions per state machine, aliases per state machine.
const MAX_VERSIONS: usize = 1000;
const MAX_ALIASES: usize = 100;

/// What an execution runs: the machine (a version's snapshot when started through a version
/// or alias), and the version and alias it was started through.
pub(crate) struct Target {
    pub machine: Arc<Machine>,
    pub version_arn: Option<String>,
    pub alias_arn: Option<String>,
}

fn invalid_arn(arn: &str) -> AwsError {
    err(
        "InvalidArn",
        format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
    )
}

fn not_found(arn: &str) -> AwsError {
    err("ResourceNotFound", format!("Resource not found: '{arn}'"))
}

fn machine_missing(arn: &str) -> AwsError {
    err(
        "StateMachineDoesNotExist",
        format!("State Machine Does Not Exist: '{arn}'"),
    )
}

/// `(machine ARN, qualifier)` of a state machine ARN in the caller's account and region; the
/// qualifier is `None` for an unqualified ARN.
fn split(ctx: &RequestContext, arn: &str) -> Result<(String, Option<String>), AwsError> {
    match parse_states_arn(arn) {
        Some((region, account, kind, name))
            if kind == "stateMachine" && region == ctx.region && account == ctx.account =>
        {
            match name.split_once(':') {
                None => Ok((arn.to_string(), None)),
                Some((_, q)) if !q.is_empty() && !q.contains(':') => {
                    let base = &arn[..arn.len() - q.len() - 1];
                    Ok((base.to_string(), Some(q.to_string())))
                }
                _ => Err(invalid_arn(arn)),
            }
        }
        _ => Err(invalid_arn(arn)),
    }
}

fn is_version(qualifier: &str) -> bool {
    qualifier.bytes().all(|b| b.is_ascii_digit())
}

/// A version ARN's machine ARN, or `InvalidArn`.
fn version_arn_parts(ctx: &RequestContext, arn: &str) -> Result<String, AwsError> {
    match split(ctx, arn)? {
        (base, Some(q)) if is_version(&q) => Ok(base),
        _ => Err(invalid_arn(arn)),
    }
}

/// An alias ARN's machine ARN, or `InvalidArn`.
fn alias_arn_parts(ctx: &RequestContext, arn: &str) -> Result<String, AwsError> {
    match split(ctx, arn)? {
        (base, Some(q)) if !is_version(&q) => Ok(base),
        _ => Err(invalid_arn(arn)),
    }
}

/// The machine, version or alias `arn` names, for StartExecution and friends. An alias picks
/// one of its versions by weight.
pub(crate) fn resolve(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Target, AwsError> {
    let (_, qualifier) = split(ctx, arn)?;
    let Some(q) = qualifier else {
        return Ok(Target {
            machine: api::machine(sfn, ctx, arn)?,
            version_arn: None,
            alias_arn: None,
        });
    };
    let (version_arn, alias_arn) = if is_version(&q) {
        (arn.to_string(), None)
    } else {
        let aliases = sfn.aliases.read();
        let alias = aliases.get(arn).ok_or_else(|| machine_missing(arn))?;
        (pick(&alias.routing), Some(arn.to_string()))
    };
    let versions = sfn.versions.read();
    let v = versions
        .get(&version_arn)
        .ok_or_else(|| machine_missing(&version_arn))?;
    Ok(Target {
        machine: Arc::new(v.snapshot.clone()),
        version_arn: Some(version_arn),
        alias_arn,
    })
}

/// A weighted random choice among an alias's versions.
fn pick(routing: &[(String, u32)]) -> String {
    let mut roll = (uuid::Uuid::new_v4().as_u128() % 100) as u32;
    for (arn, weight) in routing {
        if roll < *weight {
            return arn.clone();
        }
        roll -= weight;
    }
    routing.last().map(|r| r.0.clone()).unwrap_or_default()
}

/// DescribeStateMachine of a version ARN: the snapshot, named by the version's ARN.
pub(crate) fn describe_version(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Option<Value>, AwsError> {
    match split(ctx, arn)? {
        (_, None) => Ok(None),
        (_, Some(q)) if is_version(&q) => {
            let versions = sfn.versions.read();
            let v = versions.get(arn).ok_or_else(|| machine_missing(arn))?;
            let mut out = api::render_machine(&v.snapshot);
            out["stateMachineArn"] = json!(v.arn);
            out["creationDate"] = json!(secs(v.created_ms));
            if let Some(d) = &v.description {
                out["description"] = json!(d);
            }
            Ok(Some(out))
        }
        _ => Err(invalid_arn(arn)),
    }
}

fn check_description(d: Option<&str>, max: usize) -> Result<(), AwsError> {
    if d.is_some_and(|d| d.chars().count() > max) {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// Publishes `m`'s current revision (or answers the version that already holds it), adding
/// the writes to `batch`. The caller holds the machines' write lock.
pub(crate) fn publish_into(
    sfn: &StepFunctions,
    m: &mut Machine,
    description: Option<&str>,
    now: i64,
    batch: &mut Batch,
) -> Result<(String, i64), AwsError> {
    check_description(description, 256)?;
    let mut versions = sfn.versions.write();
    let mine: Vec<&Version> = versions
        .values()
        .filter(|v| v.machine_arn == m.arn)
        .collect();
    if let Some(v) = mine
        .iter()
        .find(|v| v.snapshot.revision_id == m.revision_id)
    {
        return Ok((v.arn.clone(), v.created_ms));
    }
    if mine.len() >= MAX_VERSIONS {
        return Err(err(
            "ServiceQuotaExceededException",
            format!(
                "The maximum number of versions ({MAX_VERSIONS}) has been reached for state machine '{}'. Delete unused versions and try again.",
                m.arn
            ),
        ));
    }
    m.last_version += 1;
    let mut snapshot = m.clone();
    snapshot.tags.clear();
    let v = Version {
        arn: format!("{}:{}", m.arn, m.last_version),
        machine_arn: m.arn.clone(),
        number: m.last_version,
        description: description.map(str::to_string),
        created_ms: now,
        snapshot,
    };
    state::put_machine(batch, m);
    state::put_version(batch, &v);
    let out = (v.arn.clone(), now);
    versions.insert(v.arn.clone(), v);
    Ok(out)
}

pub(crate) async fn publish(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    if split(ctx, arn)?.1.is_some() {
        return Err(invalid_arn(arn));
    }
    let revision = input.get("revisionId").and_then(Value::as_str);
    let description = input.get("description").and_then(Value::as_str);
    let now = sfn.clock.now_ms();
    let (commit, out) = {
        let mut machines = sfn.machines.write();
        let m = Arc::make_mut(machines.get_mut(arn).ok_or_else(|| machine_missing(arn))?);
        if let Some(r) = revision {
            // `INITIAL` names the revision of a machine never updated.
            let current = r == m.revision_id || (r == "INITIAL" && m.updated_ms == m.created_ms);
            if !current {
                return Err(err(
                    "ConflictException",
                    format!(
                        "Failed to publish the State Machine version for revision {r}. The current State Machine revision is {}.",
                        m.revision_id
                    ),
                ));
            }
        }
        let mut batch = Batch::new();
        let out = publish_into(sfn, m, description, now, &mut batch)?;
        (sfn.store.commit(batch), out)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"stateMachineVersionArn": out.0, "creationDate": secs(out.1)}))
}

pub(crate) fn list_versions(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    if split(ctx, arn)?.1.is_some() {
        return Err(invalid_arn(arn));
    }
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let versions = sfn.versions.read();
    let mut mine: Vec<&Version> = versions.values().filter(|v| v.machine_arn == arn).collect();
    // Newest first, as AWS lists them.
    mine.sort_by_key(|v| std::cmp::Reverse(v.number));
    let page: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|v| json!({"stateMachineVersionArn": v.arn, "creationDate": secs(v.created_ms)}))
        .collect();
    let mut out = json!({"stateMachineVersions": page});
    if start + size < mine.len() {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

pub(crate) async fn delete_version(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineVersionArn")?;
    version_arn_parts(ctx, arn)?;
    let commit = {
        let mut versions = sfn.versions.write();
        let aliases = sfn.aliases.read();
        let users: Vec<&str> = aliases
            .values()
            .filter(|a| a.routing.iter().any(|(v, _)| v == arn))
            .map(|a| a.arn.as_str())
            .collect();
        if !users.is_empty() {
            return Err(err(
                "ConflictException",
                format!(
                    "Version to be deleted must not be referenced by an alias. Current list of aliases referencing this version: [{}]",
                    users.join(", ")
                ),
            ));
        }
        if versions.remove(arn).is_none() {
            // Deleting a version that does not exist succeeds (as AWS).
            return Ok(json!({}));
        }
        let mut batch = Batch::new();
        state::delete_version(&mut batch, arn);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

/// Removes every version and alias of the machine `arn` (DeleteStateMachine).
pub(crate) fn delete_all(sfn: &StepFunctions, arn: &str, batch: &mut Batch) {
    let mut versions = sfn.versions.write();
    let mut aliases = sfn.aliases.write();
    versions.retain(|k, v| {
        let keep = v.machine_arn != arn;
        if !keep {
            state::delete_version(batch, k);
        }
        keep
    });
    aliases.retain(|k, a| {
        let keep = a.machine_arn != arn;
        if !keep {
            state::delete_alias(batch, k);
        }
        keep
    });
}

/// A routing configuration checked as AWS does: one or two distinct versions of
/// `machine_arn` that exist, weights 0..=100 summing to 100.
fn routing_in(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    machine_arn: Option<&str>,
    input: &Value,
) -> Result<(String, Vec<(String, u32)>), AwsError> {
    let list = input
        .get("routingConfiguration")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() || list.len() > 2 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'routingConfiguration' failed to satisfy constraint: Member must have length less than or equal to 2 and greater than or equal to 1",
        ));
    }
    let mut routing = Vec::new();
    let mut base: Option<String> = machine_arn.map(str::to_string);
    for item in &list {
        let v = required_str(item, "stateMachineVersionArn")?;
        let weight = item.get("weight").and_then(Value::as_u64).unwrap_or(0);
        if weight > 100 {
            return Err(AwsError::validation(
                "1 validation error detected: Value at 'routingConfiguration.member.weight' failed to satisfy constraint: Member must have value less than or equal to 100",
            ));
        }
        let m = version_arn_parts(ctx, v)?;
        match &base {
            Some(b) if *b != m => {
                return Err(AwsError::validation(
                    "Routing configuration must contain state machine version ARNs that belong to the same state machine.",
                ));
            }
            _ => base = Some(m),
        }
        if routing.iter().any(|(x, _): &(String, u32)| x == v) {
            return Err(AwsError::validation(
                "Routing configuration must contain distinct state machine version ARNs.",
            ));
        }
        if !sfn.versions.read().contains_key(v) {
            return Err(not_found(v));
        }
        routing.push((v.to_string(), weight as u32));
    }
    if routing.iter().map(|r| r.1).sum::<u32>() != 100 {
        return Err(AwsError::validation(
            "Sum of routing configuration weights must be equal to 100.",
        ));
    }
    Ok((base.unwrap_or_default(), routing))
}

fn render_routing(routing: &[(String, u32)]) -> Value {
    routing
        .iter()
        .map(|(v, w)| json!({"stateMachineVersionArn": v, "weight": w}))
        .collect()
}

fn check_alias_name(name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !is_version(name);
    if !ok {
        return Err(err("InvalidName", format!("Invalid Name: '{name}'")));
    }
    Ok(())
}

pub(crate) async fn create_alias(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = required_str(input, "name")?;
    check_alias_name(name)?;
    let description = input.get("description").and_then(Value::as_str);
    check_description(description, 256)?;
    let (machine_arn, routing) = routing_in(sfn, ctx, None, input)?;
    let arn = format!("{machine_arn}:{name}");
    let now = sfn.clock.now_ms();
    let commit = {
        if !sfn.machines.read().contains_key(&machine_arn) {
            return Err(not_found(&machine_arn));
        }
        let mut aliases = sfn.aliases.write();
        if let Some(a) = aliases.get(&arn) {
            if a.routing == routing && a.description.as_deref() == description {
                return Ok(
                    json!({"stateMachineAliasArn": arn, "creationDate": secs(a.created_ms)}),
                );
            }
            return Err(err(
                "ConflictException",
                format!(
                    "Failed to create alias because an alias with the same name and a different routing configuration already exists: '{arn}'"
                ),
            ));
        }
        if aliases
            .values()
            .filter(|a| a.machine_arn == machine_arn)
            .count()
            >= MAX_ALIASES
        {
            return Err(err(
                "ServiceQuotaExceededException",
                format!(
                    "The maximum number of aliases ({MAX_ALIASES}) has been reached for state machine '{machine_arn}'."
                ),
            ));
        }
        let a = Alias {
            arn: arn.clone(),
            machine_arn,
            name: name.to_string(),
            description: description.map(str::to_string),
            routing,
            created_ms: now,
            updated_ms: now,
        };
        let mut batch = Batch::new();
        state::put_alias(&mut batch, &a);
        aliases.insert(arn.clone(), a);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"stateMachineAliasArn": arn, "creationDate": secs(now)}))
}

pub(crate) fn describe_alias(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineAliasArn")?;
    alias_arn_parts(ctx, arn)?;
    let aliases = sfn.aliases.read();
    let a = aliases.get(arn).ok_or_else(|| not_found(arn))?;
    let mut out = json!({
        "stateMachineAliasArn": a.arn,
        "name": a.name,
        "routingConfiguration": render_routing(&a.routing),
        "creationDate": secs(a.created_ms),
        "updateDate": secs(a.updated_ms),
    });
    if let Some(d) = &a.description {
        out["description"] = json!(d);
    }
    Ok(out)
}

pub(crate) async fn update_alias(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineAliasArn")?;
    let machine_arn = alias_arn_parts(ctx, arn)?;
    let description = input.get("description").and_then(Value::as_str);
    let has_routing = input.get("routingConfiguration").is_some();
    if description.is_none() && !has_routing {
        return Err(AwsError::validation(
            "Either the description or the routingConfiguration must be specified",
        ));
    }
    check_description(description, 256)?;
    let routing = if has_routing {
        Some(routing_in(sfn, ctx, Some(&machine_arn), input)?.1)
    } else {
        None
    };
    let now = sfn.clock.now_ms();
    let commit = {
        let mut aliases = sfn.aliases.write();
        let a = aliases.get_mut(arn).ok_or_else(|| not_found(arn))?;
        if let Some(r) = routing {
            a.routing = r;
        }
        if let Some(d) = description {
            a.description = Some(d.to_string());
        }
        a.updated_ms = now;
        let mut batch = Batch::new();
        state::put_alias(&mut batch, a);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"updateDate": secs(now)}))
}

pub(crate) async fn delete_alias(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineAliasArn")?;
    alias_arn_parts(ctx, arn)?;
    let commit = {
        let mut aliases = sfn.aliases.write();
        if aliases.remove(arn).is_none() {
            return Err(not_found(arn));
        }
        let mut batch = Batch::new();
        state::delete_alias(&mut batch, arn);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

pub(crate) fn list_aliases(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "stateMachineArn")?;
    if split(ctx, arn)?.1.is_some() {
        return Err(invalid_arn(arn));
    }
    if !sfn.machines.read().contains_key(arn) {
        return Err(machine_missing(arn));
    }
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let aliases = sfn.aliases.read();
    let mine: Vec<&Alias> = aliases.values().filter(|a| a.machine_arn == arn).collect();
    let page: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|a| json!({"stateMachineAliasArn": a.arn, "creationDate": secs(a.created_ms)}))
        .collect();
    let mut out = json!({"stateMachineAliases": page});
    if start + size < mine.len() {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}
