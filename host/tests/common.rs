//! Shared helpers: a clean environment for the binary under test, copies of confdirs with
//! `@OUT@` filled in, and directory comparisons.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The confd binary cargo built for these tests.
pub fn confd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_confd"))
}

/// `<workspace>/integration`.
pub fn integration_dir() -> PathBuf {
    confd_test_support::workspace_root().join("integration")
}

/// A command with an empty environment (plus a minimal PATH), so nothing from the developer's
/// shell (CONFD_*, RUST_LOG, a confd.toml path) leaks into a test.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    cmd
}

/// Copies `src` to `dest` recursively, replacing `@OUT@` with `out` in every file.
pub fn copy_confdir(src: &Path, dest: &Path, out: &Path) {
    std::fs::create_dir_all(dest).expect("create confdir copy");
    for entry in std::fs::read_dir(src).expect("read confdir") {
        let entry = entry.expect("dir entry");
        let target = dest.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_confdir(&entry.path(), &target, out);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("read confdir file");
            let text = text.replace("@OUT@", out.to_str().expect("utf-8 temp path"));
            std::fs::write(&target, text).expect("write confdir file");
        }
    }
}

/// Every file below `dir` (relative path → content), dotfiles included.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("below root");
            out.insert(
                rel.display().to_string(),
                std::fs::read(&path).expect("read output file"),
            );
        }
    }
}

/// Permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Combined stdout and stderr, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The environment the env backend reads: `integration/data/env.list`.
pub fn env_list() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(integration_dir().join("data/env.list")).expect("read env.list");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE line");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A temporary directory under cargo's per-target scratch directory, on the same file
/// system as the built binaries so [`copy_exe`] can hard-link them.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// Places an executable at `to`: a hard link when possible (debug binaries are hundreds of
/// megabytes), else a copy.
///
/// The copy runs in a `cp` child process on purpose: a write descriptor opened in this
/// (multi-threaded) test process leaks into children other tests fork at the same moment,
/// and executing the copy then fails with ETXTBSY ("text file busy").
pub fn copy_exe(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_ok() {
        return;
    }
    let status = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp {} {} failed",
        from.display(),
        to.display()
    );
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Writes an executable script at `path` without ever holding a write descriptor to it in
/// this process (see [`copy_exe`]).
pub fn write_script(path: &Path, text: &str) {
    let source = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(source.path(), text).expect("write script source");
    copy_exe(source.path(), path);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A temporary directory with an `out/` directory and a confdir built from resource and
/// template files given inline.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = temp_dir();
        std::fs::create_dir_all(dir.path().join("out")).expect("mkdir out");
        std::fs::create_dir_all(dir.path().join("confdir/conf.d")).expect("mkdir conf.d");
        std::fs::create_dir_all(dir.path().join("confdir/templates")).expect("mkdir templates");
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn confdir(&self) -> PathBuf {
        self.path().join("confdir")
    }

    /// Writes `conf.d/<name>`, with `@OUT@` replaced by the output directory.
    pub fn resource(&self, name: &str, text: &str) -> &Scratch {
        let text = text.replace("@OUT@", self.out().to_str().expect("utf-8 temp path"));
        std::fs::write(self.confdir().join("conf.d").join(name), text).expect("write resource");
        self
    }

    pub fn template(&self, name: &str, text: &str) -> &Scratch {
        std::fs::write(self.confdir().join("templates").join(name), text).expect("write template");
        self
    }

    /// A private confd in `<scratch>/confd-bin/`: plugins that other builds left next to the
    /// shared binary (target/debug/confd-database-env...) would otherwise replace builtins.
    pub fn confd(&self) -> PathBuf {
        let dir = self.path().join("confd-bin");
        let confd = dir.join("confd");
        if !confd.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            copy_exe(&confd_bin(), &confd);
        }
        confd
    }

    /// confd --onetime --backend env --confdir <confdir> <extra>, run from the scratch dir.
    pub fn run_env(&self, vars: &[(&str, &str)], extra: &[&str]) -> Output {
        let mut cmd = clean_command(&self.confd());
        cmd.current_dir(self.path())
            .args(["--onetime", "--backend", "env", "--confdir"])
            .arg(self.confdir())
            .args(extra);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run confd")
    }
}

pub use confd_test_support::http_get;
