//! The built executable is a working plugin: started through the host-side
//! client like confd starts it, it answers over the go-plugin protocol.

use confd_sdk::{Config, Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};

#[tokio::test]
async fn the_plugin_binary_serves_environment_variables() {
    let command = PluginCommand::new("env", env!("CARGO_BIN_EXE_confd-database-env"))
        .env("PLUGINTEST_DB_HOST", "db.internal")
        .env("PLUGINTEST_DB_PORT", "5432")
        .env("PLUGINTEST_DBX", "not below /plugintest/db");
    let client = PluginClient::start(command, ClientOptions::default())
        .await
        .expect("the plugin starts");

    client
        .configure(Config::new())
        .await
        .expect("no settings is fine");
    let values = client
        .get_values(&["/plugintest/db".to_string()])
        .await
        .expect("get_values answers");
    let got: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("/plugintest/db/host", "db.internal"),
            ("/plugintest/db/port", "5432")
        ]
    );

    let info = client.info().await.expect("info answers");
    assert_eq!(info.name, "env");
    assert!(info.capabilities.is_empty(), "{info:?}");

    let err = client
        .watch_prefix("/plugintest", &["/plugintest/db".to_string()], 0)
        .await
        .expect_err("env cannot watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    assert!(err.message().contains("--interval"), "{err}");

    let err = client
        .configure(Config::from([("nodes".to_string(), "x".to_string())]))
        .await
        .expect_err("unknown setting");
    assert!(err.message().contains("\"nodes\""), "{err}");

    client.shutdown().await;
    assert!(!client.is_alive());
}
