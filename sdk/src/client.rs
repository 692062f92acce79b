//! The host side of the plugin protocol: starts a plugin executable, checks its handshake, talks
//! to it over gRPC and stops it, exposing it as an ordinary [`Database`].
//!
//! It lives in the SDK rather than in the host crate for two reasons. The protobuf types must
//! stay private to one crate (the public API speaks only `Database`, `Error` and plain maps),
//! and both halves of the wire contract, [`crate::serve`] and this client, are then built from
//! the same generated code and tested against each other in one place.
//!
//! A `PluginClient` keeps its process and channel in a replaceable slot and remembers the last
//! `configure` map, so a later supervisor can restart a dead plugin and configure it again
//! behind the same handle.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::{oneshot, watch};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Response, Status};

use crate::child_env::ChildEnv;
use crate::handshake::{self, Address, HandshakeProblem};
use crate::hclog;
use crate::proto::goplugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::goplugin::grpc_stdio_client::GrpcStdioClient;
use crate::proto::goplugin::{self, stdio_data};
use crate::proto::v1::{self, database_client::DatabaseClient};
use crate::{Config, Database, DatabaseInfo, Error, ErrorKind};

/// Values as large as a whole store must fit in one message; Go hosts allow 2 GiB.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// The largest HTTP/2 frame a plugin may send us (HTTP/2's default is 16 KiB). A 64 KiB
/// `GetValuesStream` batch from an SDK plugin then comes in one DATA frame: the task reading
/// the answer wakes once per batch instead of once per 16 KiB. Go plugins keep their 16 KiB.
const MAX_FRAME: u32 = 1 << 20;
/// How many of the plugin's last stderr lines a start error quotes.
const STDERR_TAIL: usize = 10;

/// What to run as a plugin.
#[derive(Debug, Clone)]
pub struct PluginCommand {
    /// The plugin's name, used to tag its log lines (e.g. `etcd`).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Arguments (e.g. `internal-plugin database env` for a builtin).
    pub args: Vec<OsString>,
    /// Extra environment on top of the inherited one and the go-plugin variables (it wins
    /// over both).
    pub env: Vec<(OsString, OsString)>,
}

