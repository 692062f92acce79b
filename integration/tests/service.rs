//! confd as a service (issue 12), with real processes: SIGHUP reloads (resources added, removed,
//! a template and the backend node changed, a broken file that keeps the old configuration), the
//! systemd notification protocol seen by a datagram socket standing in for systemd, a
//! destination directory that appears later, and a burst of 1,000 etcd changes.

mod e2e;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use confd_test_support::EtcdServer;
use e2e::Confd;
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(20);

/// A confdir in a temporary directory with its destinations in `out/`.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["confdir/conf.d", "confdir/templates", "out"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Dir { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn confdir(&self) -> PathBuf {
        self.path().join("confdir")
    }
    fn out(&self, name: &str) -> PathBuf {
        self.path().join("out").join(name)
    }
    fn template(&self, name: &str, text: &str) {
        std::fs::write(self.confdir().join("templates").join(name), text).expect("template");
    }
    /// conf.d/<name>.toml rendering `src` to `dest` from the keys under `/<key>`.
    fn resource(&self, name: &str, src: &str, dest: &Path, key: &str, extra: &str) {
        std::fs::write(
            self.confdir().join("conf.d").join(format!("{name}.toml")),
            format!(
                "[template]\nsrc = \"{src}\"\ndest = \"{}\"\nkeys = [\"/{key}\"]\n{extra}\n",
                dest.display()
            ),
        )
        .expect("resource");
    }
    fn remove_resource(&self, name: &str) {
        std::fs::remove_file(self.confdir().join("conf.d").join(format!("{name}.toml")))
            .expect("remove resource");
    }
    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.out(name)).ok()
    }
    fn command(&self) -> Command {
        let mut cmd = Command::new(e2e::isolated_confd());
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(self.path())
            .arg("--confdir")
            .arg(self.confdir());
        cmd
    }
}

fn put(rt: &tokio::runtime::Runtime, kv: &mut etcd_client::KvClient, key: &str, value: &str) {
    rt.block_on(kv.put(key, value, None)).expect("etcd put");
}

fn etcd_client(server: &EtcdServer) -> (tokio::runtime::Runtime, etcd_client::KvClient) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let kv = rt
        .block_on(etcd_client::Client::connect([server.endpoint()], None))
        .expect("connect etcd")
        .kv_client();
    (rt, kv)
}

fn wait_file(confd: &Confd, dir: &Dir, name: &str, want: &str, what: &str) {
    assert!(
        e2e::wait_for(DEADLINE, || dir.read(name).as_deref() == Some(want)),
        "{what}: {name} is {:?}, want {want:?}\nstderr:\n{}",
        dir.read(name),
        confd.stderr()
    );
}

#[test]
fn sighup_adds_removes_and_changes_resources_and_the_node_without_a_restart() {
    let Some(first) = EtcdServer::start() else {
        return;
    };
    let Some(second) = EtcdServer::start() else {
        return;
    };
    let (rt, mut kv1) = etcd_client(&first);
    let (rt2, mut kv2) = etcd_client(&second);
    put(&rt, &mut kv1, "/a/v", "a1");
    put(&rt, &mut kv1, "/b/v", "b1");
    put(&rt2, &mut kv2, "/a/v", "from-second");
    put(&rt2, &mut kv2, "/b/v", "from-second");

    let dir = Dir::new();
    let config = dir.path().join("confd.toml");
    let node_config = |server: &EtcdServer| {
        std::fs::write(
            &config,
            format!(
                "backend = \"etcd\"\nnodes = [\"{}\"]\nwatch = true\n",
                server.address()
            ),
        )
        .expect("confd.toml");
    };
    node_config(&first);
    dir.template("a.tmpl", "a={{getv \"/v\"}}\n");
    dir.template("b.tmpl", "b={{getv \"/v\"}}\n");
    dir.resource("a", "a.tmpl", &dir.out("a.conf"), "v", "prefix = \"/a\"");
    let mut cmd = dir.command();
    cmd.arg("--config-file").arg(&config);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let pid = confd.pid();
    wait_file(&confd, &dir, "a.conf", "a=a1\n", "initial render");

    // A resource added.
    dir.resource("b", "b.tmpl", &dir.out("b.conf"), "v", "prefix = \"/b\"");
    confd.signal(Signal::SIGHUP);
    wait_file(&confd, &dir, "b.conf", "b=b1\n", "added resource");
    // Its watch runs: a change reaches it.
    put(&rt, &mut kv1, "/b/v", "b2");
    wait_file(
        &confd,
        &dir,
        "b.conf",
        "b=b2\n",
        "watch of the added resource",
    );

    // A template changed.
    dir.template("a.tmpl", "a is {{getv \"/v\"}}\n");
    confd.signal(Signal::SIGHUP);
    wait_file(&confd, &dir, "a.conf", "a is a1\n", "changed template");

    // A resource removed: its file is left alone from then on.
    dir.remove_resource("b");
    confd.signal(Signal::SIGHUP);
    assert!(
        e2e::wait_for(DEADLINE, || confd
            .stderr()
            .contains("new configuration loaded resources=1")),
        "reload with one resource:\n{}",
        confd.stderr()
    );
    put(&rt, &mut kv1, "/b/v", "b3");
    put(&rt, &mut kv1, "/a/v", "a2");
    wait_file(&confd, &dir, "a.conf", "a is a2\n", "remaining resource");
    assert_eq!(
        dir.read("b.conf").as_deref(),
        Some("b=b2\n"),
        "removed resource"
    );

    // A broken resource file: logged with its file and line, the old configuration runs on.
    std::fs::write(
        dir.confdir().join("conf.d/broken.toml"),
        "[template]\nsrc = \"a.tmpl\"\ndest = \n",
    )
    .expect("broken resource");
    confd.signal(Signal::SIGHUP);
    assert!(
        e2e::wait_for(DEADLINE, || confd.stderr().contains("broken.toml:3")),
        "the error names the file and line:\n{}",
        confd.stderr()
    );
    put(&rt, &mut kv1, "/a/v", "a3");
    wait_file(
        &confd,
        &dir,
        "a.conf",
        "a is a3\n",
        "old configuration after a bad reload",
    );
    std::fs::remove_file(dir.confdir().join("conf.d/broken.toml")).expect("rm");

    // The backend node changed in confd.toml: the etcd plugin is restarted with it.
    node_config(&second);
    confd.signal(Signal::SIGHUP);
    wait_file(&confd, &dir, "a.conf", "a is from-second\n", "new node");
    put(&rt2, &mut kv2, "/a/v", "second-2");
    wait_file(
        &confd,
        &dir,
        "a.conf",
        "a is second-2\n",
        "watch on the new node",
    );

    assert!(
        confd.try_wait().is_none(),
        "confd exited:\n{}",
        confd.stderr()
    );
    assert_eq!(confd.pid(), pid);
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());
}

