//! `make bench`: big stores on etcd. 100,000 keys / 1,000 resources one-shot (the prefixes
//! p000-p099), then 1,000,000 keys over 1,000 prefixes and 10,000 resources (10 per prefix):
//! one-shot and `--watch` start-up (wall time, peak PSS of host and plugin together), and one
//! change in watch mode until the 10 resources of its prefix are rewritten. With `CONFD_GO`
//! (a binary of the original Go confd) each figure gets its column. `CONFD_BENCH_SCALE`
//! (e.g. `0.01`) shrinks the prefix counts for a quick try.

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confd_test_support::EtcdServer;
use e2e::{Confd, PssPeak};
use nix::sys::signal::Signal;

const KEYS_PER_PREFIX: usize = 1_000;
const RESOURCES_PER_PREFIX: usize = 10;
const TEMPLATE: &str =
    "keys={{len (ls \"/\")}}\nfirst={{getv \"/k0000\"}}\nlast={{getv \"/k0999\"}}\n";

fn main() {
    let scale: f64 = std::env::var("CONFD_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let small = ((100.0 * scale).round() as usize).max(1);
    let big = ((1_000.0 * scale).round() as usize).max(2);
    let Some((server, rt, mut kv)) = e2e::bench_etcd("million") else {
        return;
    };
    let load = Instant::now();
    for p in 0..big {
        let pairs: Vec<(String, String)> = (0..KEYS_PER_PREFIX)
            .map(|k| (format!("/m/p{p:04}/k{k:04}"), format!("v{p}-{k}")))
            .collect();
        e2e::etcd_load(&rt, &mut kv, &pairs);
    }
    println!(
        "loaded {} keys in {:.1} s",
        big * KEYS_PER_PREFIX,
        load.elapsed().as_secs_f64()
    );
    let go = std::env::var_os("CONFD_GO").map(PathBuf::from);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lines = Vec::new();

    for (label, prefixes) in [("100k", small), ("1M", big)] {
        let keys = prefixes * KEYS_PER_PREFIX;
        let resources = prefixes * RESOURCES_PER_PREFIX;
        // `CONFD_BENCH_CONFD` measures a given binary instead of this build (as in oneshot).
        let this =
            std::env::var_os("CONFD_BENCH_CONFD").map_or_else(e2e::isolated_confd, PathBuf::from);
        let mut builds: Vec<(&str, PathBuf)> = vec![("this", this)];
        if let Some(go) = &go {
            builds.push(("go", go.clone()));
        }
        for (build, confd) in &builds {
            let root = dir.path().join(format!("{label}-{build}"));
            let (confdir, out) = write_confdir(&root, prefixes);
            let (wall, pss) = oneshot(confd, build, &confdir, &server, &out, resources);
            lines.push(format!(
                "{label:>4} one-shot  {build:>4}: {keys} keys, {resources} resources  wall {:>8.0} ms  peak PSS host+plugin {:>6.1} MiB (host {:.1} + plugin {:.1})",
                wall.as_secs_f64() * 1000.0,
                mib(pss.total()),
                mib(pss.host),
                mib(pss.plugins)
            ));
            println!("{}", lines.last().expect("line"));
            if label == "1M" {
                std::fs::remove_dir_all(&out).expect("clear out");
                std::fs::create_dir_all(&out).expect("mkdir out");
                let (startup, pss, change) = watch(
                    confd, build, &confdir, &server, &out, resources, &mut kv, &rt,
                );
                lines.push(format!(
                    "{label:>4} watch     {build:>4}: start-up {:>8.0} ms  peak PSS host+plugin {:>6.1} MiB (host {:.1} + plugin {:.1})  one change -> its {RESOURCES_PER_PREFIX} files {:.1} ms",
                    startup.as_secs_f64() * 1000.0,
                    mib(pss.total()),
                    mib(pss.host),
                    mib(pss.plugins),
                    change.as_secs_f64() * 1000.0
                ));
                println!("{}", lines.last().expect("line"));
            }
            std::fs::remove_dir_all(&root).expect("clean up");
        }
    }
    if go.is_none() {
        lines.push("(no Go confd column: set CONFD_GO to a build of the original confd)".into());
    }
    println!(
        "\nmillion: big stores on etcd (targets: 100k one-shot <= 800 ms and <= 40 MiB; 1M one-shot <= 10 s and <= 250 MiB)"
    );
    for l in lines {
        println!("{l}");
    }
}

/// `conf.d` with `RESOURCES_PER_PREFIX` resources per prefix, and their (empty) out directory.
fn write_confdir(root: &Path, prefixes: usize) -> (PathBuf, PathBuf) {
    let confdir = root.join("confdir");
    let out = root.join("out");
    for d in [
        confdir.join("conf.d"),
        confdir.join("templates"),
        out.clone(),
    ] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(confdir.join("templates/m.tmpl"), TEMPLATE).expect("template");
    for p in 0..prefixes {
        for r in 0..RESOURCES_PER_PREFIX {
            std::fs::write(
                confdir.join(format!("conf.d/p{p:04}-r{r}.toml")),
                format!(
                    "[template]\nsrc = \"m.tmpl\"\ndest = \"{}/p{p:04}-r{r}.conf\"\nprefix = \"/m/p{p:04}\"\nkeys = [\"/\"]\n",
                    out.display()
                ),
            )
            .expect("resource");
        }
    }
    (confdir, out)
}

fn command(confd: &Path, build: &str, confdir: &Path, server: &EtcdServer, mode: &str) -> Command {
    let mut cmd = Command::new(confd);
    // The original names its etcd v3 backend `etcdv3` and wants a URL.
    let (backend, node) = if build == "go" {
        ("etcdv3", server.endpoint())
    } else {
        ("etcd", server.address())
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg(mode)
        .arg("--confdir")
        .arg(confdir)
        .args([
            "--backend",
            backend,
            "--node",
            &node,
            "--log-level",
            "error",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn oneshot(
    confd: &Path,
    build: &str,
    confdir: &Path,
    server: &EtcdServer,
    out: &Path,
    resources: usize,
) -> (Duration, PssPeak) {
    let start = Instant::now();
    let mut child = command(confd, build, confdir, server, "--onetime")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn confd");
    let mut pss = PssPeak::default();
    let status = loop {
        pss.sample(child.id());
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    assert!(status.success(), "{build} one-shot failed: {status}");
    let count = std::fs::read_dir(out).expect("out").count();
    assert_eq!(count, resources, "{build}: files written");
    (wall, pss)
}

#[allow(clippy::too_many_arguments)]
fn watch(
    confd: &Path,
    build: &str,
    confdir: &Path,
    server: &EtcdServer,
    out: &Path,
    resources: usize,
    kv: &mut etcd_client::KvClient,
    rt: &tokio::runtime::Runtime,
) -> (Duration, PssPeak, Duration) {
    let stderr = out
        .parent()
        .expect("root")
        .join(format!("{build}-watch.log"));
    let start = Instant::now();
    let mut confd = Confd::spawn(command(confd, build, confdir, server, "--watch"), stderr);
    let mut pss = PssPeak::default();
    let rendered = e2e::wait_for(Duration::from_secs(600), || {
        pss.sample(confd.pid());
        std::fs::read_dir(out).is_ok_and(|d| d.count() >= resources)
    });
    let startup = start.elapsed();
    assert!(
        rendered,
        "{build}: not all {resources} rendered:\n{}",
        confd.stderr()
    );
    // Watches established before the change.
    std::thread::sleep(Duration::from_secs(2));
    rt.block_on(kv.put("/m/p0001/k0000", format!("changed-{build}"), None))
        .expect("put");
    let changed = Instant::now();
    let followed = e2e::wait_for(Duration::from_secs(60), || {
        (0..RESOURCES_PER_PREFIX).all(|r| {
            std::fs::read_to_string(out.join(format!("p0001-r{r}.conf")))
                .is_ok_and(|c| c.contains(&format!("first=changed-{build}")))
        })
    });
    let change = changed.elapsed();
    assert!(
        followed,
        "{build}: change not rendered:\n{}",
        confd.stderr()
    );
    confd.signal(Signal::SIGTERM);
    let _ = confd.wait_timeout(Duration::from_secs(20));
    (startup, pss, change)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
