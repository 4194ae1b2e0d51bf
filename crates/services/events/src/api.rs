//! EventBridge's control plane: event buses, permissions, rules, targets and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::event_pattern::Pattern;
use tsumiki_store::Batch;

use crate::schedule::{Flavor, Schedule};
use crate::state::{Bus, Inner, Rule, Scope, writes};
use crate::transform::{self, InputSpec};
use crate::{Events, epoch_seconds, store_error, str_of};

/// AWS's limit of targets per rule.
const MAX_TARGETS_PER_RULE: usize = 5;

pub(crate) fn scope(ctx: &RequestContext) -> Scope {
    Scope {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
    }
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new("ResourceNotFoundException", 400, message)
}

fn already_exists(message: impl Into<String>) -> AwsError {
    AwsError::new("ResourceAlreadyExistsException", 400, message)
}

pub(crate) fn invalid_pattern(reason: &str) -> AwsError {
    AwsError::new(
        "InvalidEventPatternException",
        400,
        format!("Event pattern is not valid. Reason: {reason}"),
    )
}

fn bus_not_found(name: &str) -> AwsError {
    not_found(format!("Event bus {name} does not exist."))
}

fn rule_not_found(rule: &str, bus: &str) -> AwsError {
    not_found(format!("Rule {rule} does not exist on EventBus {bus}."))
}

/// A bus named by name or ARN (`arn:aws:events:region:account:event-bus/NAME`); the default
/// bus when absent.
pub(crate) fn bus_name(input: &Value, key: &str) -> String {
    match str_of(input, key) {
        Some(v) if v.starts_with("arn:") => v
            .split_once(":event-bus/")
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| v.to_string()),
        Some(v) => v.to_string(),
        None => "default".to_string(),
    }
}

pub(crate) fn bus_arn(scope: &Scope, name: &str) -> String {
    scope.arn("events", &format!("event-bus/{name}"))
}

impl Events {
    /// Runs `change` under the write lock and queues its store batch before the lock is let
    /// go, so the store sees changes in the order they happened; answers once it is durable.
    pub(crate) async fn write<T>(
        &self,
        change: impl FnOnce(&mut Inner, &mut Batch, i64) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let (out, commit) = {
            let mut inner = self.state.inner.write();
            let mut batch = Batch::new();
            let out = change(&mut inner, &mut batch, self.clock.now_ms())?;
            (out, self.state.store.commit(batch))
        };
        commit.await.map_err(store_error)?;
        Ok(out)
    }
}

/// The bus, materialising the implicit default bus (and recording it on its first change).
pub(crate) fn bus_mut<'a>(
    inner: &'a mut Inner,
    scope: &Scope,
    name: &str,
    now: i64,
    batch: &mut Batch,
) -> Result<&'a mut Bus, AwsError> {
    let key = (scope.clone(), name.to_string());
    if name == "default" {
        inner
            .buses
            .entry(key.clone())
            .or_insert_with(|| Bus::new("default", now));
    }
    let bus = inner
        .buses
        .get_mut(&key)
        .ok_or_else(|| bus_not_found(name))?;
    if !bus.persisted {
        writes::bus(batch, scope, &bus.record);
        bus.persisted = true;
    }
    Ok(bus)
}

fn render_bus(scope: &Scope, bus: Option<&Bus>, name: &str, now: i64) -> Value {
    let mut v = json!({"Name": name, "Arn": bus_arn(scope, name)});
    let (created, modified) = bus
        .map(|b| (b.record.created_ms, b.record.modified_ms))
        .unwrap_or((now, now));
    v["CreationTime"] = epoch_seconds(created);
    v["LastModifiedTime"] = epoch_seconds(modified);
    if let Some(b) = bus {
        if let Some(d) = &b.record.description {
            v["Description"] = json!(d);
        }
        if !b.record.statements.is_empty() {
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": b.record.statements.values().cloned().collect::<Vec<_>>(),
            });
            v["Policy"] = json!(policy.to_string());
        }
    }
    v
}

