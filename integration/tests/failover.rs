//! Store clusters: `confd --watch` given every member of a real cluster keeps rendering when
//! the member it uses dies. The time each failover takes is measured by the failover bench
//! (`make bench`); here every change must arrive within a generous deadline.

mod e2e;

use std::time::{Duration, Instant};

use confd_test_support::{RedisSentinels, ZookeeperEnsemble, free_port, http_get};
use e2e::EtcdFailover;

/// Far above the failover itself (well under a second): a loaded machine must stay green.
const DEADLINE: Duration = Duration::from_secs(30);

/// Kills the member the plugin is connected to (found from its TCP connections), writes through
/// a surviving member, and waits for the file; then brings the member back and repeats, so each
/// round kills another member and members that came back are used again.
#[test]
fn etcd_killing_the_member_in_use_loses_no_change() {
    let Some(mut run) = EtcdFailover::start() else {
        return;
    };
    let mut in_use = Vec::new();
    for round in 0..4 {
        let victim = run.member_in_use();
        in_use.push(victim);
        run.cluster.stop(victim);
        let killed = Instant::now();
        let value = format!("round-{round}");
        run.put(&value);
        let written = killed.elapsed();
        let seen = run.wait_for(&value, DEADLINE);
        assert!(
            seen.is_some(),
            "round {round}: no render within {DEADLINE:?} of killing member {victim}\nstderr:\n{}",
            run.confd.stderr()
        );
        println!(
            "MEASURED etcd failover round {round}: member {victim} killed, the put took {written:?}, change in the file after {:?}",
            killed.elapsed()
        );
        run.cluster.restart(victim);
        // The background recheck (every second) returns it to the pool.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let mut distinct = in_use.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "the plugin must move to another member: in use per round {in_use:?}"
    );
    let stderr = run.confd.stderr();
    assert!(
        stderr.contains("etcd: member") && stderr.contains("failed"),
        "the failover is logged:\n{stderr}"
    );
    assert!(run.confd.try_wait().is_none(), "confd keeps running");
}

/// `SET key value` on the redis server at `port`.
/// The member in use as `/metrics` shows it after a readiness check: the `member` label of the
/// `confd_backend_member` series that is 1 (only one may be).
fn member_in_metrics(port: u16) -> Option<String> {
    http_get(port, "/ready")?;
    let (code, text) = http_get(port, "/metrics")?;
    assert_eq!(code, 200, "{text}");
    let in_use: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("confd_backend_member{") && l.ends_with(" 1"))
        .filter_map(|l| {
            l.split("member=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(in_use.len() <= 1, "several members in use: {text}");
    in_use.into_iter().next()
}

/// `confd_backend_member` names the member the plugin is connected to, and another one once
/// that member is killed.
#[test]
fn etcd_member_in_use_is_in_the_metrics() {
    let port = free_port();
    let args = ["--metrics-addr".to_string(), format!("127.0.0.1:{port}")];
    let Some(mut run) = EtcdFailover::start_with(&args) else {
        return;
    };
    let victim = run.member_in_use();
    let shown = member_in_metrics(port);
    assert_eq!(
        shown.as_deref(),
        Some(run.cluster.endpoint(victim).as_str()),
        "stderr:\n{}",
        run.confd.stderr()
    );
    run.cluster.stop(victim);
    run.put("after");
    assert!(
        run.wait_for("after", DEADLINE).is_some(),
        "no render after the kill\nstderr:\n{}",
        run.confd.stderr()
    );
    let now = member_in_metrics(port).unwrap_or_default();
    assert_ne!(now, run.cluster.endpoint(victim));
    assert!(
        run.cluster.endpoints().contains(&now),
        "{now:?} is not a member\nstderr:\n{}",
        run.confd.stderr()
    );
}

fn redis_set(port: u16, key: &str, value: &str) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let mut conn = client.get_connection().expect("connect to redis");
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .exec(&mut conn)
        .expect("redis SET");
}

/// confd given `--node sentinel://s1,s2,s3/name` renders from the primary; after `SENTINEL
/// FAILOVER` the next change, written on the new primary, reaches the file; twice, so the second
/// failover moves back to the first server.
#[test]
fn redis_sentinel_failover_loses_no_change() {
    let Some(group) = RedisSentinels::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    redis_set(group.primary_port(), "/fo/v", "start");
    let mut confd = e2e::one_key_confd(dir.path(), "redis", &["--node".to_string(), group.node()]);
    let dest = dir.path().join("fo.conf");
    assert!(
        e2e::wait_for_value(&dest, "start", DEADLINE).is_some(),
        "initial render failed\nstderr:\n{}",
        confd.stderr()
    );
    for round in 0..2 {
        let primary = group.failover();
        let taking_writes = Instant::now();
        let value = format!("after-failover-{round}");
        redis_set(primary, "/fo/v", &value);
        let seen = e2e::wait_for_value(&dest, &value, DEADLINE);
        assert!(
            seen.is_some(),
            "round {round}: no render within {DEADLINE:?} of the failover to {primary}\nstderr:\n{}\n{}",
            confd.stderr(),
            group.logs()
        );
        println!(
            "MEASURED redis sentinel failover {round}: change in the file {:?} after the new primary took writes",
            taking_writes.elapsed()
        );
    }
    assert!(confd.try_wait().is_none(), "confd keeps running");
}

/// confd given every server of a 3-server ensemble: the server holding the plugin's session
/// (found from its connections) is killed, the session moves to another server, the watch is
/// set again and the change written meanwhile reaches the file; then that server comes back and
/// the next one in use is killed.
#[test]
fn zookeeper_killing_the_server_of_the_session_loses_no_change() {
    let Some(mut ensemble) = ZookeeperEnsemble::start(3) else {
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
        e2e::wait_for_value(&dest, "start", DEADLINE).is_some(),
        "initial render failed\nstderr:\n{}",
        confd.stderr()
    );
    let ports: Vec<u16> = (0..ensemble.len())
        .map(|i| ensemble.client_port(i))
        .collect();
    let mut in_use = Vec::new();
    for round in 0..2 {
        let victim = e2e::server_in_use(&mut confd, &ports);
        in_use.push(victim);
        ensemble.stop(victim);
        let killed = Instant::now();
        let value = format!("round-{round}");
        e2e::zookeeper_set(&rt, &ensemble, &value);
        let seen = e2e::wait_for_value(&dest, &value, DEADLINE);
        assert!(
            seen.is_some(),
            "round {round}: no render within {DEADLINE:?} of killing server {victim}\nstderr:\n{}",
            confd.stderr()
        );
        println!(
            "MEASURED zookeeper failover round {round}: server {victim} killed, change in the file after {:?}",
            killed.elapsed()
        );
        ensemble.restart(victim);
    }
    assert_ne!(in_use[0], in_use[1], "the session moved to another server");
    assert!(confd.try_wait().is_none(), "confd keeps running");
}
