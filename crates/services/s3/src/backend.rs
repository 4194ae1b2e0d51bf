//! The `s3s::S3` backend: one method per operation, named as s3s names them. A write streams
//! the body to a file (`blobs.rs`), then, under the state lock, changes the in-memory state,
//! queues the store batch recording it (with any notifications it causes), and answers after
//! the batch is durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::Inner;
use crate::blobs::BodyStream;
use crate::chunked::Trailers;
use crate::notify::{self, Change};
use crate::state::{BucketRec, BucketState, Part as StoredPart, Pending, State, Upload, Version};

pub struct Backend(pub Arc<Inner>);

fn ctx_of<T>(req: &S3Request<T>) -> RequestContext {
    req.extensions
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext {
            account: "000000000000".into(),
            region: "us-east-1".into(),
            request_id: tsumiki_core::ids::request_id(),
            base_url: String::new(),
            access_key: None,
            path: "/".into(),
        })
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn ms_of(t: &Timestamp) -> i64 {
    let t: time::OffsetDateTime = t.clone().into();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "S3 failed.");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

fn no_such_bucket(_bucket: &str) -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist")
}

fn no_such_key() -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

pub fn no_such_bucket_aws() -> AwsError {
    AwsError::new("NoSuchBucket", 404, "The specified bucket does not exist")
}

/// The canonical user id S3 shows for an account.
fn canonical_id(account: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(account.as_bytes()))
}

fn owner(account: &str) -> Owner {
    Owner {
        display_name: Some(account.to_string()),
        id: Some(canonical_id(account)),
    }
}

fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn etag(v: &str) -> ETag {
    ETag::Strong(v.to_string())
}

/// A sequencer: hex, ordered by time and commit order within the bucket.
fn sequencer(ms: i64, seq: u64) -> String {
    format!("{:012X}{:08X}", ms.max(0), seq & 0xFFFF_FFFF)
}

fn checksum_fields(c: &Option<(String, String)>) -> Checksum {
    let mut out = Checksum::default();
    if let Some((algo, value)) = c {
        let v = Some(value.clone());
        match algo.as_str() {
            "CRC32" => out.checksum_crc32 = v,
            "CRC32C" => out.checksum_crc32c = v,
            "CRC64NVME" => out.checksum_crc64nvme = v,
            "SHA1" => out.checksum_sha1 = v,
            "SHA256" => out.checksum_sha256 = v,
            _ => {}
        }
    }
    out
}

/// The checksum a request asks for: an `x-amz-checksum-*` header's algorithm and value (the
/// value may come in the trailer), or just an algorithm.
fn requested_checksum(
    headers: &http::HeaderMap,
    algorithm: Option<&ChecksumAlgorithm>,
    given: &Checksum,
) -> (Option<String>, Option<String>) {
    let pairs = [
        ("CRC32", &given.checksum_crc32),
        ("CRC32C", &given.checksum_crc32c),
        ("CRC64NVME", &given.checksum_crc64nvme),
        ("SHA1", &given.checksum_sha1),
        ("SHA256", &given.checksum_sha256),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            return (Some(name.to_string()), Some(v.clone()));
        }
    }
    if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok())
        && let Some(algo) = trailer
            .trim()
            .to_ascii_lowercase()
            .strip_prefix("x-amz-checksum-")
    {
        return (Some(algo.to_ascii_uppercase()), None);
    }
    if let Some(a) = algorithm {
        return (Some(a.as_str().to_ascii_uppercase()), None);
    }
    if let Some(a) = headers
        .get("x-amz-sdk-checksum-algorithm")
        .and_then(|v| v.to_str().ok())
    {
        return (Some(a.to_ascii_uppercase()), None);
    }
    (None, None)
}

fn bad_digest(algo: &str) -> S3Error {
    let name = match algo {
        "CRC32" => "crc32",
        "CRC32C" => "crc32c",
        "CRC64NVME" => "crc64nvme",
        "SHA1" => "sha1",
        "SHA256" => "sha256",
        other => other,
    };
    s3_error!(
        BadDigest,
        "The {} you specified did not match the calculated checksum.",
        name.to_ascii_uppercase()
    )
}

/// The body of a request as a stream.
fn body_stream(blob: Option<StreamingBlob>) -> BodyStream {
    match blob {
        Some(b) => Box::pin(b),
        None => Box::pin(futures_util::stream::empty()),
    }
}

/// What a written body became, checked against what the client said it would be.
struct Stored {
    written: crate::blobs::Written,
}

#[allow(clippy::too_many_arguments)]
async fn store_body(
    inner: &Inner,
    headers: &http::HeaderMap,
    trailers: Option<Trailers>,
    body: Option<StreamingBlob>,
    algorithm: Option<&ChecksumAlgorithm>,
    given: &Checksum,
    content_md5: Option<&str>,
    content_length: Option<i64>,
) -> S3Result<Stored> {
    let (algo, expected) = requested_checksum(headers, algorithm, given);
    let written = inner
        .blobs
        .write(body_stream(body), algo.as_deref())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "An S3 upload failed while reading its body.");
            s3_error!(IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
        })?;
    let reject = |e: S3Error, w: &crate::blobs::Written| {
        let name = w.name.clone();
        let blobs = inner.blobs.clone();
        tokio::spawn(async move { blobs.remove(vec![name]).await });
        Err(e)
    };
    if let Some(len) = content_length
        && len >= 0
        && written.size != len as u64
    {
        return reject(
            s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header."
            ),
            &written,
        );
    }
    if let Some(md5) = content_md5 {
        use base64::Engine as _;
        let ours = base64::engine::general_purpose::STANDARD.encode(written.md5);
        if ours != md5.trim() {
            return reject(
                s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ),
                &written,
            );
        }
    }
    let expected = expected.or_else(|| {
        let algo = algo.as_deref()?;
        trailers?.get(&format!("x-amz-checksum-{}", algo.to_ascii_lowercase()))
    });
    if let (Some(expected), Some((a, ours))) = (expected, &written.checksum)
        && &expected != ours
    {
        return reject(bad_digest(a), &written);
    }
    Ok(Stored { written })
}

/// Applies `template`'s headers for a new object.
#[allow(clippy::too_many_arguments)]
fn headers_version(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    website_redirect_location: Option<String>,
    metadata: Option<Metadata>,
    storage_class: Option<&StorageClass>,
    tagging: Option<&str>,
) -> Version {
    Version {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.map(|t| tsumiki_core::clock::iso8601_ms(ms_of(t))),
        website_redirect_location,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
        storage_class: storage_class
            .map(|s| s.as_str().to_string())
            .filter(|s| s != "STANDARD"),
        tags: tagging.map(parse_tagging).unwrap_or_default(),
        ..Version::default()
    }
}

