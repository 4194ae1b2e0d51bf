//! EventBridge Scheduler: schedule groups (the `default` group exists implicitly), schedules
//! with `at()`, `rate()` and `cron()` in a time zone, start and end dates, state, delete after
//! completion, and their firing (called from the timer loop in `timers.rs`, under the same
//! exactly-once rule as scheduled rules).
//!
//! `FlexibleTimeWindow` is accepted and stored; every schedule fires at its exact time, which
//! is one of the times a window allows.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::api::{paginate, scope, tag_list, tag_map};
use crate::put::Envelope;
use crate::schedule::{Flavor, Schedule, iso_seconds};
use crate::state::{Group, ScheduleRecord, Scope, writes};
use crate::{Events, epoch_seconds, store_error, str_of};

fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new("ResourceNotFoundException", 404, message)
}

fn conflict(message: impl Into<String>) -> AwsError {
    AwsError::new("ConflictException", 409, message)
}

fn group_arn(scope: &Scope, name: &str) -> String {
    scope.arn("scheduler", &format!("schedule-group/{name}"))
}

fn schedule_arn(scope: &Scope, group: &str, name: &str) -> String {
    scope.arn("scheduler", &format!("schedule/{group}/{name}"))
}

fn group_name(input: &Value) -> String {
    str_of(input, "GroupName").unwrap_or("default").to_string()
}

fn group_exists(inner: &crate::state::Inner, scope: &Scope, name: &str) -> bool {
    name == "default"
        || inner
            .groups
            .contains_key(&(scope.clone(), name.to_string()))
}

fn render_group(scope: &Scope, name: &str, g: Option<&Group>, now: i64) -> Value {
    let (c, m) = g.map_or((now, now), |g| (g.created_ms, g.modified_ms));
    json!({
        "Arn": group_arn(scope, name), "Name": name, "State": "ACTIVE",
        "CreationDate": epoch_seconds(c), "LastModificationDate": epoch_seconds(m),
    })
}

pub async fn create_schedule_group(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let tags = tag_map(input.get("Tags"));
    ev.write(|inner, batch, now| {
        if group_exists(inner, &scope, &name) {
            return Err(conflict(format!("Schedule group {name} already exists.")));
        }
        let g = Group {
            name: name.clone(),
            created_ms: now,
            modified_ms: now,
            tags,
        };
        writes::group(batch, &scope, &g);
        inner.groups.insert((scope.clone(), name.clone()), g);
        Ok(json!({"ScheduleGroupArn": group_arn(&scope, &name)}))
    })
    .await
}

pub fn get_schedule_group(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default();
    let inner = ev.state.inner.read();
    if !group_exists(&inner, &scope, name) {
        return Err(not_found(format!("Schedule group {name} does not exist.")));
    }
    Ok(render_group(
        &scope,
        name,
        inner.groups.get(&(scope.clone(), name.to_string())),
        ev.clock.now_ms(),
    ))
}

