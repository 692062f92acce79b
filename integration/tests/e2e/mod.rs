//! Shared by the end-to-end matrix, the fault tests and the benches: the matrix fixture
//! (`integration/matrix/`), the stores behind one interface, and a confd child process that
//! never outlives its test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confd_test_support::{
    ConsulEmulator, EtcdCluster, EtcdServer, ImdsEmulator, MOTO_REGION, MotoServer, RedisServer,
    VaultEmulator, ZookeeperServer, profile_dir, workspace_bin,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The backends of the matrix that watch or are refused a watch.
pub const BACKENDS: [&str; 7] = [
    "env",
    "file",
    "etcd",
    "redis",
    "consul",
    "zookeeper",
    "vault",
];
/// The AWS backends, which cannot watch: one-shot and interval only (issue 16).
pub const AWS_BACKENDS: [&str; 4] = ["ssm", "secretsmanager", "dynamodb", "imds"];
/// The dynamodb table the AWS stores use.
pub const DYNAMODB_TABLE: &str = "confd";

/// The KV v2 mount the matrix keys live under in the Vault emulator: `/matrix/a/b` is the
/// secret `a/b` of mount `matrix`, with the one field `value` (so its key is exactly `/matrix/a/b`).
const VAULT_MOUNT: &str = "matrix";

/// `integration/matrix`.
pub fn matrix_dir() -> PathBuf {
    confd_test_support::workspace_root().join("integration/matrix")
}

/// The matrix data set (`matrix/data.txt`, `key=value` lines), in file order.
pub fn matrix_data() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(matrix_dir().join("data.txt")).expect("read matrix/data.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').expect("data.txt lines are key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Expected destination files (name → bytes) and their modes, from `matrix/expect`.
pub fn matrix_expected() -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, u32>) {
    let dir = matrix_dir().join("expect");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read matrix/expect") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "MODES" {
            files.insert(
                name,
                std::fs::read(entry.path()).expect("read expected file"),
            );
        }
    }
    let modes = std::fs::read_to_string(dir.join("MODES"))
        .expect("read MODES")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(f, m)| {
            (
                f.to_string(),
                u32::from_str_radix(m, 8).expect("octal mode"),
            )
        })
        .collect();
    (files, modes)
}

/// The confd binary, copied (once per process) into a directory of its own: next to the
/// target directory's confd lie `confd-database-*` executables that would stand in for the
/// builtins, and the builtin path must be tested as users get it.
pub fn isolated_confd() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let built = workspace_bin("confd", "confd");
        let dir = profile_dir().join("confd-isolated");
        std::fs::create_dir_all(&dir).expect("create confd-isolated dir");
        let tmp = dir.join(format!("confd.{}.tmp", std::process::id()));
        std::fs::copy(&built, &tmp).expect("copy confd");
        let dest = dir.join("confd");
        // rename is atomic: a concurrently running test binary never sees half a file.
        std::fs::rename(&tmp, &dest).expect("install isolated confd");
        dest
    })
    .clone()
}

/// The external plugin executable `confd-database-<name>` built from builtin/bins.
pub fn plugin_bin(name: &str) -> PathBuf {
    let package = format!("confd-database-{name}");
    workspace_bin(&package, &package)
}

/// How confd reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `--backend <name>`: the builtin, run as `confd internal-plugin database <name>`.
    Builtin,
    /// `--backend <name>-test`: `confd-database-<name>` copied as `confd-database-<name>-test`
    /// into the run's working directory.
    External,
}

/// A store holding the matrix keys, reachable by one backend.
// One per test: the size of the etcd variant (client + runtime) costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Env(BTreeMap<String, String>),
    File {
        path: PathBuf,
        data: BTreeMap<String, String>,
    },
    Etcd {
        server: EtcdServer,
        rt: tokio::runtime::Runtime,
        client: etcd_client::KvClient,
    },
    Redis {
        server: RedisServer,
        conn: Option<redis::Connection>,
    },
    Consul(ConsulEmulator),
    /// ssm, secretsmanager or dynamodb: one moto server, and which of them.
    Aws {
        backend: &'static str,
        moto: MotoServer,
    },
    Imds(ImdsEmulator),
    Zookeeper {
        server: ZookeeperServer,
        rt: tokio::runtime::Runtime,
        client: zookeeper_client::Client,
    },
    Vault(VaultEmulator),
}

