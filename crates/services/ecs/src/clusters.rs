//! Clusters (Create/Describe/List/Delete, the `default` cluster) and tags of every resource.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, Scope, State, Tagged};
use crate::{Ecs, arn, cluster_name, cluster_not_found, invalid, page, scope, str_of};

fn new_cluster(scope: &Scope, name: &str, input: &Value) -> Tagged {
    Tagged {
        value: json!({
            "clusterArn": arn(scope, &format!("cluster/{name}")),
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": 0,
            "pendingTasksCount": 0,
            "activeServicesCount": 0,
            "statistics": [],
            "settings": input.get("settings").cloned()
                .unwrap_or(json!([{"name": "containerInsights", "value": "disabled"}])),
            "capacityProviders": input.get("capacityProviders").cloned().unwrap_or(json!([])),
            "defaultCapacityProviderStrategy": input.get("defaultCapacityProviderStrategy")
                .cloned().unwrap_or(json!([])),
        }),
        tags: input
            .get("tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// A cluster as Describe answers it: its task counts are live.
pub(crate) fn render(state: &State, scope: &Scope, c: &Tagged, with_tags: bool) -> Value {
    let mut v = c.value.clone();
    let (mut running, mut pending) = (0, 0);
    for ((s, _), t) in &state.tasks {
        if s == scope && str_of(&t.value, "clusterArn") == str_of(&v, "clusterArn") {
            match str_of(&t.value, "lastStatus") {
                Some("RUNNING") => running += 1,
                Some("PROVISIONING" | "PENDING" | "ACTIVATING") => pending += 1,
                _ => {}
            }
        }
    }
    v["runningTasksCount"] = json!(running);
    v["pendingTasksCount"] = json!(pending);
    if with_tags {
        v["tags"] = json!(c.tags);
    }
    v
}

pub(crate) async fn create_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let name = str_of(input, "clusterName")
        .unwrap_or("default")
        .to_string();
    let sc = scope(ctx);
    let (cluster, commit) = {
        let mut st = ecs.state.lock();
        let key = (sc.clone(), name.clone());
        // An active cluster of that name is answered as it is, as AWS does.
        if let Some(c) = st.clusters.get(&key)
            && str_of(&c.value, "status") == Some("ACTIVE")
        {
            return Ok(json!({"cluster": render(&st, &sc, c, true)}));
        }
        let c = new_cluster(&sc, &name, input);
        let mut batch = Batch::new();
        state::put_cluster(&mut batch, &sc, &name, &c);
        let out = render(&st, &sc, &c, true);
        st.clusters.insert(key, c);
        (out, ecs.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"cluster": cluster}))
}

pub(crate) fn describe_clusters(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let names: Vec<String> = match input.get("clusters").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(Value::as_str)
            .map(|c| c.rsplit_once(":cluster/").map_or(c, |(_, n)| n).to_string())
            .collect(),
        _ => vec!["default".to_string()],
    };
    let with_tags = input
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|x| x == "TAGS"));
    let st = ecs.state.lock();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match st.clusters.get(&(sc.clone(), name.clone())) {
            Some(c) => clusters.push(render(&st, &sc, c, with_tags)),
            None => failures
                .push(json!({"arn": arn(&sc, &format!("cluster/{name}")), "reason": "MISSING"})),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

pub(crate) fn list_clusters(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let arns: Vec<String> = {
        let st = ecs.state.lock();
        st.clusters
            .iter()
            .filter(|((s, _), c)| *s == sc && str_of(&c.value, "status") == Some("ACTIVE"))
            .filter_map(|(_, c)| str_of(&c.value, "clusterArn").map(str::to_string))
            .collect()
    };
    let (items, next) = page(&arns, input, 100);
    let mut out = json!({"clusterArns": items});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) async fn delete_cluster(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let name = cluster_name(input, "cluster");
    let (cluster, commit) = {
        let mut st = ecs.state.lock();
        let key = (sc.clone(), name.clone());
        let Some(c) = st.clusters.get(&key) else {
            return Err(cluster_not_found());
        };
        let cluster_arn = str_of(&c.value, "clusterArn")
            .unwrap_or_default()
            .to_string();
        let busy = st.tasks.iter().any(|((s, _), t)| {
            *s == sc
                && str_of(&t.value, "clusterArn") == Some(cluster_arn.as_str())
                && str_of(&t.value, "lastStatus") != Some("STOPPED")
        });
        if busy {
            return Err(AwsError::new(
                "ClusterContainsTasksException",
                400,
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
        let Some(mut c) = st.clusters.remove(&key) else {
            return Err(cluster_not_found());
        };
        c.value["status"] = json!("INACTIVE");
        let mut batch = Batch::new();
        state::delete_cluster(&mut batch, &sc, &name);
        (c.value, ecs.store.commit(batch))
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({"cluster": cluster}))
}

/// Where a resource ARN points in the state.
enum Target {
    Cluster(String),
    TaskDef(String, u32),
    Task(String),
}

fn target_of(resource_arn: &str) -> Result<Target, AwsError> {
    let resource = resource_arn.splitn(6, ':').nth(5).unwrap_or_default();
    if let Some(name) = resource.strip_prefix("cluster/") {
        return Ok(Target::Cluster(name.to_string()));
    }
    if let Some(rest) = resource.strip_prefix("task-definition/")
        && let Some((family, rev)) = rest.rsplit_once(':')
        && let Ok(rev) = rev.parse()
    {
        return Ok(Target::TaskDef(family.to_string(), rev));
    }
    if let Some(rest) = resource.strip_prefix("task/") {
        let id = rest.rsplit('/').next().unwrap_or(rest);
        return Ok(Target::Task(id.to_string()));
    }
    Err(invalid(format!("Invalid resource ARN: {resource_arn}")))
}

fn tags_mut<'a>(st: &'a mut State, sc: &Scope, target: &Target) -> Option<(&'a mut Tagged, Kind)> {
    match target {
        Target::Cluster(n) => st
            .clusters
            .get_mut(&(sc.clone(), n.clone()))
            .map(|t| (t, Kind::Cluster(n.clone()))),
        Target::TaskDef(f, r) => st
            .taskdefs
            .get_mut(&(sc.clone(), f.clone()))
            .and_then(|m| m.get_mut(r))
            .map(|t| (t, Kind::TaskDef(f.clone(), *r))),
        Target::Task(id) => st
            .tasks
            .get_mut(&(sc.clone(), id.clone()))
            .map(|t| (t, Kind::Task(id.clone()))),
    }
}

enum Kind {
    Cluster(String),
    TaskDef(String, u32),
    Task(String),
}

pub(crate) async fn tag_resource(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
    add: bool,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let target = target_of(str_of(input, "resourceArn").unwrap_or_default())?;
    let commit = {
        let mut st = ecs.state.lock();
        let Some((rec, kind)) = tags_mut(&mut st, &sc, &target) else {
            return Err(AwsError::new(
                "ResourceNotFoundException",
                400,
                "The specified resource could not be found.",
            ));
        };
        if add {
            for t in input
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                rec.tags.retain(|x| x.get("key") != t.get("key"));
                rec.tags.push(t.clone());
            }
        } else {
            let keys: Vec<&Value> = input
                .get("tagKeys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            rec.tags
                .retain(|x| !keys.iter().any(|k| x.get("key") == Some(*k)));
        }
        let rec = rec.clone();
        let mut batch = Batch::new();
        match kind {
            Kind::Cluster(n) => state::put_cluster(&mut batch, &sc, &n, &rec),
            Kind::TaskDef(f, r) => state::put_taskdef(&mut batch, &sc, &f, r, &rec),
            Kind::Task(id) => state::put_task(&mut batch, &sc, &id, &rec),
        }
        ecs.store.commit(batch)
    };
    commit.await.map_err(crate::store_error)?;
    Ok(json!({}))
}

pub(crate) fn list_tags(ecs: &Ecs, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let target = target_of(str_of(input, "resourceArn").unwrap_or_default())?;
    let mut st = ecs.state.lock();
    match tags_mut(&mut st, &sc, &target) {
        Some((rec, _)) => Ok(json!({"tags": rec.tags})),
        None => Err(AwsError::new(
            "ResourceNotFoundException",
            400,
            "The specified resource could not be found.",
        )),
    }
}
