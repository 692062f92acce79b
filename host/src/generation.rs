//! One configuration of a running confd: the resolved settings, the loaded resources and the
//! plugins serving them. Built at start and again on SIGHUP (and, in interval mode, before each
//! pass) with the same checks, so a reload is all or nothing: either the new generation is
//! complete and replaces the old one, or the old one keeps running. Plugins whose launch did not
//! change are carried over, still running.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use confd_core::{Resource, RunOptions};
use confd_sdk::{Database, ErrorKind, SharedDatabase};
use confd_supervisor::{PluginClient, PluginCommand};

use crate::backends::{self, Launch, Registry};
use crate::routing::{self, Route};
use crate::run::{Failure, client_options, run_options};
use crate::settings::Settings;

/// What makes a running plugin reusable: the same program, arguments, settings and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchKey {
    program: PathBuf,
    args: Vec<OsString>,
    config: BTreeMap<String, String>,
    start_timeout: Duration,
    call_timeout: Duration,
    supervised: bool,
}

impl LaunchKey {
    fn of(launch: &Launch, settings: &Settings) -> LaunchKey {
        LaunchKey {
            program: launch.program.clone(),
            args: launch.args.clone(),
            config: launch.config.clone(),
            start_timeout: settings.plugin_start_timeout,
            call_timeout: settings.backend_timeout,
            supervised: !settings.onetime,
        }
    }
}

/// One started plugin.
#[derive(Clone)]
pub struct Plugin {
    /// Its name in the run ([`Route::id`]): the backend name, or `<name>@<resource>` for a
    /// resource's own `[backend]` table.
    pub name: String,
    pub key: LaunchKey,
    pub client: Arc<PluginClient>,
    /// The resource files it serves, for messages.
    pub used_by: String,
    /// Whether it can watch (asked once, in watch mode, when it starts).
    pub can_watch: bool,
}

/// A complete configuration, ready to run.
pub struct Generation {
    pub settings: Settings,
    pub opts: RunOptions,
    pub resources: Vec<Resource>,
    pub plugins: Vec<Plugin>,
    /// [`confdir_digest`] taken before the resources were read.
    pub digest: u64,
}

impl Generation {
    /// The plugins as confd-core's databases, with call metrics.
    pub fn backends(&self) -> confd_core::Backends {
        self.plugins
            .iter()
            .map(|p| {
                let db = p.client.clone() as SharedDatabase;
                (p.name.clone(), confd_core::metrics::instrument(&p.name, db))
            })
            .collect()
    }

    /// The plugins of `self` that `next` does not carry over: to be stopped once `next` runs.
    pub fn replaced_by(&self, next: &Generation) -> Vec<Plugin> {
        self.plugins
            .iter()
            .filter(|p| {
                !next
                    .plugins
                    .iter()
                    .any(|n| Arc::ptr_eq(&n.client, &p.client))
            })
            .cloned()
            .collect()
    }
}

/// Why a generation could not be built, and whether anything was wrong with the configuration
/// itself (exit 2 at start) or with starting its plugins (exit 1).
pub type BuildResult = Result<Generation, Failure>;

/// Loads `settings`' resources and starts (or carries over from `current`) the plugins they
/// use. Nothing is written. On error every plugin started here is stopped again.
pub async fn build(settings: Settings, current: Option<&Generation>) -> BuildResult {
    let registry = Registry::discover(&settings);
    registry.source(&settings.backend).map_err(Failure::usage)?;
    if !settings.confdir.is_dir() {
        return Err(Failure::usage(anyhow!(
            "confdir {} does not exist or is not a directory",
            settings.confdir.display()
        )));
    }
    let mut opts = run_options(&settings);
    let digest = confdir_digest(&settings.confdir);
    let mut resources = confd_core::load_resources(&opts).map_err(Failure::usage)?;
    let routes = routes(&settings, &registry, &mut resources, current).await?;
    let mut plugins = Vec::new();
    let mut starting = Vec::new();
    for route in routes {
        let key = LaunchKey::of(&route.launch, &settings);
        let running = current.and_then(|c| {
            c.plugins
                .iter()
                .find(|p| p.name == route.id && p.key == key && p.client.is_alive())
        });
        match running {
            Some(p) => plugins.push(Plugin {
                used_by: route.users(),
                ..p.clone()
            }),
            None => starting.push((route, key)),
        }
    }
    let options = client_options(&settings);
    let watch = settings.watch && !settings.onetime;
    let started = futures_util::future::join_all(
        starting
            .into_iter()
            .map(|(route, key)| start_one(route, key, options.clone(), watch)),
    )
    .await;
    let started = started.into_iter().map(|r| {
        r.or_else(|failed| match failed {
            StartFailure::Fatal(e) => Err(e),
            StartFailure::OwnTable(e, down) => {
                tracing::error!(
                    backend = %down.name,
                    "{e:#}; only its resources ({}) fail{}",
                    down.used_by,
                    if watch {
                        ", and it is started again with the restart backoff"
                    } else {
                        ""
                    }
                );
                Ok(down)
            }
        })
    });
    let mut error = None;
    let mut fresh = Vec::new();
    for result in started {
        match result {
            Ok(p) => fresh.push(p),
            Err(e) if error.is_none() => error = Some(e),
            Err(e) => tracing::error!("{e:#}"),
        }
    }
    if let Some(e) = error {
        stop_plugins(&fresh).await;
        return Err(Failure::failed(e));
    }
    plugins.extend(fresh.iter().cloned());
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    if watch {
        match poll_backends(&plugins, &settings) {
            Ok(poll) => opts.poll_backends = poll,
            Err(e) => {
                stop_plugins(&fresh).await;
                return Err(e);
            }
        }
    }
    Ok(Generation {
        settings,
        opts,
        resources,
        plugins,
        digest,
    })
}

