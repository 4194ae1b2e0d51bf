//! `pattern-bench`: the citylots2 event-pattern benchmark for `tsumiki_lang::event_pattern`.
//!
//! ```text
//! cargo run --release -p tsumiki-bench --bin pattern-bench [-- --passes 5 --only EXACT]
//! ```
//!
//! Generates the synthetic citylots2-shaped file with
//! `tests/conformance/event-patterns/gen_citylots2_like.py` (once; cached as
//! `<cargo target dir>/pattern-bench/citylots2-like.jsonl`), loads the 14 rule sets of
//! `cl2-benchmark-rules.json`, and for each set compiles its 5 rules into one `Matcher`, runs
//! one untimed warm-up pass over all 213,068 events, then `--passes` timed passes, checks
//! every rule's match count against the published count, and prints events per CPU-second
//! (the median pass, and the best pass: the machine may be shared) next to the figures in
//! that folder's README: event-ruler and quamina on
//! the same synthetic file on a 2-vCPU machine, and event-ruler's published citylots2 numbers.
//! A scaling run then matches the file against 10, 100, 1,000 and 10,000 exact rules and as
//! many prefix rules to show the cost per event does not grow with the number of rules.
//!
//! One thread does all matching; CPU time is that thread's (`/proc/thread-self/schedstat`),
//! so the figure is per core. A benchmark, not server code: it reads the wall clock directly.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use tsumiki_lang::event_pattern::{Matcher, Pattern};