impl Store {
    /// Starts the store `backend` needs; `None` when its server binary is missing outside CI
    /// (the support crate has printed a loud notice; under `CI=true` it panicked instead).
    pub fn start(backend: &str, dir: &Path) -> Option<Store> {
        Some(match backend {
            "env" => Store::Env(BTreeMap::new()),
            "file" => Store::File {
                path: dir.join("data.json"),
                data: BTreeMap::new(),
            },
            "etcd" => {
                let server = EtcdServer::start()?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let client = rt
                    .block_on(etcd_client::Client::connect([server.endpoint()], None))
                    .expect("connect to the test etcd")
                    .kv_client();
                Store::Etcd { server, rt, client }
            }
            "redis" => {
                let server = RedisServer::start()?;
                let mut store = Store::Redis { server, conn: None };
                store.reconnect();
                store
            }
            "consul" => Store::Consul(ConsulEmulator::start()),
            "ssm" | "secretsmanager" | "dynamodb" => {
                let backend = AWS_BACKENDS
                    .into_iter()
                    .find(|b| *b == backend)
                    .expect("an AWS backend");
                let moto = MotoServer::start()?;
                if backend == "dynamodb" {
                    moto.dynamodb_create_table(DYNAMODB_TABLE);
                }
                Store::Aws { backend, moto }
            }
            "imds" => Store::Imds(ImdsEmulator::empty()),
            "zookeeper" => {
                let server = ZookeeperServer::start()?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let client = rt
                    .block_on(zookeeper_client::Client::connect(&server.address()))
                    .expect("connect to the test zookeeper");
                Store::Zookeeper { server, rt, client }
            }
            "vault" => {
                let vault = VaultEmulator::start();
                vault.mount_kv(VAULT_MOUNT, 2);
                Store::Vault(vault)
            }
            other => panic!("no such matrix backend {other}"),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Env(_) => "env",
            Store::File { .. } => "file",
            Store::Etcd { .. } => "etcd",
            Store::Redis { .. } => "redis",
            Store::Consul(_) => "consul",
            Store::Aws { backend, .. } => backend,
            Store::Imds(_) => "imds",
            Store::Zookeeper { .. } => "zookeeper",
            Store::Vault(_) => "vault",
        }
    }

    /// A fresh client connection (after a server restart the old one is broken).
    fn reconnect(&mut self) {
        match self {
            Store::Redis { server, conn } => {
                let client = redis::Client::open(format!("redis://{}/", server.address()))
                    .expect("redis client");
                *conn = Some(client.get_connection().expect("connect to the test redis"));
            }
            Store::Etcd { server, rt, client } => {
                *client = rt
                    .block_on(etcd_client::Client::connect([server.endpoint()], None))
                    .expect("reconnect to the test etcd")
                    .kv_client();
            }
            _ => {}
        }
    }

    /// Writes `pairs` one after another, as fast as the store takes them (a burst).
    pub fn put_all(&mut self, pairs: &[(String, String)]) {
        match self {
            Store::Env(vars) => {
                for (k, v) in pairs {
                    vars.insert(k.clone(), v.clone());
                }
            }
            Store::File { path, data } => {
                // One write per pair: a burst of file changes, each a complete file.
                for (k, v) in pairs {
                    data.insert(k.clone(), v.clone());
                    write_json(path, data);
                }
            }
            Store::Etcd { rt, client, .. } => {
                for (k, v) in pairs {
                    rt.block_on(client.put(k.as_str(), v.as_str(), None))
                        .expect("etcd put");
                }
            }
            Store::Redis { conn, .. } => {
                let conn = conn.as_mut().expect("redis connected");
                for (k, v) in pairs {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .exec(conn)
                        .expect("redis SET");
                }
            }
            Store::Consul(emulator) => {
                for (k, v) in pairs {
                    emulator.put(k, v);
                }
            }
            Store::Aws { backend, moto } => {
                for (k, v) in pairs {
                    match *backend {
                        "ssm" => moto.ssm_put(k, v),
                        "secretsmanager" => moto.secret_put(k, v),
                        _ => moto.dynamodb_put(DYNAMODB_TABLE, k, v),
                    }
                }
            }
            Store::Imds(emulator) => {
                for (k, v) in pairs {
                    emulator.put(k, v);
                }
            }
            Store::Zookeeper { rt, client, .. } => {
                for (k, v) in pairs {
                    rt.block_on(zookeeper_put(client, k, v));
                }
            }
            Store::Vault(vault) => {
                for (k, v) in pairs {
                    let path = k
                        .trim_start_matches('/')
                        .strip_prefix(VAULT_MOUNT)
                        .and_then(|p| p.strip_prefix('/'))
                        .unwrap_or_else(|| {
                            panic!("vault matrix keys are under /{VAULT_MOUNT}: {k}")
                        });
                    vault.put(VAULT_MOUNT, path, serde_json::json!({ "value": v }));
                }
            }
        }
    }

    /// Stops the server (etcd, redis); the data stays for [`Store::restart`].
    pub fn stop(&mut self) {
        match self {
            Store::Etcd { server, .. } => server.stop(),
            Store::Redis { server, conn } => {
                *conn = None;
                server.stop();
            }
            Store::Consul(e) => e.stop(),
            Store::Zookeeper { server, .. } => server.stop(),
            _ => panic!("{} has no server to stop", self.backend()),
        }
    }

    /// Starts the server again with the same data on the same port.
    pub fn restart(&mut self) {
        match self {
            Store::Etcd { server, .. } => server.restart(),
            Store::Redis { server, .. } => server.restart(),
            Store::Consul(e) => e.restart(),
            Store::Zookeeper { server, .. } => server.restart(),
            _ => panic!("{} has no server to restart", self.backend()),
        }
        self.reconnect();
    }

    /// The backend settings as the string map a plugin receives (`nodes`, `file`).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Store::Env(_) => vec![],
            Store::File { path, .. } => vec![("file", path.display().to_string())],
            Store::Etcd { server, .. } => vec![("nodes", server.address())],
            Store::Redis { server, .. } => vec![("nodes", server.address())],
            Store::Consul(e) => vec![("nodes", e.address())],
            Store::Aws { backend, moto } => {
                let mut settings = vec![("nodes", moto.endpoint())];
                if *backend == "dynamodb" {
                    settings.push(("table", DYNAMODB_TABLE.to_string()));
                }
                settings
            }
            Store::Imds(e) => vec![("nodes", e.url())],
            Store::Zookeeper { server, .. } => vec![("nodes", server.address())],
            Store::Vault(vault) => vec![
                ("nodes", vault.address()),
                ("authType", "token".to_string()),
                ("token", vault.root_token()),
            ],
        }
    }

    /// The etcd client endpoint, for benches.
    pub fn etcd_endpoint(&self) -> Option<String> {
        match self {
            Store::Etcd { server, .. } => Some(server.endpoint()),
            _ => None,
        }
    }

    /// confd's arguments selecting this store through `via`.
    pub fn args(&self, via: Via) -> Vec<String> {
        let mut args = Vec::new();
        match via {
            Via::Builtin => {
                args.extend(["--backend".to_string(), self.backend().to_string()]);
                for (key, value) in self.settings() {
                    let flag = match key {
                        "file" => "--file",
                        "table" => "--table",
                        "authType" => "--auth-type",
                        "token" => "--auth-token",
                        _ => "--node",
                    };
                    args.extend([flag.to_string(), value]);
                }
            }
            Via::External => {
                // Not a builtin name, so confd passes no flags through: settings go as the
                // plugin's own map.
                args.extend(["--backend".to_string(), format!("{}-test", self.backend())]);
                for (key, value) in self.settings() {
                    args.extend(["--plugin-config".to_string(), format!("{key}={value}")]);
                }
            }
        }
        args
    }

    /// Environment variables confd needs for this store (the env backend reads its own).
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Store::Env(vars) => vars.iter().map(|(k, v)| (env_name(k), v.clone())).collect(),
            // Region and credentials reach the AWS backends as they reach every AWS tool.
            Store::Aws { moto, .. } => {
                let key = moto.credentials();
                vec![
                    ("AWS_REGION".to_string(), MOTO_REGION.to_string()),
                    ("AWS_ACCESS_KEY_ID".to_string(), key.id),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), key.secret),
                ]
            }
            _ => vec![],
        }
    }
}

