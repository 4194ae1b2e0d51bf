//! Golden cases for all four protocols, data-driven from `test_data/<protocol>/*.json`.
//!
//! The requests in the case files were serialized by botocore itself and the expected decoded
//! values are the parameters botocore was given (`tools/protocol/gen_golden.py`), so decoding
//! is checked against ground truth. Responses are tsumiki's own encoding, compared exactly;
//! `UPDATE_GOLDEN=1` rewrites them, after which `gen_golden.py --check` confirms that
//! botocore's parsers read each one back to the case's output value or error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::Value;
use tsumiki_core::AwsError;
use tsumiki_protocol::{
    Model, Protocol, Request, Response, decode_request, encode_error, encode_response,
    identify_operation,
};

const REQUEST_ID: &str = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
const PROTOCOLS: [&str; 4] = ["json", "query", "rest-json", "rest-xml"];

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

fn protocol(name: &str) -> Protocol {
    match name {
        "json" => Protocol::Json,
        "query" => Protocol::Query,
        "rest-json" => Protocol::RestJson,
        "rest-xml" => Protocol::RestXml,
        other => panic!("unknown protocol {other}"),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("case has no string '{key}'"))
}

fn body_of(v: &Value) -> Result<Vec<u8>, String> {
    match (
        v.get("body_base64").and_then(Value::as_str),
        v.get("body").and_then(Value::as_str),
    ) {
        (Some(b64), _) => STANDARD
            .decode(b64)
            .map_err(|e| format!("body_base64: {e}")),
        (None, Some(text)) => Ok(text.as_bytes().to_vec()),
        (None, None) => Ok(Vec::new()),
    }
}

struct HttpRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl HttpRequest {
    fn from_case(req: &Value) -> Result<HttpRequest, String> {
        let method =
            Method::from_bytes(str_field(req, "method")?.as_bytes()).map_err(|e| e.to_string())?;
        let uri: Uri = str_field(req, "uri")?
            .parse()
            .map_err(|e| format!("uri: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, values) in req
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let values = match values {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                other => vec![
                    other
                        .as_str()
                        .ok_or_else(|| format!("header {name}: {other}"))?,
                ],
            };
            for value in values {
                let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|e| e.to_string())?;
                headers.append(name.clone(), value);
            }
        }
        Ok(HttpRequest {
            method,
            uri,
            headers,
            body: body_of(req)?,
        })
    }

