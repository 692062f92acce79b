//! The command line as typed: every value optional, so settings.rs can tell "not given" from
//! "given as the default" and apply flags > environment > confd.toml > defaults per key.

use std::ffi::OsString;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

/// Manage local application configuration files using templates and data from a key-value store.
///
/// Every setting can also come from a CONFD_* environment variable or from confd.toml; a flag
/// wins over the environment, which wins over the file. See docs/configuration.md.
#[derive(Debug, Default, Parser)]
#[command(
    name = "confd",
    version,
    long_version = long_version(),
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Backend to read keys from: a builtin or a discovered confd-database-<name> plugin
    /// (--list-backends shows them) [default: etcd]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Directory holding conf.d/ (template resources) and templates/ [default: /etc/confd]
    #[arg(long, value_name = "DIR")]
    pub confdir: Option<String>,

    /// The confd configuration file; the default one is skipped when it does not exist
    /// [default: /etc/confd/confd.toml]
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<String>,

    /// Render every resource once, then exit (0: all fine, 1: a resource failed)
    #[arg(long, visible_alias = "one-time", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set, value_name = "BOOL")]
    pub onetime: Option<bool>,

    /// Seconds between two renders of every resource in interval mode [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u64>,

    /// Render once, then re-render a resource whenever a key under its prefix changes
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub watch: Option<bool>,

    /// Render and compare only; never write a destination or run a command
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub noop: Option<bool>,

    /// With --noop or --validate: print a unified diff of every destination that would change
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub diff: Option<bool>,

    /// Write destinations but run neither check_cmd nor reload_cmd
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub sync_only: Option<bool>,

    /// Keep the stage file next to the destination after a sync (until the next run starts)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub keep_stage_file: Option<bool>,

    /// Key prefix joined in front of every resource's prefix
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// Log level: debug, info, warn or error (panic and fatal mean error) [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text (human-readable lines) or json (one object per line with time, level,
    /// msg and fields) [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Serve Prometheus metrics and health probes (/metrics, /health, /ready, /ready/detailed)
    /// on this address: HOST:PORT, or :PORT for every interface; no server when unset
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Check confd.toml, every template resource and every template, then exit (0: fine, 2:
    /// each problem listed with its file and line); contacts no backend, writes nothing
    #[arg(long, conflicts_with_all = ["validate", "preflight"])]
    pub check_config: bool,

    /// Render every template against --mock-data and print what would be written (with
    /// --diff: a diff against each destination), then exit; runs no command, writes nothing
    #[arg(long, requires = "mock_data", conflicts_with = "preflight")]
    pub validate: bool,

    /// With --validate: the data, a YAML or JSON file in the file backend's format
    #[arg(long, value_name = "FILE", requires = "validate")]
    pub mock_data: Option<String>,

    /// Start the backends, check their health, read every resource's keys once and report
    /// what is missing, then exit (0: every key has a value and every resource renders, 1:
    /// otherwise); writes nothing
    #[arg(long)]
    pub preflight: bool,

    /// Backend node address (repeatable)
    #[arg(long = "node", short = 'n', value_name = "ADDR", action = ArgAction::Append)]
    pub node: Option<Vec<String>>,

    /// URI scheme for consul, redis (rediss: TLS) and SRV-discovered etcd nodes [default: http]
    #[arg(long, value_name = "SCHEME")]
    pub scheme: Option<String>,

    /// TLS client certificate file
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<String>,

    /// TLS client key file (redis: used as the password when --password is absent)
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<String>,

    /// TLS CA certificate file
    #[arg(long, value_name = "FILE")]
    pub client_ca_keys: Option<String>,

    /// Use basic authentication (etcd, consul)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub basic_auth: Option<bool>,

    /// User name for basic authentication
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,

    /// Password for basic authentication, or the redis password
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Do not verify the store's TLS certificate (etcd, consul, vault, redis)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub client_insecure: Option<bool>,

    /// Vault auth method: token, app-id, app-role (approle), userpass, github, kubernetes or cert
    #[arg(long, value_name = "TYPE")]
    pub auth_type: Option<String>,

    /// Vault token (token auth, default VAULT_TOKEN) or GitHub token (github auth)
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,

    /// Vault app-id auth: the app id
    #[arg(long, value_name = "ID")]
    pub app_id: Option<String>,

    /// Vault app-id auth: the user id
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,

    /// Vault app-role auth: the role id (kubernetes auth: the role)
    #[arg(long, value_name = "ID")]
    pub role_id: Option<String>,

    /// Vault app-role auth: the secret id
    #[arg(long, value_name = "ID")]
    pub secret_id: Option<String>,

    /// Vault auth method mount path [default: the method's name; approle for app-role]
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,

    /// Key separator for redis [default: /]
    #[arg(long, value_name = "SEP")]
    pub separator: Option<String>,

    /// DynamoDB table for the dynamodb backend
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// YAML or JSON file or directory for the file backend (repeatable)
    #[arg(long = "file", value_name = "PATH", action = ArgAction::Append)]
    pub file: Option<Vec<String>>,

    /// Glob matched against file names while walking --file directories [default: *]
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,

    /// DNS domain whose SRV records list the backend nodes
    #[arg(long, value_name = "DOMAIN")]
    pub srv_domain: Option<String>,

    /// Explicit SRV record listing the backend nodes
    #[arg(long, value_name = "RECORD")]
    pub srv_record: Option<String>,

    /// Template engine for every resource without an `engine` key: go or jinja (also gotmpl,
    /// jinja2, j2)
    /// [default: by extension: .j2/.jinja/.jinja2 are jinja, others go]
    #[arg(long, value_name = "ENGINE")]
    pub template_engine: Option<String>,

    /// Time limit for check_cmd (e.g. 30s, 500ms; 0 = none) [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub check_cmd_timeout: Option<String>,

    /// Time limit for reload_cmd (0 = none) [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub reload_cmd_timeout: Option<String>,

    /// Watch mode: the first change after a quiet period renders at once; further changes within
    /// this window are coalesced into one render [default: 100ms]
    #[arg(long, value_name = "DURATION")]
    pub debounce: Option<String>,

    /// Watch mode: the longest a steady stream of changes can postpone a render [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub debounce_max: Option<String>,

    /// What a failed resource does to the others: best-effort (all are attempted, exit 1 at
    /// the end) or fail-fast (no further resource of the pass starts) [default: best-effort]
    #[arg(long, value_name = "MODE")]
    pub failure_mode: Option<String>,

    /// How long SIGTERM/SIGINT may take: writes in progress finish, no new command starts,
    /// plugins stop [default: 15s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// Setting passed to the backend plugin's Configure (repeatable; overrides
    /// [plugins.<backend>] in confd.toml)
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub plugin_config: Option<Vec<String>>,

    /// Also look for confd-database-<name> plugins in DIR (repeatable; the first given wins,
    /// and these win over the current directory and the confd binary's directory)
    #[arg(long = "plugin-dir", value_name = "DIR", action = ArgAction::Append)]
    pub plugin_dir: Option<Vec<String>>,

    /// Do not look for plugins in the current directory
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_name = "BOOL")]
    pub no_cwd_plugins: Option<bool>,

    /// How long a plugin may take to start and print its handshake [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub plugin_start_timeout: Option<String>,

    /// How confd reaches its plugins: unix (a socket in a private directory) or tcp (127.0.0.1
    /// with go-plugin's AutoMTLS, for hosts without usable Unix sockets) [default: unix]
    #[arg(long, value_name = "unix|tcp")]
    pub plugin_transport: Option<String>,

    /// Deadline of every backend call but watches (watched plugins are health-probed instead); a
    /// plugin that misses it is killed and restarted [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub backend_timeout: Option<String>,

    /// Print every known backend and what provides it (builtin or a plugin path), then exit
    #[arg(long)]
    pub list_backends: bool,

    /// How long a backend may take to connect or answer one request (etcd, redis, consul,
    /// vault, zookeeper)
    /// [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub dial_timeout: Option<String>,

    /// The maintained fork's command form names the backend as a word (`confd etcd --node
    /// ...`); a word that names no builtin backend is ignored with a warning, as the original
    /// confd ignores it.
    #[arg(value_name = "BACKEND", hide = true)]
    pub words: Vec<String>,

    /// Flags of the maintained fork that have no effect here; accepted (with a warning) so that
    /// its unit files and scripts run unchanged.
    #[command(flatten)]
    pub fork: ForkFlags,
}

