//! Which plugin serves each resource. A resource reads the global backend, the backend its
//! `[template]` names with `backend = "<name>"` (global settings), or the backend of its own
//! `[backend]` table (the maintained fork's per-resource backend: `backend = "<name>"` plus that
//! backend's confd.toml keys, nothing inherited from the global settings). Resources whose
//! backends resolve to the same launch (program, arguments, settings) share one plugin process,
//! so a table identical to the global settings uses the global plugin, and two etcd clusters
//! side by side get one process each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use confd_core::Resource;

use crate::backends::{self, Launch, Registry};
use crate::cli::Cli;
use crate::settings::{self, FileConfig, Settings};

/// One plugin of a run and the resources it serves.
#[derive(Debug, Clone)]
pub struct Route {
    /// The plugin's name in the run (logs, metrics, probes, errors): the backend's name for the
    /// global backend and for `backend = "<name>"`, `<name>@<resource>` for a `[backend]` table
    /// whose settings differ from the global ones (`vault@app/secrets` for
    /// `conf.d/app/secrets.toml`, the first resource file using those settings).
    pub id: String,
    pub launch: Launch,
    /// The settings the launch was made from: the global ones, or those of the table (SRV
    /// discovery reads `srv_record`, `srv_domain` and `scheme` from them).
    pub settings: Settings,
    /// The resource files it serves, in load order.
    pub used_by: Vec<PathBuf>,
}

impl Route {
    /// `conf.d/a.toml, conf.d/b.toml`, for messages.
    pub fn users(&self) -> String {
        self.used_by
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resolves every resource's backend into a route and names each resource's plugin in it
/// ([`Resource::route_to`]). Every problem is reported at once, each naming its resource file:
/// an unknown backend, a `[backend]` table without `backend`, a key no backend takes.
/// `running` gives the name of a plugin already running with the same launch (a reload), so a
/// plugin keeps its name, and is carried over, when another resource file comes first now.
pub fn plan(
    settings: &Settings,
    registry: &Registry,
    resources: &mut [Resource],
    self_exe: &Path,
    plugin_dev: bool,
    running: &dyn Fn(&Launch) -> Option<String>,
) -> anyhow::Result<Vec<Route>> {
    // Each distinct launch, whether it came from a table, and its resources (indexes).
    let mut found: Vec<(Launch, Settings, bool, Vec<usize>)> = Vec::new();
    let mut problems = Vec::new();
    // Resources without a table first: a table identical to the global settings then joins
    // the global backend's plugin and keeps its plain name.
    let order: Vec<usize> = (0..resources.len())
        .filter(|&i| resources[i].backend_table().is_none())
        .chain((0..resources.len()).filter(|&i| resources[i].backend_table().is_some()))
        .collect();
    // Resources without a table resolve the same few names over and over (1,000 resources on
    // one backend): resolve each once, which also warns once about a file overriding a builtin.
    let mut global: BTreeMap<String, Result<Launch, String>> = BTreeMap::new();
    for i in order {
        let r = &resources[i];
        let (launch, from, table) = match r.backend_table() {
            None => match global.entry(r.backend().to_string()).or_insert_with(|| {
                registry
                    .launch(r.backend(), settings, self_exe, plugin_dev)
                    .map_err(|e| e.to_string())
            }) {
                Ok(launch) => (launch.clone(), settings.clone(), false),
                Err(e) => {
                    problems.push(format!("{}: {e}", r.source_file().display()));
                    continue;
                }
            },
            Some(table) => {
                match table_settings(table, registry, r.source_file()).and_then(|s| {
                    registry
                        .launch(&s.backend, &s, self_exe, plugin_dev)
                        .map(|l| (l, s))
                        .map_err(|e| e.to_string())
                }) {
                    Ok((launch, s)) => (launch, s, true),
                    Err(e) => {
                        problems.push(format!("{}: [backend]: {e}", r.source_file().display()));
                        continue;
                    }
                }
            }
        };
        // SRV discovery replaces the nodes only after planning: tables that differ in it alone
        // must not share a plugin.
        let srv = |s: &Settings| {
            (s.srv_record.is_some() || s.srv_domain.is_some())
                .then(|| (s.srv_record.clone(), s.srv_domain.clone(), s.scheme.clone()))
        };
        match found
            .iter_mut()
            .find(|(l, s, ..)| *l == launch && srv(s) == srv(&from))
        {
            Some((.., members)) => members.push(i),
            None => found.push((launch, from, table, vec![i])),
        }
    }
    if !problems.is_empty() {
        return Err(anyhow!("{}", problems.join("\n  ")));
    }
    // Names: plain backend names; then the names of running plugins; then `<name>@<file>`,
    // made unique should an old name stand in the way.
    let mut ids: Vec<Option<String>> = found
        .iter()
        .map(|(launch, _, table, _)| (!table).then(|| launch.name.clone()))
        .collect();
    for (k, (launch, _, table, _)) in found.iter().enumerate() {
        if *table && let Some(id) = running(launch).filter(|id| !ids.contains(&Some(id.clone()))) {
            ids[k] = Some(id);
        }
    }
    for k in 0..found.len() {
        if ids[k].is_some() {
            continue;
        }
        let (launch, _, _, members) = &found[k];
        let first = resources[members[0]].source_file();
        let base = format!(
            "{}@{}",
            launch.name,
            resource_name(first, &settings.confdir)
        );
        let mut id = base.clone();
        let mut n = 2;
        while ids.contains(&Some(id.clone())) {
            id = format!("{base}#{n}");
            n += 1;
        }
        ids[k] = Some(id);
    }
    let mut routes = Vec::new();
    for ((launch, from, _, members), id) in found.into_iter().zip(ids) {
        let id = id.unwrap_or_else(|| launch.name.clone());
        for &i in &members {
            resources[i].route_to(id.clone());
        }
        routes.push(Route {
            id,
            launch,
            settings: from,
            used_by: members
                .iter()
                .map(|&i| resources[i].source_file().to_path_buf())
                .collect(),
        });
    }
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(routes)
}

/// What `--list-backends` adds below the names: how a resource picks its own backend and,
/// when the confdir loads, the plugins its resources would start (one per distinct setting).
pub fn listing(settings: &Settings, registry: &Registry) -> String {
    let mut out = String::from(
        "\nA resource reads its own backend with a [backend] table: backend = \"<name>\" and that \
         backend's confd.toml keys (nodes, auth_type, ...).\n",
    );
    let opts = crate::run::run_options(settings);
    let Ok(mut resources) = confd_core::load_resources(&opts) else {
        return out;
    };
    let self_exe = std::env::current_exe().unwrap_or_else(|_| "confd".into());
    let Ok(routes) = plan(settings, registry, &mut resources, &self_exe, true, &|_| {
        None
    }) else {
        return out;
    };
    if routes.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "\nPlugins for the resources in {}:\n",
        settings.confdir.join("conf.d").display()
    ));
    let width = routes.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for route in &routes {
        out.push_str(&format!("{:<width$}  {}\n", route.id, route.users()));
    }
    out
}

