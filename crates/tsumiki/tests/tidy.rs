//! House rules that are cheap to check, as ordinary tests (rust-analyzer's tidy).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Workspace members as the root manifest lists them.
fn members() -> Vec<String> {
    let manifest = read(&root().join("Cargo.toml"));
    let start = manifest.find("members = [").expect("a members list");
    let end = start
        + manifest[start..]
            .find(']')
            .expect("the end of the members list");
    manifest[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn architecture_names_every_crate() {
    let map = read(&root().join("ARCHITECTURE.md"));
    for member in members() {
        assert!(
            map.contains(&format!("`{member}`")),
            "ARCHITECTURE.md has no entry for `{member}`"
        );
    }
}

#[test]
fn every_library_opens_with_a_doc_paragraph() {
    for member in members() {
        let lib = root().join(&member).join("src/lib.rs");
        if lib.exists() {
            assert!(
                read(&lib).starts_with("//!"),
                "{} must open with a //! paragraph",
                lib.display()
            );
        }
    }
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme = read(&root().join("README.md"));
    let first_block = readme.split("```").nth(1).expect("a code block");
    assert!(first_block.contains("./scripts/demo.sh"), "{first_block}");
    assert!(first_block.contains("./scripts/test.sh"), "{first_block}");
    assert!(
        read(&root().join(".ci/run")).contains("./scripts/test.sh"),
        ".ci/run must run the README's test command"
    );
}
