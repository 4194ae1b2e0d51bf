//! Validation of decoded input against the model: required members, lengths, ranges, enums.
//!
//! Two error styles, as AWS has them: json and rest services answer Coral's
//! `ValidationException` listing every violation; query services (and query-compatible json
//! services such as SQS) answer `MissingParameter` or `InvalidParameterValue` for the first.
//! Enums are checked only in the Coral style: query services check enumerated names
//! themselves and answer service-specific errors (SQS's `InvalidAttributeName`).

use serde_json::Value;
use tsumiki_core::AwsError;

use crate::Protocol;
use crate::model::{Model, ShapeKind, ShapeRef};

enum Violation {
    Missing {
        path: String,
        name: String,
    },
    Constraint {
        path: String,
        value: String,
        constraint: String,
        name: String,
    },
}

pub fn validate(
    model: &Model,
    protocol: Protocol,
    r: &ShapeRef,
    value: &Value,
) -> Result<(), AwsError> {
    let query_style = protocol == Protocol::Query || model.is_query_compatible();
    let mut out = Vec::new();
    let root = Loc {
        parent: None,
        step: Step::Root,
    };
    check(model, r, value, &root, !query_style, &mut out);
    if out.is_empty() {
        return Ok(());
    }
    if query_style {
        return Err(match &out[0] {
            Violation::Missing { name, .. } => AwsError::missing_parameter(format!(
                "The request must contain the parameter {name}."
            )),
            Violation::Constraint {
                value,
                constraint,
                name,
                ..
            } => AwsError::invalid_parameter_value(format!(
                "Value {value} for parameter {name} is invalid. Reason: {constraint}."
            )),
        });
    }
    let n = out.len();
    let details: Vec<String> = out
        .iter()
        .map(|v| match v {
            Violation::Missing { path, .. } => {
                format!(
                    "Value null at '{path}' failed to satisfy constraint: Member must not be null"
                )
            }
            Violation::Constraint {
                path,
                value,
                constraint,
                ..
            } => {
                format!("Value {value} at '{path}' failed to satisfy constraint: {constraint}")
            }
        })
        .collect();
    Err(AwsError::validation(format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        details.join("; ")
    )))
}

fn lower_camel(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        other => format!("'{other}'"),
    }
}

/// Where a value sits in the input. Built as the walk descends and rendered only for a
/// violation: rendering paths eagerly cost every request an allocation or three per member.
#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Member(&'a str),
    Item(usize),
}

#[derive(Clone, Copy)]
struct Loc<'a> {
    parent: Option<&'a Loc<'a>>,
    step: Step<'a>,
}

impl Loc<'_> {
    /// The path in Coral's messages: lowerCamel members, `.N.member` for list items.
    fn path(&self) -> String {
        let parent = self.parent.map(Loc::path).unwrap_or_default();
        match self.step {
            Step::Root => parent,
            Step::Member(m) => join(&parent, &lower_camel(m)),
            Step::Item(i) => format!("{parent}.{}.member", i + 1),
        }
    }

    /// The parameter name in query-style messages: members as named, `.N` for list items.
    fn name(&self) -> String {
        let parent = self.parent.map(Loc::name).unwrap_or_default();
        match self.step {
            Step::Root => parent,
            Step::Member(m) => join(&parent, m),
            Step::Item(i) => format!("{parent}.{}", i + 1),
        }
    }
}

fn check(
    model: &Model,
    r: &ShapeRef,
    value: &Value,
    at: &Loc<'_>,
    enums: bool,
    out: &mut Vec<Violation>,
) {
    let shape = model.shape(&r.shape);
    let constraint = |out: &mut Vec<Violation>, text: String| {
        out.push(Violation::Constraint {
            path: at.path(),
            value: show(value),
            constraint: text,
            name: at.name(),
        })
    };
    match (shape.kind, value) {
        (ShapeKind::Structure, Value::Object(obj)) => {
            for req in &shape.required {
                if obj.get(req).is_none_or(Value::is_null) {
                    let missing = Loc {
                        parent: Some(at),
                        step: Step::Member(req),
                    };
                    out.push(Violation::Missing {
                        path: missing.path(),
                        name: missing.name(),
                    });
                }
            }
            for (member, mref) in &shape.members {
                if let Some(v) = obj.get(member).filter(|v| !v.is_null()) {
                    let inner = Loc {
                        parent: Some(at),
                        step: Step::Member(member),
                    };
                    check(model, mref, v, &inner, enums, out);
                }
            }
        }
        (ShapeKind::List, Value::Array(items)) => {
            bounds_len(shape.min, shape.max, items.len(), "length", |t| {
                constraint(out, t)
            });
            if let Some(member) = shape.member.as_deref() {
                for (i, item) in items.iter().enumerate() {
                    let inner = Loc {
                        parent: Some(at),
                        step: Step::Item(i),
                    };
                    check(model, member, item, &inner, enums, out);
                }
            }
        }
        (ShapeKind::Map, Value::Object(entries)) => {
            bounds_len(shape.min, shape.max, entries.len(), "length", |t| {
                constraint(out, t)
            });
            if let (Some(kref), Some(vref)) = (shape.key.as_deref(), shape.value.as_deref()) {
                for (k, v) in entries {
                    check(model, kref, &Value::String(k.clone()), at, enums, out);
                    check(model, vref, v, at, enums, out);
                }
            }
        }
        (ShapeKind::String, Value::String(s)) => {
            bounds_len(shape.min, shape.max, s.chars().count(), "length", |t| {
                constraint(out, t)
            });
            if enums
                && let Some(allowed) = &shape.enum_values
                && !allowed.iter().any(|a| a == s)
            {
                constraint(
                    out,
                    format!(
                        "Member must satisfy enum value set: [{}]",
                        allowed.join(", ")
                    ),
                );
            }
        }
        (ShapeKind::Blob, Value::String(s)) => {
            // Blobs are base64 here; bound the decoded length.
            let padding = s.bytes().rev().take_while(|&b| b == b'=').count();
            let len = (s.len() / 4 * 3).saturating_sub(padding);
            bounds_len(shape.min, shape.max, len, "length", |t| constraint(out, t));
        }
        (
            ShapeKind::Integer
            | ShapeKind::Long
            | ShapeKind::Short
            | ShapeKind::Byte
            | ShapeKind::Float
            | ShapeKind::Double,
            Value::Number(n),
        ) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = shape.min
                && x < min
            {
                constraint(
                    out,
                    format!("Member must have value greater than or equal to {min}"),
                );
            }
            if let Some(max) = shape.max
                && x > max
            {
                constraint(
                    out,
                    format!("Member must have value less than or equal to {max}"),
                );
            }
        }
        _ => {}
    }
}

fn bounds_len(
    min: Option<f64>,
    max: Option<f64>,
    len: usize,
    what: &str,
    mut fail: impl FnMut(String),
) {
    if let Some(min) = min
        && (len as f64) < min
    {
        fail(format!(
            "Member must have {what} greater than or equal to {min}"
        ));
    }
    if let Some(max) = max
        && (len as f64) > max
    {
        fail(format!(
            "Member must have {what} less than or equal to {max}"
        ));
    }
}
