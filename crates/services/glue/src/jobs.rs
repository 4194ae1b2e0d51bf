//! Job definitions: CreateJob, UpdateJob, GetJob(s), ListJobs, BatchGetJobs, DeleteJob.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, JobRecord};
use crate::{Glue, already_exists, invalid, key, not_found, page, str_of};

/// Glue's default job timeout: 2,880 minutes (48 hours).
pub(crate) const DEFAULT_TIMEOUT_MIN: u64 = 2880;
/// A Python shell job's capacity unless given (1/16 DPU).
const PYTHONSHELL_DEFAULT_DPU: f64 = 0.0625;

/// The job fields a definition carries (CreateJob's members, less those answered elsewhere).
const JOB_FIELDS: &[&str] = &[
    "JobMode",
    "JobRunQueuingEnabled",
    "Description",
    "LogUri",
    "Role",
    "ExecutionProperty",
    "Command",
    "DefaultArguments",
    "NonOverridableArguments",
    "Connections",
    "MaxRetries",
    "AllocatedCapacity",
    "Timeout",
    "MaxCapacity",
    "SecurityConfiguration",
    "NotificationProperty",
    "GlueVersion",
    "NumberOfWorkers",
    "WorkerType",
    "ExecutionClass",
    "SourceControlDetails",
    "MaintenanceWindow",
];

/// A job definition with AWS's defaults filled and its rules checked.
fn definition(
    name: &str,
    input: &Value,
    now_s: f64,
    created: Option<&Value>,
) -> Result<Value, AwsError> {
    let mut job = serde_json::Map::new();
    job.insert("Name".into(), json!(name));
    for f in JOB_FIELDS {
        if let Some(v) = input.get(*f).filter(|v| !v.is_null()) {
            job.insert((*f).into(), v.clone());
        }
    }
    let command = input.get("Command").cloned().unwrap_or(json!({}));
    let kind = str_of(&command, "Name").unwrap_or("glueetl").to_string();
    match kind.as_str() {
        "pythonshell" => {
            if input.get("WorkerType").is_some_and(|v| !v.is_null())
                || input.get("NumberOfWorkers").is_some_and(|v| !v.is_null())
            {
                return Err(invalid(
                    "Worker Type is not supported for Job Command pythonshell",
                ));
            }
            let dpu = input
                .get("MaxCapacity")
                .and_then(Value::as_f64)
                .unwrap_or(PYTHONSHELL_DEFAULT_DPU);
            if dpu != 0.0625 && dpu != 1.0 {
                return Err(invalid(
                    "Max capacity for Python shell jobs must be 0.0625 or 1.0 DPU",
                ));
            }
            job.insert("MaxCapacity".into(), json!(dpu));
            let mut cmd = command.as_object().cloned().unwrap_or_default();
            cmd.entry("PythonVersion").or_insert(json!("3.9"));
            job.insert("Command".into(), Value::Object(cmd));
        }
        "glueetl" | "gluestreaming" | "glueray" => {
            if !job.contains_key("MaxCapacity") && !job.contains_key("WorkerType") {
                job.insert("MaxCapacity".into(), json!(10.0));
                job.insert("AllocatedCapacity".into(), json!(10));
            }
        }
        other => {
            return Err(invalid(format!(
                "Command name {other} is not supported; use pythonshell, glueetl, gluestreaming or glueray"
            )));
        }
    }
    if input
        .get("Command")
        .and_then(|c| str_of(c, "ScriptLocation"))
        .is_none_or(str::is_empty)
    {
        return Err(invalid("Script location is required"));
    }
    job.entry("Timeout").or_insert(json!(DEFAULT_TIMEOUT_MIN));
    job.entry("MaxRetries").or_insert(json!(0));
    job.entry("ExecutionProperty")
        .or_insert(json!({"MaxConcurrentRuns": 1}));
    job.entry("DefaultArguments").or_insert(json!({}));
    job.insert("CreatedOn".into(), created.cloned().unwrap_or(json!(now_s)));
    job.insert("LastModifiedOn".into(), json!(now_s));
    Ok(Value::Object(job))
}

