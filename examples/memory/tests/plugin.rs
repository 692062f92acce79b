//! End-to-end tests of the SDK through a real plugin process: `serve` in the memory plugin on
//! one side, `PluginClient` on the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_sdk::{Config, Database, ErrorKind, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, Transport};

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-memory");

fn command() -> PluginCommand {
    PluginCommand::new("memory", BIN)
}

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_gone(pid: u32) {
    for _ in 0..100 {
        if !process_exists(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("plugin process {pid} is still there");
}

fn socket_path(client: &PluginClient) -> PathBuf {
    let address = client.address();
    PathBuf::from(address.strip_prefix("unix:").expect("a unix socket"))
}

#[tokio::test]
async fn configure_get_watch_info_ping_shutdown() {
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    let pid = client.pid().expect("pid");
    let socket = socket_path(&client);
    assert!(socket.exists(), "socket {socket:?} exists while running");

    let info = client.info().await.expect("info");
    assert_eq!(info.name, "memory");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.capabilities, ["watch"]);

    client
        .configure(config(&[
            ("data./app/x", "1"),
            ("data./app/y", "2"),
            ("data./other", "3"),
        ]))
        .await
        .expect("configure");
    assert_eq!(client.last_config().expect("remembered").len(), 3);
    let values = client.get_values(&["/app".into()]).await.expect("get");
    assert_eq!(
        values.into_iter().collect::<Vec<_>>(),
        [
            ("/app/x".to_string(), "1".to_string()),
            ("/app/y".into(), "2".into())
        ]
    );

    let index = client
        .watch_prefix("/app", &["/app".into()], 0)
        .await
        .expect("index");
    let client = Arc::new(client);
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.watch_prefix("/app", &["/app".into()], index).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "watch blocks until a change");
    client
        .configure(config(&[("data./app/x", "changed")]))
        .await
        .expect("configure");
    let next = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("watch wakes")
        .expect("join")
        .expect("watch");
    assert!(next > index);

    client.ping().await.expect("ping");
    client.shutdown().await;
    assert!(!client.is_alive());
    assert_eq!(
        client.exit_status().map(|s| s.code()),
        Some(Some(0)),
        "clean exit"
    );
    assert!(!socket.exists(), "socket removed");
    assert!(
        !socket.parent().expect("dir").exists(),
        "socket dir removed"
    );
    wait_gone(pid).await;
    client.shutdown().await; // a second call is harmless
}

#[tokio::test]
async fn large_and_empty_reads_match_the_in_process_database() {
    // Large enough to travel as many GetValuesStream batches.
    let data: Config = (0..30_000)
        .map(|i| {
            (
                format!("data./big/k{i:06}"),
                format!("value {i} {}", "x".repeat(i % 50)),
            )
        })
        .chain([("data./small".to_string(), "ü".to_string())])
        .collect();
    let local = confd_database_memory::Memory::new();
    local.configure(data.clone()).await.expect("configure");
    // as shipped (the SDK visits the store) and serving only the Database trait
    for command in [
        command(),
        command().env("CONFD_MEMORY_PLUGIN_MAP_ONLY", "1"),
    ] {
        let client = PluginClient::start(command, ClientOptions::default())
            .await
            .expect("plugin starts");
        client.configure(data.clone()).await.expect("configure");
        for keys in [
            vec!["/big".to_string()],
            vec!["/".to_string()],
            vec!["/small".to_string(), "/big/k000001".to_string()],
            vec!["/nothing".to_string()],
            vec![],
        ] {
            let want = local.get_values(&keys).await.expect("in-process");
            let got = client.get_values(&keys).await.expect("through the plugin");
            assert_eq!(got.len(), want.len(), "{keys:?}");
            assert!(got == want, "{keys:?}: different values");
        }
        client.shutdown().await;
    }
}

