//! `make bench`: one `confd --onetime` run over 200 resources x 50 keys, env and file backends,
//! Go and Jinja templates, builtin plugin start included. Reports the median wall time and the
//! peak resident memory of host and plugin, as ratios against baselines measured in the same
//! invocation (a bare process spawn, `cat` of the 200 templates, and Jinja for the Go engine).

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
    let confd = e2e::isolated_confd();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = data();
    write_confdir(dir.path(), "go");
    write_confdir(dir.path(), "jinja");
    let json = dir.path().join("data.json");
    write_json(&json, &data);
    let env: Vec<(String, String)> = data
        .iter()
        .map(|(k, v)| (e2e::env_name(k), v.clone()))
        .collect();

    // Baselines: the cost of any process at all, and of reading the same templates.
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

    let mut rows = Vec::new();
    for backend in ["env", "file"] {
        let mut engine_times = BTreeMap::new();
        for engine in ["go", "jinja"] {
            let confdir = dir.path().join(engine);
            let out = confdir.join("out");
            let command = || {
                let mut c = Command::new(&confd);
                c.env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .arg("--onetime")
                    .arg("--confdir")
                    .arg(&confdir)
                    .args(["--backend", backend, "--log-level", "error"]);
                if backend == "file" {
                    c.arg("--file").arg(&json);
                } else {
                    c.envs(env.iter().map(|(k, v)| (k, v)));
                }
                c
            };
            // Fresh: every destination is written (the first run on a host).
            let fresh = median(runs, || {
                reset(&out);
                time(command())
            });
            check_outputs(&out);
            // Unchanged: everything rendered and compared, nothing written.
            let unchanged = median(runs, || time(command()));
            let (host, plugin) = peak_rss(|| {
                reset(&out);
                command()
            });
            let union = peak_union(|| {
                reset(&out);
                command()
            });
            engine_times.insert(engine, fresh);
            rows.push(Row {
                backend,
                engine,
                fresh,
                unchanged,
                host_kib: host,
                plugin_kib: plugin,
                union_kib: union,
            });
        }
        compare_engines(dir.path(), backend);
        println!(
            "engines   {backend}: Go / Jinja wall time = {:.2}x (target <= 1.5x)",
            engine_times["go"].as_secs_f64() / engine_times["jinja"].as_secs_f64()
        );
    }

    println!(
        "\none-shot, {RESOURCES} resources x {KEYS} keys, builtin backend, median of {runs} runs"
    );
    println!(
        "{:<6} {:<6} {:>10} {:>9} {:>9} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "store",
        "engine",
        "fresh",
        "x spawn",
        "x cat",
        "unchanged",
        "host RSS",
        "plugin RSS",
        "total RSS",
        "pair once"
    );
    for r in &rows {
        let total = r.host_kib + r.plugin_kib;
        println!(
            "{:<6} {:<6} {:>10} {:>8.1}x {:>8.1}x {:>11} {:>7.1} MB {:>7.1} MB {:>7.1} MB {:>10}{}",
            r.backend,
            r.engine,
            ms(r.fresh),
            r.fresh.as_secs_f64() / spawn.as_secs_f64(),
            r.fresh.as_secs_f64() / cat.as_secs_f64(),
            ms(r.unchanged),
            r.host_kib as f64 / 1024.0,
            r.plugin_kib as f64 / 1024.0,
            total as f64 / 1024.0,
            r.union_kib
                .map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".to_string()),
            verdict(r.fresh, total)
        );
    }
    println!("targets: < 150 ms wall, < 20 MB peak RSS (host + plugin)");
    println!(
        "total RSS adds the two VmHWM peaks, so pages both processes map (the confd binary, libc) \
         count twice; pair once counts each resident page of the two once (page frames from \
         /proc/PID/pagemap, sampled; needs root, else n/a)"
    );
}

struct Row {
    backend: &'static str,
    engine: &'static str,
    fresh: Duration,
    unchanged: Duration,
    host_kib: u64,
    plugin_kib: u64,
    /// Peak of the pair's resident pages counted once (None: page frames not readable).
    union_kib: Option<u64>,
}

