//! Functions: create, read, list, update, delete; reserved concurrency, account settings, tags
//! and resource policies; and the `FunctionConfiguration` shape AWS returns.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tsumiki_compute::{RuntimeKind, runtime_kind};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::errors::{conflict, function_not_found, invalid, not_found, precondition, validation};
use crate::names::{self, FunctionRef};
use crate::state::{self, Config, Function, LayerRef, NS_CODE};
use crate::{Lambda, MIN_UNRESERVED, str_of};

/// AWS: environment variables of a function may take 4 KB in all.
const MAX_ENV_BYTES: usize = 4096;
const MAX_LAYERS: usize = 5;
/// Variables Lambda sets itself and will not let a function override.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];
/// Runtimes AWS no longer lets anyone create or update functions with.
const DEPRECATED: &[&str] = &[
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "nodejs",
    "nodejs4.3",
    "nodejs4.3-edge",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "provided",
    "go1.x",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "java8",
    "ruby2.5",
    "ruby2.7",
];

/// `2019-08-22T18:39:41.154+0000`, Lambda's `LastModified` format.
pub(crate) fn timestamp(ms: i64) -> String {
    let iso = tsumiki_core::clock::iso8601_ms(ms);
    format!("{}+0000", iso.trim_end_matches('Z'))
}

fn revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `FunctionConfiguration` AWS returns for one version.
pub(crate) fn render(f: &Function, c: &Config) -> Value {
    let arn = if c.version == "$LATEST" {
        f.arn.clone()
    } else {
        format!("{}:{}", f.arn, c.version)
    };
    let mut out = json!({
        "FunctionName": f.name,
        "FunctionArn": arn,
        "Runtime": c.runtime,
        "Role": c.role,
        "Handler": c.handler,
        "CodeSize": c.code_size,
        "Description": c.description,
        "Timeout": c.timeout_s,
        "MemorySize": c.memory_mb,
        "LastModified": c.last_modified,
        "CodeSha256": c.code_sha256,
        "Version": c.version,
        "TracingConfig": {"Mode": c.tracing_mode},
        "RevisionId": c.revision_id,
        "State": c.state,
        "LastUpdateStatus": c.last_update_status,
        "PackageType": "Zip",
        "Architectures": c.architectures,
        "EphemeralStorage": {"Size": c.ephemeral_mb},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": c.logging.clone().unwrap_or_else(|| json!({
            "LogFormat": "Text",
            "LogGroup": format!("/aws/lambda/{}", f.name),
        })),
    });
    let obj = out.as_object_mut().expect("object literal");
    if c.state == "Pending" {
        obj.insert(
            "StateReason".into(),
            json!("The function is being created."),
        );
        obj.insert("StateReasonCode".into(), json!("Creating"));
    }
    if c.last_update_status == "InProgress" {
        obj.insert(
            "LastUpdateStatusReason".into(),
            json!("The function is being created."),
        );
        obj.insert("LastUpdateStatusReasonCode".into(), json!("Creating"));
    }
    if let Some(vars) = &c.environment {
        obj.insert("Environment".into(), json!({"Variables": vars}));
    }
    if !c.layers.is_empty() {
        let layers: Vec<Value> = c
            .layers
            .iter()
            .map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size}))
            .collect();
        obj.insert("Layers".into(), Value::Array(layers));
    }
    if let Some(target) = &c.dead_letter_target {
        obj.insert("DeadLetterConfig".into(), json!({"TargetArn": target}));
    }
    if let Some(kms) = &c.kms_key_arn {
        obj.insert("KMSKeyArn".into(), json!(kms));
    }
    out
}

/// Checks and normalises the configuration members shared by create and update.
struct Settings<'a> {
    runtime: Option<&'a str>,
    handler: Option<&'a str>,
    role: Option<&'a str>,
    memory: Option<u32>,
    timeout: Option<u32>,
    ephemeral: Option<u32>,
    environment: Option<BTreeMap<String, String>>,
    layers: Option<Vec<String>>,
}

