//! The Lambda Runtime API (2018-06-01) exactly as AWS documents it, served to one environment
//! on its own loopback port. Each environment gets its own port because runtime clients take
//! `AWS_LAMBDA_RUNTIME_API` as a bare `host:port` and build paths without any prefix: the port
//! is what tells environments apart, and an environment can only ever see its own events.
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: long-polls for the next event.
//! - `POST /2018-06-01/runtime/invocation/{id}/response`
//! - `POST /2018-06-01/runtime/invocation/{id}/error` (`Lambda-Runtime-Function-Error-Type`)
//! - `POST /2018-06-01/runtime/init/error`
//!
//! Response streaming: a `response` POST with `Lambda-Runtime-Function-Response-Mode:
//! streaming` (chunked) hands the invocation a [`StreamReply`] at once and forwards each chunk
//! as it arrives; the stream's end, or a mid-stream error the runtime reports in the trailers
//! `Lambda-Runtime-Function-Error-Type` / `-Body`, comes after the last chunk.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tsumiki_core::{Clock, Stopwatch};

use crate::InvokeRequest;
use crate::output::Output;

const PREFIX: &str = "/2018-06-01/runtime/";

/// What a runtime answered for a job.
pub(crate) enum Reply {
    Response(Bytes),
    Error(Bytes),
    InitError(Bytes),
    /// A streamed response has begun.
    Stream(StreamReply),
}

/// A response the runtime is streaming.
pub(crate) struct StreamReply {
    /// The runtime's `Content-Type` (AWS's `application/vnd.awslambda.http-integration-response`
    /// when the body opens with an HTTP prelude).
    pub content_type: Option<String>,
    /// The body's chunks as the runtime sends them.
    pub chunks: mpsc::Receiver<Bytes>,
    /// How the stream ended, after the last chunk: an error payload for a mid-stream error.
    pub end: oneshot::Receiver<Result<(), Bytes>>,
}

/// Largest streamed response (AWS: 200 MB).
pub(crate) const MAX_STREAM_BYTES: usize = 200 * 1024 * 1024;

/// One invocation handed to an environment.
pub(crate) struct Job {
    pub request: InvokeRequest,
    pub deadline_ms: AtomicI64,
    /// Fired when the runtime takes the job, with its deadline.
    pub picked: Mutex<Option<oneshot::Sender<i64>>>,
    pub picked_at: Mutex<Option<Stopwatch>>,
    pub done: Mutex<Option<oneshot::Sender<Reply>>>,
}

impl Job {
    fn finish(&self, reply: Reply) {
        if let Some(tx) = self.done.lock().take() {
            let _ = tx.send(reply);
        }
    }
}

#[derive(Default)]
pub(crate) struct Slot {
    pub queued: Option<Arc<Job>>,
    pub running: Option<Arc<Job>>,
    /// Time from process start to its first `next` (the REPORT's Init Duration).
    pub init_duration_ms: Option<f64>,
    pub init_reported: bool,
}

/// State shared by an environment and its Runtime API.
pub(crate) struct Shared {
    pub slot: Mutex<Slot>,
    pub job_ready: Notify,
    pub output: Arc<Output>,
    pub clock: Arc<Clock>,
    pub started: Stopwatch,
    pub timeout_ms: i64,
    pub version: String,
}

impl Shared {
    /// Queues `job` for the runtime's next `next`.
    pub(crate) fn offer(&self, job: Arc<Job>) {
        self.slot.lock().queued = Some(job);
        self.job_ready.notify_one();
    }
}