/// A digest of every file under `<confdir>/conf.d` and `<confdir>/templates` (names and
/// contents): interval mode reloads before a pass only when it changed.
pub fn confdir_digest(confdir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for sub in ["conf.d", "templates"] {
        let mut files = Vec::new();
        collect_files(&confdir.join(sub), 0, &mut files);
        files.sort();
        for file in files {
            file.hash(&mut hasher);
            std::fs::read(&file).ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    // Symlinks are followed, as when loading; the depth limit stops loops.
    if depth > 32 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => collect_files(&path, depth + 1, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

/// One route per distinct backend setting the resources use (see [`routing`]), with
/// SRV-discovered nodes applied; names each resource's plugin.
async fn routes(
    settings: &Settings,
    registry: &Registry,
    resources: &mut [Resource],
    current: Option<&Generation>,
) -> Result<Vec<Route>, Failure> {
    let self_exe = std::env::current_exe()
        .context("cannot find the confd executable to run builtin backends")
        .map_err(Failure::failed)?;
    let plugin_dev = std::env::var_os("CONFD_PLUGIN_DEV").is_some_and(|v| !v.is_empty());
    let running = |launch: &Launch| {
        let key = LaunchKey::of(launch, settings);
        current?
            .plugins
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.name.clone())
    };
    let mut routes = routing::plan(
        settings, registry, resources, &self_exe, plugin_dev, &running,
    )
    .map_err(Failure::usage)?;
    for route in &mut routes {
        backends::apply_srv(&mut route.launch, &route.settings)
            .await
            .with_context(|| format!("backend {} (used by {})", route.id, route.users()))
            .map_err(Failure::failed)?;
    }
    Ok(routes)
}

/// Why [`start_one`] gave no running plugin.
enum StartFailure {
    /// The run cannot go on without it (the global backend, or its settings were refused).
    Fatal(anyhow::Error),
    /// The plugin of a resource's own `[backend]` table did not start: the error, and a client
    /// that fails its resources' calls (and, when supervised, keeps trying to start it).
    OwnTable(anyhow::Error, Plugin),
}

impl From<anyhow::Error> for StartFailure {
    fn from(e: anyhow::Error) -> StartFailure {
        StartFailure::Fatal(e)
    }
}

async fn start_one(
    route: Route,
    key: LaunchKey,
    options: confd_supervisor::ClientOptions,
    watch: bool,
) -> Result<Plugin, StartFailure> {
    let used_by = route.users();
    let Route {
        id: name, launch, ..
    } = route;
    let Launch {
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
    let client = match PluginClient::start(command.clone(), options.clone()).await {
        Ok(client) => client,
        Err(e) => {
            let e = anyhow!(e).context(format!(
                "cannot start the {name} backend plugin (used by {used_by})"
            ));
            // A resource's own [backend] table (`<name>@<resource>`): its resources fail,
            // the others run.
            if !name.contains('@') {
                return Err(StartFailure::Fatal(e));
            }
            let client = PluginClient::not_started(
                command,
                options,
                config.into_iter().collect(),
                format!("{e:#}"),
            );
            let down = Plugin {
                name,
                key,
                client: Arc::new(client),
                used_by,
                can_watch: true,
            };
            return Err(StartFailure::OwnTable(e, down));
        }
    };
    tracing::debug!(
        backend = %name,
        plugin_pid = client.pid().unwrap_or_default(),
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "plugin started"
    );
    let client = Arc::new(client);
    if let Err(err) = client.configure(config.into_iter().collect()).await {
        client.shutdown().await;
        return Err(StartFailure::Fatal(anyhow!(err).context(format!(
            "the {name} backend rejected its settings (used by {used_by})"
        ))));
    }
    let can_watch = !watch || can_watch(&client, &name).await;
    Ok(Plugin {
        name,
        key,
        client,
        used_by,
        can_watch,
    })
}

/// Stops plugins, all at once.
pub async fn stop_plugins(plugins: &[Plugin]) {
    futures_util::future::join_all(plugins.iter().map(|p| p.client.shutdown())).await;
}

/// Whether a plugin says it can watch. A plugin without the optional Info call (e.g. a Go
/// plugin) is simply tried.
async fn can_watch(client: &PluginClient, name: &str) -> bool {
    match client.info().await {
        Ok(info) => info.capabilities.iter().any(|c| c == "watch"),
        Err(err) if err.kind() == ErrorKind::Unimplemented => true,
        Err(err) => {
            tracing::warn!(backend = %name, "cannot ask the plugin what it offers: {err}");
            true
        }
    }
}

/// Watch mode with backends that cannot watch: when none of the run's backends can, `--watch`
/// is refused up front (nothing would ever be watched); otherwise their resources are read
/// every `--interval` while the others watch.
fn poll_backends(plugins: &[Plugin], settings: &Settings) -> Result<BTreeSet<String>, Failure> {
    let cannot: Vec<&Plugin> = plugins.iter().filter(|p| !p.can_watch).collect();
    if !cannot.is_empty() && cannot.len() == plugins.len() {
        let names: Vec<&str> = cannot.iter().map(|p| p.name.as_str()).collect();
        return Err(Failure::usage(anyhow!(
            "the {} backend{} cannot watch for changes; use --onetime or --interval with {}",
            names.join(", "),
            if names.len() == 1 { "" } else { "s" },
            if names.len() == 1 { "it" } else { "them" },
        )));
    }
    for p in &cannot {
        tracing::warn!(
            backend = %p.name,
            "the {} backend cannot watch for changes: its resources ({}) are read every {}s \
             (--interval) while the others watch",
            p.name,
            p.used_by,
            settings.interval
        );
    }
    Ok(cannot.iter().map(|p| p.name.clone()).collect())
}
