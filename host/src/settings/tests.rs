//! Precedence tests: for every key class (string, bool, list, number, duration) a flag beats
//! the environment, which beats confd.toml, which beats the default.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Duration;

use super::*;
use crate::cli;

fn cli_from(args: &[&str]) -> Cli {
    let mut argv = vec![OsString::from("confd")];
    argv.extend(args.iter().map(OsString::from));
    cli::parse(argv).expect("test arguments parse")
}

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file_of(text: &str) -> FileConfig {
    FileConfig::parse(text, Path::new("confd.toml")).expect("test toml parses")
}

fn resolve_with(args: &[&str], env: &[(&str, &str)], toml: &str) -> Settings {
    resolve(&cli_from(args), &env_of(env), file_of(toml)).expect("settings resolve")
}

type Getter = fn(&Settings) -> Option<String>;

/// (flag, env var, toml key, getter) for every string-valued key.
fn string_keys() -> Vec<(&'static str, &'static str, &'static str, Getter)> {
    vec![
        ("--backend", "CONFD_BACKEND", "backend", |s| {
            Some(s.backend.clone())
        }),
        ("--confdir", "CONFD_CONFDIR", "confdir", |s| {
            Some(s.confdir.display().to_string())
        }),
        ("--prefix", "CONFD_PREFIX", "prefix", |s| {
            Some(s.prefix.clone())
        }),
        ("--scheme", "CONFD_SCHEME", "scheme", |s| {
            Some(s.scheme.clone())
        }),
        ("--client-cert", "CONFD_CLIENT_CERT", "client_cert", |s| {
            s.client_cert.clone()
        }),
        ("--client-key", "CONFD_CLIENT_KEY", "client_key", |s| {
            s.client_key.clone()
        }),
        (
            "--client-ca-keys",
            "CONFD_CLIENT_CAKEYS",
            "client_cakeys",
            |s| s.client_cakeys.clone(),
        ),
        ("--username", "CONFD_USERNAME", "username", |s| {
            s.username.clone()
        }),
        ("--password", "CONFD_PASSWORD", "password", |s| {
            s.password.clone()
        }),
        ("--separator", "CONFD_SEPARATOR", "separator", |s| {
            s.separator.clone()
        }),
        ("--filter", "CONFD_FILTER", "filter", |s| s.filter.clone()),
        ("--table", "CONFD_TABLE", "table", |s| s.table.clone()),
        ("--srv-domain", "CONFD_SRV_DOMAIN", "srv_domain", |s| {
            s.srv_domain.clone()
        }),
        ("--srv-record", "CONFD_SRV_RECORD", "srv_record", |s| {
            s.srv_record.clone()
        }),
    ]
}

#[test]
fn string_keys_follow_flag_env_file_default() {
    for (flag, var, key, get) in string_keys() {
        let toml = format!("{key} = \"from-file\"");
        let flag_arg = format!("{flag}=from-flag");
        let all = resolve_with(&[&flag_arg], &[(var, "from-env")], &toml);
        assert_eq!(
            get(&all).as_deref(),
            Some("from-flag"),
            "{flag} beats {var}"
        );
        let env_file = resolve_with(&[], &[(var, "from-env")], &toml);
        assert_eq!(
            get(&env_file).as_deref(),
            Some("from-env"),
            "{var} beats {key}"
        );
        let file_only = resolve_with(&[], &[], &toml);
        assert_eq!(
            get(&file_only).as_deref(),
            Some("from-file"),
            "{key} applies"
        );
        let none = resolve_with(&[], &[], "");
        assert_ne!(get(&none).as_deref(), Some("from-file"), "{key} default");
    }
}

