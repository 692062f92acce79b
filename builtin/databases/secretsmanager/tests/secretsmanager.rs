//! The secretsmanager backend's own behaviour against a real moto server: JSON flattening and
//! parent lookups, noFlatten, binary secrets, version stages, pagination, errors naming the key.

mod common;

use std::collections::BTreeMap;

use confd_builtin_secretsmanager::SecretsManager;
use confd_sdk::{Config, Database, ErrorKind};
use confd_test_support::{MotoOptions, MotoServer};

async fn secrets(config: Config) -> SecretsManager {
    let db = SecretsManager::new();
    db.configure(config).await.expect("configure");
    db
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_secrets_are_flattened_and_parents_found() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = common::client(&moto, &key);
    common::put(
        &client,
        "/myapp/database",
        r#"{"username":"app","password":"s3cret","port":5432}"#,
    )
    .await;
    // Without the leading slash it is the same key.
    common::put(&client, "myapp/api-key", "k-123").await;
    common::put(&client, "/myapp-other/x", "lookalike").await;
    common::put_binary(&client, "/myapp/cert", &[0, 1, 2, 255]).await;
    let settings = common::settings(&moto, &key);
    let db = secrets(settings.clone()).await;

    let got = db
        .get_values(&keys(&["/myapp"]))
        .await
        .expect("read /myapp");
    assert_eq!(
        got,
        map(&[
            ("/myapp/api-key", "k-123"),
            ("/myapp/cert", "AAEC/w=="),
            ("/myapp/database/password", "s3cret"),
            ("/myapp/database/port", "5432"),
            ("/myapp/database/username", "app"),
        ])
    );
    // A field of a secret: its parent secret is read.
    let got = db
        .get_values(&keys(&["/myapp/database/username"]))
        .await
        .expect("read a field");
    assert_eq!(got, map(&[("/myapp/database/username", "app")]));

    let mut whole = settings;
    whole.insert("noFlatten".to_string(), "true".to_string());
    let db = secrets(whole).await;
    let got = db
        .get_values(&keys(&["/myapp/database"]))
        .await
        .expect("read whole");
    assert_eq!(
        got,
        map(&[(
            "/myapp/database",
            r#"{"username":"app","password":"s3cret","port":5432}"#
        )])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_stages_pick_the_version() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = common::client(&moto, &key);
    common::put(&client, "/app/token", "old").await;
    common::put(&client, "/app/token", "new").await;
    let mut settings = common::settings(&moto, &key);
    let db = secrets(settings.clone()).await;
    let got = db.get_values(&keys(&["/app"])).await.expect("current");
    assert_eq!(got, map(&[("/app/token", "new")]));

    settings.insert("versionStage".to_string(), "AWSPREVIOUS".to_string());
    let db = secrets(settings).await;
    let got = db.get_values(&keys(&["/app"])).await.expect("previous");
    assert_eq!(got, map(&[("/app/token", "old")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_names_and_values_is_read() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = common::client(&moto, &key);
    // ListSecrets gives 100 names a page; BatchGetSecretValue 20 values a call.
    for i in 0..130 {
        common::put(&client, &format!("/many/s{i:03}"), &format!("v{i}")).await;
    }
    let db = secrets(common::settings(&moto, &key)).await;
    let got = db.get_values(&keys(&["/many"])).await.expect("read");
    assert_eq!(got.len(), 130);
    assert_eq!(got["/many/s129"], "v129");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_access_is_an_error_naming_the_key() {
    let options = MotoOptions { iam: true };
    let Some(moto) = tokio::task::block_in_place(|| MotoServer::start_with(options)) else {
        return;
    };
    let admin = moto.admin().expect("iam users").clone();
    common::put(&common::client(&moto, &admin), "/app/token", "t").await;
    let db = secrets(common::settings(&moto, &admin)).await;
    assert_eq!(
        db.get_values(&keys(&["/app"])).await.expect("admin reads"),
        map(&[("/app/token", "t")])
    );
    let nobody = moto.nobody().expect("iam users").clone();
    let db = secrets(common::settings(&moto, &nobody)).await;
    let err = db.get_values(&keys(&["/app"])).await.expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("secretsmanager") && text.contains("/app"),
        "{text}"
    );
}