impl PluginCommand {
    /// Runs `program` without arguments.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> PluginCommand {
        PluginCommand {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> PluginCommand {
        self.args.push(arg.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> PluginCommand {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Timeouts for starting, calling and stopping a plugin.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// From spawn to a healthy connection (handshake line, dial, health check). Default 10 s.
    pub start_timeout: Duration,
    /// Deadline for `configure`, `get_values`, `info` and `ping`; `watch_prefix` has none
    /// because it blocks by design. Default none.
    pub call_timeout: Option<Duration>,
    /// How long the plugin gets to exit after `Shutdown` before SIGKILL. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            start_timeout: Duration::from_secs(10),
            call_timeout: None,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Why a plugin could not be started. Every message names the plugin executable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The executable could not be run at all.
    // The cause is part of the message, not a `source`, so `{:#}` does not print it twice.
    #[error("plugin {}: cannot run it: {cause}", .path.display())]
    Spawn { path: PathBuf, cause: io::Error },
    /// The process ended before printing its handshake line.
    #[error("plugin {}: exited before the handshake ({status}){}", .path.display(), stderr_note(.stderr))]
    ExitedBeforeHandshake {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    /// Stdout closed without a line, the process still running.
    #[error("plugin {}: closed its stdout without printing a handshake line{}", .path.display(), stderr_note(.stderr))]
    NoHandshake { path: PathBuf, stderr: String },
    /// No line within the start timeout.
    #[error("plugin {}: printed no handshake line within {timeout:?} (timeout while waiting for plugin to start)", .path.display())]
    HandshakeTimeout { path: PathBuf, timeout: Duration },
    /// A line that breaks the go-plugin rules.
    #[error("plugin {}: refused its handshake line {line:?}: {problem}", .path.display())]
    BadHandshake {
        path: PathBuf,
        line: String,
        problem: HandshakeProblem,
    },
    /// The advertised address did not accept a gRPC connection.
    #[error("plugin {}: cannot connect to {address}: {message}", .path.display())]
    Connect {
        path: PathBuf,
        address: String,
        message: String,
    },
    /// The health check (`grpc.health.v1.Health/Check` for service `plugin`) failed.
    #[error("plugin {}: health check failed: {message}", .path.display())]
    Health { path: PathBuf, message: String },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr said: {stderr}")
    }
}

impl PluginError {
    /// The plugin executable this error is about.
    pub fn path(&self) -> &Path {
        match self {
            PluginError::Spawn { path, .. }
            | PluginError::ExitedBeforeHandshake { path, .. }
            | PluginError::NoHandshake { path, .. }
            | PluginError::HandshakeTimeout { path, .. }
            | PluginError::BadHandshake { path, .. }
            | PluginError::Connect { path, .. }
            | PluginError::Health { path, .. } => path,
        }
    }
}

impl From<PluginError> for Error {
    fn from(err: PluginError) -> Error {
        let kind = match err {
            PluginError::HandshakeTimeout { .. } => ErrorKind::Timeout,
            _ => ErrorKind::PluginFailed,
        };
        Error::new(kind, err.to_string())
    }
}

/// How the process ended, as observed by the reaper task.
pub(crate) type ExitState = Option<Result<ExitStatus, String>>;

fn describe_exit(state: &Result<ExitStatus, String>) -> String {
    match state {
        Ok(status) => status.to_string(),
        Err(err) => format!("exit status unknown: {err}"),
    }
}

/// One running plugin process and its connection; a restart replaces the whole value.
struct Process {
    pid: u32,
    channel: Channel,
    address: Address,
    exit: watch::Receiver<ExitState>,
    /// Sending (or dropping) kills the process group; the reaper then records the exit.
    kill: Mutex<Option<oneshot::Sender<()>>>,
    shutting_down: AtomicBool,
    /// Set once the plugin answered `GetValuesStream` with Unimplemented but `GetValues`
    /// worked: it predates the streaming call, so it is not tried again.
    unary_values_only: AtomicBool,
}

impl Process {
    fn exited(&self) -> Option<Result<ExitStatus, String>> {
        self.exit.borrow().clone()
    }

    fn kill(&self) {
        if let Some(tx) = self.kill.lock().ok().and_then(|mut kill| kill.take()) {
            let _ = tx.send(());
        }
    }

    async fn wait_exit(&self) -> Result<ExitStatus, String> {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(state) => state.clone().unwrap_or_else(|| Err("not reaped".into())),
            Err(_) => Err("the reaper task is gone".into()),
        }
    }
}

/// A plugin process seen as a [`Database`].
///
/// Dropping it kills the plugin; call [`PluginClient::shutdown`] for the polite way.
pub struct PluginClient {
    command: PluginCommand,
    options: ClientOptions,
    slot: Arc<RwLock<Arc<Process>>>,
    last_config: Mutex<Option<Config>>,
}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient")
            .field("name", &self.command.name)
            .field("program", &self.command.program)
            .field("pid", &self.pid())
            .finish()
    }
}

impl PluginClient {
    /// Starts the plugin and returns once it answered a health check.
    ///
    /// On any error the child is killed and reaped before returning.
    pub async fn start(
        command: PluginCommand,
        options: ClientOptions,
    ) -> Result<PluginClient, PluginError> {
        let process = launch(&command, &options).await?;
        Ok(PluginClient {
            command,
            options,
            slot: Arc::new(RwLock::new(Arc::new(process))),
            last_config: Mutex::new(None),
        })
    }

    /// One `WatchPrefix` call; with `want_values` the plugin may send the keys' values along.
    async fn watch(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
        want_values: bool,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        let process = self.current();
        let mut client = self.database(&process);
        let request = v1::WatchPrefixRequest {
            prefix: prefix.to_string(),
            keys: keys.to_vec(),
            wait_index,
            want_values,
        };
        // Dropping this future drops the response stream, which cancels the call on the plugin.
        let mut stream = self
            .finish(&process, "WatchPrefix", None, client.watch_prefix(request))
            .await?;
        match stream.message().await {
            Ok(Some(response)) => Ok((
                response.index,
                response.has_values.then_some(response.values),
            )),
            Ok(None) => Err(Error::internal(format!(
                "plugin {}: WatchPrefix ended without sending an index",
                self.path_display()
            ))),
            Err(status) => Err(self.translate(&process, "WatchPrefix", status).await),
        }
    }

