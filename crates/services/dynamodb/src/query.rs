//! Query and Scan: candidates in DynamoDB's order (a partition by sort key; an index by its
//! keys, then the table's), ExclusiveStartKey, Limit and the 1 MB page, FilterExpression,
//! projections, Select, parallel scan segments.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::expr::{Cmp, parse_condition, parse_projection};
use tsumiki_lang::dynamodb::legacy;
use tsumiki_lang::dynamodb::value::{item_from_json, item_size, item_to_json};
use tsumiki_lang::dynamodb::{AttrValue, Cond, Item, Operand, Path, PathElem, Placeholders};

use crate::items::{consumed, read_units};
use crate::state::{IndexMeta, KeyDef, Table};
use crate::{
    ExprInput, Inner, check_mixed, invalid_param, not_found, object, table_key, validation,
};

/// AWS stops a page after 1 MB of items read.
const PAGE_BYTES: usize = 1024 * 1024;

pub(crate) type Position = Vec<Vec<u8>>;

fn key_bytes(item: &Item, attr: &(String, String)) -> Option<Vec<u8>> {
    item.get(&attr.0)
        .filter(|v| v.type_name() == attr.1)
        .and_then(AttrValue::key_bytes)
}

/// Where an item sits in the order of the table or index; `None` if the index omits it.
pub(crate) fn position(
    table_key: &KeyDef,
    index: Option<&IndexMeta>,
    item: &Item,
) -> Option<Position> {
    let mut pos = Vec::with_capacity(4);
    if let Some(idx) = index {
        pos.push(key_bytes(item, &idx.key.hash)?);
        if let Some(r) = &idx.key.range {
            pos.push(key_bytes(item, r)?);
        }
    }
    pos.push(key_bytes(item, &table_key.hash)?);
    if let Some(r) = &table_key.range {
        pos.push(key_bytes(item, r)?);
    }
    Some(pos)
}

pub(crate) fn candidates<'t>(
    table: &'t Table,
    index: Option<&IndexMeta>,
    hash: Option<&[u8]>,
) -> Vec<(Position, &'t Item)> {
    let k = &table.meta.key;
    let mut out: Vec<(Position, &Item)> = match (index, hash) {
        (None, Some(h)) => table
            .items
            .get(h)
            .into_iter()
            .flat_map(|p| p.values())
            .filter_map(|i| position(k, None, i).map(|p| (p, i)))
            .collect(),
        _ => table
            .items
            .values()
            .flat_map(|p| p.values())
            .filter_map(|i| position(k, index, i).map(|p| (p, i)))
            .filter(|(p, _)| hash.is_none_or(|h| p[0] == h))
            .collect(),
    };
    if index.is_some() {
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out
}

/// The key attributes of the table and index, for LastEvaluatedKey.
fn key_attrs(table: &Table, index: Option<&IndexMeta>, item: &Item) -> Item {
    let k = &table.meta.key;
    let mut names = vec![&k.hash.0];
    names.extend(k.range.as_ref().map(|r| &r.0));
    if let Some(idx) = index {
        names.push(&idx.key.hash.0);
        names.extend(idx.key.range.as_ref().map(|r| &r.0));
    }
    names
        .into_iter()
        .filter_map(|n| item.get(n).map(|v| (n.clone(), v.clone())))
        .collect()
}

pub(crate) fn find_index<'t>(
    table: &'t Table,
    input: &Value,
) -> Result<Option<&'t IndexMeta>, AwsError> {
    match input.get("IndexName").and_then(Value::as_str) {
        None => Ok(None),
        Some(name) => table
            .meta
            .indexes
            .iter()
            .find(|i| i.name == name)
            .map(Some)
            .ok_or_else(|| {
                validation(format!(
                    "The table does not have the specified index: {name}"
                ))
            }),
    }
}

