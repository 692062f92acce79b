//! Every confd template function, in Go text/template and in Jinja, through every backend:
//! `integration/functions/confdir` holds each template in both syntaxes over one key set
//! (`functions/data.yaml`), and both renders must equal `functions/expect` byte for byte; the
//! Go-only constructs must equal `functions/expect-go-only` (see `functions/README.md`).

mod e2e;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{Run, Store, Via};

/// Output subdirectories of a run and the expected directory each must equal.
const OUTPUTS: [(&str, &str); 3] = [
    ("go", "expect"),
    ("jinja", "expect"),
    ("go-only", "expect-go-only"),
];

fn functions_dir() -> PathBuf {
    confd_test_support::workspace_root().join("integration/functions")
}

fn data_yaml() -> PathBuf {
    functions_dir().join("data.yaml")
}

/// `data.yaml` flattened into `/fn/app/name = myapp` pairs, as confd's file backend reads it.
fn data() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data_yaml()).expect("read functions/data.yaml");
    let root: serde_json::Value = serde_saphyr::from_str(&text).expect("parse functions/data.yaml");
    let mut pairs = Vec::new();
    flatten("", &root, &mut pairs);
    pairs
}

fn flatten(path: &str, node: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match node {
        serde_json::Value::Object(map) => {
            for (name, child) in map {
                // The env backend turns FN_APP_NAME back into /fn/app/name: any other key
                // would reach the templates under a different name through env.
                assert!(
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                    "data.yaml key {path}/{name}: only lowercase letters and digits survive the env backend"
                );
                flatten(&format!("{path}/{name}"), child, out);
            }
        }
        serde_json::Value::String(value) => out.push((path.to_string(), value.clone())),
        other => panic!("data.yaml {path}: values must be quoted strings, got {other}"),
    }
}

/// Every file under `dir` (relative name → text); a leftover stage file shows up as an extra
/// entry.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        let bytes = std::fs::read(entry.path()).expect("read output file");
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            String::from_utf8(bytes).expect("outputs are UTF-8"),
        );
    }
    files
}

/// confd with a clean environment, pointed at `run`'s confdir and the store through `via`.
/// The file backend reads `data.yaml` itself rather than the store's flattened JSON.
fn confd(run: &Run, store: &Store, via: Via) -> Command {
    let mut cmd = Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        // Read by the `getenv` lines of system.conf.
        .env("GREETING", "hello")
        .env("FUNCTIONS_EMPTY", "")
        .current_dir(run.cwd())
        .args(["--onetime", "--log-level", "debug", "--confdir"])
        .arg(run.confdir())
        .envs(store.env());
    let yaml = data_yaml().display().to_string();
    match (store.backend(), via) {
        ("file", Via::Builtin) => {
            cmd.args(["--backend", "file", "--file", &yaml]);
        }
        ("file", Via::External) => {
            run.install_plugin("file");
            cmd.args(["--backend", "file-test", "--plugin-config"])
                .arg(format!("file={yaml}"));
        }
        (_, via) => {
            if via == Via::External {
                run.install_plugin(store.backend());
            }
            cmd.args(store.args(via));
        }
    }
    cmd
}

/// Renders the functions confdir from `backend`, through the builtin and through the external
/// plugin, and compares every output with the expected files.
fn check(backend: &str) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let Some(mut store) = Store::start(backend, scratch.path()) else {
        return;
    };
    if backend != "file" {
        store.put_all(&data());
    }
    for via in [Via::Builtin, Via::External] {
        let run = Run::new(&functions_dir().join("confdir"));
        for (sub, _) in OUTPUTS {
            std::fs::create_dir_all(run.out().join(sub)).expect("create output dir");
        }
        let output = confd(&run, &store, via).output().expect("run confd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{backend} {via:?}: confd failed:\n{stderr}"
        );
        for (sub, expect) in OUTPUTS {
            let got = read_tree(&run.out().join(sub));
            let want = read_tree(&functions_dir().join(expect));
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{backend} {via:?}: files in out/{sub} differ from {expect}/"
            );
            for (name, text) in &want {
                assert_eq!(
                    &got[name], text,
                    "{backend} {via:?}: out/{sub}/{name} differs from {expect}/{name}\nstderr:\n{stderr}"
                );
            }
        }
    }
}

#[test]
fn env() {
    check("env");
}

#[test]
fn file() {
    check("file");
}

#[test]
fn etcd() {
    check("etcd");
}

#[test]
fn redis() {
    check("redis");
}

