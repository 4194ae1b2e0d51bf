//! Tasks: RunTask, DescribeTasks, ListTasks, StopTask, and a task's life on the process
//! executor.
//!
//! RunTask records each task `PROVISIONING` and answers; its executor then records `PENDING`,
//! starts one process per container (`RUNNING`), and waits. When an essential container
//! exits, the others are stopped (SIGTERM, then SIGKILL after the container's
//! `stopTimeout`, 30 s by default) and the task goes `DEPROVISIONING` -> `STOPPED` with
//! `stopCode` `EssentialContainerExited`; StopTask does the same with `UserInitiated`; a
//! container that cannot start ends the task with `TaskFailedToStart`. Tasks running when the
//! server stopped lost their processes and are recorded `STOPPED` at the next start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tsumiki_compute::jobs::{ProcessSpec, Run, RunEnd, RunLogs, StreamTarget};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::clusters::ensure_default;
use crate::images::Resolved;
use crate::state::{self, Scope, State, Tagged};
use crate::{
    Ecs, arn, client_error, cluster_name, cluster_not_found, invalid, page, scope, str_of,
};

/// ECS's default `stopTimeout` on Fargate.
const DEFAULT_STOP_TIMEOUT_S: u64 = 30;

/// One container as the executor starts it.
#[derive(Clone, Debug)]
struct Plan {
    name: String,
    essential: bool,
    spec: ProcessSpec,
}

fn now_s(ecs: &Ecs) -> f64 {
    ecs.clock.now_ms() as f64 / 1000.0
}