fn parse_tagging(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn expires_ts(v: &Version) -> Option<Timestamp> {
    let s = v.expires.as_deref()?;
    Timestamp::parse(TimestampFormat::DateTime, s).ok()
}

/// Where a new version goes in the key's history, by the bucket's versioning state; returns
/// the blobs it replaced.
fn add_version(b: &mut BucketState, key: &str, mut v: Version) -> (Version, Vec<String>) {
    let versions = b.objects.entry(key.to_string()).or_default();
    let mut replaced = Vec::new();
    match b.rec.versioning.as_deref() {
        Some("Enabled") => v.version_id = new_version_id(),
        _ => {
            v.version_id = "null".into();
            versions.retain(|old| {
                if old.version_id == "null" {
                    replaced.extend(old.blob.clone());
                    false
                } else {
                    true
                }
            });
        }
    }
    versions.push(v.clone());
    (v, replaced)
}

/// The version id the client sees: none until versioning was ever configured.
fn shown_version(b: &BucketState, v: &Version) -> Option<String> {
    b.rec.versioning.as_ref().map(|_| v.version_id.clone())
}

/// Queues the notifications of `change` into `batch`.
fn notifications(state: &mut State, batch: &mut Batch, change: &Change<'_>) {
    let Some(b) = state.buckets.get(change.bucket) else {
        return;
    };
    let Some(config) = b.rec.notification.clone() else {
        return;
    };
    let account = b.rec.account.clone();
    let region = b.rec.region.clone();
    if let Ok(dests) = notify::destinations(&config) {
        for d in dests {
            if d.wants(change.event, change.key) {
                let body = notify::record(change, &d.id).to_string();
                state.add_pending(
                    batch,
                    Pending {
                        seq: 0,
                        target: d.target.to_string(),
                        arn: d.arn.clone(),
                        body,
                        request_id: change.request_id.to_string(),
                        attempts: 0,
                    },
                );
            }
        }
    }
    if config.event_bridge_configuration.is_some()
        && let Some(entry) = notify::eventbridge_entry(change)
    {
        state.add_pending(
            batch,
            Pending {
                seq: 0,
                target: "events".into(),
                arn: format!("arn:aws:events:{region}:{account}:event-bus/default"),
                body: entry.to_string(),
                request_id: change.request_id.to_string(),
                attempts: 0,
            },
        );
    }
}

impl Inner {
    /// Commits `batch` (queued under the state lock by the caller) and wakes delivery.
    async fn commit(
        &self,
        fut: impl Future<Output = Result<(), tsumiki_store::StoreError>>,
    ) -> S3Result<()> {
        fut.await.map_err(internal)?;
        self.wake.notify_one();
        Ok(())
    }

    fn next_seq(state: &mut State) -> u64 {
        state.next_seq += 1;
        state.next_seq
    }
}

struct Written {
    version: Version,
    version_id: Option<String>,
}

/// Commits a new object version whose body is already in a data file, with its notifications.
#[allow(clippy::too_many_arguments)]
async fn commit_object(
    inner: &Inner,
    ctx: &RequestContext,
    bucket: &str,
    key: &str,
    version: Version,
    event: &str,
    reason: &str,
    condition: Option<(&Option<ETagCondition>, &Option<ETagCondition>)>,
) -> S3Result<Written> {
    let blob = version.blob.clone();
    let locked: S3Result<_> = (|| {
        let mut state = inner.state.lock();
        let b = state
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_such_bucket(bucket))?;
        if let Some((if_match, if_none_match)) = condition {
            let current = b.current(key);
            let failed = match (if_match, current) {
                (Some(_), None) => Some(no_such_key()),
                (Some(c), Some(cur)) if !condition_matches(c, &cur.etag) => Some(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )),
                _ => None,
            }
            .or_else(|| match (if_none_match, current) {
                (Some(c), Some(cur)) if condition_matches(c, &cur.etag) => Some(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )),
                _ => None,
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        let (v, replaced) = add_version(b, key, version);
        let version_id = shown_version(b, &v);
        let owner = b.rec.account.clone();
        let region = b.rec.region.clone();
        let mut batch = Batch::new();
        state.put_object(&mut batch, bucket, key);
        let seq = Inner::next_seq(&mut state);
        let change = Change {
            event,
            bucket,
            bucket_owner: &canonical_id(&owner),
            key,
            size: Some(v.size),
            etag: Some(&v.etag),
            version_id: version_id.as_deref(),
            sequencer: sequencer(v.last_modified_ms, seq),
            region: &region,
            time_ms: v.last_modified_ms,
            request_id: &ctx.request_id,
            requester: &ctx.account,
            reason,
        };
        notifications(&mut state, &mut batch, &change);
        Ok((
            inner.store.commit(batch),
            Written {
                version: v,
                version_id,
            },
            replaced,
        ))
    })();
    let (fut, written, replaced) = match locked {
        Ok(x) => x,
        Err(e) => {
            inner.blobs.remove(blob.into_iter().collect()).await;
            return Err(e);
        }
    };
    inner.commit(fut).await?;
    inner.blobs.remove(replaced).await;
    Ok(written)
}

fn condition_matches(c: &ETagCondition, etag: &str) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
    }
}

/// GET and HEAD's conditions, in AWS's precedence.
fn check_read_conditions(
    v: &Version,
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
) -> S3Result<()> {
    let modified_s = v.last_modified_ms / 1000;
    let precondition = || {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    };
    if let Some(c) = if_match {
        if !condition_matches(c, &v.etag) {
            return Err(precondition());
        }
    } else if let Some(t) = if_unmodified_since
        && modified_s > ms_of(t) / 1000
    {
        return Err(precondition());
    }
    let not_modified = || {
        let mut e = S3Error::new(S3ErrorCode::NotModified);
        e.set_status_code(http::StatusCode::NOT_MODIFIED);
        let mut h = http::HeaderMap::new();
        if let Ok(val) = http::HeaderValue::from_str(&format!("\"{}\"", v.etag)) {
            h.insert(http::header::ETAG, val);
        }
        e.set_headers(h);
        e
    };
    if let Some(c) = if_none_match {
        if condition_matches(c, &v.etag) {
            return Err(not_modified());
        }
    } else if let Some(t) = if_modified_since
        && modified_s <= ms_of(t) / 1000
    {
        return Err(not_modified());
    }
    Ok(())
}

/// A GET's byte range: start, length, and the `Content-Range` to answer.
fn read_range(range: &Option<Range>, size: u64) -> S3Result<(u64, u64, Option<String>)> {
    match range {
        None => Ok((0, size, None)),
        Some(r) => {
            let range = r
                .check(size)
                .map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
            Ok((
                range.start,
                range.end - range.start,
                Some(format!("bytes {}-{}/{}", range.start, range.end - 1, size)),
            ))
        }
    }
}

/// The version a read addresses, or the error S3 gives.
fn find_version(b: &BucketState, key: &str, version_id: Option<&str>) -> S3Result<Version> {
    match version_id {
        None => {
            let latest = b.latest(key).ok_or_else(no_such_key)?;
            if latest.delete_marker {
                let mut e = no_such_key();
                let mut h = http::HeaderMap::new();
                h.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                if let Ok(v) = http::HeaderValue::from_str(&latest.version_id) {
                    h.insert("x-amz-version-id", v);
                }
                e.set_headers(h);
                return Err(e);
            }
            Ok(latest.clone())
        }
        Some(id) => {
            let v = b
                .objects
                .get(key)
                .and_then(|vs| vs.iter().find(|v| v.version_id == id))
                .ok_or_else(|| {
                    if id == "null" || id.len() == 32 {
                        s3_error!(NoSuchVersion, "The specified version does not exist.")
                    } else {
                        s3_error!(InvalidArgument, "Invalid version id specified")
                    }
                })?;
            if v.delete_marker {
                let mut e = s3_error!(
                    MethodNotAllowed,
                    "The specified method is not allowed against this resource."
                );
                let mut h = http::HeaderMap::new();
                h.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                e.set_headers(h);
                return Err(e);
            }
            Ok(v.clone())
        }
    }
}

fn bucket_of<'a>(state: &'a State, bucket: &str) -> S3Result<&'a BucketState> {
    state
        .buckets
        .get(bucket)
        .ok_or_else(|| no_such_bucket(bucket))
}

/// Writes the bucket record after `f` changed it.
async fn update_bucket(
    inner: &Inner,
    bucket: &str,
    f: impl FnOnce(&mut BucketRec) -> S3Result<()>,
) -> S3Result<()> {
    let fut = {
        let mut state = inner.state.lock();
        let b = state
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_such_bucket(bucket))?;
        f(&mut b.rec)?;
        let mut batch = Batch::new();
        state.put_bucket(&mut batch, bucket);
        inner.store.commit(batch)
    };
    inner.commit(fut).await
}

fn read_bucket<T>(
    inner: &Inner,
    bucket: &str,
    f: impl FnOnce(&BucketRec) -> S3Result<T>,
) -> S3Result<T> {
    let state = inner.state.lock();
    f(&bucket_of(&state, bucket)?.rec)
}

fn tags_out(tags: &[(String, String)]) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn tags_in(tagging: Tagging) -> S3Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tagging.tag_set {
        let k = t.key.unwrap_or_default();
        if out.iter().any(|(o, _)| *o == k) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
        out.push((k, t.value.unwrap_or_default()));
    }
    Ok(out)
}

/// One entry of a listing: an object or a common prefix.
enum Entry<'a> {
    Object(&'a str, &'a Version),
    Prefix(String),
}

/// Current objects of `b` after `marker`, grouped by `delimiter`, at most `max` entries; and
/// whether more follow.
fn list_entries<'a>(
    b: &'a BucketState,
    prefix: &str,
    delimiter: Option<&str>,
    marker: &str,
    max: usize,
) -> (Vec<Entry<'a>>, bool) {
    let mut out = Vec::new();
    let start = if marker.as_bytes() > prefix.as_bytes() {
        marker.to_string()
    } else {
        prefix.to_string()
    };
    let mut last_prefix: Option<String> = None;
    for (key, versions) in b.objects.range(start..) {
        if !key.starts_with(prefix) {
            break;
        }
        if key.as_str() <= marker {
            continue;
        }
        let Some(v) = versions.last().filter(|v| !v.delete_marker) else {
            continue;
        };
        if let Some(d) = delimiter.filter(|d| !d.is_empty())
            && let Some(i) = key[prefix.len()..].find(d)
        {
            let cp = key[..prefix.len() + i + d.len()].to_string();
            if marker.starts_with(&cp) || last_prefix.as_deref() == Some(cp.as_str()) {
                continue;
            }
            if out.len() == max {
                return (out, true);
            }
            last_prefix = Some(cp.clone());
            out.push(Entry::Prefix(cp));
            continue;
        }
        if out.len() == max {
            return (out, true);
        }
        out.push(Entry::Object(key, v));
    }
    (out, false)
}

fn object_of(key: &str, v: &Version, owner_account: Option<&str>, url: bool) -> Object {
    Object {
        checksum_algorithm: v
            .checksum
            .as_ref()
            .map(|(a, _)| vec![ChecksumAlgorithm::from(a.clone())]),
        checksum_type: v.checksum.as_ref().map(|_| {
            ChecksumType::from(
                v.checksum_type
                    .clone()
                    .unwrap_or_else(|| "FULL_OBJECT".into()),
            )
        }),
        e_tag: Some(etag(&v.etag)),
        key: Some(encode_if(key, url)),
        last_modified: Some(ts(v.last_modified_ms)),
        owner: owner_account.map(owner),
        restore_status: None,
        size: Some(v.size as i64),
        storage_class: Some(ObjectStorageClass::from(
            v.storage_class.clone().unwrap_or_else(|| "STANDARD".into()),
        )),
    }
}

