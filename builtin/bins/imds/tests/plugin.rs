//! The imds backend as an external plugin process, through the host's plugin client, against
//! the IMDS emulator: it starts, reads with an IMDSv2 token, and refuses to watch.

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::ImdsEmulator;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-imds");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_and_refuses_to_watch() {
    let emulator = ImdsEmulator::start();
    let plugin = PluginClient::start(PluginCommand::new("imds", BIN), ClientOptions::default())
        .await
        .expect("plugin starts");
    plugin
        .configure([("nodes".to_string(), emulator.url())].into())
        .await
        .expect("configure");
    let keys = vec!["/meta-data/instance-id".to_string()];
    let values = plugin.get_values(&keys).await.expect("read");
    assert_eq!(
        values.get("/meta-data/instance-id").map(String::as_str),
        Some("i-0123456789abcdef0")
    );
    let err = plugin
        .watch_prefix("/meta-data", &keys, 0)
        .await
        .expect_err("cannot watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    plugin.shutdown().await;
}
