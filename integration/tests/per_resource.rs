//! A backend per resource (the `[backend]` table): one confd run reads env (the global backend),
//! a YAML/JSON file, two etcd clusters side by side and Vault (the emulator), one-shot and in
//! watch mode, with one plugin process per distinct backend setting; a SIGHUP that changes a
//! table swaps the plugins; a bad table fails naming its file; an AWS backend (ssm on moto) in a
//! table next to env takes its region and credentials from the table alone.

mod e2e;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use confd_test_support::{MOTO_REGION, MotoServer, VaultEmulator, VaultLogin};
use e2e::{Confd, Store};
use nix::sys::signal::Signal;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(15);
/// The global env backend's resource in every confdir here.
const APP_TEMPLATE: &str = "name = {{getv \"/app/name\"}}\n";

/// The stores of the mixed run; `None` when etcd is not installed outside CI.
struct Stores {
    file: Store,
    etcd_a: Store,
    etcd_b: Store,
    vault: VaultEmulator,
}

impl Stores {
    fn start(dir: &Path) -> Option<Stores> {
        let mut file = Store::start("file", dir)?;
        file.put_all(&[("/file/color".to_string(), "blue".to_string())]);
        let mut etcd_a = Store::start("etcd", dir)?;
        etcd_a.put_all(&[("/shared/level".to_string(), "a1".to_string())]);
        let mut etcd_b = Store::start("etcd", dir)?;
        etcd_b.put_all(&[("/other/level".to_string(), "b1".to_string())]);
        let vault = VaultEmulator::start();
        vault.mount_kv("secret", 2);
        vault.put("secret", "db", json!({"password": "s3cret"}));
        vault.enable_login(
            "approle",
            VaultLogin::AppRole {
                role_id: "role-1".into(),
                secret_id: "secret-1".into(),
            },
        );
        Some(Stores {
            file,
            etcd_a,
            etcd_b,
            vault,
        })
    }

    fn setting(store: &Store) -> String {
        store.settings()[0].1.clone()
    }
}

/// A confdir with one resource per source; `shared-1` and `shared-2` have identical tables.
fn write_confdir(confdir: &Path, out: &Path, stores: &Stores) {
    std::fs::create_dir_all(confdir.join("templates")).expect("templates");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("conf.d");
    let resources = [
        ("app", "/app", APP_TEMPLATE, String::new()),
        (
            "file",
            "/file",
            "color = {{getv \"/file/color\"}}\n",
            format!(
                "[backend]\nbackend = \"file\"\nfile = [\"{}\"]\n",
                Stores::setting(&stores.file)
            ),
        ),
        (
            "shared-1",
            "/shared",
            "one = {{getv \"/shared/level\"}}\n",
            etcd_table(&stores.etcd_a),
        ),
        (
            "shared-2",
            "/shared",
            "two = {{getv \"/shared/level\"}}\n",
            etcd_table(&stores.etcd_a),
        ),
        (
            "other",
            "/other",
            "other = {{getv \"/other/level\"}}\n",
            etcd_table(&stores.etcd_b),
        ),
        (
            "secrets",
            "/secret/db",
            "password = {{getv \"/secret/db/password\"}}\n",
            format!(
                "[backend]\nbackend = \"vault\"\nnodes = [\"{}\"]\nauth_type = \"approle\"\n\
                 role_id = \"role-1\"\nsecret_id = \"secret-1\"\n",
                stores.vault.address()
            ),
        ),
    ];
    for (name, key, template, table) in resources {
        write_resource(confdir, out, name, key, template, &table);
    }
}

fn etcd_table(store: &Store) -> String {
    format!(
        "[backend]\nbackend = \"etcd\"\nnodes = [\"{}\"]\n",
        Stores::setting(store)
    )
}

fn confd(confdir: &Path) -> Command {
    let mut cmd = Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("APP_NAME", "demo")
        .arg("--confdir")
        .arg(confdir)
        .args(["--backend", "env", "--log-level", "debug"]);
    cmd
}

fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_default()
}

fn expected() -> [(&'static str, &'static str); 6] {
    [
        ("app.conf", "name = demo\n"),
        ("file.conf", "color = blue\n"),
        ("shared-1.conf", "one = a1\n"),
        ("shared-2.conf", "two = a1\n"),
        ("other.conf", "other = b1\n"),
        ("secrets.conf", "password = s3cret\n"),
    ]
}

