//! The redis backend as an external plugin process, through the SDK's host
//! client, against a real redis server.

use std::time::Duration;

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-redis");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_watches_and_reports_outages() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut conn = redis::Client::open(format!("redis://{}/", server.address()))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("test client");
    let set =
        |key: &'static str, value: &'static str| redis::cmd("SET").arg(key).arg(value).clone();
    let _: () = set("app:a", "1").query_async(&mut conn).await.expect("set");

    let plugin = PluginClient::start(PluginCommand::new("redis", BIN), ClientOptions::default())
        .await
        .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), server.address()),
                ("separator".to_string(), ":".to_string()),
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
    let _: () = set("app:a", "2").query_async(&mut conn).await.expect("set");
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        plugin.watch_prefix("/app", &keys, index),
    )
    .await
    .expect("woken")
    .expect("watch");
    assert!(next > index);

    tokio::task::block_in_place(|| server.stop());
    let err = plugin.get_values(&keys).await.expect_err("redis is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");
    plugin.shutdown().await;
}
