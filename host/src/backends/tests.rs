//! Discovery order, name parsing, and the settings map each backend receives.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::*;
use crate::settings::{self, FileConfig};

fn settings_from(args: &[&str], toml: &str) -> Settings {
    let mut argv = vec![OsString::from("confd")];
    argv.extend(args.iter().map(OsString::from));
    let cli = crate::cli::parse(argv).expect("args parse");
    let file = FileConfig::parse(toml, Path::new("confd.toml")).expect("toml parses");
    settings::resolve(&cli, &BTreeMap::<String, String>::new(), file).expect("resolve")
}

fn touch(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "#!/bin/sh\n").expect("write plugin file");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod plugin file");
    path
}

#[test]
fn non_executable_files_are_not_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    touch(dir.path(), "confd-database-real");
    std::fs::write(dir.path().join("confd-database-real.d"), "deps").expect("write");
    std::fs::write(dir.path().join("confd-database-notes"), "text").expect("write");
    let entries = Registry::discover_in([dir.path()]).entries();
    assert_eq!(
        entries["real"],
        Source::File(dir.path().join("confd-database-real"))
    );
    assert!(!entries.contains_key("notes"));
}

#[test]
fn plugin_names_cut_at_the_first_dot() {
    assert_eq!(plugin_name("confd-database-env-test"), Some("env-test"));
    assert_eq!(plugin_name("confd-database-vault.exe"), Some("vault"));
    assert_eq!(plugin_name("confd-database-a.b.c"), Some("a"));
    assert_eq!(plugin_name("confd-database-"), None);
    assert_eq!(plugin_name("confd-database-.x"), None);
    assert_eq!(plugin_name("confd-backend-env"), None);
}

#[test]
fn later_directory_wins_and_directories_are_ignored() {
    let exe = tempfile::tempdir().expect("tempdir");
    let cwd = tempfile::tempdir().expect("tempdir");
    touch(exe.path(), "confd-database-one");
    touch(exe.path(), "confd-database-two");
    let two_cwd = touch(cwd.path(), "confd-database-two");
    std::fs::create_dir(cwd.path().join("confd-database-dir")).expect("mkdir");
    touch(cwd.path(), "unrelated");
    let reg = Registry::discover_in([exe.path(), cwd.path()]);
    let entries = reg.entries();
    assert_eq!(
        entries["one"],
        Source::File(exe.path().join("confd-database-one"))
    );
    assert_eq!(entries["two"], Source::File(two_cwd));
    assert!(!entries.contains_key("dir"));
    assert!(!entries.contains_key("unrelated"));
    assert_eq!(entries["env"], Source::Builtin("env"));
    assert_eq!(entries["etcdv3"], Source::Builtin("etcd"));
}

#[test]
fn builtins_run_as_internal_plugin_and_files_run_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = touch(dir.path(), "confd-database-env-test");
    let reg = Registry::discover_in([dir.path()]);
    let s = settings_from(&[], "");
    let exe = Path::new("/opt/confd/bin/confd");

    let env = reg.launch("env", &s, exe, false).expect("env");
    assert_eq!(env.program, exe);
    assert_eq!(env.args, ["internal-plugin", "database", "env"]);
    let alias = reg.launch("etcdv3", &s, exe, false).expect("etcdv3");
    assert_eq!(alias.args, ["internal-plugin", "database", "etcd"]);
    assert_eq!(alias.name, "etcdv3");

    let ext = reg.launch("env-test", &s, exe, false).expect("env-test");
    assert_eq!(ext.program, plugin);
    assert!(ext.args.is_empty());
    assert!(
        ext.config.is_empty(),
        "third-party plugins get an empty map"
    );
}

#[test]
fn a_file_can_override_a_builtin_and_keeps_its_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = touch(dir.path(), "confd-database-redis");
    let reg = Registry::discover_in([dir.path()]);
    let s = settings_from(&["--node", "r:1"], "");
    let launch = reg
        .launch("redis", &s, Path::new("/confd"), true)
        .expect("redis");
    assert_eq!(launch.program, plugin);
    assert_eq!(launch.config["nodes"], "r:1");
}

#[test]
fn unknown_backend_lists_known_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    touch(dir.path(), "confd-database-mine");
    let reg = Registry::discover_in([dir.path()]);
    let err = reg.source("etdc").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown backend \"etdc\"; known backends: consul, dynamodb, env, etcd, etcdv3, file, \
         imds, mine, redis, secretsmanager, ssm, vault, zookeeper"
    );
}

