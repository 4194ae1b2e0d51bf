//! JSONata as Step Functions runs it: a field value is a template in which every string
//! written `{% expression %}` is a JSONata expression and everything else is literal JSON.
//! Expressions see `$states` (`input`, `result`, `errorOutput`, `context`), the workflow
//! variables in scope, and AWS's added functions (`$partition`, `$range`, `$hash`,
//! `$random`, `$uuid`, `$parse`); `$eval` is unavailable, as on AWS. `$now()` and
//! `$millis()` read the step's time and `$random()`/`$uuid()` the execution's generator,
//! so a replayed step evaluates the same.
//!
//! Expressions are parsed once, at validation; the parsed tree is plain data (`Send`), and
//! the evaluator's values (not `Send`) live only inside one [`Session::eval`] call.

use std::cell::Cell;
use std::rc::Rc;

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError};
use jsonata_core::value::JValue;
use serde_json::{Map, Number, Value};

use super::intrinsics::{self, next_random};

/// A compiled field value.
#[derive(Debug, Clone)]
pub enum Ata {
    Value(Value),
    Expr(Box<Expr>),
    Object(Vec<(String, Ata)>),
    Array(Vec<Ata>),
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub text: String,
    ast: AstNode,
    /// The expression may read `$states.context` (see [`may_read_context`]).
    context: bool,
}

impl Ata {
    /// Whether evaluating this may read `$states.context`; when no expression of a state
    /// can, its sessions skip building the context object.
    pub fn reads_context(&self) -> bool {
        match self {
            Ata::Value(_) => false,
            Ata::Expr(e) => e.context,
            Ata::Object(fields) => fields.iter().any(|(_, a)| a.reads_context()),
            Ata::Array(items) => items.iter().any(Ata::reads_context),
        }
    }
}

/// `$states` is the only way to the context object (there is no context value and no
/// `$eval`), so an expression whose every `$states` is followed by `.input`, `.result` or
/// `.errorOutput` cannot read it. Anything else (`$states` alone, `$states.*`, a space
/// before the dot, a name like `$statesX`) counts as reading it.
fn may_read_context(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("$states") {
        let after = &rest[i + "$states".len()..];
        if ![".input", ".result", ".errorOutput"]
            .iter()
            .any(|p| after.starts_with(p))
        {
            return true;
        }
        rest = after;
    }
    false
}

/// The expression inside `{% ... %}`, when `s` is written that way.
pub fn expression_text(s: &str) -> Option<&str> {
    s.strip_prefix("{%")?.strip_suffix("%}")
}

/// Compiles a field value; a malformed expression is reported as `Err(message)` naming
/// the field (`Output/a/b[0]`).
pub fn compile(v: &Value, field: &str) -> Result<Ata, String> {
    Ok(match v {
        Value::String(s) => match expression_text(s).map(str::trim) {
            Some(text) => {
                let ast = jsonata_core::parser::parse(text).map_err(|e| {
                    format!("The JSONata expression '{text}' specified for the field '{field}' is invalid: {e}")
                })?;
                Ata::Expr(Box::new(Expr {
                    text: text.to_string(),
                    context: may_read_context(text),
                    ast,
                }))
            }
            None => Ata::Value(v.clone()),
        },
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                fields.push((k.clone(), compile(v, &format!("{field}/{k}"))?));
            }
            // A template without expressions is a constant: keep it whole.
            if fields.iter().all(|(_, a)| matches!(a, Ata::Value(_))) {
                Ata::Value(v.clone())
            } else {
                Ata::Object(fields)
            }
        }
        Value::Array(a) => {
            let items = a
                .iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if items.iter().all(|a| matches!(a, Ata::Value(_))) {
                Ata::Value(v.clone())
            } else {
                Ata::Array(items)
            }
        }
        other => Ata::Value(other.clone()),
    })
}

/// What one state's expressions see.
pub struct Session {
    ev: Evaluator,
    rng: Rc<Cell<u64>>,
    /// `An error occurred while executing the state 'S' (entered at the event id #N).`
    pub prefix: String,
}

impl Session {
    /// `states` is the `$states` object; `vars` the variables in scope (inner shadowing
    /// outer, already merged).
    pub fn new(
        states: Value,
        vars: Map<String, Value>,
        now_ms: i64,
        rng: u64,
        prefix: String,
    ) -> Session {
        let mut ctx = Context::new();
        for (k, v) in vars {
            ctx.bind(k, JValue::from(v));
        }
        ctx.bind("states".into(), JValue::from(states));
        let mut ev = Evaluator::with_context(ctx);
        let rng = Rc::new(Cell::new(rng));
        register(&mut ev, now_ms, &rng);
        Session { ev, rng, prefix }
    }

