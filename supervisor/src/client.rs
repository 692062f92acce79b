//! A plugin process seen as a [`Database`], kept alive: the handle the host holds. Calls go to the
//! current process; a supervisor task restarts it when it exits, misses a call deadline or fails
//! a health probe, and the next call goes to the new one, configured again with the last
//! settings. Calls made while it is down wait a little for it, then fail naming the plugin: a
//! caller (the core) then leaves its files alone and retries on its own schedule.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use confd_sdk::{Config, Database, DatabaseInfo, Error, ErrorKind, RemoteDatabase};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::PluginError;
use crate::process::{Process, describe_exit, launch};
use crate::transport::Transport;

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

/// Something worth counting that happened to a supervised plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    /// The plugin answers (after start or after a restart).
    Up,
    /// The plugin is down and will be started again; `cause` is one of `exited`, `signal`,
    /// `deadline`, `unhealthy`, `start-failed`.
    Restarting { cause: &'static str },
}

/// Receives [`PluginEvent`]s (the host counts them as metrics).
pub type EventSink = Arc<dyn Fn(&str, &PluginEvent) + Send + Sync>;

/// Timeouts for starting, calling and stopping a plugin, and whether it is kept alive.
#[derive(Clone)]
pub struct ClientOptions {
    /// From spawn to a healthy connection (handshake line, dial, health check). Default 10 s.
    pub start_timeout: Duration,
    /// Deadline for `configure`, `get_values`, `info` and `ping`; `watch_prefix` has none
    /// because it blocks by design (probes watch over it instead). A supervised plugin that
    /// misses it is killed and restarted. Default none.
    pub call_timeout: Option<Duration>,
    /// How long the plugin gets to exit after `Shutdown` before SIGKILL. Default 2 s.
    pub shutdown_grace: Duration,
    /// Restart the plugin when it exits, misses a deadline or fails a probe. Off by default (a
    /// one-shot run treats a dead plugin as an error for its resources).
    pub restart: bool,
    /// While a watch is open, how often a supervised plugin is asked the health service; it must
    /// answer within `call_timeout` (or this interval when there is none). Default 5 s.
    pub probe_interval: Duration,
    /// The longest wait between two restarts (the backoff doubles up to it). Default 30 s.
    pub max_restart_delay: Duration,
    /// Told about starts and restarts.
    pub events: Option<EventSink>,
    /// Unix sockets (default) or TCP with AutoMTLS.
    pub transport: Transport,
    /// The host's private socket directory ([`crate::SocketDir`]), passed to plugins as
    /// `PLUGIN_UNIX_SOCKET_DIR`. Default none: plugins pick `TMPDIR` or /tmp.
    pub socket_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("start_timeout", &self.start_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("restart", &self.restart)
            .field("probe_interval", &self.probe_interval)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            start_timeout: Duration::from_secs(10),
            call_timeout: None,
            shutdown_grace: Duration::from_secs(2),
            restart: false,
            probe_interval: Duration::from_secs(5),
            max_restart_delay: Duration::from_secs(30),
            events: None,
            transport: Transport::Unix,
            socket_dir: None,
        }
    }
}

impl ClientOptions {
    /// The defaults with restarts on and a 30 s call deadline (confd's `--backend-timeout`).
    pub fn supervised() -> ClientOptions {
        ClientOptions {
            restart: true,
            call_timeout: Some(Duration::from_secs(30)),
            ..ClientOptions::default()
        }
    }
}

/// The process a call goes to.
struct Running {
    process: Process,
    remote: RemoteDatabase,
    started: Instant,
    /// Set by the first call that succeeds: a plugin that served its caller is not crash-looping,
    /// so its next restart starts again from the shortest delay.
    answered: AtomicBool,
}

/// What the handle and the supervisor task share.
struct Inner {
    command: PluginCommand,
    options: ClientOptions,
    /// The current process; `None` while a supervised plugin is being restarted.
    current: RwLock<Option<Arc<Running>>>,
    /// Bumped whenever `current` changes, so waiting calls wake.
    generation: watch::Sender<u64>,
    /// Why the plugin is down, for the errors of calls made meanwhile.
    down: Mutex<Option<String>>,
    /// Set when we kill the process ourselves, so the restart names the real cause.
    kill_cause: Mutex<Option<(&'static str, String)>>,
    last_config: Mutex<Option<Config>>,
    watches_open: AtomicUsize,
    restarts: AtomicU64,
    stopping: AtomicBool,
    stop: CancellationToken,
}

/// A plugin process seen as a [`Database`], restarted when it dies (with
/// [`ClientOptions::restart`]).
///
/// Dropping it kills the plugin; call [`PluginClient::shutdown`] for the polite way.
pub struct PluginClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient")
            .field("name", &self.inner.command.name)
            .field("program", &self.inner.command.program)
            .field("pid", &self.pid())
            .finish()
    }
}

