//! The imds backend's own behaviour against the IMDS emulator: the IMDSv2 token flow, key
//! mapping and directory walks, the cache and its TTL, and errors naming the key.

use std::collections::BTreeMap;

use confd_builtin_imds::Imds;
use confd_sdk::{Config, Database, ErrorKind};
use confd_test_support::ImdsEmulator;

async fn imds(endpoint: String, cache_ttl: &str) -> Imds {
    let db = Imds::new();
    db.configure(Config::from([
        ("nodes".to_string(), endpoint),
        ("cacheTtl".to_string(), cache_ttl.to_string()),
    ]))
    .await
    .expect("configure");
    db
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_paths_are_keys_read_with_a_session_token() {
    let emulator = ImdsEmulator::start();
    let db = imds(emulator.url(), "0s").await;
    let got = db
        .get_values(&keys(&[
            "/meta-data/instance-id",
            "/meta-data/placement",
            "/meta-data/tags/instance/Name",
            "/user-data",
            "/meta-data/no-such-thing",
        ]))
        .await
        .expect("read");
    let want: BTreeMap<String, String> = [
        ("/meta-data/instance-id", "i-0123456789abcdef0"),
        ("/meta-data/placement/availability-zone", "eu-west-1a"),
        ("/meta-data/placement/region", "eu-west-1"),
        ("/meta-data/tags/instance/Name", "web-1"),
        ("/user-data", "#!/bin/sh\necho hello\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);

    let requests = emulator.requests();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /latest/api/token"),
        "a session token first: {requests:?}"
    );
    assert!(
        requests.iter().filter(|r| r.starts_with("PUT")).count() == 1,
        "the token is reused: {requests:?}"
    );

    // `/` walks everything, the top-level directories listed without slashes included.
    let all = db.get_values(&keys(&["/"])).await.expect("walk");
    assert_eq!(all.len(), 10, "{all:?}");
    assert!(all.contains_key("/dynamic/instance-identity/document"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_for_the_ttl() {
    let emulator = ImdsEmulator::start();
    let db = imds(emulator.url(), "1h").await;
    let key = keys(&["/meta-data/instance-type"]);
    let first = db.get_values(&key).await.expect("first read");
    let requests = emulator.requests().len();
    emulator.put("/meta-data/instance-type", "t3.large");
    let second = db.get_values(&key).await.expect("cached read");
    assert_eq!(first, second, "within the TTL the cached answer counts");
    assert_eq!(
        emulator.requests().len(),
        requests,
        "no request within the TTL"
    );

    let fresh = imds(emulator.url(), "0s").await;
    let got = fresh.get_values(&key).await.expect("uncached read");
    assert_eq!(got["/meta-data/instance-type"], "t3.large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_is_an_error_naming_the_key() {
    let mut emulator = ImdsEmulator::start();
    let url = emulator.url();
    tokio::task::block_in_place(|| emulator.stop());
    let db = imds(url, "0s").await;
    let err = db
        .get_values(&keys(&["/meta-data/instance-id"]))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("/meta-data/instance-id"), "{err}");
}