/// The maintained fork's flags that tune machinery this confd does not have (each is named in
/// the warning, with the reason, in settings.rs).
#[derive(Debug, Default, clap::Args)]
pub struct ForkFlags {
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = ArgAction::Set, value_name = "BOOL")]
    pub template_cache: Option<bool>,
    #[arg(long, hide = true)]
    pub no_template_cache: bool,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub stat_cache_ttl: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub batch_interval: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub read_timeout: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub write_timeout: Option<String>,
    #[arg(long, hide = true, value_name = "N")]
    pub retry_max_attempts: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub retry_base_delay: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub retry_max_delay: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    pub watch_error_backoff: Option<String>,
}

impl ForkFlags {
    /// The fork flags given, by their flag names.
    pub fn given(&self) -> Vec<&'static str> {
        let pairs = [
            ("--template-cache", self.template_cache.is_some()),
            ("--no-template-cache", self.no_template_cache),
            ("--stat-cache-ttl", self.stat_cache_ttl.is_some()),
            ("--batch-interval", self.batch_interval.is_some()),
            ("--read-timeout", self.read_timeout.is_some()),
            ("--write-timeout", self.write_timeout.is_some()),
            ("--retry-max-attempts", self.retry_max_attempts.is_some()),
            ("--retry-base-delay", self.retry_base_delay.is_some()),
            ("--retry-max-delay", self.retry_max_delay.is_some()),
            ("--watch-error-backoff", self.watch_error_backoff.is_some()),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect()
    }
}

