//! The dynamodb backend against the SDK's conformance suite, called directly and served through
//! the plugin path, with a real moto server holding confd's table.

mod common;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use confd_builtin_dynamodb::DynamoDb;
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_test_support::MotoServer;

/// Writes items into the table as `aws dynamodb put-item` would.
struct Table {
    moto: MotoServer,
    client: Client,
}

#[async_trait::async_trait]
impl Fixture for Table {
    fn config(&self) -> Config {
        common::settings(&self.moto, &self.moto.credentials(), common::TABLE)
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        common::put(
            &self.client,
            common::TABLE,
            key,
            AttributeValue::S(value.into()),
        )
        .await;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.client
            .delete_item()
            .table_name(common::TABLE)
            .key("key", AttributeValue::S(key.into()))
            .send()
            .await?;
        Ok(())
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        for chunk in entries.chunks(25) {
            let writes = chunk
                .iter()
                .map(|(k, v)| {
                    let put = PutRequest::builder()
                        .item("key", AttributeValue::S(k.clone()))
                        .item("value", AttributeValue::S(v.clone()))
                        .build()?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, FixtureError>>()?;
            self.client
                .batch_write_item()
                .request_items(common::TABLE, writes)
                .send()
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_honours_the_contract() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let client = common::client(&moto, &moto.credentials());
    common::create_table(&client, common::TABLE).await;
    Conformance::new(DynamoDb::new, Table { moto, client })
        .name(confd_builtin_dynamodb::NAME)
        .cannot_watch()
        // An item holds at most 400 KB, key and attribute names included.
        .max_value_bytes(300 * 1024)
        .bad_setting("table", "")
        .bad_setting("dialTimeout", "soon")
        .run()
        .await;
}
