//! `sqs-load`: drives an SQS endpoint with the AWS SDK for Rust and prints one JSON line.
//!
//! ```text
//! sqs-load send  --endpoint http://127.0.0.1:4566 --clients 8 --seconds 5
//! sqs-load batch --endpoint http://127.0.0.1:4566 --clients 8 --messages 100000
//! sqs-load drain --endpoint http://127.0.0.1:4566 --clients 2 --prefill 50000
//! ```
//!
//! Modes: `send` (SendMessage, one message per call), `batch` (SendMessageBatch of 10), `drain`
//! (ReceiveMessage of up to 10, then DeleteMessageBatch of what came, until the queue answers
//! empty). Each of `--clients` tasks has its own SDK client (its own connection pool) and
//! keeps one call in flight. Every client makes a few untimed calls first (connections, queue
//! lookup), then all start together; the window ends after `--seconds` or once `--messages`
//! messages were sent (or, for drain, received and deleted).
//!
//! The line: mode, clients, ops (API calls), messages, errors, seconds, ops_per_s, msgs_per_s,
//! p50_ms / p99_ms / max_ms (per call), and with `--server-pid` the server's CPU seconds over
//! the window (utime + stime from /proc/PID/stat) and its CPU microseconds per message; always
//! this client's own CPU over the window (client and server share the machine's cores).
//!
//! A benchmark client, not server code: it reads the wall clock directly (the one-clock rule is
//! for the server).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tsumiki_bench::{percentile_ms, proc_cpu_seconds, round3};

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::sync::Barrier;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    /// SendMessage, one message per call.
    Send,
    /// SendMessageBatch, 10 messages per call.
    Batch,
    /// ReceiveMessage (up to 10) + DeleteMessageBatch until the queue is empty.
    Drain,
}

#[derive(Parser, Debug)]
#[command(
    name = "sqs-load",
    about = "SQS load client (AWS SDK for Rust); prints one JSON line."
)]
struct Args {
    /// What to do.
    #[arg(value_enum)]
    mode: Mode,
    /// The endpoint, e.g. http://127.0.0.1:4566.
    #[arg(long)]
    endpoint: String,
    /// Queue name (created if missing).
    #[arg(long, default_value = "sqs-load")]
    queue: String,
    /// Concurrent clients, each with its own SDK client and one call in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Length of the timed window.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Stop after this many messages (sent, or drained) instead of at --seconds (whichever
    /// comes first; --seconds still bounds the run).
    #[arg(long)]
    messages: Option<u64>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_size: usize,
    /// drain: first fill the queue with this many messages (untimed, SendMessageBatch).
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Tokio worker threads of this client (default: 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Server process to measure: CPU time (utime+stime of the process) over the window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Label copied into the JSON line.
    #[arg(long)]
    label: Option<String>,
}

/// What one client did in the window.
#[derive(Default)]
struct Tally {
    ops: u64,
    messages: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn record(&mut self, started: Instant) {
        self.ops += 1;
        let us = started.elapsed().as_micros();
        self.latencies_us
            .push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// Shared between the clients: the message budget and the stop flag.
struct Shared {
    /// Messages claimed so far (claimed before sending, so the total never exceeds the budget).
    claimed: AtomicU64,
    budget: u64,
    stop: AtomicBool,
    deadline: std::sync::OnceLock<Instant>,
}

impl Shared {
    /// Claims up to `want` messages of the budget; 0 means stop.
    fn claim(&self, want: u64) -> u64 {
        if self.stop.load(Ordering::Relaxed)
            || self.deadline.get().is_some_and(|d| Instant::now() >= *d)
        {
            return 0;
        }
        let before = self.claimed.fetch_add(want, Ordering::Relaxed);
        if before >= self.budget {
            return 0;
        }
        want.min(self.budget - before)
    }
}

fn client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        // A benchmark counts failures rather than hiding them behind retries.
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn err_text<E: std::fmt::Debug>(e: &aws_sdk_sqs::error::SdkError<E>) -> String {
    let mut s = format!("{e:?}");
    s.truncate(300);
    s
}

fn body(size: usize, tag: &str) -> String {
    let mut b = String::with_capacity(size.max(tag.len()));
    b.push_str(tag);
    while b.len() < size {
        b.push('x');
    }
    b
}

async fn send_loop(
    c: aws_sdk_sqs::Client,
    url: String,
    shared: Arc<Shared>,
    id: usize,
    size: usize,
) -> Tally {
    let mut t = Tally::default();
    let mut n = 0u64;
    while shared.claim(1) == 1 {
        let started = Instant::now();
        let r = c
            .send_message()
            .queue_url(&url)
            .message_body(body(size, &format!("c{id}-{n}-")))
            .send()
            .await;
        t.record(started);
        n += 1;
        match r {
            Ok(_) => t.messages += 1,
            Err(e) => t.error(err_text(&e)),
        }
    }
    t
}

fn batch_entries(count: u64, size: usize, tag: &str) -> Vec<SendMessageBatchRequestEntry> {
    (0..count)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body(size, &format!("{tag}-{i}-")))
                .build()
                .expect("id and body are set")
        })
        .collect()
}