/// What one page returns: items projected, and how the walk ended.
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    pub(crate) count: usize,
    pub(crate) scanned: usize,
    pub(crate) last: Option<Item>,
    pub(crate) bytes: usize,
}

pub(crate) struct Reading<'a> {
    pub(crate) filter: Option<Cond>,
    pub(crate) projection: Option<Vec<Path>>,
    pub(crate) index_projection: Option<&'a IndexMeta>,
    pub(crate) count_only: bool,
    pub(crate) limit: Option<usize>,
}

pub(crate) fn walk<'t>(
    table: &'t Table,
    index: Option<&IndexMeta>,
    items: impl Iterator<Item = &'t Item>,
    r: &Reading<'_>,
) -> Page {
    let mut page = Page {
        items: Vec::new(),
        count: 0,
        scanned: 0,
        last: None,
        bytes: 0,
    };
    let mut iter = items.peekable();
    while let Some(item) = iter.next() {
        page.scanned += 1;
        page.bytes += item_size(item);
        let keep = r
            .filter
            .as_ref()
            .is_none_or(|f| tsumiki_lang::dynamodb::eval(item, f));
        if keep {
            page.count += 1;
            if !r.count_only {
                let shown = match (&r.projection, r.index_projection) {
                    (Some(p), _) => tsumiki_lang::dynamodb::project(item, p),
                    (None, Some(idx)) if idx.projection_type != "ALL" => {
                        let mut keep = key_attrs(table, Some(idx), item);
                        for n in &idx.non_key {
                            if let Some(v) = item.get(n) {
                                keep.insert(n.clone(), v.clone());
                            }
                        }
                        keep
                    }
                    _ => item.clone(),
                };
                page.items.push(item_to_json(&shown));
            }
        }
        let full = r.limit.is_some_and(|l| page.scanned >= l) || page.bytes >= PAGE_BYTES;
        if full {
            // AWS hands back LastEvaluatedKey whenever the limit stops a page, even at the end.
            if r.limit.is_some_and(|l| page.scanned >= l) || iter.peek().is_some() {
                page.last = Some(key_attrs(table, index, item));
            }
            break;
        }
    }
    page
}

fn finish(input: &Value, table: &Table, page: Page, count_only: bool) -> Value {
    let mut out = json!({"Count": page.count, "ScannedCount": page.scanned});
    if !count_only {
        out["Items"] = json!(page.items);
    }
    if let Some(last) = page.last {
        out["LastEvaluatedKey"] = item_to_json(&last);
    }
    let consistent = input.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
    consumed(
        input,
        &table.meta.name,
        read_units(page.bytes, consistent),
        &mut out,
    );
    out
}

fn reading<'a>(
    input: &Value,
    index: Option<&'a IndexMeta>,
    filter: Option<Cond>,
    projection: Option<Vec<Path>>,
) -> Result<Reading<'a>, AwsError> {
    let select = input.get("Select").and_then(Value::as_str);
    if projection.is_some() && select.is_some_and(|s| s != "SPECIFIC_ATTRIBUTES") {
        return Err(validation(format!(
            "Cannot specify the ProjectionExpression when choosing to get {}",
            select.unwrap_or_default()
        )));
    }
    if select == Some("ALL_PROJECTED_ATTRIBUTES") && index.is_none() {
        return Err(validation(
            "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
        ));
    }
    if select == Some("ALL_ATTRIBUTES")
        && let Some(idx) = index
        && idx.global
        && idx.projection_type != "ALL"
    {
        return Err(invalid_param(format!(
            "Select type ALL_ATTRIBUTES is not supported for global secondary index {} because its projection type is not ALL",
            idx.name
        )));
    }
    if index.is_some_and(|i| i.global)
        && input.get("ConsistentRead").and_then(Value::as_bool) == Some(true)
    {
        return Err(validation(
            "Consistent reads are not supported on global secondary indexes",
        ));
    }
    let limit = input
        .get("Limit")
        .and_then(Value::as_u64)
        .map(|l| l as usize);
    Ok(Reading {
        filter,
        projection,
        index_projection: index,
        count_only: select == Some("COUNT"),
        limit,
    })
}

