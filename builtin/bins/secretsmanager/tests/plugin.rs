//! The secretsmanager backend as an external plugin process, through the host's plugin client, against
//! a moto server: it starts, takes the AWS settings, reads, and refuses to watch.

use confd_sdk::{Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use confd_test_support::{MOTO_REGION, MotoServer};

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-secretsmanager");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reads_and_refuses_to_watch() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let plugin = PluginClient::start(
        PluginCommand::new("secretsmanager", BIN),
        ClientOptions::default(),
    )
    .await
    .expect("plugin starts");
    plugin
        .configure(
            [
                ("nodes".to_string(), moto.endpoint()),
                ("region".to_string(), MOTO_REGION.to_string()),
                ("accessKeyId".to_string(), key.id.clone()),
                ("secretAccessKey".to_string(), key.secret.clone()),
            ]
            .into(),
        )
        .await
        .expect("configure");
    let keys = vec!["/nothing/here".to_string()];
    let read = plugin.get_values(&keys).await;
    assert_eq!(read.expect("read"), Default::default());
    let err = plugin
        .watch_prefix("/nothing", &keys, 0)
        .await
        .expect_err("cannot watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
    assert!(err.to_string().contains("secretsmanager"), "{err}");
    plugin.shutdown().await;
}
