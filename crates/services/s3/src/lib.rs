//! Amazon S3 on the `s3s` crate: s3s parses and answers S3's REST-XML wire protocol, this
//! crate is its backend (`backend.rs`, one `s3s::S3` method per operation; every other
//! operation answers s3s's NotImplemented naming it).
//!
//! Read first: `lib.rs` (how a request reaches s3s: virtual-host buckets moved into the path,
//! signatures stripped because tsumiki accepts any signature, aws-chunked bodies decoded by
//! `chunked.rs`), then `backend.rs`, `state.rs` (buckets, versions, uploads, pending
//! notifications; the store namespaces), `blobs.rs` (bodies as files: temp file, hash, sync,
//! rename, then commit) and `notify.rs` (notification configurations and event records).
//!
//! Not here: ACLs and policies beyond storing them, object lock, replication, website
//! hosting, SSE beyond storing the configuration, S3 Select.

mod backend;
mod blobs;
mod chunked;
mod cors;
mod form;
mod notify;
mod state;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, boxed_body, full_body};
use tsumiki_ports::{AsyncInvoke, ObjectStore, Services};
use tsumiki_store::Store;

use crate::state::State;

/// How S3 stores bodies.
pub struct S3Config {
    /// Where object files live (`<data-dir>/s3`, or a temporary directory).
    pub dir: std::path::PathBuf,
    /// Sync each body to disk before it becomes visible.
    pub fsync: bool,
}

/// The shared state of the endpoint, the backend and the background tasks.
pub(crate) struct Inner {
    pub store: Store,
    pub clock: Arc<Clock>,
    pub blobs: blobs::Blobs,
    pub state: Mutex<State>,
    pub services: RwLock<Option<Services>>,
    pub lambda: RwLock<Option<Arc<dyn AsyncInvoke>>>,
    pub endpoint: RwLock<String>,
    pub wake: tokio::sync::Notify,
}

/// Amazon S3: the raw-HTTP endpoint and the `ObjectStore` other services use.
pub struct S3 {
    inner: Arc<Inner>,
    service: s3s::service::S3Service,
}

impl S3 {
    /// Loads S3's state and starts notification delivery and lifecycle expiration.
    pub async fn start(
        store: Store,
        clock: Arc<Clock>,
        config: S3Config,
    ) -> Result<Arc<S3>, AwsError> {
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "Could not load S3.");
            AwsError::internal()
        };
        let state = State::load(&store).await.map_err(|e| internal(&e))?;
        let blobs = blobs::Blobs::open(&config.dir, config.fsync).map_err(|e| internal(&e))?;
        blobs.collect_garbage(&state.referenced_blobs());
        let inner = Arc::new(Inner {
            store,
            clock,
            blobs,
            state: Mutex::new(state),
            services: RwLock::new(None),
            lambda: RwLock::new(None),
            endpoint: RwLock::new("http://localhost:4566".into()),
            wake: tokio::sync::Notify::new(),
        });
        let builder = s3s::service::S3ServiceBuilder::new(backend::Backend(inner.clone()));
        let service = builder.build();
        tokio::spawn(backend::deliver_loop(Arc::downgrade(&inner)));
        tokio::spawn(backend::lifecycle_loop(Arc::downgrade(&inner)));
        Ok(Arc::new(S3 { inner, service }))
    }

    /// The services notifications go to (`sqs`, `sns`, `events`).
    pub fn set_services(&self, services: Services) {
        *self.inner.services.write() = Some(services);
        self.inner.wake.notify_one();
    }

    /// Where Lambda notifications are queued (the async invoker).
    pub fn set_async_invoke(&self, invoke: Arc<dyn AsyncInvoke>) {
        *self.inner.lambda.write() = Some(invoke);
        self.inner.wake.notify_one();
    }

    /// tsumiki's own URL (SQS queue URLs in deliveries).
    pub fn set_endpoint(&self, url: &str) {
        *self.inner.endpoint.write() = url.to_string();
    }

    /// Forgets every bucket and object.
    pub async fn reset(&self) -> Result<(), AwsError> {
        backend::reset(&self.inner).await
    }
}

/// The bucket a virtual-hosted-style host names (`bucket.s3.localhost`,
/// `bucket.s3.us-east-1.localhost.localstack.cloud`), and whether the host is S3's at all.
fn s3_host(host: &str) -> (bool, Option<String>) {
    let labels: Vec<&str> = host.split('.').collect();
    let Some(i) = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))
    else {
        return (false, None);
    };
    if !labels[i + 1..].contains(&"localhost") {
        return (false, None);
    }
    let bucket = (i > 0).then(|| labels[..i].join("."));
    (true, bucket)
}

