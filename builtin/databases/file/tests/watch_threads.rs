//! Cancelling a watch must not leak the watcher's thread. Alone in its test
//! binary so that no other test's watcher is counted.

use std::time::{Duration, Instant};

use confd_sdk::{Config, Database};

mod common;
use common::watcher_threads;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not reached in 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_watches_leave_no_threads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a.yaml");
    std::fs::write(&file, "app: {x: 1}\n").expect("write");
    let db = std::sync::Arc::new(confd_builtin_file::database());
    db.configure(Config::from([(
        "file".to_string(),
        file.display().to_string(),
    )]))
    .await
    .expect("valid settings");
    let keys = vec!["/app".to_string()];
    let index = db.watch_prefix("/app", &keys, 0).await.expect("index");
    assert_eq!(watcher_threads(), 0);

    for round in 0..3 {
        let waiter = {
            let db = std::sync::Arc::clone(&db);
            let keys = keys.clone();
            tokio::spawn(async move { db.watch_prefix("/app", &keys, index).await })
        };
        wait_for("watcher started", || watcher_threads() == 1).await;
        waiter.abort();
        assert!(
            waiter.await.is_err_and(|e| e.is_cancelled()),
            "round {round}"
        );
        wait_for("watcher thread ended", || watcher_threads() == 0).await;
    }
}
