//! The consul backend against the SDK's conformance suite, called directly and served through
//! the plugin path, with the in-process Consul KV emulator from confd-test-support.

use confd_builtin_consul::Consul;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::ConsulEmulator;

/// Writes into the emulator's KV store as a PUT or DELETE would.
struct Kv(ConsulEmulator);

#[async_trait::async_trait]
impl Fixture for Kv {
    fn config(&self) -> Config {
        Config::from([("nodes".to_string(), self.0.address())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.0.put(key, value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.0.delete(key, false);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_honours_the_contract() {
    Conformance::new(Consul::new, Kv(ConsulEmulator::start()))
        .name(confd_builtin_consul::NAME)
        // Consul refuses KV values over 512 KiB; the emulator does not enforce it.
        .max_value_bytes(512 * 1024)
        .bad_setting("tokn", "x")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}
