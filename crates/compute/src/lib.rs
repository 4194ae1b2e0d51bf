//! Execution environments (DESIGN.md decision 5): sandboxed processes that run functions, each
//! speaking the Lambda Runtime API on its own loopback port, reused while warm, scaled out with
//! concurrency, reaped when idle, and logged into CloudWatch Logs through [`LogSink`].
//!
//! The Lambda service hands [`Compute::invoke`] an immutable [`FunctionSpec`] (one version of
//! one function, with its code already unpacked) and a request; compute finds or starts an
//! environment, passes the event through the Runtime API, and answers with the function's
//! payload or error. Timeouts follow the one [`Clock`], so `--clock manual` makes a function
//! time out exactly when a test advances time past its deadline.
//!
//! Read `env.rs` (one environment's life) and `runtime_api.rs` (the HTTP face a runtime sees).

mod env;
pub mod jobs;
mod output;
mod runtime_api;
mod runtimes;
mod sandbox;
mod spawn;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tsumiki_core::Clock;
use tsumiki_ports::LogSink;

pub use runtimes::{RuntimeKind, runtime_kind};

use env::{Env, Outcome};

/// Largest response a synchronous invoke may return: AWS's 6 MB and 100 bytes (6,291,556, the
/// figure its `Function.ResponseSizeTooLarge` error names).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;

/// One version of one function as an environment needs it. Immutable: a configuration or code
/// change makes a new spec with a new `revision`, and environments of the old one are retired.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub account: String,
    pub region: String,
    pub function_name: String,
    /// Unqualified function ARN.
    pub function_arn: String,
    /// `$LATEST` or a published version number.
    pub version: String,
    /// Changes whenever code or configuration changes; environments are pooled by it.
    pub revision: String,
    pub runtime: String,
    pub handler: String,
    /// The unpacked deployment package (`LAMBDA_TASK_ROOT`).
    pub code_dir: PathBuf,
    /// Unpacked layers in order; later layers win, as files in `/opt` do on AWS.
    pub layer_dirs: Vec<PathBuf>,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: BTreeMap<String, String>,
    pub log_group: String,
}

impl FunctionSpec {
    fn pool_key(&self) -> String {
        format!("{}:{}:{}", self.function_arn, self.version, self.revision)
    }

    /// Concurrency is counted per function, across its versions and aliases (as AWS does).
    fn function_key(&self) -> &str {
        &self.function_arn
    }

    fn account_key(&self) -> String {
        format!("{}/{}", self.account, self.region)
    }
}

/// One invocation as the Runtime API hands it to the function.
#[derive(Clone, Debug, Default)]
pub struct InvokeRequest {
    pub request_id: String,
    pub payload: Bytes,
    /// The ARN the caller invoked, with its qualifier if it gave one.
    pub invoked_arn: String,
    /// The `X-Amz-Client-Context` header as given (base64 JSON).
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub trace_id: Option<String>,
    /// Return the last 4 KB of the invocation's log (`LogType: Tail`).
    pub tail: bool,
}

/// Concurrency limits that hold for one invocation; the Lambda service knows reservations.
#[derive(Clone, Copy, Debug)]
pub struct Concurrency {
    /// The function's reserved concurrency, when it has one.
    pub reserved: Option<u32>,
    /// How many invocations functions without a reservation may run at once in the account
    /// (the account limit minus all reservations).
    pub unreserved_pool: u32,
}

/// What an invocation produced. A function error is a result, not an [`InvokeError`]: AWS
/// answers it with status 200 and `X-Amz-Function-Error`.
#[derive(Clone, Debug)]
pub struct InvokeResult {
    pub payload: Bytes,
    /// `Unhandled` when the function failed (its error payload is in `payload`).
    pub function_error: Option<&'static str>,
    /// The last 4 KB of the invocation's log lines, base64, when asked for.
    pub log_tail: Option<String>,
    /// Whether a new environment was started for this invocation.
    pub cold_start: bool,
}

