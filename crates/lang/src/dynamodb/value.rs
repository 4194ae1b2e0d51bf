//! DynamoDB's attribute values: the ten types, their JSON wire form (`{"S": "x"}`), AWS's
//! validation of them, item size as AWS counts it, and a byte encoding of key values that sorts
//! as DynamoDB orders them (numbers by value, strings by UTF-8 bytes, binary bytewise).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

use super::number::Num;

pub type Item = BTreeMap<String, AttrValue>;

/// Largest item AWS stores: 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Debug, Clone)]
pub enum AttrValue {
    S(String),
    N(Num),
    B(Vec<u8>),
    Bool(bool),
    Null,
    M(BTreeMap<String, AttrValue>),
    L(Vec<AttrValue>),
    SS(Vec<String>),
    NS(Vec<Num>),
    BS(Vec<Vec<u8>>),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn prefixed(msg: impl std::fmt::Display) -> String {
    format!("One or more parameter values were invalid: {msg}")
}

impl AttrValue {
    /// The type's wire name: `S`, `N`, `BOOL`, `SS`, ...
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "S",
            AttrValue::N(_) => "N",
            AttrValue::B(_) => "B",
            AttrValue::Bool(_) => "BOOL",
            AttrValue::Null => "NULL",
            AttrValue::M(_) => "M",
            AttrValue::L(_) => "L",
            AttrValue::SS(_) => "SS",
            AttrValue::NS(_) => "NS",
            AttrValue::BS(_) => "BS",
        }
    }

    /// The word update expressions use for the type in their errors.
    pub fn type_word(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "STRING",
            AttrValue::N(_) => "NUMBER",
            AttrValue::B(_) => "BINARY",
            AttrValue::Bool(_) => "BOOLEAN",
            AttrValue::Null => "NULL",
            AttrValue::M(_) => "MAP",
            AttrValue::L(_) => "LIST",
            AttrValue::SS(_) => "STRING SET",
            AttrValue::NS(_) => "NUMBER SET",
            AttrValue::BS(_) => "BINARY SET",
        }
    }

    /// Reads the wire form, with AWS's validation messages (a `ValidationException`'s).
    pub fn from_json(v: &Value) -> Result<AttrValue, String> {
        let Value::Object(obj) = v else {
            return Err(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
                    .into(),
            );
        };
        let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
        if set.is_empty() {
            return Err(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
                    .into(),
            );
        }
        if set.len() > 1 {
            return Err("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes".into());
        }
        let (ty, val) = set[0];
        let not_string = || format!("Unexpected value type for {ty}");
        let bytes = |v: &Value| -> Result<Vec<u8>, String> {
            let s = v.as_str().ok_or_else(not_string)?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| "Invalid base64 binary value".to_string())
        };
        let num = |v: &Value| -> Result<Num, String> {
            let s = v.as_str().ok_or_else(not_string)?;
            Num::parse(s).map_err(|e| e.to_string())
        };
        let list = |v: &Value, word: &str| -> Result<Vec<Value>, String> {
            match v {
                Value::Array(a) if a.is_empty() => {
                    Err(prefixed(format!("An {word} set  may not be empty")))
                }
                Value::Array(a) => Ok(a.clone()),
                _ => Err(not_string()),
            }
        };
        Ok(match ty.as_str() {
            "S" => AttrValue::S(val.as_str().ok_or_else(not_string)?.to_string()),
            "N" => AttrValue::N(num(val)?),
            "B" => AttrValue::B(bytes(val)?),
            "BOOL" => AttrValue::Bool(val.as_bool().ok_or_else(not_string)?),
            "NULL" => {
                if val.as_bool() != Some(true) {
                    return Err(prefixed(
                        "Null attribute value types must have the value of true",
                    ));
                }
                AttrValue::Null
            }
            "M" => {
                let Value::Object(m) = val else {
                    return Err(not_string());
                };
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    out.insert(k.clone(), AttrValue::from_json(v)?);
                }
                AttrValue::M(out)
            }
            "L" => {
                let Value::Array(a) = val else {
                    return Err(not_string());
                };
                AttrValue::L(
                    a.iter()
                        .map(AttrValue::from_json)
                        .collect::<Result<_, _>>()?,
                )
            }
            "SS" => {
                let items = list(val, "string")?;
                let ss: Vec<String> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(not_string))
                    .collect::<Result<_, _>>()?;
                check_duplicates(&ss, |s| s.clone(), |s| s.clone())?;
                AttrValue::SS(ss)
            }
            "NS" => {
                let items = list(val, "number")?;
                let ns: Vec<Num> = items.iter().map(num).collect::<Result<_, _>>()?;
                let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                let keyed: Vec<(Num, &str)> = ns.iter().cloned().zip(texts).collect();
                check_duplicates(&keyed, |(n, _)| n.to_plain(), |(_, t)| t.to_string())?;
                AttrValue::NS(ns)
            }
            "BS" => {
                let items = list(val, "binary")?;
                let bs: Vec<Vec<u8>> = items.iter().map(bytes).collect::<Result<_, _>>()?;
                check_duplicates(&bs, |b| b.clone(), |b| b64(b))?;
                AttrValue::BS(bs)
            }
            other => {
                return Err(format!(
                    "Supplied AttributeValue has an unknown datatype: {other}"
                ));
            }
        })
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(1);
        let (k, v) = match self {
            AttrValue::S(s) => ("S", Value::String(s.clone())),
            AttrValue::N(n) => ("N", Value::String(n.to_plain())),
            AttrValue::B(b) => ("B", Value::String(b64(b))),
            AttrValue::Bool(b) => ("BOOL", Value::Bool(*b)),
            AttrValue::Null => ("NULL", Value::Bool(true)),
            AttrValue::M(map) => (
                "M",
                Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            ),
            AttrValue::L(l) => (
                "L",
                Value::Array(l.iter().map(AttrValue::to_json).collect()),
            ),
            AttrValue::SS(s) => (
                "SS",
                Value::Array(s.iter().map(|s| Value::String(s.clone())).collect()),
            ),
            AttrValue::NS(s) => (
                "NS",
                Value::Array(s.iter().map(|n| Value::String(n.to_plain())).collect()),
            ),
            AttrValue::BS(s) => (
                "BS",
                Value::Array(s.iter().map(|b| Value::String(b64(b))).collect()),
            ),
        };
        m.insert(k.to_string(), v);
        Value::Object(m)
    }

    /// Bytes AWS counts for this value (without its name).
    pub fn size(&self) -> usize {
        match self {
            AttrValue::S(s) => s.len(),
            AttrValue::N(n) => num_size(n),
            AttrValue::B(b) => b.len(),
            AttrValue::Bool(_) | AttrValue::Null => 1,
            AttrValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>(),
            AttrValue::L(l) => 3 + l.iter().map(|v| 1 + v.size()).sum::<usize>(),
            AttrValue::SS(s) => s.iter().map(String::len).sum(),
            AttrValue::NS(s) => s.iter().map(num_size).sum(),
            AttrValue::BS(s) => s.iter().map(Vec::len).sum(),
        }
    }

    /// Equality as DynamoDB compares values: sets regardless of order.
    pub fn equals(&self, other: &AttrValue) -> bool {
        fn same_set<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
            let mut a = a.to_vec();
            let mut b = b.to_vec();
            a.sort();
            b.sort();
            a == b
        }
        match (self, other) {
            (AttrValue::S(a), AttrValue::S(b)) => a == b,
            (AttrValue::N(a), AttrValue::N(b)) => a == b,
            (AttrValue::B(a), AttrValue::B(b)) => a == b,
            (AttrValue::Bool(a), AttrValue::Bool(b)) => a == b,
            (AttrValue::Null, AttrValue::Null) => true,
            (AttrValue::M(a), AttrValue::M(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.equals(w)))
            }
            (AttrValue::L(a), AttrValue::L(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (AttrValue::SS(a), AttrValue::SS(b)) => same_set(a, b),
            (AttrValue::NS(a), AttrValue::NS(b)) => same_set(a, b),
            (AttrValue::BS(a), AttrValue::BS(b)) => same_set(a, b),
            _ => false,
        }
    }

    /// For a key attribute (S, N or B): bytes that sort in DynamoDB's order.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        match self {
            AttrValue::S(s) => Some(s.as_bytes().to_vec()),
            AttrValue::B(b) => Some(b.clone()),
            AttrValue::N(n) => {
                let mut out = Vec::new();
                n.order_key(&mut out);
                Some(out)
            }
            _ => None,
        }
    }
}

