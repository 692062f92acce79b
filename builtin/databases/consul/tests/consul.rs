//! The consul backend against the in-process Consul KV emulator from
//! confd-test-support (no real Consul server can be installed here): folders, blocking queries,
//! index resets, outages and tokens. The `Database` contract (path-aware reads, settings errors,
//! watch rules) is checked by the SDK's conformance suite in conformance.rs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confd_builtin_consul::Consul;
use confd_sdk::{Database, ErrorKind};
use confd_test_support::{ConsulEmulator, EmulatorTls, TestCertificates, free_port};

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn backend(node: &str, extra: &[(&str, &str)]) -> Consul {
    let mut config: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.insert("nodes".to_string(), node.to_string());
    let consul = Consul::new();
    consul.configure(config).await.expect("valid settings");
    consul
}

#[tokio::test]
async fn reads_keys_prefixes_and_folders_path_aware() {
    let emulator = ConsulEmulator::start();
    emulator.put("app/db/host", "10.0.0.1");
    emulator.put("app/db/port", "5432");
    emulator.put("app/name", "shop");
    emulator.put("application/name", "other");
    emulator.put("upstream/", "");
    emulator.put("upstream/a", "10.0.0.9:80");
    let consul = backend(&emulator.address(), &[]).await;

    assert_eq!(
        consul
            .get_values(&keys(&["/app/name"]))
            .await
            .expect("read"),
        map(&[("/app/name", "shop")])
    );
    assert_eq!(
        consul.get_values(&keys(&["/app"])).await.expect("read"),
        map(&[
            ("/app/db/host", "10.0.0.1"),
            ("/app/db/port", "5432"),
            ("/app/name", "shop"),
        ]),
        "/app must not return /application"
    );
    assert_eq!(
        consul
            .get_values(&keys(&["/upstream", "/missing"]))
            .await
            .expect("read"),
        map(&[("/upstream", ""), ("/upstream/a", "10.0.0.9:80")]),
        "a folder key becomes its path with an empty value"
    );
}

#[tokio::test]
async fn watch_uses_blocking_queries_and_ignores_unrelated_keys() {
    let emulator = ConsulEmulator::start();
    emulator.put("w/app/a", "1");
    let consul = backend(&emulator.address(), &[]).await;
    let watched = keys(&["/w/app"]);

    let started = Instant::now();
    let index = consul.watch_prefix("/w", &watched, 0).await.expect("index");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "wait_index 0 returns at once"
    );
    assert_eq!(index, emulator.index());

    let pending = tokio::time::timeout(Duration::from_millis(700), async {
        emulator.put("w/other", "x");
        emulator.put("w/application", "lookalike");
        consul.watch_prefix("/w", &watched, index).await
    })
    .await;
    assert!(pending.is_err(), "woke on an unrelated key: {pending:?}");

    // A change after the read, before the next watch call, is not missed.
    emulator.put("w/app/a", "2");
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        consul.watch_prefix("/w", &watched, index),
    )
    .await
    .expect("woken")
    .expect("watch ok");
    assert_eq!(next, emulator.index());

    // A delete under the keys wakes a parked query.
    let waiter = consul.watch_prefix("/w", &watched, next);
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), waiter),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            emulator.delete("w/app/a", false);
        }
    );
    assert!(woke.expect("woken").expect("watch ok") > next);

    let blocking: Vec<String> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.contains("index="))
        .collect();
    assert!(!blocking.is_empty());
    assert!(
        blocking
            .iter()
            .all(|r| !r.contains("index=0&") && r.contains("wait=")),
        "never index 0 after a result, always a wait: {blocking:?}"
    );
}

#[tokio::test]
async fn an_index_that_goes_backwards_starts_again() {
    let emulator = ConsulEmulator::start();
    for i in 0..5 {
        emulator.put("r/a", &i.to_string());
    }
    let consul = backend(&emulator.address(), &[]).await;
    let watched = keys(&["/r"]);
    let index = consul.watch_prefix("/r", &watched, 0).await.expect("index");
    assert_eq!(index, 5);

    emulator.set_max_wait(Some(Duration::from_millis(200)));
    emulator.reset_index(2);
    let after = tokio::time::timeout(
        Duration::from_secs(3),
        consul.watch_prefix("/r", &watched, index),
    )
    .await
    .expect("returns after the emulator's short wait")
    .expect("watch ok");
    assert!(after >= 1 && after < index, "reset index {after}");

    // From the fresh index on, watching works normally.
    emulator.set_max_wait(None);
    let waiter = consul.watch_prefix("/r", &watched, after);
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), waiter),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            emulator.put("r/b", "new");
        }
    );
    assert_eq!(woke.expect("woken").expect("watch ok"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_agent_is_unavailable_naming_the_node_then_recovers() {
    let mut emulator = ConsulEmulator::start();
    emulator.put("s/a", "1");
    let consul = backend(&emulator.address(), &[("dialTimeout", "1s")]).await;
    let watched = keys(&["/s"]);
    let index = consul.watch_prefix("/s", &watched, 0).await.expect("index");

    let watch = consul.watch_prefix("/s", &watched, index);
    let (result, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(5), watch), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| emulator.stop());
    });
    let err = result.expect("returns promptly").expect_err("agent gone");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&emulator.address()), "{err}");

    let started = Instant::now();
    let err = consul.get_values(&watched).await.expect_err("agent gone");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&emulator.address()), "{err}");

    tokio::task::block_in_place(|| emulator.restart());
    assert_eq!(
        consul.get_values(&watched).await.expect("works again"),
        map(&[("/s/a", "1")])
    );
}

