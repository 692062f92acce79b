//! One plugin process: spawned with the go-plugin environment in its own process group, its
//! handshake line read and checked, its stderr turned into log events with bounded memory, and a
//! reaper task that records how it ended or kills its whole group on request.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_sdk::handshake::{self, Address};
use confd_sdk::tls::{ClientTls, Identity};
use confd_sdk::{RemoteDatabase, StdioChannel, hclog};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::sync::{oneshot, watch};

use crate::child_env::ChildEnv;
use crate::client::{ClientOptions, PluginCommand};
use crate::error::PluginError;
use crate::transport::TransportEnv;

/// How many of the plugin's last stderr lines a start error quotes.
const STDERR_TAIL: usize = 10;
/// The longest piece of one stderr line a start error quotes; with [`STDERR_TAIL`] lines an error
/// stays under a few KiB whatever the plugin wrote.
const TAIL_LINE: usize = 400;
/// The longest stderr line logged; the rest of a longer line is dropped with a marker, so a plugin
/// writing without newlines cannot make the host buffer without end.
pub(crate) const STDERR_LINE: usize = 64 * 1024;

/// How the process ended, as observed by the reaper task.
pub(crate) type ExitState = Option<Result<ExitStatus, String>>;

pub(crate) fn describe_exit(state: &Result<ExitStatus, String>) -> String {
    match state {
        Ok(status) => status.to_string(),
        Err(err) => format!("exit status unknown: {err}"),
    }
}

/// A started plugin process: its pid, how it ended once it has, and the means to kill it.
pub(crate) struct Process {
    pub(crate) pid: u32,
    exit: watch::Receiver<ExitState>,
    /// Sending (or dropping) kills the process group; the reaper then records the exit.
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

impl Process {
    pub(crate) fn exited(&self) -> ExitState {
        self.exit.borrow().clone()
    }

    /// Kills the whole process group (SIGKILL). Idempotent.
    pub(crate) fn kill(&self) {
        if let Some(tx) = self.kill.lock().ok().and_then(|mut kill| kill.take()) {
            let _ = tx.send(());
        }
    }

    pub(crate) async fn wait_exit(&self) -> Result<ExitStatus, String> {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(state) => state.clone().unwrap_or_else(|| Err("not reaped".into())),
            Err(_) => Err("the reaper task is gone".into()),
        }
    }
}

/// Spawns, handshakes, connects and health-checks one plugin process.
pub(crate) async fn launch(
    command: &PluginCommand,
    options: &ClientOptions,
) -> Result<(Process, RemoteDatabase), PluginError> {
    let path = command.program.clone();
    let deadline = tokio::time::Instant::now() + options.start_timeout;
    let transport =
        TransportEnv::new(options.transport, options.socket_dir.as_deref()).map_err(|cause| {
            PluginError::Tls {
                path: path.clone(),
                cause,
            }
        })?;
    let mut child = build_command(command, &transport.env)
        .and_then(|mut cmd| cmd.spawn())
        .map_err(|cause| PluginError::Spawn {
            path: path.clone(),
            cause,
        })?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let (exit_tx, exit_rx) = watch::channel::<ExitState>(None);
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let socket: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    tokio::spawn(reap(child, pid, kill_rx, exit_tx, socket.clone()));
    let guard = KillGuard(Some(kill_tx));

    let tail: StderrTail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr_task = stderr.map(|stderr| {
        tokio::spawn(forward_stderr(
            command.name.clone(),
            pid,
            stderr,
            tail.clone(),
        ))
    });

    let result = handshake_and_connect(
        command,
        &path,
        stdout,
        exit_rx.clone(),
        deadline,
        options,
        transport.identity.as_ref(),
    )
    .await;
    match result {
        Ok((remote, address)) => {
            if let (Address::Unix(path), Ok(mut slot)) = (&address, socket.lock()) {
                *slot = Some(path.clone());
            }
            let name = command.name.clone();
            remote.forward_stdio(move |channel, line| {
                let channel = match channel {
                    StdioChannel::Stdout => "stdout",
                    StdioChannel::Stderr => "stderr",
                };
                tracing::debug!(target: "confd::plugin", backend = %name, plugin_pid = pid, channel, "{line}");
            });
            Ok((
                Process {
                    pid,
                    exit: exit_rx,
                    kill: Mutex::new(guard.disarm()),
                },
                remote,
            ))
        }
        Err(mut err) => {
            drop(guard);
            let mut exit = exit_rx.clone();
            let _ = exit.wait_for(Option::is_some).await;
            // Give the stderr reader a moment to collect the plugin's last words.
            if let Some(task) = stderr_task {
                let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
            }
            let said = tail_text(&tail);
            match &mut err {
                PluginError::ExitedBeforeHandshake { stderr, .. }
                | PluginError::NoHandshake { stderr, .. } => *stderr = said,
                _ => {}
            }
            Err(err)
        }
    }
}

