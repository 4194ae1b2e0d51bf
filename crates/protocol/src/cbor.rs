//! awsJson services spoken in CBOR: the same `POST /` with `X-Amz-Target`, but
//! `Content-Type: application/x-amz-cbor-1.1` and a CBOR body (the AWS SDK for Java talks to
//! Kinesis this way). The shapes are the JSON protocol's; on the wire, blobs are CBOR byte
//! strings and timestamps are tag 1 (seconds since the epoch).
//!
//! Decoding turns the body into the JSON value the JSON decoder would have produced (byte
//! strings as base64), then checks it with the same `json::coerce`; encoding walks the output
//! with the model, so only blob and timestamp members change representation.

use base64::Engine;
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};
use tsumiki_core::AwsError;

use crate::model::{Model, Operation, ShapeKind, ShapeRef};
use crate::{Request, Response, response, serialization_error};

pub const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// CBOR nesting deeper than this is refused (the models nest far less).
const MAX_DEPTH: usize = 64;

/// Whether a request's body is CBOR.
pub fn is_cbor(req: &Request<'_>) -> bool {
    req.header("content-type")
        .is_some_and(|c| c.trim().starts_with("application/x-amz-cbor"))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn decode(model: &Model, op: &Operation, req: &Request<'_>) -> Result<Value, AwsError> {
    let Some(input) = &op.input else {
        return Ok(Value::Object(Map::new()));
    };
    if req.body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value = to_json(req.body)?;
    if !value.is_object() {
        return Err(serialization_error("The request body must be a CBOR map."));
    }
    crate::json::coerce(model, input, value, &input.shape)
}

/// A whole CBOR document as a JSON value: byte strings as base64 strings, tag 1 as its
/// number, other tags as their content, `undefined` as null.
pub fn to_json(bytes: &[u8]) -> Result<Value, AwsError> {
    let mut d = Decoder::new(bytes);
    let v =
        item(&mut d, 0).map_err(|e| serialization_error(format!("Malformed CBOR body: {e}")))?;
    if d.position() != bytes.len() {
        return Err(serialization_error(
            "Malformed CBOR body: bytes after the first item.",
        ));
    }
    Ok(v)
}

type DecodeResult = Result<Value, minicbor::decode::Error>;

fn item(d: &mut Decoder<'_>, depth: usize) -> DecodeResult {
    if depth > MAX_DEPTH {
        return Err(minicbor::decode::Error::message("nested too deeply"));
    }
    Ok(match d.datatype()? {
        Type::Bool => Value::Bool(d.bool()?),
        Type::Null => {
            d.null()?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined()?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::from(d.i64()?),
        Type::Int => {
            let n = i128::from(d.int()?);
            match (i64::try_from(n), u64::try_from(n)) {
                (Ok(i), _) => Value::from(i),
                (_, Ok(u)) => Value::from(u),
                _ => number(n as f64),
            }
        }
        Type::F16 => {
            // minicbor reads half floats only with its `half` feature; two bytes after 0xf9.
            let pos = d.position();
            let raw = d
                .input()
                .get(pos + 1..pos + 3)
                .ok_or_else(minicbor::decode::Error::end_of_input)?;
            d.set_position(pos + 3);
            number(half_to_f64(u16::from_be_bytes([raw[0], raw[1]])))
        }
        Type::F32 => number(f64::from(d.f32()?)),
        Type::F64 => number(d.f64()?),
        Type::Bytes => Value::String(b64().encode(d.bytes()?)),
        Type::BytesIndef => {
            let mut all = Vec::new();
            for chunk in d.bytes_iter()? {
                all.extend_from_slice(chunk?);
            }
            Value::String(b64().encode(all))
        }
        Type::String => Value::String(d.str()?.to_string()),
        Type::StringIndef => {
            let mut all = String::new();
            for chunk in d.str_iter()? {
                all.push_str(chunk?);
            }
            Value::String(all)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array()?;
            let mut out = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        out.push(item(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        out.push(item(d, depth + 1)?);
                    }
                    d.skip()?;
                }
            }
            Value::Array(out)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map()?;
            let mut out = Map::new();
            let mut entry = |d: &mut Decoder<'_>| -> Result<(), minicbor::decode::Error> {
                let key = match item(d, depth + 1)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let value = item(d, depth + 1)?;
                out.insert(key, value);
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        entry(d)?;
                    }
                    d.skip()?;
                }
            }
            Value::Object(out)
        }
        // Tag 1 (epoch seconds) and any other tag: the tagged item stands for itself.
        Type::Tag => {
            d.tag()?;
            item(d, depth + 1)?
        }
        Type::Simple | Type::Break | Type::Unknown(_) => {
            return Err(minicbor::decode::Error::message(
                "an item CBOR values of AWS shapes never hold",
            ));
        }
    })
}

