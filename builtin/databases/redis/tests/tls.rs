//! The redis backend over TLS (a real `redis-server` serving only TLS, with a throw-away CA) and
//! behind password-protected sentinels: the settings confd's users bring from etcd and consul
//! (`caCert`, `cert`, `key`, `insecure`) mean the same here.

use std::collections::{BTreeMap, HashMap};

use confd_builtin_redis::Redis;
use confd_sdk::{Database, ErrorKind};
use confd_test_support::{RedisOptions, RedisSentinels, RedisServer, RedisTls, TestCertificates};

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

fn one(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), value.to_string())])
}

async fn configured(pairs: &[(&str, String)]) -> Result<Redis, confd_sdk::Error> {
    let config: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let redis = Redis::new();
    redis.configure(config).await?;
    Ok(redis)
}

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// A TLS-only redis with `/tls/a = 1`, and its certificates.
fn tls_server() -> Option<(RedisServer, TestCertificates)> {
    let certs = TestCertificates::generate()?;
    let server = RedisServer::start_with(RedisOptions {
        tls: Some(RedisTls {
            cert: certs.server_cert(),
            key: certs.server_key(),
            ca: certs.ca(),
        }),
        ..RedisOptions::default()
    })?;
    server.cli(&["SET", "/tls/a", "1"]);
    Some((server, certs))
}

#[tokio::test]
async fn rediss_nodes_and_the_scheme_read_over_tls_with_the_ca() {
    let Some((server, certs)) = tls_server() else {
        return;
    };
    let node = format!("rediss://{}", server.address());
    for pairs in [
        vec![("nodes", node.clone()), ("caCert", path(certs.ca()))],
        vec![
            ("nodes", server.address()),
            ("scheme", "rediss".to_string()),
            ("caCert", path(certs.ca())),
        ],
        // Mutual TLS: the server checks the client certificate against its CA.
        vec![
            ("nodes", node.clone()),
            ("caCert", path(certs.ca())),
            ("cert", path(certs.client_cert())),
            ("key", path(certs.client_key())),
        ],
    ] {
        let redis = configured(&pairs).await.expect("valid settings");
        assert_eq!(
            redis.get_values(&keys(&["/tls"])).await.expect("read"),
            one("/tls/a", "1"),
            "{pairs:?}"
        );
        // Watching subscribes over the same TLS link.
        redis
            .watch_prefix("/tls", &keys(&["/tls"]), 0)
            .await
            .expect("watch index over TLS");
    }
}

#[tokio::test]
async fn a_wrong_ca_is_a_clear_error_and_insecure_skips_the_check() {
    let Some((server, _certs)) = tls_server() else {
        return;
    };
    let Some(other) = TestCertificates::generate() else {
        return;
    };
    let node = format!("rediss://{}", server.address());
    let redis = configured(&[("nodes", node.clone()), ("caCert", path(other.ca()))])
        .await
        .expect("valid settings");
    let err = redis
        .get_values(&keys(&["/tls"]))
        .await
        .expect_err("an unknown issuer is refused");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{text}");
    assert!(text.contains("redis"), "names the backend: {text}");
    assert!(text.contains(&node), "names the node: {text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "says why: {text}"
    );

    // The system's roots do not know the test CA either.
    let redis = configured(&[("nodes", node.clone())])
        .await
        .expect("valid settings");
    redis
        .get_values(&keys(&["/tls"]))
        .await
        .expect_err("not trusted without the CA");

    for pairs in [
        vec![("nodes", node.clone()), ("insecure", "true".to_string())],
        vec![
            ("nodes", node.clone()),
            ("caCert", path(other.ca())),
            ("insecure", "true".to_string()),
        ],
    ] {
        let redis = configured(&pairs).await.expect("valid settings");
        assert_eq!(
            redis.get_values(&keys(&["/tls"])).await.expect("read"),
            one("/tls/a", "1"),
            "{pairs:?}"
        );
    }
}

#[tokio::test]
async fn a_plain_node_against_a_tls_server_fails_naming_it() {
    let Some((server, certs)) = tls_server() else {
        return;
    };
    let redis = configured(&[
        ("nodes", format!("redis://{}", server.address())),
        ("caCert", path(certs.ca())),
        ("dialTimeout", "2s".to_string()),
    ])
    .await
    .expect("valid settings");
    let err = redis
        .get_values(&keys(&["/tls"]))
        .await
        .expect_err("no TLS, no answer");
    assert!(err.to_string().contains(&server.address()), "{err}");
}

/// Sentinels with their own `requirepass` in front of a primary with another one: the
/// sentinels are asked with `sentinelPassword`, the primary is read with `password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_the_primary_each_take_their_own_password() {
    let Some(group) = tokio::task::block_in_place(|| {
        RedisSentinels::start_with(Some("data-secret"), Some("sentinel-secret"))
    }) else {
        return;
    };
    let primary = group.primary_port();
    let writer = group
        .servers
        .iter()
        .find(|s| s.port() == primary)
        .expect("the primary is one of the servers");
    writer.cli(&["SET", "/s/a", "1"]);

    let redis = configured(&[
        ("nodes", group.node()),
        ("password", "data-secret".to_string()),
        ("sentinelPassword", "sentinel-secret".to_string()),
    ])
    .await
    .expect("valid settings");
    assert_eq!(
        redis.get_values(&keys(&["/s"])).await.expect("read"),
        one("/s/a", "1")
    );
    redis
        .watch_prefix("/s", &keys(&["/s"]), 0)
        .await
        .expect("watch on the primary with its password");

    // Without the sentinels' password no sentinel answers.
    let redis = configured(&[
        ("nodes", group.node()),
        ("password", "data-secret".to_string()),
    ])
    .await
    .expect("valid settings");
    let err = redis
        .get_values(&keys(&["/s"]))
        .await
        .expect_err("the sentinels refuse");
    assert!(err.to_string().contains("sentinel"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");

    // The sentinels' password is not the primary's.
    let redis = configured(&[
        ("nodes", group.node()),
        ("sentinelPassword", "sentinel-secret".to_string()),
    ])
    .await
    .expect("valid settings");
    let err = redis
        .get_values(&keys(&["/s"]))
        .await
        .expect_err("the primary refuses");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}
