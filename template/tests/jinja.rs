//! Snapshot tests of the Jinja engine: every template in `inputs/jinja/*.j2` is rendered against
//! one fixed store and its output, or its error message, is snapshotted. Adding a case is adding a
//! file. Templates in `inputs/jinja/lib/` are only included by the cases.

use std::collections::BTreeMap;
use std::path::Path;

use confd_template::{EngineKind, Store, Template, TemplateOptions, functions};

fn store() -> Store {
    let pairs = [
        ("/key", "foobar"),
        ("/database/host", "127.0.0.1"),
        ("/database/port", "3306"),
        ("/database/username", "confd"),
        ("/database/password", "p@sSw0rd"),
        ("/upstream/app1", "10.0.1.10:8080"),
        ("/upstream/app2", "10.0.1.11:8080"),
        ("/upstream/app10", "10.0.1.9:8080"),
        ("/nested/east/app1", "10.0.2.1"),
        ("/nested/west/app1", "10.0.3.1"),
        ("/nested/west/app2", "10.0.3.2"),
        (
            "/json/config",
            r#"{"name": "web", "port": 8080, "ratio": 0.5, "tags": ["a", "b"], "tls": true, "extra": null}"#,
        ),
        ("/json/list", r#"["x", "y", "z"]"#),
        ("/json/bad", "{not json"),
        ("/b64", "aGVsbG8gd29ybGQ="),
        ("/bool/yes", "true"),
        ("/num", "42"),
        ("/notnum", "4x2"),
        ("/csv", "a,b,c"),
    ];
    Store::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn templates_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inputs/jinja"))
}

/// Options come from the template's first line, e.g. `{#- options: trim_blocks lstrip_blocks -#}`.
fn options(source: &str) -> TemplateOptions {
    let first = source.lines().next().unwrap_or_default();
    let words: Vec<&str> = first
        .split_once("options:")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    TemplateOptions {
        trim_blocks: words.contains(&"trim_blocks"),
        lstrip_blocks: words.contains(&"lstrip_blocks"),
    }
}

/// The rendered text, ending in an explicit `<EOF>` so the final newline is visible, or the error.
fn outcome(name: &str, source: &str) -> String {
    let store = store();
    let opts = options(source);
    let result = Template::load(templates_dir(), name, EngineKind::Jinja, &opts)
        .and_then(|t| t.render(&store));
    match result {
        Ok(text) => format!("{text}<EOF>"),
        Err(e) => format!(
            "ERROR ({:?})\n{e}\nmissing key: {:?}",
            e.phase, e.missing_key
        ),
    }
}

#[test]
fn jinja_templates() {
    insta::with_settings!({
        filters => vec![
            // datetime() is the current time.
            (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} [A-Za-z0-9+-]+( m=\+\d+\.\d{9})?", "[NOW]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[NOW-RFC3339]"),
            (r"year: \d{4}", "year: [YEAR]"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::glob!("inputs/jinja/*.j2", |path| {
            let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 file name");
            let source = std::fs::read_to_string(path).expect("readable template");
            insta::assert_snapshot!(outcome(name, &source));
        });
    });
}

/// Rendering twice gives the same bytes.
#[test]
fn rendering_is_deterministic() {
    let store = store();
    for name in [
        "gets.j2",
        "json.j2",
        "include.j2",
        "map.j2",
        "formatting.j2",
    ] {
        let t = Template::load(
            templates_dir(),
            name,
            EngineKind::Jinja,
            &TemplateOptions::default(),
        )
        .expect("loads");
        let first = t.render(&store).expect("renders");
        for _ in 0..5 {
            assert_eq!(t.render(&store).expect("renders"), first, "{name}");
        }
    }
}

/// A loaded template renders against whatever store it is given, also from several threads.
#[test]
fn one_template_many_stores_and_threads() {
    let t = Template::load(
        templates_dir(),
        "getv.j2",
        EngineKind::Jinja,
        &TemplateOptions::default(),
    )
    .expect("loads");
    std::thread::scope(|s| {
        for i in 0..4 {
            let t = &t;
            s.spawn(move || {
                let value = format!("value-{i}");
                let store = Store::new(BTreeMap::from([
                    ("/key".to_string(), value.clone()),
                    ("/database/host".to_string(), "h".to_string()),
                ]));
                let out = t.render(&store).expect("renders");
                assert!(out.starts_with(&format!("key: {value}\n")), "{out}");
            });
        }
    });
}

/// Every confd function is exercised by at least one case, so a new function needs a snapshot.
#[test]
fn every_function_has_a_case() {
    let mut sources = String::new();
    for entry in std::fs::read_dir(templates_dir()).expect("inputs dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "j2") {
            sources.push_str(&std::fs::read_to_string(&path).expect("readable"));
        }
    }
    let missing: Vec<&str> = functions()
        .iter()
        .map(|f| f.name)
        .filter(|name| !calls(&sources, name))
        .collect();
    assert!(
        missing.is_empty(),
        "functions without a Jinja case: {missing:?}"
    );
}

fn load_error(dir: &Path, src: &str) -> String {
    match Template::load(dir, src, EngineKind::Jinja, &TemplateOptions::default()) {
        Ok(_) => panic!("{src} loaded"),
        // The checkout's location is not part of the message's meaning.
        Err(e) => e
            .to_string()
            .replace(&templates_dir().display().to_string(), "[TEMPLATES]"),
    }
}

/// Problems with the template file itself are load errors naming the template.
#[test]
fn load_errors() {
    insta::assert_snapshot!(
        "load_errors",
        [
            load_error(templates_dir(), "no-such-template.j2"),
            load_error(templates_dir(), "../outside.txt"),
            load_error(templates_dir(), "lib/outside_link.j2"),
            load_error(&templates_dir().join("no-such-dir"), "getv.j2"),
        ]
        .join("\n")
    );
}

/// `src` is joined to the templates directory as confd does, also with a leading `/`, and a
/// template in a subdirectory is named by its path in messages.
#[test]
fn src_in_subdirectory_and_absolute_form() {
    let store = store();
    for src in ["lib/sibling.j2", "/lib/sibling.j2", "./lib/./sibling.j2"] {
        let t = Template::load(
            templates_dir(),
            src,
            EngineKind::Jinja,
            &TemplateOptions::default(),
        )
        .expect("loads");
        assert_eq!(
            t.render(&store).expect("renders"),
            "sibling found relative to lib/\n"
        );
    }
    let e = Template::load(
        templates_dir(),
        "lib/broken.j2",
        EngineKind::Jinja,
        &TemplateOptions::default(),
    )
    .expect("loads")
    .render(&store)
    .expect_err("missing key");
    assert_eq!(e.template, "lib/broken.j2");
    assert_eq!(e.line, Some(2));
}

/// Whether `source` calls `name(` as a whole word (so `lsdir(` does not count as `dir(`).
fn calls(source: &str, name: &str) -> bool {
    let call = format!("{name}(");
    source.match_indices(&call).any(|(i, _)| {
        source[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

#[test]
fn calls_matches_whole_names_only() {
    assert!(calls("{{ dir(\"/a\") }}", "dir"));
    assert!(calls("dir(", "dir"));
    assert!(!calls("{{ lsdir(\"/a\") }}", "dir"));
    assert!(!calls("{{ dir }}", "dir"));
}
