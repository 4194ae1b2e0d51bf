//! `asl-bench`: state transitions per second of the States Language interpreter
//! (`tsumiki_lang::asl`) on a machine of 10 Pass states.
//!
//! ```text
//! cargo run --release -p tsumiki-bench --bin asl-bench [-- --executions 20000]
//! ```
//!
//! "express": each execution is parsed-definition + `Execution::new` + one `step(Start)`,
//! which runs all ten states. "standard" adds what a durable execution pays in the
//! interpreter's half: serializing the execution record and its history events (the store
//! commit itself is measured by the API benchmark, `bench/states_bench.py`).
//! "jsonata" runs ten JSONata Pass states (an `Output` of three fields, two of them
//! expressions reading `$states.input` and a variable the state before assigned), step only.
//! A benchmark, not server code: it reads the wall clock directly.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use clap::Parser;
use serde_json::json;
use tsumiki_lang::asl::{self, Execution, Input, StartSpec, Status};

#[derive(Parser, Debug)]
struct Args {
    /// Executions per run.
    #[arg(long, default_value_t = 20_000)]
    executions: usize,
}

fn definition(jsonata: bool) -> String {
    let mut states = serde_json::Map::new();
    for i in 0..10 {
        let mut s = if jsonata {
            json!({"Type": "Pass", "Assign": {"n": i}, "Output": {"i": i, "k": "{% $states.input.k %}", "n": "{% $n ? $n : 0 %}"}})
        } else {
            json!({"Type": "Pass", "Parameters": {"i": i, "prev.$": "$"}, "OutputPath": "$.i"})
        };
        if i == 9 {
            s["End"] = json!(true);
        } else {
            s["Next"] = json!(format!("S{}", i + 1));
        }
        states.insert(format!("S{i}"), s);
    }
    let mut machine = json!({"StartAt": "S0", "States": states});
    if jsonata {
        machine["QueryLanguage"] = json!("JSONata");
    }
    machine.to_string()
}

fn run(def: &asl::Definition, n: usize, durable: bool) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    for k in 0..n {
        let mut exec = Execution::new(StartSpec {
            execution_arn: format!("arn:aws:states:us-east-1:000000000000:execution:bench:{k}"),
            name: k.to_string(),
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:bench".into(),
            state_machine_name: "bench".into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            region: "us-east-1".into(),
            input: json!({"k": k}),
            start_ms: 1_700_000_000_000,
            token_prefix: "t.".into(),
            seed: k as u64,
        });
        let fx = exec.step(def, Input::Start, 1_700_000_000_000);
        assert_eq!(exec.status, Status::Succeeded);
        if durable {
            bytes += serde_json::to_vec(&exec).map_or(0, |v| v.len());
            for e in &fx.events {
                bytes += serde_json::to_vec(e).map_or(0, |v| v.len());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    (n * 10) as f64 / secs
}

fn main() {
    let args = Args::parse();
    let def = asl::parse(&definition(false)).expect("the bench machine is valid");
    let ata = asl::parse(&definition(true)).expect("the JSONata bench machine is valid");
    run(&def, args.executions / 10, true);
    let express = run(&def, args.executions, false);
    let standard = run(&def, args.executions, true);
    let jsonata = run(&ata, args.executions, false);
    println!("10-Pass machine, {} executions each:", args.executions);
    println!("  express  (step only):            {express:>12.0} transitions/s");
    println!("  standard (step + record encode): {standard:>12.0} transitions/s");
    println!("  jsonata  (step only):            {jsonata:>12.0} transitions/s");
}
