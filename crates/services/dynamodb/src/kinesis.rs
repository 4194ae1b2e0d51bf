//! Kinesis Data Streams as a streaming destination: Enable/Disable/DescribeKinesisStreamingDestination,
//! and the publisher that puts each item change to the stream through `ports::Services`
//! (`kinesis` PutRecord) in AWS's record shape for DynamoDB-to-Kinesis.
//!
//! Changes are queued in `State::outbox` under the state lock by `items::write`, so they leave
//! in change order; one task puts them one at a time. A change whose put fails (the stream was
//! deleted) is logged and dropped, as AWS drops records it cannot deliver to a destination.

use std::sync::{Arc, Weak};

use base64::Engine;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::Item;
use tsumiki_lang::dynamodb::value::{item_size, item_to_json};
use tsumiki_store::Batch;

use crate::state::{self, KinesisDest, Outgoing, State, TableKey};
use crate::{Inner, not_found, store_error, table_key, validation};

/// Queues one item change for every active destination of its table.
pub(crate) fn queue(
    st: &mut State,
    key: &TableKey,
    old: Option<&Item>,
    new: Option<&Item>,
    now_ms: i64,
    by_ttl: bool,
) {
    let Some(table) = st.tables.get(key) else {
        return;
    };
    let active: Vec<&KinesisDest> = table
        .meta
        .kinesis
        .iter()
        .filter(|k| k.status == "ACTIVE")
        .collect();
    if active.is_empty() {
        return;
    }
    let Some(any) = new.or(old) else {
        return;
    };
    let mut keys = Item::new();
    for (name, _) in std::iter::once(&table.meta.key.hash).chain(table.meta.key.range.as_ref()) {
        if let Some(v) = any.get(name) {
            keys.insert(name.clone(), v.clone());
        }
    }
    let event = match (old, new) {
        (None, Some(_)) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    let size = item_size(&keys) + new.map_or(0, item_size) + old.map_or(0, item_size);
    let keys_json = item_to_json(&keys);
    let mut out = Vec::with_capacity(active.len());
    for dest in active {
        let created = if dest.precision == "MICROSECOND" {
            json!(now_ms * 1000)
        } else {
            json!(now_ms)
        };
        let mut body = json!({
            "ApproximateCreationDateTime": created,
            "ApproximateCreationDateTimePrecision": dest.precision,
            "Keys": keys_json,
            "SizeBytes": size,
        });
        if let Some(n) = new {
            body["NewImage"] = item_to_json(n);
        }
        if let Some(o) = old {
            body["OldImage"] = item_to_json(o);
        }
        let mut record = json!({
            "awsRegion": key.region,
            "eventID": uuid::Uuid::new_v4().to_string(),
            "eventName": event,
            "userIdentity": null,
            "recordFormat": "application/json",
            "tableName": key.name,
            "dynamodb": body,
            "eventSource": "aws:dynamodb",
        });
        if by_ttl {
            record["userIdentity"] =
                json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        }
        out.push(Outgoing {
            account: key.account.clone(),
            region: key.region.clone(),
            stream_arn: dest.stream_arn.clone(),
            // The item's key decides the shard, so one item's changes stay in order.
            partition_key: keys_json.to_string(),
            record,
        });
    }
    st.outbox.extend(out);
    st.outbox_ready.notify_one();
}

/// Puts queued changes to their streams, in order, until the service is dropped.
pub(crate) async fn publisher(inner: Weak<Inner>, ready: Arc<tokio::sync::Notify>) {
    loop {
        ready.notified().await;
        let Some(d) = inner.upgrade() else {
            return;
        };
        let batch: Vec<Outgoing> = std::mem::take(&mut d.state.lock().outbox);
        let services = d.services.read().clone();
        let Some(kinesis) = services.get("kinesis").cloned() else {
            continue;
        };
        for o in batch {
            let ctx = RequestContext {
                account: o.account.clone(),
                region: o.region.clone(),
                request_id: tsumiki_core::ids::request_id(),
                base_url: String::new(),
                access_key: None,
                path: "/".into(),
            };
            let data = base64::engine::general_purpose::STANDARD.encode(o.record.to_string());
            let input =
                json!({"StreamARN": o.stream_arn, "Data": data, "PartitionKey": o.partition_key});
            if let Err(e) = kinesis.call(&ctx, "PutRecord", input).await {
                tracing::warn!(stream = %o.stream_arn, code = %e.code, "A DynamoDB change could not be put to its Kinesis streaming destination.");
            }
        }
    }
}

fn stream_arn(input: &Value) -> String {
    input
        .get("StreamArn")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Whether the stream exists, asked of the Kinesis service.
async fn stream_exists(d: &Inner, ctx: &RequestContext, arn: &str) -> bool {
    let kinesis = d.services.read().get("kinesis").cloned();
    match kinesis {
        Some(k) => k
            .call(ctx, "DescribeStreamSummary", json!({"StreamARN": arn}))
            .await
            .is_ok(),
        None => false,
    }
}

fn answer(key: &TableKey, arn: &str, status: &str, precision: &str) -> Value {
    json!({
        "TableName": key.name,
        "StreamArn": arn,
        "DestinationStatus": status,
        "EnableKinesisStreamingConfiguration": {"ApproximateCreationDateTimePrecision": precision},
    })
}

pub(crate) async fn enable(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let arn = stream_arn(input);
    let precision = input
        .pointer("/EnableKinesisStreamingConfiguration/ApproximateCreationDateTimePrecision")
        .and_then(Value::as_str)
        .unwrap_or("MILLISECOND")
        .to_string();
    if !d.state.lock().tables.contains_key(&key) {
        return Err(not_found());
    }
    if !stream_exists(d, ctx, &arn).await {
        return Err(validation(format!(
            "Kinesis stream {arn} does not exist or is not accessible"
        )));
    }
    let commit = {
        let mut st = d.state.lock();
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        if table
            .meta
            .kinesis
            .iter()
            .any(|k| k.stream_arn == arn && k.status == "ACTIVE")
        {
            return Err(validation(format!(
                "Table {} already has an enabled destination for stream {arn}",
                key.name
            )));
        }
        table.meta.kinesis.retain(|k| k.stream_arn != arn);
        table.meta.kinesis.push(KinesisDest {
            stream_arn: arn.clone(),
            status: "ACTIVE".into(),
            precision: precision.clone(),
        });
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    // AWS answers while the destination is still being enabled; it is active at once here.
    Ok(answer(&key, &arn, "ENABLING", &precision))
}

pub(crate) async fn disable(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let arn = stream_arn(input);
    let (commit, precision) = {
        let mut st = d.state.lock();
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        let Some(dest) = table
            .meta
            .kinesis
            .iter_mut()
            .find(|k| k.stream_arn == arn && k.status == "ACTIVE")
        else {
            return Err(validation(format!(
                "Table {} does not have an enabled destination for stream {arn}",
                key.name
            )));
        };
        dest.status = "DISABLED".into();
        let precision = dest.precision.clone();
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        (d.store.commit(batch), precision)
    };
    commit.await.map_err(store_error)?;
    Ok(answer(&key, &arn, "DISABLING", &precision))
}

pub(crate) fn describe(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let st = d.state.lock();
    let table = st.tables.get(&key).ok_or_else(not_found)?;
    let dests: Vec<Value> = table
        .meta
        .kinesis
        .iter()
        .map(|k| {
            json!({
                "StreamArn": k.stream_arn,
                "DestinationStatus": k.status,
                "ApproximateCreationDateTimePrecision": k.precision,
            })
        })
        .collect();
    Ok(json!({"TableName": key.name, "KinesisDataStreamDestinations": dests}))
}