fn task_id_of(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// `[{name, value}]` into a map.
fn pairs(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                str_of(p, "name")?.to_string(),
                str_of(p, "value").unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

pub(crate) async fn run_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    let count = input.get("count").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(invalid("count must be between 1 and 10."));
    }
    let launch_type = str_of(input, "launchType").unwrap_or("FARGATE").to_string();
    let overrides = input.get("overrides").cloned().unwrap_or(json!({}));
    let now = now_s(ecs);
    let mut batch = Batch::new();
    let (tasks, failures, plans) = {
        let mut st = ecs.state.lock();
        if cluster == "default" {
            ensure_default(&mut st, &sc, &mut batch);
        }
        let Some(cluster_rec) = st.clusters.get(&(sc.clone(), cluster.clone())) else {
            return Err(cluster_not_found());
        };
        let cluster_arn = str_of(&cluster_rec.value, "clusterArn")
            .unwrap_or_default()
            .to_string();
        let reference = str_of(input, "taskDefinition").unwrap_or_default();
        let Some(def) = crate::taskdefs::find(&st, &sc, reference) else {
            return Err(invalid("TaskDefinition not found."));
        };
        let def = def.value.clone();
        if str_of(&def, "status") != Some("ACTIVE") {
            return Err(client_error("TaskDefinition is inactive"));
        }
        let compat = def
            .get("compatibilities")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if launch_type == "FARGATE" && !compat.iter().any(|c| c == "FARGATE") {
            return Err(invalid(
                "Task definition does not support launch_type FARGATE.",
            ));
        }
        if str_of(&def, "networkMode") == Some("awsvpc")
            && input.get("networkConfiguration").is_none()
        {
            return Err(invalid(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        }
        let def_arn = str_of(&def, "taskDefinitionArn")
            .unwrap_or_default()
            .to_string();
        let containers = def
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Every image must map to something this machine can run.
        let mut resolved = Vec::new();
        for c in &containers {
            let image = str_of(c, "image").unwrap_or_default();
            match ecs.images.resolve(image) {
                Some(r) => resolved.push(r),
                None => {
                    let failure = json!({
                        "arn": def_arn,
                        "reason": "CannotPullContainerError",
                        "detail": format!(
                            "Image {image} of container {} cannot run on tsumiki's process \
                             executor: map it to a command with `tsumiki serve --task-image \
                             {image}=COMMAND`, or use a python or shell image (see README)",
                            str_of(c, "name").unwrap_or_default()
                        ),
                    });
                    let failures: Vec<Value> = (0..count).map(|_| failure.clone()).collect();
                    return Ok(json!({"tasks": [], "failures": failures}));
                }
            }
        }
        let task_cpu = overrides
            .get("cpu")
            .cloned()
            .or_else(|| def.get("cpu").cloned());
        let task_memory = overrides
            .get("memory")
            .cloned()
            .or_else(|| def.get("memory").cloned());
        let mut tasks = Vec::new();
        let mut plans = Vec::new();
        for _ in 0..count {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let task_arn = arn(&sc, &format!("task/{cluster}/{id}"));
            let mut container_values = Vec::new();
            let mut task_plans = Vec::new();
            for (c, r) in containers.iter().zip(&resolved) {
                let name = str_of(c, "name").unwrap_or_default().to_string();
                let container_override = overrides
                    .get("containerOverrides")
                    .and_then(Value::as_array)
                    .and_then(|os| os.iter().find(|o| str_of(o, "name") == Some(name.as_str())))
                    .cloned()
                    .unwrap_or(json!({}));
                let mut value = json!({
                    "containerArn": arn(&sc, &format!("container/{cluster}/{id}/{}", uuid::Uuid::new_v4())),
                    "taskArn": task_arn,
                    "name": name,
                    "image": str_of(c, "image").unwrap_or_default(),
                    "lastStatus": "PENDING",
                    "networkInterfaces": [],
                    "cpu": c.get("cpu").map_or("0".to_string(), |v| v.to_string()),
                });
                if let Some(m) = c.get("memory") {
                    value["memory"] = json!(m.to_string());
                }
                container_values.push(value);
                let memory_mb = container_override
                    .get("memory")
                    .or_else(|| c.get("memory"))
                    .and_then(Value::as_u64)
                    .or_else(|| task_memory.as_ref().and_then(|m| m.as_str()?.parse().ok()))
                    .unwrap_or(512);
                task_plans.push(plan(ecs, &sc, &id, c, &container_override, r, memory_mb));
            }
            let mut task = json!({
                "taskArn": task_arn,
                "clusterArn": cluster_arn,
                "taskDefinitionArn": def_arn,
                "overrides": {
                    "containerOverrides": overrides.get("containerOverrides").cloned().unwrap_or(json!([])),
                    "inferenceAcceleratorOverrides": [],
                },
                "lastStatus": "PROVISIONING",
                "desiredStatus": "RUNNING",
                "containers": container_values,
                "version": 1,
                "createdAt": now,
                "group": str_of(input, "group").map_or_else(
                    || format!("family:{}", str_of(&def, "family").unwrap_or_default()),
                    str::to_string,
                ),
                "launchType": launch_type,
                "attachments": [],
                "availabilityZone": format!("{}a", sc.region),
                "connectivity": "CONNECTED",
                "connectivityAt": now,
                "tags": input.get("tags").cloned().unwrap_or(json!([])),
                "enableExecuteCommand": false,
                "healthStatus": "UNKNOWN",
            });
            if launch_type == "FARGATE" {
                task["platformVersion"] = json!("1.4.0");
                task["platformFamily"] = json!("Linux");
            }
            if let Some(c) = &task_cpu {
                task["cpu"] = c.clone();
            }
            if let Some(m) = &task_memory {
                task["memory"] = m.clone();
            }
            if let Some(s) = str_of(input, "startedBy") {
                task["startedBy"] = json!(s);
            }
            let rec = Tagged {
                value: task.clone(),
                tags: input
                    .get("tags")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            };
            state::put_task(&mut batch, &sc, &id, &rec);
            st.tasks.insert((sc.clone(), id.clone()), rec);
            tasks.push(task);
            plans.push((id, task_plans));
        }
        (tasks, Vec::<Value>::new(), plans)
    };
    ecs.store.commit(batch).await.map_err(crate::store_error)?;
    if let Some(me) = ecs.myself() {
        for (id, task_plans) in plans {
            tokio::spawn(execute(me.clone(), sc.clone(), id, task_plans));
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

/// A container's process: the image's entrypoint and command, replaced by the definition's
/// and the override's as Docker does.
fn plan(
    ecs: &Ecs,
    sc: &Scope,
    task_id: &str,
    c: &Value,
    over: &Value,
    image: &Resolved,
    memory_mb: u64,
) -> Plan {
    let name = str_of(c, "name").unwrap_or_default().to_string();
    let entrypoint = strings(c.get("entryPoint")).unwrap_or_else(|| image.entrypoint.clone());
    let command = strings(over.get("command"))
        .or_else(|| strings(c.get("command")))
        .unwrap_or_else(|| image.cmd.clone());
    let mut argv: Vec<String> = entrypoint.into_iter().chain(command).collect();
    if argv.is_empty() {
        argv = image.cmd.clone();
    }
    let program = argv.remove(0);
    let work_dir = ecs.work_dir.join("tasks").join(task_id).join(&name);
    let tmp = work_dir.join("tmp");
    let mut env = BTreeMap::new();
    let prefix = image
        .path_prefix
        .as_ref()
        .map(|p| format!("{}:", p.display()))
        .unwrap_or_default();
    env.insert(
        "PATH".to_string(),
        format!("{prefix}/usr/local/bin:/usr/bin:/bin"),
    );
    env.insert("HOME".to_string(), tmp.display().to_string());
    env.insert("TMPDIR".to_string(), tmp.display().to_string());
    env.insert(
        "HOSTNAME".to_string(),
        format!("ip-10-0-0-1.{}.compute.internal", sc.region),
    );
    env.insert(
        "AWS_EXECUTION_ENV".to_string(),
        "AWS_ECS_FARGATE".to_string(),
    );
    env.insert("AWS_REGION".to_string(), sc.region.clone());
    env.insert("AWS_DEFAULT_REGION".to_string(), sc.region.clone());
    // A 12-digit access key id acts in that account at tsumiki's gateway.
    env.insert("AWS_ACCESS_KEY_ID".to_string(), sc.account.clone());
    env.insert("AWS_SECRET_ACCESS_KEY".to_string(), "tsumiki".to_string());
    env.insert("AWS_ENDPOINT_URL".to_string(), ecs.endpoint.read().clone());
    env.extend(pairs(c.get("environment")));
    env.extend(pairs(over.get("environment")));
    let logs = match c.get("logConfiguration") {
        Some(l) if str_of(l, "logDriver") == Some("awslogs") => {
            let options = l.get("options").cloned().unwrap_or(json!({}));
            let group = str_of(&options, "awslogs-group")
                .unwrap_or("/ecs/tsumiki")
                .to_string();
            let stream = match str_of(&options, "awslogs-stream-prefix") {
                Some(p) => format!("{p}/{name}/{task_id}"),
                None => task_id.to_string(),
            };
            RunLogs::Merged(StreamTarget { group, stream })
        }
        _ => RunLogs::Discard,
    };
    let stop_timeout = c
        .get("stopTimeout")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_STOP_TIMEOUT_S);
    Plan {
        essential: c.get("essential").and_then(Value::as_bool).unwrap_or(true),
        name,
        spec: ProcessSpec {
            account: sc.account.clone(),
            region: sc.region.clone(),
            program: program.into(),
            args: argv,
            env,
            work_dir,
            memory_mb,
            storage_mb: 20 * 1024,
            deadline_ms: None,
            stop_grace: Duration::from_secs(stop_timeout),
            logs,
            preamble: Vec::new(),
            keep_work_dir: false,
        },
    }
}

/// Changes a task's record and writes it; answers the new record.
async fn update(ecs: &Ecs, sc: &Scope, id: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
    let (task, commit) = {
        let mut st = ecs.state.lock();
        let t = st.tasks.get_mut(&(sc.clone(), id.to_string()))?;
        f(&mut t.value);
        let version = t.value.get("version").and_then(Value::as_u64).unwrap_or(1);
        t.value["version"] = json!(version + 1);
        let mut batch = Batch::new();
        state::put_task(&mut batch, sc, id, t);
        (t.value.clone(), ecs.store.commit(batch))
    };
    if let Err(e) = commit.await {
        crate::store_error(e);
    }
    Some(task)
}

fn set_containers(task: &mut Value, f: impl Fn(&mut Value)) {
    if let Some(cs) = task.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            f(c);
        }
    }
}

/// A task's life after RunTask answered.
async fn execute(ecs: Arc<Ecs>, sc: Scope, id: String, plans: Vec<Plan>) {
    let t = now_s(&ecs);
    update(&ecs, &sc, &id, |task| {
        task["lastStatus"] = json!("PENDING");
        task["pullStartedAt"] = json!(t);
        task["pullStoppedAt"] = json!(t);
    })
    .await;
    let mut runs: Vec<Arc<Run>> = Vec::new();
    let mut failed = None;
    for p in &plans {
        match ecs.processes.spawn(p.spec.clone()) {
            Ok(run) => runs.push(run),
            Err(e) => {
                failed = Some(format!(
                    "CannotStartContainerError: container {}: {} ({e})",
                    p.name,
                    p.spec.program.display()
                ));
                break;
            }
        }
    }
    if let Some(reason) = failed {
        for r in &runs {
            r.stop();
        }
        for r in &runs {
            r.wait().await;
        }
        let t = now_s(&ecs);
        let task = update(&ecs, &sc, &id, |task| {
            task["lastStatus"] = json!("STOPPED");
            task["desiredStatus"] = json!("STOPPED");
            task["stopCode"] = json!("TaskFailedToStart");
            task["stoppedReason"] = json!(reason);
            task["stoppingAt"] = json!(t);
            task["executionStoppedAt"] = json!(t);
            task["stoppedAt"] = json!(t);
            set_containers(task, |c| c["lastStatus"] = json!("STOPPED"));
        })
        .await;
        send_state_change(&ecs, &sc, task).await;
        return;
    }
    let pids: Vec<u32> = runs.iter().map(|r| r.pid()).collect();
    {
        let mut stopping = ecs.stopping.lock();
        ecs.live.lock().insert(id.clone(), runs.clone());
        if stopping.remove(&id).is_some() {
            for r in &runs {
                r.stop();
            }
        }
    }
    let t = now_s(&ecs);
    let task = update(&ecs, &sc, &id, |task| {
        if str_of(task, "desiredStatus") == Some("RUNNING") {
            task["lastStatus"] = json!("RUNNING");
        }
        task["startedAt"] = json!(t);
        if let Some(cs) = task.get_mut("containers").and_then(Value::as_array_mut) {
            for (c, pid) in cs.iter_mut().zip(&pids) {
                c["lastStatus"] = json!("RUNNING");
                c["runtimeId"] = json!(format!("{id}-{pid}"));
            }
        }
    })
    .await;
    send_state_change(&ecs, &sc, task).await;

    // Wait for every container; the first essential one to exit stops the rest.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, r) in runs.iter().enumerate() {
        let (r, tx) = (r.clone(), tx.clone());
        tokio::spawn(async move {
            let end = r.wait().await;
            let _ = tx.send((i, end));
        });
    }
    drop(tx);
    let mut essential_exited = false;
    while let Some((i, end)) = rx.recv().await {
        let (code, reason) = match end {
            RunEnd::Exited(c) => (Some(c), None),
            RunEnd::Signaled(s) => (Some(128 + s), None),
            RunEnd::Stopped { code } => (Some(code), None),
            RunEnd::TimedOut => (Some(137), None),
            RunEnd::OutOfMemory => (
                Some(137),
                Some("OutOfMemoryError: Container killed due to memory usage"),
            ),
        };
        let name = plans[i].name.clone();
        let first_essential = plans[i].essential && !essential_exited;
        essential_exited |= plans[i].essential;
        let t = now_s(&ecs);
        update(&ecs, &sc, &id, |task| {
            if let Some(c) = task
                .get_mut("containers")
                .and_then(Value::as_array_mut)
                .and_then(|cs| {
                    cs.iter_mut()
                        .find(|c| str_of(c, "name") == Some(name.as_str()))
                })
            {
                c["lastStatus"] = json!("STOPPED");
                if let Some(code) = code {
                    c["exitCode"] = json!(code);
                }
                if let Some(r) = reason {
                    c["reason"] = json!(r);
                }
            }
            if first_essential && str_of(task, "desiredStatus") == Some("RUNNING") {
                task["desiredStatus"] = json!("STOPPED");
                task["stopCode"] = json!("EssentialContainerExited");
                task["stoppedReason"] = json!("Essential container in task exited");
                task["stoppingAt"] = json!(t);
            }
            if str_of(task, "desiredStatus") == Some("STOPPED") {
                task["lastStatus"] = json!("DEPROVISIONING");
            }
        })
        .await;
        if first_essential {
            for r in &runs {
                r.stop();
            }
        }
    }
    ecs.live.lock().remove(&id);
    let t = now_s(&ecs);
    let task = update(&ecs, &sc, &id, |task| {
        task["lastStatus"] = json!("STOPPED");
        task["desiredStatus"] = json!("STOPPED");
        if task.get("stopCode").is_none() {
            task["stopCode"] = json!("EssentialContainerExited");
            task["stoppedReason"] = json!("Essential container in task exited");
            task["stoppingAt"] = json!(t);
        }
        task["executionStoppedAt"] = json!(t);
        task["stoppedAt"] = json!(t);
    })
    .await;
    send_state_change(&ecs, &sc, task).await;
}

/// `ECS Task State Change` to the account's default event bus, the task as its detail
/// (timestamps in ISO 8601, as EventBridge carries them).
async fn send_state_change(ecs: &Ecs, sc: &Scope, task: Option<Value>) {
    let Some(mut task) = task else {
        return;
    };
    let Some(events) = ecs.services.get().and_then(|s| s.get("events")).cloned() else {
        return;
    };
    if let Some(obj) = task.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            if k.ends_with("At")
                && let Some(secs) = v.as_f64()
            {
                *v = json!(tsumiki_core::clock::iso8601_ms((secs * 1000.0) as i64));
            }
        }
    }
    let task_arn = str_of(&task, "taskArn").unwrap_or_default().to_string();
    let input = json!({"Entries": [{
        "Source": "aws.ecs",
        "DetailType": "ECS Task State Change",
        "Detail": task.to_string(),
        "Resources": [task_arn],
    }]});
    if let Err(e) = events
        .call(&ecs.internal_context(sc), "PutEvents", input)
        .await
    {
        tracing::warn!(error = %e.message, "ECS task state change not delivered to EventBridge");
    }
}

