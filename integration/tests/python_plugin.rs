//! A backend written in Python (examples/python-plugin, a SQLite table) run through confd, one-shot
//! and watching: a plugin in another language needs only the proto files and go-plugin's
//! handshake, health and controller services. The set-up makes a virtualenv with the pinned
//! packages from PyPI (examples/python-plugin/setup.sh, once per target directory). Only a machine
//! where no virtualenv can be made skips, loudly; under CI=true that fails instead.

mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use confd_test_support::workspace_root;
use e2e::{Confd, Run};
use nix::sys::signal::Signal;

/// How long a render may take to show up; the plugin's Python start-up alone takes most of a
/// second on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// The virtualenv with the plugin installed as `bin/confd-database-sqlite`, or `None` to skip.
fn venv() -> Option<&'static Path> {
    static VENV: OnceLock<Option<PathBuf>> = OnceLock::new();
    VENV.get_or_init(set_up).as_deref()
}

fn set_up() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-plugin-venv");
    let script = workspace_root().join("examples/python-plugin/setup.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(&venv)
        .output()
        .expect("sh runs examples/python-plugin/setup.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // setup.sh exits 3 when this Python cannot make a virtualenv.
    if out.status.code() == Some(3) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true but no Python virtualenv can be made here:\n{stderr}"
        );
        eprintln!(
            "\n*** SKIPPING the Python plugin tests: {} ***\n",
            stderr.trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        out.status
    );
    Some(venv)
}

macro_rules! require_venv {
    () => {
        match venv() {
            Some(venv) => venv,
            None => return,
        }
    };
}

/// Runs SQL against the database with the virtualenv's Python (its standard `sqlite3`), as
/// another program updating the store would.
fn sql(venv: &Path, db: &Path, script: &str) {
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             db.executescript(sys.argv[2])\n\
             db.close()",
        ])
        .arg(db)
        .arg(script)
        .output()
        .expect("run python");
    assert!(out.status.success(), "sql failed: {}", text(&out));
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A run whose confdir renders every key under /app, with the plugin in its working directory
/// (where confd looks for `confd-database-<name>`) and a database holding `rows`.
fn prepare(venv: &Path) -> (Run, PathBuf) {
    let src = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(src.path().join("conf.d")).expect("mkdir conf.d");
    std::fs::create_dir_all(src.path().join("templates")).expect("mkdir templates");
    std::fs::write(
        src.path().join("conf.d/app.toml"),
        "[template]\nsrc = \"app.conf.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
    )
    .expect("write resource");
    std::fs::write(
        src.path().join("templates/app.conf.tmpl"),
        "{{range gets \"/app/*\"}}{{base .Key}} = {{.Value}}\n{{end}}",
    )
    .expect("write template");
    let run = Run::new(src.path());
    // A link, not a copy: executing a file this process just wrote can fail with ETXTBSY.
    std::os::unix::fs::symlink(
        venv.join("bin/confd-database-sqlite"),
        run.cwd().join("confd-database-sqlite"),
    )
    .expect("link the plugin");
    let db = run.store_dir().join("kv.db");
    sql(
        venv,
        &db,
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO kv VALUES ('/app/name', 'demo'), ('/app/port', '8080'),
                               ('/application/x', 'not below /app');",
    );
    (run, db)
}

fn confd(run: &Run, db: &Path) -> Command {
    let mut cmd = Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(run.cwd())
        .arg("--confdir")
        .arg(run.confdir())
        .args(["--backend", "sqlite", "--plugin-config"])
        .arg(format!("path={}", db.display()));
    cmd
}

fn dest(run: &Run) -> String {
    std::fs::read_to_string(run.out().join("app.conf")).unwrap_or_default()
}

#[test]
fn one_shot_renders_from_the_python_plugin() {
    let venv = require_venv!();
    let (run, db) = prepare(venv);
    let out = confd(&run, &db)
        .args(["--onetime", "--log-level", "debug"])
        .output()
        .expect("run confd");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dest(&run), "name = demo\nport = 8080\n");
    // The plugin's own log line reached confd's log, tagged with the backend.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("serving 3 keys from") && stderr.contains("backend=sqlite"),
        "{stderr}"
    );

    let listed = confd(&run, &db)
        .arg("--list-backends")
        .output()
        .expect("run confd --list-backends");
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("sqlite ") && l.ends_with("/confd-database-sqlite")),
        "{listing}"
    );
}

#[test]
fn watch_renders_each_change_to_the_table() {
    let venv = require_venv!();
    let (run, db) = prepare(venv);
    let mut cmd = confd(&run, &db);
    cmd.args(["--watch", "--log-level", "debug"]);
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let first = e2e::wait_for(DEADLINE, || dest(&run) == "name = demo\nport = 8080\n");
    assert!(
        first,
        "initial render: {:?}\n{}",
        dest(&run),
        confd.stderr()
    );

    // One transaction changing a value, adding a key and leaving a key outside /app alone.
    sql(
        venv,
        &db,
        "BEGIN; UPDATE kv SET value = '9090' WHERE key = '/app/port';
         INSERT INTO kv VALUES ('/app/mode', 'ro'); COMMIT;",
    );
    let changed = e2e::wait_for(DEADLINE, || {
        dest(&run) == "mode = ro\nname = demo\nport = 9090\n"
    });
    assert!(
        changed,
        "after the update: {:?}\n{}",
        dest(&run),
        confd.stderr()
    );
    sql(venv, &db, "DELETE FROM kv WHERE key = '/app/mode';");
    let deleted = e2e::wait_for(DEADLINE, || dest(&run) == "name = demo\nport = 9090\n");
    assert!(
        deleted,
        "after the delete: {:?}\n{}",
        dest(&run),
        confd.stderr()
    );

    // SIGTERM: confd exits 0 and stops the Python plugin through go-plugin's controller.
    let plugins = confd.plugin_pids();
    assert_eq!(plugins.len(), 1, "{}", confd.stderr());
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{status:?}\n{}",
        confd.stderr()
    );
    let stopped = e2e::wait_for(Duration::from_secs(5), || {
        plugins.iter().all(|pid| !e2e::is_alive(*pid))
    });
    assert!(stopped, "the plugin outlived confd\n{}", confd.stderr());
    assert!(
        confd
            .stderr()
            .contains("plugin stopped backend=sqlite status=exit status: 0"),
        "the plugin did not exit 0 on Shutdown:\n{}",
        confd.stderr()
    );
}

#[test]
fn bad_settings_are_refused_naming_the_plugin_and_the_table() {
    let venv = require_venv!();
    let (run, db) = prepare(venv);
    let out = confd(&run, &db)
        .args(["--onetime", "--plugin-config", "table=nope"])
        .output()
        .expect("run confd");
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sqlite backend rejected its settings")
            && stderr.contains("table 'nope': no such table: nope"),
        "{stderr}"
    );
    assert!(!run.out().join("app.conf").exists());
}