#[test]
fn string_defaults() {
    let s = resolve_with(&[], &[], "");
    assert_eq!(s.backend, "etcd");
    assert_eq!(s.confdir, PathBuf::from("/etc/confd"));
    assert_eq!(s.scheme, "http");
    assert_eq!(s.prefix, "");
    assert_eq!(s.client_cert, None);
    assert_eq!(s.interval, 600);
    assert_eq!(s.log_level, LogLevel::Info);
    assert_eq!(s.check_cmd_timeout, Duration::from_secs(30));
    assert_eq!(s.reload_cmd_timeout, Duration::from_secs(60));
    assert_eq!(s.plugin_start_timeout, Duration::from_secs(10));
    assert_eq!(s.backend_timeout, Duration::from_secs(30));
    assert!(!s.onetime && !s.watch && !s.noop && !s.sync_only && !s.keep_stage_file);
}

type BoolGetter = fn(&Settings) -> bool;

fn bool_keys() -> Vec<(&'static str, &'static str, &'static str, BoolGetter)> {
    vec![
        ("--onetime", "CONFD_ONETIME", "onetime", |s| s.onetime),
        ("--watch", "CONFD_WATCH", "watch", |s| s.watch),
        ("--noop", "CONFD_NOOP", "noop", |s| s.noop),
        ("--diff", "CONFD_DIFF", "diff", |s| s.diff),
        ("--sync-only", "CONFD_SYNC_ONLY", "sync-only", |s| {
            s.sync_only
        }),
        (
            "--keep-stage-file",
            "CONFD_KEEP_STAGE_FILE",
            "keep-stage-file",
            |s| s.keep_stage_file,
        ),
        ("--basic-auth", "CONFD_BASIC_AUTH", "basic_auth", |s| {
            s.basic_auth
        }),
        (
            "--no-cwd-plugins",
            "CONFD_NO_CWD_PLUGINS",
            "no_cwd_plugins",
            |s| s.no_cwd_plugins,
        ),
    ]
}

#[test]
fn bool_keys_follow_flag_env_file_default_in_both_directions() {
    for (flag, var, key, get) in bool_keys() {
        // The file can switch a bool on, and a flag equal to the default still wins over it.
        assert!(
            get(&resolve_with(&[], &[], &format!("{key} = true"))),
            "{key}=true applies"
        );
        assert!(
            !get(&resolve_with(
                &[&format!("{flag}=false")],
                &[],
                &format!("{key} = true")
            )),
            "{flag}=false beats {key}=true"
        );
        assert!(
            !get(&resolve_with(
                &[],
                &[(var, "false")],
                &format!("{key} = true")
            )),
            "{var}=false beats {key}=true"
        );
        assert!(
            get(&resolve_with(&[], &[(var, "1")], &format!("{key} = false"))),
            "{var}=1 beats {key}=false"
        );
        assert!(
            get(&resolve_with(&[flag], &[(var, "false")], "")),
            "bare {flag} beats {var}"
        );
        assert!(!get(&resolve_with(&[], &[], "")), "{key} defaults to false");
    }
}

#[test]
fn toml_accepts_hyphen_and_underscore_spellings() {
    for text in [
        "sync-only = true\nkeep-stage-file = true\nlog-level = \"debug\"\nsrv-domain = \"d\"",
        "sync_only = true\nkeep_stage_file = true\nlog_level = \"debug\"\nsrv_domain = \"d\"",
    ] {
        let s = resolve_with(&[], &[], text);
        assert!(s.sync_only && s.keep_stage_file, "{text}");
        assert_eq!(s.log_level, LogLevel::Debug);
        assert_eq!(s.srv_domain.as_deref(), Some("d"));
    }
}

#[test]
fn list_keys_follow_flag_env_file_default() {
    let toml = "nodes = [\"f1\", \"f2\"]\nfile = [\"a.yaml\", \"b.yaml\"]";
    let s = resolve_with(
        &["--node", "n1", "-node=n2", "--file", "x.yaml"],
        &[("CONFD_NODE", "e1,e2"), ("CONFD_FILE", "e.yaml")],
        toml,
    );
    assert_eq!(s.nodes, ["n1", "n2"]);
    assert_eq!(s.files, ["x.yaml"]);
    let s = resolve_with(
        &[],
        &[("CONFD_NODE", "e1, e2"), ("CONFD_FILE", "e.yaml")],
        toml,
    );
    assert_eq!(s.nodes, ["e1", "e2"]);
    assert_eq!(s.files, ["e.yaml"]);
    let s = resolve_with(&[], &[], toml);
    assert_eq!(s.nodes, ["f1", "f2"]);
    assert_eq!(s.files, ["a.yaml", "b.yaml"]);
    let s = resolve_with(&[], &[], "file = \"single.yaml\"");
    assert_eq!(s.files, ["single.yaml"]);
    let s = resolve_with(&[], &[], "");
    assert!(s.nodes.is_empty() && s.files.is_empty());
}

