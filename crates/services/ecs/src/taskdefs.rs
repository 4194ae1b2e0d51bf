//! Task definitions: Register (revisions per family, Fargate's cpu/memory rules with AWS's
//! messages), Describe, List, ListFamilies, Deregister.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Scope, State, Tagged};
use crate::{Ecs, arn, client_error, page, scope, str_of};

/// Fargate's task sizes: CPU units and the memory (MiB) each allows.
pub(crate) fn fargate_allows(cpu: u64, memory: u64) -> bool {
    let gb = |n: u64| n * 1024;
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (gb(1)..=gb(4)).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (gb(2)..=gb(8)).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (gb(4)..=gb(16)).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (gb(8)..=gb(30)).contains(&memory) && memory.is_multiple_of(1024),
        8192 => (gb(16)..=gb(60)).contains(&memory) && memory.is_multiple_of(gb(4)),
        16384 => (gb(32)..=gb(120)).contains(&memory) && memory.is_multiple_of(gb(8)),
        _ => false,
    }
}

/// `1024`, `1 vCPU` or `0.25 vcpu` as CPU units.
pub(crate) fn cpu_units(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    match t.strip_suffix("vcpu") {
        Some(n) => n
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * 1024.0).round() as u64),
        None => t.parse().ok(),
    }
}

/// `2048` or `2 GB` as MiB.
pub(crate) fn memory_mib(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    match t.strip_suffix("gb") {
        Some(n) => n
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| (v * 1024.0).round() as u64),
        None => t.parse().ok(),
    }
}

/// Checks a definition as RegisterTaskDefinition does; answers the task-level cpu and memory.
fn check(input: &Value) -> Result<(Option<u64>, Option<u64>), AwsError> {
    let containers = input
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(client_error("Container list cannot be empty."));
    }
    let cpu = match str_of(input, "cpu") {
        Some(c) => {
            Some(cpu_units(c).ok_or_else(|| client_error("Invalid 'cpu' setting for task."))?)
        }
        None => None,
    };
    let memory = match str_of(input, "memory") {
        Some(m) => {
            Some(memory_mib(m).ok_or_else(|| client_error("Invalid 'memory' setting for task."))?)
        }
        None => None,
    };
    let fargate = input
        .get("requiresCompatibilities")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|x| x == "FARGATE"));
    if fargate {
        if str_of(input, "networkMode") != Some("awsvpc") {
            return Err(client_error(
                "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
            ));
        }
        let Some(cpu) = cpu else {
            return Err(client_error(
                "Fargate requires that 'cpu' be defined at the task level.",
            ));
        };
        let Some(memory) = memory else {
            return Err(client_error(
                "Fargate requires that 'memory' be defined at the task level.",
            ));
        };
        if !fargate_allows(cpu, memory) {
            return Err(client_error(format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
                 See the Amazon ECS documentation for the valid values."
            )));
        }
    }
    for c in &containers {
        let name = str_of(c, "name").unwrap_or_default();
        if name.is_empty() {
            return Err(client_error("Container.name should not be null or empty."));
        }
        if str_of(c, "image").is_none_or(str::is_empty) {
            return Err(client_error("Container.image should not be null or empty."));
        }
        if memory.is_none() && c.get("memory").is_none() && c.get("memoryReservation").is_none() {
            return Err(client_error(format!(
                "Invalid setting for container '{name}'. At least one of 'memory' or \
                 'memoryReservation' must be specified."
            )));
        }
        if let (Some(task), Some(own)) = (memory, c.get("memory").and_then(Value::as_u64))
            && own > task
        {
            return Err(client_error(format!(
                "The 'memory' setting for container '{name}' is greater than for the task."
            )));
        }
    }
    let mut names: Vec<&str> = containers
        .iter()
        .filter_map(|c| str_of(c, "name"))
        .collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(client_error("Duplicate container names are not allowed."));
    }
    check_dependencies(&containers)?;
    Ok((cpu, memory))
}

