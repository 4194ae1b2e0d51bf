//! restJson1: operations bound to an HTTP method and URI template; members travel in URI
//! labels, query strings and headers, the rest in a JSON body or a payload member alone.
//!
//! The client side is botocore's `RestJSONSerializer` and `RestJSONParser`. JSON keys are the
//! members' `locationName` when they have one (API Gateway's `items` is `item` on the wire),
//! so bodies are renamed here in both directions rather than passed through.

use serde_json::{Map, Value};
use tsumiki_core::AwsError;

use crate::model::{Model, Operation, ShapeKind, ShapeRef};
use crate::rest::{self, BodyBinding};
use crate::{Request, Response, serialization_error, timestamp};

const CONTENT_TYPE: &str = "application/json";

pub fn decode(model: &Model, op: &Operation, req: &Request<'_>) -> Result<Value, AwsError> {
    let Some(input) = &op.input else {
        return Ok(Value::Object(Map::new()));
    };
    let mut out = rest::decode_located(model, op, req, input)?;
    match rest::body_binding(model, input) {
        BodyBinding::None => {}
        BodyBinding::Raw(name, r) => {
            if !req.body.is_empty() {
                let value =
                    rest::raw_payload_value(model, r, req.body).map_err(serialization_error)?;
                out.insert(name.to_string(), value);
            }
        }
        BodyBinding::Document(name, r) => {
            if !rest::is_blank(req.body) {
                let value = from_wire(model, r, parse_body(req.body)?, name)?;
                if !value.is_null() {
                    out.insert(name.to_string(), value);
                }
            }
        }
        BodyBinding::Members => {
            if !rest::is_blank(req.body) {
                let Value::Object(mut body) = parse_body(req.body)? else {
                    return Err(serialization_error(
                        "The request body must be a JSON object.",
                    ));
                };
                let shape = model.shape(&input.shape);
                for (name, r) in &shape.members {
                    if r.location.is_some() {
                        continue;
                    }
                    let wire = r.location_name.as_deref().unwrap_or(name);
                    if let Some(v) = body.remove(wire) {
                        let v = from_wire(model, r, v, name)?;
                        if !v.is_null() {
                            out.insert(name.clone(), v);
                        }
                    }
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn parse_body(body: &[u8]) -> Result<Value, AwsError> {
    serde_json::from_slice(body)
        .map_err(|e| serialization_error(format!("Malformed JSON body: {e}")))
}

/// Brings a JSON value from the wire to tsumiki's form: keys renamed from `locationName` to
/// member names, blobs checked and canonicalised, scalars as `json::coerce` has them.
fn from_wire(model: &Model, r: &ShapeRef, value: Value, path: &str) -> Result<Value, AwsError> {
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
        // A document is any JSON value, not only an object.
        ShapeKind::Structure if shape.document => Ok(value),
        ShapeKind::Structure => {
            let Value::Object(mut obj) = value else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (name, m) in &shape.members {
                let wire = m.location_name.as_deref().unwrap_or(name);
                if let Some(v) = obj.remove(wire) {
                    let v = from_wire(model, m, v, name)?;
                    if !v.is_null() {
                        out.insert(name.clone(), v);
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
                .map(|v| from_wire(model, member, v, path))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        ShapeKind::Map => {
            let Value::Object(obj) = value else {
                return Err(wrong("a map"));
            };
            let value_ref = shape.value.as_deref().ok_or_else(AwsError::internal)?;
            let mut out = Map::new();
            for (k, v) in obj {
                out.insert(k, from_wire(model, value_ref, v, path)?);
            }
            Ok(Value::Object(out))
        }
        ShapeKind::Blob => match &value {
            Value::String(s) => rest::canonical_base64(s)
                .map(Value::String)
                .ok_or_else(|| wrong("base64 text")),
            _ => Err(wrong("base64 text")),
        },
        _ => crate::json::coerce(model, r, value, path),
    }
}

/// The wire JSON of `value`: keys renamed to `locationName`, members bound elsewhere left out,
/// timestamps in the shape's format (epoch seconds unless the model says otherwise).
fn to_wire(model: &Model, r: &ShapeRef, value: &Value) -> Value {
    let shape = model.shape(&r.shape);
    match (shape.kind, value) {
        (ShapeKind::Structure, Value::Object(obj)) if !shape.document => {
            let mut out = Map::new();
            for (name, m) in &shape.members {
                if m.location.is_some() {
                    continue;
                }
                if let Some(v) = obj.get(name).filter(|v| !v.is_null()) {
                    out.insert(
                        m.location_name.clone().unwrap_or_else(|| name.clone()),
                        to_wire(model, m, v),
                    );
                }
            }
            Value::Object(out)
        }
        (ShapeKind::List, Value::Array(items)) => match shape.member.as_deref() {
            Some(member) => Value::Array(items.iter().map(|v| to_wire(model, member, v)).collect()),
            None => value.clone(),
        },
        (ShapeKind::Map, Value::Object(entries)) => match shape.value.as_deref() {
            Some(value_ref) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), to_wire(model, value_ref, v)))
                    .collect(),
            ),
            None => value.clone(),
        },
        (ShapeKind::Timestamp, Value::Number(n)) => {
            let secs = n.as_f64().unwrap_or(0.0);
            match r
                .timestamp_format
                .as_deref()
                .or(shape.timestamp_format.as_deref())
            {
                Some("iso8601") => Value::String(timestamp::iso8601(secs)),
                Some("rfc822") => Value::String(timestamp::http_date(secs)),
                _ => value.clone(),
            }
        }
        _ => value.clone(),
    }
}

pub fn encode(model: &Model, op: &Operation, output: &Value) -> Response {
    let (body, content_type) = match rest::output_binding(model, op) {
        BodyBinding::None => (Vec::new(), None),
        BodyBinding::Raw(name, r) => {
            let (bytes, ct) = rest::raw_payload_bytes(model, r, rest::member_value(output, name));
            (bytes, Some(ct))
        }
        BodyBinding::Document(name, r) => match rest::member_value(output, name) {
            Some(v) => (json_bytes(&to_wire(model, r, v)), Some(CONTENT_TYPE)),
            None => (Vec::new(), None),
        },
        BodyBinding::Members => match &op.output {
            Some(out_ref) => {
                let empty = Value::Object(Map::new());
                let value = if output.is_object() { output } else { &empty };
                (
                    json_bytes(&to_wire(model, out_ref, value)),
                    Some(CONTENT_TYPE),
                )
            }
            None => (Vec::new(), None),
        },
    };
    let content_type = content_type.filter(|_| !body.is_empty());
    rest::finish(model, op, output, body, content_type)
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// A restJson1 error: the code in `X-Amzn-ErrorType` (which clients read first) and again as
/// `__type` in the body, the message under the key the model's error shape uses for it.
pub fn encode_error(model: Option<&Model>, err: &AwsError) -> Response {
    let message_key = model
        .and_then(|m| m.error_shape(&err.code))
        .and_then(|(_, shape)| {
            shape
                .members
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("message"))
                .map(|(name, r)| r.location_name.clone().unwrap_or_else(|| name.clone()))
        })
        .unwrap_or_else(|| "message".to_string());
    let mut body = Map::new();
    body.insert("__type".into(), Value::String(err.code.to_string()));
    body.insert(message_key, Value::String(err.message.clone()));
    if let Some(extra) = err.extra.as_deref() {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    let mut resp = crate::response(err.status, CONTENT_TYPE, json_bytes(&Value::Object(body)));
    if let Ok(v) = http::HeaderValue::from_str(&err.code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, Method, Uri};
    use serde_json::json;

    use super::*;

    const MODEL: &str = r#"{
        "metadata": {"protocol": "rest-json", "apiVersion": "2020-01-01", "endpointPrefix": "t",
                     "serviceId": "T"},
        "operations": {"Put": {"name": "Put", "http": {"method": "PUT", "requestUri": "/things/{Id}"},
                               "input": {"shape": "PutInput"}, "output": {"shape": "PutOutput"}}},
        "shapes": {
            "PutInput": {"type": "structure", "required": ["Id"], "members": {
                "Id": {"shape": "S", "location": "uri", "locationName": "Id"},
                "Doc": {"shape": "Doc", "locationName": "doc"},
                "When": {"shape": "Iso"}
            }},
            "PutOutput": {"type": "structure", "members": {
                "Doc": {"shape": "Doc", "locationName": "doc"},
                "When": {"shape": "Iso"}
            }},
            "S": {"type": "string"},
            "Doc": {"type": "structure", "members": {}, "document": true},
            "Iso": {"type": "timestamp", "timestampFormat": "iso8601"}
        }
    }"#;

    #[test]
    fn documents_are_any_json_and_keys_follow_location_names() {
        let model = Model::from_json("t", MODEL).unwrap();
        let op = model.operation("Put").unwrap();
        let (method, uri, headers) = (
            Method::PUT,
            "/things/a%20b".parse::<Uri>().unwrap(),
            HeaderMap::new(),
        );
        let body = br#"{"doc": [1, "two", {"three": null}], "When": "2024-01-02T03:04:05Z"}"#;
        let req = Request {
            method: &method,
            uri: &uri,
            headers: &headers,
            body,
        };
        let value = decode(&model, op, &req).unwrap();
        assert_eq!(
            value,
            json!({"Id": "a b", "Doc": [1, "two", {"three": null}], "When": 1704164645.0})
        );

        let resp = encode(&model, op, &json!({"Doc": "text", "When": 1704164645.5}));
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(
            body,
            json!({"doc": "text", "When": "2024-01-02T03:04:05.500Z"})
        );
    }
}
