//! Delivery streams: create (with AWS's checks of the source and the S3 destination),
//! describe (AWS's defaults filled in), list, delete, tags.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Stream, StreamKey, StreamMeta};
use crate::{Firehose, invalid, keys, not_found, store_error, stream_key};

/// AWS: 50 tags a delivery stream.
const MAX_TAGS: usize = 50;
const MIB: usize = 1024 * 1024;
/// The one destination a stream has, as AWS names it.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// A Lambda processor of a destination.
#[derive(Debug, Clone)]
pub struct LambdaProcessor {
    pub arn: String,
    /// `NumberOfRetries` (AWS's default 3).
    pub retries: u32,
    /// `BufferSizeInMBs` of the processor: the most record data one invocation carries
    /// (AWS's default 1 MiB).
    pub buffer_bytes: usize,
}

/// The S3 destination as delivery needs it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
    pub error_prefix: Option<String>,
    pub size_bytes: usize,
    pub interval_ms: i64,
    pub gzip: bool,
    pub extension: String,
    pub lambda: Option<LambdaProcessor>,
}

fn str_of<'a>(v: &'a Value, member: &str) -> Option<&'a str> {
    v.get(member).and_then(Value::as_str)
}

impl Destination {
    /// Reads and checks an (extended) S3 destination configuration.
    pub fn parse(d: &Value) -> Result<Destination, AwsError> {
        let bucket_arn = str_of(d, "BucketARN").unwrap_or_default();
        let bucket = match tsumiki_core::ids::parse_arn(bucket_arn) {
            Some(("s3", _, _, bucket)) if !bucket.is_empty() && !bucket.contains('/') => {
                bucket.to_string()
            }
            _ => {
                return Err(invalid(format!(
                    "BucketARN {bucket_arn} is not a valid S3 bucket ARN."
                )));
            }
        };
        let prefix = str_of(d, "Prefix").unwrap_or_default().to_string();
        let error_prefix = str_of(d, "ErrorOutputPrefix").map(String::from);
        keys::validate(&prefix, error_prefix.as_deref()).map_err(invalid)?;
        let hints = d.get("BufferingHints");
        let size_mb = hints
            .and_then(|h| h.get("SizeInMBs"))
            .and_then(Value::as_u64)
            .unwrap_or(5) as usize;
        let interval_s = hints
            .and_then(|h| h.get("IntervalInSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(300);
        let gzip = match str_of(d, "CompressionFormat").unwrap_or("UNCOMPRESSED") {
            "UNCOMPRESSED" => false,
            "GZIP" => true,
            other => {
                return Err(AwsError::not_implemented(
                    "firehose",
                    &format!("CreateDeliveryStream (CompressionFormat {other})"),
                ));
            }
        };
        let extension = match str_of(d, "FileExtension") {
            Some(e) => e.to_string(),
            None if gzip => ".gz".to_string(),
            None => String::new(),
        };
        for (member, what) in [
            (
                "DataFormatConversionConfiguration",
                "record format conversion",
            ),
            ("DynamicPartitioningConfiguration", "dynamic partitioning"),
        ] {
            if d.get(member)
                .and_then(|c| c.get("Enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                return Err(AwsError::not_implemented(
                    "firehose",
                    &format!("CreateDeliveryStream ({what})"),
                ));
            }
        }
        if str_of(d, "S3BackupMode") == Some("Enabled") {
            return Err(AwsError::not_implemented(
                "firehose",
                "CreateDeliveryStream (S3 backup)",
            ));
        }
        Ok(Destination {
            bucket,
            prefix,
            error_prefix,
            size_bytes: size_mb * MIB,
            interval_ms: interval_s * 1000,
            gzip,
            extension,
            lambda: lambda_processor(d.get("ProcessingConfiguration"))?,
        })
    }
}

fn lambda_processor(config: Option<&Value>) -> Result<Option<LambdaProcessor>, AwsError> {
    let Some(config) = config else {
        return Ok(None);
    };
    if !config
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let mut found = None;
    for p in config
        .get("Processors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let params: BTreeMap<&str, &str> = p
            .get("Parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| Some((str_of(x, "ParameterName")?, str_of(x, "ParameterValue")?)))
            .collect();
        match str_of(p, "Type").unwrap_or_default() {
            "Lambda" => {
                let Some(arn) = params.get("LambdaArn") else {
                    return Err(invalid(
                        "LambdaArn must be specified for a processor of type Lambda.",
                    ));
                };
                if !matches!(tsumiki_core::ids::parse_arn(arn), Some(("lambda", _, _, r)) if r.starts_with("function:"))
                {
                    return Err(invalid(format!("LambdaArn {arn} is not a function ARN.")));
                }
                let number = |name: &str, default: u64, max: u64| -> Result<u64, AwsError> {
                    match params.get(name) {
                        None => Ok(default),
                        Some(v) => v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
                            invalid(format!(
                                "Processor parameter {name} has an invalid value {v}."
                            ))
                        }),
                    }
                };
                found = Some(LambdaProcessor {
                    arn: arn.to_string(),
                    retries: number("NumberOfRetries", 3, 300)? as u32,
                    buffer_bytes: number("BufferSizeInMBs", 1, 3)?.max(1) as usize * MIB,
                });
            }
            other => {
                return Err(AwsError::not_implemented(
                    "firehose",
                    &format!("CreateDeliveryStream (processor type {other})"),
                ));
            }
        }
    }
    Ok(found)
}

