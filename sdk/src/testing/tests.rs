//! Tests of the test kit: the in-process harness goes through the real plugin path, a correct
//! store passes every check, and each check catches the bug it is there for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::*;

/// Mistakes a store can make, one switch each.
#[derive(Debug, Default, Clone, Copy)]
struct Bugs {
    string_prefix: bool,
    literal_trailing_slash: bool,
    accepts_unknown_settings: bool,
    vague_config_errors: bool,
    trims_values: bool,
    truncates_large_values: bool,
    races_concurrent_reads: bool,
    blocks_at_index_zero: bool,
    wakes_on_any_change: bool,
    leaks_a_task_per_watch: bool,
    keeps_its_watchers: bool,
    cannot_watch: bool,
    internal_instead_of_unimplemented: bool,
}

/// A reference store: a sorted map with a change log, so a watch knows which keys changed.
#[derive(Default)]
struct Store {
    data: RwLock<BTreeMap<String, String>>,
    log: Mutex<Vec<(u64, String)>>,
    index: watch::Sender<u64>,
    watchers: AtomicUsize,
    /// Where `races_concurrent_reads` parks the keys of the read in progress.
    scratch: Mutex<Vec<String>>,
    bugs: Bugs,
}

impl Store {
    fn new(bugs: Bugs) -> Arc<Store> {
        let store = Store {
            bugs,
            ..Store::default()
        };
        store.index.send_replace(1);
        Arc::new(store)
    }

    fn change(&self, key: &str, value: Option<&str>) {
        {
            let mut data = self.data.write().expect("not poisoned");
            match value {
                Some(value) => data.insert(key.to_string(), value.to_string()),
                None => data.remove(key),
            };
        }
        let mut next = 0;
        self.index.send_modify(|i| {
            *i += 1;
            next = *i;
        });
        self.log
            .lock()
            .expect("not poisoned")
            .push((next, key.to_string()));
    }

    fn matches(&self, key: &str, requested: &str) -> bool {
        if self.bugs.string_prefix {
            return key.starts_with(requested.trim_end_matches('/'));
        }
        let base = if self.bugs.literal_trailing_slash {
            requested
        } else {
            requested.trim_end_matches('/')
        };
        base.is_empty() || key == base || key.starts_with(&format!("{base}/"))
    }
}

struct Counted<'a>(&'a AtomicUsize);
impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Database for Store {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        for (key, value) in &config {
            let problem = match key.as_str() {
                "name" => None,
                "mode" if value == "strict" || value == "lax" => None,
                "mode" => Some(format!("key \"mode\": {value:?} is neither strict nor lax")),
                _ if self.bugs.accepts_unknown_settings => None,
                _ => Some(format!("unknown key {key:?}")),
            };
            if let Some(problem) = problem {
                let message = if self.bugs.vague_config_errors {
                    "the settings are wrong".to_string()
                } else {
                    problem
                };
                return Err(Error::invalid_config(message));
            }
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let keys = if self.bugs.races_concurrent_reads {
            *self.scratch.lock().expect("not poisoned") = keys.to_vec();
            tokio::task::yield_now().await;
            self.scratch.lock().expect("not poisoned").clone()
        } else {
            keys.to_vec()
        };
        let data = self.data.read().expect("not poisoned");
        Ok(data
            .iter()
            .filter(|(k, _)| keys.iter().any(|r| self.matches(k, r)))
            .map(|(k, v)| {
                let mut v = v.clone();
                if self.bugs.trims_values {
                    v = v.trim().to_string();
                }
                if self.bugs.truncates_large_values {
                    v.truncate(64 * 1024);
                }
                (k.clone(), v)
            })
            .collect())
    }

    async fn watch_prefix(
        &self,
        _prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        if self.bugs.cannot_watch {
            return Err(if self.bugs.internal_instead_of_unimplemented {
                Error::internal("no watching here")
            } else {
                Error::unimplemented("this store cannot watch")
            });
        }
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&self.watchers);
        if self.bugs.keeps_its_watchers {
            std::mem::forget(_counted);
        }
        if self.bugs.leaks_a_task_per_watch {
            tokio::spawn(std::future::pending::<()>());
        }
        let mut index = self.index.subscribe();
        if wait_index == 0 {
            if self.bugs.blocks_at_index_zero {
                std::future::pending::<()>().await;
            }
            return Ok(*index.borrow());
        }
        loop {
            let woke = self
                .log
                .lock()
                .expect("not poisoned")
                .iter()
                .find(|(i, key)| {
                    *i > wait_index
                        && (self.bugs.wakes_on_any_change
                            || keys.iter().any(|r| self.matches(key, r)))
                })
                .map(|(i, _)| *i);
            if let Some(woke) = woke {
                return Ok(woke);
            }
            index
                .changed()
                .await
                .map_err(|_| Error::internal("store gone"))?;
        }
    }
}