impl Drop for PluginClient {
    fn drop(&mut self) {
        // Ends the supervisor task; the processes die with the last reference to them.
        self.inner.stop.cancel();
    }
}

impl PluginClient {
    /// Starts the plugin and returns once it answered a health check; with
    /// [`ClientOptions::restart`] a supervisor task keeps it running from then on.
    ///
    /// On any error the child is killed and reaped before returning.
    pub async fn start(
        command: PluginCommand,
        options: ClientOptions,
    ) -> Result<PluginClient, PluginError> {
        let (process, remote) = launch(&command, &options).await?;
        let inner = Arc::new(Inner {
            command,
            options,
            current: RwLock::new(Some(Arc::new(Running {
                process,
                remote,
                started: Instant::now(),
                answered: AtomicBool::new(false),
            }))),
            generation: watch::channel(0).0,
            down: Mutex::new(None),
            kill_cause: Mutex::new(None),
            last_config: Mutex::new(None),
            watches_open: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        inner.event(&PluginEvent::Up);
        if inner.options.restart {
            tokio::spawn(supervise(inner.clone()));
        }
        Ok(PluginClient { inner })
    }

    /// A plugin whose first start failed with `cause`: calls fail naming the cause and, with
    /// [`ClientOptions::restart`], the supervisor keeps starting it (with the restart backoff)
    /// and applies `config` once it is up, so the rest of a run need not wait for it.
    pub fn not_started(
        command: PluginCommand,
        options: ClientOptions,
        config: Config,
        cause: String,
    ) -> PluginClient {
        let inner = Arc::new(Inner {
            command,
            options,
            current: RwLock::new(None),
            generation: watch::channel(0).0,
            down: Mutex::new(Some(cause)),
            kill_cause: Mutex::new(None),
            last_config: Mutex::new(Some(config)),
            watches_open: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        if inner.options.restart {
            tokio::spawn(supervise(inner.clone()));
        }
        PluginClient { inner }
    }

    /// The plugin's name as given in the command.
    pub fn name(&self) -> &str {
        &self.inner.command.name
    }

    /// The plugin executable.
    pub fn program(&self) -> &Path {
        &self.inner.command.program
    }

    /// The process id of the current plugin process (none while it is being restarted).
    pub fn pid(&self) -> Option<u32> {
        self.inner.running().map(|r| r.process.pid)
    }

    /// Whether a plugin process is running now.
    pub fn is_alive(&self) -> bool {
        self.inner
            .running()
            .is_some_and(|r| r.process.exited().is_none())
    }

    /// How the current process ended, once it has (a supervised plugin is soon replaced).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner
            .running()
            .and_then(|r| r.process.exited())
            .and_then(Result::ok)
    }

    /// How many times the supervisor restarted the plugin.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::SeqCst)
    }

    /// The last configuration applied successfully, applied again after a restart.
    pub fn last_config(&self) -> Option<Config> {
        self.inner.last_config.lock().ok().and_then(|c| c.clone())
    }

    /// The Unix socket path or TCP address the current process listens on.
    pub fn address(&self) -> String {
        self.inner
            .running()
            .map(|r| r.remote.address())
            .unwrap_or_default()
    }

    /// go-plugin's `Ping`: `grpc.health.v1.Health/Check` for service `plugin`, under the call
    /// deadline.
    pub async fn ping(&self) -> Result<(), Error> {
        self.inner
            .call(
                "Ping",
                Call::Unary,
                |r| async move { r.remote.ping().await },
            )
            .await
    }

    /// Waits until a plugin process is up (at once when one is), at most `limit`; for callers
    /// that want to know the plugin is back before going on.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        self.inner.wait_running(limit).await.is_some()
    }

    /// Stops the plugin and its supervision: `Shutdown` (errors ignored), wait up to the grace
    /// period, SIGKILL, reap. Safe to call more than once.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let first = !inner.stopping.swap(true, Ordering::SeqCst);
        inner.stop.cancel();
        let Some(running) = inner.running() else {
            return;
        };
        if first && running.process.exited().is_none() {
            let grace = inner.options.shutdown_grace;
            running.remote.shutdown(grace).await;
            if tokio::time::timeout(grace, running.process.wait_exit())
                .await
                .is_err()
            {
                tracing::warn!(backend = %inner.command.name, plugin_pid = running.process.pid, "plugin failed to exit gracefully; killing it");
            }
        }
        running.process.kill();
        let status = running.process.wait_exit().await;
        tracing::debug!(backend = %inner.command.name, status = %describe_exit(&status), "plugin stopped");
    }
}

