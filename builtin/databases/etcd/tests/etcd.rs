//! The etcd backend against a real etcd server (Debian `etcd-server`): what is particular to
//! etcd. The `Database` contract (path-aware reads, settings errors, watch rules) is checked by
//! the SDK's conformance suite in conformance.rs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confd_builtin_etcd::Etcd;
use confd_sdk::{Database, ErrorKind};
use confd_test_support::{EtcdCluster, EtcdOptions, EtcdServer};
use etcd_client::Client;

fn settings(server: &EtcdServer, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config
        .entry("nodes".to_string())
        .or_insert_with(|| server.address());
    config
}

async fn backend(server: &EtcdServer, extra: &[(&str, &str)]) -> Etcd {
    let etcd = Etcd::new();
    etcd.configure(settings(server, extra))
        .await
        .expect("valid settings");
    etcd
}

async fn put_all(server: &EtcdServer, pairs: &[(&str, &str)]) {
    let mut client = Client::connect([server.endpoint()], None)
        .await
        .expect("test client connects");
    for (k, v) in pairs {
        client.put(*k, *v, None).await.expect("put");
    }
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
async fn reads_192_keys_across_transactions() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let pairs: Vec<(String, String)> = (0..192)
        .map(|i| (format!("/many/k{i:03}"), format!("v{i}")))
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    put_all(&server, &borrowed).await;
    let etcd = backend(&server, &[]).await;
    let requested: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let values = etcd.get_values(&requested).await.expect("read of 192 keys");
    assert_eq!(values.len(), 192);
    assert_eq!(values.get("/many/k191").map(String::as_str), Some("v191"));
    assert_eq!(values.get("/many/k000").map(String::as_str), Some("v0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_revisions_and_ignores_unrelated_keys() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/w/app/a", "1")]).await;
    let etcd = backend(&server, &[]).await;
    let watched = keys(&["/w/app"]);

    let started = Instant::now();
    let index = etcd.watch_prefix("/w", &watched, 0).await.expect("index");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "wait_index 0 returns at once"
    );
    assert!(index >= 2, "one put happened: revision {index}");

    // An unrelated key (and a path-prefix lookalike) must not wake the watch.
    let pending = tokio::time::timeout(Duration::from_millis(700), async {
        put_all(&server, &[("/w/other", "x"), ("/w/application", "y")]).await;
        etcd.watch_prefix("/w", &watched, index).await
    })
    .await;
    assert!(pending.is_err(), "woke on an unrelated key: {pending:?}");

    // A change after the read but before the watch starts is not missed.
    put_all(&server, &[("/w/app/a", "2")]).await;
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        etcd.watch_prefix("/w", &watched, index),
    )
    .await
    .expect("the put wakes the watch")
    .expect("watch ok");
    assert!(next > index + 2, "index {next} is the put's revision");
    let values = etcd.get_values(&watched).await.expect("read");
    assert_eq!(values, map(&[("/w/app/a", "2")]));

    // And a put while the watch is parked wakes it.
    let waiter = etcd.watch_prefix("/w", &watched, next);
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), waiter),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            put_all(&server, &[("/w/app/b", "new")]).await;
        }
    );
    let woke = woke.expect("woken within 5s").expect("watch ok");
    assert!(woke > next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_store_is_unavailable_naming_the_node_then_recovers() {
    let Some(mut server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/s/a", "1")]).await;
    let etcd = backend(&server, &[("dialTimeout", "1s")]).await;
    let watched = keys(&["/s"]);
    let index = etcd.watch_prefix("/s", &watched, 0).await.expect("index");

    // A watch in progress when the node dies ends with an error.
    let watch = etcd.watch_prefix("/s", &watched, index);
    let (watch_result, ()) =
        tokio::join!(tokio::time::timeout(Duration::from_secs(5), watch), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::block_in_place(|| server.stop());
        });
    let err = watch_result
        .expect("the broken watch returns promptly")
        .expect_err("the node died");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");

    let started = Instant::now();
    let err = etcd.get_values(&watched).await.expect_err("etcd is down");
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with a 1s dial timeout"
    );

    let err = etcd
        .watch_prefix("/s", &watched, index)
        .await
        .expect_err("etcd is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    tokio::task::block_in_place(|| server.restart());
    let values = etcd.get_values(&watched).await.expect("works again");
    assert_eq!(values, map(&[("/s/a", "1")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/secret/a", "1")]).await;
    let mut admin = Client::connect([server.endpoint()], None)
        .await
        .expect("connect");
    admin
        .user_add("root", "rootpw", None)
        .await
        .expect("add root");
    admin
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    admin.auth_enable().await.expect("enable auth");

    let etcd = backend(
        &server,
        &[
            ("basicAuth", "true"),
            ("username", "root"),
            ("password", "rootpw"),
        ],
    )
    .await;
    let values = etcd
        .get_values(&keys(&["/secret"]))
        .await
        .expect("authorised");
    assert_eq!(values, map(&[("/secret/a", "1")]));

    let wrong = backend(
        &server,
        &[
            ("basicAuth", "true"),
            ("username", "root"),
            ("password", "nope"),
        ],
    )
    .await;
    let err = wrong
        .get_values(&keys(&["/secret"]))
        .await
        .expect_err("bad password");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        !err.to_string().contains("nope"),
        "never echo the password: {err}"
    );

    let anonymous = backend(&server, &[]).await;
    let err = anonymous
        .get_values(&keys(&["/secret"]))
        .await
        .expect_err("no credentials");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn calls_before_configure_fail_clearly() {
    let etcd = Etcd::new();
    let err = etcd
        .get_values(&keys(&["/a"]))
        .await
        .expect_err("not configured");
    assert_eq!(err.kind(), ErrorKind::NotConfigured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let Some(certs) = confd_test_support::TestCertificates::generate() else {
        return;
    };
    let Some(server) = EtcdServer::start_tls(&certs) else {
        return;
    };
    let read = |p: std::path::PathBuf| std::fs::read(p).expect("certificate file");
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(certs.ca())))
        .identity(etcd_client::Identity::from_pem(
            read(certs.client_cert()),
            read(certs.client_key()),
        ));
    let options = etcd_client::ConnectOptions::new().with_tls(tls);
    // The port accepts before the single member has elected itself: retry.
    let mut written = false;
    for _ in 0..50 {
        let client = Client::connect([server.endpoint()], Some(options.clone())).await;
        if let Ok(mut client) = client
            && client.put("/tls/a", "secure", None).await.is_ok()
        {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written, "the TLS test client could write");

    let path = |p: std::path::PathBuf| p.display().to_string();
    let etcd = backend(
        &server,
        &[
            ("caCert", &path(certs.ca())),
            ("cert", &path(certs.client_cert())),
            ("key", &path(certs.client_key())),
        ],
    )
    .await;
    assert_eq!(
        etcd.get_values(&keys(&["/tls"]))
            .await
            .expect("read over TLS"),
        map(&[("/tls/a", "secure")])
    );

    let no_client_cert = backend(
        &server,
        &[("caCert", &path(certs.ca())), ("dialTimeout", "1s")],
    )
    .await;
    let err = no_client_cert
        .get_values(&keys(&["/tls"]))
        .await
        .expect_err("the server requires a client certificate");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_accepts_an_untrusted_certificate_and_only_then() {
    let Some(certs) = confd_test_support::TestCertificates::generate() else {
        return;
    };
    let Some(server) = EtcdServer::start_tls_server_only(&certs) else {
        return;
    };
    let ca = std::fs::read(certs.ca()).expect("CA file");
    let tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    let options = etcd_client::ConnectOptions::new().with_tls(tls);
    let mut written = false;
    for _ in 0..50 {
        let client = Client::connect([server.endpoint()], Some(options.clone())).await;
        if let Ok(mut client) = client
            && client.put("/tls/a", "unverified", None).await.is_ok()
        {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written, "the TLS test client could write");
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    // Neither a CA nor insecure: the certificate is refused, naming the backend and the member.
    let strict = backend(&server, &[("nodes", &endpoint), ("dialTimeout", "2s")]).await;
    let err = strict
        .get_values(&keys(&["/tls"]))
        .await
        .expect_err("the certificate is not trusted");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.message();
    assert!(text.starts_with("etcd "), "{text}");
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let insecure = backend(
        &server,
        &[
            ("nodes", &endpoint),
            ("insecure", "true"),
            ("dialTimeout", "2s"),
        ],
    )
    .await;
    assert_eq!(
        insecure
            .get_values(&keys(&["/tls"]))
            .await
            .expect("read without verifying the certificate"),
        map(&[("/tls/a", "unverified")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_the_store_starts_again() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/b/a", "1")]).await;
    let etcd = backend(&server, &[]).await;
    let watched = keys(&["/b"]);
    let current = etcd.watch_prefix("/b", &watched, 0).await.expect("index");
    // An index from before the store was rebuilt, far beyond its revision.
    let index = tokio::time::timeout(
        Duration::from_secs(2),
        etcd.watch_prefix("/b", &watched, current + 1000),
    )
    .await
    .expect("returns at once instead of waiting for revision 1000")
    .expect("watch ok");
    assert_eq!(index, current);
}

async fn delete(server: &EtcdServer, key: &str) {
    let mut client = Client::connect([server.endpoint()], None)
        .await
        .expect("test client connects");
    client.delete(key, None).await.expect("delete");
}

/// Waits (at most 5 s) for a change under `watched` after `index`.
async fn next_change(etcd: &Etcd, prefix: &str, watched: &[String], index: u64) -> u64 {
    tokio::time::timeout(
        Duration::from_secs(5),
        etcd.watch_prefix(prefix, watched, index),
    )
    .await
    .expect("a change wakes the watch within 5s")
    .expect("watch ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_a_watch_event_see_puts_and_deletes() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/c/app/a", "1"), ("/c/app/b", "2")]).await;
    let etcd = backend(&server, &[]).await;
    let watched = keys(&["/c/app"]);
    assert_eq!(etcd.open_watches(), 0, "no watch before watch mode starts");
    let index = etcd.watch_prefix("/c", &watched, 0).await.expect("index");
    assert_eq!(etcd.open_watches(), 1);
    assert_eq!(
        etcd.get_values(&watched).await.expect("read"),
        map(&[("/c/app/a", "1"), ("/c/app/b", "2")])
    );

    // Several changes, one of them a delete, then a lookalike key.
    put_all(&server, &[("/c/app/a", "10"), ("/c/app/c/d", "3")]).await;
    delete(&server, "/c/app/b").await;
    put_all(&server, &[("/c/application", "no")]).await;
    let mut seen = index;
    let want = map(&[("/c/app/a", "10"), ("/c/app/c/d", "3")]);
    // The watch may wake per change; every read after a wake is at least as
    // new as the wake, and the last one holds all three changes.
    for _ in 0..3 {
        seen = next_change(&etcd, "/c", &watched, seen).await;
        if etcd.get_values(&watched).await.expect("read") == want {
            break;
        }
    }
    assert_eq!(etcd.get_values(&watched).await.expect("read"), want);
    assert!(seen > index + 2, "index {seen} follows the revisions");

    // A read right after each wake holds the change that caused it.
    for i in 0..20 {
        let value = format!("v{i}");
        put_all(&server, &[("/c/app/a", value.as_str())]).await;
        seen = next_change(&etcd, "/c", &watched, seen).await;
        let values = etcd.get_values(&keys(&["/c/app/a"])).await.expect("read");
        assert_eq!(values.get("/c/app/a"), Some(&value), "after wake {i}");
    }
    assert_eq!(etcd.open_watches(), 1, "one etcd watch served every call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_watched_prefix_read_from_etcd() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/o/app/a", "1"), ("/o/other", "x")]).await;
    let etcd = backend(&server, &[]).await;
    let watched = keys(&["/o/app"]);
    etcd.watch_prefix("/o", &watched, 0).await.expect("index");
    // Not watched by anyone: every read must return the latest value.
    for i in 0..10 {
        let value = format!("x{i}");
        put_all(&server, &[("/o/other", value.as_str())]).await;
        let values = etcd.get_values(&keys(&["/o/other"])).await.expect("read");
        assert_eq!(values, map(&[("/o/other", value.as_str())]));
        // A read mixing watched and unwatched keys is one etcd snapshot too.
        let mixed = etcd
            .get_values(&keys(&["/o/app", "/o/other"]))
            .await
            .expect("read");
        assert_eq!(
            mixed,
            map(&[("/o/app/a", "1"), ("/o/other", value.as_str())])
        );
    }
    assert_eq!(etcd.open_watches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_under_one_watched_prefix_share_its_watch() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/sh/app/db/host", "h"), ("/sh/app/name", "n")]).await;
    let etcd = backend(&server, &[]).await;
    let wide = keys(&["/sh/app"]);
    let narrow = keys(&["/sh/app/db"]);
    let wide_index = etcd.watch_prefix("/sh", &wide, 0).await.expect("index");
    let narrow_index = etcd.watch_prefix("/sh", &narrow, 0).await.expect("index");
    assert_eq!(etcd.open_watches(), 1, "/sh/app/db lies under /sh/app");
    let (woke_wide, woke_narrow, ()) = tokio::join!(
        next_change(&etcd, "/sh", &wide, wide_index),
        next_change(&etcd, "/sh", &narrow, narrow_index),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            put_all(&server, &[("/sh/app/name", "changed")]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            put_all(&server, &[("/sh/app/db/host", "changed")]).await;
        }
    );
    assert!(
        woke_narrow > woke_wide,
        "a change outside /sh/app/db did not wake it"
    );
    assert_eq!(
        etcd.get_values(&narrow).await.expect("read"),
        map(&[("/sh/app/db/host", "changed")])
    );
    let other = keys(&["/sh/elsewhere"]);
    etcd.watch_prefix("/sh", &other, 0).await.expect("index");
    assert_eq!(
        etcd.open_watches(),
        2,
        "a distinct prefix gets its own watch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_reads_of_192_keys_are_one_snapshot() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let pairs: Vec<(String, String)> = (0..192)
        .map(|i| (format!("/wm/k{i:03}"), format!("v{i}")))
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    put_all(&server, &borrowed).await;
    let etcd = backend(&server, &[]).await;
    let requested: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let index = etcd
        .watch_prefix("/wm", &requested, 0)
        .await
        .expect("index");
    assert_eq!(etcd.open_watches(), 1);
    let values = etcd.get_values(&requested).await.expect("read of 192 keys");
    assert_eq!(values.len(), 192);
    assert_eq!(values.get("/wm/k191").map(String::as_str), Some("v191"));

    put_all(&server, &[("/wm/k000", "new"), ("/wm/k191", "new")]).await;
    let mut seen = index;
    let mut values = BTreeMap::new();
    for _ in 0..2 {
        seen = next_change(&etcd, "/wm", &requested, seen).await;
        values = etcd.get_values(&requested).await.expect("read of 192 keys");
        if values.get("/wm/k191").map(String::as_str) == Some("new") {
            break;
        }
    }
    assert_eq!(values.len(), 192);
    assert_eq!(values.get("/wm/k000").map(String::as_str), Some("new"));
    assert_eq!(values.get("/wm/k191").map(String::as_str), Some("new"));
    assert_eq!(values.get("/wm/k100").map(String::as_str), Some("v100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_watch_falls_back_to_etcd_then_is_rebuilt() {
    let Some(mut server) = EtcdServer::start() else {
        return;
    };
    put_all(&server, &[("/f/a", "1")]).await;
    let etcd = backend(&server, &[("dialTimeout", "1s")]).await;
    let watched = keys(&["/f"]);
    let index = etcd.watch_prefix("/f", &watched, 0).await.expect("index");
    assert_eq!(etcd.open_watches(), 1);

    tokio::task::block_in_place(|| server.stop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while etcd.open_watches() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(etcd.open_watches(), 0, "the copy died with its watch");
    // Never the stale copy: reads go to etcd, which is down.
    let err = etcd.get_values(&watched).await.expect_err("etcd is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    tokio::task::block_in_place(|| server.restart());
    put_all(&server, &[("/f/a", "2")]).await;
    assert_eq!(
        etcd.get_values(&watched).await.expect("read from etcd"),
        map(&[("/f/a", "2")])
    );
    // The caller's index predates the new copy: the change is not lost.
    tokio::time::sleep(cache_retry()).await;
    let woke = next_change(&etcd, "/f", &watched, index).await;
    assert!(woke > index);
    assert_eq!(etcd.open_watches(), 1, "the copy is rebuilt");
    assert_eq!(
        etcd.get_values(&watched).await.expect("read"),
        map(&[("/f/a", "2")])
    );
}

/// After a failed attempt to build a copy, etcd is asked directly for a while.
fn cache_retry() -> Duration {
    Duration::from_millis(1100)
}

/// etcd answers up to 2 GiB; the gRPC default limit of 4 MiB failed a 10 MB value and a prefix
/// of 60 values of 100 KB (`decoded message length too large`), in one-shot reads, in the
/// watch-fed copy and in the watch events that bring such values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_prefixes_beyond_four_mib_read_whole() {
    let Some(server) = EtcdServer::start_with(EtcdOptions {
        max_request_bytes: Some(32 * 1024 * 1024),
        ..EtcdOptions::default()
    }) else {
        return;
    };
    let big = "b".repeat(10 * 1000 * 1000);
    let part = "p".repeat(100 * 1000);
    let mut pairs = vec![("/big/one".to_string(), big.clone())];
    pairs.extend((0..60).map(|i| (format!("/big/many/k{i:02}"), part.clone())));
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    put_all(&server, &borrowed).await;
    let etcd = backend(&server, &[("dialTimeout", "20s")]).await;
    let check = |values: &BTreeMap<String, String>, one: &str| {
        assert_eq!(values.len(), 61);
        assert_eq!(values["/big/one"].len(), one.len());
        assert!(values["/big/one"] == one, "the 10 MB value arrives whole");
        assert!(
            values
                .iter()
                .filter(|(k, _)| k.starts_with("/big/many/"))
                .all(|(_, v)| *v == part)
        );
    };

    // One-shot: the reads go to etcd.
    let watched = keys(&["/big/one", "/big/many"]);
    check(
        &etcd.get_values(&watched).await.expect("one-shot read"),
        &big,
    );

    // Watch mode: the first watch call copies the whole prefix (a 16 MB range answer), the
    // reads are served from the copy, and a 10 MB put arrives as one watch event.
    let index = etcd
        .watch_prefix("/big", &watched, 0)
        .await
        .expect("the copy of /big is built");
    assert_eq!(etcd.open_watches(), 1, "the copy of /big is live");
    check(
        &etcd.get_values(&watched).await.expect("watched read"),
        &big,
    );
    let bigger = "c".repeat(10 * 1000 * 1000);
    put_all(&server, &[("/big/one", &bigger)]).await;
    let next = tokio::time::timeout(
        Duration::from_secs(20),
        etcd.watch_prefix("/big", &watched, index),
    )
    .await
    .expect("the put wakes the watch")
    .expect("watch ok");
    assert!(next > index);
    assert_eq!(etcd.open_watches(), 1, "the copy survived the large event");
    check(
        &etcd.get_values(&watched).await.expect("watched read"),
        &bigger,
    );
}

/// The one rule for bytes that are not UTF-8: a read fails naming the backend and the key, from
/// etcd and from the watch-fed copy; other keys still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_utf8_fail_naming_the_key() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let mut client = Client::connect([server.endpoint()], None)
        .await
        .expect("test client connects");
    client.put("/u/fine", "yes", None).await.expect("put");
    client
        .put("/u/blob", b"ab\xffcd".to_vec(), None)
        .await
        .expect("put");
    client
        .put(b"/k/\xfe".to_vec(), "1", None)
        .await
        .expect("put");
    let etcd = backend(&server, &[]).await;
    let value_error =
        "etcd: the value of key \"/u/blob\" is not UTF-8 text (byte 0xff at offset 2)";
    let fails = |keys_: Vec<String>| {
        let etcd = &etcd;
        async move {
            let err = etcd
                .get_values(&keys_)
                .await
                .expect_err("bytes that are not UTF-8 fail the read");
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
            err.message().to_string()
        }
    };
    assert_eq!(fails(keys(&["/u"])).await, value_error);
    assert_eq!(
        fails(keys(&["/k"])).await,
        "etcd: key \"/k/\\xfe\" is not UTF-8 text (byte 0xfe at offset 3)"
    );
    assert_eq!(
        etcd.get_values(&keys(&["/u/fine"])).await.expect("read"),
        map(&[("/u/fine", "yes")])
    );

    // From the copy a watch keeps, including a value a watch event brought.
    let watched = keys(&["/u/fine", "/u/blob"]);
    let index = etcd.watch_prefix("/u", &watched, 0).await.expect("index");
    assert_eq!(etcd.open_watches(), 1);
    assert_eq!(fails(watched.clone()).await, value_error);
    client.put("/u/blob", "mended", None).await.expect("put");
    let index = next_change(&etcd, "/u", &watched, index).await;
    assert_eq!(
        etcd.get_values(&watched).await.expect("read"),
        map(&[("/u/fine", "yes"), ("/u/blob", "mended")])
    );
    client
        .put("/u/blob", b"\xc3".to_vec(), None)
        .await
        .expect("put");
    next_change(&etcd, "/u", &watched, index).await;
    assert_eq!(
        fails(watched).await,
        "etcd: the value of key \"/u/blob\" is not UTF-8 text (byte 0xc3 at offset 0)"
    );
}

/// Puts `key = value` through member `i` of `cluster`, again while the cluster elects a new
/// leader: a put proposed meanwhile can wait out etcd's 7 s request timeout, so each try gets 1 s.
async fn put_on(cluster: &EtcdCluster, i: usize, key: &str, value: &str) {
    let mut client = Client::connect([cluster.endpoint(i)], None)
        .await
        .expect("test client connects");
    let started = Instant::now();
    loop {
        let put = tokio::time::timeout(Duration::from_secs(1), client.put(key, value, None));
        match put.await {
            Ok(Ok(_)) => return,
            _ if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => panic!("put through member {i}: {e}"),
            Err(_) => panic!("put through member {i}: no answer"),
        }
    }
}

/// Three members: killing the one in use moves reads and the watch-fed copy to another member
/// (the copy's watch resumes after its revision, so the change written meanwhile arrives), and a
/// member that comes back is no longer marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_in_use_moves_reads_and_watches_to_another() {
    let Some(mut cluster) = tokio::task::block_in_place(|| EtcdCluster::start(3)) else {
        return;
    };
    put_on(&cluster, 0, "/c/n", "start").await;
    put_on(&cluster, 0, "/other", "x").await;
    let etcd = Etcd::new();
    let nodes = cluster.endpoints().join(",");
    etcd.configure(HashMap::from([("nodes".to_string(), nodes)]))
        .await
        .expect("valid settings");
    let watched = keys(&["/c"]);
    let mut index = etcd.watch_prefix("/c", &watched, 0).await.expect("index");
    assert_eq!(etcd.open_watches(), 1);
    let mut used = Vec::new();
    for round in 0..3 {
        let in_use = etcd.member_in_use();
        let victim = cluster
            .endpoints()
            .iter()
            .position(|e| *e == in_use)
            .unwrap_or_else(|| panic!("{in_use:?} is not a member"));
        used.push(victim);
        tokio::task::block_in_place(|| cluster.stop(victim));
        let writer = (victim + 1) % cluster.len();
        let value = format!("round {round}");
        put_on(&cluster, writer, "/c/n", &value).await;

        // A read no copy covers goes to a member that answers.
        let other = etcd
            .get_values(&keys(&["/other"]))
            .await
            .expect("read from a live member");
        assert_eq!(other, map(&[("/other", "x")]));

        index = tokio::time::timeout(
            Duration::from_secs(15),
            etcd.watch_prefix("/c", &watched, index),
        )
        .await
        .expect("the change arrives after the failover")
        .expect("watch ok");
        assert_eq!(
            etcd.get_values(&watched).await.expect("read"),
            map(&[("/c/n", value.as_str())])
        );
        assert_ne!(etcd.member_in_use(), in_use, "round {round}");
        assert_eq!(etcd.open_watches(), 1, "the copy outlived the failover");
        assert!(etcd.members_down() >= 1);

        tokio::task::block_in_place(|| cluster.restart(victim));
        let deadline = Instant::now() + Duration::from_secs(15);
        while etcd.members_down() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(etcd.members_down(), 0, "the restarted member is rechecked");
    }
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 2, "members in use: {used:?}");
}

/// Given one member and `autoSyncInterval`, the backend reads the cluster's member list and
/// learns the other two: when the one given is killed, a change written through another still
/// reaches the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sync_learns_the_members_from_one_endpoint() {
    let Some(mut cluster) = tokio::task::block_in_place(|| EtcdCluster::start(3)) else {
        return;
    };
    put_on(&cluster, 0, "/s/n", "start").await;
    let etcd = Etcd::new();
    etcd.configure(HashMap::from([
        ("nodes".to_string(), cluster.endpoint(0)),
        ("autoSyncInterval".to_string(), "1s".to_string()),
    ]))
    .await
    .expect("valid settings");
    let deadline = Instant::now() + Duration::from_secs(15);
    while etcd.members_known() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut known = etcd.member_urls();
    known.sort();
    let mut all = cluster.endpoints();
    all.sort();
    assert_eq!(known, all, "the member list was read");

    let watched = keys(&["/s"]);
    let index = etcd.watch_prefix("/s", &watched, 0).await.expect("index");
    assert_eq!(etcd.member_in_use(), cluster.endpoint(0));
    tokio::task::block_in_place(|| cluster.stop(0));
    put_on(&cluster, 1, "/s/n", "after").await;
    tokio::time::timeout(
        Duration::from_secs(15),
        etcd.watch_prefix("/s", &watched, index),
    )
    .await
    .expect("the change arrives through a learnt member")
    .expect("watch ok");
    assert_eq!(
        etcd.get_values(&watched).await.expect("read"),
        map(&[("/s/n", "after")])
    );
    assert_ne!(etcd.member_in_use(), cluster.endpoint(0));
}
