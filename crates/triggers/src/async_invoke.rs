//! Lambda's asynchronous invocation, with AWS's rules:
//!
//! - An accepted event is durable before the caller hears 202 (a `kill -9` loses none).
//! - On a function error Lambda retries up to `MaximumRetryAttempts` times (0-2, default 2),
//!   waiting about 1 minute before the first retry and 2 minutes before the second.
//! - Throttles and platform errors do not count as attempts: they are retried with growing
//!   back-off (1 s doubling, at most 5 minutes) until the event is `MaximumEventAgeInSeconds`
//!   old (60 s - 6 h, default 6 h).
//! - Then the invocation record goes to the on-success or on-failure destination (SQS, Lambda,
//!   EventBridge), or, failing that, the event goes to the function's dead-letter queue.
//!
//! Every wait asks the clock, so `--clock manual` replays a 3-minute retry cycle in
//! milliseconds. One dispatcher task sleeps until the earliest due event; each attempt runs
//! as its own task, so a slow function never holds up another's events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tsumiki_core::{AwsError, Clock};
use tsumiki_ports::{AsyncInvoke, AsyncSettings, FunctionInvoker, FunctionTarget, Services};
use tsumiki_store::{Batch, Store};

use crate::deliver::{self, Destination};

const NS: &str = "triggers.async";
/// AWS: at least a minute before the first retry, two before the second.
const RETRY_DELAYS_MS: [i64; 2] = [60_000, 120_000];
const BACKOFF_START_MS: i64 = 1_000;
const BACKOFF_MAX_MS: i64 = 300_000;

/// One accepted event and where it stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    id: u64,
    target: FunctionTarget,
    payload_b64: String,
    request_id: String,
    /// Invocations that ran (function errors count; throttles do not).
    attempts: u32,
    /// Throttles and platform errors so far, for back-off.
    deferrals: u32,
    enqueued_ms: i64,
    due_ms: i64,
}

impl Pending {
    fn payload(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload_b64)
            .unwrap_or_default()
    }

    fn key(&self) -> String {
        format!("{:020}", self.id)
    }
}

/// The asynchronous invoker: durable queue, retries, destinations.
pub struct AsyncInvoker {
    store: Store,
    clock: Arc<Clock>,
    invoker: Weak<dyn FunctionInvoker>,
    services: deliver::Registry,
    /// Due events by (due time, id).
    queue: Mutex<BTreeMap<(i64, u64), Pending>>,
    wake: Notify,
    next_id: AtomicU64,
}