pub(crate) async fn create_job(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let now_s = glue.clock.now_ms() as f64 / 1000.0;
    let job = definition(&name, input, now_s, None)?;
    let tags = input
        .get("Tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    let commit = {
        let mut state = glue.state.lock();
        if state.jobs.contains_key(&k) {
            return Err(already_exists(format!("{name} already exists.")));
        }
        let record = JobRecord { job, tags };
        let mut batch = Batch::new();
        state::put_job(&mut batch, &k, &record);
        state.jobs.insert(k, record);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"Name": name}))
}

pub(crate) async fn update_job(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let update = input.get("JobUpdate").cloned().unwrap_or(json!({}));
    let now_s = glue.clock.now_ms() as f64 / 1000.0;
    let commit = {
        let mut state = glue.state.lock();
        let Some(record) = state.jobs.get(&k) else {
            return Err(job_not_found(&name));
        };
        // UpdateJob replaces the whole definition, as AWS documents.
        let job = definition(&name, &update, now_s, record.job.get("CreatedOn"))?;
        let record = JobRecord {
            job,
            tags: record.tags.clone(),
        };
        let mut batch = Batch::new();
        state::put_job(&mut batch, &k, &record);
        state.jobs.insert(k, record);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"JobName": name}))
}

pub(crate) fn job_not_found(name: &str) -> AwsError {
    not_found(format!("Job with name: {name} not found"))
}

pub(crate) fn get_job(glue: &Glue, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let state = glue.state.lock();
    match state.jobs.get(&key(ctx, name)) {
        Some(r) => Ok(json!({"Job": r.job})),
        None => Err(job_not_found(name)),
    }
}

fn jobs_of(glue: &Glue, ctx: &RequestContext) -> Vec<(String, Value)> {
    let state = glue.state.lock();
    state
        .jobs
        .iter()
        .filter(|(k, _)| k.account == ctx.account && k.region == ctx.region)
        .map(|(k, r)| (k.name.clone(), r.job.clone()))
        .collect()
}

pub(crate) fn get_jobs(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let all: Vec<Value> = jobs_of(glue, ctx).into_iter().map(|(_, j)| j).collect();
    Ok(page("Jobs", &all, input, 1000))
}

pub(crate) fn list_jobs(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let wanted: Option<std::collections::BTreeMap<String, String>> = input
        .get("Tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok());
    let names: Vec<String> = {
        let state = glue.state.lock();
        state
            .jobs
            .iter()
            .filter(|(k, _)| k.account == ctx.account && k.region == ctx.region)
            .filter(|(_, r)| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.iter().all(|(k, v)| r.tags.get(k) == Some(v)))
            })
            .map(|(k, _)| k.name.clone())
            .collect()
    };
    Ok(page("JobNames", &names, input, 1000))
}

pub(crate) fn batch_get_jobs(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let state = glue.state.lock();
    let mut jobs = Vec::new();
    let mut missing = Vec::new();
    for name in input
        .get("JobNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match state.jobs.get(&key(ctx, name)) {
            Some(r) => jobs.push(r.job.clone()),
            None => missing.push(name.to_string()),
        }
    }
    Ok(json!({"Jobs": jobs, "JobsNotFound": missing}))
}

pub(crate) async fn delete_job(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let commit = {
        let mut state = glue.state.lock();
        if state.jobs.remove(&k).is_none() {
            // AWS answers a missing job's deletion with its name, as a success.
            return Ok(json!({"JobName": name}));
        }
        let run_ids: Vec<String> = state
            .runs
            .range((k.clone(), String::new())..)
            .take_while(|((j, _), _)| *j == k)
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in &run_ids {
            state.runs.remove(&(k.clone(), id.clone()));
        }
        state.bookmarks.remove(&k);
        let live = glue.live.lock();
        for id in &run_ids {
            if let Some(run) = live.get(id) {
                run.stop();
            }
        }
        let mut batch = Batch::new();
        state::delete_job(&mut batch, &k);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"JobName": name}))
}
