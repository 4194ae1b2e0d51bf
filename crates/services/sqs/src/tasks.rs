//! Message move tasks: redrive messages out of a dead-letter queue, back to the queues they
//! came from or to a chosen queue, at a bounded rate, on the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::error::sqs_error;
use crate::input::{key_from_arn, opt_int, opt_str, req_str};
use crate::queue::queue_by_arn;
use crate::state::{QueueCell, load_tasks, writes};
use crate::{Sqs, attributes, store_error};

/// The `FailureReason` SQS records when a task's queue disappears.
const NON_EXISTENT_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

/// The rate SQS picks when the caller does not ("system optimized"); also the maximum.
const MAX_RATE: i64 = 500;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskRecord {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    max_per_second: Option<i64>,
    status: String,
    moved: i64,
    to_move: i64,
    started_ms: i64,
    failure_reason: Option<String>,
}

impl TaskRecord {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "Status": self.status,
            "SourceArn": self.source_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": self.to_move,
            "StartedTimestamp": self.started_ms,
        });
        if self.status == "RUNNING" {
            v["TaskHandle"] = json!(self.handle);
        }
        if let Some(d) = &self.destination_arn {
            v["DestinationArn"] = json!(d);
        }
        if let Some(r) = self.max_per_second {
            v["MaxNumberOfMessagesPerSecond"] = json!(r);
        }
        if let Some(f) = &self.failure_reason {
            v["FailureReason"] = json!(f);
        }
        v
    }
}

struct Entry {
    record: TaskRecord,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Tasks {
    by_handle: Mutex<HashMap<String, Entry>>,
}

impl Tasks {
    pub fn cancel_all(&self) {
        let mut tasks = self.by_handle.lock();
        for e in tasks.values() {
            e.cancel.store(true, Ordering::Release);
        }
        tasks.clear();
    }