async fn batch_loop(
    c: aws_sdk_sqs::Client,
    url: String,
    shared: Arc<Shared>,
    id: usize,
    size: usize,
) -> Tally {
    let mut t = Tally::default();
    let mut n = 0u64;
    loop {
        let count = shared.claim(10);
        if count == 0 {
            break;
        }
        let entries = batch_entries(count, size, &format!("c{id}-{n}"));
        n += 1;
        let started = Instant::now();
        let r = c
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await;
        t.record(started);
        match r {
            Ok(out) => {
                t.messages += out.successful().len() as u64;
                if !out.failed().is_empty() {
                    t.error(format!(
                        "{} entries failed: {:?}",
                        out.failed().len(),
                        out.failed().first()
                    ));
                }
            }
            Err(e) => t.error(err_text(&e)),
        }
    }
    t
}

async fn drain_loop(c: aws_sdk_sqs::Client, url: String, shared: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut empties = 0;
    loop {
        if shared.stop.load(Ordering::Relaxed)
            || shared.deadline.get().is_some_and(|d| Instant::now() >= *d)
        {
            break;
        }
        if shared.claimed.load(Ordering::Relaxed) >= shared.budget {
            break;
        }
        let started = Instant::now();
        let r = c
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(60)
            .send()
            .await;
        t.record(started);
        let msgs = match r {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                t.error(err_text(&e));
                continue;
            }
        };
        if msgs.is_empty() {
            empties += 1;
            // Three empty answers in a row: the queue is drained (short polls sample servers).
            if empties >= 3 {
                break;
            }
            continue;
        }
        empties = 0;
        let entries: Vec<_> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        let started = Instant::now();
        let r = c
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await;
        t.record(started);
        match r {
            Ok(out) => {
                let ok = out.successful().len() as u64;
                t.messages += ok;
                shared.claimed.fetch_add(ok, Ordering::Relaxed);
                if !out.failed().is_empty() {
                    t.error(format!(
                        "{} deletes failed: {:?}",
                        out.failed().len(),
                        out.failed().first()
                    ));
                }
            }
            Err(e) => t.error(err_text(&e)),
        }
    }
    t
}

