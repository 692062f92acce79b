//! Routing: which resources share a plugin, how a `[backend]` table becomes its plugin's
//! settings, and the errors naming the resource file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::*;

struct Confdir {
    dir: tempfile::TempDir,
}

impl Confdir {
    fn new() -> Confdir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
        std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
        std::fs::write(dir.path().join("templates/t.tmpl"), "x\n").expect("template");
        Confdir { dir }
    }
    /// A resource `name` with `extra` after its [template] table.
    fn resource(&self, name: &str, extra: &str) {
        let text = format!(
            "[template]\nsrc = \"t.tmpl\"\ndest = \"{}/{name}.out\"\nkeys = [\"/k\"]\n{extra}",
            self.dir.path().display()
        );
        std::fs::write(
            self.dir.path().join("conf.d").join(format!("{name}.toml")),
            text,
        )
        .expect("write resource");
    }
    fn settings(&self, args: &[&str]) -> Settings {
        let mut argv = vec![OsString::from("confd")];
        argv.extend(args.iter().map(OsString::from));
        argv.push(OsString::from("--confdir"));
        argv.push(self.dir.path().as_os_str().to_owned());
        let cli = crate::cli::parse(argv).expect("args parse");
        settings::resolve(
            &cli,
            &BTreeMap::<String, String>::new(),
            FileConfig::default(),
        )
        .expect("resolve")
    }
    /// The routes and, per resource file name, the plugin it reads.
    fn plan(&self, args: &[&str]) -> anyhow::Result<(Vec<Route>, BTreeMap<String, String>)> {
        self.plan_running(args, &|_| None)
    }
    fn plan_running(
        &self,
        args: &[&str],
        running: &dyn Fn(&Launch) -> Option<String>,
    ) -> anyhow::Result<(Vec<Route>, BTreeMap<String, String>)> {
        let settings = self.settings(args);
        let opts = crate::run::run_options(&settings);
        let mut resources = confd_core::load_resources(&opts).expect("resources load");
        let registry = Registry::discover_in(std::iter::empty::<&Path>());
        let routes = plan(
            &settings,
            &registry,
            &mut resources,
            Path::new("/bin/confd"),
            true,
            running,
        )?;
        let by_file = resources
            .iter()
            .map(|r| {
                let name = r.source_file().file_name().expect("name");
                (name.to_string_lossy().into_owned(), r.backend().to_string())
            })
            .collect();
        Ok((routes, by_file))
    }
}

#[test]
fn identical_settings_share_one_plugin_and_differing_ones_get_their_own() {
    let c = Confdir::new();
    c.resource("a-plain", "");
    c.resource(
        "b-same-as-global",
        "[backend]\nbackend = \"etcd\"\nnodes = [\"http://10.0.0.1:2379\"]\n",
    );
    c.resource(
        "c-other-etcd",
        "[backend]\nbackend = \"etcd\"\nnodes = \"http://10.0.0.2:2379\"\n",
    );
    c.resource(
        "d-other-etcd-too",
        "[backend]\nbackend = \"etcd\"\nnode = [\"http://10.0.0.2:2379\"]\n",
    );
    c.resource(
        "e-vault",
        "[backend]\nbackend = \"vault\"\nnodes = [\"http://127.0.0.1:8200\"]\nauth_type = \"token\"\nauth_token = \"s.x\"\nkvVersion = 2\nimds_cache_ttl = \"5m\"\n",
    );
    let (routes, by_file) = c
        .plan(&["--backend", "etcd", "--node", "http://10.0.0.1:2379"])
        .expect("plans");
    let ids: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["etcd", "etcd@c-other-etcd", "vault@e-vault"]);
    assert_eq!(by_file["a-plain.toml"], "etcd");
    assert_eq!(by_file["b-same-as-global.toml"], "etcd");
    assert_eq!(by_file["c-other-etcd.toml"], "etcd@c-other-etcd");
    assert_eq!(by_file["d-other-etcd-too.toml"], "etcd@c-other-etcd");
    assert_eq!(by_file["e-vault.toml"], "vault@e-vault");
    assert_eq!(routes[1].used_by.len(), 2);
    let vault = &routes[2].launch;
    assert_eq!(vault.name, "vault");
    assert_eq!(vault.config["nodes"], "http://127.0.0.1:8200");
    assert_eq!(vault.config["authType"], "token");
    assert_eq!(vault.config["token"], "s.x");
    assert_eq!(vault.config["kvVersion"], "2");
    // The fork's AWS-only key is ignored (with a warning), not passed on.
    assert!(
        !vault.config.keys().any(|k| k.contains("imds")),
        "{:?}",
        vault.config
    );
    // Nothing of the global settings leaks into a table's backend.
    assert_eq!(routes[1].launch.config["nodes"], "http://10.0.0.2:2379");
}

#[test]
fn a_table_without_nodes_gets_the_backends_default_nodes_not_the_global_ones() {
    let c = Confdir::new();
    c.resource("local", "[backend]\nbackend = \"etcd\"\n");
    let (routes, _) = c
        .plan(&["--backend", "etcd", "--node", "http://10.0.0.1:2379"])
        .expect("plans");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].id, "etcd@local");
    assert_eq!(
        routes[0].launch.config["nodes"],
        confd_builtin_etcd::DESCRIPTOR.default_nodes.join(",")
    );
}

