//! Resource loading: every load-time check, one test each.

use super::*;
use std::fs;

struct Confdir {
    dir: tempfile::TempDir,
}

impl Confdir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
        fs::create_dir_all(dir.path().join("templates")).expect("templates");
        fs::create_dir_all(dir.path().join("out")).expect("out");
        fs::write(
            dir.path().join("templates/app.tmpl"),
            "name={{getv \"/app/name\"}}\n",
        )
        .expect("template");
        Confdir { dir }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn resource(&self, name: &str, body: &str) {
        let path = self.dir.path().join("conf.d").join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, body).expect("write resource");
    }
    fn opts(&self) -> RunOptions {
        RunOptions {
            confdir: self.dir.path().to_path_buf(),
            default_backend: "mem".into(),
            ..Default::default()
        }
    }
    fn load(&self) -> Result<Vec<Resource>, LoadError> {
        load_resources(&self.opts())
    }
    fn errors(&self) -> Vec<String> {
        self.load()
            .expect_err("loading must fail")
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }
    fn good(&self, name: &str) {
        self.resource(
            name,
            &format!(
                "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/{}.out\"\nkeys = [\"/app\"]\n",
                self.out().display(),
                name.replace('/', "-")
            ),
        );
    }
}

#[test]
fn modes_are_octal_with_special_bits() {
    assert_eq!(parse_mode("0644"), Ok(0o644));
    assert_eq!(parse_mode("644"), Ok(0o644));
    assert_eq!(parse_mode("0o640"), Ok(0o640));
    assert_eq!(parse_mode("04755"), Ok(0o4755));
    assert_eq!(parse_mode("1777"), Ok(0o1777));
    assert!(parse_mode("rw-r--r--").is_err());
    assert!(parse_mode("0x1a4").is_err());
    assert!(parse_mode("0648").is_err());
    assert!(parse_mode("").is_err());
    assert!(parse_mode("17777").is_err());
}

#[test]
fn a_good_resource_loads_with_all_options() {
    let c = Confdir::new();
    c.resource(
        "app.toml",
        &format!(
            r#"[template]
src = "app.tmpl"
dest = "{}/app.conf"
keys = ["/app/", "//app//db"]
prefix = "r"
mode = "0600"
uid = 0
gid = 0
check_cmd = "test -s {{{{.src}}}}"
reload_cmd = "true"
check_cmd_timeout = "2s"
reload_cmd_timeout = "500ms"
engine = "go"
backend = "other"
"#,
            c.out().display()
        ),
    );
    let mut opts = c.opts();
    opts.prefix = "/g/".into();
    let rs = load_resources(&opts).expect("loads");
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(r.prefix(), "/g/r");
    assert_eq!(r.query_keys(), ["/g/r/app", "/g/r/app/db"]);
    assert_eq!(r.mode(), Some(0o600));
    assert_eq!((r.uid(), r.gid()), (Some(0), Some(0)));
    assert_eq!(r.check_cmd_timeout(), Duration::from_secs(2));
    assert_eq!(r.reload_cmd_timeout(), Duration::from_millis(500));
    assert_eq!(r.backend(), "other");
    assert_eq!(r.dest(), c.out().join("app.conf"));
}

#[test]
fn defaults_come_from_run_options() {
    let c = Confdir::new();
    c.good("a.toml");
    let rs = c.load().expect("loads");
    assert_eq!(rs[0].backend(), "mem");
    assert_eq!(rs[0].prefix(), "/");
    assert_eq!(rs[0].mode(), None);
    assert_eq!(rs[0].check_cmd_timeout(), Duration::from_secs(30));
}

#[test]
fn discovery_is_recursive_sorted_and_only_toml() {
    let c = Confdir::new();
    c.good("b.toml");
    c.good("a/z.toml");
    c.good("a.toml");
    c.good("disabled.toml.off");
    c.good("README.md");
    let rs = c.load().expect("loads");
    let names: Vec<String> = rs
        .iter()
        .map(|r| {
            r.source_file()
                .strip_prefix(c.dir.path().join("conf.d"))
                .expect("under conf.d")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["a/z.toml", "a.toml", "b.toml"]);
}

#[test]
fn keys_are_case_insensitive_and_unknown_keys_warn() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[Template]\nSRC = \"app.tmpl\"\nDest = \"{}/a\"\nkeys = []\ndescription = \"x\"\n",
            c.out().display()
        ),
    );
    let rs = c.load().expect("unknown keys are only a warning");
    assert!(rs[0].query_keys().is_empty());
}

#[test]
fn unknown_keys_are_errors_when_strict() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nreload_comand = \"x\"\n",
            c.out().display()
        ),
    );
    let mut opts = c.opts();
    opts.strict_resource_keys = true;
    let err = load_resources(&opts).expect_err("strict");
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].message.contains("reload_comand"), "{err}");
    assert!(err.to_string().contains("a.toml"), "{err}");
}

