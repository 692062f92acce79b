//! The imds backend against the SDK's conformance suite, called directly and served through the
//! plugin path, with the IMDS emulator from confd-test-support serving the data as metadata.

use confd_builtin_imds::Imds;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::ImdsEmulator;

/// Writes leaves into the emulator's metadata tree.
struct Metadata(ImdsEmulator);

#[async_trait::async_trait]
impl Fixture for Metadata {
    fn config(&self) -> Config {
        // No cache: the suite changes data between reads.
        Config::from([
            ("nodes".to_string(), self.0.url()),
            ("cacheTtl".to_string(), "0s".to_string()),
        ])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.0.put(key, value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.0.delete(key);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_honours_the_contract() {
    Conformance::new(Imds::new, Metadata(ImdsEmulator::empty()))
        .name(confd_builtin_imds::NAME)
        .root("/meta-data/conformance")
        .cannot_watch()
        // One GET per leaf: 300 leaves keep the walk quick.
        .many_keys(300)
        .bad_setting("cacheTtl", "soon")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}
