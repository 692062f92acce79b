//! The consul backend as an external plugin process, through the SDK's host
//! client, against the Consul KV emulator.

use std::time::Duration;

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::ConsulEmulator;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-consul");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_watches_and_reports_outages() {
    let mut emulator = ConsulEmulator::start();
    emulator.put("app/a", "1");
    let plugin = PluginClient::start(PluginCommand::new("consul", BIN), ClientOptions::default())
        .await
        .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), emulator.address()),
                ("scheme".to_string(), "http".to_string()),
                ("dialTimeout".to_string(), "1s".to_string()),
            ]
            .into(),
        )
        .await
        .expect("configure");
    let keys = vec!["/app".to_string()];
    let values = plugin.get_values(&keys).await.expect("read");
    assert_eq!(values.get("/app/a").map(String::as_str), Some("1"));

    let index = plugin.watch_prefix("/app", &keys, 0).await.expect("index");
    emulator.put("app/a", "2");
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        plugin.watch_prefix("/app", &keys, index),
    )
    .await
    .expect("woken")
    .expect("watch");
    assert_eq!(next, emulator.index());

    tokio::task::block_in_place(|| emulator.stop());
    let err = plugin.get_values(&keys).await.expect_err("agent is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&emulator.address()), "{err}");
    plugin.shutdown().await;
}