impl AsyncInvoker {
    /// Loads every pending event and starts dispatching. The invoker is held weakly: Lambda
    /// holds this queue too, and the two must not keep each other alive.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        invoker: Weak<dyn FunctionInvoker>,
    ) -> Result<Arc<AsyncInvoker>, AwsError> {
        let rows = store.scan(NS).await.map_err(store_error)?;
        let mut queue = BTreeMap::new();
        let mut max_id = 0;
        for (_, value) in rows {
            if let Ok(p) = serde_json::from_slice::<Pending>(&value) {
                max_id = max_id.max(p.id);
                queue.insert((p.due_ms, p.id), p);
            }
        }
        if !queue.is_empty() {
            tracing::info!(events = queue.len(), "asynchronous invocations resumed");
        }
        // Ids grow with time, so they stay unique across restarts and order by arrival.
        let start_id = max_id.max((clock.now_ms().max(0) as u64) << 16) + 1;
        let invoker = Arc::new(AsyncInvoker {
            store,
            clock,
            invoker,
            services: OnceLock::new(),
            queue: Mutex::new(queue),
            wake: Notify::new(),
            next_id: AtomicU64::new(start_id),
        });
        tokio::spawn(dispatch(invoker.clone()));
        Ok(invoker)
    }

    /// Gives the invoker the served services, for destinations and dead-letter queues.
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }

    /// Events accepted and not yet finished (for tests and the console).
    pub fn pending(&self) -> usize {
        self.queue.lock().len()
    }

    async fn save(&self, p: &Pending) -> Result<(), AwsError> {
        let mut batch = Batch::new();
        batch.put(NS, p.key(), serde_json::to_vec(p).unwrap_or_default());
        self.store.commit(batch).await.map_err(store_error)
    }

    async fn forget(&self, p: &Pending) {
        let mut batch = Batch::new();
        batch.delete(NS, p.key());
        if let Err(e) = self.store.commit(batch).await {
            tracing::error!(error = %e, "could not forget a finished asynchronous invocation");
        }
    }

    fn schedule(&self, p: Pending) {
        self.queue.lock().insert((p.due_ms, p.id), p);
        self.wake.notify_one();
    }

    /// One attempt at one event, and what follows from it.
    async fn attempt(self: Arc<Self>, mut p: Pending) {
        let Some(invoker) = self.invoker.upgrade() else {
            return;
        };
        let settings = match invoker.async_settings(&p.target) {
            Ok(s) => s,
            Err(e) => {
                // AWS drops events of a function deleted in the meantime.
                tracing::warn!(function = %p.target.function, error = %e.message, "asynchronous event dropped");
                self.forget(&p).await;
                return;
            }
        };
        let now = self.clock.now_ms();
        if now - p.enqueued_ms > i64::from(settings.max_event_age_s) * 1000 {
            self.fail(&p, &settings, "EventAgeExceeded", None).await;
            return;
        }
        let result = invoker.invoke(&p.target, p.payload(), &p.request_id).await;
        match result {
            Ok(r) if r.function_error.is_none() => {
                p.attempts += 1;
                if let Some(dest) = &settings.on_success {
                    let record = record(&p, &settings, "Success", Some(&r), self.clock.now_ms());
                    self.send_record(dest, &p.target, &record, true).await;
                }
                self.forget(&p).await;
            }
            Ok(r) => {
                p.attempts += 1;
                if p.attempts > settings.max_retries {
                    self.fail(&p, &settings, "RetriesExhausted", Some(&r)).await;
                    return;
                }
                let delay = RETRY_DELAYS_MS[(p.attempts as usize - 1).min(1)];
                p.due_ms = self.clock.now_ms() + delay;
                tracing::info!(function = %p.target.function, attempt = p.attempts, "function error; retrying later");
                self.requeue(p).await;
            }
            Err(e) if retryable(&e) => {
                p.deferrals += 1;
                let backoff = (BACKOFF_START_MS << p.deferrals.min(20)).min(BACKOFF_MAX_MS);
                p.due_ms = self.clock.now_ms() + backoff;
                tracing::debug!(function = %p.target.function, error = %e.code, "throttled; backing off");
                self.requeue(p).await;
            }
            Err(e) => {
                tracing::warn!(function = %p.target.function, error = %e.message, "asynchronous event dropped");
                self.forget(&p).await;
            }
        }
    }

    async fn requeue(&self, p: Pending) {
        if let Err(e) = self.save(&p).await {
            tracing::error!(error = %e.message, "could not record a retry");
        }
        self.schedule(p);
    }

    /// The event failed for good: on-failure destination, else dead-letter queue.
    async fn fail(
        &self,
        p: &Pending,
        settings: &AsyncSettings,
        condition: &str,
        response: Option<&tsumiki_ports::FunctionResult>,
    ) {
        tracing::info!(function = %p.target.function, %condition, "asynchronous event failed");
        if let Some(dest) = &settings.on_failure {
            let record = record(p, settings, condition, response, self.clock.now_ms());
            self.send_record(dest, &p.target, &record, false).await;
        } else if let Some(dlq) = &settings.dead_letter {
            self.dead_letter(dlq, p, response).await;
        }
        self.forget(p).await;
    }

    async fn send_record(&self, arn: &str, from: &FunctionTarget, record: &Value, success: bool) {
        let Some(services) = self.services.get() else {
            return;
        };
        let sent = match deliver::parse(arn) {
            Destination::Sqs {
                region,
                account,
                name,
            } => deliver::to_sqs(services, region, account, name, &record.to_string(), None).await,
            Destination::Sns {
                region,
                account,
                arn,
            } => deliver::to_sns(services, region, account, arn, &record.to_string(), None).await,
            Destination::Lambda {
                region,
                account,
                function,
            } => {
                let target = FunctionTarget {
                    account: account.to_string(),
                    region: region.to_string(),
                    function: function.to_string(),
                    qualifier: None,
                };
                self.enqueue(
                    target,
                    record.to_string().into_bytes(),
                    tsumiki_core::ids::request_id(),
                )
                .await
            }
            Destination::EventBus {
                region,
                account,
                arn,
            } => {
                let detail_type = if success {
                    "Lambda Function Invocation Result - Success"
                } else {
                    "Lambda Function Invocation Result - Failure"
                };
                deliver::to_event_bus(services, region, account, arn, detail_type, record).await
            }
            Destination::Unsupported(arn) => Err(AwsError::not_implemented(
                "lambda",
                &format!("destination {arn}"),
            )),
        };
        if let Err(e) = sent {
            tracing::warn!(function = %from.function, destination = %arn, error = %e.message, "destination delivery failed");
        }
    }

    async fn dead_letter(
        &self,
        arn: &str,
        p: &Pending,
        response: Option<&tsumiki_ports::FunctionResult>,
    ) {
        let Some(services) = self.services.get() else {
            return;
        };
        let (code, message) = match response {
            Some(r) => {
                let doc: Value = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
                (
                    "200".to_string(),
                    doc.get("errorMessage")
                        .and_then(Value::as_str)
                        .unwrap_or("Unhandled")
                        .to_string(),
                )
            }
            None => ("200".to_string(), "Event age exceeded".to_string()),
        };
        let attributes = json!({
            "RequestID": {"DataType": "String", "StringValue": p.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": code},
            "ErrorMessage": {"DataType": "String", "StringValue": message},
        });
        let body = String::from_utf8_lossy(&p.payload()).into_owned();
        let sent = match deliver::parse(arn) {
            Destination::Sqs {
                region,
                account,
                name,
            } => deliver::to_sqs(services, region, account, name, &body, Some(attributes)).await,
            Destination::Sns {
                region,
                account,
                arn,
            } => deliver::to_sns(services, region, account, arn, &body, Some(attributes)).await,
            _ => Err(AwsError::not_implemented(
                "lambda",
                &format!("dead-letter target {arn}"),
            )),
        };
        if let Err(e) = sent {
            tracing::warn!(function = %p.target.function, dlq = %arn, error = %e.message, "dead-letter delivery failed");
        }
    }
}

