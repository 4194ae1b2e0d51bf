//! Streams its response through `lambda_runtime`'s streaming API: an HTTP prelude (the event's
//! status, a header, a cookie), then each of the event's `chunks` as its own write, pausing
//! `pause_ms` between writes. With a `signal` path, chunk `i` (from 1) waits up to 5 s for the
//! file `{signal}-{i}` and is written as `late:{chunk}` if it never came: a test creates the
//! file only after reading the chunk before, which proves each chunk reached it on its own.

use std::time::Duration;

use lambda_runtime::streaming::{Body, Response, channel};
use lambda_runtime::{Error, LambdaEvent, MetadataPrelude, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Response<Body>, Error> {
    // Behind a function URL the event is an HTTP request whose body holds the instructions.
    let payload = match event.payload.get("body").and_then(Value::as_str) {
        Some(body) => serde_json::from_str(body)?,
        None => event.payload,
    };
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
    let signal = payload["signal"].as_str().map(String::from);
    let prelude: MetadataPrelude = serde_json::from_value(json!({
        "statusCode": payload["status"].as_u64().unwrap_or(200),
        "headers": {"content-type": "text/plain", "x-streamed-by": "lambda_runtime"},
        "cookies": ["flavour=rust"],
    }))?;
    let (mut tx, rx) = channel();
    tokio::spawn(async move {
        for (i, mut chunk) in chunks.into_iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                nap(pause).await;
            }
            if i > 0
                && let Some(signal) = &signal
            {
                let file = format!("{signal}-{i}");
                let mut seen = false;
                for _ in 0..250 {
                    seen = std::path::Path::new(&file).exists();
                    if seen {
                        break;
                    }
                    nap(Duration::from_millis(20)).await;
                }
                if !seen {
                    chunk = format!("late:{chunk}");
                }
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

/// A function runs in real time; tsumiki's one-clock rule is for the server.
#[allow(clippy::disallowed_methods)]
async fn nap(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
