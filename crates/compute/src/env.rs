//! One execution environment: a process started from the function's runtime, with its own
//! `/tmp` (and `HOME`), Lambda's environment variables, its Runtime API port, its merged
//! stdout/stderr feeding its log stream, and limits. It runs one invocation at a time.
//!
//! Its life: started cold for an invocation; answers, then waits in the pool; stopped when it
//! times out, crashes, runs out of memory, fails to initialise, sits idle too long, or its
//! function changes. Dropping the last handle kills its process group, so no path leaks one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tsumiki_core::{Clock, Stopwatch};
use tsumiki_ports::LogSink;

use crate::output::{LogTarget, Output};
use crate::runtime_api::{self, Job, Reply, Shared, StreamReply};
use crate::runtimes::Launch;
use crate::{FunctionSpec, InvokeRequest, ResponseStream, sandbox, spawn};

/// What an invocation produced, as Invoke reports it.
pub(crate) enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

/// The last bytes of an invocation's log a `Tail` returns.
const TAIL_BYTES: usize = 4096;
/// How often a running invocation's memory is checked.
const MEMORY_POLL: Duration = Duration::from_millis(50);
/// The init phase may take this long before the invocation itself is charged (AWS: 10 s).
const INIT_GRACE_MS: i64 = 10_000;

pub(crate) struct Env {
    id: String,
    pid: u32,
    spec: Arc<FunctionSpec>,
    shared: Arc<Shared>,
    exited: watch::Receiver<Option<String>>,
    alive: AtomicBool,
    last_used_ms: AtomicI64,
    server: tokio::task::AbortHandle,
    root: PathBuf,
}

