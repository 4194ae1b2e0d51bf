//! DynamoDB's legacy (pre-expression) parameters, translated into the expression AST so one
//! evaluator serves both: `Expected` (Exists/Value or ComparisonOperator form), `KeyConditions`,
//! `QueryFilter`/`ScanFilter` joined by `ConditionalOperator`, and `AttributeUpdates`.
//! Legacy names are literal top-level attribute names (a dot is part of the name), never
//! paths. Errors carry AWS's ValidationException wording.

use serde_json::{Map, Value};

use super::eval::compare;
use super::expr::{Action, Cmp, Cond, Operand, Path, PathElem, SetValue};
use super::value::AttrValue;

const INVALID: &str = "One or more parameter values were invalid: ";

fn path(name: &str) -> Path {
    Path(vec![PathElem::Name(name.to_string())])
}

fn attr(name: &str) -> Operand {
    Operand::Path(path(name))
}

fn value(v: &Value) -> Result<AttrValue, String> {
    AttrValue::from_json(v).map_err(|m| format!("{INVALID}{m}"))
}

/// Joins conditions by `ConditionalOperator` (AND when absent).
fn join(conds: Vec<Cond>, op: Option<&str>) -> Result<Option<Cond>, String> {
    let or = match op {
        None | Some("AND") => false,
        Some("OR") => true,
        Some(other) => {
            return Err(format!(
                "1 validation error detected: Value '{other}' at 'conditionalOperator' failed to satisfy constraint: Member must satisfy enum value set: [AND, OR]"
            ));
        }
    };
    Ok(conds.into_iter().reduce(|a, b| {
        if or {
            Cond::Or(Box::new(a), Box::new(b))
        } else {
            Cond::And(Box::new(a), Box::new(b))
        }
    }))
}

/// One `ComparisonOperator` + `AttributeValueList` condition on attribute `name`.
pub fn comparison(name: &str, op: &str, list: &[AttrValue]) -> Result<Cond, String> {
    let (arity_ok, types): (bool, &[&str]) = match op {
        "NULL" | "NOT_NULL" => (list.is_empty(), &[]),
        // The API reference: "EQ is supported for all data types, including lists and maps."
        "EQ" | "NE" => (
            list.len() == 1,
            &["S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M"],
        ),
        "LE" | "LT" | "GE" | "GT" => (list.len() == 1, &["S", "N", "B"]),
        "CONTAINS" | "NOT_CONTAINS" => (list.len() == 1, &["S", "N", "B"]),
        "BEGINS_WITH" => (list.len() == 1, &["S", "B"]),
        "IN" => (!list.is_empty(), &["S", "N", "B"]),
        "BETWEEN" => (list.len() == 2, &["S", "N", "B"]),
        other => {
            return Err(format!(
                "1 validation error detected: Value '{other}' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
            ));
        }
    };
    if !arity_ok {
        return Err(format!(
            "{INVALID}Invalid number of argument(s) for the {op} ComparisonOperator"
        ));
    }
    if let Some(first) = list.first()
        && list.iter().any(|v| v.type_name() != first.type_name())
    {
        return Err(format!(
            "{INVALID}AttributeValues inside AttributeValueList must be of same type"
        ));
    }
    if let Some(bad) = list.iter().find(|v| !types.contains(&v.type_name())) {
        return Err(format!(
            "{INVALID}ComparisonOperator {op} is not valid for {} AttributeValue type",
            bad.type_name()
        ));
    }
    let v = |i: usize| Operand::Value(list[i].clone());
    let cmp = |c: Cmp| Cond::Cmp(c, attr(name), v(0));
    Ok(match op {
        "NULL" => Cond::NotExists(path(name)),
        "NOT_NULL" => Cond::Exists(path(name)),
        "EQ" => cmp(Cmp::Eq),
        "NE" => cmp(Cmp::Ne),
        "LE" => cmp(Cmp::Le),
        "LT" => cmp(Cmp::Lt),
        "GE" => cmp(Cmp::Ge),
        "GT" => cmp(Cmp::Gt),
        "CONTAINS" => Cond::Contains(attr(name), v(0)),
        "NOT_CONTAINS" => Cond::Not(Box::new(Cond::Contains(attr(name), v(0)))),
        "BEGINS_WITH" => Cond::BeginsWith(attr(name), v(0)),
        "IN" => Cond::In(attr(name), (0..list.len()).map(v).collect()),
        _ => {
            if compare(&list[0], &list[1]) == Some(std::cmp::Ordering::Greater) {
                return Err(
                    "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"
                        .into(),
                );
            }
            Cond::Between(attr(name), v(0), v(1))
        }
    })
}

