//! Run-to-completion processes: Glue job runs and ECS task containers. Unlike a function's
//! environment, such a process gets no Runtime API and no reuse: it is started with its command
//! line, environment and working directory, runs until it exits, times out (on the clock), is
//! stopped on request, or outgrows its memory, and then its whole process group is killed, so
//! nothing it started outlives its run.
//!
//! Its stdout and stderr become CloudWatch Logs events through [`LogSink`]: into one stream
//! (ECS's `awslogs` driver) or two (Glue's output and error groups). A run's end is reported
//! only after its last line is appended, so a caller that sees a run finished can read all of
//! its log.
//!
//! Stop follows ECS's `stopTimeout`: SIGTERM to the group, then SIGKILL after the grace period
//! (real time: it is the process's time to clean up, not a business timer).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tsumiki_core::Clock;
use tsumiki_ports::LogSink;

use crate::output::{LogTarget, Output};
use crate::sandbox;

/// How long a run's log may take to reach EOF after its group was killed (a process that
/// escaped the group could hold the pipe open forever).
const LOG_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Runs yield the CPU to the server (there is no hard vCPU cap: DPUs and task CPU units are
/// not enforced beyond this).
const RUN_NICENESS: i32 = 10;
/// How often a run's memory is checked.
const MEMORY_POLL: Duration = Duration::from_millis(100);
/// How often, and how many times, a run's end waits for its killed process group to be gone
/// (SIGKILL cannot be refused, so this is only the kernel's own delay; two seconds at most).
const GROUP_EXIT_POLL: Duration = Duration::from_millis(10);
const GROUP_EXIT_POLLS: u32 = 200;

/// Where one log stream goes.
#[derive(Clone, Debug)]
pub struct StreamTarget {
    pub group: String,
    pub stream: String,
}

/// Where a run's stdout and stderr go.
#[derive(Clone, Debug)]
pub enum RunLogs {
    /// Both into one stream, in the order written (ECS `awslogs`).
    Merged(StreamTarget),
    /// stdout and stderr into their own streams (Glue's output and error groups).
    Split {
        stdout: StreamTarget,
        stderr: StreamTarget,
    },
    /// Discarded (a container without a log configuration).
    Discard,
}

/// One process to run to completion.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub account: String,
    pub region: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing of the server's own is inherited.
    pub env: BTreeMap<String, String>,
    /// The working directory; created if missing, removed when the run ends.
    pub work_dir: PathBuf,
    /// Resident memory above this ends the run ([`RunEnd::OutOfMemory`]).
    pub memory_mb: u64,
    /// No file may grow beyond this (the run's ephemeral storage).
    pub storage_mb: u32,
    /// Clock time at which the run is killed ([`RunEnd::TimedOut`]); `None` for no limit.
    pub deadline_ms: Option<i64>,
    /// Between SIGTERM and SIGKILL when the run is stopped.
    pub stop_grace: Duration,
    pub logs: RunLogs,
    /// Lines of the platform's own, written first to the stdout stream (or the merged one).
    pub preamble: Vec<String>,
    /// Keep the working directory after the run (its files are the caller's).
    pub keep_work_dir: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The process exited with this status.
    Exited(i32),
    /// The process was killed by this signal (not by us).
    Signaled(i32),
    /// Its deadline passed; the group was killed.
    TimedOut,
    /// [`Run::stop`] ended it; `code` as a container runtime reports it: the exit status if it
    /// exited in its grace period, else 128 + the signal that ended it (143 for SIGTERM, 137
    /// for the SIGKILL at the end of the grace period).
    Stopped { code: i32 },
    /// Its resident memory exceeded the limit; the group was killed.
    OutOfMemory,
}

/// A started run. Clone-free: share it behind an `Arc`.
pub struct Run {
    pid: u32,
    stop: watch::Sender<bool>,
    ended: watch::Receiver<Option<RunEnd>>,
}

impl Run {
    /// The process id (also its group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the run to stop: SIGTERM now, SIGKILL after the grace period.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// How it ended, once it has (and its log was written).
    pub fn ended(&self) -> Option<RunEnd> {
        self.ended.borrow().clone()
    }

