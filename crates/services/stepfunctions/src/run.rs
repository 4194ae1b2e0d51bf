//! Executions: the driver that feeds the interpreter and carries out its commands, and the
//! execution APIs (start, describe, list, stop, history, task tokens, activity polling).
//!
//! **Invariant:** one execution's steps are serialized by its lock; a step's store batch is
//! queued under that lock, and its commands run only after the batch is durable, so after a
//! crash every command still in force is found again in the stored record
//! (`Execution::pending` and the timers' deadlines).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::asl::{self, Command, HistoryEvent, Input, Status};
use tsumiki_store::Batch;

use crate::state::{self, ExecRecord};
use crate::tasks::{self, Outcome, TaskCall};
use crate::{
    ActivityTask, StepFunctions, api, check_name, err, page_size, page_start, parse_states_arn,
    required_str, secs, store_error,
};

pub(crate) struct Exec {
    pub rec: ExecRecord,
    pub def: Arc<asl::Definition>,
    pub waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// What [`StepFunctions::drive`] feeds an execution.
pub(crate) enum Feed {
    Step(Input),
    Redrive(Option<String>),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn token_prefix(arn: &str) -> String {
    format!(
        "{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(arn)
    )
}

fn arn_of_token(token: &str) -> Option<String> {
    let (b64, _) = token.rsplit_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl StepFunctions {
    /// Re-registers loaded executions and restarts the running ones' timers and tasks.
    pub(crate) fn resume(&self, loaded: Vec<ExecRecord>) -> usize {
        let mut resumed = 0;
        for rec in loaded {
            // Through the cache: thousands of executions share a handful of definitions.
            let def = match self.definition(&rec.definition) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(execution = %rec.arn, error = %e, "A stored execution's definition no longer parses.");
                    continue;
                }
            };
            let running = rec.exec.status == Status::Running;
            let arn = rec.arn.clone();
            let timers: Vec<(u64, i64)> = rec.timers.iter().map(|(k, v)| (*k, *v)).collect();
            let pending = rec.exec.pending();
            let entry = Arc::new(Mutex::new(Exec {
                rec,
                def,
                waiters: Vec::new(),
            }));
            self.executions.write().insert(arn.clone(), entry.clone());
            if running {
                resumed += 1;
                for (timer, at_ms) in timers {
                    self.arm_timer(&arn, timer, at_ms);
                }
                for c in pending {
                    self.dispatch(&entry, c);
                }
            }
        }
        resumed
    }

    pub(crate) fn definition(&self, text: &str) -> Result<Arc<asl::Definition>, AwsError> {
        self.definition_and_sha(text).map(|(d, _)| d)
    }

    /// The parsed definition and its SHA-256, each computed once per text.
    pub(crate) fn definition_and_sha(
        &self,
        text: &str,
    ) -> Result<(Arc<asl::Definition>, Arc<str>), AwsError> {
        if let Some(d) = self.definitions.lock().get(text) {
            return Ok(d.clone());
        }
        let d = Arc::new(api::parse_definition(text)?);
        let sha: Arc<str> = state::definition_sha(text).into();
        let mut cache = self.definitions.lock();
        if cache.len() > 1000 {
            cache.clear();
        }
        cache.insert(text.to_string(), (d.clone(), sha.clone()));
        Ok((d, sha))
    }

    /// Feeds `input` to the execution `arn`, stores the step, then carries out its commands.
    pub(crate) fn advance(
        self: Arc<Self>,
        arn: String,
        input: Input,
    ) -> BoxFuture<Result<(), AwsError>> {
        self.drive(arn, Feed::Step(input))
    }

