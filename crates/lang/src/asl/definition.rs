//! Parsing and validating a state machine definition into graphs of states, with AWS's
//! `InvalidDefinition` diagnostics (`SCHEMA_VALIDATION_FAILED`, `MISSING_TRANSITION_TARGET`,
//! `MISSING_END_STATE`, ...). A definition's graphs are numbered in document order (the top
//! level is 0, then each Parallel branch and Map processor as met), so the numbers are stable
//! across restarts and persisted executions can name them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::choice::{self, Rule};
use super::intrinsics;
use super::jsonata::{self, Ata};
use super::path::Path;

/// One problem found in a definition, as ValidateStateMachineDefinition reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub message: String,
    pub location: Option<String>,
}

impl Diagnostic {
    fn new(code: &'static str, message: impl Into<String>, location: &str) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            location: Some(location.to_string()),
        }
    }
}

/// The whole `InvalidDefinition` message for a list of diagnostics.
pub fn invalid_definition_message(diags: &[Diagnostic]) -> String {
    let parts: Vec<String> = diags
        .iter()
        .map(|d| match &d.location {
            Some(l) => format!("{}: {} at {}", d.code, d.message, l),
            None => format!("{}: {}", d.code, d.message),
        })
        .collect();
    format!("Invalid State Machine Definition: '{}'", parts.join(", "))
}

#[derive(Debug, Clone)]
pub struct Definition {
    pub graphs: Vec<Graph>,
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

/// A payload template (`Parameters`, `ResultSelector`, `ItemSelector`): fields ending in `.$`
/// hold a path or an intrinsic function.
#[derive(Debug, Clone)]
pub enum Template {
    Value(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path(String, Path),
    Intrinsic(String, intrinsics::Call),
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub errors: Vec<String>,
    pub interval_s: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_s: Option<f64>,
    pub full_jitter: bool,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub errors: Vec<String>,
    pub result_path: Option<Path>,
    pub next: String,
    pub assign: Option<Assign>,
    pub output: Option<Ata>,
}

/// A state's (or Choice rule's, or catcher's) `Assign`: a payload template in JSONPath
/// states, a JSONata template otherwise. Names are checked at validation.
#[derive(Debug, Clone)]
pub enum Assign {
    Path(Template),
    Ata(Ata),
}

/// What a JSONata Choice rule adds: its `Condition`, and the `Assign` and `Output` it
/// applies when it matches (JSONPath rules may carry `Assign` only).
#[derive(Debug, Clone, Default)]
pub struct RuleExtra {
    pub condition: Option<Ata>,
    pub assign: Option<Assign>,
    pub output: Option<Ata>,
}

#[derive(Debug, Clone)]
pub enum Seconds {
    Fixed(u64),
    Path(Path),
    Ata(Ata),
}

// A definition is parsed once and shared behind an `Arc`; the size of a Map state does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task {
        resource: String,
        timeout: Option<Seconds>,
        heartbeat: Option<Seconds>,
    },
    Choice {
        choices: Vec<(Rule, String)>,
        /// One per choice, in the same order.
        extras: Vec<RuleExtra>,
        default: Option<String>,
    },
    Wait {
        seconds: Option<Seconds>,
        timestamp: Option<String>,
        timestamp_path: Option<Path>,
        timestamp_expr: Option<Ata>,
    },
    Succeed,
    Fail {
        error: Option<String>,
        cause: Option<String>,
        error_path: Option<ErrorSource>,
        cause_path: Option<ErrorSource>,
        error_expr: Option<Ata>,
        cause_expr: Option<Ata>,
    },
    Parallel {
        branches: Vec<usize>,
    },
    Map {
        processor: usize,
        items_path: Option<Path>,
        item_selector: Option<Template>,
        max_concurrency: Option<Seconds>,
        tolerated_count: Option<Seconds>,
        tolerated_percentage: Option<PercentSource>,
        /// A Distributed Map: the state's JSON, for the host that runs it (see
        /// [`crate::asl::DISTRIBUTED_MAP`]).
        distributed: Option<Value>,
        /// JSONata: `Items` and `ItemSelector`.
        items: Option<Ata>,
        item_selector_ata: Option<Ata>,
    },
}

#[derive(Debug, Clone)]
pub enum ErrorSource {
    Path(Path),
    Intrinsic(intrinsics::Call),
}

#[derive(Debug, Clone)]
pub enum PercentSource {
    Fixed(f64),
    Path(Path),
    Ata(Ata),
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub type_name: String,
    pub kind: Kind,
    pub next: Option<String>,
    pub end: bool,
    /// `None` when the field is JSON null (the state sees `{}`); absent means `$`.
    pub input_path: Option<Path>,
    pub output_path: Option<Path>,
    pub result_path: Option<Path>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    /// The state's query language is JSONata (its own `QueryLanguage`, or the top level's).
    pub jsonata: bool,
    pub assign: Option<Assign>,
    /// JSONata: `Arguments` (Task, Parallel) and `Output`.
    pub arguments: Option<Ata>,
    pub output: Option<Ata>,
    /// Some JSONata field of the state may read `$states.context`.
    pub reads_context: bool,
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

/// Fields only a JSONata state may have.
const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items"];

/// Fields only a JSONPath state may have.
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "Result",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "ErrorPath",
    "CausePath",
    "ItemsPath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
];