#[test]
fn each_builtin_gets_only_its_keys() {
    let s = settings_from(
        &[
            "--node",
            "n1",
            "--node",
            "n2",
            "--scheme",
            "https",
            "--client-cert",
            "c.pem",
            "--client-key",
            "k.pem",
            "--client-ca-keys",
            "ca.pem",
            "--basic-auth",
            "--username",
            "u",
            "--password",
            "p",
            "--separator",
            ":",
            "--table",
            "t",
            "--file",
            "a.yaml",
            "--file",
            "b.yaml",
            "--filter",
            "*.yml",
        ],
        "",
    );
    let keys = |name: &str| -> Vec<String> { config_for(name, &s).into_keys().collect() };
    assert!(keys("env").is_empty());
    assert_eq!(keys("file"), ["file", "filter"]);
    assert_eq!(
        keys("etcd"),
        [
            "basicAuth",
            "caCert",
            "cert",
            "key",
            "nodes",
            "password",
            "username"
        ]
    );
    assert_eq!(keys("etcdv3"), keys("etcd"));
    // confd's client_key stays the redis password; the TLS key is the plugin's own `key`.
    assert_eq!(
        keys("redis"),
        ["caCert", "cert", "nodes", "password", "scheme", "separator"]
    );
    assert_eq!(config_for("redis", &s)["password"], "p");
    assert_eq!(
        keys("consul"),
        [
            "basicAuth",
            "caCert",
            "cert",
            "key",
            "nodes",
            "password",
            "scheme",
            "username"
        ]
    );
    let file = config_for("file", &s);
    assert_eq!(file["file"], "a.yaml,b.yaml");
    assert_eq!(file["filter"], "*.yml");
    let consul = config_for("consul", &s);
    assert_eq!(consul["nodes"], "n1,n2");
    assert_eq!(consul["scheme"], "https");
    assert_eq!(consul["basicAuth"], "true");
    assert_eq!(consul["caCert"], "ca.pem");
    // The AWS backends: --node is the endpoint, --table the dynamodb table (issue 16).
    #[cfg(feature = "aws")]
    {
        assert_eq!(keys("dynamodb"), ["endpoint", "table"]);
        assert_eq!(keys("ssm"), ["endpoint"]);
        assert_eq!(config_for("dynamodb", &s)["endpoint"], "n1,n2");
        assert_eq!(config_for("dynamodb", &s)["table"], "t");
    }
}

#[test]
fn default_nodes_follow_confd() {
    let s = settings_from(&[], "");
    assert_eq!(config_for("etcd", &s)["nodes"], "127.0.0.1:2379");
    assert_eq!(config_for("redis", &s)["nodes"], "127.0.0.1:6379");
    assert_eq!(config_for("consul", &s)["nodes"], "127.0.0.1:8500");
    assert!(!config_for("file", &s).contains_key("nodes"));
}

#[test]
fn redis_password_prefers_password_over_client_key() {
    let s = settings_from(&["--client-key", "legacy"], "");
    assert_eq!(config_for("redis", &s)["password"], "legacy");
    let s = settings_from(&["--client-key", "legacy", "--password", "new"], "");
    assert_eq!(config_for("redis", &s)["password"], "new");
}

#[test]
fn user_plugin_settings_reach_third_party_and_builtin_plugins() {
    let s = settings_from(
        &["--backend", "vault", "--plugin-config", "token=t"],
        "[plugins.consul]\ntoken = \"acl\"\n",
    );
    assert_eq!(
        config_for("vault", &s),
        BTreeMap::from([("token".into(), "t".into())])
    );
    assert_eq!(config_for("consul", &s)["token"], "acl");
    assert!(config_for("other", &s).is_empty());
}

#[test]
fn listing_shows_builtins_aliases_and_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = touch(dir.path(), "confd-database-env");
    let listing = Registry::discover_in([dir.path()]).listing();
    assert!(
        listing.contains(&format!("env             {}\n", p.display())),
        "{listing}"
    );
    assert!(
        listing.contains("etcdv3          builtin (alias of etcd)\n"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(
            "consul          builtin: {}\n",
            confd_builtin_consul::DESCRIPTOR.summary
        )),
        "{listing}"
    );
}

