//! One-shot sync: what gets written, what is left alone, commands, modes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use confd_core::{Summary, load_resources, run_once};

use crate::support::{Confdir, MemDb};

const APP: &str = "name={{getv \"/app/name\"}}\n";

async fn once(_c: &Confdir, db: &std::sync::Arc<MemDb>, opts: &confd_core::RunOptions) -> Summary {
    let resources = load_resources(opts).expect("resources load");
    run_once(&resources, &db.backends(), opts).await
}

fn summary(updated: usize, unchanged: usize, failed: usize) -> Summary {
    Summary {
        updated,
        unchanged,
        failed,
        pending: 0,
    }
}

#[tokio::test]
async fn new_dest_is_written_with_default_mode() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=demo\n"));
    let mode = fs::metadata(c.dest("app.conf")).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(c.listing(), ["app.conf"], "no stage file left");
}

#[tokio::test]
async fn unchanged_dest_is_not_touched() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let log = c.dir.path().join("commands.log");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!(
            "check_cmd = \"echo check >> {0}\"\nreload_cmd = \"echo reload >> {0}\"",
            log.display()
        ),
    );
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
    let before = fs::metadata(c.dest("app.conf")).expect("stat");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(once(&c, &db, &c.opts()).await, summary(0, 1, 0));
    let after = fs::metadata(c.dest("app.conf")).expect("stat");
    assert_eq!(before.ino(), after.ino());
    assert_eq!(
        (before.mtime(), before.mtime_nsec()),
        (after.mtime(), after.mtime_nsec())
    );
    assert_eq!(c.listing(), ["app.conf"]);
    assert_eq!(fs::read_to_string(&log).expect("log"), "check\nreload\n");
}

#[tokio::test]
async fn changed_content_replaces_the_file() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "mode = \"0600\"");
    fs::write(c.dest("app.conf"), "name=old\n").expect("pre");
    let ino = fs::metadata(c.dest("app.conf")).expect("stat").ino();
    let db = MemDb::new(&[("/app/name", "new")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
    let meta = fs::metadata(c.dest("app.conf")).expect("stat");
    assert_eq!(c.read("app.conf").as_deref(), Some("name=new\n"));
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_ne!(meta.ino(), ino, "replaced by rename, not rewritten");
}

#[tokio::test]
async fn existing_mode_is_kept_and_mode_only_change_rewrites() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("keep", "app.tmpl", &["/app"], "");
    c.resource("change", "app.tmpl", &["/app"], "mode = \"0640\"");
    c.resource("special", "app.tmpl", &["/app"], "mode = \"02750\"");
    for name in ["keep", "change"] {
        fs::write(c.dest(name), "name=demo\n").expect("pre");
    }
    fs::set_permissions(c.dest("keep"), fs::Permissions::from_mode(0o604)).expect("chmod");
    fs::set_permissions(c.dest("change"), fs::Permissions::from_mode(0o644)).expect("chmod");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(2, 1, 0));
    let mode = |n: &str| fs::metadata(c.dest(n)).expect("stat").mode() & 0o7777;
    assert_eq!(mode("keep"), 0o604);
    assert_eq!(mode("change"), 0o640);
    assert_eq!(mode("special"), 0o2750);
}

#[tokio::test]
async fn failing_check_leaves_dest_and_no_stage_file() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let reloaded = c.dir.path().join("reloaded");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!(
            "check_cmd = \"grep -q '^name=production$' {{{{.src}}}}\"\nreload_cmd = \"touch {}\"",
            reloaded.display()
        ),
    );
    fs::write(c.dest("app.conf"), "name=previous\n").expect("pre");
    fs::set_permissions(c.dest("app.conf"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(0, 0, 1));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=previous\n"));
    assert_eq!(
        fs::metadata(c.dest("app.conf")).expect("stat").mode() & 0o7777,
        0o640
    );
    assert_eq!(c.listing(), ["app.conf"]);
    assert!(
        !reloaded.exists(),
        "reload must not run after a failed check"
    );
}