    fn current(&self) -> Arc<Process> {
        match self.slot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The plugin's name as given in the command.
    pub fn name(&self) -> &str {
        &self.command.name
    }

    /// The plugin executable.
    pub fn program(&self) -> &Path {
        &self.command.program
    }

    /// The process id of the current plugin process.
    pub fn pid(&self) -> Option<u32> {
        Some(self.current().pid)
    }

    /// Whether the current plugin process is still running.
    pub fn is_alive(&self) -> bool {
        self.current().exited().is_none()
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.current().exited().and_then(Result::ok)
    }

    /// The last configuration applied successfully, for re-applying after a restart.
    pub fn last_config(&self) -> Option<Config> {
        self.last_config.lock().ok().and_then(|c| c.clone())
    }

    /// The Unix socket path or TCP address the plugin listens on.
    pub fn address(&self) -> String {
        self.current().address.to_string()
    }

    /// go-plugin's `Ping`: `grpc.health.v1.Health/Check` for service `plugin`.
    pub async fn ping(&self) -> Result<(), Error> {
        let process = self.current();
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(process.channel.clone());
        self.finish(
            &process,
            "Ping",
            self.options.call_timeout,
            health.check(tonic_health::pb::HealthCheckRequest {
                service: "plugin".into(),
            }),
        )
        .await
        .map(|_| ())
    }

    /// Stops the plugin: `Shutdown` (errors ignored), wait up to the grace period, SIGKILL,
    /// reap. Safe to call more than once.
    pub async fn shutdown(&self) {
        let process = self.current();
        if !process.shutting_down.swap(true, Ordering::SeqCst) && process.exited().is_none() {
            let mut controller = GrpcControllerClient::new(process.channel.clone());
            let grace = self.options.shutdown_grace;
            let _ = tokio::time::timeout(grace, controller.shutdown(goplugin::Empty {})).await;
            drop(controller);
            if tokio::time::timeout(grace, process.wait_exit())
                .await
                .is_err()
            {
                tracing::warn!(plugin = %self.command.name, "plugin failed to exit gracefully; killing it");
            }
        }
        process.kill();
        let status = process.wait_exit().await;
        tracing::debug!(plugin = %self.command.name, status = %describe_exit(&status), "plugin stopped");
    }

    fn path_display(&self) -> std::path::Display<'_> {
        self.command.program.display()
    }

    /// Awaits a unary call under the optional deadline and turns failures into errors that name
    /// the plugin.
    async fn finish<T>(
        &self,
        process: &Process,
        method: &str,
        timeout: Option<Duration>,
        call: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Error> {
        if let Some(exit) = process.exited() {
            return Err(Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {} is not running ({}); cannot call {method}",
                    self.path_display(),
                    describe_exit(&exit)
                ),
            ));
        }
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "plugin {}: {method} did not answer within {limit:?}",
                            self.path_display()
                        ),
                    ));
                }
            },
            None => call.await,
        };
        match result {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.translate(process, method, status).await),
        }
    }

    /// Tells a plugin's own error apart from a dead or unreachable plugin.
    async fn translate(&self, process: &Process, method: &str, status: Status) -> Error {
        let transport = std::error::Error::source(&status).is_some();
        let died = if transport || process.exited().is_some() {
            // The connection usually breaks a moment before the exit is reaped.
            tokio::time::timeout(Duration::from_secs(1), process.wait_exit())
                .await
                .ok()
        } else {
            None
        };
        match died {
            Some(exit) => Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {} died during {method} ({})",
                    self.path_display(),
                    describe_exit(&exit)
                ),
            ),
            None if transport => Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {}: lost the connection during {method}: {}",
                    self.path_display(),
                    status.message()
                ),
            ),
            None => Error::from(status),
        }
    }

    fn database(&self, process: &Process) -> DatabaseClient<Channel> {
        DatabaseClient::new(process.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

#[async_trait::async_trait]
impl Database for PluginClient {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let process = self.current();
        let mut client = self.database(&process);
        let request = v1::ConfigureRequest {
            config: config.clone(),
        };
        self.finish(
            &process,
            "Configure",
            self.options.call_timeout,
            client.configure(request),
        )
        .await?;
        if let Ok(mut last) = self.last_config.lock() {
            *last = Some(config);
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let process = self.current();
        let request = v1::GetValuesRequest {
            keys: keys.to_vec(),
        };
        let timeout = self.options.call_timeout;
        let entries = if process.unary_values_only.load(Ordering::Relaxed) {
            let mut client = self.database(&process);
            let call = client.get_values(request);
            self.finish(&process, "GetValues", timeout, call)
                .await?
                .into_entries()
        } else {
            let call = get_values_stream(self.database(&process), request.clone());
            match self
                // Named like the unary call: which of the two carried the read is a detail
                // operators need not tell apart.
                .finish(&process, "GetValues", timeout, call)
                .await
            {
                Err(err) if err.kind() == ErrorKind::Unimplemented => {
                    // Most likely a plugin built before GetValuesStream existed; unless
                    // GetValues answers Unimplemented too (then it was the database's own
                    // answer), use GetValues from now on.
                    let mut client = self.database(&process);
                    let call = client.get_values(request);
                    let unary = self.finish(&process, "GetValues", timeout, call).await;
                    if !matches!(&unary, Err(e) if e.kind() == ErrorKind::Unimplemented) {
                        tracing::debug!(plugin = %self.command.name, "plugin does not offer GetValuesStream; using GetValues");
                        process.unary_values_only.store(true, Ordering::Relaxed);
                    }
                    unary?.into_entries()
                }
                other => other?,
            }
        };
        // Bulk-built: the entries arrive sorted from our plugins, and a key repeated later in
        // the list replaces the earlier one, as in a protobuf map.
        Ok(entries.into_iter().collect())
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        Ok(self.watch(prefix, keys, wait_index, false).await?.0)
    }

    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        self.watch(prefix, keys, wait_index, true).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        let process = self.current();
        let mut client = self.database(&process);
        match self
            .finish(
                &process,
                "Info",
                self.options.call_timeout,
                client.info(v1::InfoRequest {}),
            )
            .await
        {
            Ok(info) => Ok(DatabaseInfo {
                name: info.name,
                version: info.version,
                capabilities: info.capabilities,
            }),
            Err(err) if err.kind() == ErrorKind::Unimplemented => Err(Error::unimplemented(
                format!("plugin {} does not offer Info", self.path_display()),
            )),
            Err(err) => Err(err),
        }
    }
}

/// `Database/GetValuesStream`, all batches joined in order into one list. The generated
/// client carries the values in `crate::values::GetValuesResponse` (build.rs maps the message
/// there), so the method paths come from the .proto while the entries are encoded and decoded
/// by hand.
async fn get_values_stream(
    mut client: DatabaseClient<Channel>,
    request: v1::GetValuesRequest,
) -> Result<Response<Vec<(String, String)>>, Status> {
    let mut stream = client.get_values_stream(request).await?.into_inner();
    // The first batch's list is kept and grows (a large one in place, by mremap) instead of
    // every batch being copied into a new list at the end.
    let mut entries = Vec::new();
    while let Some(batch) = stream.message().await? {
        let mut batch = batch.into_entries();
        if entries.is_empty() {
            entries = batch;
        } else {
            entries.append(&mut batch);
        }
    }
    Ok(Response::new(entries))
}

/// The last stderr lines, quoted in start errors.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

fn tail_text(tail: &StderrTail) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}