fn start_position(
    table: &Table,
    index: Option<&IndexMeta>,
    input: &Value,
) -> Result<Option<Position>, AwsError> {
    let Some(esk) = input.get("ExclusiveStartKey") else {
        return Ok(None);
    };
    let bad = || {
        validation(
            "The provided starting key is invalid: The provided key element does not match the schema",
        )
    };
    let item = item_from_json(esk)
        .map_err(|m| validation(format!("The provided starting key is invalid: {m}")))?;
    position(&table.meta.key, index, &item)
        .map(Some)
        .ok_or_else(bad)
}

/// A read's key condition, filter and projection.
type ReadExprs = (Option<Cond>, Option<Cond>, Option<Vec<Path>>);

/// The placeholders and the three expressions a read carries.
fn read_exprs(input: &Value, key_condition: bool) -> Result<ReadExprs, AwsError> {
    // KeyConditions may go with the other expressions while KeyConditionExpression is absent.
    let legacy_params: &[&str] = if input.get("KeyConditionExpression").is_some() {
        &[
            "AttributesToGet",
            "QueryFilter",
            "ScanFilter",
            "ConditionalOperator",
            "KeyConditions",
        ]
    } else {
        &[
            "AttributesToGet",
            "QueryFilter",
            "ScanFilter",
            "ConditionalOperator",
        ]
    };
    check_mixed(
        input,
        &[
            "ProjectionExpression",
            "FilterExpression",
            "KeyConditionExpression",
        ],
        legacy_params,
    )?;
    let ex = ExprInput::read(input)?;
    ex.check_present(
        input,
        &[
            "KeyConditionExpression",
            "FilterExpression",
            "ProjectionExpression",
        ],
    )?;
    let mut ph = Placeholders::new(&ex.names, &ex.values);
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    let key = match (key_condition, s("KeyConditionExpression")) {
        (true, Some(k)) => {
            Some(parse_condition(k, "KeyConditionExpression", &mut ph).map_err(validation)?)
        }
        (true, None) if object(input, "KeyConditions").is_some() => {
            legacy::key_conditions(object(input, "KeyConditions").unwrap_or(&Default::default()))
                .map_err(validation)?
        }
        (true, None) => {
            return Err(validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            ));
        }
        _ => None,
    };
    let legacy_filter = object(
        input,
        if key_condition {
            "QueryFilter"
        } else {
            "ScanFilter"
        },
    );
    let filter = match (s("FilterExpression"), legacy_filter) {
        (Some(f), _) => Some(parse_condition(f, "FilterExpression", &mut ph).map_err(validation)?),
        (None, Some(f)) => legacy::filter(f, s("ConditionalOperator")).map_err(validation)?,
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
    Ok((key, filter, projection))
}

fn conjuncts(c: &Cond, out: &mut Vec<Cond>) -> Result<(), AwsError> {
    match c {
        Cond::And(a, b) => {
            conjuncts(a, out)?;
            conjuncts(b, out)
        }
        Cond::Or(..) => Err(validation(
            "Invalid operator used in KeyConditionExpression: OR",
        )),
        Cond::Not(..) => Err(validation(
            "Invalid operator used in KeyConditionExpression: NOT",
        )),
        Cond::In(..) => Err(validation(
            "Invalid operator used in KeyConditionExpression: IN",
        )),
        other => {
            out.push(other.clone());
            Ok(())
        }
    }
}

fn key_name(op: &Operand) -> Option<&str> {
    match op {
        Operand::Path(p) if p.0.len() == 1 => Some(p.top()),
        _ => None,
    }
}

