//! A real etcd server for tests: free loopback ports, a private data dir,
//! killed on drop; `stop`/`restart` keep the data for outage tests.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, kill, log_tail, require_binary, tcp_exchange, wait_ready};

/// How to start an [`EtcdServer`].
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// `--max-request-bytes`: the largest request (e.g. one put) etcd accepts; etcd's default is
    /// 1.5 MiB.
    pub max_request_bytes: Option<u64>,
    /// Over TLS, clients without a certificate are served too (no `--client-cert-auth`).
    pub no_client_certs: bool,
}

/// One single-member etcd cluster on 127.0.0.1.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    options: EtcdOptions,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// `(cert, key, ca)` when serving TLS with client certificates.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl EtcdServer {
    /// Starts etcd and waits until `/health` answers. `None` (after a loud
    /// notice) when etcd is not installed outside CI; panics under CI or when
    /// the server does not come up.
    pub fn start() -> Option<EtcdServer> {
        EtcdServer::launch(None, EtcdOptions::default())
    }

    /// [`Self::start`] with non-default server settings.
    pub fn start_with(options: EtcdOptions) -> Option<EtcdServer> {
        EtcdServer::launch(None, options)
    }

    /// Starts etcd serving TLS on the client port with the given server
    /// certificate, requiring client certificates signed by `certs.ca()`.
    pub fn start_tls(certs: &crate::TestCertificates) -> Option<EtcdServer> {
        EtcdServer::launch(
            Some((certs.server_cert(), certs.server_key(), certs.ca())),
            EtcdOptions::default(),
        )
    }

    /// Starts etcd serving TLS with the given server certificate to any client, with or without
    /// a client certificate.
    pub fn start_tls_server_only(certs: &crate::TestCertificates) -> Option<EtcdServer> {
        EtcdServer::launch(
            Some((certs.server_cert(), certs.server_key(), certs.ca())),
            EtcdOptions {
                no_client_certs: true,
                ..EtcdOptions::default()
            },
        )
    }

    fn launch(
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        options: EtcdOptions,
    ) -> Option<EtcdServer> {
        let binary = require_binary("etcd", "etcd-server")?;
        let mut last_error = String::new();
        // A freed port may be taken again before etcd binds it: retry.
        for _ in 0..5 {
            let mut server = EtcdServer {
                binary: binary.clone(),
                options: options.clone(),
                data: tempfile::tempdir().expect("creating a temp dir for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                tls: tls.clone(),
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The server's process id (CPU accounting in benches), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The client address without a scheme, e.g. `127.0.0.1:40123`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kills the server; the data directory stays for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts the server again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("etcd did not restart: {e}");
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.data.path().join("etcd.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some((cert, key, ca)) = &self.tls {
            command
                .arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()));
            if !self.options.no_client_certs {
                command
                    .arg(format!("--trusted-ca-file={}", ca.display()))
                    .arg("--client-cert-auth");
            }
        }
        if let Some(bytes) = self.options.max_request_bytes {
            command.arg(format!("--max-request-bytes={bytes}"));
        }
        let mut child = command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.binary.display()))?;
        let port = self.client_port;
        let tls = self.tls.is_some();
        let ready = wait_ready(&mut child, Duration::from_secs(20), || {
            // Over TLS a plain HTTP probe cannot work; an accepting port
            // after etcd started listening is the readiness signal.
            if tls {
                return std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            }
            tcp_exchange(
                port,
                b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                |reply| reply.contains('}'),
            )
            .is_some_and(|reply| reply.contains("\"health\":\"true\""))
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

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster of etcd members on 127.0.0.1, each with its own ports and data dir; members can be
/// killed and restarted one by one for failover tests.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    data: tempfile::TempDir,
    /// `(client port, peer port)` per member.
    ports: Vec<(u16, u16)>,
    children: Vec<Option<Child>>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each answers `/health` (which needs a leader). `None`
    /// when etcd is not installed outside CI, as [`EtcdServer::start`].
    pub fn start(size: usize) -> Option<EtcdCluster> {
        let binary = require_binary("etcd", "etcd-server")?;
        let mut last_error = String::new();
        for _ in 0..3 {
            let mut cluster = EtcdCluster {
                binary: binary.clone(),
                data: tempfile::tempdir().expect("creating a temp dir for etcd"),
                ports: (0..size).map(|_| (free_port(), free_port())).collect(),
                children: (0..size).map(|_| None).collect(),
            };
            let spawned: Result<(), String> =
                (0..size).try_for_each(|i| cluster.spawn(i).map(|_| ()));
            match spawned.and_then(|()| (0..size).try_for_each(|i| cluster.wait_member(i))) {
                Ok(()) => return Some(cluster),
                Err(e) => last_error = e,
            }
        }
        panic!("the etcd cluster did not start: {last_error}");
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Member `i`'s client address without a scheme, e.g. `127.0.0.1:40123`.
    pub fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].0)
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.address(i))
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client port.
    pub fn client_port(&self, i: usize) -> u16 {
        self.ports[i].0
    }

    /// Whether member `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Kills member `i` (SIGKILL); its data stays for [`Self::restart`].
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            kill(&mut child);
        }
    }

    /// Starts member `i` again with its data and waits until it answers `/health`.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        if let Err(e) = self.spawn(i).and_then(|()| self.wait_member(i)) {
            panic!("etcd member {i} did not restart: {e}");
        }
    }

    fn initial_cluster(&self) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.data.path().join(format!("m{i}.log"))
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| e.to_string())?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let (client_port, peer_port) = self.ports[i];
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(&self.binary)
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                self.data.path().join(format!("m{i}")).display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg("--initial-cluster-token=confd-test")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.binary.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    fn wait_member(&mut self, i: usize) -> Result<(), String> {
        let port = self.ports[i].0;
        let log_path = self.log_path(i);
        let Some(child) = self.children[i].as_mut() else {
            return Err(format!("member {i} is not running"));
        };
        let ready = wait_ready(child, Duration::from_secs(30), || {
            tcp_exchange(
                port,
                b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                |reply| reply.contains('}'),
            )
            .is_some_and(|reply| reply.contains("\"health\":\"true\""))
        });
        ready.map_err(|e| format!("member {i}: {e}; log:\n{}", log_tail(&log_path)))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }
}