async fn prefill(
    c: &aws_sdk_sqs::Client,
    url: &str,
    total: u64,
    clients: usize,
    size: usize,
) -> Result<(), String> {
    let per = total.div_ceil(clients.max(1) as u64);
    let mut tasks = Vec::new();
    for k in 0..clients.max(1) {
        let c = c.clone();
        let url = url.to_string();
        let mine = per.min(total.saturating_sub(per * k as u64));
        tasks.push(tokio::spawn(async move {
            let mut left = mine;
            let mut n = 0u64;
            while left > 0 {
                let count = left.min(10);
                let entries = batch_entries(count, size, &format!("p{k}-{n}"));
                let out = c
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| err_text(&e))?;
                if !out.failed().is_empty() {
                    return Err(format!("prefill: {} entries failed", out.failed().len()));
                }
                left -= count;
                n += 1;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let clients = args.clients.max(1);
    let admin = client(&args.endpoint);
    let url = admin
        .create_queue()
        .queue_name(&args.queue)
        .send()
        .await
        .map_err(|e| format!("CreateQueue {}: {}", args.queue, err_text(&e)))?
        .queue_url
        .ok_or("CreateQueue returned no QueueUrl")?;
    if args.prefill > 0 {
        prefill(&admin, &url, args.prefill, clients, args.body_size).await?;
    }

    let shared = Arc::new(Shared {
        claimed: AtomicU64::new(0),
        budget: args.messages.unwrap_or(u64::MAX),
        stop: AtomicBool::new(false),
        deadline: std::sync::OnceLock::new(),
    });
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for id in 0..clients {
        let c = client(&args.endpoint);
        let url = url.clone();
        let shared = shared.clone();
        let barrier = barrier.clone();
        let (mode, size) = (args.mode, args.body_size);
        tasks.push(tokio::spawn(async move {
            // Untimed warm-up: opens this client's connection, primes the SDK's caches.
            for _ in 0..3 {
                let _ = c.get_queue_attributes().queue_url(&url).send().await;
            }
            barrier.wait().await;
            match mode {
                Mode::Send => send_loop(c, url, shared, id, size).await,
                Mode::Batch => batch_loop(c, url, shared, id, size).await,
                Mode::Drain => drain_loop(c, url, shared).await,
            }
        }));
    }
    let cpu0 = args.server_pid.and_then(proc_cpu_seconds);
    let own0 = proc_cpu_seconds(std::process::id());
    let start = Instant::now();
    let _ = shared
        .deadline
        .set(start + Duration::from_secs_f64(args.seconds));
    barrier.wait().await;
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await.map_err(|e| e.to_string())?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(proc_cpu_seconds);
    let own1 = proc_cpu_seconds(std::process::id());
    shared.stop.store(true, Ordering::Relaxed);

    let ops: u64 = tallies.iter().map(|t| t.ops).sum();
    let messages: u64 = tallies.iter().map(|t| t.messages).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let first_error = tallies.iter().find_map(|t| t.first_error.clone());
    let mut lat: Vec<u32> = tallies.into_iter().flat_map(|t| t.latencies_us).collect();
    lat.sort_unstable();
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let client_cpu = match (own0, own1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let per = |n: u64| {
        server_cpu
            .filter(|_| n > 0)
            .map(|s| round3(s / n as f64 * 1e6))
    };
    Ok(json!({
        "tool": "sqs-load",
        "label": args.label,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "clients": clients,
        "ops": ops,
        "messages": messages,
        "errors": errors,
        "first_error": first_error,
        "seconds": round3(seconds),
        "ops_per_s": round3(ops as f64 / seconds),
        "msgs_per_s": round3(messages as f64 / seconds),
        "p50_ms": round3(percentile_ms(&lat, 50.0)),
        "p99_ms": round3(percentile_ms(&lat, 99.0)),
        "max_ms": round3(percentile_ms(&lat, 100.0)),
        "server_pid": args.server_pid,
        "server_cpu_s": server_cpu.map(round3),
        "server_cpu_us_per_op": per(ops),
        "server_cpu_us_per_msg": per(messages),
        "client_cpu_s": client_cpu.map(round3),
        "client_cpu_us_per_msg": client_cpu.filter(|_| messages > 0).map(|c| round3(c / messages as f64 * 1e6)),
    }))
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sqs-load: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqs-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
