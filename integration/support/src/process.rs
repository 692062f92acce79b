//! Helpers for running external test servers: binary lookup with the
//! CI-fails/locally-skips rule, free loopback ports and readiness polling.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Finds `name` on `PATH`.
///
/// Missing binary: under `CI=true` this panics (a CI run must not skip a
/// backend); otherwise it prints a loud notice naming the Debian package and
/// returns `None` so the caller can return early.
pub fn require_binary(name: &str, package: &str) -> Option<PathBuf> {
    if let Some(found) = find_on_path(name) {
        return Some(found);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci {
        panic!("`{name}` is not installed but CI=true: install the Debian package `{package}`");
    }
    eprintln!(
        "\n*** SKIPPED: `{name}` is not on PATH; install the Debian package `{package}` to run this test ***\n"
    );
    None
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port that was free a moment ago: bind 127.0.0.1:0, read the
/// port, release it. Another process may grab it before the server binds,
/// which is why the servers retry start-up on a fresh port.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 must work in tests");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Polls `ready` until it returns true, the child exits, or `timeout` passes.
pub(crate) fn wait_ready(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends raw bytes to 127.0.0.1:`port` and returns what came back once
/// `complete` accepts it, the peer closed, or a short read timeout passed.
pub(crate) fn tcp_exchange(
    port: u16,
    request: &[u8],
    complete: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
        if complete(&String::from_utf8_lossy(&reply)) {
            break;
        }
    }
    (!reply.is_empty()).then(|| String::from_utf8_lossy(&reply).into_owned())
}

/// `GET path` from 127.0.0.1:`port` over plain HTTP/1.0 (the probes and `/metrics` of a confd
/// under test): the status code and the body, or `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The last lines of a server's log file, for start-up failure messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Kills and reaps a child; used by `stop()` and `Drop`.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_again() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("the port was released");
    }

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("confd-no-such-binary-xyz").is_none());
    }
}
