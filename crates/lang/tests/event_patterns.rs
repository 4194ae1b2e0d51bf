//! The event-pattern conformance corpus (`tests/conformance/event-patterns/cases.jsonl`), run
//! through `Pattern` and `Matcher`, plus property tests of the two against each other.
//!
//! Corpus lines keep numbers exactly as written, so the pattern and event of each line are
//! taken as raw text (their byte spans in the line), never re-serialized.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use tsumiki_lang::event_pattern::{Matcher, Pattern};

const REASON_PREFIX: &str = "Event pattern is not valid. Reason: ";

struct Case {
    id: String,
    dialect: String,
    pattern: String,
    event: Option<String>,
    expect: Expect,
}

enum Expect {
    Match(bool),
    Accept,
    Reject(String),
}

fn corpus() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/event-patterns/cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("corpus is readable");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            // Only the small metadata members go through serde_json: the pattern and event
            // may hold numbers it cannot represent.
            let raw = raw_members(line);
            let meta = |name: &str| -> Option<Value> {
                raw.get(name)
                    .map(|text| serde_json::from_str(text).expect("metadata member is JSON"))
            };
            let expect = if let Some(m) = meta("match") {
                Expect::Match(m.as_bool().expect("match is a boolean"))
            } else if meta("invalid") == Some(Value::Bool(true)) {
                let error = meta("error").expect("a rejection has an error");
                let error = error.as_str().expect("error is a string");
                Expect::Reject(
                    error
                        .strip_prefix(REASON_PREFIX)
                        .unwrap_or(error)
                        .to_owned(),
                )
            } else {
                Expect::Accept
            };
            let string = |name: &str| meta(name).and_then(|v| v.as_str().map(str::to_owned));
            Case {
                id: string("id").expect("id"),
                dialect: string("dialect").expect("dialect"),
                pattern: raw["pattern"].to_owned(),
                event: raw.get("event").map(|e| (*e).to_owned()),
                expect,
            }
        })
        .collect()
}