#[async_trait]
impl AsyncInvoke for AsyncInvoker {
    async fn enqueue(
        &self,
        target: FunctionTarget,
        payload: Vec<u8>,
        request_id: String,
    ) -> Result<(), AwsError> {
        let now = self.clock.now_ms();
        let p = Pending {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            target,
            payload_b64: base64::engine::general_purpose::STANDARD.encode(payload),
            request_id,
            attempts: 0,
            deferrals: 0,
            enqueued_ms: now,
            due_ms: now,
        };
        self.save(&p).await?;
        self.schedule(p);
        Ok(())
    }
}

/// AWS's invocation record, the document destinations receive.
fn record(
    p: &Pending,
    settings: &AsyncSettings,
    condition: &str,
    response: Option<&tsumiki_ports::FunctionResult>,
    now_ms: i64,
) -> Value {
    let payload = p.payload();
    let request_payload: Value = serde_json::from_slice(&payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned()));
    let version = response
        .map(|r| r.executed_version.clone())
        .unwrap_or_else(|| "$LATEST".to_string());
    let mut out = json!({
        "version": "1.0",
        "timestamp": tsumiki_core::clock::iso8601_ms(now_ms),
        "requestContext": {
            "requestId": p.request_id,
            "functionArn": format!("{}:{}", settings.function_arn, version),
            "condition": condition,
            "approximateInvokeCount": p.attempts,
        },
        "requestPayload": request_payload,
    });
    if let Some(r) = response {
        let mut ctx = json!({"statusCode": 200, "executedVersion": r.executed_version});
        if let Some(e) = &r.function_error {
            ctx["functionError"] = json!(e);
        }
        out["responseContext"] = ctx;
        out["responsePayload"] = serde_json::from_slice(&r.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.payload).into_owned()));
    }
    out
}

/// Errors Lambda retries with back-off rather than dropping: throttles and its own faults.
fn retryable(e: &AwsError) -> bool {
    e.code == "TooManyRequestsException" || e.status >= 500
}

/// Sleeps until the earliest event is due, then starts its attempt. Runs for the server's life.
async fn dispatch(me: Arc<AsyncInvoker>) {
    loop {
        let notified = me.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = me.clock.now_ms();
        let (due, next): (Vec<Pending>, Option<i64>) = {
            let mut queue = me.queue.lock();
            let mut due = Vec::new();
            while let Some(entry) = queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            (due, queue.keys().next().map(|k| k.0))
        };
        for p in due {
            tokio::spawn(me.clone().attempt(p));
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = me.clock.sleep_until(at) => {}
                    _ = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

fn store_error<E: std::fmt::Display>(e: E) -> AwsError {
    tracing::error!(error = %e, "store failure");
    AwsError::new("ServiceException", 500, "An internal error occurred.")
}
