//! API keys and usage plans of REST APIs, and their enforcement on invoke requests.
//!
//! Keys and plans are account/region resources, one store record each (`apigw.keys`, key
//! `account/region/key/{id}` or `.../plan/{id}`); a plan holds its keys' ids. Quota use is
//! counted per plan, key and UTC day (`.../usage/{plan}/{key}/{yyyy-mm-dd}`), written through
//! before the request it counts runs, so `GetUsage` and quotas survive a restart. Throttling
//! (a plan's or a stage's rate and burst) is a token bucket per plan and key on the clock,
//! kept in memory as AWS's are best-effort.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::{Batch, Store, StoreError};

use crate::{ApiGateway, bad_request, conflict, not_found, store_error};

const NS_KEYS: &str = "apigw.keys";

#[derive(Default)]
pub struct KeysState {
    /// Keys and plans by store key.
    records: BTreeMap<String, Value>,
    /// Requests counted by `account/region/usage/{plan}/{key}/{day}`.
    usage: BTreeMap<String, i64>,
    /// Token buckets by plan/key or stage/route: (tokens, last refill in clock ms).
    buckets: HashMap<String, (f64, i64)>,
}

pub async fn load(store: &Store) -> Result<KeysState, StoreError> {
    let mut s = KeysState::default();
    for (k, v) in store.scan(NS_KEYS).await? {
        let k = String::from_utf8_lossy(&k).into_owned();
        if k.contains("/usage/") {
            if let Ok(n) = String::from_utf8_lossy(&v).parse() {
                s.usage.insert(k, n);
            }
        } else if let Ok(v) = serde_json::from_slice(&v) {
            s.records.insert(k, v);
        }
    }
    Ok(s)
}

pub fn reset(state: &mut KeysState, batch: &mut Batch) {
    *state = KeysState::default();
    batch.delete_prefix(NS_KEYS, Vec::new());
}

fn rkey(ctx: &RequestContext, kind: &str, id: &str) -> String {
    format!("{}/{}/{kind}/{id}", ctx.account, ctx.region)
}

fn str_of<'a>(v: &'a Value, m: &str) -> &'a str {
    v.get(m).and_then(Value::as_str).unwrap_or_default()
}

