//! Where a shard poller reads: a Kinesis stream or a DynamoDB stream. Both are shards of
//! ordered records read through shard iterators; they differ in the operations' names and
//! members, in the record's shape and in what Lambda's event record adds. This module is the
//! only place in the poller that knows either wire shape, so the poller runs both alike (and a
//! third source is one more variant).
//!
//! Both sources are reached by model name through `ports::Services` (`kinesis`,
//! `dynamodbstreams`), as AWS's pollers call the public APIs.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::Service;

/// The kind of stream a mapping reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSource {
    Kinesis,
    DynamoDbStreams,
}

/// One shard as the source lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// `ParentShardId` and (Kinesis merges) `AdjacentParentShardId`: read to their end first.
    pub parents: Vec<String>,
    /// A closed shard has an ending sequence number and takes no more records.
    pub closed: bool,
}

/// One record read from a shard, with what the poller needs to order, age and route it.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    pub seq: String,
    pub arrival_ms: i64,
    /// What ordering is kept per (Kinesis: the partition key; DynamoDB: the item's keys).
    pub partition_key: String,
    /// The record as the source's GetRecords answered it.
    pub raw: Value,
}

/// One GetRecords answer. `next` is `None` once a closed shard is read to its end.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<StreamRecord>,
    pub next: Option<String>,
}

/// Where reading a shard begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position<'a> {
    TrimHorizon,
    Latest,
    AtTimestampMs(i64),
    After(&'a str),
}

/// DynamoDB Streams keep records 24 hours, a fixed retention.
const DYNAMODB_RETENTION_MS: i64 = 24 * 3_600_000;

impl ShardSource {
    /// The source an event source ARN names, if it is a stream.
    pub fn of_arn(arn: &str) -> Option<ShardSource> {
        let (service, _, _, resource) = tsumiki_core::ids::parse_arn(arn)?;
        match service {
            "kinesis" if resource.starts_with("stream/") => Some(ShardSource::Kinesis),
            "dynamodb" if is_table_stream(resource) => Some(ShardSource::DynamoDbStreams),
            _ => None,
        }
    }

