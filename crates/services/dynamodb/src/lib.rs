//! Amazon DynamoDB (json 1.0) and DynamoDB Streams, in one crate and two `Service`s
//! ([`DynamoDb`] and [`DynamoDbStreams`]) because a stream record is written in the same store
//! batch as the item change it describes.
//!
//! Tables with key schemas, local and global secondary indexes, TTL and tags (`tables.rs`);
//! items with condition, update and projection expressions from `tsumiki_lang::dynamodb`
//! (`items.rs`); Query and Scan (`query.rs`); batches and transactions (`batch.rs`); streams,
//! shards and GetRecords (`streams.rs`); PartiQL statements over the same paths (`partiql.rs`). Read `state.rs` first: everything lives in memory behind
//! one lock; a change and its store batch are queued under it and answered after the commit.
//!
//! The legacy parameters (`Expected`, `AttributeUpdates`, `KeyConditions`, `QueryFilter`,
//! `ScanFilter`, `AttributesToGet`) are translated into the same expression AST
//! (`tsumiki_lang::dynamodb::legacy`). What it does not (yet): backups, global tables, imports
//! and exports; those answer `NotImplemented`. Item changes also go to Kinesis streaming destinations
//! (`kinesis.rs`). Capacity is never
//! throttled. A created table is `ACTIVE` at once.

mod batch;
mod items;
mod kinesis;
mod partiql;
mod query;
mod state;
mod streams;
mod tables;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_lang::dynamodb::AttrValue;
use tsumiki_store::{Batch, Store};

use crate::state::{State, TableKey};

/// The DynamoDB model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/dynamodb.json");
/// The DynamoDB Streams model.
pub const STREAMS_MODEL_JSON: &str = include_str!("../../../../models/dynamodbstreams.json");

pub(crate) struct Inner {
    state: Mutex<State>,
    store: Store,
    clock: Arc<Clock>,
    /// Other services, by name: Kinesis for streaming destinations.
    services: parking_lot::RwLock<tsumiki_ports::Services>,
}

/// The DynamoDB service.
pub struct DynamoDb {
    inner: Arc<Inner>,
}

/// The DynamoDB Streams service, reading the records [`DynamoDb`] writes.
pub struct DynamoDbStreams {
    inner: Arc<Inner>,
}

impl DynamoDb {
    /// Loads every table, item and stream record from `store` and starts the TTL and stream
    /// retention sweep.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Arc<DynamoDb>, tsumiki_store::StoreError> {
        let (state, items) = state::load(&store).await?;
        tracing::info!(tables = state.tables.len(), items, "DynamoDB state loaded.");
        let ready = state.outbox_ready.clone();
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            store,
            clock,
            services: parking_lot::RwLock::new(tsumiki_ports::Services::default()),
        });
        tokio::spawn(tables::sweeper(Arc::downgrade(&inner)));
        tokio::spawn(kinesis::publisher(Arc::downgrade(&inner), ready));
        Ok(Arc::new(DynamoDb { inner }))
    }

    /// The services Kinesis streaming destinations reach (`kinesis`).
    pub fn set_services(&self, services: tsumiki_ports::Services) {
        *self.inner.services.write() = services;
    }

    /// The DynamoDB Streams service over this DynamoDB's tables.
    pub fn streams(&self) -> Arc<DynamoDbStreams> {
        Arc::new(DynamoDbStreams {
            inner: self.inner.clone(),
        })
    }
}

/// DynamoDB's clients check every response against its CRC32.
fn crc32_header(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![("x-amz-crc32", crc32fast::hash(body).to_string())]
}

/// DynamoDB's `__type`: Coral's own errors under their Coral namespaces, the service's under
/// `com.amazonaws.dynamodb.v20120810` (what DynamoDB sends; SDKs read the part after `#`).
fn namespaced(mut err: AwsError) -> AwsError {
    if err.code.contains('#') {
        return err;
    }
    let namespace = match err.code.as_ref() {
        "ValidationException" => "com.amazon.coral.validate",
        "ThrottlingException" => "com.amazon.coral.availability",
        "SerializationException"
        | "UnknownOperationException"
        | "InternalFailure"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "MissingAuthenticationTokenException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "NotImplemented" => "com.amazon.coral.service",
        _ => "com.amazonaws.dynamodb.v20120810",
    };
    err.code = format!("{namespace}#{}", err.code).into();
    err
}