/// Spawns, handshakes, connects and health-checks one plugin process.
async fn launch(command: &PluginCommand, options: &ClientOptions) -> Result<Process, PluginError> {
    let path = command.program.clone();
    let deadline = tokio::time::Instant::now() + options.start_timeout;
    let mut child = build_command(command)
        .and_then(|mut cmd| cmd.spawn())
        .map_err(|cause| PluginError::Spawn {
            path: path.clone(),
            cause,
        })?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let (exit_tx, exit_rx) = watch::channel::<ExitState>(None);
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let socket: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    tokio::spawn(reap(child, pid, kill_rx, exit_tx, socket.clone()));
    let process_guard = KillGuard(Some(kill_tx));

    let tail: StderrTail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr_task = stderr
        .map(|stderr| tokio::spawn(forward_stderr(command.name.clone(), stderr, tail.clone())));

    let result = handshake_and_connect(
        command,
        &path,
        stdout,
        exit_rx.clone(),
        deadline,
        options.start_timeout,
    )
    .await;
    match result {
        Ok((channel, address)) => {
            if let (Address::Unix(path), Ok(mut slot)) = (&address, socket.lock()) {
                *slot = Some(path.clone());
            }
            spawn_stdio_forwarder(command.name.clone(), channel.clone());
            Ok(Process {
                pid,
                channel,
                address,
                exit: exit_rx,
                kill: Mutex::new(process_guard.disarm()),
                shutting_down: AtomicBool::new(false),
                unary_values_only: AtomicBool::new(false),
            })
        }
        Err(mut err) => {
            drop(process_guard);
            let mut exit = exit_rx.clone();
            let _ = exit.wait_for(Option::is_some).await;
            // Give the stderr reader a moment to collect the plugin's last words.
            if let Some(task) = stderr_task {
                let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
            }
            let said = tail_text(&tail);
            match &mut err {
                PluginError::ExitedBeforeHandshake { stderr, .. }
                | PluginError::NoHandshake { stderr, .. } => *stderr = said,
                _ => {}
            }
            Err(err)
        }
    }
}

