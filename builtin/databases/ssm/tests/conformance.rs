//! The ssm backend against the SDK's conformance suite, called directly and served through the
//! plugin path, with a real moto server holding the parameters.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::{Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use confd_builtin_ssm::Ssm;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::{MOTO_REGION, MotoServer};

/// Writes parameters into moto as `aws ssm put-parameter --overwrite` would.
struct Parameters {
    moto: MotoServer,
    client: Client,
}

#[async_trait::async_trait]
impl Fixture for Parameters {
    fn config(&self) -> Config {
        let key = self.moto.credentials();
        Config::from([
            ("nodes".to_string(), self.moto.endpoint()),
            ("region".to_string(), MOTO_REGION.to_string()),
            ("accessKeyId".to_string(), key.id),
            ("secretAccessKey".to_string(), key.secret),
        ])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.client
            .put_parameter()
            .name(key)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await?;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.client.delete_parameter().name(key).send().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_honours_the_contract() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = Client::from_conf(
        aws_sdk_ssm::Config::builder()
            .behavior_version_latest()
            .region(Region::new(MOTO_REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(key.id, key.secret, None, None, "test"))
            .build(),
    );
    Conformance::new(Ssm::new, Parameters { moto, client })
        .name(confd_builtin_ssm::NAME)
        .cannot_watch()
        // SSM refuses empty values; standard parameters hold at most 4 KB.
        .no_empty_values()
        .max_value_bytes(4096)
        // GetParametersByPath pages hold 10 parameters: 300 keys are 30 pages per read.
        .many_keys(300)
        .bad_setting("dialTimeout", "soon")
        .bad_setting("endpoint", "http://a,http://b")
        .run()
        .await;
}
