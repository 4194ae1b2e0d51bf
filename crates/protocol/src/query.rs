//! awsQuery: form-encoded `Action=Op&Version=...&Member=value` requests (body or URL query),
//! XML responses wrapped in `OpResponse`/`OpResult` with `ResponseMetadata`.
//!
//! Names follow botocore's query serializer: a member's `locationName` names its key; lists
//! are `Name.member.N` (or `Name.N` when flattened, with the list member's `locationName`
//! replacing the last segment); maps are `Name.entry.N.key`/`.value` (or `Name.N.Key` when
//! flattened, with the key and value `locationName`s).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use tsumiki_core::AwsError;

use crate::model::{Model, Operation, ShapeKind, ShapeRef};
use crate::xml::{XmlWriter, write_members};
use crate::{Request, Response, response, timestamp};

/// The decoded parameters of a query request, body and URL query together.
pub struct Params {
    values: HashMap<String, String>,
    /// Every dotted prefix of every key, so "is there an element N" is one lookup.
    prefixes: HashSet<String>,
}

impl Params {
    pub fn parse(req: &Request<'_>) -> Params {
        let mut values = HashMap::new();
        if let Some(q) = req.uri.query() {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                values.insert(k.into_owned(), v.into_owned());
            }
        }
        for (k, v) in form_urlencoded::parse(req.body) {
            values.insert(k.into_owned(), v.into_owned());
        }
        let mut prefixes = HashSet::new();
        for k in values.keys() {
            let mut end = 0;
            while let Some(pos) = k[end..].find('.') {
                end += pos;
                prefixes.insert(k[..end].to_string());
                end += 1;
            }
        }
        Params { values, prefixes }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key) || self.prefixes.contains(key)
    }
}

