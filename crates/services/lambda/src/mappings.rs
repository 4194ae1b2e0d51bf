//! Event source mappings: the Lambda resource (Create/Get/List/Update/DeleteEventSourceMapping,
//! stored in `lambda.esm`), run by the triggers layer's pollers through
//! `ports::EventSourcePollers`. Sources: SQS queues, Kinesis streams and DynamoDB streams
//! (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::{FunctionTarget, MappingSpec};
use tsumiki_store::Batch;

use crate::errors::{invalid, not_found};
use crate::names;
use crate::state::{self, store_error};
use crate::{Lambda, str_of};

pub(crate) const NS_MAPPING: &str = "lambda.esm";
/// AWS: SQS mappings take batches of 1 to 10,000 (more than 10 needs a batching window).
const SQS_MAX_BATCH: u64 = 10_000;
const SQS_DEFAULT_BATCH: u32 = 10;
/// AWS: FIFO queues take batches of at most 10, without a batching window.
const SQS_FIFO_MAX_BATCH: u32 = 10;
/// AWS: SQS mappings scale to at most 1,000 concurrent invocations; at least 2.
const DEFAULT_MAX_CONCURRENCY: u32 = 1_000;
/// AWS: Kinesis and DynamoDB Streams mappings take batches of 1 to 10,000, 100 by default.
const KINESIS_MAX_BATCH: u64 = 10_000;
const KINESIS_DEFAULT_BATCH: u32 = 100;

/// Members AWS takes only for stream sources.
const STREAM_ONLY: &[&str] = &[
    "StartingPosition",
    "ParallelizationFactor",
    "TumblingWindowInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Mapping {
    pub uuid: String,
    pub account: String,
    pub region: String,
    pub source_arn: String,
    pub function_name: String,
    pub function_arn: String,
    pub qualifier: Option<String>,
    pub batch_size: u32,
    pub window_s: u32,
    pub enabled: bool,
    pub filters: Vec<String>,
    pub response_types: Vec<String>,
    pub max_concurrency: Option<u32>,
    pub last_modified_ms: i64,
    /// Stream sources only (absent in records written before Kinesis mappings existed).
    #[serde(default)]
    pub stream: Option<StreamSettings>,
}

/// A Kinesis mapping's settings, with AWS's defaults filled in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StreamSettings {
    pub starting_position: String,
    pub starting_position_timestamp_ms: Option<i64>,
    pub max_retries: i32,
    pub max_record_age_s: i32,
    pub bisect: bool,
    pub on_failure: Option<String>,
    #[serde(default = "one")]
    pub parallelization: u32,
    #[serde(default)]
    pub tumbling_window_s: u32,
}

fn one() -> u32 {
    1
}

/// The kind of source an event source ARN names, as AWS tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    Sqs,
    Kinesis,
    DynamoDb,
}

fn source_kind(source: &str) -> Option<SourceKind> {
    let (service, _, _, resource) = tsumiki_core::ids::parse_arn(source)?;
    match service {
        "sqs" if !resource.is_empty() => Some(SourceKind::Sqs),
        "kinesis" if resource.starts_with("stream/") => Some(SourceKind::Kinesis),
        "dynamodb" => {
            let parts: Vec<&str> = resource.split('/').collect();
            matches!(parts.as_slice(), ["table", t, "stream", l] if !t.is_empty() && !l.is_empty())
                .then_some(SourceKind::DynamoDb)
        }
        _ => None,
    }
}

