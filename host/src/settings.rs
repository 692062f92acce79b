//! Turns the three raw inputs (flags, `CONFD_*` environment, confd.toml) into one resolved
//! [`Settings`], key by key: flag > environment > file > default. Both older confd tools get this
//! wrong (the original lets the file override flags; the fork applies the file only when a flag
//! still equals its default, so a file can never switch a boolean off); here every key follows
//! the same rule, and a value counts as given whenever it is present, whatever it equals.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use confd_template::EngineKind;

use crate::cli::Cli;

/// The confd.toml used when neither `--config-file` nor `CONFD_CONFIG_FILE` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/confd/confd.toml";

/// Everything the host needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub backend: String,
    pub confdir: PathBuf,
    /// The confd.toml that was read, if any.
    pub config_file: Option<PathBuf>,
    pub onetime: bool,
    pub interval: u64,
    pub watch: bool,
    pub noop: bool,
    pub diff: bool,
    pub sync_only: bool,
    pub keep_stage_file: bool,
    pub prefix: String,
    pub log_level: LogLevel,
    pub nodes: Vec<String>,
    pub scheme: String,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub client_cakeys: Option<String>,
    pub basic_auth: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `--client-insecure`: TLS certificates of the store are not verified (vault).
    pub client_insecure: bool,
    /// The vault backend's auth settings, by their confd names (`auth_type`, `auth_token`,
    /// `app_id`, `user_id`, `role_id`, `secret_id`, `path`).
    pub auth: VaultAuth,
    pub separator: Option<String>,
    /// `--table`: the dynamodb backend's table.
    pub table: Option<String>,
    pub files: Vec<String>,
    pub filter: Option<String>,
    pub srv_domain: Option<String>,
    pub srv_record: Option<String>,
    pub template_engine: Option<EngineKind>,
    pub check_cmd_timeout: Duration,
    pub reload_cmd_timeout: Duration,
    pub debounce: Duration,
    /// `--debounce-max`: the longest a steady stream of changes can postpone a render.
    pub debounce_max: Duration,
    /// `--shutdown-timeout`: how long SIGTERM/SIGINT may take (writes in progress, plugins).
    pub shutdown_timeout: Duration,
    /// `--failure-mode`.
    pub failure_mode: confd_core::FailureMode,
    pub plugin_start_timeout: Duration,
    /// `--backend-timeout`: the deadline of every plugin call but watches; a plugin that misses
    /// it is restarted.
    pub backend_timeout: Duration,
    /// `--dial-timeout`: passed to the backends that take one; their own default otherwise.
    pub dial_timeout: Option<Duration>,
    /// `--plugin-dir`: more directories searched for `confd-database-*` plugins, the first
    /// one winning (see `backends::Discovery`).
    pub plugin_dirs: Vec<PathBuf>,
    /// `--no-cwd-plugins`: the current directory is not searched for plugins.
    pub no_cwd_plugins: bool,
    /// `--plugin-transport`: Unix sockets (default) or TCP with AutoMTLS.
    pub plugin_transport: confd_supervisor::Transport,
    /// `[plugins.<name>]` tables, with `--plugin-config` / `CONFD_PLUGIN_CONFIG` merged over
    /// the table of the `--backend` plugin.
    pub plugins: BTreeMap<String, BTreeMap<String, String>>,
    pub list_backends: bool,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--metrics-addr`: where /metrics and the probes are served; `None`: no server.
    pub metrics_addr: Option<SocketAddr>,
    /// What this run does: the normal render, or one of the checks.
    pub task: Task,
    /// Problems worth a warning but not an error, logged once logging is set up.
    pub warnings: Vec<String>,
}

/// What a confd run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Render and sync (onetime, interval or watch).
    Run,
    /// `--check-config`: load everything, contact nothing, write nothing.
    CheckConfig,
    /// `--validate --mock-data FILE`: render against the file's data, write nothing.
    Validate { mock_data: PathBuf },
    /// `--preflight`: start the backends, read every resource's keys, write nothing.
    Preflight,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event, fields as `key=value`.
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `msg` and the event's fields.
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// A listen address as the fork takes it: `HOST:PORT`, `[V6]:PORT`, or `:PORT` for every
/// interface. A host name is resolved once, here.
pub fn parse_listen_addr(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    if let Ok(addr) = full.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = full.rsplit_once(':') else {
        bail!("expected HOST:PORT or :PORT");
    };
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("{port:?} is not a port number (expected HOST:PORT or :PORT)"))?;
    if host.is_empty() {
        bail!("expected HOST:PORT or :PORT");
    }
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host:?}"))?
        .next()
        .ok_or_else(|| anyhow!("{host:?} has no address"))
}

impl Settings {
    /// The host settings a backend description may name as the source of a `Configure` key,
    /// by their confd.toml names.
    pub const HOST_SETTINGS: &'static [&'static str] = &[
        "nodes",
        "scheme",
        "client_cert",
        "client_key",
        "client_cakeys",
        "basic_auth",
        "username",
        "password",
        "client_insecure",
        "auth_type",
        "auth_token",
        "app_id",
        "user_id",
        "role_id",
        "secret_id",
        "path",
        "separator",
        "table",
        "file",
        "filter",
        "dial_timeout",
    ];

    /// The value of host setting `name` (one of [`Settings::HOST_SETTINGS`]) as a plugin
    /// setting, or `None` when it is not set.
    pub fn host_value(&self, name: &str) -> Option<String> {
        let list = |items: &[String]| (!items.is_empty()).then(|| items.join(","));
        match name {
            "nodes" => list(&self.nodes),
            "scheme" => Some(self.scheme.clone()),
            "client_cert" => self.client_cert.clone(),
            "client_key" => self.client_key.clone(),
            "client_cakeys" => self.client_cakeys.clone(),
            "basic_auth" => Some(self.basic_auth.to_string()),
            "username" => self.username.clone(),
            "password" => self.password.clone(),
            "client_insecure" => self.client_insecure.then(|| "true".to_string()),
            "auth_type" => self.auth.auth_type.clone(),
            "auth_token" => self.auth.auth_token.clone(),
            "app_id" => self.auth.app_id.clone(),
            "user_id" => self.auth.user_id.clone(),
            "role_id" => self.auth.role_id.clone(),
            "secret_id" => self.auth.secret_id.clone(),
            "path" => self.auth.path.clone(),
            "separator" => self.separator.clone(),
            "table" => self.table.clone(),
            "file" => list(&self.files),
            "filter" => self.filter.clone(),
            "dial_timeout" => self
                .dial_timeout
                .map(|d| humantime::format_duration(d).to_string()),
            _ => None,
        }
    }
}

/// The original confd's vault auth settings, each from `--<flag>`, `CONFD_<NAME>` or confd.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultAuth {
    pub auth_type: Option<String>,
    pub auth_token: Option<String>,
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub role_id: Option<String>,
    pub secret_id: Option<String>,
    pub path: Option<String>,
}

/// confd's log levels, mapped onto tracing's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Parses confd's level names; `panic` and `fatal` have no tracing equivalent and mean error.
    pub fn parse(text: &str) -> Option<LogLevel> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(LogLevel::Trace),
            "debug" => Some(LogLevel::Debug),
            "" | "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" | "fatal" | "panic" => Some(LogLevel::Error),
            _ => None,
        }
    }

    pub fn as_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// A number of seconds or a humantime string (`"30s"`, `"1m 30s"`, `"250ms"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(u64),
    Text(String),
}

