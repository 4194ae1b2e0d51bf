//! Shared parts of the REST protocols (rest-json, rest-xml): matching a request to an
//! operation by method and URI template, reading URI labels, query strings and headers into
//! the input value, and writing status codes, headers and raw payloads of responses.
//!
//! This is the server-side mirror of botocore's `BaseRestSerializer` (what a client sends) and
//! `BaseRestParser` (what a client reads back). The body formats live in `rest_json.rs` and
//! `rest_xml.rs`.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use tsumiki_core::AwsError;

use crate::model::{Location, Model, Operation, Shape, ShapeKind, ShapeRef};
use crate::{Request, Response, timestamp};

/// One piece of a `requestUri` template's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'t> {
    Literal(&'t str),
    /// `{Name}`: one or more characters of a single path segment.
    Label(&'t str),
    /// `{Name+}`: one or more characters, `/` included.
    Greedy(&'t str),
}

/// A parsed `requestUri` such as `/{Bucket}/{Key+}?tagging`.
#[derive(Debug)]
struct Template<'t> {
    parts: Vec<Part<'t>>,
    /// Literal query parts the request must carry: `tagging`, `list-type=2`.
    query: Vec<(&'t str, Option<&'t str>)>,
}

impl<'t> Template<'t> {
    fn parse(uri: &'t str) -> Template<'t> {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut parts = Vec::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            if open > 0 {
                parts.push(Part::Literal(&rest[..open]));
            }
            let name = &rest[open + 1..close];
            parts.push(match name.strip_suffix('+') {
                Some(n) => Part::Greedy(n),
                None => Part::Label(name),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest));
        }
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (kv, None),
            })
            .collect();
        Template { parts, query }
    }

    fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                _ => 0,
            })
            .sum()
    }

    /// Matches the raw (still percent-encoded) path; on success returns each label's raw text.
    fn match_path<'p>(&self, path: &'p str) -> Option<Vec<(&'t str, &'p str)>> {
        match_labels(&self.parts, path)
    }

    /// Matches exactly, or else with the trailing slash toggled: clients disagree on
    /// `/2015-03-31/functions/` versus `/2015-03-31/functions`, and S3 sees `/bucket/`.
    fn match_loose<'p>(&self, path: &'p str) -> Option<(bool, Vec<(&'t str, &'p str)>)> {
        if let Some(labels) = self.match_path(path) {
            return Some((true, labels));
        }
        if let Some(trimmed) = path.strip_suffix('/').filter(|p| !p.is_empty()) {
            return self.match_path(trimmed).map(|l| (false, l));
        }
        let mut parts = self.parts.clone();
        match parts.last_mut() {
            Some(Part::Literal(l)) if l.ends_with('/') => *l = &l[..l.len() - 1],
            _ => return None,
        }
        if parts.last() == Some(&Part::Literal("")) {
            parts.pop();
        }
        match_labels(&parts, path).map(|l| (false, l))
    }
}

