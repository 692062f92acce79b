//! The checking runs (`--check-config`, `--validate --mock-data`, `--preflight`), the
//! `output_format` check end to end, and the log formats: what each prints, its exit status,
//! and that none of them writes a destination, leaves a stage file or runs a command.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{
    Scratch, clean_command, confd_bin, copy_confdir, integration_dir, temp_dir, text, tree,
};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of the integration confdir (both engines) with empty `out/go` and `out/jinja`.
fn integration_copy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = temp_dir();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("go")).expect("mkdir");
    std::fs::create_dir_all(out.join("jinja")).expect("mkdir");
    let confdir = dir.path().join("confdir");
    copy_confdir(&integration_dir().join("confdir"), &confdir, &out);
    (dir, confdir, out)
}

/// The default backend is etcd, pointed at a loopback port nobody listens on: a check that
/// contacted it would fail.
fn no_server_args() -> Vec<String> {
    let port = confd_test_support::free_port();
    vec![
        "--node".to_string(),
        format!("http://127.0.0.1:{port}"),
        "--dial-timeout".to_string(),
        "200ms".to_string(),
    ]
}

#[test]
fn check_config_fails_every_error_case_naming_file_and_line_and_writes_nothing() {
    let cases = integration_dir().join("errors");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("read integration/errors")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "cases: {names:?}");
    for case in names {
        let needles = std::fs::read_to_string(case.join("needles")).expect("needles");
        for mode in ["--check-config", "--onetime"] {
            let dir = temp_dir();
            let out = dir.path().join("out");
            std::fs::create_dir_all(&out).expect("mkdir out");
            copy_confdir(&case.join("confdir"), &dir.path().join("confdir"), &out);
            let output = clean_command(&confd_bin())
                .current_dir(dir.path())
                .arg(mode)
                .arg("--confdir")
                .arg(dir.path().join("confdir"))
                .args(no_server_args())
                .output()
                .expect("run confd");
            let case_name = case.file_name().expect("name").to_string_lossy();
            assert_eq!(
                output.status.code(),
                Some(2),
                "{case_name} {mode}\n{}",
                text(&output)
            );
            let err = stderr(&output);
            for needle in needles.lines().filter(|l| !l.is_empty()) {
                assert!(
                    err.contains(needle),
                    "{case_name} {mode}: stderr lacks {needle:?}\n{err}"
                );
            }
            assert!(tree(&out).is_empty(), "{case_name} {mode} wrote something");
        }
    }
}

#[test]
fn check_config_accepts_a_good_confdir_without_any_server() {
    let (dir, confdir, out) = integration_copy();
    std::fs::write(
        dir.path().join("confd.toml"),
        "backend = \"etcd\"\nlog-level = \"debug\"\n",
    )
    .expect("confd.toml");
    let output = clean_command(&confd_bin())
        .current_dir(dir.path())
        .args(["--check-config", "--config-file", "confd.toml", "--confdir"])
        .arg(&confdir)
        .args(no_server_args())
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let said = stdout(&output);
    assert!(
        said.contains("4 template resources") && said.contains("(2 Go, 2 Jinja)"),
        "{said}"
    );
    assert!(said.contains("confd.toml"), "{said}");
    assert!(
        !stderr(&output).contains("starting plugin"),
        "no plugin may start:\n{}",
        text(&output)
    );
    assert!(tree(&out).is_empty(), "nothing written");
}

#[test]
fn check_config_reports_a_bad_confd_toml_with_its_line() {
    let (dir, confdir, _out) = integration_copy();
    std::fs::write(
        dir.path().join("confd.toml"),
        "backend = \"etcd\"\nnoop = maybe\n",
    )
    .expect("confd.toml");
    let output = clean_command(&confd_bin())
        .current_dir(dir.path())
        .args(["--check-config", "--config-file", "confd.toml", "--confdir"])
        .arg(&confdir)
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let err = stderr(&output);
    assert!(
        err.contains("confd.toml") && err.contains("line 2"),
        "{err}"
    );
}

/// The mock data of the integration confdir: its file-backend data, as YAML and as JSON.
fn mock_files(dir: &Path) -> [PathBuf; 2] {
    let yaml = integration_dir().join("data/myapp.yaml");
    let json = dir.join("myapp.json");
    std::fs::write(
        &json,
        r#"{"myapp": {"database": {"host": "127.0.0.1", "port": 5432, "user": "rob"},
            "upstream": {"app1": "10.0.1.10:8080", "app2": "10.0.1.11:8080"}}}"#,
    )
    .expect("write json mock");
    [yaml, json]
}