#[test]
fn one_shot_reads_each_resource_from_its_own_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(stores) = Stores::start(dir.path()) else {
        return;
    };
    let (confdir, out) = (dir.path().join("confdir"), dir.path().join("out"));
    std::fs::create_dir_all(&out).expect("out");
    write_confdir(&confdir, &out, &stores);
    let output = confd(&confdir)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    for (name, content) in expected() {
        assert_eq!(read(&out, name), content, "{name}; stderr:\n{stderr}");
    }
    // One plugin per distinct setting: env, file, etcd a (shared by two resources), etcd b,
    // vault.
    let mut started: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("plugin started"))
        .filter_map(|l| l.split("backend=").nth(1)?.split_whitespace().next())
        .collect();
    started.sort_unstable();
    assert_eq!(
        started,
        [
            "env",
            "etcd@other",
            "etcd@shared-1",
            "file@file",
            "vault@secrets"
        ],
        "stderr:\n{stderr}"
    );
    // --list-backends shows the same plugins and the resources each serves.
    let listing = confd(&confdir)
        .arg("--list-backends")
        .output()
        .expect("run confd --list-backends");
    let stdout = String::from_utf8_lossy(&listing.stdout);
    let shared = stdout
        .lines()
        .find(|l| l.starts_with("etcd@shared-1 "))
        .unwrap_or_else(|| panic!("no etcd@shared-1 line:\n{stdout}"));
    assert!(
        shared.contains("shared-1.toml") && shared.contains("shared-2.toml"),
        "{stdout}"
    );
    for id in ["env ", "file@file ", "etcd@other ", "vault@secrets "] {
        assert!(stdout.lines().any(|l| l.starts_with(id)), "{id}:\n{stdout}");
    }
}

#[test]
fn watch_mode_watches_each_backend_polls_the_others_and_reloads_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut stores) = Stores::start(dir.path()) else {
        return;
    };
    let (confdir, out) = (dir.path().join("confdir"), dir.path().join("out"));
    std::fs::create_dir_all(&out).expect("out");
    write_confdir(&confdir, &out, &stores);
    let port = confd_test_support::free_port();
    let mut cmd = confd(&confdir);
    cmd.args(["--watch", "--interval", "1", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"));
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let first = e2e::wait_for(DEADLINE, || {
        expected()
            .iter()
            .all(|(name, content)| read(&out, name) == *content)
    });
    assert!(first, "initial render; stderr:\n{}", confd.stderr());

    // One process per distinct backend setting.
    let plugins = confd.plugin_pids();
    assert_eq!(plugins.len(), 5, "plugins: {plugins:?}\n{}", confd.stderr());
    let stderr = confd.stderr();
    for backend in ["env", "vault@secrets"] {
        assert!(
            stderr.contains(&format!("the {backend} backend cannot watch for changes")),
            "no polling notice for {backend}:\n{stderr}"
        );
    }

    // A table's plugin is supervised as the global one: killed, it is restarted, and the
    // metrics carry its name.
    let vault_pid = plugins
        .iter()
        .copied()
        .find(|p| e2e::cmdline(*p).contains("database vault"))
        .expect("the vault plugin");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vault_pid as i32),
        Signal::SIGKILL,
    )
    .expect("kill the vault plugin");
    let restarted = e2e::wait_for(DEADLINE, || {
        let Some(metrics) = scrape(port) else {
            return false;
        };
        metric(&metrics, "confd_plugin_restarts_total", "vault@secrets") >= 1.0
            && metric(&metrics, "confd_plugin_up", "vault@secrets") == 1.0
            && metric(&metrics, "confd_plugin_up", "etcd@shared-1") == 1.0
            && confd.plugin_pids().len() == 5
            && !confd.plugin_pids().contains(&vault_pid)
    });
    assert!(restarted, "vault plugin not restarted\n{}", confd.stderr());
    let plugins = confd.plugin_pids();

    // Watched: both etcds and the file; polled every second: Vault.
    stores
        .etcd_a
        .put_all(&[("/shared/level".to_string(), "a2".to_string())]);
    stores
        .etcd_b
        .put_all(&[("/other/level".to_string(), "b2".to_string())]);
    stores
        .file
        .put_all(&[("/file/color".to_string(), "green".to_string())]);
    stores
        .vault
        .put("secret", "db", json!({"password": "rotated"}));
    let changed = e2e::wait_for(DEADLINE, || {
        read(&out, "shared-1.conf") == "one = a2\n"
            && read(&out, "shared-2.conf") == "two = a2\n"
            && read(&out, "other.conf") == "other = b2\n"
            && read(&out, "file.conf") == "color = green\n"
            && read(&out, "secrets.conf") == "password = rotated\n"
    });
    assert!(changed, "changes not rendered; stderr:\n{}", confd.stderr());

    // SIGHUP with `other` moved to etcd a: its plugin stops, the rest carry over.
    std::fs::write(
        confdir.join("conf.d/other.toml"),
        format!(
            "[template]\nsrc = \"other.tmpl\"\ndest = \"{}/other.conf\"\nkeys = [\"/shared\"]\n\n{}",
            out.display(),
            etcd_table(&stores.etcd_a)
        ),
    )
    .expect("rewrite other.toml");
    std::fs::write(
        confdir.join("templates/other.tmpl"),
        "other = {{getv \"/shared/level\"}}\n",
    )
    .expect("rewrite other.tmpl");
    confd.signal(Signal::SIGHUP);
    let swapped = e2e::wait_for(DEADLINE, || {
        read(&out, "other.conf") == "other = a2\n" && confd.plugin_pids().len() == 4
    });
    assert!(
        swapped,
        "after SIGHUP: {:?} plugins {:?}\n{}",
        read(&out, "other.conf"),
        confd.plugin_pids(),
        confd.stderr()
    );
    let now = confd.plugin_pids();
    let kept = plugins.iter().filter(|p| now.contains(p)).count();
    assert_eq!(
        kept,
        4,
        "unchanged plugins must carry over: {plugins:?} → {now:?}\n{}",
        confd.stderr()
    );

    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        confd.stderr()
    );
}

