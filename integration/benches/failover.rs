//! `make bench`: failover time of store clusters. confd `--watch` is given every member of a
//! 3-member etcd cluster on loopback; 20 times the member its plugin is connected to (found from
//! the plugin's TCP connections) is killed, a change is written through a surviving member, and
//! the change is awaited in the destination file. Printed, p50 and max: kill → the put returns
//! (the cluster's own recovery, a new leader when the victim led: the baseline), the put
//! returning → the file updated (what confd adds), and kill → file.
//!
//! Then Redis Sentinel: a primary, a replica and three sentinels; 20 times `SENTINEL FAILOVER`,
//! a change written on the new primary as soon as it takes writes, awaited in the file. Printed:
//! the failover command → the new primary taking writes (the sentinels' work, the baseline) and
//! the new primary taking writes → the file updated.
//!
//! Last ZooKeeper: a 3-server ensemble; 20 times the server holding the plugin's session is
//! killed, a change written through the others, awaited in the file (kill → file).
//!
//! `CONFD_BENCH_KILLS=N` changes the number of kills and failovers.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::time::{Duration, Instant};

use confd_test_support::{RedisSentinels, ZookeeperEnsemble};
use e2e::EtcdFailover;

const KILLS: usize = 20;

fn main() {
    let kills: usize = std::env::var("CONFD_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS);
    etcd(kills);
    redis_sentinel(kills);
    zookeeper(kills);
}

fn etcd(kills: usize) {
    let Some(mut run) = EtcdFailover::start() else {
        println!("failover: etcd SKIPPED (etcd is not installed)");
        return;
    };
    let (mut store, mut confd, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut moved = Vec::new();
    let ports = run.client_ports();
    for round in 0..kills {
        let victim = run.member_in_use();
        run.cluster.stop(victim);
        let killed = Instant::now();
        let elsewhere = e2e::reconnected_elsewhere(&mut run.confd, &ports, victim)
            .unwrap_or_else(|| panic!("kill {round}: never reconnected\n{}", run.confd.stderr()));
        moved.push(elsewhere - killed);
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
        ("kill -> plugin connected to another member", &moved),
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
        "etcd failover: {within} of {kills} changes in the file within 1 s of the put (target: all); kill -> another member p50 {} max {}; kill -> file p50 {} max {}",
        ms(pct(&moved, 50)),
        ms(pct(&moved, 100)),
        ms(pct(&total, 50)),
        ms(pct(&total, 100))
    );
}

fn redis_sentinel(failovers: usize) {
    let Some(group) = RedisSentinels::start() else {
        println!("failover: redis SKIPPED (redis-sentinel is not installed)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    redis_set(group.primary_port(), "start");
    let confd = e2e::one_key_confd(dir.path(), "redis", &["--node".to_string(), group.node()]);
    let dest = dir.path().join("fo.conf");
    assert!(
        e2e::wait_for_value(&dest, "start", Duration::from_secs(30)).is_some(),
        "initial render failed\n{}",
        confd.stderr()
    );
    let (mut sentinels, mut confd_times) = (Vec::new(), Vec::new());
    for round in 0..failovers {
        let asked = Instant::now();
        let primary = group.failover();
        let taking_writes = Instant::now();
        let value = format!("failover-{round}");
        redis_set(primary, &value);
        let seen = e2e::wait_for_value(&dest, &value, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("failover {round}: never rendered\n{}", confd.stderr()));
        sentinels.push(taking_writes - asked);
        confd_times.push(seen - taking_writes);
    }
    let within = confd_times
        .iter()
        .filter(|d| **d < Duration::from_secs(2))
        .count();
    println!("\nfailover, redis sentinel, primary + replica + 3 sentinels, {failovers} failovers");
    println!("{:<44} {:>10} {:>10}", "", "p50", "max");
    for (name, values) in [
        ("SENTINEL FAILOVER -> new primary writable", &sentinels),
        ("new primary writable -> confd file updated", &confd_times),
    ] {
        println!(
            "{name:<44} {:>10} {:>10}",
            ms(pct(values, 50)),
            ms(pct(values, 100))
        );
    }
    println!(
        "redis failover: {within} of {failovers} changes in the file within 2 s of the new primary taking writes (target: all); p50 {} max {}",
        ms(pct(&confd_times, 50)),
        ms(pct(&confd_times, 100))
    );
}

fn zookeeper(kills: usize) {
    let Some(mut ensemble) = ZookeeperEnsemble::start(3) else {
        println!("failover: zookeeper SKIPPED (zookeeper is not installed)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    e2e::zookeeper_set(&rt, &ensemble, "start");
    let mut args = Vec::new();
    for i in 0..ensemble.len() {
        args.extend(["--node".to_string(), ensemble.address(i)]);
    }
    let mut confd = e2e::one_key_confd(dir.path(), "zookeeper", &args);
    let dest = dir.path().join("fo.conf");
    assert!(
        e2e::wait_for_value(&dest, "start", Duration::from_secs(60)).is_some(),
        "initial render failed\n{}",
        confd.stderr()
    );
    let ports: Vec<u16> = (0..ensemble.len())
        .map(|i| ensemble.client_port(i))
        .collect();
    let (mut writes, mut total, mut moved) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..kills {
        let victim = e2e::server_in_use(&mut confd, &ports);
        ensemble.stop(victim);
        let killed = Instant::now();
        let elsewhere = e2e::reconnected_elsewhere(&mut confd, &ports, victim)
            .unwrap_or_else(|| panic!("kill {round}: never reconnected\n{}", confd.stderr()));
        moved.push(elsewhere - killed);
        let value = format!("kill-{round}");
        e2e::zookeeper_set(&rt, &ensemble, &value);
        let written = Instant::now();
        let seen = e2e::wait_for_value(&dest, &value, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("kill {round}: never rendered\n{}", confd.stderr()));
        writes.push(written - killed);
        total.push(seen - killed);
        ensemble.restart(victim);
    }
    let within = total
        .iter()
        .filter(|d| **d < Duration::from_secs(5))
        .count();
    println!("\nfailover, zookeeper, 3 servers, {kills} kills of the session's server");
    println!("{:<44} {:>10} {:>10}", "", "p50", "max");
    for (name, values) in [
        ("kill -> session on another server", &moved),
        ("kill -> write returned (new session)", &writes),
        ("kill -> confd dest file updated", &total),
    ] {
        println!(
            "{name:<44} {:>10} {:>10}",
            ms(pct(values, 50)),
            ms(pct(values, 100))
        );
    }
    println!(
        "zookeeper failover: {within} of {kills} changes in the file within the 5 s session timeout of the kill (target: all); p50 {} max {}",
        ms(pct(&total, 50)),
        ms(pct(&total, 100))
    );
}

/// `SET /fo/v value` on the redis server at `port`.
fn redis_set(port: u16, value: &str) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let mut conn = client.get_connection().expect("connect to redis");
    redis::cmd("SET")
        .arg("/fo/v")
        .arg(value)
        .exec(&mut conn)
        .expect("redis SET");
}

fn pct(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v[((v.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
