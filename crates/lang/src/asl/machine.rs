//! The interpreter as a deterministic state machine. An [`Execution`] is plain data
//! (serializable, so a service can persist it after every step); [`Execution::step`] takes one
//! [`Input`] (start, a task's result, a timer firing, a stop) and the current time, advances
//! every branch as far as it can go without the outside world, and returns the history
//! events it produced and the [`Command`]s the caller must carry out (run a task, start a
//! timer). Nothing here does IO or reads a clock, so a replayed step gives the same result.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::choice;
use super::definition::{
    Assign, Definition, ErrorSource, Kind, PercentSource, Seconds, State, Template,
};
use super::intrinsics::{self, next_random};
use super::jsonata::{Ata, Session};
use super::path::{Path, VARS_KEY};

/// AWS's limit on a state's input or output (and an execution's input and output).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    /// The name AWS uses (`ExecutionStatus`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }
}

/// What starts an execution.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub region: String,
    pub input: Value,
    pub start_ms: i64,
    /// Task tokens are this prefix plus the task's number.
    pub token_prefix: String,
    /// Seeds `States.MathRandom`, `States.UUID` and retry jitter.
    pub seed: u64,
}

/// One event the interpreter takes.
#[derive(Debug, Clone)]
pub enum Input {
    Start,
    TaskSucceeded {
        task: u64,
        output: Value,
    },
    TaskFailed {
        task: u64,
        error: String,
        cause: String,
    },
    /// A `.waitForTaskToken` integration was sent (or an activity handed to a worker): its
    /// output (or worker name) goes to history; the task now waits for its token.
    TaskSubmitted {
        task: u64,
        output: Value,
    },
    TaskHeartbeat {
        task: u64,
    },
    TimerFired {
        timer: u64,
    },
    Stop {
        error: Option<String>,
        cause: Option<String>,
    },
}

/// Work for the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run a task's resource with `input`; answer with `TaskSucceeded`/`TaskFailed` (and
    /// `TaskSubmitted` first for `.waitForTaskToken`).
    RunTask {
        task: u64,
        resource: String,
        input: Value,
        token: String,
        timeout_s: Option<u64>,
        heartbeat_s: Option<u64>,
    },
    /// Answer with `TimerFired` at `at_ms` (a timer the interpreter no longer wants is
    /// ignored when it fires).
    StartTimer { timer: u64, at_ms: i64 },
}

/// One history event, shaped as GetExecutionHistory returns it (the service adds the time
/// format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: i64,
    pub previous_id: i64,
    pub timestamp_ms: i64,
    pub kind: String,
    pub details_key: Option<String>,
    pub details: Value,
}

#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<HistoryEvent>,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Children {
    map: bool,
    /// Map: the effective input and the items; Parallel: the branches' input.
    effective: Value,
    items: Vec<Value>,
    results: Vec<Value>,
    running: BTreeMap<u64, usize>,
    next: usize,
    total: usize,
    max_concurrency: usize,
    failures: usize,
    tolerated_count: Option<u64>,
    tolerated_pct: Option<f64>,
    /// Which children succeeded, filled only when the state stops unsuccessfully (for
    /// RedriveExecution, which keeps their `results`) and in a redriven run of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<bool>,
    /// Children that failed or were aborted (a Map's tolerated failures too): where each
    /// resumes when the execution is redriven. Filled as they stop; spent as they restart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resume: BTreeMap<usize, Resume>,
}

impl Children {
    /// Which children succeeded: marked so by a redrive, or started (iterations start in
    /// index order, branches all at once), not running, and not stopped unsuccessfully.
    fn succeeded(&self) -> Vec<bool> {
        let running: BTreeSet<usize> = self.running.values().copied().collect();
        (0..self.total)
            .map(|i| {
                self.done.get(i).copied().unwrap_or(false)
                    || (i < self.next && !self.resume.contains_key(&i) && !running.contains(&i))
            })
            .collect()
    }
}

/// A Map state's items, `MaxConcurrency` (0: no limit) and tolerated failures, as the state
/// evaluates them on its input.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSettings {
    pub items: Vec<Value>,
    pub max_concurrency: usize,
    pub tolerated_count: Option<u64>,
    pub tolerated_pct: Option<f64>,
}

impl MapSettings {
    /// Whether `failures` failed iterations are more than the state tolerates (without
    /// `ToleratedFailure*` fields a failed iteration fails the Map with its own error instead).
    pub fn exceeded_by(&self, failures: u64) -> bool {
        tolerance_exceeded(
            self.tolerated_count,
            self.tolerated_pct,
            failures,
            self.items.len(),
        )
    }
}

/// `failures` of `total` iterations against `ToleratedFailureCount`/`Percentage` (either
/// tolerating is enough); false when neither is set.
fn tolerance_exceeded(count: Option<u64>, pct: Option<f64>, failures: u64, total: usize) -> bool {
    if count.is_none() && pct.is_none() {
        return false;
    }
    let count_ok = count.is_some_and(|c| failures <= c);
    let pct_ok = pct.is_some_and(|p| total > 0 && (failures as f64 * 100.0 / total as f64) <= p);
    !(count_ok || pct_ok)
}

/// How the last error was handled (TestState's `inspectionData.errorDetails`): the index of
/// the retrier that matched it and the backoff it chose, and the catcher that took it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorHandling {
    pub retry_index: Option<usize>,
    pub retry_backoff_s: Option<f64>,
    pub catch_index: Option<usize>,
}