fn value_list(c: &Map<String, Value>) -> Result<Vec<AttrValue>, String> {
    c.get("AttributeValueList")
        .and_then(Value::as_array)
        .map(|l| l.iter().map(value).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

fn entries(map: &Map<String, Value>) -> impl Iterator<Item = (&String, Map<String, Value>)> {
    map.iter()
        .map(|(k, v)| (k, v.as_object().cloned().unwrap_or_default()))
}

/// `Expected` (PutItem, UpdateItem, DeleteItem); `None` when the map is empty.
pub fn expected(map: &Map<String, Value>, op: Option<&str>) -> Result<Option<Cond>, String> {
    let mut conds = Vec::new();
    for (name, c) in entries(map) {
        let exists = c.get("Exists").and_then(Value::as_bool);
        let val = c.get("Value").filter(|v| !v.is_null());
        if let Some(cmp) = c.get("ComparisonOperator").and_then(Value::as_str) {
            if c.contains_key("Exists") {
                return Err(format!(
                    "{INVALID}Exists and ComparisonOperator cannot be used together for Attribute: {name}"
                ));
            }
            let list = match (val, c.get("AttributeValueList")) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{INVALID}Value and AttributeValueList cannot be used together for Attribute: {name}"
                    ));
                }
                (Some(v), None) => vec![value(v)?],
                (None, Some(_)) => value_list(&c)?,
                (None, None) if cmp == "NULL" || cmp == "NOT_NULL" => Vec::new(),
                (None, None) => {
                    return Err(format!(
                        "{INVALID}Value or AttributeValueList must be used with ComparisonOperator: {cmp} for Attribute: {name}"
                    ));
                }
            };
            conds.push(comparison(name, cmp, &list)?);
            continue;
        }
        if c.contains_key("AttributeValueList") {
            return Err(format!(
                "{INVALID}AttributeValueList can only be used with a ComparisonOperator for Attribute: {name}"
            ));
        }
        match (exists, val) {
            (Some(false), Some(_)) => {
                return Err(format!(
                    "{INVALID}Value cannot be used when Exists is false for Attribute: {name}"
                ));
            }
            (Some(false), None) => conds.push(Cond::NotExists(path(name))),
            (_, Some(v)) => conds.push(Cond::Cmp(Cmp::Eq, attr(name), Operand::Value(value(v)?))),
            (e, None) => {
                let e = if e.is_some() { "true" } else { "null" };
                return Err(format!(
                    "{INVALID}Value must be provided when Exists is {e} for Attribute: {name}"
                ));
            }
        }
    }
    join(conds, op)
}