/// Removes a socket directory our SDK created, when the plugin could not (it was killed or
/// crashed). Only our layout (`<private dir>/plugin.sock`) is touched: a Go plugin's socket
/// sits directly in /tmp.
fn remove_stale_socket(path: &Path) {
    if path.file_name().is_some_and(|n| n == "plugin.sock") && path.exists() {
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Kills the child when dropped, unless disarmed once the plugin is up.
struct KillGuard(Option<oneshot::Sender<()>>);

impl KillGuard {
    fn disarm(mut self) -> Option<oneshot::Sender<()>> {
        self.0.take()
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn build_command(command: &PluginCommand) -> io::Result<tokio::process::Command> {
    let mut set: Vec<(OsString, OsString)> = vec![
        (
            handshake::MAGIC_COOKIE_KEY.into(),
            handshake::MAGIC_COOKIE_VALUE.into(),
        ),
        ("PLUGIN_PROTOCOL_VERSIONS".into(), offered_versions().into()),
        ("PLUGIN_MIN_PORT".into(), "10000".into()),
        ("PLUGIN_MAX_PORT".into(), "25000".into()),
    ];
    set.extend(command.env.iter().cloned());
    // Without TLS or a multiplexed connection on offer, the plugin must not expect them.
    let env = ChildEnv::new(&set, &["PLUGIN_CLIENT_CERT", "PLUGIN_MULTIPLEX_GRPC"])?;
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C in the terminal reaches the host only, which then
        // shuts the plugin down in order; and we can kill whatever the plugin itself started.
        .process_group(0);
    in_child(&mut cmd, env);
    Ok(cmd)
}

/// What the forked child does before exec: take its environment (see `ChildEnv`) and, on
/// Linux, arrange to die with the host.
#[allow(unsafe_code)]
fn in_child(cmd: &mut tokio::process::Command, env: ChildEnv) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. Installing the prepared
    // environment is one pointer store; prctl and getppid are async-signal-safe, and the
    // io::Errors are built without allocating. The death signal fires when the spawning thread
    // ends; tokio spawns from runtime threads that live as long as the runtime, and the runtime
    // ending kills the plugin anyway (kill_on_drop).
    unsafe {
        cmd.pre_exec(move || {
            env.install();
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host may have died between fork and prctl; then nobody would kill us.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            let _ = parent;
            Ok(())
        });
    }
}

fn offered_versions() -> String {
    handshake::APP_PROTOCOL_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Owns the child: records its exit, or kills its process group on request (or when the
/// client is gone) and then records the exit.
async fn reap(
    mut child: tokio::process::Child,
    pid: u32,
    kill: oneshot::Receiver<()>,
    exit: watch::Sender<ExitState>,
    socket: Arc<Mutex<Option<PathBuf>>>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            if let Ok(pgid) = i32::try_from(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
            child.wait().await
        }
    };
    if let Some(path) = socket.lock().ok().and_then(|mut s| s.take()) {
        remove_stale_socket(&path);
    }
    let _ = exit.send(Some(status.map_err(|e| e.to_string())));
}

/// Waits for the reaper's verdict; owned, so no lock guard is held across an await.
async fn wait_exited(exit: &mut watch::Receiver<ExitState>) -> ExitState {
    exit.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|state| state.clone())
}

async fn handshake_and_connect(
    command: &PluginCommand,
    path: &Path,
    stdout: Option<tokio::process::ChildStdout>,
    mut exit: watch::Receiver<ExitState>,
    deadline: tokio::time::Instant,
    start_timeout: Duration,
) -> Result<(Channel, Address), PluginError> {
    let stdout = stdout.ok_or_else(|| PluginError::NoHandshake {
        path: path.to_path_buf(),
        stderr: String::new(),
    })?;
    // The read runs in its own task so that noticing the exit first loses no line.
    let (line_tx, mut line_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line).await;
        let done = line_tx.send((read, String::from_utf8_lossy(&line).into_owned()));
        if done.is_ok() {
            // After the handshake stdout is drained and discarded, like go-plugin does.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        }
    });

    let exited = |state: &ExitState| {
        state
            .as_ref()
            .map(describe_exit)
            .unwrap_or_else(|| "unknown status".into())
    };
    let timed_out = || PluginError::HandshakeTimeout {
        path: path.to_path_buf(),
        timeout: start_timeout,
    };
    let line = tokio::select! {
        biased;
        read = &mut line_rx => read,
        state = wait_exited(&mut exit) => {
            // A line printed just before exiting is still in the pipe.
            match tokio::time::timeout(Duration::from_millis(200), &mut line_rx).await {
                Ok(read) => read,
                Err(_) => {
                    return Err(PluginError::ExitedBeforeHandshake {
                        path: path.to_path_buf(),
                        status: exited(&state),
                        stderr: String::new(),
                    });
                }
            }
        }
        () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
    };
    let line = match line {
        Ok((Ok(n), line)) if n > 0 => line,
        _ => {
            // EOF: usually the process is exiting; say how, if we learn it soon.
            let state = tokio::time::timeout(Duration::from_secs(1), wait_exited(&mut exit))
                .await
                .unwrap_or(None);
            return Err(match state {
                Some(_) => PluginError::ExitedBeforeHandshake {
                    path: path.to_path_buf(),
                    status: exited(&state),
                    stderr: String::new(),
                },
                None => PluginError::NoHandshake {
                    path: path.to_path_buf(),
                    stderr: String::new(),
                },
            });
        }
    };
    let hs = handshake::parse(&line, handshake::APP_PROTOCOL_VERSIONS).map_err(|problem| {
        PluginError::BadHandshake {
            path: path.to_path_buf(),
            line: line.trim_end_matches(['\r', '\n']).to_string(),
            problem,
        }
    })?;
    tracing::debug!(plugin = %command.name, address = %hs.address, "plugin handshake");

    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let channel = tokio::time::timeout(remaining, connect(&hs.address, remaining))
        .await
        .map_err(|_| timed_out())?
        .map_err(|message| PluginError::Connect {
            path: path.to_path_buf(),
            address: hs.address.to_string(),
            message,
        })?;

    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = health.check(tonic_health::pb::HealthCheckRequest {
        service: "plugin".into(),
    });
    match tokio::time::timeout(remaining, check).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(status)) => {
            return Err(PluginError::Health {
                path: path.to_path_buf(),
                message: format!("{:?}: {}", status.code(), status.message()),
            });
        }
        Ok(Ok(_)) => {}
    }
    Ok((channel, hs.address))
}

