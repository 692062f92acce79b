//! Snapshot tests of the Go text/template engine: every `inputs/go/*.tmpl` is rendered against
//! the store in `inputs/go/store.json`, and its output (or its error) is snapshotted. Adding a
//! case is adding a file; `error_*` templates must fail.

use std::collections::BTreeMap;
use std::path::Path;

use confd_template::{EngineKind, Store, Template, TemplateOptions};

fn inputs() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inputs/go"))
}

fn store() -> Store {
    let text = std::fs::read_to_string(inputs().join("store.json")).expect("store.json");
    let map: BTreeMap<String, String> = serde_json::from_str(&text).expect("store.json is a map");
    Store::new(map)
}

/// The rendered text with an explicit `<EOF>` marker, or the error with its fields.
fn outcome(name: &str) -> (bool, String) {
    let result = Template::load(inputs(), name, EngineKind::Go, &TemplateOptions::default())
        .and_then(|t| t.render(&store()));
    match result {
        Ok(text) => (true, format!("{text}<EOF>")),
        Err(e) => (
            false,
            format!(
                "ERROR ({:?}, line {:?}, missing key {:?})\n{e}",
                e.phase, e.line, e.missing_key
            ),
        ),
    }
}

#[test]
fn go_templates() {
    insta::with_settings!({
        filters => vec![
            // datetime is the current time, in the local zone, with a monotonic reading.
            (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} [A-Za-z0-9+-]+( m=\+\d+\.\d{9})?", "[NOW]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[NOW-RFC3339]"),
            (r"[A-Z][a-z]{2} \d{1,2}, \d{4} at \d{1,2}:\d\d[ap]m \(UTC\)", "[NOW-KITCHEN]"),
        ],
    }, {
        insta::glob!("inputs/go/*.tmpl", |path| {
            let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
            let (ok, text) = outcome(name);
            assert_eq!(ok, !name.starts_with("error_"), "{name}: {text}");
            insta::assert_snapshot!(text);
        });
    });
}

#[test]
fn render_is_deterministic() {
    let t = Template::load(
        inputs(),
        "data_functions.tmpl",
        EngineKind::Go,
        &TemplateOptions::default(),
    )
    .expect("loads");
    let s = store();
    let first = t.render(&s).expect("renders");
    for _ in 0..20 {
        assert_eq!(t.render(&s).expect("renders"), first);
    }
}

#[test]
fn engine_is_chosen_by_extension_and_missing_file_is_an_error() {
    let e = Template::load(
        inputs(),
        "no-such.tmpl",
        EngineKind::from_extension("no-such.tmpl"),
        &TemplateOptions::default(),
    )
    .expect_err("missing file");
    assert!(
        e.to_string()
            .starts_with("cannot load template no-such.tmpl: cannot read "),
        "{e}"
    );
}