fn allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
            "Output",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
            "Arguments",
            "Output",
        ],
        "Choice" => &[
            "InputPath",
            "OutputPath",
            "Choices",
            "Default",
            "Assign",
            "Output",
        ],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "Timestamp",
            "SecondsPath",
            "TimestampPath",
            "Assign",
            "Output",
        ],
        "Succeed" => &["InputPath", "OutputPath", "Output"],
        "Fail" => &["Error", "Cause", "ErrorPath", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Branches",
            "Assign",
            "Arguments",
            "Output",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
            "Assign",
            "Items",
            "Output",
        ],
        _ => return None,
    })
}

struct Ctx {
    diags: Vec<Diagnostic>,
    graphs: Vec<Option<Graph>>,
    /// The top level's `QueryLanguage` is JSONata: every state's default.
    top_jsonata: bool,
    /// Some JSONata field of the state being compiled may read `$states.context`.
    reads_context: bool,
}

impl Ctx {
    fn schema(&mut self, message: impl Into<String>, at: &str) {
        self.diags
            .push(Diagnostic::new("SCHEMA_VALIDATION_FAILED", message, at));
    }
}

/// A Distributed Map's `ItemReader.ReaderConfig` and `ResultWriter` (which needs a
/// `Resource` or a `WriterConfig`): their enumerated fields take AWS's values.
fn reader_and_writer(ctx: &mut Ctx, def: &Map<String, Value>, loc: &str) {
    let mut one_of = |obj: Option<&Value>, at: &str, field: &str, allowed: &[&str]| {
        if let Some(v) = obj.and_then(|o| o.get(field))
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            ctx.schema(
                format!(
                    "The value for the field '{field}' must be one of [{}]",
                    allowed.join(", ")
                ),
                &format!("{at}/{field}"),
            );
        }
    };
    let reader = def.get("ItemReader").and_then(|r| r.get("ReaderConfig"));
    let at = format!("{loc}/ItemReader/ReaderConfig");
    one_of(
        reader,
        &at,
        "InputType",
        &["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"],
    );
    one_of(reader, &at, "CSVHeaderLocation", &["FIRST_ROW", "GIVEN"]);
    one_of(
        reader,
        &at,
        "CSVDelimiter",
        &["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"],
    );
    one_of(
        reader,
        &at,
        "ManifestType",
        &["ATHENA_DATA", "S3_INVENTORY"],
    );
    one_of(reader, &at, "Transformation", &["NONE", "LOAD_AND_FLATTEN"]);
    let Some(writer) = def.get("ResultWriter") else {
        return;
    };
    let config = writer.get("WriterConfig");
    let at = format!("{loc}/ResultWriter/WriterConfig");
    one_of(config, &at, "OutputType", &["JSON", "JSONL"]);
    one_of(
        config,
        &at,
        "Transformation",
        &["NONE", "COMPACT", "FLATTEN"],
    );
    if writer.get("Resource").is_none() && config.is_none() {
        ctx.schema(
            "The ResultWriter field needs a Resource, a WriterConfig, or both",
            &format!("{loc}/ResultWriter"),
        );
    }
}

/// Parses and validates `text`; every problem found is reported.
pub fn parse(text: &str) -> Result<Definition, Vec<Diagnostic>> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![Diagnostic {
                code: "INVALID_JSON_DESCRIPTION",
                message: e.to_string(),
                location: None,
            }]);
        }
    };
    let Value::Object(top) = &doc else {
        return Err(vec![Diagnostic {
            code: "INVALID_JSON_DESCRIPTION",
            message: "The definition must be a JSON object".into(),
            location: None,
        }]);
    };
    let mut ctx = Ctx {
        diags: Vec::new(),
        graphs: Vec::new(),
        top_jsonata: top.get("QueryLanguage") == Some(&Value::from("JSONata")),
        reads_context: false,
    };
    if let Some(q) = top.get("QueryLanguage")
        && q != "JSONPath"
        && q != "JSONata"
    {
        ctx.schema(
            "The value for the field 'QueryLanguage' must be one of [JSONPath, JSONata]",
            "/QueryLanguage",
        );
    }
    for key in top.keys() {
        if !matches!(
            key.as_str(),
            "StartAt" | "States" | "Comment" | "Version" | "TimeoutSeconds" | "QueryLanguage"
        ) {
            ctx.schema(
                format!("The field \"{key}\" is not supported by Step Functions"),
                "",
            );
        }
    }
    let timeout_seconds = match top.get("TimeoutSeconds") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                ctx.schema(
                    "The value for the field 'TimeoutSeconds' must be a positive integer",
                    "/TimeoutSeconds",
                );
                None
            }
        },
    };
    graph(&mut ctx, top, "");
    if !ctx.diags.is_empty() {
        return Err(ctx.diags);
    }
    Ok(Definition {
        graphs: ctx
            .graphs
            .into_iter()
            .map(|g| g.expect("every graph is filled when there are no diagnostics"))
            .collect(),
        timeout_seconds,
    })
}

