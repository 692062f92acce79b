//! `make bench`: one `confd --onetime` run over 200 resources x 50 keys, env and file backends,
//! Go and Jinja templates, builtin plugin start included. Reports the median wall time and the
//! peak memory of host and plugin together (their PSS, what the machine spends on the pair), as
//! ratios against baselines measured in the same invocation: a bare process spawn, `cat` of the
//! 200 templates, Jinja for the Go engine and, given `CONFD_BENCH_BASELINE`, other confd
//! binaries (an A/B of a change: build both, name the old one there).

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RESOURCES: usize = 200;
const KEYS: usize = 50;

fn main() {
    let runs: usize = std::env::var("CONFD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let dir = tempfile::tempdir().expect("temp dir");
    let builds = builds(dir.path());
    let data = data();
    write_confdir(dir.path(), "go", RESOURCES);
    write_confdir(dir.path(), "jinja", RESOURCES);
    write_confdir(dir.path(), "idle", 1);
    let json = dir.path().join("data.json");
    write_json(&json, &data);
    let env: Vec<(String, String)> = data
        .iter()
        .map(|(k, v)| (e2e::env_name(k), v.clone()))
        .collect();

    // Baselines: the cost of any process at all, of reading the same templates, and the memory
    // of a run with one resource (the binary and runtimes, before any data).
    let spawn = median(runs, || time(Command::new("/bin/true")));
    let templates: Vec<PathBuf> = (0..RESOURCES)
        .map(|i| {
            dir.path()
                .join("go/templates")
                .join(format!("r{i:03}.tmpl"))
        })
        .collect();
    let cat = median(runs, || {
        let mut c = Command::new("cat");
        c.args(&templates);
        time(c)
    });
    println!("baseline  spawn /bin/true: {}", ms(spawn));
    println!("baseline  cat of {RESOURCES} templates: {}", ms(cat));
    for build in &builds {
        reset(&dir.path().join("idle/out"));
        let idle = peak_pss(&mut || {
            let mut c = confd_command(&build.confd, &dir.path().join("idle"), "env", &json);
            c.envs(env.iter().take(KEYS).map(|(k, v)| (k, v)));
            c
        });
        println!(
            "baseline  PSS of a one-resource env run ({}): {}",
            build.label,
            mib(idle.pair)
        );
    }

    let mut rows = Vec::new();
    for backend in ["env", "file"] {
        let mut engine_times = BTreeMap::new();
        for engine in ["go", "jinja"] {
            let confdir = dir.path().join(engine);
            let out = confdir.join("out");
            let command = |confd: &Path| {
                let mut c = confd_command(confd, &confdir, backend, &json);
                if backend == "env" {
                    c.envs(env.iter().map(|(k, v)| (k, v)));
                }
                c
            };
            // Fresh: every destination is written (the first run on a host).
            let fresh = interleaved(runs, &builds, |b| {
                reset(&out);
                time(command(&b.confd))
            });
            check_outputs(&out);
            // Unchanged: everything rendered and compared, nothing written.
            let unchanged = interleaved(runs, &builds, |b| time(command(&b.confd)));
            let mut pss: Vec<Pss> = vec![Pss::default(); builds.len()];
            for _ in 0..PSS_RUNS {
                for (i, build) in builds.iter().enumerate() {
                    let run = peak_pss(&mut || {
                        reset(&out);
                        command(&build.confd)
                    });
                    if run.pair > pss[i].pair {
                        pss[i] = run;
                    }
                }
            }
            for (i, build) in builds.iter().enumerate() {
                if i + 1 == builds.len() {
                    engine_times.insert(engine, fresh[i]);
                }
                rows.push(Row {
                    backend,
                    engine,
                    build: build.label.clone(),
                    fresh: fresh[i],
                    unchanged: unchanged[i],
                    pss: pss[i],
                    base: (builds.len() > 1).then(|| (fresh[0], pss[0].pair)),
                });
            }
        }
        compare_engines(dir.path(), backend);
        println!(
            "engines   {backend}: Go / Jinja wall time = {:.2}x (target <= 1.5x)",
            engine_times["go"].as_secs_f64() / engine_times["jinja"].as_secs_f64()
        );
    }

    println!(
        "\none-shot, {RESOURCES} resources x {KEYS} keys, builtin backend, wall: median of {runs} \
         runs, PSS: peak of {PSS_RUNS} runs"
    );
    let with_base = builds.len() > 1;
    print!(
        "{:<6} {:<6} {:<10} {:>10} {:>8} {:>7} {:>10} {:>9} {:>10} {:>9}",
        "store",
        "engine",
        "build",
        "fresh",
        "x spawn",
        "x cat",
        "unchanged",
        "host PSS",
        "plugin PSS",
        "pair PSS"
    );
    if with_base {
        print!(
            " {:>9} {:>9}",
            format!("wall x {}", builds[0].label),
            format!("PSS x {}", builds[0].label)
        );
    }
    println!();
    for r in &rows {
        print!(
            "{:<6} {:<6} {:<10} {:>10} {:>7.1}x {:>6.1}x {:>10} {:>9} {:>10} {:>9}",
            r.backend,
            r.engine,
            r.build,
            ms(r.fresh),
            r.fresh.as_secs_f64() / spawn.as_secs_f64(),
            r.fresh.as_secs_f64() / cat.as_secs_f64(),
            ms(r.unchanged),
            mib(r.pss.host),
            mib(r.pss.plugins),
            mib(r.pss.pair),
        );
        if let Some((wall, pss)) = r.base {
            print!(
                " {:>8.2}x {:>8.2}x",
                r.fresh.as_secs_f64() / wall.as_secs_f64(),
                r.pss.pair as f64 / pss as f64
            );
        }
        println!("{}", verdict(r.fresh, r.pss.pair));
    }
    println!("targets: < 150 ms wall, < 16 MiB PSS of host + plugin at the peak");
    println!(
        "PSS (proportional set size, /proc/PID/smaps_rollup) splits each shared page among the \
         processes that map it, so the pages of the confd binary that host and plugin both map \
         count once for the pair; sampled continuously, the peak of the sum host + plugins \
         (host and plugin columns: their shares at that moment)"
    );
}

/// Runs per build for the PSS peak: the peak barely varies, a sampled one only downwards.
const PSS_RUNS: usize = 3;

/// A confd binary to measure; with more than one, the first is the baseline of the ratios.
struct Build {
    label: String,
    confd: PathBuf,
}

/// This build's confd, after the baselines named in `CONFD_BENCH_BASELINE`
/// (`label=path[,label=path...]`, other confd binaries measured side by side in this
/// invocation). `CONFD_BENCH_CONFD` replaces this build by a given binary (no cargo build).
/// Every binary runs alone in its own directory, so the builtins run as `confd internal-plugin`.
fn builds(dir: &Path) -> Vec<Build> {
    let mut builds = Vec::new();
    let spec = std::env::var("CONFD_BENCH_BASELINE").unwrap_or_default();
    let mut named: Vec<(String, PathBuf)> = spec
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (label, path) = s
                .split_once('=')
                .unwrap_or_else(|| panic!("CONFD_BENCH_BASELINE: {s:?} is not label=path"));
            (label.to_string(), PathBuf::from(path))
        })
        .collect();
    let this = match std::env::var_os("CONFD_BENCH_CONFD") {
        Some(path) => PathBuf::from(path),
        None => e2e::isolated_confd(),
    };
    named.push(("this".to_string(), this));
    for (label, path) in named {
        let alone = dir.join("builds").join(&label);
        std::fs::create_dir_all(&alone).expect("mkdir build dir");
        let confd = alone.join("confd");
        std::fs::copy(&path, &confd)
            .unwrap_or_else(|e| panic!("copy {} for {label}: {e}", path.display()));
        builds.push(Build { label, confd });
    }
    builds
}