/// Query parameters of presigned URLs (SigV4 and SigV2).
const PRESIGN_PARAMS: &[&str] = &[
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    "expires",
];

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn xml_error(status: u16, code: &str, message: &str, request_id: &str) -> http::Response<HttpBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId><HostId>{}</HostId></Error>",
        notify::host_id(request_id)
    );
    let mut resp = http::Response::new(full_body(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

impl S3 {
    /// Removes the presigning parameters; `Err` when the URL has expired.
    fn strip_presign(&self, uri: &http::Uri) -> Result<Option<http::Uri>, ()> {
        let Some(query) = uri.query() else {
            return Ok(None);
        };
        let mut date = None;
        let mut expires = None;
        let mut v2_expires = None;
        let mut kept = Vec::new();
        let mut stripped = false;
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            let lower = name.to_ascii_lowercase();
            if PRESIGN_PARAMS.contains(&lower.as_str()) {
                stripped = true;
                let value = pair.split_once('=').map(|(_, v)| v).unwrap_or("");
                match lower.as_str() {
                    "x-amz-date" => date = Some(value.to_string()),
                    "x-amz-expires" => expires = value.parse::<i64>().ok(),
                    "expires" => v2_expires = value.parse::<i64>().ok(),
                    _ => {}
                }
            } else {
                kept.push(pair);
            }
        }
        if !stripped {
            return Ok(None);
        }
        // Business time: advancing a manual clock expires presigned URLs too.
        let now_s = self.inner.clock.now_ms() / 1000;
        if let (Some(date), Some(expires)) = (date, expires)
            && let Ok(t) = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
            && t.and_utc().timestamp() + expires < now_s
        {
            return Err(());
        }
        if let Some(at) = v2_expires
            && at < now_s
        {
            return Err(());
        }
        let path = uri.path();
        let rebuilt = if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        Ok(rebuilt.parse().ok())
    }
}

#[async_trait]
impl HttpEndpoint for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn reset(&self) -> Result<(), AwsError> {
        S3::reset(self).await
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        if head.signing_service == Some("s3") || s3_host(&head.host()).0 {
            Claim::Yes
        } else {
            Claim::Fallback
        }
    }

    async fn handle(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> http::Response<HttpBody> {
        let (mut parts, body) = req.into_parts();
        let host = RequestHead {
            parts: &parts,
            signing_service: None,
        }
        .host()
        .into_owned();
        // No S3 operation has these shapes; S3 itself answers 405 (s3s would say 501).
        let service_root = parts.uri.path() == "/" && s3_host(&host).1.is_none();
        let method_known = matches!(
            parts.method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::PUT
                | http::Method::POST
                | http::Method::DELETE
                | http::Method::OPTIONS
        );
        if !method_known || (service_root && parts.method != http::Method::GET) {
            return xml_error(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                &ctx.request_id,
            );
        }
        // Virtual-hosted style: s3s sees the bucket in the path, as with path style.
        if let (_, Some(bucket)) = s3_host(&host) {
            let pq = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            if let Ok(uri) = format!("/{bucket}{pq}").parse() {
                parts.uri = uri;
            }
        }
        let bucket = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        let origin = header(&parts.headers, "origin");
        if parts.method == http::Method::OPTIONS
            && let Some(bucket) = &bucket
        {
            return self.preflight(
                bucket,
                origin.as_deref(),
                header(&parts.headers, "access-control-request-method").as_deref(),
                header(&parts.headers, "access-control-request-headers").as_deref(),
                &ctx.request_id,
            );
        }
        let cors = match (&origin, &bucket) {
            (Some(origin), Some(bucket)) => {
                let state = self.inner.state.lock();
                let config = state.buckets.get(bucket).and_then(|b| b.rec.cors.as_ref());
                cors::actual(config, origin, parts.method.as_str())
            }
            _ => Vec::new(),
        };
        // tsumiki accepts any signature; s3s would verify them, which needs the secret key.
        parts.headers.remove(http::header::AUTHORIZATION);
        match self.strip_presign(&parts.uri) {
            Ok(Some(uri)) => parts.uri = uri,
            Ok(None) => {}
            Err(()) => {
                return xml_error(403, "AccessDenied", "Request has expired", &ctx.request_id);
            }
        }
        let trailers = chunked::Trailers::default();
        let streaming = parts
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("STREAMING-"));
        let aws_chunked = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim() == "aws-chunked"));
        let body = if streaming || aws_chunked {
            if let Some(len) = parts.headers.get("x-amz-decoded-content-length").cloned() {
                parts.headers.insert(http::header::CONTENT_LENGTH, len);
            }
            let rest: Vec<String> = parts
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty() && *e != "aws-chunked")
                .map(String::from)
                .collect();
            if rest.is_empty() {
                parts.headers.remove(http::header::CONTENT_ENCODING);
            } else if let Ok(v) = http::HeaderValue::from_str(&rest.join(",")) {
                parts.headers.insert(http::header::CONTENT_ENCODING, v);
            }
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            boxed_body(chunked::AwsChunked::new(body, trailers.clone()))
        } else {
            body
        };
        let form_boundary = (parts.method == http::Method::POST)
            .then(|| header(&parts.headers, "content-type").and_then(|t| form::boundary(&t)))
            .flatten();
        let body = match form_boundary {
            Some(b) => form::prepare(body, &b).await,
            None => body,
        };
        parts.headers.remove("x-amz-content-sha256");
        let request_id = ctx.request_id.clone();
        parts.extensions.insert(ctx);
        parts.extensions.insert(trailers);
        let req = http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
        let mut resp = match self.service.call(req).await {
            Ok(resp) => resp.map(boxed_body),
            Err(e) => {
                tracing::error!(error = ?e, "S3 failed to answer.");
                return xml_error(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    &request_id,
                );
            }
        };
        let headers = resp.headers_mut();
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            headers.insert("x-amz-request-id", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&notify::host_id(&request_id)) {
            headers.insert("x-amz-id-2", v);
        }
        for (name, value) in cors {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        resp
    }
}