/// Reads and checks the stream settings of a Create or Update request over `base`.
fn stream_settings(
    input: &Value,
    base: Option<StreamSettings>,
    kind: SourceKind,
) -> Result<StreamSettings, AwsError> {
    let mut s = match base {
        Some(s) => s,
        None => {
            let position = str_of(input, "StartingPosition").ok_or_else(|| {
                invalid("1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null")
            })?;
            // AT_TIMESTAMP is for Kinesis (and Kafka, DocumentDB), not DynamoDB Streams.
            if kind == SourceKind::DynamoDb && position == "AT_TIMESTAMP" {
                return Err(invalid(
                    "Unsupported starting position for DynamoDB stream event sources: AT_TIMESTAMP. Use TRIM_HORIZON or LATEST.",
                ));
            }
            StreamSettings {
                starting_position: position.to_string(),
                starting_position_timestamp_ms: None,
                max_retries: -1,
                max_record_age_s: -1,
                bisect: false,
                on_failure: None,
                parallelization: 1,
                tumbling_window_s: 0,
            }
        }
    };
    if s.starting_position == "AT_TIMESTAMP" && s.starting_position_timestamp_ms.is_none() {
        let ts = input
            .get("StartingPositionTimestamp")
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                invalid("StartingPositionTimestamp must be provided when StartingPosition is AT_TIMESTAMP.")
            })?;
        s.starting_position_timestamp_ms = Some((ts * 1000.0) as i64);
    }
    if let Some(r) = input.get("MaximumRetryAttempts").and_then(Value::as_i64) {
        s.max_retries = r as i32;
    }
    if let Some(a) = input
        .get("MaximumRecordAgeInSeconds")
        .and_then(Value::as_i64)
    {
        if a != -1 && !(60..=604_800).contains(&a) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{a}' at 'maximumRecordAgeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 60 or equal to -1"
            )));
        }
        s.max_record_age_s = a as i32;
    }
    if let Some(p) = input.get("ParallelizationFactor").and_then(Value::as_i64) {
        if !(1..=10).contains(&p) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{p}' at 'parallelizationFactor' failed to satisfy constraint: Member must have value between 1 and 10"
            )));
        }
        s.parallelization = p as u32;
    }
    if let Some(w) = input.get("TumblingWindowInSeconds").and_then(Value::as_i64) {
        if !(0..=900).contains(&w) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{w}' at 'tumblingWindowInSeconds' failed to satisfy constraint: Member must have value between 0 and 900"
            )));
        }
        s.tumbling_window_s = w as u32;
    }
    if let Some(b) = input
        .get("BisectBatchOnFunctionError")
        .and_then(Value::as_bool)
    {
        s.bisect = b;
    }
    if let Some(d) = input.get("DestinationConfig") {
        s.on_failure = d
            .pointer("/OnFailure/Destination")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(String::from);
    }
    if let Some(d) = &s.on_failure
        && !matches!(d.split(':').nth(2), Some("sqs" | "sns"))
    {
        return Err(invalid(format!(
            "The destination ARN {d} is invalid. A stream source's on-failure destination is an SQS queue or an SNS topic."
        )));
    }
    Ok(s)
}

impl Mapping {
    pub(crate) fn spec(&self) -> MappingSpec {
        MappingSpec {
            uuid: self.uuid.clone(),
            source_arn: self.source_arn.clone(),
            function: FunctionTarget {
                account: self.account.clone(),
                region: self.region.clone(),
                function: self.function_name.clone(),
                qualifier: self.qualifier.clone(),
            },
            batch_size: self.batch_size,
            batching_window_s: self.window_s,
            report_item_failures: self
                .response_types
                .iter()
                .any(|t| t == "ReportBatchItemFailures"),
            filters: self.filters.clone(),
            max_concurrency: self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            enabled: self.enabled,
            starting_position: self.stream.as_ref().map(|s| s.starting_position.clone()),
            starting_position_timestamp_ms: self
                .stream
                .as_ref()
                .and_then(|s| s.starting_position_timestamp_ms),
            maximum_retry_attempts: self.stream.as_ref().map_or(-1, |s| s.max_retries),
            maximum_record_age_s: self.stream.as_ref().map_or(-1, |s| s.max_record_age_s),
            bisect_on_error: self.stream.as_ref().is_some_and(|s| s.bisect),
            on_failure: self.stream.as_ref().and_then(|s| s.on_failure.clone()),
            parallelization_factor: self.stream.as_ref().map_or(1, |s| s.parallelization),
            tumbling_window_s: self.stream.as_ref().map_or(0, |s| s.tumbling_window_s),
        }
    }