/// An IEEE 754 half-precision float (RFC 8949, appendix D).
fn half_to_f64(h: u16) -> f64 {
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    let val = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    if h & 0x8000 != 0 { -val } else { val }
}

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

pub fn encode(model: &Model, op: &Operation, output: &Value) -> Response {
    let empty = Value::Object(Map::new());
    let output = if op.output.is_none() || output.is_null() {
        &empty
    } else {
        output
    };
    response(
        200,
        CONTENT_TYPE,
        to_cbor(model, op.output.as_ref(), output),
    )
}

/// `value` as CBOR, shaped by `r` where the model knows the member.
pub fn to_cbor(model: &Model, r: Option<&ShapeRef>, value: &Value) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    write(model, r, value, &mut e);
    e.into_writer()
}

// Writing to a Vec cannot fail (its error type is `Infallible`), so results are dropped.
fn write(model: &Model, r: Option<&ShapeRef>, value: &Value, e: &mut Encoder<Vec<u8>>) {
    let shape = r.map(|r| model.shape(&r.shape));
    match (shape.map(|s| (s.kind, s.document)), value) {
        (Some((ShapeKind::Blob, _)), Value::String(s)) => {
            let bytes = b64().decode(s).unwrap_or_else(|_| s.as_bytes().to_vec());
            let _ = e.bytes(&bytes);
        }
        (Some((ShapeKind::Timestamp, _)), Value::Number(n)) => {
            let _ = e.tag(Tag::new(1));
            write_number(n, e);
        }
        (Some((ShapeKind::Structure, false)), Value::Object(obj)) => {
            let shape = shape.expect("matched Some");
            let present: Vec<(&String, &Value)> =
                obj.iter().filter(|(_, v)| !v.is_null()).collect();
            let _ = e.map(present.len() as u64);
            for (k, v) in present {
                let _ = e.str(k);
                write(model, shape.members.get(k), v, e);
            }
        }
        (Some((ShapeKind::List, _)), Value::Array(items)) => {
            let member = shape.and_then(|s| s.member.as_deref());
            let _ = e.array(items.len() as u64);
            for v in items {
                write(model, member, v, e);
            }
        }
        (Some((ShapeKind::Map, _)), Value::Object(obj)) => {
            let value_ref = shape.and_then(|s| s.value.as_deref());
            let _ = e.map(obj.len() as u64);
            for (k, v) in obj {
                let _ = e.str(k);
                write(model, value_ref, v, e);
            }
        }
        (_, v) => write_plain(v, e),
    }
}

/// A value with no shape to follow (documents, error bodies): JSON's types as CBOR's.
fn write_plain(value: &Value, e: &mut Encoder<Vec<u8>>) {
    match value {
        Value::Null => {
            let _ = e.null();
        }
        Value::Bool(b) => {
            let _ = e.bool(*b);
        }
        Value::Number(n) => write_number(n, e),
        Value::String(s) => {
            let _ = e.str(s);
        }
        Value::Array(items) => {
            let _ = e.array(items.len() as u64);
            for v in items {
                write_plain(v, e);
            }
        }
        Value::Object(obj) => {
            let _ = e.map(obj.len() as u64);
            for (k, v) in obj {
                let _ = e.str(k);
                write_plain(v, e);
            }
        }
    }
}

fn write_number(n: &Number, e: &mut Encoder<Vec<u8>>) {
    if let Some(u) = n.as_u64() {
        let _ = e.u64(u);
    } else if let Some(i) = n.as_i64() {
        let _ = e.i64(i);
    } else {
        let _ = e.f64(n.as_f64().unwrap_or(0.0));
    }
}

/// AWS's JSON error body (`__type`, `message`), in CBOR.
pub fn encode_error(err: &AwsError) -> Response {
    let mut body = Map::new();
    body.insert("__type".into(), Value::String(err.code.to_string()));
    body.insert("message".into(), Value::String(err.message.clone()));
    if let Some(extra) = err.extra.as_deref() {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    let mut e = Encoder::new(Vec::new());
    write_plain(&Value::Object(body), &mut e);
    response(err.status, CONTENT_TYPE, e.into_writer())
}