/// A response the function streams (`Lambda-Runtime-Function-Response-Mode: streaming`).
pub struct ResponseStream {
    /// The runtime's `Content-Type` for the stream.
    pub content_type: Option<String>,
    /// The body's chunks as the function writes them; closed when the stream ends.
    pub chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

/// What a streaming invocation produced, as soon as it is known whether it streams.
pub enum Streamed {
    /// The function answered whole (a buffered function), or failed before streaming.
    Whole(InvokeResult),
    /// The function streams; `end` tells how it ended once the last chunk is out (a mid-stream
    /// error, a timeout) with the log tail. Its payload is empty unless the function failed.
    Stream {
        stream: ResponseStream,
        end: tokio::sync::oneshot::Receiver<InvokeResult>,
        cold_start: bool,
    },
}

/// Why an invocation did not run at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvokeError {
    /// Concurrency exhausted: the reason AWS names in `TooManyRequestsException`.
    Throttled(&'static str),
    /// The runtime cannot run on this machine (e.g. no `python3`), said plainly.
    RuntimeUnavailable(String),
    /// Starting the environment failed for a reason of ours, not the function's.
    Internal(String),
}

/// Settings of the compute layer.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// Where environments get their `/tmp` and the built-in bootstraps live.
    pub work_dir: PathBuf,
    /// An environment idle this long (clock time) is stopped.
    pub idle_timeout_ms: i64,
}

#[derive(Default)]
struct Counters {
    /// Running invocations by function ARN.
    by_function: HashMap<String, u32>,
    /// Running invocations of functions without a reservation, by account/region.
    unreserved: HashMap<String, u32>,
}

/// The execution-environment manager.
pub struct Compute {
    clock: Arc<Clock>,
    logs: Arc<dyn LogSink>,
    config: ComputeConfig,
    runtimes: runtimes::Runtimes,
    /// Where functions' SDK calls go: tsumiki itself (set once the server is listening).
    endpoint: Mutex<String>,
    idle: Mutex<HashMap<String, Vec<Arc<Env>>>>,
    counters: Arc<Mutex<Counters>>,
}

/// Releases an invocation's concurrency slot however the invocation ends (a streamed one ends
/// after its caller got its answer, so the slot owns its counters).
struct Slot {
    counters: Arc<Mutex<Counters>>,
    function: String,
    account: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counters.lock();
        if let Some(n) = c.by_function.get_mut(&self.function) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_function.remove(&self.function);
            }
        }
        if let Some(account) = &self.account
            && let Some(n) = c.unreserved.get_mut(account)
        {
            *n = n.saturating_sub(1);
        }
    }
}

impl Compute {
    /// Creates the manager and writes the built-in bootstraps under `config.work_dir`.
    pub fn new(
        config: ComputeConfig,
        clock: Arc<Clock>,
        logs: Arc<dyn LogSink>,
    ) -> std::io::Result<Arc<Compute>> {
        let runtimes = runtimes::Runtimes::install(&config.work_dir.join("runtime"))?;
        // Environments of an earlier run died with it (their processes die with the server);
        // their /tmp directories go too.
        let _ = std::fs::remove_dir_all(config.work_dir.join("env"));
        std::fs::create_dir_all(config.work_dir.join("env"))?;
        let compute = Arc::new(Compute {
            clock,
            logs,
            config,
            runtimes,
            endpoint: Mutex::new(String::new()),
            idle: Mutex::new(HashMap::new()),
            counters: Arc::new(Mutex::new(Counters::default())),
        });
        tokio::spawn(reap(Arc::downgrade(&compute)));
        Ok(compute)
    }

    /// The URL functions reach tsumiki at (`AWS_ENDPOINT_URL`).
    pub fn set_endpoint(&self, url: &str) {
        *self.endpoint.lock() = url.to_string();
    }

    /// Whether `runtime` can run here; the error says what is missing.
    pub async fn check_runtime(&self, runtime: &str) -> Result<(), String> {
        self.runtimes.command_for(runtime).await.map(|_| ())
    }

