//! `Code.Location` (GetFunction) and `Content.Location` (GetLayerVersion, PublishLayerVersion):
//! presigned URLs the stored package downloads from for 10 minutes, as AWS hands out presigned
//! S3 URLs. tsumiki serves them itself, as an [`HttpEndpoint`] claiming unsigned
//! `GET`/`HEAD` `/_aws/lambda/code/{hex sha256}/{file}.zip?Expires={s}&Signature={hex}`, on the
//! host the caller of GetFunction used.
//!
//! The signature is an HMAC-SHA256 of the path and the expiry (seconds on the server's clock)
//! under a key kept in the store (`lambda.secret`), so a URL survives a restart and any node of
//! one store accepts another's URLs; a guessed or altered URL, or one past its expiry, is
//! refused with S3's 403 XML errors. The package is served from `lambda.code` by its hash, so a
//! published version's URL keeps downloading that version's bytes after `$LATEST` changes.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, empty_body, full_body};
use tsumiki_store::{Batch, Store};

use crate::Lambda;
use crate::state::{NS_CODE, NS_SECRET, store_error};

/// Where packages are served.
const PATH_PREFIX: &str = "/_aws/lambda/code/";
/// How long a location works, as on AWS.
const VALID_S: i64 = 600;
const SECRET_KEY: &[u8] = b"location";

type HmacSha256 = hmac::Hmac<sha2_11::Sha256>;

/// Signs and checks package locations.
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// The store's signing key, made (and committed) the first time.
    pub(crate) async fn load(store: &Store) -> Result<Signer, AwsError> {
        if let Some(key) = store
            .get(NS_SECRET, SECRET_KEY)
            .await
            .map_err(store_error)?
            .filter(|k| k.len() >= 32)
        {
            return Ok(Signer { key });
        }
        let key: [u8; 32] = rand::random();
        let mut batch = Batch::new();
        batch.put(NS_SECRET, SECRET_KEY.to_vec(), key.to_vec());
        store.commit(batch).await.map_err(store_error)?;
        Ok(Signer { key: key.to_vec() })
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    fn sign(&self, path: &str, expires: i64) -> String {
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// Compares in constant time, so timing tells nothing about the right signature.
    fn verify(&self, path: &str, expires: i64, signature: &str) -> bool {
        hex::decode(signature).is_ok_and(|sig| self.mac(path, expires).verify_slice(&sig).is_ok())
    }
}

impl Lambda {
    /// A URL that downloads package `code_id` (hex SHA-256) as `{file}.zip` for 10 minutes from
    /// now, on the server `base_url` names (the caller's endpoint).
    pub(crate) fn code_location(&self, base_url: &str, code_id: &str, file: &str) -> String {
        let path = format!("{PATH_PREFIX}{code_id}/{file}.zip");
        let expires = self.clock.now_ms().div_euclid(1000) + VALID_S;
        let signature = self.signer.sign(&path, expires);
        format!(
            "{}{path}?Expires={expires}&Signature={signature}",
            base_url.trim_end_matches('/')
        )
    }

    /// The endpoint serving [`Lambda::code_location`] URLs.
    pub fn code_endpoint(self: &Arc<Self>) -> Arc<dyn HttpEndpoint> {
        Arc::new(CodeDownloads {
            lambda: Arc::downgrade(self),
        })
    }
}

struct CodeDownloads {
    lambda: Weak<Lambda>,
}

/// Whether a request is a package download. Only unsigned requests on a plain host: a signed
/// request, or one naming an API, a function URL or a virtual-hosted bucket, is that
/// endpoint's even if its path starts the same.
fn is_download(head: &RequestHead<'_>) -> bool {
    if !head.parts.uri.path().starts_with(PATH_PREFIX) || head.signing_service.is_some() {
        return false;
    }
    if !matches!(head.parts.method, http::Method::GET | http::Method::HEAD) {
        return false;
    }
    let host = head.host();
    !(host.contains(".execute-api.")
        || host.contains(".lambda-url.")
        || host.starts_with("s3.")
        || host.contains(".s3."))
}

/// S3's XML error body.
fn xml_error(
    status: u16,
    code: &str,
    message: &str,
    extra: &str,
    request_id: &str,
) -> http::Response<HttpBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>{request_id}</RequestId></Error>"
    );
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(full_body(body))
        .unwrap_or_else(|_| http::Response::new(empty_body()))
}

/// S3's timestamps in error bodies: seconds, `Z`.
fn iso_seconds(ms: i64) -> String {
    let iso = tsumiki_core::clock::iso8601_ms(ms);
    match iso.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => iso,
    }
}