pub async fn create_event_bus(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    if name.starts_with("aws.") && str_of(input, "EventSourceName").is_none() {
        return Err(AwsError::validation(format!(
            "Event bus name must not start with 'aws.': {name}"
        )));
    }
    let tags = tag_map(input.get("Tags"));
    let description = str_of(input, "Description").map(String::from);
    ev.write(|inner, batch, now| {
        let key = (scope.clone(), name.clone());
        if name == "default" || inner.buses.contains_key(&key) {
            return Err(already_exists(format!("Event bus {name} already exists.")));
        }
        let mut bus = Bus::new(&name, now);
        bus.record.tags = tags;
        bus.record.description = description.clone();
        bus.persisted = true;
        writes::bus(batch, &scope, &bus.record);
        inner.buses.insert(key, bus);
        let mut out = json!({"EventBusArn": bus_arn(&scope, &name)});
        if let Some(d) = description {
            out["Description"] = json!(d);
        }
        Ok(out)
    })
    .await
}

pub fn describe_event_bus(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = bus_name(input, "Name");
    let inner = ev.state.inner.read();
    let bus = inner.buses.get(&(scope.clone(), name.clone()));
    if bus.is_none() && name != "default" {
        return Err(bus_not_found(&name));
    }
    Ok(render_bus(&scope, bus, &name, ev.clock.now_ms()))
}

pub fn list_event_buses(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let prefix = str_of(input, "NamePrefix").unwrap_or_default();
    let inner = ev.state.inner.read();
    let now = ev.clock.now_ms();
    let mut names: Vec<&str> = inner
        .buses
        .keys()
        .filter(|(s, _)| *s == scope)
        .map(|(_, n)| n.as_str())
        .collect();
    if !names.contains(&"default") {
        names.push("default");
    }
    names.sort_unstable();
    names.retain(|n| n.starts_with(prefix));
    let (page, next) = paginate(&names, input, "Limit", |n| n.to_string());
    let buses: Vec<Value> = page
        .iter()
        .map(|n| {
            render_bus(
                &scope,
                inner.buses.get(&(scope.clone(), n.to_string())),
                n,
                now,
            )
        })
        .collect();
    let mut out = json!({"EventBuses": buses});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

pub async fn update_event_bus(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = bus_name(input, "Name");
    let description = str_of(input, "Description").map(String::from);
    ev.write(|inner, batch, now| {
        let bus = bus_mut(inner, &scope, &name, now, batch)?;
        if description.is_some() {
            bus.record.description = description;
        }
        bus.record.modified_ms = now;
        writes::bus(batch, &scope, &bus.record);
        let mut out = json!({"Name": name, "Arn": bus_arn(&scope, &name)});
        if let Some(d) = &bus.record.description {
            out["Description"] = json!(d);
        }
        Ok(out)
    })
    .await
}

pub async fn delete_event_bus(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = bus_name(input, "Name");
    if name == "default" {
        return Err(AwsError::validation("Cannot delete event bus default."));
    }
    ev.write(|inner, batch, _| {
        if inner.buses.remove(&(scope.clone(), name.clone())).is_some() {
            writes::delete_bus(batch, &scope, &name);
        }
        Ok(json!({}))
    })
    .await
}

pub async fn put_permission(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = bus_name(input, "EventBusName");
    let arn = bus_arn(&scope, &name);
    let statements: Vec<(String, Value)> = if let Some(policy) = str_of(input, "Policy") {
        let doc: Value = serde_json::from_str(policy)
            .map_err(|_| AwsError::validation("Policy is not valid JSON."))?;
        doc.get("Statement")
            .and_then(Value::as_array)
            .ok_or_else(|| AwsError::validation("Policy has no Statement."))?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let sid = s
                    .get("Sid")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| format!("statement-{i}"));
                (sid, s.clone())
            })
            .collect()
    } else {
        let (Some(sid), Some(principal)) =
            (str_of(input, "StatementId"), str_of(input, "Principal"))
        else {
            return Err(AwsError::validation(
                "One of Policy or (Action, Principal, StatementId) must be specified.",
            ));
        };
        let action = str_of(input, "Action").unwrap_or("events:PutEvents");
        if action != "events:PutEvents" {
            return Err(AwsError::validation(
                "Provided value in parameter 'action' is not supported.",
            ));
        }
        let principal = if principal == "*" {
            json!("*")
        } else {
            json!({"AWS": format!("arn:aws:iam::{principal}:root")})
        };
        let mut s = json!({
            "Sid": sid, "Effect": "Allow", "Principal": principal,
            "Action": action, "Resource": arn,
        });
        if let Some(c) = input.get("Condition") {
            s["Condition"] = json!({"StringEquals": {c.get("Key").cloned().unwrap_or_default().as_str().unwrap_or("aws:PrincipalOrgID"): c.get("Value").cloned().unwrap_or_default()}});
        }
        vec![(sid.to_string(), s)]
    };
    let replace = input.get("Policy").is_some();
    ev.write(|inner, batch, now| {
        let bus = bus_mut(inner, &scope, &name, now, batch)?;
        if replace {
            bus.record.statements.clear();
        }
        bus.record.statements.extend(statements);
        bus.record.modified_ms = now;
        writes::bus(batch, &scope, &bus.record);
        Ok(json!({}))
    })
    .await
}