    /// Running invocations of a function (for metrics and tests of throttling).
    pub fn running(&self, function_arn: &str) -> u32 {
        self.counters
            .lock()
            .by_function
            .get(function_arn)
            .copied()
            .unwrap_or(0)
    }

    /// Runs one invocation to its end: the function's response or error, a timeout, a crash.
    /// A function that streams its response has it gathered whole, as `Invoke` returns it.
    pub async fn invoke(
        &self,
        spec: &Arc<FunctionSpec>,
        request: InvokeRequest,
        limits: Concurrency,
    ) -> Result<InvokeResult, InvokeError> {
        let _slot = self.acquire(spec, limits)?;
        let (env, cold_start) = match self.environment(spec, &request).await? {
            Ok(found) => found,
            Err(result) => return Ok(result),
        };
        let tail = request.tail;
        let (outcome, log_tail) = env.run(request, None).await;
        Ok(self.settle(spec, env, outcome, tail.then_some(log_tail), cold_start))
    }

    /// Runs one invocation whose response may stream: answers as soon as the function either
    /// answered whole or began streaming; a stream's chunks then flow while it runs on.
    pub async fn invoke_streaming(
        self: &Arc<Self>,
        spec: &Arc<FunctionSpec>,
        request: InvokeRequest,
        limits: Concurrency,
    ) -> Result<Streamed, InvokeError> {
        let slot = self.acquire(spec, limits)?;
        let (env, cold_start) = match self.environment(spec, &request).await? {
            Ok(found) => found,
            Err(result) => return Ok(Streamed::Whole(result)),
        };
        let (stream_tx, stream_rx) = tokio::sync::oneshot::channel();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        let compute = self.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tail = request.tail;
            let (outcome, log_tail) = env.run(request, Some(stream_tx)).await;
            let _ = end_tx.send(compute.settle(
                &spec,
                env,
                outcome,
                tail.then_some(log_tail),
                cold_start,
            ));
        });
        match stream_rx.await {
            Ok(stream) => Ok(Streamed::Stream {
                stream,
                end: end_rx,
                cold_start,
            }),
            Err(_) => end_rx
                .await
                .map(Streamed::Whole)
                .map_err(|_| InvokeError::Internal("the invocation ended without a result".into())),
        }
    }

    /// A warm environment of `spec`, else a new one; `Err` carries the answer of a function
    /// that cannot start (no bootstrap), which AWS reports as the function's error.
    async fn environment(
        &self,
        spec: &Arc<FunctionSpec>,
        request: &InvokeRequest,
    ) -> Result<Result<(Arc<Env>, bool), InvokeResult>, InvokeError> {
        let pooled = self
            .idle
            .lock()
            .get_mut(&spec.pool_key())
            .and_then(Vec::pop);
        if let Some(env) = pooled
            && env.is_alive()
        {
            return Ok(Ok((env, false)));
        }
        let command = self
            .runtimes
            .command_for(&spec.runtime)
            .await
            .map_err(InvokeError::RuntimeUnavailable)?;
        let endpoint = self.endpoint.lock().clone();
        let started = Env::start(
            spec.clone(),
            command,
            &self.config.work_dir.join("env"),
            &endpoint,
            self.clock.clone(),
            self.logs.clone(),
        )
        .await;
        match started {
            Ok(env) => Ok(Ok((Arc::new(env), true))),
            Err(env::StartError::NoBootstrap) => Ok(Err(InvokeResult {
                payload: env::platform_error(
                    "Runtime.InvalidEntrypoint",
                    &format!(
                        "RequestId: {} Error: Couldn't find valid bootstrap(s): \
                         [/var/task/bootstrap /opt/bootstrap]",
                        request.request_id
                    ),
                ),
                function_error: Some("Unhandled"),
                log_tail: None,
                cold_start: true,
            })),
            Err(env::StartError::Io(e)) => Err(InvokeError::Internal(format!(
                "starting the environment: {e}"
            ))),
        }
    }

    /// Puts a live environment back in its pool and shapes the invocation's result.
    fn settle(
        &self,
        spec: &FunctionSpec,
        env: Arc<Env>,
        outcome: Outcome,
        log_tail: Option<String>,
        cold_start: bool,
    ) -> InvokeResult {
        let (payload, function_error) = match outcome {
            Outcome::Response(payload) => (payload, None),
            Outcome::Error(payload) => (payload, Some("Unhandled")),
        };
        if env.is_alive() {
            env.touch(self.clock.now_ms());
            self.idle
                .lock()
                .entry(spec.pool_key())
                .or_default()
                .push(env);
        }
        InvokeResult {
            payload,
            function_error,
            log_tail,
            cold_start,
        }
    }

    fn acquire(&self, spec: &FunctionSpec, limits: Concurrency) -> Result<Slot, InvokeError> {
        let mut c = self.counters.lock();
        let running = c.by_function.get(spec.function_key()).copied().unwrap_or(0);
        let account = match limits.reserved {
            Some(reserved) => {
                if running >= reserved {
                    return Err(InvokeError::Throttled(
                        "ReservedFunctionConcurrentInvocationLimitExceeded",
                    ));
                }
                None
            }
            None => {
                let key = spec.account_key();
                let used = c.unreserved.get(&key).copied().unwrap_or(0);
                if used >= limits.unreserved_pool {
                    return Err(InvokeError::Throttled("ConcurrentInvocationLimitExceeded"));
                }
                c.unreserved.insert(key.clone(), used + 1);
                Some(key)
            }
        };
        *c.by_function
            .entry(spec.function_key().to_string())
            .or_default() += 1;
        Ok(Slot {
            counters: self.counters.clone(),
            function: spec.function_key().to_string(),
            account,
        })
    }

    /// Stops every idle environment of `function_arn` (of one version, or all); running ones
    /// finish their invocation and go back to a pool nobody asks for any more, where the
    /// reaper finds them. Called when a function is deleted or changed.
    pub fn retire(&self, function_arn: &str, version: Option<&str>) {
        let prefix = match version {
            Some(v) => format!("{function_arn}:{v}:"),
            None => format!("{function_arn}:"),
        };
        let retired: Vec<Arc<Env>> = {
            let mut idle = self.idle.lock();
            let keys: Vec<String> = idle
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            keys.into_iter()
                .flat_map(|k| idle.remove(&k).unwrap_or_default())
                .collect()
        };
        for env in retired {
            env.stop();
        }
    }

    /// Stops every environment (server shutdown, reset).
    pub fn stop_all(&self) {
        let all: Vec<Arc<Env>> = self.idle.lock().drain().flat_map(|(_, v)| v).collect();
        for env in all {
            env.stop();
        }
    }

    /// Idle environments (for tests of warm reuse and reaping, and the console later).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

/// Stops environments idle longer than the configured timeout; runs for the manager's life.
async fn reap(compute: std::sync::Weak<Compute>) {
    loop {
        let (clock, idle_ms) = match compute.upgrade() {
            Some(c) => (c.clock.clone(), c.config.idle_timeout_ms),
            None => return,
        };
        clock.sleep_ms(idle_ms.clamp(1_000, 60_000)).await;
        let Some(compute) = compute.upgrade() else {
            return;
        };
        let cutoff = compute.clock.now_ms() - idle_ms;
        let stale: Vec<Arc<Env>> = {
            let mut idle = compute.idle.lock();
            let mut stale = Vec::new();
            for envs in idle.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) =
                    envs.drain(..).partition(|e| e.last_used() < cutoff);
                *envs = keep;
                stale.extend(old);
            }
            idle.retain(|_, v| !v.is_empty());
            stale
        };
        for env in stale {
            tracing::debug!(env = %env.id(), "stopping idle environment");
            env.stop();
        }
    }
}
