//! Job bookmarks: a run with `--job-bookmark-option job-bookmark-enable` that SUCCEEDS
//! advances its job's bookmark (AWS's `JobBookmarkEntry`: `Version` and `Run` count up, with
//! the run's id, attempt and the previous run's id); `job-bookmark-pause` and
//! `job-bookmark-disable` (the default) leave it as it is. GetJobBookmark answers the entry
//! (or the one a given run recorded); ResetJobBookmark forgets it, or rewinds it to before a
//! given run. A Python shell job has no Spark sources to track, so the bookmark's
//! `JobBookmark` text records only the run's place (`jobName`, `version`, `run`, `attempt`).

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Key};
use crate::{Glue, key, not_found, str_of};

const OPTION: &str = "--job-bookmark-option";

fn no_bookmark(job: &str) -> AwsError {
    not_found(format!("Continuation for job {job} not found"))
}

/// Records `run`'s success in its job's bookmark when the run has bookmarks enabled.
pub(crate) async fn on_success(glue: &Glue, job: &Key, run: &Value) {
    let option = {
        let state = glue.state.lock();
        let defaults = state
            .jobs
            .get(job)
            .and_then(|j| j.job.get("DefaultArguments"))
            .and_then(|a| str_of(a, OPTION))
            .map(str::to_string);
        run.get("Arguments")
            .and_then(|a| str_of(a, OPTION))
            .map(str::to_string)
            .or(defaults)
    };
    if option.as_deref() != Some("job-bookmark-enable") {
        return;
    }
    let commit = {
        let mut state = glue.state.lock();
        let entries = state.bookmarks.entry(job.clone()).or_default();
        let last = entries.last();
        let num = |k: &str| {
            last.and_then(|e| e.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let (version, number) = (num("Version") + 1, num("Run") + 1);
        let attempt = run.get("Attempt").and_then(Value::as_u64).unwrap_or(0);
        let run_id = str_of(run, "Id").unwrap_or_default();
        let mut entry = json!({
            "JobName": job.name,
            "Version": version,
            "Run": number,
            "Attempt": attempt,
            "RunId": run_id,
            "JobBookmark": json!({
                "jobName": job.name, "version": version, "run": number, "attempt": attempt,
            }).to_string(),
        });
        if let Some(previous) = last.and_then(|e| str_of(e, "RunId")) {
            entry["PreviousRunId"] = json!(previous);
        }
        entries.push(entry);
        let mut batch = Batch::new();
        state::put_bookmarks(&mut batch, job, entries);
        glue.store.commit(batch)
    };
    if let Err(e) = commit.await {
        crate::store_error(e);
    }
}

pub(crate) fn get_job_bookmark(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let state = glue.state.lock();
    let entries = state.bookmarks.get(&key(ctx, name));
    let entry = match str_of(input, "RunId") {
        Some(id) => entries.and_then(|e| e.iter().find(|x| str_of(x, "RunId") == Some(id))),
        None => entries.and_then(|e| e.last()),
    };
    match entry {
        Some(e) => Ok(json!({"JobBookmarkEntry": e})),
        None => Err(no_bookmark(name)),
    }
}

pub(crate) async fn reset_job_bookmark(
    glue: &Glue,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "JobName").unwrap_or_default();
    let k = key(ctx, name);
    let (entry, commit) = {
        let mut state = glue.state.lock();
        let Some(entries) = state.bookmarks.get_mut(&k) else {
            return Err(no_bookmark(name));
        };
        let from = match str_of(input, "RunId") {
            Some(id) => entries
                .iter()
                .position(|e| str_of(e, "RunId") == Some(id))
                .ok_or_else(|| no_bookmark(name))?,
            None => 0,
        };
        let Some(entry) = entries.get(from).cloned() else {
            return Err(no_bookmark(name));
        };
        entries.truncate(from);
        let mut batch = Batch::new();
        state::put_bookmarks(&mut batch, &k, entries);
        if entries.is_empty() {
            state.bookmarks.remove(&k);
        }
        (entry, glue.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"JobBookmarkEntry": entry}))
}