/// Whether a request looks like awsQuery: a form body or URL query carrying `Action`.
pub fn action(req: &Request<'_>) -> Option<String> {
    let from = |bytes: &[u8]| {
        form_urlencoded::parse(bytes)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    let form_body = req
        .header("content-type")
        .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form_body && let Some(a) = from(req.body) {
        return Some(a);
    }
    req.uri.query().and_then(|q| from(q.as_bytes()))
}

pub fn identify<'m>(model: &'m Model, req: &Request<'_>) -> Result<&'m Operation, AwsError> {
    let name = action(req).ok_or_else(|| {
        AwsError::new(
            "MissingAction",
            400,
            "The request must contain the parameter Action.",
        )
    })?;
    model.operation(&name).ok_or_else(|| {
        AwsError::new(
            "InvalidAction",
            400,
            format!("The action {name} is not valid for this endpoint."),
        )
    })
}

pub fn decode(model: &Model, op: &Operation, req: &Request<'_>) -> Result<Value, AwsError> {
    let params = Params::parse(req);
    let Some(input) = &op.input else {
        return Ok(Value::Object(Map::new()));
    };
    Ok(decode_structure(model, &input.shape, "", &params)?
        .unwrap_or_else(|| Value::Object(Map::new())))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn decode_structure(
    model: &Model,
    shape_name: &str,
    prefix: &str,
    params: &Params,
) -> Result<Option<Value>, AwsError> {
    let shape = model.shape(shape_name);
    let mut out = Map::new();
    for (name, r) in &shape.members {
        let key = join(prefix, r.location_name.as_deref().unwrap_or(name));
        if let Some(v) = decode_value(model, r, &key, params)? {
            out.insert(name.clone(), v);
        }
    }
    if out.is_empty() && !prefix.is_empty() && !params.has(prefix) {
        return Ok(None);
    }
    Ok(Some(Value::Object(out)))
}

fn decode_value(
    model: &Model,
    r: &ShapeRef,
    key: &str,
    params: &Params,
) -> Result<Option<Value>, AwsError> {
    let shape = model.shape(&r.shape);
    match shape.kind {
        ShapeKind::Structure => {
            if !params.has(key) {
                return Ok(None);
            }
            decode_structure(model, &r.shape, key, params)
        }
        ShapeKind::List => {
            let Some(member) = shape.member.as_deref() else {
                return Ok(None);
            };
            let list_prefix = if r.flattened || shape.flattened {
                match &member.location_name {
                    Some(name) => match key.rsplit_once('.') {
                        Some((parent, _)) => format!("{parent}.{name}"),
                        None => name.clone(),
                    },
                    None => key.to_string(),
                }
            } else {
                format!(
                    "{key}.{}",
                    member.location_name.as_deref().unwrap_or("member")
                )
            };
            let mut items = Vec::new();
            for i in 1.. {
                let item_key = format!("{list_prefix}.{i}");
                if !params.has(&item_key) {
                    break;
                }
                if let Some(v) = decode_value(model, member, &item_key, params)? {
                    items.push(v);
                }
            }
            if items.is_empty() && params.get(key).is_none() && !params.has(&list_prefix) {
                return Ok(None);
            }
            Ok(Some(Value::Array(items)))
        }
        ShapeKind::Map => {
            let (Some(key_ref), Some(value_ref)) = (shape.key.as_deref(), shape.value.as_deref())
            else {
                return Ok(None);
            };
            let map_prefix = if r.flattened || shape.flattened {
                key.to_string()
            } else {
                format!("{key}.entry")
            };
            let key_suffix = key_ref.location_name.as_deref().unwrap_or("key");
            let value_suffix = value_ref.location_name.as_deref().unwrap_or("value");
            let mut out = Map::new();
            for i in 1.. {
                let entry = format!("{map_prefix}.{i}");
                if !params.has(&entry) {
                    break;
                }
                let Some(k) = params.get(&format!("{entry}.{key_suffix}")) else {
                    continue;
                };
                if let Some(v) =
                    decode_value(model, value_ref, &format!("{entry}.{value_suffix}"), params)?
                {
                    out.insert(k.to_string(), v);
                }
            }
            if out.is_empty() && !params.has(key) {
                return Ok(None);
            }
            Ok(Some(Value::Object(out)))
        }
        _ => match params.get(key) {
            None => Ok(None),
            Some(text) => scalar(model, r, key, text).map(Some),
        },
    }
}

fn scalar(model: &Model, r: &ShapeRef, key: &str, text: &str) -> Result<Value, AwsError> {
    let invalid = || {
        AwsError::invalid_parameter_value(format!("Value ({text}) for parameter {key} is invalid."))
    };
    let shape = model.shape(&r.shape);
    Ok(match shape.kind {
        ShapeKind::Integer
        | ShapeKind::Long
        | ShapeKind::Short
        | ShapeKind::Byte
        | ShapeKind::Biginteger => Value::from(text.trim().parse::<i64>().map_err(|_| invalid())?),
        ShapeKind::Float | ShapeKind::Double | ShapeKind::Bigdecimal => {
            let f = text.trim().parse::<f64>().map_err(|_| invalid())?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(invalid)?
        }
        ShapeKind::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(invalid()),
        },
        ShapeKind::Timestamp => timestamp::parse(text)
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(invalid)?,
        _ => Value::String(text.to_string()),
    })
}

fn namespace(model: &Model) -> String {
    model.metadata.xml_namespace.clone().unwrap_or_else(|| {
        format!(
            "http://{}.amazonaws.com/doc/{}/",
            model.metadata.endpoint_prefix, model.metadata.api_version
        )
    })
}

pub fn encode(model: &Model, op: &Operation, output: &Value, request_id: &str) -> Response {
    let mut w = XmlWriter::new();
    w.declaration();
    let root = format!("{}Response", op.name);
    let ns = namespace(model);
    w.start_with_attrs(&root, &[("xmlns", &ns)]);
    if let Some(out_ref) = &op.output {
        let wrapper = out_ref
            .result_wrapper
            .clone()
            .unwrap_or_else(|| format!("{}Result", op.name));
        w.start(&wrapper);
        write_members(&mut w, model, &out_ref.shape, output);
        w.end(&wrapper);
    }
    w.start("ResponseMetadata");
    w.element("RequestId", request_id);
    w.end("ResponseMetadata");
    w.end(&root);
    response(200, "text/xml", w.into_string())
}

pub fn encode_error(model: Option<&Model>, err: &AwsError, request_id: &str) -> Response {
    let mut w = XmlWriter::new();
    w.declaration();
    match model {
        Some(m) => w.start_with_attrs("ErrorResponse", &[("xmlns", &namespace(m))]),
        None => w.start("ErrorResponse"),
    }
    w.start("Error");
    w.element("Type", err.fault.as_str());
    w.element("Code", err.wire_query_code());
    w.element("Message", &err.message);
    w.out.push_str("<Detail/>");
    w.end("Error");
    w.element("RequestId", request_id);
    w.end("ErrorResponse");
    response(err.status, "text/xml", w.into_string())
}