/// Checks a key condition's shape against the key schema; returns the partition key's bytes.
fn key_condition(cond: &Cond, key: &KeyDef) -> Result<Vec<u8>, AwsError> {
    let mut parts = Vec::new();
    conjuncts(cond, &mut parts)?;
    let unsupported = || validation("Query key condition not supported");
    // A condition on an attribute outside the key schema: AWS names the key element it lacks.
    let named: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Cond::Cmp(_, a, _) | Cond::Between(a, _, _) | Cond::BeginsWith(a, _) => key_name(a),
            _ => None,
        })
        .collect();
    let is_key = |n: &str| n == key.hash.0 || key.range.as_ref().is_some_and(|r| r.0 == n);
    if let Some(stray) = named.iter().find(|n| !is_key(n)) {
        let missed = if !named.contains(&key.hash.0.as_str()) {
            key.hash.0.as_str()
        } else {
            key.range.as_ref().map_or(*stray, |r| r.0.as_str())
        };
        return Err(validation(format!(
            "Query condition missed key schema element: {missed}"
        )));
    }
    let mut hash = None;
    let mut range_seen = false;
    for part in &parts {
        let (name, values): (&str, Vec<&Operand>) = match part {
            Cond::Cmp(op, a, b) => {
                if *op == Cmp::Ne {
                    return Err(validation(
                        "Unsupported operator on KeyConditionExpression: operator: <>",
                    ));
                }
                (key_name(a).ok_or_else(unsupported)?, vec![b])
            }
            Cond::Between(a, lo, hi) => (key_name(a).ok_or_else(unsupported)?, vec![lo, hi]),
            Cond::BeginsWith(a, b) => (key_name(a).ok_or_else(unsupported)?, vec![b]),
            Cond::Exists(_) | Cond::NotExists(_) | Cond::Type(..) | Cond::Contains(..) => {
                return Err(validation(
                    "Invalid operator used in KeyConditionExpression: function",
                ));
            }
            _ => return Err(unsupported()),
        };
        let ty = if name == key.hash.0 {
            let Cond::Cmp(Cmp::Eq, _, Operand::Value(v)) = part else {
                return Err(unsupported());
            };
            if hash.is_some() {
                return Err(validation(
                    "KeyConditionExpressions must only contain one condition per key",
                ));
            }
            if v.type_name() != key.hash.1 {
                return Err(invalid_param(
                    "Condition parameter type does not match schema type",
                ));
            }
            hash = v.key_bytes();
            continue;
        } else if key.range.as_ref().is_some_and(|r| r.0 == name) {
            if range_seen {
                return Err(validation(
                    "KeyConditionExpressions must only contain one condition per key",
                ));
            }
            range_seen = true;
            &key.range.as_ref().expect("checked").1
        } else {
            return Err(validation(format!(
                "Query condition missed key schema element: {}",
                if hash.is_none() && name != key.hash.0 {
                    &key.hash.0
                } else {
                    name
                }
            )));
        };
        for v in values {
            match v {
                Operand::Value(v) if v.type_name() == ty => {}
                Operand::Value(_) => {
                    return Err(invalid_param(
                        "Condition parameter type does not match schema type",
                    ));
                }
                _ => return Err(unsupported()),
            }
        }
    }
    hash.ok_or_else(|| {
        validation(format!(
            "Query condition missed key schema element: {}",
            key.hash.0
        ))
    })
}

pub(crate) fn query(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let tkey = table_key(ctx, input);
    let (key_cond, filter, projection) = read_exprs(input, true)?;
    let key_cond = key_cond.expect("required above");
    let st = d.state.lock();
    let table = st.tables.get(&tkey).ok_or_else(not_found)?;
    let index = find_index(table, input)?;
    let schema = index.map_or(&table.meta.key, |i| &i.key);
    let hash = key_condition(&key_cond, schema)?;
    if let Some(f) = &filter {
        check_filter_keys(f, schema, input.get("QueryFilter").is_some())?;
    }
    let r = reading(input, index, filter, projection)?;
    let start = start_position(table, index, input)?;
    let forward = input.get("ScanIndexForward").and_then(Value::as_bool) != Some(false);
    let mut cands = candidates(table, index, Some(&hash));
    if !forward {
        cands.reverse();
    }
    let items = cands
        .into_iter()
        .filter(|(p, _)| match &start {
            None => true,
            Some(s) if forward => p > s,
            Some(s) => p < s,
        })
        .map(|(_, i)| i)
        .filter(|i| tsumiki_lang::dynamodb::eval(i, &key_cond));
    let count_only = r.count_only;
    let page = walk(table, index, items, &r);
    Ok(finish(input, table, page, count_only))
}