fn verdict(wall: Duration, rss_kib: u64) -> &'static str {
    if wall < Duration::from_millis(150) && rss_kib < 20 * 1024 {
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

fn write_confdir(root: &Path, engine: &str) {
    let confdir = root.join(engine);
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
    for r in 0..RESOURCES {
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

/// confd's plugin child, once it has started.
fn plugin_of(pid: u32) -> Option<u32> {
    e2e::children_of(pid).into_iter().find(|p| {
        let cmd = e2e::cmdline(*p);
        cmd.contains("internal-plugin") || cmd.contains("confd-database-")
    })
}

/// Peak RSS (KiB) of confd and of its plugin child over one run, the largest of 3 runs. Both
/// are read from `/proc/<pid>/status` VmHWM while the processes run (VmHWM only grows, so the
/// last reading before exit is the peak up to then); the two peaks are added, an upper bound
/// of what they held together.
fn peak_rss(mut command: impl FnMut() -> Command) -> (u64, u64) {
    let mut best = (0, 0);
    for _ in 0..3 {
        let mut child = command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn confd");
        let pid = child.id();
        let (mut host, mut plugin, mut plugin_pid) = (0, 0, None);
        loop {
            if let Some(kib) = e2e::vm_hwm_kib(pid) {
                host = host.max(kib);
            }
            if plugin_pid.is_none() {
                plugin_pid = plugin_of(pid);
            }
            if let Some(p) = plugin_pid.and_then(e2e::vm_hwm_kib) {
                plugin = plugin.max(p);
            }
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        assert!(plugin_pid.is_some(), "never saw confd's plugin process");
        if host + plugin > best.0 + best.1 {
            best = (host, plugin);
        }
    }
    best
}

/// Peak number of distinct resident pages (KiB) of confd and its plugin together over one run,
/// the largest of 3 runs; sampled, so a slight underestimate of the true peak. None when the
/// page frame numbers are hidden (not root).
fn peak_union(mut command: impl FnMut() -> Command) -> Option<u64> {
    let mut best = 0;
    for _ in 0..3 {
        let mut child = command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn confd");
        let pid = child.id();
        let mut plugin_pid = None;
        loop {
            if plugin_pid.is_none() {
                plugin_pid = plugin_of(pid);
            }
            let Some(mut frames) = resident_frames(pid) else {
                // Page frames hidden (not root): let the run finish, report n/a.
                child.wait().expect("wait for confd");
                return None;
            };
            if let Some(p) = plugin_pid {
                frames.extend(resident_frames(p).unwrap_or_default());
            }
            best = best.max(frames.len() as u64 * 4);
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
        }
    }
    Some(best)
}

/// Page frame numbers of `pid`'s resident pages (empty once it exited); None when they read as
/// 0 (not root).
fn resident_frames(pid: u32) -> Option<std::collections::HashSet<u64>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut frames = std::collections::HashSet::new();
    // A process that has just exited has no pages left: an empty set, not "hidden".
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Some(frames);
    };
    let Ok(mut pagemap) = std::fs::File::open(format!("/proc/{pid}/pagemap")) else {
        return Some(frames);
    };
    let mut present = 0usize;
    let mut buf = Vec::new();
    for line in maps.lines() {
        if line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
        else {
            continue;
        };
        let pages = ((end - start) / 4096) as usize;
        buf.resize(pages * 8, 0);
        if pagemap.seek(SeekFrom::Start(start / 4096 * 8)).is_err()
            || pagemap.read_exact(&mut buf).is_err()
        {
            continue;
        }
        for entry in buf.chunks_exact(8) {
            let v = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if v >> 63 == 1 {
                present += 1;
                let frame = v & ((1 << 55) - 1);
                if frame != 0 {
                    frames.insert(frame);
                }
            }
        }
    }
    (present == 0 || !frames.is_empty()).then_some(frames)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
