//! A run's extra Python: `--extra-py-files` and `--additional-python-modules`.
//!
//! - `--extra-py-files` (comma-separated `.py`, `.zip`, `.egg` or `.whl`, each `s3://` or a
//!   local path): `.py` files are put in a directory on the run's `PYTHONPATH`, `.zip` and
//!   `.egg` files go on it themselves (Python imports from them), `.whl` files are installed.
//! - `--additional-python-modules` (comma-separated): wheels (`s3://` or local paths ending in
//!   `.whl`) are installed with `pip install --no-index --no-deps`; anything else is a pip
//!   requirement (`name`, `name==1.2`) installed from the index pip is configured with on
//!   this machine (its `PIP_*` environment and config files, proxies passed through).
//!
//! Installs run as the run's own processes (`pip install --target`), their output in the
//! run's log streams, stopped with the run and bounded by its timeout. Each install lands in a
//! directory named by the hash of what was installed (the wheels' bytes, the requirement
//! text), so a later run with the same modules reuses it: a directory is used only once its
//! install completed (it is renamed into place at the end).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tsumiki_compute::jobs::{ProcessSpec, RunEnd};

use crate::Glue;
use crate::state::Key;

/// What the run's environment gains.
#[derive(Default, Debug)]
pub(crate) struct Installed {
    /// Entries put first on `PYTHONPATH`, in order.
    pub paths: Vec<PathBuf>,
    /// Lines for the run's output log.
    pub notes: Vec<String>,
}

