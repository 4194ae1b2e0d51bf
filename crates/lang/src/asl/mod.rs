//! Amazon States Language: the definitions Step Functions runs, as a pure interpreter.
//!
//! [`parse`] validates a definition with AWS's `InvalidDefinition` diagnostics and compiles
//! it into graphs of states ([`Definition`]). [`Execution`] is one run as plain,
//! serializable data; [`Execution::step`] feeds it one [`Input`] (start, a task result, a
//! timer) and returns the history events and [`Command`]s (run a task, start a timer) for
//! the caller. No IO, no clock, no threads: the service persists the execution after each
//! step, carries out the commands, and feeds their outcomes back; a restarted service
//! continues from the persisted data ([`Execution::pending`] lists work to redo).
//!
//! Query languages: JSONPath (paths, payload templates, the context object `$$`, every
//! `States.*` intrinsic) and JSONata (`jsonata.rs`: `{% %}` templates in `Arguments`,
//! `Output`, `Assign`, `Items`, `Condition`, ...; `$states`; AWS's added functions), chosen
//! per state by `QueryLanguage`. Workflow variables (`Assign`, read as `$name` in both
//! languages) live in each thread's scope inside the serializable [`Execution`], so a
//! restarted Standard execution keeps them. A Distributed Map runs as one
//! task of the host ([`DISTRIBUTED_MAP`]). Read `machine.rs` first.

mod choice;
mod definition;
mod intrinsics;
mod jsonata;
mod machine;
mod path;

pub use definition::{Definition, Diagnostic, invalid_definition_message, parse};

/// The value(s) a JSONPath (`$.a`, `$..b`) selects in `v`; `Err` when `path` is not one.
pub fn eval_path(path: &str, v: &serde_json::Value) -> Result<Option<serde_json::Value>, String> {
    Ok(path::Path::parse(path)?.eval(v))
}
pub use machine::{
    Command, DISTRIBUTED_MAP, Effects, ErrorHandling, Execution, HistoryEvent, Input,
    MAX_PAYLOAD_BYTES, MapSettings, StartSpec, Status, render_template,
};