fn match_labels<'t, 'p>(parts: &[Part<'t>], path: &'p str) -> Option<Vec<(&'t str, &'p str)>> {
    let mut values = Vec::new();
    if !match_parts(parts, path, &mut values) {
        return None;
    }
    let names = parts.iter().filter_map(|p| match p {
        Part::Label(n) | Part::Greedy(n) => Some(*n),
        Part::Literal(_) => None,
    });
    Some(names.zip(values).collect())
}

/// Backtracking match of template parts against a path. Labels try their longest extent
/// first; templates have few labels and at most one greedy label, so this stays cheap.
fn match_parts<'p>(parts: &[Part<'_>], path: &'p str, out: &mut Vec<&'p str>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return path.is_empty();
    };
    match first {
        Part::Literal(lit) => path
            .strip_prefix(lit)
            .is_some_and(|p| match_parts(rest, p, out)),
        Part::Label(_) | Part::Greedy(_) => {
            let limit = match first {
                Part::Greedy(_) => path.len(),
                _ => path.find('/').unwrap_or(path.len()),
            };
            for end in (1..=limit).rev() {
                if !path.is_char_boundary(end) {
                    continue;
                }
                out.push(&path[..end]);
                if match_parts(rest, &path[end..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space in query strings). Unlike lossy decoders this
/// rejects truncated escapes and invalid UTF-8 so the client hears about them.
pub(crate) fn percent_decode(text: &str, plus_as_space: bool) -> Option<String> {
    if !text.contains(['%', '+']) {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The request's query parameters in order, decoded. A key without `=` has an empty value.
pub(crate) fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match (percent_decode(k, true), percent_decode(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!(
                    "The query string parameter '{kv}' is not validly percent-encoded."
                )),
            }
        })
        .collect()
}

/// How well an operation fits a request; compared lexicographically, greatest wins.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// Matched without toggling a trailing slash.
    exact: bool,
    /// `?tagging`, `?list-type=2`: literal query parts required by the template.
    query_literals: usize,
    /// Every required header and query member is present: `PUT /{Bucket}/{Key+}` is
    /// UploadPart when `partNumber` and `uploadId` are there, PutObject otherwise.
    required_complete: bool,
    literal_len: usize,
    required_present: usize,
    current: bool,
}

fn required_located(
    model: &Model,
    op: &Operation,
    req: &Request<'_>,
    query: &[(String, String)],
) -> (bool, usize) {
    let Some(input) = &op.input else {
        return (true, 0);
    };
    let shape = model.shape(&input.shape);
    let mut present = 0;
    let mut complete = true;
    for name in &shape.required {
        let Some(r) = shape.members.get(name) else {
            continue;
        };
        let wire = r.location_name.as_deref().unwrap_or(name);
        let found = match r.location {
            Some(Location::Header) => req.headers.contains_key(wire),
            Some(Location::Querystring) => query.iter().any(|(k, _)| k == wire),
            _ => continue,
        };
        if found {
            present += 1;
        } else {
            complete = false;
        }
    }
    (complete, present)
}

/// Which operation a REST request calls: the operation whose method and URI template match,
/// the most specific one when several do. Ties keep the earlier operation of the model.
pub fn identify<'m>(model: &'m Model, req: &Request<'_>) -> Result<&'m Operation, AwsError> {
    let path = req.uri.path();
    let query = parse_query(req.uri.query()).map_err(|m| located_error(model, m))?;
    let keys: HashSet<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    let mut best: Option<(Rank, &Operation)> = None;
    let mut other_method = false;
    for op in model.operations.values() {
        let template = Template::parse(&op.http.request_uri);
        let Some((exact, _)) = template.match_loose(path) else {
            continue;
        };
        let literals_present = template.query.iter().all(|(k, v)| match v {
            None => keys.contains(k),
            Some(v) => query.iter().any(|(qk, qv)| qk == k && qv == v),
        });
        if !literals_present {
            continue;
        }
        if !op.http.method.eq_ignore_ascii_case(req.method.as_str()) {
            other_method = true;
            continue;
        }
        let (required_complete, required_present) = required_located(model, op, req, &query);
        let rank = Rank {
            exact,
            query_literals: template.query.len(),
            required_complete,
            literal_len: template.literal_len(),
            required_present,
            current: !op.deprecated,
        };
        if best.as_ref().is_none_or(|(b, _)| rank > *b) {
            best = Some((rank, op));
        }
    }
    match best {
        Some((_, op)) => Ok(op),
        None if other_method => Err(AwsError::new(
            "MethodNotAllowed",
            405,
            format!(
                "The specified method {} is not allowed against this resource.",
                req.method
            ),
        )),
        None => {
            let mut err = AwsError::unknown_operation(
                &model.metadata.service_id,
                &format!("{} {}", req.method, path),
            );
            err.status = 404;
            Err(err)
        }
    }
}

/// The error for a bad value outside the body (label, query, header). S3 calls these
/// `InvalidArgument`; the JSON services `SerializationException`.
pub(crate) fn located_error(model: &Model, message: String) -> AwsError {
    if model.protocols().contains(&"rest-xml") {
        AwsError::new("InvalidArgument", 400, message)
    } else {
        crate::serialization_error(message)
    }
}

/// Canonical base64 (standard alphabet, padded) of a blob that arrived as base64 text;
/// unpadded input and embedded whitespace are tolerated, anything else is an error.
pub(crate) fn canonical_base64(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = if compact.contains('=') {
        &STANDARD
    } else {
        &STANDARD_NO_PAD
    };
    let bytes = engine.decode(&compact).ok()?;
    Some(STANDARD.encode(bytes))
}

fn number(f: f64) -> Option<Value> {
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// A scalar from its text form in a label, query string, header or XML element.
pub(crate) fn scalar_from_text(model: &Model, r: &ShapeRef, text: &str) -> Result<Value, String> {
    let shape = model.shape(&r.shape);
    let invalid = || format!("Value '{text}' is not a valid {}.", kind_name(shape));
    let trimmed = text.trim();
    match shape.kind {
        ShapeKind::String | ShapeKind::Character => Ok(Value::String(text.to_string())),
        ShapeKind::Blob => canonical_base64(text)
            .map(Value::String)
            .ok_or_else(invalid),
        ShapeKind::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid()),
        },
        ShapeKind::Integer
        | ShapeKind::Long
        | ShapeKind::Short
        | ShapeKind::Byte
        | ShapeKind::Biginteger => trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| invalid()),
        ShapeKind::Float | ShapeKind::Double | ShapeKind::Bigdecimal => match trimmed {
            "NaN" | "Infinity" | "-Infinity" => Ok(Value::String(trimmed.to_string())),
            _ => trimmed
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(number)
                .ok_or_else(invalid),
        },
        ShapeKind::Timestamp => timestamp::parse(trimmed)
            .and_then(number)
            .ok_or_else(invalid),
        ShapeKind::Structure | ShapeKind::List | ShapeKind::Map => Err(invalid()),
    }
}

