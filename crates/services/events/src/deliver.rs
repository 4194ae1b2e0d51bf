//! Events out: one delivery per (event, target), sent to the target's service, retried on
//! the clock by the target's `RetryPolicy`, and dead-lettered to its SQS `DeadLetterConfig`.
//!
//! AWS's rules: errors a retry can fix (throttling, 5xx) are retried with exponential back-off
//! until the policy's attempts or event age run out (defaults 185 and 24 h); others (a target
//! that does not exist, an unsupported target) go to the dead-letter queue at once. Back-off
//! here is 10 s doubling to at most 5 min, without AWS's jitter so tests can reason about it
//! (with the defaults, 185 attempts span about 15 hours, inside the 24-hour age limit).
//!
//! Durability: PutEvents delivers before it answers, so an SQS, Logs or bus delivery is
//! durable in its target (or recorded as a retry) when the client hears back. A Lambda
//! delivery runs in the background, as an asynchronous invoke does; a crash before it starts
//! loses it until the durable async invoker of the triggers layer takes over
//! (`deliver_to_lambda` is the one place to swap). Schedule firings record their deliveries
//! before the first attempt (see `timers.rs`).

use serde_json::{Value, json};
use tsumiki_core::AwsError;
use tsumiki_store::Batch;

use crate::put::Envelope;
use crate::state::{Delivery, Scope, writes};
use crate::{Events, store_error, str_of};

const DEFAULT_MAX_RETRIES: u32 = 185;
const DEFAULT_MAX_AGE_MS: i64 = 24 * 3_600_000;
const MAX_BACKOFF_MS: i64 = 300_000;

/// Why an attempt failed, in the words of AWS's dead-letter `ERROR_CODE`s.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    fn permanent(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            retryable: false,
        }
    }

    /// A target service's error: 429 and 5xx are worth retrying, other 4xx are not.
    fn from_aws(e: &AwsError) -> Failure {
        let code = match (e.status, e.code.as_ref()) {
            (429, _) | (_, "ThrottlingException" | "TooManyRequestsException") => "THROTTLING",
            (s, _) if s >= 500 => "INTERNAL_ERROR",
            (
                _,
                "QueueDoesNotExist"
                | "AWS.SimpleQueueService.NonExistentQueue"
                | "ResourceNotFoundException",
            ) => "NO_RESOURCE",
            _ => "INVALID_PARAMETER",
        };
        Failure {
            code,
            message: format!("{}: {}", e.code, e.message),
            retryable: e.status == 429 || e.status >= 500,
        }
    }
}

fn backoff_ms(attempts: u32) -> i64 {
    (10_000i64 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF_MS)
}