    /// The generator after the draws made so far (the caller keeps it).
    pub fn rng(&self) -> u64 {
        self.rng.get()
    }

    /// Evaluates a template; `Err` is a `States.QueryEvaluationError` cause.
    pub fn eval(&mut self, ata: &Ata, field: &str) -> Result<Value, String> {
        match ata {
            Ata::Value(v) => Ok(v.clone()),
            Ata::Expr(e) => {
                // Step Functions gives no context value: `$`, `$$` and bare field names at
                // the top of an expression are undefined (AWS forbids them); the input is
                // `$states.input`.
                let out = self.ev.evaluate(&e.ast, &JValue::Undefined).map_err(|err| {
                    format!(
                        "{} The JSONata expression '{}' specified for the field '{field}' threw an error: {}",
                        self.prefix,
                        e.text,
                        err.message()
                    )
                })?;
                if out.is_undefined() {
                    return Err(format!(
                        "{} The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                        self.prefix, e.text
                    ));
                }
                Ok(to_json(&out))
            }
            Ata::Object(fields) => {
                let mut m = Map::new();
                for (k, a) in fields {
                    let v = self.eval(a, &format!("{field}/{k}"))?;
                    m.insert(k.clone(), v);
                }
                Ok(Value::Object(m))
            }
            Ata::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.eval(a, &format!("{field}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }
}

/// A JSONata value as JSON: integral numbers stay integers (`3`, not `3.0`), functions
/// and undefined become null.
pub fn to_json(v: &JValue) -> Value {
    match v {
        JValue::Null | JValue::Undefined => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => number(*n),
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(a) => Value::Array(
            a.iter()
                .filter(|v| !v.is_undefined())
                .map(to_json)
                .collect(),
        ),
        JValue::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_undefined())
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn err(msg: impl Into<String>) -> EvaluatorError {
    EvaluatorError::EvaluationError(msg.into())
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A number in `[0, 1)` from a generator.
fn unit(state: &mut u64) -> f64 {
    (next_random(state) >> 11) as f64 / (1u64 << 53) as f64
}

fn register(ev: &mut Evaluator, now_ms: i64, rng: &Rc<Cell<u64>>) {
    // Every registration below is of a name no built-in has, or of an impure built-in
    // (`now`, `millis`, `random`, `eval`), which the crate accepts; none can fail.
    let _ = ev.register_fn("partition", |args: &[JValue]| {
        let (Some(items), Some(size)) = (args.first(), args.get(1).and_then(JValue::as_f64)) else {
            return Err(err(
                "The $partition function expects an array and a chunk size",
            ));
        };
        if size < 1.0 || size.fract() != 0.0 {
            return Err(err(
                "The chunk size of $partition must be a positive integer",
            ));
        }
        let items: Vec<JValue> = match items {
            JValue::Array(a) => a.iter().cloned().collect(),
            JValue::Undefined => Vec::new(),
            other => vec![other.clone()],
        };
        Ok(JValue::array(
            items
                .chunks(size as usize)
                .map(|c| JValue::array(c.to_vec()))
                .collect(),
        ))
    });
    let _ = ev.register_fn("range", |args: &[JValue]| {
        let num = |i: usize| args.get(i).and_then(JValue::as_f64);
        let (Some(start), Some(end), Some(step)) = (num(0), num(1), num(2)) else {
            return Err(err(
                "The $range function expects a start, an end and a step",
            ));
        };
        if step == 0.0 || !step.is_finite() {
            return Err(err("The step of $range must not be zero"));
        }
        let mut out = Vec::new();
        let mut x = start;
        while (step > 0.0 && x <= end) || (step < 0.0 && x >= end) {
            if out.len() >= 1_000 {
                return Err(err("The $range function returns at most 1000 items"));
            }
            out.push(JValue::from_f64(x));
            x += step;
        }
        Ok(JValue::array(out))
    });
    let _ = ev.register_fn("hash", |args: &[JValue]| {
        let data = match args.first() {
            Some(JValue::String(s)) => s.to_string(),
            Some(v) => to_json(v).to_string(),
            None => return Err(err("The $hash function expects a value and an algorithm")),
        };
        let algo = args.get(1).and_then(JValue::as_str).unwrap_or("");
        intrinsics::hash(algo, data.as_bytes())
            .map(JValue::from)
            .ok_or_else(|| {
                err(format!(
                    "The hash algorithm '{algo}' is not supported; use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
                ))
            })
    });
    let r = rng.clone();
    let _ = ev.register_fn_override("random", move |args: &[JValue]| {
        Ok(JValue::from_f64(
            match args.first().and_then(JValue::as_f64) {
                // A seeded draw is the same every time, as AWS documents.
                Some(seed) => unit(&mut seed.to_bits()),
                None => {
                    let mut s = r.get();
                    let x = unit(&mut s);
                    r.set(s);
                    x
                }
            },
        ))
    });
    let r = rng.clone();
    let _ = ev.register_fn("uuid", move |_args: &[JValue]| {
        let mut s = r.get();
        let id = intrinsics::uuid(&mut s);
        r.set(s);
        Ok(JValue::from(id))
    });
    let _ = ev.register_fn("parse", |args: &[JValue]| {
        let Some(text) = args.first().and_then(JValue::as_str) else {
            return Err(err("The $parse function expects a string"));
        };
        serde_json::from_str::<Value>(text)
            .map(JValue::from)
            .map_err(|e| err(format!("The $parse function could not parse the JSON: {e}")))
    });
    let _ = ev.register_fn_override("eval", |_args: &[JValue]| {
        Err(err(
            "The $eval function is not available in Step Functions; use $parse",
        ))
    });
    let _ = ev.register_fn_override("millis", move |_args: &[JValue]| {
        Ok(JValue::from_f64(now_ms as f64))
    });
    let _ = ev.register_fn_override("now", move |args: &[JValue]| {
        if args.is_empty() {
            return Ok(JValue::from(iso_ms(now_ms)));
        }
        // With a picture or zone, `$now` is `$fromMillis` of the same instant.
        let mut ctx = Context::new();
        ctx.bind("m".into(), JValue::from_f64(now_ms as f64));
        ctx.bind("p".into(), args[0].clone());
        ctx.bind(
            "z".into(),
            args.get(1).cloned().unwrap_or(JValue::Undefined),
        );
        let ast = jsonata_core::parser::parse("$fromMillis($m, $p, $z)")
            .map_err(|e| err(e.to_string()))?;
        Evaluator::with_context(ctx).evaluate(&ast, &JValue::Null)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Result<Value, String> {
        let ata = compile(&Value::String(format!("{{% {expr} %}}")), "Output")?;
        let states = json!({"input": input, "context": {}});
        Session::new(states, Map::new(), 1_700_000_000_000, 7, "E.".into()).eval(&ata, "Output")
    }

    #[test]
    fn aws_functions() {
        assert_eq!(
            run("$partition([1,2,3,4,5], 2)", json!({})).unwrap(),
            json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(
            run("$range(0, 10, 5)", json!({})).unwrap(),
            json!([0, 5, 10])
        );
        assert_eq!(
            run("$hash('abc', 'SHA-256')", json!({})).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            run("$parse('{\"a\":[1]}').a[0]", json!({})).unwrap(),
            json!(1)
        );
        assert_eq!(
            run("$random(3) = $random(3)", json!({})).unwrap(),
            json!(true)
        );
        assert_eq!(run("$length($uuid())", json!({})).unwrap(), json!(36));
        assert_eq!(
            run("$now()", json!({})).unwrap(),
            json!("2023-11-14T22:13:20.000Z")
        );
        assert!(run("$eval('1')", json!({})).unwrap_err().contains("$parse"));
    }

    #[test]
    fn context_reads_are_found() {
        for (text, reads) in [
            ("$states.input.a + $states.result.b", false),
            ("$states.errorOutput.Error", false),
            ("$states.context.Execution.Id", true),
            ("$states", true),
            ("$lookup($states, 'context')", true),
            ("$states.*", true),
            ("$states .context", true),
            ("1 + 2", false),
        ] {
            assert_eq!(may_read_context(text), reads, "{text}");
        }
    }

    #[test]
    fn integers_stay_integers_and_undefined_is_an_error() {
        assert_eq!(run("1 + 2", json!({})).unwrap().to_string(), "3");
        assert_eq!(
            run("$states.input.a / 2", json!({"a": 3})).unwrap(),
            json!(1.5)
        );
        let e = run("$states.input.missing", json!({})).unwrap_err();
        assert!(
            e.ends_with("The JSONata expression '$states.input.missing' specified for the field 'Output' returned nothing (undefined)."),
            "{e}"
        );
    }
}
