//! Single-item operations: PutItem, GetItem, UpdateItem, DeleteItem, and the helpers the batch,
//! transaction and TTL paths share (key extraction, the one write path that also records the
//! stream record).

use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::expr::{parse_condition, parse_projection, parse_update};
use tsumiki_lang::dynamodb::legacy;
use tsumiki_lang::dynamodb::value::{MAX_ITEM_BYTES, item_from_json, item_size, item_to_json};
use tsumiki_lang::dynamodb::{Action, AttrValue, Cond, Item, Path, PathElem, Placeholders};
use tsumiki_store::Batch;

use crate::state::{self, KeyDef, State, TableKey, TableMeta};
use crate::{
    ExprInput, Inner, check_mixed, invalid_param, not_found, object, store_error, table_key,
    validation,
};

const NO_MATCH: &str = "The provided key element does not match the schema";

/// AWS's limits on key sizes: 2048 bytes for a partition key, 1024 for a sort key.
fn key_size_error(v: &AttrValue, range: bool) -> Option<AwsError> {
    let size = match v {
        AttrValue::S(s) => s.len(),
        AttrValue::B(b) => b.len(),
        _ => return None,
    };
    if !range && size > 2048 {
        return Some(invalid_param(
            "Size of hashkey has exceeded the maximum size limit of2048 bytes",
        ));
    }
    if range && size > 1024 {
        return Some(invalid_param(
            "Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
        ));
    }
    None
}

fn empty_key_error(name: &str, v: &AttrValue) -> Option<AwsError> {
    let what = match v {
        AttrValue::S(s) if s.is_empty() => "string",
        AttrValue::B(b) if b.is_empty() => "binary",
        _ => return None,
    };
    Some(validation(format!(
        "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {what} value. Key: {name}"
    )))
}

/// The partition and sort key bytes of a whole item (PutItem): every key attribute present,
/// of its declared type.
pub(crate) fn key_of_item(meta: &TableMeta, item: &Item) -> Result<(Vec<u8>, Vec<u8>), AwsError> {
    let mut parts = Vec::with_capacity(2);
    for (i, (name, ty)) in std::iter::once(&meta.key.hash)
        .chain(meta.key.range.as_ref())
        .enumerate()
    {
        let Some(v) = item.get(name) else {
            return Err(invalid_param(format!("Missing the key {name} in the item")));
        };
        if v.type_name() != ty {
            return Err(invalid_param(format!(
                "Type mismatch for key {name} expected: {ty} actual: {}",
                v.type_name()
            )));
        }
        if let Some(e) = empty_key_error(name, v).or_else(|| key_size_error(v, i == 1)) {
            return Err(e);
        }
        parts.push(v.key_bytes().unwrap_or_default());
    }
    let sk = if parts.len() == 2 {
        parts.pop().unwrap_or_default()
    } else {
        Vec::new()
    };
    let pk = parts.pop().unwrap_or_default();
    check_index_keys(meta, item)?;
    Ok((pk, sk))
}

