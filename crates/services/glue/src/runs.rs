//! Job runs: StartJobRun, GetJobRun(s), BatchStopJobRun, and a run's life.
//!
//! A run is recorded `STARTING` before StartJobRun answers; its executor task resolves the
//! script, records `RUNNING`, starts the process and waits for it; the end is recorded with
//! `ExecutionTime`, `DPUSeconds` and `ErrorMessage` after the run's whole log was written.
//! Then, in order: the `Glue Job State Change` event, a retry (a new run
//! `<first id>_attempt_<n>` with `PreviousRunId`) while `MaxRetries` allows, or else the
//! conditional triggers watching the job. A run in progress when the server stopped lost its
//! process; it is ended `ERROR` at the next start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tsumiki_compute::jobs::{ProcessSpec, RunEnd, RunLogs, StreamTarget};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::jobs::{DEFAULT_TIMEOUT_MIN, job_not_found};
use crate::state::{self, Key, State};
use crate::{Glue, invalid, key, not_found, page, str_of};

pub(crate) const OUTPUT_GROUP: &str = "/aws-glue/python-jobs/output";
pub(crate) const ERROR_GROUP: &str = "/aws-glue/python-jobs/error";
/// How long a stopped run gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// States a run can leave.
fn in_progress(state: &str) -> bool {
    matches!(state, "STARTING" | "RUNNING" | "STOPPING" | "WAITING")
}

fn state_of(run: &Value) -> &str {
    str_of(run, "JobRunState").unwrap_or("")
}

