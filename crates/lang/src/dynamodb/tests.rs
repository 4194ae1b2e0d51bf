//! Data-driven tests of the expression languages: tables of (expression, placeholders, item,
//! expected), plus a never-panics proptest for every parser.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::expr::{parse_condition, parse_projection, parse_update};
use super::value::{item_from_json, item_to_json};
use super::*;

fn values(v: Value) -> BTreeMap<String, AttrValue> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), AttrValue::from_json(v).expect("value")))
        .collect()
}

fn names(v: Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("name").to_string()))
        .collect()
}

fn item() -> Item {
    item_from_json(&json!({
        "pk": {"S": "user#1"}, "age": {"N": "42"}, "name": {"S": "Ada"},
        "tags": {"SS": ["a", "b"]}, "nums": {"NS": ["1", "2"]}, "bin": {"B": "AAEC"},
        "lst": {"L": [{"S": "x"}, {"N": "7"}, {"M": {"deep": {"BOOL": true}}}]},
        "mp": {"M": {"inr": {"S": "v"}, "n": {"N": "1"}}}, "nothing": {"NULL": true}
    }))
    .expect("item")
}

fn cond(expr: &str, vals: Value) -> Result<bool, String> {
    let n = names(json!({"#n": "name", "#s": "status"}));
    let v = values(vals);
    let mut ph = Placeholders::new(&n, &v);
    let c = parse_condition(expr, "ConditionExpression", &mut ph)?;
    Ok(eval(&item(), &c))
}

#[test]
fn conditions_evaluate() {
    let cases: &[(&str, Value, bool)] = &[
        ("age = :v", json!({":v": {"N": "42.0"}}), true),
        ("age <> :v", json!({":v": {"N": "42"}}), false),
        ("age < :v", json!({":v": {"N": "100"}}), true),
        ("age <= :v", json!({":v": {"N": "42"}}), true),
        ("age > :v", json!({":v": {"N": "9"}}), true),
        ("age >= :v", json!({":v": {"N": "43"}}), false),
        ("age < :v", json!({":v": {"S": "100"}}), false),
        ("#n = :v", json!({":v": {"S": "Ada"}}), true),
        ("absent <> :v", json!({":v": {"S": "x"}}), true),
        ("absent = :v", json!({":v": {"S": "x"}}), false),
        (
            "age BETWEEN :a AND :b",
            json!({":a": {"N": "1"}, ":b": {"N": "42"}}),
            true,
        ),
        (
            "age between :a and :b",
            json!({":a": {"N": "43"}, ":b": {"N": "50"}}),
            false,
        ),
        (
            "age IN (:a, :b)",
            json!({":a": {"N": "1"}, ":b": {"N": "42"}}),
            true,
        ),
        ("#n IN (:a)", json!({":a": {"S": "Bob"}}), false),
        (
            "attribute_exists(age) AND attribute_not_exists(#s)",
            json!({}),
            true,
        ),
        ("attribute_exists(lst[2].deep)", json!({}), true),
        ("attribute_exists(lst[3])", json!({}), false),
        ("attribute_exists(mp.inr)", json!({}), true),
        ("NOT attribute_exists(age)", json!({}), false),
        (
            "attribute_exists(absent) OR age = :v",
            json!({":v": {"N": "42"}}),
            true,
        ),
        ("attribute_type(tags, :t)", json!({":t": {"S": "SS"}}), true),
        ("attribute_type(age, :t)", json!({":t": {"S": "S"}}), false),
        ("begins_with(pk, :p)", json!({":p": {"S": "user#"}}), true),
        ("begins_with(bin, :p)", json!({":p": {"B": "AAE="}}), true),
        ("contains(#n, :s)", json!({":s": {"S": "d"}}), true),
        ("contains(tags, :s)", json!({":s": {"S": "b"}}), true),
        ("contains(nums, :s)", json!({":s": {"N": "3"}}), false),
        ("contains(lst, :s)", json!({":s": {"N": "7"}}), true),
        ("size(#n) = :three", json!({":three": {"N": "3"}}), true),
        ("size(lst) > :two", json!({":two": {"N": "2"}}), true),
        ("size(mp) = :two", json!({":two": {"N": "2"}}), true),
        (
            "(age = :v OR age = :w) AND NOT (#n = :x)",
            json!({":v": {"N": "1"}, ":w": {"N": "42"}, ":x": {"S": "Bob"}}),
            true,
        ),
        ("(age) = :v", json!({":v": {"N": "42"}}), true),
        ("nothing = :null", json!({":null": {"NULL": true}}), true),
        ("tags = :ss", json!({":ss": {"SS": ["b", "a"]}}), true),
    ];
    for (expr, vals, expected) in cases {
        assert_eq!(cond(expr, vals.clone()), Ok(*expected), "{expr}");
    }
}

