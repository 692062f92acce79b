//! Faults while confd runs: the store stopped and restarted (etcd, redis; the last good files
//! stay, errors name the backend, rendering resumes), the plugin process killed again and again
//! (confd stays up, restarts it, the next change arrives, nothing is damaged or left behind), a
//! plugin stopped with SIGSTOP (the call deadline catches it) and a plugin that floods its stderr
//! (confd's memory stays small).

mod e2e;

use std::time::{Duration, Instant};

use e2e::{Confd, Run, Store, Via};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(10);
/// The issue asks for rendering to resume within 2 s of the store coming back; asserting 10 s
/// keeps a loaded CI machine green while the measured time is printed for the README.
const RESUME_LIMIT: Duration = Duration::from_secs(10);

/// A watch run of the matrix confdir, initial render done.
fn started(backend: &str, via: Via) -> Option<(Run, Store, Confd)> {
    started_with(backend, via, &["--watch"])
}

/// A run of the matrix confdir in `mode` (`--watch`, `--interval N`), initial render done.
fn started_with(backend: &str, via: Via, mode: &[&str]) -> Option<(Run, Store, Confd)> {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let mut store = Store::start(backend, &run.store_dir())?;
    store.put_all(&e2e::matrix_data());
    let mut cmd = run.command(&e2e::isolated_confd(), &store, via);
    cmd.args(mode).args(["--log-level", "debug"]);
    let confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let (expected, _) = e2e::matrix_expected();
    let ok = e2e::wait_for(DEADLINE, || run.outputs() == expected);
    assert!(ok, "initial render failed\nstderr:\n{}", confd.stderr());
    Some((run, store, confd))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn store_outage(backend: &str) {
    let Some((run, mut store, mut confd)) = started(backend, Via::Builtin) else {
        return;
    };
    let (expected, _) = e2e::matrix_expected();
    let before_error = confd.stderr().len();

    store.stop();
    // Long enough for the watch to break and be retried a few times.
    let logged = e2e::wait_for(DEADLINE, || {
        let stderr = confd.stderr();
        let new = &stderr[before_error..];
        new.lines()
            .any(|l| (l.contains("ERROR") || l.contains("WARN")) && l.contains(backend))
    });
    std::thread::sleep(Duration::from_secs(2));
    let stderr = confd.stderr();
    assert!(
        logged,
        "no error naming the {backend} backend while it was down:\n{stderr}"
    );
    assert!(
        confd.try_wait().is_none(),
        "confd must keep running through a store outage:\n{stderr}"
    );
    assert_eq!(
        run.outputs(),
        expected,
        "the last good files must stay while the store is down"
    );
    let outage_lines: Vec<&str> = stderr[before_error..]
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    // The issue asks for the resource as well as the backend in the errors.
    assert!(
        outage_lines
            .iter()
            .any(|l| l.contains("app.conf") || l.contains("/matrix")),
        "errors during the outage should name the resource or its prefix:\n{}",
        outage_lines.join("\n")
    );

    println!(
        "OBSERVED {backend} outage log: {}",
        outage_lines.first().copied().unwrap_or_default()
    );

    store.restart();
    let back = Instant::now();
    store.put_all(&pairs(&[("/matrix/database/port", "7001")]));
    let resumed = e2e::wait_for(RESUME_LIMIT, || {
        std::fs::read_to_string(run.out().join("app.conf")).is_ok_and(|c| c.contains("port = 7001"))
    });
    let took = back.elapsed();
    assert!(
        resumed,
        "no render within {RESUME_LIMIT:?} of {backend} coming back\nstderr:\n{}",
        confd.stderr()
    );
    println!("MEASURED {backend}: rendering resumed {took:?} after the store came back");
    eprintln!("MEASURED {backend}: rendering resumed {took:?} after the store came back");
    let after = run.outputs();
    assert_eq!(after["upstream.conf"], expected["upstream.conf"]);
    assert_eq!(after["features.conf"], expected["features.conf"]);

    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        confd.stderr()
    );
}

#[test]
fn etcd_stopped_and_restarted() {
    store_outage("etcd");
}

#[test]
fn redis_stopped_and_restarted() {
    store_outage("redis");
}

/// How many times the plugin is killed in one run (the issue asks for 100).
const KILLS: usize = 100;