/// The extended S3 destination configuration a request carries (a legacy
/// `S3DestinationConfiguration` reads the same way), or why it carries none we serve.
fn destination_of(input: &Value) -> Result<Value, AwsError> {
    const OTHERS: [(&str, &str); 8] = [
        ("RedshiftDestinationConfiguration", "Redshift"),
        ("ElasticsearchDestinationConfiguration", "Elasticsearch"),
        (
            "AmazonopensearchserviceDestinationConfiguration",
            "OpenSearch",
        ),
        (
            "AmazonOpenSearchServerlessDestinationConfiguration",
            "OpenSearch Serverless",
        ),
        ("SplunkDestinationConfiguration", "Splunk"),
        ("HttpEndpointDestinationConfiguration", "HTTP endpoint"),
        ("SnowflakeDestinationConfiguration", "Snowflake"),
        ("IcebergDestinationConfiguration", "Iceberg"),
    ];
    let given: Vec<&str> = [
        "ExtendedS3DestinationConfiguration",
        "S3DestinationConfiguration",
    ]
    .into_iter()
    .chain(OTHERS.iter().map(|(m, _)| *m))
    .filter(|m| input.get(*m).is_some())
    .collect();
    if given.len() != 1 {
        return Err(invalid(
            "Exactly one destination configuration must be specified.",
        ));
    }
    if let Some((_, what)) = OTHERS.iter().find(|(m, _)| *m == given[0]) {
        return Err(AwsError::not_implemented(
            "firehose",
            &format!("CreateDeliveryStream ({what} destination)"),
        ));
    }
    Ok(input[given[0]].clone())
}

pub async fn create_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let stream_type = str_of(input, "DeliveryStreamType")
        .unwrap_or("DirectPut")
        .to_string();
    let kinesis_source = input.get("KinesisStreamSourceConfiguration").cloned();
    match stream_type.as_str() {
        "DirectPut" if kinesis_source.is_some() => {
            return Err(invalid(
                "KinesisStreamSourceConfiguration is only allowed for DeliveryStreamType KinesisStreamAsSource.",
            ));
        }
        "DirectPut" => {}
        "KinesisStreamAsSource" => {
            let arn = kinesis_source
                .as_ref()
                .and_then(|k| str_of(k, "KinesisStreamARN"))
                .ok_or_else(|| {
                    invalid(
                        "KinesisStreamSourceConfiguration is required for DeliveryStreamType KinesisStreamAsSource.",
                    )
                })?;
            check_kinesis_stream(fh, ctx, arn).await?;
        }
        other => {
            return Err(AwsError::not_implemented(
                "firehose",
                &format!("CreateDeliveryStream (DeliveryStreamType {other})"),
            ));
        }
    }
    let destination = destination_of(input)?;
    Destination::parse(&destination)?;
    let tags = tag_map(input.get("Tags"))?;
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    let now = fh.clock.now_ms();
    let meta = StreamMeta {
        name: key.name.clone(),
        stream_type,
        created_ms: now,
        updated_ms: None,
        version: 1,
        kinesis_source,
        destination,
        tags,
    };
    let commit = {
        let mut state = fh.state.lock();
        if state.streams.contains_key(&key) {
            return Err(AwsError::new(
                "ResourceInUseException",
                400,
                format!(
                    "Firehose {} under accountId {} already exists",
                    key.name, key.account
                ),
            ));
        }
        let mut batch = Batch::new();
        state::put_stream(&mut batch, &key, &meta);
        state.streams.insert(key.clone(), Stream::new(meta));
        fh.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"DeliveryStreamARN": key.arn()}))
}