#[tokio::test]
async fn srv_discovery_only_touches_backends_with_nodes() {
    // file takes no nodes: no DNS lookup happens even with --srv-domain set (the lookup of
    // a non-existent domain would fail the call).
    let s = settings_from(&["--srv-domain", "invalid.", "--file", "a.yaml"], "");
    let reg = Registry::discover_in(std::iter::empty::<&Path>());
    let mut launch = reg
        .launch("file", &s, Path::new("/confd"), false)
        .expect("file");
    apply_srv(&mut launch, &s)
        .await
        .expect("no lookup for file");
    assert!(!launch.config.contains_key("nodes"));
    // Without srv settings the configured nodes stay.
    let s = settings_from(&["--node", "n:1"], "");
    let mut launch = reg
        .launch("etcd", &s, Path::new("/confd"), false)
        .expect("etcd");
    apply_srv(&mut launch, &s)
        .await
        .expect("no lookup without srv settings");
    assert_eq!(launch.config["nodes"], "n:1");
}

#[test]
fn descriptions_name_only_host_settings_and_are_sorted() {
    for b in BUILTINS {
        for setting in b.settings {
            for host in setting.from {
                assert!(
                    Settings::HOST_SETTINGS.contains(host),
                    "{}: setting {} names unknown host setting {host}",
                    b.name,
                    setting.key
                );
            }
        }
    }
    let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(builtin(DEFAULT_BACKEND).is_some());
}

#[test]
fn every_host_setting_is_readable() {
    let s = settings_from(
        &[
            "--node",
            "n",
            "--client-cert",
            "c",
            "--client-key",
            "k",
            "--client-ca-keys",
            "ca",
            "--username",
            "u",
            "--password",
            "p",
            "--separator",
            ":",
            "--table",
            "t",
            "--file",
            "f",
            "--filter",
            "*",
            "--dial-timeout",
            "2s",
            "--client-insecure",
            "--auth-type",
            "token",
            "--auth-token",
            "t",
            "--app-id",
            "a",
            "--user-id",
            "u",
            "--role-id",
            "r",
            "--secret-id",
            "s",
            "--path",
            "p",
        ],
        "",
    );
    for name in Settings::HOST_SETTINGS {
        assert!(s.host_value(name).is_some(), "{name} is not read");
    }
    assert_eq!(s.host_value("no_such_setting"), None);
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
}

fn reasons(reg: &Registry) -> Vec<(String, String)> {
    reg.skipped()
        .iter()
        .map(|s| {
            let name = s.path.file_name().expect("a file name");
            (name.to_string_lossy().into_owned(), s.reason.clone())
        })
        .collect()
}

#[test]
fn files_writable_by_others_are_skipped_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(&touch(dir.path(), "confd-database-etcd"), 0o777);
    chmod(&touch(dir.path(), "confd-database-group"), 0o775);
    let fine = touch(dir.path(), "confd-database-fine");
    chmod(&fine, 0o700);
    let reg = Registry::discover_in([dir.path()]);
    let entries = reg.entries();
    assert_eq!(
        entries["etcd"],
        Source::Builtin("etcd"),
        "the builtin stays"
    );
    assert!(!entries.contains_key("group"));
    assert_eq!(entries["fine"], Source::File(fine));
    assert_eq!(
        reasons(&reg),
        [
            (
                "confd-database-etcd".to_string(),
                "it is writable by group or others (mode 0777)".to_string()
            ),
            (
                "confd-database-group".to_string(),
                "it is writable by group or others (mode 0775)".to_string()
            ),
        ]
    );
    let text = reg.skipped()[0].to_string();
    assert!(
        text.starts_with(&format!(
            "not using the plugin {}: it is writable",
            dir.path().join("confd-database-etcd").display()
        )),
        "{text}"
    );
}

