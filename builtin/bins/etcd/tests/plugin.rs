//! The etcd backend as an external plugin process, through the SDK's host
//! client, against a real etcd: read, watch, and the error kind crossing
//! the wire when etcd dies.

use std::time::Duration;

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::EtcdServer;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-etcd");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_watches_and_reports_outages() {
    let Some(mut server) = EtcdServer::start() else {
        return;
    };
    let mut etcd = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .expect("test client");
    etcd.put("/p/app/a", "1", None).await.expect("put");

    let plugin = PluginClient::start(PluginCommand::new("etcd", BIN), ClientOptions::default())
        .await
        .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), server.address()),
                ("dialTimeout".to_string(), "5s".to_string()),
            ]
            .into(),
        )
        .await
        .expect("configure");
    let keys = vec!["/p/app".to_string()];
    let values = plugin.get_values(&keys).await.expect("read");
    assert_eq!(values.get("/p/app/a").map(String::as_str), Some("1"));

    let index = plugin.watch_prefix("/p", &keys, 0).await.expect("index");
    etcd.put("/p/app/a", "2", None).await.expect("put");
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        plugin.watch_prefix("/p", &keys, index),
    )
    .await
    .expect("woken")
    .expect("watch");
    assert!(next > index);

    tokio::task::block_in_place(|| server.stop());
    // The watch fed a cache that answers until its stream notices the server is gone (at once
    // on the broken connection; a read can slip in before that): the outage shows within moments.
    let mut outcome = plugin.get_values(&keys).await;
    for _ in 0..100 {
        if outcome.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        outcome = plugin.get_values(&keys).await;
    }
    let err = outcome.expect_err("etcd is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");
    plugin.shutdown().await;
}