/// One item of the two arguments, fetched.
enum Item {
    /// A file's name and bytes.
    File(String, Vec<u8>),
    /// A pip requirement.
    Requirement(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads an `s3://` object or a local file.
async fn fetch(glue: &Glue, job: &Key, location: &str) -> Result<Vec<u8>, String> {
    if let Some(object) = location.strip_prefix("s3://") {
        let (bucket, key) = object.split_once('/').unwrap_or((object, ""));
        let Some(objects) = glue.objects.get() else {
            return Err(format!(
                "{location} cannot be read: this server does not run S3"
            ));
        };
        let ctx = glue.internal_context(&job.account, &job.region);
        return objects
            .get_object(&ctx, bucket, key)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("{location} cannot be read: {}: {}", e.code, e.message));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    std::fs::read(path).map_err(|e| format!("{location} cannot be read: {e}"))
}

fn file_name(location: &str) -> String {
    location.rsplit('/').next().unwrap_or(location).to_string()
}

/// Installs what the run's arguments ask for; `Err` is the run's `ErrorMessage`.
/// `run_pip` runs one pip process as the run's own and answers how it ended.
pub(crate) async fn install<F, Fut>(
    glue: &Glue,
    job: &Key,
    args: &BTreeMap<String, String>,
    pip_base: &ProcessSpec,
    run_pip: F,
) -> Result<Installed, String>
where
    F: Fn(ProcessSpec) -> Fut,
    Fut: std::future::Future<Output = Result<RunEnd, String>>,
{
    let mut out = Installed::default();
    let cache = glue.work_dir.join("python-modules");
    // --extra-py-files
    let mut wheels = Vec::new();
    for location in args
        .get("--extra-py-files")
        .map(|v| split_list(v))
        .unwrap_or_default()
    {
        let bytes = fetch(glue, job, &location)
            .await
            .map_err(|e| format!("--extra-py-files: {e}"))?;
        let name = file_name(&location);
        let hash = hex(&Sha256::digest(&bytes));
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".whl") {
            wheels.push(Item::File(name, bytes));
            continue;
        }
        if !(lower.ends_with(".py") || lower.ends_with(".zip") || lower.ends_with(".egg")) {
            return Err(format!(
                "--extra-py-files: {location} is not a .py, .zip, .egg or .whl file"
            ));
        }
        let dir = cache.join(format!("file-{hash}"));
        let path = dir.join(&name);
        if !path.is_file() {
            write_atomically(&dir, &name, &bytes)
                .map_err(|e| format!("--extra-py-files: {location}: {e}"))?;
        }
        out.paths
            .push(if lower.ends_with(".py") { dir } else { path });
    }
    // --additional-python-modules
    for item in args
        .get("--additional-python-modules")
        .map(|v| split_list(v))
        .unwrap_or_default()
    {
        if item.to_ascii_lowercase().ends_with(".whl")
            && (item.starts_with("s3://") || item.contains('/'))
        {
            let bytes = fetch(glue, job, &item)
                .await
                .map_err(|e| format!("--additional-python-modules: {e}"))?;
            wheels.push(Item::File(file_name(&item), bytes));
        } else {
            wheels.push(Item::Requirement(item));
        }
    }
    if wheels.is_empty() {
        return Ok(out);
    }
    // One install of everything, named by its content.
    let mut hasher = Sha256::new();
    for w in &wheels {
        match w {
            Item::File(name, bytes) => {
                hasher.update(b"file\0");
                hasher.update(name.as_bytes());
                hasher.update(b"\0");
                hasher.update(Sha256::digest(bytes));
            }
            Item::Requirement(r) => {
                hasher.update(b"req\0");
                hasher.update(r.as_bytes());
            }
        }
        hasher.update(b"\n");
    }
    let hash = hex(&hasher.finalize());
    let target = cache.join(format!("pip-{hash}"));
    if target.is_dir() {
        out.notes.push(format!(
            "tsumiki: Python modules reused from an earlier install ({})",
            target.display()
        ));
        out.paths.push(target);
        return Ok(out);
    }
    let staging = cache.join(format!("staging-{hash}-{}", uuid::Uuid::new_v4().simple()));
    let files = staging.join("wheels");
    let site = staging.join("site");
    std::fs::create_dir_all(&files).map_err(|e| format!("Python modules: {e}"))?;
    let mut local = Vec::new();
    let mut requirements = Vec::new();
    for w in &wheels {
        match w {
            Item::File(name, bytes) => {
                let path = files.join(name);
                std::fs::write(&path, bytes).map_err(|e| format!("Python modules: {e}"))?;
                local.push(path.display().to_string());
            }
            Item::Requirement(r) => requirements.push(r.clone()),
        }
    }
    let result = async {
        if !local.is_empty() {
            pip(
                &run_pip,
                pip_base,
                &site,
                &["--no-index", "--no-deps"],
                &local,
            )
            .await?;
        }
        if !requirements.is_empty() {
            pip(&run_pip, pip_base, &site, &[], &requirements).await?;
        }
        std::fs::rename(&site, &target).map_err(|e| format!("Python modules: {e}"))
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    out.notes.push(format!(
        "tsumiki: Python modules installed into {}",
        target.display()
    ));
    out.paths.push(target);
    Ok(out)
}

async fn pip<F, Fut>(
    run_pip: &F,
    base: &ProcessSpec,
    site: &Path,
    flags: &[&str],
    items: &[String],
) -> Result<(), String>
where
    F: Fn(ProcessSpec) -> Fut,
    Fut: std::future::Future<Output = Result<RunEnd, String>>,
{
    let mut spec = base.clone();
    spec.args = vec![
        "-m".into(),
        "pip".into(),
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "--target".into(),
        site.display().to_string(),
    ];
    spec.args.extend(flags.iter().map(|f| f.to_string()));
    spec.args.extend(items.iter().cloned());
    let what = items
        .iter()
        .map(|i| file_name(i))
        .collect::<Vec<_>>()
        .join(", ");
    match run_pip(spec).await? {
        RunEnd::Exited(0) => Ok(()),
        RunEnd::Exited(code) => Err(format!(
            "Installation of Python modules failed: pip install of {what} exited with code \
             {code}; its output is in the run's error log"
        )),
        RunEnd::TimedOut => Err(format!(
            "Installation of Python modules timed out: pip install of {what}"
        )),
        other => Err(format!(
            "Installation of Python modules failed: pip install of {what} ended: {other:?}"
        )),
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let staging = dir.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join(name), bytes)?;
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(()),
        // Another run put the same file in place first.
        Err(_) if dir.join(name).is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The server's variables pip needs to reach its index (its config, proxies, certificates).
pub(crate) fn pip_environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            let upper = k.to_ascii_uppercase();
            upper.starts_with("PIP_")
                || matches!(
                    upper.as_str(),
                    "HTTP_PROXY"
                        | "HTTPS_PROXY"
                        | "NO_PROXY"
                        | "SSL_CERT_FILE"
                        | "REQUESTS_CA_BUNDLE"
                )
        })
        .collect()
}
