//! Glue's triggers: `ON_DEMAND` (StartTrigger runs its actions), `SCHEDULED` (Glue's six-field
//! `cron(...)` in UTC, fired by one loop sleeping on the clock), `CONDITIONAL` (when a job run
//! ends, its predicate over the watched jobs' latest run states, `AND` or `ANY`), `EVENT`
//! (a workflow's starting trigger fed by EventBridge rules whose target is the workflow: a run
//! starts once `BatchSize` events arrived or `BatchWindow` seconds after the batch's first,
//! on the clock, with the events' ids in the run property `aws:eventIds`).
//!
//! A schedule's firing is recorded (the occurrence it fired for) before its actions start, so
//! a restart neither repeats nor loses it; occurrences missed while nothing ran coalesce into
//! the latest one, as EventBridge's do.

use std::sync::{Arc, Weak};

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::schedule::{Flavor, Schedule};
use tsumiki_store::Batch;

use crate::runs::{self, Launch};
use crate::state::{self, Key, TriggerRecord};
use crate::{Glue, already_exists, invalid, key, not_found, page, str_of};

fn trigger_not_found(name: &str) -> AwsError {
    not_found(format!("Trigger with name {name} not found"))
}

/// Glue's cron: AWS's six fields, UTC; `rate()` is EventBridge's, not Glue's.
fn parse_schedule(text: &str) -> Result<Schedule, AwsError> {
    match Schedule::parse(text, Flavor::Rule) {
        Some(s @ Schedule::Cron(_)) => Ok(s),
        _ => Err(invalid(format!(
            "Schedule {text} is not valid: Glue takes cron(minutes hours day-of-month month day-of-week year)"
        ))),
    }
}

fn check_actions(glue: &Glue, ctx: &RequestContext, actions: &Value) -> Result<(), AwsError> {
    let list = actions.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err(invalid("Actions cannot be empty"));
    }
    let state = glue.state.lock();
    for a in &list {
        if a.get("CrawlerName").is_some() {
            return Err(invalid(
                "Crawler actions are not supported: tsumiki's Glue has no crawlers",
            ));
        }
        let Some(job) = str_of(a, "JobName") else {
            return Err(invalid("An action needs a JobName"));
        };
        if !state.jobs.contains_key(&key(ctx, job)) {
            return Err(crate::jobs::job_not_found(job));
        }
    }
    Ok(())
}