#[tokio::test]
async fn check_sees_the_staged_content() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        "check_cmd = \"grep -q '^name=demo$' {{.src}}\"",
    );
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
}

#[tokio::test]
async fn hanging_check_times_out() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        "check_cmd = \"sleep 30\"\ncheck_cmd_timeout = \"300ms\"",
    );
    let db = MemDb::new(&[("/app/name", "demo")]);
    let start = Instant::now();
    assert_eq!(once(&c, &db, &c.opts()).await, summary(0, 0, 1));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(c.listing().is_empty(), "{:?}", c.listing());
}

#[tokio::test]
async fn noop_writes_nothing() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("new.conf", "app.tmpl", &["/app"], "reload_cmd = \"false\"");
    c.resource("old.conf", "app.tmpl", &["/app"], "");
    fs::write(c.dest("old.conf"), "name=old\n").expect("pre");
    let db = MemDb::new(&[("/app/name", "demo")]);
    let mut opts = c.opts();
    opts.noop = true;
    opts.diff = true;
    let s = once(&c, &db, &opts).await;
    assert_eq!(
        s,
        Summary {
            updated: 0,
            unchanged: 0,
            failed: 0,
            pending: 2
        }
    );
    assert_eq!(c.listing(), ["old.conf"]);
    assert_eq!(c.read("old.conf").as_deref(), Some("name=old\n"));
}

#[tokio::test]
async fn sync_only_skips_both_commands() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let marker = c.dir.path().join("ran");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!(
            "check_cmd = \"false\"\nreload_cmd = \"touch {}\"",
            marker.display()
        ),
    );
    let db = MemDb::new(&[("/app/name", "demo")]);
    let mut opts = c.opts();
    opts.sync_only = true;
    assert_eq!(once(&c, &db, &opts).await, summary(1, 0, 0));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=demo\n"));
    assert!(!marker.exists());
}

#[tokio::test]
async fn keep_stage_file_keeps_it() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    let mut opts = c.opts();
    opts.keep_stage_file = true;
    assert_eq!(once(&c, &db, &opts).await, summary(1, 0, 0));
    let listing = c.listing();
    assert_eq!(listing.len(), 2, "{listing:?}");
    assert!(listing[0].starts_with(".confd-app.conf."), "{listing:?}");
    let stage = c.out().join(&listing[0]);
    assert_eq!(fs::read_to_string(&stage).expect("stage"), "name=demo\n");
    assert_eq!(c.read("app.conf").as_deref(), Some("name=demo\n"));
    // A kept stage file lasts until the next run loads its resources.
    confd_core::load_resources(&opts).expect("resources load");
    assert_eq!(c.listing(), ["app.conf"]);
}

#[tokio::test]
async fn one_failure_does_not_stop_the_others() {
    let c = Confdir::new();
    c.template("good.tmpl", APP);
    c.template("bad.tmpl", "port={{getv \"/app/port\"}}\n");
    c.resource("a-good.conf", "good.tmpl", &["/app"], "");
    c.resource("b-bad.conf", "bad.tmpl", &["/app"], "");
    c.resource("c-good.conf", "good.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(2, 0, 1));
    assert_eq!(c.listing(), ["a-good.conf", "c-good.conf"]);
}

#[tokio::test]
async fn backend_error_leaves_files_alone() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    fs::write(c.dest("app.conf"), "name=old\n").expect("pre");
    let db = MemDb::new(&[("/app/name", "demo")]);
    db.set_down(true);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(0, 0, 1));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=old\n"));
    assert_eq!(c.listing(), ["app.conf"]);
}

#[tokio::test]
async fn unknown_backend_fails_the_resource() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "backend = \"nope\"");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(0, 0, 1));
}