impl S3 {
    /// A CORS preflight (`OPTIONS` on a bucket or an object), answered from the bucket's rules
    /// without reaching s3s: browsers send it unsigned and S3 answers it before any operation.
    fn preflight(
        &self,
        bucket: &str,
        origin: Option<&str>,
        method: Option<&str>,
        requested: Option<&str>,
        request_id: &str,
    ) -> http::Response<HttpBody> {
        let answer = {
            let state = self.inner.state.lock();
            let Some(b) = state.buckets.get(bucket) else {
                return xml_error(
                    404,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                    request_id,
                );
            };
            cors::preflight(
                b.rec.cors.as_ref(),
                origin,
                method,
                &cors::requested_headers(requested),
            )
        };
        match answer {
            Ok(headers) => {
                let mut resp = http::Response::new(full_body(Bytes::new()));
                for (name, value) in headers {
                    if let Ok(v) = http::HeaderValue::from_str(&value) {
                        resp.headers_mut().insert(name, v);
                    }
                }
                if let Ok(v) = http::HeaderValue::from_str(request_id) {
                    resp.headers_mut().insert("x-amz-request-id", v);
                }
                resp
            }
            Err(denied) => {
                let (status, code, message) = denied.status_code_message();
                xml_error(status, code, message, request_id)
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3 {
    async fn put_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<String, AwsError> {
        backend::put_bytes(&self.inner, ctx, bucket, key, body, content_type).await
    }

    async fn get_object(
        &self,
        _ctx: &RequestContext,
        bucket: &str,
        key: &str,
    ) -> Result<Bytes, AwsError> {
        backend::get_bytes(&self.inner, bucket, key).await
    }

    async fn list_keys(
        &self,
        _ctx: &RequestContext,
        bucket: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, AwsError> {
        let state = self.inner.state.lock();
        let b = state
            .buckets
            .get(bucket)
            .ok_or_else(backend::no_such_bucket_aws)?;
        Ok(b.objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.last().is_some_and(|v| !v.delete_marker))
            .map(|(k, _)| k.clone())
            .take(max)
            .collect())
    }
}

/// For tests of the host rules.
pub fn is_s3_host(host: &str) -> bool {
    s3_host(host).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_name_their_bucket() {
        assert_eq!(s3_host("s3.localhost"), (true, None));
        assert_eq!(
            s3_host("my.bucket.s3.localhost"),
            (true, Some("my.bucket".into()))
        );
        assert_eq!(
            s3_host("b.s3.us-east-1.localhost.localstack.cloud"),
            (true, Some("b".into()))
        );
        assert_eq!(s3_host("localhost"), (false, None));
        assert_eq!(s3_host("sqs.us-east-1.localhost"), (false, None));
        assert_eq!(s3_host("s3.amazonaws.com"), (false, None));
    }
}
