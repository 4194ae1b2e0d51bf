//! Response streaming: `InvokeWithResponseStream` (rest-json, answered as an
//! `application/vnd.amazon.eventstream` of `PayloadChunk` events then one `InvokeComplete`),
//! and the pieces function URLs in `RESPONSE_STREAM` mode share with it: a body fed from a
//! channel, and the HTTP integration prelude (`application/vnd.awslambda.http-integration-response`:
//! JSON with statusCode, headers and cookies, then 8 NUL bytes, then the body).
//!
//! The operation is served here, as a raw HTTP endpoint, because the model-driven protocol
//! layer answers whole JSON values and this answer must flow while the function runs.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tsumiki_compute::{InvokeResult, Streamed};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::http::{BoxError, Claim, HttpBody, HttpEndpoint, RequestHead, full_body};

use crate::{Invocation, Lambda};

const PATH_PREFIX: &str = "/2021-11-15/functions/";
const PATH_SUFFIX: &str = "/response-streaming-invocations";
/// AWS: 6 MB for synchronous requests.
const MAX_REQUEST: usize = 6 * 1024 * 1024;

/// The content type that opens a body with an HTTP prelude.
pub(crate) const PRELUDE_CONTENT_TYPE: &str = "application/vnd.awslambda.http-integration-response";
/// The prelude's end: 8 NUL bytes.
const DELIMITER: [u8; 8] = [0; 8];
/// A prelude longer than this is not one (AWS caps response headers well below it).
const MAX_PRELUDE: usize = 64 * 1024;

/// A response body written from a task as data arrives; an `Err` item aborts it (the client
/// sees the connection cut mid-body, as when a stream fails).
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

pub(crate) fn channel_body() -> (mpsc::Sender<Result<Bytes, BoxError>>, HttpBody) {
    let (tx, rx) = mpsc::channel(16);
    (
        tx,
        http_body_util::BodyExt::boxed_unsync(ChannelBody { rx }),
    )
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

/// One event-stream message (prelude, its CRC, string headers, payload, message CRC), as the
/// `application/vnd.amazon.eventstream` encoding defines it.
pub(crate) fn event_message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut head = BytesMut::new();
    for (name, value) in headers {
        head.put_u8(name.len() as u8);
        head.put_slice(name.as_bytes());
        // Header value type 7: string, with a 2-byte length.
        head.put_u8(7);
        head.put_u16(value.len() as u16);
        head.put_slice(value.as_bytes());
    }
    let total = 12 + head.len() + payload.len() + 4;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(head.len() as u32);
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    out.put_slice(&head);
    out.put_slice(payload);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out.freeze()
}

fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    event_message(
        &[
            (":event-type", event_type),
            (":content-type", content_type),
            (":message-type", "event"),
        ],
        payload,
    )
}

fn payload_chunk(bytes: &[u8]) -> Bytes {
    event("PayloadChunk", "application/octet-stream", bytes)
}

/// `InvokeComplete`: empty members are left out, as AWS leaves them.
fn invoke_complete(result: &InvokeResult) -> Bytes {
    let mut body = Map::new();
    if result.function_error.is_some() {
        let error: Value = serde_json::from_slice(&result.payload).unwrap_or(Value::Null);
        let code = error["errorType"]
            .as_str()
            .unwrap_or("Unhandled")
            .to_string();
        let details = error["errorMessage"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&result.payload).into_owned());
        body.insert("ErrorCode".into(), json!(code));
        body.insert("ErrorDetails".into(), json!(details));
    }
    if let Some(tail) = &result.log_tail {
        body.insert("LogResult".into(), json!(tail));
    }
    event(
        "InvokeComplete",
        "application/json",
        Value::Object(body).to_string().as_bytes(),
    )
}

/// The endpoint answering InvokeWithResponseStream.
pub(crate) struct ResponseStreaming {
    pub(crate) lambda: Weak<Lambda>,
}