    fn as_request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// A response as the case files record it: status, every header (an array when repeated),
/// body as text when it is UTF-8 and as base64 otherwise.
fn response_value(resp: &Response) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in resp.headers() {
        let v = Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match headers.get_mut(k.as_str()) {
            None => {
                headers.insert(k.as_str().to_string(), v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("status".into(), Value::from(resp.status().as_u16()));
    out.insert("headers".into(), Value::Object(headers));
    match std::str::from_utf8(resp.body()) {
        Ok(text) => out.insert("body".into(), Value::String(text.to_string())),
        Err(_) => out.insert(
            "body_base64".into(),
            Value::String(STANDARD.encode(resp.body())),
        ),
    };
    Value::Object(out)
}

/// Differences between two values, numbers compared by value: decoded timestamps are epoch
/// seconds that may be integral or not depending on the protocol.
fn diff(got: &Value, want: &Value, path: &str, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            if (a - b).abs() > 1e-6 {
                out.push(format!("{path}: got {a}, want {b}"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) => diff(av, bv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing, want {bv}")),
                }
            }
            for (k, av) in a {
                if !b.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                diff(av, bv, &format!("{path}[{i}]"), out);
            }
        }
        _ if got == want => {}
        _ => out.push(format!("{path}: got {got}, want {want}")),
    }
}

fn check_expected_error(err: &AwsError, expect: &Value) -> Result<(), String> {
    let code = str_field(expect, "code")?;
    let status = expect.get("status").and_then(Value::as_u64).unwrap_or(400);
    if err.code != code || u64::from(err.status) != status {
        return Err(format!(
            "refused with {} {} ({}), want {code} {status}",
            err.status, err.code, err.message
        ));
    }
    Ok(())
}

/// Runs one case and returns the response tsumiki encodes for it.
fn run(case: &Value, model: &Model) -> Result<Value, String> {
    let proto = protocol(str_field(case, "protocol")?);
    match str_field(case, "kind")? {
        "ok" => {
            let http = HttpRequest::from_case(&case["request"])?;
            let req = http.as_request();
            let op =
                identify_operation(model, proto, &req).map_err(|e| format!("identify: {e}"))?;
            let want_op = str_field(case, "operation")?;
            if op.name != want_op {
                return Err(format!("identified {}, want {want_op}", op.name));
            }
            let decoded =
                decode_request(model, proto, op, &req).map_err(|e| format!("decode: {e}"))?;
            let mut problems = Vec::new();
            diff(&decoded, &case["decoded"], "decoded", &mut problems);
            if !problems.is_empty() {
                return Err(problems.join("\n    "));
            }
            Ok(response_value(&encode_response(
                model,
                proto,
                op,
                &case["output"],
                REQUEST_ID,
            )))
        }
        "error" => {
            let spec = &case["error"];
            let message = str_field(spec, "message")?;
            let mut err = match spec.get("shape").and_then(Value::as_str) {
                Some(shape) => model.error(shape, message),
                None => {
                    let status = spec.get("status").and_then(Value::as_u64).unwrap_or(400);
                    AwsError::new(str_field(spec, "code")?.to_string(), status as u16, message)
                }
            };
            if let Some(Value::Object(extra)) = spec.get("extra") {
                err.extra = Some(Box::new(extra.clone()));
            }
            let resp = encode_error(Some(model), proto, &err, REQUEST_ID);
            let want_status = case["expect"]["status"].as_u64().unwrap_or(400);
            if u64::from(resp.status().as_u16()) != want_status {
                return Err(format!("status {}, want {want_status}", resp.status()));
            }
            Ok(response_value(&resp))
        }
        "bad_request" => {
            let http = HttpRequest::from_case(&case["request"])?;
            let req = http.as_request();
            let result = identify_operation(model, proto, &req)
                .and_then(|op| decode_request(model, proto, op, &req));
            match result {
                Ok(v) => Err(format!("accepted a bad request, decoding it to {v}")),
                Err(err) => {
                    check_expected_error(&err, &case["expect"])?;
                    Ok(response_value(&encode_error(
                        Some(model),
                        proto,
                        &err,
                        REQUEST_ID,
                    )))
                }
            }
        }
        other => Err(format!("unknown case kind {other}")),
    }
}

fn load_model(root: &Path, reference: &str) -> Model {
    let path = root.join(reference);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    Model::from_json(name, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_cases() {
    let root = test_data();
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut models: HashMap<String, Model> = HashMap::new();
    let mut failures = Vec::new();
    let mut known_gaps = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for proto in PROTOCOLS {
        let dir = root.join(proto);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let label = format!(
                "{proto}/{}",
                file.file_name().unwrap_or_default().to_string_lossy()
            );
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{label}: {e}"));
            let mut case: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: {e}"));
            *counts.entry(proto).or_default() += 1;
            let reference = case["model"]
                .as_str()
                .unwrap_or_else(|| panic!("{label}: no model"))
                .to_string();
            let model = models
                .entry(reference.clone())
                .or_insert_with(|| load_model(&root, &reference));
            let outcome = run(&case, model);
            if let Some(gap) = case.get("known_gap").and_then(Value::as_str) {
                match outcome {
                    Err(e) => known_gaps.push(format!("{label}: {gap} ({e})")),
                    Ok(_) => failures.push(format!("{label}: passes now; remove its known_gap")),
                }
                continue;
            }
            let response = match outcome {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            if case.get("response") == Some(&response) {
                continue;
            }
            if update {
                case["response"] = response;
                let mut out = serde_json::to_string_pretty(&case).unwrap_or_default();
                out.push('\n');
                std::fs::write(&file, out).unwrap_or_else(|e| panic!("{label}: {e}"));
            } else {
                let want = case.get("response").map_or("none".to_string(), |r| {
                    serde_json::to_string_pretty(r).unwrap_or_default()
                });
                let got = serde_json::to_string_pretty(&response).unwrap_or_default();
                failures.push(format!(
                    "{label}: response differs (UPDATE_GOLDEN=1 to accept)\n--- stored\n{want}\n--- now\n{got}"
                ));
            }
        }
    }
    eprintln!("golden cases: {counts:?}");
    for gap in &known_gaps {
        eprintln!("known gap: {gap}");
    }
    for proto in PROTOCOLS {
        assert!(
            counts.get(proto).copied().unwrap_or(0) > 0,
            "no golden cases for {proto}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
