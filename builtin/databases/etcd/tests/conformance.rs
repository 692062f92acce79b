//! The etcd backend against the SDK's conformance suite, called directly and served through
//! the plugin path, with a real etcd server (Debian `etcd-server`).

use confd_builtin_etcd::{Etcd, MAX_OPS_PER_TXN};
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::EtcdServer;
use etcd_client::{Client, Txn, TxnOp};

/// Writes through etcd's own client, as another etcd user would.
struct Keys {
    server: EtcdServer,
    client: Client,
}

#[async_trait::async_trait]
impl Fixture for Keys {
    fn config(&self) -> Config {
        Config::from([("nodes".to_string(), self.server.address())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.client.clone().put(key, value, None).await?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.client.clone().delete(key, None).await?;
        Ok(())
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        // One write (and fsync) per transaction rather than per key.
        let mut kv = self.client.kv_client();
        for batch in entries.chunks(MAX_OPS_PER_TXN) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
                .collect();
            kv.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_honours_the_contract() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let client = Client::connect([server.endpoint()], None)
        .await
        .expect("test client connects");
    Conformance::new(Etcd::new, Keys { server, client })
        .name(confd_builtin_etcd::NAME)
        .bad_setting("nodez", "x")
        .bad_setting("dialTimeout", "soon")
        // The in-memory copies fed by etcd watches, one per watched prefix.
        .watchers(Etcd::open_watches)
        .run()
        .await;
}