#[tokio::test]
async fn prefixes_join_and_keys_are_relative() {
    let c = Confdir::new();
    c.template("p.tmpl", "{{getv \"/db/host\"}}\n");
    c.resource("p.conf", "p.tmpl", &["/db"], "prefix = \"svc\"");
    let db = MemDb::new(&[
        ("/prod/svc/db/host", "right"),
        ("/prod/svcx/db/host", "wrong"),
    ]);
    let mut opts = c.opts();
    opts.prefix = "/prod".into();
    assert_eq!(once(&c, &db, &opts).await, summary(1, 0, 0));
    assert_eq!(c.read("p.conf").as_deref(), Some("right\n"));
}

#[tokio::test]
async fn resources_with_the_same_keys_share_one_fetch() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    for n in ["a", "b", "c", "d"] {
        c.resource(n, "app.tmpl", &["/app"], "");
    }
    c.resource("e", "app.tmpl", &["/app", "/other"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(5, 0, 0));
    assert_eq!(db.gets(), 2);
}

#[tokio::test]
async fn resources_without_keys_fetch_nothing() {
    let c = Confdir::new();
    c.template("plain.tmpl", "static\n");
    c.resource("plain", "plain.tmpl", &[], "");
    let db = MemDb::new(&[]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
    assert_eq!(db.gets(), 0);
}

/// The host may spawn these futures on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(
    r: &[confd_core::Resource],
    b: &confd_core::Backends,
    o: &confd_core::RunOptions,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(run_once(r, b, o));
    is_send(confd_core::run_interval(
        r,
        b,
        o,
        std::future::pending::<()>(),
    ));
    is_send(confd_core::run_watch(r, b, o, std::future::pending::<()>()));
}

#[tokio::test]
async fn two_hundred_resources_of_fifty_keys() {
    let c = Confdir::new();
    let mut values = Vec::new();
    for r in 0..200 {
        let mut tmpl = String::new();
        for k in 0..50 {
            values.push((format!("/svc{r}/key{k}"), format!("value-{r}-{k}")));
            tmpl.push_str(&format!("key{k} = {{{{getv \"/svc{r}/key{k}\"}}}}\n"));
        }
        c.template(&format!("t{r}.tmpl"), &tmpl);
        c.resource(
            &format!("r{r}.conf"),
            &format!("t{r}.tmpl"),
            &[&format!("/svc{r}")],
            "",
        );
    }
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let db = MemDb::new(&pairs);
    let opts = c.opts();
    let start = Instant::now();
    let resources = load_resources(&opts).expect("load");
    let loaded = start.elapsed();
    let s = run_once(&resources, &db.backends(), &opts).await;
    let total = start.elapsed();
    eprintln!("200x50: load {loaded:?}, load+first run {total:?}");
    assert_eq!(s, summary(200, 0, 0));
    assert_eq!(db.gets(), 200);
    let start = Instant::now();
    let s = run_once(&resources, &db.backends(), &opts).await;
    eprintln!("200x50: unchanged run {:?}", start.elapsed());
    assert_eq!(s, summary(0, 200, 0));
    assert_eq!(
        c.read("r7.conf").expect("written").lines().nth(3),
        Some("key3 = value-7-3")
    );
}

/// Unmounts a bind mount when the test ends, pass or fail.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn bind_mounted_dest_is_written_in_place() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let outside = c.dir.path().join("outside.conf");
    fs::write(&outside, "name=old\n").expect("source");
    fs::write(c.dest("app.conf"), "name=old\n").expect("dest");
    let mounted = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&outside)
        .arg(c.dest("app.conf"))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: bind mounts are not permitted here");
        return;
    }
    let _guard = Unmount(c.dest("app.conf"));
    let db = MemDb::new(&[("/app/name", "demo")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(1, 0, 0));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=demo\n"));
    assert_eq!(fs::read_to_string(&outside).expect("source"), "name=demo\n");
    assert_eq!(c.listing(), ["app.conf"], "the stage file is removed");
}