/// Where a thread that did not finish picks up again on RedriveExecution: the state it was
/// in, that state's input, its scope's variables, and, for a Map or Parallel state, how far
/// its iterations or branches got (so only the unsuccessful ones run again, as AWS does).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resume {
    state: String,
    input: Value,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    children: Option<Box<Children>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum TStatus {
    Ready,
    Rerun,
    Task {
        task: u64,
    },
    Waiting {
        timer: u64,
        output: Value,
        /// Variables the Wait state assigns when it leaves.
        #[serde(default)]
        assign: Option<Map<String, Value>>,
    },
    RetryWait {
        timer: u64,
    },
    Children(Box<Children>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Thread {
    graph: usize,
    state: String,
    input: Value,
    status: TStatus,
    parent: Option<u64>,
    index: usize,
    retries: Vec<u32>,
    retry_total: u32,
    entered_ms: i64,
    last_event: i64,
    map_item: Option<(usize, Value)>,
    /// The variables this thread's scope assigned (the top level's, or one Parallel
    /// branch's or Map iteration's); outer scopes are read through `parent`.
    #[serde(default)]
    vars: Map<String, Value>,
    /// The id of the current state's `...StateEntered` event (error messages name it).
    #[serde(default)]
    entered_event: i64,
    /// No JSONata field of the current state reads `$states.context`, so its sessions
    /// skip building it (false, the safe side, in records stored before this existed).
    #[serde(default)]
    skip_context: bool,
    /// A redriven Map or Parallel state's progress from the failed attempt, used when the
    /// state runs next (see [`Resume`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<Box<Children>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum TimerFor {
    Wait(u64),
    Retry(u64),
    TaskTimeout(u64),
    Heartbeat(u64),
    Execution,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskRec {
    thread: u64,
    resource: String,
    input: Value,
    token: String,
    timeout_s: Option<u64>,
    heartbeat_s: Option<u64>,
    heartbeat_timer: Option<u64>,
    submitted: bool,
}

/// A running or finished execution: everything needed to continue it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub stop_ms: Option<i64>,
    threads: BTreeMap<u64, Thread>,
    next_id: u64,
    next_event: i64,
    context: Value,
    token_prefix: String,
    region: String,
    rng: u64,
    timers: BTreeMap<u64, TimerFor>,
    tasks: BTreeMap<u64, TaskRec>,
    last_event: i64,
    input: Value,
    role_arn: String,
    /// Where RedriveExecution resumes: the top-level state that did not complete, its input,
    /// and the top-level variables at that point (see [`Execution::redrive`]).
    #[serde(default)]
    redrive_point: Option<(String, Value, Map<String, Value>)>,
    /// The progress of the redrive point's state when it is a Map or Parallel state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redrive_children: Option<Box<Children>>,
    /// Variables the top-level scope starts with (TestState's `variables`).
    #[serde(default)]
    initial_vars: Map<String, Value>,
    /// The last error a Retry or Catch took: `(error, cause, retried)` (TestState reports
    /// it as RETRIABLE or CAUGHT_ERROR).
    #[serde(default)]
    pub last_handled: Option<(String, String, bool)>,
    /// Which retrier and catcher handled the last error (TestState; not kept in records).
    #[serde(skip)]
    pub error_handling: ErrorHandling,
    /// Retries the first state entered counts as already made (TestState's
    /// `stateConfiguration.retrierRetryCount`).
    #[serde(skip)]
    seed_retries: u32,
    /// No history events are built (Express executions, whose history nobody reads): event
    /// ids still advance, so messages that name them stay right.
    #[serde(default)]
    quiet: bool,
}

type Fault = (String, String);

fn runtime(cause: impl Into<String>) -> Fault {
    ("States.Runtime".into(), cause.into())
}

fn query(cause: String) -> Fault {
    ("States.QueryEvaluationError".into(), cause)
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn payload(v: &Value) -> String {
    v.to_string()
}

/// `(resourceType, resource)` of a Task's resource ARN as history reports it, and which
/// family of events it gets.
fn resource_kind(resource: &str) -> (String, String, Family) {
    if resource == DISTRIBUTED_MAP {
        return (String::new(), String::new(), Family::MapRun);
    }
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        if let Some(sdk) = rest.strip_prefix("aws-sdk:") {
            let (svc, action) = sdk.split_once(':').unwrap_or((sdk, ""));
            return (format!("aws-sdk:{svc}"), action.to_string(), Family::Task);
        }
        let (svc, action) = rest.split_once(':').unwrap_or((rest, ""));
        return (svc.to_string(), action.to_string(), Family::Task);
    }
    let parts: Vec<&str> = resource.split(':').collect();
    match parts.get(2) {
        Some(&"lambda") => ("lambda".into(), resource.into(), Family::Lambda),
        Some(&"states") if parts.get(5) == Some(&"activity") => {
            ("activity".into(), resource.into(), Family::Activity)
        }
        _ => ("unknown".into(), resource.into(), Family::Task),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Family {
    Task,
    Lambda,
    Activity,
    MapRun,
}

/// The resource of the task a Distributed Map state runs as: its input is
/// `{"State": the Map state's JSON, "Input": its effective input, "Context": $$}`; the host
/// answers `TaskSubmitted` with `{"mapRunArn"}` (history: MapRunStarted; with a
/// `redriveCount`, MapRunRedriven), then the map's
/// result (MapRunSucceeded) or error (MapRunFailed, then Retry/Catch as for any state).
pub const DISTRIBUTED_MAP: &str = "arn:aws:states:::tsumiki:distributedMap";

/// Renders a payload template (`ItemSelector`, `ItemReader.Parameters`, ...) on `input` with
/// the context object `context`, for a host that runs part of a state itself (Distributed
/// Map). Errors are `(error, cause)`.
pub fn render_template(
    template: &Value,
    input: &Value,
    context: &Value,
    state: &str,
) -> Result<Value, (String, String)> {
    let mut diags = Vec::new();
    let t = crate::asl::definition::template(&mut diags, template, "");
    if let Some(d) = diags.first() {
        return Err(runtime(d.message.clone()));
    }
    let dummy = Execution::new(StartSpec {
        execution_arn: String::new(),
        name: String::new(),
        state_machine_arn: String::new(),
        state_machine_name: String::new(),
        role_arn: String::new(),
        region: String::new(),
        input: Value::Null,
        start_ms: 0,
        token_prefix: String::new(),
        seed: 0,
    });
    let cell = OnceCell::new();
    let _ = cell.set(context.clone());
    let ctx = Ctx {
        exec: &dummy,
        tid: 0,
        state,
        entered_ms: 0,
        retry_count: 0,
        token: None,
        map_item: None,
        cell,
    };
    let mut rng = 0x2545_f491_4f6c_dd1d;
    render(&t, input, &ctx, &mut rng)
}

/// Whether a catcher's or retrier's error list takes `error`.
fn error_matches(list: &[String], error: &str) -> bool {
    list.iter().any(|e| {
        e == error
            || (e == "States.ALL" && error != "States.Runtime")
            || (e == "States.TaskFailed"
                && !matches!(
                    error,
                    "States.Timeout" | "States.Runtime" | "States.HeartbeatTimeout"
                ))
    })
}

/// The `$$` object, built only when a path or intrinsic asks for it; it carries the
/// variables in scope under [`VARS_KEY`] (see `path.rs`).
struct Ctx<'a> {
    exec: &'a Execution,
    tid: u64,
    state: &'a str,
    entered_ms: i64,
    retry_count: u32,
    token: Option<&'a str>,
    map_item: Option<(usize, &'a Value)>,
    cell: OnceCell<Value>,
}

impl Ctx<'_> {
    fn get(&self) -> &Value {
        self.cell.get_or_init(|| {
            let mut c = self.build();
            c[VARS_KEY] = Value::Object(self.exec.visible_vars(self.tid));
            c
        })
    }

    /// The context object itself (without the variables).
    fn build(&self) -> Value {
        {
            let mut c = self.exec.context.clone();
            let mut exec = c["Execution"].take();
            exec["Input"] = self.exec.input.clone();
            exec["RoleArn"] = Value::String(self.exec.role_arn.clone());
            c["Execution"] = exec;
            c["State"] = json!({
                "EnteredTime": iso(self.entered_ms),
                "Name": self.state,
                "RetryCount": self.retry_count,
            });
            if let Some(t) = self.token {
                c["Task"] = json!({ "Token": t });
            }
            if let Some((i, v)) = self.map_item {
                c["Map"] = json!({ "Item": { "Index": i, "Value": v } });
            }
            c
        }
    }

    /// A JSONata session for this state: `$states` from `input`, `result`, `error_output`
    /// and this context; the variables in scope.
    fn session(
        &self,
        input: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
        now: i64,
    ) -> Session {
        let skip_context = self
            .exec
            .threads
            .get(&self.tid)
            .is_some_and(|t| t.skip_context);
        let vars = self.exec.visible_vars(self.tid);
        let mut states = Map::new();
        states.insert("input".into(), input.clone());
        if let Some(r) = result {
            states.insert("result".into(), r.clone());
        }
        if let Some(e) = error_output {
            states.insert("errorOutput".into(), e.clone());
        }
        if !skip_context {
            states.insert("context".into(), self.build());
        }
        let entered = self
            .exec
            .threads
            .get(&self.tid)
            .map_or(0, |t| t.entered_event);
        Session::new(
            Value::Object(states),
            vars,
            now,
            self.exec.rng,
            format!(
                "An error occurred while executing the state '{}' (entered at the event id #{entered}).",
                self.state
            ),
        )
    }
}

/// Evaluates a JSONata `Assign` into the variables it sets.
fn eval_assign(
    sess: &mut Session,
    assign: Option<&Assign>,
    field: &str,
    into: &mut Map<String, Value>,
) -> Result<(), Fault> {
    if let Some(Assign::Ata(a)) = assign
        && let Value::Object(m) = sess.eval(a, field).map_err(query)?
    {
        into.extend(m);
    }
    Ok(())
}

impl Execution {
    pub fn new(spec: StartSpec) -> Execution {
        let context = json!({
            "Execution": {
                "Id": spec.execution_arn,
                "Name": spec.name,
                "StartTime": iso(spec.start_ms),
                "RedriveCount": 0,
            },
            "StateMachine": { "Id": spec.state_machine_arn, "Name": spec.state_machine_name },
        });
        Execution {
            status: Status::Running,
            output: None,
            error: None,
            cause: None,
            stop_ms: None,
            threads: BTreeMap::new(),
            next_id: 1,
            next_event: 1,
            context,
            token_prefix: spec.token_prefix,
            region: spec.region,
            rng: spec.seed,
            timers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            last_event: 0,
            input: spec.input,
            role_arn: spec.role_arn,
            redrive_point: None,
            redrive_children: None,
            initial_vars: Map::new(),
            last_handled: None,
            error_handling: ErrorHandling::default(),
            seed_retries: 0,
            quiet: false,
        }
    }

    /// Builds no history events from now on (see the `quiet` field). A 10-Pass execution
    /// spent a third of its interpreter time serializing inputs and outputs into events.
    pub fn without_history(mut self) -> Execution {
        self.quiet = true;
        self
    }

    /// Variables the execution starts with, as TestState's `variables` sets them; call
    /// before [`Input::Start`].
    pub fn seed_variables(&mut self, vars: Map<String, Value>) {
        self.initial_vars = vars;
    }

    /// Counts `n` retries as made by every retrier of the first state entered (TestState's
    /// `retrierRetryCount`); call before [`Input::Start`].
    pub fn seed_retry_count(&mut self, n: u32) {
        self.seed_retries = n;
    }

    /// Evaluates the Map state `state` of `def` on the execution's input and variables (see
    /// [`MapSettings`]); `items` stands for what an ItemReader would read. TestState, which
    /// answers a Map with a mock, simulates failed iterations against the result.
    pub fn map_settings(
        &mut self,
        def: &Definition,
        state: &str,
        items: Option<Vec<Value>>,
        now_ms: i64,
    ) -> Result<MapSettings, (String, String)> {
        let st = def
            .graphs
            .first()
            .and_then(|g| g.states.get(state))
            .ok_or_else(|| runtime(format!("The state '{state}' does not exist")))?;
        let tid = self.new_id();
        let input = self.input.clone();
        self.threads.insert(
            tid,
            Thread {
                graph: 0,
                state: state.to_string(),
                input: input.clone(),
                status: TStatus::Ready,
                parent: None,
                index: 0,
                retries: Vec::new(),
                retry_total: 0,
                entered_ms: now_ms,
                last_event: 0,
                map_item: None,
                vars: self.initial_vars.clone(),
                entered_event: 0,
                skip_context: false,
                resume: None,
            },
        );
        let r = apply_input_path(st, &input)
            .and_then(|effective| self.map_params(st, tid, &input, &effective, items, now_ms));
        self.threads.remove(&tid);
        r
    }

    /// The top-level scope's variables (empty once the execution has finished).
    pub fn variables(&self) -> Map<String, Value> {
        self.threads
            .values()
            .find(|t| t.parent.is_none())
            .map(|t| t.vars.clone())
            .unwrap_or_default()
    }

    /// The variables a thread sees: its own scope's over its ancestors'.
    fn visible_vars(&self, tid: u64) -> Map<String, Value> {
        let mut chain = Vec::new();
        let mut cur = Some(tid);
        while let Some(id) = cur {
            let Some(t) = self.threads.get(&id) else {
                break;
            };
            chain.push(t);
            cur = t.parent;
        }
        let mut out = Map::new();
        for t in chain.into_iter().rev() {
            for (k, v) in &t.vars {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// Evaluates JSONPath `Assign` templates (`$` is `data`) into the variables they set.
    fn path_assign(
        &mut self,
        tid: u64,
        data: &Value,
        assigns: &[Option<&Assign>],
    ) -> Result<Option<Map<String, Value>>, Fault> {
        let mut out = None;
        for a in assigns {
            if let Some(Assign::Path(t)) = a {
                let mut rng = self.rng;
                let v = render(t, data, &self.ctx(tid, None), &mut rng)?;
                self.rng = rng;
                if let Value::Object(m) = v {
                    out.get_or_insert_with(Map::new).extend(m);
                }
            }
        }
        Ok(out)
    }

    /// A JSONata state's output (its `Output`, or `default`) and assignments.
    #[allow(clippy::too_many_arguments)]
    fn jsonata_exit(
        &mut self,
        tid: u64,
        input: &Value,
        result: Option<&Value>,
        error_output: Option<&Value>,
        default: Value,
        output: Option<(&Ata, &str)>,
        assigns: &[(Option<&Assign>, &str)],
        now: i64,
    ) -> Result<(Value, Option<Map<String, Value>>), Fault> {
        let mut sess = self
            .ctx(tid, None)
            .session(input, result, error_output, now);
        let out = match output {
            Some((o, field)) => sess.eval(o, field).map_err(query)?,
            None => default,
        };
        let mut vars = Map::new();
        for (a, field) in assigns {
            eval_assign(&mut sess, *a, field, &mut vars)?;
        }
        self.rng = sess.rng();
        let assigned = assigns.iter().any(|(a, _)| a.is_some());
        Ok((out, assigned.then_some(vars)))
    }

    /// The commands still in force: what a restarted service must redo (timers, and tasks
    /// not yet handed over to a token holder).
    pub fn pending(&self) -> Vec<Command> {
        let mut out = Vec::new();
        for (id, t) in &self.tasks {
            if !t.submitted {
                out.push(Command::RunTask {
                    task: *id,
                    resource: t.resource.clone(),
                    input: t.input.clone(),
                    token: t.token.clone(),
                    timeout_s: t.timeout_s,
                    heartbeat_s: t.heartbeat_s,
                });
            }
        }
        out
    }

    /// Timers in force, with the task or state they belong to; the service keeps their
    /// deadlines beside the execution (see [`Effects`]).
    pub fn timer_ids(&self) -> Vec<u64> {
        self.timers.keys().copied().collect()
    }

    /// The task a token names, when it is still waiting.
    pub fn task_for_token(&self, token: &str) -> Option<u64> {
        let n: u64 = token.strip_prefix(&self.token_prefix)?.parse().ok()?;
        self.tasks.contains_key(&n).then_some(n)
    }

    pub fn task_resource(&self, task: u64) -> Option<&str> {
        self.tasks.get(&task).map(|t| t.resource.as_str())
    }

    /// Whether [`Execution::redrive`] has a state to resume at.
    pub fn redrivable(&self) -> bool {
        matches!(
            self.status,
            Status::Failed | Status::TimedOut | Status::Aborted
        ) && self.redrive_point.is_some()
    }

    /// RedriveExecution: runs a failed, timed-out or aborted execution again from the
    /// top-level state that did not complete, with the input that state had; the states that
    /// completed before it are not run again. In an inline Map or Parallel state only the
    /// iterations or branches that did not succeed run again (each from the state where it
    /// stopped); the others' results are kept. `None` when the execution is not redrivable.
    pub fn redrive(
        &mut self,
        def: &Definition,
        redrive_count: u64,
        now_ms: i64,
    ) -> Option<Effects> {
        if !self.redrivable() {
            return None;
        }
        let (state, input, vars) = self.redrive_point.take()?;
        let children = self.redrive_children.take();
        let mut fx = Effects::default();
        self.status = Status::Running;
        self.output = None;
        self.error = None;
        self.cause = None;
        self.stop_ms = None;
        self.context["Execution"]["RedriveCount"] = json!(redrive_count);
        self.emit(
            None,
            now_ms,
            "ExecutionRedriven",
            Some("executionRedrivenEventDetails"),
            json!({ "redriveCount": redrive_count }),
            &mut fx,
        );
        self.begin_top_level(def, state, input, vars, children, now_ms, &mut fx);
        self.run(def, now_ms, &mut fx);
        Some(fx)
    }

    /// Arms the execution's `TimeoutSeconds` and adds the top-level thread at `state` (a start,
    /// or a redrive resuming where the execution failed).
    #[allow(clippy::too_many_arguments)]
    fn begin_top_level(
        &mut self,
        def: &Definition,
        state: String,
        input: Value,
        vars: Map<String, Value>,
        resume: Option<Box<Children>>,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        if let Some(t) = def.timeout_seconds {
            let id = self.new_id();
            self.timers.insert(id, TimerFor::Execution);
            fx.commands.push(Command::StartTimer {
                timer: id,
                at_ms: now_ms + t as i64 * 1000,
            });
        }
        let tid = self.new_id();
        let last = self.last_event;
        self.threads.insert(
            tid,
            Thread {
                graph: 0,
                state,
                input,
                status: TStatus::Ready,
                parent: None,
                index: 0,
                retries: Vec::new(),
                retry_total: 0,
                entered_ms: now_ms,
                last_event: last,
                map_item: None,
                vars,
                entered_event: 0,
                skip_context: false,
                resume,
            },
        );
    }

    pub fn step(&mut self, def: &Definition, input: Input, now_ms: i64) -> Effects {
        let mut fx = Effects::default();
        if self.status != Status::Running {
            return fx;
        }
        match input {
            Input::Start => {
                let details = if self.quiet {
                    Value::Null
                } else {
                    json!({
                        "input": payload(&self.input),
                        "inputDetails": { "truncated": false },
                        "roleArn": self.role_arn,
                    })
                };
                self.emit(
                    None,
                    now_ms,
                    "ExecutionStarted",
                    Some("executionStartedEventDetails"),
                    details,
                    &mut fx,
                );
                let (state, input) = (def.graphs[0].start_at.clone(), self.input.clone());
                let vars = std::mem::take(&mut self.initial_vars);
                self.begin_top_level(def, state, input, vars, None, now_ms, &mut fx);
            }
            Input::TaskSucceeded { task, output } => {
                if let Some(rec) = self.tasks.remove(&task) {
                    self.drop_task_timers(task);
                    let (rtype, res, fam) = resource_kind(&rec.resource);
                    let (kind, key, details) = match fam {
                        Family::Lambda => (
                            "LambdaFunctionSucceeded",
                            "lambdaFunctionSucceededEventDetails",
                            json!({"output": payload(&output), "outputDetails": {"truncated": false}}),
                        ),
                        Family::Activity => (
                            "ActivitySucceeded",
                            "activitySucceededEventDetails",
                            json!({"output": payload(&output), "outputDetails": {"truncated": false}}),
                        ),
                        Family::Task => (
                            "TaskSucceeded",
                            "taskSucceededEventDetails",
                            json!({"resourceType": rtype, "resource": res, "output": payload(&output), "outputDetails": {"truncated": false}}),
                        ),
                        Family::MapRun => ("MapRunSucceeded", "", Value::Null),
                    };
                    let key = (!key.is_empty()).then_some(key);
                    self.emit(Some(rec.thread), now_ms, kind, key, details, &mut fx);
                    self.finish_work(def, rec.thread, output, now_ms, &mut fx);
                }
            }
            Input::TaskFailed { task, error, cause } => {
                if let Some(rec) = self.tasks.remove(&task) {
                    self.drop_task_timers(task);
                    self.emit_task_failure(&rec, "Failed", &error, &cause, now_ms, &mut fx);
                    self.handle_error(def, rec.thread, error, cause, now_ms, &mut fx);
                }
            }
            Input::TaskSubmitted { task, output } => {
                if let Some(rec) = self.tasks.get_mut(&task) {
                    rec.submitted = true;
                    let rec = rec.clone();
                    let (rtype, res, fam) = resource_kind(&rec.resource);
                    if fam == Family::MapRun {
                        // A map run redriven with its parent reports its redrive count.
                        let (kind, key, details) = match output.get("redriveCount") {
                            Some(n) => (
                                "MapRunRedriven",
                                "mapRunRedrivenEventDetails",
                                json!({"mapRunArn": output.get("mapRunArn"), "redriveCount": n}),
                            ),
                            None => (
                                "MapRunStarted",
                                "mapRunStartedEventDetails",
                                json!({"mapRunArn": output.get("mapRunArn")}),
                            ),
                        };
                        self.emit(Some(rec.thread), now_ms, kind, Some(key), details, &mut fx);
                    } else if fam == Family::Activity {
                        self.emit(
                            Some(rec.thread),
                            now_ms,
                            "ActivityStarted",
                            Some("activityStartedEventDetails"),
                            json!({"workerName": output}),
                            &mut fx,
                        );
                    } else {
                        self.emit(Some(rec.thread), now_ms, "TaskSubmitted", Some("taskSubmittedEventDetails"), json!({"resourceType": rtype, "resource": res, "output": payload(&output), "outputDetails": {"truncated": false}}), &mut fx);
                    }
                }
            }
            Input::TaskHeartbeat { task } => {
                if let Some(rec) = self.tasks.get(&task)
                    && let Some(hb) = rec.heartbeat_s
                {
                    if let Some(old) = rec.heartbeat_timer {
                        self.timers.remove(&old);
                    }
                    let id = self.new_id();
                    self.timers.insert(id, TimerFor::Heartbeat(task));
                    if let Some(rec) = self.tasks.get_mut(&task) {
                        rec.heartbeat_timer = Some(id);
                    }
                    fx.commands.push(Command::StartTimer {
                        timer: id,
                        at_ms: now_ms + hb as i64 * 1000,
                    });
                }
            }
            Input::TimerFired { timer } => match self.timers.remove(&timer) {
                None => {}
                Some(TimerFor::Execution) => {
                    self.finish(
                        Status::TimedOut,
                        None,
                        Some("States.Timeout".into()),
                        Some("The execution timed out.".into()),
                    );
                    let details =
                        json!({"error": "States.Timeout", "cause": "The execution timed out."});
                    self.emit(
                        None,
                        now_ms,
                        "ExecutionTimedOut",
                        Some("executionTimedOutEventDetails"),
                        details,
                        &mut fx,
                    );
                    self.stop_ms = Some(now_ms);
                }
                Some(TimerFor::Wait(tid)) => {
                    if let Some(t) = self.threads.get(&tid)
                        && let TStatus::Waiting { output, assign, .. } = &t.status
                    {
                        let (output, assign) = (output.clone(), assign.clone());
                        self.exit_with(def, tid, output, None, assign, now_ms, &mut fx);
                    }
                }
                Some(TimerFor::Retry(tid)) => {
                    if let Some(t) = self.threads.get_mut(&tid) {
                        t.status = TStatus::Rerun;
                    }
                }
                Some(TimerFor::TaskTimeout(task)) | Some(TimerFor::Heartbeat(task)) => {
                    let heartbeat = self
                        .tasks
                        .get(&task)
                        .is_some_and(|r| r.heartbeat_timer == Some(timer));
                    if let Some(rec) = self.tasks.remove(&task) {
                        self.drop_task_timers(task);
                        let error = if heartbeat {
                            "States.HeartbeatTimeout"
                        } else {
                            "States.Timeout"
                        };
                        let cause = String::new();
                        self.emit_task_failure(&rec, "TimedOut", error, &cause, now_ms, &mut fx);
                        self.handle_error(def, rec.thread, error.into(), cause, now_ms, &mut fx);
                    }
                }
            },
            Input::Stop { error, cause } => {
                let mut details = Map::new();
                if let Some(e) = &error {
                    details.insert("error".into(), Value::String(e.clone()));
                }
                if let Some(c) = &cause {
                    details.insert("cause".into(), Value::String(c.clone()));
                }
                self.finish(Status::Aborted, None, error, cause);
                self.emit(
                    None,
                    now_ms,
                    "ExecutionAborted",
                    Some("executionAbortedEventDetails"),
                    Value::Object(details),
                    &mut fx,
                );
                self.stop_ms = Some(now_ms);
            }
        }
        self.run(def, now_ms, &mut fx);
        fx
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn emit(
        &mut self,
        tid: Option<u64>,
        now: i64,
        kind: &str,
        key: Option<&str>,
        details: Value,
        fx: &mut Effects,
    ) {
        let id = self.next_event;
        self.next_event += 1;
        let previous_id = match tid.and_then(|t| self.threads.get(&t)) {
            Some(t) => t.last_event,
            None => self.last_event,
        };
        if let Some(t) = tid.and_then(|t| self.threads.get_mut(&t)) {
            t.last_event = id;
        }
        self.last_event = id;
        if self.quiet {
            return;
        }
        fx.events.push(HistoryEvent {
            id,
            previous_id,
            timestamp_ms: now,
            kind: kind.to_string(),
            details_key: key.map(str::to_string),
            details,
        });
    }

    fn emit_task_failure(
        &mut self,
        rec: &TaskRec,
        what: &str,
        error: &str,
        cause: &str,
        now: i64,
        fx: &mut Effects,
    ) {
        let (rtype, res, fam) = resource_kind(&rec.resource);
        let prefix = match fam {
            Family::Lambda => "LambdaFunction",
            Family::Activity => "Activity",
            Family::Task => "Task",
            Family::MapRun => "MapRun",
        };
        let kind = format!("{prefix}{what}");
        let mut key = String::new();
        for (i, c) in kind.chars().enumerate() {
            key.push(if i == 0 { c.to_ascii_lowercase() } else { c });
        }
        key.push_str("EventDetails");
        let details = if fam == Family::Task {
            json!({"resourceType": rtype, "resource": res, "error": error, "cause": cause})
        } else {
            json!({"error": error, "cause": cause})
        };
        self.emit(Some(rec.thread), now, &kind, Some(&key), details, fx);
    }

    fn drop_task_timers(&mut self, task: u64) {
        self.timers.retain(
            |_, t| !matches!(t, TimerFor::TaskTimeout(x) | TimerFor::Heartbeat(x) if *x == task),
        );
    }

    fn finish(
        &mut self,
        status: Status,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    ) {
        if status == Status::Succeeded {
            self.redrive_point = None;
            self.redrive_children = None;
        } else if let Some(tid) = self
            .threads
            .iter()
            .find_map(|(id, t)| t.parent.is_none().then_some(*id))
            && let Some(r) = self.snapshot(tid)
        {
            self.redrive_point = Some((r.state, r.input, r.vars));
            self.redrive_children = r.children;
        }
        self.status = status;
        self.output = output;
        self.error = error;
        self.cause = cause;
        self.threads.clear();
        self.timers.clear();
        self.tasks.clear();
    }

    /// Runs every thread that can move until all wait on the outside world.
    fn run(&mut self, def: &Definition, now: i64, fx: &mut Effects) {
        while self.status == Status::Running {
            let Some((tid, rerun)) = self.threads.iter().find_map(|(id, t)| match t.status {
                TStatus::Ready => Some((*id, false)),
                TStatus::Rerun => Some((*id, true)),
                _ => None,
            }) else {
                return;
            };
            self.exec_state(def, tid, !rerun, now, fx);
        }
    }

    fn exec_state(
        &mut self,
        def: &Definition,
        tid: u64,
        entering: bool,
        now: i64,
        fx: &mut Effects,
    ) {
        let (graph, name) = {
            let t = &self.threads[&tid];
            (t.graph, t.state.clone())
        };
        let Some(st) = def.graphs.get(graph).and_then(|g| g.states.get(&name)) else {
            self.fail_thread(
                def,
                tid,
                "States.Runtime".into(),
                format!("The state '{name}' does not exist"),
                now,
                fx,
            );
            return;
        };
        if entering {
            let input = if self.quiet {
                String::new()
            } else {
                payload(&self.threads[&tid].input)
            };
            let seed = std::mem::take(&mut self.seed_retries);
            if let Some(t) = self.threads.get_mut(&tid) {
                t.entered_ms = now;
                t.retries = vec![seed; st.retry.len()];
                t.retry_total = seed;
            }
            if self.quiet {
                self.emit(Some(tid), now, "", None, Value::Null, fx);
            } else {
                let kind = format!("{}StateEntered", st.type_name);
                self.emit(
                    Some(tid),
                    now,
                    &kind,
                    Some("stateEnteredEventDetails"),
                    json!({"name": name, "input": input, "inputDetails": {"truncated": false}}),
                    fx,
                );
            }
            if let Some(t) = self.threads.get_mut(&tid) {
                t.entered_event = t.last_event;
            }
        }
        if let Some(t) = self.threads.get_mut(&tid) {
            t.skip_context = st.jsonata && !st.reads_context;
        }
        let raw = self.threads[&tid].input.clone();
        let resume = self.threads.get_mut(&tid).and_then(|t| t.resume.take());
        if let Err((error, cause)) = self.run_state(def, st, tid, raw, resume, now, fx) {
            self.handle_error(def, tid, error, cause, now, fx);
        }
    }

    fn ctx<'a>(&'a self, tid: u64, token: Option<&'a str>) -> Ctx<'a> {
        let t = &self.threads[&tid];
        Ctx {
            exec: self,
            tid,
            state: &t.state,
            entered_ms: t.entered_ms,
            retry_count: t.retry_total,
            token,
            map_item: t.map_item.as_ref().map(|(i, v)| (*i, v)),
            cell: OnceCell::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_state(
        &mut self,
        def: &Definition,
        st: &State,
        tid: u64,
        raw: Value,
        resume: Option<Box<Children>>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), Fault> {
        let effective = apply_input_path(st, &raw)?;
        match &st.kind {
            Kind::Pass { result } => {
                if st.jsonata {
                    let (output, assign) = self.jsonata_exit(
                        tid,
                        &raw,
                        None,
                        None,
                        raw.clone(),
                        st.output.as_ref().map(|o| (o, "Output")),
                        &[(st.assign.as_ref(), "Assign")],
                        now,
                    )?;
                    self.exit_with(def, tid, output, None, assign, now, fx);
                    return Ok(());
                }
                let result = if let Some(p) = &st.parameters {
                    let mut rng = self.rng;
                    let r = render(p, &effective, &self.ctx(tid, None), &mut rng)?;
                    self.rng = rng;
                    r
                } else if let Some(r) = result {
                    r.clone()
                } else {
                    effective
                };
                let assign = self.path_assign(tid, &result, &[st.assign.as_ref()])?;
                let output = apply_result(st, st.result_path.as_ref(), &raw, result)?;
                let output = apply_output_path(st, output)?;
                self.exit_with(def, tid, output, None, assign, now, fx);
            }
            Kind::Succeed => {
                let output = if st.jsonata {
                    self.jsonata_exit(
                        tid,
                        &raw,
                        None,
                        None,
                        raw.clone(),
                        st.output.as_ref().map(|o| (o, "Output")),
                        &[],
                        now,
                    )?
                    .0
                } else {
                    apply_output_path(st, effective)?
                };
                self.exit_state(def, tid, output, None, now, fx);
            }
            Kind::Choice {
                choices,
                extras,
                default,
            } => {
                let mut sess = st
                    .jsonata
                    .then(|| self.ctx(tid, None).session(&raw, None, None, now));
                let mut picked = None;
                {
                    let ctx = self.ctx(tid, None);
                    for (i, (rule, _)) in choices.iter().enumerate() {
                        let cond = extras.get(i).and_then(|e| e.condition.as_ref());
                        let hit = match (cond, sess.as_mut()) {
                            (Some(cond), Some(sess)) => {
                                let field = format!("Choices[{i}]/Condition");
                                match sess.eval(cond, &field).map_err(query)? {
                                    Value::Bool(b) => b,
                                    _ => {
                                        return Err(query(format!(
                                            "{} The JSONata expression specified for the field '{field}' did not return a boolean.",
                                            sess.prefix
                                        )));
                                    }
                                }
                            }
                            _ => choice::eval(rule, &effective, ctx.get()).map_err(runtime)?,
                        };
                        if hit {
                            picked = Some(i);
                            break;
                        }
                    }
                }
                if let Some(s) = &sess {
                    self.rng = s.rng();
                }
                let next = match picked {
                    Some(i) => choices[i].1.clone(),
                    None => default.clone().ok_or_else(|| {
                        (
                            "States.NoChoiceMatched".to_string(),
                            "No Matches!".to_string(),
                        )
                    })?,
                };
                let extra = picked.and_then(|i| extras.get(i).map(|e| (i, e)));
                if st.jsonata {
                    let rule_out = extra.and_then(|(i, e)| {
                        e.output
                            .as_ref()
                            .map(|o| (o, format!("Choices[{i}]/Output")))
                    });
                    let out = rule_out
                        .as_ref()
                        .map(|(o, f)| (*o, f.as_str()))
                        .or_else(|| st.output.as_ref().map(|o| (o, "Output")));
                    let rule_field = extra.map(|(i, _)| format!("Choices[{i}]/Assign"));
                    let (output, assign) = self.jsonata_exit(
                        tid,
                        &raw,
                        None,
                        None,
                        raw.clone(),
                        out,
                        &[
                            (st.assign.as_ref(), "Assign"),
                            (
                                extra.and_then(|(_, e)| e.assign.as_ref()),
                                rule_field.as_deref().unwrap_or("Assign"),
                            ),
                        ],
                        now,
                    )?;
                    self.exit_with(def, tid, output, Some(next), assign, now, fx);
                } else {
                    let assign = self.path_assign(
                        tid,
                        &effective,
                        &[
                            st.assign.as_ref(),
                            extra.and_then(|(_, e)| e.assign.as_ref()),
                        ],
                    )?;
                    let output = apply_output_path(st, effective)?;
                    self.exit_with(def, tid, output, Some(next), assign, now, fx);
                }
            }
            Kind::Wait {
                seconds,
                timestamp,
                timestamp_path,
                timestamp_expr,
            } => {
                let mut sess = st
                    .jsonata
                    .then(|| self.ctx(tid, None).session(&raw, None, None, now));
                let ctx = self.ctx(tid, None);
                let at_ms = if let Some(s) = seconds {
                    let root = match s {
                        Seconds::Path(p) if p.context => ctx.get(),
                        _ => &effective,
                    };
                    now + seconds_value(s, root, "SecondsPath", sess.as_mut())? as i64 * 1000
                } else {
                    let text = match (timestamp, timestamp_path, timestamp_expr, sess.as_mut()) {
                        (Some(t), _, _, _) => t.clone(),
                        (None, _, Some(e), Some(sess)) => match sess.eval(e, "Timestamp").map_err(query)? {
                            Value::String(s) => s,
                            _ => return Err(query(format!("{} The JSONata expression specified for the field 'Timestamp' did not return a string.", sess.prefix))),
                        },
                        (None, Some(p), _, _) => p
                            .eval(if p.context { ctx.get() } else { &effective })
                            .and_then(|v| v.as_str().map(str::to_string))
                            .ok_or_else(|| runtime(format!("Invalid path '{}': The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string.", p.text)))?,
                        _ => return Err(runtime("A Wait state needs a duration")),
                    };
                    let ns = choice::parse_timestamp(&text).ok_or_else(|| runtime(format!("The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {text}")))?;
                    (ns / 1_000_000) as i64
                };
                drop(ctx);
                let (output, assign) = match sess {
                    Some(mut sess) => {
                        let output = match &st.output {
                            Some(o) => sess.eval(o, "Output").map_err(query)?,
                            None => raw.clone(),
                        };
                        let mut vars = Map::new();
                        eval_assign(&mut sess, st.assign.as_ref(), "Assign", &mut vars)?;
                        self.rng = sess.rng();
                        (output, st.assign.is_some().then_some(vars))
                    }
                    None => {
                        let assign = self.path_assign(tid, &effective, &[st.assign.as_ref()])?;
                        (apply_output_path(st, effective)?, assign)
                    }
                };
                let timer = self.new_id();
                self.timers.insert(timer, TimerFor::Wait(tid));
                fx.commands.push(Command::StartTimer {
                    timer,
                    at_ms: at_ms.max(now),
                });
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.status = TStatus::Waiting {
                        timer,
                        output,
                        assign,
                    };
                }
            }
            Kind::Fail {
                error,
                cause,
                error_path,
                cause_path,
                error_expr,
                cause_expr,
            } => {
                let ctx = self.ctx(tid, None);
                let mut sess = st.jsonata.then(|| ctx.session(&raw, None, None, now));
                let mut rng = self.rng;
                let mut resolve = |fixed: &Option<String>,
                                   src: &Option<ErrorSource>,
                                   expr: &Option<Ata>,
                                   field: &str|
                 -> Result<Option<String>, Fault> {
                    if let Some(f) = fixed {
                        return Ok(Some(f.clone()));
                    }
                    if let (Some(e), Some(sess)) = (expr, sess.as_mut()) {
                        return match sess.eval(e, field).map_err(query)? {
                            Value::String(s) => Ok(Some(s)),
                            _ => Err(query(format!(
                                "{} The JSONata expression specified for the field '{field}' did not return a string.",
                                sess.prefix
                            ))),
                        };
                    }
                    let v = match src {
                        None => return Ok(None),
                        Some(ErrorSource::Path(p)) => {
                            p.eval(if p.context { ctx.get() } else { &raw })
                        }
                        Some(ErrorSource::Intrinsic(c)) => Some(
                            intrinsics::eval(c, &raw, ctx.get(), &mut rng)
                                .map_err(|m| ("States.IntrinsicFailure".to_string(), m))?,
                        ),
                    };
                    match v {
                        Some(Value::String(s)) => Ok(Some(s)),
                        _ => Err(runtime(
                            "The ErrorPath or CausePath of a Fail state must name a string",
                        )),
                    }
                };
                let e = resolve(error, error_path, error_expr, "Error")?;
                let c = resolve(cause, cause_path, cause_expr, "Cause")?;
                let rng = sess.as_ref().map_or(rng, Session::rng);
                self.rng = rng;
                self.fail_thread(
                    def,
                    tid,
                    e.unwrap_or_default(),
                    c.unwrap_or_default(),
                    now,
                    fx,
                );
            }
            Kind::Task {
                resource,
                timeout,
                heartbeat,
            } => {
                let task = self.new_id();
                let token = format!("{}{}", self.token_prefix, task);
                let mut sess = st
                    .jsonata
                    .then(|| self.ctx(tid, Some(&token)).session(&raw, None, None, now));
                let params = match (&st.parameters, &st.arguments, sess.as_mut()) {
                    (_, Some(a), Some(sess)) => sess.eval(a, "Arguments").map_err(query)?,
                    (Some(p), _, _) => {
                        let mut rng = self.rng;
                        let r = render(p, &effective, &self.ctx(tid, Some(&token)), &mut rng)?;
                        self.rng = rng;
                        r
                    }
                    _ => effective.clone(),
                };
                let timeout_s = timeout
                    .as_ref()
                    .map(|s| seconds_value(s, &effective, "TimeoutSecondsPath", sess.as_mut()))
                    .transpose()?;
                let heartbeat_s = heartbeat
                    .as_ref()
                    .map(|s| seconds_value(s, &effective, "HeartbeatSecondsPath", sess.as_mut()))
                    .transpose()?;
                if let Some(s) = &sess {
                    self.rng = s.rng();
                }
                let (rtype, res, fam) = resource_kind(resource);
                match fam {
                    Family::Lambda => {
                        let mut d = json!({"resource": resource, "input": payload(&params), "inputDetails": {"truncated": false}});
                        if let Some(t) = timeout_s {
                            d["timeoutInSeconds"] = json!(t);
                        }
                        self.emit(
                            Some(tid),
                            now,
                            "LambdaFunctionScheduled",
                            Some("lambdaFunctionScheduledEventDetails"),
                            d,
                            fx,
                        );
                        self.emit(
                            Some(tid),
                            now,
                            "LambdaFunctionStarted",
                            None,
                            Value::Null,
                            fx,
                        );
                    }
                    Family::Activity => {
                        let mut d = json!({"resource": resource, "input": payload(&params), "inputDetails": {"truncated": false}});
                        if let Some(t) = timeout_s {
                            d["timeoutInSeconds"] = json!(t);
                        }
                        if let Some(h) = heartbeat_s {
                            d["heartbeatInSeconds"] = json!(h);
                        }
                        self.emit(
                            Some(tid),
                            now,
                            "ActivityScheduled",
                            Some("activityScheduledEventDetails"),
                            d,
                            fx,
                        );
                    }
                    // A Task state cannot name the Distributed Map's internal resource.
                    Family::MapRun => {}
                    Family::Task => {
                        let mut d = json!({"resourceType": rtype, "resource": res, "region": self.region, "parameters": payload(&params)});
                        if let Some(t) = timeout_s {
                            d["timeoutInSeconds"] = json!(t);
                        }
                        if let Some(h) = heartbeat_s {
                            d["heartbeatInSeconds"] = json!(h);
                        }
                        self.emit(
                            Some(tid),
                            now,
                            "TaskScheduled",
                            Some("taskScheduledEventDetails"),
                            d,
                            fx,
                        );
                        self.emit(
                            Some(tid),
                            now,
                            "TaskStarted",
                            Some("taskStartedEventDetails"),
                            json!({"resourceType": rtype, "resource": res}),
                            fx,
                        );
                    }
                }
                let mut heartbeat_timer = None;
                if let Some(t) = timeout_s {
                    let id = self.new_id();
                    self.timers.insert(id, TimerFor::TaskTimeout(task));
                    fx.commands.push(Command::StartTimer {
                        timer: id,
                        at_ms: now + t as i64 * 1000,
                    });
                }
                if let Some(h) = heartbeat_s {
                    let id = self.new_id();
                    self.timers.insert(id, TimerFor::Heartbeat(task));
                    heartbeat_timer = Some(id);
                    fx.commands.push(Command::StartTimer {
                        timer: id,
                        at_ms: now + h as i64 * 1000,
                    });
                }
                self.tasks.insert(
                    task,
                    TaskRec {
                        thread: tid,
                        resource: resource.clone(),
                        input: params.clone(),
                        token: token.clone(),
                        timeout_s,
                        heartbeat_s,
                        heartbeat_timer,
                        submitted: false,
                    },
                );
                fx.commands.push(Command::RunTask {
                    task,
                    resource: resource.clone(),
                    input: params,
                    token,
                    timeout_s,
                    heartbeat_s,
                });
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.status = TStatus::Task { task };
                }
            }
            Kind::Parallel { branches } => {
                let branch_input = match (&st.parameters, &st.arguments) {
                    (_, Some(a)) => {
                        let mut sess = self.ctx(tid, None).session(&raw, None, None, now);
                        let r = sess.eval(a, "Arguments").map_err(query)?;
                        self.rng = sess.rng();
                        r
                    }
                    (Some(p), _) => {
                        let mut rng = self.rng;
                        let r = render(p, &effective, &self.ctx(tid, None), &mut rng)?;
                        self.rng = rng;
                        r
                    }
                    _ => effective,
                };
                self.emit(
                    Some(tid),
                    now,
                    "ParallelStateStarted",
                    None,
                    Value::Null,
                    fx,
                );
                let total = branches.len();
                // A redrive runs again only the branches that did not succeed.
                let (mut results, done, mut resume) =
                    match resume.filter(|c| !c.map && c.total == total) {
                        Some(c) => (c.results, c.done, c.resume),
                        None => (vec![Value::Null; total], Vec::new(), BTreeMap::new()),
                    };
                results.resize(total, Value::Null);
                let mut running = BTreeMap::new();
                for (i, g) in branches.iter().enumerate() {
                    if done.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    let child = match resume.remove(&i) {
                        Some(r) => self.spawn_resumed(def, tid, *g, i, r, None),
                        None => self.spawn(def, tid, *g, i, branch_input.clone(), None),
                    };
                    running.insert(child, i);
                }
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.status = TStatus::Children(Box::new(Children {
                        map: false,
                        effective: Value::Null,
                        items: Vec::new(),
                        results,
                        running,
                        next: total,
                        total,
                        max_concurrency: 0,
                        failures: 0,
                        tolerated_count: None,
                        tolerated_pct: None,
                        done,
                        resume: BTreeMap::new(),
                    }));
                }
                self.maybe_complete(def, tid, now, fx);
            }
            Kind::Map {
                distributed: Some(spec),
                ..
            } => {
                // The host runs a Distributed Map as one task: it answers `TaskSubmitted`
                // with the map run's ARN, then the map's result or error.
                let task = self.new_id();
                let token = format!("{}{}", self.token_prefix, task);
                let context = self.ctx(tid, None).get().clone();
                let input = json!({"State": spec, "Input": effective, "Context": context});
                self.tasks.insert(
                    task,
                    TaskRec {
                        thread: tid,
                        resource: DISTRIBUTED_MAP.into(),
                        input: input.clone(),
                        token: token.clone(),
                        timeout_s: None,
                        heartbeat_s: None,
                        heartbeat_timer: None,
                        submitted: false,
                    },
                );
                fx.commands.push(Command::RunTask {
                    task,
                    resource: DISTRIBUTED_MAP.into(),
                    input,
                    token,
                    timeout_s: None,
                    heartbeat_s: None,
                });
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.status = TStatus::Task { task };
                }
            }
            Kind::Map { .. } => {
                let MapSettings {
                    items,
                    max_concurrency,
                    tolerated_count,
                    tolerated_pct,
                } = self.map_params(st, tid, &raw, &effective, None, now)?;
                // ItemSelector sees the state's input (JSONPath: the effective input).
                let effective = if st.jsonata { raw.clone() } else { effective };
                let total = items.len();
                self.emit(
                    Some(tid),
                    now,
                    "MapStateStarted",
                    Some("mapStateStartedEventDetails"),
                    json!({"length": total}),
                    fx,
                );
                // A redrive runs again only the iterations that did not succeed (the same
                // input gives the same items).
                let (mut results, done, resume) = match resume.filter(|c| c.map && c.total == total)
                {
                    Some(c) => (c.results, c.done, c.resume),
                    None => (vec![Value::Null; total], Vec::new(), BTreeMap::new()),
                };
                results.resize(total, Value::Null);
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.status = TStatus::Children(Box::new(Children {
                        map: true,
                        effective,
                        items,
                        results,
                        running: BTreeMap::new(),
                        next: 0,
                        total,
                        max_concurrency,
                        failures: 0,
                        tolerated_count,
                        tolerated_pct,
                        done,
                        resume,
                    }));
                }
                self.fill_map(def, tid, now, fx)?;
                self.maybe_complete(def, tid, now, fx);
            }
        }
        Ok(())
    }

    /// A Map state's items, `MaxConcurrency` and tolerated failures, evaluated on its input
    /// `raw` (`effective`: after InputPath); `items_override` stands for an ItemReader's items.
    #[allow(clippy::too_many_arguments)]
    fn map_params(
        &mut self,
        st: &State,
        tid: u64,
        raw: &Value,
        effective: &Value,
        items_override: Option<Vec<Value>>,
        now: i64,
    ) -> Result<MapSettings, Fault> {
        let Kind::Map {
            items_path,
            max_concurrency,
            tolerated_count,
            tolerated_percentage,
            items: items_expr,
            ..
        } = &st.kind
        else {
            return Err(runtime(format!(
                "The state '{}' is not a Map state",
                st.name
            )));
        };
        let mut sess = st
            .jsonata
            .then(|| self.ctx(tid, None).session(raw, None, None, now));
        let items = match (items_override, items_path, items_expr, sess.as_mut()) {
            (Some(items), ..) => Value::Array(items),
            (None, _, Some(e), Some(sess)) => sess.eval(e, "Items").map_err(query)?,
            _ if st.jsonata => raw.clone(),
            (None, Some(p), _, _) if p.context => {
                p.eval(self.ctx(tid, None).get()).ok_or_else(|| {
                    runtime(format!(
                        "Invalid path '{}' : No results for path: {}",
                        p.text, p.text
                    ))
                })?
            }
            (None, Some(p), _, _) => p.eval(effective).ok_or_else(|| {
                runtime(format!(
                    "Invalid path '{}' : No results for path: {}",
                    p.text, p.text
                ))
            })?,
            _ => json!({}),
        };
        let Value::Array(items) = items else {
            if let Some(sess) = &sess {
                return Err(query(format!(
                    "{} The JSONata expression specified for the field 'Items' did not return a JSON array.",
                    sess.prefix
                )));
            }
            return Err(runtime(format!(
                "Item list did not resolve to a JSON array. ItemsPath: {}",
                items_path.as_ref().map(|p| p.text.as_str()).unwrap_or("$")
            )));
        };
        let max_concurrency = match max_concurrency {
            Some(s) => seconds_value(s, effective, "MaxConcurrencyPath", sess.as_mut())? as usize,
            None => 0,
        };
        let tolerated_count = tolerated_count
            .as_ref()
            .map(|s| seconds_value(s, effective, "ToleratedFailureCountPath", sess.as_mut()))
            .transpose()?;
        let tolerated_pct = match tolerated_percentage {
            Some(PercentSource::Fixed(f)) => Some(*f),
            Some(PercentSource::Ata(a)) => match sess.as_mut() {
                Some(sess) => Some(
                    sess.eval(a, "ToleratedFailurePercentage")
                        .map_err(query)?
                        .as_f64()
                        .filter(|f| (0.0..=100.0).contains(f))
                        .ok_or_else(|| {
                            query(format!("{} The JSONata expression specified for the field 'ToleratedFailurePercentage' did not return a number between 0 and 100.", sess.prefix))
                        })?,
                ),
                None => None,
            },
            Some(PercentSource::Path(p)) => {
                Some(p.eval(effective).and_then(|v| v.as_f64()).ok_or_else(|| {
                    runtime("ToleratedFailurePercentagePath must name a number")
                })?)
            }
            None => None,
        };
        if let Some(s) = &sess {
            self.rng = s.rng();
        }
        Ok(MapSettings {
            items,
            max_concurrency,
            tolerated_count,
            tolerated_pct,
        })
    }

    fn spawn(
        &mut self,
        def: &Definition,
        parent: u64,
        graph: usize,
        index: usize,
        input: Value,
        map_item: Option<(usize, Value)>,
    ) -> u64 {
        let id = self.new_id();
        let last = self.threads.get(&parent).map_or(0, |t| t.last_event);
        self.threads.insert(
            id,
            Thread {
                graph,
                state: def.graphs[graph].start_at.clone(),
                input,
                status: TStatus::Ready,
                parent: Some(parent),
                index,
                retries: Vec::new(),
                retry_total: 0,
                entered_ms: 0,
                last_event: last,
                map_item,
                vars: Map::new(),
                entered_event: 0,
                skip_context: false,
                resume: None,
            },
        );
        id
    }

    /// Adds a child thread that picks up where a failed or aborted one stopped (redrive).
    fn spawn_resumed(
        &mut self,
        def: &Definition,
        parent: u64,
        graph: usize,
        index: usize,
        r: Resume,
        map_item: Option<(usize, Value)>,
    ) -> u64 {
        let id = self.spawn(def, parent, graph, index, r.input, map_item);
        if let Some(t) = self.threads.get_mut(&id) {
            t.state = r.state;
            t.vars = r.vars;
            t.resume = r.children;
        }
        id
    }

    /// Where thread `tid` would resume on redrive: its state, input and variables and, in a
    /// Map or Parallel state, which children succeeded and where the others (its running
    /// ones included) resume.
    fn snapshot(&self, tid: u64) -> Option<Resume> {
        let t = self.threads.get(&tid)?;
        let children = match &t.status {
            TStatus::Children(ch) => {
                let mut ch = ch.clone();
                ch.done = ch.succeeded();
                for (child, index) in std::mem::take(&mut ch.running) {
                    if let Some(r) = self.snapshot(child) {
                        ch.resume.insert(index, r);
                    }
                }
                Some(ch)
            }
            _ => None,
        };
        Some(Resume {
            state: t.state.clone(),
            input: t.input.clone(),
            vars: t.vars.clone(),
            children,
        })
    }

    /// Aborts the running children of `tid` (a sibling failed, or the state's own evaluation
    /// did), keeping where each stood for a redrive.
    fn park_children(&mut self, tid: u64) {
        let running = match self.threads.get_mut(&tid).map(|t| &mut t.status) {
            Some(TStatus::Children(ch)) => std::mem::take(&mut ch.running),
            _ => BTreeMap::new(),
        };
        let parked: Vec<(usize, Resume)> = running
            .into_iter()
            .filter_map(|(child, index)| self.snapshot(child).map(|r| (index, r)))
            .collect();
        if let Some(TStatus::Children(ch)) = self.threads.get_mut(&tid).map(|t| &mut t.status) {
            ch.resume.extend(parked);
        }
        self.abort_children(tid);
    }

    /// Starts Map iterations up to the concurrency limit.
    fn fill_map(
        &mut self,
        def: &Definition,
        tid: u64,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), Fault> {
        let (graph, state_name) = {
            let t = &self.threads[&tid];
            (t.graph, t.state.clone())
        };
        let st = &def.graphs[graph].states[&state_name];
        let Kind::Map {
            processor,
            item_selector,
            item_selector_ata,
            ..
        } = &st.kind
        else {
            return Ok(());
        };
        let selector = item_selector.as_ref().or(st.parameters.as_ref());
        loop {
            let (index, item, effective, resumed) = {
                let Some(TStatus::Children(ch)) = self.threads.get_mut(&tid).map(|t| &mut t.status)
                else {
                    return Ok(());
                };
                // Iterations a redriven Map keeps from the failed attempt.
                while ch.next < ch.total && ch.done.get(ch.next).copied().unwrap_or(false) {
                    ch.next += 1;
                }
                if ch.next >= ch.total
                    || (ch.max_concurrency > 0 && ch.running.len() >= ch.max_concurrency)
                {
                    return Ok(());
                }
                let resumed = ch.resume.remove(&ch.next);
                let effective = match resumed {
                    Some(_) => Value::Null,
                    None => ch.effective.clone(),
                };
                (ch.next, ch.items[ch.next].clone(), effective, resumed)
            };
            if let Some(r) = resumed {
                self.emit(
                    Some(tid),
                    now,
                    "MapIterationStarted",
                    Some("mapIterationStartedEventDetails"),
                    json!({"name": state_name, "index": index}),
                    fx,
                );
                let child = self.spawn_resumed(def, tid, *processor, index, r, Some((index, item)));
                if let Some(TStatus::Children(ch)) =
                    self.threads.get_mut(&tid).map(|t| &mut t.status)
                {
                    ch.running.insert(child, index);
                    ch.next += 1;
                }
                continue;
            }
            let input = match (selector, item_selector_ata) {
                (_, Some(sel)) => {
                    let t = &self.threads[&tid];
                    let ctx = Ctx {
                        exec: self,
                        tid,
                        state: &t.state,
                        entered_ms: t.entered_ms,
                        retry_count: t.retry_total,
                        token: None,
                        map_item: Some((index, &item)),
                        cell: OnceCell::new(),
                    };
                    let mut sess = ctx.session(&effective, None, None, now);
                    let r = sess.eval(sel, "ItemSelector").map_err(query)?;
                    self.rng = sess.rng();
                    r
                }
                (Some(sel), _) => {
                    let t = &self.threads[&tid];
                    let ctx = Ctx {
                        exec: self,
                        tid,
                        state: &t.state,
                        entered_ms: t.entered_ms,
                        retry_count: t.retry_total,
                        token: None,
                        map_item: Some((index, &item)),
                        cell: OnceCell::new(),
                    };
                    let mut rng = self.rng;
                    let r = render(sel, &effective, &ctx, &mut rng)?;
                    self.rng = rng;
                    r
                }
                (None, None) => item.clone(),
            };
            self.emit(
                Some(tid),
                now,
                "MapIterationStarted",
                Some("mapIterationStartedEventDetails"),
                json!({"name": state_name, "index": index}),
                fx,
            );
            let child = self.spawn(def, tid, *processor, index, input, Some((index, item)));
            if let Some(TStatus::Children(ch)) = self.threads.get_mut(&tid).map(|t| &mut t.status) {
                ch.running.insert(child, index);
                ch.next += 1;
            }
        }
    }

    fn maybe_complete(&mut self, def: &Definition, tid: u64, now: i64, fx: &mut Effects) {
        let Some(TStatus::Children(ch)) = self.threads.get(&tid).map(|t| &t.status) else {
            return;
        };
        if !ch.running.is_empty() || ch.next < ch.total {
            return;
        }
        let map = ch.map;
        let results = Value::Array(ch.results.clone());
        let kind = if map {
            "MapStateSucceeded"
        } else {
            "ParallelStateSucceeded"
        };
        self.emit(Some(tid), now, kind, None, Value::Null, fx);
        self.finish_work(def, tid, results, now, fx);
    }

    /// A Task, Parallel or Map produced `result`: ResultSelector, ResultPath, OutputPath,
    /// then leave the state.
    fn finish_work(
        &mut self,
        def: &Definition,
        tid: u64,
        result: Value,
        now: i64,
        fx: &mut Effects,
    ) {
        let Some(t) = self.threads.get(&tid) else {
            return;
        };
        let st = &def.graphs[t.graph].states[&t.state];
        let raw = t.input.clone();
        let processed = (|| -> Result<(Value, Option<Map<String, Value>>), Fault> {
            if st.jsonata {
                return self.jsonata_exit(
                    tid,
                    &raw,
                    Some(&result),
                    None,
                    result.clone(),
                    st.output.as_ref().map(|o| (o, "Output")),
                    &[(st.assign.as_ref(), "Assign")],
                    now,
                );
            }
            let result = match &st.result_selector {
                Some(sel) => {
                    let mut rng = self.rng;
                    let r = render(sel, &result, &self.ctx(tid, None), &mut rng)?;
                    self.rng = rng;
                    r
                }
                None => result,
            };
            let assign = self.path_assign(tid, &result, &[st.assign.as_ref()])?;
            let output = apply_result(st, st.result_path.as_ref(), &raw, result)?;
            Ok((apply_output_path(st, output)?, assign))
        })();
        match processed {
            Ok((output, assign)) => self.exit_with(def, tid, output, None, assign, now, fx),
            Err((e, c)) => self.handle_error(def, tid, e, c, now, fx),
        }
    }

    /// Leaves the current state with `output`: to `next` (a Choice's pick), the state's Next,
    /// or the end of the thread.
    fn exit_state(
        &mut self,
        def: &Definition,
        tid: u64,
        output: Value,
        next: Option<String>,
        now: i64,
        fx: &mut Effects,
    ) {
        self.exit_with(def, tid, output, next, None, now, fx);
    }

    /// [`Self::exit_state`], assigning the state's variables as it leaves (so a failed exit
    /// assigns nothing, and every expression of the state read the values from before).
    #[allow(clippy::too_many_arguments)]
    fn exit_with(
        &mut self,
        def: &Definition,
        tid: u64,
        output: Value,
        next: Option<String>,
        assign: Option<Map<String, Value>>,
        now: i64,
        fx: &mut Effects,
    ) {
        let Some(t) = self.threads.get(&tid) else {
            return;
        };
        let st = &def.graphs[t.graph].states[&t.state];
        // Serialized once: for AWS's size limit and, unless quiet, the StateExited event.
        let output_text = payload(&output);
        if output_text.len() > MAX_PAYLOAD_BYTES {
            self.handle_error(def, tid, "States.DataLimitExceeded".into(), format!("The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.", st.name), now, fx);
            return;
        }
        if let Some(vars) = assign {
            if payload(&Value::Object(vars.clone())).len() > MAX_PAYLOAD_BYTES {
                self.handle_error(def, tid, "States.DataLimitExceeded".into(), format!("The state/task '{}' assigned variables with a size exceeding the maximum number of bytes service limit.", st.name), now, fx);
                return;
            }
            if let Some(t) = self.threads.get_mut(&tid) {
                t.vars.extend(vars);
            }
        }
        if self.quiet {
            self.emit(Some(tid), now, "", None, Value::Null, fx);
        } else {
            let kind = format!("{}StateExited", st.type_name);
            let name = st.name.clone();
            self.emit(
                Some(tid),
                now,
                &kind,
                Some("stateExitedEventDetails"),
                json!({"name": name, "output": output_text, "outputDetails": {"truncated": false}}),
                fx,
            );
        }
        match next.or_else(|| st.next.clone()) {
            Some(n) => {
                if let Some(t) = self.threads.get_mut(&tid) {
                    t.state = n;
                    t.input = output;
                    t.status = TStatus::Ready;
                }
            }
            None => self.end_thread(def, tid, output, now, fx),
        }
    }

    fn end_thread(
        &mut self,
        def: &Definition,
        tid: u64,
        output: Value,
        now: i64,
        fx: &mut Effects,
    ) {
        let Some(t) = self.threads.remove(&tid) else {
            return;
        };
        match t.parent {
            None => {
                let details = if self.quiet {
                    Value::Null
                } else {
                    json!({"output": payload(&output), "outputDetails": {"truncated": false}})
                };
                self.emit(
                    None,
                    now,
                    "ExecutionSucceeded",
                    Some("executionSucceededEventDetails"),
                    details,
                    fx,
                );
                self.finish(Status::Succeeded, Some(output), None, None);
                self.stop_ms = Some(now);
            }
            Some(parent) => {
                let map = {
                    let Some(TStatus::Children(ch)) =
                        self.threads.get_mut(&parent).map(|p| &mut p.status)
                    else {
                        return;
                    };
                    ch.running.remove(&tid);
                    ch.results[t.index] = output;
                    if let Some(d) = ch.done.get_mut(t.index) {
                        *d = true;
                    }
                    ch.map
                };
                if let Some(p) = self.threads.get_mut(&parent) {
                    p.last_event = p.last_event.max(t.last_event);
                }
                if map {
                    let name = self.threads[&parent].state.clone();
                    self.emit(
                        Some(parent),
                        now,
                        "MapIterationSucceeded",
                        Some("mapIterationSucceededEventDetails"),
                        json!({"name": name, "index": t.index}),
                        fx,
                    );
                    if let Err((e, c)) = self.fill_map(def, parent, now, fx) {
                        self.park_children(parent);
                        self.emit(Some(parent), now, "MapStateFailed", None, Value::Null, fx);
                        self.handle_error(def, parent, e, c, now, fx);
                        return;
                    }
                }
                self.maybe_complete(def, parent, now, fx);
            }
        }
    }

    /// Removes every descendant of `tid` with their tasks and timers.
    fn abort_children(&mut self, tid: u64) {
        let mut todo = vec![tid];
        let mut doomed = Vec::new();
        while let Some(p) = todo.pop() {
            for (id, t) in &self.threads {
                if t.parent == Some(p) {
                    todo.push(*id);
                    doomed.push(*id);
                }
            }
        }
        for id in &doomed {
            self.threads.remove(id);
        }
        let dead_tasks: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, r)| doomed.contains(&r.thread))
            .map(|(k, _)| *k)
            .collect();
        for k in dead_tasks {
            self.tasks.remove(&k);
            self.drop_task_timers(k);
        }
        self.timers.retain(
            |_, t| !matches!(t, TimerFor::Wait(x) | TimerFor::Retry(x) if doomed.contains(x)),
        );
    }

    /// An error in the current state of `tid`: retry, catch, or fail the thread.
    fn handle_error(
        &mut self,
        def: &Definition,
        tid: u64,
        error: String,
        cause: String,
        now: i64,
        fx: &mut Effects,
    ) {
        let Some(t) = self.threads.get(&tid) else {
            return;
        };
        let st = &def.graphs[t.graph].states[&t.state];
        self.error_handling = ErrorHandling::default();
        if error != "States.Runtime" {
            if let Some((i, r)) = st
                .retry
                .iter()
                .enumerate()
                .find(|(_, r)| error_matches(&r.errors, &error))
            {
                self.error_handling.retry_index = Some(i);
                let count = t.retries.get(i).copied().unwrap_or(0);
                if count < r.max_attempts {
                    let mut delay = r.interval_s * r.backoff_rate.powi(count as i32);
                    if let Some(m) = r.max_delay_s {
                        delay = delay.min(m);
                    }
                    if r.full_jitter {
                        let f = (next_random(&mut self.rng) % 1_000_000) as f64 / 1_000_000.0;
                        delay *= f;
                    }
                    let timer = self.new_id();
                    self.timers.insert(timer, TimerFor::Retry(tid));
                    fx.commands.push(Command::StartTimer {
                        timer,
                        at_ms: now + (delay * 1000.0) as i64,
                    });
                    self.last_handled = Some((error.clone(), cause.clone(), true));
                    self.error_handling.retry_backoff_s = Some(delay);
                    if let Some(t) = self.threads.get_mut(&tid) {
                        if let Some(c) = t.retries.get_mut(i) {
                            *c += 1;
                        }
                        t.retry_total += 1;
                        t.status = TStatus::RetryWait { timer };
                    }
                    return;
                }
            }
            if let Some((i, c)) = st
                .catch
                .iter()
                .enumerate()
                .find(|(_, c)| error_matches(&c.errors, &error))
            {
                let raw = t.input.clone();
                self.error_handling.catch_index = Some(i);
                self.last_handled = Some((error.clone(), cause.clone(), false));
                let info = json!({"Error": error, "Cause": cause});
                let caught = if st.jsonata {
                    let (out_field, assign_field) =
                        (format!("Catch[{i}]/Output"), format!("Catch[{i}]/Assign"));
                    self.jsonata_exit(
                        tid,
                        &raw,
                        None,
                        Some(&info),
                        info.clone(),
                        c.output.as_ref().map(|o| (o, out_field.as_str())),
                        &[(c.assign.as_ref(), assign_field.as_str())],
                        now,
                    )
                } else {
                    self.path_assign(tid, &info, &[c.assign.as_ref()])
                        .and_then(|assign| {
                            Ok((
                                apply_result(st, c.result_path.as_ref(), &raw, info)?,
                                assign,
                            ))
                        })
                };
                match caught {
                    Ok((output, assign)) => {
                        let next = c.next.clone();
                        self.exit_with(def, tid, output, Some(next), assign, now, fx);
                    }
                    Err((e, c)) => self.fail_thread(def, tid, e, c, now, fx),
                }
                return;
            }
        }
        self.fail_thread(def, tid, error, cause, now, fx);
    }

    fn fail_thread(
        &mut self,
        def: &Definition,
        tid: u64,
        error: String,
        cause: String,
        now: i64,
        fx: &mut Effects,
    ) {
        // Taken before its children go: a redrive resumes this thread where it stopped.
        let snap = self.snapshot(tid);
        self.abort_children(tid);
        let Some(t) = self.threads.remove(&tid) else {
            return;
        };
        match t.parent {
            None => {
                if let Some(r) = snap {
                    self.redrive_point = Some((r.state, r.input, r.vars));
                    self.redrive_children = r.children;
                }
                self.emit(
                    None,
                    now,
                    "ExecutionFailed",
                    Some("executionFailedEventDetails"),
                    json!({"error": error, "cause": cause}),
                    fx,
                );
                self.finish(Status::Failed, None, Some(error), Some(cause));
                self.stop_ms = Some(now);
            }
            Some(parent) => {
                let Some(TStatus::Children(ch)) =
                    self.threads.get_mut(&parent).map(|p| &mut p.status)
                else {
                    return;
                };
                ch.running.remove(&tid);
                if let Some(r) = snap {
                    ch.resume.insert(t.index, r);
                }
                let map = ch.map;
                if map {
                    ch.failures += 1;
                    let exceeded = ch.tolerated_count.is_some() || ch.tolerated_pct.is_some();
                    let tolerated = exceeded
                        && !tolerance_exceeded(
                            ch.tolerated_count,
                            ch.tolerated_pct,
                            ch.failures as u64,
                            ch.total,
                        );
                    if tolerated {
                        ch.results[t.index] = json!({"Error": error, "Cause": cause});
                    }
                    let name = self.threads[&parent].state.clone();
                    self.emit(
                        Some(parent),
                        now,
                        "MapIterationFailed",
                        Some("mapIterationFailedEventDetails"),
                        json!({"name": name, "index": t.index}),
                        fx,
                    );
                    if tolerated {
                        if let Err((e, c)) = self.fill_map(def, parent, now, fx) {
                            self.park_children(parent);
                            self.handle_error(def, parent, e, c, now, fx);
                            return;
                        }
                        self.maybe_complete(def, parent, now, fx);
                        return;
                    }
                    self.park_children(parent);
                    self.emit(Some(parent), now, "MapStateFailed", None, Value::Null, fx);
                    if exceeded {
                        self.handle_error(
                            def,
                            parent,
                            "States.ExceedToleratedFailureThreshold".into(),
                            "The specified tolerated failure threshold was exceeded".into(),
                            now,
                            fx,
                        );
                    } else {
                        self.handle_error(def, parent, error, cause, now, fx);
                    }
                } else {
                    self.park_children(parent);
                    self.emit(
                        Some(parent),
                        now,
                        "ParallelStateFailed",
                        None,
                        Value::Null,
                        fx,
                    );
                    self.handle_error(def, parent, error, cause, now, fx);
                }
            }
        }
    }
}

fn apply_input_path(st: &State, raw: &Value) -> Result<Value, Fault> {
    match &st.input_path {
        None => Ok(json!({})),
        Some(p) if p.segs.is_empty() => Ok(raw.clone()),
        Some(p) => p.eval(raw).ok_or_else(|| {
            runtime(format!(
                "Invalid path '{}' : No results for path: {}",
                p.text, p.text
            ))
        }),
    }
}

fn apply_output_path(_st: &State, output: Value) -> Result<Value, Fault> {
    match &_st.output_path {
        None => Ok(json!({})),
        Some(p) if p.segs.is_empty() => Ok(output),
        Some(p) => p.eval(&output).ok_or_else(|| {
            runtime(format!(
                "Invalid path '{}' : No results for path: {}",
                p.text, p.text
            ))
        }),
    }
}

fn apply_result(
    st: &State,
    result_path: Option<&Path>,
    raw: &Value,
    result: Value,
) -> Result<Value, Fault> {
    match result_path {
        None => Ok(raw.clone()),
        Some(p) => p.set(raw.clone(), result).map_err(|m| {
            (
                "States.ResultPathMatchFailure".into(),
                format!("{m} in state '{}'", st.name),
            )
        }),
    }
}

fn seconds_value(
    s: &Seconds,
    input: &Value,
    field: &str,
    sess: Option<&mut Session>,
) -> Result<u64, Fault> {
    match s {
        Seconds::Fixed(n) => Ok(*n),
        Seconds::Ata(a) => {
            let field = field.strip_suffix("Path").unwrap_or(field);
            let Some(sess) = sess else {
                return Err(runtime(format!("The field '{field}' needs JSONata")));
            };
            let v = sess.eval(a, field).map_err(query)?;
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
                .ok_or_else(|| query(format!("{} The JSONata expression specified for the field '{field}' did not return a non-negative integer.", sess.prefix)))
        }
        Seconds::Path(p) => p
            .eval(input)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)))
            .ok_or_else(|| runtime(format!("Invalid path '{}': The {field} parameter does not reference a valid non-negative integer.", p.text))),
    }
}

