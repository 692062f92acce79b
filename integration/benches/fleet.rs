//! `make bench`: a fleet on one store. 100 confd processes in watch mode on one etcd, each with
//! 10 resources over the same 10 prefixes: the time from a put until all 100 files of its
//! prefix are rewritten (p50/p99/max over every file of every put), the watchers the fleet
//! opens in etcd (read from its `etcd_debugging_mvcc_watcher_total` metric) and etcd's CPU time
//! during a burst of 1,000 puts. With `CONFD_GO` (a binary of the original Go confd) the same
//! fleet of it follows. `CONFD_BENCH_FLEET` sets the fleet size for a quick try.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use confd_test_support::EtcdServer;
use e2e::Confd;
use nix::sys::signal::Signal;

const PREFIXES: usize = 10;
const PUTS: usize = 30;
const BURST: usize = 1_000;

fn main() {
    let fleet: usize = std::env::var("CONFD_BENCH_FLEET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Some((server, rt, mut kv)) = e2e::bench_etcd("fleet") else {
        return;
    };
    for p in 0..PREFIXES {
        for k in ["k", "other"] {
            rt.block_on(kv.put(format!("/fleet/p{p}/{k}"), "initial", None))
                .expect("put");
        }
    }
    // `CONFD_BENCH_CONFD` measures a given binary instead of this build (as in oneshot).
    let this =
        std::env::var_os("CONFD_BENCH_CONFD").map_or_else(e2e::isolated_confd, PathBuf::from);
    let mut builds: Vec<(&str, PathBuf)> = vec![("this", this)];
    if let Some(go) = std::env::var_os("CONFD_GO") {
        builds.push(("go", PathBuf::from(go)));
    }
    let mut lines = Vec::new();
    for (build, confd) in &builds {
        let dir = tempfile::tempdir().expect("temp dir");
        let before = e2e::etcd_watchers(&server);
        let mut procs: Vec<Confd> = (0..fleet)
            .map(|i| {
                let confdir = write_instance(dir.path(), i);
                Confd::spawn(
                    command(confd, build, &confdir, &server),
                    dir.path().join(format!("{i}.log")),
                )
            })
            .collect();
        let outs: Vec<PathBuf> = (0..fleet)
            .map(|i| dir.path().join(format!("{i}/out")))
            .collect();
        let started = e2e::wait_for(Duration::from_secs(120), || {
            outs.iter()
                .all(|o| std::fs::read_dir(o).is_ok_and(|d| d.count() == PREFIXES))
        });
        assert!(
            started,
            "{build}: the fleet did not start:\n{}",
            procs[0].stderr()
        );
        // Every watch established before counting and measuring.
        std::thread::sleep(Duration::from_secs(3));
        let watchers = e2e::etcd_watchers(&server).zip(before).map(|(a, b)| a - b);

        let mut latencies: Vec<Duration> = Vec::new();
        for t in 0..PUTS {
            let p = t % PREFIXES;
            let value = format!("{build}-{t}");
            let want = format!("k={value}\n");
            let files: Vec<PathBuf> = outs.iter().map(|o| o.join(format!("r{p}.conf"))).collect();
            let mut pending: Vec<usize> = (0..fleet).collect();
            rt.block_on(kv.put(format!("/fleet/p{p}/k"), value.as_str(), None))
                .expect("put");
            let put = Instant::now();
            // Polled every millisecond: the latencies are counted in milliseconds.
            while !pending.is_empty() && put.elapsed() < Duration::from_secs(30) {
                pending.retain(|&i| {
                    let arrived = std::fs::read_to_string(&files[i]).is_ok_and(|c| c == want);
                    if arrived {
                        latencies.push(put.elapsed());
                    }
                    !arrived
                });
                std::thread::sleep(Duration::from_millis(1));
            }
            let done = pending.is_empty();
            assert!(done, "{build}: put {t} missed {} files", pending.len());
            // Let the fleet settle between puts.
            std::thread::sleep(Duration::from_millis(100));
        }
        latencies.sort();
        let q = |f: f64| latencies[((latencies.len() as f64 - 1.0) * f).round() as usize];

        // A burst: etcd's CPU time while it takes the puts and feeds every watcher.
        let etcd = server.pid().expect("etcd pid");
        let cpu_before = e2e::cpu_ticks(etcd).expect("etcd cpu");
        let burst = Instant::now();
        for n in 0..BURST {
            rt.block_on(kv.put(
                format!("/fleet/p{}/k", n % PREFIXES),
                format!("{build}-burst-{n}"),
                None,
            ))
            .expect("burst put");
        }
        let settled = e2e::wait_for(Duration::from_secs(120), || {
            (0..PREFIXES).all(|p| {
                let n = BURST - PREFIXES + p;
                let want = format!("k={build}-burst-{n}\n");
                outs.iter().all(|o| {
                    std::fs::read_to_string(o.join(format!("r{p}.conf"))).is_ok_and(|c| c == want)
                })
            })
        });
        let burst_wall = burst.elapsed();
        let cpu = e2e::cpu_ticks(etcd).expect("etcd cpu") - cpu_before;
        assert!(settled, "{build}: the fleet did not settle after the burst");
        let tick = ticks_per_second();

        for p in &mut procs {
            p.signal(Signal::SIGTERM);
        }
        for p in &mut procs {
            let _ = p.wait_timeout(Duration::from_secs(20));
        }
        lines.push(format!(
            "{build:>4}: put -> all {fleet} files  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(q(0.5)),
            ms(q(0.99)),
            ms(*latencies.last().expect("latencies"))
        ));
        lines.push(format!(
            "{build:>4}: etcd watchers opened {}  (one per prefix per instance: {})",
            watchers.map_or("unknown".to_string(), |n| n.to_string()),
            fleet * PREFIXES
        ));
        lines.push(format!(
            "{build:>4}: burst of {BURST} puts -> fleet settled in {:.0} ms, etcd CPU {:.2} s",
            ms(burst_wall),
            cpu as f64 / tick
        ));
    }
    if builds.len() == 1 {
        lines.push("(no Go confd column: set CONFD_GO to a build of the original confd)".into());
    }
    println!(
        "\nfleet: {fleet} confd --watch on one etcd, {PREFIXES} resources each over {PREFIXES} shared prefixes (target: p99 < 50 ms)"
    );
    for l in lines {
        println!("{l}");
    }
}

