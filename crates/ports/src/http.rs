//! Services that speak HTTP themselves instead of through a model-driven protocol: S3 (its
//! own protocol layer, streaming bodies), API Gateway's invoke URLs and Lambda function URLs
//! (arbitrary user HTTP). The gateway offers a request to them from its head alone, before
//! reading the body, so bodies stream both ways.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use tsumiki_core::RequestContext;

/// Errors inside a streaming body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming HTTP body, either way.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A whole body held in memory.
pub fn full_body(bytes: impl Into<Bytes>) -> HttpBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty_body() -> HttpBody {
    full_body(Bytes::new())
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed_body<B>(body: B) -> HttpBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What the gateway knows of a request before it reads the body.
pub struct RequestHead<'a> {
    /// Method, URI, headers.
    pub parts: &'a http::request::Parts,
    /// The SigV4 credential scope's service (`s3`, `execute-api`, `lambda`, ...), from the
    /// `Authorization` header or a presigned URL's query; `None` when unsigned.
    pub signing_service: Option<&'a str>,
}

impl RequestHead<'_> {
    /// The `Host` header (or the URI's authority), without the port, lowercased.
    pub fn host(&self) -> std::borrow::Cow<'_, str> {
        let raw = self
            .parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| self.parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let without_port = match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
            _ => raw,
        };
        // Every request asks each endpoint whether the host is theirs: no copy when the host
        // is lowercase already, as SDKs send it.
        if without_port.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(without_port.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(without_port)
        }
    }
}

/// How strongly an endpoint wants a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not this endpoint's request.
    No,
    /// This endpoint's request (by host, path prefix or signing scope).
    Yes,
    /// Take it only if nothing else routes it (S3 takes unsigned path-style requests).
    Fallback,
}

/// A service that handles raw HTTP. Registered with the gateway beside the model-driven
/// services; the gateway asks each in order after its admin routes.
#[async_trait]
pub trait HttpEndpoint: Send + Sync + 'static {
    /// A short name for logs, e.g. `s3`.
    fn name(&self) -> &'static str;

    /// Whether this endpoint takes the request. Must be cheap: it runs for every request.
    fn claims(&self, head: &RequestHead<'_>) -> Claim;

    /// Answers the request. `ctx` carries the caller's account and region (from the SigV4
    /// credential, else the gateway's defaults) and the request id. The endpoint applies its
    /// own body limits and answers errors in its own protocol.
    async fn handle(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> http::Response<HttpBody>;

    /// Forgets every resource this endpoint owns (the admin reset). Endpoints whose state
    /// belongs to a model-driven service reset with that service and keep this default.
    async fn reset(&self) -> Result<(), tsumiki_core::AwsError> {
        Ok(())
    }
}
