//! Streams its response through `lambda_runtime`'s streaming API: an HTTP prelude (the event's
//! status, a header, a cookie), then each of the event's `chunks` as its own write, pausing
//! `pause_ms` between writes.

use std::time::Duration;

use lambda_runtime::streaming::{Body, Response, channel};
use lambda_runtime::{Error, LambdaEvent, MetadataPrelude, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Response<Body>, Error> {
    let payload = event.payload;
    let chunks: Vec<String> = payload["chunks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let pause = Duration::from_millis(payload["pause_ms"].as_u64().unwrap_or(0));
    let prelude: MetadataPrelude = serde_json::from_value(json!({
        "statusCode": payload["status"].as_u64().unwrap_or(200),
        "headers": {"content-type": "text/plain", "x-streamed-by": "lambda_runtime"},
        "cookies": ["flavour=rust"],
    }))?;
    let (mut tx, rx) = channel();
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                // A function runs in real time; tsumiki's clock rule is for the server.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(pause).await;
            }
            if tx.send_data(chunk.into()).await.is_err() {
                return;
            }
        }
    });
    Ok(Response {
        metadata_prelude: prelude,
        stream: rx,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