/// Whether a call may block by design (a watch) or must meet the deadline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Unary,
    Watch,
}

/// Counts a watch as open while it lives, so probes run only when one is.
struct WatchOpen<'a>(&'a AtomicUsize);

impl Drop for WatchOpen<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    fn running(&self) -> Option<Arc<Running>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_current(&self, running: Option<Arc<Running>>) {
        match self.current.write() {
            Ok(mut guard) => *guard = running,
            Err(poisoned) => *poisoned.into_inner() = running,
        }
        self.generation.send_modify(|g| *g += 1);
    }

    fn event(&self, event: &PluginEvent) {
        if let Some(sink) = &self.options.events {
            sink(&self.command.name, event);
        }
    }

    fn path(&self) -> std::path::Display<'_> {
        self.command.program.display()
    }

    /// The current process; while a supervised plugin restarts, waits for the new one up to
    /// `limit`.
    /// A supervised process that has exited but is not replaced yet counts as down, so a call
    /// right after a crash goes to the new process instead of failing on the old one.
    async fn wait_running(&self, limit: Duration) -> Option<Arc<Running>> {
        if !self.options.restart || self.stopping.load(Ordering::SeqCst) {
            return self.running();
        }
        let mut generation = self.generation.subscribe();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.running().filter(|r| r.process.exited().is_none()) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, generation.changed())
                .await
                .map_or(true, |changed| changed.is_err())
            {
                return None;
            }
        }
    }

    /// Kills the current process because of `cause`; the supervisor then restarts it.
    fn kill_for(&self, running: &Running, kind: &'static str, cause: String) {
        if let Ok(mut slot) = self.kill_cause.lock() {
            slot.get_or_insert((kind, cause));
        }
        running.process.kill();
    }

    /// Runs one call on the current process: unary calls under the deadline, a missed deadline
    /// kills the process (so it restarts), and a broken connection says whether the plugin died.
    async fn call<T, F, Fut>(&self, method: &str, kind: Call, f: F) -> Result<T, Error>
    where
        F: FnOnce(Arc<Running>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let wait = self.options.call_timeout.unwrap_or(Duration::from_secs(5));
        let Some(running) = self.wait_running(wait).await else {
            let why = self
                .down
                .lock()
                .ok()
                .and_then(|d| d.clone())
                .unwrap_or_else(|| "stopped".to_string());
            return Err(Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {} is not running ({why}); cannot call {method}",
                    self.path()
                ),
            ));
        };
        if let Some(exit) = running.process.exited() {
            return Err(Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {} is not running ({}); cannot call {method}",
                    self.path(),
                    describe_exit(&exit)
                ),
            ));
        }
        let _open = (kind == Call::Watch).then(|| {
            self.watches_open.fetch_add(1, Ordering::SeqCst);
            WatchOpen(&self.watches_open)
        });
        let result = match (kind, self.options.call_timeout) {
            (Call::Unary, Some(limit)) => {
                match tokio::time::timeout(limit, f(running.clone())).await {
                    Ok(result) => result,
                    Err(_) => {
                        let message = format!(
                            "plugin {} (pid {}): {method} did not answer within {limit:?}",
                            self.path(),
                            running.process.pid
                        );
                        if self.options.restart {
                            tracing::warn!(backend = %self.command.name, plugin_pid = running.process.pid, "{message}; killing it so that it restarts");
                            self.kill_for(
                                &running,
                                "deadline",
                                format!("missed the {limit:?} deadline of {method}"),
                            );
                        }
                        return Err(Error::new(ErrorKind::Timeout, message));
                    }
                }
            }
            _ => f(running.clone()).await,
        };
        if result.is_ok() {
            running.answered.store(true, Ordering::Relaxed);
        }
        match result {
            Err(err) if err.kind() == ErrorKind::PluginFailed => {
                // The connection usually breaks a moment before the exit is reaped.
                match tokio::time::timeout(Duration::from_secs(1), running.process.wait_exit())
                    .await
                {
                    Ok(exit) => Err(Error::new(
                        ErrorKind::PluginFailed,
                        format!(
                            "plugin {} died during {method} ({})",
                            self.path(),
                            describe_exit(&exit)
                        ),
                    )),
                    Err(_) => Err(err),
                }
            }
            other => other,
        }
    }
}