fn encode_if(s: &str, url: bool) -> String {
    if url {
        percent_encoding::utf8_percent_encode(s, KEY_SET).to_string()
    } else {
        s.to_string()
    }
}

const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "maxKeys should be non-negative")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn is_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == "url")
}

fn decode_token(t: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn encode_token(t: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(t)
}

fn location_of(ctx: &RequestContext, bucket: &str, key: &str) -> String {
    format!("{}/{}/{}", ctx.base_url, bucket, encode_if(key, true))
}

/// The pieces of a copy source: bucket, key, version.
fn copy_source(src: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "Copying from access points is not implemented."
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_copy_conditions(
    v: &Version,
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
) -> S3Result<()> {
    // Copy conditions fail with 412 for all four (no 304).
    check_read_conditions(
        v,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    )
    .map_err(|e| {
        if *e.code() == S3ErrorCode::NotModified {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            e
        }
    })
}

fn parse_copy_range(r: &str, size: u64) -> S3Result<(u64, u64)> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = r.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok((first, last - first + 1))
}

fn multipart_etag(md5s: &[Vec<u8>]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for m in md5s {
        h.update(m);
    }
    format!("{}-{}", hex::encode(h.finalize()), md5s.len())
}

const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let region = input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|l| l.as_str().to_string())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        if region != ctx.region && !(region == "us-east-1" && ctx.region == "us-east-1") {
            if input.create_bucket_configuration.is_none() && ctx.region != "us-east-1" {
                return Err(s3_error!(
                    IllegalLocationConstraintException,
                    "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to."
                ));
            }
            if region != ctx.region {
                return Err(s3_error!(
                    IllegalLocationConstraintException,
                    "The {} location constraint is incompatible for the region specific endpoint this request was sent to.",
                    region
                ));
            }
        }
        let fut = {
            let mut state = self.0.state.lock();
            if let Some(b) = state.buckets.get(&input.bucket) {
                if b.rec.account != ctx.account {
                    return Err(s3_error!(
                        BucketAlreadyExists,
                        "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
                    ));
                }
                // us-east-1 answers 200 to its owner, for legacy compatibility.
                if region == "us-east-1" {
                    let mut out = S3Response::new(CreateBucketOutput {
                        location: Some(format!("/{}", input.bucket)),
                    });
                    out.status = Some(http::StatusCode::OK);
                    return Ok(out);
                }
                return Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it."
                ));
            }
            let rec = BucketRec {
                name: input.bucket.clone(),
                account: ctx.account.clone(),
                region,
                created_ms: self.0.clock.now_ms(),
                ..BucketRec::default()
            };
            state.buckets.insert(
                input.bucket.clone(),
                BucketState {
                    rec,
                    objects: BTreeMap::new(),
                },
            );
            let mut batch = Batch::new();
            state.put_bucket(&mut batch, &input.bucket);
            self.0.store.commit(batch)
        };
        self.0.commit(fut).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let region = read_bucket(&self.0, &req.input.bucket, |b| Ok(b.region.clone()))?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(region),
            ..Default::default()
        }))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let state = self.0.state.lock();
        let max = input
            .max_buckets
            .map(|m| m.max(1) as usize)
            .unwrap_or(10_000);
        let after = match &input.continuation_token {
            Some(t) => decode_token(t)?,
            None => String::new(),
        };
        let mut buckets = Vec::new();
        let mut next = None;
        for b in state.buckets.values() {
            if b.rec.account != ctx.account
                || b.rec.name <= after
                || !b
                    .rec
                    .name
                    .starts_with(input.prefix.as_deref().unwrap_or(""))
                || input
                    .bucket_region
                    .as_ref()
                    .is_some_and(|r| *r != b.rec.region)
            {
                continue;
            }
            if buckets.len() == max {
                next = buckets
                    .last()
                    .and_then(|b: &Bucket| b.name.as_deref())
                    .map(encode_token);
                break;
            }
            buckets.push(Bucket {
                bucket_region: Some(b.rec.region.clone()),
                creation_date: Some(ts(b.rec.created_ms)),
                name: Some(b.rec.name.clone()),
            });
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            continuation_token: next,
            owner: Some(owner(&ctx.account)),
            prefix: input.prefix,
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        let fut = {
            let mut state = self.0.state.lock();
            let b = bucket_of(&state, &bucket)?;
            if b.objects.values().any(|v| !v.is_empty()) {
                return Err(s3_error!(
                    BucketNotEmpty,
                    "The bucket you tried to delete is not empty"
                ));
            }
            if state.uploads.values().any(|u| u.bucket == bucket) {
                return Err(s3_error!(
                    BucketNotEmpty,
                    "The bucket you tried to delete is not empty"
                ));
            }
            state.buckets.remove(&bucket);
            let mut batch = Batch::new();
            State::delete_bucket(&mut batch, &bucket);
            self.0.store.commit(batch)
        };
        self.0.commit(fut).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let region = read_bucket(&self.0, &req.input.bucket, |b| Ok(b.region.clone()))?;
        // us-east-1 buckets answer an empty LocationConstraint.
        let location = (region != "us-east-1").then(|| BucketLocationConstraint::from(region));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let ctx = ctx_of(&req);
        let trailers = req.extensions.get::<Trailers>().cloned();
        let method = req.method;
        let headers = req.headers;
        let input = req.input;
        read_bucket(&self.0, &input.bucket, |_| Ok(()))?;
        let given = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            ..Default::default()
        };
        let stored = store_body(
            &self.0,
            &headers,
            trailers,
            input.body,
            input.checksum_algorithm.as_ref(),
            &given,
            input.content_md5.as_deref(),
            input.content_length,
        )
        .await?;
        let w = stored.written;
        let mut version = headers_version(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.website_redirect_location,
            input.metadata,
            input.storage_class.as_ref(),
            input.tagging.as_deref(),
        );
        version.size = w.size;
        version.etag = hex::encode(w.md5);
        version.last_modified_ms = self.0.clock.now_ms();
        version.blob = Some(w.name);
        version.checksum = w.checksum.clone();
        version.checksum_type = w.checksum.as_ref().map(|_| "FULL_OBJECT".into());
        // s3s turns a browser's form POST into this call, keeping the request's method.
        let post = method == http::Method::POST;
        let written = commit_object(
            &self.0,
            &ctx,
            &input.bucket,
            &input.key,
            version,
            if post {
                "s3:ObjectCreated:Post"
            } else {
                "s3:ObjectCreated:Put"
            },
            if post { "PostObject" } else { "PutObject" },
            Some((&input.if_match, &input.if_none_match)),
        )
        .await?;
        let c = checksum_fields(&written.version.checksum);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&written.version.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: written
                .version
                .checksum_type
                .clone()
                .map(ChecksumType::from),
            version_id: written.version_id,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        // A concurrent overwrite may remove the file between the lookup and the open: look
        // again then (the open file itself stays readable once opened).
        let mut attempt = 0;
        let (v, version_id, len, content_range, body) = loop {
            attempt += 1;
            let (v, version_id) = {
                let state = self.0.state.lock();
                let b = bucket_of(&state, &input.bucket)?;
                let v = find_version(b, &input.key, input.version_id.as_deref())?;
                let id = shown_version(b, &v);
                (v, id)
            };
            check_read_conditions(
                &v,
                &input.if_match,
                &input.if_none_match,
                &input.if_modified_since,
                &input.if_unmodified_since,
            )?;
            let (start, len, content_range) = read_range(&input.range, v.size)?;
            let body = match &v.blob {
                Some(name) if len > 0 => match self.0.blobs.read(name, start, len).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 5 => continue,
                    Err(e) => return Err(internal(e)),
                },
                _ => Box::pin(futures_util::stream::empty()) as BodyStream,
            };
            break (v, version_id, len, content_range, body);
        };
        let whole = content_range.is_none();
        let c = if whole
            && input
                .checksum_mode
                .as_ref()
                .is_some_and(|m| m.as_str() == "ENABLED")
        {
            checksum_fields(&v.checksum)
        } else {
            Checksum::default()
        };
        let mut out = S3Response::new(GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            body: Some(StreamingBlob::new(SizedStream {
                inner: body,
                left: len,
            })),
            cache_control: input.response_cache_control.or(v.cache_control.clone()),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: if whole {
                v.checksum_type.clone().map(ChecksumType::from)
            } else {
                None
            },
            content_disposition: input
                .response_content_disposition
                .or(v.content_disposition.clone()),
            content_encoding: input
                .response_content_encoding
                .or(v.content_encoding.clone()),
            content_language: input
                .response_content_language
                .or(v.content_language.clone()),
            content_length: Some(len as i64),
            content_range,
            content_type: Some(
                input
                    .response_content_type
                    .or(v.content_type.clone())
                    .unwrap_or_else(|| "binary/octet-stream".into()),
            ),
            e_tag: Some(etag(&v.etag)),
            expires: input.response_expires.or_else(|| expires_ts(&v)),
            last_modified: Some(ts(v.last_modified_ms)),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            parts_count: v.parts_count,
            storage_class: v.storage_class.clone().map(StorageClass::from),
            tag_count: (!v.tags.is_empty()).then_some(v.tags.len() as i32),
            version_id,
            website_redirect_location: v.website_redirect_location.clone(),
            ..Default::default()
        });
        if input.range.is_some() {
            out.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(out)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (v, version_id) = {
            let state = self.0.state.lock();
            let b = bucket_of(&state, &input.bucket)?;
            let v = find_version(b, &input.key, input.version_id.as_deref())?;
            let id = shown_version(b, &v);
            (v, id)
        };
        check_read_conditions(
            &v,
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
        )?;
        let (len, content_range) = match &input.range {
            None => (v.size, None),
            Some(r) => {
                let range = r.check(v.size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                (
                    range.end - range.start,
                    Some(format!(
                        "bytes {}-{}/{}",
                        range.start,
                        range.end - 1,
                        v.size
                    )),
                )
            }
        };
        let c = if input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == "ENABLED")
        {
            checksum_fields(&v.checksum)
        } else {
            Checksum::default()
        };
        let mut out = S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            cache_control: v.cache_control.clone(),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: v.checksum_type.clone().map(ChecksumType::from),
            content_disposition: v.content_disposition.clone(),
            content_encoding: v.content_encoding.clone(),
            content_language: v.content_language.clone(),
            content_length: Some(len as i64),
            content_range,
            content_type: Some(
                v.content_type
                    .clone()
                    .unwrap_or_else(|| "binary/octet-stream".into()),
            ),
            e_tag: Some(etag(&v.etag)),
            expires: expires_ts(&v),
            last_modified: Some(ts(v.last_modified_ms)),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            parts_count: v.parts_count,
            storage_class: v.storage_class.clone().map(StorageClass::from),
            version_id,
            website_redirect_location: v.website_redirect_location.clone(),
            ..Default::default()
        });
        if input.range.is_some() {
            out.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(out)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let (fut, out, removed) = {
            let mut state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let mut batch = Batch::new();
            let r = delete_one(
                &self.0,
                &mut state,
                &mut batch,
                &ctx,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                false,
            )?;
            (self.0.store.commit(batch), r.0, r.1)
        };
        self.0.commit(fut).await?;
        self.0.blobs.remove(removed).await;
        let mut resp = S3Response::new(out);
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (fut, deleted, errors, removed) = {
            let mut state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let mut batch = Batch::new();
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            let mut removed = Vec::new();
            for o in input.delete.objects {
                match delete_one(
                    &self.0,
                    &mut state,
                    &mut batch,
                    &ctx,
                    &input.bucket,
                    &o.key,
                    o.version_id.as_deref(),
                    false,
                ) {
                    Ok((out, blobs)) => {
                        removed.extend(blobs);
                        if !quiet {
                            deleted.push(DeletedObject {
                                delete_marker: out.delete_marker,
                                delete_marker_version_id: out
                                    .delete_marker
                                    .filter(|d| *d)
                                    .and(out.version_id.clone()),
                                key: Some(o.key),
                                version_id: o.version_id,
                            });
                        }
                    }
                    Err(e) => errors.push(Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(o.key),
                        message: e.message().map(String::from),
                        version_id: o.version_id,
                    }),
                }
            }
            (self.0.store.commit(batch), deleted, errors, removed)
        };
        self.0.commit(fut).await?;
        self.0.blobs.remove(removed).await;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        let (src, src_version_shown) = {
            let state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let b = bucket_of(&state, &src_bucket)?;
            let v = find_version(b, &src_key, src_version.as_deref())?;
            let shown = shown_version(b, &v);
            (v, shown)
        };
        check_copy_conditions(
            &src,
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        if src_bucket == input.bucket
            && src_key == input.key
            && src_version.is_none()
            && !replace
            && input.storage_class.is_none()
            && input.website_redirect_location.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase())
            .or_else(|| src.checksum.as_ref().map(|(a, _)| a.clone()));
        let w = match &src.blob {
            Some(name) => self
                .0
                .blobs
                .concat(&[(name.clone(), 0, src.size)], algorithm.as_deref())
                .await
                .map_err(internal)?,
            None => self
                .0
                .blobs
                .write(
                    Box::pin(futures_util::stream::empty()),
                    algorithm.as_deref(),
                )
                .await
                .map_err(internal)?,
        };
        let mut version = if replace {
            headers_version(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
                input.website_redirect_location,
                input.metadata,
                input.storage_class.as_ref(),
                None,
            )
        } else {
            let mut v = src.clone();
            if let Some(s) = &input.storage_class {
                v.storage_class = Some(s.as_str().to_string()).filter(|s| s != "STANDARD");
            }
            v
        };
        version.tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            Some("REPLACE") => input
                .tagging
                .as_deref()
                .map(parse_tagging)
                .unwrap_or_default(),
            _ => src.tags.clone(),
        };
        version.delete_marker = false;
        version.size = w.size;
        // A copy keeps the source's ETag, multipart ETags included.
        version.etag = src.etag.clone();
        version.parts_count = src.parts_count;
        version.last_modified_ms = self.0.clock.now_ms();
        version.blob = Some(w.name);
        version.checksum = w.checksum.clone();
        version.checksum_type = w.checksum.as_ref().map(|_| "FULL_OBJECT".into());
        let written = commit_object(
            &self.0,
            &ctx,
            &input.bucket,
            &input.key,
            version,
            "s3:ObjectCreated:Copy",
            "CopyObject",
            None,
        )
        .await?;
        let c = checksum_fields(&written.version.checksum);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
                checksum_type: written
                    .version
                    .checksum_type
                    .clone()
                    .map(ChecksumType::from),
                e_tag: Some(etag(&written.version.etag)),
                last_modified: Some(ts(written.version.last_modified_ms)),
            }),
            copy_source_version_id: src_version_shown,
            version_id: written.version_id,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = is_url(&input.encoding_type);
        let state = self.0.state.lock();
        let b = bucket_of(&state, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.clone().unwrap_or_default();
        let (entries, truncated) =
            list_entries(b, &prefix, input.delimiter.as_deref(), &marker, max);
        let owner_account = b.rec.account.clone();
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        let mut last = None;
        for e in entries {
            match e {
                Entry::Object(k, v) => {
                    last = Some(k.to_string());
                    contents.push(object_of(k, v, Some(&owner_account), url));
                }
                Entry::Prefix(p) => {
                    last = Some(p.clone());
                    prefixes.push(CommonPrefix {
                        prefix: Some(encode_if(&p, url)),
                    });
                }
            }
        }
        // NextMarker is returned only with a delimiter; without one the last key is the marker.
        let next_marker = (truncated && input.delimiter.is_some())
            .then(|| last.map(|l| encode_if(&l, url)))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_if(&prefix, url)),
            marker: Some(encode_if(&marker, url)),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            delimiter: input.delimiter.map(|d| encode_if(&d, url)),
            next_marker,
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = is_url(&input.encoding_type);
        let state = self.0.state.lock();
        let b = bucket_of(&state, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = match &input.continuation_token {
            Some(t) => decode_token(t)?,
            None => input.start_after.clone().unwrap_or_default(),
        };
        let (entries, truncated) =
            list_entries(b, &prefix, input.delimiter.as_deref(), &marker, max);
        let owner_account = b.rec.account.clone();
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        let mut last = None;
        for e in entries {
            match e {
                Entry::Object(k, v) => {
                    last = Some(k.to_string());
                    contents.push(object_of(
                        k,
                        v,
                        fetch_owner.then_some(owner_account.as_str()),
                        url,
                    ));
                }
                Entry::Prefix(p) => {
                    last = Some(p.clone());
                    prefixes.push(CommonPrefix {
                        prefix: Some(encode_if(&p, url)),
                    });
                }
            }
        }
        let key_count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_if(&prefix, url)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(truncated),
            next_continuation_token: if truncated {
                last.map(|l| encode_token(&l))
            } else {
                None
            },
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            delimiter: input.delimiter.map(|d| encode_if(&d, url)),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(|s| encode_if(&s, url)),
            request_charged: None,
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = is_url(&input.encoding_type);
        let state = self.0.state.lock();
        let b = bucket_of(&state, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let version_marker = input.version_id_marker.clone();
        let owner_account = b.rec.account.clone();
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let mut prefixes: Vec<CommonPrefix> = Vec::new();
        let mut count = 0usize;
        let mut truncated = false;
        let mut next: Option<(String, Option<String>)> = None;
        let mut last_prefix: Option<String> = None;
        'keys: for (key, vs) in b.objects.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            if !key_marker.is_empty() && key.as_str() < key_marker.as_str() {
                continue;
            }
            if key.as_str() == key_marker && version_marker.is_none() {
                continue;
            }
            if let Some(d) = input.delimiter.as_deref().filter(|d| !d.is_empty())
                && let Some(i) = key[prefix.len()..].find(d)
            {
                let cp = key[..prefix.len() + i + d.len()].to_string();
                if key_marker.starts_with(&cp) || last_prefix.as_deref() == Some(cp.as_str()) {
                    continue;
                }
                if count == max {
                    truncated = true;
                    break;
                }
                count += 1;
                last_prefix = Some(cp.clone());
                next = Some((cp.clone(), None));
                prefixes.push(CommonPrefix {
                    prefix: Some(encode_if(&cp, url)),
                });
                continue;
            }
            // Newest first.
            let mut skipping = key.as_str() == key_marker && version_marker.is_some();
            for (i, v) in vs.iter().enumerate().rev() {
                if skipping {
                    if Some(&v.version_id) == version_marker.as_ref() {
                        skipping = false;
                    }
                    continue;
                }
                if count == max {
                    truncated = true;
                    break 'keys;
                }
                count += 1;
                let latest = i + 1 == vs.len();
                next = Some((key.clone(), Some(v.version_id.clone())));
                if v.delete_marker {
                    markers.push(DeleteMarkerEntry {
                        is_latest: Some(latest),
                        key: Some(encode_if(key, url)),
                        last_modified: Some(ts(v.last_modified_ms)),
                        owner: Some(owner(&owner_account)),
                        version_id: Some(v.version_id.clone()),
                    });
                } else {
                    versions.push(ObjectVersion {
                        checksum_algorithm: v
                            .checksum
                            .as_ref()
                            .map(|(a, _)| vec![ChecksumAlgorithm::from(a.clone())]),
                        checksum_type: v.checksum_type.clone().map(ChecksumType::from),
                        e_tag: Some(etag(&v.etag)),
                        is_latest: Some(latest),
                        key: Some(encode_if(key, url)),
                        last_modified: Some(ts(v.last_modified_ms)),
                        owner: Some(owner(&owner_account)),
                        restore_status: None,
                        size: Some(v.size as i64),
                        storage_class: Some(ObjectVersionStorageClass::from(
                            v.storage_class.clone().unwrap_or_else(|| "STANDARD".into()),
                        )),
                        version_id: Some(v.version_id.clone()),
                    });
                }
            }
        }
        let (next_key, next_version) = match (truncated, next) {
            (true, Some((k, v))) => (Some(encode_if(&k, url)), v),
            _ => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            delete_markers: (!markers.is_empty()).then_some(markers),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: Some(key_marker),
            max_keys: Some(max as i32),
            name: Some(input.bucket),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            prefix: Some(prefix),
            request_charged: None,
            version_id_marker: input.version_id_marker,
            versions: (!versions.is_empty()).then_some(versions),
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let template = headers_version(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.website_redirect_location,
            input.metadata,
            input.storage_class.as_ref(),
            input.tagging.as_deref(),
        );
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase());
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let fut = {
            let mut state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            state.uploads.insert(
                id.clone(),
                Upload {
                    id: id.clone(),
                    bucket: input.bucket.clone(),
                    key: input.key.clone(),
                    initiated_ms: self.0.clock.now_ms(),
                    template,
                    checksum_algorithm: algorithm.clone(),
                    parts: BTreeMap::new(),
                },
            );
            let mut batch = Batch::new();
            state.put_upload(&mut batch, &id);
            self.0.store.commit(batch)
        };
        self.0.commit(fut).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
            checksum_type: input
                .checksum_algorithm
                .as_ref()
                .map(|_| ChecksumType::from("COMPOSITE".to_string())),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.extensions.get::<Trailers>().cloned();
        let headers = req.headers;
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let algorithm = {
            let state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let u = state
                .uploads
                .get(&input.upload_id)
                .filter(|u| u.bucket == input.bucket && u.key == input.key)
                .ok_or_else(no_such_upload)?;
            u.checksum_algorithm.clone()
        };
        let given = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            ..Default::default()
        };
        let algo = input
            .checksum_algorithm
            .clone()
            .or(algorithm.map(ChecksumAlgorithm::from));
        let stored = store_body(
            &self.0,
            &headers,
            trailers,
            input.body,
            algo.as_ref(),
            &given,
            input.content_md5.as_deref(),
            input.content_length,
        )
        .await?;
        let w = stored.written;
        let part = StoredPart {
            etag: hex::encode(w.md5),
            size: w.size,
            blob: w.name.clone(),
            last_modified_ms: self.0.clock.now_ms(),
            checksum: w.checksum.clone(),
        };
        let locked = {
            let mut state = self.0.state.lock();
            match state.uploads.get_mut(&input.upload_id) {
                Some(u) => {
                    let replaced = u
                        .parts
                        .insert(input.part_number, part.clone())
                        .map(|p| p.blob);
                    let mut batch = Batch::new();
                    state.put_upload(&mut batch, &input.upload_id);
                    Some((self.0.store.commit(batch), replaced))
                }
                None => None,
            }
        };
        let Some((fut, replaced)) = locked else {
            self.0.blobs.remove(vec![w.name]).await;
            return Err(no_such_upload());
        };
        self.0.commit(fut).await?;
        self.0.blobs.remove(replaced.into_iter().collect()).await;
        let c = checksum_fields(&part.checksum);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        let (src, shown, algorithm) = {
            let state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let u = state
                .uploads
                .get(&input.upload_id)
                .filter(|u| u.bucket == input.bucket && u.key == input.key)
                .ok_or_else(no_such_upload)?;
            let algorithm = u.checksum_algorithm.clone();
            let b = bucket_of(&state, &src_bucket)?;
            let v = find_version(b, &src_key, src_version.as_deref())?;
            let shown = shown_version(b, &v);
            (v, shown, algorithm)
        };
        check_copy_conditions(
            &src,
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )?;
        let (start, len) = match &input.copy_source_range {
            Some(r) => parse_copy_range(r, src.size)?,
            None => (0, src.size),
        };
        let w = match &src.blob {
            Some(name) => self
                .0
                .blobs
                .concat(&[(name.clone(), start, len)], algorithm.as_deref())
                .await
                .map_err(internal)?,
            None => return Err(no_such_key()),
        };
        let part = StoredPart {
            etag: hex::encode(w.md5),
            size: w.size,
            blob: w.name.clone(),
            last_modified_ms: self.0.clock.now_ms(),
            checksum: w.checksum.clone(),
        };
        let locked = {
            let mut state = self.0.state.lock();
            match state.uploads.get_mut(&input.upload_id) {
                Some(u) => {
                    let replaced = u
                        .parts
                        .insert(input.part_number, part.clone())
                        .map(|p| p.blob);
                    let mut batch = Batch::new();
                    state.put_upload(&mut batch, &input.upload_id);
                    Some((self.0.store.commit(batch), replaced))
                }
                None => None,
            }
        };
        let Some((fut, replaced)) = locked else {
            self.0.blobs.remove(vec![w.name]).await;
            return Err(no_such_upload());
        };
        self.0.commit(fut).await?;
        self.0.blobs.remove(replaced.into_iter().collect()).await;
        let c = checksum_fields(&part.checksum);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(ts(part.last_modified_ms)),
            }),
            copy_source_version_id: shown,
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let upload = {
            let state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            state
                .uploads
                .get(&input.upload_id)
                .filter(|u| u.bucket == input.bucket && u.key == input.key)
                .cloned()
                .ok_or_else(no_such_upload)?
        };
        let requested: Vec<CompletedPart> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut chosen = Vec::new();
        let mut previous = 0;
        for (i, p) in requested.iter().enumerate() {
            let n = p.part_number.unwrap_or(0);
            if n <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            previous = n;
            let stored = upload.parts.get(&n).ok_or_else(invalid_part)?;
            if let Some(e) = &p.e_tag
                && e.value().trim_matches('"') != stored.etag
            {
                return Err(invalid_part());
            }
            if i + 1 < requested.len() && stored.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            chosen.push(stored.clone());
        }
        let ranges: Vec<(String, u64, u64)> =
            chosen.iter().map(|p| (p.blob.clone(), 0, p.size)).collect();
        let w = self.0.blobs.concat(&ranges, None).await.map_err(internal)?;
        let md5s: Vec<Vec<u8>> = chosen
            .iter()
            .map(|p| hex::decode(&p.etag).unwrap_or_default())
            .collect();
        let mut version = upload.template.clone();
        version.size = w.size;
        version.etag = multipart_etag(&md5s);
        version.parts_count = Some(chosen.len() as i32);
        version.last_modified_ms = self.0.clock.now_ms();
        version.blob = Some(w.name.clone());
        if let Some(algo) = &upload.checksum_algorithm {
            // A composite checksum: the checksum of the parts' checksums, then `-N`.
            if let Some(mut h) = crate::blobs::Hasher::new(algo) {
                use base64::Engine as _;
                for p in &chosen {
                    if let Some((_, v)) = &p.checksum
                        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(v)
                    {
                        h.update(&raw);
                    }
                }
                version.checksum = Some((algo.clone(), format!("{}-{}", h.finish(), chosen.len())));
                version.checksum_type = Some("COMPOSITE".into());
            }
        }
        let fut_and_parts = {
            let mut state = self.0.state.lock();
            match state.uploads.remove(&input.upload_id) {
                Some(u) => {
                    let mut batch = Batch::new();
                    state.put_upload(&mut batch, &input.upload_id);
                    Some((self.0.store.commit(batch), u))
                }
                None => None,
            }
        };
        // The upload record goes first; a crash after it and before the object leaves the
        // parts' files unreferenced, collected at the next start.
        let Some((fut, u)) = fut_and_parts else {
            self.0.blobs.remove(vec![w.name]).await;
            return Err(no_such_upload());
        };
        let written = match commit_object(
            &self.0,
            &ctx,
            &input.bucket,
            &input.key,
            version,
            "s3:ObjectCreated:CompleteMultipartUpload",
            "CompleteMultipartUpload",
            Some((&input.if_match, &input.if_none_match)),
        )
        .await
        {
            Ok(w) => {
                fut.await.map_err(internal)?;
                w
            }
            Err(e) => {
                // Put the upload back: the client may retry.
                let fut = {
                    let mut state = self.0.state.lock();
                    state.uploads.insert(u.id.clone(), u);
                    let mut batch = Batch::new();
                    state.put_upload(&mut batch, &input.upload_id);
                    self.0.store.commit(batch)
                };
                let _ = fut.await;
                return Err(e);
            }
        };
        self.0
            .blobs
            .remove(u.parts.values().map(|p| p.blob.clone()).collect())
            .await;
        let c = checksum_fields(&written.version.checksum);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&written.version.etag)),
            location: Some(location_of(&ctx, &input.bucket, &input.key)),
            version_id: written.version_id,
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: written
                .version
                .checksum_type
                .clone()
                .map(ChecksumType::from),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (fut, u) = {
            let mut state = self.0.state.lock();
            bucket_of(&state, &input.bucket)?;
            let u = match state.uploads.get(&input.upload_id) {
                Some(u) if u.bucket == input.bucket && u.key == input.key => {
                    state.uploads.remove(&input.upload_id)
                }
                _ => None,
            }
            .ok_or_else(no_such_upload)?;
            let mut batch = Batch::new();
            state.put_upload(&mut batch, &input.upload_id);
            (self.0.store.commit(batch), u)
        };
        self.0.commit(fut).await?;
        self.0
            .blobs
            .remove(u.parts.values().map(|p| p.blob.clone()).collect())
            .await;
        let mut resp = S3Response::new(AbortMultipartUploadOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let state = self.0.state.lock();
        bucket_of(&state, &input.bucket)?;
        let u = state
            .uploads
            .get(&input.upload_id)
            .filter(|u| u.bucket == input.bucket && u.key == input.key)
            .ok_or_else(no_such_upload)?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let mut parts = Vec::new();
        let mut truncated = false;
        for (n, p) in u.parts.range(marker + 1..) {
            if parts.len() == max {
                truncated = true;
                break;
            }
            let c = checksum_fields(&p.checksum);
            parts.push(Part {
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
                e_tag: Some(etag(&p.etag)),
                last_modified: Some(ts(p.last_modified_ms)),
                part_number: Some(*n),
                size: Some(p.size as i64),
            });
        }
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            is_truncated: Some(truncated),
            parts: (!parts.is_empty()).then_some(parts),
            owner: Some(owner(&ctx.account)),
            initiator: Some(Initiator {
                display_name: Some(ctx.account.clone()),
                id: Some(canonical_id(&ctx.account)),
            }),
            storage_class: Some(StorageClass::from(
                u.template
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| "STANDARD".into()),
            )),
            checksum_algorithm: u.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let state = self.0.state.lock();
        bucket_of(&state, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let mut all: Vec<&Upload> = state
            .uploads
            .values()
            .filter(|u| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .collect();
        all.sort_by(|a, b| (&a.key, a.initiated_ms, &a.id).cmp(&(&b.key, b.initiated_ms, &b.id)));
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let mut uploads = Vec::new();
        let mut truncated = false;
        let mut prefixes: Vec<CommonPrefix> = Vec::new();
        for u in all {
            if !key_marker.is_empty() {
                match &input.upload_id_marker {
                    Some(m) if u.key == key_marker && u.id.as_str() <= m.as_str() => continue,
                    None if u.key.as_str() <= key_marker.as_str() => continue,
                    _ if u.key.as_str() < key_marker.as_str() => continue,
                    _ => {}
                }
            }
            if let Some(d) = input.delimiter.as_deref().filter(|d| !d.is_empty())
                && let Some(i) = u.key[prefix.len()..].find(d)
            {
                let cp = u.key[..prefix.len() + i + d.len()].to_string();
                if !prefixes
                    .iter()
                    .any(|p| p.prefix.as_deref() == Some(cp.as_str()))
                {
                    prefixes.push(CommonPrefix { prefix: Some(cp) });
                }
                continue;
            }
            if uploads.len() == max {
                truncated = true;
                break;
            }
            uploads.push(MultipartUpload {
                checksum_algorithm: u.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
                checksum_type: None,
                initiated: Some(ts(u.initiated_ms)),
                initiator: Some(Initiator {
                    display_name: Some(ctx.account.clone()),
                    id: Some(canonical_id(&ctx.account)),
                }),
                key: Some(u.key.clone()),
                owner: Some(owner(&ctx.account)),
                storage_class: Some(StorageClass::from(
                    u.template
                        .storage_class
                        .clone()
                        .unwrap_or_else(|| "STANDARD".into()),
                )),
                upload_id: Some(u.id.clone()),
            });
        }
        let last = uploads.last().map(|u| (u.key.clone(), u.upload_id.clone()));
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: input.key_marker,
            max_uploads: Some(max as i32),
            next_key_marker: if truncated {
                last.clone().and_then(|l| l.0)
            } else {
                None
            },
            next_upload_id_marker: if truncated {
                last.and_then(|l| l.1)
            } else {
                None
            },
            prefix: input.prefix,
            request_charged: None,
            upload_id_marker: input.upload_id_marker,
            uploads: (!uploads.is_empty()).then_some(uploads),
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let status = input
            .versioning_configuration
            .status
            .map(|s| s.as_str().to_string());
        update_bucket(&self.0, &input.bucket, |b| {
            match status.as_deref() {
                Some("Enabled") | Some("Suspended") => b.versioning = status.clone(),
                None => {}
                Some(_) => {
                    return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
                }
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let status = read_bucket(&self.0, &req.input.bucket, |b| Ok(b.versioning.clone()))?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            mfa_delete: None,
            status: status.map(BucketVersioningStatus::from),
        }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        let tags = tags_in(input.tagging)?;
        update_bucket(&self.0, &input.bucket, |b| {
            b.tags = Some(tags);
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(PutBucketTaggingOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let tags = read_bucket(&self.0, &req.input.bucket, |b| {
            b.tags
                .clone()
                .ok_or_else(|| s3_error!(NoSuchTagSet, "The TagSet does not exist"))
        })?;
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tags_out(&tags),
        }))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        update_bucket(&self.0, &req.input.bucket, |b| {
            b.tags = None;
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(DeleteBucketTaggingOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        update_bucket(&self.0, &input.bucket, |b| {
            b.cors = Some(input.cors_configuration);
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let cors = read_bucket(&self.0, &req.input.bucket, |b| {
            b.cors.clone().ok_or_else(|| {
                s3_error!(
                    NoSuchCORSConfiguration,
                    "The CORS configuration does not exist"
                )
            })
        })?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(cors.cors_rules),
        }))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        update_bucket(&self.0, &req.input.bucket, |b| {
            b.cors = None;
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(DeleteBucketCorsOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let config = input.lifecycle_configuration.ok_or_else(|| {
            s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema")
        })?;
        update_bucket(&self.0, &input.bucket, |b| {
            b.lifecycle = Some(config);
            Ok(())
        })
        .await?;
        self.0.wake.notify_one();
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let config = read_bucket(&self.0, &req.input.bucket, |b| {
            b.lifecycle.clone().ok_or_else(|| {
                s3_error!(
                    NoSuchLifecycleConfiguration,
                    "The lifecycle configuration does not exist"
                )
            })
        })?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(config.rules),
            ..Default::default()
        }))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        update_bucket(&self.0, &req.input.bucket, |b| {
            b.lifecycle = None;
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(DeleteBucketLifecycleOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        if serde_json::from_str::<serde_json::Value>(&input.policy).is_err() {
            return Err(s3_error!(
                MalformedPolicy,
                "Policies must be valid JSON and the first byte must be '{{'"
            ));
        }
        update_bucket(&self.0, &input.bucket, |b| {
            b.policy = Some(input.policy);
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(PutBucketPolicyOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let policy = read_bucket(&self.0, &req.input.bucket, |b| {
            b.policy
                .clone()
                .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))
        })?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        update_bucket(&self.0, &req.input.bucket, |b| {
            b.policy = None;
            Ok(())
        })
        .await?;
        let mut resp = S3Response::new(DeleteBucketPolicyOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        update_bucket(&self.0, &input.bucket, |b| {
            b.encryption = Some(input.server_side_encryption_configuration);
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutBucketEncryptionOutput {}))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let config = read_bucket(&self.0, &req.input.bucket, |b| Ok(b.encryption.clone()))?;
        // Since 2023 every bucket encrypts with SSE-S3 by default.
        let config = config.unwrap_or_else(|| ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    kms_master_key_id: None,
                    sse_algorithm: ServerSideEncryption::from("AES256".to_string()),
                }),
                bucket_key_enabled: Some(false),
            }],
        });
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(config),
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tags_in(input.tagging)?;
        let (fut, version_id) = {
            let mut state = self.0.state.lock();
            let b = state
                .buckets
                .get_mut(&input.bucket)
                .ok_or_else(|| no_such_bucket(&input.bucket))?;
            let target = find_version(b, &input.key, input.version_id.as_deref())?;
            let shown = shown_version(b, &target);
            if let Some(v) = b
                .objects
                .get_mut(&input.key)
                .and_then(|vs| vs.iter_mut().find(|v| v.version_id == target.version_id))
            {
                v.tags = tags;
            }
            let mut batch = Batch::new();
            state.put_object(&mut batch, &input.bucket, &input.key);
            (self.0.store.commit(batch), shown)
        };
        self.0.commit(fut).await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let state = self.0.state.lock();
        let b = bucket_of(&state, &input.bucket)?;
        let v = find_version(b, &input.key, input.version_id.as_deref())?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tags_out(&v.tags),
            version_id: shown_version(b, &v),
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let (fut, version_id) = {
            let mut state = self.0.state.lock();
            let b = state
                .buckets
                .get_mut(&input.bucket)
                .ok_or_else(|| no_such_bucket(&input.bucket))?;
            let target = find_version(b, &input.key, input.version_id.as_deref())?;
            let shown = shown_version(b, &target);
            if let Some(v) = b
                .objects
                .get_mut(&input.key)
                .and_then(|vs| vs.iter_mut().find(|v| v.version_id == target.version_id))
            {
                v.tags.clear();
            }
            let mut batch = Batch::new();
            state.put_object(&mut batch, &input.bucket, &input.key);
            (self.0.store.commit(batch), shown)
        };
        self.0.commit(fut).await?;
        let mut resp = S3Response::new(DeleteObjectTaggingOutput { version_id });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let ctx = ctx_of(&req);
        let input = req.input;
        let mut config = input.notification_configuration;
        let dests = notify::destinations(&config)
            .map_err(|m| S3Error::with_message(S3ErrorCode::InvalidArgument, m))?;
        // Ids AWS assigns when the client gave none are kept, so events name them.
        let mut ids = dests.iter().map(|d| d.id.clone());
        for c in config.queue_configurations.iter_mut().flatten() {
            c.id = ids.next();
        }
        for c in config.topic_configurations.iter_mut().flatten() {
            c.id = ids.next();
        }
        for c in config.lambda_function_configurations.iter_mut().flatten() {
            c.id = ids.next();
        }
        let fut = {
            let mut state = self.0.state.lock();
            let now = self.0.clock.now_ms();
            let b = state
                .buckets
                .get_mut(&input.bucket)
                .ok_or_else(|| no_such_bucket(&input.bucket))?;
            let empty = config
                .queue_configurations
                .as_ref()
                .is_none_or(Vec::is_empty)
                && config
                    .topic_configurations
                    .as_ref()
                    .is_none_or(Vec::is_empty)
                && config
                    .lambda_function_configurations
                    .as_ref()
                    .is_none_or(Vec::is_empty)
                && config.event_bridge_configuration.is_none();
            b.rec.notification = (!empty).then_some(config);
            let mut batch = Batch::new();
            state.put_bucket(&mut batch, &input.bucket);
            // SQS and SNS destinations get AWS's test message when configured.
            let test = notify::test_event(&input.bucket, now, &ctx.request_id).to_string();
            let mut tested = std::collections::HashSet::new();
            for d in dests
                .iter()
                .filter(|d| d.target != "lambda" && tested.insert(d.arn.clone()))
            {
                state.add_pending(
                    &mut batch,
                    Pending {
                        seq: 0,
                        target: d.target.to_string(),
                        arn: d.arn.clone(),
                        body: test.clone(),
                        request_id: ctx.request_id.clone(),
                        attempts: 0,
                    },
                );
            }
            self.0.store.commit(batch)
        };
        self.0.commit(fut).await?;
        Ok(S3Response::new(PutBucketNotificationConfigurationOutput {}))
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let config = read_bucket(&self.0, &req.input.bucket, |b| {
            Ok(b.notification.clone().unwrap_or_default())
        })?;
        Ok(S3Response::new(GetBucketNotificationConfigurationOutput {
            event_bridge_configuration: config.event_bridge_configuration,
            lambda_function_configurations: config.lambda_function_configurations,
            queue_configurations: config.queue_configurations,
            topic_configurations: config.topic_configurations,
        }))
    }
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

fn invalid_part() -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
    )
}

/// Deletes one object or version under the state lock, queuing the store writes and
/// notifications; returns the answer and the blobs to remove after the commit.
#[allow(clippy::too_many_arguments)]
fn delete_one(
    inner: &Inner,
    state: &mut State,
    batch: &mut Batch,
    ctx: &RequestContext,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    lifecycle: bool,
) -> S3Result<(DeleteObjectOutput, Vec<String>)> {
    let now = inner.clock.now_ms();
    let b = state
        .buckets
        .get_mut(bucket)
        .ok_or_else(|| no_such_bucket(bucket))?;
    let versioning = b.rec.versioning.clone();
    let owner = b.rec.account.clone();
    let region = b.rec.region.clone();
    let mut removed = Vec::new();
    let (out, event, shown) = match version_id {
        Some(id) => {
            let versions = b.objects.get_mut(key);
            let Some(versions) = versions else {
                return Ok((DeleteObjectOutput::default(), removed));
            };
            let Some(i) = versions.iter().position(|v| v.version_id == id) else {
                if id != "null" && id.len() != 32 {
                    return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
                }
                return Ok((
                    DeleteObjectOutput {
                        version_id: Some(id.to_string()),
                        ..Default::default()
                    },
                    removed,
                ));
            };
            let v = versions.remove(i);
            removed.extend(v.blob.clone());
            if versions.is_empty() {
                b.objects.remove(key);
            }
            (
                DeleteObjectOutput {
                    delete_marker: v.delete_marker.then_some(true),
                    version_id: Some(v.version_id.clone()),
                    ..Default::default()
                },
                "s3:ObjectRemoved:Delete",
                Some(v.version_id),
            )
        }
        None => match versioning.as_deref() {
            None => {
                let Some(versions) = b.objects.remove(key) else {
                    return Ok((DeleteObjectOutput::default(), removed));
                };
                removed.extend(versions.into_iter().filter_map(|v| v.blob));
                (
                    DeleteObjectOutput::default(),
                    "s3:ObjectRemoved:Delete",
                    None,
                )
            }
            Some(status) => {
                let id = if status == "Enabled" {
                    new_version_id()
                } else {
                    "null".to_string()
                };
                let versions = b.objects.entry(key.to_string()).or_default();
                if id == "null" {
                    versions.retain(|v| {
                        if v.version_id == "null" {
                            removed.extend(v.blob.clone());
                            false
                        } else {
                            true
                        }
                    });
                }
                versions.push(Version {
                    version_id: id.clone(),
                    delete_marker: true,
                    last_modified_ms: now,
                    ..Version::default()
                });
                (
                    DeleteObjectOutput {
                        delete_marker: Some(true),
                        version_id: Some(id.clone()),
                        ..Default::default()
                    },
                    "s3:ObjectRemoved:DeleteMarkerCreated",
                    Some(id),
                )
            }
        },
    };
    state.put_object(batch, bucket, key);
    let seq = Inner::next_seq(state);
    let event = match (lifecycle, event) {
        (true, "s3:ObjectRemoved:DeleteMarkerCreated") => {
            "s3:LifecycleExpiration:DeleteMarkerCreated"
        }
        (true, _) => "s3:LifecycleExpiration:Delete",
        (false, e) => e,
    };
    let change = Change {
        event,
        bucket,
        bucket_owner: &canonical_id(&owner),
        key,
        size: None,
        etag: None,
        version_id: shown.as_deref(),
        sequencer: sequencer(now, seq),
        region: &region,
        time_ms: now,
        request_id: &ctx.request_id,
        requester: &ctx.account,
        reason: if lifecycle {
            "Lifecycle Expiration"
        } else {
            "DeleteObject"
        },
    };
    notifications(state, batch, &change);
    Ok((out, removed))
}

/// A body stream that knows its length, so s3s can send Content-Length.
struct SizedStream {
    inner: BodyStream,
    left: u64,
}

impl futures_util::Stream for SizedStream {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let r = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(b))) = &r {
            self.left = self.left.saturating_sub(b.len() as u64);
        }
        r
    }
}