#[derive(Parser, Debug)]
#[command(about = "citylots2 event-pattern benchmark")]
struct Args {
    /// Timed passes per rule set (the median is reported).
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Run only these rule sets (comma-separated names, e.g. EXACT,PREFIX).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip the 10/100/1,000/10,000-rule scaling run.
    #[arg(long)]
    no_scaling: bool,
    /// Use this event file (one JSON event per line) instead of the generated one.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Figures from `tests/conformance/event-patterns/README.md`: event-ruler and quamina per
/// CPU-second on the synthetic file (2 vCPU), and event-ruler's published citylots2 figure.
const REFERENCE: &[(&str, u32, Option<u32>, &str)] = &[
    ("EXACT", 349_000, Some(1_784_000), "> 220,000"),
    ("WILDCARD", 288_000, Some(1_565_000), "> 170,000"),
    ("PREFIX", 344_000, Some(1_574_000), "> 220,000"),
    ("PREFIX_EQUALS_IGNORE_CASE", 333_000, None, "> 200,000"),
    ("SUFFIX", 338_000, None, "> 220,000"),
    ("SUFFIX_EQUALS_IGNORE_CASE", 333_000, None, "> 200,000"),
    ("EQUALS_IGNORE_CASE", 273_000, Some(1_253_000), "> 200,000"),
    ("NUMERIC", 195_000, None, "> 120,000"),
    ("COMPLEX_ARRAYS", 50_000, None, "> 35,000"),
    ("ANYTHING_BUT", 199_000, Some(556_000), "> 150,000"),
    ("ANYTHING_BUT_IGNORE_CASE", 195_000, None, "-"),
    ("ANYTHING_BUT_PREFIX", 207_000, None, "-"),
    ("ANYTHING_BUT_SUFFIX", 205_000, None, "-"),
    ("ANYTHING_BUT_WILDCARD", 234_000, None, "-"),
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/event-patterns");
    let data = match &args.data {
        Some(path) => path.clone(),
        None => generated_data(&corpus_dir)?,
    };
    eprintln!("Loading {}", data.display());
    let text = std::fs::read_to_string(&data)?;
    let events: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let bytes: usize = events.iter().map(|e| e.len()).sum();
    println!(
        "{} events, {:.0} bytes on average; {} timed passes per rule set after one warm-up pass\n",
        events.len(),
        bytes as f64 / events.len() as f64,
        args.passes
    );

    // Rules are taken as raw text: serde_json's default float parsing is not correctly
    // rounded, and a numeric "=" against -122.42916360922355 must see exactly that double.
    let rules_text = std::fs::read_to_string(corpus_dir.join("cl2-benchmark-rules.json"))?;
    let rule_sets = raw::members(&rules_text);
    println!(
        "{:<26} {:>11} {:>11} {:>11} {:>12} {:>11} {:>10}  counts",
        "rule set", "ev/CPU-s", "best pass", "ev/s wall", "event-ruler", "quamina", "published"
    );
    let mut all_counts_ok = true;
    for &(name, ruler, quamina, published) in REFERENCE {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let set = raw::members(
            rule_sets
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, text)| *text)
                .ok_or_else(|| anyhow::anyhow!("no rule set {name}"))?,
        );
        let member = |key: &str| set.iter().find(|(n, _)| n == key).map(|(_, text)| *text);
        let mut matcher = Matcher::new();
        for (i, rule) in raw::elements(member("rules").unwrap_or("[]"))
            .iter()
            .enumerate()
        {
            matcher.add(i, &Pattern::parse(rule)?);
        }
        let expected: Vec<u64> = serde_json::from_str(member("expected").unwrap_or("[]"))?;
        let run = measure(&matcher, &events, expected.len(), args.passes)?;
        let ok = run.counts == expected;
        all_counts_ok &= ok;
        println!(
            "{:<26} {:>11} {:>11} {:>11} {:>12} {:>11} {:>10}  {}",
            name,
            thousands(run.per_cpu_second),
            thousands(run.best_per_cpu_second),
            thousands(run.per_wall_second),
            thousands(f64::from(ruler)),
            quamina.map_or("-".to_owned(), |q| thousands(f64::from(q))),
            published,
            if ok {
                "ok".to_owned()
            } else {
                format!("MISMATCH: got {:?}, expected {expected:?}", run.counts)
            }
        );
    }

    if !args.no_scaling {
        println!(
            "\nScaling: N rules of one kind, each matching some events \
             (events per CPU-second, median / best pass)"
        );
        println!(
            "{:<8} {:>23} {:>14} {:>23} {:>14}",
            "rules", "exact ev/CPU-s", "exact matches", "prefix ev/CPU-s", "prefix matches"
        );
        let lots = distinct_lots(&events, 10_000);
        for n in [10usize, 100, 1_000, 10_000] {
            let exact = scaling_matcher(&lots[..n], |v| {
                format!(r#"{{"properties":{{"MAPBLKLOT":["{v}"]}}}}"#)
            })?;
            // Prefixes of distinct lots: one character shorter, so each also matches neighbours.
            let prefix = scaling_matcher(&lots[..n], |v| {
                format!(
                    r#"{{"properties":{{"MAPBLKLOT":[{{"prefix":"{}"}}]}}}}"#,
                    &v[..v.len() - 1]
                )
            })?;
            let e = measure(&exact, &events, n, args.passes)?;
            let p = measure(&prefix, &events, n, args.passes)?;
            println!(
                "{:<8} {:>23} {:>14} {:>23} {:>14}",
                thousands(n as f64),
                format!(
                    "{} / {}",
                    thousands(e.per_cpu_second),
                    thousands(e.best_per_cpu_second)
                ),
                thousands(e.counts.iter().sum::<u64>() as f64),
                format!(
                    "{} / {}",
                    thousands(p.per_cpu_second),
                    thousands(p.best_per_cpu_second)
                ),
                thousands(p.counts.iter().sum::<u64>() as f64),
            );
        }
    }
    if !all_counts_ok {
        anyhow::bail!("some rule match counts differ from the published counts");
    }
    Ok(())
}

/// The generated event file, created on first use under the cargo target directory.
fn generated_data(corpus_dir: &Path) -> anyhow::Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        // target/<profile>/pattern-bench
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow::anyhow!("cannot find the target directory"))?,
    };
    let dir = target.join("pattern-bench");
    let file = dir.join("citylots2-like.jsonl");
    if !file.exists() {
        std::fs::create_dir_all(&dir)?;
        let partial = dir.join("citylots2-like.jsonl.partial");
        eprintln!("Generating {} (about a minute)", file.display());
        let status = Command::new("python3")
            .arg(corpus_dir.join("gen_citylots2_like.py"))
            .arg(&partial)
            .status()?;
        anyhow::ensure!(status.success(), "gen_citylots2_like.py failed: {status}");
        std::fs::rename(&partial, &file)?;
    }
    Ok(file)
}