    fn render(&self, state: &str) -> Value {
        let mut out = json!({
            "UUID": self.uuid,
            "EventSourceArn": self.source_arn,
            "FunctionArn": names::qualified(&self.function_arn, self.qualifier.as_deref()),
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.window_s,
            "LastModified": self.last_modified_ms as f64 / 1000.0,
            "State": state,
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": self.response_types,
            "EventSourceMappingArn": format!(
                "arn:aws:lambda:{}:{}:event-source-mapping:{}",
                self.region, self.account, self.uuid
            ),
        });
        if !self.filters.is_empty() {
            let filters: Vec<Value> = self.filters.iter().map(|p| json!({"Pattern": p})).collect();
            out["FilterCriteria"] = json!({"Filters": filters});
        }
        if let Some(c) = self.max_concurrency {
            out["ScalingConfig"] = json!({"MaximumConcurrency": c});
        }
        if let Some(s) = &self.stream {
            out["StartingPosition"] = json!(s.starting_position);
            if let Some(ts) = s.starting_position_timestamp_ms {
                out["StartingPositionTimestamp"] = json!(ts as f64 / 1000.0);
            }
            out["MaximumRetryAttempts"] = json!(s.max_retries);
            out["MaximumRecordAgeInSeconds"] = json!(s.max_record_age_s);
            out["BisectBatchOnFunctionError"] = json!(s.bisect);
            out["ParallelizationFactor"] = json!(s.parallelization);
            out["TumblingWindowInSeconds"] = json!(s.tumbling_window_s);
            out["DestinationConfig"] = match &s.on_failure {
                Some(d) => json!({"OnFailure": {"Destination": d}}),
                None => json!({"OnFailure": {}}),
            };
            if let Some(o) = out.as_object_mut() {
                o.remove("ScalingConfig");
            }
        }
        out
    }

    fn state(&self) -> &'static str {
        if self.enabled { "Enabled" } else { "Disabled" }
    }

    fn put(&self, batch: &mut Batch) {
        batch.put(
            NS_MAPPING,
            self.uuid.clone(),
            serde_json::to_vec(self).unwrap_or_default(),
        );
    }
}

fn filters(input: &Value) -> Result<Option<Vec<String>>, AwsError> {
    let Some(list) = input
        .pointer("/FilterCriteria/Filters")
        .and_then(Value::as_array)
    else {
        return Ok(input.get("FilterCriteria").map(|_| Vec::new()));
    };
    let mut out = Vec::new();
    for f in list {
        let Some(p) = f.get("Pattern").and_then(Value::as_str) else {
            continue;
        };
        if tsumiki_lang::event_pattern::Pattern::parse(p).is_err() {
            return Err(invalid(format!("Invalid filter pattern definition. {p}")));
        }
        out.push(p.to_string());
    }
    Ok(Some(out))
}

fn check_batch(batch: u32, window: u32, kind: SourceKind, fifo: bool) -> Result<(), AwsError> {
    if kind != SourceKind::Sqs {
        if u64::from(batch) > KINESIS_MAX_BATCH || batch == 0 {
            let name = if kind == SourceKind::Kinesis {
                "Kinesis"
            } else {
                "DynamoDB"
            };
            return Err(invalid(format!(
                "BatchSize must be between 1 and {KINESIS_MAX_BATCH} for {name} event sources."
            )));
        }
        return Ok(());
    }
    if u64::from(batch) > SQS_MAX_BATCH || batch == 0 {
        return Err(invalid(format!(
            "BatchSize must be between 1 and {SQS_MAX_BATCH} for SQS event sources."
        )));
    }
    if fifo && batch > SQS_FIFO_MAX_BATCH {
        return Err(invalid(format!(
            "BatchSize must be between 1 and {SQS_FIFO_MAX_BATCH} for FIFO queues."
        )));
    }
    if fifo && window > 0 {
        return Err(invalid(
            "MaximumBatchingWindowInSeconds is not supported for FIFO queues.",
        ));
    }
    if batch > 10 && window == 0 {
        return Err(invalid(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        ));
    }
    Ok(())
}

