//! Echoes the event with facts from the context; fails when the event asks it to.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("asked to fail".into());
    }
    Ok(json!({
        "echo": payload,
        "request_id": context.request_id,
        "function_arn": context.invoked_function_arn,
        "function_name": context.env_config.function_name,
        "memory": context.env_config.memory,
        "pid": std::process::id(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