/// The `--version` text after "confd ": what a bug report needs, as the Go confd prints its Git
/// SHA and Go version. host/build.rs provides the commit ("unknown" when built without git
/// metadata) and the compiler.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let backends: Vec<&str> = crate::backends::BUILTINS.iter().map(|b| b.name).collect();
        format!(
            "{}\ncommit:   {}\nrustc:    {}\nbackends: {}",
            env!("CARGO_PKG_VERSION"),
            env!("CONFD_GIT_COMMIT"),
            env!("CONFD_RUSTC_VERSION"),
            backends.join(", ")
        )
    })
}

/// Subcommands; only the hidden plugin entry point exists.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a builtin backend as a plugin process (the host starts this; not for people).
    #[command(hide = true, name = "internal-plugin")]
    InternalPlugin {
        /// Plugin type; only `database` exists.
        kind: String,
        /// Builtin backend name.
        name: String,
    },
}

/// `confd internal-plugin <kind> <name>` exactly, recognised without clap: a builtin plugin
/// process then maps and runs only the serving code, which keeps its resident memory near that of
/// a standalone plugin executable. Any other shape goes through `parse` and its errors.
pub fn internal_plugin(args: &[OsString]) -> Option<(&str, &str)> {
    match args {
        [_, sub, kind, name] if sub == "internal-plugin" => Some((kind.to_str()?, name.to_str()?)),
        _ => None,
    }
}

/// Parses argv after rewriting Go-style single-dash long flags, so old scripts keep working.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(normalize_args(args.into_iter().collect()))
}

