//! The glue of one confd run: settings → resources → plugins → a processing mode → plugins
//! stopped, with the exit status policy (0 ok, 1 a resource or plugin failed, 2 usage or
//! configuration error) in one place.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use confd_supervisor::{ClientOptions, PluginEvent};

use crate::backends::{self, Registry};
use crate::cli::{self, Command};
use crate::generation;
use crate::notify::Notifier;
use crate::service;
use crate::settings::{self, ProcessEnv, Settings, Task};

/// Exit status: everything fine.
pub const EXIT_OK: u8 = 0;
/// Exit status: a resource failed, or a plugin could not start.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad flags, settings, confd.toml or template resources.
pub const EXIT_USAGE: u8 = 2;

/// An error with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }
    pub fn failed(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: EXIT_FAILED,
            error: error.into(),
        }
    }
}

/// The whole program: parse, dispatch, map the outcome to an exit status.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some((kind, name)) = cli::internal_plugin(&args) {
        return serve_internal(kind, name);
    }
    let cli = match cli::parse(args.clone()) {
        Ok(cli) => cli,
        // clap prints help/version (exit 0) and usage errors (exit 2) itself.
        Err(err) => err.exit(),
    };
    if let Some(Command::InternalPlugin { kind, name }) = &cli.command {
        return serve_internal(kind, name);
    }
    let settings = match settings::load(&cli, &ProcessEnv) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("confd: {err:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    crate::logging::init(settings.log_level, settings.log_format);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if settings.list_backends {
        let registry = Registry::discover(&settings);
        print!(
            "{}{}",
            registry.listing(),
            crate::routing::listing(&settings, &registry)
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // File writes and DNS lookups run on blocking threads; the default allows hundreds, and
        // each thread that allocates gets its own malloc arena. Eight keep 16 concurrent resource
        // groups moving (their fsyncs queue in the file system journal anyway).
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("confd: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let json_logs = settings.log_format == settings::LogFormat::Json;
    let code = match runtime.block_on(run(settings, args)) {
        Ok(code) => code,
        Err(failure) if json_logs => {
            // A log shipper reads stderr line by line: keep every line JSON.
            tracing::error!(error = %format!("{:#}", failure.error), "confd stopped");
            failure.code
        }
        Err(failure) => {
            // Plain text, no log decoration: this is the one line a person must read.
            eprintln!("confd: {:#}", failure.error);
            failure.code
        }
    };
    ExitCode::from(code)
}

fn serve_internal(kind: &str, name: &str) -> ExitCode {
    match backends::serve_builtin(kind, name) {
        Ok(never) => match never {},
        Err(err) => {
            eprintln!("confd: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// What confd-core needs, taken from the resolved settings.
pub fn run_options(s: &Settings) -> confd_core::RunOptions {
    confd_core::RunOptions {
        confdir: s.confdir.clone(),
        prefix: s.prefix.clone(),
        noop: s.noop,
        diff: s.diff,
        sync_only: s.sync_only,
        keep_stage_file: s.keep_stage_file,
        default_backend: s.backend.clone(),
        template_engine: s.template_engine,
        check_cmd_timeout: s.check_cmd_timeout,
        reload_cmd_timeout: s.reload_cmd_timeout,
        interval: std::time::Duration::from_secs(s.interval),
        debounce: s.debounce,
        debounce_max: s.debounce_max,
        failure_mode: s.failure_mode,
        ..Default::default()
    }
}

/// Runs with resolved settings; returns the exit status or the failure that ended the run.
/// `args` is the command line, read again on SIGHUP.
pub async fn run(settings: Settings, args: Vec<OsString>) -> Result<u8, Failure> {
    match &settings.task {
        Task::CheckConfig => return crate::validate::check_config(&settings),
        Task::Validate { mock_data } => {
            return crate::validate::validate(&settings, mock_data).await;
        }
        Task::Run | Task::Preflight => {}
    }
    let notifier = Notifier::from_env();
    let shutdown = confd_core::Shutdown::default();
    // Installed before plugins start: a signal during start-up still shuts them down cleanly,
    // and an early SIGHUP does not end the process.
    let signals = service::install_signals(shutdown.clone(), notifier, settings.shutdown_timeout);
    let ready = confd_core::FirstPass::default();
    // Bound before anything starts: a taken port is a usage error, not a surprise later.
    let observer = match settings.metrics_addr {
        Some(addr) if settings.task == Task::Run => Some(
            crate::observe::Observer::start(addr, ready.clone())
                .await
                .map_err(Failure::usage)?,
        ),
        _ => None,
    };
    // Every plugin's socket goes in here, for the whole process (reloads included); dropping it
    // when the run ends removes it.
    let sockets = confd_supervisor::SocketDir::create()
        .map_err(|e| Failure::failed(anyhow::anyhow!("cannot prepare the plugin sockets: {e}")))?;
    let _ = SOCKET_DIR.set(sockets.path().to_path_buf());
    let task = settings.task.clone();
    let onetime = settings.onetime;
    let mut cfg = generation::build(settings, None).await?;
    let ctx = service::Context {
        args,
        notifier,
        ready,
        shutdown,
        totals: confd_core::Totals::default(),
        observer,
    };
    if task != Task::Preflight && !onetime {
        return Ok(service::serve(cfg, ctx, signals).await);
    }
    ctx.adopt(&mut cfg);
    let code = if task == Task::Preflight {
        let clients: Vec<_> = cfg
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.client.clone()))
            .collect();
        crate::validate::preflight(&cfg.resources, &clients).await
    } else {
        // A signal lets the pass finish: nothing is left half done.
        let summary = confd_core::run_once(&cfg.resources, &cfg.backends(), &cfg.opts).await;
        ctx.ready.mark();
        log_summary(&summary);
        if summary.failed > 0 {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    };
    generation::stop_plugins(&cfg.plugins).await;
    Ok(code)
}

/// The private directory of this process's plugin sockets, once `run` made it.
static SOCKET_DIR: OnceLock<PathBuf> = OnceLock::new();

/// How plugins are started and kept: supervised (restarted, with deadlines and probes) in the
/// long-running modes; in a one-shot run a dead plugin is an error for its resources, as the run
/// ends anyway.
pub fn client_options(settings: &Settings) -> ClientOptions {
    ClientOptions {
        start_timeout: settings.plugin_start_timeout,
        call_timeout: Some(settings.backend_timeout),
        restart: !settings.onetime,
        // Probes while a watch is open: at most every 5 s, sooner with a short deadline.
        probe_interval: settings.backend_timeout.min(Duration::from_secs(5)),
        events: Some(Arc::new(|backend: &str, event: &PluginEvent| match event {
            PluginEvent::Up => confd_core::metrics::set_plugin_up(backend, true),
            PluginEvent::Restarting { cause } => {
                confd_core::metrics::set_plugin_up(backend, false);
                confd_core::metrics::record_plugin_restart(backend, cause);
            }
        })),
        transport: settings.plugin_transport,
        socket_dir: SOCKET_DIR.get().cloned(),
        ..ClientOptions::default()
    }
}

/// The last log line of a run: what it did, summed over all its passes.
pub fn log_summary(summary: &confd_core::Summary) {
    tracing::info!(
        updated = summary.updated,
        unchanged = summary.unchanged,
        pending = summary.pending,
        failed = summary.failed,
        "done"
    );
}