fn check_index_keys(meta: &TableMeta, item: &Item) -> Result<(), AwsError> {
    for idx in &meta.indexes {
        for (i, (name, ty)) in std::iter::once(&idx.key.hash)
            .chain(idx.key.range.as_ref())
            .enumerate()
        {
            if let Some(v) = item.get(name) {
                if let Some(e) = key_size_error(v, i == 1) {
                    return Err(e);
                }
                if v.type_name() != ty {
                    return Err(invalid_param(format!(
                        "Type mismatch for Index Key {name} Expected: {ty} Actual: {} IndexName: {}",
                        v.type_name(),
                        idx.name
                    )));
                }
                if matches!(v, AttrValue::S(s) if s.is_empty())
                    || matches!(v, AttrValue::B(b) if b.is_empty())
                {
                    return Err(validation(format!(
                        "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: {}, IndexKey: {name}",
                        idx.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The key bytes of a `Key` parameter, which must name exactly the key schema's attributes.
pub(crate) fn key_of_key(
    key: &KeyDef,
    value: &Value,
) -> Result<(Item, Vec<u8>, Vec<u8>), AwsError> {
    let item = item_from_json(value).map_err(validation)?;
    let expected = 1 + usize::from(key.range.is_some());
    if item.len() != expected {
        return Err(validation(NO_MATCH));
    }
    let mut parts = Vec::with_capacity(2);
    for (i, (name, ty)) in std::iter::once(&key.hash)
        .chain(key.range.as_ref())
        .enumerate()
    {
        let v = item.get(name).ok_or_else(|| validation(NO_MATCH))?;
        if v.type_name() != ty {
            return Err(validation(NO_MATCH));
        }
        if let Some(e) = empty_key_error(name, v).or_else(|| key_size_error(v, i == 1)) {
            return Err(e);
        }
        parts.push(v.key_bytes().unwrap_or_default());
    }
    let sk = if parts.len() == 2 {
        parts.pop().unwrap_or_default()
    } else {
        Vec::new()
    };
    let pk = parts.pop().unwrap_or_default();
    Ok((item, pk, sk))
}

fn same_item(a: &Item, b: &Item) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.equals(w)))
}

/// The one write path: replaces (or with `None` deletes) an item in memory, and queues the
/// item write and its stream record in `batch`. A write that changes nothing writes nothing.
/// Returns the old item.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    st: &mut State,
    key: &TableKey,
    pk: &[u8],
    sk: &[u8],
    new: Option<Item>,
    batch: &mut Batch,
    now_ms: i64,
    by_ttl: bool,
) -> Option<Item> {
    let table = st.tables.get_mut(key)?;
    let old = table.get(pk, sk).cloned();
    let unchanged = match (&old, &new) {
        (None, None) => true,
        (Some(a), Some(b)) => same_item(a, b),
        _ => false,
    };
    if unchanged {
        return old;
    }
    table.set(pk, sk, new.clone());
    match &new {
        Some(item) => state::put_item(batch, key, pk, sk, item),
        None => state::delete_item(batch, key, pk, sk),
    }
    crate::streams::append(st, key, old.as_ref(), new.as_ref(), now_ms, by_ttl, batch);
    crate::kinesis::queue(st, key, old.as_ref(), new.as_ref(), now_ms, by_ttl);
    old
}

/// A request's parsed expressions.
pub(crate) struct Parsed {
    pub condition: Option<Cond>,
    pub update: Option<Vec<Action>>,
    pub projection: Option<Vec<Path>>,
}

/// Parses the expressions a request carries and checks its placeholders were all used.
pub(crate) fn parse_exprs(input: &Value) -> Result<Parsed, AwsError> {
    check_mixed(
        input,
        &[
            "UpdateExpression",
            "ConditionExpression",
            "ProjectionExpression",
        ],
        &[
            "AttributeUpdates",
            "Expected",
            "ConditionalOperator",
            "AttributesToGet",
        ],
    )?;
    let ex = ExprInput::read(input)?;
    ex.check_present(
        input,
        &[
            "ConditionExpression",
            "UpdateExpression",
            "ProjectionExpression",
            "FilterExpression",
            "KeyConditionExpression",
        ],
    )?;
    let mut ph = Placeholders::new(&ex.names, &ex.values);
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    let condition = match (s("ConditionExpression"), object(input, "Expected")) {
        (Some(c), _) => {
            Some(parse_condition(c, "ConditionExpression", &mut ph).map_err(validation)?)
        }
        (None, Some(e)) => legacy::expected(e, s("ConditionalOperator")).map_err(validation)?,
        (None, None) => None,
    };
    let update = match (s("UpdateExpression"), object(input, "AttributeUpdates")) {
        (Some(u), _) => Some(parse_update(u, &mut ph).map_err(validation)?),
        (None, Some(a)) => Some(legacy::attribute_updates(a).map_err(validation)?),
        (None, None) => None,
    };
    let mut projection = match s("ProjectionExpression") {
        Some(p) => Some(parse_projection(p, &mut ph).map_err(validation)?),
        None => None,
    };
    if let Some(names) = input.get("AttributesToGet").and_then(Value::as_array) {
        projection = Some(
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|n| Path(vec![PathElem::Name(n.to_string())]))
                .collect(),
        );
    }
    ph.check_unused().map_err(validation)?;
    Ok(Parsed {
        condition,
        update,
        projection,
    })
}

pub(crate) fn condition_failed(old: Option<&Item>, input: &Value) -> AwsError {
    let mut err = AwsError::new(
        "ConditionalCheckFailedException",
        400,
        "The conditional request failed",
    );
    if input
        .get("ReturnValuesOnConditionCheckFailure")
        .and_then(Value::as_str)
        == Some("ALL_OLD")
        && let Some(old) = old
    {
        // AWS answers this one with a capitalised `Message` beside the `Item`.
        let mut extra = Map::new();
        extra.insert("Message".into(), json!(err.message));
        extra.insert("Item".into(), item_to_json(old));
        err.extra = Some(Box::new(extra));
    }
    err
}

fn return_values(input: &Value, allowed: &[&str]) -> Result<String, AwsError> {
    let rv = input
        .get("ReturnValues")
        .and_then(Value::as_str)
        .unwrap_or("NONE")
        .to_string();
    if !allowed.contains(&rv.as_str()) {
        return Err(validation("Return values set to invalid value"));
    }
    Ok(rv)
}

/// `ConsumedCapacity` when asked for: a write unit per KB written, half a read unit per 4 KB
/// read eventually consistent.
pub(crate) fn consumed(input: &Value, table: &str, units: f64, out: &mut Value) {
    if matches!(
        input.get("ReturnConsumedCapacity").and_then(Value::as_str),
        Some("TOTAL") | Some("INDEXES")
    ) {
        out["ConsumedCapacity"] = json!({"TableName": table, "CapacityUnits": units});
    }
}

fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

pub(crate) fn read_units(size: usize, consistent: bool) -> f64 {
    let u = size.div_ceil(4096).max(1) as f64;
    if consistent { u } else { u / 2.0 }
}

pub(crate) async fn put_item(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let parsed = parse_exprs(input)?;
    let rv = return_values(input, &["NONE", "ALL_OLD"])?;
    let item = item_from_json(input.get("Item").unwrap_or(&Value::Null)).map_err(validation)?;
    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    let now = d.clock.now_ms();
    let (commit, old) = {
        let mut st = d.state.lock();
        let table = st.tables.get(&key).ok_or_else(not_found)?;
        let (pk, sk) = key_of_item(&table.meta, &item)?;
        let old = table.get(&pk, &sk).cloned();
        if let Some(c) = &parsed.condition
            && !tsumiki_lang::dynamodb::eval(old.as_ref().unwrap_or(&Item::new()), c)
        {
            return Err(condition_failed(old.as_ref(), input));
        }
        let mut batch = Batch::new();
        write(&mut st, &key, &pk, &sk, Some(item), &mut batch, now, false);
        (d.store.commit(batch), old)
    };
    commit.await.map_err(store_error)?;
    let mut out = json!({});
    if rv == "ALL_OLD"
        && let Some(old) = old
    {
        out["Attributes"] = item_to_json(&old);
    }
    consumed(input, &key.name, write_units(size), &mut out);
    Ok(out)
}

pub(crate) fn get_item(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let parsed = parse_exprs(input)?;
    let st = d.state.lock();
    let table = st.tables.get(&key).ok_or_else(not_found)?;
    let (_, pk, sk) = key_of_key(&table.meta.key, input.get("Key").unwrap_or(&Value::Null))?;
    let mut out = json!({});
    let mut size = 0;
    if let Some(item) = table.get(&pk, &sk) {
        size = item_size(item);
        out["Item"] = item_to_json(&match &parsed.projection {
            Some(p) => tsumiki_lang::dynamodb::project(item, p),
            None => item.clone(),
        });
    }
    let consistent = input.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
    consumed(input, &key.name, read_units(size, consistent), &mut out);
    Ok(out)
}

/// The new item an update makes of `old` (or of the key alone when there is none).
pub(crate) fn updated(
    meta: &TableMeta,
    key_item: &Item,
    old: Option<&Item>,
    actions: Option<&Vec<Action>>,
) -> Result<Item, AwsError> {
    let base = old.cloned().unwrap_or_else(|| key_item.clone());
    let Some(actions) = actions else {
        return Ok(base);
    };
    for a in actions {
        let top = a.path().top();
        if top == meta.key.hash.0 || meta.key.range.as_ref().is_some_and(|r| r.0 == top) {
            return Err(invalid_param(format!(
                "Cannot update attribute {top}. This attribute is part of the key"
            )));
        }
    }
    let new = tsumiki_lang::dynamodb::apply_update(&base, actions).map_err(validation)?;
    if item_size(&new) > MAX_ITEM_BYTES {
        return Err(validation(
            "Item size to update has exceeded the maximum allowed size",
        ));
    }
    check_index_keys(meta, &new)?;
    Ok(new)
}

pub(crate) async fn update_item(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let parsed = parse_exprs(input)?;
    let rv = return_values(
        input,
        &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
    )?;
    let now = d.clock.now_ms();
    let (commit, old, new) = {
        let mut st = d.state.lock();
        let table = st.tables.get(&key).ok_or_else(not_found)?;
        let (key_item, pk, sk) =
            key_of_key(&table.meta.key, input.get("Key").unwrap_or(&Value::Null))?;
        let old = table.get(&pk, &sk).cloned();
        if let Some(c) = &parsed.condition
            && !tsumiki_lang::dynamodb::eval(old.as_ref().unwrap_or(&Item::new()), c)
        {
            return Err(condition_failed(old.as_ref(), input));
        }
        let new = updated(&table.meta, &key_item, old.as_ref(), parsed.update.as_ref())?;
        let mut batch = Batch::new();
        write(
            &mut st,
            &key,
            &pk,
            &sk,
            Some(new.clone()),
            &mut batch,
            now,
            false,
        );
        (d.store.commit(batch), old, new)
    };
    commit.await.map_err(store_error)?;
    let paths: Vec<Path> = parsed
        .update
        .iter()
        .flatten()
        .map(|a| a.path().clone())
        .collect();
    let attrs = match rv.as_str() {
        "ALL_OLD" => old,
        "ALL_NEW" => Some(new.clone()),
        "UPDATED_OLD" => old.map(|o| tsumiki_lang::dynamodb::project(&o, &paths)),
        "UPDATED_NEW" => Some(tsumiki_lang::dynamodb::project(&new, &paths)),
        _ => None,
    };
    let mut out = json!({});
    if let Some(a) = attrs.filter(|a| !a.is_empty()) {
        out["Attributes"] = item_to_json(&a);
    }
    consumed(input, &key.name, write_units(item_size(&new)), &mut out);
    Ok(out)
}

pub(crate) async fn delete_item(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let parsed = parse_exprs(input)?;
    let rv = return_values(input, &["NONE", "ALL_OLD"])?;
    let now = d.clock.now_ms();
    let (commit, old) = {
        let mut st = d.state.lock();
        let table = st.tables.get(&key).ok_or_else(not_found)?;
        let (_, pk, sk) = key_of_key(&table.meta.key, input.get("Key").unwrap_or(&Value::Null))?;
        let old = table.get(&pk, &sk).cloned();
        if let Some(c) = &parsed.condition
            && !tsumiki_lang::dynamodb::eval(old.as_ref().unwrap_or(&Item::new()), c)
        {
            return Err(condition_failed(old.as_ref(), input));
        }
        let mut batch = Batch::new();
        write(&mut st, &key, &pk, &sk, None, &mut batch, now, false);
        (d.store.commit(batch), old)
    };
    commit.await.map_err(store_error)?;
    let mut out = json!({});
    let size = old.as_ref().map_or(0, item_size);
    if rv == "ALL_OLD"
        && let Some(old) = old
    {
        out["Attributes"] = item_to_json(&old);
    }
    consumed(input, &key.name, write_units(size), &mut out);
    Ok(out)
}