fn check_predicate(predicate: Option<&Value>) -> Result<(), AwsError> {
    let conditions = predicate
        .and_then(|p| p.get("Conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conditions.is_empty() {
        return Err(invalid(
            "A CONDITIONAL trigger needs a Predicate with Conditions",
        ));
    }
    for c in &conditions {
        if c.get("CrawlerName").is_some() {
            return Err(invalid(
                "Crawler conditions are not supported: tsumiki's Glue has no crawlers",
            ));
        }
        if str_of(c, "JobName").is_none() || str_of(c, "State").is_none() {
            return Err(invalid("A condition needs a JobName and a State"));
        }
    }
    Ok(())
}

pub(crate) async fn create_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let kind = str_of(input, "Type").unwrap_or_default().to_string();
    if let Some(w) = str_of(input, "WorkflowName")
        && !glue.state.lock().workflows.contains_key(&key(ctx, w))
    {
        return Err(not_found(format!("Workflow with name: {w} not found")));
    }
    match kind.as_str() {
        "SCHEDULED" => {
            parse_schedule(str_of(input, "Schedule").unwrap_or_default())?;
        }
        "CONDITIONAL" => check_predicate(input.get("Predicate"))?,
        "ON_DEMAND" => {}
        "EVENT" => {
            if str_of(input, "WorkflowName").is_none() {
                return Err(invalid(
                    "An EVENT trigger must belong to a workflow: WorkflowName is required",
                ));
            }
            let (size, window) = batching(input);
            if !(1..=100).contains(&size) {
                return Err(invalid("BatchSize must be between 1 and 100"));
            }
            if !(1..=900).contains(&window) {
                return Err(invalid("BatchWindow must be between 1 and 900 seconds"));
            }
        }
        _ => {
            return Err(invalid(format!(
                "Trigger type {kind} is not supported yet by tsumiki's Glue"
            )));
        }
    }
    let actions = input.get("Actions").cloned().unwrap_or(json!([]));
    check_actions(glue, ctx, &actions)?;
    let start = input
        .get("StartOnCreation")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let state_name = if kind != "ON_DEMAND" && start {
        "ACTIVATED"
    } else {
        "CREATED"
    };
    let mut trigger = json!({
        "Name": name,
        "Id": name,
        "Type": kind,
        "State": state_name,
        "Actions": actions,
    });
    for f in ["Description", "Schedule", "Predicate", "WorkflowName"] {
        if let Some(v) = input.get(f) {
            trigger[f] = v.clone();
        }
    }
    if kind == "EVENT" {
        let (size, window) = batching(input);
        trigger["EventBatchingCondition"] = json!({"BatchSize": size, "BatchWindow": window});
    }
    let record = TriggerRecord {
        trigger,
        tags: input
            .get("Tags")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default(),
        schedule_from_ms: glue.clock.now_ms(),
        batch: Vec::new(),
        batch_from_ms: 0,
    };
    let k = key(ctx, &name);
    let commit = {
        let mut state = glue.state.lock();
        if state.triggers.contains_key(&k) {
            return Err(already_exists(format!(
                "Trigger with name {name} already submitted with different configuration or already exists."
            )));
        }
        let mut batch = Batch::new();
        state::put_trigger(&mut batch, &k, &record);
        state.triggers.insert(k, record);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    glue.wake.notify_one();
    Ok(json!({"Name": name}))
}

pub(crate) fn get_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let state = glue.state.lock();
    match state.triggers.get(&key(ctx, name)) {
        Some(r) => Ok(json!({"Trigger": r.trigger})),
        None => Err(trigger_not_found(name)),
    }
}

fn depends_on(trigger: &Value, job: &str) -> bool {
    trigger
        .get("Actions")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| str_of(x, "JobName") == Some(job)))
}

fn triggers_of(glue: &Glue, ctx: &RequestContext, input: &Value) -> Vec<(String, Value)> {
    let dependent = str_of(input, "DependentJobName");
    let wanted: Option<std::collections::BTreeMap<String, String>> = input
        .get("Tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok());
    let state = glue.state.lock();
    state
        .triggers
        .iter()
        .filter(|(k, _)| k.account == ctx.account && k.region == ctx.region)
        .filter(|(_, r)| dependent.is_none_or(|j| depends_on(&r.trigger, j)))
        .filter(|(_, r)| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().all(|(k, v)| r.tags.get(k) == Some(v)))
        })
        .map(|(k, r)| (k.name.clone(), r.trigger.clone()))
        .collect()
}

pub(crate) fn get_triggers(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let all: Vec<Value> = triggers_of(glue, ctx, input)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    Ok(page("Triggers", &all, input, 200))
}

pub(crate) fn list_triggers(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let all: Vec<String> = triggers_of(glue, ctx, input)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    Ok(page("TriggerNames", &all, input, 200))
}

pub(crate) fn batch_get_triggers(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let state = glue.state.lock();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in input
        .get("TriggerNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match state.triggers.get(&key(ctx, name)) {
            Some(r) => found.push(r.trigger.clone()),
            None => missing.push(name.to_string()),
        }
    }
    Ok(json!({"Triggers": found, "TriggersNotFound": missing}))
}

/// An EVENT trigger's `EventBatchingCondition`: its size, and its window in seconds (AWS's
/// default 900).
fn batching(trigger: &Value) -> (u64, u64) {
    let c = trigger.get("EventBatchingCondition");
    let num = |k: &str| c.and_then(|c| c.get(k)).and_then(Value::as_u64);
    (
        num("BatchSize").unwrap_or(1),
        num("BatchWindow").unwrap_or(900),
    )
}

