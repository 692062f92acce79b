//! The vault backend against the SDK's conformance suite, called directly and served through the
//! plugin path, with the Vault emulator from confd-test-support: once on a KV v1 mount, once on
//! a KV v2 mount. Each key is a secret whose one field is `value` (the original confd's layout),
//! so it reads back as the key itself.

use confd_builtin_vault::Vault;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::VaultEmulator;

/// Writes secrets into the emulator's `conformance` mount.
struct Secrets(VaultEmulator);

#[async_trait::async_trait]
impl Fixture for Secrets {
    fn config(&self) -> Config {
        Config::from([
            ("nodes".to_string(), self.0.address()),
            ("authType".to_string(), "token".to_string()),
            ("token".to_string(), self.0.root_token()),
        ])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        let path = key
            .strip_prefix("/conformance/")
            .ok_or("the suite writes under /conformance")?;
        self.0
            .put("conformance", path, serde_json::json!({ "value": value }));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        let path = key
            .strip_prefix("/conformance/")
            .ok_or("the suite writes under /conformance")?;
        self.0.delete("conformance", path);
        Ok(())
    }
}

async fn run(version: u8) {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("conformance", version);
    Conformance::new(Vault::new, Secrets(emulator))
        .name(confd_builtin_vault::NAME)
        .cannot_watch()
        .bad_setting("authType", "magic")
        .bad_setting("kvVersion", "3")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kv_v1_honours_the_contract() {
    run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kv_v2_honours_the_contract() {
    run(2).await;
}