fn render(t: &Template, data: &Value, ctx: &Ctx<'_>, rng: &mut u64) -> Result<Value, Fault> {
    Ok(match t {
        Template::Value(v) => v.clone(),
        Template::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render(i, data, ctx, rng))
                .collect::<Result<_, _>>()?,
        ),
        Template::Object(fields) => {
            let mut m = Map::new();
            for (k, f) in fields {
                let v = match f {
                    Template::Path(_, p) => {
                        let root = if p.context { ctx.get() } else { data };
                        p.eval(root).ok_or_else(|| runtime(format!(
                            "An error occurred while executing the state '{}'. The JSONPath '{}' specified for the field '{}.$' could not be found in the input '{}'",
                            ctx.state, p.text, k, payload(data)
                        )))?
                    }
                    Template::Intrinsic(_, c) => intrinsics::eval(c, data, ctx.get(), rng)
                        .map_err(|m| ("States.Runtime".to_string(), m))?,
                    other => render(other, data, ctx, rng)?,
                };
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
        Template::Path(_, p) => p
            .eval(if p.context { ctx.get() } else { data })
            .unwrap_or(Value::Null),
        Template::Intrinsic(_, c) => intrinsics::eval(c, data, ctx.get(), rng)
            .map_err(|m| ("States.Runtime".to_string(), m))?,
    })
}