impl s3s::stream::ByteStream for SizedStream {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::RemainingLength::new_exact(self.left as usize)
    }
}

/// `ObjectStore::put_object`: a PutObject from inside tsumiki.
pub async fn put_bytes(
    inner: &Inner,
    ctx: &RequestContext,
    bucket: &str,
    key: &str,
    body: Bytes,
    content_type: Option<&str>,
) -> Result<String, AwsError> {
    let to_aws = |e: S3Error| {
        AwsError::new(
            e.code().as_str().to_string(),
            e.status_code().map(|s| s.as_u16()).unwrap_or(500),
            e.message().unwrap_or("").to_string(),
        )
    };
    {
        let state = inner.state.lock();
        bucket_of(&state, bucket).map_err(to_aws)?;
    }
    let stream: BodyStream = Box::pin(futures_util::stream::once(async move { Ok(body) }));
    let w = inner.blobs.write(stream, None).await.map_err(|e| {
        tracing::error!(error = %e, "Could not write an S3 object.");
        AwsError::internal()
    })?;
    let version = Version {
        size: w.size,
        etag: hex::encode(w.md5),
        last_modified_ms: inner.clock.now_ms(),
        blob: Some(w.name),
        content_type: content_type.map(String::from),
        ..Version::default()
    };
    let written = commit_object(
        inner,
        ctx,
        bucket,
        key,
        version,
        "s3:ObjectCreated:Put",
        "PutObject",
        None,
    )
    .await
    .map_err(to_aws)?;
    Ok(format!("\"{}\"", written.version.etag))
}