impl Env {
    pub(crate) async fn start(
        spec: Arc<FunctionSpec>,
        launch: Launch,
        env_root: &Path,
        endpoint: &str,
        clock: Arc<Clock>,
        logs: Arc<dyn LogSink>,
    ) -> Result<Env, StartError> {
        let started = Stopwatch::start();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let root = env_root.join(&id);
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(StartError::io)?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(StartError::io)?;
        let api = listener.local_addr().map_err(StartError::io)?;

        let date = tsumiki_core::clock::iso8601_ms(clock.now_ms());
        let stream = format!(
            "{}/{}/{}/[{}]{}",
            &date[0..4],
            &date[5..7],
            &date[8..10],
            spec.version,
            id
        );

        let (program, args) = match &launch {
            Launch::Provided => (
                find_bootstrap(&spec).ok_or(StartError::NoBootstrap)?,
                Vec::new(),
            ),
            Launch::Interpreter {
                program,
                flags,
                script,
                ..
            } => {
                let mut args: Vec<OsString> = flags.iter().map(OsString::from).collect();
                args.push(script.clone().into_os_string());
                (program.clone(), args)
            }
        };
        let vars = environment(&spec, &launch, &api.to_string(), endpoint, &tmp, &stream);
        let (reader, writer) = std::io::pipe().map_err(StartError::io)?;
        let writer = OwnedFd::from(writer);
        let child = spawn::spawn(&spawn::Confined {
            program: &program,
            args: &args,
            env: &vars,
            cwd: &spec.code_dir,
            output: &writer,
            limits: &sandbox::limits(spec.ephemeral_storage_mb),
        })
        .map_err(StartError::io)?;
        // Our copy of the pipe's write end must close, or the pipe never reports EOF.
        drop(writer);
        let pid = child.id();

        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(StartError::io)?;
        let output = Output::new(
            pipe,
            clock.clone(),
            logs,
            LogTarget {
                account: spec.account.clone(),
                region: spec.region.clone(),
                group: spec.log_group.clone(),
                stream,
            },
        );

        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let text = match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("error: {e}"),
            };
            let _ = exit_tx.send(Some(text));
        });

        let shared = Arc::new(Shared {
            slot: Mutex::new(runtime_api::Slot::default()),
            job_ready: tokio::sync::Notify::new(),
            output,
            clock,
            started,
            timeout_ms: i64::from(spec.timeout_s) * 1000,
            version: spec.version.clone(),
        });
        let server = tokio::spawn(runtime_api::serve(listener, shared.clone())).abort_handle();
        tracing::debug!(env = %id, function = %spec.function_name, pid, "environment started");
        Ok(Env {
            id,
            pid,
            spec,
            shared,
            exited,
            alive: AtomicBool::new(true),
            last_used_ms: AtomicI64::new(0),
            server,
            root,
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && self.exited.borrow().is_none()
    }

    pub(crate) fn touch(&self, now_ms: i64) {
        self.last_used_ms.store(now_ms, Ordering::Release);
    }

    pub(crate) fn last_used(&self) -> i64 {
        self.last_used_ms.load(Ordering::Acquire)
    }

    /// Kills the process group; the environment is not reused.
    pub(crate) fn stop(&self) {
        if self.alive.swap(false, Ordering::AcqRel) {
            sandbox::kill_group(self.pid);
        }
    }

    /// Runs one invocation; returns its outcome and the base64 tail of its log. A streamed
    /// response goes to `on_stream` as it begins (its outcome then carries only how it ended),
    /// or without one is gathered into a buffered response as `Invoke` returns it.
    pub(crate) async fn run(
        &self,
        request: InvokeRequest,
        on_stream: Option<oneshot::Sender<ResponseStream>>,
    ) -> (Outcome, String) {
        let request_id = request.request_id.clone();
        let (picked_tx, picked_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let job = Arc::new(Job {
            request,
            deadline_ms: AtomicI64::new(0),
            picked: Mutex::new(Some(picked_tx)),
            picked_at: Mutex::new(None),
            done: Mutex::new(Some(done_tx)),
        });
        let timeout_ms = i64::from(self.spec.timeout_s) * 1000;
        let init_deadline = self.shared.clock.now_ms() + INIT_GRACE_MS + timeout_ms;
        self.shared.offer(job.clone());

        let ended = match self.wait(picked_rx, done_rx, init_deadline).await {
            Ended::Reply(Reply::Stream(stream)) => self.stream(stream, &job, on_stream).await,
            other => other,
        };
        let mut timed_out_line = None;
        let outcome = match ended {
            Ended::Reply(Reply::Response(body)) => Outcome::Response(body),
            Ended::Reply(Reply::Error(body)) => Outcome::Error(body),
            Ended::Reply(Reply::InitError(body)) => {
                self.stop();
                Outcome::Error(body)
            }
            // `stream` resolves every stream into a response or an error.
            Ended::Reply(Reply::Stream(_)) => Outcome::Response(Bytes::new()),
            Ended::Exited(how) => {
                self.stop();
                Outcome::Error(platform_error(
                    "Runtime.ExitError",
                    &format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
                ))
            }
            Ended::TimedOut => {
                self.stop();
                let secs = format!("{:.2}", self.spec.timeout_s as f64);
                timed_out_line = Some(format!(
                    "{} {request_id} Task timed out after {secs} seconds",
                    tsumiki_core::clock::iso8601_ms(self.shared.clock.now_ms())
                ));
                Outcome::Error(platform_error(
                    "Sandbox.Timedout",
                    &format!("RequestId: {request_id} Error: Task timed out after {secs} seconds"),
                ))
            }
            Ended::OutOfMemory => {
                self.stop();
                Outcome::Error(platform_error(
                    "Runtime.OutOfMemory",
                    &format!(
                        "RequestId: {request_id} Error: Runtime exited with error: signal: killed"
                    ),
                ))
            }
        };
        // A job that never reached the runtime must not be handed over later.
        {
            let mut slot = self.shared.slot.lock();
            if slot.queued.as_ref().is_some_and(|j| Arc::ptr_eq(j, &job)) {
                slot.queued = None;
            }
            if slot.running.as_ref().is_some_and(|j| Arc::ptr_eq(j, &job)) {
                slot.running = None;
            }
        }
        let tail = self.report(&job, timed_out_line);
        (outcome, tail)
    }

    /// Follows a streamed response to its end under the invocation's deadline and limits.
    async fn stream(
        &self,
        stream: StreamReply,
        job: &Job,
        on_stream: Option<oneshot::Sender<ResponseStream>>,
    ) -> Ended {
        let deadline = job.deadline_ms.load(Ordering::Acquire);
        let StreamReply {
            content_type,
            mut chunks,
            end,
        } = stream;
        let gathered = match on_stream {
            Some(tx) => {
                let _ = tx.send(ResponseStream {
                    content_type,
                    chunks,
                });
                Bytes::new()
            }
            None => {
                let gather = async {
                    let mut body = bytes::BytesMut::new();
                    let mut size = 0usize;
                    while let Some(chunk) = chunks.recv().await {
                        size += chunk.len();
                        if size <= crate::MAX_RESPONSE_BYTES {
                            body.extend_from_slice(&chunk);
                        }
                    }
                    (body.freeze(), size)
                };
                match self.guard(gather, deadline).await {
                    Ok((_, size)) if size > crate::MAX_RESPONSE_BYTES => {
                        return Ended::Reply(Reply::Error(runtime_api::too_large_limit(
                            size,
                            crate::MAX_RESPONSE_BYTES,
                        )));
                    }
                    Ok((body, _)) => body,
                    Err(ended) => return ended,
                }
            }
        };
        match self.guard(end, deadline).await {
            Ok(Ok(Ok(()))) => Ended::Reply(Reply::Response(gathered)),
            Ok(Ok(Err(error))) => Ended::Reply(Reply::Error(error)),
            Ok(Err(_)) => Ended::Exited("no reply".into()),
            Err(ended) => ended,
        }
    }

    /// Runs `fut` unless the process exits, the deadline passes or memory runs out first.
    async fn guard<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
        deadline: i64,
    ) -> Result<T, Ended> {
        let clock = &self.shared.clock;
        let mut exited = self.exited.clone();
        let limit = u64::from(self.spec.memory_mb) * 1024 * 1024;
        tokio::pin!(fut);
        tokio::select! {
            biased;
            v = &mut fut => Ok(v),
            how = exited.wait_for(Option::is_some) => {
                Err(Ended::Exited(how.ok().and_then(|h| h.clone()).unwrap_or_default()))
            }
            _ = clock.sleep_until(deadline) => Err(Ended::TimedOut),
            _ = watch_memory(self.pid, limit) => Err(Ended::OutOfMemory),
        }
    }

    async fn wait(
        &self,
        mut picked: oneshot::Receiver<i64>,
        mut done: oneshot::Receiver<Reply>,
        init_deadline: i64,
    ) -> Ended {
        let clock = &self.shared.clock;
        let mut exited = self.exited.clone();
        let deadline = tokio::select! {
            biased;
            reply = &mut done => return reply.map_or(Ended::Exited("no reply".into()), Ended::Reply),
            deadline = &mut picked => match deadline {
                Ok(d) => d,
                Err(_) => return Ended::Exited("no reply".into()),
            },
            how = exited.wait_for(Option::is_some) => {
                return Ended::Exited(how.ok().and_then(|h| h.clone()).unwrap_or_default());
            }
            _ = clock.sleep_until(init_deadline) => return Ended::TimedOut,
        };
        let limit = u64::from(self.spec.memory_mb) * 1024 * 1024;
        tokio::select! {
            biased;
            reply = &mut done => reply.map_or(Ended::Exited("no reply".into()), Ended::Reply),
            how = exited.wait_for(Option::is_some) => {
                // The process may have answered just before it exited.
                match done.try_recv() {
                    Ok(reply) => Ended::Reply(reply),
                    Err(_) => Ended::Exited(how.ok().and_then(|h| h.clone()).unwrap_or_default()),
                }
            }
            _ = clock.sleep_until(deadline) => Ended::TimedOut,
            _ = watch_memory(self.pid, limit) => Ended::OutOfMemory,
        }
    }

    /// Writes END and REPORT after the function's own lines and ships them to the log stream.
    fn report(&self, job: &Job, timed_out_line: Option<String>) -> String {
        let out = &self.shared.output;
        out.drain();
        let id = &job.request.request_id;
        let picked_at = *job.picked_at.lock();
        if picked_at.is_none() {
            // The runtime never took the job (init failed or timed out): AWS still logs START.
            out.push(format!(
                "START RequestId: {id} Version: {}",
                self.spec.version
            ));
        }
        if let Some(line) = timed_out_line {
            out.push(line);
        }
        let duration_ms = picked_at.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        let max_used = sandbox::memory(self.pid).map_or(0, |(_, hwm)| hwm.div_ceil(1024 * 1024));
        let init = {
            let mut slot = self.shared.slot.lock();
            if slot.init_reported {
                None
            } else {
                slot.init_reported = true;
                slot.init_duration_ms
            }
        };
        out.push(format!("END RequestId: {id}"));
        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {} ms\t\
             Memory Size: {} MB\tMax Memory Used: {max_used} MB\t",
            duration_ms.ceil().max(1.0) as u64,
            self.spec.memory_mb,
        );
        if let Some(init) = init {
            report.push_str(&format!("Init Duration: {init:.2} ms\t"));
        }
        out.push(report);
        let lines = out.flush();
        let mut text = Vec::new();
        for line in &lines {
            text.extend_from_slice(line.message.as_bytes());
            text.push(b'\n');
        }
        let start = text.len().saturating_sub(TAIL_BYTES);
        base64::engine::general_purpose::STANDARD.encode(&text[start..])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

enum Ended {
    Reply(Reply),
    Exited(String),
    TimedOut,
    OutOfMemory,
}

/// Why an environment could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// A `provided` function without an executable `bootstrap`.
    NoBootstrap,
    Io(std::io::Error),
}