#[test]
fn plugin_dirs_follow_flag_env_file_default() {
    let dirs = |s: Settings| -> Vec<String> {
        s.plugin_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    let toml = "plugin_dir = [\"/f1\", \"/f2\"]";
    assert_eq!(
        dirs(resolve_with(
            &["--plugin-dir", "/a", "-plugin-dir=/b"],
            &[("CONFD_PLUGIN_DIR", "/e1,/e2")],
            toml
        )),
        ["/a", "/b"]
    );
    assert_eq!(
        dirs(resolve_with(&[], &[("CONFD_PLUGIN_DIR", "/e1, /e2")], toml)),
        ["/e1", "/e2"]
    );
    assert_eq!(dirs(resolve_with(&[], &[], toml)), ["/f1", "/f2"]);
    assert_eq!(
        dirs(resolve_with(&[], &[], "plugin-dir = \"/one\"")),
        ["/one"]
    );
    assert!(dirs(resolve_with(&[], &[], "")).is_empty());
}

#[test]
fn number_key_follows_flag_env_file_default() {
    assert_eq!(
        resolve_with(
            &["--interval", "600"],
            &[("CONFD_INTERVAL", "7")],
            "interval = 30"
        )
        .interval,
        600,
        "a flag equal to the default still wins"
    );
    assert_eq!(
        resolve_with(&[], &[("CONFD_INTERVAL", "7")], "interval = 30").interval,
        7
    );
    assert_eq!(resolve_with(&[], &[], "interval = 30").interval, 30);
    assert_eq!(resolve_with(&[], &[], "").interval, 600);
}

#[test]
fn duration_keys_follow_flag_env_file_default() {
    type DurGetter = fn(&Settings) -> Duration;
    let keys: [(&str, &str, &str, DurGetter); 7] = [
        (
            "--check-cmd-timeout",
            "CONFD_CHECK_CMD_TIMEOUT",
            "check_cmd_timeout",
            |s| s.check_cmd_timeout,
        ),
        (
            "--reload-cmd-timeout",
            "CONFD_RELOAD_CMD_TIMEOUT",
            "reload_cmd_timeout",
            |s| s.reload_cmd_timeout,
        ),
        ("--debounce", "CONFD_DEBOUNCE", "debounce", |s| s.debounce),
        (
            "--debounce-max",
            "CONFD_DEBOUNCE_MAX",
            "debounce_max",
            |s| s.debounce_max,
        ),
        (
            "--shutdown-timeout",
            "CONFD_SHUTDOWN_TIMEOUT",
            "shutdown_timeout",
            |s| s.shutdown_timeout,
        ),
        (
            "--plugin-start-timeout",
            "CONFD_PLUGIN_START_TIMEOUT",
            "plugin_start_timeout",
            |s| s.plugin_start_timeout,
        ),
        (
            "--backend-timeout",
            "CONFD_BACKEND_TIMEOUT",
            "backend_timeout",
            |s| s.backend_timeout,
        ),
    ];
    for (flag, var, key, get) in keys {
        let toml = format!("{key} = \"3s\"");
        let flag_arg = format!("{flag}=250ms");
        assert_eq!(
            get(&resolve_with(&[&flag_arg], &[(var, "2")], &toml)),
            Duration::from_millis(250)
        );
        assert_eq!(
            get(&resolve_with(&[], &[(var, "2")], &toml)),
            Duration::from_secs(2)
        );
        assert_eq!(get(&resolve_with(&[], &[], &toml)), Duration::from_secs(3));
        assert_eq!(
            get(&resolve_with(&[], &[], &format!("{key} = 4"))),
            Duration::from_secs(4)
        );
    }
}

#[test]
fn log_level_and_engine_are_validated_from_every_source() {
    assert_eq!(
        resolve_with(&["--log-level", "fatal"], &[], "").log_level,
        LogLevel::Error
    );
    assert_eq!(
        resolve_with(&[], &[("CONFD_LOG_LEVEL", "WARNING")], "").log_level,
        LogLevel::Warn
    );
    let err = resolve(
        &cli_from(&[]),
        &env_of(&[]),
        file_of("log-level = \"loud\""),
    )
    .expect_err("bad level");
    assert!(err.to_string().contains("\"loud\""), "{err}");
    let err = resolve(
        &cli_from(&["--template-engine", "mustache"]),
        &env_of(&[]),
        file_of(""),
    )
    .expect_err("bad engine");
    assert!(err.to_string().contains("mustache"), "{err}");
    assert_eq!(
        resolve_with(
            &[],
            &[("CONFD_TEMPLATE_ENGINE", "jinja")],
            "template_engine = \"go\""
        )
        .template_engine,
        Some(confd_template::EngineKind::Jinja)
    );
}

#[test]
fn invalid_environment_values_name_the_variable() {
    let err = resolve(
        &cli_from(&[]),
        &env_of(&[("CONFD_NOOP", "maybe")]),
        file_of(""),
    )
    .expect_err("bad bool");
    assert!(err.to_string().contains("CONFD_NOOP"), "{err}");
    let err = resolve(
        &cli_from(&[]),
        &env_of(&[("CONFD_INTERVAL", "soon")]),
        file_of(""),
    )
    .expect_err("bad number");
    assert!(err.to_string().contains("CONFD_INTERVAL"), "{err}");
}

#[test]
fn unknown_toml_key_is_an_error_naming_it() {
    let err = FileConfig::parse(
        "backend = \"env\"\nnoopp = true\n",
        Path::new("/x/confd.toml"),
    )
    .expect_err("unknown key");
    let text = format!("{err:#}");
    assert!(text.contains("noopp"), "{text}");
    assert!(text.contains("/x/confd.toml"), "{text}");
}

#[test]
fn empty_environment_values_count_as_unset() {
    let s = resolve_with(
        &[],
        &[("CONFD_PREFIX", ""), ("CONFD_NODE", "")],
        "prefix = \"/p\"\nnodes = [\"n\"]",
    );
    assert_eq!(s.prefix, "/p");
    assert_eq!(s.nodes, ["n"]);
}

#[test]
fn plugin_settings_merge_flag_over_file_for_the_selected_backend() {
    let toml = "[plugins.vault-kv]\naddress = \"http://f\"\nretries = 3\nnodes = [\"a\", \"b\"]\n[plugins.other]\nx = \"y\"";
    let s = resolve_with(
        &[
            "--backend",
            "vault-kv",
            "--plugin-config",
            "address=http://flag",
            "--plugin-config=token=a=b",
        ],
        &[("CONFD_PLUGIN_CONFIG", "address=http://env")],
        toml,
    );
    let vault = &s.plugins["vault-kv"];
    assert_eq!(vault["address"], "http://flag");
    assert_eq!(vault["token"], "a=b");
    assert_eq!(vault["retries"], "3");
    assert_eq!(vault["nodes"], "a,b");
    assert_eq!(s.plugins["other"]["x"], "y");
    let s = resolve_with(
        &["--backend", "vault-kv"],
        &[("CONFD_PLUGIN_CONFIG", "address=http://env")],
        toml,
    );
    assert_eq!(s.plugins["vault-kv"]["address"], "http://env");
    let err = resolve(
        &cli_from(&["--plugin-config", "novalue"]),
        &env_of(&[]),
        file_of(""),
    )
    .expect_err("missing =");
    assert!(err.to_string().contains("novalue"), "{err}");
}

#[test]
fn a_missing_config_file_is_skipped_and_a_named_one_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let cli = cli_from(&["--config-file", missing.to_str().expect("utf-8 path")]);
    let s = load(&cli, &env_of(&[])).expect("a missing file is skipped, as in confd");
    assert_eq!(s.config_file, None);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("nope.toml"), "{:?}", s.warnings);
    let env = env_of(&[("CONFD_CONFIG_FILE", missing.to_str().expect("utf-8 path"))]);
    let s = load(&cli_from(&[]), &env).expect("CONFD_CONFIG_FILE is skipped the same way");
    assert!(s.warnings[0].contains("nope.toml"), "{:?}", s.warnings);

    let present = dir.path().join("confd.toml");
    std::fs::write(&present, "backend = \"env\"\n").expect("write");
    let cli = cli_from(&["--config-file", present.to_str().expect("utf-8 path")]);
    let s = load(&cli, &env_of(&[])).expect("load");
    assert_eq!(s.backend, "env");
    assert_eq!(s.config_file.as_deref(), Some(present.as_path()));
    assert!(s.warnings.is_empty());
}

