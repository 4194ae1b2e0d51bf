//! The apigatewayv2 control plane: APIs, routes, integrations, authorizers, stages and
//! deployments. Resources are the model-shaped values AWS returns; a create copies the
//! request's members and fills AWS's defaults, an update merges the request's members.
//!
//! Deployments freeze the API's routes, integrations and authorizers; a stage serves the
//! deployment it names. An `AutoDeploy` stage gets a new deployment after every change, as AWS
//! deploys automatically.

use rand::Rng;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, ApiRecord, Snapshot};
use crate::{ApiGateway, bad_request, conflict, not_found, store_error};

/// The sub-resources a deployment freezes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Route,
    Integration,
    Authorizer,
}

impl Kind {
    fn id_member(self) -> &'static str {
        match self {
            Kind::Route => "RouteId",
            Kind::Integration => "IntegrationId",
            Kind::Authorizer => "AuthorizerId",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Route => "Route",
            Kind::Integration => "Integration",
            Kind::Authorizer => "Authorizer",
        }
    }

    fn map(self, s: &mut Snapshot) -> &mut std::collections::BTreeMap<String, Value> {
        match self {
            Kind::Route => &mut s.routes,
            Kind::Integration => &mut s.integrations,
            Kind::Authorizer => &mut s.authorizers,
        }
    }
}

