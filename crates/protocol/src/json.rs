//! awsJson 1.0 and 1.1: `POST /` with `X-Amz-Target: Prefix.Operation` and a JSON body.

use serde_json::{Map, Value};
use tsumiki_core::AwsError;

use crate::model::{Model, Operation, ShapeKind, ShapeRef};
use crate::{Request, Response, response, serialization_error, timestamp};

pub fn identify<'m>(model: &'m Model, req: &Request<'_>) -> Result<&'m Operation, AwsError> {
    let target = req
        .header("x-amz-target")
        .ok_or_else(|| serialization_error("Missing the X-Amz-Target header."))?;
    let (prefix, name) = target.rsplit_once('.').unwrap_or(("", target));
    if model
        .metadata
        .target_prefix
        .as_deref()
        .is_some_and(|p| p != prefix)
    {
        return Err(AwsError::unknown_operation(
            &model.metadata.service_id,
            target,
        ));
    }
    model
        .operation(name)
        .ok_or_else(|| AwsError::unknown_operation(&model.metadata.service_id, name))
}

pub fn decode(model: &Model, op: &Operation, req: &Request<'_>) -> Result<Value, AwsError> {
    let Some(input) = &op.input else {
        return Ok(Value::Object(Map::new()));
    };
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        req.body
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| serialization_error(format!("Malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(serialization_error(
            "The request body must be a JSON object.",
        ));
    }
    coerce(model, input, value, &input.shape)
}

/// Checks `value` against the shape of `r` and brings it to tsumiki's canonical form
/// (timestamps as epoch seconds, integral numbers for integer shapes). Unknown members are
/// dropped, as AWS ignores them.
pub fn coerce(model: &Model, r: &ShapeRef, value: Value, path: &str) -> Result<Value, AwsError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let shape = model.shape(&r.shape);
    let wrong = |expected: &str| {
        serialization_error(format!(
            "Value at '{path}' has the wrong type: expected {expected}."
        ))
    };
    match shape.kind {
        ShapeKind::Structure if shape.document => Ok(value),
        ShapeKind::Structure => {
            let Value::Object(obj) = value else {
                return Err(wrong("an object"));
            };
            let mut out = Map::with_capacity(obj.len());
            for (k, v) in obj {
                if let Some(member) = shape.members.get(&k) {
                    let v = coerce(model, member, v, &k)?;
                    if !v.is_null() {
                        out.insert(k, v);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        ShapeKind::List => {
            let Value::Array(items) = value else {
                return Err(wrong("a list"));
            };
            let member = shape.member.as_deref().ok_or_else(AwsError::internal)?;
            items
                .into_iter()
                .map(|v| coerce(model, member, v, path))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        ShapeKind::Map => {
            let Value::Object(obj) = value else {
                return Err(wrong("a map"));
            };
            let value_ref = shape.value.as_deref().ok_or_else(AwsError::internal)?;
            let mut out = Map::with_capacity(obj.len());
            for (k, v) in obj {
                out.insert(k, coerce(model, value_ref, v, path)?);
            }
            Ok(Value::Object(out))
        }
        ShapeKind::Blob => match &value {
            Value::String(s) => crate::rest::canonical_base64(s)
                .map(Value::String)
                .ok_or_else(|| wrong("base64-encoded binary data")),
            _ => Err(wrong("base64-encoded binary data")),
        },
        ShapeKind::String | ShapeKind::Character => match value {
            Value::String(_) => Ok(value),
            _ if r.jsonvalue => Ok(value),
            _ => Err(wrong("a string")),
        },
        ShapeKind::Boolean => match value {
            Value::Bool(_) => Ok(value),
            _ => Err(wrong("a boolean")),
        },
        ShapeKind::Integer
        | ShapeKind::Long
        | ShapeKind::Short
        | ShapeKind::Byte
        | ShapeKind::Biginteger => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(wrong("an integer")),
            },
            _ => Err(wrong("an integer")),
        },
        ShapeKind::Float | ShapeKind::Double | ShapeKind::Bigdecimal => match &value {
            Value::Number(_) => Ok(value),
            Value::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => Ok(value),
            _ => Err(wrong("a number")),
        },
        ShapeKind::Timestamp => match &value {
            Value::Number(_) => Ok(value),
            Value::String(s) => timestamp::parse(s)
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wrong("a timestamp")),
            _ => Err(wrong("a timestamp")),
        },
    }
}

pub fn content_type(model: &Model) -> &'static str {
    match model.metadata.json_version.as_deref() {
        Some("1.1") => "application/x-amz-json-1.1",
        _ => "application/x-amz-json-1.0",
    }
}

pub fn encode(model: &Model, op: &Operation, output: &Value) -> Response {
    let body = if op.output.is_none() || output.is_null() {
        b"{}".to_vec()
    } else {
        serde_json::to_vec(output).unwrap_or_else(|_| b"{}".to_vec())
    };
    response(200, content_type(model), body)
}

pub fn encode_error(model: Option<&Model>, err: &AwsError) -> Response {
    let mut body = Map::new();
    body.insert("__type".into(), Value::String(err.code.to_string()));
    // Some errors carry AWS's capitalised `Message` in their extra members instead (DynamoDB's
    // ConditionalCheckFailedException with an `Item`); one message member only.
    if !err
        .extra
        .as_ref()
        .is_some_and(|e| e.contains_key("Message"))
    {
        body.insert("message".into(), Value::String(err.message.clone()));
    }
    if let Some(extra) = err.extra.as_deref() {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    let content_type = model
        .map(content_type)
        .unwrap_or("application/x-amz-json-1.0");
    let mut resp = response(
        err.status,
        content_type,
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    );
    if model.is_some_and(Model::is_query_compatible) {
        let value = format!("{};{}", err.wire_query_code(), err.fault.as_str());
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert("x-amzn-query-error", v);
        }
    }
    resp
}
