//! PartiQL: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction. Statements are parsed
//! and bound by `tsumiki_lang::partiql` into the same conditions and update actions the
//! expression parameters use; reads walk the table as Query (a WHERE with the partition key's
//! equality) or Scan; writes go through `items::write`, so streams get their records.

use base64::Engine;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::value::{MAX_ITEM_BYTES, item_from_json, item_size, item_to_json};
use tsumiki_lang::dynamodb::{AttrValue, Item, Path, eval, project};
use tsumiki_lang::partiql::{self, Bound, Returning};
use tsumiki_store::Batch;

use crate::batch::{Token, remember_token, request_hash, seen_token};
use crate::items::{condition_failed, key_of_item, key_of_key, updated, write};
use crate::query::{Reading, candidates, find_index, position, walk};
use crate::state::{KeyDef, State, TableKey};
use crate::{Inner, not_found, store_error, table_key_of, validation};

const NO_KEY: &str = "Where clause does not contain a mandatory equality on all key attributes";
const DUPLICATE: &str = "Duplicate primary key exists in table";

/// Reads a request's `Statement` and `Parameters` and binds them.
fn prepare(req: &Value) -> Result<Bound, AwsError> {
    let text = req
        .get("Statement")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut params = Vec::new();
    if let Some(list) = req.get("Parameters").and_then(Value::as_array) {
        for p in list {
            params.push(AttrValue::from_json(p).map_err(validation)?);
        }
    }
    let parsed = partiql::parse(text).map_err(validation)?;
    partiql::bind(&parsed, &params).map_err(validation)
}

fn table_name(b: &Bound) -> &str {
    match b {
        Bound::Select { table, .. }
        | Bound::Insert { table, .. }
        | Bound::Update { table, .. }
        | Bound::Delete { table, .. } => table,
    }
}

/// The key a WHERE clause pins down with equalities on every key attribute.
fn key_from(key: &KeyDef, eqs: &[(String, AttrValue)]) -> Option<Item> {
    let mut item = Item::new();
    for (name, ty) in std::iter::once(&key.hash).chain(key.range.as_ref()) {
        let (_, v) = eqs.iter().find(|(n, v)| n == name && v.type_name() == ty)?;
        item.insert(name.clone(), v.clone());
    }
    Some(item)
}

/// Why one write statement could not apply.
enum Failure {
    Condition(Option<Item>),
    Duplicate,
    Error(AwsError),
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Failure {
        Failure::Error(e)
    }
}

/// One write, checked against the state and ready for `items::write`.
struct Plan {
    key: TableKey,
    pk: Vec<u8>,
    sk: Vec<u8>,
    old: Option<Item>,
    new: Option<Item>,
    returning: Option<Returning>,
    paths: Vec<Path>,
}

fn plan_write(st: &State, ctx: &RequestContext, b: &Bound) -> Result<Plan, Failure> {
    let key = table_key_of(ctx, table_name(b));
    let table = st.tables.get(&key).ok_or_else(not_found)?;
    match b {
        Bound::Insert { item, .. } => {
            if item_size(item) > MAX_ITEM_BYTES {
                return Err(validation("Item size has exceeded the maximum allowed size").into());
            }
            let (pk, sk) = key_of_item(&table.meta, item)?;
            if table.get(&pk, &sk).is_some() {
                return Err(Failure::Duplicate);
            }
            Ok(Plan {
                key,
                pk,
                sk,
                old: None,
                new: Some(item.clone()),
                returning: None,
                paths: Vec::new(),
            })
        }
        Bound::Update {
            actions,
            filter,
            equalities,
            returning,
            ..
        } => {
            let key_item =
                key_from(&table.meta.key, equalities).ok_or_else(|| validation(NO_KEY))?;
            let (key_item, pk, sk) = key_of_key(&table.meta.key, &item_to_json(&key_item))?;
            let old = table.get(&pk, &sk).cloned();
            // UPDATE changes an existing item only: its WHERE must hold for one.
            if !old.as_ref().is_some_and(|o| eval(o, filter)) {
                return Err(Failure::Condition(old));
            }
            let new = updated(&table.meta, &key_item, old.as_ref(), Some(actions))?;
            Ok(Plan {
                key,
                pk,
                sk,
                old,
                new: Some(new),
                returning: *returning,
                paths: actions.iter().map(|a| a.path().clone()).collect(),
            })
        }
        Bound::Delete {
            filter,
            equalities,
            returning,
            ..
        } => {
            let key_item =
                key_from(&table.meta.key, equalities).ok_or_else(|| validation(NO_KEY))?;
            let (_, pk, sk) = key_of_key(&table.meta.key, &item_to_json(&key_item))?;
            let old = table.get(&pk, &sk).cloned();
            if let Some(o) = &old
                && !eval(o, filter)
            {
                return Err(Failure::Condition(old));
            }
            Ok(Plan {
                key,
                pk,
                sk,
                old,
                new: None,
                returning: *returning,
                paths: Vec::new(),
            })
        }
        Bound::Select { .. } => Err(validation("Unsupported operation: expected a write").into()),
    }
}

