//! Choice rules: boolean combinators (`And`, `Or`, `Not`) over comparisons of a `Variable`
//! with a literal or with another path (`...Path`), type tests and `StringMatches`.

use serde_json::Value;

use super::path::Path;

#[derive(Debug, Clone)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Cmp {
        variable: Path,
        op: String,
        operand: Operand,
    },
}

#[derive(Debug, Clone)]
pub enum Operand {
    Lit(Value),
    Path(Path),
}

const OPS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "StringMatches",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
];

/// Parses one rule at `loc`; `top` rules carry `Next`, nested ones must not.
pub fn parse(v: &Value, loc: &str, top: bool) -> Result<Rule, (String, String)> {
    let Some(obj) = v.as_object() else {
        return Err(("Expected value of type: Object".into(), loc.into()));
    };
    for key in obj.keys() {
        let known = key == "Variable"
            || key == "And"
            || key == "Or"
            || key == "Not"
            || key == "Comment"
            || (top && (key == "Next" || key == "Assign"))
            || OPS.contains(&key.as_str())
            || key
                .strip_suffix("Path")
                .is_some_and(|b| OPS.contains(&b) && !b.starts_with("Is"));
        if !known {
            return Err((
                format!("The field \"{key}\" is not supported by Step Functions"),
                format!("{loc}/{key}"),
            ));
        }
    }
    let nested = |k: &str| -> Result<Vec<Rule>, (String, String)> {
        let Some(a) = obj
            .get(k)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            return Err((
                format!("The value for the field '{k}' must be a non-empty array"),
                format!("{loc}/{k}"),
            ));
        };
        a.iter()
            .enumerate()
            .map(|(i, r)| parse(r, &format!("{loc}/{k}[{i}]"), false))
            .collect()
    };
    if obj.contains_key("And") {
        return Ok(Rule::And(nested("And")?));
    }
    if obj.contains_key("Or") {
        return Ok(Rule::Or(nested("Or")?));
    }
    if let Some(n) = obj.get("Not") {
        return Ok(Rule::Not(Box::new(parse(n, &format!("{loc}/Not"), false)?)));
    }
    let variable = match obj.get("Variable").and_then(Value::as_str).map(Path::parse) {
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return Err((
                "The value for the field 'Variable' must be a valid JSONPath".into(),
                format!("{loc}/Variable"),
            ));
        }
        None => return Err(("These fields are required: [Variable]".into(), loc.into())),
    };
    let ops: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment" | "Assign"))
        .collect();
    if ops.len() != 1 {
        return Err((
            "A choice rule must have exactly one comparison operator".into(),
            loc.into(),
        ));
    }
    let (key, val) = ops[0];
    let (op, operand) = if OPS.contains(&key.as_str()) {
        let ok = match key.as_str() {
            k if k.starts_with("String") => val.is_string(),
            k if k.starts_with("Numeric") => val.is_number(),
            k if k.starts_with("Is") || k == "BooleanEquals" => val.is_boolean(),
            _ => val.as_str().and_then(parse_timestamp).is_some(),
        };
        if !ok {
            return Err((
                format!("The value for the field '{key}' has the wrong type"),
                format!("{loc}/{key}"),
            ));
        }
        (key.clone(), Operand::Lit(val.clone()))
    } else {
        let base = key.strip_suffix("Path").expect("checked above");
        match val.as_str().map(Path::parse) {
            Some(Ok(p)) => (base.to_string(), Operand::Path(p)),
            _ => {
                return Err((
                    format!("The value for the field '{key}' must be a valid JSONPath"),
                    format!("{loc}/{key}"),
                ));
            }
        }
    };
    Ok(Rule::Cmp {
        variable,
        op,
        operand,
    })
}

/// Nanoseconds since the epoch of an RFC 3339 timestamp (AWS requires an uppercase `T` and
/// a zone).
pub fn parse_timestamp(s: &str) -> Option<i128> {
    if s.contains('t') || s.contains('z') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp() as i128 * 1_000_000_000 + t.timestamp_subsec_nanos() as i128)
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    let mut toks: Vec<Option<char>> = Vec::new(); // None = star
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Some(chars.next().unwrap_or('\\'))),
            '*' => toks.push(None),
            c => toks.push(Some(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Classic greedy wildcard match with backtracking to the last star.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < toks.len() && toks[j] == Some(s[i]) {
            i += 1;
            j += 1;
        } else if j < toks.len() && toks[j].is_none() {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < toks.len() && toks[j].is_none() {
        j += 1;
    }
    j == toks.len()
}

/// Evaluates `rule` over the state's input; `Err` is a States.Runtime cause (a path that is
/// not present where a comparison needs it).
pub fn eval(rule: &Rule, input: &Value, context: &Value) -> Result<bool, String> {
    match rule {
        Rule::And(rs) => {
            for r in rs {
                if !eval(r, input, context)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Rule::Or(rs) => {
            for r in rs {
                if eval(r, input, context)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rule::Not(r) => Ok(!eval(r, input, context)?),
        Rule::Cmp {
            variable,
            op,
            operand,
        } => {
            let root = |p: &Path| if p.context { context } else { input };
            let value = variable.eval(root(variable));
            if op == "IsPresent" {
                return Ok(value.is_some() == (operand_lit(operand) == Some(&Value::Bool(true))));
            }
            let Some(value) = value else {
                return Err(format!(
                    "Invalid path '{}': The choice state's condition path references an invalid value.",
                    variable.text
                ));
            };
            let other = match operand {
                Operand::Lit(v) => v.clone(),
                Operand::Path(p) => p.eval(root(p)).ok_or_else(|| {
                    format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        p.text
                    )
                })?,
            };
            let want = other == Value::Bool(true);
            Ok(match op.as_str() {
                "IsNull" => value.is_null() == want,
                "IsNumeric" => value.is_number() == want,
                "IsString" => value.is_string() == want,
                "IsBoolean" => value.is_boolean() == want,
                "IsTimestamp" => value.as_str().and_then(parse_timestamp).is_some() == want,
                "BooleanEquals" => value.is_boolean() && value == other,
                "StringMatches" => match (value.as_str(), other.as_str()) {
                    (Some(s), Some(p)) => string_matches(s, p),
                    _ => false,
                },
                op => {
                    let ord = if op.starts_with("String") {
                        match (value.as_str(), other.as_str()) {
                            (Some(a), Some(b)) => Some(a.cmp(b)),
                            _ => None,
                        }
                    } else if op.starts_with("Numeric") {
                        match (value.as_f64(), other.as_f64()) {
                            (Some(a), Some(b)) => a.partial_cmp(&b),
                            _ => None,
                        }
                    } else {
                        match (
                            value.as_str().and_then(parse_timestamp),
                            other.as_str().and_then(parse_timestamp),
                        ) {
                            (Some(a), Some(b)) => Some(a.cmp(&b)),
                            _ => None,
                        }
                    };
                    let Some(ord) = ord else { return Ok(false) };
                    use std::cmp::Ordering::*;
                    if op.ends_with("LessThanEquals") {
                        ord != Greater
                    } else if op.ends_with("GreaterThanEquals") {
                        ord != Less
                    } else if op.ends_with("LessThan") {
                        ord == Less
                    } else if op.ends_with("GreaterThan") {
                        ord == Greater
                    } else {
                        ord == Equal
                    }
                }
            })
        }
    }
}

fn operand_lit(o: &Operand) -> Option<&Value> {
    match o {
        Operand::Lit(v) => Some(v),
        Operand::Path(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("", "*"));
        assert!(!string_matches("abc", "*d"));
    }
}