/// Rewrites `-name[=v]` to `--name[=v]` for every long flag clap knows (Go's `flag` package
/// accepts both spellings). A word that is the value of the previous flag is left alone, and
/// so is everything after `--`.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = Cli::command();
    // num_args is filled in by build(); before it every argument reports None.
    cmd.build();
    // (long name, takes a separate value word)
    let mut longs: Vec<(String, bool)> = Vec::new();
    for arg in cmd.get_arguments() {
        let takes_value = arg.get_num_args().is_some_and(|n| n.min_values() > 0);
        let names = arg
            .get_long()
            .into_iter()
            .chain(arg.get_all_aliases().unwrap_or_default());
        for long in names {
            longs.push((long.to_string(), takes_value));
        }
    }
    for builtin in ["help", "version"] {
        longs.push((builtin.to_string(), false));
    }
    let lookup = |name: &str| longs.iter().find(|(l, _)| l == name).map(|(_, v)| *v);

    let mut out = Vec::with_capacity(args.len());
    let mut expect_value = false;
    let mut rest_verbatim = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest_verbatim {
            out.push(arg);
            continue;
        }
        if expect_value {
            expect_value = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let (body, single) = if let Some(b) = text.strip_prefix("--") {
            (b, false)
        } else if let Some(b) = text.strip_prefix('-') {
            (b, true)
        } else {
            out.push(arg);
            continue;
        };
        let (name, has_eq) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        match lookup(name) {
            Some(takes_value) => {
                expect_value = takes_value && !has_eq;
                if single {
                    out.push(OsString::from(format!("--{body}")));
                } else {
                    out.push(arg);
                }
            }
            None => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(os(args))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&[
                "confd",
                "-onetime",
                "-backend",
                "env",
                "-node=a:1",
                "-one-time"
            ]),
            [
                "confd",
                "--onetime",
                "--backend",
                "env",
                "--node=a:1",
                "--one-time"
            ]
        );
    }

    #[test]
    fn values_that_look_like_flags_are_kept() {
        assert_eq!(
            norm(&["confd", "-prefix", "-backend", "-noop"]),
            ["confd", "--prefix", "-backend", "--noop"]
        );
    }

    #[test]
    fn unknown_single_dash_words_and_after_double_dash_untouched() {
        assert_eq!(
            norm(&["confd", "-x", "-h", "--", "-noop"]),
            ["confd", "-x", "-h", "--", "-noop"]
        );
    }

    #[test]
    fn go_bool_syntax_parses() {
        let cli = parse(os(&["confd", "-noop=false", "-watch", "-onetime=true"])).expect("parse");
        assert_eq!(cli.noop, Some(false));
        assert_eq!(cli.watch, Some(true));
        assert_eq!(cli.onetime, Some(true));
        assert_eq!(cli.sync_only, None);
    }

    #[test]
    fn repeatable_flags_collect_in_order() {
        let cli = parse(os(&[
            "confd", "-node", "a", "--node=b", "-file", "x", "--file", "y",
        ]))
        .expect("parse");
        assert_eq!(cli.node, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(cli.file, Some(vec!["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn bool_flag_does_not_swallow_the_next_word() {
        let cli = parse(os(&["confd", "--noop", "--backend", "env"])).expect("parse");
        assert_eq!(cli.noop, Some(true));
        assert_eq!(cli.backend.as_deref(), Some("env"));
    }

    #[test]
    fn internal_plugin_subcommand_parses() {
        let cli = parse(os(&["confd", "internal-plugin", "database", "env"])).expect("parse");
        match cli.command {
            Some(Command::InternalPlugin { kind, name }) => {
                assert_eq!((kind.as_str(), name.as_str()), ("database", "env"));
            }
            None => panic!("subcommand missing"),
        }
    }

    #[test]
    fn internal_plugin_is_recognised_without_clap_only_in_its_exact_shape() {
        assert_eq!(
            internal_plugin(&os(&["confd", "internal-plugin", "database", "env"])),
            Some(("database", "env"))
        );
        assert_eq!(
            internal_plugin(&os(&["confd", "internal-plugin", "database"])),
            None
        );
        assert_eq!(
            internal_plugin(&os(&["confd", "internal-plugin", "database", "env", "-x"])),
            None
        );
        assert_eq!(
            internal_plugin(&os(&["confd", "--backend", "env", "internal-plugin"])),
            None
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
