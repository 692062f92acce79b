//! Interop with real HashiCorp go-plugin peers built from Debian's Go packages:
//! a Go host loads plugins built with our SDK, and our host loads a Go plugin.
//! Nobody here wrote go-plugin, so these tests catch protocol mistakes that
//! tests between our own host and our own plugins cannot.
//!
//! The Go peers live in `integration/go/` and are built once per test run by
//! `integration/go/build.sh`. Without `go` the suite is skipped loudly, except
//! under `CI=true`, where a missing toolchain fails it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use confd_sdk::{Config, Database, ErrorKind};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand, PluginError};
use confd_test_support::{workspace_bin, workspace_root};
use serde_json::Value;

/// The two Go executables built by `integration/go/build.sh`.
#[derive(Debug)]
struct GoPeers {
    host: PathBuf,
    plugin: PathBuf,
}

/// Builds the Go peers once; `None` means "skip" (no Go outside CI).
fn go_peers() -> Option<&'static GoPeers> {
    static PEERS: OnceLock<Option<GoPeers>> = OnceLock::new();
    PEERS.get_or_init(build_go_peers).as_ref()
}

fn build_go_peers() -> Option<GoPeers> {
    let have_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_go {
        skip_or_fail("`go` is not installed");
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-interop");
    let script = workspace_root().join("integration/go/build.sh");
    let result = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("sh runs integration/go/build.sh");
    let stderr = String::from_utf8_lossy(&result.stderr);
    // build.sh exits 3 when a tool or Debian package is missing.
    if result.status.code() == Some(3) {
        skip_or_fail(stderr.trim());
        return None;
    }
    assert!(
        result.status.success(),
        "integration/go/build.sh failed ({}):\n{}{stderr}",
        result.status,
        String::from_utf8_lossy(&result.stdout),
    );
    Some(GoPeers {
        host: out.join("confd-interop-host"),
        plugin: out.join("confd-interop-plugin"),
    })
}

/// Outside CI a machine without the Go packages skips the suite loudly; in CI
/// (`CI=true`) the suite must run, so a missing prerequisite fails it.
fn skip_or_fail(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "CI=true but the Go interop suite cannot be built: {reason}\n\
         Install the Debian packages listed in integration/go/README.md."
    );
    eprintln!(
        "\n*** SKIPPING Go interop tests: {reason}\n\
         *** Install the Debian packages listed in integration/go/README.md to run them. ***\n"
    );
}

/// Returns the Go peers or ends the test early when they cannot be built here.
macro_rules! require_go {
    () => {
        match go_peers() {
            Some(peers) => peers,
            None => return,
        }
    };
}

/// Whether `pid` is a live process (a zombie counts as dead: it no longer runs
/// and, reparented inside a container, may never be reaped).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// A program that prints something other than a handshake line and stays up
/// (so the host sees the line rather than the exit). `sh -c` rather than a
/// script file: executing a file written moments ago fails with ETXTBSY when
/// another test thread forks while the file is still open for writing.
const GARBAGE_SCRIPT: &str = "echo 'hello, I am not a plugin'; exec sleep 30";

// ---------------------------------------------------------------------------
// The Go host loading plugins built with our SDK.
// ---------------------------------------------------------------------------

/// One run of the Go host: its JSON result lines by step, and its raw output.
#[derive(Debug)]
struct HostRun {
    output: Output,
    steps: BTreeMap<String, Value>,
}

impl HostRun {
    fn step(&self, name: &str) -> &Value {
        self.steps
            .get(name)
            .unwrap_or_else(|| panic!("Go host printed no `{name}` step\n{}", self.describe()))
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            self.stderr()
        )
    }
}

fn run_go_host(host: &Path, args: &[&str], envs: &[(&str, &str)]) -> HostRun {
    let output = Command::new(host)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("the Go host starts");
    let mut steps = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("Go host printed a non-JSON line {line:?}: {e}"));
        let step = value["step"]
            .as_str()
            .expect("every line has a step")
            .to_string();
        steps.insert(step, value);
    }
    HostRun { output, steps }
}

