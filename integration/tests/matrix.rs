//! The end-to-end matrix: every backend (env, file, etcd, redis, consul emulator, zookeeper, vault
//! emulator; and the AWS ones, one-shot only as they cannot watch: ssm, secretsmanager, dynamodb on
//! moto, imds on its emulator) x (builtin, external plugin) x (one-shot, watch) renders
//! `integration/matrix/confdir` and must produce `integration/matrix/expect` byte for byte; watch
//! cells change values in a burst and check the new content, one reload per burst, and a clean
//! SIGTERM exit with no plugin left behind.

mod e2e;

use std::time::Duration;

use e2e::{Confd, Run, Store, Via};
use nix::sys::signal::Signal;

/// How long a render may take to show up; generous for a loaded 2-core CI machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// The debounce given to confd: bursts below are far shorter, so each must coalesce.
const DEBOUNCE: &str = "300ms";

fn one_shot(backend: &str, via: Via) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(mut store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    store.put_all(&e2e::matrix_data());
    let output = run
        .command(&e2e::isolated_confd(), &store, via)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "confd failed:\n{stderr}");
    let (expected, modes) = e2e::matrix_expected();
    assert_eq!(
        as_text(&run.outputs()),
        as_text(&expected),
        "outputs differ from matrix/expect; stderr:\n{stderr}"
    );
    for (name, mode) in modes {
        assert_eq!(e2e::mode(&run.out().join(&name)), mode, "mode of {name}");
    }
    let reloads = run.reloads();
    assert_eq!(
        reloads.values().sum::<usize>(),
        4,
        "every resource reloads once on its first render: {reloads:?}"
    );
    // Nothing changed in the store: a second run writes nothing and reloads nothing.
    let again = run
        .command(&e2e::isolated_confd(), &store, via)
        .arg("--onetime")
        .output()
        .expect("run confd again");
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(run.reloads(), reloads, "an unchanged run must not reload");
}

fn as_text(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> std::collections::BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn watch(backend: &str, via: Via) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(mut store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    store.put_all(&e2e::matrix_data());
    let mut cmd = run.command(&e2e::isolated_confd(), &store, via);
    cmd.args(["--watch", "--debounce", DEBOUNCE, "--log-level", "debug"]);
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));

    // The initial render: everything as expected, every resource reloaded once.
    let (expected, _) = e2e::matrix_expected();
    let first = e2e::wait_for(DEADLINE, || {
        run.outputs() == expected && run.reloads().values().sum::<usize>() == 4
    });
    assert!(
        first,
        "initial render did not match within {DEADLINE:?}: {:?} {:?}\nstderr:\n{}",
        as_text(&run.outputs()),
        run.reloads(),
        confd.stderr()
    );

    // A burst: several puts to two keys of one prefix. Only the last values count.
    let burst: Vec<(String, String)> = [
        ("/matrix/database/port", "6001"),
        ("/matrix/database/user", "ops"),
        ("/matrix/database/port", "6002"),
        ("/matrix/database/port", "6003"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    store.put_all(&burst);
    let want = String::from_utf8(expected["app.conf"].clone())
        .expect("utf-8")
        .replace("port = 5432", "port = 6003")
        .replace("user = APP", "user = OPS");
    let changed = e2e::wait_for(DEADLINE, || {
        let out = run.outputs();
        ["app.conf", "app-jinja.conf"].iter().all(|name| {
            out.get(*name)
                .is_some_and(|c| c.as_slice() == want.as_bytes())
        })
    });
    assert!(
        changed,
        "the burst was not rendered within {DEADLINE:?}: {:?}\nstderr:\n{}",
        as_text(&run.outputs()),
        confd.stderr()
    );
    // Let any extra (wrong) render of the same burst happen before counting.
    std::thread::sleep(Duration::from_millis(1200));
    let reloads = run.reloads();
    let count = |name: &str| reloads.get(name).copied().unwrap_or(0);
    // The debounce is leading-edge: the first put of the burst renders at once and the rest
    // coalesce into one trailing render, so a burst reloads a changed resource once or twice
    // (once when the whole burst was in before the first render read the store), never per put.
    let burst_reloads = |name: &str| count(name).saturating_sub(1);
    assert!(
        (1..=2).contains(&burst_reloads("app"))
            && (1..=2).contains(&burst_reloads("app-jinja"))
            && (count("upstream"), count("features")) == (1, 1),
        "reload_cmd must run at most twice per burst (leading and trailing edge), and only for changed resources: {reloads:?}\nstderr:\n{}",
        confd.stderr()
    );
    assert_eq!(run.outputs()["upstream.conf"], expected["upstream.conf"]);

    // SIGTERM: exit 0, and the plugin process goes with confd.
    let plugins = confd.plugin_pids();
    assert!(
        !plugins.is_empty(),
        "confd {} has no plugin child process",
        confd.pid()
    );
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "confd did not exit 0 on SIGTERM ({status:?})\nstderr:\n{}",
        confd.stderr()
    );
    let gone = e2e::wait_for(Duration::from_secs(2), || {
        plugins.iter().all(|pid| !e2e::is_alive(*pid))
    });
    assert!(
        gone,
        "plugin processes {plugins:?} outlived confd: {:?}",
        plugins.iter().map(|p| e2e::cmdline(*p)).collect::<Vec<_>>()
    );
}

