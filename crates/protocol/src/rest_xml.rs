//! restXml (S3, Route 53, CloudFront): operations bound to an HTTP method and URI template;
//! members travel in URI labels, query strings and headers, the rest in an XML document or a
//! payload member alone.
//!
//! The client side is botocore's `RestXMLSerializer` and `RestXMLParser`. Documents are read
//! by `xml_read` and written by `xml::write_value`; the root element of an output document is
//! the output's `locationName` (S3's `ListBucketResult`) or else its shape name.

use serde_json::{Map, Value};
use tsumiki_core::AwsError;

use crate::model::{Model, Operation, ShapeKind, ShapeRef, XmlNamespace};
use crate::rest::{self, BodyBinding};
use crate::xml::{XmlWriter, write_value};
use crate::{Request, Response, xml_read};

const CONTENT_TYPE: &str = "application/xml";

fn malformed(detail: String) -> AwsError {
    AwsError::new(
        "MalformedXML",
        400,
        format!(
            "The XML you provided was not well-formed or did not validate against our published schema: {detail}"
        ),
    )
}

pub fn decode(model: &Model, op: &Operation, req: &Request<'_>) -> Result<Value, AwsError> {
    let Some(input) = &op.input else {
        return Ok(Value::Object(Map::new()));
    };
    let mut out = rest::decode_located(model, op, req, input)?;
    match rest::body_binding(model, input) {
        BodyBinding::None => {}
        BodyBinding::Raw(name, r) => {
            if !req.body.is_empty() {
                let value = rest::raw_payload_value(model, r, req.body).map_err(malformed)?;
                out.insert(name.to_string(), value);
            }
        }
        BodyBinding::Document(name, r) => {
            if !rest::is_blank(req.body) {
                let root = xml_read::parse(req.body).map_err(malformed)?;
                let value = xml_read::read_value(model, r, &root).map_err(malformed)?;
                out.insert(name.to_string(), value);
            }
        }
        BodyBinding::Members => {
            if !rest::is_blank(req.body) {
                let root = xml_read::parse(req.body).map_err(malformed)?;
                out.extend(xml_read::read_members(model, &input.shape, &root).map_err(malformed)?);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The service's XML namespace: declared in the metadata, or else the one its input documents
/// declare (S3's `http://s3.amazonaws.com/doc/2006-03-01/`, Route 53's `https://...`), or else
/// the conventional `http://{endpointPrefix}.amazonaws.com/doc/{apiVersion}/`.
pub fn namespace(model: &Model) -> String {
    if let Some(ns) = &model.metadata.xml_namespace {
        return ns.clone();
    }
    for op in model.operations.values() {
        let Some(input) = &op.input else { continue };
        if let Some(ns) = &input.xml_namespace {
            return ns.uri().to_string();
        }
        let shape = model.shape(&input.shape);
        let payload_ns = shape
            .payload
            .as_ref()
            .and_then(|p| shape.members.get(p))
            .and_then(|r| r.xml_namespace.as_ref());
        if let Some(ns) = payload_ns {
            return ns.uri().to_string();
        }
    }
    format!(
        "http://{}.amazonaws.com/doc/{}/",
        model.metadata.endpoint_prefix, model.metadata.api_version
    )
}

fn document(model: &Model, root: &str, r: &ShapeRef, value: &Value) -> Vec<u8> {
    let shape = model.shape(&r.shape);
    let mut r = r.clone();
    if shape.kind == ShapeKind::Structure
        && r.xml_namespace.is_none()
        && shape.xml_namespace.is_none()
    {
        r.xml_namespace = Some(XmlNamespace::Uri(namespace(model)));
    }
    let mut w = XmlWriter::new();
    w.declaration();
    write_value(&mut w, model, root, &r, value);
    w.into_string().into_bytes()
}

pub fn encode(model: &Model, op: &Operation, output: &Value) -> Response {
    let (body, content_type) = match rest::output_binding(model, op) {
        BodyBinding::None => (Vec::new(), None),
        BodyBinding::Raw(name, r) => {
            let (bytes, ct) = rest::raw_payload_bytes(model, r, rest::member_value(output, name));
            (bytes, Some(ct))
        }
        BodyBinding::Document(name, r) => match rest::member_value(output, name) {
            Some(v) => (
                document(model, r.location_name.as_deref().unwrap_or(name), r, v),
                Some(CONTENT_TYPE),
            ),
            None => (Vec::new(), None),
        },
        BodyBinding::Members => match &op.output {
            Some(out_ref) => {
                let shape = model.shape(&out_ref.shape);
                let root = out_ref
                    .location_name
                    .as_deref()
                    .or(shape.location_name.as_deref())
                    .unwrap_or(&out_ref.shape);
                let empty = Value::Object(Map::new());
                let value = if output.is_object() { output } else { &empty };
                (document(model, root, out_ref, value), Some(CONTENT_TYPE))
            }
            None => (Vec::new(), None),
        },
    };
    let content_type = content_type.filter(|_| !body.is_empty());
    rest::finish(model, op, output, body, content_type)
}

/// S3 answers a bare `<Error>` with the request id inside; the other restXml services wrap it
/// in `<ErrorResponse>` with the fault type, as awsQuery does. Botocore reads both.
pub fn encode_error(model: Option<&Model>, err: &AwsError, request_id: &str) -> Response {
    let mut w = XmlWriter::new();
    w.declaration();
    let wrapped = model.filter(|m| m.metadata.endpoint_prefix != "s3");
    match wrapped {
        Some(m) => {
            w.start_with_attrs("ErrorResponse", &[("xmlns", &namespace(m))]);
            w.start("Error");
            w.element("Type", err.fault.as_str());
        }
        None => w.start("Error"),
    }
    w.element("Code", err.wire_query_code());
    w.element("Message", &err.message);
    if let Some(extra) = err.extra.as_deref() {
        for (k, v) in extra {
            write_plain(&mut w, k, v);
        }
    }
    if wrapped.is_some() {
        w.end("Error");
    }
    w.element("RequestId", request_id);
    w.end(if wrapped.is_some() {
        "ErrorResponse"
    } else {
        "Error"
    });
    crate::response(err.status, CONTENT_TYPE, w.into_string())
}

/// Writes a value with no shape to guide it: objects as child elements, arrays as repeated
/// elements, scalars as text.
fn write_plain(w: &mut XmlWriter, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Object(obj) => {
            w.start(name);
            for (k, v) in obj {
                write_plain(w, k, v);
            }
            w.end(name);
        }
        Value::Array(items) => {
            for item in items {
                write_plain(w, name, item);
            }
        }
        Value::String(s) => w.element(name, s),
        other => w.element(name, &other.to_string()),
    }
}