fn confd_command(confd: &Path, confdir: &Path, backend: &str, json: &Path) -> Command {
    let mut c = Command::new(confd);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("--onetime")
        .arg("--confdir")
        .arg(confdir)
        .args(["--backend", backend, "--log-level", "error"]);
    if backend == "file" {
        c.arg("--file").arg(json);
    }
    c
}

/// The median time of each build, runs alternating between the builds so that a slower
/// moment of the shared machine falls on all of them alike.
fn interleaved(
    runs: usize,
    builds: &[Build],
    mut f: impl FnMut(&Build) -> Duration,
) -> Vec<Duration> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); builds.len()];
    for build in builds {
        let _warm_up = f(build);
    }
    for _ in 0..runs {
        for (i, build) in builds.iter().enumerate() {
            times[i].push(f(build));
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

struct Row {
    backend: &'static str,
    engine: &'static str,
    build: String,
    fresh: Duration,
    unchanged: Duration,
    pss: Pss,
    /// The baseline build's fresh wall time and pair PSS, when there is one.
    base: Option<(Duration, u64)>,
}

fn verdict(wall: Duration, pss_kib: u64) -> &'static str {
    if wall < Duration::from_millis(150) && pss_kib < 16 * 1024 {
        "  ok"
    } else {
        "  MISSES TARGET"
    }
}

/// 200 prefixes `/bench/rNNN`, each with `name` and 49 `kNN` keys (fixed widths, so no env
/// variable name is a prefix of another's).
fn data() -> Vec<(String, String)> {
    let mut data = Vec::new();
    for r in 0..RESOURCES {
        data.push((format!("/bench/r{r:03}/name"), format!("resource-{r}")));
        for k in 0..KEYS - 1 {
            data.push((format!("/bench/r{r:03}/k{k:02}"), format!("value-{r}-{k}")));
        }
    }
    data
}

fn write_confdir(root: &Path, name: &str, resources: usize) {
    let engine = if name == "jinja" { "jinja" } else { "go" };
    let confdir = root.join(name);
    std::fs::create_dir_all(confdir.join("conf.d")).expect("mkdir");
    std::fs::create_dir_all(confdir.join("templates")).expect("mkdir");
    let (ext, body) = if engine == "go" {
        (
            "tmpl",
            "# {{getv \"/name\"}}\n{{range gets \"/k*\"}}{{base .Key}} = {{.Value}}\n{{end}}",
        )
    } else {
        (
            "j2",
            "# {{ getv(\"/name\") }}\n{% for kv in gets(\"/k*\") %}{{ base(kv.key) }} = {{ kv.value }}\n{% endfor %}",
        )
    };
    for r in 0..resources {
        std::fs::write(
            confdir.join("templates").join(format!("r{r:03}.{ext}")),
            body,
        )
        .expect("write template");
        std::fs::write(
            confdir.join("conf.d").join(format!("r{r:03}.toml")),
            format!(
                "[template]\nsrc = \"r{r:03}.{ext}\"\ndest = \"{}/r{r:03}.conf\"\nprefix = \"/bench/r{r:03}\"\nkeys = [\"/\"]\n",
                confdir.join("out").display()
            ),
        )
        .expect("write resource");
    }
}

fn write_json(path: &Path, data: &[(String, String)]) {
    let mut resources = serde_json::Map::new();
    for (key, value) in data {
        let mut parts = key.trim_start_matches("/bench/").split('/');
        let (r, k) = (parts.next().expect("resource"), parts.next().expect("key"));
        resources
            .entry(r.to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()))
            .as_object_mut()
            .expect("object")
            .insert(k.to_string(), serde_json::Value::String(value.clone()));
    }
    let mut root = serde_json::Map::new();
    root.insert("bench".into(), serde_json::Value::Object(resources));
    std::fs::write(path, serde_json::Value::Object(root).to_string()).expect("write data.json");
}