/// The last stderr lines, quoted in start errors.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

fn tail_text(tail: &StderrTail) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}

/// Removes a socket directory our SDK created, when the plugin could not (it was killed or
/// crashed). Only our layout (`<private dir>/plugin.sock`) is touched: a Go plugin's socket
/// sits directly in /tmp.
fn remove_stale_socket(path: &Path) {
    if path.file_name().is_some_and(|n| n == "plugin.sock") && path.exists() {
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Kills the child when dropped, unless disarmed once the plugin is up.
struct KillGuard(Option<oneshot::Sender<()>>);

impl KillGuard {
    fn disarm(mut self) -> Option<oneshot::Sender<()>> {
        self.0.take()
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// The plugin's command with the go-plugin environment; `transport` (see `TransportEnv`) comes
/// after the caller's variables, so the host's transport setting always wins.
pub(crate) fn build_command(
    command: &PluginCommand,
    transport: &[(OsString, OsString)],
) -> io::Result<tokio::process::Command> {
    let mut set: Vec<(OsString, OsString)> = vec![
        (
            handshake::MAGIC_COOKIE_KEY.into(),
            handshake::MAGIC_COOKIE_VALUE.into(),
        ),
        ("PLUGIN_PROTOCOL_VERSIONS".into(), offered_versions().into()),
        ("PLUGIN_MIN_PORT".into(), "10000".into()),
        ("PLUGIN_MAX_PORT".into(), "25000".into()),
    ];
    set.extend(command.env.iter().cloned());
    set.extend(transport.iter().cloned());
    // A certificate is only ever the one this start made (in `transport`): one inherited from
    // confd's environment would make the plugin trust a key confd does not hold.
    let remove: &[&str] = if transport.iter().any(|(k, _)| k == "PLUGIN_CLIENT_CERT") {
        &["PLUGIN_MULTIPLEX_GRPC"]
    } else {
        &["PLUGIN_CLIENT_CERT", "PLUGIN_MULTIPLEX_GRPC"]
    };
    let env = ChildEnv::new(&set, remove)?;
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C in the terminal reaches the host only, which then
        // shuts the plugin down in order; and we can kill whatever the plugin itself started.
        .process_group(0);
    in_child(&mut cmd, env);
    Ok(cmd)
}

/// What the forked child does before exec: take its environment (see `ChildEnv`) and, on
/// Linux, arrange to die with the host.
#[allow(unsafe_code)]
fn in_child(cmd: &mut tokio::process::Command, env: ChildEnv) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. Installing the prepared
    // environment is one pointer store; prctl and getppid are async-signal-safe, and the
    // io::Errors are built without allocating. The death signal fires when the spawning thread
    // ends; tokio spawns from runtime threads that live as long as the runtime, and the runtime
    // ending kills the plugin anyway (kill_on_drop).
    unsafe {
        cmd.pre_exec(move || {
            env.install();
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host may have died between fork and prctl; then nobody would kill us.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            let _ = parent;
            Ok(())
        });
    }
}

fn offered_versions() -> String {
    handshake::APP_PROTOCOL_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Owns the child: records its exit, or kills its process group on request (or when the
/// handle is gone) and then records the exit.
async fn reap(
    mut child: tokio::process::Child,
    pid: u32,
    kill: oneshot::Receiver<()>,
    exit: watch::Sender<ExitState>,
    socket: Arc<Mutex<Option<PathBuf>>>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            if let Ok(pgid) = i32::try_from(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
            child.wait().await
        }
    };
    if let Some(path) = socket.lock().ok().and_then(|mut s| s.take()) {
        remove_stale_socket(&path);
    }
    let _ = exit.send(Some(status.map_err(|e| e.to_string())));
}

/// Waits for the reaper's verdict; owned, so no lock guard is held across an await.
async fn wait_exited(exit: &mut watch::Receiver<ExitState>) -> ExitState {
    exit.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|state| state.clone())
}

async fn handshake_and_connect(
    command: &PluginCommand,
    path: &Path,
    stdout: Option<tokio::process::ChildStdout>,
    mut exit: watch::Receiver<ExitState>,
    deadline: tokio::time::Instant,
    options: &ClientOptions,
    identity: Option<&Identity>,
) -> Result<(RemoteDatabase, Address), PluginError> {
    let start_timeout = options.start_timeout;
    let stdout = stdout.ok_or_else(|| PluginError::NoHandshake {
        path: path.to_path_buf(),
        stderr: String::new(),
    })?;
    // The read runs in its own task so that noticing the exit first loses no line. The line is
    // capped: a plugin printing garbage without a newline cannot fill the host's memory.
    let (line_tx, mut line_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(STDERR_LINE as u64)
            .read_until(b'\n', &mut line)
            .await;
        let done = line_tx.send((read, String::from_utf8_lossy(&line).into_owned()));
        if done.is_ok() {
            // After the handshake stdout is drained and discarded, like go-plugin does.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        }
    });

    let exited = |state: &ExitState| {
        state
            .as_ref()
            .map(describe_exit)
            .unwrap_or_else(|| "unknown status".into())
    };
    let timed_out = || PluginError::HandshakeTimeout {
        path: path.to_path_buf(),
        timeout: start_timeout,
    };
    let line = tokio::select! {
        biased;
        read = &mut line_rx => read,
        state = wait_exited(&mut exit) => {
            // A line printed just before exiting is still in the pipe.
            match tokio::time::timeout(Duration::from_millis(200), &mut line_rx).await {
                Ok(read) => read,
                Err(_) => {
                    return Err(PluginError::ExitedBeforeHandshake {
                        path: path.to_path_buf(),
                        status: exited(&state),
                        stderr: String::new(),
                    });
                }
            }
        }
        () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
    };
    let line = match line {
        Ok((Ok(n), line)) if n > 0 => line,
        _ => {
            // EOF: usually the process is exiting; say how, if we learn it soon.
            let state = tokio::time::timeout(Duration::from_secs(1), wait_exited(&mut exit))
                .await
                .unwrap_or(None);
            return Err(match state {
                Some(_) => PluginError::ExitedBeforeHandshake {
                    path: path.to_path_buf(),
                    status: exited(&state),
                    stderr: String::new(),
                },
                None => PluginError::NoHandshake {
                    path: path.to_path_buf(),
                    stderr: String::new(),
                },
            });
        }
    };
    let bad = |problem| PluginError::BadHandshake {
        path: path.to_path_buf(),
        // The certificate is long and says nothing to a reader.
        line: shorten(line.trim_end_matches(['\r', '\n']), 120),
        problem,
    };
    let hs = handshake::parse(&line, handshake::APP_PROTOCOL_VERSIONS).map_err(bad)?;
    handshake::check_transport(&hs, identity.is_some()).map_err(bad)?;
    let tls =
        match (identity, &hs.server_cert) {
            (Some(identity), Some(cert)) => Some(ClientTls::new(identity, cert).map_err(
                |cause| PluginError::Tls {
                    path: path.to_path_buf(),
                    cause,
                },
            )?),
            _ => None,
        };
    tracing::debug!(backend = %command.name, address = %hs.address, tls = tls.is_some(), "plugin handshake");
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let remote =
        RemoteDatabase::connect_with(command.name.clone(), &hs.address, tls.as_ref(), remaining)
            .await
            .map_err(|cause| match cause {
                confd_sdk::ConnectError::Timeout(_) => timed_out(),
                cause => PluginError::Connect {
                    path: path.to_path_buf(),
                    cause,
                },
            })?;
    Ok((remote, hs.address))
}

/// Re-emits a plugin's stderr lines as `tracing` events tagged with the backend and the pid.
/// One line is read into at most [`STDERR_LINE`] bytes; what a longer line has beyond that is
/// dropped and the event says how much, so memory stays bounded whatever the plugin writes.
async fn forward_stderr(name: String, pid: u32, stderr: impl AsyncRead + Unpin, tail: StderrTail) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut dropped: u64 = 0;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => {
                if !line.is_empty() || dropped > 0 {
                    emit_line(&name, pid, &line, dropped, &tail);
                }
                break;
            }
            Ok(chunk) => chunk,
        };
        let (taken, complete) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = &chunk[..if complete { taken - 1 } else { taken }];
        let room = STDERR_LINE.saturating_sub(line.len());
        let keep = body.len().min(room);
        line.extend_from_slice(&body[..keep]);
        dropped += (body.len() - keep) as u64;
        reader.consume(taken);
        if complete {
            emit_line(&name, pid, &line, dropped, &tail);
            line.clear();
            if line.capacity() > 64 * 1024 {
                line.shrink_to(1024);
            }
            dropped = 0;
        }
    }
}

