//! The one place that names confd's metrics: every name, its labels and help text, and one small
//! function per thing worth counting, so the loops, the sync steps, the host and the plugin
//! supervisor record through the same calls. Names and labels are the maintained Go fork's
//! where it has them, so its dashboards keep working.
//!
//! Recording goes through the `metrics` facade: whoever installs a recorder (the host's
//! `--metrics-addr`) sees everything, nobody passes handles around. Until [`enable`] is called
//! every function returns at once, so a confd without `--metrics-addr` pays one atomic load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confd_sdk::{Config, Database, DatabaseInfo, Error, SharedDatabase};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns recording on; call once a recorder is installed.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub const BACKEND_REQUEST_DURATION: &str = "confd_backend_request_duration_seconds";
pub const BACKEND_REQUEST_TOTAL: &str = "confd_backend_request_total";
pub const BACKEND_ERRORS_TOTAL: &str = "confd_backend_errors_total";
pub const BACKEND_HEALTHY: &str = "confd_backend_healthy";
pub const BACKEND_MEMBER: &str = "confd_backend_member";
pub const TEMPLATE_PROCESS_DURATION: &str = "confd_template_process_duration_seconds";
pub const TEMPLATE_PROCESS_TOTAL: &str = "confd_template_process_total";
pub const TEMPLATES_LOADED: &str = "confd_templates_loaded";
pub const WATCHED_KEYS: &str = "confd_watched_keys";
pub const COMMAND_DURATION: &str = "confd_command_duration_seconds";
pub const COMMAND_TOTAL: &str = "confd_command_total";
pub const COMMAND_EXIT_CODE_TOTAL: &str = "confd_command_exit_code_total";
pub const FILE_SYNC_TOTAL: &str = "confd_file_sync_total";
pub const FILE_CHANGED_TOTAL: &str = "confd_file_changed_total";
pub const PLUGIN_RESTARTS_TOTAL: &str = "confd_plugin_restarts_total";
pub const PLUGIN_UP: &str = "confd_plugin_up";
pub const WATCH_LAG: &str = "confd_watch_lag_seconds";
pub const RELOADS_TOTAL: &str = "confd_reloads_total";
pub const BUILD_INFO: &str = "confd_build_info";

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: name, kind, label names, help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Every metric confd exports (the `process_*` family aside), for the exporter's help texts,
/// the documentation and the tests.
pub const ALL: &[Metric] = &[
    Metric {
        name: BACKEND_REQUEST_DURATION,
        kind: Kind::Histogram,
        labels: &["backend", "operation"],
        help: "Duration of backend requests in seconds.",
    },
    Metric {
        name: BACKEND_REQUEST_TOTAL,
        kind: Kind::Counter,
        labels: &["backend", "operation"],
        help: "Total number of backend requests.",
    },
    Metric {
        name: BACKEND_ERRORS_TOTAL,
        kind: Kind::Counter,
        labels: &["backend", "operation"],
        help: "Total number of backend errors.",
    },
    Metric {
        name: BACKEND_HEALTHY,
        kind: Kind::Gauge,
        labels: &["backend"],
        help: "Whether the backend answered its last health check (1) or not (0).",
    },
    Metric {
        name: BACKEND_MEMBER,
        kind: Kind::Gauge,
        labels: &["backend", "member"],
        help: "The store member the backend used at its last health check (1); members used \
               before are 0.",
    },
    Metric {
        name: TEMPLATE_PROCESS_DURATION,
        kind: Kind::Histogram,
        labels: &["dest"],
        help: "Duration of rendering and syncing one template resource in seconds.",
    },
    Metric {
        name: TEMPLATE_PROCESS_TOTAL,
        kind: Kind::Counter,
        labels: &["dest", "status"],
        help: "Total number of template resource runs by outcome (success or error).",
    },
    Metric {
        name: TEMPLATES_LOADED,
        kind: Kind::Gauge,
        labels: &[],
        help: "Number of template resources currently loaded.",
    },
    Metric {
        name: WATCHED_KEYS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Number of backend keys being watched.",
    },
    Metric {
        name: COMMAND_DURATION,
        kind: Kind::Histogram,
        labels: &["type", "dest"],
        help: "Duration of check and reload commands in seconds.",
    },
    Metric {
        name: COMMAND_TOTAL,
        kind: Kind::Counter,
        labels: &["type", "dest"],
        help: "Total number of check and reload commands run.",
    },
    Metric {
        name: COMMAND_EXIT_CODE_TOTAL,
        kind: Kind::Counter,
        labels: &["type", "exit_code"],
        help: "Total number of commands by outcome (exit_code 0: succeeded, 1: failed).",
    },
    Metric {
        name: FILE_SYNC_TOTAL,
        kind: Kind::Counter,
        labels: &["dest"],
        help: "Total number of destination files replaced.",
    },
    Metric {
        name: FILE_CHANGED_TOTAL,
        kind: Kind::Counter,
        labels: &[],
        help: "Total number of files that were changed.",
    },
    Metric {
        name: PLUGIN_RESTARTS_TOTAL,
        kind: Kind::Counter,
        labels: &["backend", "cause"],
        help: "Total number of backend plugin processes lost and replaced, by cause.",
    },
    Metric {
        name: PLUGIN_UP,
        kind: Kind::Gauge,
        labels: &["backend"],
        help: "Whether the backend plugin process is running (1) or not (0).",
    },
    Metric {
        name: WATCH_LAG,
        kind: Kind::Histogram,
        labels: &["backend"],
        help: "Seconds from a watch answer with a new store index to the destination written.",
    },
    Metric {
        name: RELOADS_TOTAL,
        kind: Kind::Counter,
        labels: &["status"],
        help: "Total number of configuration reloads (SIGHUP) by outcome.",
    },
    Metric {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; the version label names the running confd.",
    },
];