#[test]
fn consul() {
    check("consul");
}

/// The expected files are what Go prints: `functions/gocheck` renders the Go templates with Go's
/// own text/template and confd's function map, and must produce `expect/` and `expect-go-only/`
/// too. Needs `go` (Debian `golang-go`, also used by the interop suite): skipped loudly without
/// it, a failure under `CI=true`.
#[test]
fn expected_files_are_what_go_prints() {
    let Some(go) = confd_test_support::require_binary("go", "golang-go") else {
        return;
    };
    let run = Run::new(&functions_dir().join("confdir"));
    let bin = run.dir.path().join("gocheck");
    let build = Command::new(go)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env(
            "GOCACHE",
            confd_test_support::profile_dir().join("functions-go-cache"),
        )
        // Standard library only: GOPATH mode, nothing fetched.
        .envs([
            ("GO111MODULE", "off"),
            ("GOPROXY", "off"),
            ("CGO_ENABLED", "0"),
        ])
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(functions_dir().join("gocheck/main.go"))
        .output()
        .expect("run go build");
    assert!(
        build.status.success(),
        "go build gocheck failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let relative: String = data()
        .iter()
        .map(|(k, v)| {
            let key = k
                .strip_prefix("/fn")
                .expect("every data.yaml key is under /fn");
            format!("{key}={v}\n")
        })
        .collect();
    let data_file = run.dir.path().join("data.txt");
    std::fs::write(&data_file, relative).expect("write gocheck data");
    let output = Command::new(&bin)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GREETING", "hello")
        .env("FUNCTIONS_EMPTY", "")
        .arg(&data_file)
        .arg(run.confdir().join("templates"))
        .arg(run.out())
        .output()
        .expect("run gocheck");
    assert!(
        output.status.success(),
        "gocheck failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut want = read_tree(&functions_dir().join("expect"));
    want.extend(read_tree(&functions_dir().join("expect-go-only")));
    let got = read_tree(&run.out());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, text) in &want {
        assert_eq!(&got[name], text, "Go renders {name} differently");
    }
}

/// The fixture keeps its promise: every confd function is called by a Go template and by a
/// Jinja template of the shared set (the Go-only resource does not count).
#[test]
fn every_function_is_exercised_in_both_syntaxes() {
    let templates = functions_dir().join("confdir/templates");
    let mut go = String::new();
    let mut jinja = String::new();
    // The templates and the partials they include (`partials/`).
    let mut paths = Vec::new();
    for dir in [templates.clone(), templates.join("partials")] {
        for entry in std::fs::read_dir(&dir).expect("read templates") {
            let path = entry.expect("dir entry").path();
            if path.is_file() {
                paths.push(path);
            }
        }
    }
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read template");
        match path.file_name().and_then(|n| n.to_str()) {
            Some("goonly.conf.tmpl") => {}
            Some(n) if n.ends_with(".tmpl") => go.push_str(&actions(&text, &[("{{", "}}")])),
            Some(n) if n.ends_with(".j2") => {
                jinja.push_str(&actions(&text, &[("{{", "}}"), ("{%", "%}")]))
            }
            _ => {}
        }
    }
    // The shared function table is the list: a function added there must be exercised here too.
    for f in confd_template::functions().iter().map(|f| f.name) {
        // Go: `f` as a command word, followed by a space (arguments) or `.` (`datetime.Format`).
        assert!(
            calls(&go, f, &[' ', '.']),
            "no Go template of integration/functions calls {f}"
        );
        // Jinja: `f(...)`, or the filter form `| f`.
        assert!(
            calls(&jinja, f, &['(']) || jinja.contains(&format!("| {f} ")),
            "no Jinja template of integration/functions calls {f}"
        );
    }
}

/// Whether `text` holds `name` as a whole word followed by one of `next` (so `dir` is not found
/// in `lsdir(`).
fn calls(text: &str, name: &str, next: &[char]) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '$' || c == '"')
            && after.is_some_and(|c| next.contains(&c))
    })
}

/// The insides of a template's actions (delimited by one of `delims`), one per line, Go
/// comments left out: the function names in labels and comments must not count as calls.
fn actions(text: &str, delims: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (open, close) in delims {
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len()..];
            let end = after.find(close).expect("every action is closed");
            let inside = after[..end].trim_start_matches('-').trim_start();
            if !inside.starts_with("/*") {
                out.push_str(inside);
                out.push('\n');
            }
            rest = &after[end + close.len()..];
        }
    }
    out
}
