//! How the process executor runs an image it cannot pull: a container image name maps to a
//! command on this machine.
//!
//! - `--task-image NAME=COMMAND` (a serve option, repeatable): the image `NAME` (with or without
//!   its tag) runs `COMMAND` as its entrypoint; the task's `command` is appended, as Docker
//!   appends CMD to ENTRYPOINT. A task definition's own `entryPoint` replaces it.
//! - Built in: `python` images (any registry, any tag: `python:3.12`,
//!   `public.ecr.aws/docker/library/python:3.12-slim`) run the machine's python3 with CMD
//!   `python3`; `busybox`, `alpine`, `ubuntu`, `debian`, `amazonlinux` and `bash` run the
//!   machine's shell with CMD `/bin/sh`. Their commands run on this machine, not in a rootfs.
//! - Anything else cannot run, and RunTask says so in `failures[]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// What an image runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// A directory put first on PATH (the real python3's).
    pub path_prefix: Option<PathBuf>,
}

/// The image map.
#[derive(Clone, Debug, Default)]
pub struct Images {
    registered: BTreeMap<String, Vec<String>>,
    /// Set at construction or by a background thread: asking python where it lives takes
    /// about 100 ms, which the server's start should not wait for.
    python_dir: Arc<OnceLock<Option<PathBuf>>>,
}

const SHELL_IMAGES: &[&str] = &[
    "busybox",
    "alpine",
    "ubuntu",
    "debian",
    "amazonlinux",
    "bash",
];

impl Images {
    /// `registered` are `--task-image` values (`NAME=COMMAND`); `python_dir` holds the
    /// machine's real python3 (so `python3` and `python` resolve to it).
    pub fn new(registered: &[String], python_dir: Option<PathBuf>) -> Result<Images, String> {
        let mut map = BTreeMap::new();
        for item in registered {
            let Some((name, command)) = item.split_once('=') else {
                return Err(format!("--task-image {item:?} is not NAME=COMMAND"));
            };
            let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
            if name.is_empty() || argv.is_empty() {
                return Err(format!("--task-image {item:?} is not NAME=COMMAND"));
            }
            map.insert(name.to_string(), argv);
        }
        Ok(Images {
            registered: map,
            python_dir: Arc::new(OnceLock::from(python_dir)),
        })
    }

    /// As [`Images::new`], with the python directory found in the background
    /// ([`Images::find_python_dir`]); a python image resolved before that ends waits for it.
    pub fn finding_python(registered: &[String]) -> Result<Images, String> {
        let mut images = Images::new(registered, None)?;
        let cell = Arc::new(OnceLock::new());
        images.python_dir = cell.clone();
        std::thread::Builder::new()
            .name("tsumiki-find-python".into())
            .spawn(move || {
                cell.get_or_init(Images::find_python_dir);
            })
            .map_err(|e| e.to_string())?;
        Ok(images)
    }

    /// The directory of the real python3 behind `python3` on PATH, if there is one.
    pub fn find_python_dir() -> Option<PathBuf> {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        Some(path.parent()?.to_path_buf())
    }

    /// What `image` runs as, or `None` when it cannot run here.
    pub fn resolve(&self, image: &str) -> Option<Resolved> {
        let untagged = untag(image);
        if let Some(argv) = self
            .registered
            .get(image)
            .or_else(|| self.registered.get(untagged))
        {
            return Some(Resolved {
                entrypoint: argv.clone(),
                cmd: Vec::new(),
                path_prefix: None,
            });
        }
        let base = untagged.rsplit('/').next().unwrap_or(untagged);
        if base == "python" {
            return Some(Resolved {
                entrypoint: Vec::new(),
                cmd: vec!["python3".into()],
                path_prefix: self.python_dir.get_or_init(Images::find_python_dir).clone(),
            });
        }
        if SHELL_IMAGES.contains(&base) {
            return Some(Resolved {
                entrypoint: Vec::new(),
                cmd: vec!["/bin/sh".into()],
                path_prefix: None,
            });
        }
        None
    }
}

/// The image without its tag or digest (`repo:tag`, `repo@sha256:...`; a registry's port is
/// not a tag).
fn untag(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(i, _)| i);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_resolve_by_name_tag_and_builtin() {
        let images = Images::new(
            &[
                "worker=/usr/bin/env python3 -u".into(),
                "exact:1.0=/bin/true".into(),
            ],
            Some("/opt/py/bin".into()),
        )
        .unwrap();
        let worker = images.resolve("worker:latest").unwrap();
        assert_eq!(worker.entrypoint, ["/usr/bin/env", "python3", "-u"]);
        assert_eq!(
            images.resolve("exact:1.0").unwrap().entrypoint,
            ["/bin/true"]
        );
        assert!(images.resolve("exact").is_none());
        let py = images
            .resolve("public.ecr.aws/docker/library/python:3.12-slim")
            .unwrap();
        assert_eq!(py.cmd, ["python3"]);
        assert_eq!(py.path_prefix, Some(PathBuf::from("/opt/py/bin")));
        assert_eq!(images.resolve("alpine:3.19").unwrap().cmd, ["/bin/sh"]);
        assert!(images.resolve("localhost:5000/nginx").is_none());
        assert!(images.resolve("nginx@sha256:abc").is_none());
        assert!(Images::new(&["noequals".into()], None).is_err());
    }
}
