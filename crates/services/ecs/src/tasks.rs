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
    /// `dependsOn`: (container name, condition).
    depends: Vec<(String, String)>,
    health: Option<Health>,
    /// How long containers depending on this one wait for its condition, from the task's
    /// start.
    start_timeout_s: Option<u64>,
}

/// A container's `healthCheck`, run as Docker runs it: every `interval` seconds from the
/// container's start, `timeout` per check, `retries` consecutive failures (after
/// `startPeriod`) make it UNHEALTHY, one success HEALTHY.
#[derive(Clone, Debug)]
struct Health {
    argv: Vec<String>,
    interval_s: u64,
    timeout_s: u64,
    retries: u64,
    start_period_s: u64,
}

impl Health {
    fn of(c: &Value) -> Option<Health> {
        let h = c.get("healthCheck")?;
        let command = strings(h.get("command"))?;
        let argv = match command.split_first() {
            Some((first, rest)) if first == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((first, rest)) if first == "CMD" => rest.to_vec(),
            _ => command,
        };
        if argv.is_empty() {
            return None;
        }
        let num = |k: &str, d: u64| h.get(k).and_then(Value::as_u64).unwrap_or(d);
        Some(Health {
            argv,
            interval_s: num("interval", 30).max(1),
            timeout_s: num("timeout", 5).max(1),
            retries: num("retries", 3).max(1),
            start_period_s: num("startPeriod", 0),
        })
    }
}

/// RunTask's `overrides` checked as AWS does: every container override names a container of
/// the definition, and a Fargate task's cpu/memory override is a Fargate size.
fn check_overrides(
    overrides: &Value,
    containers: &[Value],
    launch_type: &str,
) -> Result<(), AwsError> {
    for o in overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = str_of(o, "name").unwrap_or_default();
        if !containers.iter().any(|c| str_of(c, "name") == Some(name)) {
            return Err(invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
    }
    let cpu = match str_of(overrides, "cpu") {
        Some(c) => Some(
            crate::taskdefs::cpu_units(c)
                .ok_or_else(|| invalid("Invalid 'cpu' setting for task override."))?,
        ),
        None => None,
    };
    let memory = match str_of(overrides, "memory") {
        Some(m) => Some(
            crate::taskdefs::memory_mib(m)
                .ok_or_else(|| invalid("Invalid 'memory' setting for task override."))?,
        ),
        None => None,
    };
    if launch_type == "FARGATE"
        && let (Some(cpu), Some(memory)) = (cpu, memory)
        && !crate::taskdefs::fargate_allows(cpu, memory)
    {
        return Err(client_error(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
             See the Amazon ECS documentation for the valid values."
        )));
    }
    Ok(())
}

/// The task's `overrides` as DescribeTasks answers them.
fn recorded_overrides(overrides: &Value) -> Value {
    let mut out = json!({
        "containerOverrides": overrides.get("containerOverrides").cloned().unwrap_or(json!([])),
        "inferenceAcceleratorOverrides": [],
    });
    for k in [
        "cpu",
        "memory",
        "taskRoleArn",
        "executionRoleArn",
        "ephemeralStorage",
    ] {
        if let Some(v) = overrides.get(k) {
            out[k] = v.clone();
        }
    }
    out
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
        // No cluster is created here: without the `default` cluster (CreateCluster with no
        // name makes it), AWS answers ClusterNotFoundException too.
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
        check_overrides(&overrides, &containers, &launch_type)?;
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
        let task_cpu = str_of(&overrides, "cpu")
            .and_then(crate::taskdefs::cpu_units)
            .map(|c| json!(c.to_string()))
            .or_else(|| def.get("cpu").cloned());
        let task_memory = str_of(&overrides, "memory")
            .and_then(crate::taskdefs::memory_mib)
            .map(|m| json!(m.to_string()))
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
                if c.get("healthCheck").is_some() {
                    value["healthStatus"] = json!("UNKNOWN");
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
                "overrides": recorded_overrides(&overrides),
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
        depends: c
            .get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    str_of(d, "containerName").unwrap_or_default().to_string(),
                    str_of(d, "condition").unwrap_or("START").to_string(),
                )
            })
            .collect(),
        health: Health::of(c),
        start_timeout_s: c.get("startTimeout").and_then(Value::as_u64),
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

