//! Locates workspace executables for tests that must run real processes
//! (plugins, the confd binary), building each package at most once per test
//! process so a test never runs a stale binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Builds `package` with `cargo build -p` (once per test process) in the
/// profile the running test was built with, and returns the path of its
/// executable `bin` in the target directory.
///
/// Panics with cargo's output when the build fails or the executable is
/// missing afterwards: a test that needs the binary cannot go on without it.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let dir = profile_dir();
    build_once(package, &dir);
    let path = dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "`cargo build -p {package}` succeeded but {} does not exist; is `{bin}` a binary of `{package}`?",
        path.display()
    );
    path
}

/// The workspace root, found from this crate's own manifest directory
/// (`<root>/integration/support`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .expect("confd-test-support lives two levels below the workspace root")
        .to_path_buf()
}

/// `target/<profile>`: the directory holding the running test's own build.
/// Test executables live in `target/<profile>/deps`, so this follows
/// `CARGO_TARGET_DIR` and `--release` without being told about them.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test knows its own executable path");
    let deps = exe
        .parent()
        .expect("a test executable lives in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("target/<profile>/deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Set by `scripts/test.sh` after `cargo build --workspace --all-targets`: every
/// executable is then built with the workspace's unified features, and a
/// `cargo build -p` per package would resolve features for that package alone
/// and rebuild shared dependencies (and the binaries) a second time.
const PREBUILT: &str = "CONFD_TEST_BINS_PREBUILT";

fn build_once(package: &str, profile_dir: &Path) {
    if std::env::var_os(PREBUILT).is_some_and(|v| v == "1") {
        return;
    }
    static BUILT: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    // Holding the lock across the build keeps concurrent tests from starting
    // the same cargo build twice; cargo would serialise them anyway.
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = built
        .entry(package.to_string())
        .or_insert_with(|| cargo_build(package, profile_dir));
    if let Err(message) = result {
        panic!("{message}");
    }
}

fn cargo_build(package: &str, profile_dir: &Path) -> Result<(), String> {
    // Runtime CARGO is the cargo running the tests; the compile-time one is a
    // fallback for a test executable started by hand.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("-p")
        .arg(package);
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    if profile != "debug" {
        cmd.arg("--profile").arg(profile);
    }
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build -p {package}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("workspace Cargo.toml is readable");
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn profile_dir_is_the_directory_above_deps() {
        let dir = profile_dir();
        let exe = std::env::current_exe().expect("current exe");
        assert!(exe.starts_with(&dir));
        assert_ne!(dir.file_name().and_then(|n| n.to_str()), Some("deps"));
    }
}