/// What a write answers in `Items`: its RETURNING values.
fn returned(plan: &Plan) -> Vec<Value> {
    let Some(r) = plan.returning else {
        return Vec::new();
    };
    let source = if r.new { &plan.new } else { &plan.old };
    let Some(item) = source else {
        return Vec::new();
    };
    let shown = if r.all {
        item.clone()
    } else {
        project(item, &plan.paths)
    };
    if shown.is_empty() {
        Vec::new()
    } else {
        vec![item_to_json(&shown)]
    }
}

fn failure_error(f: Failure, req: &Value) -> AwsError {
    match f {
        Failure::Condition(old) => condition_failed(old.as_ref(), req),
        Failure::Duplicate => AwsError::new("DuplicateItemException", 400, DUPLICATE),
        Failure::Error(e) => e,
    }
}

/// Where a read starts after `NextToken`: the last key of the page before, as JSON, base64.
fn encode_token(last: &Item) -> String {
    base64::engine::general_purpose::STANDARD.encode(item_to_json(last).to_string())
}

fn decode_token(token: &str) -> Result<Item, AwsError> {
    let bad = || validation("Invalid NextToken");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    item_from_json(&json).map_err(|_| bad())
}

struct SelectPage {
    items: Vec<Value>,
    last: Option<Item>,
}

fn select(
    st: &State,
    ctx: &RequestContext,
    b: &Bound,
    limit: Option<usize>,
    next: Option<&str>,
) -> Result<SelectPage, AwsError> {
    let Bound::Select {
        projection,
        table,
        index,
        filter,
        equalities,
        order,
    } = b
    else {
        return Err(validation("Unsupported operation: expected a read"));
    };
    let tkey = table_key_of(ctx, table);
    let table = st.tables.get(&tkey).ok_or_else(not_found)?;
    let index = match index {
        // PartiQL's wording names no index.
        Some(name) => find_index(table, &json!({ "IndexName": name }))
            .map_err(|_| validation("The table does not have the specified index"))?,
        None => None,
    };
    let schema = index.map_or(&table.meta.key, |i| &i.key);
    let hash = equalities
        .iter()
        .find(|(n, v)| *n == schema.hash.0 && v.type_name() == schema.hash.1)
        .and_then(|(_, v)| v.key_bytes());
    let mut desc = false;
    if let Some((path, d)) = order {
        let sort = schema.range.as_ref().map(|r| r.0.as_str());
        let on_sort = path.0.len() == 1 && Some(path.top()) == sort;
        let on_hash = path.0.len() == 1 && path.top() == schema.hash.0;
        if hash.is_none() || !(on_sort || on_hash) {
            return Err(validation(
                "Unsupported operation: ORDER BY is supported only on the sort key of a query that names its partition key with =",
            ));
        }
        desc = *d && on_sort;
    }
    let start = match next {
        Some(t) => {
            let item = decode_token(t)?;
            Some(
                position(&table.meta.key, index, &item)
                    .ok_or_else(|| validation("Invalid NextToken"))?,
            )
        }
        None => None,
    };
    let mut cands = candidates(table, index, hash.as_deref());
    if desc {
        cands.reverse();
    }
    let items = cands
        .into_iter()
        .filter(|(p, _)| match &start {
            None => true,
            Some(s) if desc => p < s,
            Some(s) => p > s,
        })
        .map(|(_, i)| i);
    let r = Reading {
        filter: filter.clone(),
        projection: projection.clone(),
        index_projection: index,
        count_only: false,
        limit,
    };
    let page = walk(table, index, items, &r);
    Ok(SelectPage {
        items: page.items,
        last: page.last,
    })
}

