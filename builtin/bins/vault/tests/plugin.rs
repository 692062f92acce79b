//! The vault backend as an external plugin process, through the host's plugin client, against
//! the Vault emulator: reads, a refused path, and watch refused as not implemented.

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::VaultEmulator;

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-vault");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_refuses_and_cannot_watch() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("kv", 2);
    emulator.put("kv", "app", serde_json::json!({"user": "u", "port": 5432}));
    emulator.put("kv", "private", serde_json::json!({"value": "x"}));
    emulator.deny("kv/data/private");
    let plugin = PluginClient::start(PluginCommand::new("vault", BIN), ClientOptions::default())
        .await
        .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), emulator.address()),
                ("authType".to_string(), "token".to_string()),
                ("token".to_string(), emulator.root_token()),
            ]
            .into(),
        )
        .await
        .expect("configure");
    let values = plugin
        .get_values(&["/kv/app".to_string()])
        .await
        .expect("read");
    assert_eq!(values.get("/kv/app/port").map(String::as_str), Some("5432"));
    assert_eq!(values.get("/kv/app/user").map(String::as_str), Some("u"));
    let err = plugin
        .get_values(&["/kv/private".to_string()])
        .await
        .expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("kv/data/private"), "{err}");
    let err = plugin
        .watch_prefix("/kv", &["/kv".to_string()], 0)
        .await
        .expect_err("no watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    plugin.shutdown().await;
}
