//! Plugins that break the handshake in every way the issue lists: each start fails with an error
//! naming the plugin and the cause, and no process is left behind.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confd_sdk::HandshakeProblem;
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, PluginError};

/// Writes an executable `/bin/sh` script that first records its pid in `<script>.pid`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!("#!/bin/sh\necho $$ > {}.pid\n{body}\n", path.display());
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn recorded_pids(path: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for suffix in [".pid", ".child"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(text) = std::fs::read_to_string(file) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Running means present in /proc and not a zombie: a killed grandchild is reaped by init, a
/// moment later than our own child.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

fn assert_no_process_left(path: &Path) {
    let pids = recorded_pids(path);
    assert!(!pids.is_empty(), "the script ran and recorded its pid");
    for pid in pids {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !running(pid),
            "process {pid} of {} is still there",
            path.display()
        );
    }
}

async fn start_err(path: &Path, options: ClientOptions) -> PluginError {
    let err = PluginClient::start(PluginCommand::new("bad", path), options)
        .await
        .expect_err("the plugin must be refused");
    assert_eq!(err.path(), path);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("plugin {}: ", path.display())),
        "names the plugin: {text}"
    );
    err
}

#[tokio::test]
async fn exits_before_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "exits",
        "echo 'cannot open /etc/thing' >&2\nexit 3",
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(
        matches!(&err, PluginError::ExitedBeforeHandshake { status, .. } if status == "exit status: 3"),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "exited before the handshake (exit status: 3); its stderr said: cannot open /etc/thing"
        ),
        "{err}"
    );
    assert_no_process_left(&path);
}

#[tokio::test]
async fn prints_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "garbage",
        "echo 'Usage: garbage [options]'\nsleep 30",
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(
        matches!(&err, PluginError::BadHandshake { line, problem: HandshakeProblem::FieldCount(1), .. }
            if line == "Usage: garbage [options]"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(r#"refused its handshake line "Usage: garbage [options]": this is not a go-plugin handshake line"#),
        "{err}"
    );
    assert_no_process_left(&path);
}

#[tokio::test]
async fn prints_a_netrpc_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "netrpc",
        "echo '1|1|unix|/tmp/plugin1|netrpc'\nsleep 30",
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(
        matches!(&err, PluginError::BadHandshake { problem: HandshakeProblem::Protocol(p), .. } if p == "netrpc"),
        "{err:?}"
    );
    assert!(err.to_string().contains("netrpc is not supported"), "{err}");
    assert_no_process_left(&path);

    let path = script(
        dir.path(),
        "noproto",
        "echo '1|1|unix|/tmp/plugin1'\nsleep 30",
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(
        matches!(
            &err,
            PluginError::BadHandshake {
                problem: HandshakeProblem::MissingProtocol,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_process_left(&path);
}

#[tokio::test]
async fn offers_a_version_we_did_not_offer() {
    let dir = tempfile::tempdir().expect("tempdir");
    // It also checks that the host offered version 1 in the environment.
    let path = script(
        dir.path(),
        "v7",
        "test \"$PLUGIN_PROTOCOL_VERSIONS\" = 1 || exit 9\necho '1|7|unix|/tmp/plugin1|grpc|'\nsleep 30",
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(
        matches!(&err, PluginError::BadHandshake { problem: HandshakeProblem::AppVersion { got, .. }, .. } if got == "7"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("app protocol version \"7\", but this host offered only 1"),
        "{err}"
    );
    assert_no_process_left(&path);
}

#[tokio::test]
async fn never_prints_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A child in the background holds stdout open too; it must die with the plugin.
    let body = format!(
        "sleep 30 &\necho $! > {}/silent.child\nwait",
        dir.path().display()
    );
    let path = script(dir.path(), "silent", &body);
    let options = ClientOptions {
        start_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let started = std::time::Instant::now();
    let err = start_err(&path, options).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&err, PluginError::HandshakeTimeout { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("printed no handshake line within 300ms"),
        "{err}"
    );
    assert_eq!(recorded_pids(&path).len(), 2, "the script and its child");
    assert_no_process_left(&path);
}

#[tokio::test]
async fn advertises_an_address_nobody_listens_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nothing.sock");
    let path = script(
        dir.path(),
        "nolisten",
        &format!("echo '1|1|unix|{}|grpc|'\nsleep 30", socket.display()),
    );
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(matches!(&err, PluginError::Connect { .. }), "{err:?}");
    assert_no_process_left(&path);
}

#[tokio::test]
async fn is_not_executable_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing");
    let err = start_err(&path, ClientOptions::default()).await;
    assert!(matches!(&err, PluginError::Spawn { .. }), "{err:?}");
}