/// A read that must name one item (batches and transactions): its item, if there is one.
fn get_one(
    st: &State,
    ctx: &RequestContext,
    b: &Bound,
    op: &str,
) -> Result<Option<Value>, AwsError> {
    let Bound::Select {
        projection,
        table,
        index,
        equalities,
        filter,
        ..
    } = b
    else {
        return Err(validation("Unsupported operation: expected a read"));
    };
    let tkey = table_key_of(ctx, table);
    let t = st.tables.get(&tkey).ok_or_else(not_found)?;
    if index.is_some() {
        return Err(validation(
            "Unsupported operation: a read in a batch or transaction must name one item of the table",
        ));
    }
    let key_item = key_from(&t.meta.key, equalities).ok_or_else(|| {
        validation(format!(
            "Select statements within {op} must specify the primary key in the where clause."
        ))
    })?;
    let (_, pk, sk) = key_of_key(&t.meta.key, &item_to_json(&key_item))?;
    Ok(t.get(&pk, &sk)
        .filter(|i| filter.as_ref().is_none_or(|f| eval(i, f)))
        .map(|i| {
            item_to_json(&match projection {
                Some(p) => project(i, p),
                None => i.clone(),
            })
        }))
}

pub(crate) async fn execute_statement(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let b = prepare(input)?;
    if matches!(b, Bound::Select { .. }) {
        let limit = input
            .get("Limit")
            .and_then(Value::as_u64)
            .map(|l| l as usize);
        let next = input.get("NextToken").and_then(Value::as_str);
        let st = d.state.lock();
        let page = select(&st, ctx, &b, limit, next)?;
        let mut out = json!({ "Items": page.items });
        if let Some(last) = page.last {
            out["NextToken"] = json!(encode_token(&last));
            out["LastEvaluatedKey"] = item_to_json(&last);
        }
        return Ok(out);
    }
    let now = d.clock.now_ms();
    let (commit, plan) = {
        let mut st = d.state.lock();
        let plan = plan_write(&st, ctx, &b).map_err(|f| failure_error(f, input))?;
        let mut batch = Batch::new();
        write(
            &mut st,
            &plan.key,
            &plan.pk,
            &plan.sk,
            plan.new.clone(),
            &mut batch,
            now,
            false,
        );
        (d.store.commit(batch), plan)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({ "Items": returned(&plan) }))
}

fn batch_error(code: &str, message: &str) -> Value {
    json!({"Code": code, "Message": message})
}

fn batch_code(e: &AwsError) -> &'static str {
    match e.code.as_ref() {
        "ResourceNotFoundException" => "ResourceNotFound",
        "ConditionalCheckFailedException" => "ConditionalCheckFailed",
        "DuplicateItemException" => "DuplicateItem",
        _ => "ValidationError",
    }
}

/// One statement's failure in a batch: its code and message, the old item when asked for,
/// and the table unless the table is what was not found.
fn batch_failure(table: &str, e: &AwsError) -> Value {
    let code = batch_code(e);
    let mut err = batch_error(code, &e.message);
    if let Some(item) = e.extra.as_ref().and_then(|x| x.get("Item")) {
        err["Item"] = item.clone();
    }
    if code == "ResourceNotFound" {
        json!({ "Error": err })
    } else {
        json!({ "TableName": table, "Error": err })
    }
}

pub(crate) async fn batch_execute_statement(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let requests = input
        .get("Statements")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let bound: Vec<Result<Bound, AwsError>> = requests.iter().map(prepare).collect();
    let reads = bound
        .iter()
        .flatten()
        .filter(|b| matches!(b, Bound::Select { .. }))
        .count();
    let writes = bound.iter().flatten().count() - reads;
    if reads > 0 && writes > 0 {
        return Err(validation(
            "Unsupported operation: A batch must contain either all read statements or all write statements",
        ));
    }
    let now = d.clock.now_ms();
    let mut responses = Vec::with_capacity(bound.len());
    let commit = {
        let mut st = d.state.lock();
        let mut batch = Batch::new();
        for (b, req) in bound.iter().zip(&requests) {
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    responses.push(json!({"Error": batch_error(batch_code(e), &e.message)}));
                    continue;
                }
            };
            let table = table_name(b).to_string();
            if matches!(b, Bound::Select { .. }) {
                match get_one(&st, ctx, b, "BatchExecuteStatement") {
                    Ok(Some(item)) => responses.push(json!({"TableName": table, "Item": item})),
                    Ok(None) => responses.push(json!({"TableName": table})),
                    Err(e) => responses.push(batch_failure(&table, &e)),
                }
                continue;
            }
            match plan_write(&st, ctx, b) {
                Ok(plan) => {
                    write(
                        &mut st, &plan.key, &plan.pk, &plan.sk, plan.new, &mut batch, now, false,
                    );
                    responses.push(json!({"TableName": table}));
                }
                Err(f) => {
                    let e = failure_error(f, req);
                    responses.push(batch_failure(&table, &e));
                }
            }
        }
        (!batch.is_empty()).then(|| d.store.commit(batch))
    };
    if let Some(c) = commit {
        c.await.map_err(store_error)?;
    }
    Ok(json!({ "Responses": responses }))
}