/// A filter may not name key attributes of a Query (AWS).
fn check_filter_keys(f: &Cond, key: &KeyDef, legacy: bool) -> Result<(), AwsError> {
    let mut names = Vec::new();
    collect_paths(f, &mut names);
    for n in names {
        if n == key.hash.0 || key.range.as_ref().is_some_and(|r| r.0 == n) {
            return Err(validation(if legacy {
                format!(
                    "QueryFilter can only contain non-key attributes: Primary key attribute: {n}"
                )
            } else {
                format!(
                    "Filter Expression can only contain non-primary key attributes: Primary key attribute: {n}"
                )
            }));
        }
    }
    Ok(())
}

fn collect_paths(c: &Cond, out: &mut Vec<String>) {
    let op = |o: &Operand, out: &mut Vec<String>| match o {
        Operand::Path(p) => out.push(p.top().to_string()),
        Operand::Size(inner) => {
            if let Operand::Path(p) = &**inner {
                out.push(p.top().to_string());
            }
        }
        Operand::Value(_) => {}
    };
    match c {
        Cond::Cmp(_, a, b) | Cond::BeginsWith(a, b) | Cond::Contains(a, b) => {
            op(a, out);
            op(b, out);
        }
        Cond::Between(a, b, c) => {
            op(a, out);
            op(b, out);
            op(c, out);
        }
        Cond::In(a, l) => {
            op(a, out);
            l.iter().for_each(|x| op(x, out));
        }
        Cond::And(a, b) | Cond::Or(a, b) => {
            collect_paths(a, out);
            collect_paths(b, out);
        }
        Cond::Not(a) => collect_paths(a, out),
        Cond::Exists(p) | Cond::NotExists(p) | Cond::Type(p, _) => out.push(p.top().to_string()),
    }
}

/// A partition's parallel-scan segment: a stable hash of its key bytes.
fn segment_of(pk: &[u8], total: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in pk {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % total
}

pub(crate) fn scan(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let tkey = table_key(ctx, input);
    let (_, filter, projection) = read_exprs(input, false)?;
    let segment = input.get("Segment").and_then(Value::as_u64);
    let total = input.get("TotalSegments").and_then(Value::as_u64);
    let seg = match (segment, total) {
        (Some(s), Some(t)) => {
            if s >= t {
                return Err(validation(format!(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {s} is not less than TotalSegments: {t}"
                )));
            }
            Some((s, t))
        }
        (Some(_), None) => {
            return Err(validation(
                "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
            ));
        }
        (None, Some(_)) => {
            return Err(validation(
                "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
            ));
        }
        (None, None) => None,
    };
    let st = d.state.lock();
    let table = st.tables.get(&tkey).ok_or_else(not_found)?;
    let index = find_index(table, input)?;
    let r = reading(input, index, filter, projection)?;
    let start = start_position(table, index, input)?;
    let items = candidates(table, index, None)
        .into_iter()
        .filter(|(p, _)| seg.is_none_or(|(s, t)| segment_of(&p[0], t) == s))
        .filter(|(p, _)| start.as_ref().is_none_or(|s| p > s))
        .map(|(_, i)| i);
    let count_only = r.count_only;
    let page = walk(table, index, items, &r);
    Ok(finish(input, table, page, count_only))
}