    /// [`StepFunctions::advance`], or a redrive (RedriveExecution, with its client token).
    pub(crate) fn drive(
        self: Arc<Self>,
        arn: String,
        feed: Feed,
    ) -> BoxFuture<Result<(), AwsError>> {
        Box::pin(async move {
            let Some(entry) = self.executions.read().get(&arn).cloned() else {
                return Ok(());
            };
            let starting = matches!(feed, Feed::Step(Input::Start) | Feed::Redrive(_));
            let (commit, commands, finished, started, new_definition) = {
                let mut e = entry.lock();
                let now = self.clock.now_ms();
                let def = e.def.clone();
                let (fx, fired) = match feed {
                    Feed::Step(input) => {
                        if e.rec.exec.status != Status::Running {
                            return Ok(());
                        }
                        let fired = match &input {
                            Input::TimerFired { timer } => Some(*timer),
                            _ => None,
                        };
                        (e.rec.exec.step(&def, input, now), fired)
                    }
                    Feed::Redrive(token) => {
                        if token.is_some() && token == e.rec.redrive_token {
                            // The same client token again: the redrive already happened.
                            return Ok(());
                        }
                        check_redrivable(&e.rec, now)?;
                        let count = e.rec.redrive_count + 1;
                        let Some(fx) = e.rec.exec.redrive(&def, count, now) else {
                            return Err(not_redrivable(&e.rec, now));
                        };
                        e.rec.redrive_count = count;
                        e.rec.redrive_ms = Some(now);
                        e.rec.redrive_token = token;
                        (fx, None)
                    }
                };
                if let Some(t) = fired {
                    e.rec.timers.remove(&t);
                }
                for c in &fx.commands {
                    if let Command::StartTimer { timer, at_ms } = c {
                        e.rec.timers.insert(*timer, *at_ms);
                    }
                }
                let finished = e.rec.exec.status != Status::Running;
                if finished {
                    e.rec.timers.clear();
                } else {
                    let live = e.rec.exec.timer_ids();
                    e.rec.timers.retain(|k, _| live.contains(k));
                }
                let mut new_definition = None;
                let commit = if e.rec.express || (fx.events.is_empty() && fx.commands.is_empty()) {
                    None
                } else {
                    if starting
                        && e.rec.redrive_ms.is_none()
                        && let Some(sha) = &e.rec.definition_sha
                        && self.stored_definitions.lock().insert(sha.clone())
                    {
                        new_definition = Some(sha.clone());
                    }
                    let mut batch = Batch::new();
                    state::put_exec(&mut batch, &e.rec, &fx.events, new_definition.is_some());
                    Some(self.store.commit(batch))
                };
                // AWS reports RUNNING first even when the execution ends in its first step.
                let started = (starting
                    && !e.rec.express
                    && self.wants_status_events(&e.rec.account, &e.rec.region))
                .then(|| {
                    let mut d = status_detail(&e.rec);
                    d["status"] = json!("RUNNING");
                    for f in ["stopDate", "output", "outputDetails", "error", "cause"] {
                        d[f] = Value::Null;
                    }
                    (d, e.rec.account.clone(), e.rec.region.clone())
                });
                (commit, fx.commands, finished, started, new_definition)
            };
            if let Some(c) = commit
                && let Err(e) = c.await
            {
                // Not stored after all: the next execution of this text writes it.
                if let Some(sha) = new_definition {
                    self.stored_definitions.lock().remove(&sha);
                }
                return Err(store_error(e));
            }
            if let Some((detail, account, region)) = started {
                self.status_event(detail, &arn, &account, &region);
            }
            for c in commands {
                self.dispatch(&entry, c);
            }
            if finished {
                self.on_finish(&arn, &entry);
            }
            Ok(())
        })
    }

    fn arm_timer(&self, arn: &str, timer: u64, at_ms: i64) {
        let me = self.me();
        let arn = arn.to_string();
        tokio::spawn(async move {
            me.clock.sleep_until(at_ms).await;
            let _ = me.clone().advance(arn, Input::TimerFired { timer }).await;
        });
    }