pub(crate) async fn execute_transaction(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let requests = input
        .get("TransactStatements")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let bound = requests
        .iter()
        .map(prepare)
        .collect::<Result<Vec<_>, _>>()?;
    let reads = bound
        .iter()
        .filter(|b| matches!(b, Bound::Select { .. }))
        .count();
    if reads > 0 && reads < bound.len() {
        return Err(validation(
            "Unsupported operation: A transaction must contain either all read statements or all write statements",
        ));
    }
    if reads > 0 {
        let st = d.state.lock();
        let mut out = Vec::with_capacity(bound.len());
        for b in &bound {
            out.push(match get_one(&st, ctx, b, "ExecuteTransaction")? {
                Some(item) => json!({ "Item": item }),
                None => json!({}),
            });
        }
        return Ok(json!({ "Responses": out }));
    }
    let token: Option<Token> = input
        .get("ClientRequestToken")
        .and_then(Value::as_str)
        .map(|t| (ctx.account.clone(), t.to_string()));
    let hash = request_hash("ExecuteTransaction", &json!(requests));
    let now = d.clock.now_ms();
    let commit = {
        let mut st = d.state.lock();
        if seen_token(&mut st, token.as_ref(), hash, now)? {
            return Ok(json!({}));
        }
        let mut plans = Vec::with_capacity(bound.len());
        let mut reasons = Vec::with_capacity(bound.len());
        let mut failed = false;
        let mut seen = std::collections::BTreeSet::new();
        for (b, req) in bound.iter().zip(&requests) {
            match plan_write(&st, ctx, b) {
                Ok(plan) => {
                    if !seen.insert((plan.key.clone(), plan.pk.clone(), plan.sk.clone())) {
                        return Err(validation(
                            "Transaction request cannot include multiple operations on one item",
                        ));
                    }
                    reasons.push(json!({"Code": "None"}));
                    plans.push(plan);
                }
                Err(Failure::Error(e)) => return Err(e),
                Err(Failure::Duplicate) => {
                    failed = true;
                    reasons.push(json!({"Code": "DuplicateItem", "Message": DUPLICATE}));
                }
                Err(Failure::Condition(old)) => {
                    failed = true;
                    let mut r = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                    if req
                        .get("ReturnValuesOnConditionCheckFailure")
                        .and_then(Value::as_str)
                        == Some("ALL_OLD")
                        && let Some(old) = old
                    {
                        r["Item"] = item_to_json(&old);
                    }
                    reasons.push(r);
                }
            }
        }
        if failed {
            return Err(crate::batch::transaction_cancelled(reasons));
        }
        let mut batch = Batch::new();
        for plan in plans {
            write(
                &mut st, &plan.key, &plan.pk, &plan.sk, plan.new, &mut batch, now, false,
            );
        }
        remember_token(&mut st, &mut batch, token, hash, now);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_from_needs_every_key_attribute_of_its_type() {
        let key = KeyDef {
            hash: ("pk".into(), "S".into()),
            range: Some(("sk".into(), "N".into())),
        };
        let s = AttrValue::S("a".into());
        let n = AttrValue::N(tsumiki_lang::dynamodb::Num::from_i64(1));
        assert!(key_from(&key, &[("pk".into(), s.clone())]).is_none());
        assert!(key_from(&key, &[("pk".into(), s.clone()), ("sk".into(), s.clone())]).is_none());
        let k = key_from(&key, &[("pk".into(), s), ("sk".into(), n)]).expect("whole key");
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn next_token_round_trips() {
        let mut item = Item::new();
        item.insert("pk".into(), AttrValue::S("x".into()));
        let back = decode_token(&encode_token(&item)).expect("decodes");
        assert!(back["pk"].equals(&AttrValue::S("x".into())));
        assert!(decode_token("!!!").is_err());
    }
}
