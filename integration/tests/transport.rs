//! A transport only this confd can reach, tried with real processes: a plugin asked for TCP
//! answers only the host holding the certificate it was given (AutoMTLS), a plugin that cannot
//! make its Unix socket fails instead of falling back to TCP, and confd keeps its plugins'
//! sockets in a private directory that it removes, or a later run removes when it was killed.

mod e2e;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use confd_sdk::handshake::{self, Address, Handshake};
use confd_sdk::tls::{ClientTls, Identity};
use confd_sdk::{Database, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, RemoteDatabase};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, Transport};
use confd_test_support::workspace_bin;

fn memory_plugin() -> std::path::PathBuf {
    workspace_bin("confd-database-memory", "confd-database-memory")
}

/// A plugin process started the way a host starts it, with `env` added.
fn spawn_plugin(env: &[(&str, &str)]) -> Child {
    Command::new(memory_plugin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the memory plugin")
}

fn handshake_line(child: &mut Child) -> String {
    let mut stdout = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte).expect("read stdout") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("utf-8 line")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What a peer gets back for `request` on a plain TCP connection: nothing, or a TLS alert,
/// never an HTTP answer or an HTTP/2 SETTINGS frame.
fn plain_answer(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(addr).expect("TCP connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn a_plugin_asked_for_tcp_answers_only_the_host_with_its_certificate() {
    let host = Identity::generate().expect("host identity");
    let mut child = spawn_plugin(&[
        ("CONFD_PLUGIN_TRANSPORT", "tcp"),
        ("PLUGIN_CLIENT_CERT", host.certificate_pem()),
    ]);
    let line = handshake_line(&mut child);
    let hs: Handshake = handshake::parse(&line, &[1]).expect("a valid handshake");
    let Address::Tcp(addr) = hs.address else {
        panic!("asked for TCP: {line}");
    };
    assert!(addr.ip().is_loopback(), "{line}");
    let plugin_cert = hs
        .server_cert
        .clone()
        .expect("AutoMTLS certificate in field 6");

    // curl's way and gRPC's plaintext way: the first bytes back are a TLS alert or nothing
    for request in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0"[..],
    ] {
        let answer = plain_answer(addr, request);
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "a plaintext peer got {:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    runtime().block_on(async {
        let timeout = Duration::from_secs(5);
        // our own client will not try plaintext TCP
        let plain = RemoteDatabase::connect("memory", &hs.address, timeout).await;
        assert!(plain.is_err(), "plaintext TCP connected");
        // a client with a certificate of its own, not the one the plugin was given
        let stranger = Identity::generate().expect("stranger");
        let tls = ClientTls::new(&stranger, &plugin_cert).expect("tls");
        let refused = RemoteDatabase::connect_with("memory", &hs.address, Some(&tls), timeout)
            .await
            .expect_err("a client without the host's certificate cannot connect");
        assert!(!refused.to_string().is_empty());

        // the host
        let tls = ClientTls::new(&host, &plugin_cert).expect("tls");
        let db = RemoteDatabase::connect_with("memory", &hs.address, Some(&tls), timeout)
            .await
            .expect("the host connects");
        db.configure([("data./app/port".to_string(), "8080".to_string())].into())
            .await
            .expect("configure");
        let values = db.get_values(&["/app".into()]).await.expect("get_values");
        assert_eq!(values.get("/app/port").map(String::as_str), Some("8080"));
        db.shutdown(Duration::from_secs(2)).await;
    });
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("refused a connection without the host's certificate"),
        "the refused client is logged: {stderr}"
    );
}

/// The plugin's stderr and exit status when it refuses to start.
fn refused_start(env: &[(&str, &str)]) -> String {
    let child = spawn_plugin(env);
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        output.stdout.is_empty(),
        "no handshake line may be printed: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_plugin_without_a_unix_socket_fails_and_never_serves_tcp() {
    let stderr = refused_start(&[("PLUGIN_UNIX_SOCKET_DIR", "/nonexistent/confd-sockets")]);
    assert!(
        stderr.contains("cannot make a Unix socket")
            && stderr.contains("/nonexistent/confd-sockets")
            && stderr.contains("does not fall back to TCP"),
        "{stderr}"
    );
}

#[test]
fn a_plugin_asked_for_tcp_without_a_certificate_refuses() {
    let stderr = refused_start(&[("CONFD_PLUGIN_TRANSPORT", "tcp")]);
    assert!(stderr.contains("serves TCP only with AutoMTLS"), "{stderr}");
    let stderr = refused_start(&[
        ("CONFD_PLUGIN_TRANSPORT", "tcp"),
        ("PLUGIN_CLIENT_CERT", "not a certificate"),
    ]);
    assert!(stderr.contains("PLUGIN_CLIENT_CERT"), "{stderr}");
}

