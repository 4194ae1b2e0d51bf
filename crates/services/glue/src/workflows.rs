//! Workflows: a named graph of triggers and the jobs they start. StartWorkflowRun fires the
//! workflow's `ON_DEMAND` triggers; every job run it causes carries `--WORKFLOW_NAME` and
//! `--WORKFLOW_RUN_ID` among its arguments (as AWS passes them), and the workflow's
//! conditional triggers watch only runs of the same workflow run. A workflow run is
//! `COMPLETED` once none of its job runs is in progress after the last one ended and its
//! triggers had their say; its `Statistics` are counted from its job runs when asked.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Key};
use crate::{Glue, already_exists, key, not_found, page, str_of};

pub(crate) const NAME_ARG: &str = "--WORKFLOW_NAME";
pub(crate) const RUN_ARG: &str = "--WORKFLOW_RUN_ID";

fn workflow_not_found(name: &str) -> AwsError {
    not_found(format!("Workflow with name: {name} not found"))
}

pub(crate) async fn create_workflow(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let now_s = glue.clock.now_ms() as f64 / 1000.0;
    let mut w = json!({"Name": name, "CreatedOn": now_s, "LastModifiedOn": now_s});
    for f in ["Description", "DefaultRunProperties", "MaxConcurrentRuns"] {
        if let Some(v) = input.get(f) {
            w[f] = v.clone();
        }
    }
    let commit = {
        let mut st = glue.state.lock();
        if st.workflows.contains_key(&k) {
            return Err(already_exists(format!(
                "Workflow with name {name} already exists."
            )));
        }
        let mut batch = Batch::new();
        state::put_workflow(&mut batch, &k, &w);
        st.workflows.insert(k, w);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"Name": name}))
}

/// Job runs of one workflow run.
fn job_runs_of(st: &state::State, wf: &Key, run_id: &str) -> Vec<Value> {
    st.runs
        .iter()
        .filter(|((j, _), _)| j.account == wf.account && j.region == wf.region)
        .map(|(_, r)| r)
        .filter(|r| {
            r.get("Arguments").and_then(|a| str_of(a, RUN_ARG)) == Some(run_id)
                && r.get("Arguments").and_then(|a| str_of(a, NAME_ARG)) == Some(wf.name.as_str())
        })
        .cloned()
        .collect()
}

fn statistics(runs: &[Value]) -> Value {
    let count = |states: &[&str]| {
        runs.iter()
            .filter(|r| states.contains(&str_of(r, "JobRunState").unwrap_or("")))
            .count()
    };
    json!({
        "TotalActions": runs.len(),
        "RunningActions": count(&["STARTING", "RUNNING", "STOPPING"]),
        "WaitingActions": count(&["WAITING"]),
        "SucceededActions": count(&["SUCCEEDED"]),
        "FailedActions": count(&["FAILED"]),
        "StoppedActions": count(&["STOPPED"]),
        "TimeoutActions": count(&["TIMEOUT"]),
        "ErroredActions": count(&["ERROR"]),
    })
}

/// The workflow's graph: its triggers and the jobs they start or watch.
fn graph(st: &state::State, wf: &Key) -> Value {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut jobs = std::collections::BTreeSet::new();
    for (k, t) in &st.triggers {
        if k.account != wf.account
            || k.region != wf.region
            || str_of(&t.trigger, "WorkflowName") != Some(wf.name.as_str())
        {
            continue;
        }
        let tid = format!("trigger_{}", k.name);
        nodes.push(json!({"Type": "TRIGGER", "Name": k.name, "UniqueId": tid,
                          "TriggerDetails": {"Trigger": t.trigger}}));
        for a in t
            .trigger
            .get("Actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(j) = str_of(a, "JobName") {
                jobs.insert(j.to_string());
                edges.push(json!({"SourceId": tid, "DestinationId": format!("job_{j}")}));
            }
        }
        let conditions = t
            .trigger
            .get("Predicate")
            .and_then(|p| p.get("Conditions"))
            .and_then(Value::as_array);
        for c in conditions.into_iter().flatten() {
            if let Some(j) = str_of(c, "JobName") {
                jobs.insert(j.to_string());
                edges.push(json!({"SourceId": format!("job_{j}"), "DestinationId": tid}));
            }
        }
    }
    for j in jobs {
        nodes.push(json!({"Type": "JOB", "Name": j, "UniqueId": format!("job_{j}")}));
    }
    json!({"Nodes": nodes, "Edges": edges})
}

