//! The glue of one confd run: settings → resources → plugins → a processing mode → plugins
//! stopped, with the exit status policy (0 ok, 1 a resource or plugin failed, 2 usage or
//! configuration error) in one place.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use confd_sdk::{Database, ErrorKind, SharedDatabase};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, PluginEvent};
use tokio::sync::watch;

use crate::backends::{self, Launch, Registry};
use crate::cli::{self, Command};
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
    let cli = match cli::parse(args) {
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
        print!("{}", Registry::discover(&settings).listing());
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
    let code = match runtime.block_on(run(settings)) {
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
        ..Default::default()
    }
}

/// One started plugin.
struct Started {
    name: String,
    client: Arc<PluginClient>,
}

/// Runs with resolved settings; returns the exit status or the failure that ended the run.
pub async fn run(settings: Settings) -> Result<u8, Failure> {
    match &settings.task {
        Task::CheckConfig => return crate::validate::check_config(&settings),
        Task::Validate { mock_data } => {
            return crate::validate::validate(&settings, mock_data).await;
        }
        Task::Run | Task::Preflight => {}
    }
    let stop = stop_signal();
    let registry = Registry::discover(&settings);
    registry.source(&settings.backend).map_err(Failure::usage)?;
    if !settings.confdir.is_dir() {
        return Err(Failure::usage(anyhow!(
            "confdir {} does not exist or is not a directory",
            settings.confdir.display()
        )));
    }
    let opts = run_options(&settings);
    // Bound before anything starts: a taken port is a usage error, not a surprise later.
    let observer = match settings.metrics_addr {
        Some(addr) if settings.task == Task::Run => Some(
            crate::observe::Observer::start(addr, opts.first_pass.clone())
                .await
                .map_err(Failure::usage)?,
        ),
        _ => None,
    };
    let resources = confd_core::load_resources(&opts).map_err(Failure::usage)?;
    let names: BTreeSet<String> = resources.iter().map(|r| r.backend().to_string()).collect();
    let self_exe = std::env::current_exe()
        .context("cannot find the confd executable to run builtin backends")
        .map_err(Failure::failed)?;
    let plugin_dev = std::env::var_os("CONFD_PLUGIN_DEV").is_some_and(|v| !v.is_empty());
    let mut launches = names
        .iter()
        .map(|name| {
            registry
                .launch(name, &settings, &self_exe, plugin_dev)
                .map_err(|e| Failure::usage(anyhow!("{e} (used by a template resource)")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for launch in &mut launches {
        backends::apply_srv(launch, &settings)
            .await
            .map_err(Failure::failed)?;
    }

    // Every plugin's socket goes in here; dropping it at the end of the run removes it.
    let sockets = confd_supervisor::SocketDir::create()
        .context("cannot prepare the plugin sockets")
        .map_err(Failure::failed)?;
    let started = start_all(launches, &settings, sockets.path()).await;
    let mut plugins = Vec::new();
    let mut start_error = None;
    for result in started {
        match result {
            Ok(s) => plugins.push(s),
            Err(e) if start_error.is_none() => start_error = Some(e),
            Err(e) => tracing::error!("{e:#}"),
        }
    }
    if let Some(observer) = &observer {
        observer.set_backends(
            plugins
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        crate::observe::plugin_health(p.client.clone()),
                    )
                })
                .collect(),
        );
    }
    let outcome = match start_error {
        Some(e) => Err(Failure::failed(e)),
        None if settings.task == Task::Preflight => {
            let clients: Vec<_> = plugins
                .iter()
                .map(|p| (p.name.clone(), p.client.clone()))
                .collect();
            Ok(crate::validate::preflight(&resources, &clients).await)
        }
        None => process(&resources, &plugins, &settings, &opts, stop).await,
    };
    shutdown_all(&plugins).await;
    outcome
}

async fn start_all(
    launches: Vec<Launch>,
    settings: &Settings,
    sockets: &std::path::Path,
) -> Vec<anyhow::Result<Started>> {
    let options = ClientOptions {
        socket_dir: Some(sockets.to_path_buf()),
        ..client_options(settings)
    };
    futures_util::future::join_all(launches.into_iter().map(|l| start_one(l, options.clone())))
        .await
}

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
        ..ClientOptions::default()
    }
}