#[test]
fn bad_tables_are_errors_naming_the_file() {
    let c = Confdir::new();
    c.resource("unknown", "[backend]\nbackend = \"nosuch\"\n");
    c.resource("missing", "[backend]\nnodes = [\"x:1\"]\n");
    c.resource("misplaced", "[backend]\nbackend = \"env\"\ninterval = 5\n");
    c.resource(
        "typo",
        "[backend]\nbackend = \"vault\"\nauth_tokne = \"x\"\n",
    );
    let err = c
        .plan(&["--backend", "env"])
        .expect_err("refused")
        .to_string();
    for (file, text) in [
        ("unknown.toml", "unknown backend \"nosuch\""),
        ("missing.toml", "missing `backend"),
        ("misplaced.toml", "\"interval\" is not a backend setting"),
        ("typo.toml", "unknown key \"auth_tokne\""),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no error for {file}: {err}"));
        assert!(line.contains("[backend]") && line.contains(text), "{line}");
    }
}

#[test]
fn a_plugin_that_is_not_a_builtin_gets_the_other_keys_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("confd-database-mine");
    std::fs::write(&plugin, "#!/bin/sh\n").expect("write plugin");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let registry = Registry::discover_in([dir.path()]);
    let table: toml::Table =
        toml::from_str("backend = \"mine\"\napiKey = \"k\"\nport = 7\n").expect("toml");
    let s = table_settings(&table, &registry, Path::new("conf.d/x.toml")).expect("resolves");
    assert_eq!(s.backend, "mine");
    assert_eq!(s.plugins["mine"]["apiKey"], "k");
    assert_eq!(s.plugins["mine"]["port"], "7");
}

#[test]
fn a_running_plugin_keeps_its_name_when_another_file_comes_first() {
    let c = Confdir::new();
    let table = "[backend]\nbackend = \"etcd\"\nnodes = [\"http://10.0.0.2:2379\"]\n";
    c.resource("b", table);
    let (before, _) = c.plan(&["--backend", "env"]).expect("plans");
    assert_eq!(before[0].id, "etcd@b");
    let launch = before[0].launch.clone();
    c.resource("a", table);
    c.resource(
        "c",
        "[backend]\nbackend = \"etcd\"\nnodes = [\"http://10.0.0.3:2379\"]\n",
    );
    let running = move |l: &Launch| (*l == launch).then(|| "etcd@b".to_string());
    let (after, by_file) = c
        .plan_running(&["--backend", "env"], &running)
        .expect("plans");
    let ids: Vec<&str> = after.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["etcd@b", "etcd@c"]);
    assert_eq!(by_file["a.toml"], "etcd@b");
}

/// SRV discovery in a `[backend]` table: its `srv_record` / `srv_domain` (and `scheme`) are the
/// table's own, not the global ones, and the discovered `host:port` answers become that table's
/// plugin's nodes only.
#[test]
fn srv_discovery_in_a_table_uses_the_tables_record_and_scheme() {
    let c = Confdir::new();
    c.resource("plain", "");
    c.resource(
        "by-record",
        "[backend]\nbackend = \"etcd\"\nsrv_record = \"_etcd-client._tcp.a.test.\"\nscheme = \"https\"\n",
    );
    c.resource(
        "by-domain",
        "[backend]\nbackend = \"etcd\"\nsrv_domain = \"b.test\"\n",
    );
    c.resource(
        "redis",
        "[backend]\nbackend = \"redis\"\nsrv-record = \"_redis._tcp.c.test.\"\n",
    );
    let (mut routes, _) = c
        .plan(&["--backend", "etcd", "--node", "http://10.0.0.1:2379"])
        .expect("plans");
    let ids: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["etcd", "etcd@by-domain", "etcd@by-record", "redis@redis"]
    );
    let records: Vec<Option<String>> = routes
        .iter()
        .map(|r| backends::srv_record(&r.launch, &r.settings))
        .collect();
    assert_eq!(
        records,
        [
            None,
            Some("_etcd._tcp.b.test.".to_string()),
            Some("_etcd-client._tcp.a.test.".to_string()),
            Some("_redis._tcp.c.test.".to_string()),
        ]
    );
    for route in &mut routes[1..] {
        let record = backends::srv_record(&route.launch, &route.settings).expect("a record");
        backends::set_srv_nodes(
            &mut route.launch,
            &route.settings,
            &record,
            vec!["n1.test:2379".to_string(), "n2.test:2380".to_string()],
        );
    }
    assert_eq!(routes[0].launch.config["nodes"], "http://10.0.0.1:2379");
    assert_eq!(
        routes[1].launch.config["nodes"],
        "http://n1.test:2379,http://n2.test:2380"
    );
    assert_eq!(
        routes[2].launch.config["nodes"],
        "https://n1.test:2379,https://n2.test:2380"
    );
    assert_eq!(
        routes[3].launch.config["nodes"],
        "n1.test:2379,n2.test:2380"
    );
}