pub async fn remove_permission(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = bus_name(input, "EventBusName");
    let all = input.get("RemoveAllPermissions").and_then(Value::as_bool) == Some(true);
    let sid = str_of(input, "StatementId").map(String::from);
    ev.write(|inner, batch, now| {
        let bus = bus_mut(inner, &scope, &name, now, batch)?;
        if all {
            bus.record.statements.clear();
        } else {
            let sid = sid.ok_or_else(|| {
                AwsError::validation(
                    "One of StatementId or RemoveAllPermissions must be specified.",
                )
            })?;
            if bus.record.statements.remove(&sid).is_none() {
                return Err(not_found("Statement with the provided id does not exist."));
            }
        }
        bus.record.modified_ms = now;
        writes::bus(batch, &scope, &bus.record);
        Ok(json!({}))
    })
    .await
}

pub async fn put_rule(ev: &Events, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let bus = bus_name(input, "EventBusName");
    let pattern = str_of(input, "EventPattern").map(String::from);
    let schedule = str_of(input, "ScheduleExpression").map(String::from);
    if pattern.is_none() && schedule.is_none() {
        return Err(AwsError::validation(
            "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        ));
    }
    if let Some(p) = &pattern {
        Pattern::parse(p).map_err(|e| invalid_pattern(e.reason()))?;
    }
    if let Some(s) = &schedule {
        if Schedule::parse(s, Flavor::Rule).is_none() {
            return Err(AwsError::validation(
                "Parameter ScheduleExpression is not valid.",
            ));
        }
        if bus != "default" {
            return Err(AwsError::validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
    }
    let state = str_of(input, "State").unwrap_or("ENABLED").to_string();
    let tags = tag_map(input.get("Tags"));
    let out = ev
        .write(|inner, batch, now| {
            let b = bus_mut(inner, &scope, &bus, now, batch)?;
            let previous = b.rules.get(&name).cloned();
            let schedule_changed = previous
                .as_ref()
                .is_none_or(|r| r.schedule != schedule || !r.enabled());
            let rule = Rule {
                name: name.clone(),
                bus: bus.clone(),
                event_pattern: pattern,
                schedule,
                state,
                description: str_of(input, "Description").map(String::from),
                role_arn: str_of(input, "RoleArn").map(String::from),
                anchor_ms: match &previous {
                    Some(r) if !schedule_changed => r.anchor_ms,
                    _ => now,
                },
                tags: previous.as_ref().map(|r| r.tags.clone()).unwrap_or(tags),
                targets: previous.map(|r| r.targets.clone()).unwrap_or_default(),
            };
            let arn = rule.arn(&scope);
            writes::rule(batch, &scope, &rule);
            if schedule_changed {
                inner.rule_fired.remove(&(scope.clone(), name.clone()));
            }
            let b = bus_mut(inner, &scope, &bus, now, batch)?;
            b.set_rule(Arc::new(rule));
            Ok(json!({"RuleArn": arn}))
        })
        .await?;
    ev.poke_timers();
    Ok(out)
}

fn render_rule(scope: &Scope, r: &Rule) -> Value {
    let mut v = json!({
        "Name": r.name, "Arn": r.arn(scope), "State": r.state,
        "EventBusName": r.bus, "CreatedBy": scope.account,
    });
    if let Some(p) = &r.event_pattern {
        v["EventPattern"] = json!(p);
    }
    if let Some(s) = &r.schedule {
        v["ScheduleExpression"] = json!(s);
    }
    if let Some(d) = &r.description {
        v["Description"] = json!(d);
    }
    if let Some(a) = &r.role_arn {
        v["RoleArn"] = json!(a);
    }
    v
}

/// Reads a rule under the read lock.
fn read_rule<T>(
    ev: &Events,
    scope: &Scope,
    bus: &str,
    name: &str,
    f: impl FnOnce(&Rule) -> T,
) -> Result<T, AwsError> {
    let inner = ev.state.inner.read();
    match inner.buses.get(&(scope.clone(), bus.to_string())) {
        Some(b) => b
            .rules
            .get(name)
            .map(|r| f(r))
            .ok_or_else(|| rule_not_found(name, bus)),
        None if bus == "default" => Err(rule_not_found(name, bus)),
        None => Err(bus_not_found(bus)),
    }
}

pub fn describe_rule(ev: &Events, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Name").unwrap_or_default();
    read_rule(ev, &scope, &bus, name, |r| render_rule(&scope, r))
}

pub fn list_rules(ev: &Events, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let prefix = str_of(input, "NamePrefix").unwrap_or_default();
    let inner = ev.state.inner.read();
    let rules: Vec<&Arc<Rule>> = match inner.buses.get(&(scope.clone(), bus.clone())) {
        Some(b) => b
            .rules
            .values()
            .filter(|r| r.name.starts_with(prefix))
            .collect(),
        None if bus == "default" => Vec::new(),
        None => return Err(bus_not_found(&bus)),
    };
    let (page, next) = paginate(&rules, input, "Limit", |r| r.name.clone());
    let mut out = json!({"Rules": page.iter().map(|r| render_rule(&scope, r)).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

/// Pages a sorted list: the token is the last key of the previous page.
pub(crate) fn paginate<'a, T>(
    items: &'a [T],
    input: &Value,
    limit_key: &str,
    key: impl Fn(&T) -> String,
) -> (&'a [T], Option<String>) {
    let start = match str_of(input, "NextToken") {
        Some(token) => items.partition_point(|i| key(i).as_str() <= token),
        None => 0,
    };
    let limit = input
        .get(limit_key)
        .and_then(Value::as_u64)
        .filter(|l| *l > 0)
        .unwrap_or(100) as usize;
    let end = (start + limit).min(items.len());
    let page = &items[start..end];
    let next = (end < items.len()).then(|| key(&items[end - 1]));
    (page, next)
}

pub async fn set_rule_state(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
    enable: bool,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    ev.write(|inner, batch, now| {
        let b = bus_mut(inner, &scope, &bus, now, batch)?;
        let old = b
            .rules
            .get(&name)
            .cloned()
            .ok_or_else(|| rule_not_found(&name, &bus))?;
        let mut rule = (*old).clone();
        rule.state = if enable { "ENABLED" } else { "DISABLED" }.into();
        writes::rule(batch, &scope, &rule);
        b.set_rule(Arc::new(rule));
        if enable && !old.enabled() && old.schedule.is_some() {
            // Occurrences missed while disabled are not made up.
            inner.rule_fired.insert((scope.clone(), name.clone()), now);
            writes::rule_fired(batch, &scope, &name, now);
        }
        Ok(json!({}))
    })
    .await?;
    ev.poke_timers();
    Ok(json!({}))
}

pub async fn delete_rule(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    ev.write(|inner, batch, _| {
        let Some(b) = inner.buses.get_mut(&(scope.clone(), bus.clone())) else {
            return if bus == "default" {
                Ok(json!({}))
            } else {
                Err(bus_not_found(&bus))
            };
        };
        if let Some(r) = b.rules.get(&name) {
            if !r.targets.is_empty() {
                return Err(AwsError::validation(
                    "Rule can't be deleted since it has targets.",
                ));
            }
            b.remove_rule(&name);
            inner.rule_fired.remove(&(scope.clone(), name.clone()));
            writes::delete_rule(batch, &scope, &bus, &name);
        }
        Ok(json!({}))
    })
    .await
}

pub fn list_rule_names_by_target(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let target = str_of(input, "TargetArn").unwrap_or_default();
    let inner = ev.state.inner.read();
    let names: Vec<String> = match inner.buses.get(&(scope.clone(), bus.clone())) {
        Some(b) => b
            .rules
            .values()
            .filter(|r| r.targets.values().any(|t| str_of(t, "Arn") == Some(target)))
            .map(|r| r.name.clone())
            .collect(),
        None if bus == "default" => Vec::new(),
        None => return Err(bus_not_found(&bus)),
    };
    let (page, next) = paginate(&names, input, "Limit", String::clone);
    let mut out = json!({"RuleNames": page});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

/// Why a target is refused as a whole request (AWS answers these as ValidationException).
fn check_target(t: &Value) -> Result<(), AwsError> {
    let given = ["Input", "InputPath", "InputTransformer"]
        .iter()
        .filter(|k| t.get(**k).is_some())
        .count();
    if given > 1 {
        return Err(AwsError::validation(
            "Only one of Input, InputPath, or InputTransformer must be provided.",
        ));
    }
    if let Some(input) = str_of(t, "Input")
        && serde_json::from_str::<Value>(input).is_err()
    {
        return Err(AwsError::validation("Input is not valid JSON text."));
    }
    if let InputSpec::Template { paths, .. } = InputSpec::from_target(t) {
        transform::validate_paths(&paths).map_err(AwsError::validation)?;
    }
    // EventBridge acts on ECS and Glue targets as the target's role.
    let arn = str_of(t, "Arn").unwrap_or_default();
    let service = arn.split(':').nth(2).unwrap_or_default();
    if matches!(service, "ecs" | "glue") && t.get("RoleArn").is_none() {
        return Err(AwsError::validation(format!(
            "RoleArn is required for target {arn}."
        )));
    }
    if let Some(r) = t.get("RetryPolicy") {
        if let Some(n) = r.get("MaximumRetryAttempts").and_then(Value::as_i64)
            && !(0..=185).contains(&n)
        {
            return Err(AwsError::validation(
                "MaximumRetryAttempts must be between 0 and 185.",
            ));
        }
        if let Some(n) = r.get("MaximumEventAgeInSeconds").and_then(Value::as_i64)
            && !(60..=86_400).contains(&n)
        {
            return Err(AwsError::validation(
                "MaximumEventAgeInSeconds must be between 60 and 86400.",
            ));
        }
    }
    Ok(())
}

pub async fn put_targets(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Rule").unwrap_or_default().to_string();
    let targets: Vec<Value> = input
        .get("Targets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in &targets {
        check_target(t)?;
    }
    ev.write(|inner, batch, now| {
        let b = bus_mut(inner, &scope, &bus, now, batch)?;
        let old = b
            .rules
            .get(&name)
            .cloned()
            .ok_or_else(|| rule_not_found(&name, &bus))?;
        let mut rule = (*old).clone();
        let mut failed = Vec::new();
        for t in targets {
            let id = str_of(&t, "Id").unwrap_or_default().to_string();
            let arn = str_of(&t, "Arn").unwrap_or_default();
            if tsumiki_core::ids::parse_arn(arn).is_none() {
                failed.push(json!({
                    "TargetId": id, "ErrorCode": "ValidationException",
                    "ErrorMessage": format!("Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."),
                }));
                continue;
            }
            rule.targets.insert(id, t);
        }
        if rule.targets.len() > MAX_TARGETS_PER_RULE {
            return Err(AwsError::new(
                "LimitExceededException",
                400,
                "The requested resource exceeds the maximum number allowed.",
            ));
        }
        writes::rule(batch, &scope, &rule);
        b.set_rule(Arc::new(rule));
        Ok(json!({"FailedEntryCount": failed.len(), "FailedEntries": failed}))
    })
    .await
}

pub async fn remove_targets(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Rule").unwrap_or_default().to_string();
    let ids: Vec<String> = input
        .get("Ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ev.write(|inner, batch, now| {
        let b = bus_mut(inner, &scope, &bus, now, batch)?;
        let old = b
            .rules
            .get(&name)
            .cloned()
            .ok_or_else(|| rule_not_found(&name, &bus))?;
        let mut rule = (*old).clone();
        // AWS answers success for ids the rule does not have.
        for id in &ids {
            rule.targets.remove(id);
        }
        writes::rule(batch, &scope, &rule);
        b.set_rule(Arc::new(rule));
        Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
    })
    .await
}

pub fn list_targets_by_rule(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let bus = bus_name(input, "EventBusName");
    let name = str_of(input, "Rule").unwrap_or_default();
    let targets = read_rule(ev, &scope, &bus, name, |r| {
        r.targets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    })?;
    let (page, next) = paginate(&targets, input, "Limit", |(k, _)| k.clone());
    let mut out = json!({"Targets": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

pub(crate) fn tag_map(tags: Option<&Value>) -> BTreeMap<String, String> {
    tags.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        str_of(t, "Key")?.to_string(),
                        str_of(t, "Value").unwrap_or_default().to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// What an EventBridge ARN names.
enum Resource {
    Bus(String),
    Rule { bus: String, name: String },
}

fn resource(arn: &str) -> Result<Resource, AwsError> {
    let bad = || AwsError::validation(format!("Parameter ResourceARN is not valid: {arn}"));
    let (service, _, _, res) = tsumiki_core::ids::parse_arn(arn).ok_or_else(bad)?;
    if service != "events" {
        return Err(bad());
    }
    if let Some(name) = res.strip_prefix("event-bus/") {
        return Ok(Resource::Bus(name.to_string()));
    }
    if let Some(rest) = res.strip_prefix("rule/") {
        return Ok(match rest.rsplit_once('/') {
            Some((bus, name)) => Resource::Rule {
                bus: bus.to_string(),
                name: name.to_string(),
            },
            None => Resource::Rule {
                bus: "default".into(),
                name: rest.to_string(),
            },
        });
    }
    Err(bad())
}

async fn change_tags(
    ev: &Events,
    ctx: &RequestContext,
    arn: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let res = resource(arn)?;
    ev.write(|inner, batch, now| {
        match res {
            Resource::Bus(name) => {
                let b = bus_mut(inner, &scope, &name, now, batch)?;
                change(&mut b.record.tags);
                writes::bus(batch, &scope, &b.record);
            }
            Resource::Rule { bus, name } => {
                let b = bus_mut(inner, &scope, &bus, now, batch)?;
                let old = b
                    .rules
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| rule_not_found(&name, &bus))?;
                let mut rule = (*old).clone();
                change(&mut rule.tags);
                writes::rule(batch, &scope, &rule);
                b.set_rule(Arc::new(rule));
            }
        }
        Ok(json!({}))
    })
    .await
}

pub async fn tag_resource(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let tags = tag_map(input.get("Tags"));
    let arn = str_of(input, "ResourceARN").unwrap_or_default();
    change_tags(ev, ctx, arn, |t| t.extend(tags)).await
}

pub async fn untag_resource(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let keys: Vec<String> = input
        .get("TagKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let arn = str_of(input, "ResourceARN").unwrap_or_default();
    change_tags(ev, ctx, arn, |t| {
        for k in &keys {
            t.remove(k);
        }
    })
    .await
}

pub fn list_tags_for_resource(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let arn = str_of(input, "ResourceARN").unwrap_or_default();
    let tags = match resource(arn)? {
        Resource::Bus(name) => {
            let inner = ev.state.inner.read();
            match inner.buses.get(&(scope.clone(), name.clone())) {
                Some(b) => b.record.tags.clone(),
                None if name == "default" => BTreeMap::new(),
                None => return Err(bus_not_found(&name)),
            }
        }
        Resource::Rule { bus, name } => read_rule(ev, &scope, &bus, &name, |r| r.tags.clone())?,
    };
    Ok(json!({"Tags": tag_list(&tags)}))
}
