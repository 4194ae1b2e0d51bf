//! S3's state: buckets, object versions, multipart uploads and pending notifications in memory,
//! written through to the store; object bodies as files (`blobs.rs`). The only module that
//! names S3's store namespaces.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tsumiki_store::{Batch, Store, StoreError};

const NS_BUCKET: &str = "s3.bucket";
const NS_OBJECT: &str = "s3.object";
const NS_UPLOAD: &str = "s3.upload";
const NS_PENDING: &str = "s3.pending";

/// A bucket's own record (its objects are stored per key).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BucketRec {
    pub name: String,
    pub account: String,
    pub region: String,
    pub created_ms: i64,
    /// `Enabled` or `Suspended`; `None` until versioning was first configured.
    #[serde(default)]
    pub versioning: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub cors: Option<s3s::dto::CORSConfiguration>,
    #[serde(default)]
    pub lifecycle: Option<s3s::dto::BucketLifecycleConfiguration>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub notification: Option<s3s::dto::NotificationConfiguration>,
    #[serde(default)]
    pub encryption: Option<s3s::dto::ServerSideEncryptionConfiguration>,
}

/// One version of an object (or a delete marker).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Version {
    /// `null` for objects written while versioning was never enabled or is suspended.
    pub version_id: String,
    #[serde(default)]
    pub delete_marker: bool,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub last_modified_ms: i64,
    /// The body's file name under the blob directory; `None` for delete markers.
    pub blob: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_encoding: Option<String>,
    #[serde(default)]
    pub content_disposition: Option<String>,
    #[serde(default)]
    pub content_language: Option<String>,
    #[serde(default)]
    pub cache_control: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub website_redirect_location: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// (algorithm as `CRC32`/`CRC32C`/`SHA1`/`SHA256`/`CRC64NVME`, base64 value).
    #[serde(default)]
    pub checksum: Option<(String, String)>,
    /// `FULL_OBJECT` or `COMPOSITE`.
    #[serde(default)]
    pub checksum_type: Option<String>,
    #[serde(default)]
    pub parts_count: Option<i32>,
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    pub etag: String,
    pub size: u64,
    pub blob: String,
    pub last_modified_ms: i64,
    #[serde(default)]
    pub checksum: Option<(String, String)>,
}

/// A multipart upload in progress; `template` holds the headers of CreateMultipartUpload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub template: Version,
    #[serde(default)]
    pub checksum_algorithm: Option<String>,
    pub parts: BTreeMap<i32, Part>,
}

/// A notification waiting to be delivered (at least once).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub seq: u64,
    /// `sqs`, `sns`, `lambda` or `events`.
    pub target: String,
    /// The destination ARN (`events`: the default bus's account and region only matter).
    pub arn: String,
    /// The message body (SQS, SNS), the payload (Lambda) or the PutEvents entry (events).
    pub body: String,
    pub request_id: String,
    /// `s3:TestEvent` deliveries are not retried across restarts as object events are.
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Default)]
pub struct BucketState {
    pub rec: BucketRec,
    pub objects: BTreeMap<String, Vec<Version>>,
}

impl BucketState {
    /// The newest version of `key`, delete markers included.
    pub fn latest(&self, key: &str) -> Option<&Version> {
        self.objects.get(key).and_then(|v| v.last())
    }

    /// The newest version when it is not a delete marker.
    pub fn current(&self, key: &str) -> Option<&Version> {
        self.latest(key).filter(|v| !v.delete_marker)
    }
}

#[derive(Default)]
pub struct State {
    pub buckets: BTreeMap<String, BucketState>,
    pub uploads: HashMap<String, Upload>,
    pub pending: BTreeMap<u64, Pending>,
    pub next_seq: u64,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("S3 records always serialize")
}

fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    // Bucket names never contain '/', so the first '/' separates the two.
    format!("{bucket}/{key}").into_bytes()
}

