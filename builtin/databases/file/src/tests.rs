//! Unit tests: settings, selection and the watch of the file backend.

use super::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn configured(files: &[&std::path::Path]) -> FileDatabase {
    let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let db = database();
    db.configure(config(&[("file", &list.join(","))]))
        .await
        .expect("valid settings");
    db
}

/// Replaces a file the way editors do: write a sibling, rename it over.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test]
async fn settings_are_decoded_and_checked() {
    let got = FileConfig::from_config(&config(&[("file", "a.yaml,conf.d"), ("filter", "*.yml")]))
        .expect("valid");
    assert_eq!(
        got,
        FileConfig {
            files: vec!["a.yaml".into(), "conf.d".into()],
            filter: "*.yml".into()
        }
    );
    let default = FileConfig::from_config(&config(&[("file", "a.yaml")])).expect("valid");
    assert_eq!(default.filter, "*");

    let err = database()
        .configure(config(&[("file", "a.yaml"), ("yamlFile", "b")]))
        .await
        .expect_err("unknown key");
    assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidConfig);
    assert!(err.message().contains("\"yamlFile\""), "{err}");

    let err = database()
        .configure(config(&[]))
        .await
        .expect_err("no file");
    assert!(err.message().contains("\"file\""), "{err}");

    let err = database()
        .configure(config(&[("file", "a"), ("filter", "[a-")]))
        .await
        .expect_err("bad glob");
    assert!(err.message().contains("\"filter\""), "{err}");
}

#[tokio::test]
async fn calls_before_configure_fail_clearly() {
    let err = database()
        .get_values(&keys(&["/"]))
        .await
        .expect_err("not configured");
    assert_eq!(err.kind(), confd_sdk::ErrorKind::NotConfigured);
}

#[tokio::test]
async fn get_values_selects_by_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a.yaml");
    std::fs::write(&file, "app: {x: 1, y: [a, b]}\napplication: {z: 2}\n").expect("write");
    let db = configured(&[&file]).await;
    let got = db.get_values(&keys(&["/app"])).await.expect("readable");
    let want: BTreeMap<String, String> = [("/app/x", "1"), ("/app/y/0", "a"), ("/app/y/1", "b")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    let info = db.info().await.expect("offered");
    assert_eq!(info.capabilities, ["watch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_wakes_on_a_change_and_not_on_unrelated_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a.yaml");
    std::fs::write(&file, "app: {x: 1}\nother: {y: 1}\n").expect("write");
    let db = Arc::new(configured(&[&file]).await);
    let wanted = keys(&["/app"]);

    let first = db.watch_prefix("/app", &wanted, 0).await.expect("index");
    assert_ne!(first, 0);
    // A stale index returns at once.
    assert_eq!(
        db.watch_prefix("/app", &wanted, first.wrapping_add(1))
            .await,
        Ok(first)
    );

    let waiter = {
        let db = Arc::clone(&db);
        let wanted = wanted.clone();
        tokio::spawn(async move { db.watch_prefix("/app", &wanted, first).await })
    };
    // Let the watcher start, then change only an unrelated key.
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 1).await;
    replace(&file, "app: {x: 1}\nother: {y: 2}\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !waiter.is_finished(),
        "an unrelated change must not wake the watch"
    );

    let changed_at = Instant::now();
    std::fs::write(&file, "app: {x: 2}\nother: {y: 2}\n").expect("write");
    let next = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woke within a second")
        .expect("task ran")
        .expect("watch succeeded");
    assert!(changed_at.elapsed() < Duration::from_secs(1));
    assert_ne!(next, first);
    assert_eq!(db.watch_prefix("/app", &wanted, 0).await, Ok(next));
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_files_appearing_in_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf.d");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("a.yaml"), "app: {x: 1}\n").expect("write");
    let db = Arc::new(configured(&[&dir]).await);
    let wanted = keys(&["/app"]);
    let first = db.watch_prefix("/app", &wanted, 0).await.expect("index");
    let waiter = {
        let db = Arc::clone(&db);
        tokio::spawn(async move { db.watch_prefix("/app", &wanted, first).await })
    };
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 1).await;
    replace(&dir.join("sub/b.yaml"), "app: {y: 1}\n");
    let next = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("woke")
        .expect("task ran")
        .expect("watch succeeded");
    assert_ne!(next, first);
    let got = db.get_values(&keys(&["/app/y"])).await.expect("readable");
    assert_eq!(got.get("/app/y").map(String::as_str), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watch_drops_the_watcher() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a.yaml");
    std::fs::write(&file, "app: {x: 1}\n").expect("write");
    let db = Arc::new(configured(&[&file]).await);
    let wanted = keys(&["/app"]);
    let first = db.watch_prefix("/app", &wanted, 0).await.expect("index");
    let waiter = {
        let db = Arc::clone(&db);
        tokio::spawn(async move { db.watch_prefix("/app", &wanted, first).await })
    };
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 1).await;
    waiter.abort();
    assert!(waiter.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(db.watchers.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_during_a_watch_waits_for_the_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a.yaml");
    std::fs::write(&file, "app: {x: 1}\n").expect("write");
    let db = Arc::new(configured(&[&file]).await);
    let wanted = keys(&["/app"]);
    let first = db.watch_prefix("/app", &wanted, 0).await.expect("index");
    let waiter = {
        let db = Arc::clone(&db);
        tokio::spawn(async move { db.watch_prefix("/app", &wanted, first).await })
    };
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 1).await;
    replace(&file, "app: {x: [broken\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiter.is_finished(),
        "a broken file does not wake the watch"
    );
    replace(&file, "app: {x: 3}\n");
    let next = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("woke")
        .expect("task ran")
        .expect("watch succeeded");
    assert_ne!(next, first);
}

/// Kubernetes updates a ConfigMap volume by swapping the `..data` symlink;
/// the configured file (a symlink through `..data`) never sees a write.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_kubernetes_style_symlink_swap() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = tmp.path();
    std::fs::create_dir(vol.join("..v1")).expect("mkdir");
    std::fs::write(vol.join("..v1/app.yaml"), "app: {x: 1}\n").expect("write");
    symlink("..v1", vol.join("..data")).expect("symlink");
    symlink("..data/app.yaml", vol.join("app.yaml")).expect("symlink");
    let db = Arc::new(configured(&[&vol.join("app.yaml")]).await);
    let wanted = keys(&["/app"]);
    let first = db.watch_prefix("/app", &wanted, 0).await.expect("index");
    let waiter = {
        let db = Arc::clone(&db);
        tokio::spawn(async move { db.watch_prefix("/app", &wanted, first).await })
    };
    wait_for(|| db.watchers.load(Ordering::SeqCst) == 1).await;
    std::fs::create_dir(vol.join("..v2")).expect("mkdir");
    std::fs::write(vol.join("..v2/app.yaml"), "app: {x: 2}\n").expect("write");
    symlink("..v2", vol.join("..data_tmp")).expect("symlink");
    std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).expect("swap");
    let next = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("woke")
        .expect("task ran")
        .expect("watch succeeded");
    assert_ne!(next, first);
    let got = db.get_values(&keys(&["/app"])).await.expect("readable");
    assert_eq!(got.get("/app/x").map(String::as_str), Some("2"));
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