#[test]
fn malformed_toml_names_file_and_line_and_fails_everything() {
    let c = Confdir::new();
    c.good("a-good.toml");
    c.resource(
        "b-bad.toml",
        "[template]\nsrc = \"app.tmpl\"\nkeys = [\"/app\"\n",
    );
    let err = c.load().expect_err("must fail");
    assert_eq!(err.errors.len(), 1);
    let text = err.to_string();
    assert!(text.contains("b-bad.toml"), "{text}");
    assert!(text.contains("invalid TOML"), "{text}");
    assert!(text.contains("line 3") || text.contains(":3:"), "{text}");
}

#[test]
fn missing_and_empty_src() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!("[template]\ndest = \"{}/a\"\n", c.out().display()),
    );
    assert!(c.errors()[0].contains("missing `src`"));
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"\"\ndest = \"{}/a\"\n",
            c.out().display()
        ),
    );
    assert!(c.errors()[0].contains("empty `src`"));
}

#[test]
fn missing_template_file() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"nope.tmpl\"\ndest = \"{}/a\"\n",
            c.out().display()
        ),
    );
    let errs = c.errors();
    assert!(
        errs[0].contains("missing template") && errs[0].contains("nope.tmpl"),
        "{errs:?}"
    );
}

#[test]
fn template_parse_error_is_a_load_error() {
    let c = Confdir::new();
    fs::write(c.dir.path().join("templates/bad.tmpl"), "{{if}}\n").expect("write");
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"bad.tmpl\"\ndest = \"{}/a\"\n",
            c.out().display()
        ),
    );
    let errs = c.errors();
    assert!(errs[0].contains("bad.tmpl"), "{errs:?}");
}

#[test]
fn invalid_mode() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nmode = \"rw-r--r--\"\n",
            c.out().display()
        ),
    );
    assert!(c.errors()[0].contains("invalid mode \"rw-r--r--\""));
}

#[test]
fn unknown_owner_and_group_load_and_fail_at_write_time() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nowner = \"no-such-user-xyz\"\ngroup = \"no-such-group-xyz\"\n",
            c.out().display()
        ),
    );
    let rs = c
        .load()
        .expect("an unknown account concerns the resource only");
    let err = rs[0].owner_ids().expect_err("still unknown at write time");
    assert!(err.contains("unknown owner \"no-such-user-xyz\""), "{err}");
}

#[test]
fn unknown_group_alone_is_named() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\ngroup = \"no-such-group-xyz\"\n",
            c.out().display()
        ),
    );
    let rs = c.load().expect("loads");
    let err = rs[0].owner_ids().expect_err("unknown group");
    assert!(err.contains("unknown group \"no-such-group-xyz\""), "{err}");
}

#[test]
fn owner_names_resolve() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nowner = \"root\"\ngroup = \"root\"\n",
            c.out().display()
        ),
    );
    let rs = c.load().expect("root exists");
    assert_eq!((rs[0].uid(), rs[0].gid()), (Some(0), Some(0)));
}

#[test]
fn missing_dest_directory_loads() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/no-such-dir/a\"\n",
            c.out().display()
        ),
    );
    let rs = c
        .load()
        .expect("a missing directory fails the resource at write time only");
    assert_eq!(rs.len(), 1);
    assert!(
        !c.out().join("no-such-dir").exists(),
        "the directory is not created"
    );
}

#[test]
fn wrong_types_and_bad_durations_and_engines() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nkeys = \"/app\"\n",
            c.out().display()
        ),
    );
    let errs = c.errors();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("expected a sequence") && errs[0].contains("template.keys"),
        "{errs:?}"
    );
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nuid = -1\ncheck_cmd_timeout = \"soon\"\nengine = \"mustache\"\n",
            c.out().display()
        ),
    );
    let errs = c.errors();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("`uid` = -1")));
    assert!(errs.iter().any(|e| e.contains("check_cmd_timeout")));
    assert!(errs.iter().any(|e| e.contains("mustache")));
}

#[test]
fn every_bad_file_is_listed() {
    let c = Confdir::new();
    c.resource("a.toml", "[template]\nsrc = \"\"\n");
    c.good("b.toml");
    c.resource("c.toml", "not toml at all = = =");
    let err = c.load().expect_err("must fail");
    let files: Vec<String> = err
        .errors
        .iter()
        .map(|e| {
            e.file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(files.contains(&"a.toml".to_string()));
    assert!(files.contains(&"c.toml".to_string()));
    assert!(!files.contains(&"b.toml".to_string()));
}

#[test]
fn no_conf_d_means_no_resources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        confdir: dir.path().to_path_buf(),
        ..Default::default()
    };
    assert!(load_resources(&opts).expect("ok").is_empty());
}