/// Sets a znode, creating its parents as needed.
pub async fn zookeeper_put(client: &zookeeper_client::Client, key: &str, value: &str) {
    use zookeeper_client as zk;
    if client.set_data(key, value.as_bytes(), None).await.is_ok() {
        return;
    }
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    if let Some((parent, _)) = key.rsplit_once('/')
        && !parent.is_empty()
    {
        match client.mkdir(parent, &options).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("zookeeper mkdir {parent}: {e}"),
        }
    }
    match client.create(key, value.as_bytes(), &options).await {
        Ok(_) => {}
        Err(zk::Error::NodeExists) => {
            client
                .set_data(key, value.as_bytes(), None)
                .await
                .expect("zookeeper set");
        }
        Err(e) => panic!("zookeeper create {key}: {e}"),
    }
}

/// `/matrix/database/host` → `MATRIX_DATABASE_HOST`, the env backend's mapping.
pub fn env_name(key: &str) -> String {
    key.trim_start_matches('/').replace('/', "_").to_uppercase()
}

/// Writes `/a/b = v` pairs as nested JSON, the file backend's input, atomically enough for a
/// reader: the file is complete or absent only for the instant of one write call.
fn write_json(path: &Path, data: &BTreeMap<String, String>) {
    let mut root = serde_json::Map::new();
    for (key, value) in data {
        let parts: Vec<&str> = key.trim_start_matches('/').split('/').collect();
        let mut node = &mut root;
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
                .as_object_mut()
                .expect("a key is never both a value and a directory in test data");
        }
        node.insert(
            parts[parts.len() - 1].to_string(),
            serde_json::Value::String(value.clone()),
        );
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(root)).expect("json");
    std::fs::write(path, text).expect("write the file backend's data");
}