#[test]
fn client_insecure_and_the_vault_auth_keys_are_the_originals() {
    let s = resolve_with(&[], &[], "client_insecure = true");
    assert!(s.client_insecure);
    assert!(s.warnings.is_empty());
    assert!(!resolve_with(&[], &[], "").client_insecure);
    let toml = "auth_type = \"app-role\"\nrole_id = \"r\"\nsecret_id = \"s\"\npath = \"test\"\n\
                app_id = \"a\"\nuser_id = \"u\"\nauth_token = \"t\"";
    let s = resolve_with(&[], &[], toml);
    assert_eq!(s.auth.auth_type.as_deref(), Some("app-role"));
    assert_eq!(s.auth.role_id.as_deref(), Some("r"));
    assert_eq!(s.auth.secret_id.as_deref(), Some("s"));
    assert_eq!(s.auth.path.as_deref(), Some("test"));
    assert_eq!(s.auth.app_id.as_deref(), Some("a"));
    assert_eq!(s.auth.user_id.as_deref(), Some("u"));
    assert_eq!(s.auth.auth_token.as_deref(), Some("t"));
    // The original's single-dash flags win over the file.
    let s = resolve_with(
        &[
            "-auth-type",
            "token",
            "-auth-token",
            "flag",
            "-client-insecure",
        ],
        &[],
        toml,
    );
    assert_eq!(s.auth.auth_type.as_deref(), Some("token"));
    assert_eq!(s.auth.auth_token.as_deref(), Some("flag"));
    assert!(s.client_insecure);
}

