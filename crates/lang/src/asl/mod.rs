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
//! Query language: JSONPath (paths, payload templates, the context object `$$`, every
//! `States.*` intrinsic). JSONata and variables (`QueryLanguage`, `Assign`) are rejected at
//! validation for now. A Distributed Map runs as one task of the host ([`DISTRIBUTED_MAP`]). Read `machine.rs` first.

mod choice;
mod definition;
mod intrinsics;
mod machine;
mod path;

pub use definition::{Definition, Diagnostic, invalid_definition_message, parse};
pub use machine::{
    Command, DISTRIBUTED_MAP, Effects, Execution, HistoryEvent, Input, MAX_PAYLOAD_BYTES,
    StartSpec, Status, render_template,
};
