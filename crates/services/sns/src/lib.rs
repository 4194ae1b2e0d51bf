//! Amazon SNS (query): standard and FIFO topics, subscriptions with confirmation, filter
//! policies (through `tsumiki_lang::filter_policy`), Publish and PublishBatch, and durable
//! asynchronous delivery to SQS (raw or in AWS's JSON envelope), Lambda (through the
//! `AsyncInvoke` port, in AWS's SNS event shape), HTTP endpoints (the confirmation handshake,
//! `x-amz-sns-*` headers, AWS's retry policy on the clock, messages signed with
//! `SignatureVersion` 1 or 2 by `signing.rs`, whose certificate is served at the
//! `SigningCertURL`) and `email`/`email-json` (files in
//! a mailbox folder) and Firehose delivery streams (`PutRecord` through `Services`, one
//! compact JSON line per message), with subscription dead-letter queues.
//!
//! What it does not (yet): SMS, mobile push (platform applications), HTTPS (no TLS client),
//! signatures outside HTTP deliveries (SQS envelopes carry an empty `Signature`), data
//! protection enforcement (policies are stored), message archiving and replay; those answer
//! `NotImplemented` or are stored only.
//!
//! Read `state.rs` (data and durability), then `publish.rs` and `deliver.rs`.

mod deliver;
mod envelope;
mod publish;
mod signing;

pub use signing::CertEndpoint;
mod state;
mod subs;
mod topics;

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::{AsyncInvoke, Services};
use tsumiki_store::{Batch, Store};

use crate::state::State;

/// The SNS model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/sns.json");

/// The SNS service.
pub struct Sns {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
    services: RwLock<Services>,
    lambda: RwLock<Option<Arc<dyn AsyncInvoke>>>,
    endpoint: RwLock<String>,
    mailbox: PathBuf,
    dispatch: deliver::Dispatch,
    me: Weak<Sns>,
}

impl Sns {
    /// Loads topics, subscriptions and undelivered messages from `store`. Emails are written
    /// under `mailbox`. Deliveries start once [`Sns::set_endpoint`] is called.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        mailbox: PathBuf,
    ) -> Result<Arc<Sns>, tsumiki_store::StoreError> {
        let (state, pending) = state::load(&store, clock.now_ms()).await?;
        tracing::info!(
            topics = state.topics.len(),
            subscriptions = state.subs.len(),
            undelivered = pending.deliveries.len(),
            "SNS state loaded."
        );
        let sns = Arc::new_cyclic(|me| Sns {
            state: Mutex::new(state),
            store,
            clock,
            services: RwLock::new(Services::default()),
            lambda: RwLock::new(None),
            endpoint: RwLock::new("http://localhost:4566".into()),
            mailbox,
            dispatch: deliver::Dispatch::default(),
            me: me.clone(),
        });
        sns.dispatch.restore(pending);
        Ok(sns)
    }

    /// The services deliveries go to (`sqs`).
    pub fn set_services(&self, services: Services) {
        *self.services.write() = services;
    }

    /// Where Lambda subscriptions' events go.
    pub fn set_async_invoke(&self, invoker: Arc<dyn AsyncInvoke>) {
        *self.lambda.write() = Some(invoker);
    }

    /// The base URL clients reach tsumiki at (SubscribeURL, UnsubscribeURL, queue URLs). Starts
    /// the deliveries restored from the store.
    pub fn set_endpoint(&self, endpoint: &str) {
        *self.endpoint.write() = endpoint.trim_end_matches('/').to_string();
        self.dispatch.set_ready(self);
    }

    pub(crate) fn endpoint(&self) -> String {
        self.endpoint.read().clone()
    }

    pub(crate) fn myself(&self) -> Option<Arc<Sns>> {
        self.me.upgrade()
    }
}

#[async_trait]
impl tsumiki_ports::Service for Sns {
    fn name(&self) -> &'static str {
        "sns"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "CreateTopic" => topics::create_topic(self, ctx, &input).await,
            "DeleteTopic" => topics::delete_topic(self, ctx, &input).await,
            "ListTopics" => topics::list_topics(self, ctx, &input),
            "GetTopicAttributes" => topics::get_topic_attributes(self, ctx, &input),
            "SetTopicAttributes" => topics::set_topic_attributes(self, ctx, &input).await,
            "TagResource" => topics::tag_resource(self, ctx, &input).await,
            "UntagResource" => topics::untag_resource(self, ctx, &input).await,
            "ListTagsForResource" => topics::list_tags_for_resource(self, ctx, &input),
            "GetDataProtectionPolicy" => topics::get_data_protection_policy(self, ctx, &input),
            "PutDataProtectionPolicy" => {
                topics::put_data_protection_policy(self, ctx, &input).await
            }
            "Subscribe" => subs::subscribe(self, ctx, &input).await,
            "ConfirmSubscription" => subs::confirm_subscription(self, ctx, &input).await,
            "Unsubscribe" => subs::unsubscribe(self, ctx, &input).await,
            "ListSubscriptions" => subs::list_subscriptions(self, ctx, &input),
            "ListSubscriptionsByTopic" => subs::list_subscriptions_by_topic(self, ctx, &input),
            "GetSubscriptionAttributes" => subs::get_subscription_attributes(self, ctx, &input),
            "SetSubscriptionAttributes" => {
                subs::set_subscription_attributes(self, ctx, &input).await
            }
            "Publish" => publish::publish(self, ctx, &input).await,
            "PublishBatch" => publish::publish_batch(self, ctx, &input).await,
            other => Err(AwsError::not_implemented("sns", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let commit = {
            let mut state = self.state.lock();
            *state = State::default();
            self.dispatch.clear();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "SNS could not write to the store.");
    AwsError::new("InternalError", 500, "Internal error")
}

/// SNS's `InvalidParameter`: the message always starts with `Invalid parameter: `.
pub(crate) fn invalid(what: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        "InvalidParameter",
        400,
        format!("Invalid parameter: {what}"),
    )
}

pub(crate) fn topic_not_found() -> AwsError {
    AwsError::new("NotFound", 404, "Topic does not exist")
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A model map (`{"k": "v"}`) as ordered strings.
pub(crate) fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `arn` is a topic ARN in the caller's account and region and names it.
pub(crate) fn topic_arn<'a>(
    ctx: &RequestContext,
    arn: &'a str,
    member: &str,
) -> Result<&'a str, AwsError> {
    match tsumiki_core::ids::parse_arn(arn) {
        Some(("sns", region, account, name))
            if !name.is_empty()
                && !name.contains(':')
                && region == ctx.region
                && account == ctx.account =>
        {
            Ok(arn)
        }
        Some(("sns", _, _, name)) if !name.is_empty() && !name.contains(':') => {
            Err(topic_not_found())
        }
        _ => Err(invalid(member)),
    }
}
