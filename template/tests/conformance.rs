//! Renders templates from the conformance cases (recorded from the original Go confd) with the
//! Go engine and an explicit store, and compares byte for byte with what confd wrote.
//!
//! Each directory under `tests/inputs/conformance/` is one case: `templates/` (copied unchanged),
//! `expect/` (confd's output), and `fixture.json` with, per resource, the template, the expected
//! file and the store the env or file backend gives that resource (translated from the case's
//! data). `@OUT@` in templates is replaced by a temporary output directory, as the case runner
//! does. A fixture with an `env` map runs in a child test process that has those variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use confd_template::{EngineKind, Store, Template, TemplateOptions};

const CHILD_VAR: &str = "CONFD_TEMPLATE_CONFORMANCE_CASE";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs/conformance")
}

fn fixture(case: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(case.join("fixture.json")).expect("fixture.json readable");
    serde_json::from_str(&text).expect("fixture.json is JSON")
}

/// Renders every resource of one case; returns a description of each mismatch, and the error
/// messages of the resources that confd failed on.
fn run_case(case: &Path) -> (Vec<String>, Vec<String>) {
    let fx = fixture(case);
    let out = tempfile::tempdir().expect("temp dir");
    let templates = tempfile::tempdir().expect("temp dir");
    let out_path = out.path().to_str().expect("utf-8 temp path");
    for entry in std::fs::read_dir(case.join("templates")).expect("templates dir") {
        let entry = entry.expect("dir entry");
        let text = std::fs::read_to_string(entry.path()).expect("template readable");
        std::fs::write(
            templates.path().join(entry.file_name()),
            text.replace("@OUT@", out_path),
        )
        .expect("template written");
    }
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    let resources = fx["resources"].as_array().expect("resources list");
    for r in resources {
        let src = r["src"].as_str().expect("src");
        let store: BTreeMap<String, String> =
            serde_json::from_value(r["store"].clone()).expect("store map");
        let result = Template::load(
            templates.path(),
            src,
            EngineKind::Go,
            &TemplateOptions::default(),
        )
        .and_then(|t| t.render(&Store::new(store)));
        if r["expect_error"].as_bool() == Some(true) {
            match result {
                Ok(text) => failures.push(format!(
                    "{}/{src}: rendered although confd failed:\n{text}",
                    case.display()
                )),
                Err(e) => errors.push(format!(
                    "{}/{src}: {e}",
                    case.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                )),
            }
            continue;
        }
        let expect = r["expect"].as_str().expect("expect or expect_error");
        let want = std::fs::read_to_string(case.join("expect").join(expect)).expect("expected");
        match result {
            Ok(text) if text == want => {}
            Ok(text) => failures.push(format!(
                "{}/{expect}: output differs\n--- want\n{want}\n--- got\n{text}",
                case.display()
            )),
            Err(e) => failures.push(format!("{}/{expect}: {e}", case.display())),
        }
    }
    (failures, errors)
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("fixture.json").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn conformance_cases_render_like_confd() {
    let cases = cases();
    assert!(cases.len() >= 10, "fixtures missing: {cases:?}");
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    for case in cases {
        let fx = fixture(&case);
        match fx.get("env").and_then(|e| e.as_object()) {
            None => {
                let (f, e) = run_case(&case);
                failures.extend(f);
                errors.extend(e);
            }
            Some(env) => {
                // getenv reads the process environment, which a test cannot change safely
                // while other tests run: render this case in a child with the variables set.
                let mut cmd = std::process::Command::new(std::env::current_exe().expect("exe"));
                cmd.args(["--exact", "conformance_case_in_child", "--nocapture"])
                    .env(CHILD_VAR, &case);
                for (k, v) in env {
                    cmd.env(k, v.as_str().expect("env value is a string"));
                }
                let out = cmd.output().expect("child test runs");
                if !out.status.success() {
                    failures.push(format!(
                        "{}: {}",
                        case.display(),
                        String::from_utf8_lossy(&out.stdout)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    insta::assert_snapshot!("conformance_error_messages", errors.join("\n"));
}

/// The child half of the test above; does nothing unless started by it.
#[test]
fn conformance_case_in_child() {
    if let Some(case) = std::env::var_os(CHILD_VAR) {
        let (failures, _) = run_case(Path::new(&case));
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
