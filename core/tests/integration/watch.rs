//! Watch and interval modes: coalescing, shared watches, outages, shutdown.

use std::fs;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confd_core::{load_resources, run_interval, run_watch};
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
async fn a_burst_gives_a_leading_and_one_trailing_render() {
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
        // The first change renders at once, the nine within its window coalesce into one.
        let fetches = db.gets() - gets_before;
        assert!(
            (1..=2).contains(&fetches),
            "{fetches} fetches for the burst"
        );
        assert_eq!(lines(&log), 1 + fetches, "one reload per render");
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    let summary = summary.expect("watch ran");
    assert!((2..=3).contains(&summary.updated), "{summary:?}");
    assert_eq!(summary.failed, 0);
}

#[tokio::test]
async fn the_first_change_after_quiet_renders_without_waiting_for_the_window() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    // A window no test would wait for: only a leading-edge render can show the change.
    opts.debounce = Duration::from_secs(3600);
    opts.debounce_max = Duration::from_secs(3600);
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v0\n"))
            .await
        );
        db.set("/app/name", "v1");
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v1\n"))
            .await,
            "the first change renders at once"
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    assert_eq!(summary.expect("watch ran").failed, 0);
}

#[tokio::test]
async fn debounce_max_caps_how_long_a_stream_postpones_a_render() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    opts.debounce = Duration::from_secs(3600);
    opts.debounce_max = Duration::from_millis(200);
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
        // Within the (hour-long) window of v1: only the cap can bring v2 to the file.
        db.set("/app/name", "v2");
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v2\n"))
            .await,
            "debounce_max ends the wait"
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    assert_eq!(summary.expect("watch ran").failed, 0);
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

/// A backend that could not say beforehand that it cannot watch (no `Info`, e.g. a Go plugin)
/// and answers the watch with `Unimplemented`: its resources are read every interval instead
/// of ending the run.
#[tokio::test]
async fn a_backend_that_answers_unimplemented_to_a_watch_is_polled_instead() {
    let summary = run_a_backend_without_watch(&[]).await;
    assert_eq!(summary.expect("polled, not ended").updated, 2);
}

#[tokio::test]
async fn a_backend_in_poll_backends_is_read_every_interval_instead() {
    let summary = run_a_backend_without_watch(&["mem"]).await;
    assert_eq!(summary.expect("polled, not refused").updated, 2);
}

/// A watch run over a store that cannot watch, with `poll_backends` as given and a 100 ms
/// interval: the first value renders, a change renders, then the run is stopped.
async fn run_a_backend_without_watch(
    poll_backends: &[&str],
) -> Result<confd_core::Summary, confd_core::WatchError> {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::without_watch(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    opts.interval = Duration::from_millis(100);
    opts.poll_backends
        .extend(poll_backends.iter().map(|b| b.to_string()));
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let driver = async {
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v0\n"))
            .await
        );
        db.set("/app/name", "v1");
        assert!(
            eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                == Some("name=v1\n"))
            .await
        );
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    summary
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

/// On a multi-thread runtime (the host's) groups run as tasks on the workers
/// and renders after a change do their file work in place: the safe-sync
/// steps must hold there too (whole file, reload once, no stage left over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_render_safely_on_a_multi_thread_runtime() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let log = c.dir.path().join("reloads.log");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!("reload_cmd = \"echo reload >> {}\"", log.display()),
    );
    c.resource("other.conf", "app.tmpl", &["/app", "/other"], "");
    let db = MemDb::new(&[("/app/name", "v0")]);
    let mut opts = c.opts();
    opts.debounce = Duration::ZERO;
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        assert!(eventually(Duration::from_secs(5), || lines(&log) == 1).await);
        for i in 1..=5 {
            let want = format!("name=v{i}\n");
            db.set("/app/name", &format!("v{i}"));
            assert!(
                eventually(Duration::from_secs(5), || {
                    c.read("app.conf").as_deref() == Some(want.as_str())
                        && c.read("other.conf").as_deref() == Some(want.as_str())
                        && lines(&log) == i + 1
                })
                .await,
                "change {i} rendered once"
            );
        }
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    let summary = summary.expect("watch ran");
    assert_eq!(summary.updated, 12);
    assert_eq!(summary.failed, 0);
    let out = c.dest("app.conf");
    let out = out.parent().expect("dests live in out/");
    let mut names: Vec<String> = fs::read_dir(out)
        .expect("out/ exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.conf", "other.conf"], "no stage file left over");
}