/// One string or a list of them (confd writes `file = "a.yaml"` and `file = ["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// confd.toml as written by users. Keys use confd's spelling; both the hyphen and the
/// underscore form are accepted. Anything else is an error naming the key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub backend: Option<String>,
    pub confdir: Option<String>,
    pub onetime: Option<bool>,
    pub interval: Option<u64>,
    pub watch: Option<bool>,
    pub noop: Option<bool>,
    pub diff: Option<bool>,
    #[serde(alias = "sync-only")]
    pub sync_only: Option<bool>,
    #[serde(alias = "keep-stage-file", alias = "keepstagefile")]
    pub keep_stage_file: Option<bool>,
    pub prefix: Option<String>,
    #[serde(rename = "log-level", alias = "log_level")]
    pub log_level: Option<String>,
    #[serde(alias = "node")]
    pub nodes: Option<OneOrMany>,
    pub scheme: Option<String>,
    #[serde(alias = "client-cert")]
    pub client_cert: Option<String>,
    #[serde(alias = "client-key")]
    pub client_key: Option<String>,
    #[serde(
        alias = "client_ca_keys",
        alias = "client-ca-keys",
        alias = "client-cakeys"
    )]
    pub client_cakeys: Option<String>,
    /// Turns off TLS verification of the store (vault; the original parsed it and ignored it).
    #[serde(alias = "client-insecure")]
    pub client_insecure: Option<bool>,
    #[serde(alias = "auth-type")]
    pub auth_type: Option<String>,
    #[serde(alias = "auth-token")]
    pub auth_token: Option<String>,
    #[serde(alias = "app-id")]
    pub app_id: Option<String>,
    #[serde(alias = "user-id")]
    pub user_id: Option<String>,
    #[serde(alias = "role-id")]
    pub role_id: Option<String>,
    #[serde(alias = "secret-id")]
    pub secret_id: Option<String>,
    pub path: Option<String>,
    #[serde(alias = "basic-auth")]
    pub basic_auth: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub separator: Option<String>,
    pub table: Option<String>,
    pub file: Option<OneOrMany>,
    pub filter: Option<String>,
    #[serde(alias = "srv-domain")]
    pub srv_domain: Option<String>,
    #[serde(alias = "srv-record")]
    pub srv_record: Option<String>,
    #[serde(alias = "template-engine")]
    pub template_engine: Option<String>,
    #[serde(alias = "check-cmd-timeout")]
    pub check_cmd_timeout: Option<DurationValue>,
    #[serde(alias = "reload-cmd-timeout")]
    pub reload_cmd_timeout: Option<DurationValue>,
    pub debounce: Option<DurationValue>,
    #[serde(alias = "debounce-max")]
    pub debounce_max: Option<DurationValue>,
    #[serde(alias = "shutdown-timeout")]
    pub shutdown_timeout: Option<DurationValue>,
    #[serde(alias = "failure-mode")]
    pub failure_mode: Option<String>,
    #[serde(alias = "plugin-start-timeout")]
    pub plugin_start_timeout: Option<DurationValue>,
    #[serde(alias = "backend-timeout")]
    pub backend_timeout: Option<DurationValue>,
    #[serde(alias = "dial-timeout")]
    pub dial_timeout: Option<DurationValue>,
    #[serde(alias = "plugin-dir", alias = "plugin_dirs", alias = "plugin-dirs")]
    pub plugin_dir: Option<OneOrMany>,
    #[serde(alias = "no-cwd-plugins")]
    pub no_cwd_plugins: Option<bool>,
    #[serde(alias = "plugin-transport")]
    pub plugin_transport: Option<String>,
    /// The fork writes `log-format` (its docs say `log_format`); both work.
    #[serde(rename = "log-format", alias = "log_format")]
    pub log_format: Option<String>,
    #[serde(alias = "metrics-addr")]
    pub metrics_addr: Option<String>,
    /// `[plugins.<name>]`: settings handed to that plugin's Configure.
    pub plugins: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,
}