/// Kills the plugin `KILLS` times under `mode`. Each time: confd stays up, a new plugin process
/// comes back (the old one reaped), a store write made once it is back reaches `app.conf`, and
/// the other files are untouched with no stage file left. `limit` is how soon the change should
/// arrive; a loaded machine may miss it now and then, so every change must arrive (within
/// `DEADLINE`) and 95 of 100 within `limit`.
fn plugin_killed_repeatedly(backend: &str, via: Via, mode: &[&str], limit: Duration) {
    let Some((run, mut store, mut confd)) = started_with(backend, via, mode) else {
        return;
    };
    let (expected, _) = e2e::matrix_expected();
    let untouched = |outputs: &std::collections::BTreeMap<String, Vec<u8>>| {
        expected
            .iter()
            .filter(|(name, _)| !name.starts_with("app"))
            .all(|(name, bytes)| outputs.get(name) == Some(bytes))
            && outputs.len() == expected.len()
    };
    let mut took = Vec::with_capacity(KILLS);
    for round in 0..KILLS {
        let plugins = confd.plugin_pids();
        assert_eq!(
            plugins.len(),
            1,
            "round {round}: one plugin child expected: {plugins:?}"
        );
        let old = plugins[0];
        let backs_before = confd.stderr().matches("plugin is back").count();
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill the plugin");
        let back = e2e::wait_for(DEADLINE, || {
            confd.stderr().matches("plugin is back").count() > backs_before
        });
        assert!(
            back && confd.try_wait().is_none(),
            "round {round}: confd must stay up and restart its plugin:\n{}",
            confd.stderr()
        );
        assert!(
            e2e::wait_for(DEADLINE, || !e2e::is_alive(old)),
            "round {round}: the killed plugin {old} was not reaped"
        );
        let port = 8000 + round;
        store.put_all(&pairs(&[("/matrix/database/port", &port.to_string())]));
        let written = Instant::now();
        let arrived = e2e::wait_for(DEADLINE, || {
            std::fs::read_to_string(run.out().join("app.conf"))
                .is_ok_and(|c| c.contains(&format!("port = {port}")))
        });
        took.push(written.elapsed());
        assert!(
            arrived,
            "round {round}: the change after the restart never arrived\nstderr:\n{}",
            confd.stderr()
        );
        let outputs = run.outputs();
        assert!(
            untouched(&outputs),
            "round {round}: files damaged or stage files left: {:?}",
            outputs.keys().collect::<Vec<_>>()
        );
    }
    took.sort();
    let late = took.iter().filter(|t| **t > limit).count();
    let (p50, max) = (took[took.len() / 2], took[took.len() - 1]);
    println!(
        "MEASURED {backend} {mode:?}: {KILLS} plugin kills, change after restart p50 {p50:?} max {max:?}, {late} over {limit:?}"
    );
    assert!(
        late * 20 <= KILLS,
        "{late} of {KILLS} changes took longer than {limit:?} (p50 {p50:?}, max {max:?})"
    );
    let stderr = confd.stderr();
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("restarting it in"))
        .count();
    assert_eq!(warnings, KILLS, "one WARN per restart:\n{stderr}");
    assert!(
        stderr.contains("was killed (signal: 9 (SIGKILL))"),
        "the WARN gives the cause:\n{stderr}"
    );
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        confd.stderr()
    );
}

#[test]
fn etcd_plugin_killed_100_times_under_watch() {
    plugin_killed_repeatedly("etcd", Via::Builtin, &["--watch"], Duration::from_secs(1));
}

#[test]
fn etcd_plugin_killed_100_times_under_interval() {
    // A change waits for the next pass: one interval, plus the 1 s the issue allows.
    plugin_killed_repeatedly(
        "etcd",
        Via::Builtin,
        &["--interval", "1"],
        Duration::from_secs(2),
    );
}

#[test]
fn external_file_plugin_killed_under_watch() {
    // An external plugin takes the same path; fewer rounds are enough to show it.
    let Some((run, mut store, mut confd)) = started("file", Via::External) else {
        return;
    };
    let old = confd.plugin_pids()[0];
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill the plugin");
    assert!(
        e2e::wait_for(DEADLINE, || confd.stderr().contains("plugin is back")),
        "{}",
        confd.stderr()
    );
    store.put_all(&pairs(&[("/matrix/database/port", "7002")]));
    assert!(
        e2e::wait_for(DEADLINE, || {
            std::fs::read_to_string(run.out().join("app.conf"))
                .is_ok_and(|c| c.contains("port = 7002"))
        }),
        "{}",
        confd.stderr()
    );
    let new = confd.plugin_pids();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old);
    assert!(confd.try_wait().is_none());
}

