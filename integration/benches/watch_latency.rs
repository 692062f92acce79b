//! `make bench`: watch latency against a real etcd. For each of 200 changes: the put's own round
//! trip, the time from the put returning until a plain etcd watcher in this process sees the
//! event (the store's notification latency, the baseline), and until confd's destination file
//! holds the new value. confd's added latency is the file time minus the watcher time.
//!
//! Two runs side by side: default settings (`--debounce 100ms`, whose leading edge renders the
//! first change after a quiet period at once; the changes are spaced past the window) and
//! `--debounce 0`.
//!
//! `CONFD_BENCH_CHANGES=N` changes the number of changes; `CONFD_BENCH_CONFD=/path/to/confd`
//! measures that binary instead of the workspace's (to compare saved builds run after run on the
//! same quiet machine).

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use confd_test_support::EtcdServer;
use e2e::Confd;
use nix::sys::signal::Signal;

const CHANGES: usize = 200;

fn main() {
    let changes: usize = std::env::var("CONFD_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CHANGES);
    let Some(server) = EtcdServer::start() else {
        println!("watch latency: SKIPPED (etcd is not installed)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let confdir = dir.path().join("confdir");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("mkdir");
    std::fs::create_dir_all(confdir.join("templates")).expect("mkdir");
    std::fs::write(confdir.join("templates/lat.tmpl"), "v={{getv \"/v\"}}\n").expect("template");
    let dest = dir.path().join("lat.conf");
    std::fs::write(
        confdir.join("conf.d/lat.toml"),
        format!(
            "[template]\nsrc = \"lat.tmpl\"\ndest = \"{}\"\nprefix = \"/lat\"\nkeys = [\"/v\"]\n",
            dest.display()
        ),
    )
    .expect("resource");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt
        .block_on(etcd_client::Client::connect([server.endpoint()], None))
        .expect("connect etcd");
    let mut kv = client.kv_client();
    rt.block_on(kv.put("/lat/v", "start", None)).expect("put");

    // The baseline watcher: every event's arrival time, in order.
    let (tx, rx) = mpsc::channel::<Instant>();
    let mut watch = client.watch_client();
    rt.spawn(async move {
        let mut stream = watch
            .watch("/lat/v", None)
            .await
            .expect("start the baseline watch");
        while let Ok(Some(resp)) = stream.message().await {
            for _ in resp.events() {
                let _ = tx.send(Instant::now());
            }
        }
    });

    let binary = std::env::var_os("CONFD_BENCH_CONFD")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(e2e::isolated_confd);
    let runs = [
        ("default settings", Vec::new(), Duration::from_millis(150)),
        (
            "--debounce 0",
            vec!["--debounce".to_string(), "0".to_string()],
            Duration::from_millis(5),
        ),
    ];
    let mut summary = Vec::new();
    for (label, args, spacing) in runs {
        let run = Bench {
            server: &server,
            rt: &rt,
            kv: &mut kv,
            rx: &rx,
            dir: dir.path(),
            confdir: &confdir,
            dest: &dest,
            binary: &binary,
        };
        summary.push((label, run.measure(label, &args, spacing, changes)));
    }
    println!();
    println!("watch latency: confd added (file - plain watcher), {changes} changes each");
    for (label, (p50, p99)) in &summary {
        println!(
            "{label:<20} p50 {} (target < 1 ms), p99 {} (target < 3 ms)",
            ms(*p50),
            ms(*p99)
        );
    }
    println!(
        "ratios: default p50 / --debounce 0 p50 = {:.2}x",
        summary[0].1.0.as_secs_f64() / summary[1].1.0.as_secs_f64().max(1e-9)
    );
}

struct Bench<'a> {
    server: &'a EtcdServer,
    rt: &'a tokio::runtime::Runtime,
    kv: &'a mut etcd_client::KvClient,
    rx: &'a mpsc::Receiver<Instant>,
    dir: &'a Path,
    confdir: &'a Path,
    dest: &'a Path,
    binary: &'a Path,
}

impl Bench<'_> {
    /// One confd run with `args`; changes `spacing` apart. Returns confd's added p50 and p99.
    fn measure(
        self,
        label: &str,
        args: &[String],
        spacing: Duration,
        changes: usize,
    ) -> (Duration, Duration) {
        let Bench {
            server,
            rt,
            kv,
            rx,
            dir,
            confdir,
            dest,
            binary,
        } = self;
        rt.block_on(kv.put("/lat/v", "start", None)).expect("put");
        let mut cmd = std::process::Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("--watch")
            .arg("--confdir")
            .arg(confdir)
            .args(["--backend", "etcd", "--node", &server.address()])
            .args(args)
            .args(["--log-level", "warn"]);
        let mut confd = Confd::spawn(cmd, dir.join("stderr.log"));
        assert!(
            e2e::wait_for(Duration::from_secs(20), || file_is(dest, "start")),
            "initial render missing:\n{}",
            confd.stderr()
        );

        let (mut put_rtt, mut watcher, mut file) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..changes {
            let value = format!("{label}-{i}");
            while rx.try_recv().is_ok() {}
            let start = Instant::now();
            rt.block_on(kv.put("/lat/v", value.as_str(), None))
                .expect("put");
            let returned = Instant::now();
            let seen = poll_file(dest, &value, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("change {i} never rendered:\n{}", confd.stderr()));
            let event = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the baseline watcher saw the put");
            put_rtt.push(returned - start);
            watcher.push(event.saturating_duration_since(returned));
            file.push(seen - returned);
            // Let both watchers settle so changes do not overlap.
            std::thread::sleep(spacing);
        }
        let added: Vec<Duration> = file
            .iter()
            .zip(&watcher)
            .map(|(f, w)| f.saturating_sub(*w))
            .collect();

        println!(
            "\nwatch latency, etcd, {changes} changes {} apart, {label}, dest polled every 50 us ({})",
            humantime_ms(spacing),
            binary.display()
        );
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9}",
            "", "min", "p50", "p90", "p99"
        );
        for (name, values) in [
            ("put round trip (baseline)", &put_rtt),
            ("put returned -> plain etcd watcher event", &watcher),
            ("put returned -> confd dest file updated", &file),
            ("confd added (file - watcher), per change", &added),
        ] {
            println!(
                "{:<44} {:>9} {:>9} {:>9} {:>9}",
                name,
                ms(pct(values, 0)),
                ms(pct(values, 50)),
                ms(pct(values, 90)),
                ms(pct(values, 99))
            );
        }
        println!(
            "ratios: file p50 / put p50 = {:.2}x; confd added p50 {} (target < 1 ms), p99 {} (target < 3 ms)",
            pct(&file, 50).as_secs_f64() / pct(&put_rtt, 50).as_secs_f64(),
            ms(pct(&added, 50)),
            ms(pct(&added, 99))
        );
        confd.signal(Signal::SIGTERM);
        let status = confd.wait_timeout(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());
        (pct(&added, 50), pct(&added, 99))
    }
}

fn humantime_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn file_is(path: &Path, value: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|c| c == format!("v={value}\n"))
}

/// Tight polling: the file is read every 50 us until it holds `value`.
fn poll_file(path: &Path, value: &str, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    let want = format!("v={value}\n");
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|c| c == want) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    None
}

fn pct(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v[((v.len() - 1) * p) / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
