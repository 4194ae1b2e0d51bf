//! Asynchronous invocation: the `FunctionEventInvokeConfig` API, and Lambda's side of the
//! triggers seam: [`FunctionInvoker`] (how the async invoker runs a function and reads its
//! retry settings) and the queue `Invoke` with `InvocationType: Event` hands events to.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::{AsyncSettings, FunctionInvoker, FunctionResult, FunctionTarget};

use crate::errors::{invalid, not_found};
use crate::names;
use crate::{Invocation, Lambda};

/// AWS's defaults for asynchronous invocation.
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_AGE_S: u32 = 21_600;

/// One `FunctionEventInvokeConfig`, kept in the function's record by qualifier.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct EventInvokeConfig {
    pub max_retries: Option<u32>,
    pub max_age_s: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified_ms: i64,
}

fn qualifier_key(q: Option<&str>) -> String {
    q.unwrap_or("$LATEST").to_string()
}

fn render(arn: &str, q: &str, c: &EventInvokeConfig) -> Value {
    let mut out = json!({
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "FunctionArn": format!("{arn}:{q}"),
        "DestinationConfig": {
            "OnSuccess": c.on_success.as_ref().map(|d| json!({"Destination": d})).unwrap_or(json!({})),
            "OnFailure": c.on_failure.as_ref().map(|d| json!({"Destination": d})).unwrap_or(json!({})),
        },
    });
    if let Some(r) = c.max_retries {
        out["MaximumRetryAttempts"] = json!(r);
    }
    if let Some(a) = c.max_age_s {
        out["MaximumEventAgeInSeconds"] = json!(a);
    }
    out
}

fn destination(input: &Value, which: &str) -> Result<Option<Option<String>>, AwsError> {
    let Some(d) = input.pointer(&format!("/DestinationConfig/{which}")) else {
        return Ok(None);
    };
    let arn = d
        .get("Destination")
        .and_then(Value::as_str)
        .map(String::from);
    if let Some(a) = &arn {
        let service = a.split(':').nth(2).unwrap_or_default();
        if !a.starts_with("arn:") || !matches!(service, "sqs" | "sns" | "lambda" | "events") {
            return Err(invalid(format!(
                "The provided destination config DestinationConfig.{which}.Destination is invalid: {a}"
            )));
        }
    }
    Ok(Some(arn))
}

impl Lambda {
    pub(crate) async fn put_event_invoke_config(
        &self,
        ctx: &RequestContext,
        input: Value,
        merge: bool,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let key = qualifier_key(r.qualifier.as_deref());
        let retries = input
            .get("MaximumRetryAttempts")
            .and_then(Value::as_u64)
            .map(|v| v as u32);
        let age = input
            .get("MaximumEventAgeInSeconds")
            .and_then(Value::as_u64)
            .map(|v| v as u32);
        let on_success = destination(&input, "OnSuccess")?;
        let on_failure = destination(&input, "OnFailure")?;
        let now = self.clock.now_ms();
        self.update_function(ctx, &r, |f, _| {
            crate::functions::version_config(f, r.qualifier.as_deref())?;
            let existing = f.event_invoke.get(&key).cloned();
            if merge && existing.is_none() {
                return Err(not_found(format!(
                    "The function {}:{key} doesn't have an EventInvokeConfig",
                    f.arn
                )));
            }
            let mut c = if merge {
                existing.unwrap_or_default()
            } else {
                EventInvokeConfig::default()
            };
            if retries.is_some() || !merge {
                c.max_retries = retries;
            }
            if age.is_some() || !merge {
                c.max_age_s = age;
            }
            if let Some(d) = on_success.clone() {
                c.on_success = d;
            } else if !merge {
                c.on_success = None;
            }
            if let Some(d) = on_failure.clone() {
                c.on_failure = d;
            } else if !merge {
                c.on_failure = None;
            }
            c.last_modified_ms = now;
            let out = render(&f.arn, &key, &c);
            f.event_invoke.insert(key.clone(), c);
            Ok(out)
        })
        .await
    }

    pub(crate) fn get_event_invoke_config(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let key = qualifier_key(r.qualifier.as_deref());
        self.with_function(ctx, &r, |f| {
            f.event_invoke
                .get(&key)
                .map(|c| render(&f.arn, &key, c))
                .ok_or_else(|| {
                    not_found(format!(
                        "The function {}:{key} doesn't have an EventInvokeConfig",
                        f.arn
                    ))
                })
        })
    }

    pub(crate) async fn delete_event_invoke_config(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let key = qualifier_key(r.qualifier.as_deref());
        self.update_function(ctx, &r, |f, _| {
            if f.event_invoke.remove(&key).is_none() {
                return Err(not_found(format!(
                    "The function {}:{key} doesn't have an EventInvokeConfig",
                    f.arn
                )));
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) fn list_event_invoke_configs(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            let list: Vec<Value> = f
                .event_invoke
                .iter()
                .map(|(q, c)| render(&f.arn, q, c))
                .collect();
            Ok(json!({"FunctionEventInvokeConfigs": list}))
        })
    }
}

pub(crate) fn context(target: &FunctionTarget, request_id: &str) -> RequestContext {
    RequestContext {
        account: target.account.clone(),
        region: target.region.clone(),
        request_id: request_id.to_string(),
        base_url: String::new(),
        access_key: None,
        path: String::new(),
    }
}

#[async_trait]
impl FunctionInvoker for Lambda {
    async fn invoke(
        &self,
        target: &FunctionTarget,
        payload: Vec<u8>,
        request_id: &str,
    ) -> Result<FunctionResult, AwsError> {
        let ctx = context(target, request_id);
        let out = Lambda::invoke(
            self,
            &ctx,
            Invocation {
                function: target.function.clone(),
                qualifier: target.qualifier.clone(),
                payload: payload.into(),
                client_context: None,
                tail: false,
            },
        )
        .await?;
        Ok(FunctionResult {
            payload: out.payload.to_vec(),
            function_error: out.function_error,
            executed_version: out.executed_version,
            request_id: request_id.to_string(),
        })
    }

    fn async_settings(&self, target: &FunctionTarget) -> Result<AsyncSettings, AwsError> {
        let ctx = context(target, "");
        let r = names::parse(&ctx, &target.function, target.qualifier.as_deref())?;
        self.with_function(&ctx, &r, |f| {
            let config = crate::functions::version_config(f, r.qualifier.as_deref())?;
            // A qualifier's own config wins; an unqualified invoke uses $LATEST's.
            let key = qualifier_key(r.qualifier.as_deref());
            let c = f.event_invoke.get(&key).cloned().unwrap_or_default();
            Ok(AsyncSettings {
                function_arn: f.arn.clone(),
                max_retries: c.max_retries.unwrap_or(DEFAULT_RETRIES),
                max_event_age_s: c.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S),
                on_success: c.on_success,
                on_failure: c.on_failure,
                dead_letter: config.dead_letter_target.clone(),
            })
        })
    }
}