/// `ObjectStore::get_object`: the whole current object.
pub async fn get_bytes(inner: &Inner, bucket: &str, key: &str) -> Result<Bytes, AwsError> {
    let v = {
        let state = inner.state.lock();
        let b = state.buckets.get(bucket).ok_or_else(no_such_bucket_aws)?;
        b.current(key)
            .cloned()
            .ok_or_else(|| AwsError::new("NoSuchKey", 404, "The specified key does not exist."))?
    };
    let Some(name) = v.blob else {
        return Ok(Bytes::new());
    };
    let mut stream = inner.blobs.read(&name, 0, v.size).await.map_err(|e| {
        tracing::error!(error = %e, "Could not read an S3 object.");
        AwsError::internal()
    })?;
    let mut out = bytes::BytesMut::with_capacity(v.size as usize);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|_| AwsError::internal())?);
    }
    Ok(out.freeze())
}

pub async fn reset(inner: &Inner) -> Result<(), AwsError> {
    let (fut, blobs) = {
        let mut state = inner.state.lock();
        let blobs: Vec<String> = state.referenced_blobs().into_iter().collect();
        *state = State::default();
        let mut batch = Batch::new();
        State::reset(&mut batch);
        (inner.store.commit(batch), blobs)
    };
    fut.await.map_err(|_| AwsError::internal())?;
    inner.blobs.remove(blobs).await;
    Ok(())
}

