//! The redis backend against the SDK's conformance suite, called directly and served through
//! the plugin path, with a real redis server (Debian `redis-server`).

use confd_builtin_redis::Redis;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::RedisServer;
use redis::aio::MultiplexedConnection;

/// Writes string keys (the path is the key, with the default separator) through a plain client.
struct Keys {
    server: RedisServer,
    connection: MultiplexedConnection,
}

#[async_trait::async_trait]
impl Fixture for Keys {
    fn config(&self) -> Config {
        Config::from([("nodes".to_string(), self.server.address())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        for batch in entries.chunks(500) {
            let mut mset = redis::cmd("MSET");
            for (key, value) in batch {
                mset.arg(key).arg(value);
            }
            let () = mset.query_async(&mut self.connection.clone()).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_honours_the_contract() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let connection = redis::Client::open(format!("redis://{}/", server.address()))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("test client connects");
    Conformance::new(Redis::new, Keys { server, connection })
        .name(confd_builtin_redis::NAME)
        .bad_setting("seperator", ":")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}