    fn dispatch(&self, entry: &Arc<Mutex<Exec>>, command: Command) {
        match command {
            Command::StartTimer { timer, at_ms } => {
                let arn = entry.lock().rec.arn.clone();
                self.arm_timer(&arn, timer, at_ms);
            }
            Command::RunTask {
                task,
                resource,
                input,
                token,
                ..
            } => {
                let call = {
                    let e = entry.lock();
                    TaskCall {
                        exec_arn: e.rec.arn.clone(),
                        account: e.rec.account.clone(),
                        region: e.rec.region.clone(),
                        task,
                        resource,
                        input,
                        token,
                    }
                };
                let me = self.me();
                tokio::spawn(async move {
                    let arn = call.exec_arn.clone();
                    let next = match tasks::run(&me, call).await {
                        Outcome::Done(output) => Input::TaskSucceeded { task, output },
                        Outcome::Failed(error, cause) => Input::TaskFailed { task, error, cause },
                        Outcome::Submitted(output) => Input::TaskSubmitted { task, output },
                        Outcome::Queued => return,
                    };
                    if let Err(e) = me.clone().advance(arn.clone(), next).await {
                        tracing::error!(execution = %arn, error = %e, "A task's result could not be recorded.");
                    }
                });
            }
        }
    }

    fn on_finish(&self, arn: &str, entry: &Arc<Mutex<Exec>>) {
        let (waiters, express, event) = {
            let mut e = entry.lock();
            let w = std::mem::take(&mut e.waiters);
            let event = (!e.rec.express && self.wants_status_events(&e.rec.account, &e.rec.region))
                .then(|| {
                    (
                        status_detail(&e.rec),
                        e.rec.account.clone(),
                        e.rec.region.clone(),
                    )
                });
            (w, e.rec.express, event)
        };
        for w in waiters {
            let _ = w.send(());
        }
        if express {
            // Express executions are not described or listed after they end (as AWS).
            self.executions.write().remove(arn);
        } else if let Some((detail, account, region)) = event {
            self.status_event(detail, arn, &account, &region);
        }
    }

    /// Whether a status change event could reach a rule (building one copies the execution's
    /// input and output, and PutEvents validates it, for nothing when no rule listens).
    fn wants_status_events(&self, account: &str, region: &str) -> bool {
        self.event_sink
            .get()
            .is_none_or(|sink| sink.interested(account, region))
    }

    /// Sends `Step Functions Execution Status Change` to EventBridge (Standard executions).
    fn status_event(&self, detail: Value, arn: &str, account: &str, region: &str) {
        let Some(events) = self.services.read().get("events").cloned() else {
            return;
        };
        let ctx = self.internal_ctx(account, region);
        let entry = json!({"Entries": [{
            "Source": "aws.states",
            "DetailType": "Step Functions Execution Status Change",
            "Detail": detail.to_string(),
            "Resources": [arn],
        }]});
        tokio::spawn(async move {
            if let Err(e) = events.call(&ctx, "PutEvents", entry).await {
                tracing::warn!(error = %e, "An execution status change could not be sent to EventBridge.");
            }
        });
    }