/// Delivers pending notifications, oldest first; a record is forgotten only after its
/// destination took it (or refused it for good).
pub async fn deliver_loop(inner: Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let notified = i.wake.notified();
        let ready = i.services.read().is_some();
        let batch: Vec<Pending> = if ready {
            i.state.lock().pending.values().take(32).cloned().collect()
        } else {
            Vec::new()
        };
        if batch.is_empty() {
            // S3 lives as long as the process, so holding it while waiting costs nothing.
            notified.await;
            continue;
        }
        drop(notified);
        let mut done = Batch::new();
        let mut retry = false;
        for p in batch {
            match deliver(&i, &p).await {
                Ok(()) => {}
                Err(Retry::Later) => {
                    retry = true;
                    continue;
                }
                Err(Retry::Never(reason)) => tracing::warn!(
                    target_service = %p.target,
                    destination = %p.arn,
                    %reason,
                    "Dropped an S3 event notification its destination refused."
                ),
            }
            i.state.lock().pending.remove(&p.seq);
            State::done_pending(&mut done, p.seq);
        }
        if let Err(e) = i.store.commit(done).await {
            tracing::error!(error = %e, "Could not record delivered S3 notifications.");
        }
        if retry {
            let clock = i.clock.clone();
            drop(i);
            clock.sleep_ms(1000).await;
        }
    }
}