/// Reserves a graph number, fills it, and returns the number.
fn graph(ctx: &mut Ctx, obj: &Map<String, Value>, at: &str) -> usize {
    let id = ctx.graphs.len();
    ctx.graphs.push(None);
    let start_at = match obj.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            ctx.schema(
                "These fields are required: [StartAt]",
                if at.is_empty() { "/" } else { at },
            );
            String::new()
        }
    };
    let Some(Value::Object(states_obj)) = obj.get("States") else {
        ctx.schema(
            "These fields are required: [States]",
            if at.is_empty() { "/" } else { at },
        );
        return id;
    };
    let mut states = BTreeMap::new();
    for (name, def) in states_obj {
        let loc = format!("{at}/States/{name}");
        if name.is_empty() || name.len() > 80 {
            ctx.diags.push(Diagnostic::new(
                "INVALID_STATE_NAME",
                format!("State name \"{name}\" must be between 1 and 80 characters"),
                &loc,
            ));
            continue;
        }
        let Value::Object(def) = def else {
            ctx.schema("Expected value of type: Object", &loc);
            continue;
        };
        if let Some(s) = state(ctx, name, def, &loc) {
            states.insert(name.clone(), s);
        }
    }
    // Transitions must name states of this graph; every state must be reachable; some
    // state must end the graph.
    let mut targets: Vec<(String, String)> = Vec::new();
    for (name, s) in &states {
        let loc = format!("{at}/States/{name}");
        if let Some(n) = &s.next {
            targets.push((n.clone(), format!("{loc}/Next")));
        }
        if let Kind::Choice {
            choices, default, ..
        } = &s.kind
        {
            for (i, (_, n)) in choices.iter().enumerate() {
                targets.push((n.clone(), format!("{loc}/Choices[{i}]/Next")));
            }
            if let Some(d) = default {
                targets.push((d.clone(), format!("{loc}/Default")));
            }
        }
        for (i, c) in s.catch.iter().enumerate() {
            targets.push((c.next.clone(), format!("{loc}/Catch[{i}]/Next")));
        }
    }
    if !start_at.is_empty() && !states.contains_key(&start_at) && states_obj.len() == states.len() {
        ctx.diags.push(Diagnostic::new(
            "MISSING_TRANSITION_TARGET",
            format!("Missing 'Next' target: {start_at}"),
            &format!("{at}/StartAt"),
        ));
    }
    for (target, loc) in &targets {
        if !states.contains_key(target) && states_obj.contains_key(target) {
            continue;
        }
        if !states.contains_key(target) {
            ctx.diags.push(Diagnostic::new(
                "MISSING_TRANSITION_TARGET",
                format!("Missing 'Next' target: {target}"),
                loc,
            ));
        }
    }
    let terminal = states
        .values()
        .any(|s| s.end || matches!(s.kind, Kind::Succeed | Kind::Fail { .. }));
    if !terminal && !states.is_empty() {
        ctx.diags.push(Diagnostic {
            code: "MISSING_END_STATE",
            message: "Workflow has no terminal state".into(),
            location: None,
        });
    } else if states.len() == states_obj.len() {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start_at.clone()];
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(s) = states.get(&n) {
                todo.extend(s.next.iter().cloned());
                if let Kind::Choice {
                    choices, default, ..
                } = &s.kind
                {
                    todo.extend(choices.iter().map(|(_, n)| n.clone()));
                    todo.extend(default.iter().cloned());
                }
                todo.extend(s.catch.iter().map(|c| c.next.clone()));
            }
        }
        for name in states.keys() {
            if !seen.contains(name) {
                ctx.diags.push(Diagnostic::new(
                    "MISSING_TRANSITION_TARGET",
                    format!("State \"{name}\" is not reachable."),
                    &format!("{at}/States/{name}"),
                ));
            }
        }
    }
    ctx.graphs[id] = Some(Graph { start_at, states });
    id
}

fn opt_path(
    ctx: &mut Ctx,
    def: &Map<String, Value>,
    field: &str,
    loc: &str,
    reference: bool,
) -> Option<Path> {
    match def.get(field) {
        None => Some(Path::parse("$").expect("$ is a path")),
        Some(Value::Null) => None,
        Some(Value::String(s)) => match Path::parse(s) {
            Ok(p) if reference && !p.is_reference() => {
                ctx.schema(
                    format!("The value for the field '{field}' must be a valid Reference Path"),
                    &format!("{loc}/{field}"),
                );
                None
            }
            Ok(p) if p.context && reference => {
                ctx.schema(
                    format!("The value for the field '{field}' must be a valid Reference Path"),
                    &format!("{loc}/{field}"),
                );
                None
            }
            Ok(p) => Some(p),
            Err(_) => {
                ctx.schema(
                    format!("The value for the field '{field}' must be a valid JSONPath"),
                    &format!("{loc}/{field}"),
                );
                None
            }
        },
        Some(_) => {
            ctx.schema(
                format!("The value for the field '{field}' must be a STRING"),
                &format!("{loc}/{field}"),
            );
            None
        }
    }
}

