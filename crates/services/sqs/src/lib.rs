//! Amazon SQS: standard and FIFO queues, every operation of the 2012-11-05 API, over the json
//! and query protocols (the gateway decodes both into the same input values).
//!
//! What it does: queue lifecycle and attributes with AWS's defaults and limits, tags,
//! permissions, messages with delays, visibility timeouts, long polling, retention, message
//! attributes with AWS's MD5 digests, dead-letter redrive and message move tasks, FIFO
//! ordering per group with deduplication. What it does not: KMS encryption (keys are stored,
//! nothing is encrypted), policy enforcement (policies are stored), throttling.
//! Read `state.rs` (data and durability), then `message.rs`.

mod attributes;
mod digest;
mod error;
mod input;
mod message;
mod queue;
mod state;
mod tags;
mod tasks;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_store::Store;

use crate::state::State;

/// The SQS model this service implements (botocore's, docs stripped, with the awsQuery
/// overlay from `tools/models/overlays/sqs.json`).
pub const MODEL_JSON: &str = include_str!("../../../../models/sqs.json");

/// The SQS service.
pub struct Sqs {
    state: Arc<State>,
    clock: Arc<Clock>,
    tasks: Arc<tasks::Tasks>,
}

impl Sqs {
    /// Loads SQS's state from `store` and starts its timers (retention, move tasks).
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Arc<Sqs>, tsumiki_store::StoreError> {
        let state = Arc::new(State::new(store));
        let messages = state.load().await?;
        let tasks = Arc::new(tasks::Tasks::default());
        let sqs = Arc::new(Sqs {
            state,
            clock,
            tasks,
        });
        tracing::info!(
            queues = sqs.state.queues.read().len(),
            messages,
            "SQS state loaded."
        );
        tasks::resume(&sqs).await?;
        let sweeper = Arc::downgrade(&sqs);
        tokio::spawn(async move { message::retention_sweeper(sweeper).await });
        Ok(sqs)
    }
}

#[async_trait]
impl tsumiki_ports::Service for Sqs {
    fn name(&self) -> &'static str {
        "sqs"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateQueue" => queue::create_queue(self, ctx, &input).await,
            "DeleteQueue" => queue::delete_queue(self, ctx, &input).await,
            "GetQueueUrl" => queue::get_queue_url(self, ctx, &input),
            "ListQueues" => queue::list_queues(self, ctx, &input),
            "GetQueueAttributes" => queue::get_queue_attributes(self, ctx, &input),
            "SetQueueAttributes" => queue::set_queue_attributes(self, ctx, &input).await,
            "PurgeQueue" => queue::purge_queue(self, ctx, &input).await,
            "AddPermission" => queue::add_permission(self, ctx, &input).await,
            "RemovePermission" => queue::remove_permission(self, ctx, &input).await,
            "ListDeadLetterSourceQueues" => {
                queue::list_dead_letter_source_queues(self, ctx, &input)
            }
            "TagQueue" => tags::tag_queue(self, ctx, &input).await,
            "UntagQueue" => tags::untag_queue(self, ctx, &input).await,
            "ListQueueTags" => tags::list_queue_tags(self, ctx, &input),
            "SendMessage" => message::send_message(self, ctx, &input).await,
            "SendMessageBatch" => message::send_message_batch(self, ctx, &input).await,
            "ReceiveMessage" => message::receive_message(self, ctx, &input).await,
            "DeleteMessage" => message::delete_message(self, ctx, &input).await,
            "DeleteMessageBatch" => message::delete_message_batch(self, ctx, &input).await,
            "ChangeMessageVisibility" => {
                message::change_message_visibility(self, ctx, &input).await
            }
            "ChangeMessageVisibilityBatch" => {
                message::change_message_visibility_batch(self, ctx, &input).await
            }
            "StartMessageMoveTask" => tasks::start_message_move_task(self, ctx, &input).await,
            "CancelMessageMoveTask" => tasks::cancel_message_move_task(self, ctx, &input).await,
            "ListMessageMoveTasks" => tasks::list_message_move_tasks(self, ctx, &input),
            other => Err(AwsError::not_implemented("SQS", other)),
        }
    }

    fn complete_input(&self, ctx: &RequestContext, _operation: &str, input: &mut Value) {
        // The query API lets the queue URL be the endpoint itself, with no QueueUrl member.
        if let Value::Object(members) = input
            && !members.contains_key("QueueUrl")
            && ctx.path.trim_matches('/').contains('/')
        {
            members.insert(
                "QueueUrl".into(),
                Value::String(format!("{}{}", ctx.base_url, ctx.path)),
            );
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        self.tasks.cancel_all();
        self.state.reset().await.map_err(store_error)
    }
}

impl Sqs {
    /// Changes a queue's configuration under its lock and records the queue in the store,
    /// answering once the record is durable.
    pub(crate) async fn update_queue(
        &self,
        cell: &state::QueueCell,
        change: impl FnOnce(&mut state::Queue) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        let commit = {
            let mut q = cell.queue.lock();
            change(&mut q)?;
            let mut batch = tsumiki_store::Batch::new();
            state::writes::queue(&mut batch, &cell.key, &q);
            self.state.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "SQS could not write to the store.");
    AwsError::internal()
}
