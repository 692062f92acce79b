//! Backend health for the readiness probes: one small trait the probe calls per backend, and the
//! check used until the plugin supervisor brings its own. Every check is bounded by
//! [`CHECK_TIMEOUT`], timed, and recorded as `confd_backend_healthy` (and `confd_backend_member`
//! when the plugin names the member it uses) and a backend request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use confd_core::metrics::{self, Operation};
use confd_sdk::Database;
use confd_supervisor::PluginClient;
use futures_util::future::BoxFuture;

/// How long a backend has to answer a readiness check (the fork's limit).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A key no template reads: asking for it makes the plugin reach its store (a connection, a
/// read) without moving any data. Its value, if a store has one, is dropped unseen.
pub const HEALTH_KEY: &str = "/confd-readiness-check";

/// What readiness asks of one backend. `Ok` carries details worth showing (plugin pid,
/// program); `Err` says why the backend is not usable.
pub trait BackendHealth: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, String>>;
}

/// The check of a plugin process until the supervisor offers its own: the process is running,
/// answers go-plugin's health service, and reads [`HEALTH_KEY`] from its store, which fails
/// while the store is down (etcd stopped, redis unreachable, a file backend's file gone).
pub fn plugin_health(client: Arc<PluginClient>) -> Arc<dyn BackendHealth> {
    Arc::new(PluginHealth { client })
}

struct PluginHealth {
    client: Arc<PluginClient>,
}

impl BackendHealth for PluginHealth {
    fn check(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, String>> {
        Box::pin(async move {
            let client = &self.client;
            let mut details = BTreeMap::new();
            details.insert(
                "program".to_string(),
                client.program().display().to_string(),
            );
            if let Some(pid) = client.pid() {
                details.insert("plugin_pid".to_string(), pid.to_string());
            }
            if !client.is_alive() {
                let how = client
                    .exit_status()
                    .map_or_else(|| "exit status unknown".to_string(), |s| s.to_string());
                return Err(format!("the plugin process is not running ({how})"));
            }
            client.ping().await.map_err(|e| e.to_string())?;
            client
                .get_values(&[HEALTH_KEY.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            // The member in use, after the read above chose it; a plugin without Info (a Go
            // plugin) or with nothing to say adds nothing.
            if let Ok(info) = client.info().await
                && !info.member.is_empty()
            {
                details.insert("member".to_string(), info.member);
            }
            Ok(details)
        })
    }
}

/// One backend's answer, as `/ready/detailed` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub healthy: bool,
    pub message: String,
    pub duration: Duration,
    pub details: BTreeMap<String, String>,
    pub checked_at: SystemTime,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "healthy": self.healthy,
            "message": self.message,
            "duration_ms": u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            "details": self.details,
            "checked_at": humantime::format_rfc3339_millis(self.checked_at).to_string(),
        })
    }
}

/// Runs `probe` under [`CHECK_TIMEOUT`] and records the outcome for `backend`.
pub async fn run_check(backend: &str, probe: &dyn BackendHealth, operation: Operation) -> Report {
    let checked_at = SystemTime::now();
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe.check()).await;
    let duration = started.elapsed();
    let (healthy, message, details) = match outcome {
        Ok(Ok(details)) => (true, "ok".to_string(), details),
        Ok(Err(reason)) => (false, reason, BTreeMap::new()),
        Err(_) => (
            false,
            format!(
                "no answer within {}",
                humantime::format_duration(CHECK_TIMEOUT)
            ),
            BTreeMap::new(),
        ),
    };
    let mut details = details;
    if !healthy {
        details.insert("error".to_string(), message.clone());
    }
    metrics::record_backend_request(backend, operation, duration, healthy);
    metrics::set_backend_healthy(backend, healthy);
    if let Some(member) = details.get("member") {
        metrics::set_backend_member(backend, member);
    }
    Report {
        healthy,
        message,
        duration,
        details,
        checked_at,
    }
}
