//! Layers: versioned zips that functions stack under their code (AWS unpacks them in `/opt`;
//! tsumiki unpacks each once and points the runtime's search paths at them, see compute).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::errors::{not_found, validation};
use crate::functions::timestamp;
use crate::state::{self, Layer, LayerVersion, NS_CODE};
use crate::{Lambda, str_of};

/// A layer version as AWS describes it; `location` (the package's URL) for the answers that
/// carry `Content`.
fn version_json(layer: &Layer, v: &LayerVersion, location: Option<String>) -> Value {
    let mut out = json!({
        "LayerArn": layer.arn,
        "LayerVersionArn": format!("{}:{}", layer.arn, v.version),
        "Description": v.description,
        "CreatedDate": v.created,
        "Version": v.version,
        "CompatibleRuntimes": v.compatible_runtimes,
        "CompatibleArchitectures": v.compatible_architectures,
    });
    if let Some(l) = &v.license {
        out["LicenseInfo"] = json!(l);
    }
    if let Some(location) = location {
        out["Content"] = json!({
            "Location": location,
            "CodeSha256": v.code_sha256,
            "CodeSize": v.code_size,
        });
    }
    out
}

fn layer_name(ctx: &RequestContext, raw: &str) -> Result<String, AwsError> {
    let name = match raw.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                [_, "lambda", region, account, "layer", name]
                    if *region == ctx.region && *account == ctx.account =>
                {
                    name.to_string()
                }
                _ => return Err(not_found("The resource you requested does not exist.")),
            }
        }
        None => raw.to_string(),
    };
    if name.is_empty()
        || name.len() > 140
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(validation(
            "layerName",
            raw,
            "Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
        ));
    }
    Ok(name)
}

fn strings(input: &Value, name: &str) -> Vec<String> {
    input
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Lambda {
    pub(crate) async fn publish_layer_version(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let name = layer_name(ctx, str_of(&input, "LayerName").unwrap_or_default())?;
        let content = input.get("Content").cloned().unwrap_or(Value::Null);
        let package = self.package_of(ctx, &content, "layer content").await?;
        let now = self.clock.now_ms();
        let (out, commit) = {
            let mut inner = self.inner.lock();
            let key = state::key(&ctx.account, &ctx.region, &name);
            let layer = inner.layers.entry(key).or_insert_with(|| Layer {
                account: ctx.account.clone(),
                region: ctx.region.clone(),
                name: name.clone(),
                arn: format!("arn:aws:lambda:{}:{}:layer:{name}", ctx.region, ctx.account),
                versions: BTreeMap::new(),
                last_version: 0,
            });
            layer.last_version += 1;
            let v = LayerVersion {
                version: layer.last_version,
                description: str_of(&input, "Description").unwrap_or_default().into(),
                created: timestamp(now),
                compatible_runtimes: strings(&input, "CompatibleRuntimes"),
                compatible_architectures: strings(&input, "CompatibleArchitectures"),
                license: str_of(&input, "LicenseInfo").map(String::from),
                code_sha256: package.sha256.clone(),
                code_id: package.id.clone(),
                code_size: package.bytes.len() as u64,
            };
            layer.versions.insert(v.version, v.clone());
            let mut batch = Batch::new();
            batch.put(NS_CODE, package.id.clone(), package.bytes);
            layer.put(&mut batch);
            let location =
                self.code_location(&ctx.base_url, &v.code_id, &format!("{name}-{}", v.version));
            (
                version_json(layer, &v, Some(location)),
                self.store.commit(batch),
            )
        };
        commit.await.map_err(state::store_error)?;
        Ok(out)
    }

    fn with_layer_version(
        &self,
        ctx: &RequestContext,
        name: &str,
        version: u64,
    ) -> Result<Value, AwsError> {
        let inner = self.inner.lock();
        inner
            .layers
            .get(&state::key(&ctx.account, &ctx.region, name))
            .and_then(|l| {
                let v = l.versions.get(&version)?;
                let file = format!("{}-{}", l.name, v.version);
                Some(version_json(
                    l,
                    v,
                    Some(self.code_location(&ctx.base_url, &v.code_id, &file)),
                ))
            })
            .ok_or_else(|| not_found("The resource you requested does not exist."))
    }

    pub(crate) fn get_layer_version(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let name = layer_name(ctx, str_of(&input, "LayerName").unwrap_or_default())?;
        let version = input
            .get("VersionNumber")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.with_layer_version(ctx, &name, version)
    }

    pub(crate) fn get_layer_version_by_arn(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let arn = str_of(&input, "Arn").unwrap_or_default();
        let (layer_arn, version) = arn
            .rsplit_once(':')
            .and_then(|(l, v)| Some((l, v.parse::<u64>().ok()?)))
            .ok_or_else(|| not_found("The resource you requested does not exist."))?;
        let name = layer_name(ctx, layer_arn)?;
        self.with_layer_version(ctx, &name, version)
    }

    pub(crate) fn list_layer_versions(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let name = layer_name(ctx, str_of(&input, "LayerName").unwrap_or_default())?;
        let runtime = str_of(&input, "CompatibleRuntime");
        let inner = self.inner.lock();
        let versions: Vec<Value> = inner
            .layers
            .get(&state::key(&ctx.account, &ctx.region, &name))
            .map(|l| {
                l.versions
                    .values()
                    .rev()
                    .filter(|v| {
                        runtime.is_none_or(|r| v.compatible_runtimes.iter().any(|c| c == r))
                    })
                    .map(|v| version_json(l, v, None))
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({"LayerVersions": versions}))
    }

    pub(crate) fn list_layers(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let runtime = str_of(&input, "CompatibleRuntime");
        let inner = self.inner.lock();
        let layers: Vec<Value> = inner
            .layers
            .values()
            .filter(|l| l.account == ctx.account && l.region == ctx.region)
            .filter_map(|l| {
                let latest = l.versions.values().rev().find(|v| {
                    runtime.is_none_or(|r| v.compatible_runtimes.iter().any(|c| c == r))
                })?;
                Some(json!({
                    "LayerName": l.name,
                    "LayerArn": l.arn,
                    "LatestMatchingVersion": version_json(l, latest, None),
                }))
            })
            .collect();
        Ok(json!({"Layers": layers}))
    }

    pub(crate) async fn delete_layer_version(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let name = layer_name(ctx, str_of(&input, "LayerName").unwrap_or_default())?;
        let version = input
            .get("VersionNumber")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let commit = {
            let mut inner = self.inner.lock();
            let key = state::key(&ctx.account, &ctx.region, &name);
            let Some(layer) = inner.layers.get_mut(&key) else {
                return Ok(json!({}));
            };
            layer.versions.remove(&version);
            let mut batch = Batch::new();
            layer.put(&mut batch);
            self.store.commit(batch)
        };
        commit.await.map_err(state::store_error)?;
        Ok(json!({}))
    }
}