/// Capped exponential backoff with jitter for restarts: the first retry at once, then 100 ms
/// doubling up to the cap while the new processes die before answering a call, each wait drawn from [half, full] so plugins of many hosts do not
/// restart in lockstep.
struct RestartBackoff {
    failures: u32,
    cap: Duration,
}

impl RestartBackoff {
    const BASE: Duration = Duration::from_millis(100);

    fn next(&mut self) -> Duration {
        let n = self.failures;
        self.failures = self.failures.saturating_add(1);
        if n == 0 {
            return Duration::ZERO;
        }
        let full = Self::BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(self.cap);
        full.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// A plugin that ran this long before going down starts again with the shortest delay (as does
/// one that answered a call: only a plugin that dies before serving anyone backs off).
const STABLE: Duration = Duration::from_secs(60);

/// Keeps a plugin running until the handle is dropped or shut down.
async fn supervise(inner: Arc<Inner>) {
    let mut backoff = RestartBackoff {
        failures: 0,
        cap: inner.options.max_restart_delay,
    };
    let name = inner.command.name.clone();
    if inner.running().is_none() {
        // Made by `not_started`: bring it up as after a crash.
        let what = format!(
            "the {name} plugin {}",
            inner
                .down
                .lock()
                .ok()
                .and_then(|d| d.clone())
                .unwrap_or_else(|| "did not start".to_string())
        );
        // The first try was the failed start: wait before the next.
        backoff.failures = 1;
        if !bring_back(&inner, &mut backoff, "start-failed", what, None).await {
            return;
        }
    }
    loop {
        let Some(running) = inner.running() else {
            return;
        };
        let ended = tokio::select! {
            exit = running.process.wait_exit() => Some(exit),
            () = probe(&inner, &running) => {
                let exit = running.process.wait_exit().await;
                Some(exit)
            }
            () = inner.stop.cancelled() => None,
        };
        let Some(exit) = ended else {
            return;
        };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (kind, cause) = match inner.kill_cause.lock().ok().and_then(|mut c| c.take()) {
            Some((kind, why)) => (kind, why),
            None => match &exit {
                Ok(status) if status.code().is_none() => {
                    ("signal", format!("was killed ({status})"))
                }
                Ok(status) => ("exited", format!("exited ({status})")),
                Err(e) => ("exited", format!("ended ({e})")),
            },
        };
        let pid = running.process.pid;
        if running.answered.load(Ordering::Relaxed) || running.started.elapsed() >= STABLE {
            backoff.failures = 0;
        }
        drop(running);
        if let Ok(mut down) = inner.down.lock() {
            *down = Some(format!("pid {pid} {cause}; restarting"));
        }
        inner.set_current(None);
        let what = format!("the {name} plugin (pid {pid}) {cause}");
        if !bring_back(&inner, &mut backoff, kind, what, Some(pid)).await {
            return;
        }
    }
}

/// Starts the plugin again (with the backoff) until it is up; `false` when stopped meanwhile.
/// `what` says why it is down, for the first warning; `pid` is the process that ended, if any.
async fn bring_back(
    inner: &Inner,
    backoff: &mut RestartBackoff,
    kind: &'static str,
    what: String,
    pid: Option<u32>,
) -> bool {
    let name = &inner.command.name;
    let mut kind = kind;
    let mut what = what;
    loop {
        inner.restarts.fetch_add(1, Ordering::SeqCst);
        inner.event(&PluginEvent::Restarting { cause: kind });
        let delay = backoff.next();
        match pid {
            Some(pid) => tracing::warn!(backend = %name, plugin_pid = pid, cause = kind,
                delay_ms = delay.as_millis() as u64, "{what}; restarting it in {delay:?}"),
            None => tracing::warn!(backend = %name, cause = kind,
                delay_ms = delay.as_millis() as u64, "{what}; restarting it in {delay:?}"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = inner.stop.cancelled() => return false,
        }
        match restart(inner).await {
            Ok(running) => {
                tracing::info!(backend = %name, plugin_pid = running.process.pid, "the {name} plugin is back");
                if let Ok(mut down) = inner.down.lock() {
                    *down = None;
                }
                inner.set_current(Some(Arc::new(running)));
                inner.event(&PluginEvent::Up);
                return true;
            }
            Err(err) => {
                kind = "start-failed";
                let cause = format!("could not be started again: {err}");
                what = format!("the {name} plugin {cause}");
                if let Ok(mut down) = inner.down.lock() {
                    *down = Some(cause);
                }
            }
        }
    }
}

/// A new process, configured with the last settings that were applied.
async fn restart(inner: &Inner) -> Result<Running, Error> {
    let (process, remote) = launch(&inner.command, &inner.options).await?;
    let running = Running {
        process,
        remote,
        started: Instant::now(),
        answered: AtomicBool::new(false),
    };
    let config = inner.last_config.lock().ok().and_then(|c| c.clone());
    if let Some(config) = config {
        let limit = inner
            .options
            .call_timeout
            .unwrap_or(Duration::from_secs(30));
        let configured = tokio::time::timeout(limit, running.remote.configure(config)).await;
        let failed = match configured {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("rejected its settings: {e}")),
            Err(_) => Some(format!("did not answer Configure within {limit:?}")),
        };
        if let Some(why) = failed {
            running.process.kill();
            return Err(Error::new(ErrorKind::PluginFailed, why));
        }
    }
    Ok(running)
}

/// Returns when the plugin failed a health probe (and has been killed for it); probes run only
/// while a watch is open, as unary calls have their own deadline.
async fn probe(inner: &Inner, running: &Running) {
    let every = inner.options.probe_interval;
    let limit = inner.options.call_timeout.unwrap_or(every);
    loop {
        tokio::time::sleep(every).await;
        if inner.watches_open.load(Ordering::SeqCst) == 0 {
            continue;
        }
        let answered = tokio::time::timeout(limit, running.remote.ping()).await;
        let why = match answered {
            Ok(Ok(())) => continue,
            Ok(Err(e)) if e.kind() != ErrorKind::PluginFailed => {
                format!("failed a health check: {e}")
            }
            // A broken connection: the exit is reported by the reaper.
            Ok(Err(_)) => continue,
            Err(_) => format!("did not answer a health check within {limit:?}"),
        };
        tracing::warn!(backend = %inner.command.name, plugin_pid = running.process.pid,
            "the {} plugin (pid {}) {why}; killing it so that it restarts", inner.command.name, running.process.pid);
        inner.kill_for(running, "unhealthy", why);
        return;
    }
}

#[async_trait::async_trait]
impl Database for PluginClient {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let sent = config.clone();
        self.inner
            .call("Configure", Call::Unary, |r| async move {
                r.remote.configure(sent).await
            })
            .await?;
        if let Ok(mut last) = self.inner.last_config.lock() {
            *last = Some(config);
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.inner
            .call("GetValues", Call::Unary, |r| async move {
                r.remote.get_values(keys).await
            })
            .await
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        self.inner
            .call("WatchPrefix", Call::Watch, |r| async move {
                r.remote.watch_prefix(prefix, keys, wait_index).await
            })
            .await
    }

    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        self.inner
            .call("WatchPrefix", Call::Watch, |r| async move {
                r.remote.watch_prefix_values(prefix, keys, wait_index).await
            })
            .await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        self.inner
            .call(
                "Info",
                Call::Unary,
                |r| async move { r.remote.info().await },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

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

    #[test]
    fn restarts_back_off_from_at_once_to_the_cap() {
        let mut b = RestartBackoff {
            failures: 0,
            cap: Duration::from_secs(30),
        };
        assert_eq!(b.next(), Duration::ZERO, "the first retry is at once");
        let second = b.next();
        assert!(second >= Duration::from_millis(50) && second <= Duration::from_millis(100));
        let later: Vec<Duration> = (0..20).map(|_| b.next()).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(30)));
        assert!(later[19] >= Duration::from_secs(15), "{later:?}");
    }
}