/// `dependsOn` as AWS documents it: the named container exists, COMPLETE and SUCCESS are not
/// set on an essential container, HEALTHY needs the container's `healthCheck`, and no cycle.
fn check_dependencies(containers: &[Value]) -> Result<(), AwsError> {
    let by_name = |n: &str| containers.iter().find(|c| str_of(c, "name") == Some(n));
    let deps = |c: &Value| -> Vec<(String, String)> {
        c.get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    str_of(d, "containerName").unwrap_or_default().to_string(),
                    str_of(d, "condition").unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    for c in containers {
        let name = str_of(c, "name").unwrap_or_default();
        for (dep, condition) in deps(c) {
            let Some(target) = by_name(&dep) else {
                return Err(client_error(format!(
                    "Container '{name}' depends on container '{dep}', which is not in the task \
                     definition."
                )));
            };
            if dep == name {
                return Err(client_error(format!(
                    "Container '{name}' cannot depend on itself."
                )));
            }
            let essential = target
                .get("essential")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            match condition.as_str() {
                "START" => {}
                "COMPLETE" | "SUCCESS" if essential => {
                    return Err(client_error(format!(
                        "Container '{name}' has a {condition} dependency on essential container \
                         '{dep}': {condition} can only be set on a non-essential container."
                    )));
                }
                "COMPLETE" | "SUCCESS" => {}
                "HEALTHY" if target.get("healthCheck").is_none() => {
                    return Err(client_error(format!(
                        "Container '{name}' has a HEALTHY dependency on container '{dep}', which \
                         has no healthCheck."
                    )));
                }
                "HEALTHY" => {}
                other => {
                    return Err(client_error(format!(
                        "Invalid dependency condition '{other}' for container '{name}'."
                    )));
                }
            }
        }
    }
    // A cycle: some container reaches itself through its dependencies.
    for c in containers {
        let start = str_of(c, "name").unwrap_or_default();
        let mut seen = vec![start.to_string()];
        let mut frontier: Vec<String> = deps(c).into_iter().map(|(d, _)| d).collect();
        while let Some(n) = frontier.pop() {
            if n == start {
                return Err(client_error(format!(
                    "Container '{start}' has a circular dependency."
                )));
            }
            if seen.contains(&n) {
                continue;
            }
            if let Some(next) = by_name(&n) {
                frontier.extend(deps(next).into_iter().map(|(d, _)| d));
            }
            seen.push(n);
        }
    }
    Ok(())
}

fn container_defaults(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(h) = c.get_mut("healthCheck").and_then(Value::as_object_mut) {
        for (k, v) in [("interval", 30), ("timeout", 5), ("retries", 3)] {
            h.entry(k).or_insert(json!(v));
        }
    }
    for (k, v) in [
        ("cpu", json!(0)),
        ("essential", json!(true)),
        ("portMappings", json!([])),
        ("environment", json!([])),
        ("mountPoints", json!([])),
        ("volumesFrom", json!([])),
    ] {
        if c.get(k).is_none() {
            c[k] = v;
        }
    }
    c
}

pub(crate) async fn register(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let (cpu, memory) = check(input)?;
    let sc = scope(ctx);
    let family = str_of(input, "family").unwrap_or_default().to_string();
    let now_s = ecs.clock.now_ms() as f64 / 1000.0;
    let tags: Vec<Value> = input
        .get("tags")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (def, commit) = {
        let mut st = ecs.state.lock();
        let revisions = st.taskdefs.entry((sc.clone(), family.clone())).or_default();
        let revision = revisions.keys().next_back().copied().unwrap_or(0) + 1;
        let containers: Vec<Value> = input
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(container_defaults)
            .collect();
        let mut def = json!({
            "taskDefinitionArn": arn(&sc, &format!("task-definition/{family}:{revision}")),
            "containerDefinitions": containers,
            "family": family,
            "revision": revision,
            "volumes": input.get("volumes").cloned().unwrap_or(json!([])),
            "status": "ACTIVE",
            "requiresAttributes": [],
            "placementConstraints": input.get("placementConstraints").cloned().unwrap_or(json!([])),
            "compatibilities": if str_of(input, "networkMode") == Some("awsvpc") { json!(["EC2", "FARGATE"]) } else { json!(["EC2"]) },
            "registeredAt": now_s,
            "registeredBy": format!("arn:aws:iam::{}:root", sc.account),
        });
        for k in [
            "taskRoleArn",
            "executionRoleArn",
            "networkMode",
            "requiresCompatibilities",
            "pidMode",
            "ipcMode",
            "ephemeralStorage",
            "runtimePlatform",
        ] {
            if let Some(v) = input.get(k) {
                def[k] = v.clone();
            }
        }
        if let Some(c) = cpu {
            def["cpu"] = json!(c.to_string());
        }
        if let Some(m) = memory {
            def["memory"] = json!(m.to_string());
        }
        let rec = Tagged {
            value: def.clone(),
            tags: tags.clone(),
        };
        let mut batch = Batch::new();
        state::put_taskdef(&mut batch, &sc, &family, revision, &rec);
        revisions.insert(revision, rec);
        (def, ecs.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"taskDefinition": def, "tags": tags}))
}