#[test]
fn interval_mode_picks_up_a_new_resource_without_a_signal() {
    let dir = Dir::new();
    dir.template("a.tmpl", "a={{getv \"/app/name\"}}\n");
    dir.resource("a", "a.tmpl", &dir.out("a.conf"), "app", "");
    let mut cmd = dir.command();
    cmd.env("APP_NAME", "demo")
        .args(["--backend", "env", "--interval", "1"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    wait_file(&confd, &dir, "a.conf", "a=demo\n", "first pass");
    dir.resource("b", "a.tmpl", &dir.out("b.conf"), "app", "");
    wait_file(&confd, &dir, "b.conf", "a=demo\n", "conf.d read again");
    confd.signal(Signal::SIGTERM);
    assert_eq!(
        confd.wait_timeout(DEADLINE).and_then(|s| s.code()),
        Some(0),
        "{}",
        confd.stderr()
    );
}

#[test]
fn a_missing_dest_directory_fails_that_resource_and_is_written_once_it_appears() {
    let dir = Dir::new();
    dir.template("a.tmpl", "a={{getv \"/app/name\"}}\n");
    dir.resource("a", "a.tmpl", &dir.out("a.conf"), "app", "");
    let later = dir.path().join("out/later");
    dir.resource("b", "a.tmpl", &later.join("b.conf"), "app", "");

    // One-shot: the other resource is written, exit 1.
    let output = dir
        .command()
        .env("APP_NAME", "demo")
        .args(["--backend", "env", "--onetime"])
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(dir.read("a.conf").as_deref(), Some("a=demo\n"));
    assert!(
        stderr.contains("b.conf"),
        "the failure names the file: {stderr}"
    );

    // Interval: written within one interval of the directory appearing.
    let mut cmd = dir.command();
    cmd.env("APP_NAME", "demo")
        .args(["--backend", "env", "--interval", "1"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    assert!(
        e2e::wait_for(DEADLINE, || confd
            .stderr()
            .contains("does not exist (it is not created)")),
        "{}",
        confd.stderr()
    );
    std::fs::create_dir(&later).expect("mkdir");
    assert!(
        e2e::wait_for(DEADLINE, || std::fs::read_to_string(later.join("b.conf"))
            .is_ok_and(|t| t == "a=demo\n")),
        "{}",
        confd.stderr()
    );
    confd.signal(Signal::SIGTERM);
    assert_eq!(
        confd.wait_timeout(DEADLINE).and_then(|s| s.code()),
        Some(0),
        "{}",
        confd.stderr()
    );
}

/// Datagrams received on the socket until `until` holds for them (or the deadline).
fn collect(
    sock: &UnixDatagram,
    got: &mut Vec<(Instant, String)>,
    until: impl Fn(&[(Instant, String)]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 4096];
    while !until(got) && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn systemd_sees_ready_reloading_ready_watchdog_and_stopping() {
    let dir = Dir::new();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    dir.template("a.tmpl", "a={{getv \"/app/name\"}}\n");
    dir.resource("a", "a.tmpl", &dir.out("a.conf"), "app", "");
    // 400 ms: WATCHDOG=1 every 200 ms.
    let watchdog = Duration::from_millis(400);
    let mut cmd = dir.command();
    cmd.env("APP_NAME", "demo")
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .args(["--backend", "env", "--interval", "600"]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    let mut got = Vec::new();
    collect(&sock, &mut got, |g| {
        g.iter().any(|(_, m)| has(m, "READY=1"))
    });
    let ready = got
        .iter()
        .find(|(_, m)| has(m, "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {got:?}\n{}", confd.stderr()));
    assert!(
        ready.1.contains("STATUS=polling: 1 resource"),
        "{}",
        ready.1
    );
    assert_eq!(
        dir.read("a.conf").as_deref(),
        Some("a=demo\n"),
        "ready after the first pass"
    );

    confd.signal(Signal::SIGHUP);
    let before = got.len();
    collect(&sock, &mut got, |g| {
        g[before..]
            .iter()
            .skip_while(|(_, m)| !has(m, "RELOADING=1"))
            .any(|(_, m)| has(m, "READY=1"))
    });
    let reloading = got[before..]
        .iter()
        .find(|(_, m)| has(m, "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 in {got:?}"));
    let usec = reloading
        .1
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{}", reloading.1);
    assert!(
        got[before..]
            .iter()
            .skip_while(|(_, m)| !has(m, "RELOADING=1"))
            .any(|(_, m)| has(m, "READY=1")),
        "READY=1 after RELOADING=1: {got:?}"
    );

    // Keep-alives: at least five, none further apart than the watchdog period.
    let before = got.len();
    collect(&sock, &mut got, |g| {
        g[before..]
            .iter()
            .filter(|(_, m)| has(m, "WATCHDOG=1"))
            .count()
            >= 5
    });
    let pings: Vec<Instant> = got[before..]
        .iter()
        .filter(|(_, m)| has(m, "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(pings.len() >= 5, "{got:?}");
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < watchdog,
            "WATCHDOG=1 {gap:?} apart, systemd would kill at {watchdog:?}"
        );
    }

    confd.signal(Signal::SIGTERM);
    let before = got.len();
    collect(&sock, &mut got, |g| {
        g[before..].iter().any(|(_, m)| has(m, "STOPPING=1"))
    });
    assert!(
        got[before..].iter().any(|(_, m)| has(m, "STOPPING=1")),
        "{got:?}"
    );
    assert_eq!(
        confd.wait_timeout(DEADLINE).and_then(|s| s.code()),
        Some(0),
        "{}",
        confd.stderr()
    );
}

#[test]
fn a_thousand_changes_in_a_second_give_few_renders_and_the_last_value() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let (rt, mut kv) = etcd_client(&server);
    put(&rt, &mut kv, "/burst/v", "start");
    let dir = Dir::new();
    let renders = dir.path().join("renders.log");
    dir.template("v.tmpl", "v={{getv \"/v\"}}\n");
    dir.resource(
        "v",
        "v.tmpl",
        &dir.out("v.conf"),
        "v",
        &format!(
            "prefix = \"/burst\"\nreload_cmd = \"echo x >> {}\"",
            renders.display()
        ),
    );
    // Default debounce settings.
    let mut cmd = dir.command();
    cmd.args(["--watch", "--backend", "etcd", "--node", &server.address()]);
    let mut confd = Confd::spawn(cmd, dir.path().join("stderr.log"));
    wait_file(&confd, &dir, "v.conf", "v=start\n", "initial render");
    let started = Instant::now();
    for i in 0..1000 {
        put(&rt, &mut kv, "/burst/v", &i.to_string());
        // Spread over about a second.
        let due = started + Duration::from_millis(i);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    wait_file(&confd, &dir, "v.conf", "v=999\n", "last value");
    // Let any render still coming show up before counting.
    std::thread::sleep(Duration::from_millis(1500));
    let count = std::fs::read_to_string(&renders)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    eprintln!("1,000 changes in about a second: {count} renders (initial included)");
    // 1 initial + 1 leading + about one per --debounce-max (1 s) + 1 trailing.
    assert!(
        (2..=10).contains(&count),
        "{count} renders for 1,000 changes\n{}",
        confd.stderr()
    );
    assert_eq!(dir.read("v.conf").as_deref(), Some("v=999\n"));
    confd.signal(Signal::SIGTERM);
    assert_eq!(
        confd.wait_timeout(DEADLINE).and_then(|s| s.code()),
        Some(0),
        "{}",
        confd.stderr()
    );
}