/// Checks the parts of a successful Go host run that do not depend on the
/// plugin: handshake, ping, a graceful kill, and no plugin process left.
fn assert_clean_run(run: &HostRun) {
    assert!(
        run.output.status.success(),
        "Go host failed\n{}",
        run.describe()
    );
    let start = run.step("start");
    assert_eq!(start["protocol"], "grpc", "{}", run.describe());
    assert_eq!(start["version"], 1, "{}", run.describe());
    assert_eq!(run.step("ping")["ok"], true);
    let kill = run.step("kill");
    assert_eq!(kill["exited"], true, "{}", run.describe());
    assert_eq!(
        kill["graceful"],
        true,
        "go-plugin had to SIGKILL the plugin: Shutdown did not end it within 2 s\n{}",
        run.describe()
    );
    let pid = start["pid"].as_u64().expect("start step has a pid") as u32;
    assert!(pid > 0);
    assert!(
        !process_alive(pid),
        "plugin process {pid} outlived the Go host"
    );
}

/// Our fixtures first: if the two Go peers do not work with each other, every
/// other failure here would be misleading.
#[test]
fn go_host_and_go_plugin_agree() {
    let go = require_go!();
    let plugin = go.plugin.to_str().expect("utf-8 path");
    let run = run_go_host(
        &go.host,
        &[
            "-config",
            "/app/a=1",
            "-config",
            "/application=2",
            "-key",
            "/app",
            "-wait-index",
            "41",
            plugin,
        ],
        &[],
    );
    assert_clean_run(&run);
    assert_eq!(
        run.step("get_values")["values"],
        serde_json::json!({"/app/a": "1"})
    );
    assert_eq!(run.step("watch_prefix")["index"], 42);
    assert_eq!(run.step("info")["offered"], false);
}

/// Both hosts must refuse a program that is not a plugin: one that exits
/// without a word, and one that prints something other than a handshake.
#[test]
fn go_host_refuses_non_plugin_executables() {
    let go = require_go!();
    // `/bin/true` exits silently: go-plugin reports the exit or the empty
    // stdout, whichever it notices first.
    let run = run_go_host(&go.host, &["/bin/true"], &[]);
    assert_eq!(run.output.status.code(), Some(1), "{}", run.describe());
    let error = run.step("start")["error"]
        .as_str()
        .expect("start error")
        .to_string();
    assert!(
        error.starts_with("Unrecognized remote plugin message: \n")
            || error.starts_with("plugin exited before we could connect"),
        "unexpected error for /bin/true: {error:?}\n{}",
        run.describe()
    );

    let began = std::time::Instant::now();
    let run = run_go_host(&go.host, &["/bin/sh", "-c", GARBAGE_SCRIPT], &[]);
    assert_eq!(run.output.status.code(), Some(1), "{}", run.describe());
    let error = run.step("start")["error"]
        .as_str()
        .expect("start error")
        .to_string();
    assert!(
        error.starts_with("Unrecognized remote plugin message: hello, I am not a plugin\n"),
        "unexpected error for a garbage line: {error:?}\n{}",
        run.describe()
    );
    assert!(
        run.stderr()
            .contains("confd-interop-host: start failed: Unrecognized remote plugin message"),
        "{}",
        run.describe()
    );
    // The Go host killed the sleeping program instead of waiting for it.
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "took {:?}",
        began.elapsed()
    );
}

/// The hclog entries the Go host logged (its stderr is hclog JSON).
fn host_log(run: &HostRun) -> Vec<Value> {
    run.stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// Our plugins log hclog JSON; go-plugin re-logs a line it cannot parse
/// verbatim at debug, so a raw `{"@level"...` message means our format is off.
fn assert_plugin_logs_parsed(run: &HostRun, expected_message: &str) {
    let log = host_log(run);
    let raw: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["@message"]
                .as_str()
                .is_some_and(|m| m.trim_start().starts_with('{'))
        })
        .collect();
    assert!(
        raw.is_empty(),
        "go-plugin could not parse these plugin log lines: {raw:?}"
    );
    assert!(
        log.iter()
            .any(|e| e["@message"] == expected_message && e["@level"] == "debug"),
        "the plugin's {expected_message:?} line did not reach the Go host's log as a parsed entry\n{}",
        run.describe()
    );
}

