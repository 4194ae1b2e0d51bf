//! End-to-end tests: the real `tsumiki` binary on a free port, driven by real clients.
//! One test binary (every file under `tests/` links on its own), one module per area.

mod admin;
mod async_invoke;
mod crash;
mod dynamodb;
mod esm;
mod events;
mod lambda;
mod logs;
mod s3;
mod sfn;
mod sqs;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use tsumiki_testkit::{Options, Server};

pub fn server(options: Options) -> Server {
    Server::start(env!("CARGO_BIN_EXE_tsumiki"), options)
}

pub fn in_memory() -> Server {
    server(Options {
        in_memory: true,
        ..Options::default()
    })
}

/// An SQS client for `server`, signing as `access_key` (a 12-digit key selects that account).
pub fn sqs_client_as(server: &Server, access_key: &str, region: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(access_key, "test", None, None, "e2e"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

pub fn sqs_client(server: &Server) -> aws_sdk_sqs::Client {
    sqs_client_as(server, "test", "us-east-1")
}

/// A Lambda client for `server`, acting in account 123456789012.
pub fn lambda_client(server: &Server) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "123456789012",
            "test",
            None,
            None,
            "e2e",
        ))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}