impl Events {
    /// A delivery of `payload` to `target` (a rule's or schedule's target as stored).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delivery(
        &self,
        scope: &Scope,
        origin_arn: &str,
        from_scheduler: bool,
        target: &Value,
        payload: String,
        envelope: &Envelope,
        now: i64,
    ) -> Delivery {
        let retry = target.get("RetryPolicy");
        let num = |k: &str| retry.and_then(|r| r.get(k)).and_then(Value::as_i64);
        Delivery {
            id: uuid::Uuid::new_v4().to_string(),
            scope: scope.clone(),
            origin_arn: origin_arn.to_string(),
            from_scheduler,
            target_arn: str_of(target, "Arn").unwrap_or_default().to_string(),
            payload,
            message_group_id: target
                .get("SqsParameters")
                .and_then(|p| str_of(p, "MessageGroupId"))
                .map(String::from),
            partition_key: target.get("KinesisParameters").map(|p| {
                str_of(p, "PartitionKeyPath")
                    .and_then(|path| crate::transform::select(&envelope.value, path))
                    .map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| envelope.id.clone())
            }),
            put_events: target.get("EventBridgeParameters").map(|p| {
                (
                    str_of(p, "Source").unwrap_or_default().to_string(),
                    str_of(p, "DetailType").unwrap_or_default().to_string(),
                )
            }),
            ecs: target.get("EcsParameters").map(|p| {
                let from_input = ["Input", "InputPath", "InputTransformer"]
                    .iter()
                    .any(|k| target.get(*k).is_some());
                (p.clone(), from_input)
            }),
            dlq_arn: target
                .get("DeadLetterConfig")
                .and_then(|d| str_of(d, "Arn"))
                .map(String::from),
            max_retries: num("MaximumRetryAttempts").map_or(DEFAULT_MAX_RETRIES, |n| n as u32),
            max_age_ms: num("MaximumEventAgeInSeconds").map_or(DEFAULT_MAX_AGE_MS, |s| s * 1000),
            first_ms: now,
            attempts: 0,
            next_ms: now,
            last_error: None,
            event_id: envelope.id.clone(),
            event_time_ms: envelope.time_ms,
        }
    }

    /// Attempts every delivery; `persisted` says whether each already has a retry record.
    /// Lambda deliveries run in the background; the others finish (or are recorded for a
    /// retry) before this returns.
    pub(crate) async fn dispatch(&self, deliveries: Vec<Delivery>, persisted: bool) {
        for d in deliveries {
            if service_of(&d.target_arn) == Some("lambda") {
                self.deliver_to_lambda(d, persisted);
            } else {
                let result = self.attempt(&d).await;
                self.settle(d, result, persisted).await;
            }
        }
    }

    /// Lambda targets are invoked asynchronously, as AWS does: the delivery succeeds once
    /// Lambda's durable async invoker has accepted the event, and from then on its retries,
    /// event age and destinations are Lambda's (the triggers layer's `AsyncInvoker`).
    fn deliver_to_lambda(&self, d: Delivery, persisted: bool) {
        let Some(me) = self.myself() else {
            return;
        };
        tokio::spawn(async move {
            let target = tsumiki_ports::FunctionTarget {
                account: d.scope.account.clone(),
                region: d.scope.region.clone(),
                function: d.target_arn.clone(),
                qualifier: None,
            };
            let result = me
                .lambda
                .enqueue(
                    target,
                    d.payload.clone().into_bytes(),
                    tsumiki_core::ids::request_id(),
                )
                .await
                .map_err(|e| Failure::from_aws(&e));
            me.settle(d, result, persisted).await;
        });
    }

    /// One attempt at a non-Lambda target.
    async fn attempt(&self, d: &Delivery) -> Result<(), Failure> {
        let Some((service, region, account, resource)) =
            tsumiki_core::ids::parse_arn(&d.target_arn)
        else {
            return Err(Failure::permanent(
                "INVALID_PARAMETER",
                format!("Target ARN {} is not valid.", d.target_arn),
            ));
        };
        if account != d.scope.account {
            return Err(Failure::permanent(
                "CROSS_ACCOUNT_INGESTION_FAILED",
                "Targets in other accounts are not supported by tsumiki.",
            ));
        }
        if region != d.scope.region {
            return Err(Failure::permanent(
                "CROSS_REGION_INGESTION_FAILED",
                "Targets in other regions are not supported by tsumiki.",
            ));
        }
        match service {
            "sqs" => {
                self.send_to_queue(&d.scope, resource, &d.payload, d, None)
                    .await
            }
            "events" => {
                let Some(bus) = resource.strip_prefix("event-bus/") else {
                    return Err(Failure::permanent(
                        "INVALID_PARAMETER",
                        "Only event buses can be EventBridge targets.",
                    ));
                };
                self.deliver_to_bus(d, bus).await
            }
            "logs" => self.deliver_to_log_group(d, resource).await,
            "ecs" => self.deliver_to_ecs(d).await,
            "glue" => {
                // A workflow: its EVENT triggers batch the event (Glue's own operation for
                // its EventBridge integration, not part of the public API).
                let Some(workflow) = resource.strip_prefix("workflow/") else {
                    return Err(Failure::permanent(
                        "INVALID_PARAMETER",
                        "Only Glue workflows can be EventBridge targets.",
                    ));
                };
                let input = json!({"WorkflowName": workflow, "EventId": d.event_id});
                self.call(&d.scope, "glue", "tsumiki:WorkflowEvent", input)
                    .await
                    .map(|_| ())
                    .map_err(|e| Failure::from_aws(&e))
            }
            "kinesis" => {
                let input = json!({
                    "StreamARN": d.target_arn,
                    "Data": base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        d.payload.as_bytes()
                    ),
                    "PartitionKey": d.partition_key.clone().unwrap_or_else(|| d.event_id.clone()),
                });
                self.call(&d.scope, "kinesis", "PutRecord", input)
                    .await
                    .map(|_| ())
                    .map_err(|e| Failure::from_aws(&e))
            }
            other => {
                tracing::warn!(
                    target_arn = %d.target_arn,
                    origin = %d.origin_arn,
                    "EventBridge does not deliver to {other} targets in tsumiki yet; the delivery fails."
                );
                Err(Failure::permanent(
                    "UNSUPPORTED_OPERATION",
                    format!("tsumiki does not deliver to {other} targets yet."),
                ))
            }
        }
    }

    /// RunTask on the target's cluster with its `EcsParameters`; the target's Input, when it
    /// has one, is RunTask's `overrides` (as AWS uses it), and the event itself is not passed.
    async fn deliver_to_ecs(&self, d: &Delivery) -> Result<(), Failure> {
        let Some((params, from_input)) = &d.ecs else {
            return Err(Failure::permanent(
                "INVALID_PARAMETER",
                "An ECS target needs EcsParameters.",
            ));
        };
        let origin = d.origin_arn.rsplit('/').next().unwrap_or_default();
        // A rule's tasks carry `events-rule/NAME`, cut to RunTask's 36-character limit; a
        // schedule's carry nothing of tsumiki's invention.
        let started_by = (!d.from_scheduler).then(|| {
            format!("events-rule/{origin}")
                .chars()
                .take(36)
                .collect::<String>()
        });
        let mut input = json!({
            "cluster": d.target_arn,
            "taskDefinition": str_of(params, "TaskDefinitionArn").unwrap_or_default(),
            "count": params.get("TaskCount").and_then(Value::as_u64).unwrap_or(1),
        });
        if let Some(s) = started_by {
            input["startedBy"] = json!(s);
        }
        for (from, to) in [
            ("LaunchType", "launchType"),
            ("PlatformVersion", "platformVersion"),
            ("Group", "group"),
            ("PropagateTags", "propagateTags"),
            ("ReferenceId", "referenceId"),
            ("EnableExecuteCommand", "enableExecuteCommand"),
            ("EnableECSManagedTags", "enableECSManagedTags"),
        ] {
            if let Some(v) = params.get(from) {
                input[to] = v.clone();
            }
        }
        if let Some(vpc) = params
            .get("NetworkConfiguration")
            .and_then(|n| n.get("awsvpcConfiguration"))
        {
            let mut conf = json!({});
            for (from, to) in [
                ("Subnets", "subnets"),
                ("SecurityGroups", "securityGroups"),
                ("AssignPublicIp", "assignPublicIp"),
            ] {
                if let Some(v) = vpc.get(from) {
                    conf[to] = v.clone();
                }
            }
            input["networkConfiguration"] = json!({"awsvpcConfiguration": conf});
        }
        if let Some(tags) = params.get("Tags").and_then(Value::as_array) {
            // EventBridge's are `{Key, Value}`; Scheduler's are maps of key to value.
            let tags: Vec<Value> = tags
                .iter()
                .flat_map(|t| match (t.get("Key"), t.get("Value")) {
                    (Some(k), v) => vec![json!({"key": k, "value": v})],
                    _ => t
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| json!({"key": k, "value": v}))
                        .collect(),
                })
                .collect();
            input["tags"] = json!(tags);
        }
        if *from_input {
            match serde_json::from_str::<Value>(&d.payload) {
                Ok(o) if o.is_object() => input["overrides"] = o,
                _ => {
                    return Err(Failure::permanent(
                        "INVALID_JSON",
                        "The target's Input for an ECS task must be a JSON object of RunTask \
                         overrides.",
                    ));
                }
            }
        }
        let out = self
            .call(&d.scope, "ecs", "RunTask", input)
            .await
            .map_err(|e| Failure::from_aws(&e))?;
        match out
            .get("failures")
            .and_then(Value::as_array)
            .and_then(|f| f.first())
        {
            Some(f) => Err(Failure::permanent(
                "INVALID_PARAMETER",
                format!(
                    "RunTask failed: {} {}",
                    str_of(f, "reason").unwrap_or_default(),
                    str_of(f, "detail").unwrap_or_default()
                ),
            )),
            None => Ok(()),
        }
    }

    async fn call(
        &self,
        scope: &Scope,
        service: &str,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        let Some(svc) = self.services.get(service) else {
            return Err(AwsError::new(
                "ResourceNotFoundException",
                404,
                format!("The {service} service is not served."),
            ));
        };
        let ctx = self.internal_context(scope);
        svc.call(&ctx, operation, input).await
    }

    /// SendMessage to the queue named by an SQS ARN's resource part.
    async fn send_to_queue(
        &self,
        scope: &Scope,
        queue: &str,
        body: &str,
        d: &Delivery,
        attributes: Option<Value>,
    ) -> Result<(), Failure> {
        let url = format!("{}/{}/{}", self.endpoint.read(), scope.account, queue);
        let mut input = json!({"QueueUrl": url, "MessageBody": body});
        if queue.ends_with(".fifo") {
            input["MessageGroupId"] = json!(
                d.message_group_id
                    .clone()
                    .unwrap_or_else(|| d.origin_arn.clone())
            );
            // EventBridge deduplicates FIFO deliveries by event id.
            input["MessageDeduplicationId"] = json!(format!("{}-{}", d.event_id, d.id));
        }
        if let Some(a) = attributes {
            input["MessageAttributes"] = a;
        }
        self.call(scope, "sqs", "SendMessage", input)
            .await
            .map(|_| ())
            .map_err(|e| Failure::from_aws(&e))
    }

    async fn deliver_to_bus(&self, d: &Delivery, bus: &str) -> Result<(), Failure> {
        let known = bus == "default"
            || self
                .state
                .inner
                .read()
                .buses
                .contains_key(&(d.scope.clone(), bus.to_string()));
        if !known {
            return Err(Failure::permanent(
                "NO_RESOURCE",
                format!("Event bus {bus} does not exist."),
            ));
        }
        let text = match &d.put_events {
            // Scheduler's EventBridge target: the input is the detail of a new event.
            Some((source, detail_type)) => {
                let detail: Value = serde_json::from_str(&d.payload)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| Failure::permanent("INVALID_JSON", "Detail is malformed."))?;
                Envelope::new(
                    &d.scope,
                    crate::put::EventFields {
                        detail_type,
                        source,
                        time_ms: self.clock.now_ms(),
                        resources: vec![d.origin_arn.clone()],
                        detail,
                    },
                )
                .text
            }
            None => d.payload.clone(),
        };
        let Some(me) = self.myself() else {
            return Ok(());
        };
        let scope = d.scope.clone();
        let bus = bus.to_string();
        // Its own task, so a cycle of buses cannot grow this stack.
        tokio::spawn(async move {
            if !me.forward_to_bus(&scope, &bus, &text).await {
                tracing::warn!(%bus, "An event forwarded between buses was not JSON.");
            }
        });
        Ok(())
    }

    /// One log event per delivery, in a stream named after the event, as EventBridge writes.
    async fn deliver_to_log_group(&self, d: &Delivery, resource: &str) -> Result<(), Failure> {
        let group = resource
            .strip_prefix("log-group:")
            .map(|g| g.trim_end_matches(":*"))
            .ok_or_else(|| {
                Failure::permanent("INVALID_PARAMETER", "Only log groups can be Logs targets.")
            })?;
        let stream = d.event_id.clone();
        let create = json!({"logGroupName": group, "logStreamName": stream});
        match self.call(&d.scope, "logs", "CreateLogStream", create).await {
            Ok(_) => {}
            Err(e) if e.code == "ResourceAlreadyExistsException" => {}
            Err(e) => return Err(Failure::from_aws(&e)),
        }
        let put = json!({
            "logGroupName": group,
            "logStreamName": stream,
            "logEvents": [{"timestamp": self.clock.now_ms(), "message": d.payload}],
        });
        self.call(&d.scope, "logs", "PutLogEvents", put)
            .await
            .map(|_| ())
            .map_err(|e| Failure::from_aws(&e))
    }

    /// Records an attempt's outcome: forgets a delivered event, schedules a retry, or hands
    /// the event to the dead-letter queue when retries or age ran out.
    pub(crate) async fn settle(
        &self,
        mut d: Delivery,
        result: Result<(), Failure>,
        persisted: bool,
    ) {
        let now = self.clock.now_ms();
        d.attempts += 1;
        let failure = match result {
            Ok(()) => {
                if persisted {
                    self.forget(&d.id).await;
                }
                return;
            }
            Err(f) => f,
        };
        let retries_made = d.attempts - 1;
        let exhausted = if !failure.retryable {
            None
        } else if retries_made >= d.max_retries {
            Some("MaximumRetryAttemptsExhausted")
        } else if now + backoff_ms(d.attempts) - d.first_ms > d.max_age_ms {
            Some("MaximumEventAgeExhausted")
        } else {
            d.next_ms = now + backoff_ms(d.attempts);
            d.last_error = Some((failure.code.to_string(), failure.message.clone()));
            tracing::debug!(target_arn = %d.target_arn, attempts = d.attempts, next_ms = d.next_ms, "A delivery failed; it will be retried.");
            let commit = {
                let mut inner = self.state.inner.write();
                let mut batch = Batch::new();
                writes::retry(&mut batch, &d);
                inner.retries.insert(d.id.clone(), d);
                self.state.store.commit(batch)
            };
            if let Err(e) = commit.await {
                store_error(e);
            }
            self.poke_timers();
            return;
        };
        tracing::warn!(
            target_arn = %d.target_arn,
            origin = %d.origin_arn,
            code = failure.code,
            message = %failure.message,
            attempts = d.attempts,
            "A delivery failed for good."
        );
        if let Some(dlq) = d.dlq_arn.clone() {
            self.dead_letter(&d, &dlq, &failure, exhausted).await;
        }
        if persisted {
            self.forget(&d.id).await;
        }
    }

    async fn forget(&self, id: &str) {
        let commit = {
            let mut inner = self.state.inner.write();
            inner.retries.remove(id);
            let mut batch = Batch::new();
            writes::delete_retry(&mut batch, id);
            self.state.store.commit(batch)
        };
        if let Err(e) = commit.await {
            store_error(e);
        }
    }

    async fn dead_letter(
        &self,
        d: &Delivery,
        dlq: &str,
        failure: &Failure,
        exhausted: Option<&str>,
    ) {
        let Some((_, _, _, queue)) = tsumiki_core::ids::parse_arn(dlq) else {
            tracing::warn!(%dlq, "A dead-letter queue ARN is not valid.");
            return;
        };
        let attr = |v: &str| json!({"DataType": "String", "StringValue": v});
        let mut attributes = json!({
            "TARGET_ARN": attr(&d.target_arn),
            "ERROR_CODE": attr(failure.code),
            "ERROR_MESSAGE": attr(&failure.message),
        });
        if d.from_scheduler {
            attributes["SCHEDULE_ARN"] = attr(&d.origin_arn);
            attributes["RETRY_ATTEMPTS"] = attr(&(d.attempts - 1).to_string());
        } else {
            attributes["RULE_ARN"] = attr(&d.origin_arn);
        }
        if let Some(x) = exhausted {
            attributes["EXHAUSTED_RETRY_CONDITION"] = attr(x);
        }
        let mut plain = d.clone();
        plain.message_group_id = None;
        if let Err(f) = self
            .send_to_queue(&d.scope, queue, &d.payload, &plain, Some(attributes))
            .await
        {
            tracing::warn!(%dlq, code = f.code, message = %f.message, "An event could not be sent to its dead-letter queue.");
        }
    }

    /// Runs every retry that is due.
    pub(crate) async fn run_due_retries(&self, now: i64) {
        let due: Vec<Delivery> = self
            .state
            .inner
            .read()
            .retries
            .values()
            .filter(|d| d.next_ms <= now)
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        {
            // Out of the waiting set while in flight, so the timer does not start them twice;
            // their records stay in the store until they settle.
            let mut inner = self.state.inner.write();
            for d in &due {
                inner.retries.remove(&d.id);
            }
        }
        self.dispatch(due, true).await;
    }

    pub(crate) fn next_retry_ms(&self) -> Option<i64> {
        self.state
            .inner
            .read()
            .retries
            .values()
            .map(|d| d.next_ms)
            .min()
    }

    /// Records `deliveries` before their first attempt (schedule firings), in `batch`.
    pub(crate) fn record_deliveries(batch: &mut Batch, deliveries: &[Delivery]) {
        for d in deliveries {
            writes::retry(batch, d);
        }
    }
}

fn service_of(arn: &str) -> Option<&str> {
    tsumiki_core::ids::parse_arn(arn).map(|(s, _, _, _)| s)
}
