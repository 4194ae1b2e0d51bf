//! `HTTP_PROXY` integrations: the request passed through to an `http://` or `https://` URL
//! (through `tsumiki-outbound`) and the answer passed back.

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

/// How long an integration may take; API Gateway's own limit (29 s by default) applies above.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn forward(url: &str, req: &HttpRequest) -> Result<ProxyResponse, String> {
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let r = tsumiki_outbound::send(
        &req.method,
        url,
        &headers,
        bytes::Bytes::from(req.body.clone()),
        TIMEOUT,
    )
    .await
    .map_err(|e| e.message)?;
    let headers = r
        .headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(ProxyResponse {
        status: r.status,
        headers,
        body: r.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let req = HttpRequest {
            query: "a=1".into(),
            ..Default::default()
        };
        let params = vec![("proxy".to_string(), "x/y".to_string())];
        assert_eq!(
            target_url("http://h:1/base/{proxy}", &params, &req),
            "http://h:1/base/x/y?a=1"
        );
    }
}