#[test]
fn validate_renders_every_template_of_both_engines_and_touches_nothing() {
    let (dir, confdir, out) = integration_copy();
    let expected_app = std::fs::read_to_string(integration_dir().join("expect/app.conf"))
        .expect("expect/app.conf");
    let expected_upstream = std::fs::read_to_string(integration_dir().join("expect/upstream.conf"))
        .expect("expect/upstream.conf");
    for mock in mock_files(dir.path()) {
        let output = clean_command(&confd_bin())
            .current_dir(dir.path())
            .args(["--validate", "--mock-data"])
            .arg(&mock)
            .arg("--confdir")
            .arg(&confdir)
            .args(no_server_args())
            .output()
            .expect("run confd");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let said = stdout(&output);
        for engine in ["go", "jinja"] {
            for (name, want) in [
                ("app.conf", &expected_app),
                ("upstream.conf", &expected_upstream),
            ] {
                let header = format!("==> {}", out.join(engine).join(name).display());
                let at = said
                    .find(&header)
                    .unwrap_or_else(|| panic!("{header} missing:\n{said}"));
                let body = &said[at..];
                let body = &body[body.find('\n').expect("header line") + 1..];
                assert!(body.starts_with(want.as_str()), "{engine}/{name}:\n{said}");
            }
        }
        assert!(tree(&out).is_empty(), "nothing written: {:?}", tree(&out));
    }
}

#[test]
fn validate_diff_shows_changes_and_runs_no_command() {
    let s = Scratch::new();
    let marker = s.path().join("ran");
    s.template(
        "app.tmpl",
        "name={{getv \"/app/name\"}}\nport={{getv \"/app/port\"}}\n",
    )
    .resource(
        "app.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n\
                 check_cmd = \"touch {0}\"\nreload_cmd = \"touch {0}\"\n",
            marker.display()
        ),
    );
    std::fs::write(s.out().join("app.conf"), "name=demo\nport=1\n").expect("pre");
    let mock = s.path().join("mock.yaml");
    std::fs::write(&mock, "app:\n  name: demo\n  port: 2\n").expect("mock");
    let output = clean_command(&s.confd())
        .current_dir(s.path())
        .args(["--validate", "--diff", "--backend", "env", "--mock-data"])
        .arg(&mock)
        .arg("--confdir")
        .arg(s.confdir())
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let said = stdout(&output);
    assert!(said.contains("-port=1\n+port=2\n"), "{said}");
    assert!(
        said.contains("(current)") && said.contains("(proposed)"),
        "{said}"
    );
    assert!(!marker.exists(), "no command may run");
    assert_eq!(
        std::fs::read_to_string(s.out().join("app.conf")).expect("dest"),
        "name=demo\nport=1\n"
    );
    assert_eq!(tree(&s.out()).len(), 1, "no stage file");
}

#[test]
fn validate_fails_a_template_the_mock_data_breaks_and_a_missing_mock_file() {
    let s = Scratch::new();
    s.template("app.json.tmpl", "{\"port\": {{getv \"/app/port\"}}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.json.tmpl\"\ndest = \"@OUT@/app.json\"\nkeys = [\"/app\"]\n\
             output_format = \"json\"\n",
        );
    let mock = s.path().join("mock.json");
    std::fs::write(&mock, r#"{"app": {"port": "eighty"}}"#).expect("mock");
    let run = |mock: &Path| {
        clean_command(&s.confd())
            .current_dir(s.path())
            .args(["--validate", "--backend", "env", "--mock-data"])
            .arg(mock)
            .arg("--confdir")
            .arg(s.confdir())
            .output()
            .expect("run confd")
    };
    let output = run(&mock);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let err = stderr(&output);
    assert!(
        err.contains("app.json") && err.contains("not valid JSON at line 1, column 10"),
        "{err}"
    );
    let output = run(&s.path().join("absent.yaml"));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("absent.yaml"), "{}", text(&output));
    assert!(tree(&s.out()).is_empty());
}

#[test]
fn output_format_failure_keeps_the_old_file_and_exits_1() {
    let s = Scratch::new();
    s.template(
        "app.yaml.tmpl",
        "name: {{getv \"/app/name\"}}\nlist: [{{getv \"/app/name\"}}\n",
    )
    .resource(
        "app.toml",
        "[template]\nsrc = \"app.yaml.tmpl\"\ndest = \"@OUT@/app.yaml\"\nkeys = [\"/app\"]\n\
             output_format = \"yaml\"\n",
    );
    std::fs::write(s.out().join("app.yaml"), "name: old\n").expect("pre");
    let output = s.run_env(&[("APP_NAME", "new")], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let err = stderr(&output);
    assert!(err.contains("not valid YAML at line"), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.out().join("app.yaml")).expect("dest"),
        "name: old\n"
    );
    assert_eq!(tree(&s.out()).len(), 1, "no stage file left");
}

