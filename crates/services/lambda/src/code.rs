//! Deployment packages: checking a zip as AWS does (it must unzip; at most 50 MB zipped and
//! 250 MB unzipped), keeping it in the store, and unpacking it once per content hash into a
//! read-only directory that every environment of every function with the same code shares
//! (AWS's `/var/task` is read-only too; each environment still has its own `/tmp`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use tsumiki_core::AwsError;
use tsumiki_store::Store;

use crate::errors::invalid;
use crate::state::{NS_CODE, store_error};

/// AWS: 50 MB for a zip uploaded directly.
pub(crate) const MAX_ZIPPED: usize = 50 * 1024 * 1024;
/// AWS: 250 MB unzipped, code and layers together.
pub(crate) const MAX_UNZIPPED: u64 = 262_144_000;

/// A checked package.
pub(crate) struct Package {
    pub bytes: Vec<u8>,
    /// Hex SHA-256: the storage key.
    pub id: String,
    /// Base64 SHA-256, as `CodeSha256`.
    pub sha256: String,
    pub unzipped: u64,
}

/// Decodes and checks a `ZipFile` blob (base64 in the decoded input).
pub(crate) fn check(zip_b64: &str) -> Result<Package, AwsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(zip_b64)
        .map_err(|_| unzip_error())?;
    check_bytes(bytes)
}

/// Checks a package's bytes (from `ZipFile` or an S3 object) against Lambda's limits.
pub(crate) fn check_bytes(bytes: Vec<u8>) -> Result<Package, AwsError> {
    if bytes.len() > MAX_ZIPPED {
        return Err(AwsError::new(
            "RequestTooLargeException",
            413,
            format!(
                "Zipped size must be smaller than {MAX_ZIPPED} bytes (the package is {} bytes).",
                bytes.len()
            ),
        ));
    }
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(&bytes)).map_err(|_| unzip_error())?;
    let mut unzipped: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|_| unzip_error())?;
        unzipped = unzipped.saturating_add(entry.size());
    }
    if unzipped > MAX_UNZIPPED {
        return Err(invalid(format!(
            "Unzipped size must be smaller than {MAX_UNZIPPED} bytes"
        )));
    }
    let digest = Sha256::digest(&bytes);
    Ok(Package {
        id: hex::encode(digest),
        sha256: base64::engine::general_purpose::STANDARD.encode(digest),
        unzipped,
        bytes,
    })
}

fn unzip_error() -> AwsError {
    invalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
}

/// Unpacked packages under a directory, made on first use.
pub(crate) struct CodeCache {
    dir: PathBuf,
    store: Store,
    /// One unpacking at a time per package, so concurrent cold starts do not race.
    locks: parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf, store: Store) -> CodeCache {
        CodeCache {
            dir,
            store,
            locks: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Where packages are unpacked, each in a directory named by its hex SHA-256.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding package `id` unpacked.
    pub(crate) async fn unpacked(&self, id: &str) -> Result<PathBuf, AwsError> {
        let target = self.dir.join(id);
        if target.is_dir() {
            return Ok(target);
        }
        let lock = self.locks.lock().entry(id.to_string()).or_default().clone();
        let _guard = lock.lock().await;
        if target.is_dir() {
            return Ok(target);
        }
        let bytes = self
            .store
            .get(NS_CODE, id.as_bytes())
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                tracing::error!(code = %id, "a function's package is missing from the store");
                AwsError::new("ServiceException", 500, "The function's code is missing.")
            })?;
        let dir = self.dir.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || unpack(&bytes, &dir, &id))
            .await
            .map_err(store_error)?
            .map_err(|e| {
                tracing::error!(error = %e, "unpacking a package failed");
                invalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
            })
    }
}

/// Unpacks into a fresh directory and renames it into place, so a crash never leaves a
/// half-unpacked package that looks complete.
fn unpack(bytes: &[u8], dir: &Path, id: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join(id);
    let staging = dir.join(format!(".{id}.{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging)?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // `enclosed_name` refuses `..` and absolute paths: a package cannot write outside.
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        let path = staging.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data)?;
        std::fs::write(&path, &data)?;
        // AWS keeps the zip's execute bits (a `bootstrap` must be executable) and makes code
        // world-readable; files are read-only, as /var/task is.
        let mode = entry.unix_mode().unwrap_or(0o644);
        let exec = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exec))?;
    }
    match std::fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(target)
        }
        Err(e) => Err(e),
    }
}
