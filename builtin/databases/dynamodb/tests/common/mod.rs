//! What the dynamodb tests share: SDK clients for moto and confd's table layout.

#![allow(dead_code)]

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use confd_sdk::Config;
use confd_test_support::{AccessKey, MOTO_REGION, MotoServer};

pub const TABLE: &str = "confd";

pub fn client(moto: &MotoServer, key: &AccessKey) -> Client {
    Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(Region::new(MOTO_REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(&key.id, &key.secret, None, None, "test"))
            .build(),
    )
}

pub fn settings(moto: &MotoServer, key: &AccessKey, table: &str) -> Config {
    Config::from([
        ("nodes".to_string(), moto.endpoint()),
        ("region".to_string(), MOTO_REGION.to_string()),
        ("accessKeyId".to_string(), key.id.clone()),
        ("secretAccessKey".to_string(), key.secret.clone()),
        ("table".to_string(), table.to_string()),
    ])
}

/// The original confd's table: string partition key `key`.
pub async fn create_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("key")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the table");
}

pub async fn put(client: &Client, table: &str, key: &str, value: AttributeValue) {
    client
        .put_item()
        .table_name(table)
        .item("key", AttributeValue::S(key.to_string()))
        .item("value", value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}
