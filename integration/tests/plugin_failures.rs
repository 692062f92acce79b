//! A plugin that dies or hangs in the middle of a call: the host gets an error naming the plugin
//! and the cause, and no process is left behind.

use std::path::Path;
use std::time::Duration;

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};

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
