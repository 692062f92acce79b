//! `--metrics-addr` with the env backend: the probes answer, /metrics counts renders, and a bad
//! or taken address is a usage error at start. The full metric set under a real store, parsed
//! by a Prometheus parser, is in `integration/tests/observe.rs`.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, clean_command, http_get, text};

/// A confd child killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
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

#[test]
fn probes_answer_and_metrics_count_renders() {
    let s = Scratch::new();
    s.template("app.tmpl", "name={{getv \"/app/name\"}}\n")
        .resource(
            "app.toml",
            "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
        );
    let port = confd_test_support::free_port();
    let child = clean_command(&s.confd())
        .current_dir(s.path())
        .env("APP_NAME", "demo")
        .args(["--backend", "env", "--interval", "1", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--confdir")
        .arg(s.confdir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn confd");
    let _running = Running(child);
    let health = wait_for(Duration::from_secs(20), || http_get(port, "/health"));
    assert_eq!(health, Some((200, "ok".to_string())));
    let ready = wait_for(Duration::from_secs(20), || {
        http_get(port, "/ready").filter(|(code, _)| *code == 200)
    });
    assert_eq!(ready, Some((200, "ok".to_string())));
    let (code, body) = http_get(port, "/ready/detailed").expect("detailed");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    for key in ["healthy", "message", "duration_ms", "details", "checked_at"] {
        assert!(v.get(key).is_some(), "{key}: {body}");
    }
    let env = &v["details"]["backends"]["env"];
    assert_eq!(env["healthy"], true, "{body}");
    assert!(env["details"]["plugin_pid"].is_string(), "{body}");
    humantime::parse_rfc3339(env["checked_at"].as_str().expect("time")).expect("RFC 3339");

    // Interval passes every second: the success counter moves.
    let count = |text: &str| -> Option<f64> {
        text.lines()
            .find(|l| {
                l.starts_with("confd_template_process_total{") && l.contains("status=\"success\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let (_, first) = http_get(port, "/metrics").expect("metrics");
    let before = count(&first).expect("a success count");
    let later = wait_for(Duration::from_secs(10), || {
        http_get(port, "/metrics")
            .and_then(|(_, t)| count(&t))
            .filter(|n| *n > before)
    });
    assert!(later.is_some(), "no new render counted:\n{first}");
    assert!(first.contains("confd_build_info{version=\""), "{first}");
    assert!(first.contains("process_resident_memory_bytes"), "{first}");
}

#[test]
fn no_server_without_metrics_addr() {
    let s = Scratch::new();
    s.template("app.tmpl", "x\n").resource(
        "app.toml",
        "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\n",
    );
    let output = s.run_env(&[], &["--log-level", "debug"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("serving /metrics"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_taken_or_malformed_metrics_addr_is_a_usage_error_at_start() {
    let s = Scratch::new();
    s.template("app.tmpl", "x\n").resource(
        "app.toml",
        "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\n",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    for (value, needle) in [
        (addr.as_str(), "cannot listen on --metrics-addr"),
        (
            "not-an-address",
            "invalid --metrics-addr \"not-an-address\"",
        ),
        ("127.0.0.1:99999", "not a port number"),
    ] {
        let output = s.run_env(&[], &["--metrics-addr", value]);
        assert_eq!(output.status.code(), Some(2), "{value}\n{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{value}\n{}",
            text(&output)
        );
        assert!(!s.out().join("app.conf").exists(), "nothing rendered");
    }
}
