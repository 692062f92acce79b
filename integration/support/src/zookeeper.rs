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
        if !Path::new(ZOOKEEPER_JAR).is_file() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{ZOOKEEPER_JAR} is missing but CI=true: install the Debian package `zookeeper`"
                );
            }
            eprintln!(
                "\n*** SKIPPED: {ZOOKEEPER_JAR} is missing; install the Debian package `zookeeper` to run this test ***\n"
            );
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