/// The confdir of instance `i`: one resource per prefix, into `<i>/out`.
fn write_instance(root: &Path, i: usize) -> PathBuf {
    let confdir = root.join(format!("{i}/confdir"));
    let out = root.join(format!("{i}/out"));
    for d in [
        confdir.join("conf.d"),
        confdir.join("templates"),
        out.clone(),
    ] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(confdir.join("templates/f.tmpl"), "k={{getv \"/k\"}}\n").expect("template");
    for p in 0..PREFIXES {
        std::fs::write(
            confdir.join(format!("conf.d/r{p}.toml")),
            format!(
                "[template]\nsrc = \"f.tmpl\"\ndest = \"{}/r{p}.conf\"\nprefix = \"/fleet/p{p}\"\nkeys = [\"/\"]\n",
                out.display()
            ),
        )
        .expect("resource");
    }
    confdir
}

fn command(confd: &Path, build: &str, confdir: &Path, server: &EtcdServer) -> Command {
    let mut cmd = Command::new(confd);
    let (backend, node) = if build == "go" {
        ("etcdv3", server.endpoint())
    } else {
        ("etcd", server.address())
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("--watch")
        .arg("--confdir")
        .arg(confdir)
        .args([
            "--backend",
            backend,
            "--node",
            &node,
            "--log-level",
            "error",
        ]);
    cmd
}

/// `/proc/<pid>/stat` counts CPU time in USER_HZ, which Linux fixes at 100 for user space.
fn ticks_per_second() -> f64 {
    100.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