/// `QueryFilter` and `ScanFilter`: `Condition`s joined by `ConditionalOperator`.
pub fn filter(map: &Map<String, Value>, op: Option<&str>) -> Result<Option<Cond>, String> {
    let mut conds = Vec::new();
    for (name, c) in entries(map) {
        let cmp = c
            .get("ComparisonOperator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        conds.push(comparison(name, cmp, &value_list(&c)?)?);
    }
    join(conds, op)
}

/// `KeyConditions` (Query): always a conjunction, of the operators an index can answer.
pub fn key_conditions(map: &Map<String, Value>) -> Result<Option<Cond>, String> {
    if map.is_empty() || map.len() > 2 {
        return Err("Conditions can be of length 1 or 2 only".into());
    }
    let mut conds = Vec::new();
    for (name, c) in entries(map) {
        let cmp = c
            .get("ComparisonOperator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let list = value_list(&c)?;
        let cond = comparison(name, cmp, &list)?;
        if !matches!(
            cmp,
            "EQ" | "LE" | "LT" | "GE" | "GT" | "BEGINS_WITH" | "BETWEEN"
        ) {
            return Err("Attempted conditional constraint is not an indexable operation".into());
        }
        conds.push(cond);
    }
    join(conds, None)
}

/// `AttributeUpdates` (UpdateItem) as update actions: PUT sets, ADD adds to a number or set
/// (and appends to a list, which only the legacy form can), DELETE removes the attribute or,
/// with a set value, those elements.
pub fn attribute_updates(map: &Map<String, Value>) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    for (name, u) in entries(map) {
        let action = u.get("Action").and_then(Value::as_str).unwrap_or("PUT");
        let val = match u.get("Value").filter(|v| !v.is_null()) {
            Some(v) => Some(value(v)?),
            None => None,
        };
        let is_set =
            |v: &AttrValue| matches!(v, AttrValue::SS(_) | AttrValue::NS(_) | AttrValue::BS(_));
        actions.push(match (action, val) {
            ("DELETE", None) => Action::Remove(path(name)),
            ("DELETE", Some(v)) if is_set(&v) => Action::Delete(path(name), v),
            ("DELETE", Some(v)) => {
                return Err(format!(
                    "{INVALID}DELETE action with value is not supported for the type {}",
                    v.type_name()
                ));
            }
            ("PUT" | "ADD", None) => {
                return Err(format!(
                    "{INVALID}Only DELETE action is allowed when no attribute value is specified"
                ));
            }
            ("PUT", Some(v)) => Action::Set(path(name), SetValue::Operand(Operand::Value(v))),
            ("ADD", Some(v @ AttrValue::L(_))) => Action::Set(
                path(name),
                SetValue::ListAppend(
                    Box::new(SetValue::IfNotExists(
                        path(name),
                        Box::new(SetValue::Operand(Operand::Value(AttrValue::L(Vec::new())))),
                    )),
                    Box::new(SetValue::Operand(Operand::Value(v))),
                ),
            ),
            ("ADD", Some(v)) if is_set(&v) || matches!(v, AttrValue::N(_)) => {
                Action::Add(path(name), v)
            }
            ("ADD", Some(v)) => {
                return Err(format!(
                    "{INVALID}ADD action is not supported for the type {}",
                    v.type_name()
                ));
            }
            (other, _) => {
                return Err(format!(
                    "1 validation error detected: Value '{other}' at 'attributeUpdates.{name}.member.action' failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
                ));
            }
        });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dynamodb::{apply_update, eval, value::Item};

    fn item(v: Value) -> Item {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), AttrValue::from_json(v).unwrap()))
            .collect()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn expected_exists_and_value_forms() {
        let it = item(json!({"a": {"S": "x"}, "n": {"N": "5"}}));
        let yes = |e: Value| eval(&it, &expected(&obj(e), None).unwrap().unwrap());
        assert!(yes(json!({"a": {"Value": {"S": "x"}}})));
        assert!(yes(json!({"a": {"Exists": true, "Value": {"S": "x"}}})));
        assert!(!yes(json!({"a": {"Value": {"S": "y"}}})));
        assert!(yes(json!({"zz": {"Exists": false}})));
        assert!(!yes(json!({"a": {"Exists": false}})));
        assert!(yes(
            json!({"n": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "4"}]}})
        ));
        assert!(yes(
            json!({"n": {"ComparisonOperator": "LE", "Value": {"N": "5"}}})
        ));
        assert!(yes(json!({"zz": {"ComparisonOperator": "NULL"}})));
        assert!(expected(&obj(json!({})), None).unwrap().is_none());
    }

    #[test]
    fn conditional_operator_joins() {
        let it = item(json!({"a": {"S": "x"}}));
        let e = obj(json!({"a": {"Value": {"S": "nope"}}, "b": {"Exists": false}}));
        assert!(!eval(&it, &expected(&e, Some("AND")).unwrap().unwrap()));
        assert!(eval(&it, &expected(&e, Some("OR")).unwrap().unwrap()));
        assert!(expected(&e, Some("XOR")).is_err());
    }

    #[test]
    fn every_operator_evaluates() {
        let it = item(json!({"s": {"S": "hello"}, "n": {"N": "7"}, "ss": {"SS": ["a", "b"]}}));
        let s = |x: &str| AttrValue::S(x.into());
        let n = |x: &str| AttrValue::from_json(&json!({"N": x})).unwrap();
        let cases: Vec<(&str, &str, Vec<AttrValue>, bool)> = vec![
            ("s", "EQ", vec![s("hello")], true),
            ("s", "NE", vec![s("hello")], false),
            ("missing", "NE", vec![s("hello")], true),
            ("n", "LT", vec![n("8")], true),
            ("n", "GE", vec![n("8")], false),
            ("s", "NOT_NULL", vec![], true),
            ("s", "NULL", vec![], false),
            ("s", "CONTAINS", vec![s("ell")], true),
            ("ss", "CONTAINS", vec![s("b")], true),
            ("ss", "NOT_CONTAINS", vec![s("c")], true),
            ("s", "BEGINS_WITH", vec![s("he")], true),
            ("n", "IN", vec![n("1"), n("7")], true),
            ("n", "BETWEEN", vec![n("7"), n("9")], true),
            ("n", "BETWEEN", vec![n("8"), n("9")], false),
        ];
        for (name, op, list, want) in cases {
            let c = comparison(name, op, &list).unwrap();
            assert_eq!(eval(&it, &c), want, "{name} {op}");
        }
    }

    #[test]
    fn validation_wording() {
        let err = |e: Value| expected(&obj(e), None).unwrap_err();
        assert_eq!(
            err(json!({"a": {"Exists": true}})),
            "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: a"
        );
        assert_eq!(
            err(json!({"a": {}})),
            "One or more parameter values were invalid: Value must be provided when Exists is null for Attribute: a"
        );
        assert_eq!(
            err(json!({"a": {"Exists": false, "Value": {"S": "x"}}})),
            "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: a"
        );
        assert_eq!(
            err(json!({"a": {"ComparisonOperator": "EQ", "AttributeValueList": []}})),
            "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"
        );
        assert_eq!(
            err(
                json!({"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "2"}, {"N": "1"}]}})
            ),
            "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"
        );
        assert_eq!(
            err(json!({"a": {"ComparisonOperator": "LT", "AttributeValueList": [{"SS": ["x"]}]}})),
            "One or more parameter values were invalid: ComparisonOperator LT is not valid for SS AttributeValue type"
        );
        assert_eq!(
            key_conditions(&obj(json!({}))).unwrap_err(),
            "Conditions can be of length 1 or 2 only"
        );
        assert!(
            key_conditions(&obj(
                json!({"k": {"ComparisonOperator": "NE", "AttributeValueList": [{"S": "x"}]}})
            ))
            .unwrap_err()
            .contains("not an indexable operation")
        );
    }

    #[test]
    fn attribute_updates_put_add_delete() {
        let old = item(json!({
            "k": {"S": "1"}, "n": {"N": "1"}, "ss": {"SS": ["a", "b"]},
            "l": {"L": [{"S": "x"}]}, "gone": {"S": "y"}
        }));
        let actions = attribute_updates(&obj(json!({
            "p": {"Value": {"S": "new"}},
            "n": {"Action": "ADD", "Value": {"N": "2"}},
            "fresh": {"Action": "ADD", "Value": {"N": "3"}},
            "ss": {"Action": "DELETE", "Value": {"SS": ["a"]}},
            "l": {"Action": "ADD", "Value": {"L": [{"S": "z"}]}},
            "gone": {"Action": "DELETE"}
        })))
        .unwrap();
        let new = apply_update(&old, &actions).unwrap();
        let want = item(json!({
            "k": {"S": "1"}, "n": {"N": "3"}, "fresh": {"N": "3"}, "p": {"S": "new"},
            "ss": {"SS": ["b"]}, "l": {"L": [{"S": "x"}, {"S": "z"}]}
        }));
        assert!(AttrValue::M(new).equals(&AttrValue::M(want)));
        assert!(attribute_updates(&obj(json!({"a": {"Action": "PUT"}}))).is_err());
        assert!(
            attribute_updates(&obj(json!({"a": {"Action": "ADD", "Value": {"S": "x"}}}))).is_err()
        );
    }

    proptest::proptest! {
        /// Any operator with any number of values of any types answers a translation or a
        /// validation message, never a panic.
        #[test]
        fn comparison_never_panics(
            op in proptest::sample::select(vec![
                "EQ", "NE", "LE", "LT", "GE", "GT", "NULL", "NOT_NULL", "CONTAINS",
                "NOT_CONTAINS", "BEGINS_WITH", "IN", "BETWEEN", "XX",
            ]),
            vals in proptest::collection::vec(proptest::sample::select(vec![
                json!({"S": "a"}), json!({"N": "1"}), json!({"B": "AA=="}), json!({"SS": ["a"]}),
                json!({"BOOL": true}), json!({"NULL": true}), json!({"L": []}), json!({"N": "-5"}),
            ]), 0..4),
        ) {
            let c = obj(json!({"a": {"ComparisonOperator": op, "AttributeValueList": vals}}));
            let _ = filter(&c, Some("OR"));
            let _ = key_conditions(&c);
            let _ = expected(&c, None);
        }
    }
}
