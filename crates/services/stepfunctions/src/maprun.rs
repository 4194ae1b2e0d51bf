//! Distributed Map: the host side of `asl::DISTRIBUTED_MAP`. A map run reads its items
//! (`ItemsPath`, or `ItemReader` from S3: an object parsed by `items.rs` (JSON, JSON Lines,
//! CSV, an S3 Inventory or Athena manifest and its data files), or a `listObjectsV2` listing)
//! through `ports::ObjectStore`, applies `ItemSelector` and `ItemBatcher`, and runs one child
//! execution (Standard or Express, of the ItemProcessor as a state machine named
//! `parent/label`) per item or batch, at most `MaxConcurrency` at once, failing with
//! `States.ExceedToleratedFailureThreshold` past `ToleratedFailurePercentage`/`Count`. Its
//! result is the children's outputs in item order, or with `ResultWriter` (transformed per
//! `WriterConfig`) the results themselves or AWS's `manifest.json` and
//! `SUCCEEDED_0.json`/`FAILED_0.json` in S3.
//! DescribeMapRun, ListMapRuns, UpdateMapRun and ListExecutions(mapRunArn) read the record.
//! A redriven parent that runs the state again redrives its last failed run (`adopt`): same
//! ARN, MapRunRedriven, successful children kept, unsuccessful Standard children redriven,
//! Express ones and items never started run anew.
//!
//! **Invariant:** the map run record (with every child's input) is committed before the
//! parent records MapRunStarted; children have names derived from the run and their index,
//! so a restarted driver finds the Standard children it started and waits for them instead
//! of starting them again (Express children, kept in memory, run again).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::asl::{self, Input, Status};
use tsumiki_store::Batch;

use crate::items;
use crate::run::{Exec, Feed};
use crate::state::{self, Machine, MapRun};
use crate::tasks::{Outcome, TaskCall};
use crate::versions::Target;
use crate::{StepFunctions, err, page_size, page_start, parse_states_arn, required_str, secs};

type Fault = (String, String);

/// How many children may run at once when `MaxConcurrency` is 0 (AWS: up to 10,000).
const UNLIMITED: u64 = 1000;

fn reader_failed(cause: impl Into<String>) -> Fault {
    ("States.ItemReaderFailed".into(), cause.into())
}

/// A name for the run that a re-dispatched task finds again (FNV-1a of the parent and task).
fn run_id(exec_arn: &str, task: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in exec_arn.bytes().chain(task.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let t = task as u32;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        h as u16,
        (t >> 16) as u16,
        u64::from(t) & 0xffff_ffff_ffff
    )
}

fn iso(ms: i64) -> String {
    tsumiki_core::clock::iso8601_ms(ms)
}

