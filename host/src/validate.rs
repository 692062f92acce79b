//! The runs that check instead of render, for CI and for a rollout: `--check-config` (load
//! everything, contact nothing), `--validate --mock-data` (render against a data file) and
//! `--preflight` (ask the real stores). None of them writes a destination, creates a stage file
//! or runs a command.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use confd_core::metrics::Operation;
use confd_core::{Resource, RunOptions};
use confd_sdk::SharedDatabase;
use confd_supervisor::PluginClient;
use confd_template::EngineKind;

use crate::backends::{self, Registry};
use crate::observe::health;
use crate::run::{EXIT_FAILED, EXIT_OK, Failure, run_options};
use crate::settings::Settings;

/// Everything `--check-config` checks, and what the other checks start from: the backend
/// names resolve, the confdir exists, every resource and template loads. confd.toml has been
/// parsed by then (settings).
pub fn load(settings: &Settings) -> Result<(RunOptions, Vec<Resource>), Failure> {
    let registry = Registry::discover(settings);
    registry.source(&settings.backend).map_err(Failure::usage)?;
    if !settings.confdir.is_dir() {
        return Err(Failure::usage(anyhow!(
            "confdir {} does not exist or is not a directory",
            settings.confdir.display()
        )));
    }
    let opts = run_options(settings);
    let mut resources = confd_core::load_resources(&opts).map_err(Failure::usage)?;
    // Backend names and `[backend]` tables are checked as a run would resolve them; nothing
    // is started (the program path only enters the launch).
    let self_exe = std::env::current_exe().unwrap_or_else(|_| "confd".into());
    crate::routing::plan(
        settings,
        &registry,
        &mut resources,
        &self_exe,
        true,
        &|_| None,
    )
    .map_err(Failure::usage)?;
    Ok((opts, resources))
}

/// `--check-config`: 0 when everything loads (a summary on stdout), 2 with every problem.
pub fn check_config(settings: &Settings) -> Result<u8, Failure> {
    let (_, resources) = load(settings)?;
    let mut templates: Vec<(&str, bool)> = resources
        .iter()
        .map(|r| (r.src(), matches!(r.engine(), EngineKind::Jinja)))
        .collect();
    templates.sort_unstable();
    templates.dedup();
    let jinja = templates.iter().filter(|(_, j)| *j).count();
    let config = settings
        .config_file
        .as_ref()
        .map_or_else(|| "no confd.toml".to_string(), |p| p.display().to_string());
    println!(
        "configuration OK: {config}; {} template resource{} in {}; {} template{} parsed ({} Go, {jinja} Jinja)",
        resources.len(),
        if resources.len() == 1 { "" } else { "s" },
        settings.confdir.display(),
        templates.len(),
        if templates.len() == 1 { "" } else { "s" },
        templates.len() - jinja,
    );
    Ok(EXIT_OK)
}

/// `--validate --mock-data FILE`: renders every resource against the file's data and prints
/// what would be written (with `--diff`, the diff against each destination). Exit 1 when a
/// resource does not render or fails its `output_format`.
pub async fn validate(settings: &Settings, mock_data: &Path) -> Result<u8, Failure> {
    let (_, resources) = load(settings)?;
    let db = backends::mock_database(mock_data)
        .await
        .map_err(|e| Failure::usage(anyhow!("--mock-data {}: {e:#}", mock_data.display())))?;
    let by_name: confd_core::Backends = resources
        .iter()
        .map(|r| (r.backend().to_string(), db.clone()))
        .collect();
    let previews = confd_core::preview(&resources, &by_name).await;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for p in &previews {
        let (dest, file) = (p.resource.dest(), p.resource.source_file());
        for key in &p.missing {
            tracing::warn!(
                resource = %file.display(),
                dest = %dest.display(),
                "the mock data has no value under {key}"
            );
        }
        match &p.rendered {
            Ok(text) if settings.diff => {
                let current = std::fs::read(dest).unwrap_or_default();
                if current == text.as_bytes() {
                    let _ = writeln!(
                        out,
                        "==> {} ({}): unchanged",
                        dest.display(),
                        file.display()
                    );
                } else {
                    let _ = write!(
                        out,
                        "{}",
                        confd_core::unified_diff(dest, &current, text.as_bytes())
                    );
                }
            }
            Ok(text) => {
                let _ = writeln!(out, "==> {} ({})", dest.display(), file.display());
                let _ = write!(out, "{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    let _ = writeln!(out);
                }
            }
            Err(err) => {
                failed += 1;
                eprintln!("confd: {} ({}): {err}", dest.display(), file.display());
            }
        }
    }
    let _ = out.flush();
    eprintln!(
        "confd: validated {} template resource{}: {} rendered, {failed} failed",
        previews.len(),
        if previews.len() == 1 { "" } else { "s" },
        previews.len() - failed
    );
    Ok(if failed > 0 { EXIT_FAILED } else { EXIT_OK })
}

/// `--preflight`, once the plugins run: health-checks each backend, reads every resource's keys
/// once and renders in memory. Prints one line per backend and per resource; exit 0 only when
/// every backend is healthy and every resource has all its keys and renders.
pub async fn preflight(resources: &[Resource], plugins: &[(String, Arc<PluginClient>)]) -> u8 {
    let mut problems = 0;
    let mut out = std::io::stdout().lock();
    for (name, client) in plugins {
        let probe = health::plugin_health(client.clone());
        let report = health::run_check(name, probe.as_ref(), Operation::HealthCheck).await;
        let verdict = if report.healthy { "ok" } else { "UNHEALTHY" };
        if !report.healthy {
            problems += 1;
        }
        let _ = writeln!(
            out,
            "backend {name}: {verdict} ({} ms){}",
            report.duration.as_millis(),
            if report.healthy {
                String::new()
            } else {
                format!(": {}", report.message)
            }
        );
    }
    let by_name: confd_core::Backends = plugins
        .iter()
        .map(|(name, client)| (name.clone(), client.clone() as SharedDatabase))
        .collect();
    for p in confd_core::preview(resources, &by_name).await {
        let mut what = Vec::new();
        if !p.missing.is_empty() {
            what.push(format!("no value under {}", p.missing.join(", ")));
        }
        if let Err(err) = &p.rendered {
            what.push(err.to_string());
        }
        if !what.is_empty() {
            problems += 1;
        }
        let _ = writeln!(
            out,
            "{} ({}): {}",
            p.resource.dest().display(),
            p.resource.source_file().display(),
            if what.is_empty() {
                "ok".to_string()
            } else {
                format!("MISSING: {}", what.join("; "))
            }
        );
    }
    let _ = out.flush();
    if problems > 0 {
        eprintln!("confd: preflight found {problems} problem(s)");
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