#[test]
fn every_engine_spelling_of_the_command_line_works_in_a_resource() {
    for (spelling, kind) in [
        ("j2", EngineKind::Jinja),
        ("Jinja2", EngineKind::Jinja),
        ("gotmpl", EngineKind::Go),
        ("GO", EngineKind::Go),
    ] {
        let c = Confdir::new();
        fs::write(c.dir.path().join("templates/plain.tmpl"), "plain\n").expect("template");
        c.resource(
            "a.toml",
            &format!(
                "[template]\nsrc = \"plain.tmpl\"\ndest = \"{}/a\"\nengine = \"{spelling}\"\n",
                c.out().display()
            ),
        );
        let rs = c.load().expect(spelling);
        assert_eq!(rs[0].engine(), kind, "{spelling}");
    }
}

#[test]
fn keys_differing_only_in_case_are_refused() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\nSRC = \"other.tmpl\"\ndest = \"{}/a\"\n",
            c.out().display()
        ),
    );
    let errs = c.errors();
    assert!(
        errs.iter()
            .any(|e| e.contains("\"src\" given more than once")),
        "{errs:?}"
    );
}

#[test]
fn output_format_is_read_and_an_unknown_one_is_refused_with_its_line() {
    let c = Confdir::new();
    let dest = c.out().display().to_string();
    c.resource(
        "a.toml",
        &format!("[template]\nsrc = \"app.tmpl\"\ndest = \"{dest}/a\"\noutput_format = \"YML\"\n"),
    );
    let rs = c.load().expect("yml is yaml");
    assert_eq!(rs[0].output_format(), Some(crate::OutputFormat::Yaml));

    c.resource(
        "a.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{dest}/a\"\n\noutput_format = \"xml\"\n"
        ),
    );
    let err = c.load().expect_err("xml is not offered");
    assert_eq!(err.errors[0].line, Some(5), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("a.toml:5: unknown output format \"xml\""),
        "{text}"
    );
}

#[test]
fn problems_name_the_line_of_their_key_or_of_the_syntax_error() {
    let c = Confdir::new();
    c.resource(
        "a.toml",
        &format!(
            "# a comment\n[template]\nsrc = \"app.tmpl\"\ndest = \"{}/a\"\nMode = \"rw\"\nuid = -1\n",
            c.out().display()
        ),
    );
    let err = c.load().expect_err("bad mode and uid");
    let lines: Vec<Option<usize>> = err.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(6), Some(5)], "{err}");

    c.resource("a.toml", "[template]\nsrc = \"app.tmpl\"\ndest = = 1\n");
    let err = c.load().expect_err("syntax error");
    assert_eq!(err.errors[0].line, Some(3), "{err}");

    c.resource("a.toml", "[template]\nsrc = \"app.tmpl\"\n");
    let err = c.load().expect_err("no dest");
    assert_eq!(err.errors[0].line, None, "a missing key has no line: {err}");
}

#[test]
fn a_backend_table_is_kept_for_the_host() {
    let c = Confdir::new();
    let dest = c.out().join("secrets.out");
    c.resource(
        "secrets.toml",
        &format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"{}\"\nkeys = [\"/app\"]\n\n\
             [Backend]\nbackend = \"vault\"\nnodes = [\"http://127.0.0.1:8200\"]\nauth_type = \"token\"\n",
            dest.display()
        ),
    );
    c.good("plain.toml");
    let mut resources = c.load().expect("loads");
    resources.sort_by(|a, b| a.source_file().cmp(b.source_file()));
    let (plain, secrets) = (&resources[0], &mut resources[1].clone());
    assert!(plain.backend_table().is_none());
    assert_eq!(plain.backend(), "mem");
    let table = secrets.backend_table().expect("the [backend] table");
    assert_eq!(table["backend"].as_str(), Some("vault"));
    assert_eq!(table["auth_type"].as_str(), Some("token"));
    assert_eq!(table["nodes"].as_array().map(Vec::len), Some(1));
    // Until the host routes it, the resource names the run's default backend.
    assert_eq!(secrets.backend(), "mem");
    secrets.route_to("vault@secrets");
    assert_eq!(secrets.backend(), "vault@secrets");
}

#[test]
fn a_backend_given_twice_or_not_as_a_table_is_an_error() {
    let c = Confdir::new();
    c.resource(
        "twice.toml",
        "[template]\nsrc = \"app.tmpl\"\ndest = \"/tmp/x\"\nbackend = \"env\"\n[backend]\nbackend = \"etcd\"\n",
    );
    let errors = c.errors();
    assert!(
        errors.iter().any(|e| e.contains("give the backend once")),
        "{errors:?}"
    );
    let c = Confdir::new();
    c.resource(
        "flat.toml",
        "backend = \"etcd\"\n[template]\nsrc = \"app.tmpl\"\ndest = \"/tmp/x\"\n",
    );
    let errors = c.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`backend` must be a table")),
        "{errors:?}"
    );
}