/// The `operation` label of backend requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetValues,
    WatchPrefix,
    HealthCheck,
    HealthCheckDetailed,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::GetValues,
        Operation::WatchPrefix,
        Operation::HealthCheck,
        Operation::HealthCheckDetailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GetValues => "get_values",
            Operation::WatchPrefix => "watch_prefix",
            Operation::HealthCheck => "health_check",
            Operation::HealthCheckDetailed => "health_check_detailed",
        }
    }
}

/// The `type` label of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Check,
    Reload,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Check => "check",
            CommandKind::Reload => "reload",
        }
    }
}

/// The `cause` label of plugin restarts: the process exited, or it stopped answering.
pub const RESTART_CAUSES: [&str; 2] = ["exited", "unhealthy"];

/// Help texts for every metric; call once after installing the recorder.
pub fn describe() {
    for m in ALL {
        match m.kind {
            Kind::Counter => ::metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => ::metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => ::metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Series that must exist before anything happened, so a dashboard shows 0 instead of no data:
/// the build info and the reload outcomes.
pub fn register_process(version: &str) {
    if !on() {
        return;
    }
    ::metrics::gauge!(BUILD_INFO, "version" => version.to_string()).set(1.0);
    for status in ["success", "error"] {
        ::metrics::counter!(RELOADS_TOTAL, "status" => status).increment(0);
    }
    ::metrics::counter!(FILE_CHANGED_TOTAL).increment(0);
}

/// The per-backend series at zero (requests, errors, restarts), and the plugin marked up.
pub fn register_backend(backend: &str) {
    if !on() {
        return;
    }
    for op in Operation::ALL {
        let labels = [
            ("backend", backend.to_string()),
            ("operation", op.as_str().to_string()),
        ];
        ::metrics::counter!(BACKEND_REQUEST_TOTAL, &labels).increment(0);
        ::metrics::counter!(BACKEND_ERRORS_TOTAL, &labels).increment(0);
    }
    for cause in RESTART_CAUSES {
        ::metrics::counter!(PLUGIN_RESTARTS_TOTAL, "backend" => backend.to_string(), "cause" => cause)
            .increment(0);
    }
    set_plugin_up(backend, true);
}

/// One backend request and whether it failed.
pub fn record_backend_request(backend: &str, operation: Operation, elapsed: Duration, ok: bool) {
    if !on() {
        return;
    }
    let labels = [
        ("backend", backend.to_string()),
        ("operation", operation.as_str().to_string()),
    ];
    ::metrics::histogram!(BACKEND_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    ::metrics::counter!(BACKEND_REQUEST_TOTAL, &labels).increment(1);
    if !ok {
        ::metrics::counter!(BACKEND_ERRORS_TOTAL, &labels).increment(1);
    }
}

/// The outcome of a backend health check.
pub fn set_backend_healthy(backend: &str, healthy: bool) {
    if !on() {
        return;
    }
    ::metrics::gauge!(BACKEND_HEALTHY, "backend" => backend.to_string()).set(if healthy {
        1.0
    } else {
        0.0
    });
}

/// The member `backend` uses now, as its plugin's `Info` says: its series is 1 and the one of
/// the member it used before, if another, drops to 0.
pub fn set_backend_member(backend: &str, member: &str) {
    static IN_USE: std::sync::Mutex<BTreeMap<String, String>> =
        std::sync::Mutex::new(BTreeMap::new());
    if !on() {
        return;
    }
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(before) = in_use.insert(backend.to_string(), member.to_string())
        && before != member
    {
        ::metrics::gauge!(BACKEND_MEMBER, "backend" => backend.to_string(), "member" => before)
            .set(0.0);
    }
    ::metrics::gauge!(
        BACKEND_MEMBER,
        "backend" => backend.to_string(),
        "member" => member.to_string()
    )
    .set(1.0);
}

/// One resource rendered and synced (or failed), and how long it took.
pub fn record_template_process(dest: &Path, ok: bool, elapsed: Duration) {
    if !on() {
        return;
    }
    let dest = dest.display().to_string();
    ::metrics::histogram!(TEMPLATE_PROCESS_DURATION, "dest" => dest.clone())
        .record(elapsed.as_secs_f64());
    let status = if ok { "success" } else { "error" };
    ::metrics::counter!(TEMPLATE_PROCESS_TOTAL, "dest" => dest, "status" => status).increment(1);
}

pub fn set_templates_loaded(count: usize) {
    if !on() {
        return;
    }
    ::metrics::gauge!(TEMPLATES_LOADED).set(count as f64);
}

pub fn set_watched_keys(count: usize) {
    if !on() {
        return;
    }
    ::metrics::gauge!(WATCHED_KEYS).set(count as f64);
}

/// One check or reload command and whether it succeeded.
pub fn record_command(kind: CommandKind, dest: &Path, elapsed: Duration, ok: bool) {
    if !on() {
        return;
    }
    let labels = [
        ("type", kind.as_str().to_string()),
        ("dest", dest.display().to_string()),
    ];
    ::metrics::histogram!(COMMAND_DURATION, &labels).record(elapsed.as_secs_f64());
    ::metrics::counter!(COMMAND_TOTAL, &labels).increment(1);
    // The fork's two values: dashboards select on exit_code="1".
    let code = if ok { "0" } else { "1" };
    ::metrics::counter!(COMMAND_EXIT_CODE_TOTAL, "type" => kind.as_str(), "exit_code" => code)
        .increment(1);
}

/// A destination replaced.
pub fn record_file_sync(dest: &Path) {
    if !on() {
        return;
    }
    ::metrics::counter!(FILE_SYNC_TOTAL, "dest" => dest.display().to_string()).increment(1);
    ::metrics::counter!(FILE_CHANGED_TOTAL).increment(1);
}

/// A plugin process lost (and replaced, once a supervisor restarts plugins); `cause` is one of
/// [`RESTART_CAUSES`].
pub fn record_plugin_restart(backend: &str, cause: &'static str) {
    if !on() {
        return;
    }
    ::metrics::counter!(PLUGIN_RESTARTS_TOTAL, "backend" => backend.to_string(), "cause" => cause)
        .increment(1);
}

pub fn set_plugin_up(backend: &str, up: bool) {
    if !on() {
        return;
    }
    ::metrics::gauge!(PLUGIN_UP, "backend" => backend.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// Time from a watch answer bringing a new index to the destination written.
pub fn record_watch_lag(backend: &str, elapsed: Duration) {
    if !on() {
        return;
    }
    ::metrics::histogram!(WATCH_LAG, "backend" => backend.to_string())
        .record(elapsed.as_secs_f64());
}

/// A configuration reload (SIGHUP) and whether it worked.
pub fn record_reload(ok: bool) {
    if !on() {
        return;
    }
    let status = if ok { "success" } else { "error" };
    ::metrics::counter!(RELOADS_TOTAL, "status" => status).increment(1);
}

/// `db` with its `get_values` and `watch_prefix` calls counted and timed under `backend`; `db`
/// itself while recording is off.
pub fn instrument(backend: &str, db: SharedDatabase) -> SharedDatabase {
    if !on() {
        return db;
    }
    register_backend(backend);
    std::sync::Arc::new(Instrumented {
        backend: backend.to_string(),
        inner: db,
    })
}

struct Instrumented {
    backend: String,
    inner: SharedDatabase,
}

impl Instrumented {
    fn record<T>(&self, operation: Operation, started: Instant, result: &Result<T, Error>) {
        record_backend_request(&self.backend, operation, started.elapsed(), result.is_ok());
    }
}

#[confd_sdk::async_trait]
impl Database for Instrumented {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        self.inner.configure(config).await
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let started = Instant::now();
        let result = self.inner.get_values(keys).await;
        self.record(Operation::GetValues, started, &result);
        result
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        let started = Instant::now();
        let result = self.inner.watch_prefix(prefix, keys, wait_index).await;
        self.record(Operation::WatchPrefix, started, &result);
        result
    }

    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        let started = Instant::now();
        let result = self
            .inner
            .watch_prefix_values(prefix, keys, wait_index)
            .await;
        self.record(Operation::WatchPrefix, started, &result);
        result
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        self.inner.info().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_counters_end_in_total() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for m in ALL {
            assert!(m.name.starts_with("confd_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            if m.kind == Kind::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
        }
    }
}