pub async fn dispatch(
    gw: &ApiGateway,
    ctx: &RequestContext,
    operation: &str,
    input: Value,
) -> Result<Value, AwsError> {
    match operation {
        "CreateApi" => create_api(gw, ctx, input).await,
        "GetApi" => read(gw, ctx, &input, |r| Ok(r.api.clone())),
        "GetApis" => {
            let state = gw.state.lock();
            let items: Vec<Value> = state
                .apis
                .values()
                .filter(|r| r.account == ctx.account && r.region == ctx.region)
                .map(|r| r.api.clone())
                .collect();
            Ok(json!({ "Items": items }))
        }
        "UpdateApi" => {
            change(gw, ctx, &input, |r, _| {
                merge(&mut r.api, &input, &["ApiId"]);
                Ok(r.api.clone())
            })
            .await
        }
        "DeleteCorsConfiguration" => {
            change(gw, ctx, &input, |r, _| {
                if let Some(o) = r.api.as_object_mut() {
                    o.remove("CorsConfiguration");
                }
                Ok(json!({}))
            })
            .await
        }
        "DeleteApi" => delete_api(gw, ctx, &input).await,
        "CreateRoute" => create_sub(gw, ctx, Kind::Route, input).await,
        "CreateIntegration" => create_sub(gw, ctx, Kind::Integration, input).await,
        "CreateAuthorizer" => create_sub(gw, ctx, Kind::Authorizer, input).await,
        "GetRoute" => get_sub(gw, ctx, Kind::Route, &input),
        "GetIntegration" => get_sub(gw, ctx, Kind::Integration, &input),
        "GetAuthorizer" => get_sub(gw, ctx, Kind::Authorizer, &input),
        "GetRoutes" => list_sub(gw, ctx, Kind::Route, &input),
        "GetIntegrations" => list_sub(gw, ctx, Kind::Integration, &input),
        "GetAuthorizers" => list_sub(gw, ctx, Kind::Authorizer, &input),
        "UpdateRoute" => update_sub(gw, ctx, Kind::Route, input).await,
        "UpdateIntegration" => update_sub(gw, ctx, Kind::Integration, input).await,
        "UpdateAuthorizer" => update_sub(gw, ctx, Kind::Authorizer, input).await,
        "DeleteRoute" => delete_sub(gw, ctx, Kind::Route, &input).await,
        "DeleteIntegration" => delete_sub(gw, ctx, Kind::Integration, &input).await,
        "DeleteAuthorizer" => delete_sub(gw, ctx, Kind::Authorizer, &input).await,
        "CreateStage" => create_stage(gw, ctx, input).await,
        "GetStage" => read(gw, ctx, &input, |r| {
            let name = str_of(&input, "StageName");
            r.stages
                .get(name)
                .cloned()
                .ok_or_else(|| not_found(format!("Invalid stage identifier specified {name}")))
        }),
        "GetStages" => read(gw, ctx, &input, |r| {
            Ok(json!({ "Items": r.stages.values().cloned().collect::<Vec<_>>() }))
        }),
        "UpdateStage" => {
            let now = gw.clock.now_ms();
            change(gw, ctx, &input, |r, _| {
                let name = str_of(&input, "StageName").to_string();
                let stage = r.stages.get_mut(&name).ok_or_else(|| {
                    not_found(format!("Invalid stage identifier specified {name}"))
                })?;
                merge(stage, &input, &["ApiId", "StageName"]);
                stage["LastUpdatedDate"] = json!(now / 1000);
                let deploy = stage["AutoDeploy"].as_bool() == Some(true);
                if let Some(d) = input.get("DeploymentId").and_then(Value::as_str)
                    && !r.deployments.contains_key(d)
                {
                    return Err(not_found(format!(
                        "Invalid deployment identifier specified {d}"
                    )));
                }
                if deploy {
                    auto_deploy(r, now);
                }
                Ok(r.stages[&name].clone())
            })
            .await
        }
        "DeleteStage" => {
            change(gw, ctx, &input, |r, _| {
                let name = str_of(&input, "StageName");
                r.stages.remove(name).ok_or_else(|| {
                    not_found(format!("Invalid stage identifier specified {name}"))
                })?;
                prune(r);
                Ok(json!({}))
            })
            .await
        }
        "CreateDeployment" => {
            let now = gw.clock.now_ms();
            change(gw, ctx, &input, |r, _| {
                let stage = input.get("StageName").and_then(Value::as_str);
                if let Some(s) = stage
                    && !r.stages.contains_key(s)
                {
                    return Err(bad_request(format!(
                        "Invalid stage identifier specified {s}"
                    )));
                }
                let mut d = deploy(r, now, false);
                if let Some(desc) = input.get("Description") {
                    d["Description"] = desc.clone();
                }
                let id = d["DeploymentId"].as_str().unwrap_or_default().to_string();
                r.deployments.insert(id.clone(), d.clone());
                if let Some(s) = stage
                    && let Some(st) = r.stages.get_mut(s)
                {
                    st["DeploymentId"] = json!(id);
                    st["LastUpdatedDate"] = json!(now / 1000);
                }
                Ok(d)
            })
            .await
        }
        "GetDeployment" => read(gw, ctx, &input, |r| {
            let id = str_of(&input, "DeploymentId");
            r.deployments
                .get(id)
                .cloned()
                .ok_or_else(|| not_found(format!("Invalid deployment identifier specified {id}")))
        }),
        "GetDeployments" => read(gw, ctx, &input, |r| {
            Ok(json!({ "Items": r.deployments.values().cloned().collect::<Vec<_>>() }))
        }),
        "DeleteDeployment" => {
            change(gw, ctx, &input, |r, _| {
                let id = str_of(&input, "DeploymentId");
                if r.stages.values().any(|s| s["DeploymentId"] == id) {
                    return Err(bad_request(
                        "Active stages pointing to this deployment must be moved or deleted",
                    ));
                }
                r.deployments.remove(id).ok_or_else(|| {
                    not_found(format!("Invalid deployment identifier specified {id}"))
                })?;
                r.frozen.remove(id);
                Ok(json!({}))
            })
            .await
        }
        other => Err(AwsError::not_implemented("apigatewayv2", other)),
    }
}