    /// Waits until the run has ended and its log was written.
    pub async fn wait(&self) -> RunEnd {
        let mut ended = self.ended.clone();
        let end = ended.wait_for(Option::is_some).await;
        end.ok()
            .and_then(|e| e.clone())
            .unwrap_or(RunEnd::Signaled(9))
    }
}

/// The variable naming the server a run belongs to; see [`Processes::new`].
const OWNER_VAR: &str = "TSUMIKI_RUN_OWNER";

/// Every run-to-completion process of the server, so shutdown can kill them all.
pub struct Processes {
    clock: Arc<Clock>,
    logs: Arc<dyn LogSink>,
    owner: String,
    running: Arc<Mutex<HashMap<u64, u32>>>,
    next: AtomicU64,
    closed: AtomicBool,
}

impl Processes {
    /// `owner` names this server's runs (its data directory): every run carries it in its
    /// environment, so processes that a `kill -9` of an earlier server on the same data left
    /// behind (a run's children outlive it: the parent-death signal reaches only the run's
    /// own process) are found and killed here, before anything new starts.
    pub fn new(clock: Arc<Clock>, logs: Arc<dyn LogSink>, owner: &str) -> Arc<Processes> {
        let reaped = reap_orphans(owner);
        if reaped > 0 {
            tracing::warn!(
                reaped,
                "Killed processes of runs a previous server left behind."
            );
        }
        Arc::new(Processes {
            clock,
            logs,
            owner: owner.to_string(),
            running: Arc::new(Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// How many runs are alive.
    pub fn running(&self) -> usize {
        self.running.lock().len()
    }

    /// Kills every run's process group (server shutdown); no run starts afterwards.
    pub fn stop_all(&self) {
        self.closed.store(true, Ordering::Release);
        for pid in self.running.lock().drain().map(|(_, pid)| pid) {
            sandbox::kill_group(pid);
        }
    }

    /// Starts `spec`. An error means no process was started (the program is missing, say).
    pub fn spawn(&self, spec: ProcessSpec) -> std::io::Result<Arc<Run>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the server is stopping"));
        }
        std::fs::create_dir_all(&spec.work_dir)?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.work_dir)
            .env_clear()
            .envs(&spec.env)
            .env(OWNER_VAR, &self.owner)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let target = |t: &StreamTarget| LogTarget {
            account: spec.account.clone(),
            region: spec.region.clone(),
            group: t.group.clone(),
            stream: t.stream.clone(),
        };
        // Pipes first: the process's ends go into `cmd`, ours become outputs after spawn.
        let mut readers = Vec::new();
        match &spec.logs {
            RunLogs::Merged(t) => {
                let (r, w) = std::io::pipe()?;
                let w2 = w.try_clone()?;
                cmd.stdout(w).stderr(w2);
                readers.push((r, target(t)));
            }
            RunLogs::Split { stdout, stderr } => {
                let (r1, w1) = std::io::pipe()?;
                let (r2, w2) = std::io::pipe()?;
                cmd.stdout(w1).stderr(w2);
                readers.push((r1, target(stdout)));
                readers.push((r2, target(stderr)));
            }
            RunLogs::Discard => {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        sandbox::confine_run(&mut cmd, spec.storage_mb, RUN_NICENESS);
        let child = cmd.spawn();
        // Our copies of the pipes' write ends must close, or the pipes never report EOF.
        drop(cmd);
        let child = child?;
        let pid = child.id().unwrap_or(0);
        let mut outputs = Vec::new();
        for (reader, target) in readers {
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(
                std::os::fd::OwnedFd::from(reader),
            )?;
            outputs.push(Output::with_writer(
                pipe,
                self.clock.clone(),
                self.logs.clone(),
                target,
                true,
            ));
        }
        if let Some((first, _)) = outputs.first() {
            for line in &spec.preamble {
                first.push(line.clone());
            }
            first.flush();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running.lock().insert(id, pid);
        let (stop, stop_rx) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(None);
        let run = Arc::new(Run { pid, stop, ended });
        tokio::spawn(supervise(Supervised {
            child,
            pid,
            spec,
            clock: self.clock.clone(),
            outputs,
            stop: stop_rx,
            ended: ended_tx,
            running: self.running.clone(),
            id,
        }));
        tracing::debug!(pid, "run started");
        Ok(run)
    }
}

struct Supervised {
    child: tokio::process::Child,
    pid: u32,
    spec: ProcessSpec,
    clock: Arc<Clock>,
    outputs: Vec<(Arc<Output>, tokio::task::JoinHandle<()>)>,
    stop: watch::Receiver<bool>,
    ended: watch::Sender<Option<RunEnd>>,
    running: Arc<Mutex<HashMap<u64, u32>>>,
    id: u64,
}

async fn supervise(s: Supervised) {
    let Supervised {
        mut child,
        pid,
        spec,
        clock,
        outputs,
        mut stop,
        ended,
        running,
        id,
    } = s;
    let deadline = async {
        match spec.deadline_ms {
            Some(d) => clock.sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let limit = spec.memory_mb * 1024 * 1024;
    enum Why {
        Exit(RunEnd),
        Deadline,
        Stop,
        Memory,
    }
    let why = tokio::select! {
        status = child.wait() => Why::Exit(exit_of(status)),
        _ = deadline => Why::Deadline,
        _ = stop.wait_for(|s| *s) => Why::Stop,
        _ = watch_memory(pid, limit) => Why::Memory,
    };
    let end = match why {
        Why::Exit(end) => end,
        Why::Deadline => {
            sandbox::kill_group(pid);
            RunEnd::TimedOut
        }
        Why::Stop => {
            sandbox::terminate_group(pid);
            let code = tokio::select! {
                status = child.wait() => match exit_of(status) {
                    RunEnd::Exited(code) => code,
                    RunEnd::Signaled(sig) => 128 + sig,
                    _ => 137,
                },
                _ = Clock::pause_real(spec.stop_grace) => 137,
            };
            RunEnd::Stopped { code }
        }
        Why::Memory => {
            sandbox::kill_group(pid);
            RunEnd::OutOfMemory
        }
    };
    // Whatever the main process left behind dies with it, before the run counts as ended:
    // a stopped task or job must hold no process once its caller sees it stopped.
    sandbox::kill_group(pid);
    let _ = child.wait().await;
    for _ in 0..GROUP_EXIT_POLLS {
        if !sandbox::group_alive(pid) {
            break;
        }
        Clock::pause_real(GROUP_EXIT_POLL).await;
    }
    running.lock().remove(&id);
    for (output, written) in outputs {
        tokio::select! {
            _ = output.finish() => {}
            _ = Clock::pause_real(LOG_DRAIN_LIMIT) => {}
        }
        drop(output);
        tokio::select! {
            _ = written => {}
            _ = Clock::pause_real(LOG_DRAIN_LIMIT) => {}
        }
    }
    if !spec.keep_work_dir {
        let _ = std::fs::remove_dir_all(&spec.work_dir);
    }
    tracing::debug!(pid, ?end, "run ended");
    let _ = ended.send(Some(end));
}

/// Kills every process whose environment names `owner` as its server; answers how many.
fn reap_orphans(owner: &str) -> usize {
    let wanted = format!("{OWNER_VAR}={owner}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    killed
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> RunEnd {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => RunEnd::Exited(code),
            (None, Some(sig)) => RunEnd::Signaled(sig),
            _ => RunEnd::Signaled(0),
        },
        Err(_) => RunEnd::Signaled(0),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tsumiki_core::AwsError;
    use tsumiki_ports::LogEvent;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(String, String)>>);

    #[async_trait]
    impl LogSink for Collect {
        async fn append(
            &self,
            _account: &str,
            _region: &str,
            group: &str,
            _stream: &str,
            events: Vec<LogEvent>,
        ) -> Result<(), AwsError> {
            let mut all = self.0.lock();
            for e in events {
                all.push((group.to_string(), e.message));
            }
            Ok(())
        }
    }

    fn spec(dir: &std::path::Path, script: &str) -> ProcessSpec {
        ProcessSpec {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            work_dir: dir.join(uuid::Uuid::new_v4().to_string()),
            memory_mb: 512,
            storage_mb: 100,
            deadline_ms: None,
            stop_grace: Duration::from_millis(200),
            logs: RunLogs::Split {
                stdout: StreamTarget {
                    group: "out".into(),
                    stream: "s".into(),
                },
                stderr: StreamTarget {
                    group: "err".into(),
                    stream: "s".into(),
                },
            },
            preamble: vec!["hello from tsumiki".into()],
            keep_work_dir: false,
        }
    }

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    }

    #[tokio::test]
    async fn exit_code_and_both_streams_are_reported() {
        let sink = Arc::new(Collect::default());
        let procs = Processes::new(
            Arc::new(Clock::manual()),
            sink.clone(),
            &uuid::Uuid::new_v4().to_string(),
        );
        let dir = std::env::temp_dir().join("tsumiki-jobs-test");
        let run = procs
            .spawn(spec(
                &dir,
                "echo out1; echo err1 >&2; awk '{print \"nice\", $19}' /proc/$$/stat; exit 3",
            ))
            .unwrap();
        assert_eq!(run.wait().await, RunEnd::Exited(3));
        let lines = sink.0.lock().clone();
        assert!(lines.contains(&("out".into(), "hello from tsumiki".into())));
        assert!(lines.contains(&("out".into(), "out1".into())));
        assert!(lines.contains(&("err".into(), "err1".into())));
        assert!(lines.contains(&("out".into(), format!("nice {RUN_NICENESS}"))));
        assert_eq!(procs.running(), 0);
    }

    #[tokio::test]
    async fn timeout_on_the_clock_kills_the_whole_group() {
        let sink = Arc::new(Collect::default());
        let clock = Arc::new(Clock::manual());
        let procs = Processes::new(
            clock.clone(),
            sink.clone(),
            &uuid::Uuid::new_v4().to_string(),
        );
        let dir = std::env::temp_dir().join("tsumiki-jobs-test");
        let mut s = spec(&dir, "sleep 300 & echo $!; wait");
        s.deadline_ms = Some(clock.now_ms() + 60_000);
        let run = procs.spawn(s).unwrap();
        // The background sleep's pid, printed by the shell.
        let child = loop {
            if let Some((_, l)) = sink
                .0
                .lock()
                .iter()
                .find(|(g, l)| g == "out" && l != "hello from tsumiki")
            {
                break l.parse::<u32>().unwrap();
            }
            Clock::pause_real(Duration::from_millis(20)).await;
        };
        assert!(alive(child));
        clock.advance_ms(60_001).unwrap();
        assert_eq!(run.wait().await, RunEnd::TimedOut);
        assert!(!alive(run.pid()));
        assert!(!alive(child));
    }

    #[tokio::test]
    async fn orphans_of_an_earlier_server_are_reaped() {
        let owner = format!("reap-test-{}", uuid::Uuid::new_v4());
        let mut orphan = std::process::Command::new("sleep")
            .arg("300")
            .env(OWNER_VAR, &owner)
            .spawn()
            .unwrap();
        let _procs = Processes::new(
            Arc::new(Clock::manual()),
            Arc::new(Collect::default()),
            &owner,
        );
        let status = orphan.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    #[tokio::test]
    async fn stop_sends_sigterm_then_sigkill() {
        let sink = Arc::new(Collect::default());
        let procs = Processes::new(
            Arc::new(Clock::manual()),
            sink.clone(),
            &uuid::Uuid::new_v4().to_string(),
        );
        let dir = std::env::temp_dir().join("tsumiki-jobs-test");
        // Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        let run = procs
            .spawn(spec(
                &dir,
                "trap 'echo term' TERM; while true; do sleep 0.05; done",
            ))
            .unwrap();
        Clock::pause_real(Duration::from_millis(100)).await;
        run.stop();
        assert_eq!(run.wait().await, RunEnd::Stopped { code: 137 });
        assert!(!alive(run.pid()));
        assert!(sink.0.lock().iter().any(|(_, l)| l == "term"));
    }

    #[tokio::test]
    async fn a_run_ends_only_after_its_whole_group_is_gone() {
        let procs = Processes::new(
            Arc::new(Clock::manual()),
            Arc::new(Collect::default()),
            &uuid::Uuid::new_v4().to_string(),
        );
        let dir = std::env::temp_dir().join("tsumiki-jobs-group-test");
        // The shell's child outlives the shell unless the group is killed.
        let run = procs
            .spawn(spec(&dir, "sleep 300 & echo started; wait"))
            .unwrap();
        Clock::pause_real(Duration::from_millis(200)).await;
        assert!(sandbox::group_alive(run.pid()));
        run.stop();
        let end = run.wait().await;
        assert!(matches!(end, RunEnd::Stopped { .. }), "{end:?}");
        assert!(!sandbox::group_alive(run.pid()));
    }
}