#[test]
fn zero_interval_is_refused() {
    let err = resolve(&cli_from(&[]), &env_of(&[]), file_of("interval = 0")).expect_err("zero");
    assert!(err.to_string().contains("interval"), "{err}");
}

#[test]
fn toml_keys_match_case_insensitively() {
    let s = resolve_with(
        &[],
        &[],
        "Backend = \"env\"\nNOOP = true\nLog-Level = \"debug\"\n[plugins.MyPlugin]\nToken = \"t\"",
    );
    assert_eq!(s.backend, "env");
    assert!(s.noop);
    assert_eq!(s.log_level, LogLevel::Debug);
    assert_eq!(
        s.plugins["MyPlugin"]["Token"], "t",
        "plugin names and keys are kept"
    );
    let err = FileConfig::parse("backend = \"env\"\nBACKEND = \"etcd\"", Path::new("c.toml"))
        .expect_err("twice");
    assert!(format!("{err:#}").contains("more than once"), "{err:#}");
}

#[test]
fn the_forks_command_form_names_the_backend() {
    let s = resolve_with(&["etcd", "--node", "http://a:1", "--onetime"], &[], "");
    assert_eq!(s.backend, "etcd");
    assert_eq!(s.nodes, ["http://a:1"]);
    assert!(s.onetime);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let s = resolve_with(&["-onetime", "redis", "-n", "r:1"], &[], "");
    assert_eq!(
        (s.backend.as_str(), s.nodes.as_slice()),
        ("redis", &["r:1".to_string()][..])
    );
}

