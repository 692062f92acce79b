//! The ssm backend's own behaviour against a real moto server: key mapping, pagination,
//! SecureString decryption, and errors that name the key.

use std::collections::BTreeMap;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::{Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use confd_builtin_ssm::Ssm;
use confd_sdk::{Config, Database, ErrorKind};
use confd_test_support::{AccessKey, MOTO_REGION, MotoOptions, MotoServer};

fn client(moto: &MotoServer, key: &AccessKey) -> Client {
    Client::from_conf(
        aws_sdk_ssm::Config::builder()
            .behavior_version_latest()
            .region(Region::new(MOTO_REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(&key.id, &key.secret, None, None, "test"))
            .build(),
    )
}

fn settings(moto: &MotoServer, key: &AccessKey) -> Config {
    Config::from([
        ("nodes".to_string(), moto.endpoint()),
        ("region".to_string(), MOTO_REGION.to_string()),
        ("accessKeyId".to_string(), key.id.clone()),
        ("secretAccessKey".to_string(), key.secret.clone()),
    ])
}

async fn put(client: &Client, name: &str, value: &str, kind: ParameterType) {
    client
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
}

async fn ssm(config: Config) -> Ssm {
    let db = Ssm::new();
    db.configure(config).await.expect("configure");
    db
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_map_to_keys_by_path() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = client(&moto, &key);
    put(&client, "/app", "the parent itself", ParameterType::String).await;
    put(
        &client,
        "/app/db/host",
        "db.internal",
        ParameterType::String,
    )
    .await;
    put(
        &client,
        "/app/db/password",
        "s3cret",
        ParameterType::SecureString,
    )
    .await;
    put(&client, "/app/hosts", "a,b,c", ParameterType::StringList).await;
    put(
        &client,
        "/application/name",
        "lookalike",
        ParameterType::String,
    )
    .await;
    let db = ssm(settings(&moto, &key)).await;

    let got = db.get_values(&keys(&["/app"])).await.expect("read /app");
    let want: BTreeMap<String, String> = [
        ("/app", "the parent itself"),
        ("/app/db/host", "db.internal"),
        ("/app/db/password", "s3cret"),
        ("/app/hosts", "a,b,c"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        got, want,
        "a parent parameter, its children, SecureString decrypted"
    );

    let got = db
        .get_values(&keys(&["/app/db/password", "/missing"]))
        .await
        .expect("read a leaf");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [("/app/db/password".to_string(), "s3cret".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_a_path_is_read() {
    let Some(moto) = tokio::task::block_in_place(MotoServer::start) else {
        return;
    };
    let key = moto.credentials();
    let client = client(&moto, &key);
    // GetParametersByPath returns 10 parameters a page: 125 need 13 pages.
    for i in 0..125 {
        put(
            &client,
            &format!("/many/p{i:03}"),
            &format!("value {i}"),
            ParameterType::String,
        )
        .await;
    }
    let db = ssm(settings(&moto, &key)).await;
    let got = db.get_values(&keys(&["/many"])).await.expect("read /many");
    assert_eq!(got.len(), 125);
    assert_eq!(got["/many/p000"], "value 0");
    assert_eq!(got["/many/p124"], "value 124");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_unknown_credentials_are_errors_naming_the_key() {
    let options = MotoOptions { iam: true };
    let Some(moto) = tokio::task::block_in_place(|| MotoServer::start_with(options)) else {
        return;
    };
    let admin = moto.admin().expect("iam users").clone();
    put(
        &client(&moto, &admin),
        "/app/port",
        "8080",
        ParameterType::String,
    )
    .await;

    // The admin reads; the check is real.
    let db = ssm(settings(&moto, &admin)).await;
    let got = db.get_values(&keys(&["/app"])).await.expect("admin reads");
    assert_eq!(got["/app/port"], "8080");

    let nobody = moto.nobody().expect("iam users").clone();
    let db = ssm(settings(&moto, &nobody)).await;
    let err = db
        .get_values(&keys(&["/app"]))
        .await
        .expect_err("a user without policies is denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(text.contains("ssm") && text.contains("/app"), "{text}");
    assert!(text.contains("AccessDenied"), "{text}");

    let unknown = AccessKey {
        id: "AKIDNOSUCHKEY0000000".to_string(),
        secret: "wrong".to_string(),
    };
    let db = ssm(settings(&moto, &unknown)).await;
    let err = db
        .get_values(&keys(&["/app"]))
        .await
        .expect_err("an unknown access key is refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("/app"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = confd_test_support::free_port();
    let db = ssm(Config::from([
        ("nodes".to_string(), format!("http://127.0.0.1:{port}")),
        ("region".to_string(), MOTO_REGION.to_string()),
        ("accessKeyId".to_string(), "AKID".to_string()),
        ("secretAccessKey".to_string(), "secret".to_string()),
    ]))
    .await;
    let err = db
        .get_values(&keys(&["/app"]))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("/app"), "{err}");
}

#[tokio::test]
async fn watching_is_refused() {
    let db = Ssm::new();
    let err = db
        .watch_prefix("/app", &keys(&["/app"]), 0)
        .await
        .expect_err("cannot watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
}
