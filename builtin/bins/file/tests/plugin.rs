//! The built executable is a working plugin: started through the host-side
//! client like confd starts it, it reads files and its watch wakes over the
//! go-plugin protocol's stream.

use std::time::Duration;

use confd_sdk::{Config, Database};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_binary_serves_and_watches_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("app.yaml");
    std::fs::write(&file, "app:\n  port: 8080\n  on: yes\nother: 1\n").expect("write");

    let command = PluginCommand::new("file", env!("CARGO_BIN_EXE_confd-database-file"));
    let client = PluginClient::start(command, ClientOptions::default())
        .await
        .expect("the plugin starts");
    client
        .configure(Config::from([(
            "file".to_string(),
            file.display().to_string(),
        )]))
        .await
        .expect("valid settings");

    let keys = vec!["/app".to_string()];
    let values = client.get_values(&keys).await.expect("get_values answers");
    let got: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, [("/app/on", "true"), ("/app/port", "8080")]);

    let info = client.info().await.expect("info answers");
    assert_eq!(info.name, "file");
    assert_eq!(info.capabilities, ["watch"]);

    let first = client
        .watch_prefix("/app", &keys, 0)
        .await
        .expect("an index at once");
    let client = std::sync::Arc::new(client);
    let waiter = {
        let client = std::sync::Arc::clone(&client);
        let keys = keys.clone();
        tokio::spawn(async move { client.watch_prefix("/app", &keys, first).await })
    };
    // Give the plugin time to set up its file watch before changing the file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&file, "app:\n  port: 9090\n  on: yes\nother: 1\n").expect("write");
    let next = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("the watch wakes")
        .expect("task ran")
        .expect("watch succeeded");
    assert_ne!(next, first);
    let values = client.get_values(&keys).await.expect("get_values answers");
    assert_eq!(values.get("/app/port").map(String::as_str), Some("9090"));

    let err = client
        .configure(Config::from([("filter".to_string(), "*".to_string())]))
        .await
        .expect_err("file is required");
    assert!(err.message().contains("\"file\""), "{err}");

    client.shutdown().await;
    assert!(!client.is_alive());
}
