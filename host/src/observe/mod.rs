//! `--metrics-addr`: the HTTP server for Prometheus and Kubernetes. `/metrics` renders every
//! metric confd-core records (names in `confd_core::metrics`) plus the `process_*` family;
//! `/health` answers while the process runs; `/ready` and `/ready/detailed` answer once the first
//! pass is done and every backend passes its health check. The server is bound before any
//! plugin starts, so a taken port or a bad address is an error at start (exit 2).

pub mod health;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confd_core::FirstPass;
use confd_core::metrics::Operation;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use health::{BackendHealth, Report, plugin_health};

/// Histogram buckets in seconds: the Prometheus client libraries' defaults, which the fork's
/// dashboards were built on.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are folded into their buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The running server; dropping it stops it.
pub struct Observer {
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

/// What the handlers read.
struct Shared {
    metrics: PrometheusHandle,
    process: metrics_process::Collector,
    first_pass: FirstPass,
    backends: RwLock<Vec<(String, Arc<dyn BackendHealth>)>>,
}

impl Observer {
    /// Installs the metrics recorder, binds `addr` and starts serving. Fails when the address
    /// cannot be bound (taken, not local) or a recorder is already installed.
    pub async fn start(addr: SocketAddr, first_pass: FirstPass) -> anyhow::Result<Observer> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let metrics = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .context("metrics buckets")?
            .install_recorder()
            .context("cannot install the metrics recorder")?;
        confd_core::metrics::enable();
        confd_core::metrics::describe();
        confd_core::metrics::register_process(env!("CARGO_PKG_VERSION"));
        let process = metrics_process::Collector::default();
        process.describe();
        let state = Arc::new(Shared {
            metrics,
            process,
            first_pass,
            backends: RwLock::new(Vec::new()),
        });
        let router = axum::Router::new()
            .route("/metrics", get(render_metrics))
            .route("/health", get(|| async { "ok" }))
            .route("/ready", get(ready))
            .route("/ready/detailed", get(ready_detailed))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(error = %err, "the metrics server stopped");
            }
        });
        let handle = state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP).await;
                handle.run_upkeep();
            }
        });
        tracing::info!(address = %addr, "serving /metrics, /health and /ready");
        Ok(Observer {
            state,
            server,
            upkeep,
            addr,
        })
    }

    /// The bound address (the port is known even when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backends readiness checks, by name.
    pub fn set_backends(&self, backends: Vec<(String, Arc<dyn BackendHealth>)>) {
        if let Ok(mut slot) = self.state.backends.write() {
            *slot = backends;
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.server.abort();
        self.upkeep.abort();
    }
}

async fn render_metrics(State(state): State<Arc<Shared>>) -> Response {
    state.process.collect();
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Every backend's report, checked concurrently.
async fn check_all(state: &Shared, operation: Operation) -> Vec<(String, Report)> {
    let backends = state.backends.read().map(|b| b.clone()).unwrap_or_default();
    futures_util::future::join_all(backends.into_iter().map(|(name, probe)| async move {
        let report = health::run_check(&name, probe.as_ref(), operation).await;
        (name, report)
    }))
    .await
}

const FIRST_PASS_PENDING: &str = "the first pass over the template resources is not done";

async fn ready(State(state): State<Arc<Shared>>) -> Response {
    if !state.first_pass.done() {
        return (StatusCode::SERVICE_UNAVAILABLE, FIRST_PASS_PENDING).into_response();
    }
    let reports = check_all(&state, Operation::HealthCheck).await;
    match reports.iter().find(|(_, r)| !r.healthy) {
        Some((name, report)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("backend unhealthy: {name}: {}", report.message),
        )
            .into_response(),
        None => (StatusCode::OK, "ok").into_response(),
    }
}

async fn ready_detailed(State(state): State<Arc<Shared>>) -> Response {
    let checked_at = std::time::SystemTime::now();
    let started = std::time::Instant::now();
    let reports = check_all(&state, Operation::HealthCheckDetailed).await;
    let first_pass = state.first_pass.done();
    let unhealthy: Vec<&str> = reports
        .iter()
        .filter(|(_, r)| !r.healthy)
        .map(|(name, _)| name.as_str())
        .collect();
    let healthy = first_pass && unhealthy.is_empty();
    let message = if !first_pass {
        FIRST_PASS_PENDING.to_string()
    } else if unhealthy.is_empty() {
        "ok".to_string()
    } else {
        format!("backend unhealthy: {}", unhealthy.join(", "))
    };
    let overall = Report {
        healthy,
        message,
        duration: started.elapsed(),
        details: Default::default(),
        checked_at,
    };
    let mut body = overall.to_json();
    body["details"] = serde_json::json!({
        "first_pass_done": first_pass,
        "backends": reports
            .iter()
            .map(|(name, r)| (name.clone(), r.to_json()))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