/// `app/secrets` for `<confdir>/conf.d/app/secrets.toml`.
fn resource_name(file: &Path, confdir: &Path) -> String {
    let relative = file
        .strip_prefix(confdir.join("conf.d"))
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned();
    relative
        .strip_suffix(".toml")
        .unwrap_or(&relative)
        .to_string()
}

/// The confd.toml keys a `[backend]` table may hold besides `backend`, by their underscore
/// names: the backend settings ([`Settings::HOST_SETTINGS`]) and SRV discovery.
fn is_backend_key(name: &str) -> bool {
    Settings::HOST_SETTINGS.contains(&name) || matches!(name, "srv_domain" | "srv_record")
}

/// confd.toml keys that are not backend settings: refused in a `[backend]` table, so a
/// misplaced one is not silently handed to the plugin.
const GLOBAL_ONLY: &[&str] = &[
    "confdir",
    "onetime",
    "interval",
    "watch",
    "noop",
    "diff",
    "sync_only",
    "keep_stage_file",
    "keepstagefile",
    "prefix",
    "log_level",
    "log_format",
    "template_engine",
    "check_cmd_timeout",
    "reload_cmd_timeout",
    "debounce",
    "debounce_max",
    "shutdown_timeout",
    "failure_mode",
    "plugin_start_timeout",
    "backend_timeout",
    "plugin_dir",
    "plugin_dirs",
    "no_cwd_plugins",
    "plugin_transport",
    "metrics_addr",
    "plugins",
];

