//! Store clusters: `confd --watch` given every member of a real cluster keeps rendering when
//! the member it uses dies. The time each failover takes is measured by the failover bench
//! (`make bench`); here every change must arrive within a generous deadline.

mod e2e;

use std::time::{Duration, Instant};

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