#[async_trait]
impl HttpEndpoint for CodeDownloads {
    fn name(&self) -> &'static str {
        "lambda-code"
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        if is_download(head) {
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
        let Some(lambda) = self.lambda.upgrade() else {
            return xml_error(
                503,
                "ServiceUnavailable",
                "Service Unavailable",
                "",
                &ctx.request_id,
            );
        };
        let path = req.uri().path();
        let (mut expires, mut signature) = (None, None);
        for (k, v) in form_urlencoded(req.uri().query().unwrap_or("")) {
            match k.as_str() {
                "Expires" => expires = v.parse::<i64>().ok(),
                "Signature" => signature = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return xml_error(
                403,
                "AccessDenied",
                "Query-string authentication requires the Signature and Expires parameters",
                "",
                &ctx.request_id,
            );
        };
        if !lambda.signer.verify(path, expires, &signature) {
            return xml_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                "",
                &ctx.request_id,
            );
        }
        let now = lambda.clock.now_ms();
        if now > expires.saturating_mul(1000) {
            let extra = format!(
                "<Expires>{}</Expires><ServerTime>{}</ServerTime>",
                iso_seconds(expires.saturating_mul(1000)),
                iso_seconds(now)
            );
            return xml_error(
                403,
                "AccessDenied",
                "Request has expired",
                &extra,
                &ctx.request_id,
            );
        }
        // The signature covers the path, so the id is one this server named.
        let code_id = path[PATH_PREFIX.len()..].split('/').next().unwrap_or("");
        let bytes = match lambda.store.get(NS_CODE, code_id.as_bytes()).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return xml_error(
                    404,
                    "NoSuchKey",
                    "The specified key does not exist.",
                    "",
                    &ctx.request_id,
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "reading a package for download failed");
                return xml_error(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    "",
                    &ctx.request_id,
                );
            }
        };
        let len = bytes.len();
        let body = if req.method() == http::Method::HEAD {
            empty_body()
        } else {
            full_body(bytes)
        };
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/zip")
            .header(http::header::CONTENT_LENGTH, len)
            .header("x-amz-request-id", ctx.request_id.as_str())
            .body(body)
            .unwrap_or_else(|_| http::Response::new(empty_body()))
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
fn form_urlencoded(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer {
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    #[test]
    fn signatures_cover_path_and_expiry() {
        let s = signer();
        let path = "/_aws/lambda/code/ab/f.zip";
        let sig = s.sign(path, 1_000);
        assert!(s.verify(path, 1_000, &sig));
        assert!(!s.verify(path, 1_001, &sig));
        assert!(!s.verify("/_aws/lambda/code/ac/f.zip", 1_000, &sig));
        assert!(!s.verify(path, 1_000, &sig[..62]));
        assert!(!s.verify(path, 1_000, "zz"));
        let other = Signer {
            key: b"another key, another signature!!".to_vec(),
        };
        assert!(!other.verify(path, 1_000, &sig));
    }

    fn claimed(method: &str, host: &str, path: &str, signing: Option<&str>) -> bool {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts();
        let head = RequestHead {
            parts: &parts,
            signing_service: signing,
        };
        is_download(&head)
    }

    #[test]
    fn claims_only_unsigned_downloads_on_a_plain_host() {
        let path = "/_aws/lambda/code/ab/f.zip?Expires=1&Signature=00";
        assert!(claimed("GET", "localhost:4566", path, None));
        assert!(claimed("HEAD", "127.0.0.1:4566", path, None));
        assert!(!claimed("PUT", "localhost:4566", path, None));
        // Another endpoint's request with the same path.
        assert!(!claimed("GET", "localhost:4566", path, Some("s3")));
        assert!(!claimed("GET", "bucket.s3.localhost:4566", path, None));
        assert!(!claimed("GET", "s3.localhost:4566", path, None));
        assert!(!claimed(
            "GET",
            "abc.execute-api.localhost:4566",
            path,
            None
        ));
        assert!(!claimed(
            "GET",
            "abc.lambda-url.us-east-1.localhost",
            path,
            None
        ));
        assert!(!claimed(
            "GET",
            "localhost:4566",
            "/_aws/lambda-url/x/",
            None
        ));
        assert!(!claimed(
            "GET",
            "localhost:4566",
            "/_aws/lambda/codes",
            None
        ));
    }

    #[test]
    fn error_times_are_seconds() {
        assert_eq!(iso_seconds(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
