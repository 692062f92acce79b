//! What the secretsmanager tests share: SDK clients for moto and secret writes.

#![allow(dead_code)]

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use confd_sdk::Config;
use confd_test_support::{AccessKey, MOTO_REGION, MotoServer};

pub fn client(moto: &MotoServer, key: &AccessKey) -> Client {
    Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version_latest()
            .region(Region::new(MOTO_REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(&key.id, &key.secret, None, None, "test"))
            .build(),
    )
}

pub fn settings(moto: &MotoServer, key: &AccessKey) -> Config {
    Config::from([
        ("nodes".to_string(), moto.endpoint()),
        ("region".to_string(), MOTO_REGION.to_string()),
        ("accessKeyId".to_string(), key.id.clone()),
        ("secretAccessKey".to_string(), key.secret.clone()),
    ])
}

/// Creates the secret `name`, or gives it a new current version.
pub async fn put(client: &Client, name: &str, value: &str) {
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await;
    if created.is_err() {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
    }
}

pub async fn put_binary(client: &Client, name: &str, value: &[u8]) {
    client
        .create_secret()
        .name(name)
        .secret_binary(Blob::new(value.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}
