//! A real ZooKeeper server for tests (Debian's `zookeeper` package: the jars under
//! /usr/share/java, run with `java`): standalone, on a free loopback port, with its own data dir
//! and config, and no admin server. `restart` keeps the data dir, as a server restart would.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, kill, log_tail, require_binary, tcp_exchange, wait_ready};

/// The jar of Debian's `zookeeper` package; its manifest names every other jar it needs.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// One standalone ZooKeeper on 127.0.0.1.
#[derive(Debug)]
pub struct ZookeeperServer {
    java: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl ZookeeperServer {
    /// Starts ZooKeeper and waits until it answers `ruok`. `None` (after a loud notice) when
    /// java or the zookeeper package is missing outside CI; panics under CI, or when the
    /// server does not come up.
    pub fn start() -> Option<ZookeeperServer> {
        let java = require_binary("java", "zookeeper")?;
        if !require_jar() {
            return None;
        }
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = ZookeeperServer {
                java: java.clone(),
                dir: tempfile::tempdir().expect("creating a temp dir for zookeeper"),
                port: free_port(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("zookeeper did not start: {last_error}");
    }

    /// `127.0.0.1:<port>`, the form the zookeeper backend's `nodes` takes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (its data stays in the data dir).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("zookeeper did not restart: {e}");
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let config = self.dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\n\
                 initLimit=10\n\
                 syncLimit=5\n\
                 dataDir={}\n\
                 clientPort={}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr\n",
                data.display(),
                self.port
            ),
        )
        .map_err(|e| e.to_string())?;
        let log_path = self.dir.path().join("zookeeper.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.java)
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
            .args(["-cp", ZOOKEEPER_JAR])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.java.display()))?;
        let port = self.port;
        let ready = wait_ready(&mut child, Duration::from_secs(60), || {
            tcp_exchange(port, b"ruok", |r| r.contains("imok")).is_some_and(|r| r == "imok")
        });
        match ready {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                kill(&mut child);
                Err(format!("{e}; log:\n{}", log_tail(&log_path)))
            }
        }
    }
}

impl Drop for ZookeeperServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A ZooKeeper ensemble on 127.0.0.1: every server with its own client, quorum and election
/// ports and data dir; servers can be killed and restarted one by one for failover tests.
#[derive(Debug)]
pub struct ZookeeperEnsemble {
    java: PathBuf,
    dir: tempfile::TempDir,
    /// `(client, quorum, election)` ports per server.
    ports: Vec<(u16, u16, u16)>,
    children: Vec<Option<Child>>,
}

impl ZookeeperEnsemble {
    /// Starts `size` servers and waits until each serves as leader or follower. `None` when java
    /// or the zookeeper package is missing outside CI, as [`ZookeeperServer::start`].
    pub fn start(size: usize) -> Option<ZookeeperEnsemble> {
        let java = require_binary("java", "zookeeper")?;
        if !require_jar() {
            return None;
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            let mut ensemble = ZookeeperEnsemble {
                java: java.clone(),
                dir: tempfile::tempdir().expect("creating a temp dir for zookeeper"),
                ports: (0..size)
                    .map(|_| (free_port(), free_port(), free_port()))
                    .collect(),
                children: (0..size).map(|_| None).collect(),
            };
            let started = (0..size)
                .try_for_each(|i| ensemble.spawn(i))
                .and_then(|()| (0..size).try_for_each(|i| ensemble.wait_serving(i)));
            match started {
                Ok(()) => return Some(ensemble),
                Err(e) => last_error = e,
            }
        }
        panic!("the zookeeper ensemble did not start: {last_error}");
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Server `i`'s client address, `127.0.0.1:<port>`.
    pub fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].0)
    }

    /// Server `i`'s client port.
    pub fn client_port(&self, i: usize) -> u16 {
        self.ports[i].0
    }

    /// Whether server `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Kills server `i`; its data stays for [`Self::restart`].
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            kill(&mut child);
        }
    }

    /// Starts server `i` again and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        if let Err(e) = self.spawn(i).and_then(|()| self.wait_serving(i)) {
            panic!("zookeeper server {i} did not restart: {e}");
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("zk{i}.log"))
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let home = self.dir.path().join(format!("zk{i}"));
        let data = home.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        std::fs::write(data.join("myid"), format!("{}\n", i + 1)).map_err(|e| e.to_string())?;
        let servers: String = self
            .ports
            .iter()
            .enumerate()
            .map(|(n, (_, quorum, election))| {
                format!("server.{}=127.0.0.1:{quorum}:{election}\n", n + 1)
            })
            .collect();
        let config = home.join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\n\
                 initLimit=20\n\
                 syncLimit=5\n\
                 dataDir={}\n\
                 clientPort={}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr\n\
                 {servers}",
                data.display(),
                self.ports[i].0
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.java)
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg(format!("-Dzookeeper.log.dir={}", home.display()))
            .args(["-cp", ZOOKEEPER_JAR])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.java.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until server `i` says it is the leader or a follower (it serves clients then).
    fn wait_serving(&mut self, i: usize) -> Result<(), String> {
        let port = self.ports[i].0;
        let log_path = self.log_path(i);
        let Some(child) = self.children[i].as_mut() else {
            return Err(format!("server {i} is not running"));
        };
        wait_ready(child, Duration::from_secs(90), || {
            tcp_exchange(port, b"srvr", |r| r.contains("Node count"))
                .is_some_and(|r| r.contains("Mode: leader") || r.contains("Mode: follower"))
        })
        .map_err(|e| format!("server {i}: {e}; log:\n{}", log_tail(&log_path)))
    }
}

/// Whether the zookeeper jar is installed; without it a loud notice, or a panic under CI (the
/// rule of `require_binary`).
fn require_jar() -> bool {
    if Path::new(ZOOKEEPER_JAR).is_file() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{ZOOKEEPER_JAR} is missing but CI=true: install the Debian package `zookeeper`");
    }
    eprintln!(
        "\n*** SKIPPED: {ZOOKEEPER_JAR} is missing; install the Debian package `zookeeper` to run this test ***\n"
    );
    false
}

impl Drop for ZookeeperEnsemble {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }
}