#[test]
fn preflight_reports_missing_keys_and_writes_nothing() {
    let s = Scratch::new();
    s.template("app.tmpl", "name={{getv \"/app/name\"}}\n")
        .template("db.tmpl", "host={{getv \"/db/host\"}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
        )
        .resource(
            "db.toml",
            "[template]\nsrc = \"db.tmpl\"\ndest = \"@OUT@/db.conf\"\nkeys = [\"/db\"]\n",
        );
    let output = s.run_env(&[("APP_NAME", "demo")], &["--preflight"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = stdout(&output);
    assert!(said.contains("backend env: ok"), "{said}");
    let app = said
        .lines()
        .find(|l| l.contains("app.conf"))
        .expect("app line");
    assert!(app.ends_with(": ok"), "{said}");
    let db = said
        .lines()
        .find(|l| l.contains("db.conf"))
        .expect("db line");
    assert!(db.contains("MISSING: no value under /db"), "{said}");
    assert!(tree(&s.out()).is_empty(), "preflight writes nothing");

    let output = s.run_env(
        &[("APP_NAME", "demo"), ("DB_HOST", "10.0.0.1")],
        &["--preflight"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(tree(&s.out()).is_empty(), "preflight writes nothing");
}

#[test]
fn preflight_names_an_unhealthy_backend() {
    let s = Scratch::new();
    s.template("app.tmpl", "name={{getv \"/app/name\"}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
        );
    let data = s.path().join("data.yaml");
    std::fs::write(&data, "app:\n  name: demo\n").expect("data");
    let output = clean_command(&s.confd())
        .current_dir(s.path())
        .args(["--preflight", "--backend", "file", "--file"])
        .arg(&data)
        .arg("--confdir")
        .arg(s.confdir())
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    std::fs::remove_file(&data).expect("rm data");
    let output = clean_command(&s.confd())
        .current_dir(s.path())
        .args(["--preflight", "--backend", "file", "--file"])
        .arg(&data)
        .arg("--confdir")
        .arg(s.confdir())
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = stdout(&output);
    assert!(said.contains("backend file: UNHEALTHY"), "{said}");
    assert!(said.contains("data.yaml"), "{said}");
}

/// A value that must never reach a log line.
const SECRET: &str = "s3cr3t-Zq8v-never-logged";

#[test]
fn json_logs_are_json_lines_and_no_store_value_is_logged_at_trace() {
    let s = Scratch::new();
    s.template("app.tmpl", "password={{getv \"/app/password\"}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n\
             reload_cmd = \"true\"\n",
        );
    let data = s.path().join("data.yaml");
    std::fs::write(&data, format!("app:\n  password: {SECRET}\n")).expect("data");
    for (backend, format) in [
        ("env", "json"),
        ("env", "text"),
        ("file", "json"),
        ("file", "text"),
    ] {
        let _ = std::fs::remove_file(s.out().join("app.conf"));
        let mut cmd = clean_command(&s.confd());
        cmd.current_dir(s.path())
            .args(["--onetime", "--log-level", "trace", "--log-format", format])
            .args(["--backend", backend, "--confdir"])
            .arg(s.confdir());
        if backend == "file" {
            cmd.arg("--file").arg(&data);
        } else {
            cmd.env("APP_PASSWORD", SECRET);
        }
        let output = cmd.output().expect("run confd");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert_eq!(
            std::fs::read_to_string(s.out().join("app.conf")).expect("dest"),
            format!("password={SECRET}\n"),
            "{backend}: the value did reach the file"
        );
        let err = stderr(&output);
        assert!(
            err.lines().count() > 10,
            "{backend} {format}: trace logging is on:\n{err}"
        );
        assert!(
            !err.contains(SECRET) && !stdout(&output).contains(SECRET),
            "{backend} {format}: a store value was logged:\n{err}"
        );
        if format == "json" {
            let mut saw_update = false;
            for line in err.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                for key in ["time", "level", "msg"] {
                    assert!(v.get(key).is_some(), "{key} missing: {line}");
                }
                if v["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("has been updated"))
                {
                    saw_update = true;
                    assert!(v["dest"].as_str().is_some_and(|d| d.ends_with("app.conf")));
                    assert!(
                        v["resource"]
                            .as_str()
                            .is_some_and(|d| d.ends_with("app.toml"))
                    );
                }
            }
            assert!(saw_update, "{err}");
        }
    }
}

#[test]
fn json_logs_carry_the_error_field_and_the_final_failure_as_json() {
    let s = Scratch::new();
    s.template("app.tmpl", "x={{getv \"/app/missing\"}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
        );
    let output = s.run_env(&[], &["--log-format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let lines: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|v| v["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line: {lines:?}"));
    assert_eq!(failed["backend"], "env");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("/app/missing"))
    );
    assert!(
        failed["dest"]
            .as_str()
            .is_some_and(|d| d.ends_with("app.conf"))
    );

    // A usage error at start is one JSON line too.
    let output = clean_command(&s.confd())
        .current_dir(s.path())
        .args([
            "--onetime",
            "--log-format",
            "json",
            "--backend",
            "nope",
            "--confdir",
        ])
        .arg(s.confdir())
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    for line in stderr(&output).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{line}"
        );
    }
}