fn str_of<'a>(input: &'a Value, member: &str) -> &'a str {
    input
        .get(member)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn new_id(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// Copies the request's members onto a resource, except the identifiers in the URI.
fn merge(target: &mut Value, input: &Value, skip: &[&str]) {
    if let (Some(t), Some(i)) = (target.as_object_mut(), input.as_object()) {
        for (k, v) in i {
            if !skip.contains(&k.as_str()) {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn api_missing(ctx: &RequestContext, id: &str) -> AwsError {
    not_found(format!(
        "Invalid API identifier specified {}:{id}",
        ctx.account
    ))
}

fn read(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: &Value,
    f: impl FnOnce(&ApiRecord) -> Result<Value, AwsError>,
) -> Result<Value, AwsError> {
    let id = str_of(input, "ApiId");
    let state = gw.state.lock();
    let r = state
        .apis
        .get(&state::key(&ctx.account, &ctx.region, id))
        .ok_or_else(|| api_missing(ctx, id))?;
    f(r)
}

/// Applies `f` to a copy of the API's record, then stores and swaps it in under the lock, and
/// answers after the write is durable.
async fn change(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: &Value,
    f: impl FnOnce(&mut ApiRecord, &RequestContext) -> Result<Value, AwsError>,
) -> Result<Value, AwsError> {
    let id = str_of(input, "ApiId");
    let key = state::key(&ctx.account, &ctx.region, id);
    let (out, commit) = {
        let mut state = gw.state.lock();
        let mut r = state
            .apis
            .get(&key)
            .cloned()
            .ok_or_else(|| api_missing(ctx, id))?;
        let out = f(&mut r, ctx)?;
        let mut batch = Batch::new();
        r.write(&mut batch);
        state.apis.insert(key, r);
        (out, gw.store.commit(batch))
    };
    commit.await.map_err(store_error)?;
    Ok(out)
}

fn endpoint(ctx: &RequestContext, api_id: &str) -> String {
    let port = ctx
        .base_url
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("4566");
    format!("http://{api_id}.execute-api.localhost:{port}")
}

async fn create_api(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: Value,
) -> Result<Value, AwsError> {
    if input["ProtocolType"] != "HTTP" {
        return Err(AwsError::new(
            "NotImplemented",
            501,
            "tsumiki serves HTTP APIs only; WebSocket APIs are not implemented.",
        ));
    }
    let now = gw.clock.now_ms();
    let id = new_id(10);
    let mut api = json!({
        "ApiId": id,
        "ApiEndpoint": endpoint(ctx, &id),
        "ApiKeySelectionExpression": "$request.header.x-api-key",
        "CreatedDate": now / 1000,
        "DisableExecuteApiEndpoint": false,
        "RouteSelectionExpression": "$request.method $request.path",
        "Tags": {},
    });
    let target = input
        .get("Target")
        .and_then(Value::as_str)
        .map(String::from);
    let route_key = input
        .get("RouteKey")
        .and_then(Value::as_str)
        .map(String::from);
    merge(&mut api, &input, &["Target", "RouteKey", "CredentialsArn"]);
    let mut record = ApiRecord {
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        api,
        ..Default::default()
    };
    if route_key.is_some() && target.is_none() {
        return Err(bad_request(
            "RouteKey can only be specified together with Target",
        ));
    }
    // Quick create: a route to the target, its integration, and an auto-deployed $default
    // stage.
    if let Some(target) = target {
        let integration_type = if target.starts_with("http://") || target.starts_with("https://") {
            "HTTP_PROXY"
        } else {
            "AWS_PROXY"
        };
        let integration = new_integration(json!({
            "IntegrationType": integration_type,
            "IntegrationUri": target,
            "PayloadFormatVersion": if integration_type == "AWS_PROXY" { "2.0" } else { "1.0" },
            "ApiGatewayManaged": true,
        }))?;
        let iid = integration["IntegrationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let route_key = route_key.unwrap_or_else(|| "$default".into());
        let route = new_route(json!({
            "RouteKey": route_key,
            "Target": format!("integrations/{iid}"),
            "ApiGatewayManaged": true,
        }))?;
        let rid = route["RouteId"].as_str().unwrap_or_default().to_string();
        record.live.integrations.insert(iid, integration);
        record.live.routes.insert(rid, route);
        record.stages.insert(
            "$default".into(),
            new_stage(
                json!({"StageName": "$default", "AutoDeploy": true, "ApiGatewayManaged": true}),
                now,
            ),
        );
        record.api["ApiGatewayManaged"] = json!(true);
        auto_deploy(&mut record, now);
    }
    let out = record.api.clone();
    let commit = {
        let mut state = gw.state.lock();
        let mut batch = Batch::new();
        record.write(&mut batch);
        state.apis.insert(record.key(), record);
        gw.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(out)
}

async fn delete_api(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let id = str_of(input, "ApiId");
    let key = state::key(&ctx.account, &ctx.region, id);
    let commit = {
        let mut state = gw.state.lock();
        state
            .apis
            .remove(&key)
            .ok_or_else(|| api_missing(ctx, id))?;
        let mut batch = Batch::new();
        state::delete(&mut batch, &key);
        gw.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

const METHODS: &[&str] = &[
    "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
];

fn check_route_key(key: &str) -> Result<(), AwsError> {
    if key == "$default" {
        return Ok(());
    }
    let valid = match key.split_once(' ') {
        Some((method, path)) => {
            METHODS.contains(&method)
                && path.starts_with('/')
                && crate::routing::Template::parse(path).is_some()
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(bad_request(format!(
            "Unable to create Route. Invalid route key: {key}. Route key must be $default or of the form 'METHOD /path'."
        )))
    }
}

fn new_route(mut input: Value) -> Result<Value, AwsError> {
    check_route_key(str_of(&input, "RouteKey"))?;
    let mut route = json!({
        "RouteId": new_id(7),
        "ApiKeyRequired": false,
        "AuthorizationType": "NONE",
    });
    if let Some(o) = input.as_object_mut() {
        o.remove("ApiId");
    }
    merge(&mut route, &input, &[]);
    Ok(route)
}

fn new_integration(input: Value) -> Result<Value, AwsError> {
    let kind = str_of(&input, "IntegrationType");
    match kind {
        "AWS_PROXY" | "HTTP_PROXY" => {}
        "AWS" | "HTTP" | "MOCK" => {
            return Err(bad_request(format!(
                "Integration type {kind} is not supported for HTTP APIs."
            )));
        }
        _ => return Err(bad_request(format!("Invalid integration type {kind}"))),
    }
    if input.get("IntegrationUri").is_none() {
        return Err(bad_request(
            "IntegrationUri is required for this integration type.",
        ));
    }
    let format = input
        .get("PayloadFormatVersion")
        .and_then(Value::as_str)
        .unwrap_or(if kind == "AWS_PROXY" { "2.0" } else { "1.0" });
    if format != "1.0" && (format != "2.0" || kind != "AWS_PROXY") {
        return Err(bad_request(format!(
            "PayloadFormatVersion {format} is not supported for integration type {kind}."
        )));
    }
    let mut integration = json!({
        "IntegrationId": new_id(7),
        "ConnectionType": "INTERNET",
        "IntegrationMethod": if kind == "AWS_PROXY" { "POST" } else { "ANY" },
        "PayloadFormatVersion": format,
        "TimeoutInMillis": 30000,
        "IntegrationResponseSelectionExpression": "${integration.response.statuscode}",
    });
    merge(&mut integration, &input, &["ApiId"]);
    Ok(integration)
}

fn new_authorizer(input: Value) -> Result<Value, AwsError> {
    let kind = str_of(&input, "AuthorizerType");
    if kind == "JWT" {
        let config = &input["JwtConfiguration"];
        if str_of(config, "Issuer").is_empty() {
            return Err(bad_request(
                "JwtConfiguration.Issuer is required for JWT authorizers.",
            ));
        }
        if config["Audience"].as_array().is_none_or(|a| a.is_empty()) {
            return Err(bad_request(
                "JwtConfiguration.Audience is required for JWT authorizers.",
            ));
        }
        if input.get("AuthorizerUri").is_some() {
            return Err(bad_request(
                "AuthorizerUri is not supported for JWT authorizers.",
            ));
        }
        let sources = input["IdentitySource"].as_array();
        if sources.is_none_or(|a| a.len() != 1) {
            return Err(bad_request(
                "JWT authorizers take exactly one IdentitySource.",
            ));
        }
        let mut a = json!({"AuthorizerId": new_id(6)});
        merge(&mut a, &input, &["ApiId"]);
        return Ok(a);
    }
    if kind != "REQUEST" {
        return Err(bad_request(format!("Invalid authorizer type {kind}")));
    }
    if input.get("AuthorizerUri").is_none() {
        return Err(bad_request(
            "AuthorizerUri is required for REQUEST authorizers.",
        ));
    }
    let format = str_of(&input, "AuthorizerPayloadFormatVersion");
    if format != "1.0" && format != "2.0" {
        return Err(bad_request(
            "AuthorizerPayloadFormatVersion must be 1.0 or 2.0 for REQUEST authorizers.",
        ));
    }
    if input["AuthorizerResultTtlInSeconds"]
        .as_i64()
        .is_some_and(|t| !(0..=3600).contains(&t))
    {
        return Err(bad_request(
            "AuthorizerResultTtlInSeconds must be between 0 and 3600.",
        ));
    }
    if input["EnableSimpleResponses"] == true && format != "2.0" {
        return Err(bad_request(
            "EnableSimpleResponses is only supported with AuthorizerPayloadFormatVersion 2.0.",
        ));
    }
    let mut a = json!({
        "AuthorizerId": new_id(6),
        "AuthorizerResultTtlInSeconds": 0,
        "EnableSimpleResponses": false,
    });
    merge(&mut a, &input, &["ApiId"]);
    Ok(a)
}

fn new_stage(input: Value, now: i64) -> Value {
    let mut stage = json!({
        "AutoDeploy": false,
        "CreatedDate": now / 1000,
        "LastUpdatedDate": now / 1000,
        "DefaultRouteSettings": {"DetailedMetricsEnabled": false},
        "RouteSettings": {},
        "StageVariables": {},
        "Tags": {},
    });
    merge(&mut stage, &input, &["ApiId"]);
    stage
}

/// Freezes the live configuration as a new deployment.
fn deploy(r: &mut ApiRecord, now: i64, auto: bool) -> Value {
    let id = new_id(6);
    r.frozen.insert(id.clone(), r.live.clone());
    json!({
        "DeploymentId": id,
        "AutoDeployed": auto,
        "CreatedDate": now / 1000,
        "DeploymentStatus": "DEPLOYED",
    })
}

/// Gives every auto-deploying stage a fresh deployment of the live configuration.
fn auto_deploy(r: &mut ApiRecord, now: i64) {
    let names: Vec<String> = r
        .stages
        .iter()
        .filter(|(_, s)| s["AutoDeploy"] == true)
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return;
    }
    let d = deploy(r, now, true);
    let id = d["DeploymentId"].as_str().unwrap_or_default().to_string();
    r.deployments.insert(id.clone(), d);
    for n in names {
        if let Some(s) = r.stages.get_mut(&n) {
            s["DeploymentId"] = json!(id);
            s["LastDeploymentStatusMessage"] = json!(format!(
                "Successfully deployed stage with deployment ID '{id}'"
            ));
        }
    }
    prune(r);
}

/// Drops automatic deployments no stage serves any more (each change makes one).
fn prune(r: &mut ApiRecord) {
    let used: std::collections::BTreeSet<String> = r
        .stages
        .values()
        .filter_map(|s| s["DeploymentId"].as_str().map(String::from))
        .collect();
    let stale: Vec<String> = r
        .deployments
        .iter()
        .filter(|(id, d)| d["AutoDeployed"] == true && !used.contains(*id))
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        r.deployments.remove(&id);
        r.frozen.remove(&id);
    }
}

fn check_target(r: &ApiRecord, route: &Value) -> Result<(), AwsError> {
    if let Some(t) = route.get("Target").and_then(Value::as_str) {
        let iid = t.strip_prefix("integrations/").unwrap_or_default();
        if !r.live.integrations.contains_key(iid) {
            return Err(bad_request(format!(
                "Invalid target {t}: the integration does not exist."
            )));
        }
    }
    if route["AuthorizationType"] == "CUSTOM" || route["AuthorizationType"] == "JWT" {
        let aid = str_of(route, "AuthorizerId");
        if !r.live.authorizers.contains_key(aid) {
            return Err(bad_request(format!(
                "Invalid authorizer identifier specified {aid}"
            )));
        }
    }
    Ok(())
}

async fn create_sub(
    gw: &ApiGateway,
    ctx: &RequestContext,
    kind: Kind,
    input: Value,
) -> Result<Value, AwsError> {
    let now = gw.clock.now_ms();
    change(gw, ctx, &input.clone(), move |r, _| {
        let value = match kind {
            Kind::Route => {
                let route = new_route(input)?;
                let key = str_of(&route, "RouteKey");
                if r.live.routes.values().any(|x| x["RouteKey"] == key) {
                    return Err(conflict(format!(
                        "Unable to create Route. Route key {key} already exists for this API"
                    )));
                }
                check_target(r, &route)?;
                route
            }
            Kind::Integration => new_integration(input)?,
            Kind::Authorizer => new_authorizer(input)?,
        };
        let id = str_of(&value, kind.id_member()).to_string();
        kind.map(&mut r.live).insert(id, value.clone());
        auto_deploy(r, now);
        Ok(value)
    })
    .await
}

fn sub_missing(kind: Kind, id: &str) -> AwsError {
    not_found(format!(
        "Invalid {} identifier specified {id}",
        kind.label()
    ))
}

fn get_sub(
    gw: &ApiGateway,
    ctx: &RequestContext,
    kind: Kind,
    input: &Value,
) -> Result<Value, AwsError> {
    read(gw, ctx, input, |r| {
        let id = str_of(input, kind.id_member());
        let mut live = r.live.clone();
        kind.map(&mut live)
            .get(id)
            .cloned()
            .ok_or_else(|| sub_missing(kind, id))
    })
}

fn list_sub(
    gw: &ApiGateway,
    ctx: &RequestContext,
    kind: Kind,
    input: &Value,
) -> Result<Value, AwsError> {
    read(gw, ctx, input, |r| {
        let mut live = r.live.clone();
        let items: Vec<Value> = kind.map(&mut live).values().cloned().collect();
        Ok(json!({ "Items": items }))
    })
}

async fn update_sub(
    gw: &ApiGateway,
    ctx: &RequestContext,
    kind: Kind,
    input: Value,
) -> Result<Value, AwsError> {
    let now = gw.clock.now_ms();
    change(gw, ctx, &input.clone(), move |r, _| {
        let id = str_of(&input, kind.id_member()).to_string();
        let mut value = kind
            .map(&mut r.live)
            .get(&id)
            .cloned()
            .ok_or_else(|| sub_missing(kind, &id))?;
        merge(&mut value, &input, &["ApiId"]);
        if kind == Kind::Route {
            check_route_key(str_of(&value, "RouteKey"))?;
            check_target(r, &value)?;
        }
        kind.map(&mut r.live).insert(id, value.clone());
        auto_deploy(r, now);
        Ok(value)
    })
    .await
}

async fn delete_sub(
    gw: &ApiGateway,
    ctx: &RequestContext,
    kind: Kind,
    input: &Value,
) -> Result<Value, AwsError> {
    let now = gw.clock.now_ms();
    change(gw, ctx, input, |r, _| {
        let id = str_of(input, kind.id_member()).to_string();
        if kind == Kind::Integration {
            let target = format!("integrations/{id}");
            if r.live
                .routes
                .values()
                .any(|x| x["Target"] == target.as_str())
            {
                return Err(conflict(format!(
                    "Unable to delete integration {id}: routes still target it."
                )));
            }
        }
        kind.map(&mut r.live)
            .remove(&id)
            .ok_or_else(|| sub_missing(kind, &id))?;
        auto_deploy(r, now);
        Ok(json!({}))
    })
    .await
}

async fn create_stage(
    gw: &ApiGateway,
    ctx: &RequestContext,
    input: Value,
) -> Result<Value, AwsError> {
    let now = gw.clock.now_ms();
    change(gw, ctx, &input.clone(), move |r, _| {
        let name = str_of(&input, "StageName").to_string();
        if r.stages.contains_key(&name) {
            return Err(conflict(format!("Stage {name} already exists")));
        }
        if let Some(d) = input.get("DeploymentId").and_then(Value::as_str)
            && !r.deployments.contains_key(d)
        {
            return Err(bad_request(format!(
                "Invalid deployment identifier specified {d}"
            )));
        }
        let stage = new_stage(input, now);
        let auto = stage["AutoDeploy"] == true;
        r.stages.insert(name.clone(), stage);
        if auto {
            auto_deploy(r, now);
        }
        Ok(r.stages[&name].clone())
    })
    .await
}
