//! The zookeeper backend against the SDK's conformance suite, called directly and served
//! through the plugin path, with a real ZooKeeper server from Debian's `zookeeper` package.

use confd_builtin_zookeeper::Zookeeper;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::ZookeeperServer;
use zookeeper_client as zk;

/// Writes znodes as an application would: parents made as needed, and on delete the parents
/// left empty removed again (ZooKeeper has no directories, so an empty parent would read as a
/// key of its own).
struct Znodes {
    server: ZookeeperServer,
    client: zk::Client,
}

#[async_trait::async_trait]
impl Fixture for Znodes {
    fn config(&self) -> Config {
        Config::from([("nodes".to_string(), self.server.address())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        put(&self.client, key, value).await
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        match self.client.delete(key, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
        let mut parent = key;
        while let Some((up, _)) = parent.rsplit_once('/') {
            if up.is_empty() {
                break;
            }
            match self.client.delete(up, None).await {
                Ok(()) => parent = up,
                Err(zk::Error::NotEmpty | zk::Error::NoNode) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        for chunk in entries.chunks(64) {
            let writes = chunk.iter().map(|(k, v)| put(&self.client, k, v));
            for result in futures_util::future::join_all(writes).await {
                result?;
            }
        }
        Ok(())
    }
}

async fn put(client: &zk::Client, key: &str, value: &str) -> Result<(), FixtureError> {
    match client.set_data(key, value.as_bytes(), None).await {
        Ok(_) => return Ok(()),
        Err(zk::Error::NoNode) => {}
        Err(e) => return Err(e.into()),
    }
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    if let Some((parent, _)) = key.rsplit_once('/')
        && !parent.is_empty()
    {
        match client.mkdir(parent, &options).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match client.create(key, value.as_bytes(), &options).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NodeExists) => {
            client.set_data(key, value.as_bytes(), None).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_honours_the_contract() {
    let Some(server) = ZookeeperServer::start() else {
        return;
    };
    let client = zk::Client::connect(&server.address())
        .await
        .expect("test client connects");
    Conformance::new(Zookeeper::new, Znodes { server, client })
        .name(confd_builtin_zookeeper::NAME)
        // ZooKeeper's default jute.maxbuffer is 1 MiB for a whole packet.
        .max_value_bytes(1000 * 1000)
        .bad_setting("nodes", "http://127.0.0.1:2181")
        .bad_setting("dialTimeout", "soon")
        .watchers(Zookeeper::open_watches)
        .run()
        .await;
}