/// A Kinesis source must exist when the delivery stream is created (AWS checks it too).
async fn check_kinesis_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    arn: &str,
) -> Result<(), AwsError> {
    let Some(("kinesis", region, account, res)) = tsumiki_core::ids::parse_arn(arn) else {
        return Err(invalid(format!(
            "KinesisStreamARN {arn} is not a Kinesis stream ARN."
        )));
    };
    if !res.starts_with("stream/") {
        return Err(invalid(format!(
            "KinesisStreamARN {arn} is not a Kinesis stream ARN."
        )));
    }
    let kinesis = fh
        .services
        .read()
        .as_ref()
        .and_then(|s| s.get("kinesis").cloned());
    let Some(kinesis) = kinesis else {
        return Ok(());
    };
    let kctx = RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        ..ctx.clone()
    };
    kinesis
        .call(&kctx, "DescribeStreamSummary", json!({"StreamARN": arn}))
        .await
        .map(|_| ())
        .map_err(|e| {
            invalid(format!(
                "Kinesis stream {arn} cannot be read: {}",
                e.message
            ))
        })
}

fn tag_map(tags: Option<&Value>) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    for t in tags.and_then(Value::as_array).into_iter().flatten() {
        let k = str_of(t, "Key").unwrap_or_default().to_string();
        let v = str_of(t, "Value").unwrap_or_default().to_string();
        out.insert(k, v);
    }
    Ok(out)
}

fn too_many_tags() -> AwsError {
    AwsError::new(
        "LimitExceededException",
        400,
        format!("A delivery stream cannot have more than {MAX_TAGS} tags."),
    )
}

/// The S3 destination described, with AWS's defaults filled in.
fn destination_description(d: &Value) -> (Value, Value) {
    let mut hints = json!({"SizeInMBs": 5, "IntervalInSeconds": 300});
    if let Some(given) = d.get("BufferingHints").and_then(Value::as_object) {
        for (k, v) in given {
            hints[k] = v.clone();
        }
    }
    let mut s3 = json!({
        "RoleARN": d.get("RoleARN").cloned().unwrap_or(json!("")),
        "BucketARN": d.get("BucketARN").cloned().unwrap_or(json!("")),
        "BufferingHints": hints,
        "CompressionFormat": d.get("CompressionFormat").cloned().unwrap_or(json!("UNCOMPRESSED")),
        "EncryptionConfiguration": d.get("EncryptionConfiguration").cloned()
            .unwrap_or(json!({"NoEncryptionConfig": "NoEncryption"})),
        "CloudWatchLoggingOptions": d.get("CloudWatchLoggingOptions").cloned()
            .unwrap_or(json!({"Enabled": false})),
    });
    for member in ["Prefix", "ErrorOutputPrefix"] {
        if let Some(v) = d.get(member) {
            s3[member] = v.clone();
        }
    }
    let mut extended = s3.clone();
    extended["S3BackupMode"] = d.get("S3BackupMode").cloned().unwrap_or(json!("Disabled"));
    for member in [
        "ProcessingConfiguration",
        "DataFormatConversionConfiguration",
        "DynamicPartitioningConfiguration",
        "FileExtension",
        "CustomTimeZone",
    ] {
        if let Some(v) = d.get(member) {
            extended[member] = v.clone();
        }
    }
    (s3, extended)
}

pub fn describe_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let state = fh.state.lock();
    let stream = state.streams.get(&key).ok_or_else(|| not_found(&key))?;
    let meta = &stream.meta;
    let (s3, extended) = destination_description(&meta.destination);
    let mut description = json!({
        "DeliveryStreamName": meta.name,
        "DeliveryStreamARN": key.arn(),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
        "DeliveryStreamType": meta.stream_type,
        "VersionId": meta.version.to_string(),
        "CreateTimestamp": meta.created_ms as f64 / 1000.0,
        "Destinations": [{
            "DestinationId": DESTINATION_ID,
            "S3DestinationDescription": s3,
            "ExtendedS3DestinationDescription": extended,
        }],
        "HasMoreDestinations": false,
    });
    if let Some(updated) = meta.updated_ms {
        description["LastUpdateTimestamp"] = json!(updated as f64 / 1000.0);
    }
    if let Some(k) = &meta.kinesis_source {
        let mut source = k.clone();
        source["DeliveryStartTimestamp"] = json!(meta.created_ms as f64 / 1000.0);
        description["Source"] = json!({"KinesisStreamSourceDescription": source});
    }
    Ok(json!({"DeliveryStreamDescription": description}))
}

