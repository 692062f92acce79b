//! Watch and interval modes: coalescing, shared watches, outages, shutdown.

use std::fs;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confd_core::{WatchError, load_resources, run_interval, run_watch};
use tokio::sync::oneshot;

use crate::support::{Confdir, MemDb};

const APP: &str = "name={{getv \"/app/name\"}}\n";

/// Polls `check` every 10 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

fn shutdown_pair() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

fn lines(path: &std::path::Path) -> usize {
    fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_burst_gives_one_render_and_one_reload() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let log = c.dir.path().join("reloads.log");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!("reload_cmd = \"echo reload >> {}\"", log.display()),
    );
    let db = MemDb::new(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    opts.debounce = Duration::from_millis(250);
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        // The file appears just before its reload runs; wait for both.
        assert!(eventually(Duration::from_secs(5), || lines(&log) == 1).await);
        assert!(c.read("app.conf").is_some());
        let gets_before = db.gets();
        for i in 1..=10 {
            db.set("/app/name", &format!("v{i}"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v10\n"))
            .await
        );
        // Give a second render, if one were coming, time to show up.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(db.gets() - gets_before, 1, "one fetch for the burst");
        assert_eq!(lines(&log), 2, "one reload for the burst");
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    let summary = summary.expect("watch ran");
    assert_eq!(summary.updated, 2);
    assert_eq!(summary.failed, 0);
}

#[tokio::test]
async fn resources_with_the_same_keys_share_one_watch() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("a", "app.tmpl", &["/app"], "");
    c.resource("b", "app.tmpl", &["/app/"], "");
    c.resource("c", "app.tmpl", &["/app", "/other"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(
            eventually(Duration::from_secs(5), || ["a", "b", "c"]
                .iter()
                .all(|n| c.read(n).is_some()))
            .await
        );
        db.set("/app/name", "v1");
        assert!(
            eventually(Duration::from_secs(5), || ["a", "b", "c"]
                .iter()
                .all(|n| c.read(n).as_deref() == Some("name=v1\n")))
            .await
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    assert_eq!(summary.expect("ran").updated, 6);
    // Two distinct key sets: two watches, each started once with index 0.
    assert_eq!(db.watch_first_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_outage_keeps_files_and_rendering_resumes() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(eventually(Duration::from_secs(5), || c.read("app.conf").is_some()).await);
        db.set_down(true);
        db.set("/app/name", "v1");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(c.read("app.conf").as_deref(), Some("name=v0\n"));
        assert_eq!(c.listing(), ["app.conf"]);
        db.set_down(false);
        let back = Instant::now();
        assert!(
            eventually(Duration::from_secs(3), || c.read("app.conf").as_deref()
                == Some("name=v1\n"))
            .await
        );
        assert!(
            back.elapsed() <= Duration::from_millis(2500),
            "{:?}",
            back.elapsed()
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    assert_eq!(summary.expect("ran").updated, 2);
}

#[tokio::test]
async fn a_backend_that_cannot_watch_is_an_error() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::without_watch(&[("/app/name", "v0")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("load");
    let err = run_watch(&resources, &db.backends(), &opts, std::future::pending())
        .await
        .expect_err("env-like backends cannot watch");
    assert!(matches!(err, WatchError::Unsupported { .. }));
    let text = err.to_string();
    assert!(
        text.contains("\"mem\"") && text.contains("--interval") && text.contains("--onetime"),
        "{text}"
    );
    assert!(c.listing().is_empty());
}

#[tokio::test]
async fn shutdown_stops_watching_promptly() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(eventually(Duration::from_secs(5), || c.read("app.conf").is_some()).await);
        let _ = stop.send(());
        Instant::now()
    };
    let (summary, sent) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    assert!(sent.elapsed() < Duration::from_millis(500));
    assert_eq!(summary.expect("ran").updated, 1);
}

#[tokio::test]
async fn interval_mode_repeats_until_shutdown() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::without_watch(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    opts.interval = Duration::from_millis(50);
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(eventually(Duration::from_secs(5), || c.read("app.conf").is_some()).await);
        db.set("/app/name", "v1");
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v1\n"))
            .await
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_interval(&resources, &backends, &opts, shutdown), driver);
    assert_eq!(summary.updated, 2);
    assert!(summary.unchanged >= 1 || db.gets() >= 2);
    assert_eq!(summary.failed, 0);
}

#[tokio::test]
async fn watch_without_resources_waits_for_shutdown() {
    let db = MemDb::new(&[]);
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let opts = confd_core::RunOptions::default();
    let start = Instant::now();
    let watch = async {
        let r = run_watch(&[], &backends, &opts, shutdown).await;
        (r, start.elapsed())
    };
    let driver = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop.send(());
    };
    let ((summary, ran), ()) = tokio::join!(watch, driver);
    assert!(
        ran >= Duration::from_millis(200),
        "returned before shutdown: {ran:?}"
    );
    assert_eq!(summary.expect("ok"), confd_core::Summary::default());
}