#[async_trait]
impl tsumiki_ports::Service for DynamoDb {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        let d = &*self.inner;
        match operation {
            "CreateTable" => tables::create_table(d, ctx, &input).await,
            "DescribeTable" => tables::describe_table(d, ctx, &input),
            "ListTables" => tables::list_tables(d, ctx, &input),
            "UpdateTable" => tables::update_table(d, ctx, &input).await,
            "DeleteTable" => tables::delete_table(d, ctx, &input).await,
            "UpdateTimeToLive" => tables::update_ttl(d, ctx, &input).await,
            "DescribeTimeToLive" => tables::describe_ttl(d, ctx, &input),
            "TagResource" => tables::tag_resource(d, ctx, &input).await,
            "UntagResource" => tables::untag_resource(d, ctx, &input).await,
            "ListTagsOfResource" => tables::list_tags(d, ctx, &input),
            "DescribeEndpoints" => Ok(serde_json::json!({"Endpoints": [
                {"Address": format!("dynamodb.{}.amazonaws.com", ctx.region), "CachePeriodInMinutes": 1440}]})),
            "DescribeLimits" => Ok(serde_json::json!({
                "AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
                "TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000})),
            "PutItem" => items::put_item(d, ctx, &input).await,
            "GetItem" => items::get_item(d, ctx, &input),
            "UpdateItem" => items::update_item(d, ctx, &input).await,
            "DeleteItem" => items::delete_item(d, ctx, &input).await,
            "Query" => query::query(d, ctx, &input),
            "Scan" => query::scan(d, ctx, &input),
            "BatchGetItem" => batch::batch_get(d, ctx, &input),
            "BatchWriteItem" => batch::batch_write(d, ctx, &input).await,
            "TransactWriteItems" => batch::transact_write(d, ctx, &input).await,
            "TransactGetItems" => batch::transact_get(d, ctx, &input),
            "EnableKinesisStreamingDestination" => kinesis::enable(d, ctx, &input).await,
            "DisableKinesisStreamingDestination" => kinesis::disable(d, ctx, &input).await,
            "DescribeKinesisStreamingDestination" => kinesis::describe(d, ctx, &input),
            "ExecuteStatement" => partiql::execute_statement(d, ctx, &input).await,
            "BatchExecuteStatement" => partiql::batch_execute_statement(d, ctx, &input).await,
            "ExecuteTransaction" => partiql::execute_transaction(d, ctx, &input).await,
            other => Err(AwsError::not_implemented("dynamodb", other)),
        }
    }

    fn response_headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        crc32_header(body)
    }

    fn wire_error(&self, err: AwsError) -> AwsError {
        namespaced(err)
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let d = &*self.inner;
        let commit = {
            let mut state = d.state.lock();
            state.tables.clear();
            state.tokens.clear();
            state.outbox.clear();
            let mut batch = Batch::new();
            state::reset(&mut batch);
            d.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

#[async_trait]
impl tsumiki_ports::Service for DynamoDbStreams {
    fn name(&self) -> &'static str {
        "dynamodbstreams"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        let d = &*self.inner;
        match operation {
            "ListStreams" => streams::list_streams(d, ctx, &input),
            "DescribeStream" => streams::describe_stream(d, ctx, &input),
            "GetShardIterator" => streams::get_shard_iterator(d, ctx, &input),
            "GetRecords" => streams::get_records(d, ctx, &input),
            other => Err(AwsError::not_implemented("dynamodbstreams", other)),
        }
    }

    fn response_headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        crc32_header(body)
    }

    async fn reset(&self) -> Result<(), AwsError> {
        // DynamoDB's reset clears the tables and with them their streams.
        Ok(())
    }
}

/// A store failure is a server fault; the details go to the log, not the client.
pub(crate) fn store_error(e: tsumiki_store::StoreError) -> AwsError {
    tracing::error!(error = %e, "DynamoDB could not write to the store.");
    AwsError::new("InternalServerError", 500, "Internal server error")
}

pub(crate) fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new("ValidationException", 400, message)
}

pub(crate) fn invalid_param(message: impl std::fmt::Display) -> AwsError {
    validation(format!(
        "One or more parameter values were invalid: {message}"
    ))
}

pub(crate) fn not_found() -> AwsError {
    AwsError::new(
        "ResourceNotFoundException",
        400,
        "Requested resource not found",
    )
}

/// AWS refuses a request mixing legacy and expression parameters, naming both sides in the
/// order given here.
pub(crate) fn check_mixed(
    input: &Value,
    expressions: &[&str],
    legacy: &[&str],
) -> Result<(), AwsError> {
    let present = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| input.get(**n).is_some_and(|v| !v.is_null()))
            .map(|n| n.to_string())
            .collect()
    };
    let (exprs, olds) = (present(expressions), present(legacy));
    if !exprs.is_empty() && !olds.is_empty() {
        return Err(validation(format!(
            "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{}}} Expression parameters: {{{}}}",
            olds.join(", "),
            exprs.join(", ")
        )));
    }
    Ok(())
}