impl Lambda {
    pub(crate) async fn create_mapping(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let source = str_of(&input, "EventSourceArn")
            .unwrap_or_default()
            .to_string();
        let kind = source_kind(&source).ok_or_else(|| {
            invalid(format!(
                "tsumiki runs event source mappings for SQS queues, Kinesis streams and DynamoDB streams; {source} is none of them."
            ))
        })?;
        let stream = if kind == SourceKind::Sqs {
            for member in STREAM_ONLY {
                if input.get(*member).is_some() {
                    return Err(invalid(format!(
                        "Unsupported {member} for SQS event source mapping."
                    )));
                }
            }
            None
        } else {
            Some(stream_settings(&input, None, kind)?)
        };
        let r = names::of_input_unqualified(ctx, &input)?;
        let function_arn = self.with_function(ctx, &r, |f| {
            crate::functions::version_config(f, r.qualifier.as_deref())?;
            Ok(f.arn.clone())
        })?;
        let batch = input.get("BatchSize").and_then(Value::as_u64).map_or(
            if kind == SourceKind::Sqs {
                SQS_DEFAULT_BATCH
            } else {
                KINESIS_DEFAULT_BATCH
            },
            |b| b as u32,
        );
        let window = input
            .get("MaximumBatchingWindowInSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        check_batch(batch, window, kind, source.ends_with(".fifo"))?;
        let mapping = Mapping {
            uuid: uuid::Uuid::new_v4().to_string(),
            account: ctx.account.clone(),
            region: ctx.region.clone(),
            source_arn: source,
            function_name: r.name.clone(),
            function_arn,
            qualifier: r.qualifier.clone(),
            batch_size: batch,
            window_s: window,
            enabled: input
                .get("Enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            filters: filters(&input)?.unwrap_or_default(),
            response_types: input
                .get("FunctionResponseTypes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            max_concurrency: input
                .pointer("/ScalingConfig/MaximumConcurrency")
                .and_then(Value::as_u64)
                .map(|c| c as u32),
            last_modified_ms: self.clock.now_ms(),
            stream,
        };
        let commit = {
            let mut inner = self.inner.lock();
            let mut batch = Batch::new();
            mapping.put(&mut batch);
            inner.mappings.insert(mapping.uuid.clone(), mapping.clone());
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)?;
        if let Some(p) = self.pollers.get() {
            p.configure(mapping.spec());
        }
        Ok(mapping.render(if mapping.enabled {
            "Creating"
        } else {
            "Disabled"
        }))
    }

    fn mapping(&self, ctx: &RequestContext, uuid: &str) -> Result<Mapping, AwsError> {
        self.inner
            .lock()
            .mappings
            .get(uuid)
            .filter(|m| m.account == ctx.account && m.region == ctx.region)
            .cloned()
            .ok_or_else(|| {
                not_found(format!(
                    "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {})",
                    ctx.request_id
                ))
            })
    }

    pub(crate) fn get_mapping(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let m = self.mapping(ctx, str_of(&input, "UUID").unwrap_or_default())?;
        Ok(m.render(m.state()))
    }

    pub(crate) fn list_mappings(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let source = str_of(&input, "EventSourceArn");
        let function = match str_of(&input, "FunctionName") {
            Some(f) => Some(names::parse(ctx, f, None)?.name),
            None => None,
        };
        let inner = self.inner.lock();
        let list: Vec<Value> = inner
            .mappings
            .values()
            .filter(|m| m.account == ctx.account && m.region == ctx.region)
            .filter(|m| source.is_none_or(|s| m.source_arn == s))
            .filter(|m| function.as_ref().is_none_or(|f| m.function_name == *f))
            .map(|m| m.render(m.state()))
            .collect();
        Ok(json!({"EventSourceMappings": list}))
    }

    pub(crate) async fn update_mapping(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let mut m = self.mapping(ctx, str_of(&input, "UUID").unwrap_or_default())?;
        if let Some(f) = str_of(&input, "FunctionName") {
            let r = names::parse(ctx, f, None)?;
            m.function_arn = self.with_function(ctx, &r, |f| Ok(f.arn.clone()))?;
            m.function_name = r.name;
            m.qualifier = r.qualifier;
        }
        if let Some(b) = input.get("BatchSize").and_then(Value::as_u64) {
            m.batch_size = b as u32;
        }
        if let Some(w) = input
            .get("MaximumBatchingWindowInSeconds")
            .and_then(Value::as_u64)
        {
            m.window_s = w as u32;
        }
        let kind = source_kind(&m.source_arn).unwrap_or(SourceKind::Sqs);
        check_batch(
            m.batch_size,
            m.window_s,
            kind,
            m.source_arn.ends_with(".fifo"),
        )?;
        if let Some(s) = m.stream.take() {
            m.stream = Some(stream_settings(&input, Some(s), kind)?);
        }
        if let Some(e) = input.get("Enabled").and_then(Value::as_bool) {
            m.enabled = e;
        }
        if let Some(f) = filters(&input)? {
            m.filters = f;
        }
        if let Some(t) = input.get("FunctionResponseTypes").and_then(Value::as_array) {
            m.response_types = t
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
        }
        if let Some(c) = input
            .pointer("/ScalingConfig/MaximumConcurrency")
            .and_then(Value::as_u64)
        {
            m.max_concurrency = Some(c as u32);
        }
        m.last_modified_ms = self.clock.now_ms();
        let commit = {
            let mut inner = self.inner.lock();
            let mut batch = Batch::new();
            m.put(&mut batch);
            inner.mappings.insert(m.uuid.clone(), m.clone());
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)?;
        if let Some(p) = self.pollers.get() {
            p.configure(m.spec());
        }
        Ok(m.render(if m.enabled { "Updating" } else { "Disabled" }))
    }

    pub(crate) async fn delete_mapping(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let m = self.mapping(ctx, str_of(&input, "UUID").unwrap_or_default())?;
        let commit = {
            let mut inner = self.inner.lock();
            inner.mappings.remove(&m.uuid);
            let mut batch = Batch::new();
            batch.delete(NS_MAPPING, m.uuid.clone());
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)?;
        if let Some(p) = self.pollers.get() {
            p.remove(&m.uuid);
        }
        Ok(m.render("Deleting"))
    }
}

/// Every mapping in the store at startup.
pub(crate) async fn load(
    store: &tsumiki_store::Store,
) -> Result<std::collections::BTreeMap<String, Mapping>, AwsError> {
    let mut out = std::collections::BTreeMap::new();
    for (_, value) in store.scan(NS_MAPPING).await.map_err(state::store_error)? {
        if let Ok(m) = serde_json::from_slice::<Mapping>(&value) {
            out.insert(m.uuid.clone(), m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart_as_aws_does() {
        let k = |a: &str| source_kind(a);
        assert_eq!(
            k("arn:aws:sqs:us-east-1:123456789012:q"),
            Some(SourceKind::Sqs)
        );
        assert_eq!(
            k("arn:aws:kinesis:us-east-1:123456789012:stream/s"),
            Some(SourceKind::Kinesis)
        );
        assert_eq!(
            k("arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-29T01:00:00.000"),
            Some(SourceKind::DynamoDb)
        );
        // A table is not a stream.
        assert_eq!(k("arn:aws:dynamodb:us-east-1:123456789012:table/t"), None);
        assert_eq!(k("arn:aws:sns:us-east-1:123456789012:t"), None);
    }

    #[test]
    fn dynamodb_streams_take_no_timestamp_position() {
        let input = json!({"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": 1.0});
        let e = stream_settings(&input, None, SourceKind::DynamoDb).expect_err("refused");
        assert_eq!(e.code, "InvalidParameterValueException");
        let s = stream_settings(&input, None, SourceKind::Kinesis).expect("accepted");
        assert_eq!(s.starting_position_timestamp_ms, Some(1000));
        let s = stream_settings(
            &json!({"StartingPosition": "LATEST"}),
            None,
            SourceKind::DynamoDb,
        )
        .expect("accepted");
        assert_eq!(s.starting_position, "LATEST");
        assert!(check_batch(10_001, 0, SourceKind::DynamoDb, false).is_err());
        assert!(check_batch(1_000, 0, SourceKind::DynamoDb, false).is_ok());
    }

    #[test]
    fn fifo_queues_take_batches_of_ten_without_a_window() {
        assert!(check_batch(10, 0, SourceKind::Sqs, true).is_ok());
        assert!(check_batch(11, 5, SourceKind::Sqs, true).is_err());
        assert!(check_batch(5, 1, SourceKind::Sqs, true).is_err());
        assert!(check_batch(11, 5, SourceKind::Sqs, false).is_ok());
    }
}
