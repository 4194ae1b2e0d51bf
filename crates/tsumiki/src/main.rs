//! The tsumiki binary: parses the command line, opens the store, starts every service and
//! serves them all on one port. The only crate that names concrete implementations.

mod logs_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tsumiki_core::Clock;
use tsumiki_gateway::{Gateway, GatewayConfig, Served};
use tsumiki_protocol::Model;
use tsumiki_store::{Store, SyncMode};

#[derive(Parser)]
#[command(
    name = "tsumiki",
    version,
    about = "The serverless cloud in one binary."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every tsumiki service on one port.
    Serve(ServeArgs),
    /// Print a function's CloudWatch Logs (all streams, by time) from a running server.
    Logs(logs_cmd::LogsArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ClockMode {
    Real,
    Manual,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sync {
    /// Commits survive a process crash (kill -9).
    Normal,
    /// Commits survive an operating-system crash too (fsync on every group commit).
    Full,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the first stdout line names it).
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Directory of the durable store.
    #[arg(long, default_value = ".tsumiki")]
    data_dir: PathBuf,
    /// Keep all state in memory; nothing survives a restart.
    #[arg(long)]
    in_memory: bool,
    /// `manual` lets POST /_tsumiki/clock/advance move time forward, for tests.
    #[arg(long, value_enum, default_value_t = ClockMode::Real)]
    clock: ClockMode,
    /// Account of requests whose access key is not a 12-digit account id.
    #[arg(long, default_value = "000000000000")]
    default_account: String,
    /// Region of requests that carry no SigV4 credential scope.
    #[arg(long, default_value = "us-east-1")]
    default_region: String,
    /// Threads that serve requests; 0 picks one on machines with two cores or fewer and one
    /// per core otherwise.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// How hard each commit pushes data to disk.
    #[arg(long, value_enum, default_value_t = Sync::Normal)]
    sync: Sync,
    /// ECS: run containers of image NAME as COMMAND on this machine (repeatable).
    #[arg(long = "task-image", value_name = "NAME=COMMAND")]
    task_image: Vec<String>,
}

/// mimalloc: glibc's malloc (with its consolidation passes) cost a sixth of the CPU of a
/// small request; thread-local free lists suit a server that allocates per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TSUMIKI_LOG")
                // s3s logs every client error (NoSuchKey, ...) at error level.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let workers = match args.workers {
                // On small machines one thread wins: waking threads across cores costs more
                // than the work they would share (measured in bench/README.md).
                0 if std::thread::available_parallelism().map_or(1, |n| n.get()) <= 2 => 1,
                n => n,
            };
            let mut builder = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if workers > 1 {
                    b.worker_threads(workers);
                }
                b
            };
            let runtime = builder
                .enable_all()
                .thread_name("tsumiki")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(args))
        }
        Command::Logs(args) => logs_cmd::run(args),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.default_account.len() != 12 || !args.default_account.bytes().all(|b| b.is_ascii_digit())
    {
        anyhow::bail!(
            "--default-account must be 12 digits, got {:?}",
            args.default_account
        );
    }
    let clock = Arc::new(match args.clock {
        ClockMode::Real => Clock::real(),
        ClockMode::Manual => Clock::manual(),
    });
    let sync = match args.sync {
        Sync::Normal => SyncMode::Normal,
        Sync::Full => SyncMode::Full,
    };
    let data_dir = (!args.in_memory).then_some(args.data_dir.as_path());
    let store = Store::open(data_dir, sync)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;

    let sqs = tsumiki_sqs::Sqs::start(store.clone(), clock.clone())
        .await
        .context("loading SQS")?;
    let logs = tsumiki_logs::Logs::start(store.clone(), clock.clone())
        .await
        .context("loading CloudWatch Logs")?;
    let kinesis = tsumiki_kinesis::Kinesis::start(store.clone(), clock.clone())
        .await
        .context("loading Kinesis")?;
    let dynamodb = tsumiki_dynamodb::DynamoDb::start(store.clone(), clock.clone())
        .await
        .context("loading DynamoDB")?;
    // Unpacked code and environments' /tmp live beside the store, or in a temporary directory
    // that goes away with an in-memory server.
    let (work_dir, _scratch) = match data_dir {
        Some(dir) => (dir.to_path_buf(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("tsumiki-{}", std::process::id()));
            (dir.clone(), Some(Scratch(dir)))
        }
    };
    let compute = tsumiki_compute::Compute::new(
        tsumiki_compute::ComputeConfig {
            work_dir: work_dir.join("compute"),
            idle_timeout_ms: 10 * 60 * 1000,
        },
        clock.clone(),
        logs.clone(),
    )
    .context("preparing execution environments")?;
    // Glue job runs and ECS tasks: run-to-completion processes, all killed at shutdown; the
    // data directory names their owner, so leftovers of a killed server are reaped here.
    let processes = tsumiki_compute::jobs::Processes::new(
        clock.clone(),
        logs.clone(),
        &work_dir.display().to_string(),
    );
    let glue = tsumiki_glue::Glue::start(
        store.clone(),
        clock.clone(),
        processes.clone(),
        work_dir.join("glue"),
    )
    .await
    .map_err(|e| anyhow::anyhow!("loading Glue: {}", e.message))?;
    let images = tsumiki_ecs::images::Images::finding_python(&args.task_image)
        .map_err(anyhow::Error::msg)?;
    let ecs = tsumiki_ecs::Ecs::start(
        store.clone(),
        clock.clone(),
        processes.clone(),
        work_dir.join("ecs"),
        images,
    )
    .await
    .map_err(|e| anyhow::anyhow!("loading ECS: {}", e.message))?;
    let s3 = tsumiki_s3::S3::start(
        store.clone(),
        clock.clone(),
        tsumiki_s3::S3Config {
            dir: work_dir.join("s3"),
            // In-memory servers lose everything at exit anyway.
            fsync: data_dir.is_some(),
        },
    )
    .await
    .context("loading S3")?;
    let lambda = tsumiki_lambda::Lambda::start(
        store.clone(),
        clock.clone(),
        compute.clone(),
        work_dir.join("lambda").join("code"),
    )
    .await
    .context("loading Lambda")?;
    let function_invoker: std::sync::Weak<dyn tsumiki_ports::FunctionInvoker> =
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>;
    let async_invoker =
        tsumiki_triggers::AsyncInvoker::start(store.clone(), clock.clone(), function_invoker)
            .await
            .context("loading asynchronous invocations")?;
    lambda.set_object_store(s3.clone());
    lambda.set_async_invoke(async_invoker.clone());
    let queue_pollers = tsumiki_triggers::QueuePollers::new(
        clock.clone(),
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>,
    );
    let shard_pollers = tsumiki_triggers::ShardPollers::new(
        store.clone(),
        clock.clone(),
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>,
    );
    lambda.set_pollers(tsumiki_triggers::PollerRouter::new(
        queue_pollers.clone(),
        shard_pollers.clone(),
    ));
    let sns = tsumiki_sns::Sns::start(
        store.clone(),
        clock.clone(),
        work_dir.join("sns").join("mailbox"),
    )
    .await
    .context("loading SNS")?;
    sns.set_async_invoke(async_invoker.clone());
    let firehose = tsumiki_firehose::Firehose::start(store.clone(), clock.clone())
        .await
        .context("loading Firehose")?;
    firehose.set_object_store(s3.clone());
    firehose.set_invoker(
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>
    );
    let mut served = vec![
        Served {
            model: Arc::new(Model::from_json("lambda", tsumiki_lambda::MODEL_JSON)?),
            service: lambda.clone(),
        },
        Served {
            model: Arc::new(Model::from_json("sqs", tsumiki_sqs::MODEL_JSON)?),
            service: sqs,
        },
        Served {
            model: Arc::new(Model::from_json("sts", tsumiki_sts::MODEL_JSON)?),
            service: Arc::new(tsumiki_sts::Sts::new(clock.clone())),
        },
        Served {
            model: Arc::new(Model::from_json("logs", tsumiki_logs::MODEL_JSON)?),
            service: logs.clone(),
        },
        Served {
            model: Arc::new(Model::from_json("kinesis", tsumiki_kinesis::MODEL_JSON)?),
            service: kinesis,
        },
        // Streams before DynamoDB: both sign as `dynamodb`, and the later one owns that name.
        Served {
            model: Arc::new(Model::from_json(
                "dynamodbstreams",
                tsumiki_dynamodb::STREAMS_MODEL_JSON,
            )?),
            service: dynamodb.streams(),
        },
        Served {
            model: Arc::new(Model::from_json("dynamodb", tsumiki_dynamodb::MODEL_JSON)?),
            service: dynamodb.clone(),
        },
        Served {
            model: Arc::new(Model::from_json("sns", tsumiki_sns::MODEL_JSON)?),
            service: sns.clone(),
        },
        Served {
            model: Arc::new(Model::from_json("firehose", tsumiki_firehose::MODEL_JSON)?),
            service: firehose.clone(),
        },
    ];
    // EventBridge and Scheduler deliver to the other services by name.
    let mut targets = tsumiki_ports::Services::default();
    for s in &served {
        targets.register(s.service.clone());
    }
    // Rule targets: ECS clusters (RunTask) and Glue workflows (EVENT triggers).
    targets.register(ecs.clone());
    targets.register(glue.clone());
    let events =
        tsumiki_events::Events::start(store.clone(), clock.clone(), targets, async_invoker.clone())
            .await
            .context("loading EventBridge")?;
    served.push(Served {
        model: Arc::new(Model::from_json("events", tsumiki_events::MODEL_JSON)?),
        service: events.clone(),
    });
    served.push(Served {
        model: Arc::new(Model::from_json(
            "scheduler",
            tsumiki_events::SCHEDULER_MODEL_JSON,
        )?),
        service: events.scheduler(),
    });
    let stepfunctions = tsumiki_stepfunctions::StepFunctions::start(
        store.clone(),
        clock.clone(),
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>,
    )
    .await
    .context("loading Step Functions")?;
    served.push(Served {
        model: Arc::new(Model::from_json(
            "stepfunctions",
            tsumiki_stepfunctions::MODEL_JSON,
        )?),
        service: stepfunctions.clone(),
    });
    served.push(Served {
        model: Arc::new(Model::from_json("glue", tsumiki_glue::MODEL_JSON)?),
        service: glue.clone(),
    });
    served.push(Served {
        model: Arc::new(Model::from_json("ecs", tsumiki_ecs::MODEL_JSON)?),
        service: ecs.clone(),
    });

    let config = GatewayConfig {
        default_account: args.default_account,
        default_region: args.default_region,
    };
    // Triggers reach services by name (destinations, dead-letter queues, rule targets).
    let mut services = tsumiki_ports::Services::default();
    for s in &served {
        services.register(s.service.clone());
    }
    async_invoker.set_services(services.clone());
    sns.set_services(services.clone());
    firehose.set_services(services.clone());
    logs.set_subscription_targets(async_invoker.clone(), services.clone());
    queue_pollers.set_services(services.clone());
    stepfunctions.set_services(services.clone());
    glue.set_services(services.clone());
    glue.set_object_store(s3.clone());
    stepfunctions.set_object_store(s3.clone());
    ecs.set_services(services.clone());
    s3.set_services(services.clone());
    s3.set_async_invoke(async_invoker.clone());
    dynamodb.set_services(services.clone());
    shard_pollers.set_services(services);
    // API Gateway calls Lambda synchronously; it sits outside `targets` (nothing delivers to it).
    let apigateway = tsumiki_apigateway::ApiGateway::start(store.clone(), clock.clone())
        .await
        .context("loading API Gateway")?;
    apigateway.set_invoker(
        Arc::downgrade(&lambda) as std::sync::Weak<dyn tsumiki_ports::FunctionInvoker>
    );
    apigateway.set_log_sink(logs.clone());
    served.push(Served {
        model: Arc::new(Model::from_json(
            "apigatewayv2",
            tsumiki_apigateway::MODEL_JSON,
        )?),
        service: apigateway.clone(),
    });
    served.push(Served {
        model: Arc::new(Model::from_json(
            "apigateway",
            tsumiki_apigateway::V1_MODEL_JSON,
        )?),
        service: apigateway.rest_service(),
    });
    let mut gateway = Gateway::new(config, clock, served);
    gateway.add_endpoint(lambda.response_streaming_endpoint());
    gateway.add_endpoint(apigateway.endpoint());
    gateway.add_endpoint(lambda.url_endpoint());
    gateway.add_endpoint(lambda.code_endpoint());
    gateway.add_endpoint(Arc::new(tsumiki_sns::CertEndpoint));
    gateway.add_endpoint(s3.clone());
    gateway.set_event_sink(events.clone());
    stepfunctions.set_event_sink(events.clone());
    let gateway = Arc::new(gateway);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Functions call back into tsumiki; a wildcard listen address is reachable on loopback.
    let reachable = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    compute.set_endpoint(&format!("http://{reachable}"));
    events.set_endpoint(&format!("http://{reachable}"));
    stepfunctions.set_endpoint(&format!("http://{reachable}"));
    sns.set_endpoint(&format!("http://{reachable}"));
    glue.set_endpoint(&format!("http://{reachable}"));
    ecs.set_endpoint(&format!("http://{reachable}"));
    s3.set_endpoint(&format!("http://{reachable}"));
    let shutdown = shutdown_signal()?;
    print_ready(addr);
    tracing::info!(
        %addr,
        store = %data_dir.map(|d| d.display().to_string()).unwrap_or_else(|| "in memory".into()),
        "tsumiki is ready."
    );
    tsumiki_gateway::serve(listener, gateway, shutdown).await;
    compute.stop_all();
    processes.stop_all();
    store.flush().await.context("flushing the store")?;
    tracing::info!("tsumiki stopped.");
    Ok(())
}

/// A directory removed when the server stops.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first stdout line names the bound address, so `--listen 127.0.0.1:0` works for tests.
#[allow(clippy::print_stdout)]
fn print_ready(addr: SocketAddr) {
    use std::io::Write;
    println!(
        "tsumiki {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = std::io::stdout().flush();
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a test that signals right after the ready line must reach the
/// handler, not the default action that kills the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("Shutting down.");
    })
}
