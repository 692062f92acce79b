//! The dynamodb backend's own behaviour against a real moto server: the original confd's table
//! layout, Scan pagination, skipped non-string values, and errors that name the table and key.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use confd_builtin_dynamodb::DynamoDb;
use confd_sdk::{Config, Database, ErrorKind};
use confd_test_support::{MotoOptions, MotoServer};

async fn dynamodb(config: Config) -> DynamoDb {
    let db = DynamoDb::new();
    db.configure(config).await.expect("configure");
    db
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_map_to_keys_and_odd_values_are_skipped() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = common::client(&moto, &key);
    common::create_table(&client, common::TABLE).await;
    let s = |v: &str| AttributeValue::S(v.to_string());
    common::put(&client, common::TABLE, "/upstream", s("the parent item")).await;
    common::put(
        &client,
        common::TABLE,
        "/upstream/app1",
        s("10.0.1.10:8080"),
    )
    .await;
    common::put(
        &client,
        common::TABLE,
        "/upstream/app2",
        s("10.0.1.11:8080"),
    )
    .await;
    // The original confd's test table has this item: a number, which must be skipped.
    common::put(
        &client,
        common::TABLE,
        "/upstream/broken",
        AttributeValue::N("4711".into()),
    )
    .await;
    common::put(&client, common::TABLE, "/upstreams/x", s("lookalike")).await;
    let db = dynamodb(common::settings(&moto, &key, common::TABLE)).await;

    let got = db.get_values(&keys(&["/upstream"])).await.expect("read");
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("/upstream", "the parent item"),
            ("/upstream/app1", "10.0.1.10:8080"),
            ("/upstream/app2", "10.0.1.11:8080"),
        ]
    );
    let got = db
        .get_values(&keys(&["/upstream/app1", "/upstreams/", "/missing"]))
        .await
        .expect("read leaves");
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_scan_is_read() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = common::client(&moto, &key);
    common::create_table(&client, common::TABLE).await;
    // A Scan page holds at most 1 MB: 24 items of 100 KB need three pages.
    let big = "x".repeat(100 * 1024);
    for i in 0..24 {
        let value = format!("{i}:{big}");
        common::put(
            &client,
            common::TABLE,
            &format!("/big/k{i:02}"),
            AttributeValue::S(value),
        )
        .await;
    }
    let db = dynamodb(common::settings(&moto, &key, common::TABLE)).await;
    let got = db.get_values(&keys(&["/big"])).await.expect("read");
    assert_eq!(got.len(), 24);
    assert!(got["/big/k23"].starts_with("23:x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_and_denied_access_name_table_and_key() {
    let options = MotoOptions { iam: true };
    let Some(moto) = tokio::task::block_in_place(|| MotoServer::start_with(options)) else {
        return;
    };
    let admin = moto.admin().expect("iam users").clone();
    let client = common::client(&moto, &admin);
    common::create_table(&client, common::TABLE).await;
    common::put(
        &client,
        common::TABLE,
        "/app/port",
        AttributeValue::S("8080".into()),
    )
    .await;

    let db = dynamodb(common::settings(&moto, &admin, "no-such-table")).await;
    let err = db.get_values(&keys(&["/app"])).await.expect_err("no table");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"no-such-table\"") && text.contains("/app"),
        "{text}"
    );

    let nobody = moto.nobody().expect("iam users").clone();
    let db = dynamodb(common::settings(&moto, &nobody, common::TABLE)).await;
    let err = db.get_values(&keys(&["/app"])).await.expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"confd\"") && text.contains("/app"),
        "{text}"
    );
}

#[tokio::test]
async fn a_table_is_required() {
    let db = DynamoDb::new();
    let err = db
        .configure(Config::from([(
            "region".to_string(),
            "us-east-1".to_string(),
        )]))
        .await
        .expect_err("no table");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(
        err.to_string().contains("no DynamoDB table configured"),
        "{err}"
    );
}
