//! BatchGetItem, BatchWriteItem, TransactWriteItems, TransactGetItems. Every write of one call
//! commits in one store batch; transactions check every condition under the state lock first,
//! so they apply all or nothing.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::value::{MAX_ITEM_BYTES, item_from_json, item_size, item_to_json};
use tsumiki_lang::dynamodb::{Item, eval, project};
use tsumiki_store::Batch;

use crate::items::{key_of_item, key_of_key, parse_exprs, updated, write};
use crate::state::{self, State, TableKey};
use crate::{Inner, not_found, store_error, table_key_of, validation};

const DUPLICATES: &str = "Provided list of item keys contains duplicates";
/// How long AWS remembers a ClientRequestToken.
const TOKEN_TTL_MS: i64 = 10 * 60 * 1000;

pub(crate) fn batch_get(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let requests = input
        .get("RequestItems")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let total: usize = requests
        .values()
        .map(|r| r.get("Keys").and_then(Value::as_array).map_or(0, Vec::len))
        .sum();
    if total > 100 {
        return Err(validation(
            "Too many items requested for the BatchGetItem call",
        ));
    }
    let st = d.state.lock();
    let mut responses = Map::new();
    for (name, req) in &requests {
        let key = table_key_of(ctx, name);
        let parsed = parse_exprs(req)?;
        let table = st.tables.get(&key).ok_or_else(not_found)?;
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for k in req
            .get("Keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (_, pk, sk) = key_of_key(&table.meta.key, k)?;
            if !seen.insert((pk.clone(), sk.clone())) {
                return Err(validation(DUPLICATES));
            }
            if let Some(item) = table.get(&pk, &sk) {
                let shown = match &parsed.projection {
                    Some(p) => project(item, p),
                    None => item.clone(),
                };
                found.push(item_to_json(&shown));
            }
        }
        responses.insert(name.clone(), Value::Array(found));
    }
    Ok(json!({"Responses": responses, "UnprocessedKeys": {}}))
}

pub(crate) async fn batch_write(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let requests = input
        .get("RequestItems")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let total: usize = requests
        .values()
        .map(|r| r.as_array().map_or(0, Vec::len))
        .sum();
    if total > 25 {
        return Err(validation(
            "Too many items requested for the BatchWriteItem call",
        ));
    }
    let now = d.clock.now_ms();
    let commit = {
        let mut st = d.state.lock();
        // Check everything before changing anything.
        let mut writes: Vec<Planned> = Vec::new();
        for (name, reqs) in &requests {
            let key = table_key_of(ctx, name);
            let table = st.tables.get(&key).ok_or_else(not_found)?;
            let mut seen = BTreeSet::new();
            for r in reqs.as_array().into_iter().flatten() {
                let (pk, sk, item) = match (r.get("PutRequest"), r.get("DeleteRequest")) {
                    (Some(p), None) => {
                        let item = item_from_json(p.get("Item").unwrap_or(&Value::Null))
                            .map_err(validation)?;
                        if item_size(&item) > MAX_ITEM_BYTES {
                            return Err(validation(
                                "Item size has exceeded the maximum allowed size",
                            ));
                        }
                        let (pk, sk) = key_of_item(&table.meta, &item)?;
                        (pk, sk, Some(item))
                    }
                    (None, Some(del)) => {
                        let (_, pk, sk) =
                            key_of_key(&table.meta.key, del.get("Key").unwrap_or(&Value::Null))?;
                        (pk, sk, None)
                    }
                    _ => {
                        return Err(validation(
                            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                        ));
                    }
                };
                if !seen.insert((pk.clone(), sk.clone())) {
                    return Err(validation(DUPLICATES));
                }
                writes.push(Planned {
                    key: key.clone(),
                    pk,
                    sk,
                    write: Some(item),
                });
            }
        }
        let mut batch = Batch::new();
        for w in writes {
            let item = w.write.flatten();
            write(&mut st, &w.key, &w.pk, &w.sk, item, &mut batch, now, false);
        }
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({"UnprocessedItems": {}}))
}