/// The task a Distributed Map state runs as: prepares (or finds) the map run, then drives it;
/// the driver answers the parent itself.
pub(crate) async fn run(sfn: &StepFunctions, call: TaskCall) -> Outcome {
    let context = &call.input["Context"];
    let parent_name = context
        .pointer("/StateMachine/Name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let state_name = context
        .pointer("/State/Name")
        .and_then(Value::as_str)
        .unwrap_or("Map")
        .to_string();
    let label = call
        .input
        .pointer("/State/Label")
        .and_then(Value::as_str)
        .unwrap_or(&state_name)
        .to_string();
    let id = run_id(&call.exec_arn, call.task);
    let mut arn = tsumiki_core::ids::arn(
        "states",
        &call.region,
        &call.account,
        &format!("mapRun:{parent_name}/{label}:{id}"),
    );
    let base = arn[..arn.len() - id.len()].to_string();
    // The run this task already has (a task dispatched again after a restart), or the
    // failed run of this state that a redriven parent redrives.
    let (known, redrive) = match adopt(sfn, &call, &base) {
        Adopt::Own(a) => (Some(a), None),
        Adopt::Redrive(a, commit, count) => {
            if let Err(e) = commit.await {
                return Outcome::Failed(
                    "States.Runtime".into(),
                    format!("The map run could not be stored: {e}"),
                );
            }
            (Some(a), Some(count))
        }
        Adopt::None => (None, None),
    };
    if let Some(a) = known {
        arn = a;
    } else {
        let run = match prepare(sfn, &call, &arn, &label, &state_name).await {
            Ok(r) => r,
            Err((e, c)) => return Outcome::Failed(e, c),
        };
        let commit = {
            let mut runs = sfn.map_runs.write();
            let mut batch = Batch::new();
            state::put_map_run(&mut batch, &run);
            runs.insert(arn.clone(), run);
            sfn.store.commit(batch)
        };
        if let Err(e) = commit.await {
            return Outcome::Failed(
                "States.Runtime".into(),
                format!("The map run could not be stored: {e}"),
            );
        }
    }
    let mut output = json!({"mapRunArn": arn});
    if let Some(count) = redrive.or_else(|| {
        let runs = sfn.map_runs.read();
        runs.get(&arn).map(|r| r.redrive_count).filter(|c| *c > 0)
    }) {
        // History: MapRunRedriven instead of MapRunStarted.
        output["redriveCount"] = json!(count);
    }
    let started = Input::TaskSubmitted {
        task: call.task,
        output,
    };
    if let Err(e) = sfn.me().advance(call.exec_arn.clone(), started).await {
        tracing::error!(error = %e, "MapRunStarted could not be recorded.");
    }
    sfn.me().drive_map_run(arn);
    Outcome::Queued
}

type Commit = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tsumiki_store::StoreError>> + Send>,
>;

enum Adopt {
    None,
    /// The run of this very task.
    Own(String),
    /// A failed run this task redrives: its ARN, the commit of its redriven record, and its
    /// redrive count.
    Redrive(String, Commit, u64),
}

/// AWS redrives a Map Run with its parent: when a redriven parent runs a Distributed Map
/// state again, the state's last run (failed or aborted before the redrive) is run again
/// under the same ARN, its successful children kept, its unsuccessful ones redriven
/// (Standard) or started again (Express), the items never started started.
fn adopt(sfn: &StepFunctions, call: &TaskCall, base: &str) -> Adopt {
    let (redrives, redrive_ms) = match sfn.executions.read().get(&call.exec_arn) {
        Some(e) => {
            let e = e.lock();
            (e.rec.redrive_count, e.rec.redrive_ms)
        }
        None => (0, None),
    };
    let mut runs = sfn.map_runs.write();
    if let Some(r) = runs
        .values()
        .find(|r| r.exec_arn == call.exec_arn && r.task == call.task)
    {
        return Adopt::Own(r.arn.clone());
    }
    let Some(redrive_ms) = redrive_ms else {
        return Adopt::None;
    };
    let Some(last) = runs
        .values()
        .filter(|r| r.exec_arn == call.exec_arn && r.arn.starts_with(base))
        .max_by_key(|r| (r.start_ms, r.task))
    else {
        return Adopt::None;
    };
    let redrivable = matches!(last.status.as_str(), "FAILED" | "ABORTED")
        && last.stop_ms.is_some_and(|s| s <= redrive_ms)
        && last.redrive_count < redrives
        && last.redrive_count < 1000;
    if !redrivable {
        return Adopt::None;
    }
    let arn = last.arn.clone();
    let r = runs.get_mut(&arn).expect("found above");
    r.task = call.task;
    r.redrive_count += 1;
    r.redrive_ms = Some(sfn.clock.now_ms());
    r.status = "RUNNING".into();
    r.stop_ms = None;
    r.not_redrivable.clear();
    let failed: Vec<usize> = r
        .done
        .iter()
        .filter(|(_, v)| v["Status"] != "SUCCEEDED")
        .map(|(i, _)| *i)
        .collect();
    for i in failed {
        if let Some(v) = r.done.remove(&i) {
            let child = v["ExecutionArn"].as_str().unwrap_or("").to_string();
            r.pending_redrive.insert(i, child);
        }
    }
    let count = r.redrive_count;
    let mut batch = Batch::new();
    state::put_map_run(&mut batch, r);
    Adopt::Redrive(arn, Box::pin(sfn.store.commit(batch)), count)
}

/// Items, child inputs and settings of a new map run.
async fn prepare(
    sfn: &StepFunctions,
    call: &TaskCall,
    arn: &str,
    label: &str,
    state_name: &str,
) -> Result<MapRun, Fault> {
    let spec = &call.input["State"];
    let input = &call.input["Input"];
    let context = &call.input["Context"];
    let render = |t: &Value, ctx: &Value| asl::render_template(t, input, ctx, state_name);
    let path_value = |field: &str| -> Result<Option<Value>, Fault> {
        if let Some(v) = spec.get(field) {
            return Ok(Some(v.clone()));
        }
        match spec.get(format!("{field}Path")) {
            Some(p) => Ok(Some(render(&json!({"v.$": p}), context)?["v"].take())),
            None => Ok(None),
        }
    };
    let ctx = sfn.internal_ctx(&call.account, &call.region);
    let mut items = match spec.get("ItemReader") {
        Some(reader) => read_items(sfn, &ctx, reader, input, context, state_name).await?,
        None => {
            let path = spec.get("ItemsPath").cloned().unwrap_or(json!("$"));
            match render(&json!({"v.$": path}), context)?["v"].take() {
                Value::Array(a) => a,
                _ => {
                    return Err((
                        "States.Runtime".into(),
                        format!("Item list did not resolve to a JSON array. ItemsPath: {path}"),
                    ));
                }
            }
        }
    };
    let max_items = match spec.pointer("/ItemReader/ReaderConfig/MaxItemsPath") {
        Some(p) => Some(render(&json!({"v.$": p}), context)?["v"].take()),
        None => spec.pointer("/ItemReader/ReaderConfig/MaxItems").cloned(),
    };
    if let Some(max) = max_items {
        let Some(n) = max.as_u64() else {
            return Err(reader_failed(format!(
                "MaxItems must be a positive integer, not {max}."
            )));
        };
        // AWS: 0 (or leaving it out) reads every item.
        if n > 0 {
            items.truncate(n as usize);
        }
    }
    let selector = spec.get("ItemSelector").or_else(|| spec.get("Parameters"));
    let mut selected = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match selector {
            Some(sel) => {
                let mut c = context.clone();
                c["Map"] = json!({"Item": {"Index": i, "Value": item}});
                selected.push(render(sel, &c)?);
            }
            None => selected.push(item),
        }
    }
    let inputs = match spec.get("ItemBatcher") {
        None => selected,
        Some(b) => {
            let per = b
                .get("MaxItemsPerBatch")
                .and_then(Value::as_u64)
                .unwrap_or(selected.len().max(1) as u64)
                .max(1) as usize;
            let base = match b.get("BatchInput") {
                Some(t) => render(t, context)?,
                None => json!({}),
            };
            selected
                .chunks(per)
                .map(|c| {
                    let mut v = json!({"Items": c});
                    if let (Some(o), Some(extra)) = (v.as_object_mut(), base.as_object()) {
                        for (k, x) in extra {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                    v
                })
                .collect()
        }
    };
    // The writer as the run keeps it: the rendered Parameters (`Bucket`, `Prefix`) when the
    // results go to S3, and the WriterConfig.
    let writer = match spec.get("ResultWriter") {
        None => None,
        Some(w) => {
            let mut kept = match w.get("Parameters") {
                Some(p) => render(p, context)?,
                None => json!({}),
            };
            let to_s3 = w.get("Resource").is_some() || w.get("Parameters").is_some();
            items::writer_config(w.get("WriterConfig"), to_s3)
                .map_err(|c| ("States.ResultWriterFailed".to_string(), c))?;
            if let Some(o) = kept.as_object_mut() {
                o.insert("ToS3".into(), json!(to_s3));
                if let Some(c) = w.get("WriterConfig") {
                    o.insert("WriterConfig".into(), c.clone());
                }
            }
            Some(kept)
        }
    };
    let mut processor = spec
        .get("ItemProcessor")
        .or_else(|| spec.get("Iterator"))
        .cloned()
        .unwrap_or(Value::Null);
    let express = processor
        .pointer("/ProcessorConfig/ExecutionType")
        .and_then(Value::as_str)
        == Some("EXPRESS");
    if let Some(o) = processor.as_object_mut() {
        o.remove("ProcessorConfig");
    }
    let parent_arn = context
        .pointer("/StateMachine/Id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let parent_name = context
        .pointer("/StateMachine/Name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let role = context
        .pointer("/Execution/RoleArn")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = sfn.clock.now_ms();
    let child = Machine {
        arn: format!("{parent_arn}/{label}"),
        name: format!("{parent_name}/{label}"),
        account: call.account.clone(),
        region: call.region.clone(),
        definition: processor.to_string().into(),
        role_arn: role,
        express,
        created_ms: now,
        updated_ms: now,
        revision_id: String::new(),
        description: None,
        logging: json!({"level": "OFF", "includeExecutionData": false}),
        tracing: json!({"enabled": false}),
        tags: Default::default(),
        last_version: 0,
    };
    let number = |v: Option<Value>| v.and_then(|v| v.as_f64());
    Ok(MapRun {
        arn: arn.to_string(),
        exec_arn: call.exec_arn.clone(),
        machine_arn: parent_arn,
        task: call.task,
        account: call.account.clone(),
        region: call.region.clone(),
        status: "RUNNING".into(),
        start_ms: now,
        stop_ms: None,
        max_concurrency: number(path_value("MaxConcurrency")?).unwrap_or(0.0) as u64,
        tolerated_pct: number(path_value("ToleratedFailurePercentage")?),
        tolerated_count: number(path_value("ToleratedFailureCount")?).map(|f| f as u64),
        child,
        inputs,
        writer,
        done: Default::default(),
        running: Default::default(),
        batched: spec.get("ItemBatcher").is_some(),
        redrive_count: 0,
        redrive_ms: None,
        pending_redrive: Default::default(),
        not_redrivable: Default::default(),
        driving: false,
    })
}

/// The items an `ItemReader` names.
async fn read_items(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    reader: &Value,
    input: &Value,
    context: &Value,
    state_name: &str,
) -> Result<Vec<Value>, Fault> {
    let Some(objects) = sfn.object_store().await else {
        return Err(reader_failed(
            "S3 is not served, so the ItemReader cannot read.",
        ));
    };
    let params = match reader.get("Parameters") {
        Some(p) => asl::render_template(p, input, context, state_name)?,
        None => json!({}),
    };
    let bucket = params.get("Bucket").and_then(Value::as_str).unwrap_or("");
    let resource = reader.get("Resource").and_then(Value::as_str).unwrap_or("");
    let cfg = reader.get("ReaderConfig").cloned().unwrap_or(json!({}));
    match resource {
        "arn:aws:states:::s3:listObjectsV2" => {
            let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or("");
            let keys = objects
                .list_keys(ctx, bucket, prefix, 1_000_000)
                .await
                .map_err(|e| reader_failed(format!("{}: {}", e.code, e.message)))?;
            match cfg.get("Transformation").and_then(Value::as_str) {
                None | Some("NONE") => {}
                Some("LOAD_AND_FLATTEN") => {
                    // Each listed object's items, in key order, instead of the listing.
                    let parsed = items::reader_config(&cfg).map_err(reader_failed)?;
                    let mut out = Vec::new();
                    for key in keys {
                        let body = objects
                            .get_object(ctx, bucket, &key)
                            .await
                            .map_err(|e| reader_failed(format!("{}: {}", e.code, e.message)))?;
                        let in_file =
                            |e: String| reader_failed(format!("s3://{bucket}/{key}: {e}"));
                        let bytes = items::maybe_gunzip(&body).map_err(in_file)?;
                        out.extend(
                            items::parse_items(&String::from_utf8_lossy(&bytes), &parsed)
                                .map_err(in_file)?,
                        );
                    }
                    return Ok(out);
                }
                Some(other) => {
                    return Err(reader_failed(format!(
                        "The ReaderConfig Transformation {other} is not one of NONE, LOAD_AND_FLATTEN."
                    )));
                }
            }
            let mut items = Vec::with_capacity(keys.len());
            for key in keys {
                let size = objects
                    .get_object(ctx, bucket, &key)
                    .await
                    .map(|b| b.len())
                    .unwrap_or(0);
                items.push(json!({"Key": key, "Size": size, "StorageClass": "STANDARD"}));
            }
            Ok(items)
        }
        "arn:aws:states:::s3:getObject" => {
            let key = params.get("Key").and_then(Value::as_str).unwrap_or("");
            let cfg = items::reader_config(&cfg).map_err(reader_failed)?;
            let get = |bucket: String, key: String| {
                let objects = objects.clone();
                async move {
                    let body = objects
                        .get_object(ctx, &bucket, &key)
                        .await
                        .map_err(|e| reader_failed(format!("{}: {}", e.code, e.message)))?;
                    let bytes = items::maybe_gunzip(&body)
                        .map_err(|e| reader_failed(format!("s3://{bucket}/{key}: {e}")))?;
                    Ok::<String, Fault>(String::from_utf8_lossy(&bytes).into_owned())
                }
            };
            let text = get(bucket.to_string(), key.to_string()).await?;
            let in_file = |e: String| reader_failed(format!("s3://{bucket}/{key}: {e}"));
            if cfg.manifest_type.as_deref() == Some("ATHENA_DATA") {
                // The manifest lists data files, each of the configured InputType.
                let mut out = Vec::new();
                for (b, k) in items::athena_manifest(&text).map_err(in_file)? {
                    let data = get(b.clone(), k.clone()).await?;
                    out.extend(
                        items::parse_items(&data, &cfg)
                            .map_err(|e| reader_failed(format!("s3://{b}/{k}: {e}")))?,
                    );
                }
                return Ok(out);
            }
            if cfg.input_type == "MANIFEST" || cfg.manifest_type.as_deref() == Some("S3_INVENTORY")
            {
                let inv = items::inventory_manifest(&text, bucket).map_err(in_file)?;
                let mut out = Vec::new();
                for k in &inv.files {
                    let data = get(inv.bucket.clone(), k.clone()).await?;
                    out.extend(items::inventory_items(&data, &inv.schema));
                }
                return Ok(out);
            }
            items::parse_items(&text, &cfg).map_err(in_file)
        }
        other => Err(reader_failed(format!(
            "The ItemReader resource {other} is not supported."
        ))),
    }
}

/// A finished child as ResultWriter's files and the map's result report it.
fn child_entry(e: &Exec) -> Value {
    let r = &e.rec;
    let mut v = json!({
        "ExecutionArn": r.arn,
        "Input": r.input,
        "InputDetails": {"Included": true},
        "Name": r.name,
        "StartDate": iso(r.start_ms),
        "StateMachineArn": r.machine_arn,
        "Status": r.exec.status.as_str(),
        "RedriveCount": r.redrive_count,
    });
    if let Some(s) = r.exec.stop_ms {
        v["StopDate"] = json!(iso(s));
    }
    if let Some(o) = &r.exec.output {
        v["Output"] = json!(o.to_string());
        v["OutputDetails"] = json!({"Included": true});
    }
    if let Some(er) = &r.exec.error {
        v["Error"] = json!(er);
    }
    if let Some(c) = &r.exec.cause {
        v["Cause"] = json!(c);
    }
    v
}

fn parent_waits(sfn: &StepFunctions, exec_arn: &str, task: u64) -> bool {
    sfn.executions.read().get(exec_arn).is_some_and(|e| {
        let e = e.lock();
        e.rec.exec.status == Status::Running && e.rec.exec.task_resource(task).is_some()
    })
}

impl StepFunctions {
    /// Redrives an unsuccessful Standard child of a redriven map run; `Err` with the child as
    /// the run reports it when it cannot be redriven. A child already running again (its
    /// redrive was stored, the run's record not yet) is left running.
    async fn redrive_child(self: &Arc<Self>, child_arn: &str) -> Result<(), Value> {
        let Some(entry) = self.executions.read().get(child_arn).cloned() else {
            return Err(Value::Null);
        };
        if entry.lock().rec.exec.status == Status::Running {
            return Ok(());
        }
        match self
            .clone()
            .drive(child_arn.to_string(), Feed::Redrive(None))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::info!(child = %child_arn, reason = %e.message, "A map run's child is not redrivable.");
                Err(child_entry(&entry.lock()))
            }
        }
    }

    /// The object store; a map run resumed at startup may ask before the server has wired
    /// it, so this waits a little for it.
    async fn object_store(&self) -> Option<Arc<dyn tsumiki_ports::ObjectStore>> {
        for _ in 0..50 {
            if let Some(o) = self.objects.get() {
                return Some(o.clone());
            }
            tsumiki_core::Clock::pause_real(std::time::Duration::from_millis(100)).await;
        }
        None
    }

    /// Restarts the drivers of map runs that were running.
    pub(crate) fn resume_map_runs(&self) {
        let running: Vec<String> = self
            .map_runs
            .read()
            .values()
            .filter(|r| r.status == "RUNNING")
            .map(|r| r.arn.clone())
            .collect();
        for arn in running {
            self.me().drive_map_run(arn);
        }
    }

    /// Runs the map run `arn` to its end in the background, then answers its parent.
    pub(crate) fn drive_map_run(self: Arc<Self>, arn: String) {
        {
            let mut runs = self.map_runs.write();
            match runs.get_mut(&arn) {
                Some(r) if !r.driving && r.status == "RUNNING" => r.driving = true,
                _ => return,
            }
        }
        tokio::spawn(async move {
            let outcome = self.clone().drive_run(&arn).await;
            let (exec_arn, task) = {
                let mut runs = self.map_runs.write();
                let Some(r) = runs.get_mut(&arn) else { return };
                r.driving = false;
                (r.exec_arn.clone(), r.task)
            };
            let next = match outcome {
                Some(Ok(output)) => Input::TaskSucceeded { task, output },
                Some(Err((error, cause))) => Input::TaskFailed { task, error, cause },
                None => return,
            };
            if let Err(e) = self.clone().advance(exec_arn, next).await {
                tracing::error!(map_run = %arn, error = %e, "A map run's result could not be recorded.");
            }
        });
    }

    /// `None` when the parent no longer waits (the run is aborted).
    async fn drive_run(self: Arc<Self>, arn: &str) -> Option<Result<Value, Fault>> {
        let (exec_arn, task, account, region, child, total, id) = {
            let runs = self.map_runs.read();
            let r = runs.get(arn)?;
            (
                r.exec_arn.clone(),
                r.task,
                r.account.clone(),
                r.region.clone(),
                r.child.clone(),
                r.inputs.len(),
                arn.rsplit(':').next().unwrap_or("").to_string(),
            )
        };
        let ctx = self.internal_ctx(&account, &region);
        let mut set: tokio::task::JoinSet<(usize, Value)> = tokio::task::JoinSet::new();
        // Children a previous driver started: wait for them again.
        let attached: Vec<(usize, String)> = {
            let runs = self.map_runs.read();
            runs.get(arn)?
                .running
                .iter()
                .map(|(i, a)| (*i, a.clone()))
                .collect()
        };
        let mut lost = Vec::new();
        for (i, child_arn) in attached {
            if self.executions.read().contains_key(&child_arn) {
                let me = self.clone();
                set.spawn(async move {
                    let entry = me.wait_for(&child_arn).await;
                    (
                        i,
                        entry.map(|e| child_entry(&e.lock())).unwrap_or(Value::Null),
                    )
                });
            } else {
                lost.push(i);
            }
        }
        if !lost.is_empty()
            && let Some(r) = self.map_runs.write().get_mut(arn)
        {
            for i in lost {
                r.running.remove(&i);
            }
        }
        let mut failure: Option<Fault> = None;
        loop {
            if !parent_waits(&self, &exec_arn, task) {
                self.end_run(arn, "ABORTED", &mut set).await;
                return None;
            }
            // Start children up to the concurrency limit.
            while failure.is_none() {
                let next = {
                    let runs = self.map_runs.read();
                    let r = runs.get(arn)?;
                    let limit = if r.max_concurrency == 0 {
                        UNLIMITED
                    } else {
                        r.max_concurrency
                    };
                    if r.running.len() as u64 >= limit {
                        None
                    } else {
                        (0..total)
                            .find(|i| !r.done.contains_key(i) && !r.running.contains_key(i))
                            .map(|i| (i, r.inputs[i].clone(), r.pending_redrive.get(&i).cloned()))
                    }
                };
                let Some((i, item, redrive)) = next else {
                    break;
                };
                if let Some(child_arn) = redrive {
                    let redriven = if child.express {
                        // Express executions cannot be redriven: the item runs anew.
                        None
                    } else {
                        Some(self.redrive_child(&child_arn).await)
                    };
                    let commit = {
                        let mut runs = self.map_runs.write();
                        let r = runs.get_mut(arn)?;
                        r.pending_redrive.remove(&i);
                        match &redriven {
                            Some(Ok(())) => {
                                r.running.insert(i, child_arn.clone());
                            }
                            Some(Err(entry)) => {
                                r.not_redrivable.insert(i);
                                r.done.insert(i, entry.clone());
                            }
                            None => {}
                        }
                        let mut batch = Batch::new();
                        state::put_map_run(&mut batch, r);
                        self.store.commit(batch)
                    };
                    if let Err(e) = commit.await {
                        tracing::error!(error = %e, "A map run's redrive could not be stored.");
                    }
                    match redriven {
                        Some(Ok(())) => {
                            let me = self.clone();
                            set.spawn(async move {
                                let entry = me.wait_for(&child_arn).await;
                                (
                                    i,
                                    entry.map(|e| child_entry(&e.lock())).unwrap_or(Value::Null),
                                )
                            });
                            continue;
                        }
                        Some(Err(_)) => continue,
                        None => {}
                    }
                }
                let name = format!("{id}-{i}");
                let req = json!({"name": name, "input": item.to_string()});
                let target = Target {
                    machine: Arc::new(child.clone()),
                    version_arn: None,
                    alias_arn: None,
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let started = self
                    .start_target(&ctx, target, &req, Some(tx), Some(arn.to_string()))
                    .await;
                let (child_arn, entry) = match started {
                    Ok((a, _, entry)) => (a, Some((entry, rx))),
                    Err(e) if e.code == "ExecutionAlreadyExists" => {
                        let a = tsumiki_core::ids::arn(
                            "states",
                            &region,
                            &account,
                            &format!("execution:{}:{name}", child.name),
                        );
                        (a, None)
                    }
                    Err(e) => {
                        failure = Some(("States.Runtime".into(), e.message));
                        break;
                    }
                };
                if let Some(r) = self.map_runs.write().get_mut(arn) {
                    r.running.insert(i, child_arn.clone());
                }
                let me = self.clone();
                set.spawn(async move {
                    let entry = match entry {
                        Some((entry, rx)) => {
                            let _ = rx.await;
                            // A start that found the child already running registered no
                            // waiter: wait for it now.
                            if entry.lock().rec.exec.status == Status::Running {
                                me.wait_for(&child_arn).await
                            } else {
                                Some(entry)
                            }
                        }
                        None => me.wait_for(&child_arn).await,
                    };
                    (
                        i,
                        entry.map(|e| child_entry(&e.lock())).unwrap_or(Value::Null),
                    )
                });
            }
            if failure.is_some() {
                self.end_run(arn, "FAILED", &mut set).await;
                break;
            }
            if set.is_empty() {
                break;
            }
            let joined = tokio::select! {
                j = set.join_next() => j,
                _ = self.clock.sleep_ms(1000) => continue,
            };
            let Some(Ok((i, entry))) = joined else {
                continue;
            };
            let commit = {
                let mut runs = self.map_runs.write();
                let r = runs.get_mut(arn)?;
                r.running.remove(&i);
                r.done.insert(i, entry);
                let failed = r
                    .done
                    .values()
                    .filter(|v| v["Status"] != "SUCCEEDED")
                    .count();
                let exceeded = match (r.tolerated_count, r.tolerated_pct) {
                    (None, None) => failed > 0,
                    (count, pct) => {
                        count.is_some_and(|c| failed as u64 > c)
                            || pct.is_some_and(|p| failed as f64 * 100.0 / total as f64 > p)
                    }
                };
                if exceeded {
                    failure = Some((
                        "States.ExceedToleratedFailureThreshold".into(),
                        "The specified tolerated failure threshold was exceeded".into(),
                    ));
                }
                let mut batch = Batch::new();
                state::put_map_run(&mut batch, r);
                self.store.commit(batch)
            };
            if let Err(e) = commit.await {
                tracing::error!(error = %e, "A map run's progress could not be stored.");
            }
        }
        if let Some(f) = failure {
            if let Err(w) = self.write_results(arn).await {
                tracing::warn!(map_run = %arn, error = ?w, "A failed map run's results could not be written.");
            }
            return Some(Err(f));
        }
        let result = self.write_results(arn).await;
        let status = if result.is_ok() {
            "SUCCEEDED"
        } else {
            "FAILED"
        };
        self.end_run(arn, status, &mut set).await;
        Some(result)
    }

    /// Marks the run ended, stopping children still running.
    async fn end_run(
        self: &Arc<Self>,
        arn: &str,
        status: &str,
        set: &mut tokio::task::JoinSet<(usize, Value)>,
    ) {
        set.abort_all();
        let (running, commit) = {
            let mut runs = self.map_runs.write();
            let Some(r) = runs.get_mut(arn) else { return };
            let running: Vec<String> = std::mem::take(&mut r.running).into_values().collect();
            r.status = status.to_string();
            r.stop_ms = Some(self.clock.now_ms());
            let mut batch = Batch::new();
            state::put_map_run(&mut batch, r);
            (running, self.store.commit(batch))
        };
        for child in running {
            let stop = Input::Stop {
                error: Some("States.Aborted".into()),
                cause: Some("The map run ended.".into()),
            };
            if let Err(e) = self.clone().advance(child, stop).await {
                tracing::warn!(error = %e, "A map run's child could not be stopped.");
            }
        }
        if let Err(e) = commit.await {
            tracing::error!(error = %e, "A map run's end could not be stored.");
        }
    }

    /// The map's result: the children's outputs in item order, or with `ResultWriter` the
    /// files in S3 and where their manifest is.
    async fn write_results(&self, arn: &str) -> Result<Value, Fault> {
        let (done, writer, account, region) = {
            let runs = self.map_runs.read();
            let r = runs.get(arn).ok_or_else(|| {
                (
                    "States.Runtime".to_string(),
                    "The map run is gone.".to_string(),
                )
            })?;
            (
                r.done.clone(),
                r.writer.clone(),
                r.account.clone(),
                r.region.clone(),
            )
        };
        let Some(writer) = writer else {
            let results = done
                .values()
                .map(|v| match v.get("Output").and_then(Value::as_str) {
                    Some(o) => serde_json::from_str(o).unwrap_or(Value::Null),
                    None => json!({"Error": v.get("Error"), "Cause": v.get("Cause")}),
                })
                .collect();
            return Ok(Value::Array(results));
        };
        let failed = |c: String| ("States.ResultWriterFailed".to_string(), c);
        let to_s3 = writer.get("ToS3").and_then(Value::as_bool).unwrap_or(true);
        let cfg = items::writer_config(writer.get("WriterConfig"), to_s3).map_err(failed)?;
        if !to_s3 {
            // WriterConfig alone: the transformed results are the state's output.
            let all: Vec<&Value> = done.values().collect();
            return Ok(Value::Array(items::transform(&all, cfg.transformation)));
        }
        let objects = self
            .object_store()
            .await
            .ok_or_else(|| failed("S3 is not served, so the ResultWriter cannot write.".into()))?;
        let ctx = self.internal_ctx(&account, &region);
        let bucket = writer.get("Bucket").and_then(Value::as_str).unwrap_or("");
        let prefix = writer.get("Prefix").and_then(Value::as_str).unwrap_or("");
        let id = arn.rsplit(':').next().unwrap_or("");
        let base = if prefix.is_empty() {
            format!("{id}/")
        } else {
            format!("{}/{id}/", prefix.trim_end_matches('/'))
        };
        let mut files = Map::new();
        for (status, name) in [
            ("SUCCEEDED", "SUCCEEDED_0.json"),
            ("FAILED", "FAILED_0.json"),
        ] {
            let list: Vec<&Value> = done
                .values()
                .filter(|v| (v["Status"] == "SUCCEEDED") == (status == "SUCCEEDED"))
                .collect();
            let mut entries = Vec::new();
            if !list.is_empty() {
                let key = format!("{base}{name}");
                let body = items::encode(&items::transform(&list, cfg.transformation), cfg.jsonl);
                let size = body.len();
                objects
                    .put_object(&ctx, bucket, &key, body.into(), Some("application/json"))
                    .await
                    .map_err(|e| failed(format!("{}: {}", e.code, e.message)))?;
                entries.push(json!({"Key": key, "Size": size}));
            }
            files.insert(status.to_string(), Value::Array(entries));
        }
        files.insert("PENDING".into(), json!([]));
        let manifest_key = format!("{base}manifest.json");
        let manifest = json!({"DestinationBucket": bucket, "MapRunArn": arn, "ResultFiles": files});
        objects
            .put_object(
                &ctx,
                bucket,
                &manifest_key,
                manifest.to_string().into_bytes().into(),
                Some("application/json"),
            )
            .await
            .map_err(|e| failed(format!("{}: {}", e.code, e.message)))?;
        Ok(
            json!({"MapRunArn": arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}),
        )
    }
}

fn map_run<'a>(
    runs: &'a std::collections::BTreeMap<String, MapRun>,
    ctx: &RequestContext,
    arn: &str,
) -> Result<&'a MapRun, AwsError> {
    match parse_states_arn(arn) {
        Some((region, account, kind, _))
            if kind == "mapRun" && region == ctx.region && account == ctx.account => {}
        _ => return Err(err("InvalidArn", format!("Invalid Arn: '{arn}'"))),
    }
    runs.get(arn)
        .ok_or_else(|| err("ResourceNotFound", format!("Resource not found: '{arn}'")))
}

/// DescribeMapRun's `itemCounts` (`items`: a batch counts its items) or `executionCounts`.
fn counts(r: &MapRun, items: bool) -> Value {
    let weight = |i: usize| -> usize {
        if items && r.batched {
            r.inputs
                .get(i)
                .and_then(|b| b.get("Items"))
                .and_then(Value::as_array)
                .map_or(1, Vec::len)
        } else {
            1
        }
    };
    let sum = |it: &mut dyn Iterator<Item = usize>| -> usize { it.map(weight).sum() };
    let status = |s: &str| {
        sum(&mut r
            .done
            .iter()
            .filter(|(_, v)| v["Status"] == s)
            .map(|(i, _)| *i))
    };
    let total = sum(&mut (0..r.inputs.len()));
    let done = sum(&mut r.done.keys().copied());
    let running = sum(&mut r.running.keys().copied());
    let pending_redrive = sum(&mut r.pending_redrive.keys().copied());
    let to_s3 = r
        .writer
        .as_ref()
        .is_some_and(|w| w.get("ToS3").and_then(Value::as_bool).unwrap_or(true));
    let written = if to_s3 && r.status != "RUNNING" {
        done
    } else {
        0
    };
    json!({
        "pending": total.saturating_sub(done + running + pending_redrive),
        "running": running,
        "succeeded": status("SUCCEEDED"),
        "failed": status("FAILED"),
        "timedOut": status("TIMED_OUT"),
        "aborted": status("ABORTED"),
        "total": total,
        "resultsWritten": written,
        "failuresNotRedrivable": sum(&mut r.not_redrivable.iter().copied()),
        "pendingRedrive": pending_redrive,
    })
}

pub(crate) fn describe_map_run(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "mapRunArn")?;
    let runs = sfn.map_runs.read();
    let r = map_run(&runs, ctx, arn)?;
    let mut out = json!({
        "mapRunArn": r.arn,
        "executionArn": r.exec_arn,
        "status": r.status,
        "startDate": secs(r.start_ms),
        "maxConcurrency": r.max_concurrency,
        "toleratedFailurePercentage": r.tolerated_pct.unwrap_or(0.0),
        "toleratedFailureCount": r.tolerated_count.unwrap_or(0),
        "itemCounts": counts(r, true),
        "executionCounts": counts(r, false),
        "redriveCount": r.redrive_count,
    });
    if let Some(d) = r.redrive_ms {
        out["redriveDate"] = json!(secs(d));
    }
    if let Some(s) = r.stop_ms {
        out["stopDate"] = json!(secs(s));
    }
    Ok(out)
}