/// Serves the Runtime API on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return status(StatusCode::NOT_FOUND, "InvalidRequest", "Unknown path");
    };
    match (req.method(), rest) {
        (&Method::GET, "invocation/next") => next(shared).await,
        (&Method::POST, "init/error") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return e.response(),
            };
            let job = shared.slot.lock().queued.take();
            if let Some(job) = job {
                job.finish(Reply::InitError(error_body(body, None)));
            }
            accepted()
        }
        (&Method::POST, rest) if rest.starts_with("invocation/") => {
            let rest = &rest["invocation/".len()..];
            let Some((id, action)) = rest.rsplit_once('/') else {
                return status(StatusCode::NOT_FOUND, "InvalidRequest", "Unknown path");
            };
            let error_type = req
                .headers()
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let job = {
                let slot = shared.slot.lock();
                slot.running
                    .as_ref()
                    .filter(|j| j.request.request_id == id)
                    .cloned()
            };
            let Some(job) = job else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "Invalid request ID",
                );
            };
            let streaming = req
                .headers()
                .get("lambda-runtime-function-response-mode")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("streaming"));
            if action == "response" && streaming {
                return stream(shared, job, req).await;
            }
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => {
                    if action == "response"
                        && let BodyError::TooLarge(size) = e
                    {
                        job.finish(Reply::Error(too_large(size)));
                        shared.slot.lock().running = None;
                    }
                    return e.response();
                }
            };
            let reply = match action {
                "response" => Reply::Response(body),
                "error" => Reply::Error(error_body(body, error_type)),
                _ => return status(StatusCode::NOT_FOUND, "InvalidRequest", "Unknown path"),
            };
            {
                let mut slot = shared.slot.lock();
                if slot.running.as_ref().is_some_and(|j| Arc::ptr_eq(j, &job)) {
                    slot.running = None;
                }
            }
            job.finish(reply);
            accepted()
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "Method not allowed",
        ),
    }
}

/// Serves a streamed response: the invocation learns at once that it streams, then gets each
/// chunk as it arrives. A runtime whose reader went away keeps writing into the void (AWS does
/// not stop a function whose client disconnected).
async fn stream(shared: &Shared, job: Arc<Job>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (tx, chunks) = mpsc::channel(16);
    let (end_tx, end) = oneshot::channel();
    job.finish(Reply::Stream(StreamReply {
        content_type,
        chunks,
        end,
    }));
    let ended = forward(req.into_body(), tx).await;
    {
        let mut slot = shared.slot.lock();
        if slot.running.as_ref().is_some_and(|j| Arc::ptr_eq(j, &job)) {
            slot.running = None;
        }
    }
    let _ = end_tx.send(ended);
    accepted()
}

/// Forwards a streamed body's chunks; the error payload of a stream that failed.
async fn forward(mut body: Incoming, tx: mpsc::Sender<Bytes>) -> Result<(), Bytes> {
    let mut size = 0usize;
    let mut open = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(crate::env::platform_error(
                "Runtime.StreamError",
                "The runtime's response stream broke before it ended.",
            ));
        };
        match frame.into_data() {
            Ok(data) => {
                size = size.saturating_add(data.len());
                if size > MAX_STREAM_BYTES {
                    return Err(too_large_limit(size, MAX_STREAM_BYTES));
                }
                if open && !data.is_empty() && tx.send(data).await.is_err() {
                    open = false;
                }
            }
            Err(frame) => {
                let Ok(trailers) = frame.into_trailers() else {
                    continue;
                };
                let error_type = trailers
                    .get("lambda-runtime-function-error-type")
                    .and_then(|v| v.to_str().ok());
                let Some(error_type) = error_type else {
                    continue;
                };
                // AWS documents the body trailer as base64; a runtime sending plain text is
                // taken at its word.
                let raw = trailers
                    .get("lambda-runtime-function-error-body")
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
                let body = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &raw)
                    .unwrap_or(raw);
                return Err(error_body(Bytes::from(body), Some(error_type.to_string())));
            }
        }
    }
    Ok(())
}