struct Planned {
    key: TableKey,
    pk: Vec<u8>,
    sk: Vec<u8>,
    /// `None` for a condition check; `Some(None)` deletes.
    write: Option<Option<Item>>,
}

/// A hash of a request that stays the same across restarts and Rust versions (the tokens
/// holding it are stored).
pub(crate) fn request_hash(op: &str, v: &Value) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(op.as_bytes());
    h.update(v.to_string().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A transaction's ClientRequestToken, as its account and text.
pub(crate) type Token = (String, String);

/// Whether a request with `token` was already applied: `Ok(true)` for a replay of the same
/// request within 10 minutes (answer success, apply nothing), an error for a different request
/// under the same token.
pub(crate) fn seen_token(
    st: &mut State,
    token: Option<&Token>,
    hash: u64,
    now: i64,
) -> Result<bool, AwsError> {
    let Some(t) = token else {
        return Ok(false);
    };
    match st.tokens.get(t) {
        Some((at, _)) if now - *at >= TOKEN_TTL_MS => Ok(false),
        Some((_, h)) if *h == hash => Ok(true),
        Some(_) => Err(AwsError::new(
            "IdempotentParameterMismatchException",
            400,
            "Request parameters do not match the previous request with the same ClientRequestToken",
        )),
        None => Ok(false),
    }
}

/// Records `token` in the batch of the writes it guards, and drops tokens past 10 minutes.
pub(crate) fn remember_token(
    st: &mut State,
    batch: &mut Batch,
    token: Option<Token>,
    hash: u64,
    now: i64,
) {
    let expired: Vec<Token> = st
        .tokens
        .iter()
        .filter(|(_, (at, _))| now - *at >= TOKEN_TTL_MS)
        .map(|(k, _)| k.clone())
        .collect();
    for k in expired {
        st.tokens.remove(&k);
        state::delete_token(batch, &k.0, &k.1);
    }
    if let Some(t) = token {
        state::put_token(batch, &t.0, &t.1, now, hash);
        st.tokens.insert(t, (now, hash));
    }
}

pub(crate) async fn transact_write(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let items = input
        .get("TransactItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = d.clock.now_ms();
    let token = input
        .get("ClientRequestToken")
        .and_then(Value::as_str)
        .map(|t| (ctx.account.clone(), t.to_string()));
    let hash = request_hash("TransactWriteItems", &json!(items));
    // Parse every expression before taking the lock.
    let mut parsed = Vec::with_capacity(items.len());
    for entry in &items {
        if entry.as_object().is_some_and(|o| o.len() > 1) {
            return Err(validation(
                "TransactItems can only contain one of Check, Put, Update or Delete",
            ));
        }
        let (kind, body) = entry
            .as_object()
            .and_then(|o| o.iter().next())
            .map(|(k, v)| (k.clone(), v.clone()))
            .ok_or_else(|| {
                validation("TransactItems can only contain one of Check, Put, Update or Delete")
            })?;
        let p = parse_exprs(&body)?;
        parsed.push((kind, body, p));
    }
    let commit = {
        let mut st = d.state.lock();
        if seen_token(&mut st, token.as_ref(), hash, now)? {
            return Ok(json!({}));
        }
        let mut plans = Vec::with_capacity(parsed.len());
        let mut reasons = Vec::with_capacity(parsed.len());
        let mut failed = false;
        let mut seen = BTreeSet::new();
        for (kind, body, p) in &parsed {
            let name = body
                .get("TableName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key = table_key_of(ctx, name);
            let table = st.tables.get(&key).ok_or_else(not_found)?;
            let (key_item, pk, sk, new_item) = if kind == "Put" {
                let item =
                    item_from_json(body.get("Item").unwrap_or(&Value::Null)).map_err(validation)?;
                if item_size(&item) > MAX_ITEM_BYTES {
                    return Err(validation(
                        "Item size has exceeded the maximum allowed size",
                    ));
                }
                let (pk, sk) = key_of_item(&table.meta, &item)?;
                (Item::new(), pk, sk, Some(item))
            } else {
                let (k, pk, sk) =
                    key_of_key(&table.meta.key, body.get("Key").unwrap_or(&Value::Null))?;
                (k, pk, sk, None)
            };
            if !seen.insert((key.clone(), pk.clone(), sk.clone())) {
                return Err(validation(
                    "Transaction request cannot include multiple operations on one item",
                ));
            }
            if kind == "ConditionCheck" && p.condition.is_none() {
                return Err(validation(
                    "The ConditionCheck operation requires a ConditionExpression",
                ));
            }
            let old = table.get(&pk, &sk).cloned();
            let ok = p
                .condition
                .as_ref()
                .is_none_or(|c| eval(old.as_ref().unwrap_or(&Item::new()), c));
            let write = match kind.as_str() {
                "Put" => Some(new_item),
                "Delete" => Some(None),
                "Update" => {
                    match updated(&table.meta, &key_item, old.as_ref(), p.update.as_ref()) {
                        Ok(new) => Some(Some(new)),
                        Err(e) if ok => {
                            failed = true;
                            reasons.push(json!({"Code": "ValidationError", "Message": e.message}));
                            plans.push(None);
                            continue;
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            if ok {
                reasons.push(json!({"Code": "None"}));
            } else {
                failed = true;
                let mut r = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                if body
                    .get("ReturnValuesOnConditionCheckFailure")
                    .and_then(Value::as_str)
                    == Some("ALL_OLD")
                    && let Some(old) = &old
                {
                    r["Item"] = item_to_json(old);
                }
                reasons.push(r);
            }
            plans.push(Some(Planned { key, pk, sk, write }));
        }
        if failed {
            return Err(crate::batch::transaction_cancelled(reasons));
        }
        let mut batch = Batch::new();
        for plan in plans.into_iter().flatten() {
            if let Some(item) = plan.write {
                write(
                    &mut st, &plan.key, &plan.pk, &plan.sk, item, &mut batch, now, false,
                );
            }
        }
        remember_token(&mut st, &mut batch, token, hash, now);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub(crate) fn transact_get(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let items = input
        .get("TransactItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let st = d.state.lock();
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<(TableKey, Vec<u8>, Vec<u8>), ()> = HashMap::new();
    for entry in &items {
        let body = entry.get("Get").cloned().unwrap_or(json!({}));
        let parsed = parse_exprs(&body)?;
        let name = body
            .get("TableName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = table_key_of(ctx, name);
        let table = st.tables.get(&key).ok_or_else(not_found)?;
        let (_, pk, sk) = key_of_key(&table.meta.key, body.get("Key").unwrap_or(&Value::Null))?;
        if seen
            .insert((key.clone(), pk.clone(), sk.clone()), ())
            .is_some()
        {
            return Err(validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        out.push(match table.get(&pk, &sk) {
            Some(item) => json!({"Item": item_to_json(&match &parsed.projection {
                Some(p) => project(item, p),
                None => item.clone(),
            })}),
            None => json!({}),
        });
    }
    Ok(json!({"Responses": out}))
}

/// TransactionCanceledException with one reason per item (`{"Code": "None"}` for the items
/// that did not fail), as TransactWriteItems and ExecuteTransaction answer it.
pub(crate) fn transaction_cancelled(reasons: Vec<Value>) -> AwsError {
    let codes: Vec<&str> = reasons
        .iter()
        .map(|r| r["Code"].as_str().unwrap_or("None"))
        .collect();
    let mut err = AwsError::new(
        "TransactionCanceledException",
        400,
        format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
    );
    let mut extra = Map::new();
    extra.insert("CancellationReasons".into(), Value::Array(reasons));
    err.extra = Some(Box::new(extra));
    err
}
