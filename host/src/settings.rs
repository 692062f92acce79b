//! Turns the three raw inputs (flags, `CONFD_*` environment, confd.toml) into one resolved
//! [`Settings`], key by key: flag > environment > file > default. Both older confd tools get this
//! wrong (the original lets the file override flags; the fork applies the file only when a flag
//! still equals its default, so a file can never switch a boolean off); here every key follows
//! the same rule, and a value counts as given whenever it is present, whatever it equals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

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
    pub separator: Option<String>,
    pub files: Vec<String>,
    pub filter: Option<String>,
    pub srv_domain: Option<String>,
    pub srv_record: Option<String>,
    pub template_engine: Option<TemplateEngine>,
    pub check_cmd_timeout: Duration,
    pub reload_cmd_timeout: Duration,
    pub debounce: Duration,
    pub plugin_start_timeout: Duration,
    /// `[plugins.<name>]` tables, with `--plugin-config` / `CONFD_PLUGIN_CONFIG` merged over
    /// the table of the `--backend` plugin.
    pub plugins: BTreeMap<String, BTreeMap<String, String>>,
    pub list_backends: bool,
    /// Problems worth a warning but not an error, logged once logging is set up.
    pub warnings: Vec<String>,
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

/// The global template engine choice (`--template-engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateEngine {
    Go,
    Jinja,
}

