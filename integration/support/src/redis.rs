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
        command
            .arg("--port")
            .arg(self.port.to_string())
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
            command.args(["--requirepass", password]);
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
        // Without AUTH a password-protected server answers NOAUTH, which
        // still proves it is up.
        let ready = wait_ready(&mut child, Duration::from_secs(20), || {
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