/// Writes straight into the store the databases under test share.
struct Direct(Arc<Store>);

#[async_trait::async_trait]
impl Fixture for Direct {
    fn config(&self) -> Config {
        Config::from([("name".to_string(), "reference".to_string())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.0.change(key, Some(value));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.0.change(key, None);
        Ok(())
    }
}

fn suite(bugs: Bugs) -> Conformance<Arc<Store>, Direct> {
    let store = Store::new(bugs);
    let shared = Arc::clone(&store);
    Conformance::new(move || Arc::clone(&shared), Direct(store))
        .name("reference")
        .bad_setting("mode", "sideways")
        .watchers(|store: &Arc<Store>| store.watchers.load(Ordering::SeqCst))
}

/// Runs only `checks` (the others are skipped), so each bug test stays short.
async fn only(suite: Conformance<Arc<Store>, Direct>, checks: &[&str]) -> Report {
    let mut suite = suite;
    for (name, _) in CHECKS {
        if !checks.contains(name) {
            suite = suite.skip(name, "not under test here");
        }
    }
    suite.report().await
}

/// The failure of `check` on both sides, each containing `needle`.
fn assert_fails(report: &Report, check: &str, needle: &str) {
    for target in [Target::InProcess, Target::Served] {
        match report.verdict(check, Some(target)) {
            Some(Verdict::Failed(problems)) => assert!(
                problems.contains(needle),
                "{check} ({target}) should mention {needle:?}:\n{report}"
            ),
            other => panic!("{check} ({target}) should fail, got {other:?}:\n{report}"),
        }
    }
}

#[tokio::test]
async fn a_correct_store_passes_every_check_on_both_sides() {
    let report = suite(Bugs::default()).report().await;
    assert!(report.is_ok(), "{report}");
    for (check, _) in CHECKS {
        let sides: &[Option<Target>] = match *check {
            "served-shutdown" => &[None],
            _ => &[Some(Target::InProcess), Some(Target::Served)],
        };
        for side in sides {
            let verdict = report.verdict(check, *side);
            if *check == "watch-unimplemented" {
                assert!(matches!(verdict, Some(Verdict::Skipped(_))), "{report}");
            } else {
                assert_eq!(
                    verdict,
                    Some(&Verdict::Passed),
                    "{check} {side:?}:\n{report}"
                );
            }
        }
    }
    assert!(report.to_string().contains("0 failed"), "{report}");
}

#[tokio::test]
async fn a_store_that_cannot_watch_must_say_unimplemented() {
    let good = Bugs {
        cannot_watch: true,
        ..Bugs::default()
    };
    let report = suite(good).cannot_watch().report().await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        report.verdict("watch-unimplemented", Some(Target::Served)),
        Some(&Verdict::Passed)
    );
    assert!(matches!(
        report.verdict("watch-wakes", Some(Target::InProcess)),
        Some(Verdict::Skipped(why)) if why.contains("cannot watch")
    ));

    let bad = Bugs {
        internal_instead_of_unimplemented: true,
        ..good
    };
    let report = only(suite(bad).cannot_watch(), &["watch-unimplemented"]).await;
    assert_fails(
        &report,
        "watch-unimplemented",
        "Internal, not Unimplemented",
    );
}

#[tokio::test]
async fn string_prefix_matching_is_caught() {
    let bugs = Bugs {
        string_prefix: true,
        ..Bugs::default()
    };
    let report = only(suite(bugs), &["read-path-prefix", "read-several-keys"]).await;
    assert_fails(
        &report,
        "read-path-prefix",
        "returned \"/conformance/application/name\", which is not \"/conformance/app\" or below it as a path",
    );
    assert_fails(&report, "read-path-prefix", "\"/conformance/app-x\"");
    assert_fails(&report, "read-several-keys", "/conformance/apple");
    assert!(!report.is_ok());
}

#[tokio::test]
async fn a_trailing_slash_taken_literally_is_caught() {
    let bugs = Bugs {
        literal_trailing_slash: true,
        ..Bugs::default()
    };
    let report = only(suite(bugs), &["read-trailing-slash", "read-path-prefix"]).await;
    assert_fails(
        &report,
        "read-trailing-slash",
        "did not return \"/conformance/app/port\"",
    );
    assert_eq!(
        report.verdict("read-path-prefix", Some(Target::Served)),
        Some(&Verdict::Passed)
    );
}

#[tokio::test]
async fn settings_errors_must_be_refused_and_name_the_key() {
    let lax = Bugs {
        accepts_unknown_settings: true,
        ..Bugs::default()
    };
    let report = only(
        suite(lax),
        &["configure-unknown-key", "configure-bad-setting"],
    )
    .await;
    assert_fails(
        &report,
        "configure-unknown-key",
        "configure with \"conformanceUnknownSetting\" = \"x\" was accepted",
    );
    assert_eq!(
        report.verdict("configure-bad-setting", Some(Target::InProcess)),
        Some(&Verdict::Passed)
    );

    let vague = Bugs {
        vague_config_errors: true,
        ..Bugs::default()
    };
    let report = only(
        suite(vague),
        &["configure-unknown-key", "configure-bad-setting"],
    )
    .await;
    assert_fails(
        &report,
        "configure-unknown-key",
        "without naming \"conformanceUnknownSetting\"",
    );
    assert_fails(&report, "configure-bad-setting", "without naming \"mode\"");
}

#[tokio::test]
async fn altered_values_are_caught() {
    let bugs = Bugs {
        trims_values: true,
        truncates_large_values: true,
        ..Bugs::default()
    };
    let report = only(
        suite(bugs),
        &["read-values-exact", "read-large-value", "read-many-keys"],
    )
    .await;
    assert_fails(
        &report,
        "read-values-exact",
        "\"/conformance/values/padded\" = \"padded both sides\": expected \"  padded both sides\\t \"",
    );
    assert_fails(
        &report,
        "read-large-value",
        "65536 bytes instead of 1048576, first difference at byte 65536",
    );
    assert_eq!(
        report.verdict("read-many-keys", Some(Target::Served)),
        Some(&Verdict::Passed)
    );
}

#[tokio::test]
async fn racing_concurrent_reads_are_caught() {
    let bugs = Bugs {
        races_concurrent_reads: true,
        ..Bugs::default()
    };
    let report = only(suite(bugs), &["read-concurrent", "read-exact-key"]).await;
    assert_fails(&report, "read-concurrent", "concurrent read");
    // Alone, the same store reads correctly.
    assert_eq!(
        report.verdict("read-exact-key", Some(Target::InProcess)),
        Some(&Verdict::Passed)
    );
}

#[tokio::test]
async fn a_watch_that_blocks_at_index_zero_is_caught() {
    let bugs = Bugs {
        blocks_at_index_zero: true,
        ..Bugs::default()
    };
    let report = only(suite(bugs), &["watch-index-zero"]).await;
    assert_fails(
        &report,
        "watch-index-zero",
        "watch_prefix with wait_index 0 did not return within 3s",
    );
}

#[tokio::test]
async fn a_watch_woken_by_unrelated_keys_is_caught_unless_declared() {
    let bugs = Bugs {
        wakes_on_any_change: true,
        ..Bugs::default()
    };
    let checks = [
        "watch-ignores-unrelated",
        "watch-wakes",
        "watch-delete-wakes",
    ];
    let report = only(suite(bugs), &checks).await;
    assert_fails(
        &report,
        "watch-ignores-unrelated",
        "when only [\"/conformance/application/name\", \"/conformance/apple\"",
    );

    let report = only(suite(bugs).watch_wakes_on_any_change(), &checks).await;
    assert!(report.is_ok(), "{report}");
    assert!(matches!(
        report.verdict("watch-ignores-unrelated", Some(Target::Served)),
        Some(Verdict::Skipped(why)) if why.contains("watch_wakes_on_any_change")
    ));
}

#[tokio::test]
async fn cancelled_watches_that_leave_tasks_or_watchers_are_caught() {
    let leaky = Bugs {
        leaks_a_task_per_watch: true,
        ..Bugs::default()
    };
    let report = only(suite(leaky), &["watch-cancel-clean"]).await;
    assert_fails(&report, "watch-cancel-clean", "runtime tasks are alive");

    let hoarding = Bugs {
        keeps_its_watchers: true,
        ..Bugs::default()
    };
    let report = only(suite(hoarding), &["watch-cancel-clean"]).await;
    assert_fails(&report, "watch-cancel-clean", "watchers; it held");
}

#[tokio::test]
async fn skipped_checks_say_why_and_unknown_names_are_refused() {
    let report = only(suite(Bugs::default()), &["read-root"]).await;
    assert_eq!(
        report.verdict("read-root", Some(Target::Served)),
        Some(&Verdict::Passed)
    );
    assert_eq!(
        report.verdict("read-exact-key", Some(Target::Served)),
        Some(&Verdict::Skipped("not under test here".to_string()))
    );
    assert!(
        report
            .to_string()
            .contains("skipped read-exact-key (in-process, served): not under test here"),
        "{report}"
    );

    let refused = std::panic::catch_unwind(|| suite(Bugs::default()).skip("read-everything", "?"));
    let message = refused
        .err()
        .and_then(|p| p.downcast::<String>().ok())
        .expect("an unknown check name panics");
    assert!(
        message.contains("there is no conformance check \"read-everything\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_failing_fixture_is_reported_as_a_setup_failure() {
    struct Broken;
    #[async_trait::async_trait]
    impl Fixture for Broken {
        fn config(&self) -> Config {
            Config::new()
        }
        async fn put(&self, _key: &str, _value: &str) -> Result<(), FixtureError> {
            Err("the test store is read-only".into())
        }
        async fn delete(&self, _key: &str) -> Result<(), FixtureError> {
            Ok(())
        }
    }
    let report = Conformance::new(|| Store::new(Bugs::default()), Broken)
        .report()
        .await;
    assert!(!report.is_ok());
    assert!(
        matches!(report.verdict("setup", None), Some(Verdict::Failed(why)) if why.contains("read-only")),
        "{report}"
    );
}

fn socket_of(plugin: &InProcessPlugin) -> PathBuf {
    PathBuf::from(
        plugin
            .address()
            .strip_prefix("unix:")
            .expect("a unix socket"),
    )
}

#[tokio::test]
async fn serve_in_process_goes_through_the_plugin_path() {
    let store = Store::new(Bugs::default());
    store.change("/a/b", Some("1"));
    let plugin = serve_in_process(ServeOpts::new("reference", {
        let store = Arc::clone(&store);
        move || store
    }))
    .await
    .expect("serves");
    let socket = socket_of(&plugin);
    assert!(socket.exists(), "{socket:?}");

    let values = plugin.get_values(&["/a".to_string()]).await.expect("read");
    assert_eq!(values.get("/a/b").map(String::as_str), Some("1"));
    // An error crosses the wire as a gRPC status: InvalidConfig travels as InvalidArgument.
    let err = plugin
        .configure(Config::from([("bogus".to_string(), "1".to_string())]))
        .await
        .expect_err("unknown key");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("\"bogus\""), "{err}");
    // Info falls back to the serve options, as the server does for a plugin process.
    assert_eq!(plugin.info().await.expect("info").name, "reference");
    plugin.ping().await.expect("healthy");
    let index = plugin
        .watch_prefix("/a", &["/a".to_string()], 0)
        .await
        .expect("index");
    assert_eq!(index, 2);

    plugin.shutdown().await.expect("clean stop");
    assert!(!socket.exists(), "socket removed");
    assert!(
        !socket.parent().expect("dir").exists(),
        "socket dir removed"
    );
}

#[tokio::test]
async fn the_client_sees_the_server_stop_and_dropping_the_plugin_removes_its_socket() {
    let plugin = serve_in_process(ServeOpts::new("reference", || Store::new(Bugs::default())))
        .await
        .expect("serves");
    plugin.client().shutdown(Duration::from_secs(5)).await;
    let mut err = None;
    for _ in 0..100 {
        match plugin.get_values(&["/a".to_string()]).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("the stopped server no longer answers");
    assert_eq!(err.kind(), ErrorKind::PluginFailed, "{err}");
    assert!(err.message().contains("plugin reference"), "{err}");

    let plugin = serve_in_process(ServeOpts::new("reference", || Store::new(Bugs::default())))
        .await
        .expect("serves");
    let dir = socket_of(&plugin).parent().expect("dir").to_path_buf();
    drop(plugin);
    for _ in 0..100 {
        if !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{dir:?} left behind");
}

#[tokio::test]
async fn a_factory_that_panics_is_a_start_error() {
    let err = serve_in_process(ServeOpts::new("broken", || -> Arc<Store> {
        panic!("cannot build the store")
    }))
    .await
    .expect_err("no plugin");
    assert_eq!(err.kind(), ErrorKind::PluginFailed);
    assert!(
        err.message().contains("plugin broken: did not start"),
        "{err}"
    );
}

/// Run by `in_process_serving_leaves_sigint_alone` in a child copy of this test binary.
#[tokio::test]
async fn sigint_child_process() {
    if std::env::var_os("CONFD_TESTKIT_SIGINT_CHILD").is_none() {
        return;
    }
    let plugin = serve_in_process(ServeOpts::new("reference", || Store::new(Bugs::default())))
        .await
        .expect("serves");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).expect("raise");
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(plugin);
}

#[test]
fn in_process_serving_leaves_sigint_alone() {
    use std::os::unix::process::ExitStatusExt as _;
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "testing::tests::sigint_child_process",
            "--nocapture",
        ])
        .env("CONFD_TESTKIT_SIGINT_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("child runs");
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGINT as i32),
        "Ctrl-C must still stop a test binary that serves a plugin in-process: {status:?}"
    );
}