impl TemplateEngine {
    fn parse(text: &str) -> Option<TemplateEngine> {
        match text.trim().to_ascii_lowercase().as_str() {
            "go" | "gotmpl" | "gotemplate" => Some(TemplateEngine::Go),
            "jinja" | "jinja2" | "j2" => Some(TemplateEngine::Jinja),
            _ => None,
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
    /// Parsed by confd but never used by any backend; accepted so old files keep loading.
    #[serde(alias = "client-insecure")]
    pub client_insecure: Option<bool>,
    #[serde(alias = "basic-auth")]
    pub basic_auth: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub separator: Option<String>,
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
    #[serde(alias = "plugin-start-timeout")]
    pub plugin_start_timeout: Option<DurationValue>,
    /// `[plugins.<name>]`: settings handed to that plugin's Configure.
    pub plugins: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,
}

impl FileConfig {
    /// Parses confd.toml text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> anyhow::Result<FileConfig> {
        toml::from_str(text).with_context(|| format!("invalid config file {}", origin.display()))
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

/// Reads confd.toml (if any) and resolves every key.
pub fn load(cli: &Cli, env: &dyn Env) -> anyhow::Result<Settings> {
    let explicit = cli
        .config_file
        .clone()
        .or_else(|| nonempty(env, "CONFD_CONFIG_FILE"));
    let (path, required) = match explicit {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(FileConfig::parse(&text, &path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("cannot read config file {}", path.display()));
        }
    };
    let loaded = file.as_ref().map(|_| path);
    let mut settings = resolve(cli, env, file.unwrap_or_default())?;
    settings.config_file = loaded;
    Ok(settings)
}

/// Applies flag > environment > file > default to every key.
pub fn resolve(cli: &Cli, env: &dyn Env, file: FileConfig) -> anyhow::Result<Settings> {
    let mut warnings = Vec::new();
    if file.client_insecure.is_some() {
        warnings.push(
            "confd.toml: client_insecure has no effect (it never had one in confd)".to_string(),
        );
    }
    let log_level_text = pick_string(
        cli.log_level.clone(),
        env,
        "CONFD_LOG_LEVEL",
        file.log_level,
    );
    let log_level = match log_level_text {
        None => LogLevel::Info,
        Some(t) => LogLevel::parse(&t).ok_or_else(|| {
            anyhow!("invalid log level {t:?}: expected debug, info, warn or error")
        })?,
    };
    let template_engine = match pick_string(
        cli.template_engine.clone(),
        env,
        "CONFD_TEMPLATE_ENGINE",
        file.template_engine,
    ) {
        None => None,
        Some(t) => Some(
            TemplateEngine::parse(&t)
                .ok_or_else(|| anyhow!("invalid template engine {t:?}: expected go or jinja"))?,
        ),
    };

    let backend = pick_string(cli.backend.clone(), env, "CONFD_BACKEND", file.backend)
        .unwrap_or_else(|| "etcd".to_string());

    let mut plugins: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, table) in file.plugins.unwrap_or_default() {
        let mut map = BTreeMap::new();
        for (key, value) in table {
            let text = toml_value_to_string(&value)
                .with_context(|| format!("confd.toml: [plugins.{name}] key {key}"))?;
            map.insert(key, text);
        }
        plugins.insert(name, map);
    }
    let pairs = match &cli.plugin_config {
        Some(v) => Some(v.clone()),
        None => env_list(env, "CONFD_PLUGIN_CONFIG"),
    };
    if let Some(pairs) = pairs {
        let target = plugins.entry(backend.clone()).or_default();
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

    let settings = Settings {
        confdir: PathBuf::from(
            pick_string(cli.confdir.clone(), env, "CONFD_CONFDIR", file.confdir)
                .unwrap_or_else(|| "/etc/confd".to_string()),
        ),
        config_file: None,
        onetime: pick_bool(cli.onetime, env, "CONFD_ONETIME", file.onetime)?.unwrap_or(false),
        interval: match cli.interval {
            Some(n) => n,
            None => match nonempty(env, "CONFD_INTERVAL") {
                Some(t) => t.trim().parse().map_err(|_| {
                    anyhow!("invalid CONFD_INTERVAL {t:?}: expected a number of seconds")
                })?,
                None => file.interval.unwrap_or(600),
            },
        },
        watch: pick_bool(cli.watch, env, "CONFD_WATCH", file.watch)?.unwrap_or(false),
        noop: pick_bool(cli.noop, env, "CONFD_NOOP", file.noop)?.unwrap_or(false),
        diff: pick_bool(cli.diff, env, "CONFD_DIFF", file.diff)?.unwrap_or(false),
        sync_only: pick_bool(cli.sync_only, env, "CONFD_SYNC_ONLY", file.sync_only)?
            .unwrap_or(false),
        keep_stage_file: pick_bool(
            cli.keep_stage_file,
            env,
            "CONFD_KEEP_STAGE_FILE",
            file.keep_stage_file,
        )?
        .unwrap_or(false),
        prefix: pick_string(cli.prefix.clone(), env, "CONFD_PREFIX", file.prefix)
            .unwrap_or_default(),
        log_level,
        nodes: pick_list(
            cli.node.clone(),
            env,
            "CONFD_NODE",
            file.nodes.map(OneOrMany::into_vec),
        ),
        scheme: pick_string(cli.scheme.clone(), env, "CONFD_SCHEME", file.scheme)
            .unwrap_or_else(|| "http".to_string()),
        client_cert: pick_string(
            cli.client_cert.clone(),
            env,
            "CONFD_CLIENT_CERT",
            file.client_cert,
        ),
        client_key: pick_string(
            cli.client_key.clone(),
            env,
            "CONFD_CLIENT_KEY",
            file.client_key,
        ),
        client_cakeys: pick_string(
            cli.client_ca_keys.clone(),
            env,
            "CONFD_CLIENT_CAKEYS",
            file.client_cakeys,
        ),
        basic_auth: pick_bool(cli.basic_auth, env, "CONFD_BASIC_AUTH", file.basic_auth)?
            .unwrap_or(false),
        username: pick_string(cli.username.clone(), env, "CONFD_USERNAME", file.username),
        password: pick_string(cli.password.clone(), env, "CONFD_PASSWORD", file.password),
        separator: pick_string(
            cli.separator.clone(),
            env,
            "CONFD_SEPARATOR",
            file.separator,
        ),
        files: pick_list(
            cli.file.clone(),
            env,
            "CONFD_FILE",
            file.file.map(OneOrMany::into_vec),
        ),
        filter: pick_string(cli.filter.clone(), env, "CONFD_FILTER", file.filter),
        srv_domain: pick_string(
            cli.srv_domain.clone(),
            env,
            "CONFD_SRV_DOMAIN",
            file.srv_domain,
        ),
        srv_record: pick_string(
            cli.srv_record.clone(),
            env,
            "CONFD_SRV_RECORD",
            file.srv_record,
        ),
        template_engine,
        check_cmd_timeout: pick_duration(
            &cli.check_cmd_timeout,
            env,
            "CONFD_CHECK_CMD_TIMEOUT",
            file.check_cmd_timeout,
            Duration::from_secs(30),
        )?,
        reload_cmd_timeout: pick_duration(
            &cli.reload_cmd_timeout,
            env,
            "CONFD_RELOAD_CMD_TIMEOUT",
            file.reload_cmd_timeout,
            Duration::from_secs(60),
        )?,
        debounce: pick_duration(
            &cli.debounce,
            env,
            "CONFD_DEBOUNCE",
            file.debounce,
            Duration::from_millis(100),
        )?,
        plugin_start_timeout: pick_duration(
            &cli.plugin_start_timeout,
            env,
            "CONFD_PLUGIN_START_TIMEOUT",
            file.plugin_start_timeout,
            Duration::from_secs(10),
        )?,
        backend,
        plugins,
        list_backends: cli.list_backends,
        warnings,
    };
    if settings.interval == 0 {
        // Zero would re-render in a busy loop.
        bail!("invalid interval 0: expected at least 1 second");
    }
    Ok(settings)
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

fn pick_string(
    flag: Option<String>,
    env: &dyn Env,
    var: &str,
    file: Option<String>,
) -> Option<String> {
    flag.or_else(|| nonempty(env, var)).or(file)
}

fn pick_list(
    flag: Option<Vec<String>>,
    env: &dyn Env,
    var: &str,
    file: Option<Vec<String>>,
) -> Vec<String> {
    flag.or_else(|| env_list(env, var))
        .or(file)
        .unwrap_or_default()
}

fn pick_bool(
    flag: Option<bool>,
    env: &dyn Env,
    var: &str,
    file: Option<bool>,
) -> anyhow::Result<Option<bool>> {
    if flag.is_some() {
        return Ok(flag);
    }
    if let Some(text) = nonempty(env, var) {
        return parse_bool(&text)
            .map(Some)
            .ok_or_else(|| anyhow!("invalid {var} {text:?}: expected true or false"));
    }
    Ok(file)
}

/// Go's `strconv.ParseBool` set, which confd users already write.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn pick_duration(
    flag: &Option<String>,
    env: &dyn Env,
    var: &str,
    file: Option<DurationValue>,
    default: Duration,
) -> anyhow::Result<Duration> {
    let flag_name = format!(
        "--{}",
        var.trim_start_matches("CONFD_")
            .to_ascii_lowercase()
            .replace('_', "-")
    );
    if let Some(text) = flag {
        return parse_duration(text).with_context(|| format!("invalid {flag_name} {text:?}"));
    }
    if let Some(text) = nonempty(env, var) {
        return parse_duration(&text).with_context(|| format!("invalid {var} {text:?}"));
    }
    let key = var.trim_start_matches("CONFD_").to_ascii_lowercase();
    match file {
        Some(DurationValue::Seconds(n)) => Ok(Duration::from_secs(n)),
        Some(DurationValue::Text(text)) => {
            parse_duration(&text).with_context(|| format!("invalid confd.toml {key} {text:?}"))
        }
        None => Ok(default),
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

fn toml_value_to_string(value: &toml::Value) -> anyhow::Result<String> {
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
