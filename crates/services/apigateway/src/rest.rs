//! REST APIs (`apigateway`, the v1 API): APIs, resources with path parts (`{id}`,
//! `{proxy+}`), methods, integrations, deployments and stages. Each API is one store record
//! (`apigw.rest`) with its resources; a deployment freezes the resources, a stage serves one
//! deployment. Resources are the model-shaped values AWS returns (`resourceMethods` holding the
//! methods, each method its `methodIntegration`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::{Batch, Store, StoreError};

use crate::{ApiGateway, bad_request, conflict, not_found, store_error};

const NS_REST: &str = "apigw.rest";

/// One REST API with its resources, deployments and stages.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestRecord {
    pub account: String,
    pub region: String,
    pub api: Value,
    pub resources: BTreeMap<String, Value>,
    #[serde(default)]
    pub deployments: BTreeMap<String, Value>,
    /// The resources each deployment froze.
    #[serde(default)]
    pub frozen: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(default)]
    pub stages: BTreeMap<String, Value>,
    /// Lambda authorizers by id.
    #[serde(default)]
    pub authorizers: BTreeMap<String, Value>,
    /// The authorizers each deployment froze.
    #[serde(default)]
    pub frozen_authorizers: BTreeMap<String, BTreeMap<String, Value>>,
}

impl RestRecord {
    pub fn id(&self) -> &str {
        self.api["id"].as_str().unwrap_or_default()
    }

    fn key(&self) -> String {
        crate::state::key(&self.account, &self.region, self.id())
    }

    fn write(&self, batch: &mut Batch) {
        batch.put(
            NS_REST,
            self.key(),
            serde_json::to_vec(self).unwrap_or_default(),
        );
    }
}

pub async fn load(store: &Store) -> Result<BTreeMap<String, RestRecord>, StoreError> {
    let mut out = BTreeMap::new();
    for (k, v) in store.scan(NS_REST).await? {
        match serde_json::from_slice::<RestRecord>(&v) {
            Ok(r) => {
                out.insert(String::from_utf8_lossy(&k).into_owned(), r);
            }
            Err(e) => tracing::error!(error = %e, "Skipped an unreadable REST API record."),
        }
    }
    Ok(out)
}

/// The `apigateway` (v1) service, sharing state and the invoke endpoint with v2.
pub struct RestApis(pub Arc<ApiGateway>);

#[async_trait]
impl tsumiki_ports::Service for RestApis {
    fn name(&self) -> &'static str {
        "apigateway"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        dispatch(&self.0, ctx, operation, input).await
    }

    async fn reset(&self) -> Result<(), AwsError> {
        let commit = {
            let mut rest = self.0.rest.lock();
            rest.clear();
            let mut batch = Batch::new();
            batch.delete_prefix(NS_REST, Vec::new());
            crate::keys::reset(&mut self.0.keys.lock(), &mut batch);
            self.0.store.commit(batch)
        };
        commit.await.map_err(store_error)
    }
}