/// The raw text of each member value of the JSON object `line`.
fn raw_members(line: &str) -> BTreeMap<String, &str> {
    let b = line.as_bytes();
    let mut out = BTreeMap::new();
    let mut i = skip_ws(b, 0);
    assert_eq!(b[i], b'{');
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b[i] == b'}' {
            return out;
        }
        let name_end = skip_value(b, i);
        let name: String = serde_json::from_str(&line[i..name_end]).expect("member name");
        i = skip_ws(b, name_end);
        assert_eq!(b[i], b':');
        i = skip_ws(b, i + 1);
        let end = skip_value(b, i);
        out.insert(name, &line[i..end]);
        i = skip_ws(b, end);
        if b[i] == b',' {
            i += 1;
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The end of the JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    loop {
        match b[i] {
            b'"' => {
                i += 1;
                while b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth -= 1;
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
}

#[derive(Default)]
struct Tally {
    total: usize,
    passed: usize,
    rejections: usize,
    exact_reasons: usize,
    failures: Vec<String>,
    reason_mismatches: Vec<String>,
}

fn run(case: &Case, tally: &mut Tally) {
    tally.total += 1;
    let parsed = Pattern::parse(&case.pattern);
    let outcome = match (&case.expect, parsed) {
        (Expect::Reject(expected), Err(e)) => {
            tally.rejections += 1;
            if e.reason() == expected {
                tally.exact_reasons += 1;
            } else {
                tally.reason_mismatches.push(format!(
                    "{}: {}\n    expected reason: {expected}\n    our reason:      {}",
                    case.id,
                    case.pattern,
                    e.reason()
                ));
            }
            Ok(())
        }
        (Expect::Reject(expected), Ok(_)) => {
            Err(format!("accepted, expected rejection ({expected})"))
        }
        (_, Err(e)) => Err(format!("rejected: {}", e.reason())),
        (Expect::Accept, Ok(_)) => Ok(()),
        (Expect::Match(expected), Ok(pattern)) => {
            let event = case.event.as_deref().expect("a match case has an event");
            let direct = pattern.matches(event).map_err(|e| e.to_string());
            let mut matcher = Matcher::new();
            matcher.add(case.id.clone(), &pattern);
            let compiled = matcher
                .matches(event)
                .map(|rules| !rules.is_empty())
                .map_err(|e| e.to_string());
            match (direct, compiled) {
                (Ok(d), Ok(c)) if d == *expected && c == *expected => Ok(()),
                (d, c) => Err(format!(
                    "expected match={expected}, Pattern::matches={d:?}, Matcher={c:?}"
                )),
            }
        }
    };
    match outcome {
        Ok(()) => tally.passed += 1,
        Err(why) => tally.failures.push(format!(
            "{}: {why}\n    pattern: {}\n    event:   {}",
            case.id,
            case.pattern,
            case.event.as_deref().unwrap_or("-")
        )),
    }
}

#[test]
fn corpus_eventbridge_lines_all_pass() {
    let cases = corpus();
    let mut eventbridge = Tally::default();
    let mut extension = Tally::default();
    for case in &cases {
        match case.dialect.as_str() {
            "eventbridge" => run(case, &mut eventbridge),
            _ => run(case, &mut extension),
        }
    }
    for (name, t) in [
        ("eventbridge", &eventbridge),
        ("ruler-extension", &extension),
    ] {
        println!(
            "{name}: {}/{} passed; {} rejections, {} with EventBridge's exact reason",
            t.passed, t.total, t.rejections, t.exact_reasons
        );
        for f in &t.failures {
            println!("  FAIL {f}");
        }
        for m in &t.reason_mismatches {
            println!("  REASON {m}");
        }
    }
    assert_eq!(
        eventbridge.total, 1682,
        "the corpus has 1,682 eventbridge lines"
    );
    assert!(
        eventbridge.failures.is_empty(),
        "{} eventbridge lines failed",
        eventbridge.failures.len()
    );
    assert!(
        eventbridge.reason_mismatches.is_empty(),
        "{} rejection reasons differ",
        eventbridge.reason_mismatches.len()
    );
}

/// One matcher holding every valid corpus pattern answers each corpus event exactly as the
/// patterns do one by one.
#[test]
fn corpus_patterns_in_one_matcher_agree_with_each_pattern() {
    let cases = corpus();
    let mut patterns: Vec<(usize, Pattern)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for case in &cases {
        if seen.insert(case.pattern.clone())
            && let Ok(p) = Pattern::parse(&case.pattern)
        {
            patterns.push((patterns.len(), p));
        }
    }
    let mut matcher = Matcher::new();
    for (id, p) in &patterns {
        matcher.add(*id, p);
    }
    let mut events: Vec<&str> = cases.iter().filter_map(|c| c.event.as_deref()).collect();
    events.sort_unstable();
    events.dedup();
    for event in events {
        let expected: Vec<usize> = patterns
            .iter()
            .filter(|(_, p)| p.matches(event).expect("corpus events are valid"))
            .map(|(id, _)| *id)
            .collect();
        let got = matcher.matches(event).expect("corpus events are valid");
        assert_eq!(got, expected, "event {event}");
    }
}

/// A JSON value rendered to text by the generators below, so number lexemes stay as chosen.
#[derive(Clone, Debug)]
enum Json {
    Raw(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn render(&self, out: &mut String) {
        match self {
            Json::Raw(text) => out.push_str(text),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(name).expect("a string"));
                    out.push(':');
                    value.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// Member names that collide on purpose: `a.b` is also `a` then `b`.
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "a.b", "b.c"]).prop_map(str::to_owned)
}

fn string_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "x",
        "xy",
        "Xy",
        "ab",
        "abc",
        "a*b",
        "10.0.0.1",
        "10.0.1.7",
        "2001:db8::1",
        "ΣAS",
    ])
    .prop_map(str::to_owned)
}

fn number_lexeme() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0",
        "-0",
        "1",
        "1.0",
        "1e0",
        "-2.5",
        "100",
        "1e2",
        "5",
        "1E400",
        "37.807807921694092",
    ])
    .prop_map(str::to_owned)
}

fn event_scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => string_value().prop_map(|s| Json::Raw(quoted(&s))),
        3 => number_lexeme().prop_map(Json::Raw),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(|s| Json::Raw(s.to_owned())),
    ]
}