/// A store whose watch answers at once (then never again) and can bring values along,
/// different from what a read returns, so the test sees which the render used.
struct Bringing {
    bring: bool,
    reads: std::sync::atomic::AtomicUsize,
}

#[confd_sdk::async_trait]
impl confd_sdk::Database for Bringing {
    async fn configure(&self, _config: confd_sdk::Config) -> Result<(), confd_sdk::Error> {
        Ok(())
    }
    async fn get_values(
        &self,
        _keys: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, confd_sdk::Error> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok([("/app/name".to_string(), "read".to_string())].into())
    }
    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        index: u64,
    ) -> Result<u64, confd_sdk::Error> {
        if index == 0 {
            Ok(1)
        } else {
            std::future::pending().await
        }
    }
    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        index: u64,
    ) -> Result<(u64, Option<std::collections::BTreeMap<String, String>>), confd_sdk::Error> {
        let index = self.watch_prefix(prefix, keys, index).await?;
        let values = [("/app/name".to_string(), "watched".to_string())].into();
        Ok((index, self.bring.then_some(values)))
    }
}

#[tokio::test]
async fn values_a_watch_brings_are_rendered_without_a_read() {
    for bring in [true, false] {
        let c = Confdir::new();
        c.template("app.tmpl", APP);
        c.resource("app.conf", "app.tmpl", &["/app"], "");
        let db = std::sync::Arc::new(Bringing {
            bring,
            reads: Default::default(),
        });
        let shared: confd_sdk::SharedDatabase = db.clone();
        let opts = c.opts();
        let backends = [(opts.default_backend.clone(), shared)].into();
        let resources = load_resources(&opts).expect("load");
        let (stop, shutdown) = shutdown_pair();
        let expected = if bring {
            "name=watched\n"
        } else {
            "name=read\n"
        };
        let driver = async {
            assert!(
                eventually(Duration::from_secs(5), || c.read("app.conf").as_deref()
                    == Some(expected))
                .await,
                "bring={bring}: {:?}",
                c.read("app.conf")
            );
            let _ = stop.send(());
        };
        let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
        assert_eq!(summary.expect("ran").updated, 1);
        let reads = db.reads.load(Ordering::SeqCst);
        assert_eq!(reads, usize::from(!bring), "bring={bring}");
    }
}

#[tokio::test]
async fn the_first_pass_is_marked_once_every_group_has_rendered() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.template("other.tmpl", "other={{getv \"/other/name\"}}\n");
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    c.resource("other.conf", "other.tmpl", &["/other"], "");
    let db = MemDb::new(&[("/app/name", "a"), ("/other/name", "b")]);
    // The store is down at start: no group can render, so the first pass is not done.
    db.set_down(true);
    let opts = c.opts();
    let first = opts.first_pass.clone();
    let resources = load_resources(&opts).expect("load");
    let backends = db.backends();
    let (stop, shutdown) = shutdown_pair();
    let driver = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!first.done(), "no group rendered while the store was down");
        db.set_down(false);
        assert!(eventually(Duration::from_secs(5), || first.done()).await);
        assert_eq!(c.read("app.conf").as_deref(), Some("name=a\n"));
        assert_eq!(c.read("other.conf").as_deref(), Some("other=b\n"));
        let _ = stop.send(());
    };
    let (summary, ()) = tokio::join!(run_watch(&resources, &backends, &opts, shutdown), driver);
    summary.expect("watch ran");
}