/// Waits for the next job and hands it over with AWS's `Lambda-Runtime-*` headers.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    loop {
        let notified = shared.job_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = {
            let mut slot = shared.slot.lock();
            if slot.init_duration_ms.is_none() {
                slot.init_duration_ms = Some(shared.started.elapsed().as_secs_f64() * 1000.0);
            }
            let job = slot.queued.take();
            if let Some(job) = &job {
                slot.running = Some(job.clone());
            }
            job
        };
        if let Some(job) = job {
            let deadline = shared.clock.now_ms() + shared.timeout_ms;
            job.deadline_ms.store(deadline, Ordering::Release);
            *job.picked_at.lock() = Some(Stopwatch::start());
            // Lines printed during init belong before START, as on AWS.
            shared.output.drain();
            shared.output.push(format!(
                "START RequestId: {} Version: {}",
                job.request.request_id, shared.version
            ));
            if let Some(tx) = job.picked.lock().take() {
                let _ = tx.send(deadline);
            }
            let r = &job.request;
            let mut resp = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", &r.request_id)
                // The runtime compares this with its own (wall) clock.
                .header(
                    "lambda-runtime-deadline-ms",
                    shared.clock.to_wall_ms(deadline).to_string(),
                )
                .header("lambda-runtime-invoked-function-arn", &r.invoked_arn)
                .header(
                    "lambda-runtime-trace-id",
                    r.trace_id
                        .clone()
                        .unwrap_or_else(|| trace_id(&shared.clock)),
                );
            if let Some(cc) = &r.client_context {
                // The header carries the decoded JSON, not the caller's base64.
                let decoded =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, cc)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .unwrap_or_else(|| cc.clone());
                resp = resp.header("lambda-runtime-client-context", decoded);
            }
            if let Some(ci) = &r.cognito_identity {
                resp = resp.header("lambda-runtime-cognito-identity", ci);
            }
            return resp.body(Full::new(r.payload.clone())).unwrap_or_else(|_| {
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    "bad header",
                )
            });
        }
        notified.await;
    }
}

/// Why a runtime's body was not taken.
enum BodyError {
    /// Past [`crate::MAX_RESPONSE_BYTES`]; the body's whole size.
    TooLarge(usize),
    /// The connection failed before the body ended.
    Broken,
}

impl BodyError {
    fn response(&self) -> Response<Full<Bytes>> {
        match self {
            BodyError::TooLarge(_) => status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "Payload too large",
            ),
            BodyError::Broken => status(StatusCode::BAD_REQUEST, "InvalidRequest", "Body not read"),
        }
    }
}

/// Reads a body of at most [`crate::MAX_RESPONSE_BYTES`]. Past that it reads on without
/// keeping anything, only to count the bytes: AWS's error names the response's size.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, BodyError> {
    let mut body = req.into_body();
    let mut kept = bytes::BytesMut::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            size = size.saturating_add(data.len());
            if size <= crate::MAX_RESPONSE_BYTES {
                kept.extend_from_slice(&data);
            }
        }
    }
    if size > crate::MAX_RESPONSE_BYTES {
        return Err(BodyError::TooLarge(size));
    }
    Ok(kept.freeze())
}

/// The payload an invoke returns when a response of `size` bytes exceeded the limit.
fn too_large(size: usize) -> Bytes {
    too_large_limit(size, crate::MAX_RESPONSE_BYTES)
}

/// The payload of a response of `size` bytes past `limit`.
pub(crate) fn too_large_limit(size: usize, limit: usize) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "errorMessage": format!(
                "Response payload size ({size} bytes) exceeded maximum allowed payload size ({limit} bytes).",
            ),
            "errorType": "Function.ResponseSizeTooLarge",
        })
        .to_string(),
    )
}

/// A runtime's error body as the invoker sees it: AWS passes a JSON error through and wraps
/// anything else.
fn error_body(body: Bytes, error_type: Option<String>) -> Bytes {
    if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) {
        return body;
    }
    let message = String::from_utf8_lossy(&body).into_owned();
    Bytes::from(
        serde_json::json!({
            "errorMessage": message,
            "errorType": error_type.unwrap_or_else(|| "Unhandled".to_string()),
        })
        .to_string(),
    )
}

fn accepted() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)))
        .unwrap_or_default()
}

fn status(code: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// An X-Ray trace header in AWS's format (`Root=1-{epoch hex}-{96-bit hex};Sampled=0`).
fn trace_id(clock: &Clock) -> String {
    let secs = clock.now_ms() / 1000;
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{secs:08x}-{};Sampled=0", &random[..24])
}