#[test]
fn stray_words_are_ignored_with_a_warning() {
    let s = resolve_with(&["--backend", "env", "extra"], &[], "");
    assert_eq!(s.backend, "env");
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains("\"extra\""), "{:?}", s.warnings);
    // Not a builtin: ignored, and the default backend stays.
    let s = resolve_with(&["-onetime", "typo"], &[], "");
    assert_eq!(s.backend, "etcd");
    assert!(s.warnings[0].contains("\"typo\""), "{:?}", s.warnings);
}

#[test]
fn the_forks_tuning_flags_are_accepted_with_a_warning() {
    let s = resolve_with(
        &[
            "--template-cache=false",
            "--stat-cache-ttl",
            "2s",
            "--watch-error-backoff",
            "1s",
        ],
        &[],
        "",
    );
    assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
    assert!(s.warnings.iter().any(|w| w.contains("--stat-cache-ttl")));
}

#[test]
fn dial_timeout_follows_flag_env_file_and_defaults_to_the_backends_own() {
    assert_eq!(resolve_with(&[], &[], "").dial_timeout, None);
    assert_eq!(
        resolve_with(
            &[],
            &[("CONFD_DIAL_TIMEOUT", "2s")],
            "dial_timeout = \"3s\""
        )
        .dial_timeout,
        Some(Duration::from_secs(2))
    );
    let s = resolve_with(&["--dial-timeout", "1500ms"], &[], "dial_timeout = 3");
    assert_eq!(s.dial_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(s.host_value("dial_timeout").as_deref(), Some("1s 500ms"));
}

#[test]
fn etcdctl_peers_gives_the_etcd_nodes_when_none_are_set() {
    let env = [("ETCDCTL_PEERS", "http://p1:2379,http://p2:2379")];
    assert_eq!(
        resolve_with(&["--backend", "etcd"], &env, "").nodes,
        ["http://p1:2379", "http://p2:2379"]
    );
    assert_eq!(
        resolve_with(&["--backend", "etcdv3"], &env, "").nodes.len(),
        2
    );
    assert_eq!(
        resolve_with(&["--backend", "etcd", "--node", "n:1"], &env, "").nodes,
        ["n:1"]
    );
    assert!(
        resolve_with(&["--backend", "redis"], &env, "")
            .nodes
            .is_empty()
    );
}

#[test]
fn log_format_follows_flag_env_file_default_and_is_validated() {
    assert_eq!(resolve_with(&[], &[], "").log_format, LogFormat::Text);
    assert_eq!(
        resolve_with(&[], &[], "log-format = \"json\"").log_format,
        LogFormat::Json
    );
    assert_eq!(
        resolve_with(&[], &[], "log_format = \"JSON\"").log_format,
        LogFormat::Json
    );
    assert_eq!(
        resolve_with(
            &[],
            &[("CONFD_LOG_FORMAT", "text")],
            "log-format = \"json\""
        )
        .log_format,
        LogFormat::Text
    );
    assert_eq!(
        resolve_with(
            &["--log-format", "json"],
            &[("CONFD_LOG_FORMAT", "text")],
            ""
        )
        .log_format,
        LogFormat::Json
    );
    let err = resolve(
        &cli_from(&[]),
        &env_of(&[("CONFD_LOG_FORMAT", "xml")]),
        file_of(""),
    )
    .expect_err("bad format");
    assert!(
        err.to_string().contains("CONFD_LOG_FORMAT \"xml\""),
        "{err}"
    );
}

#[test]
fn metrics_addr_follows_flag_env_file_is_off_by_default_and_checked() {
    assert_eq!(resolve_with(&[], &[], "").metrics_addr, None);
    let addr = |text: &str| text.parse::<std::net::SocketAddr>().expect("addr");
    assert_eq!(
        resolve_with(&[], &[], "metrics_addr = \"127.0.0.1:9100\"").metrics_addr,
        Some(addr("127.0.0.1:9100"))
    );
    assert_eq!(
        resolve_with(
            &[],
            &[("CONFD_METRICS_ADDR", ":9101")],
            "metrics-addr = \"127.0.0.1:9100\""
        )
        .metrics_addr,
        Some(addr("0.0.0.0:9101")),
        "the fork's :PORT means every interface"
    );
    assert_eq!(
        resolve_with(
            &["--metrics-addr", "[::1]:9102"],
            &[("CONFD_METRICS_ADDR", ":9101")],
            ""
        )
        .metrics_addr,
        Some(addr("[::1]:9102"))
    );
    assert_eq!(
        resolve_with(&["--metrics-addr="], &[], "metrics_addr = \":9100\"").metrics_addr,
        None,
        "an empty flag turns the server off"
    );
    for bad in [
        "9100",
        "localhost",
        "127.0.0.1:http",
        "127.0.0.1:70000",
        ":",
    ] {
        let err = resolve(
            &cli_from(&["--metrics-addr", bad]),
            &env_of(&[]),
            file_of(""),
        )
        .expect_err(bad);
        assert!(err.to_string().contains("--metrics-addr"), "{bad}: {err}");
    }
}

#[test]
fn the_check_flags_select_the_task() {
    assert_eq!(resolve_with(&[], &[], "").task, Task::Run);
    assert_eq!(
        resolve_with(&["--check-config"], &[], "").task,
        Task::CheckConfig
    );
    assert_eq!(resolve_with(&["-preflight"], &[], "").task, Task::Preflight);
    assert_eq!(
        resolve_with(&["--validate", "--mock-data", "m.yaml"], &[], "").task,
        Task::Validate {
            mock_data: PathBuf::from("m.yaml")
        }
    );
    let parse = |args: &[&str]| {
        let mut argv = vec![OsString::from("confd")];
        argv.extend(args.iter().map(OsString::from));
        cli::parse(argv)
    };
    assert!(
        parse(&["--validate"]).is_err(),
        "--validate needs --mock-data"
    );
    assert!(
        parse(&["--mock-data", "m.yaml"]).is_err(),
        "--mock-data needs --validate"
    );
    assert!(parse(&["--check-config", "--preflight"]).is_err());
}

#[test]
fn failure_mode_follows_flag_env_file_default() {
    use confd_core::FailureMode;
    assert_eq!(
        resolve_with(&[], &[], "").failure_mode,
        FailureMode::BestEffort
    );
    assert_eq!(
        resolve_with(&[], &[], "failure_mode = \"fail-fast\"").failure_mode,
        FailureMode::FailFast
    );
    assert_eq!(
        resolve_with(
            &["--failure-mode", "best-effort"],
            &[("CONFD_FAILURE_MODE", "fail-fast")],
            ""
        )
        .failure_mode,
        FailureMode::BestEffort
    );
    assert_eq!(
        resolve_with(&[], &[("CONFD_FAILURE_MODE", "fail-fast")], "").failure_mode,
        FailureMode::FailFast
    );
    let err = resolve(
        &cli_from(&["--failure-mode", "sometimes"]),
        &env_of(&[]),
        file_of(""),
    )
    .expect_err("unknown mode");
    assert!(format!("{err:#}").contains("--failure-mode"), "{err:#}");
}

#[test]
fn debounce_max_follows_a_longer_debounce_unless_given() {
    let s = resolve_with(&["--debounce", "3s"], &[], "");
    assert_eq!(s.debounce_max, Duration::from_secs(3));
    let err = resolve(
        &cli_from(&["--debounce", "3s", "--debounce-max", "1s"]),
        &env_of(&[]),
        file_of(""),
    )
    .expect_err("max below the window");
    assert!(format!("{err:#}").contains("debounce max"), "{err:#}");
}
