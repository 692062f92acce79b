//! The Consul KV emulator's HTTP surface, checked over real HTTP.

use std::time::{Duration, Instant};

use confd_test_support::ConsulEmulator;

async fn get(url: &str) -> (u16, Option<u64>, String) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, index, response.text().await.expect("body"))
}

#[tokio::test]
async fn kv_put_get_list_keys_delete() {
    let consul = ConsulEmulator::start();
    let http = reqwest::Client::new();
    let base = consul.url();

    let put = http
        .put(format!("{base}/v1/kv/app/db/host?flags=7"))
        .body("10.0.0.1")
        .send()
        .await
        .expect("put");
    assert_eq!(put.text().await.expect("body"), "true");
    consul.put("app/name", "shop");

    let (status, index, body) = get(&format!("{base}/v1/kv/app/db/host")).await;
    assert_eq!((status, index), (200, Some(1)));
    let entries: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(entries[0]["Key"], "app/db/host");
    assert_eq!(entries[0]["Value"], "MTAuMC4wLjE="); // base64("10.0.0.1")
    assert_eq!(entries[0]["Flags"], 7);
    assert_eq!(entries[0]["CreateIndex"], 1);
    assert_eq!(entries[0]["ModifyIndex"], 1);
    assert_eq!(entries[0]["LockIndex"], 0);

    let (status, index, body) = get(&format!("{base}/v1/kv/app?recurse")).await;
    assert_eq!((status, index), (200, Some(2)));
    let entries: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(entries.as_array().map(Vec::len), Some(2));

    let (_, _, body) = get(&format!("{base}/v1/kv/app/?keys&separator=/")).await;
    assert_eq!(body, r#"["app/db/","app/name"]"#);

    let (status, index, body) = get(&format!("{base}/v1/kv/nothing?recurse")).await;
    assert_eq!(
        (status, index, body.as_str()),
        (404, Some(2), ""),
        "404 keeps the header"
    );

    http.delete(format!("{base}/v1/kv/app?recurse"))
        .send()
        .await
        .expect("delete");
    let (status, index, _) = get(&format!("{base}/v1/kv/app?recurse")).await;
    assert_eq!(
        (status, index),
        (404, Some(3)),
        "the graveyard keeps the index"
    );

    let (status, _, body) = get(&format!("{base}/v1/status/leader")).await;
    assert_eq!((status, body.as_str()), (200, "\"127.0.0.1:8300\""));
}

#[tokio::test]
async fn blocking_queries_park_until_the_index_moves_or_wait_expires() {
    let consul = ConsulEmulator::start();
    consul.put("w/a", "1");
    let url = format!("{}/v1/kv/w?recurse&index=1&wait=300ms", consul.url());

    let started = Instant::now();
    let (status, index, _) = get(&url).await;
    let waited = started.elapsed();
    assert_eq!(
        (status, index),
        (200, Some(1)),
        "timeout returns the same index"
    );
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(
        waited < Duration::from_millis(300 + 300 / 16 + 200),
        "jitter at most wait/16: {waited:?}"
    );

    let url = format!("{}/v1/kv/w?recurse&index=1&wait=10s", consul.url());
    let (result, ()) = tokio::join!(get(&url), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        consul.put("elsewhere", "x"); // not under w: must not wake
        tokio::time::sleep(Duration::from_millis(100)).await;
        consul.put("w/b", "2");
    });
    assert_eq!(result.1, Some(3));

    let (status, _, _) = get(&format!("{}/v1/kv/w?index=1&wait=soon", consul.url())).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn acl_token_in_header_or_query() {
    let consul = ConsulEmulator::start();
    consul.put("a", "1");
    consul.set_token(Some("t0k"));
    let (status, _, _) = get(&format!("{}/v1/kv/a", consul.url())).await;
    assert_eq!(status, 403);
    let (status, _, _) = get(&format!("{}/v1/kv/a?token=t0k", consul.url())).await;
    assert_eq!(status, 200);
    let response = reqwest::Client::new()
        .get(format!("{}/v1/kv/a", consul.url()))
        .header("X-Consul-Token", "t0k")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn reset_index_moves_indexes_back() {
    let consul = ConsulEmulator::start();
    for i in 0..4 {
        consul.put("k", &i.to_string());
    }
    assert_eq!(consul.index(), 4);
    consul.reset_index(1);
    let (_, index, body) = get(&format!("{}/v1/kv/k", consul.url())).await;
    assert_eq!(index, Some(1));
    assert!(body.contains("\"ModifyIndex\":1"), "{body}");
    consul.put("k", "again");
    assert_eq!(consul.index(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_connections_and_restart_keeps_data() {
    let mut consul = ConsulEmulator::start();
    consul.put("k", "v");
    consul.stop();
    assert!(
        reqwest::get(format!("{}/v1/kv/k", consul.url()))
            .await
            .is_err()
    );
    consul.restart();
    let (status, _, _) = get(&format!("{}/v1/kv/k", consul.url())).await;
    assert_eq!(status, 200);
}
