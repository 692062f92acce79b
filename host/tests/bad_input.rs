//! Bad input: each run must fail with a message naming the file or key, the documented exit
//! status, and no destination touched (no new file, no stage file, an existing one intact).

use std::time::{Duration, Instant};

use crate::common::{Scratch, text, tree};

const GOOD: &str =
    "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/good.conf\"\nkeys = [\"/app\"]\n";

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit status, that stderr mentions every needle, and that `out/` is unchanged.
fn assert_failed(
    s: &Scratch,
    output: &std::process::Output,
    code: i32,
    needles: &[&str],
    before: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    let err = stderr(output);
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}\n{}",
            text(output)
        );
    }
    assert_eq!(
        &tree(&s.out()),
        before,
        "out/ must be untouched\n{}",
        text(output)
    );
}

#[test]
fn malformed_toml_fails_before_any_resource_is_written() {
    let s = Scratch::new();
    s.template("good.tmpl", "ok {{getv \"/app/x\"}}\n")
        .resource("a-good.toml", GOOD)
        .resource("b-bad.toml", "[template\nsrc = \"good.tmpl\"\n");
    let before = tree(&s.out());
    let output = s.run_env(&[("APP_X", "1")], &[]);
    assert_failed(&s, &output, 2, &["b-bad.toml"], &before);
}

#[test]
fn missing_src_names_the_template() {
    let s = Scratch::new();
    s.resource(
        "a.toml",
        "[template]\nsrc = \"nope.tmpl\"\ndest = \"@OUT@/a.conf\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 2, &["a.toml", "nope.tmpl"], &before);
}

#[test]
fn template_syntax_error_names_file_and_line() {
    let s = Scratch::new();
    s.template("broken.tmpl", "line one\nline two\n{{if}}\n")
        .resource(
            "a.toml",
            "[template]\nsrc = \"broken.tmpl\"\ndest = \"@OUT@/a.conf\"\n",
        );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 2, &["broken.tmpl", "3"], &before);
}

#[test]
fn jinja_syntax_error_names_file_and_line() {
    let s = Scratch::new();
    s.template("broken.j2", "line one\n{% if %}\n").resource(
        "a.toml",
        "[template]\nsrc = \"broken.j2\"\ndest = \"@OUT@/a.conf\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 2, &["broken.j2", "2"], &before);
}

#[test]
fn missing_key_names_the_key_and_keeps_the_old_destination() {
    let s = Scratch::new();
    std::fs::write(s.out().join("a.conf"), "old\n").expect("write");
    s.template("a.tmpl", "{{getv \"/app/missing\"}}\n")
        .resource(
            "a.toml",
            "[template]\nsrc = \"a.tmpl\"\ndest = \"@OUT@/a.conf\"\nkeys = [\"/app\"]\n",
        );
    let before = tree(&s.out());
    let output = s.run_env(&[("APP_OTHER", "1")], &[]);
    assert_failed(&s, &output, 1, &["/app/missing"], &before);
}

#[test]
fn invalid_mode_is_a_load_error() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource(
        "a.toml",
        "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/a.conf\"\nmode = \"rw-r--r--\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 2, &["a.toml", "rw-r--r--"], &before);
}

#[test]
fn invalid_owner_names_the_user() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource(
        "a.toml",
        "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/a.conf\"\nowner = \"no-such-user-confd\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{}",
        text(&output)
    );
    assert_failed(
        &s,
        &output,
        output.status.code().unwrap_or(-1),
        &["no-such-user-confd"],
        &before,
    );
}

#[test]
fn missing_destination_directory_is_not_created() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource(
        "a.toml",
        "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/missing/a.conf\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    // It concerns this resource only: it fails (exit 1, naming the file), nothing is created.
    assert_failed(&s, &output, 1, &["a.toml", "missing/a.conf"], &before);
    assert!(!s.out().join("missing").exists());
}

#[test]
fn failing_check_cmd_keeps_the_destination() {
    let s = Scratch::new();
    std::fs::write(s.out().join("a.conf"), "old\n").expect("write");
    let marker = s.path().join("reloaded");
    s.template("good.tmpl", "new\n").resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/a.conf\"\ncheck_cmd = \"grep -q old {{{{.src}}}}\"\nreload_cmd = \"touch {}\"\n",
            marker.display()
        ),
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 1, &["a.conf"], &before);
    assert!(
        !marker.exists(),
        "reload_cmd must not run after a failed check"
    );
}