/// Where a container is in its task's life.
#[derive(Clone)]
enum Phase {
    /// Waiting for its `dependsOn` conditions.
    Waiting,
    Running(Arc<Run>),
    Exited(i32),
    /// Never started: a dependency can no longer meet its condition, or the task stopped.
    Skipped(String),
}

/// Whether a waiting container may start now, must wait, or never will.
enum Ready {
    Now,
    Wait,
    Never(String),
}

fn readiness(
    plan: &Plan,
    plans: &[Plan],
    phases: &[Phase],
    healthy: &[Option<bool>],
    expired: &[bool],
) -> Ready {
    let mut wait = false;
    for (dep, condition) in &plan.depends {
        let Some(j) = plans.iter().position(|p| &p.name == dep) else {
            continue;
        };
        let never = |what: &str| Ready::Never(format!("dependency {dep} {what} ({condition})"));
        let pending = match (condition.as_str(), &phases[j]) {
            (_, Phase::Skipped(_)) => return never("never started"),
            (_, Phase::Waiting) => true,
            ("START", _) => false,
            ("COMPLETE", Phase::Exited(_)) => false,
            ("SUCCESS", Phase::Exited(0)) => false,
            ("SUCCESS", Phase::Exited(code)) => {
                return never(&format!("exited with code {code}"));
            }
            ("HEALTHY", Phase::Running(_)) => match healthy[j] {
                Some(true) => false,
                Some(false) => return never("is unhealthy"),
                None => true,
            },
            ("HEALTHY", Phase::Exited(_)) if healthy[j] != Some(true) => {
                return never("exited before it was healthy");
            }
            ("HEALTHY", _) => false,
            (_, Phase::Running(_)) => true,
            _ => false,
        };
        if pending && expired[j] {
            return never("did not meet the condition within its startTimeout");
        }
        wait |= pending;
    }
    if wait { Ready::Wait } else { Ready::Now }
}

/// What the executor hears about a container (or, for `Tick` and `Stop`, the task).
pub(crate) enum Heard {
    Ended(RunEnd),
    Health(bool),
    /// A container's `startTimeout` passed: dependencies are decided again.
    Tick,
    /// StopTask.
    Stop,
}

/// How StopTask reaches a task's executor.
pub(crate) type Signal = tokio::sync::mpsc::UnboundedSender<(usize, Heard)>;