enum Retry {
    Later,
    Never(String),
}

async fn deliver(inner: &Inner, p: &Pending) -> Result<(), Retry> {
    let (service, region, account, resource) = match p.target.as_str() {
        "events" => {
            let (_, region, account, _) = tsumiki_core::ids::parse_arn(&p.arn)
                .ok_or_else(|| Retry::Never("a malformed bus ARN".into()))?;
            ("events", region, account, "")
        }
        _ => {
            let (svc, region, account, resource) = tsumiki_core::ids::parse_arn(&p.arn)
                .ok_or_else(|| Retry::Never(format!("a malformed ARN {}", p.arn)))?;
            (svc, region, account, resource)
        }
    };
    let ctx = RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        base_url: inner.endpoint.read().clone(),
        access_key: None,
        path: "/".into(),
    };
    if p.target == "lambda" {
        let Some(invoke) = inner.lambda.read().clone() else {
            return Err(Retry::Never("Lambda is not served".into()));
        };
        let target = tsumiki_ports::FunctionTarget {
            account: account.to_string(),
            region: region.to_string(),
            function: p.arn.clone(),
            qualifier: None,
        };
        return invoke
            .enqueue(target, p.body.clone().into_bytes(), ctx.request_id.clone())
            .await
            .map_err(|e| classify(&e));
    }
    let (operation, input) = match p.target.as_str() {
        "sqs" => (
            "SendMessage",
            serde_json::json!({
                "QueueUrl": format!("{}/{}/{}", ctx.base_url, account, resource),
                "MessageBody": p.body,
            }),
        ),
        "sns" => (
            "Publish",
            serde_json::json!({
                "TopicArn": p.arn,
                "Message": p.body,
                "Subject": "Amazon S3 Notification",
            }),
        ),
        "events" => {
            let entry: serde_json::Value = serde_json::from_str(&p.body)
                .map_err(|_| Retry::Never("a malformed entry".into()))?;
            ("PutEvents", serde_json::json!({"Entries": [entry]}))
        }
        other => return Err(Retry::Never(format!("unknown target {other}"))),
    };
    let svc = inner
        .services
        .read()
        .as_ref()
        .and_then(|s| s.get(service).cloned());
    let Some(svc) = svc else {
        return Err(Retry::Never(format!(
            "the {service} service is not served by this tsumiki"
        )));
    };
    let out = svc
        .call(&ctx, operation, input)
        .await
        .map_err(|e| classify(&e))?;
    if service == "events"
        && out
            .get("FailedEntryCount")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            > 0
    {
        return Err(Retry::Never(format!("PutEvents refused the event: {out}")));
    }
    Ok(())
}