fn emit_line(name: &str, pid: u32, bytes: &[u8], dropped: u64, tail: &StderrTail) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\r');
    if text.is_empty() && dropped == 0 {
        return;
    }
    let mut line = hclog::parse_line(text);
    if dropped > 0 {
        line.message
            .push_str(&format!(" [… {dropped} more bytes of this line dropped]"));
    }
    if let Ok(mut tail) = tail.lock() {
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(shorten(&line.message, TAIL_LINE));
    }
    emit(name, pid, &line);
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn emit(name: &str, pid: u32, line: &hclog::LogLine) {
    macro_rules! at {
        ($level:expr) => {
            if line.fields.is_empty() {
                tracing::event!(target: "confd::plugin", $level, backend = %name, plugin_pid = pid, "{}", line.message)
            } else {
                tracing::event!(target: "confd::plugin", $level, backend = %name, plugin_pid = pid, fields = %line.fields, "{}", line.message)
            }
        };
    }
    match line.level {
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the prepared environment (`ChildEnv`) does once installed in a real child.
    #[tokio::test]
    async fn a_plugin_inherits_the_environment_under_the_go_plugin_variables() {
        let command = PluginCommand::new("env", "/usr/bin/env")
            .env("PLUGIN_MIN_PORT", "20000")
            .env("CONFD_TEST_EXTRA", "a=b");
        let output = build_command(&command, &[])
            .expect("builds")
            .output()
            .await
            .expect("runs env");
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let path = format!("PATH={}", std::env::var("PATH").expect("PATH is set"));
        let cookie = format!(
            "{}={}",
            handshake::MAGIC_COOKIE_KEY,
            handshake::MAGIC_COOKIE_VALUE
        );
        for want in [
            path.as_str(),
            cookie.as_str(),
            "PLUGIN_MIN_PORT=20000",
            "PLUGIN_MAX_PORT=25000",
            "CONFD_TEST_EXTRA=a=b",
        ] {
            assert!(lines.contains(&want), "{want} missing in {lines:?}");
        }
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("PLUGIN_MIN_PORT="))
                .count(),
            1,
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn a_flood_without_newlines_is_cut_and_the_tail_stays_small() {
        // 10 MiB without a newline, then a short line.
        let mut input = vec![b'x'; 10 * 1024 * 1024];
        input.extend_from_slice(b"\nlast words\n");
        let tail: StderrTail = Arc::default();
        forward_stderr("flood".into(), 1, &input[..], tail.clone()).await;
        let lines: Vec<String> = tail.lock().expect("lock").iter().cloned().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].len() <= TAIL_LINE + 4, "{}", lines[0].len());
        assert_eq!(lines[1], "last words");
        assert!(tail_text(&tail).len() < 4 * 1024);
    }

    #[test]
    fn shortening_respects_characters() {
        assert_eq!(shorten("héllo", 2), "h…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
