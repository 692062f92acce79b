//! `make bench`: how long a supervised plugin is gone after a SIGKILL. For each of 50 kills of
//! the builtin env plugin, the time from the kill until a `GetValues` succeeds again (a new
//! process spawned, handshake, connect, `Configure` with the last settings, the call). The
//! baseline, measured in the same run, is a plain cold start of the same plugin to its first
//! answer: a restart cannot be faster than that, and should not be much slower.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confd_sdk::Database;
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const KILLS: usize = 50;

/// The confd binary, built (by the support crate) before anything is timed.
fn confd() -> &'static Path {
    static CONFD: OnceLock<PathBuf> = OnceLock::new();
    CONFD.get_or_init(|| confd_test_support::workspace_bin("confd", "confd"))
}

fn env_plugin() -> PluginCommand {
    PluginCommand::new("env", confd())
        .arg("internal-plugin")
        .arg("database")
        .arg("env")
        .env("BENCH_KEY", "value")
}

fn keys() -> Vec<String> {
    vec!["/bench/key".to_string()]
}

fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn cold_starts() -> Vec<Duration> {
    let mut times = Vec::with_capacity(KILLS);
    for _ in 0..KILLS {
        let started = Instant::now();
        let client = PluginClient::start(env_plugin(), ClientOptions::default())
            .await
            .expect("start the env plugin");
        client
            .configure(Default::default())
            .await
            .expect("configure");
        client.get_values(&keys()).await.expect("first call");
        times.push(started.elapsed());
        client.shutdown().await;
    }
    times
}

async fn restarts() -> Vec<Duration> {
    let client = PluginClient::start(env_plugin(), ClientOptions::supervised())
        .await
        .expect("start the env plugin");
    client
        .configure(Default::default())
        .await
        .expect("configure");
    let mut times = Vec::with_capacity(KILLS);
    for _ in 0..KILLS {
        let values = client.get_values(&keys()).await.expect("plugin answers");
        assert_eq!(values.get("/bench/key").map(String::as_str), Some("value"));
        let pid = client.pid().expect("running");
        let killed = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the plugin");
        // The first call may still reach the dying process; the supervisor is measured by when
        // a call succeeds again.
        loop {
            if client.get_values(&keys()).await.is_ok() {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "the plugin never came back"
            );
        }
        times.push(killed.elapsed());
        assert_ne!(client.pid(), Some(pid));
    }
    client.shutdown().await;
    times
}

fn main() {
    confd();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (cold_p50, cold_max) = summary(rt.block_on(cold_starts()));
    let (p50, max) = summary(rt.block_on(restarts()));
    println!("plugin restart, {KILLS} SIGKILLs of the builtin env plugin:");
    println!(
        "  baseline cold start to first answer: p50 {:.1} ms, max {:.1} ms",
        ms(cold_p50),
        ms(cold_max)
    );
    println!(
        "restart: SIGKILL -> next successful call: p50 {:.1} ms, max {:.1} ms ({:.2}x a cold start; target p50 < 50 ms: {})",
        ms(p50),
        ms(max),
        p50.as_secs_f64() / cold_p50.as_secs_f64(),
        if p50 < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}