fn kind_name(shape: &Shape) -> &'static str {
    match shape.kind {
        ShapeKind::Blob => "base64 value",
        ShapeKind::Boolean => "boolean",
        ShapeKind::Integer
        | ShapeKind::Long
        | ShapeKind::Short
        | ShapeKind::Byte
        | ShapeKind::Biginteger => "integer",
        ShapeKind::Float | ShapeKind::Double | ShapeKind::Bigdecimal => "number",
        ShapeKind::Timestamp => "timestamp",
        _ => "value",
    }
}

/// A header value: `jsonvalue` strings are base64-encoded JSON, lists are comma-separated
/// with double-quoted items where they contain commas or quotes.
fn header_value(model: &Model, r: &ShapeRef, text: &str) -> Result<Value, String> {
    let shape = model.shape(&r.shape);
    match shape.kind {
        ShapeKind::String if r.jsonvalue => {
            let bytes = STANDARD
                .decode(text.trim())
                .map_err(|_| format!("Header value '{text}' is not valid base64."))?;
            serde_json::from_slice(&bytes)
                .map_err(|_| format!("Header value '{text}' is not base64-encoded JSON."))
        }
        ShapeKind::List => {
            let Some(member) = shape.member.as_deref() else {
                return Ok(Value::Array(Vec::new()));
            };
            let mut items = split_header_list(text);
            if is_http_date(model, member) {
                // An HTTP date has a comma of its own: "Mon, 01 Jan 2024 ...", "Tue, ...".
                items = items.chunks(2).map(|c| c.join(", ")).collect();
            }
            items
                .iter()
                .map(|item| scalar_from_text(model, member, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        _ => scalar_from_text(model, r, text),
    }
}

fn is_http_date(model: &Model, r: &ShapeRef) -> bool {
    let shape = model.shape(&r.shape);
    shape.kind == ShapeKind::Timestamp
        && r.timestamp_format
            .as_deref()
            .or(shape.timestamp_format.as_deref())
            .is_none_or(|f| f == "rfc822")
}

fn split_header_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => current.extend(chars.next()),
            ',' if !quoted => items.push(std::mem::take(&mut current).trim().to_string()),
            c => current.push(c),
        }
    }
    let last = current.trim();
    if !last.is_empty() || !items.is_empty() {
        items.push(last.to_string());
    }
    items
}