/// A rest-json error as Lambda answers it.
fn error_response(err: &AwsError) -> http::Response<HttpBody> {
    let body = json!({"Type": "User", "Message": err.message, "message": err.message});
    let mut resp = http::Response::builder()
        .status(err.status)
        .header("content-type", "application/json")
        .body(full_body(body.to_string()))
        .unwrap_or_else(|_| http::Response::new(full_body(Bytes::new())));
    if let Ok(v) = http::HeaderValue::from_str(&err.code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(&v.replace('+', " ")))
    })
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn enum_error(value: &str, member: &str, allowed: &str) -> AwsError {
    AwsError::new(
        "ValidationException",
        400,
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{allowed}]"
        ),
    )
}

/// The request body, or `None` past AWS's limit or on a broken body.
async fn read_limited(mut body: HttpBody) -> Option<Bytes> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            out.extend_from_slice(&data);
            if out.len() > MAX_REQUEST {
                return None;
            }
        }
    }
    Some(out.freeze())
}

impl ResponseStreaming {
    async fn answer(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<HttpBody>, AwsError> {
        let lambda = self.lambda.upgrade().ok_or_else(AwsError::internal)?;
        let (parts, body) = req.into_parts();
        let name = parts
            .uri
            .path()
            .strip_prefix(PATH_PREFIX)
            .and_then(|p| p.strip_suffix(PATH_SUFFIX))
            .map(decode)
            .unwrap_or_default();
        let kind = header(&parts, "x-amz-invocation-type").unwrap_or("RequestResponse");
        if kind != "RequestResponse" && kind != "DryRun" {
            return Err(enum_error(
                kind,
                "invocationType",
                "RequestResponse, DryRun",
            ));
        }
        let log_type = header(&parts, "x-amz-log-type").unwrap_or("None");
        if log_type != "None" && log_type != "Tail" {
            return Err(enum_error(log_type, "logType", "None, Tail"));
        }
        let payload = read_limited(body).await.ok_or_else(|| {
            AwsError::new(
                "RequestTooLargeException",
                413,
                format!(
                    "Request must be smaller than {MAX_REQUEST} bytes for the InvokeFunction operation"
                ),
            )
        })?;
        let invocation = Invocation {
            function: name,
            qualifier: parts.uri.query().and_then(|q| query_param(q, "Qualifier")),
            payload,
            client_context: header(&parts, "x-amz-client-context").map(String::from),
            tail: log_type == "Tail",
        };
        if kind == "DryRun" {
            lambda.dry_run(&ctx, &invocation)?;
            return Ok(http::Response::builder()
                .status(204)
                .body(full_body(Bytes::new()))
                .unwrap_or_default());
        }
        let (streamed, version) = lambda.invoke_streaming(&ctx, invocation).await?;
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            match streamed {
                Streamed::Whole(result) => {
                    // A buffered function's whole answer is one chunk; an error is reported in
                    // InvokeComplete only, as AWS does.
                    if result.function_error.is_none() && !result.payload.is_empty() {
                        let _ = tx.send(Ok(payload_chunk(&result.payload))).await;
                    }
                    let _ = tx.send(Ok(invoke_complete(&result))).await;
                }
                Streamed::Stream {
                    mut stream, end, ..
                } => {
                    let mut open = true;
                    while let Some(chunk) = stream.chunks.recv().await {
                        if open && tx.send(Ok(payload_chunk(&chunk))).await.is_err() {
                            // The caller left; the function runs on to its end.
                            open = false;
                        }
                    }
                    if let Ok(result) = end.await {
                        let _ = tx.send(Ok(invoke_complete(&result))).await;
                    }
                }
            }
        });
        let mut resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/vnd.amazon.eventstream")
            .body(body)
            .unwrap_or_default();
        if let Ok(v) = http::HeaderValue::from_str(&version) {
            resp.headers_mut().insert("x-amz-executed-version", v);
        }
        Ok(resp)
    }
}

