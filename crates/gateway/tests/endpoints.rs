//! Raw HTTP endpoints: claimed by host or signing scope before the body is read, streamed
//! through, and a fallback endpoint taking only what no service routes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsumiki_core::{Clock, RequestContext};
use tsumiki_gateway::{Gateway, GatewayConfig};
use tsumiki_ports::http::{Claim, HttpBody, HttpEndpoint, RequestHead, full_body};

struct Echo {
    name: &'static str,
    host_suffix: &'static str,
    scope: &'static str,
    fallback: bool,
    resets: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl HttpEndpoint for Echo {
    fn name(&self) -> &'static str {
        self.name
    }

    fn claims(&self, head: &RequestHead<'_>) -> Claim {
        if head.host().ends_with(self.host_suffix) || head.signing_service == Some(self.scope) {
            Claim::Yes
        } else if self.fallback {
            Claim::Fallback
        } else {
            Claim::No
        }
    }

    async fn handle(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> http::Response<HttpBody> {
        let (parts, body) = req.into_parts();
        let body: Bytes = body.collect().await.expect("a body").to_bytes();
        let text = format!(
            "{} {} {} {} {} {}",
            self.name,
            parts.method,
            parts.uri.path(),
            ctx.account,
            ctx.region,
            String::from_utf8_lossy(&body)
        );
        http::Response::new(full_body(text))
    }

    async fn reset(&self) -> Result<(), tsumiki_core::AwsError> {
        self.resets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

async fn start() -> std::net::SocketAddr {
    start_with(&[]).await
}

async fn start_with(keep: &[Arc<Echo>]) -> std::net::SocketAddr {
    let mut gateway = Gateway::new(
        GatewayConfig::default(),
        Arc::new(Clock::real()),
        Vec::new(),
    );
    gateway.add_endpoint(Arc::new(Echo {
        name: "urls",
        host_suffix: ".urls.localhost",
        scope: "execute-api",
        fallback: false,
        resets: Default::default(),
    }));
    gateway.add_endpoint(Arc::new(Echo {
        name: "objects",
        host_suffix: ".objects.localhost",
        scope: "s3",
        fallback: true,
        resets: Default::default(),
    }));
    for e in keep {
        gateway.add_endpoint(e.clone());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(tsumiki_gateway::serve(
        listener,
        Arc::new(gateway),
        std::future::pending(),
    ));
    addr
}

/// One HTTP/1.1 exchange; the response's body.
async fn exchange(addr: std::net::SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.contains("server: tsumiki"), "{head}");
    body.to_string()
}

fn request(method: &str, path: &str, host: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn endpoints_claim_by_host_and_scope_and_the_fallback_takes_the_unrouted() {
    let addr = start().await;
    let by_host = exchange(
        addr,
        request("POST", "/a/b", "x1.urls.localhost:4566", "", "hi"),
    )
    .await;
    assert_eq!(by_host, "urls POST /a/b 000000000000 us-east-1 hi");

    let signed = "authorization: AWS4-HMAC-SHA256 Credential=111122223333/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n";
    let by_scope = exchange(
        addr,
        request("PUT", "/bucket/key", "localhost", signed, "data"),
    )
    .await;
    assert_eq!(
        by_scope,
        "objects PUT /bucket/key 111122223333 eu-west-1 data"
    );

    // Nothing names a service: the fallback endpoint answers.
    let unrouted = exchange(addr, request("GET", "/bucket/key", "localhost", "", "")).await;
    assert_eq!(unrouted, "objects GET /bucket/key 000000000000 us-east-1 ");

    // A query Action routes to the model services (none served here), not to the fallback.
    let query = exchange(
        addr,
        request(
            "POST",
            "/",
            "localhost",
            "content-type: application/x-www-form-urlencoded\r\n",
            "Action=ListQueues",
        ),
    )
    .await;
    assert!(query.contains("InvalidAction"), "{query}");
}

#[tokio::test]
async fn the_admin_reset_resets_every_endpoint() {
    let echo = Arc::new(Echo {
        name: "kept",
        host_suffix: ".kept.localhost",
        scope: "kept",
        fallback: false,
        resets: Default::default(),
    });
    let addr = start_with(std::slice::from_ref(&echo)).await;
    let answer = exchange(
        addr,
        request("POST", "/_tsumiki/reset", "localhost", "", ""),
    )
    .await;
    assert!(answer.contains("reset"), "{answer}");
    assert_eq!(echo.resets.load(std::sync::atomic::Ordering::SeqCst), 1);
}