/// A confdir with one resource reading `/a` through the misbehaving test plugin, installed in the
/// run's working directory as `confd-database-misbehave`.
fn misbehave_run(mode: &str) -> (tempfile::TempDir, std::process::Command) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for sub in ["conf.d", "templates", "out", "cwd"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::write(
        root.join("conf.d/a.toml"),
        format!(
            "[template]\nsrc = \"a.tmpl\"\ndest = \"{}\"\nkeys = [\"/a\"]\n",
            root.join("out/a.conf").display()
        ),
    )
    .expect("write resource");
    std::fs::write(root.join("templates/a.tmpl"), "a = {{getv \"/a\"}}\n").expect("write template");
    let plugin = root.join("cwd/confd-database-misbehave");
    std::fs::copy(env!("CARGO_BIN_EXE_misbehave-plugin"), &plugin).expect("copy plugin");
    let mut cmd = std::process::Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MISBEHAVE", mode)
        .current_dir(root.join("cwd"))
        .arg("--confdir")
        .arg(root)
        .args(["--backend", "misbehave", "--log-level", "debug"]);
    (dir, cmd)
}

#[test]
fn a_stopped_plugin_is_killed_and_restarted_at_the_deadline() {
    let (dir, mut cmd) = misbehave_run("ok");
    cmd.args(["--interval", "1", "--backend-timeout", "1s"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let out = dir.path().join("out/a.conf");
    assert!(
        e2e::wait_for(DEADLINE, || std::fs::read_to_string(&out)
            .is_ok_and(|c| c == "a = ok\n")),
        "{}",
        confd.stderr()
    );
    let old = confd.plugin_pids()[0];
    kill(Pid::from_raw(old as i32), Signal::SIGSTOP).expect("stop the plugin");
    let stopped = Instant::now();
    let restarted = e2e::wait_for(DEADLINE, || {
        confd.plugin_pids().iter().any(|pid| *pid != old) && !e2e::is_alive(old)
    });
    let took = stopped.elapsed();
    let stderr = confd.stderr();
    assert!(restarted, "the stopped plugin was not replaced:\n{stderr}");
    println!(
        "MEASURED a SIGSTOPped plugin was replaced {took:?} after the stop (deadline 1 s, interval 1 s)"
    );
    let logged = stderr
        .lines()
        .find(|l| l.contains("did not answer within 1s"))
        .unwrap_or_else(|| panic!("no deadline message:\n{stderr}"));
    assert!(
        logged.contains("misbehave") && logged.contains(&old.to_string()),
        "the message names the plugin and its pid: {logged}"
    );
    assert!(
        stderr.contains("missed the 1s deadline of GetValues; restarting it in"),
        "the restart WARN gives the cause:\n{stderr}"
    );
    assert!(confd.try_wait().is_none(), "confd stays up");
    confd.signal(Signal::SIGTERM);
    assert_eq!(confd.wait_timeout(DEADLINE).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_plugin_flooding_stderr_leaves_confd_small() {
    // 100 MiB without a newline in every GetValues, then exit; restarted each pass.
    let (dir, mut cmd) = misbehave_run("flood");
    cmd.args(["--interval", "1"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let pid = confd.pid();
    let flooded = e2e::wait_for(Duration::from_secs(30), || {
        confd.stderr().matches("restarting it in").count() >= 2
    });
    let hwm = e2e::vm_hwm_kib(pid).expect("confd runs");
    let stderr = confd.stderr();
    assert!(
        flooded,
        "the flooding plugin did not die twice:\n{}",
        &stderr[..stderr.len().min(4096)]
    );
    println!(
        "MEASURED confd peak RSS {} MiB while its plugin wrote 2 x 100 MiB to stderr",
        hwm / 1024
    );
    assert!(hwm < 50 * 1024, "confd's peak RSS is {hwm} KiB");
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 70 * 1024, "a log line of {longest} bytes");
    assert!(
        stderr.len() < 2 << 20,
        "confd wrote {} bytes of log",
        stderr.len()
    );
    assert!(
        stderr.contains("more bytes of this line dropped]"),
        "the cut is marked"
    );
    confd.signal(Signal::SIGTERM);
    assert_eq!(confd.wait_timeout(DEADLINE).and_then(|s| s.code()), Some(0));
}