/// Event values are dense in the few paths patterns name, so that matches are common.
fn event_value(depth: u32) -> BoxedStrategy<Json> {
    let scalars = prop::collection::vec(event_scalar(), 0..4).prop_map(Json::Array);
    if depth == 0 {
        return prop_oneof![3 => event_scalar(), 1 => scalars].boxed();
    }
    let object = prop::collection::vec((name(), event_value(depth - 1)), 1..4)
        .prop_map(Json::Object)
        .boxed();
    prop_oneof![
        3 => event_scalar(),
        2 => scalars,
        2 => object.clone(),
        2 => prop::collection::vec(object, 1..4).prop_map(Json::Array),
    ]
    .boxed()
}

fn event() -> impl Strategy<Value = String> {
    prop::collection::vec((name(), event_value(2)), 1..6).prop_map(|m| Json::Object(m).text())
}

fn strings(list: Vec<String>) -> String {
    let items: Vec<String> = list.iter().map(|s| quoted(s)).collect();
    format!("[{}]", items.join(","))
}

/// One entry of a value list.
fn matcher() -> impl Strategy<Value = Json> {
    let wildcards = prop::sample::select(vec!["x*", "*y", "*b*", "a*b", "*", "a\\*b", "10.*"]);
    prop_oneof![
        event_scalar(),
        string_value().prop_map(|s| Json::Raw(format!("{{\"prefix\":{}}}", quoted(&s)))),
        string_value().prop_map(|s| Json::Raw(format!("{{\"suffix\":{}}}", quoted(&s)))),
        string_value()
            .prop_map(|s| Json::Raw(format!("{{\"equals-ignore-case\":{}}}", quoted(&s)))),
        string_value().prop_map(|s| Json::Raw(format!(
            "{{\"prefix\":{{\"equals-ignore-case\":{}}}}}",
            quoted(&s)
        ))),
        string_value().prop_map(|s| Json::Raw(format!(
            "{{\"suffix\":{{\"equals-ignore-case\":{}}}}}",
            quoted(&s)
        ))),
        wildcards
            .clone()
            .prop_map(|w| Json::Raw(format!("{{\"wildcard\":{}}}", quoted(w)))),
        prop::collection::vec(string_value(), 1..3)
            .prop_map(|l| Json::Raw(format!("{{\"anything-but\":{}}}", strings(l)))),
        prop::collection::vec(
            number_lexeme().prop_filter("comparable", |n| n != "1E400"),
            1..3
        )
        .prop_map(|l| Json::Raw(format!("{{\"anything-but\":[{}]}}", l.join(",")))),
        prop::collection::vec(
            string_value().prop_filter("non-empty", |s| !s.is_empty()),
            1..3
        )
        .prop_map(|l| Json::Raw(format!(
            "{{\"anything-but\":{{\"prefix\":{}}}}}",
            strings(l)
        ))),
        prop::collection::vec(
            string_value().prop_filter("non-empty", |s| !s.is_empty()),
            1..3
        )
        .prop_map(|l| Json::Raw(format!(
            "{{\"anything-but\":{{\"suffix\":{}}}}}",
            strings(l)
        ))),
        prop::collection::vec(string_value(), 1..3).prop_map(|l| Json::Raw(format!(
            "{{\"anything-but\":{{\"equals-ignore-case\":{}}}}}",
            strings(l)
        ))),
        wildcards.prop_map(|w| Json::Raw(format!(
            "{{\"anything-but\":{{\"wildcard\":{}}}}}",
            quoted(w)
        ))),
        prop::sample::select(vec![
            "[\">\",0]",
            "[\">=\",1]",
            "[\"<\",5]",
            "[\"<=\",1e2]",
            "[\"=\",1]",
            "[\">\",0,\"<=\",5]",
            "[\">=\",-2.5,\"<\",1]",
        ])
        .prop_map(|r| Json::Raw(format!("{{\"numeric\":{r}}}"))),
        prop::sample::select(vec!["10.0.0.0/24", "10.0.0.0/8", "2001:db8::/64"])
            .prop_map(|c| Json::Raw(format!("{{\"cidr\":{}}}", quoted(c)))),
        prop::bool::ANY.prop_map(|b| Json::Raw(format!("{{\"exists\":{b}}}"))),
    ]
}