/// Ends tasks that were running when the server stopped; answers which.
pub(crate) fn end_interrupted(state: &mut State, now_ms: i64) -> Vec<(Scope, String)> {
    let now = now_ms as f64 / 1000.0;
    let mut ended = Vec::new();
    for (key, t) in state.tasks.iter_mut() {
        if str_of(&t.value, "lastStatus") == Some("STOPPED") {
            continue;
        }
        let task = &mut t.value;
        task["lastStatus"] = json!("STOPPED");
        task["desiredStatus"] = json!("STOPPED");
        task["stopCode"] = json!("TerminationNotice");
        task["stoppedReason"] =
            json!("Task stopped: tsumiki stopped while it ran, and its containers with it");
        task["stoppedAt"] = json!(now);
        task["executionStoppedAt"] = json!(now);
        set_containers(task, |c| c["lastStatus"] = json!("STOPPED"));
        ended.push(key.clone());
    }
    ended
}

pub(crate) fn describe_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    let with_tags = input
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|x| x == "TAGS"));
    let st = ecs.state.lock();
    if !st.clusters.contains_key(&(sc.clone(), cluster.clone())) {
        return Err(cluster_not_found());
    }
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for reference in input
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let id = task_id_of(reference);
        match st.tasks.get(&(sc.clone(), id.to_string())) {
            Some(t)
                if str_of(&t.value, "taskArn")
                    .is_some_and(|a| a.contains(&format!("task/{cluster}/"))) =>
            {
                let mut v = t.value.clone();
                if !with_tags && let Some(o) = v.as_object_mut() {
                    o.remove("tags");
                }
                tasks.push(v);
            }
            _ => failures.push(json!({"arn": reference, "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

pub(crate) fn list_tasks(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    let desired = str_of(input, "desiredStatus").unwrap_or("RUNNING");
    let family = str_of(input, "family");
    let started_by = str_of(input, "startedBy");
    let launch_type = str_of(input, "launchType");
    let arns: Vec<String> = {
        let st = ecs.state.lock();
        if !st.clusters.contains_key(&(sc.clone(), cluster.clone())) {
            return Err(cluster_not_found());
        }
        let prefix = format!("task/{cluster}/");
        st.tasks
            .iter()
            .filter(|((s, _), _)| *s == sc)
            .map(|(_, t)| &t.value)
            .filter(|t| str_of(t, "taskArn").is_some_and(|a| a.contains(&prefix)))
            .filter(|t| str_of(t, "desiredStatus") == Some(desired))
            .filter(|t| {
                family.is_none_or(|f| {
                    str_of(t, "taskDefinitionArn")
                        .is_some_and(|a| a.contains(&format!("task-definition/{f}:")))
                })
            })
            .filter(|t| started_by.is_none_or(|s| str_of(t, "startedBy") == Some(s)))
            .filter(|t| launch_type.is_none_or(|l| str_of(t, "launchType") == Some(l)))
            .filter_map(|t| str_of(t, "taskArn").map(str::to_string))
            .collect()
    };
    let (items, next) = page(&arns, input, 100);
    let mut out = json!({"taskArns": items});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) async fn stop_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    let id = task_id_of(str_of(input, "task").unwrap_or_default()).to_string();
    let reason = str_of(input, "reason")
        .unwrap_or("Task stopped by user")
        .to_string();
    {
        let st = ecs.state.lock();
        if !st.clusters.contains_key(&(sc.clone(), cluster.clone())) {
            return Err(cluster_not_found());
        }
        match st.tasks.get(&(sc.clone(), id.clone())) {
            None => return Err(invalid("The referenced task was not found.")),
            Some(t) if str_of(&t.value, "desiredStatus") == Some("STOPPED") => {
                return Ok(json!({"task": t.value}));
            }
            Some(_) => {}
        }
    }
    let t = now_s(ecs);
    let task = update(ecs, &sc, &id, |task| {
        task["desiredStatus"] = json!("STOPPED");
        task["stopCode"] = json!("UserInitiated");
        task["stoppedReason"] = json!(reason);
        task["stoppingAt"] = json!(t);
    })
    .await
    .unwrap_or(json!({}));
    let mut stopping = ecs.stopping.lock();
    let live = ecs.live.lock().get(&id).cloned();
    match live {
        Some(runs) => {
            for r in runs {
                r.stop();
            }
        }
        None => {
            stopping.insert(id, reason);
        }
    }
    Ok(json!({"task": task}))
}
