//! The model-driven AWS protocol layer (DESIGN.md decision 2): one generic decoder and
//! encoder per AWS protocol, interpreting the service model at runtime.
//!
//! A request becomes a [`serde_json::Value`] shaped by the operation's input shape (member names
//! as in the model, blobs as base64 strings, timestamps as epoch seconds), validated against the
//! model; a service's output value becomes the protocol's response bytes; an
//! [`AwsError`] becomes the protocol's error shape. This crate knows no service: everything
//! service-specific comes from the model. Read `model.rs`, then `json.rs` and `query.rs`.

pub mod cbor;
pub mod json;
pub mod model;
pub mod query;
pub mod rest;
pub mod rest_json;
pub mod rest_xml;
pub mod timestamp;
pub mod validate;
pub mod xml;
pub mod xml_read;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
pub use model::{Model, Operation, Shape, ShapeKind, ShapeRef};
use serde_json::Value;
use tsumiki_core::AwsError;

/// The wire protocols AWS services speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0 or 1.1: `X-Amz-Target`, a JSON body.
    Json,
    /// An awsJson service spoken in CBOR (`application/x-amz-cbor-1.1`), as SDKs that prefer
    /// CBOR (the AWS SDK for Java with Kinesis) do; see [`Protocol::for_request`].
    JsonCbor,
    /// awsQuery: form-encoded `Action` and parameters, XML responses.
    Query,
    RestJson,
    RestXml,
}

impl Protocol {
    pub fn from_model_name(name: &str) -> Option<Protocol> {
        match name {
            "json" => Some(Protocol::Json),
            "query" | "ec2" => Some(Protocol::Query),
            "rest-json" => Some(Protocol::RestJson),
            "rest-xml" => Some(Protocol::RestXml),
            _ => None,
        }
    }

    /// The protocol a request to a service of protocol `self` really speaks: an awsJson
    /// request with a CBOR content type is answered in CBOR.
    pub fn for_request(self, req: &Request<'_>) -> Protocol {
        match self {
            Protocol::Json if cbor::is_cbor(req) => Protocol::JsonCbor,
            other => other,
        }
    }
}

/// The parts of an HTTP request the codecs read.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type Response = http::Response<Bytes>;

/// Which operation of `model` a request in `protocol` calls.
pub fn identify_operation<'m>(
    model: &'m Model,
    protocol: Protocol,
    req: &Request<'_>,
) -> Result<&'m Operation, AwsError> {
    match protocol {
        Protocol::Json | Protocol::JsonCbor => json::identify(model, req),
        Protocol::Query => query::identify(model, req),
        Protocol::RestJson | Protocol::RestXml => rest::identify(model, req),
    }
}

/// Decodes and validates the input of `op`.
pub fn decode_request(
    model: &Model,
    protocol: Protocol,
    op: &Operation,
    req: &Request<'_>,
) -> Result<Value, AwsError> {
    let value = decode_unvalidated(model, protocol, op, req)?;
    validate_input(model, protocol, op, &value)?;
    Ok(value)
}

/// Decodes the input of `op` without checking it against the model, for callers that
/// complete the input first (see `Service::complete_input`), then call [`validate_input`].
pub fn decode_unvalidated(
    model: &Model,
    protocol: Protocol,
    op: &Operation,
    req: &Request<'_>,
) -> Result<Value, AwsError> {
    match protocol {
        Protocol::Json => json::decode(model, op, req),
        Protocol::JsonCbor => cbor::decode(model, op, req),
        Protocol::Query => query::decode(model, op, req),
        Protocol::RestJson => rest_json::decode(model, op, req),
        Protocol::RestXml => rest_xml::decode(model, op, req),
    }
}

/// Checks a decoded input against the model: required members, lengths, ranges, enums.
pub fn validate_input(
    model: &Model,
    protocol: Protocol,
    op: &Operation,
    value: &Value,
) -> Result<(), AwsError> {
    match &op.input {
        Some(input) => validate::validate(model, protocol, input, value),
        None => Ok(()),
    }
}

/// Encodes the output of `op`.
pub fn encode_response(
    model: &Model,
    protocol: Protocol,
    op: &Operation,
    output: &Value,
    request_id: &str,
) -> Response {
    let mut resp = match protocol {
        Protocol::Json => json::encode(model, op, output),
        Protocol::JsonCbor => cbor::encode(model, op, output),
        Protocol::Query => query::encode(model, op, output, request_id),
        Protocol::RestJson => rest_json::encode(model, op, output),
        Protocol::RestXml => rest_xml::encode(model, op, output),
    };
    set_request_id(&mut resp, protocol, request_id);
    resp
}

/// Encodes `err` as `protocol` does; `model` adds query-compatibility headers and XML namespaces.
pub fn encode_error(
    model: Option<&Model>,
    protocol: Protocol,
    err: &AwsError,
    request_id: &str,
) -> Response {
    let mut resp = match protocol {
        Protocol::Json => json::encode_error(model, err),
        Protocol::JsonCbor => cbor::encode_error(err),
        Protocol::Query => query::encode_error(model, err, request_id),
        Protocol::RestJson => rest_json::encode_error(model, err),
        Protocol::RestXml => rest_xml::encode_error(model, err, request_id),
    };
    set_request_id(&mut resp, protocol, request_id);
    resp
}

fn set_request_id(resp: &mut Response, protocol: Protocol, request_id: &str) {
    let Ok(value) = HeaderValue::from_str(request_id) else {
        return;
    };
    let headers = resp.headers_mut();
    match protocol {
        Protocol::RestXml => {
            headers.insert("x-amz-request-id", value.clone());
            headers.insert("x-amz-id-2", value);
        }
        _ => {
            headers.insert("x-amzn-requestid", value);
        }
    }
}

/// Builds a response with a body and content type.
pub(crate) fn response(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut resp = http::Response::new(body.into());
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// `SerializationException`: the body does not parse or a value has the wrong type.
pub(crate) fn serialization_error(message: impl Into<String>) -> AwsError {
    AwsError::new("SerializationException", 400, message)
}
