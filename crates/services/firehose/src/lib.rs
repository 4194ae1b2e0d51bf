//! Amazon Data Firehose (json 1.1): delivery streams with Direct PUT or a Kinesis data stream
//! as source, delivering to S3 (the extended S3 destination): buffering by size and interval
//! on the clock, AWS's object keys with custom prefixes (`!{timestamp:...}`,
//! `!{firehose:...}`) and error prefixes, GZIP, and Lambda transformation with AWS's `records`
//! contract (`Ok`/`Dropped`/`ProcessingFailed`, failed records as `processing-failed` JSON
//! lines), UpdateDestination of the S3 destination (a new version; buffered records are
//! delivered with the configuration in force when they are flushed).
//!
//! What it does not (yet): other destinations (Redshift, OpenSearch, Splunk, HTTP endpoints,
//! Snowflake, Iceberg), MSK and database sources, dynamic partitioning, format conversion,
//! ZIP/Snappy compression and server-side encryption; those answer
//! `NotImplemented`. A created stream is `ACTIVE` at once.
//!
//! Read `state.rs` (data and durability), then `deliver.rs` (the flusher, transformation,
//! the Kinesis reader), `keys.rs` (object names).

mod deliver;
mod keys;
mod records;
mod state;
mod streams;

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::Notify;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_store::{Batch, Store};

use crate::state::{State, StreamKey};

/// The Firehose model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/firehose.json");

/// The Firehose service.
pub struct Firehose {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
    /// Wakes the flusher: records arrived, a flush ended.
    wake: Arc<Notify>,
    objects: OnceLock<Arc<dyn tsumiki_ports::ObjectStore>>,
    invoker: OnceLock<Weak<dyn tsumiki_ports::FunctionInvoker>>,
    services: RwLock<Option<tsumiki_ports::Services>>,
}

impl Firehose {
    /// Loads every delivery stream and buffered record from `store`, then starts the flusher
    /// (which also redoes a flush a crash cut short) and the Kinesis source reader.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Arc<Firehose>, tsumiki_store::StoreError> {
        let (state, records) = state::load(&store).await?;
        tracing::info!(
            delivery_streams = state.streams.len(),
            buffered_records = records,
            flushes_to_redo = state
                .streams
                .values()
                .filter(|s| s.intent.is_some())
                .count(),
            "Firehose state loaded."
        );
        let firehose = Arc::new(Firehose {
            state: Mutex::new(state),
            store,
            clock,
            wake: Arc::new(Notify::new()),
            objects: OnceLock::new(),
            invoker: OnceLock::new(),
            services: RwLock::new(None),
        });
        tokio::spawn(deliver::flusher(Arc::downgrade(&firehose)));
        tokio::spawn(deliver::kinesis_reader(Arc::downgrade(&firehose)));
        Ok(firehose)
    }

    /// Where delivered objects are written (S3).
    pub fn set_object_store(&self, objects: Arc<dyn tsumiki_ports::ObjectStore>) {
        let _ = self.objects.set(objects);
        self.wake.notify_one();
    }

    /// Runs transformation functions (Lambda).
    pub fn set_invoker(&self, invoker: Weak<dyn tsumiki_ports::FunctionInvoker>) {
        let _ = self.invoker.set(invoker);
    }

    /// Other services by name: Kinesis for `KinesisStreamAsSource` streams.
    pub fn set_services(&self, services: tsumiki_ports::Services) {
        *self.services.write() = Some(services);
    }
}

#[async_trait]
impl tsumiki_ports::Service for Firehose {
    fn name(&self) -> &'static str {
        "firehose"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateDeliveryStream" => streams::create_delivery_stream(self, ctx, &input).await,
            "DeleteDeliveryStream" => streams::delete_delivery_stream(self, ctx, &input).await,
            "DescribeDeliveryStream" => streams::describe_delivery_stream(self, ctx, &input),
            "ListDeliveryStreams" => streams::list_delivery_streams(self, ctx, &input),
            "TagDeliveryStream" => streams::tag_delivery_stream(self, ctx, &input).await,
            "UntagDeliveryStream" => streams::untag_delivery_stream(self, ctx, &input).await,
            "ListTagsForDeliveryStream" => {
                streams::list_tags_for_delivery_stream(self, ctx, &input)
            }
            "UpdateDestination" => streams::update_destination(self, ctx, &input).await,
            "PutRecord" => records::put_record(self, ctx, &input).await,
            "PutRecordBatch" => records::put_record_batch(self, ctx, &input).await,
            other => Err(AwsError::not_implemented("firehose", other)),
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
    tracing::error!(error = %e, "Firehose could not write to the store.");
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
            "Firehose {} under account {} not found.",
            key.name, key.account
        ),
    )
}

/// The delivery stream a request names.
pub(crate) fn stream_key(ctx: &RequestContext, input: &Value) -> StreamKey {
    StreamKey {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: input
            .get("DeliveryStreamName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}
