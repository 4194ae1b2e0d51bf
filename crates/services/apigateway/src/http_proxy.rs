//! `HTTP_PROXY` integrations of HTTP APIs: the request passed through to a plain `http://` URL
//! and the answer passed back. A small HTTP/1.0 client over a TCP stream (one request per
//! connection, so the answer ends at EOF and is never chunked); no TLS.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsumiki_proxy::{HttpRequest, ProxyResponse};

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
];

/// The integration URI with `{name}` path variables filled in and the query string appended.
pub fn target_url(uri: &str, params: &[(String, String)], req: &HttpRequest) -> String {
    let mut url = uri.to_string();
    for (k, v) in params {
        url = url.replace(&format!("{{{k}}}"), v);
        url = url.replace(&format!("{{{k}+}}"), v);
    }
    if !req.query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&req.query);
    }
    url
}

pub async fn forward(url: &str, req: &HttpRequest) -> Result<ProxyResponse, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// integration URIs are supported, not {url}"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut head = format!("{} {path} HTTP/1.0\r\nhost: {authority}\r\n", req.method);
    for (k, v) in &req.headers {
        if !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&req.body)
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<ProxyResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("the response has no status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
        .collect();
    Ok(ProxyResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        let req = HttpRequest {
            query: "a=1".into(),
            ..Default::default()
        };
        let params = vec![("proxy".to_string(), "x/y".to_string())];
        assert_eq!(
            target_url("http://h:1/base/{proxy}", &params, &req),
            "http://h:1/base/x/y?a=1"
        );
        let r = parse_response(b"HTTP/1.0 201 Created\r\nX-A: 1\r\nConnection: close\r\n\r\nbody")
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(r.body, b"body");
    }
}