    pub(crate) fn internal_ctx(&self, account: &str, region: &str) -> RequestContext {
        RequestContext {
            account: account.to_string(),
            region: region.to_string(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: self.endpoint.read().clone(),
            access_key: None,
            path: "/".into(),
        }
    }

    /// Waits until the execution `arn` has ended (at once when it has).
    pub(crate) async fn wait_for(&self, arn: &str) -> Option<Arc<Mutex<Exec>>> {
        let entry = self.executions.read().get(arn).cloned()?;
        let rx = {
            let mut e = entry.lock();
            if e.rec.exec.status != Status::Running {
                return Some(entry.clone());
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            e.waiters.push(tx);
            rx
        };
        let _ = rx.await;
        Some(entry)
    }

    /// StartExecution's work, for the API and for `states:startExecution` tasks.
    pub(crate) async fn start_one(
        &self,
        ctx: &RequestContext,
        input: &Value,
        waiter: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(String, i64, Arc<Mutex<Exec>>), AwsError> {
        let machine_arn = required_str(input, "stateMachineArn")?;
        let target = crate::versions::resolve(self, ctx, machine_arn)?;
        self.start_target(ctx, target, input, waiter, None).await
    }

    /// Starts an execution of `target` (a machine, version, or a map run's child workflow).
    pub(crate) async fn start_target(
        &self,
        ctx: &RequestContext,
        target: crate::versions::Target,
        input: &Value,
        waiter: Option<tokio::sync::oneshot::Sender<()>>,
        map_run_arn: Option<String>,
    ) -> Result<(String, i64, Arc<Mutex<Exec>>), AwsError> {
        let machine = target.machine;
        let name = match input.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        check_name(&name)?;
        let input_text = input
            .get("input")
            .and_then(Value::as_str)
            .unwrap_or("{}")
            .to_string();
        if input_text.len() > asl::MAX_PAYLOAD_BYTES {
            return Err(err(
                "InvalidExecutionInput",
                "Invalid State Machine Execution Input: 'The input exceeds the maximum size of 262144 bytes.'",
            ));
        }
        let input_value: Value = serde_json::from_str(&input_text).map_err(|e| {
            err(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        })?;
        let (def, definition_sha) = self.definition_and_sha(&machine.definition)?;
        let now = self.clock.now_ms();
        let arn = if machine.express {
            tsumiki_core::ids::arn(
                "states",
                &ctx.region,
                &ctx.account,
                &format!("express:{}:{}:{}", machine.name, name, uuid::Uuid::new_v4()),
            )
        } else {
            tsumiki_core::ids::arn(
                "states",
                &ctx.region,
                &ctx.account,
                &format!("execution:{}:{}", machine.name, name),
            )
        };
        let entry = {
            let mut execs = self.executions.write();
            if let Some(existing) = execs.get(&arn) {
                let e = existing.lock();
                // Same name and input while running: the same answer (idempotent start).
                if e.rec.input == input_text
                    && e.rec.exec.status == Status::Running
                    && e.rec.machine_arn == machine.arn
                {
                    return Ok((arn.clone(), e.rec.start_ms, existing.clone()));
                }
                return Err(err(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{arn}'"),
                ));
            }
            let exec = asl::Execution::new(asl::StartSpec {
                execution_arn: arn.clone(),
                name: name.clone(),
                state_machine_arn: machine.arn.clone(),
                state_machine_name: machine.name.clone(),
                role_arn: machine.role_arn.clone(),
                region: ctx.region.clone(),
                input: input_value,
                start_ms: now,
                token_prefix: token_prefix(&arn),
                seed: now as u64 ^ 0x5f3759df,
            });
            // Express executions keep no history (GetExecutionHistory has none for them).
            let exec = if machine.express {
                exec.without_history()
            } else {
                exec
            };
            let entry = Arc::new(Mutex::new(Exec {
                rec: ExecRecord {
                    arn: arn.clone(),
                    name,
                    machine_arn: machine.arn.clone(),
                    machine_name: machine.name.clone(),
                    account: ctx.account.clone(),
                    region: ctx.region.clone(),
                    express: machine.express,
                    input: input_text,
                    start_ms: now,
                    definition_sha: Some(definition_sha.to_string()),
                    definition: machine.definition.clone(),
                    role_arn: machine.role_arn.clone(),
                    exec,
                    timers: Default::default(),
                    version_arn: target.version_arn,
                    alias_arn: target.alias_arn,
                    redrive_count: 0,
                    redrive_ms: None,
                    redrive_token: None,
                    map_run_arn,
                    store_key: (!machine.express).then(|| {
                        state::exec_key(
                            self.next_exec_seq
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        )
                    }),
                },
                def,
                waiters: waiter.into_iter().collect(),
            }));
            execs.insert(arn.clone(), entry.clone());
            entry
        };
        let result = self.me().advance(arn.clone(), Input::Start).await;
        if let Err(e) = result {
            self.executions.write().remove(&arn);
            return Err(e);
        }
        Ok((arn, now, entry))
    }

    fn exec_entry(&self, ctx: &RequestContext, arn: &str) -> Result<Arc<Mutex<Exec>>, AwsError> {
        match parse_states_arn(arn) {
            Some((region, account, kind, _))
                if (kind == "execution" || kind == "express")
                    && region == ctx.region
                    && account == ctx.account => {}
            _ => {
                return Err(err(
                    "InvalidArn",
                    format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
                ));
            }
        }
        self.executions.read().get(arn).cloned().ok_or_else(|| {
            err(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            )
        })
    }
}

/// The `detail` of a status change event, and the base of DescribeExecution.
fn status_detail(r: &ExecRecord) -> Value {
    let x = &r.exec;
    json!({
        "executionArn": r.arn,
        "stateMachineArn": r.machine_arn,
        "name": r.name,
        "status": x.status.as_str(),
        "startDate": r.start_ms,
        "stopDate": x.stop_ms,
        "input": r.input,
        "output": x.output.as_ref().map(|o| o.to_string()),
        "inputDetails": {"included": true},
        "outputDetails": x.output.as_ref().map(|_| json!({"included": true})),
        "error": x.error,
        "cause": x.cause,
    })
}

/// How long after it ends an execution can be redriven (AWS: 14 days).
const REDRIVE_PERIOD_MS: i64 = 14 * 24 * 3600 * 1000;

/// `Ok` when RedriveExecution would redrive `r` at `now`, else AWS's `ExecutionNotRedrivable`
/// with the reason DescribeExecution reports.
fn check_redrivable(r: &ExecRecord, now: i64) -> Result<(), AwsError> {
    let status = r.exec.status;
    let reason = if r.express {
        "Execution is an Express execution and cannot be redriven.".to_string()
    } else if matches!(status, Status::Running | Status::Succeeded) {
        format!("Execution is {} and cannot be redriven.", status.as_str())
    } else if r.exec.stop_ms.is_some_and(|s| now - s > REDRIVE_PERIOD_MS) {
        "Execution redrivable period exceeded.".to_string()
    } else if !r.exec.redrivable() {
        "Execution cannot be redriven.".to_string()
    } else {
        return Ok(());
    };
    Err(err("ExecutionNotRedrivable", reason))
}

fn not_redrivable(r: &ExecRecord, now: i64) -> AwsError {
    check_redrivable(r, now)
        .err()
        .unwrap_or_else(|| err("ExecutionNotRedrivable", "Execution cannot be redriven."))
}

pub(crate) fn describe(r: &ExecRecord, now: i64) -> Value {
    let x = &r.exec;
    let mut out = json!({
        "executionArn": r.arn,
        "stateMachineArn": r.machine_arn,
        "name": r.name,
        "status": x.status.as_str(),
        "startDate": secs(r.start_ms),
        "input": r.input,
        "inputDetails": {"included": true},
        "redriveCount": r.redrive_count,
    });
    match check_redrivable(r, now) {
        Ok(()) => out["redriveStatus"] = json!("REDRIVABLE"),
        Err(e) => {
            out["redriveStatus"] = json!("NOT_REDRIVABLE");
            out["redriveStatusReason"] = json!(e.message);
        }
    }
    if let Some(d) = r.redrive_ms {
        out["redriveDate"] = json!(secs(d));
    }
    if let Some(v) = &r.version_arn {
        out["stateMachineVersionArn"] = json!(v);
    }
    if let Some(a) = &r.alias_arn {
        out["stateMachineAliasArn"] = json!(a);
    }
    if let Some(m) = &r.map_run_arn {
        out["mapRunArn"] = json!(m);
    }
    if let Some(s) = x.stop_ms {
        out["stopDate"] = json!(secs(s));
    }
    if let Some(o) = &x.output {
        out["output"] = json!(o.to_string());
        out["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &x.error {
        out["error"] = json!(e);
    }
    if let Some(c) = &x.cause {
        out["cause"] = json!(c);
    }
    out
}

pub(crate) async fn start_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let (arn, start_ms, _) = sfn.start_one(ctx, input, None).await?;
    Ok(json!({"executionArn": arn, "startDate": secs(start_ms)}))
}

pub(crate) async fn start_sync_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let machine_arn = required_str(input, "stateMachineArn")?;
    if !crate::versions::resolve(sfn, ctx, machine_arn)?
        .machine
        .express
    {
        return Err(err(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine",
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_, _, entry) = sfn.start_one(ctx, input, Some(tx)).await?;
    let _ = rx.await;
    let e = entry.lock();
    let mut out = describe(&e.rec, sfn.clock.now_ms());
    if let Some(o) = out.as_object_mut() {
        o.remove("redriveCount");
        o.remove("redriveStatus");
        o.remove("redriveStatusReason");
    }
    out["billingDetails"] = json!({
        "billedMemoryUsedInMB": 64,
        "billedDurationInMilliseconds": (e.rec.exec.stop_ms.unwrap_or(e.rec.start_ms) - e.rec.start_ms).max(100),
    });
    Ok(out)
}

pub(crate) fn describe_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let entry = sfn.exec_entry(ctx, required_str(input, "executionArn")?)?;
    let e = entry.lock();
    Ok(describe(&e.rec, sfn.clock.now_ms()))
}

pub(crate) fn describe_state_machine_for_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let entry = sfn.exec_entry(ctx, required_str(input, "executionArn")?)?;
    let e = entry.lock();
    let r = &e.rec;
    // An execution of a version describes that version's snapshot.
    let snapshot = r
        .version_arn
        .as_ref()
        .and_then(|v| sfn.versions.read().get(v).map(|v| v.snapshot.clone()));
    let current = sfn.machines.read().get(&r.machine_arn).cloned();
    let (logging, tracing_cfg, revision, updated) = match snapshot.as_ref().or(current.as_deref()) {
        Some(m) => (
            m.logging.clone(),
            m.tracing.clone(),
            Some(m.revision_id.clone()),
            m.updated_ms,
        ),
        None => (
            json!({"level": "OFF", "includeExecutionData": false}),
            json!({"enabled": false}),
            None,
            r.start_ms,
        ),
    };
    let mut out = json!({
        "stateMachineArn": r.machine_arn,
        "name": r.machine_name,
        "definition": r.definition,
        "roleArn": r.role_arn,
        "updateDate": secs(updated),
        "loggingConfiguration": logging,
        "tracingConfiguration": tracing_cfg,
    });
    if let Some(rev) = revision {
        out["revisionId"] = json!(rev);
    }
    Ok(out)
}

pub(crate) fn list_executions(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    if let Some(run) = input.get("mapRunArn").and_then(Value::as_str) {
        return crate::maprun::list_children(sfn, ctx, run, input);
    }
    let machine_arn = required_str(input, "stateMachineArn")?;
    // A version or alias ARN lists the executions started through it.
    let target = crate::versions::resolve(sfn, ctx, machine_arn)?;
    let machine = target.machine;
    let through = |r: &ExecRecord| match (&target.alias_arn, &target.version_arn) {
        (Some(a), _) => r.alias_arn.as_deref() == Some(a.as_str()),
        (None, Some(v)) => r.version_arn.as_deref() == Some(v.as_str()),
        (None, None) => true,
    };
    if machine.express {
        return Err(err(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine",
        ));
    }
    let status = input.get("statusFilter").and_then(Value::as_str);
    let redrive_filter = input.get("redriveFilter").and_then(Value::as_str);
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let mut rows: Vec<(i64, String, Value)> = sfn
        .executions
        .read()
        .values()
        .filter_map(|entry| {
            let e = entry.lock();
            let r = &e.rec;
            let redriven = r.redrive_count > 0;
            if r.machine_arn != machine.arn
                || !through(r)
                || redrive_filter.is_some_and(|f| (f == "REDRIVEN") != redriven)
                || status.is_some_and(|s| s != r.exec.status.as_str())
            {
                return None;
            }
            let mut v = json!({
                "executionArn": r.arn,
                "stateMachineArn": r.machine_arn,
                "name": r.name,
                "status": r.exec.status.as_str(),
                "startDate": secs(r.start_ms),
            });
            if let Some(s) = r.exec.stop_ms {
                v["stopDate"] = json!(secs(s));
            }
            if let Some(x) = &r.version_arn {
                v["stateMachineVersionArn"] = json!(x);
            }
            if let Some(x) = &r.alias_arn {
                v["stateMachineAliasArn"] = json!(x);
            }
            if redriven {
                v["redriveCount"] = json!(r.redrive_count);
            }
            if let Some(d) = r.redrive_ms {
                v["redriveDate"] = json!(secs(d));
            }
            Some((r.start_ms, r.arn.clone(), v))
        })
        .collect();
    // Newest first, as AWS lists them.
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let total = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(start)
        .take(size)
        .map(|r| r.2)
        .collect();
    let mut out = json!({"executions": page});
    if start + size < total {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

pub(crate) async fn stop_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "executionArn")?;
    let entry = sfn.exec_entry(ctx, arn)?;
    let error = input
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string);
    let cause = input
        .get("cause")
        .and_then(Value::as_str)
        .map(str::to_string);
    sfn.me()
        .advance(arn.to_string(), Input::Stop { error, cause })
        .await?;
    let stop = entry
        .lock()
        .rec
        .exec
        .stop_ms
        .unwrap_or_else(|| sfn.clock.now_ms());
    Ok(json!({"stopDate": secs(stop)}))
}

pub(crate) async fn get_execution_history(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "executionArn")?;
    let (express, key) = {
        let entry = sfn.exec_entry(ctx, arn)?;
        let e = entry.lock();
        (e.rec.express, e.rec.key().to_string())
    };
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let reverse = input.get("reverseOrder") == Some(&Value::Bool(true));
    let include_data = input.get("includeExecutionData") != Some(&Value::Bool(false));
    // Express executions keep no history (AWS sends theirs to CloudWatch Logs only).
    let history = if express {
        Vec::new()
    } else {
        state::history(&sfn.store, &key)
            .await
            .map_err(store_error)?
    };
    let total = history.len();
    let iter: Box<dyn Iterator<Item = &HistoryEvent>> = if reverse {
        Box::new(history.iter().rev())
    } else {
        Box::new(history.iter())
    };
    let events: Vec<Value> = iter
        .skip(start)
        .take(size)
        .map(|h| {
            let mut v = json!({
                "timestamp": secs(h.timestamp_ms),
                "type": h.kind,
                "id": h.id,
                "previousEventId": h.previous_id,
            });
            if let Some(k) = &h.details_key {
                let mut d = h.details.clone();
                if !include_data && let Some(o) = d.as_object_mut() {
                    for f in ["input", "output", "parameters"] {
                        o.remove(f);
                    }
                }
                v[k.as_str()] = d;
            }
            v
        })
        .collect();
    let mut out = json!({"events": events});
    if start + size < total {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

/// The execution and task a token names.
fn token_target(sfn: &StepFunctions, input: &Value) -> Result<(String, u64), AwsError> {
    let token = required_str(input, "taskToken")?;
    let invalid = || err("InvalidToken", "Invalid Token: 'Invalid token'");
    let arn = arn_of_token(token).ok_or_else(invalid)?;
    let entry = sfn
        .executions
        .read()
        .get(&arn)
        .cloned()
        .ok_or_else(invalid)?;
    let e = entry.lock();
    let task = e.rec.exec.task_for_token(token).ok_or_else(|| {
        err(
            "TaskTimedOut",
            "Task Timed Out: 'Provided task does not exist anymore'",
        )
    })?;
    Ok((arn, task))
}

pub(crate) async fn send_task_success(
    sfn: &StepFunctions,
    input: &Value,
) -> Result<Value, AwsError> {
    let output_text = required_str(input, "output")?;
    let output: Value = serde_json::from_str(output_text)
        .map_err(|e| err("InvalidOutput", format!("Invalid Output: '{e}'")))?;
    let (arn, task) = token_target(sfn, input)?;
    sfn.forget_activity_task(&arn, task);
    sfn.me()
        .advance(arn, Input::TaskSucceeded { task, output })
        .await?;
    Ok(json!({}))
}

pub(crate) async fn send_task_failure(
    sfn: &StepFunctions,
    input: &Value,
) -> Result<Value, AwsError> {
    let (arn, task) = token_target(sfn, input)?;
    let error = input
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let cause = input
        .get("cause")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    sfn.forget_activity_task(&arn, task);
    sfn.me()
        .advance(arn, Input::TaskFailed { task, error, cause })
        .await?;
    Ok(json!({}))
}

pub(crate) async fn send_task_heartbeat(
    sfn: &StepFunctions,
    input: &Value,
) -> Result<Value, AwsError> {
    let (arn, task) = token_target(sfn, input)?;
    sfn.me().advance(arn, Input::TaskHeartbeat { task }).await?;
    Ok(json!({}))
}

impl StepFunctions {
    fn forget_activity_task(&self, arn: &str, task: u64) {
        for q in self.activity_queues.lock().values_mut() {
            q.retain(|t| !(t.exec_arn == arn && t.task == task));
        }
    }

    pub(crate) fn queue_activity_task(&self, activity: &str, t: ActivityTask) {
        self.activity_queues
            .lock()
            .entry(activity.to_string())
            .or_default()
            .push_back(t);
        self.activity_signal.notify_waiters();
    }
}

/// GetActivityTask: long polls up to 60 seconds on the clock.
pub(crate) async fn get_activity_task(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "activityArn")?;
    api::activity(sfn, ctx, arn)?;
    let worker = input
        .get("workerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let deadline = sfn.clock.now_ms() + 60_000;
    loop {
        let notified = sfn.activity_signal.notified();
        let next = sfn
            .activity_queues
            .lock()
            .get_mut(arn)
            .and_then(|q| q.pop_front());
        if let Some(t) = next {
            sfn.me()
                .advance(
                    t.exec_arn.clone(),
                    Input::TaskSubmitted {
                        task: t.task,
                        output: json!(worker),
                    },
                )
                .await?;
            return Ok(json!({"taskToken": t.token, "input": t.input.to_string()}));
        }
        if sfn.clock.now_ms() >= deadline {
            return Ok(json!({}));
        }
        tokio::select! {
            _ = notified => {}
            _ = sfn.clock.sleep_until(deadline) => {}
        }
    }
}

/// RedriveExecution: runs a failed, timed-out or aborted Standard execution again from the
/// state that did not complete (see `asl::Execution::redrive`).
pub(crate) async fn redrive_execution(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "executionArn")?;
    let entry = sfn.exec_entry(ctx, arn)?;
    let token = input
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    sfn.me()
        .drive(arn.to_string(), Feed::Redrive(token))
        .await?;
    let when = entry
        .lock()
        .rec
        .redrive_ms
        .unwrap_or_else(|| sfn.clock.now_ms());
    Ok(json!({"redriveDate": secs(when)}))
}