pub(crate) async fn connect(address: &Address, timeout: Duration) -> Result<Channel, String> {
    match address {
        Address::Unix(path) => {
            let path = path.clone();
            // The URI is a placeholder: the connector below ignores it and dials the socket.
            Endpoint::from_static("http://[::]:50051")
                .connect_timeout(timeout)
                .max_frame_size(MAX_FRAME)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| transport_message(&e))
        }
        Address::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .max_frame_size(MAX_FRAME)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| transport_message(&e)),
    }
}

fn transport_message(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Re-emits a plugin's stderr lines as `tracing` events tagged `plugin = <name>`.
async fn forward_stderr(name: String, stderr: impl AsyncRead + Unpin, tail: StderrTail) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            continue;
        }
        let line = hclog::parse_line(text);
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.message.clone());
        }
        emit(&name, &line);
    }
}

fn emit(name: &str, line: &hclog::LogLine) {
    macro_rules! at {
        ($level:expr) => {
            if line.fields.is_empty() {
                tracing::event!(target: "confd::plugin", $level, plugin = %name, "{}", line.message)
            } else {
                tracing::event!(target: "confd::plugin", $level, plugin = %name, fields = %line.fields, "{}", line.message)
            }
        };
    }
    match line.level {
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::ERROR),
    }
}

/// Newer Go plugins send their Go-level stdout/stderr through `GRPCStdio`; without a reader they
/// stall once a pipe fills. Ours send nothing; Go 1.0.1 plugins lack the service.
pub(crate) fn spawn_stdio_forwarder(name: String, channel: Channel) {
    tokio::spawn(async move {
        let mut client = GrpcStdioClient::new(channel);
        let mut stream = match client.stream_stdio(()).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                tracing::debug!(plugin = %name, code = ?status.code(), "plugin does not stream stdio");
                return;
            }
        };
        while let Ok(Some(chunk)) = stream.message().await {
            let channel = match chunk.channel() {
                stdio_data::Channel::Stdout => "stdout",
                _ => "stderr",
            };
            for line in String::from_utf8_lossy(&chunk.data).lines() {
                tracing::debug!(target: "confd::plugin", plugin = %name, channel, "{line}");
            }
        }
    });
}