#[async_trait]
impl HttpEndpoint for ResponseStreaming {
    fn name(&self) -> &'static str {
        "lambda-response-streaming"
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        let path = head.parts.uri.path();
        // Another service's request with this path (an S3 key, an API's route, a function
        // URL's path) is not ours: SDKs sign as `lambda`; an unsigned call must name no other
        // endpoint's host.
        let ours = match head.signing_service {
            Some(service) => service == "lambda",
            None => {
                let host = head.host();
                !host.contains(".execute-api.") && !host.contains(".lambda-url.")
            }
        };
        if ours
            && head.parts.method == http::Method::POST
            && path.starts_with(PATH_PREFIX)
            && path.ends_with(PATH_SUFFIX)
            && path.len() > PATH_PREFIX.len() + PATH_SUFFIX.len()
        {
            Claim::Yes
        } else {
            Claim::No
        }
    }

    async fn handle(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> http::Response<HttpBody> {
        match self.answer(ctx, req).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        }
    }
}

/// The HTTP response a function's prelude describes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Prelude {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
}

/// Splits a prelude off the front of `buf` once its delimiter has arrived: the prelude and the
/// body bytes after it. `Err` when what arrived cannot be a prelude.
pub(crate) fn split_prelude(buf: &[u8]) -> Result<Option<(Prelude, Bytes)>, String> {
    let Some(at) = buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) else {
        if buf.len() > MAX_PRELUDE {
            return Err("the response prelude has no end".into());
        }
        return Ok(None);
    };
    let json: Value = if at == 0 {
        json!({})
    } else {
        serde_json::from_slice(&buf[..at]).map_err(|e| format!("the prelude is not JSON: {e}"))?
    };
    let mut prelude = Prelude {
        status: json["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200),
        ..Prelude::default()
    };
    if let Some(h) = json["headers"].as_object() {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            prelude.headers.push((k.clone(), v));
        }
    }
    if let Some(c) = json["cookies"].as_array() {
        prelude.cookies = c
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
    }
    let rest = Bytes::copy_from_slice(&buf[at + DELIMITER.len()..]);
    Ok(Some((prelude, rest)))
}

impl Lambda {
    /// The endpoint answering InvokeWithResponseStream.
    pub fn response_streaming_endpoint(self: &Arc<Self>) -> Arc<dyn HttpEndpoint> {
        Arc::new(ResponseStreaming {
            lambda: Arc::downgrade(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_carry_length_and_checksums() {
        let m = event_message(&[(":event-type", "PayloadChunk")], b"hi");
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(headers, 1 + 11 + 1 + 2 + 12);
        let prelude_crc = u32::from_be_bytes(m[8..12].try_into().unwrap());
        assert_eq!(prelude_crc, crc32fast::hash(&m[..8]));
        let crc = u32::from_be_bytes(m[total - 4..].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&m[..total - 4]));
        assert_eq!(&m[total - 6..total - 4], b"hi");
        // An empty message is 16 bytes, whose CRCs the event-stream spec's own vector fixes.
        let empty = event_message(&[], b"");
        assert_eq!(
            &empty[..],
            &[
                0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98,
                0xc8, 0xff
            ]
        );
    }

    #[test]
    fn preludes_split_at_eight_nuls() {
        let mut buf = br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"]}"#.to_vec();
        assert_eq!(split_prelude(&buf), Ok(None));
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(b"body");
        let (p, rest) = split_prelude(&buf).unwrap().unwrap();
        assert_eq!(p.status, 201);
        assert_eq!(p.headers, vec![("x-a".to_string(), "1".to_string())]);
        assert_eq!(p.cookies, vec!["c=1".to_string()]);
        assert_eq!(&rest[..], b"body");
        assert!(split_prelude(b"not json\0\0\0\0\0\0\0\0").is_err());
    }
}