impl FileConfig {
    /// Parses confd.toml text; `origin` names the file in errors.
    /// Top-level keys match case-insensitively (`Backend = "env"`), as the original's TOML
    /// decoder matches them to its fields; the names inside `[plugins.<name>]` are the plugin's
    /// and kept as written.
    pub fn parse(text: &str, origin: &Path) -> anyhow::Result<FileConfig> {
        let context = || format!("invalid config file {}", origin.display());
        let table: toml::Table = toml::from_str(text).with_context(context)?;
        if table
            .keys()
            .all(|k| !k.bytes().any(|b| b.is_ascii_uppercase()))
        {
            // Decoding the text itself keeps line and column in the errors.
            return toml::from_str(text).with_context(context);
        }
        let mut lowered = toml::Table::new();
        for (key, value) in table {
            let lower = key.to_ascii_lowercase();
            if lowered.insert(lower.clone(), value).is_some() {
                return Err(anyhow!("key {lower:?} is given more than once")).with_context(context);
            }
        }
        toml::Value::Table(lowered)
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow!("{}", e.to_string().trim_end().replace('\n', " "))
            })
            .with_context(context)
    }
}

/// Where environment variables come from (the process, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads confd.toml (if any) and resolves every key. Records the plugin discovery settings for
/// `backends::Registry::discover`.
pub fn load(cli: &Cli, env: &dyn Env) -> anyhow::Result<Settings> {
    let explicit = cli
        .config_file
        .clone()
        .or_else(|| nonempty(env, "CONFD_CONFIG_FILE"));
    let (path, required) = match explicit {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let mut missing = None;
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(FileConfig::parse(&text, &path)?),
        // The original confd skips a missing config file silently, also one named on the
        // command line; a named one gets a warning here.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            missing = required.then(|| {
                format!(
                    "config file {} does not exist; going on without it",
                    path.display()
                )
            });
            None
        }
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("cannot read config file {}", path.display()));
        }
    };
    let loaded = file.as_ref().map(|_| path);
    let mut settings = resolve(cli, env, file.unwrap_or_default())?;
    settings.config_file = loaded;
    settings.warnings.extend(missing);
    Ok(settings)
}

