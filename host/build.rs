//! Two things the `confd` binary needs from its build: the commit and compiler that `--version`
//! names (as the Go confd prints its Git SHA and Go version), and the release link order below.
//!
//! Link order: the release `confd` is linked with the functions a one-shot run executes placed together at the
//! start of .text (host/symbol-order.txt, made by scripts/symbol-order.sh from the current
//! build). The kernel maps code in 64 KB or larger chunks around each page touched; with the hot
//! functions scattered over the whole text, the host and each builtin plugin process mapped
//! nearly all of it.
//!
//! What it buys, measured (`make bench`, oneshot, with and without the order in one run): the
//! PSS of host + plugin at the peak is 2.7-2.9 MiB lower, 12.8-15.6 → 10.1-12.8 MiB over the four
//! one-shot rows, and a one-resource run 9.1 → 6.0 MiB; wall time the same within noise.
//! To check that it still pays: `CONFD_SYMBOL_ORDER=0 cargo build --release -p confd` relinks
//! without it (nothing else is rebuilt); compare the two binaries with the oneshot bench's
//! `CONFD_BENCH_BASELINE` (docs/performance.md).
//!
//! The names carry crate hashes that change with every rustc or dependency update, and the
//! linker skips names it does not find: `make bench` counts the names present in the build and
//! fails when most are missing. Only for release builds on x86_64 Linux, where rustc links with
//! lld (the option is lld's); `CONFD_SYMBOL_ORDER=0` turns it off, for another linker.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return;
    };
    version_info(&dir);
    symbol_order(&dir);
}

/// `CONFD_GIT_COMMIT` and `CONFD_RUSTC_VERSION` for `env!`. A packager building from a tarball
/// can set `CONFD_GIT_COMMIT` themselves; otherwise the commit comes from git, or is "unknown".
fn version_info(manifest_dir: &Path) {
    println!("cargo:rerun-if-env-changed=CONFD_GIT_COMMIT");
    let root = manifest_dir.parent().unwrap_or(manifest_dir);
    let commit = std::env::var("CONFD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| git_commit(root));
    println!("cargo:rustc-env=CONFD_GIT_COMMIT={}", commit.trim());
    // A new commit or checkout rewrites one of these; only existing paths are named, since
    // cargo reruns the script on every build for a path that does not exist.
    for path in git_state_files(root) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = run(Command::new(rustc).arg("-V")).unwrap_or_else(|| "unknown".to_string());
    let version = version.strip_prefix("rustc ").unwrap_or(&version);
    println!("cargo:rustc-env=CONFD_RUSTC_VERSION={version}");
}

/// The abbreviated commit checked out in the repository whose top level is `root`, or
/// "unknown": a source tarball has no .git, and one unpacked inside another repository (a
/// distribution's packaging tree) must not report that repository's commit.
pub fn git_commit(root: &Path) -> String {
    let top = git(root, &["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let ours = top.is_some_and(|top| same_dir(&top, root));
    ours.then(|| git(root, &["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".to_string())
}

/// HEAD, the branch file it names and packed-refs, wherever this checkout (or worktree) keeps
/// them.
fn git_state_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut names = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        names.push(branch);
    }
    for name in names {
        if let Some(path) = git(
            root,
            &["rev-parse", "--path-format=absolute", "--git-path", &name],
        ) {
            let path = PathBuf::from(path);
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    run(Command::new("git").arg("-C").arg(dir).args(args))
}

/// The command's first stdout line when it succeeded with one.
fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn symbol_order(manifest_dir: &Path) {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CONFD_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("CONFD_SYMBOL_ORDER").is_ok_and(|v| v == "0");
    let order = manifest_dir.join("symbol-order.txt");
    if release && target == "x86_64-unknown-linux-gnu" && !off && order.exists() {
        // lld's warnings about names it did not find stay on; rustc shows linker output with
        // `-W linker-messages`.
        println!(
            "cargo:rustc-link-arg-bin=confd=-Wl,--symbol-ordering-file={}",
            order.display()
        );
    }
}
