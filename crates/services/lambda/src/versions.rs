//! Published versions (frozen copies of `$LATEST`) and aliases (named pointers to a version,
//! optionally splitting traffic with a second one).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};

use crate::errors::{conflict, function_not_found, invalid, not_found, precondition};
use crate::functions::{render, timestamp};
use crate::names;
use crate::state::{Alias, Function};
use crate::{Lambda, str_of};

fn alias_json(f: &Function, a: &Alias) -> Value {
    let mut out = json!({
        "AliasArn": format!("{}:{}", f.arn, a.name),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if !a.weights.is_empty() {
        out["RoutingConfig"] = json!({"AdditionalVersionWeights": a.weights});
    }
    out
}

fn weights(input: &Value) -> Result<BTreeMap<String, f64>, AwsError> {
    let w: BTreeMap<String, f64> = input
        .pointer("/RoutingConfig/AdditionalVersionWeights")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    if w.len() > 1 {
        return Err(invalid(
            "Number of items in AdditionalVersionWeights cannot be greater than 1",
        ));
    }
    Ok(w)
}

fn check_version(f: &Function, version: &str) -> Result<(), AwsError> {
    if version == "$LATEST" {
        return Ok(());
    }
    match version.parse::<u64>() {
        Ok(n) if f.versions.contains_key(&n) => Ok(()),
        _ => Err(function_not_found(&format!("{}:{version}", f.arn))),
    }
}

/// AWS splits an alias's traffic only between published versions.
fn check_routing(version: &str, weights: &BTreeMap<String, f64>) -> Result<(), AwsError> {
    if version == "$LATEST" && !weights.is_empty() {
        return Err(invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ));
    }
    Ok(())
}

impl Lambda {
    pub(crate) async fn publish_version(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let sha = str_of(&input, "CodeSha256").map(String::from);
        let revision = str_of(&input, "RevisionId").map(String::from);
        let description = str_of(&input, "Description").map(String::from);
        let now = self.clock.now_ms();
        self.update_function(ctx, &r, |f, _| {
            if let Some(sha) = &sha
                && *sha != f.latest.code_sha256
            {
                return Err(invalid(format!(
                    "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the current CodeSHA256.",
                    f.latest.code_sha256
                )));
            }
            if let Some(rev) = &revision
                && *rev != f.latest.revision_id
            {
                return Err(precondition(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                ));
            }
            // AWS publishes nothing new when neither code nor configuration changed since the
            // last version; it answers with that version.
            if let Some(last) = f.versions.values().next_back() {
                let mut probe = f.latest.clone();
                probe.version = last.version.clone();
                probe.last_modified = last.last_modified.clone();
                probe.revision_id = last.revision_id.clone();
                probe.description = last.description.clone();
                probe.state = last.state.clone();
                probe.last_update_status = last.last_update_status.clone();
                if serde_json::to_value(&probe).ok() == serde_json::to_value(last).ok() {
                    return Ok(render(f, last));
                }
            }
            f.last_version += 1;
            let mut config = f.latest.clone();
            config.version = f.last_version.to_string();
            config.last_modified = timestamp(now);
            config.revision_id = uuid::Uuid::new_v4().to_string();
            config.state = "Active".into();
            config.last_update_status = "Successful".into();
            if let Some(d) = &description {
                config.description = d.clone();
            }
            f.versions.insert(f.last_version, config.clone());
            // Publishing changes $LATEST's revision id too, as AWS does.
            f.latest.revision_id = uuid::Uuid::new_v4().to_string();
            Ok(render(f, &config))
        })
        .await
    }

    pub(crate) fn list_versions(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let max = input
            .get("MaxItems")
            .and_then(Value::as_u64)
            .unwrap_or(50)
            .min(50) as usize;
        let start: usize = str_of(&input, "Marker")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        self.with_function(ctx, &r, |f| {
            let all: Vec<Value> = std::iter::once(render(f, &f.latest))
                .chain(f.versions.values().map(|c| render(f, c)))
                .collect();
            let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
            let mut out = json!({"Versions": page});
            if start + max < all.len() {
                out["NextMarker"] = json!((start + max).to_string());
            }
            Ok(out)
        })
    }

    pub(crate) async fn create_alias(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let name = str_of(&input, "Name").unwrap_or_default().to_string();
        if name.is_empty()
            || name.bytes().all(|b| b.is_ascii_digit())
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(crate::errors::validation(
                "name",
                &name,
                "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
            ));
        }
        let version = str_of(&input, "FunctionVersion")
            .unwrap_or_default()
            .to_string();
        let w = weights(&input)?;
        let description = str_of(&input, "Description")
            .unwrap_or_default()
            .to_string();
        self.update_function(ctx, &r, |f, _| {
            if f.aliases.contains_key(&name) {
                return Err(conflict(format!("Alias already exists: {}:{name}", f.arn)));
            }
            check_version(f, &version)?;
            for v in w.keys() {
                check_version(f, v)?;
            }
            check_routing(&version, &w)?;
            let alias = Alias {
                name: name.clone(),
                function_version: version.clone(),
                description: description.clone(),
                weights: w.clone(),
                revision_id: uuid::Uuid::new_v4().to_string(),
            };
            let out = alias_json(f, &alias);
            f.aliases.insert(name.clone(), alias);
            Ok(out)
        })
        .await
    }

    pub(crate) fn get_alias(&self, ctx: &RequestContext, input: Value) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let name = str_of(&input, "Name").unwrap_or_default();
        self.with_function(ctx, &r, |f| {
            f.aliases
                .get(name)
                .map(|a| alias_json(f, a))
                .ok_or_else(|| not_found(format!("Cannot find alias arn: {}:{name}", f.arn)))
        })
    }

    pub(crate) async fn update_alias(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let name = str_of(&input, "Name").unwrap_or_default().to_string();
        let version = str_of(&input, "FunctionVersion").map(String::from);
        let description = str_of(&input, "Description").map(String::from);
        let routing = input.get("RoutingConfig").is_some();
        let w = weights(&input)?;
        let expected = str_of(&input, "RevisionId").map(String::from);
        self.update_function(ctx, &r, |f, _| {
            if let Some(v) = &version {
                check_version(f, v)?;
            }
            for v in w.keys() {
                check_version(f, v)?;
            }
            let arn = f.arn.clone();
            let alias = f
                .aliases
                .get_mut(&name)
                .ok_or_else(|| not_found(format!("Cannot find alias arn: {arn}:{name}")))?;
            if let Some(e) = &expected
                && *e != alias.revision_id
            {
                return Err(precondition(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                ));
            }
            check_routing(
                version.as_deref().unwrap_or(&alias.function_version),
                if routing { &w } else { &alias.weights },
            )?;
            if let Some(v) = version {
                alias.function_version = v;
            }
            if let Some(d) = description {
                alias.description = d;
            }
            if routing {
                alias.weights = w;
            }
            alias.revision_id = uuid::Uuid::new_v4().to_string();
            let alias = alias.clone();
            Ok(alias_json(f, &alias))
        })
        .await
    }

    pub(crate) async fn delete_alias(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let name = str_of(&input, "Name").unwrap_or_default().to_string();
        self.update_function(ctx, &r, |f, _| {
            // AWS answers 204 whether or not the alias existed.
            f.aliases.remove(&name);
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) fn list_aliases(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let version = str_of(&input, "FunctionVersion");
        self.with_function(ctx, &r, |f| {
            let aliases: Vec<Value> = f
                .aliases
                .values()
                .filter(|a| version.is_none_or(|v| a.function_version == v))
                .map(|a| alias_json(f, a))
                .collect();
            Ok(json!({"Aliases": aliases}))
        })
    }
}
