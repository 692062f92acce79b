//! Snapshot tests of what a person sees: help, version, backend listing and the usage errors,
//! each with its exit status.

use std::process::Command;

use insta_cmd::assert_cmd_snapshot;

use crate::common::{Scratch, clean_command, confd_bin, copy_exe, text};

fn confd_in(dir: &std::path::Path) -> Command {
    let mut cmd = clean_command(&confd_bin());
    cmd.current_dir(dir);
    cmd
}

#[test]
fn help() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).arg("--help"));
}

#[test]
fn help_hides_internal_plugin() {
    let s = Scratch::new();
    let out = confd_in(s.path()).arg("--help").output().expect("run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("internal-plugin"));
}

#[test]
fn version() {
    let s = Scratch::new();
    // The commit and the compiler change from build to build; the next test checks them.
    insta::with_settings!({filters => vec![
        (r"(?m)^commit:   \S+$", "commit:   [commit]"),
        (r"(?m)^rustc:    .+$", "rustc:    [rustc]"),
    ]}, {
        assert_cmd_snapshot!(confd_in(s.path()).arg("--version"));
    });
}

#[test]
fn version_names_the_commit_and_the_compiler_it_was_built_with() {
    let s = Scratch::new();
    let out = confd_in(s.path()).arg("--version").output().expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
            .trim()
            .to_string()
    };
    let root = confd_test_support::workspace_root();
    let head = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    // A source tree without git metadata builds a binary that says "unknown".
    assert_eq!(line("commit:"), head.as_deref().unwrap_or("unknown"));
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .expect("run rustc -V");
    let rustc = String::from_utf8_lossy(&rustc.stdout);
    assert_eq!(
        line("rustc:"),
        rustc
            .trim()
            .strip_prefix("rustc ")
            .expect("rustc -V says rustc")
    );
}

/// host/build.rs's own commit lookup, compiled into this test.
#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

#[test]
fn the_commit_is_unknown_outside_the_repository_and_below_its_top_level() {
    let s = Scratch::new();
    assert_eq!(build_script::git_commit(s.path()), "unknown");
    // A source tarball unpacked inside another repository must not report that one's commit.
    let nested = confd_test_support::workspace_root().join("host");
    assert_eq!(build_script::git_commit(&nested), "unknown");
}

#[test]
fn version_single_dash() {
    let s = Scratch::new();
    let out = confd_in(s.path()).arg("-version").output().expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("confd "));
}

#[test]
fn bad_flag() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).arg("--bogus"));
}

#[test]
fn invalid_log_level() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).args(["--log-level", "loud", "--onetime"]));
}

#[test]
fn unknown_backend() {
    // A private copy of confd, so plugins lying next to the build's confd are not listed.
    let s = Scratch::new();
    copy_exe(&confd_bin(), &s.path().join("confd"));
    let mut cmd = clean_command(&s.path().join("confd"));
    cmd.current_dir(s.path());
    assert_cmd_snapshot!(cmd.args(["--onetime", "--backend", "etdc", "--confdir", "confdir"]));
}

#[test]
fn bad_confd_toml_key() {
    let s = Scratch::new();
    std::fs::write(
        s.path().join("confd.toml"),
        "backend = \"env\"\nnoopp = true\n",
    )
    .expect("write");
    assert_cmd_snapshot!(confd_in(s.path()).args(["--config-file", "confd.toml", "--onetime"]));
}

#[test]
fn missing_explicit_config_file() {
    // The original confd skips it silently; a warning here, and the run goes on.
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("confdir/conf.d")).expect("mkdir");
    insta::with_settings!({filters => vec![(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "[TIME]")]}, {
        assert_cmd_snapshot!(confd_in(s.path()).args([
            "--config-file",
            "nope.toml",
            "--onetime",
            "--backend",
            "env",
            "--confdir",
            "confdir"
        ]));
    });
}

#[test]
fn missing_confdir() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).args([
        "--onetime",
        "--backend",
        "env",
        "--confdir",
        "no-such-dir"
    ]));
}

#[test]
fn internal_plugin_refuses_to_run_without_the_host() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).args(["internal-plugin", "database", "env"]));
}

#[test]
fn internal_plugin_unknown_name() {
    let s = Scratch::new();
    assert_cmd_snapshot!(confd_in(s.path()).args(["internal-plugin", "database", "nope"]));
}

/// The listing names absolute plugin paths; replace the temporary directories so the
/// snapshot is stable.
#[test]
fn list_backends() {
    let s = Scratch::new();
    let bin = s.path().join("bin");
    let cwd = s.path().join("work");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    copy_exe(&confd_bin(), &bin.join("confd"));
    for (dir, name) in [
        (&bin, "confd-database-vault"),
        (&bin, "confd-database-mine"),
        (&cwd, "confd-database-mine.exe"),
        (&cwd, "confd-database-env"),
    ] {
        std::fs::write(dir.join(name), "#!/bin/sh\nexit 1\n").expect("write fake plugin");
        std::fs::set_permissions(
            dir.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod fake plugin");
    }
    // Not executable (like cargo's dep-info files): not a plugin.
    std::fs::write(bin.join("confd-database-skipped.d"), "deps").expect("write");
    let out = clean_command(&bin.join("confd"))
        .current_dir(&cwd)
        .arg("--list-backends")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let root = s.path().to_str().expect("utf-8 temp path");
    let listing = String::from_utf8_lossy(&out.stdout).replace(root, "[TMP]");
    insta::assert_snapshot!(listing);
}

#[test]
fn settings_from_environment_and_file_reach_the_run() {
    // CONFD_BACKEND from the environment beats confd.toml's backend: a run with an unknown
    // backend in the file but env in the environment succeeds.
    let s = Scratch::new();
    std::fs::write(
        s.path().join("confd.toml"),
        "backend = \"nope\"\nconfdir = \"confdir\"\nonetime = true\n",
    )
    .expect("write");
    let out = confd_in(s.path())
        .args(["--config-file", "confd.toml"])
        .env("CONFD_BACKEND", "env")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let out = confd_in(s.path())
        .args(["--config-file", "confd.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nope\""),
        "{}",
        text(&out)
    );
}