impl State {
    pub async fn load(store: &Store) -> Result<State, StoreError> {
        let mut state = State::default();
        for (_, v) in store.scan(NS_BUCKET).await? {
            match serde_json::from_slice::<BucketRec>(&v) {
                Ok(rec) => {
                    state.buckets.insert(
                        rec.name.clone(),
                        BucketState {
                            rec,
                            objects: BTreeMap::new(),
                        },
                    );
                }
                Err(e) => tracing::warn!(error = %e, "Skipping an unreadable S3 bucket record."),
            }
        }
        for (k, v) in store.scan(NS_OBJECT).await? {
            let k = String::from_utf8_lossy(&k).into_owned();
            let Some((bucket, key)) = k.split_once('/') else {
                continue;
            };
            let (Some(b), Ok(versions)) = (
                state.buckets.get_mut(bucket),
                serde_json::from_slice::<Vec<Version>>(&v),
            ) else {
                continue;
            };
            b.objects.insert(key.to_string(), versions);
        }
        for (_, v) in store.scan(NS_UPLOAD).await? {
            if let Ok(u) = serde_json::from_slice::<Upload>(&v) {
                state.uploads.insert(u.id.clone(), u);
            }
        }
        for (_, v) in store.scan(NS_PENDING).await? {
            if let Ok(p) = serde_json::from_slice::<Pending>(&v) {
                state.next_seq = state.next_seq.max(p.seq + 1);
                state.pending.insert(p.seq, p);
            }
        }
        Ok(state)
    }

    /// Every blob file some record refers to.
    pub fn referenced_blobs(&self) -> std::collections::HashSet<String> {
        let mut out = std::collections::HashSet::new();
        for b in self.buckets.values() {
            for versions in b.objects.values() {
                out.extend(versions.iter().filter_map(|v| v.blob.clone()));
            }
        }
        for u in self.uploads.values() {
            out.extend(u.parts.values().map(|p| p.blob.clone()));
        }
        out
    }

    pub fn put_bucket(&self, batch: &mut Batch, name: &str) {
        if let Some(b) = self.buckets.get(name) {
            batch.put(NS_BUCKET, name.as_bytes().to_vec(), encode(&b.rec));
        }
    }

    pub fn delete_bucket(batch: &mut Batch, name: &str) {
        batch.delete(NS_BUCKET, name.as_bytes().to_vec());
        batch.delete_prefix(NS_OBJECT, format!("{name}/").into_bytes());
    }

    /// Records `key`'s versions as they are now (deleting the record when none are left).
    pub fn put_object(&self, batch: &mut Batch, bucket: &str, key: &str) {
        let versions = self.buckets.get(bucket).and_then(|b| b.objects.get(key));
        match versions {
            Some(v) if !v.is_empty() => batch.put(NS_OBJECT, object_key(bucket, key), encode(v)),
            _ => batch.delete(NS_OBJECT, object_key(bucket, key)),
        }
    }

    pub fn put_upload(&self, batch: &mut Batch, id: &str) {
        match self.uploads.get(id) {
            Some(u) => batch.put(NS_UPLOAD, id.as_bytes().to_vec(), encode(u)),
            None => batch.delete(NS_UPLOAD, id.as_bytes().to_vec()),
        }
    }

    /// Queues `p` in memory and in `batch`, numbered in order.
    pub fn add_pending(&mut self, batch: &mut Batch, mut p: Pending) {
        p.seq = self.next_seq;
        self.next_seq += 1;
        batch.put(NS_PENDING, pending_key(p.seq), encode(&p));
        self.pending.insert(p.seq, p);
    }

    pub fn done_pending(batch: &mut Batch, seq: u64) {
        batch.delete(NS_PENDING, pending_key(seq));
    }

    pub fn reset(batch: &mut Batch) {
        for ns in [NS_BUCKET, NS_OBJECT, NS_UPLOAD, NS_PENDING] {
            batch.delete_prefix(ns, Vec::new());
        }
    }
}

fn pending_key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}