#[test]
fn hanging_check_cmd_times_out() {
    let s = Scratch::new();
    s.template("good.tmpl", "new\n").resource(
        "a.toml",
        "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/a.conf\"\ncheck_cmd = \"sleep 60\"\n",
    );
    let before = tree(&s.out());
    let start = Instant::now();
    let output = s.run_env(&[], &["--check-cmd-timeout", "500ms"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert_failed(&s, &output, 1, &["sleep 60"], &before);
    assert!(
        stderr(&output).contains("timed out") || stderr(&output).contains("timeout"),
        "{}",
        text(&output)
    );
}

#[test]
fn unknown_backend_lists_known_ones_and_writes_nothing() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource("a.toml", GOOD);
    let before = tree(&s.out());
    let mut cmd = crate::common::clean_command(&s.confd());
    let output = cmd
        .current_dir(s.path())
        .args(["--onetime", "--backend", "nope", "--confdir"])
        .arg(s.confdir())
        .output()
        .expect("run");
    assert_failed(
        &s,
        &output,
        2,
        &["\"nope\"", "env", "file", "etcd", "redis", "consul"],
        &before,
    );
}

#[test]
fn resource_naming_an_unknown_backend() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource(
        "a.toml",
        "[template]\nsrc = \"good.tmpl\"\ndest = \"@OUT@/a.conf\"\nbackend = \"nope\"\n",
    );
    let before = tree(&s.out());
    let output = s.run_env(&[], &[]);
    assert_failed(&s, &output, 2, &["\"nope\"", "known backends"], &before);
}

#[test]
fn plugin_that_cannot_start_is_exit_1_naming_it() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource("a.toml", GOOD);
    let plugin = s.path().join("confd-database-broken");
    crate::common::write_script(&plugin, "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n");
    let before = tree(&s.out());
    let mut cmd = crate::common::clean_command(&s.confd());
    let output = cmd
        .current_dir(s.path())
        .args(["--onetime", "--backend", "broken", "--confdir"])
        .arg(s.confdir())
        .output()
        .expect("run");
    assert_failed(&s, &output, 1, &["broken", "cannot start"], &before);
}

#[test]
fn plugin_rejecting_its_settings_is_exit_1_naming_backend_and_key() {
    let s = Scratch::new();
    s.template("good.tmpl", "x\n").resource("a.toml", GOOD);
    let before = tree(&s.out());
    let mut cmd = crate::common::clean_command(&s.confd());
    let output = cmd
        .current_dir(s.path())
        .args(["--onetime", "--backend", "file", "--confdir"])
        .arg(s.confdir())
        .output()
        .expect("run");
    assert_failed(
        &s,
        &output,
        1,
        &["file backend rejected its settings", "\"file\""],
        &before,
    );
}

/// The one rule for bytes that are not UTF-8: the resource asking for the key fails with an
/// error naming the backend and the key, the other resources still render, and the exit status
/// is 1.
#[test]
fn a_value_that_is_not_utf8_fails_only_its_resource() {
    use std::os::unix::ffi::OsStrExt as _;
    let s = Scratch::new();
    s.template("blob.tmpl", "{{getv \"/bad/blob\"}}\n")
        .template("good.tmpl", "ok {{getv \"/app/x\"}}\n")
        .resource(
            "bad.toml",
            "[template]\nsrc = \"blob.tmpl\"\ndest = \"@OUT@/blob.conf\"\nkeys = [\"/bad\"]\n",
        )
        .resource("good.toml", GOOD);
    let output = crate::common::clean_command(&s.confd())
        .current_dir(s.path())
        .args(["--onetime", "--backend", "env", "--confdir"])
        .arg(s.confdir())
        .env("APP_X", "1")
        .env("BAD_BLOB", std::ffi::OsStr::from_bytes(b"ab\xffcd"))
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let err = stderr(&output);
    assert!(
        err.contains("the value of key \"/bad/blob\" is not UTF-8 text") && err.contains("\"env\""),
        "the error names the backend and the key\n{}",
        text(&output)
    );
    let out = tree(&s.out());
    assert_eq!(
        out.keys().collect::<Vec<_>>(),
        ["good.conf"],
        "{}",
        text(&output)
    );
    assert_eq!(out["good.conf"], b"ok 1\n");
}
