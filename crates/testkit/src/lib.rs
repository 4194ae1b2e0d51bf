//! The end-to-end harness: starts the real `tsumiki` binary on a free port, hands out its
//! endpoint, moves its clock, kills it (gently or with `kill -9`) and restarts it on the same
//! data directory. It sees tsumiki only through the wire and the process.
//!
//! When a test panics, the server's log is printed, so a failure shows what the server saw.
//! The harness stands outside the server, so the one-clock rule does not bind it: it waits on
//! real time for processes and sockets.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep state in memory (the default for tests that do not restart).
    pub in_memory: bool,
    /// `--clock manual`.
    pub manual_clock: bool,
    /// Extra command-line arguments.
    pub args: Vec<String>,
}

/// A running tsumiki server.
pub struct Server {
    binary: PathBuf,
    options: Options,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, unique to this process and call.
pub fn temp_dir(label: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tsumiki-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

impl Server {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_tsumiki")`) and waits until it listens.
    pub fn start(binary: impl AsRef<Path>, options: Options) -> Server {
        let dir = temp_dir("server");
        let mut server = Server {
            binary: binary.as_ref().to_path_buf(),
            options,
            data_dir: dir.join("data"),
            log: dir.join("server.log"),
            child: None,
            endpoint: String::new(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        if self.options.in_memory {
            cmd.arg("--in-memory");
        } else {
            cmd.arg("--data-dir").arg(&self.data_dir);
        }
        if self.options.manual_clock {
            cmd.arg("--clock").arg("manual");
        }
        cmd.args(&self.options.args);
        cmd.env(
            "TSUMIKI_LOG",
            std::env::var("TSUMIKI_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("start the tsumiki binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the first stdout line");
        let endpoint = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "the first stdout line names no endpoint: {first:?}\n{}",
                    self.log_text()
                )
            })
            .to_string();
        self.endpoint = endpoint;
        self.child = Some(child);
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `host:port` of the endpoint.
    pub fn authority(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Starts the server again on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// An HTTP request to the server; returns (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http(self.authority(), method, path, headers, body)
    }

    /// Moves a manual clock forward.
    pub fn advance_clock(&self, seconds: f64) {
        let body = serde_json::json!({"seconds": seconds}).to_string();
        let (status, text) = self.http("POST", "/_tsumiki/clock/advance", &[], body.as_bytes());
        assert_eq!(status, 200, "advancing the clock failed: {text}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- tsumiki server log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        self.kill9();
    }
}

/// A minimal HTTP/1.1 client, so the harness needs no HTTP stack of its own.
pub fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(authority).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set a read timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send the request");
    stream.write_all(body).expect("send the body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` every 20 ms of real time until it returns Some, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