#[test]
fn condition_errors_are_aws_wording() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "",
            json!({}),
            "Invalid ConditionExpression: The expression can not be empty;",
        ),
        (
            "age = = :v",
            json!({":v": {"N": "1"}}),
            "Invalid ConditionExpression: Syntax error; token: \"=\", near: \"= = :v\"",
        ),
        (
            "age =",
            json!({}),
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"=\"",
        ),
        (
            "status = :v",
            json!({":v": {"N": "1"}}),
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status",
        ),
        (
            "#x = :v",
            json!({":v": {"N": "1"}}),
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #x",
        ),
        (
            "age = :nope",
            json!({}),
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :nope",
        ),
        (
            "bogus(age)",
            json!({}),
            "Invalid ConditionExpression: Invalid function name; function: bogus",
        ),
        (
            "attribute_exists(age, age)",
            json!({}),
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: attribute_exists, number of operands: 2",
        ),
        (
            "attribute_exists(:v)",
            json!({":v": {"N": "1"}}),
            "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_exists",
        ),
        (
            "size(age)",
            json!({}),
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size",
        ),
        (
            "age = age",
            json!({}),
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [age]",
        ),
        (
            "age BETWEEN :b AND :a",
            json!({":a": {"N": "1"}, ":b": {"N": "2"}}),
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {N:2}, upper bound operand: AttributeValue: {N:1}",
        ),
        (
            "attribute_type(age, :t)",
            json!({":t": {"S": "X"}}),
            "Invalid ConditionExpression: Invalid attribute type name found; type: X, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}",
        ),
        (
            "begins_with(pk, :n)",
            json!({":n": {"N": "1"}}),
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
        ),
    ];
    for (expr, vals, msg) in cases {
        assert_eq!(
            cond(expr, vals.clone()).as_ref().map_err(String::as_str),
            Err(*msg),
            "{expr}"
        );
    }
}

fn update(expr: &str, vals: Value) -> Result<Value, String> {
    let n = names(json!({"#n": "name"}));
    let v = values(vals);
    let mut ph = Placeholders::new(&n, &v);
    let actions = parse_update(expr, &mut ph)?;
    apply_update(&item(), &actions).map(|i| item_to_json(&i))
}