/// The input members bound to the URI, query string and headers.
pub(crate) fn decode_located(
    model: &Model,
    op: &Operation,
    req: &Request<'_>,
    input: &ShapeRef,
) -> Result<Map<String, Value>, AwsError> {
    let bad = |m: String| located_error(model, m);
    let shape = model.shape(&input.shape);
    let template = Template::parse(&op.http.request_uri);
    let labels = template
        .match_loose(req.uri.path())
        .map(|(_, l)| l)
        .unwrap_or_default();
    let query = parse_query(req.uri.query()).map_err(bad)?;
    let mut out = Map::new();
    let mut query_map = None;
    let mut consumed: HashSet<&str> = template.query.iter().map(|(k, _)| *k).collect();
    for (name, r) in &shape.members {
        let wire = r.location_name.as_deref().unwrap_or(name);
        let value = match r.location {
            None | Some(Location::StatusCode) => continue,
            Some(Location::Uri) => {
                let Some((_, raw)) = labels.iter().find(|(label, _)| *label == wire) else {
                    continue;
                };
                let text = percent_decode(raw, false).ok_or_else(|| {
                    bad(format!(
                        "The URI label {wire} is not validly percent-encoded."
                    ))
                })?;
                scalar_from_text(model, r, &text).map_err(bad)?
            }
            Some(Location::Querystring) => {
                let member_shape = model.shape(&r.shape);
                if member_shape.kind == ShapeKind::Map {
                    query_map = Some((name, r));
                    continue;
                }
                consumed.insert(wire);
                let mut values = query.iter().filter(|(k, _)| k == wire).map(|(_, v)| v);
                if member_shape.kind == ShapeKind::List {
                    let Some(member) = member_shape.member.as_deref() else {
                        continue;
                    };
                    let items = values
                        .map(|v| scalar_from_text(model, member, v))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(bad)?;
                    if items.is_empty() {
                        continue;
                    }
                    Value::Array(items)
                } else {
                    let Some(v) = values.next() else { continue };
                    scalar_from_text(model, r, v).map_err(bad)?
                }
            }
            Some(Location::Header) => {
                let all = req.headers.get_all(wire);
                let mut texts = Vec::new();
                for v in all {
                    let text = std::str::from_utf8(v.as_bytes())
                        .map_err(|_| bad(format!("The header {wire} is not valid UTF-8.")))?;
                    texts.push(text);
                }
                if texts.is_empty() {
                    continue;
                }
                header_value(model, r, &texts.join(",")).map_err(bad)?
            }
            Some(Location::Headers) => {
                let prefix = wire.to_ascii_lowercase();
                let mut map = Map::new();
                for (header, v) in req.headers {
                    if let Some(key) = header.as_str().strip_prefix(prefix.as_str()) {
                        let text = std::str::from_utf8(v.as_bytes())
                            .map_err(|_| bad(format!("The header {header} is not valid UTF-8.")))?;
                        map.insert(key.to_string(), Value::String(text.to_string()));
                    }
                }
                if map.is_empty() {
                    continue;
                }
                Value::Object(map)
            }
        };
        out.insert(name.clone(), value);
    }
    if let Some((name, r)) = query_map {
        let map_shape = model.shape(&r.shape);
        let as_lists = map_shape
            .value
            .as_deref()
            .is_some_and(|v| model.shape(&v.shape).kind == ShapeKind::List);
        let mut map = Map::new();
        for (k, v) in query.iter().filter(|(k, _)| !consumed.contains(k.as_str())) {
            if as_lists {
                if let Value::Array(items) = map
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    items.push(Value::String(v.clone()));
                }
            } else if !map.contains_key(k) {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
        if !map.is_empty() {
            out.insert(name.clone(), Value::Object(map));
        }
    }
    Ok(out)
}

/// Where the body of a REST message comes from.
pub(crate) enum BodyBinding<'a> {
    /// Nothing travels in the body.
    None,
    /// A blob or string payload member: the body is its raw bytes.
    Raw(&'a str, &'a ShapeRef),
    /// A structure (or other document) payload member: the body is that member alone.
    Document(&'a str, &'a ShapeRef),
    /// The members without a location, together as one document.
    Members,
}