pub fn list_delivery_streams(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    let kind = str_of(input, "DeliveryStreamType");
    let start = str_of(input, "ExclusiveStartDeliveryStreamName");
    let state = fh.state.lock();
    let names: Vec<&str> = state
        .streams
        .iter()
        .filter(|(k, _)| k.account == ctx.account && k.region == ctx.region)
        .filter(|(_, s)| kind.is_none_or(|t| s.meta.stream_type == t))
        .map(|(k, _)| k.name.as_str())
        .filter(|n| start.is_none_or(|s| *n > s))
        .collect();
    let more = names.len() > limit;
    Ok(json!({
        "DeliveryStreamNames": names.into_iter().take(limit).collect::<Vec<_>>(),
        "HasMoreDeliveryStreams": more,
    }))
}

pub async fn delete_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let commit = {
        let mut state = fh.state.lock();
        if state.streams.remove(&key).is_none() {
            return Err(not_found(&key));
        }
        let mut batch = Batch::new();
        state::delete_stream(&mut batch, &key);
        fh.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

/// Applies `change` to a copy of the stream's configuration, then writes it through.
async fn update_meta(
    fh: &Firehose,
    key: &StreamKey,
    change: impl FnOnce(&mut StreamMeta) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    let commit = {
        let mut state = fh.state.lock();
        let stream = state.streams.get_mut(key).ok_or_else(|| not_found(key))?;
        let mut meta = stream.meta.clone();
        change(&mut meta)?;
        let mut batch = Batch::new();
        state::put_stream(&mut batch, key, &meta);
        stream.meta = meta;
        fh.store.commit(batch)
    };
    commit.await.map_err(store_error)
}

pub async fn tag_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let tags = tag_map(input.get("Tags"))?;
    update_meta(fh, &key, |meta| {
        let mut merged = meta.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(too_many_tags());
        }
        meta.tags = merged;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let keys: Vec<String> = input
        .get("TagKeys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    update_meta(fh, &key, |meta| {
        for k in &keys {
            meta.tags.remove(k);
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub fn list_tags_for_delivery_stream(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(50) as usize;
    let start = str_of(input, "ExclusiveStartTagKey");
    let state = fh.state.lock();
    let stream = state.streams.get(&key).ok_or_else(|| not_found(&key))?;
    let tags: Vec<Value> = stream
        .meta
        .tags
        .iter()
        .filter(|(k, _)| start.is_none_or(|s| k.as_str() > s))
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    let more = tags.len() > limit;
    Ok(json!({
        "Tags": tags.into_iter().take(limit).collect::<Vec<_>>(),
        "HasMoreTags": more,
    }))
}

pub async fn update_destination(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let update = match (
        input.get("ExtendedS3DestinationUpdate"),
        input.get("S3DestinationUpdate"),
    ) {
        (Some(u), None) | (None, Some(u)) => u.clone(),
        (Some(_), Some(_)) => {
            return Err(invalid("Exactly one destination update must be specified."));
        }
        (None, None) => {
            return Err(AwsError::not_implemented(
                "firehose",
                "UpdateDestination (destinations other than S3)",
            ));
        }
    };
    let version = str_of(input, "CurrentDeliveryStreamVersionId")
        .unwrap_or_default()
        .to_string();
    let destination_id = str_of(input, "DestinationId")
        .unwrap_or_default()
        .to_string();
    let now = fh.clock.now_ms();
    update_meta(fh, &key, |meta| {
        if meta.version.to_string() != version {
            return Err(AwsError::new(
                "ConcurrentModificationException",
                400,
                format!(
                    "Cannot update firehose: {} since the current version id: {} and specified version id: {} do not match",
                    key.name, meta.version, version
                ),
            ));
        }
        if destination_id != DESTINATION_ID {
            return Err(invalid(format!(
                "Destination Id {destination_id} not found."
            )));
        }
        // Members given replace the stored ones; the rest stay as they were.
        let mut destination = meta.destination.clone();
        if let (Some(d), Some(u)) = (destination.as_object_mut(), update.as_object()) {
            for (k, v) in u {
                d.insert(k.clone(), v.clone());
            }
        }
        Destination::parse(&destination)?;
        meta.destination = destination;
        meta.version += 1;
        meta.updated_ms = Some(now);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}