fn render_run(st: &state::State, wf: &Key, run: &Value, with_graph: bool) -> Value {
    let mut out = run.clone();
    let id = str_of(run, "WorkflowRunId").unwrap_or_default();
    out["Statistics"] = statistics(&job_runs_of(st, wf, id));
    if with_graph {
        out["Graph"] = graph(st, wf);
    }
    out
}

fn latest_run<'a>(st: &'a state::State, wf: &Key) -> Option<&'a Value> {
    st.workflow_runs
        .range((wf.clone(), String::new())..)
        .take_while(|((w, _), _)| w == wf)
        .map(|(_, r)| r)
        .max_by(|a, b| {
            let t = |r: &Value| r.get("StartedOn").and_then(Value::as_f64).unwrap_or(0.0);
            t(a).total_cmp(&t(b))
        })
}

pub(crate) fn get_workflow(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let k = key(ctx, name);
    let with_graph = input
        .get("IncludeGraph")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let st = glue.state.lock();
    let Some(w) = st.workflows.get(&k) else {
        return Err(workflow_not_found(name));
    };
    let mut out = w.clone();
    if let Some(run) = latest_run(&st, &k) {
        out["LastRun"] = render_run(&st, &k, run, false);
    }
    if with_graph {
        out["Graph"] = graph(&st, &k);
    }
    Ok(json!({"Workflow": out}))
}

pub(crate) fn list_workflows(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let names: Vec<String> = {
        let st = glue.state.lock();
        st.workflows
            .keys()
            .filter(|k| k.account == ctx.account && k.region == ctx.region)
            .map(|k| k.name.clone())
            .collect()
    };
    Ok(page("Workflows", &names, input, 25))
}