#[cfg(any(test, feature = "testing"))]
impl PluginClient {
    /// A client over an already connected channel with no process behind it, for talking to
    /// in-process servers (`crate::testing`, and this module's tests). `exit` stands in for the
    /// reaper: it reports when the server stopped.
    pub(crate) fn attached(
        command: PluginCommand,
        channel: Channel,
        address: Address,
        exit: watch::Receiver<ExitState>,
    ) -> PluginClient {
        PluginClient {
            command,
            options: ClientOptions::default(),
            slot: Arc::new(RwLock::new(Arc::new(Process {
                pid: 0,
                channel,
                address,
                exit,
                kill: Mutex::new(None),
                shutting_down: AtomicBool::new(false),
                unary_values_only: AtomicBool::new(false),
            }))),
            last_config: Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    use futures_util::Stream;
    use tonic::{Code, Request};

    use super::*;
    use crate::proto::v1::database_server::{self, DatabaseServer};
    use crate::values::GetValuesResponse;

    fn assert_send<T: Send>(_: &T) {}

    type Batch = Result<Vec<(&'static str, &'static str)>, (Code, &'static str)>;

    fn status((code, message): (Code, &'static str)) -> Status {
        Status::new(code, message)
    }

    fn response(pairs: &[(&str, &str)]) -> GetValuesResponse {
        GetValuesResponse::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A plugin whose answers are scripted: `stream: None` is a plugin built before
    /// `GetValuesStream` existed.
    struct Scripted {
        stream: Option<Vec<Batch>>,
        unary: Batch,
        stream_calls: Arc<AtomicUsize>,
        unary_calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl database_server::Database for Scripted {
        async fn configure(
            &self,
            _: Request<v1::ConfigureRequest>,
        ) -> Result<Response<v1::ConfigureResponse>, Status> {
            Ok(Response::new(v1::ConfigureResponse {}))
        }

        async fn get_values(
            &self,
            _: Request<v1::GetValuesRequest>,
        ) -> Result<Response<GetValuesResponse>, Status> {
            self.unary_calls.fetch_add(1, Ordering::SeqCst);
            match &self.unary {
                Ok(pairs) => Ok(Response::new(response(pairs))),
                Err(err) => Err(status(*err)),
            }
        }

        type WatchPrefixStream =
            Pin<Box<dyn Stream<Item = Result<v1::WatchPrefixResponse, Status>> + Send + 'static>>;

        /// Answers at once with index 7, bringing the unary values along when asked to.
        async fn watch_prefix(
            &self,
            request: Request<v1::WatchPrefixRequest>,
        ) -> Result<Response<Self::WatchPrefixStream>, Status> {
            let values = match (&self.unary, request.into_inner().want_values) {
                (Ok(pairs), true) => Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                _ => None,
            };
            let answer = v1::WatchPrefixResponse {
                index: 7,
                has_values: values.is_some(),
                values: values.unwrap_or_default(),
            };
            Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(
                answer,
            )]))))
        }

        async fn info(
            &self,
            _: Request<v1::InfoRequest>,
        ) -> Result<Response<v1::InfoResponse>, Status> {
            Err(Status::unimplemented("no info"))
        }

        type GetValuesStreamStream =
            Pin<Box<dyn Stream<Item = Result<GetValuesResponse, Status>> + Send + 'static>>;

        async fn get_values_stream(
            &self,
            _: Request<v1::GetValuesRequest>,
        ) -> Result<Response<Self::GetValuesStreamStream>, Status> {
            self.stream_calls.fetch_add(1, Ordering::SeqCst);
            let Some(batches) = &self.stream else {
                // what tonic and grpc-go answer for a method the server does not know
                return Err(Status::unimplemented(
                    "unknown method GetValuesStream for service confd.plugin.v1.Database",
                ));
            };
            let batches: Vec<Result<GetValuesResponse, Status>> = batches
                .iter()
                .map(|batch| match batch {
                    Ok(pairs) => Ok(response(pairs)),
                    Err(err) => Err(status(*err)),
                })
                .collect();
            Ok(Response::new(Box::pin(futures_util::stream::iter(batches))))
        }
    }

    struct Served {
        client: PluginClient,
        stream_calls: Arc<AtomicUsize>,
        unary_calls: Arc<AtomicUsize>,
        _dir: tempfile::TempDir,
    }

    async fn serve(stream: Option<Vec<Batch>>, unary: Batch) -> Served {
        let stream_calls = Arc::new(AtomicUsize::new(0));
        let unary_calls = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plugin.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let service = DatabaseServer::new(Scripted {
            stream,
            unary,
            stream_calls: stream_calls.clone(),
            unary_calls: unary_calls.clone(),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let address = Address::Unix(path);
        let channel = connect(&address, Duration::from_secs(5))
            .await
            .expect("connect");
        Served {
            client: PluginClient::attached(
                PluginCommand::new("scripted", "/scripted"),
                channel,
                address,
                watch::channel::<ExitState>(None).1,
            ),
            stream_calls,
            unary_calls,
            _dir: dir,
        }
    }

    fn values_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        values(pairs)
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn stream_batches_join_in_order_and_a_repeated_key_keeps_its_last_value() {
        let served = serve(
            Some(vec![
                Ok(vec![("/a", "1"), ("/b", "old")]),
                Ok(vec![("/b", "new"), ("/c", "3")]),
            ]),
            Err((Code::Internal, "unary must not be called")),
        )
        .await;
        let got = served.client.get_values(&["/".into()]).await.expect("get");
        assert_eq!(got, values(&[("/a", "1"), ("/b", "new"), ("/c", "3")]));
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1);
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn values_come_with_a_watch_answer_only_when_asked_for() {
        let served = serve(
            Some(vec![Ok(vec![("/s", "read")])]),
            Ok(vec![("/w", "watched")]),
        )
        .await;
        let keys = vec!["/".to_string()];
        let (index, values) = served
            .client
            .watch_prefix_values("/", &keys, 3)
            .await
            .expect("watch");
        assert_eq!(index, 7);
        assert_eq!(values, Some(values_of(&[("/w", "watched")])));
        // a plain watch does not ask, and reads stay reads
        assert_eq!(
            served
                .client
                .watch_prefix("/", &keys, 7)
                .await
                .expect("watch"),
            7
        );
        let read = served.client.get_values(&keys).await.expect("get");
        assert_eq!(read, values_of(&[("/s", "read")]));
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1);
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_stream_without_batches_is_an_empty_result() {
        let served = serve(Some(vec![]), Err((Code::Internal, "unused"))).await;
        let got = served.client.get_values(&["/".into()]).await.expect("get");
        assert!(got.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn an_error_mid_stream_fails_the_whole_call() {
        let served = serve(
            Some(vec![
                Ok(vec![("/a", "1")]),
                Err((Code::Unavailable, "store went away")),
                Ok(vec![("/b", "2")]),
            ]),
            Ok(vec![("/unary", "must not be used")]),
        )
        .await;
        let err = served
            .client
            .get_values(&["/".into()])
            .await
            .expect_err("no partial result");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("store went away"), "{err}");
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_plugin_without_the_stream_is_read_with_get_values_from_then_on() {
        let served = serve(None, Ok(vec![("/a", "1"), ("/b", "2")])).await;
        for _ in 0..3 {
            let got = served.client.get_values(&["/".into()]).await.expect("get");
            assert_eq!(got, values(&[("/a", "1"), ("/b", "2")]));
        }
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1, "asked once");
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unimplemented_from_the_database_itself_is_not_taken_for_an_old_plugin() {
        let served = serve(
            Some(vec![Err((Code::Unimplemented, "reads are not offered"))]),
            Err((Code::Unimplemented, "reads are not offered")),
        )
        .await;
        for _ in 0..2 {
            let err = served
                .client
                .get_values(&["/".into()])
                .await
                .expect_err("unimplemented");
            assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
        }
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 2, "still tried");
    }

    /// What the prepared environment (`ChildEnv`) does once installed in a real child.
    #[tokio::test]
    async fn a_plugin_inherits_the_environment_under_the_go_plugin_variables() {
        let command = PluginCommand::new("env", "/usr/bin/env")
            .env("PLUGIN_MIN_PORT", "20000")
            .env("CONFD_TEST_EXTRA", "a=b");
        let output = build_command(&command)
            .expect("builds")
            .output()
            .await
            .expect("runs env");
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let path = format!("PATH={}", std::env::var("PATH").expect("PATH is set"));
        let cookie = format!(
            "{}={}",
            handshake::MAGIC_COOKIE_KEY,
            handshake::MAGIC_COOKIE_VALUE
        );
        for want in [
            path.as_str(),
            cookie.as_str(),
            "PLUGIN_MIN_PORT=20000",
            "PLUGIN_MAX_PORT=25000",
            "CONFD_TEST_EXTRA=a=b",
        ] {
            assert!(lines.contains(&want), "{want} missing in {lines:?}");
        }
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("PLUGIN_MIN_PORT="))
                .count(),
            1,
            "{lines:?}"
        );
    }

    #[test]
    fn client_futures_are_send() {
        // The host spawns these on a multi-threaded runtime.
        let start = PluginClient::start(
            PluginCommand::new("x", "/nonexistent"),
            ClientOptions::default(),
        );
        assert_send(&start);
        fn with_client(client: &PluginClient) {
            assert_send(&client.shutdown());
            assert_send(&client.ping());
            assert_send(&client.get_values(&[]));
            assert_send(&client.watch_prefix("/", &[], 0));
        }
        let _ = with_client;
    }
}