fn pattern_object(depth: u32) -> BoxedStrategy<Json> {
    let leaf = prop::collection::vec(matcher(), 1..4).prop_map(Json::Array);
    let member_value = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![3 => leaf, 1 => pattern_object(depth - 1)].boxed()
    };
    let members = prop::collection::vec((name(), member_value), 1..3);
    if depth == 0 {
        return members.prop_map(Json::Object).boxed();
    }
    let or = prop::collection::vec(pattern_object(depth - 1), 2..4);
    (members, prop::option::weighted(0.2, or))
        .prop_map(|(mut members, or)| {
            if let Some(branches) = or {
                members.push(("$or".to_owned(), Json::Array(branches)));
            }
            Json::Object(members)
        })
        .boxed()
}

fn pattern() -> impl Strategy<Value = String> {
    pattern_object(1).prop_map(|p| p.text())
}

/// Arbitrary JSON text, valid or not: generated values, their truncations, random strings.
fn any_text() -> impl Strategy<Value = String> {
    let value = any::<String>()
        .prop_map(|s| Json::Raw(quoted(&s)))
        .prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                prop::collection::vec((any::<String>(), inner), 0..5).prop_map(Json::Object),
            ]
        });
    prop_oneof![
        value.prop_map(|v| v.text()),
        pattern(),
        event(),
        (pattern(), any::<usize>()).prop_map(|(p, cut)| {
            let mut cut = cut % (p.len() + 1);
            while !p.is_char_boundary(cut) {
                cut -= 1;
            }
            p[..cut].to_owned()
        }),
        any::<String>(),
        "[\\[\\]{}\":,0-9a-z.\\\\ -]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_panics_on_arbitrary_text(
        pattern_text in any_text(),
        valid_pattern in pattern(),
        event_text in any_text(),
    ) {
        for text in [&pattern_text, &valid_pattern] {
            if let Ok(p) = Pattern::parse(text) {
                let direct = p.matches(&event_text);
                let mut m = Matcher::new();
                m.add(0, &p);
                let compiled = m.matches(&event_text);
                prop_assert_eq!(direct.map(|d| d.then_some(0).into_iter().collect::<Vec<_>>()), compiled);
            }
        }
    }

    #[test]
    fn generated_patterns_are_valid(text in pattern()) {
        let parsed = Pattern::parse(&text);
        prop_assert!(parsed.is_ok(), "{text}: {:?}", parsed.err());
    }

    #[test]
    fn matcher_agrees_with_each_pattern(
        texts in prop::collection::vec(pattern(), 1..8),
        events in prop::collection::vec(event(), 1..6),
        removed in prop::collection::vec(any::<bool>(), 8),
    ) {
        let patterns: Vec<Pattern> = texts.iter().map(|t| Pattern::parse(t).expect("valid")).collect();
        let mut matcher = Matcher::new();
        for (i, p) in patterns.iter().enumerate() {
            matcher.add(i, p);
        }
        for event in &events {
            let expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| p.matches(event).expect("generated events are valid"))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(matcher.matches(event).expect("valid"), expected, "event {}", event);
        }
        for (i, gone) in removed.iter().enumerate().take(patterns.len()) {
            if *gone {
                prop_assert!(matcher.remove(&i));
            }
        }
        for event in &events {
            let expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(i, p)| !removed[*i] && p.matches(event).expect("valid"))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(matcher.matches(event).expect("valid"), expected, "after removals, event {}", event);
        }
    }
}

/// The generators must make matching common, or the agreement property proves little.
#[test]
fn generated_patterns_often_match_generated_events() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut tried, mut matched) = (0, 0);
    for _ in 0..2000 {
        let p = pattern()
            .new_tree(&mut runner)
            .expect("a pattern")
            .current();
        let e = event().new_tree(&mut runner).expect("an event").current();
        let p = Pattern::parse(&p).expect("generated patterns are valid");
        tried += 1;
        if p.matches(&e).expect("generated events are valid") {
            matched += 1;
        }
    }
    assert!(
        matched * 10 >= tried,
        "only {matched} of {tried} generated pairs match"
    );
}
