//! `confd --watch --metrics-addr` against a real etcd (`observe/`): every metric of the fork and
//! of this design is in `/metrics` with its type and labels (read by the Prometheus client
//! library's parser), counters move as resources render and fail, `/ready` follows an etcd outage,
//! and the plugin metrics move when the plugin dies.

mod e2e;

use std::collections::BTreeMap;
use std::time::Duration;

use confd_test_support::{Family, free_port, http_get, parse_metrics};
use e2e::{Confd, Run, Store, Via};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(20);

/// (name, type, label names) of every metric the issue names.
const EXPECTED: &[(&str, &str, &[&str])] = &[
    (
        "confd_backend_request_duration_seconds",
        "histogram",
        &["backend", "operation"],
    ),
    (
        "confd_backend_request_total",
        "counter",
        &["backend", "operation"],
    ),
    (
        "confd_backend_errors_total",
        "counter",
        &["backend", "operation"],
    ),
    ("confd_backend_healthy", "gauge", &["backend"]),
    (
        "confd_template_process_duration_seconds",
        "histogram",
        &["dest"],
    ),
    (
        "confd_template_process_total",
        "counter",
        &["dest", "status"],
    ),
    ("confd_templates_loaded", "gauge", &[]),
    ("confd_watched_keys", "gauge", &[]),
    (
        "confd_command_duration_seconds",
        "histogram",
        &["type", "dest"],
    ),
    ("confd_command_total", "counter", &["type", "dest"]),
    (
        "confd_command_exit_code_total",
        "counter",
        &["type", "exit_code"],
    ),
    ("confd_file_sync_total", "counter", &["dest"]),
    ("confd_file_changed_total", "counter", &[]),
    (
        "confd_plugin_restarts_total",
        "counter",
        &["backend", "cause"],
    ),
    ("confd_plugin_up", "gauge", &["backend"]),
    ("confd_watch_lag_seconds", "histogram", &["backend"]),
    ("confd_reloads_total", "counter", &["status"]),
    ("confd_build_info", "gauge", &["version"]),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
];

fn scrape(port: u16) -> Option<BTreeMap<String, Family>> {
    let (code, text) = http_get(port, "/metrics")?;
    assert_eq!(code, 200, "{text}");
    parse_metrics(&text)
}