/// An object parameter of a request, if given.
pub(crate) fn object<'a>(
    input: &'a Value,
    name: &str,
) -> Option<&'a serde_json::Map<String, Value>> {
    input.get(name).and_then(Value::as_object)
}

/// The table a request names by `TableName` (a name or a table ARN).
pub(crate) fn table_key_of(ctx: &RequestContext, name: &str) -> TableKey {
    if let Some((_, region, account, res)) = tsumiki_core::ids::parse_arn(name)
        && let Some(table) = res.strip_prefix("table/")
    {
        return TableKey {
            account: account.to_string(),
            region: region.to_string(),
            name: table.split('/').next().unwrap_or(table).to_string(),
        };
    }
    TableKey {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: name.to_string(),
    }
}

pub(crate) fn table_key(ctx: &RequestContext, input: &Value) -> TableKey {
    table_key_of(
        ctx,
        input
            .get("TableName")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// A request's `ExpressionAttributeNames` and `ExpressionAttributeValues`, read and checked.
pub(crate) struct ExprInput {
    pub names: BTreeMap<String, String>,
    pub values: BTreeMap<String, AttrValue>,
}

impl ExprInput {
    pub fn read(input: &Value) -> Result<ExprInput, AwsError> {
        let mut names = BTreeMap::new();
        if let Some(obj) = input
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object)
        {
            if obj.is_empty() {
                return Err(validation("ExpressionAttributeNames must not be empty"));
            }
            for (k, v) in obj {
                names.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        let mut values = BTreeMap::new();
        if let Some(obj) = input
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object)
        {
            if obj.is_empty() {
                return Err(validation("ExpressionAttributeValues must not be empty"));
            }
            for (k, v) in obj {
                if !k.starts_with(':') {
                    return Err(validation(format!(
                        "ExpressionAttributeValues contains invalid key: Syntax error; key: \"{k}\""
                    )));
                }
                let v = AttrValue::from_json(v).map_err(|m| {
                    validation(format!(
                        "ExpressionAttributeValues contains invalid value: {m} for key {k}"
                    ))
                })?;
                values.insert(k.clone(), v);
            }
        }
        Ok(ExprInput { names, values })
    }

    /// AWS refuses placeholders when no expression is given.
    pub fn check_present(&self, input: &Value, expressions: &[&str]) -> Result<(), AwsError> {
        let any = expressions.iter().any(|e| input.get(*e).is_some());
        if !any && !self.names.is_empty() {
            return Err(validation(
                "ExpressionAttributeNames can only be specified when using expressions",
            ));
        }
        if !any && !self.values.is_empty() {
            return Err(validation(
                "ExpressionAttributeValues can only be specified when using expressions",
            ));
        }
        Ok(())
    }
}
