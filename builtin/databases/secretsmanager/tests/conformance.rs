//! The secretsmanager backend against the SDK's conformance suite, called directly and served
//! through the plugin path, with a real moto server holding one secret per key.

mod common;

use aws_sdk_secretsmanager::Client;
use confd_builtin_secretsmanager::SecretsManager;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::MotoServer;

/// Writes secrets into moto as `aws secretsmanager create-secret` / `put-secret-value` would.
struct Secrets {
    moto: MotoServer,
    client: Client,
}

#[async_trait::async_trait]
impl Fixture for Secrets {
    fn config(&self) -> Config {
        common::settings(&self.moto, &self.moto.credentials())
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        common::put(&self.client, key, value).await;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.client
            .delete_secret()
            .secret_id(key)
            .force_delete_without_recovery(true)
            .send()
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secretsmanager_honours_the_contract() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let client = common::client(&moto, &moto.credentials());
    Conformance::new(SecretsManager::new, Secrets { moto, client })
        .name(confd_builtin_secretsmanager::NAME)
        .cannot_watch()
        // moto keeps a secret created with an empty SecretString without any value
        // (GetSecretValue answers not found), so the empty value cannot be stored.
        .no_empty_values()
        // A secret holds at most 64 KB.
        .max_value_bytes(64 * 1024)
        // ListSecrets pages hold 100 names, BatchGetSecretValue 20 secrets: 300 keys are
        // several pages of each.
        .many_keys(300)
        .bad_setting("noFlatten", "maybe")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}