fn str_of<'a>(input: &'a Value, member: &str) -> &'a str {
    input
        .get(member)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn new_id(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn merge(target: &mut Value, input: &Value, skip: &[&str]) {
    if let (Some(t), Some(i)) = (target.as_object_mut(), input.as_object()) {
        for (k, v) in i {
            if !skip.contains(&k.as_str()) {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn api_missing(id: &str) -> AwsError {
    not_found(format!("Invalid API identifier specified {id}"))
}

fn resource_missing(id: &str) -> AwsError {
    not_found(format!("Invalid Resource identifier specified {id}"))
}

fn authorizer_missing(id: &str) -> AwsError {
    not_found(format!("Invalid Authorizer identifier specified {id}"))
}

/// Applies API Gateway's `patchOperations` (`replace`/`add`/`remove` of a top-level `/member`)
/// to `target`. Values arrive as strings; members the model types as numbers or booleans are
/// converted back.
fn apply_patch(target: &mut Value, input: &Value) -> Result<(), AwsError> {
    let Some(ops) = input["patchOperations"].as_array() else {
        return Ok(());
    };
    for op in ops {
        let path = str_of(op, "path");
        let member = path.trim_start_matches('/');
        if member.is_empty() || member.contains('/') {
            return Err(bad_request(format!("Invalid patch path {path}")));
        }
        let value = match &op["value"] {
            Value::String(v) => match member {
                "authorizerResultTtlInSeconds" => json!(
                    v.parse::<i64>()
                        .map_err(|_| { bad_request(format!("Invalid value for {member}: {v}")) })?
                ),
                "apiKeyRequired" | "enabled" => json!(v == "true"),
                _ => json!(v),
            },
            other => other.clone(),
        };
        match str_of(op, "op") {
            "replace" | "add" => target[member] = value,
            "remove" => {
                if let Some(o) = target.as_object_mut() {
                    o.remove(member);
                }
            }
            other => return Err(bad_request(format!("Invalid patch operation {other}"))),
        }
    }
    Ok(())
}

/// One `UpdateStage` patch: `/*/*/throttling/rateLimit` (or `/~1items/GET/...`) into
/// `methodSettings`, `/variables/{name}`, `/accessLogSettings/{member}`, and top-level members.
fn patch_stage(
    stage: &mut Value,
    op: &Value,
    deployment_exists: &dyn Fn(&str) -> bool,
) -> Result<(), AwsError> {
    let path = str_of(op, "path");
    let value = op["value"].as_str().unwrap_or_default();
    let remove = str_of(op, "op") == "remove";
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let bad = || bad_request(format!("Invalid patch path {path}"));
    match parts.as_slice() {
        ["variables", name] => {
            if !stage["variables"].is_object() {
                stage["variables"] = json!({});
            }
            if remove {
                if let Some(o) = stage["variables"].as_object_mut() {
                    o.remove(*name);
                }
            } else {
                stage["variables"][*name] = json!(value);
            }
        }
        ["accessLogSettings", member @ ("destinationArn" | "format")] => {
            if remove {
                stage.as_object_mut().map(|o| o.remove("accessLogSettings"));
            } else {
                stage["accessLogSettings"][*member] = json!(value);
            }
        }
        ["accessLogSettings"] if remove => {
            stage.as_object_mut().map(|o| o.remove("accessLogSettings"));
        }
        [resource, method, group, setting] => {
            let resource = resource.replace("~1", "/");
            let key = format!("{}/{method}", resource.trim_start_matches('/'));
            let (member, v) = match (*group, *setting) {
                ("throttling", "rateLimit") => (
                    "throttlingRateLimit",
                    json!(value.parse::<f64>().map_err(|_| bad())?),
                ),
                ("throttling", "burstLimit") => (
                    "throttlingBurstLimit",
                    json!(value.parse::<i64>().map_err(|_| bad())?),
                ),
                ("metrics", "enabled") => ("metricsEnabled", json!(value == "true")),
                ("logging", "loglevel") => ("loggingLevel", json!(value)),
                ("logging", "dataTrace") => ("dataTraceEnabled", json!(value == "true")),
                _ => return Err(bad()),
            };
            if !stage["methodSettings"].is_object() {
                stage["methodSettings"] = json!({});
            }
            let entry = stage["methodSettings"]
                .as_object_mut()
                .ok_or_else(bad)?
                .entry(key)
                .or_insert_with(|| {
                    json!({
                        "metricsEnabled": false,
                        "dataTraceEnabled": false,
                        "throttlingBurstLimit": 5000,
                        "throttlingRateLimit": 10000.0,
                        "cachingEnabled": false,
                        "cacheTtlInSeconds": 300,
                        "cacheDataEncrypted": false,
                        "requireAuthorizationForCacheControl": true,
                        "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITH_RESPONSE_HEADER",
                    })
                });
            entry[member] = v;
        }
        ["deploymentId"] => {
            if !deployment_exists(value) {
                return Err(bad_request(format!(
                    "Invalid deployment id specified {value}"
                )));
            }
            stage["deploymentId"] = json!(value);
        }
        [member @ ("description" | "tracingEnabled" | "cacheClusterEnabled")] => {
            stage[*member] = if *member == "description" {
                json!(value)
            } else {
                json!(value == "true")
            };
        }
        _ => return Err(bad()),
    }
    Ok(())
}

fn method_missing() -> AwsError {
    not_found("Invalid Method identifier specified")
}

fn read(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: &Value,
    f: impl FnOnce(&RestRecord) -> Result<Value, AwsError>,
) -> Result<Value, AwsError> {
    let id = str_of(input, "restApiId");
    let rest = gw.rest.lock();
    let r = rest
        .get(&crate::state::key(&ctx.account, &ctx.region, id))
        .ok_or_else(|| api_missing(id))?;
    f(r)
}

async fn change(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: &Value,
    f: impl FnOnce(&mut RestRecord) -> Result<Value, AwsError>,
) -> Result<Value, AwsError> {
    let id = str_of(input, "restApiId");
    let key = crate::state::key(&ctx.account, &ctx.region, id);
    let (out, commit) = {
        let mut rest = gw.rest.lock();
        let mut r = rest.get(&key).cloned().ok_or_else(|| api_missing(id))?;
        let out = f(&mut r)?;
        let mut batch = Batch::new();
        r.write(&mut batch);
        rest.insert(key, r);
        (out, gw.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    Ok(out)
}

fn valid_path_part(p: &str) -> bool {
    if p.is_empty() || p.contains('/') {
        return false;
    }
    match p.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        Some(inner) => {
            let name = inner.strip_suffix('+').unwrap_or(inner);
            !name.is_empty() && !name.contains(['{', '}', '+'])
        }
        None => !p.contains(['{', '}']),
    }
}

fn method_of<'a>(r: &'a mut RestRecord, input: &Value) -> Result<&'a mut Value, AwsError> {
    let rid = str_of(input, "resourceId");
    let method = str_of(input, "httpMethod");
    let res = r
        .resources
        .get_mut(rid)
        .ok_or_else(|| resource_missing(rid))?;
    res.get_mut("resourceMethods")
        .and_then(|m| m.get_mut(method))
        .ok_or_else(method_missing)
}

pub async fn dispatch(
    gw: &ApiGateway,
    ctx: &RequestContext,
    operation: &str,
    input: Value,
) -> Result<Value, AwsError> {
    let now_s = gw.clock.now_ms() / 1000;
    match operation {
        "CreateRestApi" => {
            let id = new_id(10);
            let root = new_id(10);
            let mut api = json!({
                "id": id,
                "createdDate": now_s,
                "apiKeySource": "HEADER",
                "endpointConfiguration": {"types": ["EDGE"]},
                "disableExecuteApiEndpoint": false,
                "rootResourceId": root,
                "tags": {},
            });
            merge(&mut api, &input, &["cloneFrom"]);
            let mut record = RestRecord {
                account: ctx.account.clone(),
                region: ctx.region.clone(),
                api: api.clone(),
                ..Default::default()
            };
            record
                .resources
                .insert(root.clone(), json!({"id": root, "path": "/"}));
            let commit = {
                let mut rest = gw.rest.lock();
                let mut batch = Batch::new();
                record.write(&mut batch);
                rest.insert(record.key(), record);
                gw.store.commit(batch)
            };
            commit.await.map_err(store_error)?;
            Ok(api)
        }
        "GetRestApi" => read(gw, ctx, &input, |r| Ok(r.api.clone())),
        "GetRestApis" => {
            let rest = gw.rest.lock();
            let items: Vec<Value> = rest
                .values()
                .filter(|r| r.account == ctx.account && r.region == ctx.region)
                .map(|r| r.api.clone())
                .collect();
            Ok(json!({ "items": items }))
        }
        "DeleteRestApi" => {
            let id = str_of(&input, "restApiId");
            let key = crate::state::key(&ctx.account, &ctx.region, id);
            let commit = {
                let mut rest = gw.rest.lock();
                rest.remove(&key).ok_or_else(|| api_missing(id))?;
                let mut batch = Batch::new();
                batch.delete(NS_REST, key);
                gw.store.commit(batch)
            };
            commit.await.map_err(store_error)?;
            Ok(json!({}))
        }
        "GetResources" => read(gw, ctx, &input, |r| {
            Ok(json!({ "items": r.resources.values().cloned().collect::<Vec<_>>() }))
        }),
        "GetResource" => read(gw, ctx, &input, |r| {
            let id = str_of(&input, "resourceId");
            r.resources
                .get(id)
                .cloned()
                .ok_or_else(|| resource_missing(id))
        }),
        "CreateResource" => {
            change(gw, ctx, &input, |r| {
                let parent = str_of(&input, "parentId");
                let part = str_of(&input, "pathPart");
                let parent_path = r
                    .resources
                    .get(parent)
                    .ok_or_else(|| resource_missing(parent))?["path"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                if !valid_path_part(part) {
                    return Err(bad_request(format!(
                        "Resource's path part only allow a-zA-Z0-9._- and curly braces at the beginning and the end and an optional plus sign before the closing brace. Got {part}"
                    )));
                }
                if parent_path.contains('+') {
                    return Err(bad_request(
                        "Cannot create a child of a resource with a greedy path variable",
                    ));
                }
                if r
                    .resources
                    .values()
                    .any(|x| x["parentId"] == parent && x["pathPart"] == part)
                {
                    return Err(conflict(format!(
                        "Another resource with the same parent already has this name: {part}"
                    )));
                }
                let id = new_id(6);
                let path = if parent_path == "/" {
                    format!("/{part}")
                } else {
                    format!("{parent_path}/{part}")
                };
                let res = json!({"id": id, "parentId": parent, "pathPart": part, "path": path});
                r.resources.insert(id, res.clone());
                Ok(res)
            })
            .await
        }
        "DeleteResource" => {
            change(gw, ctx, &input, |r| {
                let id = str_of(&input, "resourceId").to_string();
                let path = r
                    .resources
                    .get(&id)
                    .ok_or_else(|| resource_missing(&id))?["path"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                if path == "/" {
                    return Err(bad_request("Cannot delete the root resource"));
                }
                let prefix = format!("{path}/");
                r.resources.retain(|_, x| {
                    let p = x["path"].as_str().unwrap_or("");
                    p != path && !p.starts_with(&prefix)
                });
                Ok(json!({}))
            })
            .await
        }
        "PutMethod" => {
            change(gw, ctx, &input, |r| {
                let rid = str_of(&input, "resourceId");
                let method = str_of(&input, "httpMethod").to_string();
                const METHODS: &[&str] = &[
                    "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                ];
                if !METHODS.contains(&method.as_str()) {
                    return Err(bad_request(format!("Invalid HttpMethod specified: {method}")));
                }
                if input["authorizationType"] == "CUSTOM" {
                    let aid = str_of(&input, "authorizerId");
                    if !r.authorizers.contains_key(aid) {
                        return Err(bad_request(format!(
                            "Invalid authorizer ID specified. Setting the authorization type to CUSTOM requires a valid authorizer ID. Got {aid}"
                        )));
                    }
                }
                let res = r
                    .resources
                    .get_mut(rid)
                    .ok_or_else(|| resource_missing(rid))?;
                let mut m = json!({"httpMethod": method, "apiKeyRequired": false});
                merge(&mut m, &input, &["restApiId", "resourceId"]);
                if !res["resourceMethods"].is_object() {
                    res["resourceMethods"] = json!({});
                }
                res["resourceMethods"][&method] = m.clone();
                Ok(m)
            })
            .await
        }
        "UpdateMethod" => {
            change(gw, ctx, &input, |r| {
                let authorizers = r.authorizers.clone();
                let m = method_of(r, &input)?;
                let mut updated = m.clone();
                apply_patch(&mut updated, &input)?;
                if updated["authorizationType"] == "CUSTOM" {
                    let aid = str_of(&updated, "authorizerId");
                    if !authorizers.contains_key(aid) {
                        return Err(bad_request(format!(
                            "Invalid authorizer ID specified. Setting the authorization type to CUSTOM requires a valid authorizer ID. Got {aid}"
                        )));
                    }
                }
                *m = updated.clone();
                Ok(updated)
            })
            .await
        }
        "UpdateIntegration" => {
            change(gw, ctx, &input, |r| {
                let i = method_of(r, &input)?
                    .get_mut("methodIntegration")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| not_found("No integration defined for method"))?;
                apply_patch(i, &input)?;
                Ok(i.clone())
            })
            .await
        }
        "DeleteIntegration" => {
            change(gw, ctx, &input, |r| {
                let m = method_of(r, &input)?;
                m.as_object_mut()
                    .and_then(|o| o.remove("methodIntegration"))
                    .ok_or_else(|| not_found("No integration defined for method"))?;
                Ok(json!({}))
            })
            .await
        }
        "UpdateRestApi" => {
            change(gw, ctx, &input, |r| {
                let mut api = r.api.clone();
                apply_patch(&mut api, &input)?;
                if !["HEADER", "AUTHORIZER"].contains(&str_of(&api, "apiKeySource")) {
                    return Err(bad_request("Invalid API Key source specified"));
                }
                r.api = api.clone();
                Ok(api)
            })
            .await
        }
        "GetMethod" => read(gw, ctx, &input, |r| {
            let mut r = r.clone();
            method_of(&mut r, &input).map(|m| m.clone())
        }),
        "DeleteMethod" => {
            change(gw, ctx, &input, |r| {
                method_of(r, &input)?;
                let rid = str_of(&input, "resourceId");
                let method = str_of(&input, "httpMethod");
                if let Some(m) = r
                    .resources
                    .get_mut(rid)
                    .and_then(|x| x["resourceMethods"].as_object_mut())
                {
                    m.remove(method);
                }
                Ok(json!({}))
            })
            .await
        }
        "PutIntegration" => {
            change(gw, ctx, &input, |r| {
                let kind = str_of(&input, "type").to_string();
                if !["AWS_PROXY", "AWS", "MOCK", "HTTP_PROXY", "HTTP"].contains(&kind.as_str()) {
                    return Err(bad_request(format!("Invalid integration type {kind}")));
                }
                if kind == "AWS" && !str_of(&input, "uri").contains(":lambda:path/") {
                    return Err(AwsError::new(
                        "NotImplemented",
                        501,
                        "tsumiki runs AWS integrations of REST APIs with Lambda only.",
                    ));
                }
                if kind != "MOCK" && input.get("uri").is_none() {
                    return Err(bad_request("Enumeration value for Integration uri is required"));
                }
                if kind != "MOCK" && input.get("integrationHttpMethod").is_none() {
                    return Err(bad_request(
                        "Enumeration value for HttpMethod must be non-empty",
                    ));
                }
                let rid = str_of(&input, "resourceId").to_string();
                let m = method_of(r, &input)?;
                let mut i = json!({
                    "timeoutInMillis": 29000,
                    "passthroughBehavior": "WHEN_NO_MATCH",
                    "cacheNamespace": rid,
                    "cacheKeyParameters": [],
                });
                merge(&mut i, &input, &["restApiId", "resourceId", "httpMethod", "integrationHttpMethod"]);
                if let Some(h) = input.get("integrationHttpMethod") {
                    i["httpMethod"] = h.clone();
                }
                m["methodIntegration"] = i.clone();
                Ok(i)
            })
            .await
        }
        "GetIntegration" => read(gw, ctx, &input, |r| {
            let mut r = r.clone();
            method_of(&mut r, &input)?
                .get("methodIntegration")
                .cloned()
                .ok_or_else(|| not_found("No integration defined for method"))
        }),
        "PutIntegrationResponse" => {
            change(gw, ctx, &input, |r| {
                let status = str_of(&input, "statusCode").to_string();
                let i = method_of(r, &input)?
                    .get_mut("methodIntegration")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| not_found("No integration defined for method"))?;
                if let Some(p) = input["selectionPattern"].as_str()
                    && regex::Regex::new(p).is_err()
                {
                    return Err(bad_request(format!("Invalid selection pattern specified: {p}")));
                }
                let mut out = json!({"statusCode": status});
                merge(&mut out, &input, &["restApiId", "resourceId", "httpMethod"]);
                if !i["integrationResponses"].is_object() {
                    i["integrationResponses"] = json!({});
                }
                i["integrationResponses"][&status] = out.clone();
                Ok(out)
            })
            .await
        }
        "GetIntegrationResponse" => read(gw, ctx, &input, |r| {
            let mut r = r.clone();
            method_of(&mut r, &input)?["methodIntegration"]["integrationResponses"]
                .get(str_of(&input, "statusCode"))
                .cloned()
                .ok_or_else(|| not_found("Invalid Response status code specified"))
        }),
        "DeleteIntegrationResponse" => {
            change(gw, ctx, &input, |r| {
                let status = str_of(&input, "statusCode").to_string();
                method_of(r, &input)?["methodIntegration"]["integrationResponses"]
                    .as_object_mut()
                    .and_then(|m| m.remove(&status))
                    .ok_or_else(|| not_found("Invalid Response status code specified"))?;
                Ok(json!({}))
            })
            .await
        }
        "PutMethodResponse" => {
            change(gw, ctx, &input, |r| {
                let status = str_of(&input, "statusCode").to_string();
                let m = method_of(r, &input)?;
                let mut out = json!({"statusCode": status});
                merge(&mut out, &input, &["restApiId", "resourceId", "httpMethod"]);
                if !m["methodResponses"].is_object() {
                    m["methodResponses"] = json!({});
                }
                m["methodResponses"][&status] = out.clone();
                Ok(out)
            })
            .await
        }
        "GetMethodResponse" => read(gw, ctx, &input, |r| {
            let mut r = r.clone();
            method_of(&mut r, &input)?["methodResponses"]
                .get(str_of(&input, "statusCode"))
                .cloned()
                .ok_or_else(|| not_found("Invalid Response status code specified"))
        }),
        "DeleteMethodResponse" => {
            change(gw, ctx, &input, |r| {
                let status = str_of(&input, "statusCode").to_string();
                method_of(r, &input)?["methodResponses"]
                    .as_object_mut()
                    .and_then(|m| m.remove(&status))
                    .ok_or_else(|| not_found("Invalid Response status code specified"))?;
                Ok(json!({}))
            })
            .await
        }
        "CreateDeployment" => {
            change(gw, ctx, &input, |r| {
                let has_integrations = r.resources.values().any(|x| {
                    x["resourceMethods"]
                        .as_object()
                        .is_some_and(|m| !m.is_empty())
                });
                if !has_integrations {
                    return Err(bad_request("The REST API doesn't contain any methods"));
                }
                let id = new_id(6);
                let mut d = json!({"id": id, "createdDate": now_s});
                if let Some(desc) = input.get("description") {
                    d["description"] = desc.clone();
                }
                r.deployments.insert(id.clone(), d.clone());
                r.frozen.insert(id.clone(), r.resources.clone());
                r.frozen_authorizers
                    .insert(id.clone(), r.authorizers.clone());
                if let Some(stage) = input.get("stageName").and_then(Value::as_str) {
                    let entry = r.stages.entry(stage.to_string()).or_insert_with(|| {
                        json!({"stageName": stage, "createdDate": now_s, "variables": {}})
                    });
                    entry["deploymentId"] = json!(id);
                    entry["lastUpdatedDate"] = json!(now_s);
                    if let Some(v) = input.get("variables") {
                        entry["variables"] = v.clone();
                    }
                }
                Ok(d)
            })
            .await
        }
        "CreateAuthorizer" => {
            change(gw, ctx, &input, |r| {
                let kind = str_of(&input, "type");
                if !["TOKEN", "REQUEST", "COGNITO_USER_POOLS"].contains(&kind) {
                    return Err(bad_request(format!("Invalid authorizer type {kind}")));
                }
                if kind == "COGNITO_USER_POOLS" {
                    return Err(AwsError::new(
                        "NotImplemented",
                        501,
                        "tsumiki runs TOKEN and REQUEST (Lambda) authorizers of REST APIs, not COGNITO_USER_POOLS.",
                    ));
                }
                if input.get("authorizerUri").is_none() {
                    return Err(bad_request(format!(
                        "Authorizer URI is required for authorizer type {kind}"
                    )));
                }
                if kind == "TOKEN" && str_of(&input, "identitySource").is_empty() {
                    return Err(bad_request(
                        "Identity source is required for authorizer type TOKEN",
                    ));
                }
                if input["authorizerResultTtlInSeconds"]
                    .as_i64()
                    .is_some_and(|t| !(0..=3600).contains(&t))
                {
                    return Err(bad_request(
                        "Authorizer result TTL must be between 0 and 3600 seconds",
                    ));
                }
                let id = new_id(6);
                let mut a = json!({"id": id, "authType": "custom", "authorizerResultTtlInSeconds": 300});
                merge(&mut a, &input, &["restApiId"]);
                r.authorizers.insert(id, a.clone());
                Ok(a)
            })
            .await
        }
        "GetAuthorizer" => read(gw, ctx, &input, |r| {
            let id = str_of(&input, "authorizerId");
            r.authorizers
                .get(id)
                .cloned()
                .ok_or_else(|| authorizer_missing(id))
        }),
        "GetAuthorizers" => read(gw, ctx, &input, |r| {
            Ok(json!({ "items": r.authorizers.values().cloned().collect::<Vec<_>>() }))
        }),
        "UpdateAuthorizer" => {
            change(gw, ctx, &input, |r| {
                let id = str_of(&input, "authorizerId");
                let a = r
                    .authorizers
                    .get_mut(id)
                    .ok_or_else(|| authorizer_missing(id))?;
                apply_patch(a, &input)?;
                Ok(a.clone())
            })
            .await
        }
        "DeleteAuthorizer" => {
            change(gw, ctx, &input, |r| {
                let id = str_of(&input, "authorizerId");
                let used = r.resources.values().any(|res| {
                    res["resourceMethods"]
                        .as_object()
                        .is_some_and(|m| m.values().any(|x| x["authorizerId"] == id))
                });
                if used {
                    return Err(conflict(
                        "Cannot delete authorizer, is referenced in method",
                    ));
                }
                r.authorizers
                    .remove(id)
                    .ok_or_else(|| authorizer_missing(id))?;
                Ok(json!({}))
            })
            .await
        }
        "GetDeployments" => read(gw, ctx, &input, |r| {
            Ok(json!({ "items": r.deployments.values().cloned().collect::<Vec<_>>() }))
        }),
        "CreateStage" => {
            change(gw, ctx, &input, |r| {
                let name = str_of(&input, "stageName").to_string();
                let dep = str_of(&input, "deploymentId");
                if !r.deployments.contains_key(dep) {
                    return Err(bad_request(format!("Invalid deployment id specified {dep}")));
                }
                if r.stages.contains_key(&name) {
                    return Err(conflict("Stage already exists"));
                }
                let mut s = json!({"createdDate": now_s, "lastUpdatedDate": now_s, "variables": {}});
                merge(&mut s, &input, &["restApiId"]);
                r.stages.insert(name, s.clone());
                Ok(s)
            })
            .await
        }
        "GetStage" => read(gw, ctx, &input, |r| {
            let name = str_of(&input, "stageName");
            r.stages
                .get(name)
                .cloned()
                .ok_or_else(|| not_found("Invalid Stage identifier specified"))
        }),
        "GetStages" => read(gw, ctx, &input, |r| {
            Ok(json!({ "item": r.stages.values().cloned().collect::<Vec<_>>() }))
        }),
        "UpdateStage" => {
            change(gw, ctx, &input, |r| {
                let name = str_of(&input, "stageName");
                let dep_ok = |d: &str| r.deployments.contains_key(d);
                let mut stage = r
                    .stages
                    .get(name)
                    .cloned()
                    .ok_or_else(|| not_found("Invalid Stage identifier specified"))?;
                for op in input["patchOperations"].as_array().into_iter().flatten() {
                    patch_stage(&mut stage, op, &dep_ok)?;
                }
                stage["lastUpdatedDate"] = json!(now_s);
                r.stages.insert(name.to_string(), stage.clone());
                Ok(stage)
            })
            .await
        }
        "DeleteStage" => {
            change(gw, ctx, &input, |r| {
                let name = str_of(&input, "stageName");
                r.stages
                    .remove(name)
                    .ok_or_else(|| not_found("Invalid Stage identifier specified"))?;
                Ok(json!({}))
            })
            .await
        }
        op if crate::keys::OPERATIONS.contains(&op) => {
            crate::keys::dispatch(gw, ctx, op, input).await
        }
        other => Err(AwsError::not_implemented("apigateway", other)),
    }
}

/// What an invoke-URL request resolves to in a REST API.
pub struct RestTarget {
    pub account: String,
    /// `HEADER` (`x-api-key`) or `AUTHORIZER` (the authorizer's `usageIdentifierKey`).
    pub api_key_source: String,
    /// The stage's `methodSettings` (throttling) and `accessLogSettings`.
    pub stage_settings: Value,
    /// Authorizers as the stage's deployment froze them.
    pub authorizers: BTreeMap<String, Value>,
    pub region: String,
    pub stage: String,
    pub variables: Vec<(String, String)>,
    pub resources: BTreeMap<String, Value>,
    /// The path after the stage.
    pub path: String,
}

impl ApiGateway {
    /// A REST API's stage by the first path segment.
    pub(crate) fn resolve_rest(&self, api_id: &str, path: &str) -> Option<RestTarget> {
        let rest = self.rest.lock();
        let r = rest.values().find(|r| r.id() == api_id)?;
        let trimmed = path.trim_start_matches('/');
        let (stage, rest_path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let s = r.stages.get(stage)?;
        let deployment = s["deploymentId"].as_str()?;
        let resources = r.frozen.get(deployment)?.clone();
        Some(RestTarget {
            account: r.account.clone(),
            api_key_source: r.api["apiKeySource"]
                .as_str()
                .unwrap_or("HEADER")
                .to_string(),
            stage_settings: s.clone(),
            authorizers: r
                .frozen_authorizers
                .get(deployment)
                .cloned()
                .unwrap_or_default(),
            region: r.region.clone(),
            stage: stage.to_string(),
            variables: s["variables"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            resources,
            path: format!("/{rest_path}"),
        })
    }
}