fn reset(out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("mkdir out");
}

/// Every destination exists with its 50 lines; a bench of wrong output measures nothing.
fn check_outputs(out: &Path) {
    for r in [0, RESOURCES / 2, RESOURCES - 1] {
        let text = std::fs::read_to_string(out.join(format!("r{r:03}.conf")))
            .unwrap_or_else(|e| panic!("r{r:03}.conf was not rendered: {e}"));
        assert_eq!(text.lines().count(), KEYS, "r{r:03}.conf:\n{text}");
        assert!(text.starts_with(&format!("# resource-{r}\n")), "{text}");
        assert!(text.contains(&format!("k48 = value-{r}-48\n")), "{text}");
    }
    let count = std::fs::read_dir(out).expect("read out").count();
    assert_eq!(count, RESOURCES, "destinations in {}", out.display());
}

/// Go and Jinja render the same bytes for the same data.
fn compare_engines(root: &Path, backend: &str) {
    for r in 0..RESOURCES {
        let name = format!("r{r:03}.conf");
        let go = std::fs::read(root.join("go/out").join(&name)).expect("go output");
        let jinja = std::fs::read(root.join("jinja/out").join(&name)).expect("jinja output");
        assert_eq!(go, jinja, "{backend}: {name} differs between the engines");
    }
}

fn time(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    took
}

fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let _warm_up = f();
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    times[times.len() / 2]
}

/// Proportional set sizes (KiB) at the moment the pair's sum peaked.
#[derive(Debug, Clone, Copy, Default)]
struct Pss {
    host: u64,
    plugins: u64,
    pair: u64,
}

/// Samples the PSS of confd and of every child it starts, back to back for the whole run, and
/// returns the sample where their sum was largest. The sum stays right across the plugin's
/// fork (the copy's pages are split between the two), and a page both map after the exec
/// counts half in each.
fn peak_pss(command: &mut dyn FnMut() -> Command) -> Pss {
    let mut child = command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn confd");
    let pid = child.id();
    let mut children: Vec<u32> = Vec::new();
    let mut last_scan = Instant::now();
    let mut peak = Pss::default();
    let mut saw_plugin = false;
    loop {
        // Listing children scans all of /proc: every few milliseconds, not at every sample.
        if children.is_empty() || last_scan.elapsed() > Duration::from_millis(5) {
            for p in e2e::children_of(pid) {
                if !children.contains(&p) {
                    children.push(p);
                }
            }
            last_scan = Instant::now();
        }
        let host = pss_kib(pid).unwrap_or(0);
        let plugins: u64 = children.iter().filter_map(|p| pss_kib(*p)).sum();
        saw_plugin |= plugins > 0;
        if host + plugins > peak.pair {
            peak = Pss {
                host,
                plugins,
                pair: host + plugins,
            };
        }
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
    }
    assert!(saw_plugin, "never saw confd's plugin process");
    peak
}

/// `Pss:` of `/proc/<pid>/smaps_rollup` in KiB; None once the process is gone.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
