//! A plugin that dies or hangs in the middle of a call: the host gets an error naming the plugin
//! and the cause, and no process is left behind; a supervised plugin is started again with its
//! last settings, also when it hangs in a call or stops answering health checks during a watch.

use std::path::Path;
use std::time::Duration;

use confd_sdk::{Database, ErrorKind};
use std::sync::{Arc, Mutex};

use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, PluginEvent};

const BIN: &str = env!("CARGO_BIN_EXE_misbehave-plugin");

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

async fn assert_gone(pid: u32) {
    for _ in 0..100 {
        if gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("plugin process {pid} is still there");
}

#[tokio::test]
async fn a_plugin_that_dies_during_a_call() {
    let client = PluginClient::start(
        PluginCommand::new("misbehave", BIN).env("MISBEHAVE", "crash"),
        ClientOptions::default(),
    )
    .await
    .expect("starts");
    let pid = client.pid().expect("pid");
    let address = client.address();
    let socket = Path::new(address.strip_prefix("unix:").expect("unix socket")).to_owned();
    client
        .configure(Default::default())
        .await
        .expect("configure works");
    let err = client
        .get_values(&["/a".into()])
        .await
        .expect_err("the plugin died");
    assert_eq!(err.kind(), ErrorKind::PluginFailed, "{err}");
    let text = err.to_string();
    assert!(text.contains(BIN), "names the plugin: {text}");
    assert!(text.contains("died during GetValues"), "{text}");
    assert!(
        text.contains("exit status: 7"),
        "gives the exit status: {text}"
    );
    assert!(!client.is_alive());
    // Later calls fail fast with the same story.
    let again = client
        .get_values(&["/a".into()])
        .await
        .expect_err("still dead");
    assert_eq!(again.kind(), ErrorKind::PluginFailed);
    assert!(
        again
            .to_string()
            .contains("is not running (exit status: 7)"),
        "{again}"
    );
    client.shutdown().await;
    assert_gone(pid).await;
    assert!(
        !socket.exists(),
        "the host removed the crashed plugin's socket"
    );
}

#[tokio::test]
async fn a_plugin_that_dies_during_a_watch() {
    let client = PluginClient::start(
        PluginCommand::new("misbehave", BIN).env("MISBEHAVE", "crash"),
        ClientOptions::default(),
    )
    .await
    .expect("starts");
    let pid = client.pid().expect("pid");
    assert_eq!(client.watch_prefix("/", &[], 0).await.expect("index"), 1);
    let err = client
        .watch_prefix("/", &[], 1)
        .await
        .expect_err("the plugin died while we waited");
    assert_eq!(err.kind(), ErrorKind::PluginFailed, "{err}");
    let text = err.to_string();
    assert!(text.contains(BIN), "names the plugin: {text}");
    assert!(
        text.contains("died during WatchPrefix (exit status: 8)"),
        "{text}"
    );
    client.shutdown().await;
    assert_gone(pid).await;
}

#[tokio::test]
async fn a_plugin_that_hangs_in_a_call_hits_the_deadline() {
    let client = PluginClient::start(
        PluginCommand::new("misbehave", BIN).env("MISBEHAVE", "hang"),
        ClientOptions {
            call_timeout: Some(Duration::from_millis(300)),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("starts");
    let pid = client.pid().expect("pid");
    let started = std::time::Instant::now();
    let err = client
        .get_values(&["/a".into()])
        .await
        .expect_err("deadline");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let text = err.to_string();
    assert!(text.contains(BIN), "names the plugin: {text}");
    assert!(
        text.contains("GetValues did not answer within 300ms"),
        "{text}"
    );
    // The plugin is still alive and answers other calls.
    client.ping().await.expect("ping");
    assert_eq!(client.watch_prefix("/", &[], 4).await.expect("watch"), 5);
    client.shutdown().await;
    assert_gone(pid).await;
}

/// Records the events of a supervised client.
fn recorder() -> (Arc<Mutex<Vec<PluginEvent>>>, ClientOptions) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = ClientOptions {
        events: Some(Arc::new(move |_name: &str, event: &PluginEvent| {
            sink.lock().expect("events").push(event.clone());
        })),
        ..ClientOptions::supervised()
    };
    (seen, options)
}

async fn wait_pid_change(client: &PluginClient, old: u32) -> u32 {
    for _ in 0..500 {
        if let Some(pid) = client.pid().filter(|p| *p != old) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("plugin {old} was not replaced");
}

#[tokio::test]
async fn a_supervised_plugin_that_dies_comes_back_with_its_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, options) = recorder();
    let client = PluginClient::start(
        PluginCommand::new("misbehave", BIN)
            .env("MISBEHAVE", "crash-once")
            .env("MISBEHAVE_MARK", dir.path().join("crashed")),
        options,
    )
    .await
    .expect("starts");
    let first = client.pid().expect("pid");
    let settings = [("value".to_string(), "from-settings".to_string())];
    client
        .configure(settings.into_iter().collect())
        .await
        .expect("configure");
    let err = client
        .get_values(&["/a".into()])
        .await
        .expect_err("the first process dies in this call");
    assert!(
        err.to_string()
            .contains("died during GetValues (exit status: 7)"),
        "{err}"
    );
    // The next call waits for the new process, which got the settings again.
    let values = client.get_values(&["/a".into()]).await.expect("restarted");
    assert_eq!(values["/a"], "from-settings");
    let second = client.pid().expect("pid");
    assert_ne!(first, second);
    assert_gone(first).await;
    assert_eq!(client.restarts(), 1);
    assert_eq!(
        *events.lock().expect("events"),
        vec![
            PluginEvent::Up,
            PluginEvent::Restarting { cause: "exited" },
            PluginEvent::Up
        ]
    );
    client.shutdown().await;
    assert_gone(second).await;
}

#[tokio::test]
async fn a_supervised_plugin_that_misses_the_deadline_is_killed_and_restarted() {
    let (events, mut options) = recorder();
    options.call_timeout = Some(Duration::from_millis(300));
    let client = PluginClient::start(
        PluginCommand::new("misbehave", BIN).env("MISBEHAVE", "hang"),
        options,
    )
    .await
    .expect("starts");
    let first = client.pid().expect("pid");
    let err = client
        .get_values(&["/a".into()])
        .await
        .expect_err("deadline");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.to_string().contains(&format!("(pid {first})")),
        "names the pid: {err}"
    );
    let second = wait_pid_change(&client, first).await;
    assert_gone(first).await;
    client.ping().await.expect("the new process answers");
    assert!(
        events
            .lock()
            .expect("events")
            .contains(&PluginEvent::Restarting { cause: "deadline" })
    );
    client.shutdown().await;
    assert_gone(second).await;
}