fn classify(e: &AwsError) -> Retry {
    if e.status >= 500 {
        Retry::Later
    } else {
        Retry::Never(format!("{}: {}", e.code, e.message))
    }
}

/// Applies lifecycle expiration: current versions older than a rule's `Days` (counted, as
/// AWS does, to the next midnight UTC) or past its `Date` expire, as a DeleteObject would.
pub async fn lifecycle_loop(inner: Weak<Inner>) {
    const EVERY_MS: i64 = 60_000;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let clock = i.clock.clone();
        if let Err(e) = expire(&i).await {
            tracing::warn!(error = %e, "S3 lifecycle expiration failed.");
        }
        drop(i);
        clock.sleep_ms(EVERY_MS).await;
    }
}

fn rule_prefix(rule: &LifecycleRule) -> String {
    #[allow(deprecated)]
    let legacy = rule.prefix.clone();
    rule.filter
        .as_ref()
        .and_then(|f| {
            f.prefix
                .clone()
                .or_else(|| f.and.as_ref().and_then(|a| a.prefix.clone()))
        })
        .or(legacy)
        .unwrap_or_default()
}

const DAY_MS: i64 = 86_400_000;

async fn expire(inner: &Inner) -> Result<(), String> {
    let now = inner.clock.now_ms();
    let ctx = RequestContext {
        account: String::new(),
        region: String::new(),
        request_id: tsumiki_core::ids::request_id(),
        base_url: String::new(),
        access_key: None,
        path: "/".into(),
    };
    let (fut, removed) = {
        let mut state = inner.state.lock();
        let mut due: Vec<(String, String, String)> = Vec::new();
        for (name, b) in &state.buckets {
            let Some(config) = &b.rec.lifecycle else {
                continue;
            };
            for rule in &config.rules {
                if rule.status.as_str() != "Enabled" {
                    continue;
                }
                let Some(exp) = &rule.expiration else {
                    continue;
                };
                let prefix = rule_prefix(rule);
                for (key, versions) in b.objects.range(prefix.clone()..) {
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let Some(v) = versions.last().filter(|v| !v.delete_marker) else {
                        continue;
                    };
                    let expired = match (exp.days, &exp.date) {
                        (Some(days), _) => {
                            let at = (v.last_modified_ms + days as i64 * DAY_MS).div_euclid(DAY_MS)
                                * DAY_MS
                                + DAY_MS;
                            now >= at
                        }
                        (None, Some(date)) => now >= ms_of(date),
                        _ => false,
                    };
                    if expired {
                        due.push((name.clone(), key.clone(), b.rec.account.clone()));
                    }
                }
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut removed = Vec::new();
        for (bucket, key, account) in due {
            let ctx = RequestContext {
                account,
                ..ctx.clone()
            };
            if let Ok((_, blobs)) = delete_one(
                inner, &mut state, &mut batch, &ctx, &bucket, &key, None, true,
            ) {
                removed.extend(blobs);
            }
        }
        (inner.store.commit(batch), removed)
    };
    fut.await.map_err(|e| e.to_string())?;
    inner.wake.notify_one();
    inner.blobs.remove(removed).await;
    Ok(())
}