async fn start_one(launch: Launch, options: ClientOptions) -> anyhow::Result<Started> {
    let Launch {
        name,
        program,
        args,
        config,
        ..
    } = launch;
    tracing::debug!(backend = %name, program = %program.display(), "starting plugin");
    let command = PluginCommand {
        name: name.clone(),
        program,
        args,
        env: Vec::<(OsString, OsString)>::new(),
    };
    let started = std::time::Instant::now();
    let client = PluginClient::start(command, options)
        .await
        .with_context(|| format!("cannot start the {name} backend plugin"))?;
    tracing::debug!(
        backend = %name,
        plugin_pid = client.pid().unwrap_or_default(),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "plugin started"
    );
    let client = Arc::new(client);
    if let Err(err) = client.configure(config.into_iter().collect()).await {
        client.shutdown().await;
        return Err(anyhow!(err))
            .with_context(|| format!("the {name} backend rejected its settings"));
    }
    Ok(Started { name, client })
}

async fn shutdown_all(plugins: &[Started]) {
    futures_util::future::join_all(plugins.iter().map(|p| p.client.shutdown())).await;
}

async fn process(
    resources: &[confd_core::Resource],
    plugins: &[Started],
    settings: &Settings,
    opts: &confd_core::RunOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<u8, Failure> {
    let backends: confd_core::Backends = plugins
        .iter()
        .map(|p| {
            let db = p.client.clone() as SharedDatabase;
            (p.name.clone(), confd_core::metrics::instrument(&p.name, db))
        })
        .collect();
    // A plugin that dies is restarted by its supervisor (see `client_options`); the run goes on.
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let summary = if settings.onetime {
        // A signal lets the pass finish: nothing is left half done.
        confd_core::run_once(resources, &backends, opts).await
    } else if settings.watch {
        check_watch_capability(plugins).await?;
        confd_core::run_watch(resources, &backends, opts, stopped)
            .await
            .map_err(Failure::usage)?
    } else {
        confd_core::run_interval(resources, &backends, opts, stopped).await
    };
    tracing::info!(
        updated = summary.updated,
        unchanged = summary.unchanged,
        pending = summary.pending,
        failed = summary.failed,
        "done"
    );
    // Interval and watch runs end only on SIGTERM/SIGINT, a normal stop: failures on the way
    // were logged and retried, and a service manager must not read them as a crash.
    Ok(if summary.failed > 0 && settings.onetime {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// Refuses `--watch` up front when a backend says it cannot watch. A plugin without the
/// optional Info call (e.g. a Go plugin) is simply tried.
async fn check_watch_capability(plugins: &[Started]) -> Result<(), Failure> {
    for p in plugins {
        match p.client.info().await {
            Ok(info) if !info.capabilities.iter().any(|c| c == "watch") => {
                return Err(Failure::usage(anyhow!(
                    "the {} backend cannot watch for changes; use --onetime or --interval with it",
                    p.name
                )));
            }
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Unimplemented => {}
            Err(err) => {
                tracing::warn!(backend = %p.name, "cannot ask the plugin what it offers: {err}")
            }
        }
    }
    Ok(())
}

/// A flag that turns true on the first SIGTERM or SIGINT. Installing the handlers at start
/// means a signal during plugin start-up still shuts the plugins down cleanly.
fn stop_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!("received {name}: finishing the render in progress, then exiting");
                let _ = tx.send(true);
                // A second signal means the operator will not wait: stop now. Plugins die with us
                // (they get SIGKILL through PR_SET_PDEATHSIG) and destinations are never partial.
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::warn!("received {name} again: exiting at once");
                std::process::exit(i32::from(EXIT_FAILED));
            });
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!("cannot install signal handlers: {err}");
        }
    }
    rx
}