#[tokio::test]
async fn plugin_errors_keep_their_kind() {
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    let err = client
        .configure(config(&[("nodez", "x")]))
        .await
        .expect_err("unknown key");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("\"nodez\""), "{err}");
    assert!(
        client.last_config().is_none(),
        "a refused config is not remembered"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_watch_leaves_the_plugin_usable() {
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    let index = client.watch_prefix("/", &[], 0).await.expect("index");
    for _ in 0..20 {
        let pending = tokio::time::timeout(
            Duration::from_millis(10),
            client.watch_prefix("/", &[], index),
        )
        .await;
        assert!(
            pending.is_err(),
            "nothing changed, the watch must still be waiting"
        );
    }
    client
        .configure(config(&[("data./k", "v")]))
        .await
        .expect("configure");
    assert_eq!(
        client.get_values(&["/k".into()]).await.expect("get").len(),
        1
    );
    client.shutdown().await;
}

#[tokio::test]
async fn dropping_the_client_kills_the_plugin() {
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    let pid = client.pid().expect("pid");
    let socket = socket_path(&client);
    assert!(process_exists(pid));
    drop(client);
    wait_gone(pid).await;
    // The killed plugin could not remove its socket; the host's reaper does.
    for _ in 0..100 {
        if !socket.parent().expect("dir").exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stale socket directory {:?} left behind", socket.parent());
}

#[tokio::test]
async fn sigint_is_ignored() {
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    let pid = client.pid().expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.is_alive(), "SIGINT must not stop a plugin");
    client.ping().await.expect("still answers");
    client.shutdown().await;
    assert_eq!(client.exit_status().map(|s| s.code()), Some(Some(0)));
}

#[tokio::test]
async fn tcp_transport_on_request() {
    let client = PluginClient::start(
        command(),
        ClientOptions {
            transport: Transport::Tcp,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("plugin starts");
    let address = client.address();
    let port: u16 = address
        .strip_prefix("tcp:127.0.0.1:")
        .expect("loopback tcp address")
        .parse()
        .expect("port");
    assert!(
        (10000..=25000).contains(&port),
        "port {port} within PLUGIN_MIN/MAX_PORT"
    );
    client
        .configure(config(&[("data./a", "1")]))
        .await
        .expect("configure");
    assert_eq!(
        client.get_values(&["/a".into()]).await.expect("get").len(),
        1
    );
    client.shutdown().await;
}

#[tokio::test]
async fn socket_goes_into_plugin_unix_socket_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = PluginClient::start(
        command().env("PLUGIN_UNIX_SOCKET_DIR", dir.path()),
        ClientOptions::default(),
    )
    .await
    .expect("plugin starts");
    let socket = socket_path(&client);
    assert!(
        socket.starts_with(dir.path()),
        "{socket:?} in {:?}",
        dir.path()
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(socket.parent().expect("dir"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "private socket directory");
    client.shutdown().await;
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "cleaned up"
    );
}

#[test]
fn refuses_to_run_without_the_cookie() {
    for cookie in [None, Some("wrong")] {
        let mut cmd = Command::new(BIN);
        cmd.env_remove(MAGIC_COOKIE_KEY);
        if let Some(cookie) = cookie {
            cmd.env(MAGIC_COOKIE_KEY, cookie);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty(), "nothing on stdout");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "This binary is a plugin. These are not meant to be executed directly.\n\
             Please execute the program that consumes these plugins, which will\n\
             load any plugins automatically\n"
        );
    }
}

#[test]
fn refuses_a_broken_client_certificate() {
    let out = Command::new(BIN)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\n...")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no handshake line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PLUGIN_CLIENT_CERT does not hold a PEM certificate"),
        "{stderr}"
    );
}

/// Collects the events the client re-emits from the plugin's stderr.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(HashMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.insert(f.name().into(), format!("{v:?}"));
            }
        }
        let mut fields = Fields(HashMap::new());
        event.record(&mut fields);
        fields
            .0
            .insert("level".into(), event.metadata().level().to_string());
        self.0.lock().expect("not poisoned").push(fields.0);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn plugin_logs_reach_the_host_log_tagged_with_its_name() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let client = PluginClient::start(
        command().env("CONFD_PLUGIN_LOG_LEVEL", "debug"),
        ClientOptions::default(),
    )
    .await
    .expect("plugin starts");
    client.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = captured.0.lock().expect("not poisoned").clone();
    let listening = events
        .iter()
        .find(|e| e.get("message").map(String::as_str) == Some("plugin listening"))
        .unwrap_or_else(|| panic!("plugin's log line forwarded: {events:?}"));
    assert_eq!(listening["backend"], "memory");
    assert!(
        listening["plugin_pid"].parse::<u32>().is_ok(),
        "{listening:?}"
    );
    assert_eq!(listening["level"], "DEBUG");
    assert!(listening["fields"].contains("version=1"), "{listening:?}");
}

/// Run by `the_plugin_dies_with_its_host` in a child copy of this test binary: start a plugin,
/// report its pid, then wait to be killed.
#[tokio::test]
async fn host_process_for_death_test() {
    if std::env::var_os("CONFD_TEST_HOST_MODE").is_none() {
        return;
    }
    let client = PluginClient::start(command(), ClientOptions::default())
        .await
        .expect("plugin starts");
    println!(
        "PLUGIN_PID={} {}",
        client.pid().expect("pid"),
        socket_path(&client).display()
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
}

struct RemoveDirOnDrop(Option<PathBuf>);
impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn the_plugin_dies_with_its_host() {
    use std::io::{BufRead as _, BufReader};
    let mut host = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "host_process_for_death_test", "--nocapture"])
        .env("CONFD_TEST_HOST_MODE", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("host starts");
    let stdout = host.stdout.take().expect("piped");
    let report = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("PLUGIN_PID=").map(str::to_owned))
        .expect("the host reports its plugin");
    let (pid, socket) = report.split_once(' ').expect("pid and socket");
    let pid: u32 = pid.parse().expect("pid");
    // Nobody is left to remove a SIGKILLed plugin's socket (go-plugin has the same gap).
    let _cleanup = RemoveDirOnDrop(PathBuf::from(socket).parent().map(Path::to_owned));
    assert!(process_exists(pid));
    host.kill().expect("SIGKILL the host");
    host.wait().expect("reaped");
    for _ in 0..100 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty()
            || state
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("plugin {pid} outlived its SIGKILLed host");
}