/// A task's life after RunTask answered: containers start in `dependsOn` order (all at once
/// without it); the first essential container to exit (or an essential container that can
/// never start) stops the others and ends the task.
async fn execute(ecs: Arc<Ecs>, sc: Scope, id: String, plans: Vec<Plan>) {
    let t = now_s(&ecs);
    update(&ecs, &sc, &id, |task| {
        task["lastStatus"] = json!("PENDING");
        task["pullStartedAt"] = json!(t);
        task["pullStoppedAt"] = json!(t);
    })
    .await;
    let n = plans.len();
    let mut phases = vec![Phase::Waiting; n];
    let mut healthy: Vec<Option<bool>> = vec![None; n];
    // Skipped containers already recorded.
    let mut reported = vec![false; n];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Heard)>();
    ecs.signals.lock().insert(id.clone(), tx.clone());
    let started_ms = ecs.clock.now_ms();
    for (i, p) in plans.iter().enumerate() {
        if let Some(s) = p.start_timeout_s {
            let (clock, tx) = (ecs.clock.clone(), tx.clone());
            tokio::spawn(async move {
                clock.sleep_until(started_ms + s as i64 * 1000).await;
                let _ = tx.send((i, Heard::Tick));
            });
        }
    }
    let mut task_running = false;
    let mut user_stop = false;
    // Why the task is ending: (stopCode, reason) when the executor decided it.
    let mut ending: Option<(&'static str, String)> = None;
    loop {
        // Start (or give up on) every waiting container whose conditions are now decided.
        let mut started = Vec::new();
        loop {
            let mut progress = false;
            for i in 0..n {
                if !matches!(phases[i], Phase::Waiting) {
                    continue;
                }
                let stopped = ending.is_some() || ecs.stopping.lock().contains_key(&id);
                let now = ecs.clock.now_ms();
                let expired: Vec<bool> = plans
                    .iter()
                    .map(|p| {
                        p.start_timeout_s
                            .is_some_and(|s| now >= started_ms + s as i64 * 1000)
                    })
                    .collect();
                let verdict = if stopped {
                    Ready::Never("the task stopped before it started".into())
                } else {
                    readiness(&plans[i], &plans, &phases, &healthy, &expired)
                };
                match verdict {
                    Ready::Wait => {}
                    Ready::Never(why) => {
                        progress = true;
                        if plans[i].essential && ending.is_none() && !stopped {
                            ending = Some((
                                "EssentialContainerExited",
                                "Essential container in task exited".into(),
                            ));
                        }
                        phases[i] = Phase::Skipped(why);
                    }
                    Ready::Now => {
                        progress = true;
                        match start(&ecs, &id, &plans[i]) {
                            Ok(Some(run)) => {
                                let (r, tx2) = (run.clone(), tx.clone());
                                tokio::spawn(async move {
                                    let end = r.wait().await;
                                    let _ = tx2.send((i, Heard::Ended(end)));
                                });
                                if let Some(h) = &plans[i].health {
                                    tokio::spawn(check_health(
                                        ecs.clone(),
                                        plans[i].spec.clone(),
                                        h.clone(),
                                        run.clone(),
                                        i,
                                        tx.clone(),
                                    ));
                                }
                                started.push((i, run.pid()));
                                phases[i] = Phase::Running(run);
                            }
                            Ok(None) => {
                                phases[i] =
                                    Phase::Skipped("the task stopped before it started".into());
                            }
                            Err(e) => {
                                phases[i] = Phase::Skipped(e.clone());
                                if !matches!(ending, Some(("TaskFailedToStart", _))) {
                                    ending = Some(("TaskFailedToStart", e));
                                }
                            }
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
        if ending.is_some() || user_stop {
            stop_leaves(&plans, &phases);
        }
        // Record what changed: started containers, and the task RUNNING with its first ones.
        let skipped: Vec<(usize, String)> = phases
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Phase::Skipped(why) if !reported[i] => Some((i, why.clone())),
                _ => None,
            })
            .collect();
        for (i, _) in &skipped {
            reported[*i] = true;
        }
        if !started.is_empty() || !skipped.is_empty() {
            let t = now_s(&ecs);
            let first = !task_running && !started.is_empty();
            task_running |= first;
            let task = update(&ecs, &sc, &id, |task| {
                if first {
                    if str_of(task, "desiredStatus") == Some("RUNNING") {
                        task["lastStatus"] = json!("RUNNING");
                    }
                    task["startedAt"] = json!(t);
                }
                if let Some(cs) = task.get_mut("containers").and_then(Value::as_array_mut) {
                    for (i, pid) in &started {
                        cs[*i]["lastStatus"] = json!("RUNNING");
                        cs[*i]["runtimeId"] = json!(format!("{id}-{pid}"));
                    }
                    for (i, why) in &skipped {
                        cs[*i]["lastStatus"] = json!("STOPPED");
                        cs[*i]["reason"] = json!(format!("Container never started: {why}"));
                    }
                }
            })
            .await;
            if first {
                send_state_change(&ecs, &sc, task).await;
            }
        }
        if !phases.iter().any(|p| matches!(p, Phase::Running(_))) {
            break;
        }
        let Some((i, heard)) = rx.recv().await else {
            break;
        };
        match heard {
            Heard::Tick => {}
            Heard::Stop => user_stop = true,
            Heard::Health(ok) => {
                if healthy[i] == Some(ok) {
                    continue;
                }
                healthy[i] = Some(ok);
                let status = if ok { "HEALTHY" } else { "UNHEALTHY" };
                let essential_health: Vec<Option<bool>> = (0..n)
                    .filter(|&j| plans[j].essential && plans[j].health.is_some())
                    .map(|j| healthy[j])
                    .collect();
                let task_health = if essential_health.contains(&Some(false)) {
                    "UNHEALTHY"
                } else if !essential_health.is_empty()
                    && essential_health.iter().all(|h| *h == Some(true))
                {
                    "HEALTHY"
                } else {
                    "UNKNOWN"
                };
                update(&ecs, &sc, &id, |task| {
                    task["containers"][i]["healthStatus"] = json!(status);
                    task["healthStatus"] = json!(task_health);
                })
                .await;
            }
            Heard::Ended(end) => {
                let (code, reason) = match end {
                    RunEnd::Exited(c) => (c, None),
                    RunEnd::Signaled(s) => (128 + s, None),
                    RunEnd::Stopped { code } => (code, None),
                    RunEnd::TimedOut => (137, None),
                    RunEnd::OutOfMemory => (
                        137,
                        Some("OutOfMemoryError: Container killed due to memory usage"),
                    ),
                };
                phases[i] = Phase::Exited(code);
                let first_essential = plans[i].essential && ending.is_none();
                if first_essential {
                    ending = Some((
                        "EssentialContainerExited",
                        "Essential container in task exited".into(),
                    ));
                }
                let t = now_s(&ecs);
                update(&ecs, &sc, &id, |task| {
                    if let Some(c) = task.get_mut("containers").and_then(|cs| cs.get_mut(i)) {
                        c["lastStatus"] = json!("STOPPED");
                        c["exitCode"] = json!(code);
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
                // The top of the loop stops the containers nothing running depends on any more.
            }
        }
    }
    ecs.live.lock().remove(&id);
    ecs.signals.lock().remove(&id);
    ecs.stopping.lock().remove(&id);
    let t = now_s(&ecs);
    let task = update(&ecs, &sc, &id, |task| {
        if task.get("stopCode").is_none() {
            let (code, reason) = ending.clone().unwrap_or((
                "EssentialContainerExited",
                "Essential container in task exited".into(),
            ));
            task["stopCode"] = json!(code);
            task["stoppedReason"] = json!(reason);
            task["stoppingAt"] = json!(t);
        } else if let Some(("TaskFailedToStart", reason)) = &ending {
            task["stopCode"] = json!("TaskFailedToStart");
            task["stoppedReason"] = json!(reason);
        }
        task["lastStatus"] = json!("STOPPED");
        task["desiredStatus"] = json!("STOPPED");
        task["executionStoppedAt"] = json!(t);
        task["stoppedAt"] = json!(t);
        set_containers(task, |c| c["lastStatus"] = json!("STOPPED"));
    })
    .await;
    send_state_change(&ecs, &sc, task).await;
}

/// Starts one container, unless the task is being stopped (`None`); StopTask sees it in
/// `live` from the moment it exists.
fn start(ecs: &Ecs, id: &str, plan: &Plan) -> Result<Option<Arc<Run>>, String> {
    let stopping = ecs.stopping.lock();
    if stopping.contains_key(id) {
        return Ok(None);
    }
    match ecs.processes.spawn(plan.spec.clone()) {
        Ok(run) => {
            ecs.live
                .lock()
                .entry(id.to_string())
                .or_default()
                .push(run.clone());
            Ok(Some(run))
        }
        Err(e) => Err(format!(
            "CannotStartContainerError: container {}: {} ({e})",
            plan.name,
            plan.spec.program.display()
        )),
    }
}

/// Stops, in reverse dependency order, the running containers no other running container
/// depends on; the rest are stopped as their dependents exit.
fn stop_leaves(plans: &[Plan], phases: &[Phase]) {
    for (i, p) in phases.iter().enumerate() {
        let Phase::Running(r) = p else {
            continue;
        };
        let depended_on = plans.iter().zip(phases).any(|(q, phase)| {
            matches!(phase, Phase::Running(_)) && q.depends.iter().any(|(d, _)| *d == plans[i].name)
        });
        if !depended_on {
            r.stop();
        }
    }
}

/// Runs a container's health check on the clock until the container ends, reporting each
/// change of verdict.
async fn check_health(
    ecs: Arc<Ecs>,
    container: ProcessSpec,
    h: Health,
    run: Arc<Run>,
    i: usize,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, Heard)>,
) {
    let started = ecs.clock.now_ms();
    let mut failures = 0;
    let checks = async {
        loop {
            ecs.clock.sleep_ms(h.interval_s as i64 * 1000).await;
            let now = ecs.clock.now_ms();
            let mut argv = h.argv.clone();
            let spec = ProcessSpec {
                program: argv.remove(0).into(),
                args: argv,
                deadline_ms: Some(now + h.timeout_s as i64 * 1000),
                logs: RunLogs::Discard,
                preamble: Vec::new(),
                keep_work_dir: true,
                stop_grace: Duration::from_secs(1),
                ..container.clone()
            };
            let ok = match ecs.processes.spawn(spec) {
                Ok(check) => check.wait().await == RunEnd::Exited(0),
                Err(_) => false,
            };
            if ok {
                failures = 0;
                let _ = tx.send((i, Heard::Health(true)));
            } else if now - started >= h.start_period_s as i64 * 1000 {
                failures += 1;
                if failures >= h.retries {
                    let _ = tx.send((i, Heard::Health(false)));
                }
            }
        }
    };
    tokio::select! {
        _ = checks => {}
        _ = run.wait() => {}
    }
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
    // Under `stopping`, so a container the executor starts after this sees the stop; the
    // executor stops the running ones, in reverse dependency order.
    let mut stopping = ecs.stopping.lock();
    stopping.insert(id.clone(), reason);
    if let Some(signal) = ecs.signals.lock().get(&id) {
        let _ = signal.send((0, Heard::Stop));
    }
    Ok(json!({"task": task}))
}

/// StartTask places a task on named container instances (EC2). Fargate clusters have none,
/// and tsumiki registers none, so every instance named is answered `MISSING` in `failures`,
/// as AWS answers an instance it does not know; the cluster and task definition are checked
/// first, as RunTask checks them.
pub(crate) fn start_task(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    let instances: Vec<&str> = input
        .get("containerInstances")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if instances.is_empty() || instances.len() > 10 {
        return Err(invalid(
            "containerInstances must contain between 1 and 10 container instances.",
        ));
    }
    let st = ecs.state.lock();
    if !st.clusters.contains_key(&(sc.clone(), cluster.clone())) {
        return Err(cluster_not_found());
    }
    let reference = str_of(input, "taskDefinition").unwrap_or_default();
    if crate::taskdefs::find(&st, &sc, reference).is_none() {
        return Err(invalid("TaskDefinition not found."));
    }
    let failures: Vec<Value> = instances
        .iter()
        .map(|i| {
            let arn = if i.starts_with("arn:") {
                (*i).to_string()
            } else {
                arn(&sc, &format!("container-instance/{cluster}/{i}"))
            };
            json!({"arn": arn, "reason": "MISSING"})
        })
        .collect();
    Ok(json!({"tasks": [], "failures": failures}))
}

/// A cluster's container instances: tsumiki's clusters are Fargate-only and have none.
pub(crate) fn list_container_instances(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    if !ecs.state.lock().clusters.contains_key(&(sc, cluster)) {
        return Err(cluster_not_found());
    }
    Ok(json!({"containerInstanceArns": []}))
}

pub(crate) fn describe_container_instances(
    ecs: &Ecs,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let sc = scope(ctx);
    let cluster = cluster_name(input, "cluster");
    if !ecs
        .state
        .lock()
        .clusters
        .contains_key(&(sc.clone(), cluster.clone()))
    {
        return Err(cluster_not_found());
    }
    let failures: Vec<Value> = input
        .get("containerInstances")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|i| {
            let arn = if i.starts_with("arn:") {
                i.to_string()
            } else {
                arn(&sc, &format!("container-instance/{cluster}/{i}"))
            };
            json!({"arn": arn, "reason": "MISSING"})
        })
        .collect();
    Ok(json!({"containerInstances": [], "failures": failures}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str, depends: &[(&str, &str)]) -> Plan {
        Plan {
            name: name.into(),
            essential: true,
            spec: ProcessSpec {
                account: String::new(),
                region: String::new(),
                program: "/bin/true".into(),
                args: Vec::new(),
                env: BTreeMap::new(),
                work_dir: "/tmp".into(),
                memory_mb: 1,
                storage_mb: 1,
                deadline_ms: None,
                stop_grace: Duration::ZERO,
                logs: RunLogs::Discard,
                preamble: Vec::new(),
                keep_work_dir: true,
            },
            depends: depends
                .iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect(),
            health: None,
            start_timeout_s: None,
        }
    }

    fn verdict(
        p: &Plan,
        plans: &[Plan],
        phases: &[Phase],
        healthy: &[Option<bool>],
    ) -> &'static str {
        match readiness(p, plans, phases, healthy, &vec![false; plans.len()]) {
            Ready::Now => "now",
            Ready::Wait => "wait",
            Ready::Never(_) => "never",
        }
    }

    #[test]
    fn dependency_conditions_decide_when_a_container_starts() {
        let plans = vec![
            plan("dep", &[]),
            plan("start", &[("dep", "START")]),
            plan("complete", &[("dep", "COMPLETE")]),
            plan("success", &[("dep", "SUCCESS")]),
            plan("healthy", &[("dep", "HEALTHY")]),
        ];
        let v = |phase: Phase, health: Option<bool>, i: usize| {
            let phases = vec![
                phase,
                Phase::Waiting,
                Phase::Waiting,
                Phase::Waiting,
                Phase::Waiting,
            ];
            let healthy = vec![health, None, None, None, None];
            verdict(&plans[i], &plans, &phases, &healthy)
        };
        // Nothing starts before its dependency exists.
        for i in 1..5 {
            assert_eq!(v(Phase::Waiting, None, i), "wait");
        }
        // A container without dependencies starts at once.
        assert_eq!(v(Phase::Waiting, None, 0), "now");
        // Exited with 0, exited with 3, skipped.
        assert_eq!(v(Phase::Exited(0), None, 1), "now");
        assert_eq!(v(Phase::Exited(0), None, 2), "now");
        assert_eq!(v(Phase::Exited(3), None, 2), "now");
        assert_eq!(v(Phase::Exited(0), None, 3), "now");
        assert_eq!(v(Phase::Exited(3), None, 3), "never");
        assert_eq!(v(Phase::Exited(0), None, 4), "never");
        assert_eq!(v(Phase::Exited(0), Some(true), 4), "now");
        for i in 1..5 {
            assert_eq!(v(Phase::Skipped("x".into()), None, i), "never");
        }
    }

    #[tokio::test]
    async fn dependencies_on_a_running_container() {
        let plans = vec![
            plan("dep", &[]),
            plan("start", &[("dep", "START")]),
            plan("complete", &[("dep", "COMPLETE")]),
            plan("healthy", &[("dep", "HEALTHY")]),
        ];
        // A running container: START holds, COMPLETE waits, HEALTHY follows the health.
        let dir = std::env::temp_dir();
        let clock = Arc::new(tsumiki_core::Clock::manual());
        {
            #[derive(Default)]
            struct Sink;
            #[async_trait::async_trait]
            impl tsumiki_ports::LogSink for Sink {
                async fn append(
                    &self,
                    _: &str,
                    _: &str,
                    _: &str,
                    _: &str,
                    _: Vec<tsumiki_ports::LogEvent>,
                ) -> Result<(), AwsError> {
                    Ok(())
                }
            }
            let procs = tsumiki_compute::jobs::Processes::new(
                clock,
                Arc::new(Sink),
                &uuid::Uuid::new_v4().to_string(),
            );
            let mut spec = plans[0].spec.clone();
            spec.program = "/bin/sleep".into();
            spec.args = vec!["30".into()];
            spec.memory_mb = 64;
            spec.storage_mb = 10;
            spec.work_dir = dir.join(uuid::Uuid::new_v4().to_string());
            spec.keep_work_dir = false;
            let run = procs.spawn(spec).unwrap();
            let phases = vec![
                Phase::Running(run.clone()),
                Phase::Waiting,
                Phase::Waiting,
                Phase::Waiting,
            ];
            let h = |x: Option<bool>| vec![x, None, None, None];
            assert_eq!(verdict(&plans[1], &plans, &phases, &h(None)), "now");
            assert_eq!(verdict(&plans[2], &plans, &phases, &h(None)), "wait");
            assert_eq!(verdict(&plans[3], &plans, &phases, &h(None)), "wait");
            assert_eq!(verdict(&plans[3], &plans, &phases, &h(Some(true))), "now");
            assert_eq!(
                verdict(&plans[3], &plans, &phases, &h(Some(false))),
                "never"
            );
            run.stop();
            run.wait().await;
        }
    }
}