struct Run {
    /// The median pass.
    per_cpu_second: f64,
    /// The least disturbed pass (the machine may be shared).
    best_per_cpu_second: f64,
    per_wall_second: f64,
    counts: Vec<u64>,
}

/// One warm-up pass, then `passes` timed passes; the median pass by CPU time, and the best.
fn measure(
    matcher: &Matcher<usize>,
    events: &[&str],
    rules: usize,
    passes: usize,
) -> anyhow::Result<Run> {
    let mut counts = vec![0u64; rules];
    for event in events {
        for rule in matcher.matches(event)? {
            counts[rule] += 1;
        }
    }
    let mut timings: Vec<(Duration, Duration)> = Vec::with_capacity(passes);
    let mut matched = 0usize;
    for _ in 0..passes.max(1) {
        let cpu = thread_cpu_time();
        let wall = Instant::now();
        for event in events {
            matched += matcher.matches(event)?.len();
        }
        timings.push((thread_cpu_time().saturating_sub(cpu), wall.elapsed()));
    }
    std::hint::black_box(matched);
    timings.sort();
    let cpu_or_wall = |(cpu, wall): (Duration, Duration)| if cpu.is_zero() { wall } else { cpu };
    let (median, best) = (timings[timings.len() / 2], timings[0]);
    let n = events.len() as f64;
    Ok(Run {
        per_cpu_second: n / cpu_or_wall(median).as_secs_f64(),
        best_per_cpu_second: n / cpu_or_wall(best).as_secs_f64(),
        per_wall_second: n / median.1.as_secs_f64(),
        counts,
    })
}

/// CPU time of the calling thread (zero where `/proc` does not say).
fn thread_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Up to `n` distinct MAPBLKLOT values, spread over the file.
fn distinct_lots(events: &[&str], n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut lots = Vec::with_capacity(n);
    let step = (events.len() / (n * 2)).max(1);
    for event in events.iter().step_by(step) {
        let Ok(v) = serde_json::from_str::<Value>(event) else {
            continue;
        };
        if let Some(lot) = v["properties"]["MAPBLKLOT"].as_str()
            && lot.len() > 2
            && seen.insert(lot.to_owned())
        {
            lots.push(lot.to_owned());
            if lots.len() == n {
                break;
            }
        }
    }
    lots
}

fn scaling_matcher(
    values: &[String],
    rule: impl Fn(&str) -> String,
) -> anyhow::Result<Matcher<usize>> {
    let mut matcher = Matcher::new();
    for (i, v) in values.iter().enumerate() {
        matcher.add(i, &Pattern::parse(&rule(v))?);
    }
    Ok(matcher)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Byte spans of JSON members and elements, so values reach the pattern parser as written.
mod raw {
    /// The members of the object `text` as (name, raw value text).
    pub fn members(text: &str) -> Vec<(String, &str)> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return out;
        }
        i = skip_ws(b, i + 1);
        while i < b.len() && b[i] == b'"' {
            let name_end = value_end(b, i);
            let name = serde_json::from_str(&text[i..name_end]).unwrap_or_default();
            i = skip_ws(b, name_end) + 1; // the colon
            i = skip_ws(b, i);
            let end = value_end(b, i);
            out.push((name, &text[i..end]));
            i = skip_ws(b, end);
            if b.get(i) == Some(&b',') {
                i = skip_ws(b, i + 1);
            }
        }
        out
    }

    /// The elements of the array `text`, as raw text.
    pub fn elements(text: &str) -> Vec<&str> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'[') {
            return out;
        }
        i = skip_ws(b, i + 1);
        while i < b.len() && b[i] != b']' {
            let end = value_end(b, i);
            out.push(&text[i..end]);
            i = skip_ws(b, end);
            if b.get(i) == Some(&b',') {
                i = skip_ws(b, i + 1);
            }
        }
        out
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }

    /// The end of the JSON value starting at `i`.
    fn value_end(b: &[u8], mut i: usize) -> usize {
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                b',' | b':' => i += 1,
                c if c.is_ascii_whitespace() => i += 1,
                _ => {
                    while i < b.len()
                        && !matches!(b[i], b',' | b'}' | b']' | b':')
                        && !b[i].is_ascii_whitespace()
                    {
                        i += 1;
                    }
                }
            }
            if depth == 0 {
                return i;
            }
        }
        i
    }
}