pub(crate) async fn delete_workflow(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let commit = {
        let mut st = glue.state.lock();
        if st.workflows.remove(&k).is_none() {
            return Ok(json!({"Name": name}));
        }
        let mut batch = Batch::new();
        state::delete_workflow(&mut batch, &k);
        st.workflow_runs.retain(|(w, _), _| *w != k);
        // Its triggers go with it.
        let triggers: Vec<Key> = st
            .triggers
            .iter()
            .filter(|(t, r)| {
                t.account == k.account
                    && t.region == k.region
                    && str_of(&r.trigger, "WorkflowName") == Some(name.as_str())
            })
            .map(|(t, _)| t.clone())
            .collect();
        for t in triggers {
            st.triggers.remove(&t);
            state::delete_trigger(&mut batch, &t);
        }
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    glue.wake.notify_one();
    Ok(json!({"Name": name}))
}

pub(crate) async fn start_workflow_run(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default().to_string();
    let k = key(ctx, &name);
    let starters: Vec<(Key, Value)> = {
        let st = glue.state.lock();
        if !st.workflows.contains_key(&k) {
            return Err(workflow_not_found(&name));
        }
        st.triggers
            .iter()
            .filter(|(t, r)| {
                t.account == k.account
                    && t.region == k.region
                    && str_of(&r.trigger, "WorkflowName") == Some(name.as_str())
                    && str_of(&r.trigger, "Type") == Some("ON_DEMAND")
            })
            .map(|(t, r)| (t.clone(), r.trigger.clone()))
            .collect()
    };
    if starters.is_empty() {
        return Err(crate::invalid(format!(
            "Workflow {name} has no ON_DEMAND trigger to start it"
        )));
    }
    let given = input.get("RunProperties").cloned().unwrap_or(json!({}));
    let run_id = start_run(glue, &k, given, starters, None).await?;
    Ok(json!({"RunId": run_id}))
}

/// Records a run of workflow `k` (its default run properties overlaid with `properties`) and
/// fires its starting triggers; `batch` is the EVENT trigger's batching condition that started
/// it. Answers the run id.
pub(crate) async fn start_run(
    glue: &Glue,
    k: &Key,
    properties: Value,
    starters: Vec<(Key, Value)>,
    batch: Option<Value>,
) -> Result<String, AwsError> {
    let name = k.name.clone();
    let now_s = glue.clock.now_ms() as f64 / 1000.0;
    let run_id = format!(
        "wr_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let commit = {
        let mut st = glue.state.lock();
        let Some(w) = st.workflows.get(k) else {
            return Err(workflow_not_found(&name));
        };
        let mut merged = w.get("DefaultRunProperties").cloned().unwrap_or(json!({}));
        if let (Some(p), Some(given)) = (merged.as_object_mut(), properties.as_object()) {
            p.extend(given.clone());
        }
        let mut run = json!({
            "Name": name,
            "WorkflowRunId": run_id,
            "WorkflowRunProperties": merged,
            "StartedOn": now_s,
            "Status": "RUNNING",
        });
        if let Some(b) = batch {
            run["StartingEventBatchCondition"] = b;
        }
        let mut batch = Batch::new();
        state::put_workflow_run(&mut batch, k, &run_id, &run);
        st.workflow_runs.insert((k.clone(), run_id.clone()), run);
        glue.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    for (t, trigger) in starters {
        crate::triggers::fire(glue, &t, &trigger, Some((&name, &run_id))).await;
    }
    after_run(glue, &name, &k.account, &k.region, &run_id).await;
    Ok(run_id)
}

/// A job run of workflow run `run_id` ended (or the run started): the workflow run is
/// complete when none of its job runs is still in progress.
pub(crate) async fn after_run(
    glue: &Glue,
    workflow: &str,
    account: &str,
    region: &str,
    run_id: &str,
) {
    let wf = Key {
        account: account.to_string(),
        region: region.to_string(),
        name: workflow.to_string(),
    };
    let now_s = glue.clock.now_ms() as f64 / 1000.0;
    let commit = {
        let mut st = glue.state.lock();
        let runs = job_runs_of(&st, &wf, run_id);
        let busy = runs.iter().any(|r| {
            matches!(
                str_of(r, "JobRunState"),
                Some("STARTING" | "RUNNING" | "STOPPING" | "WAITING")
            )
        });
        let Some(run) = st.workflow_runs.get_mut(&(wf.clone(), run_id.to_string())) else {
            return;
        };
        if busy || str_of(run, "Status") != Some("RUNNING") {
            return;
        }
        run["Status"] = json!("COMPLETED");
        run["CompletedOn"] = json!(now_s);
        let mut batch = Batch::new();
        state::put_workflow_run(&mut batch, &wf, run_id, run);
        glue.store.commit(batch)
    };
    if let Err(e) = commit.await {
        crate::store_error(e);
    }
}

pub(crate) fn get_workflow_run(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let id = str_of(input, "RunId").unwrap_or_default();
    let with_graph = input
        .get("IncludeGraph")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let k = key(ctx, name);
    let st = glue.state.lock();
    match st.workflow_runs.get(&(k.clone(), id.to_string())) {
        Some(run) => Ok(json!({"Run": render_run(&st, &k, run, with_graph)})),
        None => Err(not_found(format!(
            "Workflow run {id} of workflow {name} not found"
        ))),
    }
}

pub(crate) fn get_workflow_runs(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "Name").unwrap_or_default();
    let k = key(ctx, name);
    let with_graph = input
        .get("IncludeGraph")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut runs: Vec<Value> = {
        let st = glue.state.lock();
        if !st.workflows.contains_key(&k) {
            return Err(workflow_not_found(name));
        }
        st.workflow_runs
            .range((k.clone(), String::new())..)
            .take_while(|((w, _), _)| *w == k)
            .map(|(_, r)| render_run(&st, &k, r, with_graph))
            .collect()
    };
    runs.sort_by(|a, b| {
        let t = |r: &Value| r.get("StartedOn").and_then(Value::as_f64).unwrap_or(0.0);
        t(b).total_cmp(&t(a))
    });
    Ok(page("Runs", &runs, input, 100))
}

/// The workflow and workflow run a job run belongs to, from its arguments.
pub(crate) fn of_run(run: &Value) -> Option<(String, String)> {
    let args = run.get("Arguments")?;
    Some((
        str_of(args, NAME_ARG)?.to_string(),
        str_of(args, RUN_ARG)?.to_string(),
    ))
}