fn settings(input: &Value) -> Result<Settings<'_>, AwsError> {
    let memory = input.get("MemorySize").and_then(Value::as_u64);
    if let Some(m) = memory
        && m > 10_240
    {
        return Err(invalid(
            "'MemorySize' value failed to satisfy constraint: Member must have value less than or equal to 10240",
        ));
    }
    let timeout = input.get("Timeout").and_then(Value::as_u64);
    if let Some(t) = timeout
        && t > 900
    {
        return Err(validation(
            "timeout",
            &t.to_string(),
            "Member must have value less than or equal to 900",
        ));
    }
    if let Some(role) = str_of(input, "Role")
        && !valid_role(role)
    {
        return Err(validation(
            "role",
            role,
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ));
    }
    if let Some(runtime) = str_of(input, "Runtime") {
        check_runtime(runtime)?;
    }
    let environment = match input.get("Environment") {
        Some(env) => {
            let vars: BTreeMap<String, String> = env
                .get("Variables")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            check_environment(&vars)?;
            Some(vars)
        }
        None => None,
    };
    let layers = input.get("Layers").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    });
    if let Some(l) = &layers
        && l.len() > MAX_LAYERS
    {
        return Err(invalid(format!(
            "Cannot reference more than {MAX_LAYERS} layers."
        )));
    }
    Ok(Settings {
        runtime: str_of(input, "Runtime"),
        handler: str_of(input, "Handler"),
        role: str_of(input, "Role"),
        memory: memory.map(|m| m as u32),
        timeout: timeout.map(|t| t as u32),
        ephemeral: input
            .pointer("/EphemeralStorage/Size")
            .and_then(Value::as_u64)
            .map(|s| s as u32),
        environment,
        layers,
    })
}

fn valid_role(role: &str) -> bool {
    let Some(rest) = role.strip_prefix("arn:") else {
        return false;
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    matches!(parts.as_slice(), [partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.starts_with("role")
            && resource.len() > 5)
}

fn check_runtime(runtime: &str) -> Result<(), AwsError> {
    if DEPRECATED.contains(&runtime) {
        return Err(invalid(format!(
            "The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions."
        )));
    }
    if runtime_kind(runtime).is_none() {
        return Err(invalid(format!(
            "The runtime parameter of {runtime} is not supported by tsumiki. It runs provided.al2, provided.al2023, python3.9 to python3.14 and nodejs18.x to nodejs24.x."
        )));
    }
    Ok(())
}

fn check_environment(vars: &BTreeMap<String, String>) -> Result<(), AwsError> {
    let reserved: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    for key in vars.keys() {
        let mut chars = key.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && key.len() >= 2
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(validation(
                "environment.variables",
                key,
                "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+",
            ));
        }
    }
    let json = serde_json::to_string(vars).unwrap_or_default();
    if json.len() > MAX_ENV_BYTES {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {json}"
        )));
    }
    Ok(())
}

impl Lambda {
    /// The function `r.name` in the caller's account and region, or AWS's not-found error.
    pub(crate) fn with_function<T>(
        &self,
        ctx: &RequestContext,
        r: &FunctionRef,
        f: impl FnOnce(&Function) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let inner = self.inner.lock();
        let key = state::key(&ctx.account, &ctx.region, &r.name);
        let Some(function) = inner.functions.get(&key) else {
            return Err(function_not_found(&names::qualified(
                &names::function_arn(ctx, &r.name),
                r.qualifier.as_deref(),
            )));
        };
        f(function)
    }

    /// Applies `change` to a copy of the function, records it durably, then publishes it.
    pub(crate) async fn update_function<T>(
        &self,
        ctx: &RequestContext,
        r: &FunctionRef,
        change: impl FnOnce(&mut Function, &mut Batch) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let (result, commit) = {
            let mut inner = self.inner.lock();
            let key = state::key(&ctx.account, &ctx.region, &r.name);
            let Some(function) = inner.functions.get_mut(&key) else {
                return Err(function_not_found(&names::qualified(
                    &names::function_arn(ctx, &r.name),
                    r.qualifier.as_deref(),
                )));
            };
            let mut copy = function.clone();
            let mut batch = Batch::new();
            let result = change(&mut copy, &mut batch)?;
            copy.put(&mut batch);
            *function = copy;
            // The commit is queued under the lock, so writes reach the store in the order the
            // changes were made.
            (result, self.store.commit(batch))
        };
        commit.await.map_err(state::store_error)?;
        Ok(result)
    }

