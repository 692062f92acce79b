//! The zookeeper backend as an external plugin process, through the host's plugin client,
//! against a real ZooKeeper: reads, a watch woken by a change, and a server restart under a
//! watch (the watch returns, and a change after the restart is read and woken on again).

use std::time::Duration;

use confd_sdk::Database;
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::ZookeeperServer;
use zookeeper_client as zk;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-zookeeper");
/// How long a change may take to wake a watch, restarts included; generous for a loaded CI.
const WAKE: Duration = Duration::from_secs(30);

async fn set(address: &str, key: &str, value: &str) {
    let client = zk::Client::connect(address).await.expect("test client");
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    if let Some((parent, _)) = key.rsplit_once('/') {
        match client.mkdir(parent, &options).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("mkdir {parent}: {e}"),
        }
    }
    match client.create(key, value.as_bytes(), &options).await {
        Ok(_) => {}
        Err(zk::Error::NodeExists) => {
            client
                .set_data(key, value.as_bytes(), None)
                .await
                .expect("set");
        }
        Err(e) => panic!("create {key}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_watches_and_survives_a_server_restart() {
    let Some(mut server) = ZookeeperServer::start() else {
        return;
    };
    let address = server.address();
    set(&address, "/app/db/host", "a").await;
    set(&address, "/app/db/port", "1").await;
    let plugin = PluginClient::start(
        PluginCommand::new("zookeeper", BIN),
        ClientOptions::default(),
    )
    .await
    .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), address.clone()),
                ("dialTimeout".to_string(), "2s".to_string()),
            ]
            .into(),
        )
        .await
        .expect("configure");
    let keys = vec!["/app".to_string()];
    let values = plugin.get_values(&keys).await.expect("read");
    assert_eq!(values.get("/app/db/host").map(String::as_str), Some("a"));
    assert_eq!(values.get("/app/db/port").map(String::as_str), Some("1"));
    // Inner znodes are not keys; leaves are.
    assert!(!values.contains_key("/app/db"), "{values:?}");

    let index = plugin.watch_prefix("/app", &keys, 0).await.expect("index");
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(WAKE, plugin.watch_prefix("/app", &keys, index)),
        set(&address, "/app/db/host", "b"),
    );
    let index = woke.expect("woken by the change").expect("watch");
    assert_eq!(
        plugin.get_values(&keys).await.expect("read")["/app/db/host"],
        "b"
    );

    // A restart under a running watch: it returns (the connection came back, or the session
    // was lost), and after it the store is read and watched again.
    let watching = plugin.watch_prefix("/app", &keys, index);
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| server.restart());
        set(&address, "/app/db/host", "c").await;
    };
    let (returned, ()) = tokio::join!(tokio::time::timeout(WAKE, watching), restart);
    let mut index = match returned.expect("the watch returns across a restart") {
        Ok(index) => index,
        Err(e) => panic!("watch failed across a restart: {e}"),
    };
    let mut host = String::new();
    for _ in 0..50 {
        match plugin.get_values(&keys).await {
            Ok(values) => {
                host = values["/app/db/host"].clone();
                if host == "c" {
                    break;
                }
            }
            Err(e) => eprintln!("read after restart: {e}"),
        }
        index = tokio::time::timeout(WAKE, plugin.watch_prefix("/app", &keys, index))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(index);
    }
    assert_eq!(host, "c");
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(WAKE, plugin.watch_prefix("/app", &keys, index)),
        set(&address, "/app/db/port", "2"),
    );
    woke.expect("woken after the restart").expect("watch");
    plugin.shutdown().await;
}