fn new_id(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn key_missing() -> AwsError {
    not_found("Invalid API Key identifier specified")
}

fn plan_missing(id: &str) -> AwsError {
    not_found(format!("Invalid Usage Plan ID specified {id}"))
}

/// A key as `GetApiKey` shows it: the value only when asked for.
fn shown(key: &Value, include_value: bool) -> Value {
    let mut k = key.clone();
    if !include_value && let Some(o) = k.as_object_mut() {
        o.remove("value");
    }
    k
}

fn day_of(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// The first day of the quota period holding `day` (`offset` days into it, as AWS's
/// `quota.offset`).
fn period_start(day: NaiveDate, period: &str, offset: i64) -> NaiveDate {
    let shifted = day - Duration::days(offset);
    let start = match period {
        "WEEK" => shifted - Duration::days(shifted.weekday().num_days_from_monday() as i64),
        "MONTH" => shifted.with_day(1).unwrap_or(shifted),
        _ => shifted,
    };
    start + Duration::days(offset)
}

fn patch(target: &mut Value, input: &Value) -> Result<(), AwsError> {
    for op in input["patchOperations"].as_array().into_iter().flatten() {
        let path = str_of(op, "path");
        let v = op["value"].as_str().unwrap_or_default();
        let value = match path {
            "/enabled" => json!(v == "true"),
            "/throttle/rateLimit" => json!(v.parse::<f64>().unwrap_or(0.0)),
            "/throttle/burstLimit" | "/quota/limit" | "/quota/offset" => {
                json!(v.parse::<i64>().unwrap_or(0))
            }
            _ => json!(v),
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let slot = match parts.as_slice() {
            [a] => &mut target[*a],
            [a, b] => &mut target[*a][*b],
            _ => return Err(bad_request(format!("Invalid patch path {path}"))),
        };
        match str_of(op, "op") {
            "replace" | "add" => *slot = value,
            "remove" => *slot = Value::Null,
            other => return Err(bad_request(format!("Invalid patch operation {other}"))),
        }
    }
    Ok(())
}

/// The operations this module answers.
pub const OPERATIONS: &[&str] = &[
    "CreateApiKey",
    "GetApiKey",
    "GetApiKeys",
    "UpdateApiKey",
    "DeleteApiKey",
    "CreateUsagePlan",
    "GetUsagePlan",
    "GetUsagePlans",
    "UpdateUsagePlan",
    "DeleteUsagePlan",
    "CreateUsagePlanKey",
    "GetUsagePlanKey",
    "GetUsagePlanKeys",
    "DeleteUsagePlanKey",
    "GetUsage",
];

pub async fn dispatch(
    gw: &ApiGateway,
    ctx: &RequestContext,
    operation: &str,
    input: Value,
) -> Result<Value, AwsError> {
    let now_s = gw.clock.now_ms() / 1000;
    let mut batch = Batch::new();
    let out = {
        let mut s = gw.keys.lock();
        let out = apply(&mut s, ctx, operation, &input, now_s, gw, &mut batch)?;
        (out, gw.store.commit(batch))
    };
    out.1.await.map_err(store_error)?;
    Ok(out.0)
}

fn put(s: &mut KeysState, batch: &mut Batch, k: String, v: Value) {
    batch.put(
        NS_KEYS,
        k.clone(),
        serde_json::to_vec(&v).unwrap_or_default(),
    );
    s.records.insert(k, v);
}

fn list(s: &KeysState, ctx: &RequestContext, kind: &str) -> Vec<Value> {
    let prefix = rkey(ctx, kind, "");
    s.records
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

fn apply(
    s: &mut KeysState,
    ctx: &RequestContext,
    operation: &str,
    input: &Value,
    now_s: i64,
    gw: &ApiGateway,
    batch: &mut Batch,
) -> Result<Value, AwsError> {
    let key_id = || str_of(input, "apiKey");
    match operation {
        "CreateApiKey" => {
            let value = match input["value"].as_str() {
                Some(v) if v.len() < 20 => {
                    return Err(bad_request(
                        "API Key value should be at least 20 characters",
                    ));
                }
                Some(v) => v.to_string(),
                None => new_id(40),
            };
            if list(s, ctx, "key").iter().any(|k| k["value"] == value) {
                return Err(conflict("API Key already exists"));
            }
            let id = new_id(10);
            let mut k = json!({
                "id": id, "value": value, "enabled": false, "createdDate": now_s,
                "lastUpdatedDate": now_s, "stageKeys": [], "tags": {},
            });
            for m in [
                "name",
                "description",
                "enabled",
                "customerId",
                "stageKeys",
                "tags",
            ] {
                if let Some(v) = input.get(m) {
                    k[m] = v.clone();
                }
            }
            put(s, batch, rkey(ctx, "key", &id), k.clone());
            Ok(k)
        }
        "GetApiKey" => s
            .records
            .get(&rkey(ctx, "key", key_id()))
            .map(|k| shown(k, input["includeValue"] == true))
            .ok_or_else(key_missing),
        "GetApiKeys" => {
            let q = str_of(input, "nameQuery");
            let items: Vec<Value> = list(s, ctx, "key")
                .iter()
                .filter(|k| q.is_empty() || str_of(k, "name").starts_with(q))
                .map(|k| shown(k, input["includeValues"] == true))
                .collect();
            Ok(json!({ "items": items }))
        }
        "UpdateApiKey" => {
            let rk = rkey(ctx, "key", key_id());
            let mut k = s.records.get(&rk).cloned().ok_or_else(key_missing)?;
            patch(&mut k, input)?;
            k["lastUpdatedDate"] = json!(now_s);
            put(s, batch, rk, k.clone());
            Ok(shown(&k, false))
        }
        "DeleteApiKey" => {
            let rk = rkey(ctx, "key", key_id());
            s.records.remove(&rk).ok_or_else(key_missing)?;
            batch.delete(NS_KEYS, rk);
            // The key leaves every plan it was in.
            for mut plan in list(s, ctx, "plan") {
                let before = plan["keys"].as_array().map_or(0, Vec::len);
                if let Some(keys) = plan["keys"].as_array_mut() {
                    keys.retain(|x| x != key_id());
                }
                if plan["keys"].as_array().map_or(0, Vec::len) != before {
                    let id = str_of(&plan, "id").to_string();
                    put(s, batch, rkey(ctx, "plan", &id), plan);
                }
            }
            Ok(json!({}))
        }
        "CreateUsagePlan" => {
            if str_of(input, "name").is_empty() {
                return Err(bad_request("Usage plan name is required"));
            }
            for stage in input["apiStages"].as_array().into_iter().flatten() {
                let (api, st) = (str_of(stage, "apiId"), str_of(stage, "stage"));
                if !gw.rest_stage_exists(&ctx.account, &ctx.region, api, st) {
                    return Err(bad_request(format!(
                        "Invalid API Stage {{api: {api}, stage: {st}}} specified for usageplan"
                    )));
                }
            }
            let id = new_id(6);
            let mut p = json!({"id": id, "apiStages": [], "tags": {}});
            for m in [
                "name",
                "description",
                "apiStages",
                "throttle",
                "quota",
                "tags",
            ] {
                if let Some(v) = input.get(m) {
                    p[m] = v.clone();
                }
            }
            if p["quota"].is_object() && p["quota"].get("offset").is_none() {
                p["quota"]["offset"] = json!(0);
            }
            let mut stored = p.clone();
            stored["keys"] = json!([]);
            put(s, batch, rkey(ctx, "plan", &id), stored);
            Ok(p)
        }
        "GetUsagePlan" => {
            let id = str_of(input, "usagePlanId");
            s.records
                .get(&rkey(ctx, "plan", id))
                .map(public_plan)
                .ok_or_else(|| plan_missing(id))
        }
        "GetUsagePlans" => {
            let kid = str_of(input, "keyId");
            let items: Vec<Value> = list(s, ctx, "plan")
                .iter()
                .filter(|p| {
                    kid.is_empty()
                        || p["keys"]
                            .as_array()
                            .is_some_and(|k| k.contains(&json!(kid)))
                })
                .map(public_plan)
                .collect();
            Ok(json!({ "items": items }))
        }
        "UpdateUsagePlan" => {
            let id = str_of(input, "usagePlanId");
            let rk = rkey(ctx, "plan", id);
            let mut p = s
                .records
                .get(&rk)
                .cloned()
                .ok_or_else(|| plan_missing(id))?;
            patch(&mut p, input)?;
            put(s, batch, rk, p.clone());
            Ok(public_plan(&p))
        }
        "DeleteUsagePlan" => {
            let id = str_of(input, "usagePlanId");
            let rk = rkey(ctx, "plan", id);
            s.records.remove(&rk).ok_or_else(|| plan_missing(id))?;
            batch.delete(NS_KEYS, rk);
            Ok(json!({}))
        }
        "CreateUsagePlanKey" => {
            let pid = str_of(input, "usagePlanId");
            let kid = str_of(input, "keyId");
            if str_of(input, "keyType") != "API_KEY" {
                return Err(bad_request("Invalid key type specified"));
            }
            let key = s
                .records
                .get(&rkey(ctx, "key", kid))
                .cloned()
                .ok_or_else(key_missing)?;
            let rk = rkey(ctx, "plan", pid);
            let mut p = s
                .records
                .get(&rk)
                .cloned()
                .ok_or_else(|| plan_missing(pid))?;
            let keys = p["keys"].as_array_mut().ok_or_else(AwsError::internal)?;
            if keys.contains(&json!(kid)) {
                return Err(conflict(format!(
                    "Usage plan {pid} already contains API Key {kid}"
                )));
            }
            keys.push(json!(kid));
            put(s, batch, rk, p);
            Ok(plan_key(&key))
        }
        "GetUsagePlanKey" | "DeleteUsagePlanKey" => {
            let pid = str_of(input, "usagePlanId");
            let kid = str_of(input, "keyId");
            let rk = rkey(ctx, "plan", pid);
            let mut p = s
                .records
                .get(&rk)
                .cloned()
                .ok_or_else(|| plan_missing(pid))?;
            let keys = p["keys"].as_array_mut().ok_or_else(AwsError::internal)?;
            let Some(pos) = keys.iter().position(|k| k == kid) else {
                return Err(not_found(format!(
                    "Invalid API Key identifier specified {kid}"
                )));
            };
            if operation == "GetUsagePlanKey" {
                let key = s
                    .records
                    .get(&rkey(ctx, "key", kid))
                    .ok_or_else(key_missing)?;
                return Ok(plan_key(key));
            }
            keys.remove(pos);
            put(s, batch, rk, p);
            Ok(json!({}))
        }
        "GetUsagePlanKeys" => {
            let pid = str_of(input, "usagePlanId");
            let p = s
                .records
                .get(&rkey(ctx, "plan", pid))
                .ok_or_else(|| plan_missing(pid))?;
            let items: Vec<Value> = p["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| s.records.get(&rkey(ctx, "key", k.as_str()?)))
                .map(plan_key)
                .collect();
            Ok(json!({ "items": items }))
        }
        "GetUsage" => {
            let pid = str_of(input, "usagePlanId");
            let p = s
                .records
                .get(&rkey(ctx, "plan", pid))
                .ok_or_else(|| plan_missing(pid))?;
            let parse = |m: &str| {
                NaiveDate::parse_from_str(str_of(input, m), "%Y-%m-%d")
                    .map_err(|_| bad_request(format!("Invalid {m}: {}", str_of(input, m))))
            };
            let (start, end) = (parse("startDate")?, parse("endDate")?);
            if end < start || (end - start).num_days() > 90 {
                return Err(bad_request(
                    "The usage data date range must be within 90 days and end after it starts",
                ));
            }
            let only = str_of(input, "keyId");
            let mut items = serde_json::Map::new();
            for k in p["keys"].as_array().into_iter().flatten() {
                let kid = k.as_str().unwrap_or_default();
                if !only.is_empty() && kid != only {
                    continue;
                }
                let mut days = Vec::new();
                let mut d = start;
                while d <= end {
                    let used = s
                        .usage
                        .get(&usage_key(&ctx.account, &ctx.region, pid, kid, d))
                        .copied()
                        .unwrap_or(0);
                    let remaining = match p["quota"]["limit"].as_i64() {
                        Some(limit) => limit - period_used(s, &ctx.account, &ctx.region, p, kid, d),
                        None => 0,
                    };
                    days.push(json!([used, remaining.max(0)]));
                    d += Duration::days(1);
                }
                items.insert(kid.to_string(), json!(days));
            }
            Ok(json!({
                "usagePlanId": pid,
                "startDate": start.to_string(),
                "endDate": end.to_string(),
                "items": items,
            }))
        }
        _ => Err(AwsError::not_implemented("apigateway", operation)),
    }
}

fn public_plan(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("keys");
        o.retain(|_, v| !v.is_null());
    }
    p
}

fn plan_key(key: &Value) -> Value {
    json!({"id": key["id"], "type": "API_KEY", "value": key["value"], "name": key["name"]})
}

fn usage_key(account: &str, region: &str, plan: &str, key: &str, day: NaiveDate) -> String {
    format!("{account}/{region}/usage/{plan}/{key}/{day}")
}

/// Requests counted in the quota period holding `day`, up to and including `day`.
fn period_used(
    s: &KeysState,
    account: &str,
    region: &str,
    plan: &Value,
    key: &str,
    day: NaiveDate,
) -> i64 {
    let pid = str_of(plan, "id");
    let start = period_start(
        day,
        str_of(&plan["quota"], "period"),
        plan["quota"]["offset"].as_i64().unwrap_or(0),
    );
    let mut d = start;
    let mut used = 0;
    while d <= day {
        used += s
            .usage
            .get(&usage_key(account, region, pid, key, d))
            .copied()
            .unwrap_or(0);
        d += Duration::days(1);
    }
    used
}

/// Takes one token from a bucket of `rate` per second holding at most `burst`.
pub(crate) fn take_token(
    buckets: &mut HashMap<String, (f64, i64)>,
    id: String,
    rate: f64,
    burst: f64,
    now_ms: i64,
) -> bool {
    let (tokens, last) = buckets.entry(id).or_insert((burst, now_ms));
    let elapsed = (now_ms - *last).max(0) as f64 / 1000.0;
    *tokens = (*tokens + elapsed * rate).min(burst);
    *last = now_ms;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Why an API-keyed request may not run: (status, message).
pub(crate) type Refusal = (u16, &'static str);

impl ApiGateway {
    /// Takes a token from a stage's (or route's) throttle bucket.
    pub(crate) fn take_stage_token(&self, id: String, rate: f64, burst: f64) -> bool {
        let now = self.clock.now_ms();
        take_token(&mut self.keys.lock().buckets, id, rate, burst, now)
    }

    fn rest_stage_exists(&self, account: &str, region: &str, api: &str, stage: &str) -> bool {
        self.rest
            .lock()
            .get(&crate::state::key(account, region, api))
            .is_some_and(|r| r.stages.contains_key(stage))
    }

    /// Checks an API key against the usage plans of `api/stage`, throttles and counts it.
    pub(crate) async fn admit_key(
        &self,
        account: &str,
        region: &str,
        api: &str,
        stage: &str,
        value: Option<&str>,
    ) -> Result<(), Refusal> {
        const FORBIDDEN: Refusal = (403, "Forbidden");
        let value = value.filter(|v| !v.is_empty()).ok_or(FORBIDDEN)?;
        let now = self.clock.now_ms();
        let day = day_of(now);
        let commit = {
            let mut s = self.keys.lock();
            let prefix = format!("{account}/{region}/key/");
            let key = s
                .records
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .find(|k| k["value"] == value && k["enabled"] == true)
                .ok_or(FORBIDDEN)?;
            let kid = str_of(key, "id").to_string();
            let plan_prefix = format!("{account}/{region}/plan/");
            let (plan, stage_entry) = s
                .records
                .range(plan_prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&plan_prefix))
                .map(|(_, p)| p)
                .filter(|p| {
                    p["keys"]
                        .as_array()
                        .is_some_and(|k| k.contains(&json!(kid)))
                })
                .find_map(|p| {
                    let entry = p["apiStages"]
                        .as_array()?
                        .iter()
                        .find(|x| x["apiId"] == api && x["stage"] == stage)?;
                    Some((p.clone(), entry.clone()))
                })
                .ok_or(FORBIDDEN)?;
            let pid = str_of(&plan, "id").to_string();
            let throttle = &plan["throttle"];
            if let (Some(rate), Some(burst)) = (
                throttle["rateLimit"].as_f64(),
                throttle["burstLimit"].as_f64(),
            ) && !take_token(
                &mut s.buckets,
                format!("plan/{pid}/{kid}"),
                rate,
                burst,
                now,
            ) {
                return Err((429, "Too Many Requests"));
            }
            // A per-stage throttle inside the plan applies on top of the plan's.
            if let Some(t) = stage_entry["throttle"].as_object()
                && let Some(m) = t.get("*/*")
                && let (Some(rate), Some(burst)) =
                    (m["rateLimit"].as_f64(), m["burstLimit"].as_f64())
                && !take_token(
                    &mut s.buckets,
                    format!("plan/{pid}/{kid}/{api}/{stage}"),
                    rate,
                    burst,
                    now,
                )
            {
                return Err((429, "Too Many Requests"));
            }
            if let Some(limit) = plan["quota"]["limit"].as_i64()
                && period_used(&s, account, region, &plan, &kid, day) >= limit
            {
                return Err((429, "Limit Exceeded"));
            }
            let uk = usage_key(account, region, &pid, &kid, day);
            let n = s.usage.get(&uk).copied().unwrap_or(0) + 1;
            s.usage.insert(uk.clone(), n);
            let mut batch = Batch::new();
            batch.put(NS_KEYS, uk, n.to_string());
            self.store.commit(batch)
        };
        commit.await.map_err(|e| {
            tracing::error!(error = %e, "Could not count an API key's request.");
            (500, "Internal server error")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_on_the_clock() {
        let mut b = HashMap::new();
        assert!(take_token(&mut b, "k".into(), 1.0, 2.0, 0));
        assert!(take_token(&mut b, "k".into(), 1.0, 2.0, 0));
        assert!(!take_token(&mut b, "k".into(), 1.0, 2.0, 10));
        assert!(take_token(&mut b, "k".into(), 1.0, 2.0, 1_010));
        assert!(!take_token(&mut b, "z".into(), 5.0, 0.0, 0));
    }

    #[test]
    fn quota_periods() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(); // a Thursday
        assert_eq!(period_start(d, "DAY", 0), d);
        assert_eq!(period_start(d, "WEEK", 0).to_string(), "2026-11-23");
        assert_eq!(period_start(d, "MONTH", 0).to_string(), "2026-11-01");
        assert_eq!(period_start(d, "MONTH", 2).to_string(), "2026-11-03");
    }
}
