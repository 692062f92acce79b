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
    pub name: String,
    pub key: LaunchKey,
    pub client: Arc<PluginClient>,
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
    let opts = run_options(&settings);
    let digest = confdir_digest(&settings.confdir);
    let resources = confd_core::load_resources(&opts).map_err(Failure::usage)?;
    let launches = launches(&settings, &registry, &resources).await?;
    let mut plugins = Vec::new();
    let mut starting = Vec::new();
    for launch in launches {
        let key = LaunchKey::of(&launch, &settings);
        let running = current.and_then(|c| {
            c.plugins
                .iter()
                .find(|p| p.name == launch.name && p.key == key && p.client.is_alive())
        });
        match running {
            Some(p) => plugins.push(p.clone()),
            None => starting.push((launch, key)),
        }
    }
    let options = client_options(&settings);
    let started = futures_util::future::join_all(
        starting
            .into_iter()
            .map(|(launch, key)| start_one(launch, key, options.clone())),
    )
    .await;
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
    if settings.watch
        && !settings.onetime
        && let Err(e) = check_watch_capability(&fresh).await
    {
        stop_plugins(&fresh).await;
        return Err(e);
    }
    plugins.extend(fresh);
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
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

/// One launch per backend the resources use, with SRV-discovered nodes applied.
async fn launches(
    settings: &Settings,
    registry: &Registry,
    resources: &[Resource],
) -> Result<Vec<Launch>, Failure> {
    let names: BTreeSet<String> = resources.iter().map(|r| r.backend().to_string()).collect();
    let self_exe = std::env::current_exe()
        .context("cannot find the confd executable to run builtin backends")
        .map_err(Failure::failed)?;
    let plugin_dev = std::env::var_os("CONFD_PLUGIN_DEV").is_some_and(|v| !v.is_empty());
    let mut launches = names
        .iter()
        .map(|name| {
            registry
                .launch(name, settings, &self_exe, plugin_dev)
                .map_err(|e| Failure::usage(anyhow!("{e} (used by a template resource)")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for launch in &mut launches {
        backends::apply_srv(launch, settings)
            .await
            .map_err(Failure::failed)?;
    }
    Ok(launches)
}

async fn start_one(
    launch: Launch,
    key: LaunchKey,
    options: confd_supervisor::ClientOptions,
) -> anyhow::Result<Plugin> {
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
    Ok(Plugin { name, key, client })
}

/// Stops plugins, all at once.
pub async fn stop_plugins(plugins: &[Plugin]) {
    futures_util::future::join_all(plugins.iter().map(|p| p.client.shutdown())).await;
}

/// Refuses `--watch` up front when a backend says it cannot watch. A plugin without the
/// optional Info call (e.g. a Go plugin) is simply tried.
async fn check_watch_capability(plugins: &[Plugin]) -> Result<(), Failure> {
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
