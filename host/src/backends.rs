//! Backend resolution: the only place in the host that knows backend names. It maps a name to
//! the process that serves it (a builtin run as `confd internal-plugin database <name>`, or a
//! discovered `confd-database-<name>` file) and to the settings map its `Configure` receives.
//! Everything past this module handles backends as `Arc<dyn Database>`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use confd_sdk::Descriptor;

use crate::settings::Settings;

/// File name prefix of an external database plugin.
pub const PLUGIN_PREFIX: &str = "confd-database-";

/// Every builtin backend, sorted by name: the one list of them. Everything else (discovery,
/// `internal-plugin`, `--list-backends`, SRV discovery, default nodes, the settings each
/// `Configure` receives) reads these descriptions.
pub const BUILTINS: &[Descriptor] = &[
    confd_builtin_consul::DESCRIPTOR,
    confd_builtin_env::DESCRIPTOR,
    confd_builtin_etcd::DESCRIPTOR,
    confd_builtin_file::DESCRIPTOR,
    confd_builtin_redis::DESCRIPTOR,
];

/// The backend used when none is configured (confd's default).
pub const DEFAULT_BACKEND: &str = confd_builtin_etcd::NAME;

/// The builtin a name (or alias) refers to.
pub fn builtin(name: &str) -> Option<&'static Descriptor> {
    BUILTINS.iter().find(|b| b.answers_to(name))
}

/// What provides a backend name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled in; served by this binary's `internal-plugin` subcommand.
    Builtin(&'static str),
    /// An executable found on disk.
    File(PathBuf),
}

/// The names discovery found, plus the builtins.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    files: BTreeMap<String, PathBuf>,
}

/// A name nobody provides; the message lists what exists.
#[derive(Debug)]
pub struct UnknownBackend {
    pub name: String,
    pub known: Vec<String>,
}

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown backend {:?}; known backends: {}",
            self.name,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for UnknownBackend {}

/// A backend ready to start: the command line and its Configure settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The name as resources and `--backend` spell it; tags the plugin's log lines.
    pub name: String,
    pub source: Source,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub config: BTreeMap<String, String>,
}

impl Registry {
    /// Looks for `confd-database-*` files in the confd executable's directory, then in the
    /// current directory; a later directory wins for the same name.
    pub fn discover() -> Registry {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let cwd = std::env::current_dir().ok();
        Registry::discover_in(exe_dir.iter().chain(cwd.iter()).map(PathBuf::as_path))
    }

    /// Discovery over explicit directories, in increasing priority.
    pub fn discover_in<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Registry {
        let mut files = BTreeMap::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<(String, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let file_name = entry.file_name();
                    let name = plugin_name(file_name.to_str()?)?;
                    let path = entry.path();
                    is_executable(&path).then(|| (name.to_string(), absolute(&path)))
                })
                .collect();
            // Within one directory, `x` and `x.exe` both map to `x`; sorting makes the pick
            // stable (the shorter, extension-less file sorts first and loses to the later one).
            found.sort();
            files.extend(found);
        }
        Registry { files }
    }

    /// Every name and its provider, sorted by name.
    pub fn entries(&self) -> BTreeMap<String, Source> {
        let mut all = BTreeMap::new();
        for b in BUILTINS {
            all.insert(b.name.to_string(), Source::Builtin(b.name));
            for alias in b.aliases {
                all.insert((*alias).to_string(), Source::Builtin(b.name));
            }
        }
        for (name, path) in &self.files {
            all.insert(name.clone(), Source::File(path.clone()));
        }
        all
    }

    /// The `--list-backends` text: one `name  provider` line each.
    pub fn listing(&self) -> String {
        let entries = self.entries();
        let width = entries.keys().map(String::len).max().unwrap_or(0);
        let mut out = String::new();
        for (name, source) in entries {
            let what = match source {
                Source::Builtin(b) if b == name => match builtin(b) {
                    Some(d) => format!("builtin: {}", d.summary),
                    None => "builtin".to_string(),
                },
                Source::Builtin(b) => format!("builtin (alias of {b})"),
                Source::File(path) => path.display().to_string(),
            };
            out.push_str(&format!("{name:<width$}  {what}\n"));
        }
        out
    }

    /// What provides `name`, or an error listing the known names.
    pub fn source(&self, name: &str) -> Result<Source, UnknownBackend> {
        self.entries().remove(name).ok_or_else(|| UnknownBackend {
            name: name.to_string(),
            known: self.entries().into_keys().collect(),
        })
    }

    /// Resolves `name` into a command line and its settings map. `self_exe` is the confd
    /// binary that serves builtins.
    pub fn launch(
        &self,
        name: &str,
        settings: &Settings,
        self_exe: &Path,
        plugin_dev: bool,
    ) -> Result<Launch, UnknownBackend> {
        let source = self.source(name)?;
        let (program, args) = match &source {
            Source::Builtin(b) => (
                self_exe.to_path_buf(),
                vec![
                    OsString::from("internal-plugin"),
                    OsString::from("database"),
                    OsString::from(*b),
                ],
            ),
            Source::File(path) => {
                if builtin(name).is_some() && !plugin_dev {
                    tracing::warn!(
                        "{} overrides the builtin {name} backend; remove the file to use the \
                         builtin (set CONFD_PLUGIN_DEV=1 to silence this warning)",
                        path.display()
                    );
                }
                (path.clone(), Vec::new())
            }
        };
        Ok(Launch {
            name: name.to_string(),
            source,
            program,
            args,
            config: config_for(name, settings),
        })
    }
}