    /// The model key the source is served under.
    pub fn model(self) -> &'static str {
        match self {
            ShardSource::Kinesis => "kinesis",
            ShardSource::DynamoDbStreams => "dynamodbstreams",
        }
    }

    /// `aws:kinesis`, `aws:dynamodb`.
    pub fn event_source(self) -> &'static str {
        match self {
            ShardSource::Kinesis => "aws:kinesis",
            ShardSource::DynamoDbStreams => "aws:dynamodb",
        }
    }

    /// The member of the on-failure record that describes the failed batch.
    pub fn batch_info_key(self) -> &'static str {
        match self {
            ShardSource::Kinesis => "KinesisBatchInfo",
            ShardSource::DynamoDbStreams => "DDBStreamBatchInfo",
        }
    }

    /// Every shard of the stream, following the listing's pages.
    pub async fn shards(
        self,
        svc: &dyn Service,
        ctx: &RequestContext,
        arn: &str,
    ) -> Result<Vec<ShardInfo>, AwsError> {
        let mut out: Vec<ShardInfo> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (list, next) = match self {
                ShardSource::Kinesis => {
                    let input = match &token {
                        Some(t) => json!({"NextToken": t}),
                        None => json!({"StreamARN": arn}),
                    };
                    let out = svc.call(ctx, "ListShards", input).await?;
                    (
                        out["Shards"].clone(),
                        out["NextToken"].as_str().map(String::from),
                    )
                }
                ShardSource::DynamoDbStreams => {
                    let mut input = json!({"StreamArn": arn});
                    if let Some(t) = &token {
                        input["ExclusiveStartShardId"] = json!(t);
                    }
                    let out = svc.call(ctx, "DescribeStream", input).await?;
                    let d = &out["StreamDescription"];
                    (
                        d["Shards"].clone(),
                        d["LastEvaluatedShardId"].as_str().map(String::from),
                    )
                }
            };
            for s in list.as_array().into_iter().flatten() {
                let Some(id) = s["ShardId"].as_str() else {
                    continue;
                };
                let parents = ["ParentShardId", "AdjacentParentShardId"]
                    .iter()
                    .filter_map(|k| s[*k].as_str())
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
                out.push(ShardInfo {
                    id: id.to_string(),
                    parents,
                    closed: s
                        .pointer("/SequenceNumberRange/EndingSequenceNumber")
                        .and_then(Value::as_str)
                        .is_some(),
                });
            }
            match next {
                Some(n) if token.as_deref() != Some(n.as_str()) => token = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// A shard iterator at `position`.
    pub async fn iterator(
        self,
        svc: &dyn Service,
        ctx: &RequestContext,
        arn: &str,
        shard: &str,
        position: Position<'_>,
    ) -> Result<String, AwsError> {
        let (arn_key, seq_key) = match self {
            ShardSource::Kinesis => ("StreamARN", "StartingSequenceNumber"),
            ShardSource::DynamoDbStreams => ("StreamArn", "SequenceNumber"),
        };
        let mut input = json!({arn_key: arn, "ShardId": shard});
        match position {
            Position::After(seq) => {
                input["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                input[seq_key] = json!(seq);
            }
            Position::AtTimestampMs(ms) if self == ShardSource::Kinesis => {
                input["ShardIteratorType"] = json!("AT_TIMESTAMP");
                input["Timestamp"] = json!(ms as f64 / 1000.0);
            }
            Position::Latest => input["ShardIteratorType"] = json!("LATEST"),
            // DynamoDB Streams has no AT_TIMESTAMP (Lambda refuses it for them).
            Position::AtTimestampMs(_) | Position::TrimHorizon => {
                input["ShardIteratorType"] = json!("TRIM_HORIZON")
            }
        }
        let out = svc.call(ctx, "GetShardIterator", input).await?;
        Ok(out["ShardIterator"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Up to `limit` records from `iterator`.
    pub async fn read(
        self,
        svc: &dyn Service,
        ctx: &RequestContext,
        iterator: &str,
        limit: usize,
    ) -> Result<Page, AwsError> {
        let out = svc
            .call(
                ctx,
                "GetRecords",
                json!({"ShardIterator": iterator, "Limit": limit.clamp(1, 10_000)}),
            )
            .await?;
        let records = out["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| self.record(r.clone()))
            .collect();
        Ok(Page {
            records,
            next: out["NextShardIterator"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from),
        })
    }

    fn record(self, raw: Value) -> StreamRecord {
        match self {
            ShardSource::Kinesis => StreamRecord {
                seq: raw["SequenceNumber"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                arrival_ms: seconds_to_ms(&raw["ApproximateArrivalTimestamp"]),
                partition_key: raw["PartitionKey"].as_str().unwrap_or_default().to_string(),
                raw,
            },
            ShardSource::DynamoDbStreams => {
                let d = &raw["dynamodb"];
                StreamRecord {
                    seq: d["SequenceNumber"].as_str().unwrap_or_default().to_string(),
                    arrival_ms: seconds_to_ms(&d["ApproximateCreationDateTime"]),
                    // serde_json's maps are sorted, so equal keys print equally.
                    partition_key: d["Keys"].to_string(),
                    raw,
                }
            }
        }
    }

    /// How long the stream keeps records, or `None` when the stream is gone.
    pub async fn retention_ms(
        self,
        svc: &dyn Service,
        ctx: &RequestContext,
        arn: &str,
    ) -> Option<i64> {
        match self {
            ShardSource::Kinesis => {
                let out = svc
                    .call(ctx, "DescribeStreamSummary", json!({"StreamARN": arn}))
                    .await
                    .ok()?;
                let hours = out
                    .pointer("/StreamDescriptionSummary/RetentionPeriodHours")
                    .and_then(Value::as_i64)
                    .unwrap_or(24);
                Some(hours * 3_600_000)
            }
            ShardSource::DynamoDbStreams => {
                svc.call(ctx, "DescribeStream", json!({"StreamArn": arn, "Limit": 1}))
                    .await
                    .ok()?;
                Some(DYNAMODB_RETENTION_MS)
            }
        }
    }

    /// Lambda's event record for one record read from `shard` of the stream `arn`.
    pub fn event_record(
        self,
        r: &StreamRecord,
        shard: &str,
        arn: &str,
        ctx: &RequestContext,
    ) -> Value {
        match self {
            ShardSource::Kinesis => json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.raw["PartitionKey"],
                    "sequenceNumber": r.raw["SequenceNumber"],
                    "data": r.raw["Data"],
                    "approximateArrivalTimestamp": r.raw["ApproximateArrivalTimestamp"],
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{}", r.seq),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{}:role/tsumiki-event-source-mapping", ctx.account),
                "awsRegion": ctx.region,
                "eventSourceARN": arn,
            }),
            // The stream's own record, plus the stream's ARN (AWS adds only that).
            ShardSource::DynamoDbStreams => {
                let mut e = r.raw.clone();
                if let Some(o) = e.as_object_mut() {
                    o.insert("eventSourceARN".into(), json!(arn));
                }
                e
            }
        }
    }
}

/// `table/NAME/stream/LABEL`.
fn is_table_stream(resource: &str) -> bool {
    let parts: Vec<&str> = resource.split('/').collect();
    matches!(parts.as_slice(), ["table", name, "stream", label] if !name.is_empty() && !label.is_empty())
}

fn seconds_to_ms(v: &Value) -> i64 {
    v.as_f64().map_or(0, |s| (s * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use parking_lot::Mutex;

    const DDB_ARN: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-29T01:00:00.000";

    #[test]
    fn sources_are_told_apart_by_arn() {
        assert_eq!(
            ShardSource::of_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s"),
            Some(ShardSource::Kinesis)
        );
        assert_eq!(
            ShardSource::of_arn(DDB_ARN),
            Some(ShardSource::DynamoDbStreams)
        );
        assert_eq!(
            ShardSource::of_arn("arn:aws:dynamodb:us-east-1:123456789012:table/orders"),
            None
        );
        assert_eq!(ShardSource::of_arn("arn:aws:sqs:us-east-1:1:q"), None);
    }

    /// A DynamoDB Streams stand-in answering from fixed shards and records, as the model
    /// shapes them, and remembering what it was asked.
    struct FakeStreams {
        calls: Mutex<Vec<(String, Value)>>,
    }

    fn ddb_record(seq: &str, id: &str) -> Value {
        json!({
            "eventID": format!("e{seq}"),
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_764_378_000.0,
                "Keys": {"id": {"S": id}},
                "NewImage": {"id": {"S": id}, "n": {"N": "1"}},
                "SequenceNumber": seq,
                "SizeBytes": 26,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        })
    }

    #[async_trait]
    impl Service for FakeStreams {
        fn name(&self) -> &'static str {
            "dynamodbstreams"
        }

        async fn call(
            &self,
            _ctx: &RequestContext,
            operation: &str,
            input: Value,
        ) -> Result<Value, AwsError> {
            self.calls
                .lock()
                .push((operation.to_string(), input.clone()));
            match operation {
                "DescribeStream" if input.get("ExclusiveStartShardId").is_none() => {
                    Ok(json!({"StreamDescription": {
                        "StreamArn": DDB_ARN,
                        "StreamStatus": "ENABLED",
                        "Shards": [{
                            "ShardId": "shardId-0001",
                            "SequenceNumberRange": {
                                "StartingSequenceNumber": "100",
                                "EndingSequenceNumber": "200",
                            },
                        }],
                        "LastEvaluatedShardId": "shardId-0001",
                    }}))
                }
                "DescribeStream" => Ok(json!({"StreamDescription": {
                    "StreamArn": DDB_ARN,
                    "Shards": [{
                        "ShardId": "shardId-0002",
                        "ParentShardId": "shardId-0001",
                        "SequenceNumberRange": {"StartingSequenceNumber": "300"},
                    }],
                }})),
                "GetShardIterator" => Ok(json!({"ShardIterator": "it-1"})),
                "GetRecords" => Ok(json!({
                    "Records": [ddb_record("101", "a"), ddb_record("102", "b")],
                })),
                other => Err(AwsError::not_implemented("dynamodbstreams", other)),
            }
        }

        async fn reset(&self) -> Result<(), AwsError> {
            Ok(())
        }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            request_id: String::new(),
            base_url: String::new(),
            access_key: None,
            path: "/".into(),
        }
    }

    #[tokio::test]
    async fn dynamodb_streams_are_read_through_their_own_operations() {
        let fake = FakeStreams {
            calls: Mutex::new(Vec::new()),
        };
        let src = ShardSource::DynamoDbStreams;
        let shards = src.shards(&fake, &ctx(), DDB_ARN).await.expect("shards");
        assert_eq!(
            shards,
            vec![
                ShardInfo {
                    id: "shardId-0001".into(),
                    parents: vec![],
                    closed: true
                },
                ShardInfo {
                    id: "shardId-0002".into(),
                    parents: vec!["shardId-0001".into()],
                    closed: false
                },
            ]
        );
        let it = src
            .iterator(
                &fake,
                &ctx(),
                DDB_ARN,
                "shardId-0001",
                Position::After("100"),
            )
            .await
            .expect("iterator");
        assert_eq!(it, "it-1");
        let page = src.read(&fake, &ctx(), &it, 50).await.expect("records");
        // No NextShardIterator: the closed shard is read to its end.
        assert_eq!(page.next, None);
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].seq, "101");
        assert_eq!(page.records[0].arrival_ms, 1_764_378_000_000);
        assert_eq!(page.records[0].partition_key, r#"{"id":{"S":"a"}}"#);
        let calls = fake.calls.lock().clone();
        assert_eq!(calls[1].1["ExclusiveStartShardId"], "shardId-0001");
        assert_eq!(
            calls[2].1,
            json!({"StreamArn": DDB_ARN, "ShardId": "shardId-0001",
                   "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "100"})
        );
        assert_eq!(calls[3].1, json!({"ShardIterator": "it-1", "Limit": 50}));
        assert_eq!(
            src.retention_ms(&fake, &ctx(), DDB_ARN).await,
            Some(DYNAMODB_RETENTION_MS)
        );
    }

    #[test]
    fn dynamodb_event_records_are_the_stream_record_plus_its_arn() {
        let src = ShardSource::DynamoDbStreams;
        let r = src.record(ddb_record("101", "a"));
        let e = src.event_record(&r, "shardId-0001", DDB_ARN, &ctx());
        let mut expected = ddb_record("101", "a");
        expected["eventSourceARN"] = json!(DDB_ARN);
        assert_eq!(e, expected);
        assert_eq!(e["eventSource"], "aws:dynamodb");
        assert_eq!(src.batch_info_key(), "DDBStreamBatchInfo");
    }

    #[test]
    fn kinesis_event_records_have_aws_shape() {
        let src = ShardSource::Kinesis;
        let r = src.record(
            json!({"SequenceNumber": "49", "ApproximateArrivalTimestamp": 1.5,
                                  "Data": "aGk=", "PartitionKey": "k"}),
        );
        assert_eq!(r.arrival_ms, 1500);
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
        let e = src.event_record(&r, "shardId-000000000000", arn, &ctx());
        assert_eq!(e["eventID"], "shardId-000000000000:49");
        assert_eq!(e["kinesis"]["data"], "aGk=");
        assert_eq!(e["kinesis"]["partitionKey"], "k");
        assert_eq!(e["kinesis"]["kinesisSchemaVersion"], "1.0");
        assert_eq!(e["eventSource"], "aws:kinesis");
        assert_eq!(e["eventSourceARN"], arn);
        assert_eq!(e["awsRegion"], "us-east-1");
    }
}