#[test]
fn files_owned_by_another_user_are_skipped_saying_why() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot give a file to another user; this check is skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let theirs = touch(dir.path(), "confd-database-redis");
    std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown to nobody");
    // A link of theirs to a file of ours: the link itself is the problem.
    let ours = touch(dir.path(), "real-plugin");
    let link = dir.path().join("confd-database-linked");
    std::os::unix::fs::symlink(&ours, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(65534), None).expect("lchown to nobody");
    let reg = Registry::discover_in([dir.path()]);
    assert_eq!(reg.entries()["redis"], Source::Builtin("redis"));
    assert!(!reg.entries().contains_key("linked"));
    assert_eq!(
        reasons(&reg),
        [
            (
                "confd-database-linked".to_string(),
                "it is a symbolic link owned by uid 65534, neither root nor the user running \
                 confd (uid 0)"
                    .to_string()
            ),
            (
                "confd-database-redis".to_string(),
                "it is owned by uid 65534, neither root nor the user running confd (uid 0)"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn symlinks_are_judged_by_their_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = tempfile::tempdir().expect("tempdir");
    let good = touch(bin.path(), "good");
    let loose = touch(bin.path(), "loose");
    chmod(&loose, 0o757);
    std::os::unix::fs::symlink(&good, dir.path().join("confd-database-good")).expect("link");
    std::os::unix::fs::symlink(&loose, dir.path().join("confd-database-loose")).expect("link");
    let reg = Registry::discover_in([dir.path()]);
    assert_eq!(
        reg.entries()["good"],
        Source::File(dir.path().join("confd-database-good"))
    );
    assert!(!reg.entries().contains_key("loose"));
    assert_eq!(
        reasons(&reg),
        [(
            "confd-database-loose".to_string(),
            "the file it links to is writable by group or others (mode 0757)".to_string()
        )]
    );
}

#[test]
fn a_directory_writable_by_others_skips_its_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    touch(dir.path(), "confd-database-mine");
    chmod(dir.path(), 0o1777);
    let reg = Registry::discover_in([dir.path()]);
    assert!(!reg.entries().contains_key("mine"));
    assert_eq!(
        reasons(&reg),
        [(
            "confd-database-mine".to_string(),
            format!(
                "its directory {} is writable by group or others (mode 1777)",
                dir.path().display()
            )
        )]
    );
}

#[test]
fn discovery_order_exe_then_cwd_then_plugin_dirs_first_given_wins() {
    let d = |p: &str| PathBuf::from(p);
    let discovery = Discovery {
        plugin_dirs: vec![d("/first"), d("/second")],
        no_cwd: false,
    };
    assert_eq!(
        discovery.dirs(Some(d("/exe")), Some(d("/cwd"))),
        [d("/exe"), d("/cwd"), d("/second"), d("/first")],
        "increasing priority"
    );
    let no_cwd = Discovery {
        no_cwd: true,
        ..discovery
    };
    assert_eq!(
        no_cwd.dirs(Some(d("/exe")), Some(d("/cwd"))),
        [d("/exe"), d("/second"), d("/first")]
    );

    let exe = tempfile::tempdir().expect("tempdir");
    let cwd = tempfile::tempdir().expect("tempdir");
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    for dir in [&exe, &cwd, &first, &second] {
        touch(dir.path(), "confd-database-x");
    }
    touch(cwd.path(), "confd-database-y");
    touch(second.path(), "confd-database-y");
    touch(exe.path(), "confd-database-z");
    touch(cwd.path(), "confd-database-z");
    let discovery = Discovery {
        plugin_dirs: vec![first.path().to_path_buf(), second.path().to_path_buf()],
        no_cwd: false,
    };
    let dirs = discovery.dirs(
        Some(exe.path().to_path_buf()),
        Some(cwd.path().to_path_buf()),
    );
    let entries = Registry::discover_in(dirs.iter().map(PathBuf::as_path)).entries();
    assert_eq!(
        entries["x"],
        Source::File(first.path().join("confd-database-x"))
    );
    assert_eq!(
        entries["y"],
        Source::File(second.path().join("confd-database-y"))
    );
    assert_eq!(
        entries["z"],
        Source::File(cwd.path().join("confd-database-z"))
    );
}

/// `--client-insecure` reaches every builtin that speaks TLS as its own setting (the original
/// accepts the flag and ignores it; here it turns verification off, see docs/differences.md).
#[test]
fn client_insecure_reaches_every_backend_that_speaks_tls() {
    let reg = Registry::discover_in(std::iter::empty::<&Path>());
    let on = settings_from(&["--client-insecure"], "");
    let off = settings_from(&[], "");
    for (backend, key) in [
        ("etcd", "insecure"),
        ("consul", "insecure"),
        ("vault", "insecure"),
        ("redis", "insecure"),
    ] {
        let launch = reg
            .launch(backend, &on, Path::new("/confd"), false)
            .expect(backend);
        assert_eq!(
            launch.config.get(key).map(String::as_str),
            Some("true"),
            "{backend}: {:?}",
            launch.config
        );
        let launch = reg
            .launch(backend, &off, Path::new("/confd"), false)
            .expect(backend);
        assert!(
            !launch.config.contains_key(key),
            "{backend}: {:?}",
            launch.config
        );
    }
}
