//! `make bench`: scale. 100,000 keys in a real etcd (100 prefixes x 1,000 keys), 1,000
//! resources (10 per prefix): start-up render time of `confd --watch`, peak memory of host and
//! plugin, and the number of watches confd opens in etcd (target: one per distinct prefix),
//! read from etcd's `etcd_debugging_mvcc_watcher_total` metric. Baseline: the time a single
//! client in this process takes to read all 100,000 keys with one range request.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::time::{Duration, Instant};

use e2e::Confd;
use etcd_client::GetOptions;
use nix::sys::signal::Signal;

const PREFIXES: usize = 100;
const KEYS_PER_PREFIX: usize = 1_000;
const RESOURCES_PER_PREFIX: usize = 10;

fn main() {
    let Some((server, rt, mut kv)) = e2e::bench_etcd("scale") else {
        return;
    };

    let load = Instant::now();
    let all: Vec<(String, String)> = (0..PREFIXES)
        .flat_map(|p| {
            (0..KEYS_PER_PREFIX)
                .map(move |k| (format!("/scale/p{p:03}/k{k:04}"), format!("v{p}-{k}")))
        })
        .collect();
    e2e::etcd_load(&rt, &mut kv, &all);
    println!(
        "loaded {} keys in {:.1} s",
        all.len(),
        load.elapsed().as_secs_f64()
    );

    let baseline_start = Instant::now();
    let resp = rt
        .block_on(kv.get("/scale/", Some(GetOptions::new().with_prefix())))
        .expect("range read");
    let baseline = baseline_start.elapsed();
    assert_eq!(resp.kvs().len(), all.len());

    let dir = tempfile::tempdir().expect("temp dir");
    let confdir = dir.path().join("confdir");
    let out = dir.path().join("out");
    for d in [
        confdir.join("conf.d"),
        confdir.join("templates"),
        out.clone(),
    ] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(
        confdir.join("templates/scale.tmpl"),
        "keys={{len (ls \"/\")}}\nfirst={{getv \"/k0000\"}}\nlast={{getv \"/k0999\"}}\n",
    )
    .expect("template");
    for p in 0..PREFIXES {
        for r in 0..RESOURCES_PER_PREFIX {
            std::fs::write(
                confdir.join(format!("conf.d/p{p:03}-r{r}.toml")),
                format!(
                    "[template]\nsrc = \"scale.tmpl\"\ndest = \"{}/p{p:03}-r{r}.conf\"\nprefix = \"/scale/p{p:03}\"\nkeys = [\"/\"]\n",
                    out.display()
                ),
            )
            .expect("resource");
        }
    }
    let resources = PREFIXES * RESOURCES_PER_PREFIX;
    let watchers_before = e2e::etcd_watchers(&server);

    let mut cmd = std::process::Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("--watch")
        .arg("--confdir")
        .arg(&confdir)
        .args([
            "--backend",
            "etcd",
            "--node",
            &server.address(),
            "--log-level",
            "warn",
        ]);
    let start = Instant::now();
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let rendered = e2e::wait_for(Duration::from_secs(120), || {
        std::fs::read_dir(&out).is_ok_and(|d| d.count() == resources)
    });
    let startup = start.elapsed();
    assert!(
        rendered,
        "not all {resources} rendered:\n{}",
        confd.stderr()
    );
    let sample = std::fs::read_to_string(out.join("p042-r3.conf")).expect("sample output");
    assert_eq!(sample, "keys=1000\nfirst=v42-0\nlast=v42-999\n");

    // Let every watch be established before counting.
    std::thread::sleep(Duration::from_secs(2));
    let watchers = e2e::etcd_watchers(&server)
        .zip(watchers_before)
        .map(|(a, b)| a - b);
    let plugin = confd.plugin_pids().first().copied();
    let host_kib = e2e::vm_hwm_kib(confd.pid()).unwrap_or(0);
    let plugin_kib = plugin.and_then(e2e::vm_hwm_kib).unwrap_or(0);

    // One change still arrives at all ten resources of its prefix.
    rt.block_on(kv.put("/scale/p007/k0000", "changed", None))
        .expect("put");
    let changed = Instant::now();
    let followed = e2e::wait_for(Duration::from_secs(20), || {
        (0..RESOURCES_PER_PREFIX).all(|r| {
            std::fs::read_to_string(out.join(format!("p007-r{r}.conf")))
                .is_ok_and(|c| c.contains("first=changed"))
        })
    });
    let change_latency = changed.elapsed();
    assert!(followed, "change not rendered:\n{}", confd.stderr());

    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());

    println!(
        "\nscale: {} keys in etcd, {resources} resources over {PREFIXES} prefixes (confd --watch, builtin etcd)",
        all.len()
    );
    println!(
        "start-up render (spawn -> {resources} files)  {:>9.1} ms  ({:.1}x one client range-reading all keys: {:.1} ms)",
        startup.as_secs_f64() * 1000.0,
        startup.as_secs_f64() / baseline.as_secs_f64(),
        baseline.as_secs_f64() * 1000.0
    );
    println!(
        "peak RSS host / plugin / total          {:.1} MB / {:.1} MB / {:.1} MB",
        host_kib as f64 / 1024.0,
        plugin_kib as f64 / 1024.0,
        (host_kib + plugin_kib) as f64 / 1024.0
    );
    match watchers {
        Some(n) => println!(
            "open etcd watchers                        {n} (target {PREFIXES}: one per distinct prefix){}",
            if n as usize == PREFIXES {
                ""
            } else {
                "  MISSES TARGET"
            }
        ),
        None => println!(
            "open etcd watchers                        unknown (no etcd_debugging_mvcc_watcher_total metric)"
        ),
    }
    println!(
        "one change -> all {RESOURCES_PER_PREFIX} resources of its prefix     {:.1} ms",
        change_latency.as_secs_f64() * 1000.0
    );
}