#[test]
fn updates_apply() {
    let one = json!({":one": {"N": "1"}});
    let u = update("SET age = age + :one", one.clone()).expect("update");
    assert_eq!(u["age"], json!({"N": "43"}));
    let u = update("SET age = :one - age", one.clone()).expect("update");
    assert_eq!(u["age"], json!({"N": "-41"}));
    let u = update(
        "SET newer = if_not_exists(newer, :one), age = if_not_exists(age, :one)",
        one.clone(),
    )
    .expect("update");
    assert_eq!(
        (u["newer"].clone(), u["age"].clone()),
        (json!({"N": "1"}), json!({"N": "42"}))
    );
    let u = update(
        "SET lst = list_append(lst, :l)",
        json!({":l": {"L": [{"S": "end"}]}}),
    )
    .expect("update");
    assert_eq!(u["lst"]["L"][3], json!({"S": "end"}));
    let u = update(
        "SET lst = list_append(:l, lst)",
        json!({":l": {"L": [{"S": "start"}]}}),
    )
    .expect("update");
    assert_eq!(u["lst"]["L"][0], json!({"S": "start"}));
    let u = update(
        "SET mp.inr = :v, lst[1] = :v, lst[9] = :v",
        json!({":v": {"S": "new"}}),
    )
    .expect("update");
    assert_eq!(u["mp"]["M"]["inr"], json!({"S": "new"}));
    assert_eq!(u["lst"]["L"][1], json!({"S": "new"}));
    assert_eq!(u["lst"]["L"][3], json!({"S": "new"}));
    let u = update("REMOVE #n, lst[0], lst[2], mp.n", json!({})).expect("update");
    assert!(u.get("name").is_none());
    assert_eq!(u["lst"]["L"], json!([{"N": "7"}]));
    assert_eq!(u["mp"]["M"], json!({"inr": {"S": "v"}}));
    let u = update(
        "ADD age :one, tags :t, fresh :one",
        json!({":one": {"N": "1"}, ":t": {"SS": ["c", "a"]}}),
    )
    .expect("update");
    assert_eq!(
        (u["age"].clone(), u["fresh"].clone()),
        (json!({"N": "43"}), json!({"N": "1"}))
    );
    assert_eq!(u["tags"], json!({"SS": ["a", "b", "c"]}));
    let u = update("DELETE tags :t", json!({":t": {"SS": ["a", "b"]}})).expect("update");
    assert!(u.get("tags").is_none());
    let u = update(
        "delete nums :t set age = :one",
        json!({":t": {"NS": ["1"]}, ":one": {"N": "1"}}),
    )
    .expect("update");
    assert_eq!(u["nums"], json!({"NS": ["2"]}));
}

#[test]
fn update_errors_are_aws_wording() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "SET",
            json!({}),
            "Invalid UpdateExpression: Syntax error; token: \"<EOF>\", near: \"SET\"",
        ),
        (
            "SET a = :v SET b = :v",
            json!({":v": {"S": "x"}}),
            "Invalid UpdateExpression: The \"SET\" section can only be used once in an update expression;",
        ),
        (
            "SET a = :v, a.b = :v",
            json!({":v": {"S": "x"}}),
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]",
        ),
        (
            "SET a = :v REMOVE a",
            json!({":v": {"S": "x"}}),
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]",
        ),
        (
            "SET a[0] = :v REMOVE a.b",
            json!({":v": {"S": "x"}}),
            "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, [0]], path two: [a, b]",
        ),
        (
            "ADD a :v",
            json!({":v": {"S": "x"}}),
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING",
        ),
        (
            "DELETE a :v",
            json!({":v": {"N": "1"}}),
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER",
        ),
        (
            "SET a = :v + :w",
            json!({":v": {"N": "1"}, ":w": {"S": "x"}}),
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S",
        ),
        (
            "SET a = foo(b)",
            json!({}),
            "Invalid UpdateExpression: Invalid function name; function: foo",
        ),
        (
            "SET a = if_not_exists(:v, :v)",
            json!({":v": {"N": "1"}}),
            "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists",
        ),
        (
            "SET a = absent",
            json!({}),
            "The provided expression refers to an attribute that does not exist in the item",
        ),
        (
            "SET a = #n + age",
            json!({}),
            "An operand in the update expression has an incorrect data type",
        ),
        (
            "ADD #n :v",
            json!({":v": {"N": "1"}}),
            "An operand in the update expression has an incorrect data type",
        ),
        (
            "SET nope.deeper = :v",
            json!({":v": {"N": "1"}}),
            "The document path provided in the update expression is invalid for update",
        ),
    ];
    for (expr, vals, msg) in cases {
        assert_eq!(
            update(expr, vals.clone())
                .as_ref()
                .map(|_| ())
                .map_err(String::as_str),
            Err(*msg),
            "{expr}"
        );
    }
}