/// The value of the sample of `family` (its plain series, not a histogram's parts) whose labels
/// include `labels`.
fn value(families: &BTreeMap<String, Family>, family: &str, labels: &[(&str, &str)]) -> f64 {
    families
        .get(family)
        .and_then(|f| {
            f.samples.iter().find(|s| {
                (s.name == family || s.name == format!("{family}_count"))
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
        })
        .map_or(0.0, |s| s.value)
}

fn wait<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn put(store: &mut Store, key: &str, value: &str) {
    store.put_all(&[(key.to_string(), value.to_string())]);
}

#[test]
fn metrics_probes_and_plugin_loss_under_a_watch_run() {
    // The parser first: without it (outside CI) the test has nothing to check with.
    if parse_metrics("# TYPE x gauge\nx 1\n").is_none() {
        return;
    }
    let run = Run::new(&confd_test_support::workspace_root().join("integration/observe/confdir"));
    let Some(mut store) = Store::start("etcd", &run.store_dir()) else {
        return;
    };
    put(&mut store, "/obs/port", "80");
    let port = free_port();
    let mut cmd = run.command(&e2e::isolated_confd(), &store, Via::Builtin);
    cmd.args(["--watch", "--log-level", "debug", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"));
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let app = run.out().join("app.conf");
    let json = run.out().join("app.json");
    let rendered = wait(DEADLINE, || {
        (std::fs::read_to_string(&json).ok()? == "{\"port\": 80}\n").then_some(())
    });
    assert!(rendered.is_some(), "initial render\n{}", confd.stderr());
    let ready = wait(DEADLINE, || {
        http_get(port, "/ready").filter(|(c, _)| *c == 200)
    });
    assert!(ready.is_some(), "/ready never 200\n{}", confd.stderr());

    // A change: rendered through the watch, so the lag is measured.
    put(&mut store, "/obs/port", "81");
    let changed = wait(DEADLINE, || {
        (std::fs::read_to_string(&app).ok()? == "port = 81\n").then_some(())
    });
    assert!(changed.is_some(), "change not rendered\n{}", confd.stderr());
    let app_dest = app.display().to_string();
    let json_dest = json.display().to_string();
    let families = wait(DEADLINE, || {
        let f = scrape(port)?;
        (value(&f, "confd_watch_lag_seconds", &[("backend", "etcd")]) >= 1.0
            && value(&f, "confd_file_sync_total", &[("dest", &json_dest)]) >= 2.0)
            .then_some(f)
    })
    .unwrap_or_else(|| panic!("the change was not counted\n{}", confd.stderr()));

    for (name, kind, labels) in EXPECTED {
        let family = families
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics: {families:?}"));
        assert_eq!(family.kind, *kind, "{name}");
        assert!(!family.samples.is_empty(), "{name} has no sample");
        for sample in &family.samples {
            let mut got: Vec<&str> = sample
                .labels
                .keys()
                .map(String::as_str)
                .filter(|l| *l != "le")
                .collect();
            got.sort_unstable();
            let mut want = labels.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: {sample:?}");
        }
    }
    let success = |f: &BTreeMap<String, Family>, dest: &str| {
        value(
            f,
            "confd_template_process_total",
            &[("dest", dest), ("status", "success")],
        )
    };
    assert!(success(&families, &app_dest) >= 2.0, "{families:?}");
    assert_eq!(value(&families, "confd_templates_loaded", &[]), 2.0);
    assert_eq!(value(&families, "confd_watched_keys", &[]), 1.0);
    assert_eq!(
        value(&families, "confd_backend_healthy", &[("backend", "etcd")]),
        1.0
    );
    assert_eq!(
        value(&families, "confd_plugin_up", &[("backend", "etcd")]),
        1.0
    );
    assert!(
        value(
            &families,
            "confd_command_exit_code_total",
            &[("type", "check"), ("exit_code", "0")]
        ) >= 2.0
    );
    assert!(
        value(
            &families,
            "confd_backend_request_total",
            &[("backend", "etcd"), ("operation", "watch_prefix")]
        ) >= 2.0
    );
    let restarts = &[("backend", "etcd"), ("cause", "exited")];
    assert_eq!(
        value(&families, "confd_plugin_restarts_total", restarts),
        0.0
    );

    // A failure: the JSON resource refuses a non-numeric port; the Go one still renders.
    // Both resources are counted in one scrape only once both have been processed: the
    // two run independently, so the wait covers both counters.
    put(&mut store, "/obs/port", "eighty");
    let failed = wait(DEADLINE, || {
        let f = scrape(port)?;
        (value(
            &f,
            "confd_template_process_total",
            &[("dest", &json_dest), ("status", "error")],
        ) >= 1.0
            && success(&f, &app_dest) > success(&families, &app_dest))
        .then_some(f)
    });
    failed.unwrap_or_else(|| panic!("no error, or no Go render, counted\n{}", confd.stderr()));
    assert_eq!(
        std::fs::read_to_string(&json).expect("json dest"),
        "{\"port\": 81}\n",
        "the old JSON stays"
    );
    put(&mut store, "/obs/port", "82");

    // /ready follows the store: 503 while etcd is down, 200 once it is back.
    store.stop();
    let down = wait(DEADLINE, || {
        http_get(port, "/ready").filter(|(c, _)| *c == 503)
    });
    let (_, body) = down.unwrap_or_else(|| panic!("/ready stayed 200\n{}", confd.stderr()));
    assert!(body.contains("backend unhealthy: etcd"), "{body}");
    let (code, detailed) = http_get(port, "/ready/detailed").expect("detailed");
    assert_eq!(code, 503, "{detailed}");
    let v: serde_json::Value = serde_json::from_str(&detailed).expect("JSON");
    assert_eq!(
        v["details"]["backends"]["etcd"]["healthy"], false,
        "{detailed}"
    );
    let unhealthy = scrape(port).expect("scrape");
    assert_eq!(
        value(&unhealthy, "confd_backend_healthy", &[("backend", "etcd")]),
        0.0
    );
    store.restart();
    let up = wait(DEADLINE, || {
        http_get(port, "/ready").filter(|(c, _)| *c == 200)
    });
    assert!(
        up.is_some(),
        "/ready not 200 after etcd came back\n{}",
        confd.stderr()
    );

    // The plugin dies: plugin_up drops, the restart is counted with its cause, and once the new
    // process answers plugin_up is back to 1; confd stays up and stops with 0 on SIGTERM.
    let plugins = confd.plugin_pids();
    assert_eq!(plugins.len(), 1, "{plugins:?}");
    kill(Pid::from_raw(plugins[0] as i32), Signal::SIGKILL).expect("kill the plugin");
    let killed = &[("backend", "etcd"), ("cause", "signal")];
    let counted = wait(DEADLINE, || {
        let f = scrape(port)?;
        (value(&f, "confd_plugin_restarts_total", killed) == 1.0).then_some(f)
    })
    .unwrap_or_else(|| panic!("plugin restart not counted\n{}", confd.stderr()));
    assert_eq!(
        value(&counted, "confd_plugin_restarts_total", restarts),
        0.0
    );
    let back = wait(DEADLINE, || {
        let f = scrape(port)?;
        (value(&f, "confd_plugin_up", &[("backend", "etcd")]) == 1.0
            && confd.plugin_pids().iter().all(|p| *p != plugins[0]))
        .then_some(f)
    });
    assert!(back.is_some(), "plugin not back\n{}", confd.stderr());
    assert!(confd.try_wait().is_none(), "confd stays up");
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());
}