fn new_run_id() -> String {
    // AWS's run ids: `jr_` and 64 hex digits.
    format!(
        "jr_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// How a run is started: by a caller, a trigger, or as a retry of an earlier attempt.
#[derive(Default)]
pub(crate) struct Launch {
    pub arguments: Option<Value>,
    pub timeout_min: Option<u64>,
    pub max_capacity: Option<f64>,
    pub trigger: Option<String>,
    /// The run this one retries, and this run's attempt number.
    pub retry_of: Option<(String, u64)>,
}

pub(crate) async fn start_job_run(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let launch = Launch {
        arguments: input.get("Arguments").cloned(),
        timeout_min: input.get("Timeout").and_then(Value::as_u64),
        max_capacity: input.get("MaxCapacity").and_then(Value::as_f64),
        ..Launch::default()
    };
    let id = start(glue, &key(ctx, name), launch).await?;
    Ok(json!({"JobRunId": id}))
}

/// Records a new run `STARTING` and hands it to its executor; answers its id.
pub(crate) async fn start(glue: &Glue, job_key: &Key, launch: Launch) -> Result<String, AwsError> {
    let now_ms = glue.clock.now_ms();
    let (id, commit) = {
        let mut state = glue.state.lock();
        let Some(record) = state.jobs.get(job_key) else {
            return Err(job_not_found(&job_key.name));
        };
        let job = record.job.clone();
        let kind = job
            .get("Command")
            .and_then(|c| str_of(c, "Name"))
            .unwrap_or("glueetl");
        if kind != "pythonshell" {
            return Err(invalid(format!(
                "Job {} is a {kind} job: tsumiki runs Python shell (pythonshell) jobs only; \
                 Spark and Ray jobs are not supported",
                job_key.name
            )));
        }
        if launch.retry_of.is_none() {
            let max = job
                .get("ExecutionProperty")
                .and_then(|e| e.get("MaxConcurrentRuns"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            let running = runs_of(&state, job_key)
                .filter(|(_, r)| in_progress(state_of(r)))
                .count() as u64;
            if running >= max {
                return Err(AwsError::new(
                    "ConcurrentRunsExceededException",
                    400,
                    format!("Concurrent runs exceeded for {}", job_key.name),
                ));
            }
        }
        if let Some(dpu) = launch.max_capacity
            && dpu != 0.0625
            && dpu != 1.0
        {
            return Err(invalid(
                "Max capacity for Python shell jobs must be 0.0625 or 1.0 DPU",
            ));
        }
        let (id, attempt, previous) = match &launch.retry_of {
            Some((previous, attempt)) => {
                let root = previous.split("_attempt_").next().unwrap_or(previous);
                (
                    format!("{root}_attempt_{attempt}"),
                    *attempt,
                    Some(previous.clone()),
                )
            }
            None => (new_run_id(), 0, None),
        };
        let now_s = now_ms as f64 / 1000.0;
        let mut run = json!({
            "Id": id,
            "Attempt": attempt,
            "JobName": job_key.name,
            "JobMode": job.get("JobMode").cloned().unwrap_or(json!("SCRIPT")),
            "StartedOn": now_s,
            "LastModifiedOn": now_s,
            "JobRunState": "STARTING",
            "Arguments": launch.arguments.clone().unwrap_or(json!({})),
            "PredecessorRuns": [],
            "Timeout": launch.timeout_min
                .or_else(|| job.get("Timeout").and_then(Value::as_u64))
                .unwrap_or(DEFAULT_TIMEOUT_MIN),
            "MaxCapacity": launch.max_capacity
                .or_else(|| job.get("MaxCapacity").and_then(Value::as_f64))
                .unwrap_or(0.0625),
            "LogGroupName": "/aws-glue/python-jobs",
        });
        if let Some(p) = previous {
            run["PreviousRunId"] = json!(p);
        }
        if let Some(t) = &launch.trigger {
            run["TriggerName"] = json!(t);
        }
        if let Some(v) = job.get("GlueVersion") {
            run["GlueVersion"] = v.clone();
        }
        let mut batch = Batch::new();
        state::put_run(&mut batch, job_key, &id, &run);
        state.runs.insert((job_key.clone(), id.clone()), run);
        (id, glue.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    // Through the launcher task: a run's end can start runs (retries, triggers), and a
    // future that spawned its own kind could not be proven `Send`.
    let _ = glue.launcher.send((job_key.clone(), id.clone()));
    Ok(id)
}

fn runs_of<'a>(state: &'a State, job: &'a Key) -> impl Iterator<Item = (&'a String, &'a Value)> {
    state
        .runs
        .range((job.clone(), String::new())..)
        .take_while(move |((j, _), _)| j == job)
        .map(|((_, id), r)| (id, r))
}

/// Changes a run's record and writes it; `None` when the run is gone (its job was deleted).
async fn update_run(
    glue: &Glue,
    job: &Key,
    id: &str,
    change: impl FnOnce(&mut Value),
) -> Option<Value> {
    let (run, commit) = {
        let mut state = glue.state.lock();
        let run = state.runs.get_mut(&(job.clone(), id.to_string()))?;
        change(run);
        run["LastModifiedOn"] = json!(glue.clock.now_ms() as f64 / 1000.0);
        let mut batch = Batch::new();
        state::put_run(&mut batch, job, id, run);
        (run.clone(), glue.store.commit(batch))
    };
    if let Err(e) = commit.await {
        crate::store_error(e);
    }
    Some(run)
}

/// A run's life after StartJobRun answered.
pub(crate) async fn execute(glue: Arc<Glue>, job_key: Key, run_id: String) {
    let (job, run) = {
        let state = glue.state.lock();
        let job = state.jobs.get(&job_key).map(|r| r.job.clone());
        let run = state.runs.get(&(job_key.clone(), run_id.clone())).cloned();
        match (job, run) {
            (Some(j), Some(r)) => (j, r),
            _ => return,
        }
    };
    let script = match script_path(&glue, &job_key, &job, &run_id).await {
        Ok(path) => path,
        Err(message) => {
            finish(&glue, &job_key, &run_id, "ERROR", Some(message)).await;
            return;
        }
    };
    let python = glue.python().await.cloned();
    let spec = match prepare(&glue, python.as_ref(), &job_key, &job, &run, &script) {
        Ok(spec) => spec,
        Err(message) => {
            finish(&glue, &job_key, &run_id, "ERROR", Some(message)).await;
            return;
        }
    };
    if update_run(&glue, &job_key, &run_id, |r| {
        if state_of(r) == "STARTING" {
            r["JobRunState"] = json!("RUNNING");
        }
    })
    .await
    .is_none()
    {
        return;
    }
    let mut spec = spec;
    let arguments = arguments(&job, &run);
    if arguments.contains_key("--extra-py-files")
        || arguments.contains_key("--additional-python-modules")
    {
        let mut pip_base = spec.clone();
        pip_base.env.extend(crate::modules::pip_environment());
        pip_base.work_dir = spec.work_dir.join("pip");
        pip_base.keep_work_dir = false;
        pip_base.preamble = Vec::new();
        let installed = crate::modules::install(&glue, &job_key, &arguments, &pip_base, |s| {
            run_process(&glue, &run_id, s)
        })
        .await;
        match installed {
            Ok(installed) => {
                let mut path: Vec<String> = installed
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                path.extend(spec.env.get("PYTHONPATH").cloned());
                spec.env.insert("PYTHONPATH".into(), path.join(":"));
                spec.preamble.extend(installed.notes);
            }
            Err(message) => {
                let stopped = glue
                    .state
                    .lock()
                    .runs
                    .get(&(job_key.clone(), run_id.clone()))
                    .is_some_and(|r| state_of(r) == "STOPPING");
                if stopped {
                    finish(&glue, &job_key, &run_id, "STOPPED", None).await;
                } else {
                    finish(&glue, &job_key, &run_id, "FAILED", Some(message)).await;
                }
                return;
            }
        }
    }
    let end = match run_process(&glue, &run_id, spec).await {
        Ok(end) => end,
        Err(message) => {
            finish(&glue, &job_key, &run_id, "ERROR", Some(message)).await;
            return;
        }
    };
    let timeout = run.get("Timeout").and_then(Value::as_u64).unwrap_or(0);
    let (state, message) = match end {
        RunEnd::Exited(0) => ("SUCCEEDED", None),
        RunEnd::Exited(code) => (
            "FAILED",
            Some(format!("Command failed with exit code {code}")),
        ),
        RunEnd::Signaled(sig) => (
            "FAILED",
            Some(format!(
                "Command failed: the process was killed by signal {sig}"
            )),
        ),
        RunEnd::TimedOut => (
            "TIMEOUT",
            Some(format!("Job run timed out after {timeout} minutes")),
        ),
        RunEnd::Stopped { .. } => ("STOPPED", None),
        RunEnd::OutOfMemory => (
            "FAILED",
            Some("Command failed: the job ran out of memory (its DPU's memory)".to_string()),
        ),
    };
    finish(&glue, &job_key, &run_id, state, message).await;
}

/// Runs one process of a run (pip, then the script) to its end; BatchStopJobRun stops it.
async fn run_process(glue: &Glue, run_id: &str, spec: ProcessSpec) -> Result<RunEnd, String> {
    let process = glue
        .processes
        .spawn(spec)
        .map_err(|e| format!("The job's process could not start: {e}"))?;
    {
        // Under `stopping`, so a stop request sees either the process or the flag.
        let mut stopping = glue.stopping.lock();
        glue.live.lock().insert(run_id.to_string(), process.clone());
        if stopping.remove(run_id) {
            process.stop();
        }
    }
    let end = process.wait().await;
    glue.live.lock().remove(run_id);
    Ok(end)
}

/// The run's arguments: the job's defaults, then the run's own, then what runs may not
/// override.
fn arguments(job: &Value, run: &Value) -> BTreeMap<String, String> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for source in [
        job.get("DefaultArguments"),
        run.get("Arguments"),
        job.get("NonOverridableArguments"),
    ]
    .into_iter()
    .flatten()
    {
        for (k, v) in source.as_object().into_iter().flatten() {
            merged.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    merged
}

/// The local file a run executes: the job's `ScriptLocation` as a path or `file://` URL, or an
/// `s3://bucket/key` object copied into the run's own file (read once per run, as Glue does).
async fn script_path(
    glue: &Glue,
    job_key: &Key,
    job: &Value,
    run_id: &str,
) -> Result<std::path::PathBuf, String> {
    let command = job.get("Command").cloned().unwrap_or(json!({}));
    let location = str_of(&command, "ScriptLocation").unwrap_or_default();
    let Some(object) = location.strip_prefix("s3://") else {
        let path = std::path::PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        if !path.is_file() {
            return Err(format!("Script {location} was not found"));
        }
        return Ok(path);
    };
    let (bucket, key) = object.split_once('/').unwrap_or((object, ""));
    let Some(objects) = glue.objects.get() else {
        return Err(format!(
            "Script {location} cannot be read: this server does not run S3"
        ));
    };
    let ctx = RequestContext {
        account: job_key.account.clone(),
        region: job_key.region.clone(),
        request_id: tsumiki_core::ids::request_id(),
        base_url: glue.endpoint.read().clone(),
        access_key: None,
        path: String::new(),
    };
    let body = objects.get_object(&ctx, bucket, key).await.map_err(|e| {
        format!(
            "Script {location} cannot be read: {}: {}",
            e.code, e.message
        )
    })?;
    let dir = glue.work_dir.join("scripts");
    let path = dir.join(format!("{run_id}.py"));
    // A script is small; writing it inline is cheaper than a blocking-pool hop.
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, &body))
        .map_err(|e| format!("Script {location} could not be written locally: {e}"))?;
    Ok(path)
}

/// The process of a run, or why it cannot run.
fn prepare(
    glue: &Glue,
    python: Option<&crate::Python>,
    job_key: &Key,
    job: &Value,
    run: &Value,
    path: &std::path::Path,
) -> Result<ProcessSpec, String> {
    let Some(python) = python else {
        return Err("No python3 was found on this machine to run Python shell jobs".into());
    };
    let command = job.get("Command").cloned().unwrap_or(json!({}));
    let run_id = str_of(run, "Id").unwrap_or_default();
    let mut args = vec![
        "-u".to_string(),
        path.display().to_string(),
        "--JOB_ID".to_string(),
        format!("j_{}", job_key.name),
        "--JOB_RUN_ID".to_string(),
        run_id.to_string(),
        "--JOB_NAME".to_string(),
        job_key.name.clone(),
    ];
    let merged = arguments(job, run);
    let preamble = vec![format!(
        "tsumiki: Python shell job {} run {run_id} runs with {} (Python {}); AWS Glue would use \
         Python {}.",
        job_key.name,
        python.path.display(),
        python.version,
        str_of(&command, "PythonVersion").unwrap_or("3.9")
    )];
    for (k, v) in merged {
        args.push(k);
        args.push(v);
    }
    let work_dir = glue.work_dir.join("runs").join(run_id);
    let tmp = work_dir.join("tmp");
    let mut env = BTreeMap::new();
    let bin = python
        .path
        .parent()
        .map(|p| format!("{}:", p.display()))
        .unwrap_or_default();
    env.insert("PATH".into(), format!("{bin}/usr/local/bin:/usr/bin:/bin"));
    env.insert("LANG".into(), "en_US.UTF-8".into());
    env.insert("HOME".into(), tmp.display().to_string());
    env.insert("TMPDIR".into(), tmp.display().to_string());
    env.insert(
        "PYTHONPATH".into(),
        glue.work_dir.join("shim").display().to_string(),
    );
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    env.insert("AWS_REGION".into(), job_key.region.clone());
    env.insert("AWS_DEFAULT_REGION".into(), job_key.region.clone());
    // A 12-digit access key id acts in that account at tsumiki's gateway.
    env.insert("AWS_ACCESS_KEY_ID".into(), job_key.account.clone());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "tsumiki".into());
    env.insert("AWS_ENDPOINT_URL".into(), glue.endpoint.read().clone());
    std::fs::create_dir_all(&tmp).map_err(|e| format!("The run's directory: {e}"))?;
    let dpu = run
        .get("MaxCapacity")
        .and_then(Value::as_f64)
        .unwrap_or(0.0625);
    let timeout_min = run
        .get("Timeout")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TIMEOUT_MIN);
    let started_ms = run
        .get("StartedOn")
        .and_then(Value::as_f64)
        .map_or(glue.clock.now_ms(), |s| (s * 1000.0) as i64);
    Ok(ProcessSpec {
        account: job_key.account.clone(),
        region: job_key.region.clone(),
        program: python.path.clone(),
        args,
        env,
        work_dir,
        // 1 DPU: 16 GB; 0.0625 DPU: 1 GB.
        memory_mb: (dpu * 16384.0) as u64,
        storage_mb: 20 * 1024,
        deadline_ms: Some(started_ms + timeout_min as i64 * 60_000),
        stop_grace: STOP_GRACE,
        logs: RunLogs::Split {
            stdout: StreamTarget {
                group: OUTPUT_GROUP.into(),
                stream: run_id.to_string(),
            },
            stderr: StreamTarget {
                group: ERROR_GROUP.into(),
                stream: run_id.to_string(),
            },
        },
        preamble,
        keep_work_dir: false,
    })
}

/// Records a run's end, tells EventBridge, then retries it or runs the triggers watching it.
async fn finish(
    glue: &Arc<Glue>,
    job_key: &Key,
    run_id: &str,
    state: &str,
    message: Option<String>,
) {
    let now_ms = glue.clock.now_ms();
    let Some(run) = update_run(glue, job_key, run_id, |r| {
        let started = r.get("StartedOn").and_then(Value::as_f64).unwrap_or(0.0);
        let secs = ((now_ms as f64 / 1000.0 - started).max(0.0)).ceil() as u64;
        let dpu = r
            .get("MaxCapacity")
            .and_then(Value::as_f64)
            .unwrap_or(0.0625);
        r["JobRunState"] = json!(state);
        r["CompletedOn"] = json!(now_ms as f64 / 1000.0);
        r["ExecutionTime"] = json!(secs);
        r["DPUSeconds"] = json!(secs as f64 * dpu);
        if let Some(m) = &message {
            r["ErrorMessage"] = json!(m);
        }
    })
    .await
    else {
        return;
    };
    if state == "SUCCEEDED" {
        crate::bookmarks::on_success(glue, job_key, &run).await;
    }
    send_state_change(glue, job_key, run_id, state, message.as_deref()).await;
    if state == "FAILED" {
        let attempt = run.get("Attempt").and_then(Value::as_u64).unwrap_or(0);
        let max_retries = {
            let s = glue.state.lock();
            s.jobs
                .get(job_key)
                .and_then(|r| r.job.get("MaxRetries"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        if attempt < max_retries {
            let launch = Launch {
                arguments: run.get("Arguments").cloned(),
                timeout_min: run.get("Timeout").and_then(Value::as_u64),
                max_capacity: run.get("MaxCapacity").and_then(Value::as_f64),
                trigger: str_of(&run, "TriggerName").map(str::to_string),
                retry_of: Some((run_id.to_string(), attempt + 1)),
            };
            if let Err(e) = start(glue, job_key, launch).await {
                tracing::warn!(job = %job_key.name, error = %e.message, "Glue retry did not start");
            }
            return;
        }
    }
    let workflow = crate::workflows::of_run(&run);
    crate::triggers::on_run_end(glue, job_key, state, workflow.clone()).await;
    if let Some((name, run_id)) = workflow {
        crate::workflows::after_run(glue, &name, &job_key.account, &job_key.region, &run_id).await;
    }
}

/// `Glue Job State Change` to the account's default event bus, as AWS sends it.
async fn send_state_change(
    glue: &Glue,
    job: &Key,
    run_id: &str,
    state: &str,
    message: Option<&str>,
) {
    let Some(events) = glue.services.get().and_then(|s| s.get("events")).cloned() else {
        return;
    };
    let (severity, text) = match state {
        "SUCCEEDED" => ("INFO", "Job run succeeded".to_string()),
        "STOPPED" => ("INFO", "Job run stopped".to_string()),
        "TIMEOUT" => ("WARN", message.unwrap_or("Job run timed out").to_string()),
        _ => ("ERROR", message.unwrap_or("Job run failed").to_string()),
    };
    let detail = json!({
        "jobName": job.name,
        "severity": severity,
        "state": state,
        "jobRunId": run_id,
        "message": text,
    });
    let input = json!({"Entries": [{
        "Source": "aws.glue",
        "DetailType": "Glue Job State Change",
        "Detail": detail.to_string(),
        "Resources": [],
    }]});
    let ctx = glue.internal_context(&job.account, &job.region);
    if let Err(e) = events.call(&ctx, "PutEvents", input).await {
        tracing::warn!(error = %e.message, "Glue job state change not delivered to EventBridge");
    }
}

/// Ends runs that were in progress when the server stopped; answers which.
pub(crate) fn end_interrupted(state: &mut State, now_ms: i64) -> Vec<(Key, String)> {
    let mut ended = Vec::new();
    for ((job, id), run) in state.runs.iter_mut() {
        if in_progress(state_of(run)) {
            run["JobRunState"] = json!("ERROR");
            run["ErrorMessage"] = json!(
                "The job run was interrupted: tsumiki stopped while it ran, and its process \
                 ended with it"
            );
            run["CompletedOn"] = json!(now_ms as f64 / 1000.0);
            run["LastModifiedOn"] = json!(now_ms as f64 / 1000.0);
            ended.push((job.clone(), id.clone()));
        }
    }
    ended
}

pub(crate) fn get_job_run(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let id = str_of(input, "RunId").unwrap_or_default();
    let state = glue.state.lock();
    match state.runs.get(&(key(ctx, name), id.to_string())) {
        Some(run) => Ok(json!({"JobRun": run})),
        None => Err(not_found(format!(
            "Job Run Id {id} not found for job {name}"
        ))),
    }
}

pub(crate) fn get_job_runs(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let k = key(ctx, name);
    let mut runs: Vec<Value> = {
        let state = glue.state.lock();
        if !state.jobs.contains_key(&k) {
            return Err(job_not_found(name));
        }
        runs_of(&state, &k).map(|(_, r)| r.clone()).collect()
    };
    // The most recent first, as AWS lists them.
    runs.sort_by(|a, b| {
        let t = |r: &Value| r.get("StartedOn").and_then(Value::as_f64).unwrap_or(0.0);
        t(b).total_cmp(&t(a))
    });
    Ok(page("JobRuns", &runs, input, 200))
}

pub(crate) async fn batch_stop_job_run(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let k = key(ctx, name);
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for id in input
        .get("JobRunIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let current = {
            let state = glue.state.lock();
            state
                .runs
                .get(&(k.clone(), id.to_string()))
                .map(|r| state_of(r).to_string())
        };
        let error = |code: &str, message: String| {
            json!({"JobName": name, "JobRunId": id,
                   "ErrorDetail": {"ErrorCode": code, "ErrorMessage": message}})
        };
        match current.as_deref() {
            None => errors.push(error(
                "EntityNotFoundException",
                format!("Job Run Id {id} not found for job {name}"),
            )),
            Some(s) if !in_progress(s) => errors.push(error(
                "InvalidInputException",
                format!("Job Run {id} is already in a terminal state {s}"),
            )),
            Some(_) => {
                update_run(glue, &k, id, |r| r["JobRunState"] = json!("STOPPING")).await;
                let mut stopping = glue.stopping.lock();
                let live = glue.live.lock().get(id).cloned();
                match live {
                    Some(run) => run.stop(),
                    None => {
                        stopping.insert(id.to_string());
                    }
                }
                ok.push(json!({"JobName": name, "JobRunId": id}));
            }
        }
    }
    Ok(json!({"SuccessfulSubmissions": ok, "Errors": errors}))
}