#[test]
fn projections_select_nested_parts() {
    let n = names(json!({"#n": "name"}));
    let v = BTreeMap::new();
    let mut ph = Placeholders::new(&n, &v);
    let paths =
        parse_projection("#n, lst[2].deep, lst[0], mp.inr, absent", &mut ph).expect("projection");
    assert_eq!(
        item_to_json(&project(&item(), &paths)),
        json!({"name": {"S": "Ada"}, "lst": {"L": [{"S": "x"}, {"M": {"deep": {"BOOL": true}}}]},
            "mp": {"M": {"inr": {"S": "v"}}}})
    );
    assert!(ph.check_unused().is_ok());
    let err = parse_projection("a, a.b", &mut ph).expect_err("overlap");
    assert!(
        err.starts_with("Invalid ProjectionExpression: Two document paths overlap"),
        "{err}"
    );
}

#[test]
fn unused_placeholders_are_reported() {
    let n = names(json!({"#a": "a", "#b": "b"}));
    let v = values(json!({":x": {"N": "1"}, ":y": {"N": "2"}}));
    let mut ph = Placeholders::new(&n, &v);
    parse_condition("#a = :x", "ConditionExpression", &mut ph).expect("parse");
    assert_eq!(
        ph.check_unused(),
        Err("Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}".into())
    );
    parse_condition("#b = :y", "ConditionExpression", &mut ph).expect("parse");
    assert_eq!(ph.check_unused(), Ok(()));
}

proptest! {
    #[test]
    fn parsers_never_panic(src in "[ -~]{0,60}") {
        let n = names(json!({"#a": "a"}));
        let v = values(json!({":v": {"N": "1"}, ":s": {"SS": ["x"]}}));
        let mut ph = Placeholders::new(&n, &v);
        if let Ok(c) = parse_condition(&src, "ConditionExpression", &mut ph) {
            let _ = eval(&item(), &c);
        }
        if let Ok(a) = parse_update(&src, &mut ph) {
            let _ = apply_update(&item(), &a);
        }
        if let Ok(p) = parse_projection(&src, &mut ph) {
            let _ = project(&item(), &p);
        }
    }

    #[test]
    fn parsers_never_panic_on_expression_like_input(
        parts in proptest::collection::vec(prop_oneof![
            Just("a"), Just("#a"), Just(":v"), Just(":s"), Just("("), Just(")"), Just("["), Just("]"),
            Just("0"), Just("."), Just(","), Just("="), Just("<"), Just("+"), Just("-"), Just("AND"),
            Just("OR"), Just("NOT"), Just("BETWEEN"), Just("IN"), Just("SET"), Just("REMOVE"),
            Just("ADD"), Just("DELETE"), Just("size"), Just("if_not_exists"), Just("list_append"),
            Just("attribute_exists"), Just("contains"), Just(" ")], 0..20)
    ) {
        let src = parts.join(" ");
        let n = names(json!({"#a": "a"}));
        let v = values(json!({":v": {"N": "1"}, ":s": {"SS": ["x"]}}));
        let mut ph = Placeholders::new(&n, &v);
        if let Ok(c) = parse_condition(&src, "ConditionExpression", &mut ph) {
            let _ = eval(&item(), &c);
        }
        if let Ok(a) = parse_update(&src, &mut ph) {
            let _ = apply_update(&item(), &a);
        }
        let _ = parse_projection(&src, &mut ph);
    }

    #[test]
    fn numbers_round_trip_and_order(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, s in 0u32..6) {
        let fa = Num::parse(&format!("{a}e-{s}")).expect("num");
        let fb = Num::parse(&format!("{b}e-{s}")).expect("num");
        prop_assert_eq!(fa.cmp(&fb), a.cmp(&b));
        prop_assert_eq!(Num::parse(&fa.to_plain()).expect("num"), fa.clone());
        let sum = fa.add(&fb).expect("sum");
        prop_assert_eq!(sum, Num::parse(&format!("{}e-{s}", a + b)).expect("num"));
    }
}
