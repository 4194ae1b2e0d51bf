//! The languages users write inside AWS resources, as pure code with no IO: EventBridge event
//! patterns (shared by SNS filter policies and Lambda filter criteria), schedule expressions
//! (`rate`, AWS's six-field `cron`, `at`: EventBridge, Scheduler and Glue triggers), and later
//! Amazon States Language and the rest. Each is a parser with AWS's validation messages and an
//! evaluator, tested against data-driven corpora.
//!
//! Start with [`event_pattern`].

pub mod asl;
pub mod dynamodb;
pub mod event_pattern;
pub mod filter_policy;
pub mod log_filter;
pub mod partiql;
pub mod schedule;
pub mod vtl;
