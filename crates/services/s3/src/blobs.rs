//! Object bodies as files. A body is streamed into `tmp/` while it is hashed, synced, and only
//! then renamed into `data/`; its metadata is committed to the store after that. So a crash
//! mid-upload leaves at most a temporary file (removed at start) or an unreferenced data file
//! (collected at start), never a visible partial object.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use s3s::crypto::Checksum as _;
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub struct Blobs {
    tmp: PathBuf,
    data: PathBuf,
    /// Sync file data before a body becomes visible (off for in-memory servers).
    fsync: bool,
}

/// What writing a body produced.
pub struct Written {
    pub name: String,
    pub size: u64,
    pub md5: [u8; 16],
    /// The requested algorithm's base64 value.
    pub checksum: Option<(String, String)>,
}

/// One running checksum of S3's algorithms.
pub enum Hasher {
    Crc32(s3s::crypto::Crc32),
    Crc32c(s3s::crypto::Crc32c),
    Crc64(s3s::crypto::Crc64Nvme),
    Sha1(s3s::crypto::Sha1),
    Sha256(s3s::crypto::Sha256),
}

impl Hasher {
    pub fn new(algorithm: &str) -> Option<Hasher> {
        Some(match algorithm.to_ascii_uppercase().as_str() {
            "CRC32" => Hasher::Crc32(s3s::crypto::Crc32::new()),
            "CRC32C" => Hasher::Crc32c(s3s::crypto::Crc32c::new()),
            "CRC64NVME" => Hasher::Crc64(s3s::crypto::Crc64Nvme::new()),
            "SHA1" => Hasher::Sha1(s3s::crypto::Sha1::new()),
            "SHA256" => Hasher::Sha256(s3s::crypto::Sha256::new()),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Crc64(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Hasher::Crc32(h) => b64(h.finalize().as_ref()),
            Hasher::Crc32c(h) => b64(h.finalize().as_ref()),
            Hasher::Crc64(h) => b64(h.finalize().as_ref()),
            Hasher::Sha1(h) => b64(h.finalize().as_ref()),
            Hasher::Sha256(h) => b64(h.finalize().as_ref()),
        }
    }
}

pub type BodyStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Bytes, s3s::StdError>> + Send + Sync + 'static>,
>;

impl Blobs {
    /// Opens the blob directories under `dir`, removing what a crash left in `tmp/`.
    pub fn open(dir: &Path, fsync: bool) -> std::io::Result<Blobs> {
        let tmp = dir.join("tmp");
        let data = dir.join("data");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&data)?;
        Ok(Blobs { tmp, data, fsync })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }

    /// Removes data files no record refers to (a crash between rename and commit).
    pub fn collect_garbage(&self, referenced: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.data) else {
            return;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "Removed S3 object files no object refers to.");
        }
    }

    /// Streams `body` into a new data file, hashing it on the way.
    pub async fn write(
        &self,
        mut body: BodyStream,
        checksum_algorithm: Option<&str>,
    ) -> std::io::Result<Written> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.tmp.join(&name);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut md5 = Md5::new();
            let mut hasher = checksum_algorithm.and_then(Hasher::new);
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                md5.update(&chunk);
                if let Some(h) = &mut hasher {
                    h.update(&chunk);
                }
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            if self.fsync {
                file.sync_data().await?;
            }
            drop(file);
            tokio::fs::rename(&tmp, self.data.join(&name)).await?;
            Ok(Written {
                name: name.clone(),
                size,
                md5: md5.finalize().into(),
                checksum: checksum_algorithm
                    .zip(hasher)
                    .map(|(a, h)| (a.to_ascii_uppercase(), h.finish())),
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Copies the data files `parts` (in order) into a new one: a completed multipart upload or
    /// a copied object.
    pub async fn concat(
        &self,
        parts: &[(String, u64, u64)],
        checksum_algorithm: Option<&str>,
    ) -> std::io::Result<Written> {
        let paths: Vec<(PathBuf, u64, u64)> = parts
            .iter()
            .map(|(n, start, len)| (self.path(n), *start, *len))
            .collect();
        let stream = async_stream(paths);
        self.write(stream, checksum_algorithm).await
    }

    pub async fn remove(&self, names: Vec<String>) {
        for name in names {
            if let Err(e) = tokio::fs::remove_file(self.path(&name)).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, "Could not remove an S3 object file.");
            }
        }
    }

    /// A stream of `len` bytes of the file `name` from `start`.
    pub async fn read(&self, name: &str, start: u64, len: u64) -> std::io::Result<BodyStream> {
        // Open before returning, so a missing file is an error now and a file replaced later
        // is still read whole (the open handle keeps it).
        let file = open_at(&self.path(name), start).await?;
        Ok(file_stream(file, len))
    }
}

async fn open_at(path: &Path, start: u64) -> std::io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    Ok(file)
}

const READ_CHUNK: usize = 256 * 1024;

fn file_stream(file: tokio::fs::File, len: u64) -> BodyStream {
    Box::pin(futures_util::stream::unfold(
        (file, len),
        |(mut file, left)| async move {
            use tokio::io::AsyncReadExt;
            if left == 0 {
                return None;
            }
            let want = (left as usize).min(READ_CHUNK);
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(s3s::StdError::from("the object file ended early")),
                    (file, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(s3s::StdError::from(e)), (file, 0))),
            }
        },
    ))
}

/// The concatenation of file ranges, opened one after the other.
fn async_stream(paths: Vec<(PathBuf, u64, u64)>) -> BodyStream {
    let streams = futures_util::stream::iter(paths).then(|(path, start, len)| async move {
        match open_at(&path, start).await {
            Ok(file) => file_stream(file, len),
            Err(e) => Box::pin(futures_util::stream::once(async move {
                Err(s3s::StdError::from(e))
            })) as BodyStream,
        }
    });
    Box::pin(streams.flatten())
}