impl StartError {
    fn io(e: std::io::Error) -> StartError {
        StartError::Io(e)
    }
}

/// AWS's error payload for failures the platform reports on the function's behalf.
pub(crate) fn platform_error(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())
}

/// The package's `bootstrap`, else the last layer's (`/var/task/bootstrap`, `/opt/bootstrap`).
fn find_bootstrap(spec: &FunctionSpec) -> Option<PathBuf> {
    std::iter::once(&spec.code_dir)
        .chain(spec.layer_dirs.iter().rev())
        .map(|d| d.join("bootstrap"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Lambda's environment variables for one environment (AWS's documented set), then the
/// function's own.
fn environment(
    spec: &FunctionSpec,
    launch: &Launch,
    runtime_api: &str,
    endpoint: &str,
    tmp: &Path,
    stream: &str,
) -> BTreeMap<OsString, OsString> {
    let mut vars: BTreeMap<OsString, OsString> = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        vars.insert(k.into(), v.into());
    };
    let join = |sub: &str| -> String {
        spec.layer_dirs
            .iter()
            .rev()
            .map(|d| d.join(sub).display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut path = join("bin");
    if let Launch::Interpreter { bin_dir, .. } = launch {
        if !path.is_empty() {
            path.push(':');
        }
        path.push_str(&bin_dir.display().to_string());
    }
    if !path.is_empty() {
        path.push(':');
    }
    path.push_str("/usr/local/bin:/usr/bin:/bin");
    let task_root = spec.code_dir.display().to_string();
    set("PATH", &path);
    set("LANG", "en_US.UTF-8");
    set("TZ", ":UTC");
    set("LD_LIBRARY_PATH", &join("lib"));
    set("_HANDLER", &spec.handler);
    set("LAMBDA_TASK_ROOT", &task_root);
    set("AWS_EXECUTION_ENV", &format!("AWS_Lambda_{}", spec.runtime));
    set("AWS_LAMBDA_FUNCTION_NAME", &spec.function_name);
    set("AWS_LAMBDA_FUNCTION_VERSION", &spec.version);
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        &spec.memory_mb.to_string(),
    );
    set("AWS_LAMBDA_LOG_GROUP_NAME", &spec.log_group);
    set("AWS_LAMBDA_LOG_STREAM_NAME", stream);
    set("AWS_LAMBDA_RUNTIME_API", runtime_api);
    set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
    set("AWS_REGION", &spec.region);
    set("AWS_DEFAULT_REGION", &spec.region);
    // A 12-digit access key id acts in that account at tsumiki's gateway.
    set("AWS_ACCESS_KEY_ID", &spec.account);
    set("AWS_SECRET_ACCESS_KEY", "tsumiki");
    set("AWS_SESSION_TOKEN", "tsumiki-function-session");
    if !endpoint.is_empty() {
        set("AWS_ENDPOINT_URL", endpoint);
    }
    // Each environment's own /tmp; HOME too, so nothing reads the host user's files.
    let tmp = tmp.display().to_string();
    set("TMPDIR", &tmp);
    set("HOME", &tmp);
    let paths = |parts: &[&str]| -> String {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(":")
    };
    // AWS's search paths: the function's code first, then the layers' python/lib/python3.x/
    // site-packages and python/ (/opt/python...).
    let site_packages = join(&format!("python/lib/{}/site-packages", spec.runtime));
    let layers_python = join("python");
    set(
        "PYTHONPATH",
        &paths(&[&task_root, &site_packages, &layers_python]),
    );
    set("PYTHONUNBUFFERED", "1");
    // AWS's NODE_PATH: /opt/nodejs/nodeNN/node_modules, /opt/nodejs/node_modules, then the
    // function's code.
    let node_major = spec
        .runtime
        .strip_prefix("nodejs")
        .and_then(|v| v.strip_suffix(".x"))
        .map(|major| join(&format!("nodejs/node{major}/node_modules")))
        .unwrap_or_default();
    let layers_node = join("nodejs/node_modules");
    set(
        "NODE_PATH",
        &paths(&[&node_major, &layers_node, &task_root]),
    );
    if let Launch::Interpreter { vars: extra, .. } = launch {
        for (k, v) in extra {
            vars.insert(k.into(), v.into());
        }
    }
    for (k, v) in &spec.environment {
        vars.insert(k.into(), v.into());
    }
    vars
}

/// Resolves once the process's resident memory exceeds `limit` bytes.
async fn watch_memory(pid: u32, limit: u64) {
    loop {
        Clock::pause_real(MEMORY_POLL).await;
        match sandbox::memory(pid) {
            Some((rss, _)) if rss > limit => return,
            None => std::future::pending::<()>().await,
            _ => {}
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_string(),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => "unknown".to_string(),
    }
}