    fn update(&self, handle: &str, f: impl FnOnce(&mut TaskRecord)) -> Option<TaskRecord> {
        let mut tasks = self.by_handle.lock();
        let e = tasks.get_mut(handle)?;
        f(&mut e.record);
        Some(e.record.clone())
    }
}

async fn persist(sqs: &Sqs, record: &TaskRecord) -> Result<(), AwsError> {
    let mut batch = Batch::new();
    writes::task(
        &mut batch,
        &record.handle,
        &serde_json::to_vec(record).unwrap_or_default(),
    );
    sqs.state.store.commit(batch).await.map_err(store_error)
}

/// A queue some other queue of its account and region names as its dead-letter queue.
fn is_dead_letter_queue(sqs: &Sqs, cell: &QueueCell) -> bool {
    let arn = cell.key.arn();
    let cells: Vec<Arc<QueueCell>> = sqs.state.queues.read().values().cloned().collect();
    cells.iter().any(|c| {
        attributes::redrive_policy(&c.queue.lock().attributes).is_some_and(|(t, _)| t == arn)
    })
}

pub async fn start_message_move_task(
    sqs: &Sqs,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let source_arn = req_str(input, "SourceArn")?;
    let destination_arn = opt_str(input, "DestinationArn");
    let rate = opt_int(input, "MaxNumberOfMessagesPerSecond");
    if let Some(r) = rate
        && !(1..=MAX_RATE).contains(&r)
    {
        return Err(AwsError::invalid_parameter_value(format!(
            "Value {r} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must be between 1 and {MAX_RATE}."
        )));
    }
    let source = queue_by_arn(sqs, source_arn).map_err(|_| {
        sqs_error(
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    if !is_dead_letter_queue(sqs, &source) {
        return Err(AwsError::invalid_parameter_value(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    if let Some(d) = destination_arn {
        queue_by_arn(sqs, d).map_err(|_| {
            sqs_error(
                "ResourceNotFoundException",
                "The resource that you specified for the DestinationArn parameter doesn't exist.",
            )
        })?;
    }
    let now = sqs.clock.now_ms();
    let to_move = {
        let q = source.queue.lock();
        q.ready.range(..(now + 1, 0)).count() as i64
    };
    let task_id = uuid::Uuid::new_v4().to_string();
    let handle = base64::engine::general_purpose::STANDARD
        .encode(json!({"taskId": task_id, "sourceArn": source_arn}).to_string());
    let record = TaskRecord {
        handle: handle.clone(),
        source_arn: source_arn.to_string(),
        destination_arn: destination_arn.map(str::to_string),
        max_per_second: rate,
        status: "RUNNING".into(),
        moved: 0,
        to_move,
        started_ms: now,
        failure_reason: None,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut tasks = sqs.tasks.by_handle.lock();
        if tasks
            .values()
            .any(|e| e.record.source_arn == source_arn && e.record.status == "RUNNING")
        {
            return Err(AwsError::invalid_parameter_value(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
            ));
        }
        tasks.insert(
            handle.clone(),
            Entry {
                record: record.clone(),
                cancel: cancel.clone(),
            },
        );
    }
    persist(sqs, &record).await?;
    spawn(sqs, handle.clone(), cancel);
    Ok(json!({"TaskHandle": handle}))
}

fn spawn(sqs: &Sqs, handle: String, cancel: Arc<AtomicBool>) {
    let sqs = Sqs {
        state: sqs.state.clone(),
        clock: sqs.clock.clone(),
        tasks: sqs.tasks.clone(),
    };
    tokio::spawn(async move {
        let outcome = run(&sqs, &handle, &cancel).await;
        let record = sqs.tasks.update(&handle, |r| match outcome {
            Ok(true) => r.status = "CANCELLED".into(),
            Ok(false) => r.status = "COMPLETED".into(),
            Err(reason) => {
                r.status = "FAILED".into();
                r.failure_reason = Some(reason);
            }
        });
        if let Some(record) = record
            && let Err(e) = persist(&sqs, &record).await
        {
            tracing::error!(error = %e, "Could not record the end of a message move task.");
        }
    });
}

/// Moves messages until the task is done (Ok(false)), cancelled (Ok(true)) or fails.
async fn run(sqs: &Sqs, handle: &str, cancel: &AtomicBool) -> Result<bool, String> {
    let Some(record) = sqs.tasks.update(handle, |_| {}) else {
        return Ok(true);
    };
    let rate = record.max_per_second.unwrap_or(MAX_RATE) as usize;
    loop {
        if cancel.load(Ordering::Acquire) {
            return Ok(true);
        }
        let Some(record) = sqs.tasks.update(handle, |_| {}) else {
            return Ok(true);
        };
        if record.moved >= record.to_move {
            return Ok(false);
        }
        let source: Arc<QueueCell> =
            match key_from_arn(&record.source_arn).and_then(|k| sqs.state.get(&k)) {
                Some(c) => c,
                None => return Err(NON_EXISTENT_QUEUE.into()),
            };
        let budget = rate.min((record.to_move - record.moved) as usize);
        let (destination, only_from) = match &record.destination_arn {
            Some(arn) => (arn.clone(), None),
            None => {
                let now = sqs.clock.now_ms();
                let q = source.queue.lock();
                let first = q.ready.range(..(now + 1, 0)).next().map(|(_, s)| *s);
                match first.and_then(|s| q.messages[&s].body.dead_letter_source_arn.clone()) {
                    Some(arn) => (arn.clone(), Some(arn)),
                    None if first.is_none() => return Ok(false),
                    None => {
                        return Err(
                            "A message has no original source queue; give a DestinationArn.".into(),
                        );
                    }
                }
            }
        };
        let Some(dest) = key_from_arn(&destination).and_then(|k| sqs.state.get(&k)) else {
            return Err(NON_EXISTENT_QUEUE.into());
        };
        let moved =
            crate::message::move_messages(sqs, &source, &dest, budget, only_from.as_deref())
                .await
                .map_err(|e| e.message)?;
        if moved == 0 {
            return Ok(false);
        }
        if let Some(r) = sqs.tasks.update(handle, |r| r.moved += moved as i64) {
            persist(sqs, &r).await.map_err(|e| e.message)?;
        }
        sqs.clock.sleep_ms(1000).await;
    }
}

pub async fn cancel_message_move_task(
    sqs: &Sqs,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let handle = req_str(input, "TaskHandle")?;
    if !handle_is_well_formed(handle) {
        return Err(AwsError::invalid_parameter_value(
            "Value for parameter TaskHandle is invalid.",
        ));
    }
    let record = {
        let mut tasks = sqs.tasks.by_handle.lock();
        let Some(e) = tasks.get_mut(handle) else {
            return Err(sqs_error(
                "ResourceNotFoundException",
                "Task does not exist.",
            ));
        };
        if e.record.status != "RUNNING" {
            return Err(sqs_error(
                "UnsupportedOperation",
                "Only active tasks can be cancelled.",
            ));
        }
        e.cancel.store(true, Ordering::Release);
        e.record.status = "CANCELLING".into();
        e.record.clone()
    };
    persist(sqs, &record).await?;
    Ok(json!({"ApproximateNumberOfMessagesMoved": record.moved}))
}

/// Task handles are base64 of `{"taskId": ..., "sourceArn": ...}`, as SQS's are.
fn handle_is_well_formed(handle: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(handle)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("taskId").is_some_and(Value::is_string))
}

pub fn list_message_move_tasks(
    sqs: &Sqs,
    _ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let source_arn = req_str(input, "SourceArn")?;
    let max = opt_int(input, "MaxResults").unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(AwsError::invalid_parameter_value(format!(
            "Value {max} for parameter MaxResults is invalid. Reason: must be between 1 and 10."
        )));
    }
    queue_by_arn(sqs, source_arn).map_err(|_| {
        sqs_error(
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    let mut records: Vec<TaskRecord> = sqs
        .tasks
        .by_handle
        .lock()
        .values()
        .filter(|e| e.record.source_arn == source_arn)
        .map(|e| e.record.clone())
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
    let results: Vec<Value> = records
        .iter()
        .take(max as usize)
        .map(TaskRecord::to_json)
        .collect();
    Ok(json!({"Results": results}))
}

/// Loads task records; tasks that were running when the server stopped go on running.
pub async fn resume(sqs: &Arc<Sqs>) -> Result<(), tsumiki_store::StoreError> {
    for bytes in load_tasks(&sqs.state.store).await? {
        let Ok(mut record) = serde_json::from_slice::<TaskRecord>(&bytes) else {
            continue;
        };
        if record.status == "CANCELLING" {
            record.status = "CANCELLED".into();
        }
        let running = record.status == "RUNNING";
        let cancel = Arc::new(AtomicBool::new(false));
        let handle = record.handle.clone();
        sqs.tasks.by_handle.lock().insert(
            handle.clone(),
            Entry {
                record,
                cancel: cancel.clone(),
            },
        );
        if running {
            spawn(sqs, handle, cancel);
        }
    }
    Ok(())
}
