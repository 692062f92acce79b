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
    confd_builtin_vault::DESCRIPTOR,
    confd_builtin_zookeeper::DESCRIPTOR,
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
    skipped: Vec<Skipped>,
}

/// A `confd-database-*` executable discovery refused to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not using the plugin {}: {}; the builtin or another plugin of that name is used \
             instead",
            self.path.display(),
            self.reason
        )
    }
}

/// Where discovery looks for `confd-database-*` executables, from the settings. In increasing
/// priority: the confd executable's directory, the current directory (unless
/// `--no-cwd-plugins`), then the `--plugin-dir` directories, of which the first given wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub plugin_dirs: Vec<PathBuf>,
    pub no_cwd: bool,
}

impl Discovery {
    pub fn from_settings(settings: &Settings) -> Discovery {
        Discovery {
            plugin_dirs: settings.plugin_dirs.clone(),
            no_cwd: settings.no_cwd_plugins,
        }
    }

    /// The directories to search, in increasing priority, given the executable's directory
    /// and the current one.
    pub fn dirs(&self, exe_dir: Option<PathBuf>, cwd: Option<PathBuf>) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = exe_dir.into_iter().collect();
        if !self.no_cwd {
            dirs.extend(cwd);
        }
        dirs.extend(self.plugin_dirs.iter().rev().map(|d| absolute(d)));
        dirs
    }
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
    /// Discovery for this process with its settings (`--plugin-dir`, `--no-cwd-plugins`), with a
    /// warning for every plugin file refused. Also removes the socket directories plugins of
    /// dead confd processes left behind ([`crate::cleanup`]).
    pub fn discover(settings: &Settings) -> Registry {
        crate::cleanup::remove_stale_socket_dirs();
        let registry = Registry::discover_with(&Discovery::from_settings(settings));
        for skipped in &registry.skipped {
            tracing::warn!("{skipped}");
        }
        registry
    }

    /// Discovery in the directories `discovery` names.
    pub fn discover_with(discovery: &Discovery) -> Registry {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let cwd = std::env::current_dir().ok();
        let dirs = discovery.dirs(exe_dir, cwd);
        Registry::discover_in(dirs.iter().map(PathBuf::as_path))
    }

    /// Discovery over explicit directories, in increasing priority. Only files that pass
    /// [`check_plugin_file`] in a directory that passes [`check_plugin_dir`] are used; the
    /// others are listed in [`Registry::skipped`].
    pub fn discover_in<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Registry {
        let euid = nix::unistd::geteuid().as_raw();
        let mut files = BTreeMap::new();
        let mut skipped = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let candidates: Vec<(String, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let file_name = entry.file_name();
                    let name = plugin_name(file_name.to_str()?)?;
                    Some((name.to_string(), absolute(&entry.path())))
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let dir_problem = check_plugin_dir(dir, euid).err();
            let mut found = Vec::new();
            for (name, path) in candidates {
                let problem = match check_plugin_file(&path, euid) {
                    FileCheck::NotAPlugin => continue,
                    FileCheck::Unsafe(reason) => Some(reason),
                    FileCheck::Usable => dir_problem.clone(),
                };
                match problem {
                    Some(reason) => skipped.push(Skipped { path, reason }),
                    None => found.push((name, path)),
                }
            }
            // Within one directory, `x` and `x.exe` both map to `x`; sorting makes the pick
            // stable (the shorter, extension-less file sorts first and loses to the later one).
            found.sort();
            files.extend(found);
        }
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Registry { files, skipped }
    }

    /// The plugin files discovery refused, with the reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
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
    let Some(record) = srv_record(launch, settings) else {
        return Ok(());
    };
    let found = confd_dns::discover_nodes(&record)
        .await
        .map_err(|e| anyhow::anyhow!("cannot discover the {} nodes: {e}", launch.name))?;
    set_srv_nodes(launch, settings, &record, found);
    Ok(())
}

/// The SRV record `settings` (the global ones, or a `[backend]` table's) name for `launch`'s
/// backend; `None` without discovery or for a backend whose nodes are not `host:port`.
pub fn srv_record(launch: &Launch, settings: &Settings) -> Option<String> {
    let b = builtin(&launch.name)?;
    if b.srv_nodes == confd_sdk::SrvNodes::None {
        return None;
    }
    confd_dns::record_for(
        &launch.name,
        settings.srv_record.as_deref(),
        settings.srv_domain.as_deref(),
    )
}

/// Makes the `host:port` answers of `record` the launch's nodes, written as its backend wants
/// them (URLs with `settings`' scheme for etcd).
pub fn set_srv_nodes(launch: &mut Launch, settings: &Settings, record: &str, found: Vec<String>) {
    let Some(b) = builtin(&launch.name) else {
        return;
    };
    let nodes = b.srv_nodes(&settings.scheme, found);
    tracing::info!(backend = %launch.name, record = %record, nodes = %nodes.join(","), "nodes from DNS SRV");
    launch.config.insert("nodes".to_string(), nodes.join(","));
}

/// The plugin name in a file name: after `confd-database-`, up to the first `.`.
pub fn plugin_name(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix(PLUGIN_PREFIX)?;
    let name = rest.split('.').next().unwrap_or(rest);
    (!name.is_empty()).then_some(name)
}

/// What [`check_plugin_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// A regular executable file that may be run.
    Usable,
    /// Not a regular file with an execute bit (a dep-info file, an editor backup, a
    /// directory, a dangling link): silently not a plugin. Unlike the Go branch we skip them:
    /// build directories hold `confd-database-x.d` files and running them only gives a
    /// confusing "permission denied".
    NotAPlugin,
    /// An executable that someone other than root or us could have put there or changed.
    Unsafe(String),
}

/// The rule ssh applies to its files, for a plugin file: the file (for a symlink, its target)
/// must be owned by root or by the user running confd (`euid`) and not be writable by group or
/// others; a symlink must itself be owned by root or that user. Otherwise another user could
/// have confd run their program, as root when confd runs as root.
pub fn check_plugin_file(path: &Path, euid: u32) -> FileCheck {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return FileCheck::NotAPlugin;
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return FileCheck::NotAPlugin;
    };
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return FileCheck::NotAPlugin;
    }
    if link.file_type().is_symlink() && !trusted_owner(link.uid(), euid) {
        return FileCheck::Unsafe(format!(
            "it is a symbolic link owned by uid {}, neither root nor the user running confd \
             (uid {euid})",
            link.uid()
        ));
    }
    let what = if link.file_type().is_symlink() {
        "the file it links to"
    } else {
        "it"
    };
    if !trusted_owner(meta.uid(), euid) {
        return FileCheck::Unsafe(format!(
            "{what} is owned by uid {}, neither root nor the user running confd (uid {euid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return FileCheck::Unsafe(format!(
            "{what} is writable by group or others (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    FileCheck::Usable
}

/// The same rule for the directory holding plugin files: whoever can write to it can replace
/// a checked file between the check and its start.
pub fn check_plugin_dir(dir: &Path, euid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("its directory {} cannot be checked: {e}", dir.display()))?;
    if !trusted_owner(meta.uid(), euid) {
        return Err(format!(
            "its directory {} is owned by uid {}, neither root nor the user running confd \
             (uid {euid})",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "its directory {} is writable by group or others (mode {:04o})",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn trusted_owner(uid: u32, euid: u32) -> bool {
    uid == 0 || uid == euid
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