/// Regression (drop-in): the original confd cleans every key a backend returns as Go's
/// `path.Join` does, so data written with a trailing slash or `//` reads under the clean key and
/// `ls` gains no empty entry.
#[tokio::test]
async fn keys_from_the_store_are_cleaned_like_go() {
    let c = Confdir::new();
    for (name, text) in [
        (
            "go.tmpl",
            "{{getv \"/app/db\"}} {{getv \"/app/x\"}} {{getv \"/app/z/y\"}}\n{{range ls \"/app\"}}[{{.}}]{{end}}\n",
        ),
        (
            "jinja.j2",
            "{{ getv(\"/app/db\") }} {{ getv(\"/app/x\") }} {{ getv(\"/app/z/y\") }}\n{% for n in ls(\"/app\") %}[{{ n }}]{% endfor %}\n",
        ),
    ] {
        c.template(name, text);
        c.resource(name, name, &["/app"], "");
    }
    let db = MemDb::new(&[("/app/db/", "db"), ("/app//x", "x"), ("/app/z/./y", "y")]);
    assert_eq!(once(&c, &db, &c.opts()).await, summary(2, 0, 0));
    for name in ["go.tmpl", "jinja.j2"] {
        assert_eq!(
            c.read(name).as_deref(),
            Some("db x y\n[db][x][z]\n"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn output_format_refuses_output_that_does_not_parse_and_keeps_the_old_file() {
    let c = Confdir::new();
    c.template("app.json.tmpl", "{\"name\": {{getv \"/app/name\"}}}\n");
    c.resource(
        "app.json",
        "app.json.tmpl",
        &["/app"],
        "output_format = \"json\"",
    );
    fs::write(c.dest("app.json"), "{\"name\": \"previous\"}\n").expect("pre");
    // A bare word is not JSON: the template forgot the quotes.
    let db = MemDb::new(&[("/app/name", "s3cret")]);
    let resources = load_resources(&c.opts()).expect("resources load");
    assert_eq!(
        run_once(&resources, &db.backends(), &c.opts()).await,
        summary(0, 0, 1)
    );
    assert_eq!(
        c.read("app.json").as_deref(),
        Some("{\"name\": \"previous\"}\n")
    );
    assert_eq!(c.listing(), ["app.json"], "no stage file left");

    // The error carries the parser's line and column and never the rendered text.
    let store = confd_core::keys::store_values(
        &[("/app/name".to_string(), "s3cret".to_string())]
            .into_iter()
            .collect(),
        "/",
    );
    let err =
        confd_core::sync_resource(&resources[0], &confd_template::Store::new(store), &c.opts())
            .await
            .expect_err("not JSON");
    let text = err.to_string();
    assert!(
        text.contains("not valid JSON at line 1, column 10"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");

    // Quoted, it parses and replaces the file.
    c.template("app.json.tmpl", "{\"name\": \"{{getv \"/app/name\"}}\"}\n");
    let resources = load_resources(&c.opts()).expect("resources load");
    assert_eq!(
        run_once(&resources, &db.backends(), &c.opts()).await,
        summary(1, 0, 0)
    );
    assert_eq!(
        c.read("app.json").as_deref(),
        Some("{\"name\": \"s3cret\"}\n")
    );
}

#[tokio::test]
async fn preview_renders_every_resource_names_missing_keys_and_writes_nothing() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.template("db.tmpl", "host={{getv \"/db/host\"}}\n");
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    c.resource("db.conf", "db.tmpl", &["/db", "/db/extra"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    let resources = load_resources(&c.opts()).expect("resources load");
    let previews = confd_core::preview(&resources, &db.backends()).await;
    assert_eq!(previews.len(), 2);
    assert_eq!(previews[0].resource.dest(), c.dest("app.conf"));
    assert_eq!(
        previews[0].rendered.as_deref().expect("renders"),
        "name=demo\n"
    );
    assert!(previews[0].missing.is_empty());
    assert_eq!(previews[1].missing, ["/db", "/db/extra"]);
    let err = previews[1]
        .rendered
        .as_ref()
        .expect_err("getv of a missing key");
    assert!(err.to_string().contains("/db/host"), "{err}");
    assert!(c.listing().is_empty(), "nothing written: {:?}", c.listing());
}

/// conf.d/<name>.toml writing `dest` as given.
fn resource_at(c: &Confdir, name: &str, src: &str, dest: &std::path::Path, extra: &str) {
    fs::write(
        c.dir.path().join("conf.d").join(format!("{name}.toml")),
        format!(
            "[template]\nsrc = {src:?}\ndest = {:?}\nkeys = [\"/app\"]\n{extra}\n",
            dest.display().to_string()
        ),
    )
    .expect("resource");
}

#[tokio::test]
async fn a_missing_dest_directory_fails_that_resource_only_until_it_appears() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "");
    let later = c.out().join("later");
    resource_at(&c, "later", "app.tmpl", &later.join("app.conf"), "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("a missing directory is no load error");
    let first = run_once(&resources, &db.backends(), &opts).await;
    assert_eq!(first, summary(1, 0, 1));
    assert_eq!(c.read("app.conf").as_deref(), Some("name=demo\n"));
    assert!(!later.exists(), "the directory is not created");
    fs::create_dir(&later).expect("mkdir");
    let second = run_once(&resources, &db.backends(), &opts).await;
    assert_eq!(second, summary(1, 1, 0));
    assert_eq!(
        fs::read_to_string(later.join("app.conf")).ok().as_deref(),
        Some("name=demo\n")
    );
}

#[tokio::test]
async fn fail_fast_starts_no_further_resource_after_a_failure() {
    let c = Confdir::new();
    c.template("bad.tmpl", "{{getv \"/app/missing\"}}\n");
    c.template("app.tmpl", APP);
    // One group (same keys), members in file order: the failing one first.
    c.resource("a-bad", "bad.tmpl", &["/app"], "");
    c.resource("b-good", "app.tmpl", &["/app"], "");
    let db = MemDb::new(&[("/app/name", "demo")]);
    let mut opts = c.opts();
    opts.failure_mode = confd_core::FailureMode::FailFast;
    assert_eq!(once(&c, &db, &opts).await, summary(0, 0, 1));
    assert_eq!(c.read("b-good"), None, "fail-fast stopped the pass");
    opts.failure_mode = confd_core::FailureMode::BestEffort;
    assert_eq!(once(&c, &db, &opts).await, summary(1, 0, 1));
    assert_eq!(c.read("b-good").as_deref(), Some("name=demo\n"));
}

#[tokio::test]
async fn min_reload_interval_defers_the_reload_but_never_the_write() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    let log = c.dir.path().join("reloads.log");
    c.resource(
        "app.conf",
        "app.tmpl",
        &["/app"],
        &format!(
            "reload_cmd = \"echo reload >> {}\"\nmin_reload_interval = \"1h\"",
            log.display()
        ),
    );
    let db = MemDb::new(&[("/app/name", "v1")]);
    let opts = c.opts();
    let resources = load_resources(&opts).expect("load");
    assert_eq!(
        resources[0].min_reload_interval(),
        Duration::from_secs(3600)
    );
    assert_eq!(
        run_once(&resources, &db.backends(), &opts).await,
        summary(1, 0, 0)
    );
    db.set("/app/name", "v2");
    assert_eq!(
        run_once(&resources, &db.backends(), &opts).await,
        summary(1, 0, 0)
    );
    assert_eq!(c.read("app.conf").as_deref(), Some("name=v2\n"), "written");
    let reloads = fs::read_to_string(&log).expect("reload log");
    assert_eq!(
        reloads.lines().count(),
        1,
        "the second reload waits an hour"
    );
}

#[tokio::test]
async fn bad_reload_limits_are_load_errors_naming_the_key() {
    let c = Confdir::new();
    c.template("app.tmpl", APP);
    c.resource("app.conf", "app.tmpl", &["/app"], "debounce = \"soon\"");
    let err = load_resources(&c.opts()).expect_err("bad duration");
    let text = err.to_string();
    assert!(text.contains("debounce") && text.contains(":5:"), "{text}");
}