#[tokio::test]
async fn unreachable_node_is_named() {
    let node = format!("127.0.0.1:{}", free_port());
    let consul = backend(&node, &[("dialTimeout", "1s")]).await;
    let started = Instant::now();
    let err = consul
        .get_values(&keys(&["/a"]))
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&node), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("refused"),
        "names the cause: {err}"
    );
}

#[tokio::test]
async fn acl_token_is_sent() {
    let emulator = ConsulEmulator::start();
    emulator.put("t/a", "1");
    emulator.set_token(Some("s3cret-token"));
    let anonymous = backend(&emulator.address(), &[]).await;
    let err = anonymous
        .get_values(&keys(&["/t"]))
        .await
        .expect_err("no token");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    let with_token = backend(&emulator.address(), &[("token", "s3cret-token")]).await;
    assert_eq!(
        with_token
            .get_values(&keys(&["/t"]))
            .await
            .expect("authorised"),
        map(&[("/t/a", "1")])
    );
    assert!(
        with_token
            .watch_prefix("/t", &keys(&["/t"]), 0)
            .await
            .is_ok(),
        "watches carry the token too"
    );
}

/// The one rule for bytes that are not UTF-8: the read fails naming the backend and the key,
/// and keys without bad bytes still read.
#[tokio::test]
async fn a_value_that_is_not_utf8_fails_naming_its_key() {
    let emulator = ConsulEmulator::start();
    emulator.put("app/name", "shop");
    emulator.put_bytes("app/blob", b"ab\xffcd");
    let consul = backend(&emulator.address(), &[]).await;
    let err = consul
        .get_values(&keys(&["/app"]))
        .await
        .expect_err("a value that is not UTF-8 fails the read");
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(
        err.message(),
        "consul: the value of key \"/app/blob\" is not UTF-8 text (byte 0xff at offset 2)"
    );
    assert_eq!(
        consul
            .get_values(&keys(&["/app/name"]))
            .await
            .expect("read"),
        map(&[("/app/name", "shop")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_ca_bundle_a_client_certificate_or_insecure() {
    let (Some(certs), Some(other)) = (TestCertificates::generate(), TestCertificates::generate())
    else {
        return;
    };
    let emulator = ConsulEmulator::start_tls(EmulatorTls {
        cert: certs.server_cert(),
        key: certs.server_key(),
        client_ca: certs.ca(),
    });
    emulator.put("app/name", "tls");
    let url = emulator.url();
    assert!(url.starts_with("https://"), "{url}");

    // Not trusted: the certificate problem is named.
    let consul = backend(&url, &[]).await;
    let err = consul
        .get_values(&keys(&["/app/name"]))
        .await
        .expect_err("untrusted");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // A bundle whose first certificate is some other CA: the one that signed the agent's
    // certificate comes second and must be trusted too.
    let bundle = certs.dir().join("bundle.pem");
    let mut pem = std::fs::read(other.ca()).expect("other CA");
    pem.extend(std::fs::read(certs.ca()).expect("CA"));
    std::fs::write(&bundle, pem).expect("write bundle");
    let bundle = bundle.display().to_string();
    let cert = certs.client_cert().display().to_string();
    let key = certs.client_key().display().to_string();
    for extra in [
        vec![("caCert", bundle.as_str())],
        vec![("caCert", bundle.as_str()), ("cert", &cert), ("key", &key)],
        vec![("insecure", "true")],
    ] {
        let consul = backend(&url, &extra).await;
        assert_eq!(
            consul
                .get_values(&keys(&["/app/name"]))
                .await
                .expect("read over https"),
            map(&[("/app/name", "tls")]),
            "{extra:?}"
        );
    }

    // Half a client identity is a settings error naming both settings.
    let err = Consul::new()
        .configure(HashMap::from([
            ("nodes".to_string(), url.clone()),
            ("cert".to_string(), cert.clone()),
        ]))
        .await
        .expect_err("cert without key");
    assert!(err.to_string().contains("`cert` and `key`"), "{err}");
}
