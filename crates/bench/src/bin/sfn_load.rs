//! `sfn-load`: Step Functions executions of a 10-Pass-state machine through the API, with the
//! AWS SDK for Rust and several clients at once; prints one JSON line.
//!
//! ```text
//! sfn-load --endpoint http://127.0.0.1:4566 --kind express  --clients 8 --executions 20000 --server-pid PID
//! sfn-load --endpoint http://127.0.0.1:4566 --kind standard --clients 8 --executions 5000  --server-pid PID
//! sfn-load --endpoint http://127.0.0.1:4566 --kind describe --clients 8 --executions 20000 --server-pid PID
//! ```
//!
//! `express`: StartSyncExecution on an EXPRESS machine; each answer must be SUCCEEDED with the
//! output `9`. `standard`: StartExecution on a STANDARD machine; the window ends once every
//! started execution has ended (ListExecutions with `statusFilter: RUNNING`, polled every
//! 20 ms), and afterwards every one must be SUCCEEDED. So the server CPU per execution counts
//! the start call, all ten transitions, their durable commits and the end of the execution,
//! without a DescribeExecution per execution (one client polling each execution measures its
//! polls, see `bench/states_bench.py`).
//!
//! Each of `--clients` tasks has its own SDK client and one call in flight. With
//! `--server-pid`, the server's utime + stime over the window (`/proc/PID/stat`) divided by the
//! executions.
//!
//! A benchmark client, not server code: it reads the wall clock directly.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tsumiki_bench::{percentile_ms, proc_cpu_seconds, round3};

use aws_sdk_sfn::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_sfn::config::retry::RetryConfig;
use aws_sdk_sfn::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_sfn::types::{ExecutionStatus, StateMachineType, SyncExecutionStatus};
use clap::{Parser, ValueEnum};
use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Kind {
    Express,
    Standard,
    /// DescribeStateMachine (of an Express machine) per call: what any call costs the server
    /// through the same client, HTTP stack and protocol layer, with no execution.
    Describe,
}

#[derive(Parser, Debug)]
#[command(
    name = "sfn-load",
    about = "Step Functions load client; prints one JSON line."
)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// Concurrent clients, each with its own SDK client and one call in flight.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Executions in the timed window.
    #[arg(long, default_value_t = 5000)]
    executions: u64,
    /// Tokio worker threads of this client.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Server process whose CPU time to measure over the window.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    label: Option<String>,
}

/// StartSyncExecution goes to the `sync-` host prefix, which a loopback endpoint does not have,
/// and the Rust SDK has no switch for it: take the prefix off before signing.
#[derive(Debug)]
struct NoHostPrefix;

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let req = context.request_mut();
        let uri = req.uri().replacen("://sync-", "://", 1);
        req.set_uri(uri)?;
        Ok(())
    }
}

fn client(endpoint: &str) -> aws_sdk_sfn::Client {
    let config = aws_sdk_sfn::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("123456789012", "x", None, None, "bench"))
        .retry_config(RetryConfig::disabled())
        .interceptor(NoHostPrefix)
        .build();
    aws_sdk_sfn::Client::from_conf(config)
}

/// The machine of `bench/states_bench.py`: ten Pass states, each with Parameters and OutputPath.
fn definition() -> String {
    let mut states = serde_json::Map::new();
    for i in 0..10 {
        let mut s =
            json!({"Type": "Pass", "Parameters": {"i": i, "prev.$": "$"}, "OutputPath": "$.i"});
        if i == 9 {
            s["End"] = json!(true);
        } else {
            s["Next"] = json!(format!("S{}", i + 1));
        }
        states.insert(format!("S{i}"), s);
    }
    json!({"StartAt": "S0", "States": states}).to_string()
}

async fn one(c: &aws_sdk_sfn::Client, kind: Kind, arn: &str, n: u64) -> Result<(), String> {
    let input = format!("{{\"n\":{n}}}");
    match kind {
        Kind::Express => {
            let out = c
                .start_sync_execution()
                .state_machine_arn(arn)
                .input(input)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            if out.status != SyncExecutionStatus::Succeeded || out.output.as_deref() != Some("9") {
                return Err(format!("{:?} {:?}", out.status, out.output));
            }
        }
        Kind::Describe => {
            let out = c
                .describe_state_machine()
                .state_machine_arn(arn)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            if out.state_machine_arn != arn {
                return Err(format!("described {}", out.state_machine_arn));
            }
        }
        Kind::Standard => {
            c.start_execution()
                .state_machine_arn(arn)
                .input(input)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(())
}

async fn count(c: &aws_sdk_sfn::Client, arn: &str, status: ExecutionStatus) -> anyhow::Result<u64> {
    let mut n = 0;
    let mut pages = c
        .list_executions()
        .state_machine_arn(arn)
        .status_filter(status)
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        n += page?.executions.len() as u64;
    }
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let admin = client(&args.endpoint);
    let kind = match args.kind {
        Kind::Express | Kind::Describe => StateMachineType::Express,
        Kind::Standard => StateMachineType::Standard,
    };
    let name = format!(
        "sfn-load-{}-{}",
        kind.as_str().to_lowercase(),
        std::process::id()
    );
    let arn = admin
        .create_state_machine()
        .name(name)
        .definition(definition())
        .role_arn("arn:aws:iam::123456789012:role/sfn-load")
        .r#type(kind)
        .send()
        .await?
        .state_machine_arn;
    let clients: Vec<_> = (0..args.clients).map(|_| client(&args.endpoint)).collect();
    // Untimed: each client opens its connection with two executions.
    for c in &clients {
        for n in 0..2 {
            one(c, args.kind, &arn, n)
                .await
                .map_err(anyhow::Error::msg)?;
        }
    }
    let warmup = 2 * args.clients as u64;
    if args.kind == Kind::Standard {
        while count(&admin, &arn, ExecutionStatus::Running).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = args.server_pid.and_then(proc_cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let next = next.clone();
        let arn = arn.clone();
        let (kind, budget) = (args.kind, args.executions);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= budget {
                    break;
                }
                let t = Instant::now();
                if let Err(e) = one(&c, kind, &arn, n).await {
                    errors.push(e);
                }
                latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    let calls_done = started.elapsed();
    if args.kind == Kind::Standard {
        while count(&admin, &arn, ExecutionStatus::Running).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(proc_cpu_seconds);
    let succeeded = if args.kind == Kind::Standard {
        Some(count(&admin, &arn, ExecutionStatus::Succeeded).await? - warmup)
    } else {
        None
    };
    latencies.sort_unstable();
    let executions = args.executions;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let line = json!({
        "label": args.label,
        "kind": format!("{:?}", args.kind).to_lowercase(),
        "clients": args.clients,
        "executions": executions,
        "errors": errors.len(),
        "first_error": errors.first().map(|e| e.chars().take(300).collect::<String>()),
        "succeeded": succeeded,
        "calls_seconds": round3(calls_done.as_secs_f64()),
        "seconds": round3(seconds),
        "executions_per_s": round3(executions as f64 / seconds),
        "call_p50_ms": round3(percentile_ms(&latencies, 50.0)),
        "call_p99_ms": round3(percentile_ms(&latencies, 99.0)),
        "server_cpu_s": cpu.map(round3),
        "server_cpu_us_per_execution": cpu.map(|c| round3(c / executions as f64 * 1e6)),
    });
    println!("{line}");
    if !errors.is_empty() || succeeded.is_some_and(|s| s != executions) {
        anyhow::bail!("not every execution succeeded");
    }
    Ok(())
}
