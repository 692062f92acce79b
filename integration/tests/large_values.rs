//! Values beyond gRPC's 4 MiB default, end to end: confd with the etcd builtin renders a 10 MB
//! value and a prefix of 60 values of 100 KB from a real etcd, in a one-shot run and in watch
//! mode (where a new 10 MB value arrives as one watch event). Each answer crosses two gRPC
//! channels: etcd to the plugin, and the plugin to confd.

mod e2e;

use std::path::Path;
use std::time::Duration;

use confd_test_support::{EtcdOptions, EtcdServer};
use e2e::{Confd, Run};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);

const ONE: &str =
    "[template]\nsrc = \"one.tmpl\"\ndest = \"@OUT@/one.conf\"\nkeys = [\"/big/one\"]\n";
const MANY: &str =
    "[template]\nsrc = \"many.tmpl\"\ndest = \"@OUT@/many.conf\"\nkeys = [\"/big/many\"]\n";

/// A confdir rendering `/big/one` whole and every value under `/big/many`, one per line.
fn confdir(dir: &Path) {
    for sub in ["conf.d", "templates"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(dir.join("conf.d/one.toml"), ONE).expect("write");
    std::fs::write(dir.join("conf.d/many.toml"), MANY).expect("write");
    std::fs::write(dir.join("templates/one.tmpl"), "{{getv \"/big/one\"}}").expect("write");
    std::fs::write(
        dir.join("templates/many.tmpl"),
        "{{range getvs \"/big/many/*\"}}{{.}}\n{{end}}",
    )
    .expect("write");
}

fn put(server: &EtcdServer, pairs: &[(String, String)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([server.endpoint()], None)
            .await
            .expect("connect to the test etcd");
        for (k, v) in pairs {
            client
                .put(k.as_str(), v.as_str(), None)
                .await
                .expect("etcd put");
        }
    });
}

fn command(run: &Run, server: &EtcdServer) -> std::process::Command {
    let mut cmd = std::process::Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(run.cwd())
        .arg("--confdir")
        .arg(run.confdir())
        .args(["--backend", "etcd", "--node", &server.address()])
        .args(["--plugin-config", "dialTimeout=20s"]);
    cmd
}

fn rendered(run: &Run, one: &str, part: &str) -> bool {
    let outputs = run.outputs();
    let many = format!("{part}\n").repeat(60);
    outputs.get("one.conf").is_some_and(|v| v == one.as_bytes())
        && outputs
            .get("many.conf")
            .is_some_and(|v| *v == many.as_bytes())
}

#[test]
fn a_10_mb_value_and_60_values_of_100_kb_render_once_and_in_watch_mode() {
    let Some(server) = EtcdServer::start_with(EtcdOptions {
        max_request_bytes: Some(32 * 1024 * 1024),
        ..EtcdOptions::default()
    }) else {
        return;
    };
    let src = tempfile::tempdir().expect("tempdir");
    confdir(src.path());
    let run = Run::new(src.path());
    let one = "1".repeat(10 * 1000 * 1000);
    let part = "p".repeat(100 * 1000);
    let mut pairs = vec![("/big/one".to_string(), one.clone())];
    pairs.extend((0..60).map(|i| (format!("/big/many/k{i:02}"), part.clone())));
    put(&server, &pairs);

    let output = command(&run, &server)
        .arg("--onetime")
        .output()
        .expect("run confd");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(rendered(&run, &one, &part), "one-shot outputs differ");

    for name in ["one.conf", "many.conf"] {
        std::fs::remove_file(run.out().join(name)).expect("remove output");
    }
    let mut cmd = command(&run, &server);
    cmd.arg("--watch");
    let mut confd = Confd::spawn(cmd, run.dir.path().join("stderr.log"));
    assert!(
        e2e::wait_for(DEADLINE, || rendered(&run, &one, &part)),
        "watch mode: initial render\n{}",
        confd.stderr()
    );
    let two = "2".repeat(10 * 1000 * 1000);
    put(&server, &[("/big/one".to_string(), two.clone())]);
    assert!(
        e2e::wait_for(DEADLINE, || rendered(&run, &two, &part)),
        "watch mode: the new 10 MB value is rendered\n{}",
        confd.stderr()
    );
    confd.signal(Signal::SIGTERM);
    let status = confd.wait_timeout(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", confd.stderr());
}