pub(crate) fn list_map_runs(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let exec = required_str(input, "executionArn")?;
    match parse_states_arn(exec) {
        Some((region, account, kind, _))
            if kind == "execution" && region == ctx.region && account == ctx.account => {}
        _ => return Err(err("InvalidArn", format!("Invalid Arn: '{exec}'"))),
    }
    if !sfn.executions.read().contains_key(exec) {
        return Err(err(
            "ExecutionDoesNotExist",
            format!("Execution Does Not Exist: '{exec}'"),
        ));
    }
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let runs = sfn.map_runs.read();
    let mut mine: Vec<&MapRun> = runs.values().filter(|r| r.exec_arn == exec).collect();
    mine.sort_by_key(|r| std::cmp::Reverse(r.start_ms));
    let page: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|r| {
            let mut v = json!({"executionArn": r.exec_arn, "mapRunArn": r.arn, "stateMachineArn": r.machine_arn, "startDate": secs(r.start_ms)});
            if let Some(s) = r.stop_ms {
                v["stopDate"] = json!(secs(s));
            }
            v
        })
        .collect();
    let mut out = json!({"mapRuns": page});
    if start + size < mine.len() {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

pub(crate) async fn update_map_run(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let arn = required_str(input, "mapRunArn")?;
    let conc = input.get("maxConcurrency").and_then(Value::as_u64);
    let pct = input
        .get("toleratedFailurePercentage")
        .and_then(Value::as_f64);
    let count = input.get("toleratedFailureCount").and_then(Value::as_u64);
    if conc.is_none() && pct.is_none() && count.is_none() {
        return Err(AwsError::validation(
            "At least one of maxConcurrency, toleratedFailurePercentage or toleratedFailureCount must be specified",
        ));
    }
    if pct.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
        return Err(AwsError::validation(
            "toleratedFailurePercentage must be between 0 and 100",
        ));
    }
    let commit = {
        let mut runs = sfn.map_runs.write();
        map_run(&runs, ctx, arn)?;
        let r = runs.get_mut(arn).expect("checked above");
        if let Some(c) = conc {
            r.max_concurrency = c;
        }
        if let Some(p) = pct {
            r.tolerated_pct = Some(p);
        }
        if let Some(c) = count {
            r.tolerated_count = Some(c);
        }
        let mut batch = Batch::new();
        state::put_map_run(&mut batch, r);
        sfn.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

/// ListExecutions with `mapRunArn`: the run's child executions.
pub(crate) fn list_children(
    sfn: &StepFunctions,
    ctx: &RequestContext,
    arn: &str,
    input: &Value,
) -> Result<Value, AwsError> {
    let children: Vec<String> = {
        let runs = sfn.map_runs.read();
        let r = map_run(&runs, ctx, arn)?;
        let mut c: Vec<(usize, String)> = r
            .done
            .iter()
            .filter_map(|(i, v)| Some((*i, v.get("ExecutionArn")?.as_str()?.to_string())))
            .chain(r.running.iter().map(|(i, a)| (*i, a.clone())))
            .chain(r.pending_redrive.iter().map(|(i, a)| (*i, a.clone())))
            .collect();
        c.sort();
        c.into_iter().map(|x| x.1).collect()
    };
    let status = input.get("statusFilter").and_then(Value::as_str);
    let redrive_filter = input.get("redriveFilter").and_then(Value::as_str);
    let start = page_start(input)?;
    let size = page_size(input, 100);
    let execs = sfn.executions.read();
    let runs = sfn.map_runs.read();
    let done: Vec<Value> = runs
        .get(arn)
        .map(|r| r.done.values().cloned().collect())
        .unwrap_or_default();
    let rows: Vec<Value> = children
        .iter()
        .filter_map(|a| {
            let (name, machine, st, start_ms, stop_ms, redrives) = match execs.get(a) {
                Some(e) => {
                    let e = e.lock();
                    (
                        e.rec.name.clone(),
                        e.rec.machine_arn.clone(),
                        e.rec.exec.status.as_str().to_string(),
                        secs(e.rec.start_ms),
                        e.rec.exec.stop_ms.map(secs),
                        (e.rec.redrive_count, e.rec.redrive_ms),
                    )
                }
                // An Express child is gone from memory once it ended: its recorded entry.
                None => {
                    let v = done.iter().find(|v| v["ExecutionArn"] == a.as_str())?;
                    let date = |f: &str| {
                        v.get(f)
                            .and_then(Value::as_str)
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .map(|d| d.timestamp_millis())
                            .map(secs)
                    };
                    (
                        v["Name"].as_str().unwrap_or("").to_string(),
                        v["StateMachineArn"].as_str().unwrap_or("").to_string(),
                        v["Status"].as_str().unwrap_or("").to_string(),
                        date("StartDate").unwrap_or(0.0),
                        date("StopDate"),
                        (0, None),
                    )
                }
            };
            let redriven = redrives.0 > 0;
            if status.is_some_and(|s| s != st)
                || redrive_filter.is_some_and(|f| (f == "REDRIVEN") != redriven)
            {
                return None;
            }
            let mut v = json!({"executionArn": a, "stateMachineArn": machine, "name": name, "status": st, "startDate": start_ms, "mapRunArn": arn});
            if let Some(s) = stop_ms {
                v["stopDate"] = json!(s);
            }
            if redriven {
                v["redriveCount"] = json!(redrives.0);
            }
            if let Some(d) = redrives.1 {
                v["redriveDate"] = json!(secs(d));
            }
            Some(v)
        })
        .collect();
    let total = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(start).take(size).collect();
    let mut out = json!({"executions": page});
    if start + size < total {
        out["nextToken"] = json!((start + size).to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_and_distinct() {
        assert_eq!(run_id("arn:x", 3), run_id("arn:x", 3));
        assert_ne!(run_id("arn:x", 3), run_id("arn:x", 4));
        assert_eq!(run_id("arn:x", 3).len(), 36);
    }
}