/// The revision `reference` names: `family`, `family:revision` or its ARN; a bare family is
/// its latest ACTIVE revision.
pub(crate) fn find<'a>(st: &'a State, sc: &Scope, reference: &str) -> Option<&'a Tagged> {
    let reference = reference
        .split_once(":task-definition/")
        .map_or(reference, |(_, r)| r);
    match reference.rsplit_once(':') {
        Some((family, rev)) => st
            .taskdefs
            .get(&(sc.clone(), family.to_string()))?
            .get(&rev.parse().ok()?),
        None => st
            .taskdefs
            .get(&(sc.clone(), reference.to_string()))?
            .values()
            .rev()
            .find(|t| str_of(&t.value, "status") == Some("ACTIVE")),
    }
}

pub(crate) fn describe(ecs: &Ecs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let st = ecs.state.lock();
    let reference = str_of(input, "taskDefinition").unwrap_or_default();
    let Some(t) = find(&st, &scope(ctx), reference) else {
        return Err(client_error("Unable to describe task definition."));
    };
    let mut out = json!({"taskDefinition": t.value});
    if input
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|x| x == "TAGS"))
    {
        out["tags"] = json!(t.tags);
    }
    Ok(out)
}

pub(crate) fn list(ecs: &Ecs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let prefix = str_of(input, "familyPrefix");
    let status = str_of(input, "status").unwrap_or("ACTIVE");
    let mut arns: Vec<String> = {
        let st = ecs.state.lock();
        st.taskdefs
            .iter()
            .filter(|((s, f), _)| *s == sc && prefix.is_none_or(|p| f.starts_with(p)))
            .flat_map(|(_, revs)| revs.values())
            .filter(|t| str_of(&t.value, "status") == Some(status))
            .filter_map(|t| str_of(&t.value, "taskDefinitionArn").map(str::to_string))
            .collect()
    };
    if str_of(input, "sort") == Some("DESC") {
        arns.reverse();
    }
    let (items, next) = page(&arns, input, 100);
    let mut out = json!({"taskDefinitionArns": items});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) fn list_families(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let prefix = str_of(input, "familyPrefix");
    let status = str_of(input, "status").unwrap_or("ACTIVE");
    let families: Vec<String> = {
        let st = ecs.state.lock();
        st.taskdefs
            .iter()
            .filter(|((s, f), _)| *s == sc && prefix.is_none_or(|p| f.starts_with(p)))
            .filter(|(_, revs)| {
                let active = revs
                    .values()
                    .any(|t| str_of(&t.value, "status") == Some("ACTIVE"));
                match status {
                    "ALL" => true,
                    "INACTIVE" => !active,
                    _ => active,
                }
            })
            .map(|((_, f), _)| f.clone())
            .collect()
    };
    let (items, next) = page(&families, input, 100);
    let mut out = json!({"families": items});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) async fn deregister(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let reference = str_of(input, "taskDefinition").unwrap_or_default();
    let reference = reference
        .split_once(":task-definition/")
        .map_or(reference, |(_, r)| r);
    let Some((family, rev)) = reference
        .rsplit_once(':')
        .and_then(|(f, r)| Some((f.to_string(), r.parse::<u32>().ok()?)))
    else {
        return Err(AwsError::new(
            "InvalidParameterException",
            400,
            "Invalid revision number. Number: ".to_string() + reference,
        ));
    };
    let now_s = ecs.clock.now_ms() as f64 / 1000.0;
    let (def, commit) = {
        let mut st = ecs.state.lock();
        let Some(t) = st
            .taskdefs
            .get_mut(&(sc.clone(), family.clone()))
            .and_then(|m| m.get_mut(&rev))
        else {
            return Err(client_error(
                "The specified task definition does not exist.",
            ));
        };
        t.value["status"] = json!("INACTIVE");
        t.value["deregisteredAt"] = json!(now_s);
        let rec = t.clone();
        let mut batch = Batch::new();
        state::put_taskdef(&mut batch, &sc, &family, rev, &rec);
        (rec.value, ecs.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"taskDefinition": def}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_follow_aws_rules() {
        let c = |name: &str, essential: bool, deps: Value| json!({"name": name, "essential": essential, "dependsOn": deps});
        let ok = |cs: Vec<Value>| check_dependencies(&cs).is_ok();
        let dep = |n: &str, cond: &str| json!([{"containerName": n, "condition": cond}]);
        assert!(ok(vec![
            c("a", true, dep("b", "SUCCESS")),
            c("b", false, json!([]))
        ]));
        assert!(!ok(vec![
            c("a", true, dep("b", "SUCCESS")),
            c("b", true, json!([]))
        ]));
        assert!(!ok(vec![
            c("a", true, dep("b", "COMPLETE")),
            c("b", true, json!([]))
        ]));
        assert!(!ok(vec![c("a", true, dep("zz", "START"))]));
        assert!(!ok(vec![c("a", true, dep("a", "START"))]));
        assert!(!ok(vec![
            c("a", true, dep("b", "HEALTHY")),
            c("b", false, json!([]))
        ]));
        let mut healthy = c("b", false, json!([]));
        healthy["healthCheck"] = json!({"command": ["CMD", "true"]});
        assert!(ok(vec![c("a", true, dep("b", "HEALTHY")), healthy]));
        // a -> b -> c -> a
        assert!(!ok(vec![
            c("a", true, dep("b", "START")),
            c("b", true, dep("c", "START")),
            c("c", true, dep("a", "START")),
        ]));
        assert!(!ok(vec![
            c("a", true, dep("b", "BOGUS")),
            c("b", true, json!([]))
        ]));
    }

    #[test]
    fn fargate_sizes() {
        assert!(fargate_allows(256, 512));
        assert!(fargate_allows(256, 2048));
        assert!(!fargate_allows(256, 4096));
        assert!(fargate_allows(512, 4096));
        assert!(!fargate_allows(512, 512));
        assert!(fargate_allows(1024, 8192));
        assert!(!fargate_allows(1024, 1024));
        assert!(fargate_allows(4096, 30720));
        assert!(fargate_allows(8192, 61440));
        assert!(!fargate_allows(8192, 18432));
        assert!(fargate_allows(16384, 122880));
        assert!(!fargate_allows(16384, 36864));
        assert!(!fargate_allows(300, 1024));
        assert_eq!(cpu_units("1 vCPU"), Some(1024));
        assert_eq!(cpu_units(".25 vcpu"), Some(256));
        assert_eq!(memory_mib("2 GB"), Some(2048));
        assert_eq!(memory_mib("512"), Some(512));
    }
}