fn scrape(port: u16) -> Option<std::collections::BTreeMap<String, confd_test_support::Family>> {
    let (status, body) = confd_test_support::http_get(port, "/metrics")?;
    (status == 200).then(|| confd_test_support::parse_metrics(&body))?
}

/// The sum of `family`'s samples labelled `backend`.
fn metric(
    families: &std::collections::BTreeMap<String, confd_test_support::Family>,
    family: &str,
    backend: &str,
) -> f64 {
    families.get(family).map_or(0.0, |f| {
        f.samples
            .iter()
            .filter(|s| s.labels.get("backend").is_some_and(|b| b == backend))
            .map(|s| s.value)
            .sum()
    })
}

#[test]
fn a_bad_backend_table_fails_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let confdir = dir.path().join("confdir");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("conf.d");
    std::fs::create_dir_all(confdir.join("templates")).expect("templates");
    std::fs::write(confdir.join("templates/t.tmpl"), "x\n").expect("template");
    std::fs::write(
        confdir.join("conf.d/broken.toml"),
        format!(
            "[template]\nsrc = \"t.tmpl\"\ndest = \"{}/x\"\nkeys = [\"/x\"]\n\n[backend]\nbackend = \"nosuch\"\n",
            dir.path().display()
        ),
    )
    .expect("resource");
    for mode in [&["--onetime"][..], &["--check-config"][..]] {
        let output = confd(&confdir).args(mode).output().expect("run confd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{mode:?}: {stderr}");
        assert!(
            stderr.contains("broken.toml: [backend]: unknown backend \"nosuch\""),
            "{mode:?}: the error must name the file and the backend:\n{stderr}"
        );
    }
}