/// Compiles a payload template, checking each `.$` field.
pub(crate) fn template(ctx_diags: &mut Vec<Diagnostic>, v: &Value, loc: &str) -> Template {
    match v {
        Value::Object(m) => Template::Object(
            m.iter()
                .map(|(k, v)| {
                    let floc = format!("{loc}/{k}");
                    if let Some(base) = k.strip_suffix(".$") {
                        let t = match v.as_str() {
                            Some(s) if s.starts_with("States.") => match intrinsics::parse(s) {
                                Ok(c) => Template::Intrinsic(base.to_string(), c),
                                Err(m) => {
                                    ctx_diags.push(Diagnostic::new("SCHEMA_VALIDATION_FAILED", m, &floc));
                                    Template::Value(Value::Null)
                                }
                            },
                            Some(s) => match Path::parse(s) {
                                Ok(p) => Template::Path(base.to_string(), p),
                                Err(_) => {
                                    ctx_diags.push(Diagnostic::new(
                                        "SCHEMA_VALIDATION_FAILED",
                                        format!("The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call"),
                                        &floc,
                                    ));
                                    Template::Value(Value::Null)
                                }
                            },
                            None => {
                                ctx_diags.push(Diagnostic::new(
                                    "SCHEMA_VALIDATION_FAILED",
                                    format!("The value for the field '{k}' must be a STRING that contains a JSONPath or an intrinsic function call"),
                                    &floc,
                                ));
                                Template::Value(Value::Null)
                            }
                        };
                        (base.to_string(), t)
                    } else {
                        (k.clone(), template(ctx_diags, v, &floc))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Template::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| template(ctx_diags, v, &format!("{loc}[{i}]")))
                .collect(),
        ),
        other => Template::Value(other.clone()),
    }
}

fn seconds(ctx: &mut Ctx, def: &Map<String, Value>, field: &str, loc: &str) -> Option<Seconds> {
    let path_field = format!("{field}Path");
    match (def.get(field), def.get(&path_field)) {
        (Some(_), Some(_)) => {
            ctx.schema(
                format!("These fields cannot be used together: [{field}, {path_field}]"),
                loc,
            );
            None
        }
        (Some(v), None) => match v.as_u64() {
            Some(n) => Some(Seconds::Fixed(n)),
            None => {
                ctx.schema(
                    format!("The value for the field '{field}' must be a non-negative integer"),
                    &format!("{loc}/{field}"),
                );
                None
            }
        },
        (None, Some(v)) => match v.as_str().map(Path::parse) {
            Some(Ok(p)) if p.is_reference() => Some(Seconds::Path(p)),
            _ => {
                ctx.schema(
                    format!(
                        "The value for the field '{path_field}' must be a valid Reference Path"
                    ),
                    &format!("{loc}/{path_field}"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

fn error_list(ctx: &mut Ctx, v: Option<&Value>, loc: &str) -> Vec<String> {
    match v.and_then(Value::as_array) {
        Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
            let errors: Vec<String> = a
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
            if errors.iter().any(|e| e == "States.ALL") && errors.len() > 1 {
                ctx.schema(
                    "States.ALL must appear alone in ErrorEquals",
                    &format!("{loc}/ErrorEquals"),
                );
            }
            errors
        }
        _ => {
            ctx.schema("These fields are required: [ErrorEquals]", loc);
            Vec::new()
        }
    }
}

fn state(ctx: &mut Ctx, name: &str, def: &Map<String, Value>, loc: &str) -> Option<State> {
    let Some(type_name) = def.get("Type").and_then(Value::as_str).map(str::to_string) else {
        ctx.schema("These fields are required: [Type]", loc);
        return None;
    };
    let Some(fields) = allowed(&type_name) else {
        ctx.schema(format!("The value for the field 'Type' must be one of [Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map], but was '{type_name}'"), &format!("{loc}/Type"));
        return None;
    };
    let before = ctx.diags.len();
    // Inner states (Parallel branches, Map processors) are compiled in the middle of this
    // one: each keeps its own flag.
    let outer_reads_context = std::mem::replace(&mut ctx.reads_context, false);
    for key in def.keys() {
        if !COMMON.contains(&key.as_str()) && !fields.contains(&key.as_str()) {
            ctx.schema(
                format!("The field \"{key}\" is not supported by Step Functions"),
                &format!("{loc}/{key}"),
            );
        }
    }
    let jsonata = match def.get("QueryLanguage") {
        None => ctx.top_jsonata,
        Some(q) if q == "JSONata" => true,
        Some(q) if q == "JSONPath" => {
            if ctx.top_jsonata {
                ctx.schema(
                    "A state cannot use the QueryLanguage JSONPath when the state machine's QueryLanguage is JSONata",
                    &format!("{loc}/QueryLanguage"),
                );
            }
            false
        }
        Some(_) => {
            ctx.schema(
                "The value for the field 'QueryLanguage' must be one of [JSONPath, JSONata]",
                &format!("{loc}/QueryLanguage"),
            );
            false
        }
    };
    for key in def.keys() {
        let other_language = if jsonata {
            JSONPATH_ONLY.contains(&key.as_str())
        } else {
            JSONATA_ONLY.contains(&key.as_str())
        };
        if other_language && fields.contains(&key.as_str()) {
            ctx.schema(
                format!(
                    "The field \"{key}\" is not supported by Step Functions when the QueryLanguage is {}",
                    if jsonata { "JSONata" } else { "JSONPath" }
                ),
                &format!("{loc}/{key}"),
            );
        }
    }
    let assign = assign_field(ctx, def.get("Assign"), jsonata, "Assign", loc);
    let arguments = match def.get("Arguments") {
        Some(v) if jsonata => ata_field(ctx, v, "Arguments", loc),
        _ => None,
    };
    let output = match def.get("Output") {
        Some(v) if jsonata => ata_field(ctx, v, "Output", loc),
        _ => None,
    };
    let terminal_kind = matches!(type_name.as_str(), "Choice" | "Succeed" | "Fail");
    let next = def.get("Next").and_then(Value::as_str).map(str::to_string);
    let end = def.get("End") == Some(&Value::Bool(true));
    if !terminal_kind {
        match (next.is_some(), end) {
            (true, true) => ctx.schema("These fields cannot be used together: [Next, End]", loc),
            (false, false) => ctx.schema("This state must have exactly one of [Next, End]", loc),
            _ => {}
        }
    }
    let input_path = opt_path(ctx, def, "InputPath", loc, false);
    let output_path = opt_path(ctx, def, "OutputPath", loc, false);
    let result_path = opt_path(ctx, def, "ResultPath", loc, true);
    let mut diags = Vec::new();
    let parameters = def
        .get("Parameters")
        .map(|v| template(&mut diags, v, &format!("{loc}/Parameters")));
    let result_selector = def
        .get("ResultSelector")
        .map(|v| template(&mut diags, v, &format!("{loc}/ResultSelector")));
    ctx.diags.extend(diags);
    let mut retry = Vec::new();
    if let Some(rs) = def.get("Retry") {
        for (i, r) in rs.as_array().into_iter().flatten().enumerate() {
            let rloc = format!("{loc}/Retry[{i}]");
            let errors = error_list(ctx, r.get("ErrorEquals"), &rloc);
            let num = |f: &str| r.get(f).and_then(Value::as_f64);
            let interval_s = num("IntervalSeconds").unwrap_or(1.0);
            let max_attempts = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3) as u32;
            let backoff_rate = num("BackoffRate").unwrap_or(2.0);
            if backoff_rate < 1.0 {
                ctx.schema(
                    "The value for the field 'BackoffRate' must be at least 1.0",
                    &format!("{rloc}/BackoffRate"),
                );
            }
            if interval_s < 1.0 || interval_s.fract() != 0.0 {
                ctx.schema(
                    "The value for the field 'IntervalSeconds' must be a positive integer",
                    &format!("{rloc}/IntervalSeconds"),
                );
            }
            let full_jitter = match r.get("JitterStrategy").and_then(Value::as_str) {
                None | Some("NONE") => false,
                Some("FULL") => true,
                Some(other) => {
                    ctx.schema(format!("The value for the field 'JitterStrategy' must be one of [FULL, NONE], but was '{other}'"), &format!("{rloc}/JitterStrategy"));
                    false
                }
            };
            retry.push(Retrier {
                errors,
                interval_s,
                max_attempts,
                backoff_rate,
                max_delay_s: num("MaxDelaySeconds"),
                full_jitter,
            });
        }
    }
    let mut catch = Vec::new();
    if let Some(cs) = def.get("Catch") {
        for (i, c) in cs.as_array().into_iter().flatten().enumerate() {
            let cloc = format!("{loc}/Catch[{i}]");
            let errors = error_list(ctx, c.get("ErrorEquals"), &cloc);
            let Some(next) = c.get("Next").and_then(Value::as_str) else {
                ctx.schema("These fields are required: [Next]", &cloc);
                continue;
            };
            let cm = c.as_object().cloned().unwrap_or_default();
            for key in cm.keys() {
                let other_language = if jsonata {
                    key == "ResultPath"
                } else {
                    key == "Output"
                };
                if other_language {
                    ctx.schema(
                        format!(
                            "The field \"{key}\" is not supported by Step Functions when the QueryLanguage is {}",
                            if jsonata { "JSONata" } else { "JSONPath" }
                        ),
                        &format!("{cloc}/{key}"),
                    );
                }
            }
            let result_path = opt_path(ctx, &cm, "ResultPath", &cloc, true);
            let assign = assign_field(
                ctx,
                c.get("Assign"),
                jsonata,
                &format!("Catch[{i}]/Assign"),
                loc,
            );
            let output = match c.get("Output") {
                Some(v) if jsonata => ata_field(ctx, v, &format!("Catch[{i}]/Output"), loc),
                _ => None,
            };
            catch.push(Catcher {
                errors,
                result_path,
                next: next.to_string(),
                assign,
                output,
            });
        }
    }
    let kind = match type_name.as_str() {
        "Pass" => Kind::Pass {
            result: if jsonata {
                None
            } else {
                def.get("Result").cloned()
            },
        },
        "Task" => {
            let resource = match def.get("Resource").and_then(Value::as_str) {
                Some(r) if r.starts_with("arn:") => r.to_string(),
                Some(r) => {
                    ctx.diags.push(Diagnostic::new(
                        "INVALID_RESOURCE",
                        format!("Resource '{r}' is not a valid ARN"),
                        &format!("{loc}/Resource"),
                    ));
                    r.to_string()
                }
                None => {
                    ctx.schema("These fields are required: [Resource]", loc);
                    String::new()
                }
            };
            if jsonata {
                Kind::Task {
                    resource,
                    timeout: seconds_ata(ctx, def, "TimeoutSeconds", loc),
                    heartbeat: seconds_ata(ctx, def, "HeartbeatSeconds", loc),
                }
            } else {
                Kind::Task {
                    resource,
                    timeout: seconds(ctx, def, "TimeoutSeconds", loc),
                    heartbeat: seconds(ctx, def, "HeartbeatSeconds", loc),
                }
            }
        }
        "Choice" => {
            let mut choices = Vec::new();
            let mut extras = Vec::new();
            match def.get("Choices").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => {
                    for (i, c) in a.iter().enumerate() {
                        let cloc = format!("{loc}/Choices[{i}]");
                        let assign = assign_field(
                            ctx,
                            c.get("Assign"),
                            jsonata,
                            &format!("Choices[{i}]/Assign"),
                            loc,
                        );
                        let Some(next) = c.get("Next").and_then(Value::as_str) else {
                            ctx.schema("These fields are required: [Next]", &cloc);
                            continue;
                        };
                        if jsonata {
                            for key in c.as_object().into_iter().flat_map(|o| o.keys()) {
                                if !matches!(
                                    key.as_str(),
                                    "Condition" | "Next" | "Assign" | "Output" | "Comment"
                                ) {
                                    ctx.schema(
                                        format!("The field \"{key}\" is not supported by Step Functions when the QueryLanguage is JSONata"),
                                        &format!("{cloc}/{key}"),
                                    );
                                }
                            }
                            let condition = match c.get("Condition") {
                                Some(v) => {
                                    ata_field(ctx, v, &format!("Choices[{i}]/Condition"), loc)
                                }
                                None => {
                                    ctx.schema("These fields are required: [Condition]", &cloc);
                                    None
                                }
                            };
                            let output = c.get("Output").and_then(|v| {
                                ata_field(ctx, v, &format!("Choices[{i}]/Output"), loc)
                            });
                            choices.push((Rule::And(Vec::new()), next.to_string()));
                            extras.push(RuleExtra {
                                condition,
                                assign,
                                output,
                            });
                            continue;
                        }
                        match choice::parse(c, &cloc, true) {
                            Ok(rule) => {
                                choices.push((rule, next.to_string()));
                                extras.push(RuleExtra {
                                    assign,
                                    ..RuleExtra::default()
                                });
                            }
                            Err((m, at)) => ctx.schema(m, &at),
                        }
                    }
                }
                _ => ctx.schema("These fields are required: [Choices]", loc),
            }
            Kind::Choice {
                choices,
                extras,
                default: def
                    .get("Default")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }
        }
        "Wait" => {
            let s = if jsonata {
                seconds_ata(ctx, def, "Seconds", loc)
            } else {
                seconds(ctx, def, "Seconds", loc)
            };
            let mut timestamp = def
                .get("Timestamp")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut timestamp_expr = None;
            if jsonata
                && let Some(t) = &timestamp
                && jsonata::expression_text(t).is_some()
            {
                timestamp_expr = ata_field(ctx, &Value::from(t.as_str()), "Timestamp", loc);
                timestamp = None;
            }
            if let Some(t) = &timestamp
                && choice::parse_timestamp(t).is_none()
            {
                ctx.schema(
                    "The value for the field 'Timestamp' must be a valid ISO-8601 timestamp",
                    &format!("{loc}/Timestamp"),
                );
            }
            let timestamp_path = match def.get("TimestampPath").and_then(Value::as_str) {
                Some(p) => match Path::parse(p) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        ctx.schema("The value for the field 'TimestampPath' must be a valid Reference Path", &format!("{loc}/TimestampPath"));
                        None
                    }
                },
                None => None,
            };
            let n = usize::from(def.contains_key("Seconds") || def.contains_key("SecondsPath"))
                + usize::from(def.contains_key("Timestamp"))
                + usize::from(def.contains_key("TimestampPath"));
            if n != 1 {
                ctx.schema("A Wait state must have exactly one of [Seconds, Timestamp, SecondsPath, TimestampPath]", loc);
            }
            Kind::Wait {
                seconds: s,
                timestamp,
                timestamp_path,
                timestamp_expr,
            }
        }
        "Succeed" => Kind::Succeed,
        "Fail" => {
            let src = |ctx: &mut Ctx, field: &str| -> Option<ErrorSource> {
                let s = def.get(field)?.as_str()?;
                let r = if s.starts_with("States.") {
                    intrinsics::parse(s).map(ErrorSource::Intrinsic)
                } else {
                    Path::parse(s).map(ErrorSource::Path)
                };
                match r {
                    Ok(x) => Some(x),
                    Err(m) => {
                        ctx.schema(m, &format!("{loc}/{field}"));
                        None
                    }
                }
            };
            if def.contains_key("Error") && def.contains_key("ErrorPath") {
                ctx.schema(
                    "These fields cannot be used together: [Error, ErrorPath]",
                    loc,
                );
            }
            if def.contains_key("Cause") && def.contains_key("CausePath") {
                ctx.schema(
                    "These fields cannot be used together: [Cause, CausePath]",
                    loc,
                );
            }
            let text = |ctx: &mut Ctx, field: &str| -> (Option<String>, Option<Ata>) {
                match def.get(field).and_then(Value::as_str) {
                    Some(s) if jsonata && jsonata::expression_text(s).is_some() => {
                        (None, ata_field(ctx, &Value::from(s), field, loc))
                    }
                    other => (other.map(str::to_string), None),
                }
            };
            let (error, error_expr) = text(ctx, "Error");
            let (cause, cause_expr) = text(ctx, "Cause");
            Kind::Fail {
                error,
                cause,
                error_path: src(ctx, "ErrorPath"),
                cause_path: src(ctx, "CausePath"),
                error_expr,
                cause_expr,
            }
        }
        "Parallel" => {
            let mut branches = Vec::new();
            match def.get("Branches").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => {
                    for (i, b) in a.iter().enumerate() {
                        match b.as_object() {
                            Some(o) => {
                                branches.push(graph(ctx, o, &format!("{loc}/Branches[{i}]")))
                            }
                            None => ctx.schema(
                                "Expected value of type: Object",
                                &format!("{loc}/Branches[{i}]"),
                            ),
                        }
                    }
                }
                _ => ctx.schema("These fields are required: [Branches]", loc),
            }
            Kind::Parallel { branches }
        }
        "Map" => {
            let (field, proc_def) = match (def.get("ItemProcessor"), def.get("Iterator")) {
                (Some(p), _) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                (None, None) => {
                    ctx.schema("These fields are required: [ItemProcessor]", loc);
                    return None;
                }
            };
            let mode = proc_def.pointer("/ProcessorConfig/Mode");
            let distributed = mode.is_some_and(|m| m == "DISTRIBUTED");
            if mode.is_some_and(|m| m != "INLINE" && m != "DISTRIBUTED") {
                ctx.schema(
                    "The value for the field 'Mode' must be one of [INLINE, DISTRIBUTED]",
                    &format!("{loc}/{field}/ProcessorConfig/Mode"),
                );
            }
            for f in ["ItemReader", "ItemBatcher", "ResultWriter"] {
                if !distributed && def.contains_key(f) {
                    ctx.schema(
                        format!("The field \"{f}\" is only allowed in a Distributed Map"),
                        &format!("{loc}/{f}"),
                    );
                }
            }
            if distributed {
                reader_and_writer(ctx, def, loc);
            }
            let mut sub = proc_def.as_object().cloned().unwrap_or_default();
            sub.remove("ProcessorConfig");
            let processor = graph(ctx, &sub, &format!("{loc}/{field}"));
            let items_path = match def.get("ItemsPath") {
                None => Some(Path::parse("$").expect("$ is a path")),
                Some(v) => {
                    match v.as_str().map(Path::parse) {
                        Some(Ok(p)) => Some(p),
                        _ => {
                            ctx.schema("The value for the field 'ItemsPath' must be a valid Reference Path", &format!("{loc}/ItemsPath"));
                            None
                        }
                    }
                }
            };
            let mut diags = Vec::new();
            let item_selector = def
                .get("ItemSelector")
                .filter(|_| !jsonata)
                .map(|v| template(&mut diags, v, &format!("{loc}/ItemSelector")));
            ctx.diags.extend(diags);
            let item_selector_ata = match def.get("ItemSelector") {
                Some(v) if jsonata => ata_field(ctx, v, "ItemSelector", loc),
                _ => None,
            };
            let items = match def.get("Items") {
                Some(v @ Value::Array(_)) if jsonata => ata_field(ctx, v, "Items", loc),
                Some(v @ Value::String(s)) if jsonata && jsonata::expression_text(s).is_some() => {
                    ata_field(ctx, v, "Items", loc)
                }
                Some(_) if jsonata => {
                    ctx.schema(
                        "The value for the field 'Items' must be an ARRAY or a JSONata expression",
                        &format!("{loc}/Items"),
                    );
                    None
                }
                _ => None,
            };
            let tolerated_percentage = match (
                def.get("ToleratedFailurePercentage"),
                def.get("ToleratedFailurePercentagePath"),
            ) {
                (Some(v @ Value::String(s)), _)
                    if jsonata && jsonata::expression_text(s).is_some() =>
                {
                    ata_field(ctx, v, "ToleratedFailurePercentage", loc).map(PercentSource::Ata)
                }
                (Some(v), _) => match v.as_f64() {
                    Some(f) if (0.0..=100.0).contains(&f) => Some(PercentSource::Fixed(f)),
                    _ => {
                        ctx.schema("The value for the field 'ToleratedFailurePercentage' must be a number between 0 and 100", &format!("{loc}/ToleratedFailurePercentage"));
                        None
                    }
                },
                (None, Some(v)) => v
                    .as_str()
                    .and_then(|s| Path::parse(s).ok())
                    .map(PercentSource::Path),
                _ => None,
            };
            Kind::Map {
                processor,
                items_path,
                item_selector,
                max_concurrency: if jsonata {
                    seconds_ata(ctx, def, "MaxConcurrency", loc)
                } else {
                    seconds(ctx, def, "MaxConcurrency", loc)
                },
                tolerated_count: if jsonata {
                    seconds_ata(ctx, def, "ToleratedFailureCount", loc)
                } else {
                    seconds(ctx, def, "ToleratedFailureCount", loc)
                },
                tolerated_percentage,
                distributed: distributed.then(|| Value::Object(def.clone())),
                items,
                item_selector_ata,
            }
        }
        _ => unreachable!("allowed() knows only these types"),
    };
    let reads_context = std::mem::replace(&mut ctx.reads_context, outer_reads_context);
    if ctx.diags.len() != before {
        return None;
    }
    Some(State {
        name: name.to_string(),
        type_name,
        kind,
        next: if terminal_kind { None } else { next },
        end,
        input_path,
        output_path,
        result_path,
        parameters,
        result_selector,
        retry,
        catch,
        jsonata,
        assign,
        arguments,
        output,
        reads_context,
    })
}

/// Compiles a JSONata field of the state at `loc`; `field` names it as error messages do
/// (`Output`, `Choices[0]/Condition`).
fn ata_field(ctx: &mut Ctx, v: &Value, field: &str, loc: &str) -> Option<Ata> {
    match jsonata::compile(v, field) {
        Ok(a) => {
            ctx.reads_context |= a.reads_context();
            Some(a)
        }
        Err(m) => {
            ctx.schema(m, &format!("{loc}/{field}"));
            None
        }
    }
}

/// A variable name: a letter or `_`, then letters, digits and `_`; at most 80 characters.
fn valid_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && name.chars().count() <= 80
}

fn assign_field(
    ctx: &mut Ctx,
    v: Option<&Value>,
    jsonata: bool,
    field: &str,
    loc: &str,
) -> Option<Assign> {
    let v = v?;
    let at = format!("{loc}/{field}");
    let Value::Object(m) = v else {
        ctx.schema(
            format!("The value for the field '{field}' must be an OBJECT"),
            &at,
        );
        return None;
    };
    for key in m.keys() {
        let name = if jsonata {
            key.as_str()
        } else {
            key.strip_suffix(".$").unwrap_or(key)
        };
        if name == "states" {
            ctx.schema(
                "The variable name \"states\" is reserved by Step Functions",
                &format!("{at}/{key}"),
            );
        } else if !valid_variable(name) {
            ctx.schema(
                format!("The variable name \"{name}\" is invalid: a variable name starts with a letter or '_', holds only letters, digits and '_', and has at most 80 characters"),
                &format!("{at}/{key}"),
            );
        }
    }
    if jsonata {
        ata_field(ctx, v, field, loc).map(Assign::Ata)
    } else {
        let mut diags = Vec::new();
        let t = template(&mut diags, v, &at);
        ctx.diags.extend(diags);
        Some(Assign::Path(t))
    }
}

/// A JSONata state's duration-like field: a non-negative integer or an expression.
fn seconds_ata(ctx: &mut Ctx, def: &Map<String, Value>, field: &str, loc: &str) -> Option<Seconds> {
    match def.get(field)? {
        Value::String(s) if jsonata::expression_text(s).is_some() => {
            ata_field(ctx, &Value::from(s.as_str()), field, loc).map(Seconds::Ata)
        }
        v => match v.as_u64() {
            Some(n) => Some(Seconds::Fixed(n)),
            None => {
                ctx.schema(
                    format!("The value for the field '{field}' must be a non-negative integer or a JSONata expression"),
                    &format!("{loc}/{field}"),
                );
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(text: &str) -> String {
        invalid_definition_message(&parse(text).expect_err("invalid"))
    }

    #[test]
    fn aws_wording_for_missing_targets_and_unreachable_states() {
        assert_eq!(
            diag(
                r#"{"StartAt":"pass1","States":{"pass1":{"Type":"Pass","Next":"pass3"},"pass2":{"Type":"Pass","End":true}}}"#
            ),
            "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next, MISSING_TRANSITION_TARGET: State \"pass2\" is not reachable. at /States/pass2'"
        );
        assert_eq!(
            diag(
                r#"{"StartAt":"a","States":{"a":{"Type":"Pass","End":true},"b":{"Type":"Pass","End":true}}}"#
            ),
            "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: State \"b\" is not reachable. at /States/b'"
        );
        assert_eq!(
            diag(r#"{"StartAt":"a","States":{"a":{"Type":"Pass","End":true,"Foo":1}}}"#),
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The field \"Foo\" is not supported by Step Functions at /States/a/Foo'"
        );
        assert!(diag(r#"{"StartAt":"a","States":{"a":{"Type":"Pass","Next":"b"},"b":{"Type":"Pass","Next":"a"}}}"#).contains("MISSING_END_STATE"));
        assert!(diag("{").contains("INVALID_JSON_DESCRIPTION"));
    }
}