pub fn list_schedule_groups(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let prefix = str_of(input, "NamePrefix").unwrap_or_default();
    let inner = ev.state.inner.read();
    let mut names: Vec<String> = inner
        .groups
        .keys()
        .filter(|(s, _)| *s == scope)
        .map(|(_, n)| n.clone())
        .collect();
    names.push("default".into());
    names.sort_unstable();
    names.dedup();
    names.retain(|n| n.starts_with(prefix));
    let (page, next) = paginate(&names, input, "MaxResults", String::clone);
    let now = ev.clock.now_ms();
    let groups: Vec<Value> = page
        .iter()
        .map(|n| {
            render_group(
                &scope,
                n,
                inner.groups.get(&(scope.clone(), n.clone())),
                now,
            )
        })
        .collect();
    let mut out = json!({"ScheduleGroups": groups});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

pub async fn delete_schedule_group(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    if name == "default" {
        return Err(AwsError::validation(
            "You cannot delete the default schedule group.",
        ));
    }
    ev.write(|inner, batch, _| {
        if inner
            .groups
            .remove(&(scope.clone(), name.clone()))
            .is_none()
        {
            return Err(not_found(format!("Schedule group {name} does not exist.")));
        }
        inner
            .schedules
            .retain(|(s, g, _), _| !(*s == scope && *g == name));
        inner
            .schedule_fired
            .retain(|(s, g, _), _| !(*s == scope && *g == name));
        writes::delete_group(batch, &scope, &name);
        Ok(json!({}))
    })
    .await
}

/// The members of a schedule definition that CreateSchedule and UpdateSchedule take.
const DEFINITION_MEMBERS: &[&str] = &[
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "StartDate",
    "EndDate",
    "Description",
    "State",
    "FlexibleTimeWindow",
    "Target",
    "ActionAfterCompletion",
    "KmsKeyArn",
];

fn check_definition(def: &Value) -> Result<(), AwsError> {
    let expr = str_of(def, "ScheduleExpression").unwrap_or_default();
    if Schedule::parse(expr, Flavor::Scheduler).is_none() {
        return Err(AwsError::validation(format!(
            "Invalid Schedule Expression {expr}."
        )));
    }
    if let Some(tz) = str_of(def, "ScheduleExpressionTimezone")
        && tz.parse::<Tz>().is_err()
    {
        return Err(AwsError::validation(format!("Invalid time zone {tz}.")));
    }
    if let (Some(s), Some(e)) = (
        def.get("StartDate").and_then(Value::as_f64),
        def.get("EndDate").and_then(Value::as_f64),
    ) && e <= s
    {
        return Err(AwsError::validation(
            "The StartDate must come before the EndDate.",
        ));
    }
    let target = def.get("Target").cloned().unwrap_or_default();
    let arn = str_of(&target, "Arn").unwrap_or_default();
    if tsumiki_core::ids::parse_arn(arn).is_none() {
        return Err(AwsError::validation(format!("Invalid target ARN {arn}.")));
    }
    if let Some(r) = target.get("RetryPolicy") {
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

/// CreateSchedule (`create`) or UpdateSchedule: the definition is replaced whole, as AWS
/// does, and the schedule counts its occurrences afresh from now.
pub async fn put_schedule(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
    create: bool,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let group = group_name(input);
    let mut definition = serde_json::Map::new();
    for k in DEFINITION_MEMBERS {
        if let Some(v) = input.get(*k) {
            definition.insert(k.to_string(), v.clone());
        }
    }
    definition
        .entry("State")
        .or_insert_with(|| json!("ENABLED"));
    let definition = Value::Object(definition);
    check_definition(&definition)?;
    let out = ev
        .write(|inner, batch, now| {
            if !group_exists(inner, &scope, &group) {
                return Err(not_found(format!("Schedule group {group} does not exist.")));
            }
            let key = (scope.clone(), group.clone(), name.clone());
            let existing = inner.schedules.get(&key);
            let created_ms = match (existing, create) {
                (Some(_), true) => {
                    return Err(conflict(format!("Schedule {name} already exists.")));
                }
                (None, false) => {
                    return Err(not_found(format!("Schedule {name} does not exist.")));
                }
                (Some(s), false) => s.created_ms,
                (None, true) => now,
            };
            let record = ScheduleRecord {
                name: name.clone(),
                group: group.clone(),
                definition,
                created_ms,
                modified_ms: now,
            };
            writes::schedule(batch, &scope, &record);
            inner.schedules.insert(key.clone(), record);
            inner.schedule_fired.remove(&key);
            writes::forget_schedule_fired(batch, &scope, &group, &name);
            Ok(json!({"ScheduleArn": schedule_arn(&scope, &group, &name)}))
        })
        .await?;
    ev.poke_timers();
    Ok(out)
}

fn render_schedule(scope: &Scope, s: &ScheduleRecord) -> Value {
    let mut v = s.definition.clone();
    v["Name"] = json!(s.name);
    v["GroupName"] = json!(s.group);
    v["Arn"] = json!(schedule_arn(scope, &s.group, &s.name));
    v["CreationDate"] = epoch_seconds(s.created_ms);
    v["LastModificationDate"] = epoch_seconds(s.modified_ms);
    v
}

pub fn get_schedule(ev: &Events, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let group = group_name(input);
    let inner = ev.state.inner.read();
    inner
        .schedules
        .get(&(scope.clone(), group, name.clone()))
        .map(|s| render_schedule(&scope, s))
        .ok_or_else(|| not_found(format!("Schedule {name} does not exist.")))
}

pub fn list_schedules(ev: &Events, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let group = str_of(input, "GroupName");
    let prefix = str_of(input, "NamePrefix").unwrap_or_default();
    let state = str_of(input, "State");
    let inner = ev.state.inner.read();
    let items: Vec<(String, Value)> = inner
        .schedules
        .iter()
        .filter(|((s, g, n), rec)| {
            *s == scope
                && group.is_none_or(|want| want == g)
                && n.starts_with(prefix)
                && state.is_none_or(|st| str_of(&rec.definition, "State") == Some(st))
        })
        .map(|((_, g, n), rec)| {
            let summary = json!({
                "Arn": schedule_arn(&scope, g, n), "Name": n, "GroupName": g,
                "State": str_of(&rec.definition, "State").unwrap_or("ENABLED"),
                "CreationDate": epoch_seconds(rec.created_ms),
                "LastModificationDate": epoch_seconds(rec.modified_ms),
                "Target": {"Arn": rec.definition.get("Target").and_then(|t| t.get("Arn")).cloned().unwrap_or_default()},
            });
            (format!("{g}/{n}"), summary)
        })
        .collect();
    let (page, next) = paginate(&items, input, "MaxResults", |(k, _)| k.clone());
    let mut out = json!({"Schedules": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

pub async fn delete_schedule(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let group = group_name(input);
    ev.write(|inner, batch, _| {
        let key = (scope.clone(), group.clone(), name.clone());
        if inner.schedules.remove(&key).is_none() {
            return Err(not_found(format!("Schedule {name} does not exist.")));
        }
        inner.schedule_fired.remove(&key);
        writes::delete_schedule(batch, &scope, &group, &name);
        Ok(json!({}))
    })
    .await
}

fn group_of_arn(arn: &str) -> Result<String, AwsError> {
    tsumiki_core::ids::parse_arn(arn)
        .and_then(|(_, _, _, r)| r.strip_prefix("schedule-group/"))
        .map(String::from)
        .ok_or_else(|| AwsError::validation(format!("Invalid resource ARN {arn}.")))
}

async fn change_group_tags(
    ev: &Events,
    ctx: &RequestContext,
    input: &Value,
    change: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<Value, AwsError> {
    let scope = scope(ctx);
    let name = group_of_arn(str_of(input, "ResourceArn").unwrap_or_default())?;
    ev.write(|inner, batch, now| {
        let key = (scope.clone(), name.clone());
        if name == "default" && !inner.groups.contains_key(&key) {
            inner.groups.insert(
                key.clone(),
                Group {
                    name: name.clone(),
                    created_ms: now,
                    modified_ms: now,
                    tags: BTreeMap::new(),
                },
            );
        }
        let g = inner
            .groups
            .get_mut(&key)
            .ok_or_else(|| not_found(format!("Schedule group {name} does not exist.")))?;
        change(&mut g.tags);
        writes::group(batch, &scope, g);
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
    change_group_tags(ev, ctx, input, |t| t.extend(tags)).await
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
    change_group_tags(ev, ctx, input, |t| {
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
    let name = group_of_arn(str_of(input, "ResourceArn").unwrap_or_default())?;
    let inner = ev.state.inner.read();
    let tags = match inner.groups.get(&(scope, name.clone())) {
        Some(g) => g.tags.clone(),
        None if name == "default" => BTreeMap::new(),
        None => return Err(not_found(format!("Schedule group {name} does not exist."))),
    };
    Ok(json!({"Tags": tag_list(&tags)}))
}

/// A schedule ready to be evaluated by the timer loop.
struct Due {
    key: (Scope, String, String),
    schedule: Schedule,
    tz: Tz,
    anchor: i64,
    cursor: i64,
    end: Option<i64>,
    definition: Value,
}

fn date_ms(def: &Value, key: &str) -> Option<i64> {
    def.get(key)
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0) as i64)
}

impl Events {
    fn enabled_schedules(&self) -> Vec<Due> {
        let inner = self.state.inner.read();
        inner
            .schedules
            .iter()
            .filter(|(_, s)| str_of(&s.definition, "State") != Some("DISABLED"))
            .filter_map(|(key, s)| {
                let def = &s.definition;
                let schedule =
                    Schedule::parse(str_of(def, "ScheduleExpression")?, Flavor::Scheduler)?;
                let tz = str_of(def, "ScheduleExpressionTimezone")
                    .and_then(|z| z.parse().ok())
                    .unwrap_or(Tz::UTC);
                let start = date_ms(def, "StartDate");
                let anchor = start.unwrap_or(s.modified_ms);
                let cursor = inner.schedule_fired.get(key).copied().unwrap_or_else(|| {
                    match (start, schedule.is_one_time()) {
                        // A start date is itself a possible occurrence of cron and at().
                        (Some(st), false) if st > s.modified_ms => st - 1,
                        _ => s.modified_ms,
                    }
                });
                Some(Due {
                    key: key.clone(),
                    schedule,
                    tz,
                    anchor,
                    cursor,
                    end: date_ms(def, "EndDate"),
                    definition: def.clone(),
                })
            })
            .collect()
    }

    pub(crate) fn next_schedule_ms(&self) -> Option<i64> {
        self.enabled_schedules()
            .iter()
            .filter_map(|d| {
                let next = d.schedule.next_after(d.cursor, d.anchor, d.tz)?;
                d.end.is_none_or(|e| next <= e).then_some(next)
            })
            .min()
    }

    /// Fires every schedule with an occurrence due (one per schedule; see `timers.rs`).
    pub(crate) async fn fire_schedules(&self, now: i64) {
        for due in self.enabled_schedules() {
            let until = due.end.map_or(now, |e| e.min(now));
            let Some(occurrence) = due
                .schedule
                .latest_due(due.cursor, until, due.anchor, due.tz)
            else {
                continue;
            };
            let (scope, group, name) = &due.key;
            let arn = schedule_arn(scope, group, name);
            let target = due.definition.get("Target").cloned().unwrap_or_default();
            let execution_id = uuid::Uuid::new_v4().to_string();
            let payload = str_of(&target, "Input")
                .unwrap_or("{}")
                .replace("<aws.scheduler.schedule-arn>", &arn)
                .replace("<aws.scheduler.scheduled-time>", &iso_seconds(occurrence))
                .replace("<aws.scheduler.execution-id>", &execution_id)
                .replace("<aws.scheduler.attempt-number>", "1");
            let envelope = Envelope {
                id: execution_id,
                time_ms: occurrence,
                value: Value::Null,
                text: String::new(),
            };
            let delivery = self.delivery(scope, &arn, true, &target, payload, &envelope, now);
            let delete_after = due.schedule.is_one_time()
                && str_of(&due.definition, "ActionAfterCompletion") == Some("DELETE");
            let commit = {
                let mut inner = self.state.inner.write();
                let mut batch = Batch::new();
                if delete_after {
                    inner.schedules.remove(&due.key);
                    inner.schedule_fired.remove(&due.key);
                    writes::delete_schedule(&mut batch, scope, group, name);
                } else {
                    writes::schedule_fired(&mut batch, scope, group, name, occurrence);
                    inner.schedule_fired.insert(due.key.clone(), occurrence);
                }
                Events::record_deliveries(&mut batch, std::slice::from_ref(&delivery));
                self.state.store.commit(batch)
            };
            if let Err(e) = commit.await {
                store_error(e);
                continue;
            }
            tracing::debug!(schedule = %arn, time = %iso_seconds(occurrence), "A schedule fired.");
            self.dispatch(vec![delivery], true).await;
        }
    }
}