/// `confd internal-plugin database <name>`: serves a builtin through the SDK, exactly as its
/// `confd-database-<name>` executable would. Returns only on a bad request.
pub fn serve_builtin(kind: &str, name: &str) -> anyhow::Result<std::convert::Infallible> {
    if kind != "database" {
        anyhow::bail!("unknown plugin type {kind:?}: only \"database\" exists");
    }
    match builtin(name) {
        Some(d) => confd_sdk::serve(d.serve_opts()),
        None => anyhow::bail!(
            "{name:?} is not a builtin backend; builtins: {}",
            BUILTINS
                .iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The file backend in this process, reading `path`: the data `--validate --mock-data` renders
/// with (YAML or JSON, exactly as `--backend file --file <path>` reads it). The file is read
/// once here, so a missing or broken file is reported before anything renders.
pub async fn mock_database(path: &Path) -> anyhow::Result<confd_sdk::SharedDatabase> {
    let db = (confd_builtin_file::DESCRIPTOR.database)();
    let config = [("file".to_string(), path.display().to_string())]
        .into_iter()
        .collect();
    db.configure(config).await?;
    db.get_values(&["/".to_string()]).await?;
    Ok(db)
}

/// `--srv-record` / `--srv-domain`: the nodes come from DNS SRV records, replacing the
/// configured ones, for builtins that take nodes (as confd does; env and file ignore it).
/// A failed lookup is an error, as in confd.
pub async fn apply_srv(launch: &mut Launch, settings: &Settings) -> anyhow::Result<()> {
    let Some(b) = builtin(&launch.name) else {
        return Ok(());
    };
    if b.srv_nodes == confd_sdk::SrvNodes::None {
        return Ok(());
    }
    let Some(record) = confd_dns::record_for(
        &launch.name,
        settings.srv_record.as_deref(),
        settings.srv_domain.as_deref(),
    ) else {
        return Ok(());
    };
    let found = confd_dns::discover_nodes(&record)
        .await
        .map_err(|e| anyhow::anyhow!("cannot discover the {} nodes: {e}", launch.name))?;
    let nodes = b.srv_nodes(&settings.scheme, found);
    tracing::info!(backend = %launch.name, record = %record, nodes = %nodes.join(","), "nodes from DNS SRV");
    launch.config.insert("nodes".to_string(), nodes.join(","));
    Ok(())
}

/// The plugin name in a file name: after `confd-database-`, up to the first `.`.
pub fn plugin_name(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix(PLUGIN_PREFIX)?;
    let name = rest.split('.').next().unwrap_or(rest);
    (!name.is_empty()).then_some(name)
}

/// A regular file (symlinks followed) with an execute bit. Unlike the Go branch we skip
/// non-executable files: build directories hold `confd-database-x.d` dep-info files and
/// editors leave backups, and running them only gives a confusing "permission denied".
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The map `Configure` receives. A builtin name (also when a file overrides it) gets the confd
/// settings its description lists, each from the first of its host settings that is set, and
/// its default nodes when none is configured; any other plugin gets only `[plugins.<name>]` and
/// `--plugin-config`. Those user settings are merged last, over the builtin keys.
pub fn config_for(name: &str, settings: &Settings) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(b) = builtin(name) {
        for setting in b.settings {
            let value = setting
                .from
                .iter()
                .find_map(|host| settings.host_value(host));
            if let Some(value) = value {
                map.insert(setting.key.to_string(), value);
            }
        }
        if b.setting("nodes").is_some() && settings.nodes.is_empty() && !b.default_nodes.is_empty()
        {
            map.insert("nodes".to_string(), b.default_nodes.join(","));
        }
    }
    if let Some(user) = settings.plugins.get(name) {
        map.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    map
}

#[cfg(test)]
mod tests;
