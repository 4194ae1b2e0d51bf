//! Which program starts an environment of each runtime. `provided.*` runs the package's own
//! `bootstrap`; `python3.*` and `nodejs*` run a small built-in bootstrap (embedded in the
//! binary, written to the work dir at startup) on the machine's interpreter, which speaks the
//! Runtime API like AWS's own runtime clients do.

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

/// The families of runtimes tsumiki runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `provided`, `provided.al2`, `provided.al2023`: the package's `bootstrap`.
    Provided,
    Python,
    Node,
}

/// The family of a Lambda runtime identifier, if tsumiki runs it.
pub fn runtime_kind(runtime: &str) -> Option<RuntimeKind> {
    match runtime {
        "provided" | "provided.al2" | "provided.al2023" => Some(RuntimeKind::Provided),
        "python3.9" | "python3.10" | "python3.11" | "python3.12" | "python3.13" | "python3.14" => {
            Some(RuntimeKind::Python)
        }
        "nodejs18.x" | "nodejs20.x" | "nodejs22.x" | "nodejs24.x" => Some(RuntimeKind::Node),
        _ => None,
    }
}

const PYTHON_BOOTSTRAP: &str = include_str!("bootstraps/python_bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("bootstraps/node_bootstrap.js");

/// How to start an environment's process.
#[derive(Clone, Debug)]
pub(crate) enum Launch {
    /// Run `bootstrap` from the package (or a layer).
    Provided,
    /// Run `program [flags] script`.
    Interpreter {
        program: PathBuf,
        /// Interpreter flags before the script (python's `-S`).
        flags: &'static [&'static str],
        script: PathBuf,
        /// Extra variables for the bootstrap (python: the interpreter's site directories).
        vars: Vec<(String, String)>,
        /// Directory of the interpreter, put on the function's PATH.
        bin_dir: PathBuf,
    },
}

pub(crate) struct Runtimes {
    dir: PathBuf,
    python: OnceCell<Result<Python, String>>,
    node: OnceCell<Result<PathBuf, String>>,
}

impl Runtimes {
    pub(crate) fn install(dir: &Path) -> std::io::Result<Runtimes> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("python_bootstrap.py"), PYTHON_BOOTSTRAP)?;
        std::fs::write(dir.join("node_bootstrap.js"), NODE_BOOTSTRAP)?;
        Ok(Runtimes {
            dir: dir.to_path_buf(),
            python: OnceCell::new(),
            node: OnceCell::new(),
        })
    }

    pub(crate) async fn command_for(&self, runtime: &str) -> Result<Launch, String> {
        match runtime_kind(runtime) {
            Some(RuntimeKind::Provided) => Ok(Launch::Provided),
            Some(RuntimeKind::Python) => {
                let python = self
                    .python
                    .get_or_init(|| resolve_python(runtime.to_string()))
                    .await
                    .clone()?;
                // `-S`: no `site` at start. The machine's site directories go on sys.path as
                // plain entries (PYTHON_SITE_DIRS, read by the bootstrap), as AWS's runtime
                // has its own; `.pth` files are not run, as AWS never runs those of
                // /var/task. `site` with the `.pth` files a machine collects costs a cold
                // start tens of milliseconds (25 ms on the CI VM).
                let mut launch = interpreter(python.program, self.dir.join("python_bootstrap.py"));
                if let Launch::Interpreter { flags, vars, .. } = &mut launch {
                    *flags = &["-S"];
                    vars.push(("TSUMIKI_PYTHON_SITE_DIRS".into(), python.site_dirs));
                }
                Ok(launch)
            }
            Some(RuntimeKind::Node) => {
                let program = self
                    .node
                    .get_or_init(|| async {
                        find_on_path("node").ok_or_else(|| {
                            "The nodejs runtimes need `node` on the PATH of the tsumiki server; \
                             none was found."
                                .to_string()
                        })
                    })
                    .await
                    .clone()?;
                Ok(interpreter(program, self.dir.join("node_bootstrap.js")))
            }
            None => Err(format!(
                "The runtime {runtime} is not supported by tsumiki."
            )),
        }
    }
}

fn interpreter(program: PathBuf, script: PathBuf) -> Launch {
    let bin_dir = program
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    Launch::Interpreter {
        program,
        flags: &[],
        script,
        vars: Vec::new(),
        bin_dir,
    }
}

/// The machine's python: the real interpreter and what `site` would add to `sys.path`.
#[derive(Clone, Debug)]
struct Python {
    program: PathBuf,
    /// `:`-joined directories `site` puts on `sys.path` (site-packages and what `.pth` files
    /// name), in `sys.path` order.
    site_dirs: String,
}

/// The real interpreter behind `python3` on the PATH. Version managers put shell shims there
/// that cost tens of milliseconds per start, so ask Python once for `sys.executable`, and for
/// the entries `site` adds to `sys.path` (those absent under `-S`).
async fn resolve_python(runtime: String) -> Result<Python, String> {
    // One interpreter serves every python3.x runtime: the machine's `python3`.
    for name in ["python3"] {
        let Some(path) = find_on_path(name) else {
            continue;
        };
        let out = tokio::process::Command::new(&path)
            .args(["-c", RESOLVE_PYTHON])
            .output()
            .await;
        if let Ok(out) = out
            && out.status.success()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let exe = lines.next().unwrap_or_default().trim().to_string();
            let version = lines.next().unwrap_or_default().trim().to_string();
            let site_dirs = lines.next().unwrap_or_default().trim().to_string();
            tracing::info!(
                interpreter = %exe,
                %version,
                "python functions run on this interpreter (first asked for {runtime})"
            );
            if !exe.is_empty() {
                return Ok(Python {
                    program: PathBuf::from(exe),
                    site_dirs,
                });
            }
        }
    }
    Err(
        "The python runtimes need `python3` on the PATH of the tsumiki server; none was found."
            .to_string(),
    )
}

/// Prints the executable, the version and the `sys.path` entries `site` added (a child run
/// with `-S` tells which those are), `:`-joined.
const RESOLVE_PYTHON: &str = "import json, subprocess, sys\n\
bare = subprocess.run([sys.executable, '-S', '-c', 'import json, sys; print(json.dumps(sys.path))'],\n\
    capture_output=True, text=True).stdout\n\
bare = set(json.loads(bare)) if bare.strip() else set()\n\
print(sys.executable)\n\
print(sys.version.split()[0])\n\
print(':'.join(p for p in sys.path if p and p not in bare))\n";

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