/// One confd run's directories: `confdir` (a copy with `@OUT@` filled in), `out` (the
/// destinations), `cwd` (the working directory, where external plugins are installed) and
/// `store` (the file backend's data).
pub struct Run {
    pub dir: tempfile::TempDir,
}

impl Run {
    /// A fresh run of the confdir `src` (normally `matrix/confdir`).
    pub fn new(src: &Path) -> Run {
        let run = Run {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for sub in ["out", "cwd", "store"] {
            std::fs::create_dir_all(run.dir.path().join(sub)).expect("create run dir");
        }
        copy_confdir(src, &run.confdir(), &run.out());
        run
    }

    pub fn confdir(&self) -> PathBuf {
        self.dir.path().join("confdir")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    pub fn cwd(&self) -> PathBuf {
        self.dir.path().join("cwd")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Copies `confd-database-<backend>` into the working directory as
    /// `confd-database-<backend>-test`.
    pub fn install_plugin(&self, backend: &str) {
        let dest = self.cwd().join(format!("confd-database-{backend}-test"));
        std::fs::copy(plugin_bin(backend), &dest).expect("copy the plugin");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the plugin");
    }

    /// confd with a clean environment (nothing from the developer's shell leaks in), run in
    /// `cwd`, pointed at this run's confdir and `store` through `via`.
    pub fn command(&self, confd: &Path, store: &Store, via: Via) -> Command {
        if via == Via::External {
            self.install_plugin(store.backend());
        }
        let mut cmd = Command::new(confd);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(self.cwd())
            .arg("--confdir")
            .arg(self.confdir())
            .args(store.args(via))
            .envs(store.env());
        cmd
    }

    /// Every file in `out` (name → bytes) but the reload log, stage files included: a stage
    /// file left behind is a bug the comparison must show. A file that vanishes between listing
    /// and reading (a stage file renamed over its destination while a watch run renders) is
    /// skipped; the callers poll.
    pub fn outputs(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(self.out()).expect("read out dir") {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "reload.log" || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match std::fs::read(entry.path()) {
                Ok(bytes) => {
                    files.insert(name, bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("reading {}: {e}", entry.path().display()),
            }
        }
        files
    }

    /// How often each resource's reload_cmd ran (`reload.log` lines).
    pub fn reloads(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.out().join("reload.log")).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            *counts.entry(line.to_string()).or_insert(0) += 1;
        }
        counts
    }
}

/// Copies `src` to `dest` recursively, replacing `@OUT@` with `out` in every file.
pub fn copy_confdir(src: &Path, dest: &Path, out: &Path) {
    std::fs::create_dir_all(dest).expect("create confdir copy");
    for entry in std::fs::read_dir(src).expect("read confdir") {
        let entry = entry.expect("dir entry");
        let target = dest.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_confdir(&entry.path(), &target, out);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("read confdir file");
            let text = text.replace("@OUT@", out.to_str().expect("utf-8 temp path"));
            std::fs::write(&target, text).expect("write confdir file");
        }
    }
}

/// A running confd whose stderr goes to a file; killed (with its children) on drop so a failed
/// assertion never leaves a daemon behind.
pub struct Confd {
    child: Child,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
    seen_children: Vec<u32>,
}

impl Confd {
    pub fn spawn(mut cmd: Command, stderr_path: PathBuf) -> Confd {
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn confd");
        Confd {
            child,
            stderr_path,
            status: None,
            seen_children: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What confd wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// confd's child processes that are plugins (`confd-database-*` or
    /// `confd internal-plugin`), remembered for the drop-time cleanup.
    pub fn plugin_pids(&mut self) -> Vec<u32> {
        let pids: Vec<u32> = children_of(self.pid())
            .into_iter()
            .filter(|pid| {
                let cmd = cmdline(*pid);
                cmd.contains("confd-database-") || cmd.contains("internal-plugin")
            })
            .collect();
        for pid in &pids {
            if !self.seen_children.contains(pid) {
                self.seen_children.push(*pid);
            }
        }
        pids
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
    }

    /// The exit status if confd has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for confd to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.try_wait()
    }
}

impl Drop for Confd {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.plugin_pids();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in &self.seen_children {
            if is_alive(*pid) {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Direct children of `pid`, from `/proc/*/stat` (the kernel here lacks `/proc/<pid>/children`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| stat_field(*candidate, 1).is_some_and(|ppid| ppid == pid.to_string()))
        .collect()
}

/// Field `n` after the command name in `/proc/<pid>/stat` (0: state, 1: ppid).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// True while `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z")
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `VmHWM` (peak resident set) of `pid` in KiB, while it runs.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Remote ports of the established TCP connections of process `pid` (IPv4 and IPv6): its
/// socket inodes from `/proc/<pid>/fd`, looked up in the namespace's `/proc/<pid>/net/tcp*`.
pub fn established_remote_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != "01" || !inodes.iter().any(|i| i == inode) {
                continue;
            }
            if let Some(port) = remote
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

/// `confd --watch` on a one-template confdir (`v={{getv "/v"}}` under `/fo`) given every member
/// of a 3-member etcd cluster: the failover test and bench.
pub struct EtcdFailover {
    pub cluster: EtcdCluster,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    pub confd: Confd,
}

impl EtcdFailover {
    /// The cluster up, `/fo/v = start` written and rendered; `None` without etcd.
    pub fn start() -> Option<EtcdFailover> {
        EtcdFailover::start_with(&[])
    }

    /// [`Self::start`] with more confd arguments.
    pub fn start_with(args: &[String]) -> Option<EtcdFailover> {
        let cluster = EtcdCluster::start(3)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        put_through_cluster(&rt, &cluster, "/fo/v", "start");
        let mut nodes = Vec::new();
        for i in 0..cluster.len() {
            nodes.extend(["--node".to_string(), cluster.address(i)]);
        }
        nodes.extend(args.iter().cloned());
        let confd = one_key_confd(dir.path(), "etcd", &nodes);
        let failover = EtcdFailover {
            cluster,
            rt,
            dir,
            confd,
        };
        assert!(
            failover
                .wait_for("start", Duration::from_secs(30))
                .is_some(),
            "initial render failed\nstderr:\n{}",
            failover.confd.stderr()
        );
        Some(failover)
    }

    /// The destination file.
    pub fn dest(&self) -> PathBuf {
        self.dir.path().join("fo.conf")
    }

    /// Waits until the file holds `value`; the instant it was seen.
    pub fn wait_for(&self, value: &str, timeout: Duration) -> Option<Instant> {
        wait_for_value(&self.dest(), value, timeout)
    }

    /// Writes `/fo/v = value` through a running member.
    pub fn put(&self, value: &str) {
        put_through_cluster(&self.rt, &self.cluster, "/fo/v", value);
    }

    /// The one member the plugin is connected to (see [`server_in_use`]).
    pub fn member_in_use(&mut self) -> usize {
        let ports = self.client_ports();
        server_in_use(&mut self.confd, &ports)
    }

    /// Every member's client port.
    pub fn client_ports(&self) -> Vec<u16> {
        (0..self.cluster.len())
            .map(|i| self.cluster.client_port(i))
            .collect()
    }
}

/// Waits until confd's plugin is connected to one of the servers on `ports` other than
/// `left`; the instant it was seen (polled every millisecond).
pub fn reconnected_elsewhere(confd: &mut Confd, ports: &[u16], left: usize) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let connected: Vec<u16> = confd
            .plugin_pids()
            .into_iter()
            .flat_map(established_remote_ports)
            .collect();
        if (0..ports.len()).any(|i| i != left && connected.contains(&ports[i])) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Which of the servers listening on `ports` confd's plugin is connected to, waiting up to 10 s
/// for it to be connected to exactly one (a connection to a server left a moment ago may still
/// be closing).
pub fn server_in_use(confd: &mut Confd, ports: &[u16]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let connected: Vec<u16> = confd
            .plugin_pids()
            .into_iter()
            .flat_map(established_remote_ports)
            .collect();
        let servers: Vec<usize> = (0..ports.len())
            .filter(|i| connected.contains(&ports[*i]))
            .collect();
        if let [one] = servers.as_slice() {
            return *one;
        }
        assert!(
            Instant::now() < deadline,
            "the plugin is connected to servers {servers:?}, not to exactly one\nstderr:\n{}",
            confd.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `key = value` through a running member of `cluster`; each try gets 1 s, since a put
/// proposed while the cluster elects a new leader can wait out etcd's 7 s request timeout.
pub fn put_through_cluster(
    rt: &tokio::runtime::Runtime,
    cluster: &EtcdCluster,
    key: &str,
    value: &str,
) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        for i in (0..cluster.len()).filter(|i| cluster.is_running(*i)) {
            let endpoint = cluster.endpoint(i);
            let put = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(1), async {
                    let mut client = etcd_client::Client::connect([endpoint], None).await?;
                    client.put(key, value, None).await
                })
                .await
            });
            match put {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no answer within 1s".to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("put {key}={value}: {last}");
}

/// `confd --watch --backend <backend> <args>` in `dir` on a one-template confdir written there:
/// `fo.conf` holds `v=<the value of /fo/v>`.
pub fn one_key_confd(dir: &Path, backend: &str, args: &[String]) -> Confd {
    let confdir = dir.join("confdir");
    std::fs::create_dir_all(confdir.join("conf.d")).expect("mkdir");
    std::fs::create_dir_all(confdir.join("templates")).expect("mkdir");
    std::fs::write(confdir.join("templates/fo.tmpl"), "v={{getv \"/v\"}}\n").expect("template");
    let dest = dir.join("fo.conf");
    std::fs::write(
        confdir.join("conf.d/fo.toml"),
        format!(
            "[template]\nsrc = \"fo.tmpl\"\ndest = \"{}\"\nprefix = \"/fo\"\nkeys = [\"/v\"]\n",
            dest.display()
        ),
    )
    .expect("resource");
    let mut cmd = Command::new(isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(dir)
        .arg("--confdir")
        .arg(&confdir)
        .args(["--backend", backend, "--watch", "--log-level", "debug"])
        .args(args);
    Confd::spawn(cmd, dir.join("stderr.log"))
}

/// Waits until the `fo.conf` at `path` holds `v=<value>`; the instant it was seen.
pub fn wait_for_value(path: &Path, value: &str, timeout: Duration) -> Option<Instant> {
    let want = format!("v={value}\n");
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|c| c == want) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `/fo/v = value` written through a running server of `ensemble` (a fresh session each time, so
/// the writer never waits on a server that was just killed).
pub fn zookeeper_set(
    rt: &tokio::runtime::Runtime,
    ensemble: &confd_test_support::ZookeeperEnsemble,
    value: &str,
) {
    let running: Vec<String> = (0..ensemble.len())
        .filter(|i| ensemble.is_running(*i))
        .map(|i| ensemble.address(i))
        .collect();
    rt.block_on(async {
        let client = zookeeper_client::Client::connect(&running.join(","))
            .await
            .expect("connect to the ensemble");
        zookeeper_put(&client, "/fo/v", value).await;
    });
}

/// `Pss:` of `/proc/<pid>/smaps_rollup` in KiB; None once the process is gone.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The largest PSS sum (KiB) of a process and its children seen so far, sampled on demand:
/// what the machine spends on confd and its plugin together.
#[derive(Debug, Default)]
pub struct PssPeak {
    pub host: u64,
    pub plugins: u64,
    children: Vec<u32>,
}

impl PssPeak {
    pub fn sample(&mut self, pid: u32) {
        for p in children_of(pid) {
            if !self.children.contains(&p) {
                self.children.push(p);
            }
        }
        let host = pss_kib(pid).unwrap_or(0);
        let plugins: u64 = self.children.iter().filter_map(|p| pss_kib(*p)).sum();
        if host + plugins > self.host + self.plugins {
            self.host = host;
            self.plugins = plugins;
        }
    }
    pub fn total(&self) -> u64 {
        self.host + self.plugins
    }
}

/// User plus system CPU time of `pid` in clock ticks (`/proc/<pid>/stat` utime + stime).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let utime: u64 = stat_field(pid, 11)?.parse().ok()?;
    let stime: u64 = stat_field(pid, 12)?.parse().ok()?;
    Some(utime + stime)
}

/// The start of every etcd bench: a fresh etcd, a current-thread runtime and a KV client on it;
/// `None` (after a SKIPPED line naming `bench`) when etcd is not installed.
pub fn bench_etcd(
    bench: &str,
) -> Option<(EtcdServer, tokio::runtime::Runtime, etcd_client::KvClient)> {
    let Some(server) = EtcdServer::start() else {
        println!("{bench}: SKIPPED (etcd is not installed)");
        return None;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let kv = rt
        .block_on(etcd_client::Client::connect([server.endpoint()], None))
        .expect("connect etcd")
        .kv_client();
    Some((server, rt, kv))
}

/// Puts `pairs` into etcd in transactions of 128 operations, etcd's default limit per transaction.
pub fn etcd_load(
    rt: &tokio::runtime::Runtime,
    kv: &mut etcd_client::KvClient,
    pairs: &[(String, String)],
) {
    for chunk in pairs.chunks(128) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|(k, v)| etcd_client::TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        rt.block_on(kv.txn(etcd_client::Txn::new().and_then(ops)))
            .expect("load txn");
    }
}

/// `etcd_debugging_mvcc_watcher_total` from etcd's `/metrics`: the watchers open right now.
pub fn etcd_watchers(server: &EtcdServer) -> Option<i64> {
    let port = server.address().rsplit(':').next()?.parse().ok()?;
    let (_, body) = confd_test_support::http_get(port, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}
