//! A real redis server for tests: free loopback port, private dir, no
//! persistence, keyspace notifications off (the backend must enable them).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, kill, log_tail, require_binary, tcp_exchange, wait_ready};

/// How to start a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass`: clients must AUTH with this password.
    pub password: Option<String>,
    /// Disable the CONFIG command (as managed redis services do), so the
    /// backend cannot enable keyspace notifications itself.
    pub deny_config: bool,
    /// Start with this `notify-keyspace-events` value instead of off.
    pub notify_keyspace_events: Option<String>,
    /// Start as a replica of the server on this loopback port.
    pub replica_of: Option<u16>,
    /// Serve TLS only (no plain port) with this server certificate; clients' certificates
    /// are checked against the same CA when they send one.
    pub tls: Option<RedisTls>,
}

/// PEM files for a TLS redis (see [`crate::TestCertificates`]).
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One redis server on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    options: RedisOptions,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis with default options; see [`RedisServer::start_with`].
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts redis and waits for PING. `None` (after a loud notice) when
    /// redis is not installed outside CI; panics under CI or when the
    /// server does not come up.
    pub fn start_with(options: RedisOptions) -> Option<RedisServer> {
        let binary = require_binary("redis-server", "redis-server")?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                binary: binary.clone(),
                dir: tempfile::tempdir().expect("creating a temp dir for redis"),
                port: free_port(),
                options: options.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("redis did not start: {last_error}");
    }

    /// `127.0.0.1:<port>`, the form the redis backend's `nodes` takes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `redis-cli` with `args` against the server (over TLS when it serves TLS), for
    /// loading data; panics when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let binary = crate::process::require_binary("redis-cli", "redis-tools")
            .expect("redis-cli installed with redis-server");
        let mut command = Command::new(binary);
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.options.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        if let Some(password) = &self.options.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let output = command.args(args).output().expect("running redis-cli");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && !stdout.starts_with("ERR"),
            "redis-cli {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Stops the server. The data set is written to the private dir first
    /// (SHUTDOWN SAVE) so that [`Self::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let auth = match &self.options.password {
                Some(p) => format!("AUTH {p}\r\n"),
                None => String::new(),
            };
            let _ = tcp_exchange(
                self.port,
                format!("{auth}SHUTDOWN SAVE\r\n").as_bytes(),
                |_| false,
            );
            // SHUTDOWN normally ends the process; kill covers a refused one.
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill(&mut child);
        }
    }

    /// Starts the server again on the same port with the saved data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("redis did not restart: {e}");
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("redis.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.binary);
        match &self.options.tls {
            None => command.arg("--port").arg(self.port.to_string()),
            Some(tls) => command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "optional"]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--notify-keyspace-events",
                self.options.notify_keyspace_events.as_deref().unwrap_or(""),
            ]);
        if let Some(password) = &self.options.password {
            // masterauth too, so that a replica of a protected primary can sync.
            command.args(["--requirepass", password, "--masterauth", password]);
        }
        if let Some(primary) = self.options.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if self.options.deny_config {
            command.args(["--rename-command", "CONFIG", ""]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.binary.display()))?;
        let port = self.port;
        let tls = self.options.tls.is_some();
        // Without AUTH a password-protected server answers NOAUTH, which
        // still proves it is up. A TLS server says so in its log.
        let ready = wait_ready(&mut child, Duration::from_secs(20), || {
            if tls {
                return std::fs::read_to_string(&log_path)
                    .is_ok_and(|log| log.contains("Ready to accept connections"));
            }
            tcp_exchange(port, b"PING\r\n", |r| r.ends_with("\r\n"))
                .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// A primary, one replica and three sentinels monitoring them as `master_name`, all on
/// 127.0.0.1 with their own ports and dirs: the Redis Sentinel failover test's store.
#[derive(Debug)]
pub struct RedisSentinels {
    /// `[primary, replica]` as started; after a failover their roles are swapped.
    pub servers: [RedisServer; 2],
    sentinels: Vec<(u16, Child)>,
    dir: tempfile::TempDir,
    master_name: String,
    passwords: SentinelPasswords,
}

#[derive(Debug, Clone, Default)]
struct SentinelPasswords {
    /// The servers' `requirepass` (the sentinels' `auth-pass`).
    data: Option<String>,
    /// The sentinels' own `requirepass`.
    sentinel: Option<String>,
}

impl RedisSentinels {
    /// Starts the servers and the sentinels and waits until every sentinel knows the replica
    /// (a failover needs one). `None` when redis or its sentinel is not installed outside CI.
    pub fn start() -> Option<RedisSentinels> {
        RedisSentinels::start_with(None, None)
    }

    /// As [`Self::start`], with `requirepass` on the servers (`data_password`, which the
    /// sentinels use as `auth-pass`) and on the sentinels themselves (`sentinel_password`).
    pub fn start_with(
        data_password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Option<RedisSentinels> {
        let binary = require_binary("redis-sentinel", "redis-sentinel")?;
        let primary = RedisServer::start_with(RedisOptions {
            password: data_password.map(str::to_string),
            ..RedisOptions::default()
        })?;
        let replica = RedisServer::start_with(RedisOptions {
            replica_of: Some(primary.port()),
            password: data_password.map(str::to_string),
            ..RedisOptions::default()
        })?;
        let passwords = SentinelPasswords {
            data: data_password.map(str::to_string),
            sentinel: sentinel_password.map(str::to_string),
        };
        let master_name = "confd-test".to_string();
        let dir = tempfile::tempdir().expect("creating a temp dir for the sentinels");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let mut last_error = String::new();
            let mut started = None;
            for _ in 0..5 {
                let port = free_port();
                match spawn_sentinel(
                    &binary,
                    dir.path(),
                    i,
                    port,
                    primary.port(),
                    &master_name,
                    &passwords,
                ) {
                    Ok(child) => {
                        started = Some((port, child));
                        break;
                    }
                    Err(e) => last_error = e,
                }
            }
            let Some(sentinel) = started else {
                panic!("sentinel {i} did not start: {last_error}");
            };
            sentinels.push(sentinel);
        }
        let group = RedisSentinels {
            servers: [primary, replica],
            sentinels,
            dir,
            master_name,
            passwords,
        };
        let replica_port = group.servers[1].port().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for i in 0..group.sentinels.len() {
            loop {
                let replicas = group.ask(i, &format!("SENTINEL REPLICAS {}", group.master_name));
                if replicas.contains(&replica_port) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "sentinel {i} never saw the replica: {replicas}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Some(group)
    }

    /// The name the sentinels monitor the primary as.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// `host:port` of every sentinel.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// `sentinel://host:port,host:port,host:port/name`, the redis backend's node.
    pub fn node(&self) -> String {
        format!(
            "sentinel://{}/{}",
            self.sentinel_addresses().join(","),
            self.master_name
        )
    }

    /// The port of the server the first sentinel names as primary.
    pub fn primary_port(&self) -> u16 {
        let reply = self.ask(
            0,
            &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {}", self.master_name),
        );
        reply
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("no primary in {reply:?}"))
    }

    /// Runs `SENTINEL FAILOVER` (again while the sentinel answers that no replica is ready) and
    /// waits until every sentinel names the other server and it takes writes as a primary.
    /// Returns the new primary's port.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.ask(0, &format!("SENTINEL FAILOVER {}", self.master_name));
            if reply.starts_with("+OK") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SENTINEL FAILOVER: {reply}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            let now = self.primary_port();
            let auth = match &self.passwords.data {
                Some(p) => format!("AUTH {p}\r\n"),
                None => String::new(),
            };
            if now != old
                && tcp_exchange(now, format!("{auth}INFO replication\r\n").as_bytes(), |r| {
                    r.contains("role:")
                })
                .is_some_and(|r| r.contains("role:master"))
            {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the failover did not complete"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One command to sentinel `i` (inline protocol); the raw reply.
    fn ask(&self, i: usize, command: &str) -> String {
        let port = self.sentinels[i].0;
        let auth = match &self.passwords.sentinel {
            Some(p) => format!("AUTH {p}\r\n"),
            None => String::new(),
        };
        let reply = tcp_exchange(port, format!("{auth}{command}\r\n").as_bytes(), |r| {
            reply_complete(
                r.strip_prefix("+OK\r\n")
                    .filter(|_| !auth.is_empty())
                    .unwrap_or(r),
            )
        })
        .unwrap_or_default();
        match reply.strip_prefix("+OK\r\n") {
            Some(rest) if !auth.is_empty() => rest.to_string(),
            _ => reply,
        }
    }

    /// The sentinels' and servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for i in 0..self.sentinels.len() {
            text.push_str(&format!("--- sentinel {i}\n"));
            text.push_str(&log_tail(&self.dir.path().join(format!("sentinel{i}.log"))));
            text.push('\n');
        }
        text
    }
}

/// Whether a RESP reply is whole: a simple line, or an array whose announced items arrived.
fn reply_complete(reply: &str) -> bool {
    if !reply.ends_with("\r\n") {
        return false;
    }
    let Some(count) = reply.strip_prefix('*') else {
        return !reply.starts_with('$') || reply.lines().count() >= 2 || reply.starts_with("$-1");
    };
    let items: usize = count
        .lines()
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    // Good enough for the flat arrays of strings asked for here.
    reply.lines().filter(|l| !l.starts_with(['*', '$'])).count() >= items
}

fn spawn_sentinel(
    binary: &std::path::Path,
    dir: &std::path::Path,
    i: usize,
    port: u16,
    primary: u16,
    name: &str,
    passwords: &SentinelPasswords,
) -> Result<Child, String> {
    let config = dir.join(format!("sentinel{i}.conf"));
    let log_path = dir.join(format!("sentinel{i}.log"));
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n\
             sentinel monitor {name} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 10000\n",
            dir.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut extra = String::new();
    if let Some(p) = &passwords.data {
        extra.push_str(&format!("sentinel auth-pass {name} {p}\n"));
    }
    if let Some(p) = &passwords.sentinel {
        // Sentinels talk to each other with the same password.
        extra.push_str(&format!("requirepass {p}\nsentinel sentinel-pass {p}\n"));
    }
    if !extra.is_empty() {
        let mut text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        text.push_str(&extra);
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
    }
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(binary)
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
    let ready = wait_ready(&mut child, Duration::from_secs(20), || {
        tcp_exchange(port, b"PING\r\n", |r| r.ends_with("\r\n"))
            .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
    });
    match ready {
        Ok(()) => Ok(child),
        Err(e) => {
            kill(&mut child);
            Err(format!("{e}; log:\n{}", log_tail(&log_path)))
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            kill(child);
        }
    }
}