/// `examples/vault-secrets` as its README runs it, with the Vault emulator's address and the
/// destinations in a temporary directory.
#[test]
fn the_vault_secrets_example_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (confdir, out) = (dir.path().join("confdir"), dir.path().join("out"));
    std::fs::create_dir_all(&out).expect("out");
    let vault = VaultEmulator::start();
    vault.mount_kv("kv", 2);
    vault.put(
        "kv",
        "myapp/database",
        json!({"host": "db.internal", "user": "app", "password": "s3cret"}),
    );
    vault.enable_login(
        "approle",
        VaultLogin::AppRole {
            role_id: "myapp-role".into(),
            secret_id: "myapp-secret".into(),
        },
    );
    let example = confd_test_support::workspace_root().join("examples/vault-secrets");
    copy_replacing(
        &example,
        &confdir,
        &[
            ("/etc/myapp", out.to_str().expect("utf-8 path")),
            ("http://127.0.0.1:8200", &vault.address()),
        ],
    );
    let output = Command::new(e2e::isolated_confd())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MYAPP_LISTEN", "127.0.0.1:9000")
        .env("MYAPP_LOG_LEVEL", "debug")
        .arg("--onetime")
        .arg("--confdir")
        .arg(&confdir)
        .arg("--config-file")
        .arg(confdir.join("confd.toml"))
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(
        read(&out, "app.conf"),
        format!(
            "# Rendered by confd from the environment.\nlisten = 127.0.0.1:9000\n\
             log_level = debug\ninclude = {}/db.conf\n",
            out.display()
        )
    );
    assert_eq!(
        read(&out, "db.conf"),
        "# Rendered by confd from Vault (kv/myapp/database). Keep this file 0600.\n\
         [database]\nhost = db.internal\nuser = app\npassword = s3cret\n"
    );
    assert_eq!(e2e::mode(&out.join("db.conf")), 0o600);
}

/// Copies `src` to `dest` recursively, replacing each `(from, to)` in every file.
fn copy_replacing(src: &Path, dest: &Path, replace: &[(&str, &str)]) {
    std::fs::create_dir_all(dest).expect("create dir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = dest.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_replacing(&entry.path(), &target, replace);
        } else {
            let mut text = std::fs::read_to_string(entry.path()).expect("read");
            for (from, to) in replace {
                text = text.replace(from, to);
            }
            std::fs::write(&target, text).expect("write");
        }
    }
}

/// A table whose Vault refuses the login (a wrong app-role secret): the resource fails (exit 1)
/// and the error names the plugin and the resource file.
#[test]
fn a_rejected_backend_table_names_the_backend_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let confdir = dir.path().join("confdir");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("conf.d");
    std::fs::create_dir_all(confdir.join("templates")).expect("templates");
    std::fs::write(confdir.join("templates/t.tmpl"), "x\n").expect("template");
    let vault = VaultEmulator::start();
    vault.enable_login(
        "approle",
        VaultLogin::AppRole {
            role_id: "role-1".into(),
            secret_id: "secret-1".into(),
        },
    );
    std::fs::write(
        confdir.join("conf.d/secrets.toml"),
        format!(
            "[template]\nsrc = \"t.tmpl\"\ndest = \"{}/x\"\nkeys = [\"/secret/db\"]\n\n\
             [backend]\nbackend = \"vault\"\nnodes = [\"{}\"]\nauth_type = \"app-role\"\n\
             role_id = \"role-1\"\nsecret_id = \"wrong\"\n",
            dir.path().display(),
            vault.address()
        ),
    )
    .expect("resource");
    let output = confd(&confdir)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("cannot read the keys")
            && l.contains("backend=\"vault@secrets\"")
            && l.contains("secrets.toml")
            && l.contains("login refused")),
        "{stderr}"
    );
}

/// `confdir/{conf.d,templates}`, `out` and `plugins` under `dir`, made.
fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (confdir, out, plugins) = (dir.join("confdir"), dir.join("out"), dir.join("plugins"));
    for d in [
        confdir.join("conf.d"),
        confdir.join("templates"),
        out.clone(),
        plugins.clone(),
    ] {
        std::fs::create_dir_all(d).expect("dir");
    }
    (confdir, out, plugins)
}

/// Resource `name`: its template, and its TOML writing `out/<name>.conf` from `key`, followed
/// by `table` (a `[backend]` table or nothing).
fn write_resource(confdir: &Path, out: &Path, name: &str, key: &str, template: &str, table: &str) {
    std::fs::write(confdir.join(format!("templates/{name}.tmpl")), template).expect("template");
    std::fs::write(
        confdir.join(format!("conf.d/{name}.toml")),
        format!(
            "[template]\nsrc = \"{name}.tmpl\"\ndest = \"{}/{name}.conf\"\nkeys = [\"{key}\"]\n\n{table}",
            out.display()
        ),
    )
    .expect("resource");
}