#[test]
fn our_host_and_our_plugin_over_tcp_with_auto_mtls() {
    runtime().block_on(async {
        let options = ClientOptions {
            transport: Transport::Tcp,
            ..ClientOptions::default()
        };
        let client = PluginClient::start(PluginCommand::new("memory", memory_plugin()), options)
            .await
            .expect("starts over TCP");
        assert!(
            client.address().starts_with("tcp:127.0.0.1:"),
            "{}",
            client.address()
        );
        client
            .configure([("data./a".to_string(), "1".to_string())].into())
            .await
            .expect("configure");
        let values = client.get_values(&["/a".into()]).await.expect("values");
        assert_eq!(values.get("/a").map(String::as_str), Some("1"));
        client.shutdown().await;
        assert!(client.exit_status().is_some_and(|s| s.success()));
    });
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// confd itself: `--plugin-transport tcp` renders through an AutoMTLS plugin; the default keeps
/// the sockets in one private directory that is gone after the run, and a directory a killed
/// confd left is removed by the next run.
#[test]
fn confd_runs_over_either_transport_and_leaves_no_socket_directory() {
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("conf.d")).expect("mkdir");
    std::fs::create_dir_all(src.path().join("templates")).expect("mkdir");
    std::fs::write(
        src.path().join("templates/app.tmpl"),
        "port {{getv \"/app/port\"}}\n",
    )
    .expect("template");
    std::fs::write(
        src.path().join("conf.d/app.toml"),
        "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app.conf\"\nkeys = [\"/app\"]\n",
    )
    .expect("resource");
    let run = e2e::Run::new(src.path());
    let tmp = run.dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    // What a confd killed with SIGKILL leaves: its directory with a plugin's dead socket. No
    // process has this pid (above the kernel's limit of 2^22).
    let dead = tmp.join(format!("confd-{}-Dead01", (1 << 22) + 1));
    std::fs::create_dir(&dead).expect("mkdir");
    std::fs::create_dir(dead.join("pluginAbCdEf")).expect("mkdir");
    drop(
        std::os::unix::net::UnixListener::bind(dead.join("pluginAbCdEf/plugin.sock"))
            .expect("bind"),
    );
    for path in [&dead, &dead.join("pluginAbCdEf")] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }

    for (round, transport) in ["unix", "tcp"].into_iter().enumerate() {
        let output = Command::new(e2e::isolated_confd())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TMPDIR", &tmp)
            .env("APP_PORT", format!("80{round}"))
            .current_dir(run.cwd())
            .args(["--onetime", "--backend", "env", "--log-level", "debug"])
            .args(["--plugin-transport", transport, "--confdir"])
            .arg(run.confdir())
            .output()
            .expect("run confd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{transport}: {stderr}");
        let rendered = std::fs::read_to_string(run.out().join("app.conf")).expect("dest");
        assert_eq!(rendered, format!("port 80{round}\n"), "{transport}");
        let handshake = stderr
            .lines()
            .find(|l| l.contains("plugin handshake"))
            .unwrap_or_else(|| panic!("no handshake logged: {stderr}"));
        match transport {
            "tcp" => assert!(
                handshake.contains("address=tcp:127.0.0.1:") && handshake.contains("tls=true"),
                "{handshake}"
            ),
            _ => {
                let socket = handshake
                    .split_once("address=unix:")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
                    .unwrap_or_else(|| panic!("{handshake}"));
                // <TMPDIR>/confd-<pid>-XXXXXX/pluginXXXXXX/plugin.sock
                let socket = Path::new(socket);
                let host_dir = socket.parent().and_then(Path::parent).expect("dirs");
                assert_eq!(host_dir.parent(), Some(tmp.as_path()), "{handshake}");
                let name = host_dir.file_name().expect("name").to_string_lossy();
                assert!(name.starts_with("confd-"), "{name}");
                assert!(handshake.contains("tls=false"), "{handshake}");
            }
        }
        assert_eq!(
            entries(&tmp),
            Vec::<String>::new(),
            "{transport}: the run's own directory and the dead run's are gone"
        );
    }
}

#[test]
fn confd_refuses_an_unknown_transport() {
    let output = Command::new(e2e::isolated_confd())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CONFD_PLUGIN_TRANSPORT", "udp")
        .args(["--onetime", "--backend", "env", "--confdir", "/nonexistent"])
        .output()
        .expect("run confd");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid CONFD_PLUGIN_TRANSPORT \"udp\": expected unix or tcp"),
        "{stderr}"
    );
}