pub(crate) fn body_binding<'a>(model: &'a Model, shape_ref: &'a ShapeRef) -> BodyBinding<'a> {
    let shape = model.shape(&shape_ref.shape);
    if let Some(payload) = &shape.payload
        && let Some((name, r)) = shape.members.get_key_value(payload)
    {
        return match model.shape(&r.shape).kind {
            ShapeKind::Blob | ShapeKind::String => BodyBinding::Raw(name, r),
            _ => BodyBinding::Document(name, r),
        };
    }
    if shape.members.values().any(|r| r.location.is_none()) {
        BodyBinding::Members
    } else {
        BodyBinding::None
    }
}

/// A raw payload as a value: blobs become base64, strings must be UTF-8.
pub(crate) fn raw_payload_value(model: &Model, r: &ShapeRef, body: &[u8]) -> Result<Value, String> {
    match model.shape(&r.shape).kind {
        ShapeKind::String => std::str::from_utf8(body)
            .map(|s| Value::String(s.to_string()))
            .map_err(|_| "The request body is not valid UTF-8.".to_string()),
        _ => Ok(Value::String(STANDARD.encode(body))),
    }
}

/// A raw payload's bytes and default content type. A blob value that is not base64 (a
/// service's mistake) is sent as its text rather than dropped.
pub(crate) fn raw_payload_bytes(
    model: &Model,
    r: &ShapeRef,
    value: Option<&Value>,
) -> (Vec<u8>, &'static str) {
    let is_string = model.shape(&r.shape).kind == ShapeKind::String;
    let content_type = if is_string {
        "text/plain"
    } else {
        "application/octet-stream"
    };
    let bytes = match value {
        Some(Value::String(s)) if is_string => s.clone().into_bytes(),
        Some(Value::String(s)) => STANDARD
            .decode(s)
            .unwrap_or_else(|_| s.clone().into_bytes()),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    (bytes, content_type)
}

/// Whether a body is absent for decoding purposes.
pub(crate) fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// The text of a header carrying `value` of shape `r`, as botocore's serializer writes it.
fn header_text(model: &Model, r: &ShapeRef, value: &Value) -> Option<String> {
    let shape = model.shape(&r.shape);
    match (shape.kind, value) {
        (_, Value::Null) => None,
        (ShapeKind::String, v) if r.jsonvalue => Some(STANDARD.encode(serde_json::to_vec(v).ok()?)),
        (ShapeKind::Timestamp, Value::Number(n)) => {
            let format = r
                .timestamp_format
                .as_deref()
                .or(shape.timestamp_format.as_deref())
                .unwrap_or("rfc822");
            Some(timestamp::format_text(n.as_f64()?, format))
        }
        (ShapeKind::List, Value::Array(items)) => {
            let member = shape.member.as_deref()?;
            let member_is_string = model.shape(&member.shape).kind == ShapeKind::String;
            let texts: Vec<String> = items
                .iter()
                .filter_map(|item| {
                    let text = header_text(model, member, item)?;
                    Some(if member_is_string && text.contains([',', '"']) {
                        format!("\"{}\"", text.replace('"', "\\\""))
                    } else {
                        text
                    })
                })
                .collect();
            if texts.is_empty() {
                None
            } else {
                Some(texts.join(","))
            }
        }
        _ => Some(crate::xml::scalar_text(model, r, value)),
    }
}

/// Builds a REST response: the operation's status (or a `statusCode` member's), the body
/// with its content type, then the header members, which may override the content type.
pub(crate) fn finish(
    model: &Model,
    op: &Operation,
    output: &Value,
    body: Vec<u8>,
    content_type: Option<&'static str>,
) -> Response {
    let mut status = op.http.response_code.unwrap_or(200);
    let mut resp = http::Response::new(Bytes::from(body));
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if let (Some(out_ref), Value::Object(obj)) = (&op.output, output) {
        let shape = model.shape(&out_ref.shape);
        for (name, r) in &shape.members {
            let Some(value) = obj.get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let wire = r.location_name.as_deref().unwrap_or(name);
            match r.location {
                Some(Location::StatusCode) => {
                    if let Some(code) = value.as_u64().and_then(|c| u16::try_from(c).ok()) {
                        status = code;
                    }
                }
                Some(Location::Header) => {
                    if let Some(text) = header_text(model, r, value) {
                        insert_header(&mut resp, wire, &text);
                    }
                }
                Some(Location::Headers) => {
                    if let Value::Object(entries) = value {
                        for (k, v) in entries {
                            let text = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            insert_header(&mut resp, &format!("{wire}{k}"), &text);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp
}

/// Headers that cannot be represented (a newline in a value, a space in a name) are left out
/// rather than failing the whole response.
fn insert_header(resp: &mut Response, name: &str, text: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(text.as_bytes()),
    ) {
        resp.headers_mut().insert(name, value);
    }
}

/// What the body of an operation's output carries, `None` for HEAD responses.
pub(crate) fn output_binding<'a>(model: &'a Model, op: &'a Operation) -> BodyBinding<'a> {
    match &op.output {
        Some(out_ref) if !op.http.method.eq_ignore_ascii_case("HEAD") => {
            body_binding(model, out_ref)
        }
        _ => BodyBinding::None,
    }
}

/// The value of member `name` of an output object, unless absent or null.
pub(crate) fn member_value<'v>(output: &'v Value, name: &str) -> Option<&'v Value> {
    output.get(name).filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_labels() {
        let t = Template::parse("/2015-03-31/functions/{FunctionName}/invocations");
        let labels = t.match_path("/2015-03-31/functions/my%2Dfn/invocations");
        assert_eq!(labels, Some(vec![("FunctionName", "my%2Dfn")]));
        assert_eq!(t.match_path("/2015-03-31/functions/a/b/invocations"), None);

        let t = Template::parse("/{Bucket}/{Key+}?tagging");
        assert_eq!(t.query, vec![("tagging", None)]);
        assert_eq!(
            t.match_path("/b/dir/file.txt"),
            Some(vec![("Bucket", "b"), ("Key", "dir/file.txt")])
        );
        assert_eq!(t.match_path("/b/"), None);
        assert_eq!(t.match_path("/b"), None);

        let t = Template::parse("/{Name}.json");
        assert_eq!(t.match_path("/a.b.json"), Some(vec![("Name", "a.b")]));

        let t = Template::parse("/2015-03-31/functions/");
        assert_eq!(
            t.match_loose("/2015-03-31/functions").map(|(e, _)| e),
            Some(false)
        );
        assert_eq!(
            t.match_loose("/2015-03-31/functions/").map(|(e, _)| e),
            Some(true)
        );
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb", false).as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2", false), None);
        assert_eq!(percent_decode("a%zz", false), None);
        assert_eq!(percent_decode("%ff", false), None);
        assert_eq!(percent_decode("%E2%82%AC", false).as_deref(), Some("€"));
    }

    #[test]
    fn header_lists_split_on_unquoted_commas() {
        assert_eq!(split_header_list("a, b,c"), vec!["a", "b", "c"]);
        assert_eq!(
            split_header_list(r#""a,b", "c\"d",e"#),
            vec!["a,b", "c\"d", "e"]
        );
        assert!(split_header_list("").is_empty());
    }

    #[test]
    fn base64_is_canonicalised() {
        assert_eq!(canonical_base64("aGk=").as_deref(), Some("aGk="));
        assert_eq!(canonical_base64("aGk").as_deref(), Some("aGk="));
        assert_eq!(canonical_base64("aG\nk=").as_deref(), Some("aGk="));
        assert_eq!(canonical_base64("=="), None);
        assert_eq!(canonical_base64("a$"), None);
    }
}