fn num_size(n: &Num) -> usize {
    n.significant_digits().div_ceil(2) + 1
}

fn check_duplicates<T, K: Ord>(
    items: &[T],
    key: impl Fn(&T) -> K,
    show: impl Fn(&T) -> String,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for it in items {
        if !seen.insert(key(it)) {
            let shown: Vec<String> = items.iter().map(&show).collect();
            return Err(prefixed(format!(
                "Input collection [{}] contains duplicates.",
                shown.join(", ")
            )));
        }
    }
    Ok(())
}

/// Reads an item (a map of attribute values).
pub fn item_from_json(v: &Value) -> Result<Item, String> {
    let mut item = Item::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            item.insert(k.clone(), AttrValue::from_json(v)?);
        }
    }
    Ok(item)
}

pub fn item_to_json(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// An item's size as AWS counts it: names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_type() {
        let v = json!({"M": {"s": {"S": "x"}, "n": {"N": "1.50"}, "b": {"B": "AAE="},
            "t": {"BOOL": true}, "z": {"NULL": true}, "l": {"L": [{"S": "a"}, {"N": "2"}]},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": ["AA=="]}}});
        let parsed = AttrValue::from_json(&v).expect("valid");
        let back = parsed.to_json();
        assert_eq!(back["M"]["n"], json!({"N": "1.5"}));
        assert_eq!(back["M"]["ss"], json!({"SS": ["a", "b"]}));
        assert!(AttrValue::from_json(&back).expect("valid").equals(&parsed));
    }

    #[test]
    fn validates_like_aws() {
        let err = |v: Value| AttrValue::from_json(&v).expect_err("invalid");
        assert_eq!(
            err(json!({"SS": []})),
            "One or more parameter values were invalid: An string set  may not be empty"
        );
        assert_eq!(
            err(json!({"NS": ["1", "1.0"]})),
            "One or more parameter values were invalid: Input collection [1, 1.0] contains duplicates."
        );
        assert_eq!(
            err(json!({"NULL": false})),
            "One or more parameter values were invalid: Null attribute value types must have the value of true"
        );
        assert_eq!(
            err(json!({})),
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        );
        assert_eq!(
            err(json!({"S": "a", "N": "1"})),
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"
        );
        assert_eq!(
            err(json!({"N": "x1"})),
            "The parameter cannot be converted to a numeric value: x1"
        );
    }

    #[test]
    fn sizes_as_aws_counts() {
        let item = item_from_json(&json!({"pk": {"S": "abc"}, "n": {"N": "12345"},
            "l": {"L": [{"BOOL": true}]}}))
        .expect("item");
        // pk 2+3, n 1+(3+1), l 1+(3+1+1)
        assert_eq!(item_size(&item), 5 + 5 + 6);
    }

    #[test]
    fn key_bytes_sort_as_dynamodb() {
        let s = |x: &str| AttrValue::S(x.into()).key_bytes();
        assert!(s("Z") < s("a"));
        assert!(s("a") < s("ab"));
        assert!(s("é") > s("z"));
    }
}