#[tokio::test]
async fn a_stopped_plugin_under_a_watch_fails_its_probe_and_is_restarted() {
    let (events, mut options) = recorder();
    options.call_timeout = Some(Duration::from_millis(300));
    options.probe_interval = Duration::from_millis(100);
    let client = Arc::new(
        PluginClient::start(
            PluginCommand::new("misbehave", BIN).env("MISBEHAVE", "block-watch"),
            options,
        )
        .await
        .expect("starts"),
    );
    let first = client.pid().expect("pid");
    // A watch that blocks, as on a quiet store: no deadline applies, the probes watch over it.
    let watcher = client.clone();
    let watch = tokio::spawn(async move { watcher.watch_prefix("/", &[], 1).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP");
    let second = wait_pid_change(&client, first).await;
    assert_gone(first).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends with its process")
        .expect("join");
    assert!(ended.is_err(), "{ended:?}");
    assert!(
        events
            .lock()
            .expect("events")
            .contains(&PluginEvent::Restarting { cause: "unhealthy" })
    );
    // Watches work against the new process.
    assert_eq!(client.watch_prefix("/", &[], 0).await.expect("watch"), 1);
    client.shutdown().await;
    assert_gone(second).await;
}

/// A plugin whose first start failed (`not_started`): unsupervised, every call fails naming the
/// cause; supervised, it is started with the restart backoff and gets the settings it was meant
/// to have.
#[tokio::test]
async fn a_plugin_that_did_not_start_fails_its_calls_or_is_started_later() {
    let config: confd_sdk::Config = [("value".to_string(), "late".to_string())]
        .into_iter()
        .collect();
    let once = PluginClient::not_started(
        PluginCommand::new("misbehave", BIN),
        ClientOptions::default(),
        config.clone(),
        "it exited before the handshake".to_string(),
    );
    let err = once
        .get_values(&["/a".into()])
        .await
        .expect_err("never started");
    assert_eq!(err.kind(), ErrorKind::PluginFailed, "{err}");
    assert!(
        err.to_string().contains("it exited before the handshake"),
        "{err}"
    );
    assert!(once.pid().is_none());

    let (events, options) = recorder();
    let later = PluginClient::not_started(
        PluginCommand::new("misbehave", BIN),
        options,
        config,
        "it exited before the handshake".to_string(),
    );
    assert!(
        later.wait_up(Duration::from_secs(10)).await,
        "started later"
    );
    assert_eq!(
        later.get_values(&["/a".into()]).await.expect("read"),
        [("/a".to_string(), "late".to_string())]
            .into_iter()
            .collect()
    );
    assert!(later.restarts() >= 1);
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|e| matches!(e, PluginEvent::Up)),
        "reported up"
    );
    let pid = later.pid().expect("pid");
    later.shutdown().await;
    assert_gone(pid).await;
}
