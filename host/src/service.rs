//! confd as a long-running service (interval and watch mode): the loop that runs one
//! configuration generation at a time, swaps in a new one on SIGHUP (and, in interval mode,
//! whenever conf.d changed between passes), keeps the old one when the new one does not load,
//! tells systemd what it is doing, and stops cleanly on SIGTERM/SIGINT.

use std::ffi::OsString;
use std::time::Duration;

use confd_core::{FirstPass, Shutdown, Totals};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::generation::{self, Generation};
use crate::notify::{Notifier, status_line};
use crate::observe::Observer;
use crate::run::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::settings::{self, ProcessEnv, Settings};

/// What the generations of one process share.
pub struct Context {
    /// The command line, parsed again on SIGHUP (with the environment and confd.toml).
    pub args: Vec<OsString>,
    pub notifier: Notifier,
    /// The readiness of the process (the `/ready` probe): raised once, after the first pass.
    pub ready: FirstPass,
    pub shutdown: Shutdown,
    pub totals: Totals,
    pub observer: Option<Observer>,
}

impl Context {
    /// Gives `cfg` the process-wide flags and a first-pass flag of its own.
    pub fn adopt(&self, cfg: &mut Generation) {
        cfg.opts.shutdown = self.shutdown.clone();
        cfg.opts.totals = self.totals.clone();
        cfg.opts.first_pass = FirstPass::default();
        if let Some(observer) = &self.observer {
            observer.set_backends(
                cfg.plugins
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
    }

    fn status(&self, cfg: &Generation, last: Option<&str>) -> String {
        let mode = if cfg.settings.watch {
            "watching"
        } else {
            "polling"
        };
        status_line(cfg.resources.len(), mode, &self.totals.get(), last)
    }
}

/// The signals a service reacts to, installed before anything starts.
pub struct Signals {
    /// Turns true on the first SIGTERM or SIGINT.
    pub stop: watch::Receiver<bool>,
    /// One message per SIGHUP.
    pub hup: mpsc::UnboundedReceiver<()>,
}

impl Signals {
    async fn stopped(stop: &mut watch::Receiver<bool>) {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// How a generation ended.
enum Ended {
    /// Shutdown was asked for.
    Stopped,
    /// It could not go on (a backend refused to watch).
    Failed(u8),
    /// Replace it with this one; `announce` when a SIGHUP asked (READY=1 once it ran once).
    Swap {
        next: Box<Generation>,
        announce: bool,
    },
}

/// Runs `cfg` and its successors until shutdown; returns the exit status.
pub async fn serve(mut cfg: Generation, ctx: Context, mut signals: Signals) -> u8 {
    ctx.adopt(&mut cfg);
    let mut watchdog = ctx.notifier.watchdog_every().map(|every| {
        tracing::info!(
            "systemd watchdog on: WATCHDOG=1 every {}",
            humantime::format_duration(every)
        );
        let mut iv = tokio::time::interval_at(Instant::now() + every, every);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        iv
    });
    let mut announce = true;
    let code = loop {
        let ended = if cfg.settings.watch {
            run_watch(&cfg, &ctx, &mut signals, &mut watchdog, announce).await
        } else {
            run_interval(&cfg, &ctx, &mut signals, &mut watchdog, announce).await
        };
        match ended {
            Ended::Stopped => break EXIT_OK,
            Ended::Failed(code) => break code,
            Ended::Swap {
                mut next,
                announce: a,
            } => {
                ctx.adopt(&mut next);
                let replaced = cfg.replaced_by(&next);
                if !replaced.is_empty() {
                    let names: Vec<&str> = replaced.iter().map(|p| p.name.as_str()).collect();
                    tracing::info!(
                        "stopping plugins whose settings changed or that are no longer used: {}",
                        names.join(", ")
                    );
                }
                generation::stop_plugins(&replaced).await;
                cfg = *next;
                announce = a;
            }
        }
    };
    ctx.notifier.stopping();
    generation::stop_plugins(&cfg.plugins).await;
    crate::run::log_summary(&ctx.totals.get());
    code
}

/// One WATCHDOG=1 period, or never when systemd set no watchdog.
async fn tick(watchdog: &mut Option<Interval>) {
    match watchdog {
        Some(iv) => {
            iv.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Watch mode: the watches of `cfg` run (as tasks of their own) until shutdown or a successful
/// reload, which cancels them once the new generation is complete.
async fn run_watch(
    cfg: &Generation,
    ctx: &Context,
    signals: &mut Signals,
    watchdog: &mut Option<Interval>,
    announce: bool,
) -> Ended {
    let backends = cfg.backends();
    let cancel = CancellationToken::new();
    let first = cfg.opts.first_pass.clone();
    let watch = confd_core::run_watch(
        &cfg.resources,
        &backends,
        &cfg.opts,
        cancel.clone().cancelled_owned(),
    );
    let mut watch = std::pin::pin!(watch);
    let mut announced = false;
    loop {
        tokio::select! {
            result = &mut watch => {
                return match result {
                    Ok(_) => Ended::Stopped,
                    Err(err) => {
                        tracing::error!("{err}");
                        Ended::Failed(EXIT_USAGE)
                    }
                };
            }
            () = first.wait(), if !announced => {
                announced = true;
                ctx.ready.mark();
                let status = ctx.status(cfg, Some("watches established"));
                if announce {
                    ctx.notifier.ready(&status);
                } else {
                    ctx.notifier.status(&status);
                }
            }
            () = Signals::stopped(&mut signals.stop) => {
                cancel.cancel();
                let _ = (&mut watch).await;
                return Ended::Stopped;
            }
            Some(()) = signals.hup.recv() => {
                if let Some(next) = reload(cfg, ctx, true).await {
                    cancel.cancel();
                    let _ = (&mut watch).await;
                    return Ended::Swap {
                        next: Box::new(next),
                        announce: true,
                    };
                }
            }
            () = tick(watchdog) => ctx.notifier.watchdog(),
        }
    }
}

/// Interval mode: a pass, then a wait of `--interval`; before the next pass conf.d is read
/// again (a SIGHUP also re-reads confd.toml and the environment) and a changed configuration
/// swaps in.
async fn run_interval(
    cfg: &Generation,
    ctx: &Context,
    signals: &mut Signals,
    watchdog: &mut Option<Interval>,
    announce: bool,
) -> Ended {
    let backends = cfg.backends();
    let mut first = true;
    loop {
        let mut hup = false;
        let summary = {
            let stop = signals.stop.clone();
            let pass = confd_core::run_pass(&cfg.resources, &backends, &cfg.opts, async move {
                let mut stop = stop;
                Signals::stopped(&mut stop).await;
            });
            let mut pass = std::pin::pin!(pass);
            loop {
                tokio::select! {
                    summary = &mut pass => break summary,
                    // Taken after the pass: a pass is never cut short by a reload.
                    Some(()) = signals.hup.recv(), if !hup => hup = true,
                    () = tick(watchdog) => ctx.notifier.watchdog(),
                }
            }
        };
        let last = format!(
            "last pass at {}: {} updated, {} unchanged, {} failed",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            summary.updated,
            summary.unchanged,
            summary.failed
        );
        let status = ctx.status(cfg, Some(&last));
        if first {
            first = false;
            ctx.ready.mark();
            if announce {
                ctx.notifier.ready(&status);
            } else {
                ctx.notifier.status(&status);
            }
        } else {
            ctx.notifier.status(&status);
        }
        if ctx.shutdown.is_set() || *signals.stop.borrow() {
            return Ended::Stopped;
        }
        if !hup {
            let sleep = tokio::time::sleep(Duration::from_secs(cfg.settings.interval));
            let mut sleep = std::pin::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    Some(()) = signals.hup.recv() => {
                        hup = true;
                        break;
                    }
                    () = Signals::stopped(&mut signals.stop) => return Ended::Stopped,
                    () = tick(watchdog) => ctx.notifier.watchdog(),
                }
            }
        }
        if let Some(next) = reload(cfg, ctx, hup).await {
            return Ended::Swap {
                next: Box::new(next),
                announce: hup,
            };
        }
    }
}

/// Builds the next generation: on SIGHUP (`full`) from the command line, the environment and
/// confd.toml read again, otherwise (interval mode, between passes) from conf.d with the same
/// settings. `None` keeps `cfg`: nothing changed, or the new configuration is broken (logged,
/// with the file and line).
async fn reload(cfg: &Generation, ctx: &Context, full: bool) -> Option<Generation> {
    if full {
        tracing::info!("SIGHUP: reloading confd.toml, the environment, conf.d and templates");
        ctx.notifier.reloading();
    }
    let started = std::time::Instant::now();
    if !full && generation::confdir_digest(&cfg.settings.confdir) == cfg.digest {
        // Interval mode, conf.d and templates unchanged: nothing to load.
        return None;
    }
    let settings = if full {
        match reread_settings(&ctx.args, &cfg.settings) {
            Ok(s) => s,
            Err(err) => {
                confd_core::metrics::record_reload(false);
                tracing::error!("reload failed, the running configuration stays: {err:#}");
                ctx.notifier
                    .ready(&ctx.status(cfg, Some("last reload failed: see the log")));
                return None;
            }
        }
    } else {
        cfg.settings.clone()
    };
    match generation::build(settings, Some(cfg)).await {
        Ok(next) => {
            if full {
                confd_core::metrics::record_reload(true);
            }
            tracing::info!(
                resources = next.resources.len(),
                duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "{} loaded",
                if full {
                    "new configuration"
                } else {
                    "changed conf.d"
                }
            );
            Some(next)
        }
        Err(failure) => {
            if full {
                confd_core::metrics::record_reload(false);
            }
            let what = if full { "reload" } else { "re-reading conf.d" };
            tracing::error!(
                "{what} failed, the running configuration stays: {:#}",
                failure.error
            );
            if full {
                ctx.notifier
                    .ready(&ctx.status(cfg, Some("last reload failed: see the log")));
            }
            None
        }
    }
}

/// The settings as they are now on disk and in the environment, with the ones that only a
/// restart can change kept as they were (and a warning).
fn reread_settings(args: &[OsString], running: &Settings) -> anyhow::Result<Settings> {
    let cli = crate::cli::parse(args.iter().cloned())?;
    let mut next = settings::load(&cli, &ProcessEnv)?;
    for warning in &next.warnings {
        tracing::warn!("{warning}");
    }
    let mut fixed = Vec::new();
    if next.watch != running.watch || next.onetime != running.onetime {
        fixed.push("the mode (--watch, --onetime)");
        next.watch = running.watch;
        next.onetime = running.onetime;
    }
    if next.log_level != running.log_level || next.log_format != running.log_format {
        fixed.push("logging (--log-level, --log-format)");
        next.log_level = running.log_level;
        next.log_format = running.log_format;
    }
    if next.metrics_addr != running.metrics_addr {
        fixed.push("--metrics-addr");
        next.metrics_addr = running.metrics_addr;
    }
    if next.shutdown_timeout != running.shutdown_timeout {
        fixed.push("--shutdown-timeout");
        next.shutdown_timeout = running.shutdown_timeout;
    }
    if !fixed.is_empty() {
        tracing::warn!(
            "reload: changes to {} take effect only after a restart",
            fixed.join(", ")
        );
    }
    next.task = running.task.clone();
    Ok(next)
}

/// Installs the handlers for SIGTERM, SIGINT and SIGHUP. The first SIGTERM/SIGINT raises
/// `shutdown` (no new command, no new resource), says STOPPING=1 and starts the
/// `shutdown_timeout` clock; a second one, or the clock running out, exits at once.
pub fn install_signals(
    shutdown: Shutdown,
    notifier: Notifier,
    shutdown_timeout: Duration,
) -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    let (stop_tx, stop) = watch::channel(false);
    let (hup_tx, hup) = mpsc::unbounded_channel();
    match signal(SignalKind::hangup()) {
        Ok(mut sighup) => {
            tokio::spawn(async move {
                while sighup.recv().await.is_some() {
                    if hup_tx.send(()).is_err() {
                        tracing::info!("SIGHUP ignored: nothing to reload in a one-shot run");
                    }
                }
            });
        }
        Err(err) => tracing::warn!("cannot install the SIGHUP handler: {err}"),
    }
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(
                    "received {name}: finishing the writes in progress, running no new command, then exiting"
                );
                shutdown.set();
                notifier.stopping();
                let _ = stop_tx.send(true);
                // A thread, not a task: it must fire even if the runtime is stuck.
                std::thread::spawn(move || {
                    std::thread::sleep(shutdown_timeout);
                    tracing::error!(
                        "shutdown took longer than {}: exiting now",
                        humantime::format_duration(shutdown_timeout)
                    );
                    std::process::exit(i32::from(EXIT_FAILED));
                });
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
    Signals { stop, hup }
}