/// Applies flag > environment > file > default to every key: first every key is picked from
/// the highest layer that gives it ([`Raw::gather`]), then each picked value is checked and
/// parsed ([`Raw::validate`]), with errors naming the flag, variable or confd.toml key it came
/// from.
pub fn resolve(cli: &Cli, env: &dyn Env, file: FileConfig) -> anyhow::Result<Settings> {
    Raw::gather(cli, env, file)?.validate()
}

/// A value that still needs checking, and where it came from (for the error message).
#[derive(Debug)]
enum Given<T> {
    Flag(&'static str, T),
    Env(&'static str, T),
    File(&'static str, T),
}

impl<T> Given<T> {
    fn origin(&self) -> String {
        match self {
            Given::Flag(name, _) => name.to_string(),
            Given::Env(name, _) => name.to_string(),
            Given::File(name, _) => format!("confd.toml {name}"),
        }
    }
    fn value(&self) -> &T {
        match self {
            Given::Flag(_, v) | Given::Env(_, v) | Given::File(_, v) => v,
        }
    }
}

/// Every key picked from its highest layer, unchecked. Plain values are final here; the ones
/// that need parsing keep their origin.
struct Raw {
    settings: Settings,
    log_level: Option<String>,
    template_engine: Option<String>,
    interval: Option<Given<String>>,
    durations: [(Option<Given<DurationValue>>, Duration); 7],
    failure_mode: Option<Given<String>>,
    dial_timeout: Option<Given<DurationValue>>,
    plugin_tables: BTreeMap<String, BTreeMap<String, toml::Value>>,
    plugin_pairs: Option<Vec<String>>,
    log_format: Option<Given<String>>,
    plugin_transport: Option<Given<String>>,
    metrics_addr: Option<Given<String>>,
}

/// The three layers, with the rule that picks a key from them.
struct Layers<'a> {
    env: &'a dyn Env,
}

impl Layers<'_> {
    fn string(&self, flag: Option<String>, var: &str, file: Option<String>) -> Option<String> {
        flag.or_else(|| nonempty(self.env, var)).or(file)
    }

    fn list(&self, flag: Option<Vec<String>>, var: &str, file: Option<OneOrMany>) -> Vec<String> {
        flag.or_else(|| env_list(self.env, var))
            .or(file.map(OneOrMany::into_vec))
            .unwrap_or_default()
    }

    fn bool(&self, flag: Option<bool>, var: &str, file: Option<bool>) -> anyhow::Result<bool> {
        if let Some(b) = flag {
            return Ok(b);
        }
        if let Some(text) = nonempty(self.env, var) {
            return parse_bool(&text)
                .ok_or_else(|| anyhow!("invalid {var} {text:?}: expected true or false"));
        }
        Ok(file.unwrap_or(false))
    }

    /// A key whose value is parsed later: the flag `--<key>`, the variable `CONFD_<KEY>`, the
    /// confd.toml `<key>`.
    fn given<T>(
        &self,
        names: (&'static str, &'static str, &'static str),
        flag: Option<T>,
        from_env: impl FnOnce(String) -> T,
        file: Option<T>,
    ) -> Option<Given<T>> {
        let (flag_name, var, key) = names;
        if let Some(v) = flag {
            return Some(Given::Flag(flag_name, v));
        }
        if let Some(text) = nonempty(self.env, var) {
            return Some(Given::Env(var, from_env(text)));
        }
        file.map(|v| Given::File(key, v))
    }
}

impl Raw {
    fn gather(cli: &Cli, env: &dyn Env, file: FileConfig) -> anyhow::Result<Raw> {
        let l = Layers { env };
        let mut warnings = Vec::new();
        let duration = |names, flag: &Option<String>, file: Option<DurationValue>| {
            l.given(
                names,
                flag.clone().map(DurationValue::Text),
                DurationValue::Text,
                file,
            )
        };
        let durations = [
            (
                duration(
                    (
                        "--check-cmd-timeout",
                        "CONFD_CHECK_CMD_TIMEOUT",
                        "check_cmd_timeout",
                    ),
                    &cli.check_cmd_timeout,
                    file.check_cmd_timeout,
                ),
                Duration::from_secs(30),
            ),
            (
                duration(
                    (
                        "--reload-cmd-timeout",
                        "CONFD_RELOAD_CMD_TIMEOUT",
                        "reload_cmd_timeout",
                    ),
                    &cli.reload_cmd_timeout,
                    file.reload_cmd_timeout,
                ),
                Duration::from_secs(60),
            ),
            (
                duration(
                    ("--debounce", "CONFD_DEBOUNCE", "debounce"),
                    &cli.debounce,
                    file.debounce,
                ),
                Duration::from_millis(100),
            ),
            (
                duration(
                    ("--debounce-max", "CONFD_DEBOUNCE_MAX", "debounce_max"),
                    &cli.debounce_max,
                    file.debounce_max,
                ),
                Duration::from_secs(1),
            ),
            (
                duration(
                    (
                        "--shutdown-timeout",
                        "CONFD_SHUTDOWN_TIMEOUT",
                        "shutdown_timeout",
                    ),
                    &cli.shutdown_timeout,
                    file.shutdown_timeout,
                ),
                Duration::from_secs(15),
            ),
            (
                duration(
                    (
                        "--plugin-start-timeout",
                        "CONFD_PLUGIN_START_TIMEOUT",
                        "plugin_start_timeout",
                    ),
                    &cli.plugin_start_timeout,
                    file.plugin_start_timeout,
                ),
                Duration::from_secs(10),
            ),
            (
                duration(
                    (
                        "--backend-timeout",
                        "CONFD_BACKEND_TIMEOUT",
                        "backend_timeout",
                    ),
                    &cli.backend_timeout,
                    file.backend_timeout,
                ),
                Duration::from_secs(30),
            ),
        ];
        let dial_timeout = duration(
            ("--dial-timeout", "CONFD_DIAL_TIMEOUT", "dial_timeout"),
            &cli.dial_timeout,
            file.dial_timeout,
        );
        let backend = l
            .string(
                cli.backend.clone().or_else(|| command_form_backend(cli)),
                "CONFD_BACKEND",
                file.backend,
            )
            .unwrap_or_else(|| crate::backends::DEFAULT_BACKEND.to_string());
        warnings.extend(ignored_words(cli));
        warnings.extend(cli.fork.given().into_iter().map(|flag| {
            format!("{flag} has no effect here: it tunes machinery of the maintained Go fork that this confd does not have")
        }));
        let mut nodes = l.list(cli.node.clone(), "CONFD_NODE", file.nodes);
        if nodes.is_empty()
            && crate::backends::builtin(&backend)
                .is_some_and(|b| b.name == confd_builtin_etcd::NAME)
        {
            // The original confd's default etcd nodes.
            nodes = env_list(env, "ETCDCTL_PEERS").unwrap_or_default();
        }
        let settings = Settings {
            backend,
            confdir: PathBuf::from(
                l.string(cli.confdir.clone(), "CONFD_CONFDIR", file.confdir)
                    .unwrap_or_else(|| "/etc/confd".to_string()),
            ),
            config_file: None,
            onetime: l.bool(cli.onetime, "CONFD_ONETIME", file.onetime)?,
            interval: 600,
            watch: l.bool(cli.watch, "CONFD_WATCH", file.watch)?,
            noop: l.bool(cli.noop, "CONFD_NOOP", file.noop)?,
            diff: l.bool(cli.diff, "CONFD_DIFF", file.diff)?,
            sync_only: l.bool(cli.sync_only, "CONFD_SYNC_ONLY", file.sync_only)?,
            keep_stage_file: l.bool(
                cli.keep_stage_file,
                "CONFD_KEEP_STAGE_FILE",
                file.keep_stage_file,
            )?,
            prefix: l
                .string(cli.prefix.clone(), "CONFD_PREFIX", file.prefix)
                .unwrap_or_default(),
            log_level: LogLevel::Info,
            nodes,
            scheme: l
                .string(cli.scheme.clone(), "CONFD_SCHEME", file.scheme)
                .unwrap_or_else(|| "http".to_string()),
            client_cert: l.string(
                cli.client_cert.clone(),
                "CONFD_CLIENT_CERT",
                file.client_cert,
            ),
            client_key: l.string(cli.client_key.clone(), "CONFD_CLIENT_KEY", file.client_key),
            client_cakeys: l.string(
                cli.client_ca_keys.clone(),
                "CONFD_CLIENT_CAKEYS",
                file.client_cakeys,
            ),
            basic_auth: l.bool(cli.basic_auth, "CONFD_BASIC_AUTH", file.basic_auth)?,
            username: l.string(cli.username.clone(), "CONFD_USERNAME", file.username),
            password: l.string(cli.password.clone(), "CONFD_PASSWORD", file.password),
            client_insecure: l.bool(
                cli.client_insecure,
                "CONFD_CLIENT_INSECURE",
                file.client_insecure,
            )?,
            auth: VaultAuth {
                auth_type: l.string(cli.auth_type.clone(), "CONFD_AUTH_TYPE", file.auth_type),
                auth_token: l.string(cli.auth_token.clone(), "CONFD_AUTH_TOKEN", file.auth_token),
                app_id: l.string(cli.app_id.clone(), "CONFD_APP_ID", file.app_id),
                user_id: l.string(cli.user_id.clone(), "CONFD_USER_ID", file.user_id),
                role_id: l.string(cli.role_id.clone(), "CONFD_ROLE_ID", file.role_id),
                secret_id: l.string(cli.secret_id.clone(), "CONFD_SECRET_ID", file.secret_id),
                path: l.string(cli.path.clone(), "CONFD_PATH", file.path),
            },
            separator: l.string(cli.separator.clone(), "CONFD_SEPARATOR", file.separator),
            table: l.string(cli.table.clone(), "CONFD_TABLE", file.table),
            files: l.list(cli.file.clone(), "CONFD_FILE", file.file),
            filter: l.string(cli.filter.clone(), "CONFD_FILTER", file.filter),
            srv_domain: l.string(cli.srv_domain.clone(), "CONFD_SRV_DOMAIN", file.srv_domain),
            srv_record: l.string(cli.srv_record.clone(), "CONFD_SRV_RECORD", file.srv_record),
            template_engine: None,
            check_cmd_timeout: Duration::ZERO,
            reload_cmd_timeout: Duration::ZERO,
            debounce: Duration::ZERO,
            debounce_max: Duration::ZERO,
            shutdown_timeout: Duration::ZERO,
            failure_mode: confd_core::FailureMode::BestEffort,
            plugin_start_timeout: Duration::ZERO,
            backend_timeout: Duration::ZERO,
            dial_timeout: None,
            plugin_dirs: l
                .list(cli.plugin_dir.clone(), "CONFD_PLUGIN_DIR", file.plugin_dir)
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            no_cwd_plugins: l.bool(
                cli.no_cwd_plugins,
                "CONFD_NO_CWD_PLUGINS",
                file.no_cwd_plugins,
            )?,
            plugin_transport: confd_supervisor::Transport::Unix,
            plugins: BTreeMap::new(),
            list_backends: cli.list_backends,
            log_format: LogFormat::Text,
            metrics_addr: None,
            task: if cli.check_config {
                Task::CheckConfig
            } else if cli.preflight {
                Task::Preflight
            } else {
                match (&cli.validate, &cli.mock_data) {
                    (true, Some(file)) => Task::Validate {
                        mock_data: PathBuf::from(file),
                    },
                    _ => Task::Run,
                }
            },
            warnings,
        };
        Ok(Raw {
            settings,
            log_level: l.string(cli.log_level.clone(), "CONFD_LOG_LEVEL", file.log_level),
            template_engine: l.string(
                cli.template_engine.clone(),
                "CONFD_TEMPLATE_ENGINE",
                file.template_engine,
            ),
            interval: l.given(
                ("--interval", "CONFD_INTERVAL", "interval"),
                cli.interval.map(|n| n.to_string()),
                |text| text,
                file.interval.map(|n| n.to_string()),
            ),
            durations,
            failure_mode: l.given(
                ("--failure-mode", "CONFD_FAILURE_MODE", "failure_mode"),
                cli.failure_mode.clone(),
                |text| text,
                file.failure_mode,
            ),
            dial_timeout,
            plugin_tables: file.plugins.unwrap_or_default(),
            plugin_pairs: match &cli.plugin_config {
                Some(v) => Some(v.clone()),
                None => env_list(env, "CONFD_PLUGIN_CONFIG"),
            },
            log_format: l.given(
                ("--log-format", "CONFD_LOG_FORMAT", "log-format"),
                cli.log_format.clone(),
                |text| text,
                file.log_format,
            ),
            plugin_transport: l.given(
                (
                    "--plugin-transport",
                    "CONFD_PLUGIN_TRANSPORT",
                    "plugin_transport",
                ),
                cli.plugin_transport.clone(),
                |text| text,
                file.plugin_transport,
            ),
            metrics_addr: l.given(
                ("--metrics-addr", "CONFD_METRICS_ADDR", "metrics_addr"),
                cli.metrics_addr.clone(),
                |text| text,
                file.metrics_addr,
            ),
        })
    }

    fn validate(self) -> anyhow::Result<Settings> {
        let Raw {
            mut settings,
            log_level,
            template_engine,
            interval,
            durations,
            failure_mode,
            dial_timeout,
            plugin_tables,
            plugin_pairs,
            log_format,
            plugin_transport,
            metrics_addr,
        } = self;
        if let Some(given) = plugin_transport {
            let text = given.value();
            settings.plugin_transport = text.parse().map_err(|_| {
                anyhow!("invalid {} {text:?}: expected unix or tcp", given.origin())
            })?;
        }
        if let Some(given) = log_format {
            let text = given.value();
            settings.log_format = LogFormat::parse(text).ok_or_else(|| {
                anyhow!("invalid {} {text:?}: expected text or json", given.origin())
            })?;
        }
        if let Some(given) = metrics_addr {
            let text = given.value();
            // Empty means off, as in the fork.
            if !text.trim().is_empty() {
                settings.metrics_addr = Some(
                    parse_listen_addr(text)
                        .with_context(|| format!("invalid {} {text:?}", given.origin()))?,
                );
            }
        }
        if let Some(t) = log_level {
            settings.log_level = LogLevel::parse(&t).ok_or_else(|| {
                anyhow!("invalid log level {t:?}: expected debug, info, warn or error")
            })?;
        }
        if let Some(t) = template_engine {
            settings.template_engine = Some(
                t.parse::<EngineKind>()
                    .map_err(|e| anyhow!("invalid template engine: {e}"))?,
            );
        }
        if let Some(given) = interval {
            let text = given.value();
            settings.interval = text.trim().parse().map_err(|_| {
                anyhow!(
                    "invalid {} {text:?}: expected a number of seconds",
                    given.origin()
                )
            })?;
        }
        if settings.interval == 0 {
            // Zero would re-render in a busy loop.
            bail!("invalid interval 0: expected at least 1 second");
        }
        if let Some(given) = failure_mode {
            let text = given.value();
            settings.failure_mode = text
                .parse()
                .map_err(|e: String| anyhow!("{e} (from {})", given.origin()))?;
        }
        let debounce_max_given = durations[3].0.is_some();
        let [
            check,
            reload,
            debounce,
            debounce_max,
            shutdown,
            start,
            backend,
        ] = durations
            .map(|(given, default)| given.map_or(Ok(default), |given| given_duration(&given)));
        settings.dial_timeout = dial_timeout.map(|g| given_duration(&g)).transpose()?;
        settings.check_cmd_timeout = check?;
        settings.reload_cmd_timeout = reload?;
        settings.debounce = debounce?;
        settings.debounce_max = debounce_max?;
        settings.shutdown_timeout = shutdown?;
        if settings.debounce_max < settings.debounce && !debounce_max_given {
            settings.debounce_max = settings.debounce;
        } else if settings.debounce_max < settings.debounce {
            bail!(
                "invalid debounce max {}: below the debounce {}",
                humantime::format_duration(settings.debounce_max),
                humantime::format_duration(settings.debounce)
            );
        }
        settings.plugin_start_timeout = start?;
        settings.backend_timeout = backend?;
        if settings.backend_timeout.is_zero() {
            bail!("invalid backend timeout 0: a plugin call needs a deadline (e.g. 30s)");
        }
        settings.plugins = plugin_settings(plugin_tables, plugin_pairs, &settings.backend)?;
        Ok(settings)
    }
}

fn given_duration(given: &Given<DurationValue>) -> anyhow::Result<Duration> {
    match given.value() {
        DurationValue::Seconds(n) => Ok(Duration::from_secs(*n)),
        DurationValue::Text(text) => {
            parse_duration(text).with_context(|| format!("invalid {} {text:?}", given.origin()))
        }
    }
}

/// The maintained fork's command form: the first word names the backend (`confd etcd ...`)
/// when it is a builtin's name.
fn command_form_backend(cli: &Cli) -> Option<String> {
    cli.words
        .first()
        .filter(|w| crate::backends::builtin(w).is_some())
        .cloned()
}

/// Words that are not the fork's backend word: the original confd ignores them.
fn ignored_words(cli: &Cli) -> Vec<String> {
    let skip = usize::from(command_form_backend(cli).is_some());
    cli.words[skip..]
        .iter()
        .map(|w| format!("ignoring the argument {w:?} (not a flag and not a builtin backend name)"))
        .collect()
}

/// `[plugins.<name>]` tables as string maps, with `--plugin-config` / `CONFD_PLUGIN_CONFIG`
/// pairs merged over the table of the selected backend.
fn plugin_settings(
    tables: BTreeMap<String, BTreeMap<String, toml::Value>>,
    pairs: Option<Vec<String>>,
    backend: &str,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut plugins: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, table) in tables {
        let mut map = BTreeMap::new();
        for (key, value) in table {
            let text = toml_value_to_string(&value)
                .with_context(|| format!("confd.toml: [plugins.{name}] key {key}"))?;
            map.insert(key, text);
        }
        plugins.insert(name, map);
    }
    if let Some(pairs) = pairs {
        let target = plugins.entry(backend.to_string()).or_default();
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid --plugin-config {pair:?}: expected key=value"))?;
            if k.is_empty() {
                bail!("invalid --plugin-config {pair:?}: empty key");
            }
            target.insert(k.to_string(), v.to_string());
        }
    }
    Ok(plugins)
}

/// An environment variable, with an empty value treated as unset (so `CONFD_X=` in a unit
/// file does not override confd.toml with nothing).
fn nonempty(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name).filter(|v| !v.is_empty())
}

fn env_list(env: &dyn Env, name: &str) -> Option<Vec<String>> {
    nonempty(env, name).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// Go's `strconv.ParseBool` set, which confd users already write.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Bare numbers are seconds (like `--interval`); otherwise humantime (`30s`, `1m`, `250ms`).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t).map_err(|e| anyhow!("{e} (expected e.g. 30s, 500ms or 2m)"))
}

pub(crate) fn toml_value_to_string(value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_value_to_string)
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        toml::Value::Table(_) => bail!("a nested table cannot be passed as a plugin setting"),
    })
}

#[cfg(test)]
mod tests;