#[test]
fn go_host_loads_sdk_memory_plugin() {
    let go = require_go!();
    let plugin = workspace_bin("confd-database-memory", "confd-database-memory");
    let run = run_go_host(
        &go.host,
        &[
            "-config",
            "data./app/port=8080",
            "-config",
            "data./app/db/host=db.internal",
            "-config",
            "data./application=not under /app",
            "-key",
            "/app",
            "-prefix",
            "/app",
            "-wait-index",
            "1",
            plugin.to_str().expect("utf-8 path"),
        ],
        // Raise the plugin's log level so there is a line to check the format of.
        &[("CONFD_PLUGIN_LOG_LEVEL", "debug")],
    );
    assert_clean_run(&run);
    assert_eq!(run.step("configure")["ok"], true);
    assert_eq!(
        run.step("get_values")["values"],
        serde_json::json!({"/app/port": "8080", "/app/db/host": "db.internal"}),
        "{}",
        run.describe()
    );
    // Configure changed the store after index 1, so the watch fires at once.
    let watch = run.step("watch_prefix");
    assert_eq!(watch["offered"], true);
    assert!(
        watch["index"].as_u64().is_some_and(|i| i > 1),
        "{}",
        run.describe()
    );
    let info = run.step("info");
    assert_eq!(info["offered"], true);
    assert_eq!(info["name"], "memory");
    assert_eq!(info["capabilities"], serde_json::json!(["watch"]));
    assert_plugin_logs_parsed(&run, "plugin listening");
}

#[test]
fn go_host_loads_sdk_env_plugin() {
    let go = require_go!();
    if !workspace_root()
        .join("builtin/bins/env/Cargo.toml")
        .exists()
    {
        eprintln!("*** SKIPPING: builtin/bins/env does not exist yet ***");
        return;
    }
    let plugin = workspace_bin("confd-database-env", "confd-database-env");
    let run = run_go_host(
        &go.host,
        &[
            "-key",
            "/gointerop",
            "-prefix",
            "/gointerop",
            "-watch-optional",
            plugin.to_str().expect("utf-8 path"),
        ],
        // The plugin inherits the Go host's environment, which is the env store.
        &[
            ("GOINTEROP_HOST", "db.example"),
            ("GOINTEROP_PORT", "5432"),
            ("CONFD_PLUGIN_LOG_LEVEL", "debug"),
        ],
    );
    assert_clean_run(&run);
    assert_eq!(
        run.step("get_values")["values"],
        serde_json::json!({"/gointerop/host": "db.example", "/gointerop/port": "5432"}),
        "{}",
        run.describe()
    );
    // env cannot watch; the Unimplemented status and its message must cross the wire.
    let watch = run.step("watch_prefix");
    assert_eq!(watch["offered"], false, "{}", run.describe());
    assert!(
        watch["message"]
            .as_str()
            .is_some_and(|m| m.contains("env backend cannot watch")),
        "{}",
        run.describe()
    );
    assert_eq!(run.step("info")["name"], "env");
    assert_plugin_logs_parsed(&run, "plugin listening");
}

/// A Go host with `AutoMTLS: true`: it passes its P-521 certificate in `PLUGIN_CLIENT_CERT`, our
/// plugin answers with its own in field 6 and serves TLS, and every call goes through it.
#[test]
fn go_host_loads_sdk_plugin_with_auto_mtls() {
    let go = require_go!();
    let plugin = workspace_bin("confd-database-memory", "confd-database-memory");
    let run = run_go_host(
        &go.host,
        &[
            "-auto-mtls",
            "-config",
            "data./app/port=8080",
            "-key",
            "/app",
            "-prefix",
            "/app",
            plugin.to_str().expect("utf-8 path"),
        ],
        &[("CONFD_PLUGIN_LOG_LEVEL", "debug")],
    );
    assert_clean_run(&run);
    assert_eq!(
        run.step("get_values")["values"],
        serde_json::json!({"/app/port": "8080"}),
        "{}",
        run.describe()
    );
    let listening = host_log(&run)
        .into_iter()
        .find(|e| e["@message"] == "plugin listening")
        .unwrap_or_else(|| panic!("no `plugin listening` entry\n{}", run.describe()));
    assert!(
        listening["tls"] == true || listening["tls"] == "true",
        "the plugin did not serve TLS: {listening}"
    );
}

/// Our host asking for TCP, so with AutoMTLS, loads a Go plugin: go-plugin 1.0.1 plugins listen
/// on a Unix socket whatever the host wants, but serve TLS with a P-521 certificate, which our
/// host pins and verifies.
#[test]
fn our_host_loads_go_plugin_with_auto_mtls() {
    let go = require_go!();
    log_buffer();
    let name = "go-interop-auto-mtls";
    runtime().block_on(async {
        let options = ClientOptions {
            transport: confd_supervisor::Transport::Tcp,
            ..options()
        };
        let client = PluginClient::start(go_plugin_command(go, name), options)
            .await
            .expect("our host starts the Go plugin with AutoMTLS");
        client.ping().await.expect("health check over TLS");
        client
            .configure(config(&[("/app/port", "8080")]))
            .await
            .expect("configure");
        let values = client
            .get_values(&["/app".to_string()])
            .await
            .expect("get_values");
        assert_eq!(values.get("/app/port").map(String::as_str), Some("8080"));
        client.shutdown().await;
        assert!(client.exit_status().is_some_and(|s| s.success()));
    });
    let log = captured_log();
    let handshake = log
        .lines()
        .find(|l| l.contains(&format!("backend={name}")) && l.contains("plugin handshake"))
        .unwrap_or_else(|| panic!("no handshake line for {name}:\n{log}"));
    assert!(handshake.contains("tls=true"), "{handshake}");
}