/// An event from an EventBridge rule whose target is workflow `workflow`: each ACTIVATED EVENT
/// trigger of the workflow adds it to its batch, and starts a workflow run once the batch holds
/// `BatchSize` events (the window's end is the schedule loop's). Answers how many triggers
/// took the event.
pub(crate) async fn on_event(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let workflow = str_of(input, "WorkflowName")
        .unwrap_or_default()
        .to_string();
    let event_id = str_of(input, "EventId").unwrap_or_default().to_string();
    let wf = key(ctx, &workflow);
    let takers: Vec<Key> = {
        let state = glue.state.lock();
        if !state.workflows.contains_key(&wf) {
            return Err(not_found(format!(
                "Workflow with name: {workflow} not found"
            )));
        }
        state
            .triggers
            .iter()
            .filter(|(k, r)| {
                k.account == wf.account
                    && k.region == wf.region
                    && str_of(&r.trigger, "Type") == Some("EVENT")
                    && str_of(&r.trigger, "State") == Some("ACTIVATED")
                    && str_of(&r.trigger, "WorkflowName") == Some(workflow.as_str())
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    for k in &takers {
        let mut full = None;
        change(glue, k, |r, now| {
            if r.batch.is_empty() {
                r.batch_from_ms = now;
            }
            r.batch.push(event_id.clone());
            let (size, window) = batching(&r.trigger);
            if r.batch.len() as u64 >= size {
                full = Some((std::mem::take(&mut r.batch), size, window));
            }
            Ok(())
        })
        .await?;
        if let Some((events, size, window)) = full {
            start_batch(glue, k, events, size, window).await;
        }
    }
    Ok(json!({"Triggers": takers.len()}))
}

/// Starts a run of an EVENT trigger's workflow for a batch of events (already taken out of
/// the trigger's record).
async fn start_batch(glue: &Glue, k: &Key, events: Vec<String>, size: u64, window: u64) {
    let trigger = glue.state.lock().triggers.get(k).map(|r| r.trigger.clone());
    let Some(trigger) = trigger else {
        return;
    };
    let workflow = str_of(&trigger, "WorkflowName").unwrap_or_default();
    let properties = json!({"aws:eventIds": json!(events).to_string()});
    let condition = json!({"BatchSize": size, "BatchWindow": window});
    if let Err(e) = crate::workflows::start_run(
        glue,
        &k.with_name(workflow),
        properties,
        vec![(k.clone(), trigger.clone())],
        Some(condition),
    )
    .await
    {
        tracing::warn!(trigger = %k.name, error = %e.message, "Glue EVENT trigger could not start its workflow");
    }
}

/// Changes a trigger's record and writes it; answers the trigger.
async fn change(
    glue: &Glue,
    k: &Key,
    f: impl FnOnce(&mut TriggerRecord, i64) -> Result<(), AwsError>,
) -> Result<Value, AwsError> {
    let now = glue.clock.now_ms();
    let (trigger, commit) = {
        let mut state = glue.state.lock();
        let Some(record) = state.triggers.get_mut(k) else {
            return Err(trigger_not_found(&k.name));
        };
        let mut copy = record.clone();
        f(&mut copy, now)?;
        *record = copy;
        let mut batch = Batch::new();
        state::put_trigger(&mut batch, k, record);
        (record.trigger.clone(), glue.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    glue.wake.notify_one();
    Ok(trigger)
}

pub(crate) async fn start_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let k = key(ctx, name);
    let trigger = change(glue, &k, |r, now| {
        if str_of(&r.trigger, "Type") != Some("ON_DEMAND") {
            r.trigger["State"] = json!("ACTIVATED");
            r.schedule_from_ms = now;
        }
        Ok(())
    })
    .await?;
    if str_of(&trigger, "Type") == Some("ON_DEMAND") {
        fire(glue, &k, &trigger, None).await;
    }
    Ok(json!({"Name": name}))
}

pub(crate) async fn stop_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    change(glue, &key(ctx, name), |r, _| {
        if str_of(&r.trigger, "Type") == Some("ON_DEMAND") {
            return Err(invalid("An ON_DEMAND trigger cannot be stopped"));
        }
        r.trigger["State"] = json!("DEACTIVATED");
        Ok(())
    })
    .await?;
    Ok(json!({"Name": name}))
}

pub(crate) async fn update_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let update = input.get("TriggerUpdate").cloned().unwrap_or(json!({}));
    if let Some(s) = str_of(&update, "Schedule") {
        parse_schedule(s)?;
    }
    if let Some(a) = update.get("Actions") {
        check_actions(glue, ctx, a)?;
    }
    if update.get("Predicate").is_some() {
        check_predicate(update.get("Predicate"))?;
    }
    let trigger = change(glue, &key(ctx, name), |r, now| {
        for f in ["Description", "Schedule", "Actions", "Predicate"] {
            if let Some(v) = update.get(f) {
                r.trigger[f] = v.clone();
            }
        }
        if update.get("Schedule").is_some() {
            r.schedule_from_ms = now;
        }
        Ok(())
    })
    .await?;
    Ok(json!({"Trigger": trigger}))
}

pub(crate) async fn delete_trigger(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let commit = {
        let mut state = glue.state.lock();
        if state.triggers.remove(&k).is_none() {
            return Err(trigger_not_found(&name));
        }
        let mut batch = Batch::new();
        state::delete_trigger(&mut batch, &k);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    glue.wake.notify_one();
    Ok(json!({"Name": name}))
}

/// Starts a trigger's actions, within workflow run `workflow` (its name and run id) if
/// given; a job that cannot start is logged (as AWS records it).
pub(crate) async fn fire(glue: &Glue, k: &Key, trigger: &Value, workflow: Option<(&str, &str)>) {
    let actions = trigger
        .get("Actions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in actions {
        let Some(job) = str_of(&a, "JobName") else {
            continue;
        };
        let mut arguments = a.get("Arguments").cloned().unwrap_or(json!({}));
        if let (Some((name, run)), Some(args)) = (workflow, arguments.as_object_mut()) {
            args.insert(crate::workflows::NAME_ARG.into(), json!(name));
            args.insert(crate::workflows::RUN_ARG.into(), json!(run));
        }
        let launch = Launch {
            arguments: Some(arguments),
            timeout_min: a.get("Timeout").and_then(Value::as_u64),
            trigger: Some(k.name.clone()),
            ..Launch::default()
        };
        if let Err(e) = runs::start(glue, &k.with_name(job), launch).await {
            tracing::warn!(trigger = %k.name, job, error = %e.message, "Glue trigger could not start a job");
        }
    }
}

/// The state of a job's most recent run (within workflow run `workflow_run`, if given).
fn latest_state(glue: &Glue, job: &Key, workflow_run: Option<&str>) -> Option<String> {
    let state = glue.state.lock();
    state
        .runs
        .range((job.clone(), String::new())..)
        .take_while(|((j, _), _)| j == job)
        .map(|(_, r)| r)
        .filter(|r| {
            workflow_run.is_none_or(|w| {
                r.get("Arguments")
                    .and_then(|a| str_of(a, crate::workflows::RUN_ARG))
                    == Some(w)
            })
        })
        .max_by(|a, b| {
            let t = |r: &Value| r.get("StartedOn").and_then(Value::as_f64).unwrap_or(0.0);
            t(a).total_cmp(&t(b))
        })
        .and_then(|r| str_of(r, "JobRunState").map(str::to_string))
}

/// A job's run ended in `run_state` (its last attempt): fire the conditional triggers whose
/// predicate now holds.
/// A run within a workflow run wakes only that workflow's triggers, and the rest only
/// triggers outside workflows.
pub(crate) async fn on_run_end(
    glue: &Arc<Glue>,
    job: &Key,
    run_state: &str,
    workflow: Option<(String, String)>,
) {
    let watching: Vec<(Key, Value)> = {
        let state = glue.state.lock();
        state
            .triggers
            .iter()
            .filter(|(k, r)| {
                k.account == job.account
                    && k.region == job.region
                    && str_of(&r.trigger, "Type") == Some("CONDITIONAL")
                    && str_of(&r.trigger, "State") == Some("ACTIVATED")
                    && str_of(&r.trigger, "WorkflowName")
                        == workflow.as_ref().map(|(name, _)| name.as_str())
            })
            .map(|(k, r)| (k.clone(), r.trigger.clone()))
            .collect()
    };
    for (k, trigger) in watching {
        let predicate = trigger.get("Predicate").cloned().unwrap_or(json!({}));
        let conditions = predicate
            .get("Conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let matches_this = |c: &Value| {
            str_of(c, "JobName") == Some(job.name.as_str()) && str_of(c, "State") == Some(run_state)
        };
        if !conditions.iter().any(matches_this) {
            continue;
        }
        let holds = match str_of(&predicate, "Logical").unwrap_or("AND") {
            "ANY" => true,
            _ => conditions.iter().all(|c| {
                matches_this(c)
                    || str_of(c, "JobName").is_some_and(|j| {
                        latest_state(
                            glue,
                            &job.with_name(j),
                            workflow.as_ref().map(|(_, run)| run.as_str()),
                        )
                        .as_deref()
                            == str_of(c, "State")
                    })
            }),
        };
        if holds {
            let wf = workflow.as_ref().map(|(n, r)| (n.as_str(), r.as_str()));
            fire(glue, &k, &trigger, wf).await;
        }
    }
}

/// The one loop that fires scheduled triggers, sleeping on the clock until the next one.
pub(crate) async fn schedule_loop(glue: Weak<Glue>) {
    let utc = chrono_tz::Tz::UTC;
    loop {
        let Some(me) = glue.upgrade() else {
            return;
        };
        let now = me.clock.now_ms();
        let mut due = Vec::new();
        // EVENT triggers whose batch window has ended.
        let mut windows = Vec::new();
        let mut next: Option<i64> = None;
        {
            let state = me.state.lock();
            for (k, r) in &state.triggers {
                if str_of(&r.trigger, "Type") == Some("EVENT") && !r.batch.is_empty() {
                    let at = r.batch_from_ms + batching(&r.trigger).1 as i64 * 1000;
                    if at <= now {
                        windows.push(k.clone());
                    } else {
                        next = Some(next.map_or(at, |n: i64| n.min(at)));
                    }
                    continue;
                }
                if str_of(&r.trigger, "Type") != Some("SCHEDULED")
                    || str_of(&r.trigger, "State") != Some("ACTIVATED")
                {
                    continue;
                }
                let Ok(schedule) =
                    parse_schedule(str_of(&r.trigger, "Schedule").unwrap_or_default())
                else {
                    continue;
                };
                if let Some(at) = schedule.latest_due(r.schedule_from_ms, now, 0, utc) {
                    due.push((k.clone(), at));
                } else if let Some(at) = schedule.next_after(r.schedule_from_ms, 0, utc) {
                    next = Some(next.map_or(at, |n: i64| n.min(at)));
                }
            }
        }
        if !windows.is_empty() {
            for k in windows {
                let mut taken = None;
                let result = change(&me, &k, |r, _| {
                    let (size, window) = batching(&r.trigger);
                    taken = Some((std::mem::take(&mut r.batch), size, window));
                    Ok(())
                })
                .await;
                if let (Ok(_), Some((events, size, window))) = (result, taken)
                    && !events.is_empty()
                {
                    start_batch(&me, &k, events, size, window).await;
                }
            }
            continue;
        }
        if !due.is_empty() {
            for (k, at) in due {
                // The occurrence is recorded before the actions start: a restart does not
                // fire it again.
                match change(&me, &k, |r, _| {
                    r.schedule_from_ms = at;
                    Ok(())
                })
                .await
                {
                    Ok(trigger) => fire(&me, &k, &trigger, None).await,
                    Err(e) => {
                        tracing::warn!(trigger = %k.name, error = %e.message, "Glue schedule not recorded")
                    }
                }
            }
            continue;
        }
        let clock = me.clock.clone();
        let wake = async {
            me.wake.notified().await;
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = clock.sleep_until(at) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}