/// The maintained fork's `[backend]` keys for its AWS backends that have a backend here: the
/// fork's key, the backend it tunes, and that backend's own setting.
const FORK_AWS: &[(&str, &str, &str)] = &[
    (
        "secretsmanager_version_stage",
        "secretsmanager",
        "versionStage",
    ),
    ("secretsmanager_no_flatten", "secretsmanager", "noFlatten"),
    ("imds_cache_ttl", "imds", "cacheTtl"),
];

/// Keys the maintained fork's `[backend]` table takes for its ACM backend and its redis
/// client tuning, which have no meaning here: ignored with a warning, so its confdirs load.
const FORK_ONLY: &[&str] = &[
    "acm_export_private_key",
    "read_timeout",
    "write_timeout",
    "retry_max_attempts",
    "retry_base_delay",
    "retry_max_delay",
];

/// The confd.toml spelling of a table key: case-insensitive, `-` or `_`, and the original's
/// aliases.
fn confd_key(key: &str) -> String {
    let k = key.to_ascii_lowercase().replace('-', "_");
    match k.as_str() {
        "node" => "nodes".to_string(),
        "client_ca_keys" => "client_cakeys".to_string(),
        _ => k,
    }
}

/// A `[backend]` table as the settings of its backend: its confd.toml keys resolved exactly as
/// confd.toml's (same names, aliases and checks), over the defaults and nothing else. Other keys
/// are the plugin's own settings: a builtin's documented keys (`kvVersion`), or anything for a
/// plugin that is not a builtin.
pub fn table_settings(
    table: &toml::Table,
    registry: &Registry,
    file: &Path,
) -> Result<Settings, String> {
    let mut confd = toml::Table::new();
    let mut own = BTreeMap::new();
    let mut name = None;
    let mut fork_aws = Vec::new();
    for (key, value) in table {
        let k = confd_key(key);
        if let Some(&(_, backend, setting)) = FORK_AWS.iter().find(|(f, _, _)| *f == k) {
            fork_aws.push((key, backend, setting, value));
        } else if k == "backend" {
            name = Some(
                value
                    .as_str()
                    .ok_or_else(|| "`backend` must be a string (a backend name)".to_string())?
                    .to_string(),
            );
            confd.insert("backend".to_string(), value.clone());
        } else if is_backend_key(&k) {
            confd.insert(k, value.clone());
        } else if FORK_ONLY.contains(&k.as_str()) {
            tracing::warn!(
                "{}: [backend]: ignoring {key:?}: it tunes a backend or client of the maintained \
                 Go fork that this confd does not have",
                file.display()
            );
        } else if GLOBAL_ONLY.contains(&k.as_str()) {
            return Err(format!(
                "{key:?} is not a backend setting; it belongs in confd.toml or on the command \
                 line"
            ));
        } else {
            own.insert(key.clone(), value.clone());
        }
    }
    let Some(name) = name else {
        return Err("missing `backend = \"<name>\"` (the backend this resource reads)".to_string());
    };
    registry.source(&name).map_err(|e| e.to_string())?;
    for (key, backend, setting, value) in fork_aws {
        if *backend == name {
            own.insert(setting.to_string(), value.clone());
        } else {
            tracing::warn!(
                "{}: [backend]: ignoring {key:?}: it tunes the {backend} backend, not {name}",
                file.display()
            );
        }
    }
    let file: FileConfig = toml::Value::Table(confd)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string().trim_end().replace('\n', " "))?;
    let mut resolved = settings::resolve(&Cli::default(), &BTreeMap::<String, String>::new(), file)
        .map_err(|e| format!("{e:#}"))?;
    let mut plugin = BTreeMap::new();
    // A file overriding a builtin still receives the builtin's keys (as `config_for` sends).
    let builtin = backends::builtin(&name);
    for (key, value) in own {
        let text = settings::toml_value_to_string(&value).map_err(|e| format!("{key}: {e:#}"))?;
        match builtin {
            None => {
                plugin.insert(key, text);
            }
            Some(b) => {
                let Some(setting) = b.settings.iter().find(|s| s.key.eq_ignore_ascii_case(&key))
                else {
                    return Err(format!(
                        "unknown key {key:?}: the {name} backend takes the confd.toml backend \
                         keys ({}) and its own settings ({})",
                        Settings::HOST_SETTINGS.join(", "),
                        b.settings
                            .iter()
                            .map(|s| s.key)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                };
                plugin.insert(setting.key.to_string(), text);
            }
        }
    }
    resolved.plugins = BTreeMap::from([(name, plugin)]);
    Ok(resolved)
}

#[cfg(test)]
mod tests;
