//! An environment's stdout and stderr, merged into one pipe (so their lines keep the order the
//! function wrote them in), cut into log events and shipped to its log stream in order.
//!
//! A runtime prints and then posts its response, so when the response arrives the lines are
//! already in the pipe but perhaps not yet read by the pump task. [`Output::drain`] reads what
//! the pipe holds right now without waiting, which makes a `Tail` complete without any delay.

use std::io::ErrorKind;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::unix::pipe::Receiver;
use tokio::sync::mpsc;
use tsumiki_core::Clock;
use tsumiki_ports::{LogEvent, LogSink};

/// CloudWatch Logs' largest event (256 KB less the 26 bytes of per-event overhead).
const MAX_EVENT_BYTES: usize = 262_144 - 26;
/// Ship lines in between invocations once this many have piled up (a chatty long run).
const FLUSH_LINES: usize = 1_000;

pub(crate) struct Output {
    pipe: Receiver,
    clock: Arc<Clock>,
    state: Mutex<State>,
    writer: mpsc::UnboundedSender<Vec<LogEvent>>,
    /// Ship lines as soon as they are read (a job's or task's log streams while it runs;
    /// a function's is shipped at the end of each invocation).
    eager: bool,
}

#[derive(Default)]
struct State {
    partial: Vec<u8>,
    lines: Vec<LogEvent>,
    eof: bool,
}

/// Where an environment's log events go.
pub(crate) struct LogTarget {
    pub account: String,
    pub region: String,
    pub group: String,
    pub stream: String,
}

impl Output {
    pub(crate) fn new(
        pipe: Receiver,
        clock: Arc<Clock>,
        sink: Arc<dyn LogSink>,
        target: LogTarget,
    ) -> Arc<Output> {
        Output::with_writer(pipe, clock, sink, target, false).0
    }

    /// Like [`Output::new`], and also hands back the writer task, which ends once the pipe
    /// reached EOF, the last `Output` handle is gone and every event was appended: a run that
    /// reports its end after awaiting it has its whole log visible.
    pub(crate) fn with_writer(
        pipe: Receiver,
        clock: Arc<Clock>,
        sink: Arc<dyn LogSink>,
        target: LogTarget,
        eager: bool,
    ) -> (Arc<Output>, tokio::task::JoinHandle<()>) {
        let (writer, mut batches) = mpsc::unbounded_channel::<Vec<LogEvent>>();
        // One writer per environment keeps its events in order in the stream.
        let written = tokio::spawn(async move {
            while let Some(events) = batches.recv().await {
                if let Err(e) = sink
                    .append(
                        &target.account,
                        &target.region,
                        &target.group,
                        &target.stream,
                        events,
                    )
                    .await
                {
                    tracing::warn!(group = %target.group, error = %e.message, "log events dropped");
                }
            }
        });
        let output = Arc::new(Output {
            pipe,
            clock,
            state: Mutex::new(State::default()),
            writer,
            eager,
        });
        tokio::spawn(pump(Arc::downgrade(&output)));
        (output, written)
    }

    /// Reads whatever the pipe holds now, without waiting.
    pub(crate) fn drain(&self) {
        let mut state = self.state.lock();
        let mut buf = [0u8; 64 * 1024];
        while !state.eof {
            match self.pipe.try_read(&mut buf) {
                Ok(0) => {
                    state.eof = true;
                    let rest = std::mem::take(&mut state.partial);
                    if !rest.is_empty() {
                        let now = self.clock.now_ms();
                        state.lines.push(event(now, &rest));
                    }
                }
                Ok(n) => {
                    let now = self.clock.now_ms();
                    let State { partial, lines, .. } = &mut *state;
                    partial.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(pos) = partial[start..].iter().position(|&b| b == b'\n') {
                        lines.push(event(now, &partial[start..start + pos]));
                        start += pos + 1;
                    }
                    partial.drain(..start);
                    if partial.len() > MAX_EVENT_BYTES {
                        let long = std::mem::take(partial);
                        lines.push(event(now, &long));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => state.eof = true,
            }
        }
    }

    /// Adds a line of the platform's own (`START`, `END`, `REPORT`).
    pub(crate) fn push(&self, message: String) {
        let now = self.clock.now_ms();
        self.state.lock().lines.push(LogEvent {
            timestamp_ms: now,
            message,
        });
    }

    /// Sends every line so far to the log stream and returns them.
    pub(crate) fn flush(&self) -> Vec<LogEvent> {
        let lines = std::mem::take(&mut self.state.lock().lines);
        if !lines.is_empty() {
            let _ = self.writer.send(lines.clone());
        }
        lines
    }

    /// Reads the pipe to its end and ships every line. The caller bounds the wait: a process
    /// that escaped its group could hold the pipe open.
    pub(crate) async fn finish(&self) {
        loop {
            self.drain();
            if self.state.lock().eof {
                self.flush();
                return;
            }
            if self.pipe.readable().await.is_err() {
                self.flush();
                return;
            }
        }
    }

    fn flush_if_large(&self) {
        let lines = {
            let mut state = self.state.lock();
            if state.lines.len() < FLUSH_LINES {
                return;
            }
            std::mem::take(&mut state.lines)
        };
        let _ = self.writer.send(lines);
    }
}

fn event(now: i64, bytes: &[u8]) -> LogEvent {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let bytes = &bytes[..bytes.len().min(MAX_EVENT_BYTES)];
    LogEvent {
        timestamp_ms: now,
        message: String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reads the pipe as data arrives until the process closes it.
async fn pump(output: std::sync::Weak<Output>) {
    loop {
        let Some(out) = output.upgrade() else {
            return;
        };
        if out.pipe.readable().await.is_err() {
            return;
        }
        out.drain();
        if out.state.lock().eof {
            out.flush();
            return;
        }
        if out.eager {
            out.flush();
        } else {
            out.flush_if_large();
        }
    }
}