    fn resolve_layers(
        &self,
        ctx: &RequestContext,
        arns: &[String],
    ) -> Result<Vec<LayerRef>, AwsError> {
        let inner = self.inner.lock();
        arns.iter()
            .map(|arn| {
                let found = arn.rsplit_once(':').and_then(|(layer_arn, v)| {
                    let version: u64 = v.parse().ok()?;
                    let layer = inner.layers.values().find(|l| l.arn == layer_arn)?;
                    let lv = layer.versions.get(&version)?;
                    Some(LayerRef {
                        arn: arn.clone(),
                        code_size: lv.code_size,
                        code_id: lv.code_id.clone(),
                    })
                });
                let _ = ctx;
                found.ok_or_else(|| invalid(format!("Layer version {arn} does not exist.")))
            })
            .collect()
    }

    pub(crate) async fn create_function(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let name = str_of(&input, "FunctionName").unwrap_or_default();
        let r = names::parse(ctx, name, None)?;
        if !names::valid_name(&r.name) || r.qualifier.is_some() {
            return Err(validation(
                "functionName",
                name,
                "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)",
            ));
        }
        if str_of(&input, "PackageType") == Some("Image") {
            return Err(invalid(
                "tsumiki runs .zip packages only; PackageType Image needs a container engine.",
            ));
        }
        let s = settings(&input)?;
        let runtime = s
            .runtime
            .ok_or_else(|| invalid("Runtime and Handler are mandatory parameters for functions created with deployment packages."))?;
        let handler = s.handler.unwrap_or_default();
        if handler.is_empty() && runtime_kind(runtime) != Some(RuntimeKind::Provided) {
            return Err(invalid(
                "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
            ));
        }
        let code = input.get("Code").cloned().unwrap_or(Value::Null);
        if code.get("ImageUri").is_some() {
            return Err(invalid(
                "tsumiki runs .zip packages only; ImageUri needs a container engine.",
            ));
        }
        let package = self.package_of(ctx, &code, "function code").await?;
        let layers = self.resolve_layers(ctx, s.layers.as_deref().unwrap_or_default())?;
        let layers_size: u64 = layers.iter().map(|l| l.code_size).sum();
        if package.unzipped + layers_size > crate::code::MAX_UNZIPPED {
            return Err(invalid(format!(
                "Function code combined with layers exceeds the maximum allowed size of {} bytes.",
                crate::code::MAX_UNZIPPED
            )));
        }
        let now = self.clock.now_ms();
        let config = Config {
            version: "$LATEST".into(),
            description: str_of(&input, "Description").unwrap_or_default().into(),
            runtime: runtime.into(),
            handler: handler.into(),
            role: s.role.unwrap_or_default().into(),
            memory_mb: s.memory.unwrap_or(128),
            timeout_s: s.timeout.unwrap_or(3),
            ephemeral_mb: s.ephemeral.unwrap_or(512),
            environment: s.environment,
            code_sha256: package.sha256.clone(),
            code_id: package.id.clone(),
            code_size: package.bytes.len() as u64,
            layers,
            architectures: input
                .get("Architectures")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_else(|| vec!["x86_64".into()]),
            dead_letter_target: input
                .pointer("/DeadLetterConfig/TargetArn")
                .and_then(Value::as_str)
                .map(String::from),
            tracing_mode: input
                .pointer("/TracingConfig/Mode")
                .and_then(Value::as_str)
                .unwrap_or("PassThrough")
                .into(),
            kms_key_arn: str_of(&input, "KMSKeyArn").map(String::from),
            logging: input.get("LoggingConfig").cloned().map(|mut l| {
                if l.get("LogGroup").is_none() {
                    l["LogGroup"] = json!(format!("/aws/lambda/{}", r.name));
                }
                if l.get("LogFormat").is_none() {
                    l["LogFormat"] = json!("Text");
                }
                l
            }),
            last_modified: timestamp(now),
            revision_id: revision(),
            state: "Pending".into(),
            last_update_status: "InProgress".into(),
        };
        let function = Function {
            account: ctx.account.clone(),
            region: ctx.region.clone(),
            name: r.name.clone(),
            arn: names::function_arn(ctx, &r.name),
            latest: config,
            versions: BTreeMap::new(),
            last_version: 0,
            aliases: BTreeMap::new(),
            reserved_concurrency: None,
            tags: input
                .get("Tags")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into()))
                        .collect()
                })
                .unwrap_or_default(),
            policy: Vec::new(),
            policy_revision: revision(),
            event_invoke: BTreeMap::new(),
            urls: BTreeMap::new(),
        };
        let commit = {
            let mut inner = self.inner.lock();
            let key = function.key();
            if inner.functions.contains_key(&key) {
                return Err(conflict(format!("Function already exist: {}", r.name)));
            }
            let mut batch = Batch::new();
            batch.put(NS_CODE, package.id.clone(), package.bytes);
            function.put(&mut batch);
            inner.functions.insert(key, function.clone());
            self.store.commit(batch)
        };
        commit.await.map_err(state::store_error)?;
        let mut response = render(&function, &function.latest);
        self.activate(ctx, &r.name).await;
        if input.get("Publish").and_then(Value::as_bool) == Some(true) {
            response = self
                .publish_version(ctx, json!({"FunctionName": r.name}))
                .await?;
        }
        Ok(response)
    }

    /// Finishes creating or updating: unpacks the code and checks the runtime can start,
    /// then moves the function to `Active` (or `Failed`, saying why) as AWS does.
    pub(crate) async fn activate(&self, ctx: &RequestContext, name: &str) {
        let r = FunctionRef {
            name: name.to_string(),
            qualifier: None,
        };
        let Ok((code_id, layer_ids, runtime)) = self.with_function(ctx, &r, |f| {
            Ok((
                f.latest.code_id.clone(),
                f.latest
                    .layers
                    .iter()
                    .map(|l| l.code_id.clone())
                    .collect::<Vec<_>>(),
                f.latest.runtime.clone(),
            ))
        }) else {
            return;
        };
        let mut failure = None;
        for id in std::iter::once(&code_id).chain(layer_ids.iter()) {
            if let Err(e) = self.code.unpacked(id).await {
                failure = Some(e.message);
            }
        }
        if failure.is_none()
            && let Err(e) = self.compute.check_runtime(&runtime).await
        {
            failure = Some(e);
        }
        let result = self
            .update_function(ctx, &r, |f, _| {
                if f.latest.code_id == code_id {
                    match &failure {
                        None => f.latest.state = "Active".into(),
                        Some(reason) => {
                            tracing::warn!(function = %f.name, %reason, "function failed to activate");
                            f.latest.state = "Failed".into();
                        }
                    }
                    f.latest.last_update_status = if failure.is_none() {
                        "Successful".into()
                    } else {
                        "Failed".into()
                    };
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e.message, "activation not recorded");
        }
    }

    pub(crate) fn get_function(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            let config = version_config(f, r.qualifier.as_deref())?;
            let mut out = json!({
                "Configuration": render(f, config),
                "Code": {
                    "RepositoryType": "S3",
                    "Location": self.code_location(&ctx.base_url, &config.code_id, &f.name),
                },
                "Tags": f.tags,
            });
            if let Some(n) = f.reserved_concurrency {
                out["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
            }
            Ok(out)
        })
    }

    pub(crate) fn get_function_configuration(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            Ok(render(f, version_config(f, r.qualifier.as_deref())?))
        })
    }

    pub(crate) fn list_functions(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let all_versions = str_of(&input, "FunctionVersion") == Some("ALL");
        let max = input
            .get("MaxItems")
            .and_then(Value::as_u64)
            .unwrap_or(50)
            .min(50) as usize;
        let marker = str_of(&input, "Marker").unwrap_or_default();
        let inner = self.inner.lock();
        let mut items: Vec<(String, Value)> = Vec::new();
        for f in inner
            .functions
            .values()
            .filter(|f| f.account == ctx.account && f.region == ctx.region)
        {
            items.push((format!("{}:$LATEST", f.name), render(f, &f.latest)));
            if all_versions {
                for (n, c) in &f.versions {
                    items.push((format!("{}:{n:020}", f.name), render(f, c)));
                }
            }
        }
        let page: Vec<(String, Value)> = items
            .into_iter()
            .filter(|(k, _)| marker.is_empty() || k.as_str() > marker)
            .take(max + 1)
            .collect();
        let mut out = json!({});
        let more = page.len() > max;
        let functions: Vec<Value> = page.iter().take(max).map(|(_, v)| v.clone()).collect();
        if more && let Some((k, _)) = page.get(max - 1) {
            out["NextMarker"] = json!(k);
        }
        out["Functions"] = Value::Array(functions);
        Ok(out)
    }

    pub(crate) async fn update_function_code(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let package = self.package_of(ctx, &input, "function code").await?;
        let dry_run = input.get("DryRun").and_then(Value::as_bool) == Some(true);
        let expected = str_of(&input, "RevisionId").map(String::from);
        let now = self.clock.now_ms();
        let out = self
            .update_function(ctx, &r, |f, batch| {
                check_revision(f, expected.as_deref())?;
                if dry_run {
                    let mut c = f.latest.clone();
                    c.code_sha256 = package.sha256.clone();
                    c.code_size = package.bytes.len() as u64;
                    return Ok(render(f, &c));
                }
                batch.put(NS_CODE, package.id.clone(), package.bytes.clone());
                let c = &mut f.latest;
                c.code_sha256 = package.sha256.clone();
                c.code_id = package.id.clone();
                c.code_size = package.bytes.len() as u64;
                c.last_modified = timestamp(now);
                c.revision_id = revision();
                c.last_update_status = "InProgress".into();
                if let Some(arch) = input.get("Architectures").and_then(Value::as_array) {
                    c.architectures = arch
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect();
                }
                Ok(render(f, &f.latest))
            })
            .await?;
        if dry_run {
            return Ok(out);
        }
        self.after_change(ctx, &r.name).await;
        if input.get("Publish").and_then(Value::as_bool) == Some(true) {
            return self
                .publish_version(ctx, json!({"FunctionName": r.name}))
                .await;
        }
        Ok(out)
    }

    pub(crate) async fn update_function_configuration(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let s = settings(&input)?;
        let layers = match &s.layers {
            Some(arns) => Some(self.resolve_layers(ctx, arns)?),
            None => None,
        };
        let expected = str_of(&input, "RevisionId").map(String::from);
        let now = self.clock.now_ms();
        let out = self
            .update_function(ctx, &r, |f, _| {
                check_revision(f, expected.as_deref())?;
                let name = f.name.clone();
                let c = &mut f.latest;
                if let Some(v) = s.runtime {
                    c.runtime = v.into();
                }
                if let Some(v) = s.handler {
                    c.handler = v.into();
                }
                if let Some(v) = s.role {
                    c.role = v.into();
                }
                if let Some(v) = s.memory {
                    c.memory_mb = v;
                }
                if let Some(v) = s.timeout {
                    c.timeout_s = v;
                }
                if let Some(v) = s.ephemeral {
                    c.ephemeral_mb = v;
                }
                if let Some(v) = s.environment {
                    c.environment = Some(v);
                }
                if let Some(v) = layers {
                    c.layers = v;
                }
                if let Some(v) = str_of(&input, "Description") {
                    c.description = v.into();
                }
                if let Some(v) = input.pointer("/TracingConfig/Mode").and_then(Value::as_str) {
                    c.tracing_mode = v.into();
                }
                if let Some(v) = input.get("DeadLetterConfig") {
                    c.dead_letter_target = v
                        .get("TargetArn")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .map(String::from);
                }
                if let Some(mut l) = input.get("LoggingConfig").cloned() {
                    if l.get("LogGroup").is_none() {
                        l["LogGroup"] = json!(format!("/aws/lambda/{name}"));
                    }
                    if l.get("LogFormat").is_none() {
                        l["LogFormat"] = json!("Text");
                    }
                    c.logging = Some(l);
                }
                c.last_modified = timestamp(now);
                c.revision_id = revision();
                c.last_update_status = "InProgress".into();
                Ok(render(f, &f.latest))
            })
            .await?;
        self.after_change(ctx, &r.name).await;
        Ok(out)
    }

    /// After `$LATEST` changed: its warm environments are stale.
    async fn after_change(&self, ctx: &RequestContext, name: &str) {
        self.compute
            .retire(&names::function_arn(ctx, name), Some("$LATEST"));
        self.activate(ctx, name).await;
    }

    pub(crate) async fn delete_function(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let arn = names::function_arn(ctx, &r.name);
        match r.qualifier.as_deref() {
            None => {
                let commit = {
                    let mut inner = self.inner.lock();
                    let key = state::key(&ctx.account, &ctx.region, &r.name);
                    if inner.functions.remove(&key).is_none() {
                        return Err(function_not_found(&arn));
                    }
                    let mut batch = Batch::new();
                    batch.delete(state::NS_FUNCTION, key);
                    self.store.commit(batch)
                };
                commit.await.map_err(state::store_error)?;
                self.compute.retire(&arn, None);
            }
            Some("$LATEST") => {
                return Err(invalid(
                    "$LATEST version cannot be deleted without deleting the function.",
                ));
            }
            Some(q) => {
                let q = q.to_string();
                self.update_function(ctx, &r, |f, _| {
                    let n: u64 = q
                        .parse()
                        .map_err(|_| invalid("Deletion of aliases is not supported. Use DeleteAlias."))?;
                    if !f.versions.contains_key(&n) {
                        return Err(function_not_found(&format!("{}:{q}", f.arn)));
                    }
                    let users: Vec<&str> = f
                        .aliases
                        .values()
                        .filter(|a| a.function_version == q || a.weights.contains_key(&q))
                        .map(|a| a.name.as_str())
                        .collect();
                    if !users.is_empty() {
                        return Err(conflict(format!(
                            "Unable to delete version because the following aliases reference it: [{}]",
                            users.join(", ")
                        )));
                    }
                    f.versions.remove(&n);
                    Ok(())
                })
                .await?;
                self.compute.retire(&arn, Some(&q));
            }
        }
        Ok(json!({"StatusCode": 204}))
    }

    pub(crate) async fn put_concurrency(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        let n = input
            .get("ReservedConcurrentExecutions")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        {
            let inner = self.inner.lock();
            let key = state::key(&ctx.account, &ctx.region, &r.name);
            let current = inner
                .functions
                .get(&key)
                .and_then(|f| f.reserved_concurrency)
                .unwrap_or(0);
            let pool = Lambda::unreserved_pool(&inner, &ctx.account, &ctx.region) + current;
            if pool < n || pool - n < MIN_UNRESERVED {
                return Err(invalid(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}]."
                )));
            }
        }
        self.update_function(ctx, &r, |f, _| {
            f.reserved_concurrency = Some(n);
            Ok(())
        })
        .await?;
        Ok(json!({"ReservedConcurrentExecutions": n}))
    }

    pub(crate) fn get_concurrency(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        self.with_function(ctx, &r, |f| {
            Ok(match f.reserved_concurrency {
                Some(n) => json!({"ReservedConcurrentExecutions": n}),
                None => json!({}),
            })
        })
    }

    pub(crate) async fn delete_concurrency(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input_unqualified(ctx, &input)?;
        self.update_function(ctx, &r, |f, _| {
            f.reserved_concurrency = None;
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) fn account_settings(&self, ctx: &RequestContext) -> Value {
        let inner = self.inner.lock();
        let mine = || {
            inner
                .functions
                .values()
                .filter(|f| f.account == ctx.account && f.region == ctx.region)
        };
        let total: u64 = mine()
            .map(|f| f.latest.code_size + f.versions.values().map(|c| c.code_size).sum::<u64>())
            .sum();
        json!({
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800u64,
                "CodeSizeUnzipped": crate::code::MAX_UNZIPPED,
                "CodeSizeZipped": crate::code::MAX_ZIPPED,
                "ConcurrentExecutions": crate::ACCOUNT_CONCURRENCY,
                "UnreservedConcurrentExecutions":
                    Lambda::unreserved_pool(&inner, &ctx.account, &ctx.region),
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": mine().count()},
        })
    }

    fn function_from_arn(ctx: &RequestContext, arn: &str) -> Result<FunctionRef, AwsError> {
        let r = names::parse(ctx, arn, None)?;
        Ok(FunctionRef {
            name: r.name,
            qualifier: None,
        })
    }

    pub(crate) async fn tag_resource(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = Lambda::function_from_arn(ctx, str_of(&input, "Resource").unwrap_or_default())?;
        let tags: Map<String, Value> = input
            .get("Tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        self.update_function(ctx, &r, |f, _| {
            for (k, v) in tags {
                f.tags.insert(k, v.as_str().unwrap_or_default().to_string());
            }
            if f.tags.len() > 50 {
                return Err(invalid("Number of tags exceeds resource tag limit (50)."));
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) async fn untag_resource(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = Lambda::function_from_arn(ctx, str_of(&input, "Resource").unwrap_or_default())?;
        let keys: Vec<String> = input
            .get("TagKeys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        self.update_function(ctx, &r, |f, _| {
            for k in &keys {
                f.tags.remove(k);
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) fn list_tags(&self, ctx: &RequestContext, input: Value) -> Result<Value, AwsError> {
        let r = Lambda::function_from_arn(ctx, str_of(&input, "Resource").unwrap_or_default())?;
        self.with_function(ctx, &r, |f| Ok(json!({"Tags": f.tags})))
    }

    pub(crate) async fn add_permission(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let sid = str_of(&input, "StatementId")
            .unwrap_or_default()
            .to_string();
        let expected = str_of(&input, "RevisionId").map(String::from);
        let principal = str_of(&input, "Principal").unwrap_or_default();
        let principal = if principal.ends_with(".amazonaws.com") {
            json!({"Service": principal})
        } else if principal == "*" {
            json!("*")
        } else {
            let account = principal
                .strip_prefix("arn:aws:iam::")
                .map(|r| r.split(':').next().unwrap_or_default())
                .unwrap_or(principal);
            json!({"AWS": format!("arn:aws:iam::{account}:root")})
        };
        let resource = names::qualified(&names::function_arn(ctx, &r.name), r.qualifier.as_deref());
        let mut statement = json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": principal,
            "Action": str_of(&input, "Action").unwrap_or_default(),
            "Resource": resource,
        });
        let mut condition = Map::new();
        if let Some(arn) = str_of(&input, "SourceArn") {
            condition.insert("ArnLike".into(), json!({"AWS:SourceArn": arn}));
        }
        if let Some(account) = str_of(&input, "SourceAccount") {
            condition.insert("StringEquals".into(), json!({"AWS:SourceAccount": account}));
        }
        if !condition.is_empty() {
            statement["Condition"] = Value::Object(condition);
        }
        let text = statement.to_string();
        self.update_function(ctx, &r, |f, _| {
            if let Some(e) = &expected
                && *e != f.policy_revision
            {
                return Err(precondition(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id",
                ));
            }
            // Each version and alias has a policy of its own: a statement id is unique in one.
            if f
                .policy
                .iter()
                .any(|s| s["Sid"] == json!(sid) && s["Resource"] == statement["Resource"])
            {
                return Err(conflict(format!(
                    "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
                )));
            }
            f.policy.push(statement);
            f.policy_revision = revision();
            Ok(())
        })
        .await?;
        Ok(json!({"Statement": text}))
    }

    pub(crate) async fn remove_permission(
        &self,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let sid = str_of(&input, "StatementId")
            .unwrap_or_default()
            .to_string();
        let resource = json!(names::qualified(
            &names::function_arn(ctx, &r.name),
            r.qualifier.as_deref()
        ));
        self.update_function(ctx, &r, |f, _| {
            let before = f.policy.len();
            f.policy
                .retain(|s| s["Sid"] != json!(sid) || s["Resource"] != resource);
            if f.policy.len() == before {
                return Err(not_found(format!(
                    "Statement {sid} is not found in resource policy."
                )));
            }
            f.policy_revision = revision();
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) fn get_policy(&self, ctx: &RequestContext, input: Value) -> Result<Value, AwsError> {
        let r = names::of_input(ctx, &input)?;
        let resource = json!(names::qualified(
            &names::function_arn(ctx, &r.name),
            r.qualifier.as_deref()
        ));
        self.with_function(ctx, &r, |f| {
            // The policy of the version or alias asked for (or of the function itself).
            let statements: Vec<&Value> = f
                .policy
                .iter()
                .filter(|s| s["Resource"] == resource)
                .collect();
            if statements.is_empty() {
                return Err(not_found("The resource you requested does not exist."));
            }
            let policy = json!({
                "Version": "2012-10-17",
                "Id": "default",
                "Statement": statements,
            });
            Ok(json!({"Policy": policy.to_string(), "RevisionId": f.policy_revision}))
        })
    }
}

fn check_revision(f: &Function, expected: Option<&str>) -> Result<(), AwsError> {
    match expected {
        Some(e) if e != f.latest.revision_id => Err(precondition(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

/// The configuration a qualifier names: `$LATEST`, a version number or an alias.
pub(crate) fn version_config<'f>(
    f: &'f Function,
    qualifier: Option<&str>,
) -> Result<&'f Config, AwsError> {
    let version = match qualifier {
        None | Some("$LATEST") => return Ok(&f.latest),
        Some(q) => match f.aliases.get(q) {
            Some(alias) => alias.function_version.clone(),
            None => q.to_string(),
        },
    };
    if version == "$LATEST" {
        return Ok(&f.latest);
    }
    version
        .parse::<u64>()
        .ok()
        .and_then(|n| f.versions.get(&n))
        .ok_or_else(|| function_not_found(&format!("{}:{}", f.arn, qualifier.unwrap_or_default())))
}