/// An executable `confd-database-<name>` in `plugins`: a shell script running `body`.
fn write_plugin(plugins: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let script = plugins.join(format!("confd-database-{name}"));
    std::fs::write(&script, format!("#!/bin/sh\n{body}")).expect("plugin script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A confdir with `app` (the global env backend) and `late`, whose `[backend]` table names
/// `confd-database-late` in `plugins/`: a script that exits at once until `up` exists in the
/// test dir, then runs the env builtin.
fn write_late_confdir(dir: &Path) -> (PathBuf, PathBuf) {
    let (confdir, out, plugins) = layout(dir);
    write_plugin(
        &plugins,
        "late",
        &format!(
            "if [ -e '{}' ]; then exec '{}' internal-plugin database env; fi\n\
             echo 'late: not ready' >&2\nexit 3\n",
            dir.join("up").display(),
            e2e::isolated_confd().display()
        ),
    );
    write_resource(&confdir, &out, "app", "/app", APP_TEMPLATE, "");
    write_resource(
        &confdir,
        &out,
        "late",
        "/late",
        "late = {{getv \"/late/value\"}}\n",
        "[backend]\nbackend = \"late\"\n",
    );
    (confdir, out)
}

/// A `[backend]` table whose plugin does not start fails only its resources: one-shot renders
/// the others and exits 1 naming the backend and the resource; in watch mode the others keep
/// running and the plugin is started again with the restart backoff until it comes up.
#[test]
fn a_table_plugin_that_does_not_start_fails_only_its_resources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (confdir, out) = write_late_confdir(dir.path());
    let late = |cmd: &mut Command| {
        cmd.env("LATE_VALUE", "here")
            .arg("--plugin-dir")
            .arg(dir.path().join("plugins"));
    };

    let mut cmd = confd(&confdir);
    late(&mut cmd);
    let output = cmd.arg("--onetime").output().expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(read(&out, "app.conf"), "name = demo\n", "{stderr}");
    assert_eq!(read(&out, "late.conf"), "", "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("late.toml")
            && l.contains("late@late")
            && l.contains("cannot start")),
        "the failure names the resource and the backend:\n{stderr}"
    );

    let mut cmd = confd(&confdir);
    late(&mut cmd);
    cmd.args(["--watch", "--interval", "1"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let app = e2e::wait_for(DEADLINE, || read(&out, "app.conf") == "name = demo\n")
        && e2e::wait_for(DEADLINE, || confd.stderr().contains("late: not ready"));
    assert!(app, "the other resource runs; stderr:\n{}", confd.stderr());
    assert_eq!(confd.try_wait(), None, "still running:\n{}", confd.stderr());
    assert_eq!(read(&out, "late.conf"), "");
    std::fs::write(dir.path().join("up"), "").expect("let the plugin start");
    let rendered = e2e::wait_for(Duration::from_secs(60), || {
        read(&out, "late.conf") == "late = here\n"
    });
    assert!(
        rendered,
        "the plugin came up later; stderr:\n{}",
        confd.stderr()
    );
    confd.signal(Signal::SIGTERM);
    assert!(confd.wait_timeout(DEADLINE).is_some(), "confd stops");
}

/// An external plugin without Info that answers WatchPrefix with Unimplemented (as a Go plugin
/// that cannot watch does): in watch mode its resources are read every `--interval`, with one
/// warning naming it, while the others run; the run does not end.
#[test]
fn a_plugin_that_cannot_watch_without_saying_so_is_polled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (confdir, out, plugins) = layout(dir.path());
    let value = dir.path().join("value");
    std::fs::write(&value, "v1\n").expect("value");
    write_plugin(
        &plugins,
        "nowatch",
        &format!(
            "MISBEHAVE=no-watch MISBEHAVE_VALUE='{}' exec '{}'\n",
            value.display(),
            env!("CARGO_BIN_EXE_misbehave-plugin")
        ),
    );
    write_resource(&confdir, &out, "app", "/app", APP_TEMPLATE, "");
    write_resource(
        &confdir,
        &out,
        "polled",
        "/p",
        "p = {{getv \"/p\"}}\n",
        "[backend]\nbackend = \"nowatch\"\n",
    );
    let mut cmd = confd(&confdir);
    cmd.arg("--plugin-dir")
        .arg(&plugins)
        .args(["--watch", "--interval", "1"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let first = e2e::wait_for(DEADLINE, || {
        read(&out, "app.conf") == "name = demo\n" && read(&out, "polled.conf") == "p = v1\n"
    });
    assert!(first, "initial render; stderr:\n{}", confd.stderr());
    std::fs::write(&value, "v2\n").expect("value");
    let polled = e2e::wait_for(DEADLINE, || read(&out, "polled.conf") == "p = v2\n");
    assert!(
        polled,
        "read again at the interval; stderr:\n{}",
        confd.stderr()
    );
    assert_eq!(confd.try_wait(), None, "still running:\n{}", confd.stderr());
    let stderr = confd.stderr();
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("the nowatch@polled backend cannot watch"))
        .count();
    assert_eq!(warnings, 1, "one warning naming the plugin:\n{stderr}");
    confd.signal(Signal::SIGTERM);
    assert!(confd.wait_timeout(DEADLINE).is_some(), "confd stops");
}

/// Redis over TLS from `[backend]` tables with confd.toml's keys: `client_cakeys` trusts the
/// server's CA, `client_insecure` turns verification off, and a table with neither fails only
/// its resource, naming the backend.
#[test]
fn redis_tables_speak_tls_with_the_confd_keys() {
    let Some(certs) = confd_test_support::TestCertificates::generate() else {
        return;
    };
    let Some(server) =
        confd_test_support::RedisServer::start_with(confd_test_support::RedisOptions {
            tls: Some(confd_test_support::RedisTls {
                cert: certs.server_cert(),
                key: certs.server_key(),
                ca: certs.ca(),
            }),
            ..Default::default()
        })
    else {
        return;
    };
    server.cli(&["SET", "/tls/a", "secure"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (confdir, out, _) = layout(dir.path());
    std::fs::write(
        confdir.join("templates/t.tmpl"),
        "a = {{getv \"/tls/a\"}}\n",
    )
    .expect("tmpl");
    let node = format!("rediss://{}", server.address());
    for (name, extra) in [
        (
            "with-ca",
            format!("client_cakeys = \"{}\"\n", certs.ca().display()),
        ),
        ("insecure", "client_insecure = true\n".to_string()),
        ("untrusted", String::new()),
    ] {
        std::fs::write(
            confdir.join(format!("conf.d/{name}.toml")),
            format!(
                "[template]\nsrc = \"t.tmpl\"\ndest = \"{}/{name}.conf\"\nkeys = [\"/tls\"]\n\n\
                 [backend]\nbackend = \"redis\"\nnodes = [\"{node}\"]\n{extra}",
                out.display()
            ),
        )
        .expect("resource");
    }
    let output = confd(&confdir)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(read(&out, "with-ca.conf"), "a = secure\n", "{stderr}");
    assert_eq!(read(&out, "insecure.conf"), "a = secure\n", "{stderr}");
    assert_eq!(read(&out, "untrusted.conf"), "", "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("untrusted.toml")
            && l.contains("redis@untrusted")
            && l.contains("certificate")),
        "{stderr}"
    );
}

/// A resource reading SSM (moto) through its `[backend]` table while the global backend is env:
/// endpoint, region and credentials come from the table (the run has no AWS variables at all).
#[test]
fn an_ssm_table_reads_parameters_next_to_the_env_backend() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    moto.ssm_put("/db/password", "from-ssm");
    let dir = tempfile::tempdir().expect("tempdir");
    let (confdir, out, _) = layout(dir.path());
    let key = moto.credentials();
    write_resource(&confdir, &out, "app", "/app", APP_TEMPLATE, "");
    write_resource(
        &confdir,
        &out,
        "db",
        "/db",
        "password = {{getv \"/db/password\"}}\n",
        &format!(
            "[backend]\nbackend = \"ssm\"\nnodes = [\"{}\"]\nregion = \"{MOTO_REGION}\"\n\
             accessKeyId = \"{}\"\nsecretAccessKey = \"{}\"\n",
            moto.endpoint(),
            key.id,
            key.secret
        ),
    );
    let output = confd(&confdir)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(read(&out, "app.conf"), "name = demo\n", "stderr:\n{stderr}");
    assert_eq!(
        read(&out, "db.conf"),
        "password = from-ssm\n",
        "stderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("plugin started") && l.contains("backend=ssm@db")),
        "the table's ssm plugin is named after its resource:\n{stderr}"
    );
}
