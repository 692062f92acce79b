//! `make bench`: how long a SIGHUP reload takes with 1,000 resources, from the signal to the
//! READY=1 that tells systemd the new configuration runs (read on a datagram socket standing in
//! for systemd's NOTIFY_SOCKET). The reload reads confd.toml, conf.d and all templates again,
//! checks everything, keeps the running etcd plugin, and renders every resource once (all files
//! are already in sync, so nothing is written). Both long-running modes, real etcd.
//!
//! `CONFD_BENCH_RELOADS=N` changes the number of reloads per mode.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use confd_test_support::EtcdServer;
use e2e::Confd;
use nix::sys::signal::Signal;

const RESOURCES: usize = 1000;
const RELOADS: usize = 20;

fn main() {
    let reloads: usize = std::env::var("CONFD_BENCH_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RELOADS);
    let Some(server) = EtcdServer::start() else {
        println!("reload: SKIPPED (etcd is not installed)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut kv = rt
        .block_on(etcd_client::Client::connect([server.endpoint()], None))
        .expect("connect etcd")
        .kv_client();
    // Ten services, a hundred files each (ten watch groups in watch mode).
    for g in 0..10 {
        rt.block_on(kv.put(format!("/svc{g}/name"), format!("service-{g}"), None))
            .expect("put");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let confdir = dir.path().join("confdir");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("mkdir");
    std::fs::create_dir_all(confdir.join("templates")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    std::fs::write(
        confdir.join("templates/svc.tmpl"),
        "name = {{getv \"/name\"}}\n",
    )
    .expect("template");
    for i in 0..RESOURCES {
        std::fs::write(
            confdir.join(format!("conf.d/r{i:04}.toml")),
            format!(
                "[template]\nsrc = \"svc.tmpl\"\ndest = \"{}\"\nprefix = \"/svc{}\"\nkeys = [\"/name\"]\n",
                dir.path().join(format!("out/r{i:04}.conf")).display(),
                i % 10
            ),
        )
        .expect("resource");
    }
    println!(
        "\nreload: SIGHUP -> READY=1, {RESOURCES} resources, etcd, {reloads} reloads per mode"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12}",
        "", "first READY", "min", "p50", "max"
    );
    for (label, mode) in [("interval", "--interval=600"), ("watch", "--watch")] {
        let (first, times) = measure(&server, dir.path(), &confdir, mode, reloads);
        println!(
            "{label:<12} {:>12} {:>12} {:>12} {:>12}",
            ms(first),
            ms(pct(&times, 0)),
            ms(pct(&times, 50)),
            ms(pct(&times, 100))
        );
    }
}

/// Starts confd in `mode`, then reloads it `reloads` times. Returns the time from spawn to the
/// first READY=1 and each reload's SIGHUP -> READY=1.
fn measure(
    server: &EtcdServer,
    dir: &Path,
    confdir: &Path,
    mode: &str,
    reloads: usize,
) -> (Duration, Vec<Duration>) {
    let socket = dir.join(format!("notify-{}.sock", mode.trim_start_matches('-')));
    let _ = std::fs::remove_file(&socket);
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut cmd = std::process::Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("NOTIFY_SOCKET", &socket)
        .arg(mode)
        .arg("--confdir")
        .arg(confdir)
        .args(["--backend", "etcd", "--node", &server.address()])
        .args(["--log-level", "warn"]);
    let spawned = Instant::now();
    let mut confd = Confd::spawn(cmd, dir.join(format!("stderr{mode}.log")));
    let ready = |confd: &Confd| {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no READY=1 ({e}):\n{}", confd.stderr()));
            let msg = String::from_utf8_lossy(&buf[..n]);
            if msg.lines().any(|l| l == "READY=1") {
                return Instant::now();
            }
        }
    };
    let first = ready(&confd) - spawned;
    let mut times = Vec::new();
    for _ in 0..reloads {
        let start = Instant::now();
        confd.signal(Signal::SIGHUP);
        times.push(ready(&confd) - start);
    }
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());
    (first, times)
}

fn pct(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v[((v.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
