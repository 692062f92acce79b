//! `make bench`: failover time of store clusters. confd `--watch` is given every member of a
//! 3-member etcd cluster on loopback; 20 times the member its plugin is connected to (found from
//! the plugin's TCP connections) is killed, a change is written through a surviving member, and
//! the change is awaited in the destination file. Printed, p50 and max: kill → the put returns
//! (the cluster's own recovery, a new leader when the victim led: the baseline), the put
//! returning → the file updated (what confd adds), and kill → file.
//!
//! `CONFD_BENCH_KILLS=N` changes the number of kills.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::time::{Duration, Instant};

use e2e::EtcdFailover;

const KILLS: usize = 20;

fn main() {
    let kills: usize = std::env::var("CONFD_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS);
    let Some(mut run) = EtcdFailover::start() else {
        println!("failover: SKIPPED (etcd is not installed)");
        return;
    };
    let (mut store, mut confd, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..kills {
        let victim = run.member_in_use();
        run.cluster.stop(victim);
        let killed = Instant::now();
        let value = format!("kill-{round}");
        run.put(&value);
        let written = Instant::now();
        let seen = run
            .wait_for(&value, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("kill {round}: never rendered\n{}", run.confd.stderr()));
        store.push(written - killed);
        confd.push(seen.saturating_duration_since(written));
        total.push(seen - killed);
        run.cluster.restart(victim);
        // The plugin's background recheck (every second) returns the member to the pool.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let within = confd
        .iter()
        .filter(|d| **d < Duration::from_secs(1))
        .count();
    println!("\nfailover, etcd, 3 members, {kills} kills of the member in use");
    println!("{:<44} {:>10} {:>10}", "", "p50", "max");
    for (name, values) in [
        ("kill -> put returned (etcd's recovery)", &store),
        ("put returned -> confd dest file updated", &confd),
        ("kill -> confd dest file updated", &total),
    ] {
        println!(
            "{name:<44} {:>10} {:>10}",
            ms(pct(values, 50)),
            ms(pct(values, 100))
        );
    }
    println!(
        "etcd failover: {within} of {kills} changes in the file within 1 s of the put (target: all); kill -> file p50 {} max {}",
        ms(pct(&total, 50)),
        ms(pct(&total, 100))
    );
}

fn pct(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v[((v.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
