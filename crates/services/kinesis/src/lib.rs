//! Amazon Kinesis Data Streams (json 1.1): streams with provisioned or on-demand shards,
//! records routed by partition key (MD5 -> 128-bit hash key -> shard), shard iterators of every
//! type, retention with trimming on the clock, tags, and resharding (SplitShard, MergeShards,
//! UpdateShardCount's UNIFORM_SCALING as a series of splits and merges): a closed shard keeps
//! its records, names its children at its end (`ChildShards`, no `NextShardIterator`) and
//! leaves listings once its records pass the retention.
//!
//! What it does not (yet): enhanced fan-out consumers, encryption, throughput limits; those
//! operations answer `NotImplemented`.
//! A created stream is `ACTIVE` at once (AWS passes through `CREATING` for a few seconds).
//! Read `state.rs` (data and durability), then `records.rs`.

mod records;
mod state;
mod streams;

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_store::{Batch, Store};

use crate::state::{State, StreamKey};

/// The Kinesis model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/kinesis.json");

/// The Kinesis service.
pub struct Kinesis {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
}

impl Kinesis {
    /// Loads every stream and record from `store` and starts the retention sweep.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Arc<Kinesis>, tsumiki_store::StoreError> {
        let (state, records) = state::load(&store).await?;
        tracing::info!(
            streams = state.streams.len(),
            records,
            "Kinesis state loaded."
        );
        let kinesis = Arc::new(Kinesis {
            state: Mutex::new(state),
            store,
            clock,
        });
        let sweeper = Arc::downgrade(&kinesis);
        tokio::spawn(records::retention_sweeper(sweeper));
        Ok(kinesis)
    }
}

#[async_trait]
impl tsumiki_ports::Service for Kinesis {
    fn name(&self) -> &'static str {
        "kinesis"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateStream" => streams::create_stream(self, ctx, &input).await,
            "DeleteStream" => streams::delete_stream(self, ctx, &input).await,
            "DescribeStream" => streams::describe_stream(self, ctx, &input),
            "DescribeStreamSummary" => streams::describe_stream_summary(self, ctx, &input),
            "ListStreams" => streams::list_streams(self, ctx, &input),
            "ListShards" => streams::list_shards(self, ctx, &input),
            "IncreaseStreamRetentionPeriod" => {
                streams::change_retention(self, ctx, &input, true).await
            }
            "DecreaseStreamRetentionPeriod" => {
                streams::change_retention(self, ctx, &input, false).await
            }
            "AddTagsToStream" => streams::add_tags(self, ctx, &input).await,
            "RemoveTagsFromStream" => streams::remove_tags(self, ctx, &input).await,
            "ListTagsForStream" => streams::list_tags(self, ctx, &input),
            "SplitShard" => streams::split_shard(self, ctx, &input).await,
            "MergeShards" => streams::merge_shards(self, ctx, &input).await,
            "UpdateShardCount" => streams::update_shard_count(self, ctx, &input).await,
            "PutRecord" => records::put_record(self, ctx, &input).await,
            "PutRecords" => records::put_records(self, ctx, &input).await,
            "GetShardIterator" => records::get_shard_iterator(self, ctx, &input),
            "GetRecords" => records::get_records(self, ctx, &input),
            other => Err(AwsError::not_implemented("kinesis", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let commit = {
            let mut state = self.state.lock();
            state.streams.clear();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "Kinesis could not write to the store.");
    AwsError::internal()
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidArgumentException", 400, message)
}

pub(crate) fn not_found(key: &StreamKey) -> AwsError {
    AwsError::new(
        "ResourceNotFoundException",
        400,
        format!(
            "Stream {} under account {} not found.",
            key.name, key.account
        ),
    )
}

/// The stream a request names by `StreamName` or `StreamARN` (the ARN wins; its account and
/// region must be the caller's).
pub(crate) fn stream_key(ctx: &RequestContext, input: &Value) -> Result<StreamKey, AwsError> {
    if let Some(arn) = input.get("StreamARN").and_then(Value::as_str) {
        let parsed = tsumiki_core::ids::parse_arn(arn)
            .filter(|(service, _, _, res)| *service == "kinesis" && res.starts_with("stream/"));
        let Some((_, region, account, res)) = parsed else {
            return Err(invalid(format!("StreamARN {arn} is not a stream ARN.")));
        };
        return Ok(StreamKey {
            account: account.to_string(),
            region: region.to_string(),
            name: res["stream/".len()..].to_string(),
        });
    }
    match input.get("StreamName").and_then(Value::as_str) {
        Some(name) => Ok(StreamKey {
            account: ctx.account.clone(),
            region: ctx.region.clone(),
            name: name.to_string(),
        }),
        None => Err(invalid(
            "Either StreamName or StreamARN should be provided.",
        )),
    }
}
