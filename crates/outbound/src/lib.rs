//! Outbound HTTP and HTTPS requests that services make to user endpoints: SNS's HTTP/HTTPS
//! subscriptions, API Gateway's HTTP integrations and JWKS documents. One request per
//! connection (these are deliveries, not a hot path), HTTP/1.1 over hyper, TLS over rustls.
//!
//! Servers are checked against the machine's trusted roots (`rustls-native-certs`, which
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR`, so a local test CA can be trusted without
//! touching the system store). The `ring` provider is named explicitly: other crates in a
//! test build may turn on rustls's `aws-lc-rs` too, and then no provider is implied.
//!
//! Not here: connection pooling, HTTP/2, proxies, redirects (AWS follows none of them for
//! these deliveries).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A whole answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why a request got no answer. `retryable` tells a delivery whether another attempt may
/// succeed (no connection, a reset, a timeout) or never will (a bad URL, a refused
/// certificate).
#[derive(Debug, Clone)]
pub struct Error {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn permanent(message: String) -> Error {
    Error {
        message,
        retryable: false,
    }
}

fn transient(message: String) -> Error {
    Error {
        message,
        retryable: true,
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "Could not read a trusted certificate.");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "Loaded trusted roots for HTTPS.");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// Sends `method url` with `headers` and `body`, and reads the whole answer, within
/// `timeout` of real time. `Host` and `Content-Length` are set here.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Response, Error> {
    let attempt = send_now(method, url, headers, body);
    tokio::select! {
        r = attempt => r,
        _ = tsumiki_core::Clock::pause_real(timeout) => Err(transient(format!(
            "{url} did not answer in {} seconds.",
            timeout.as_secs()
        ))),
    }
}

async fn send_now(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Response, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| permanent(format!("{url} is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(permanent(format!(
                "{url} is not an http:// or https:// URL."
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| permanent(format!("{url} names no host.")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| transient(format!("Connecting to {url}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| permanent(format!("A request to {url} cannot be made: {e}")))?;
    if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| permanent(format!("{host} is not a TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                // A certificate the machine does not trust will not become trusted by retrying.
                let certificate = e
                    .get_ref()
                    .is_some_and(|inner| inner.to_string().contains("certificate"));
                let message = format!("TLS with {url}: {e}");
                if certificate {
                    permanent(message)
                } else {
                    transient(message)
                }
            })?;
        exchange(tls, url, req).await
    } else {
        exchange(tcp, url, req).await
    }
}

async fn exchange<S>(
    stream: S,
    url: &str,
    req: http::Request<Full<Bytes>>,
) -> Result<Response, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transient(format!("Talking to {url}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transient(format!("Sending to {url}: {e}")))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| transient(format!("Reading the answer of {url}: {e}")))?
        .to_bytes();
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn plain_http_round_trip() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let mut got = Vec::new();
            while !got.windows(5).any(|w| w == b"hello") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got).to_lowercase();
            assert!(text.starts_with("post /p?q=1 http/1.1"), "{text}");
            assert!(text.contains("x-test: yes"), "{text}");
            s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-back: 1\r\n\r\nok")
                .await
                .unwrap();
        });
        let r = send(
            "POST",
            &format!("http://{addr}/p?q=1"),
            &[("x-test".into(), "yes".into())],
            Bytes::from_static(b"hello"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body.as_ref(), b"ok");
        assert_eq!(r.headers["x-back"], "1");
    }

    #[tokio::test]
    async fn failures_say_whether_a_retry_can_help() {
        let e = send("GET", "ftp://x/", &[], Bytes::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(!e.retryable, "{e}");
        // Nothing listens on a port just released.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = send(
            "GET",
            &format!("https://127.0.0.1:{port}/"),
            &[],
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.retryable, "{e}");
    }
}