/// env and vault have nothing to watch: `--watch` is refused up front with a clear message and
/// exit 2 when no backend of the run can watch.
fn watch_refused(backend: &str, via: Via) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(mut store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    store.put_all(&e2e::matrix_data());
    let mut cmd = run.command(&e2e::isolated_confd(), &store, via);
    cmd.arg("--watch");
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let status = confd.wait_timeout(DEADLINE);
    let stderr = confd.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot watch") && stderr.contains(backend),
        "the refusal must say that the {backend} backend cannot watch:\n{stderr}"
    );
}

macro_rules! cells {
    ($($backend:ident),*) => {
        mod one_shot {
            $(
                mod $backend {
                    #[test]
                    fn builtin() {
                        super::super::one_shot(stringify!($backend), super::super::Via::Builtin);
                    }
                    #[test]
                    fn external() {
                        super::super::one_shot(stringify!($backend), super::super::Via::External);
                    }
                }
            )*
        }
    };
}

cells!(
    env,
    file,
    etcd,
    redis,
    consul,
    zookeeper,
    vault,
    ssm,
    secretsmanager,
    dynamodb,
    imds
);

mod watch {
    use super::{Via, watch, watch_refused};

    #[test]
    fn env_builtin_is_refused() {
        watch_refused("env", Via::Builtin);
    }
    #[test]
    fn env_external_is_refused() {
        watch_refused("env", Via::External);
    }
    #[test]
    fn vault_builtin_is_refused() {
        watch_refused("vault", Via::Builtin);
    }
    #[test]
    fn vault_external_is_refused() {
        watch_refused("vault", Via::External);
    }
    #[test]
    fn file_builtin() {
        watch("file", Via::Builtin);
    }
    #[test]
    fn file_external() {
        watch("file", Via::External);
    }
    #[test]
    fn etcd_builtin() {
        watch("etcd", Via::Builtin);
    }
    #[test]
    fn etcd_external() {
        watch("etcd", Via::External);
    }
    #[test]
    fn redis_builtin() {
        watch("redis", Via::Builtin);
    }
    #[test]
    fn redis_external() {
        watch("redis", Via::External);
    }
    #[test]
    fn consul_builtin() {
        watch("consul", Via::Builtin);
    }
    #[test]
    fn consul_external() {
        watch("consul", Via::External);
    }
    #[test]
    fn zookeeper_builtin() {
        watch("zookeeper", Via::Builtin);
    }
    #[test]
    fn zookeeper_external() {
        watch("zookeeper", Via::External);
    }
}
