//! Who is asking, where, and under which request id.

/// Facts about one API request that every service needs: the caller's account and region
/// (resources are isolated per both), the request id, and the base URL the client used (SQS
/// builds queue URLs from it, as AWS does from its endpoint).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub account: String,
    pub region: String,
    pub request_id: String,
    /// `http://host:port` as the client addressed us.
    pub base_url: String,
    /// The access key id from SigV4, when the request was signed.
    pub access_key: Option<String>,
    /// The request's URL path. Query APIs may address a resource by it (SQS's queue URL as
    /// the endpoint).
    pub path: String,
}
