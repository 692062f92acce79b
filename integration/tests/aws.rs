//! The AWS backends through the confd binary (issue 16), beyond the one-shot matrix cells:
//! `--interval` picks up a changed value, `--watch` is refused up front, a missing key fails its
//! resource naming the key, credentials AWS refuses fail the run with the reason, and the
//! endpoint comes from `AWS_ENDPOINT_URL` when `--node` is not given.

mod e2e;

use std::time::Duration;

use confd_test_support::{MOTO_REGION, MotoOptions, MotoServer};
use e2e::{Confd, Run, Store, Via};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(20);

/// `--interval 1`: the first render, then a changed value rendered by a later round.
fn interval(backend: &str) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(mut store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    store.put_all(&e2e::matrix_data());
    let mut cmd = run.command(&e2e::isolated_confd(), &store, Via::Builtin);
    cmd.args(["--interval", "1"]);
    if backend == "imds" {
        // The metadata cache would hide the change for a minute.
        cmd.args(["--plugin-config", "cacheTtl=0s"]);
    }
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let (expected, _) = e2e::matrix_expected();
    let first = e2e::wait_for(DEADLINE, || run.outputs() == expected);
    assert!(
        first,
        "{backend}: the first render did not match within {DEADLINE:?}\nstderr:\n{}",
        confd.stderr()
    );
    store.put_all(&[("/matrix/database/port".to_string(), "6100".to_string())]);
    let changed = e2e::wait_for(DEADLINE, || {
        run.outputs()
            .get("app.conf")
            .is_some_and(|c| String::from_utf8_lossy(c).contains("port = 6100"))
    });
    assert!(
        changed,
        "{backend}: the changed port was not rendered within {DEADLINE:?}\nstderr:\n{}",
        confd.stderr()
    );
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{backend}: no clean exit on SIGTERM\nstderr:\n{}",
        confd.stderr()
    );
}

/// `--watch` with a backend that cannot watch: exit 2 before anything runs, saying why.
fn watch_refused(backend: &str) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    let mut cmd = run.command(&e2e::isolated_confd(), &store, Via::Builtin);
    cmd.arg("--watch");
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    let status = confd.wait_timeout(DEADLINE);
    let stderr = confd.stderr();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "{backend}: {stderr}"
    );
    assert!(
        stderr.contains("cannot watch") && stderr.contains(backend),
        "{backend}: the refusal must say the backend cannot watch:\n{stderr}"
    );
}

/// An empty store: `--onetime` fails the resource that needs `/database/host` (exit 1), naming
/// the key, and leaves its destination unwritten.
fn missing_key(backend: &str) {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(store) = Store::start(backend, &run.store_dir()) else {
        return;
    };
    let output = run
        .command(&e2e::isolated_confd(), &store, Via::Builtin)
        .arg("--onetime")
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{backend}: {stderr}");
    assert!(
        stderr.contains("/database/host"),
        "{backend}: the error must name the missing key:\n{stderr}"
    );
    assert!(
        !run.outputs().contains_key("app.conf"),
        "{backend}: the failed resource writes nothing"
    );
}

mod interval {
    #[test]
    fn ssm() {
        super::interval("ssm");
    }
    #[test]
    fn secretsmanager() {
        super::interval("secretsmanager");
    }
    #[test]
    fn dynamodb() {
        super::interval("dynamodb");
    }
    #[test]
    fn imds() {
        super::interval("imds");
    }
}

mod watch_refused {
    #[test]
    fn ssm() {
        super::watch_refused("ssm");
    }
    #[test]
    fn imds() {
        super::watch_refused("imds");
    }
}

mod missing_key {
    #[test]
    fn ssm() {
        super::missing_key("ssm");
    }
    #[test]
    fn secretsmanager() {
        super::missing_key("secretsmanager");
    }
    #[test]
    fn dynamodb() {
        super::missing_key("dynamodb");
    }
}

/// Credentials AWS does not know: the run fails (exit 1) and says that access was refused.
#[test]
fn unknown_credentials_fail_the_run_with_the_reason() {
    let Some(moto) = MotoServer::start_with(MotoOptions { iam: true }) else {
        return;
    };
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let output = std::process::Command::new(e2e::isolated_confd())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_REGION", MOTO_REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIDNOSUCHKEY0000000")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .current_dir(run.cwd())
        .arg("--confdir")
        .arg(run.confdir())
        .args(["--backend", "ssm", "--node", &moto.endpoint(), "--onetime"])
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("/matrix"),
        "the error must say access was refused and name the keys:\n{stderr}"
    );
    assert!(run.outputs().is_empty(), "nothing is written");
}

/// No `--node`: the endpoint, region and credentials come from the environment as for every AWS
/// tool (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`), and the one-shot run renders.
#[test]
fn the_endpoint_comes_from_aws_endpoint_url_without_node() {
    let run = Run::new(&e2e::matrix_dir().join("confdir"));
    let Some(mut store) = Store::start("ssm", &run.store_dir()) else {
        return;
    };
    store.put_all(&e2e::matrix_data());
    let Store::Aws { moto, .. } = &store else {
        unreachable!("ssm runs on moto")
    };
    let key = moto.credentials();
    let output = std::process::Command::new(e2e::isolated_confd())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", MOTO_REGION)
        .env("AWS_ACCESS_KEY_ID", key.id)
        .env("AWS_SECRET_ACCESS_KEY", key.secret)
        .current_dir(run.cwd())
        .arg("--confdir")
        .arg(run.confdir())
        .args(["--backend", "ssm", "--onetime"])
        .output()
        .expect("run confd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let (expected, _) = e2e::matrix_expected();
    assert_eq!(run.outputs(), expected, "{stderr}");
}