/// Our host not asking for AutoMTLS refuses a Go plugin that serves it anyway (here because the
/// command sets `PLUGIN_CLIENT_CERT` itself): it holds no key the plugin would accept.
#[test]
fn our_host_refuses_a_go_plugin_serving_tls_it_did_not_ask_for() {
    let go = require_go!();
    let foreign = confd_sdk::tls::Identity::generate().expect("identity");
    runtime().block_on(async {
        let command = go_plugin_command(go, "go-interop-inherited-cert")
            .env("PLUGIN_CLIENT_CERT", foreign.certificate_pem());
        let err = PluginClient::start(command, options())
            .await
            .expect_err("a plugin serving TLS to a certificate we do not hold is refused");
        assert!(matches!(err, PluginError::BadHandshake { .. }), "{err}");
        assert!(err.to_string().contains("did not ask"), "{err}");
    });
}

#[test]
fn go_host_refuses_sdk_plugin_with_wrong_cookie() {
    let go = require_go!();
    let plugin = workspace_bin("confd-database-memory", "confd-database-memory");
    let run = run_go_host(
        &go.host,
        &[
            "-cookie",
            "not-the-cookie",
            plugin.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(run.output.status.code(), Some(1), "{}", run.describe());
    let error = run.step("start")["error"]
        .as_str()
        .expect("start error")
        .to_string();
    // Which of go-plugin's two messages appears depends on whether it sees the
    // exit or the empty stdout first; an empty quoted line proves our plugin
    // printed nothing on stdout.
    assert!(
        error.starts_with("Unrecognized remote plugin message: \n")
            || error.starts_with("plugin exited before we could connect"),
        "unexpected error {error:?}\n{}",
        run.describe()
    );
    // Our plugin's refusal reached the Go host's log, tagged with the plugin file's name.
    let log = host_log(&run);
    assert!(
        log.iter()
            .any(|e| e["@module"] == "host.confd-database-memory"
                && e["@message"]
                    == "This binary is a plugin. These are not meant to be executed directly."),
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// Our host loading the Go plugin.
// ---------------------------------------------------------------------------

/// Everything `tracing` logged in this test process, as plain text.
///
/// A global subscriber (not a thread default) because the plugin client
/// forwards stderr from spawned tasks; each test tells its own lines apart by
/// a plugin name no other test uses.
fn captured_log() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn log_buffer() -> &'static std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || LogWriter(buffer.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test in this binary installs a global subscriber");
        buffer
    })
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn go_plugin_command(go: &GoPeers, name: &str) -> PluginCommand {
    PluginCommand::new(name, &go.plugin)
}

fn options() -> ClientOptions {
    ClientOptions {
        call_timeout: Some(Duration::from_secs(10)),
        ..ClientOptions::default()
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn our_host_loads_go_plugin() {
    let go = require_go!();
    log_buffer();
    let name = "go-interop-calls";
    runtime().block_on(async {
        let client = PluginClient::start(go_plugin_command(go, name), options())
            .await
            .expect("our host starts the Go plugin");
        let pid = client.pid().expect("a running plugin has a pid");
        assert!(
            client.address().contains("plugin"),
            "Go plugins listen on /tmp/pluginNNN: {}",
            client.address()
        );
        client.ping().await.expect("health check");

        client
            .configure(config(&[
                ("/app/port", "8080"),
                ("/app/db/host", "db"),
                ("/application", "x"),
            ]))
            .await
            .expect("configure");
        let values = client
            .get_values(&["/app".to_string()])
            .await
            .expect("get_values");
        let expected: BTreeMap<String, String> = [("/app/db/host", "db"), ("/app/port", "8080")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(values, expected);

        // The Go plugin answers wait_index + 1 after a short delay.
        let index = client
            .watch_prefix("/app", &["/app".to_string()], 41)
            .await
            .expect("watch_prefix");
        assert_eq!(index, 42);

        let info = client
            .info()
            .await
            .expect_err("the Go plugin leaves Info unimplemented");
        assert_eq!(info.kind(), ErrorKind::Unimplemented, "{info}");
        assert!(info.message().contains("does not offer Info"), "{info}");

        let socket = PathBuf::from(client.address());
        client.shutdown().await;
        assert!(!client.is_alive());
        // go-plugin removes its socket when Shutdown stops the server.
        assert!(
            !socket.exists(),
            "stale socket {} after shutdown",
            socket.display()
        );
        let status = client.exit_status().expect("the reaper recorded the exit");
        assert!(
            status.success(),
            "go-plugin exits 0 after Shutdown, got {status}"
        );
        assert!(
            !process_alive(pid),
            "Go plugin {pid} still runs after shutdown"
        );
    });

    // The Go plugin's hclog lines reached our log, at their level and tagged.
    let log = captured_log();
    let configured = log
        .lines()
        .find(|l| l.contains(&format!("backend={name}")) && l.contains("configured"))
        .unwrap_or_else(|| panic!("no `configured` line from plugin {name} in our log:\n{log}"));
    assert!(
        configured.contains(" INFO "),
        "hclog info must stay info: {configured}"
    );
    // Three settings were configured; the plugin logs that count as a field.
    assert!(
        configured.contains("keys=3"),
        "hclog fields are kept: {configured}"
    );
}

#[test]
fn our_host_maps_go_plugin_errors() {
    let go = require_go!();
    runtime().block_on(async {
        let client = PluginClient::start(go_plugin_command(go, "go-interop-errors"), options())
            .await
            .expect("our host starts the Go plugin");
        let early = client
            .get_values(&["/app".to_string()])
            .await
            .expect_err("GetValues before Configure");
        assert_eq!(early.kind(), ErrorKind::NotConfigured, "{early}");
        assert!(early.message().contains("before Configure"), "{early}");

        let bad = client
            .configure(config(&[("nodes", "x")]))
            .await
            .expect_err("a setting the Go plugin refuses");
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument, "{bad}");
        assert!(bad.message().contains("unknown setting \"nodes\""), "{bad}");
        client.shutdown().await;
    });
}

#[test]
fn our_host_refuses_go_plugin_with_wrong_cookie() {
    let go = require_go!();
    runtime().block_on(async {
        // The plugin expects another cookie, as another application's plugin would.
        let command = go_plugin_command(go, "go-interop-cookie")
            .arg("-expect-cookie")
            .arg("some-other-application");
        let err = PluginClient::start(command, options())
            .await
            .expect_err("the plugin refuses our cookie");
        let message = err.to_string();
        assert!(
            matches!(err, PluginError::ExitedBeforeHandshake { .. }),
            "{message}"
        );
        assert_eq!(err.path(), go.plugin.as_path());
        assert!(
            message.contains(&go.plugin.display().to_string()),
            "{message}"
        );
        assert!(message.contains("exited before the handshake"), "{message}");
        assert!(message.contains("exit status: 1"), "{message}");
        assert!(
            message
                .contains("This binary is a plugin. These are not meant to be executed directly."),
            "the plugin's own explanation is quoted: {message}"
        );
    });
}

#[test]
fn our_host_refuses_non_plugin_executables() {
    runtime().block_on(async {
        let err = PluginClient::start(PluginCommand::new("true", "/bin/true"), options())
            .await
            .expect_err("/bin/true is no plugin");
        let message = err.to_string();
        assert!(
            matches!(err, PluginError::ExitedBeforeHandshake { .. }),
            "{message}"
        );
        assert!(
            message.starts_with("plugin /bin/true: exited before the handshake"),
            "{message}"
        );

        let began = std::time::Instant::now();
        let command = PluginCommand::new("garbage", "/bin/sh")
            .arg("-c")
            .arg(GARBAGE_SCRIPT);
        let err = PluginClient::start(command, options())
            .await
            .expect_err("a program printing garbage is no plugin");
        let message = err.to_string();
        assert!(matches!(err, PluginError::BadHandshake { .. }), "{message}");
        assert!(message.starts_with("plugin /bin/sh: "), "{message}");
        assert!(
            message.contains("\"hello, I am not a plugin\""),
            "the line is quoted: {message}"
        );
        assert!(
            message.contains("is the program a confd plugin?"),
            "{message}"
        );
        // Refusing the line killed the sleeping program rather than waiting for it.
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "took {:?}",
            began.elapsed()
        );
    });
}
