//! Runs `check_cmd` and `reload_cmd`: `/bin/sh -c` in its own process group so
//! a timeout can kill the whole pipeline, with output captured for the log.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output kept per command in logs and errors; reload commands can be chatty.
const MAX_OUTPUT: usize = 4096;

/// How long to keep reading output after the shell exited: a command that
/// starts a daemon leaves our pipe open in the daemon, and we must not wait
/// for that daemon to exit.
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("could not start `/bin/sh -c {command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", show_output(output))]
    Failed {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("`{command}` timed out after {} and was killed{}", humantime::format_duration(*timeout), show_output(output))]
    TimedOut {
        command: String,
        timeout: Duration,
        output: String,
    },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

fn show_output(output: &str) -> String {
    let trimmed = output.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

/// Runs `command` through `/bin/sh -c` and returns its combined output
/// (stdout, then stderr) when it exits 0 within `timeout`.
pub async fn run(command: &str, timeout: Duration) -> Result<String, CommandError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            command: command.to_string(),
            source,
        })?;
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_capped(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s)));
    let pid = child.id();

    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let status = match waited {
        Ok(Ok(status)) => Some(status),
        Ok(Err(source)) => {
            return Err(CommandError::Wait {
                command: command.to_string(),
                source,
            });
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group id is the shell's pid (process_group(0)); killing
                // the group also takes the shell's children.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            None
        }
    };

    let mut output = String::new();
    for reader in [stdout, stderr].into_iter().flatten() {
        let abort = reader.abort_handle();
        match tokio::time::timeout(OUTPUT_GRACE, reader).await {
            Ok(Ok(bytes)) => output.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Err(_)) => {}
            Err(_) => abort.abort(),
        }
    }
    if output.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
        output.push('…');
    }

    match status {
        Some(status) if status.success() => Ok(output),
        Some(status) => Err(CommandError::Failed {
            command: command.to_string(),
            status,
            output,
        }),
        None => Err(CommandError::TimedOut {
            command: command.to_string(),
            timeout,
            output,
        }),
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut reader: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Keep draining past the cap so the command never blocks on a full pipe.
                if out.len() < MAX_OUTPUT * 2 {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn success_returns_output() {
        let out = run("echo out; echo err >&2", Duration::from_secs(5))
            .await
            .expect("command succeeds");
        assert_eq!(out, "out\nerr\n");
    }

    #[tokio::test]
    async fn failure_reports_status_and_output() {
        let err = run("echo broken config; exit 3", Duration::from_secs(5))
            .await
            .expect_err("exit 3 is a failure");
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("broken config"), "{text}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let cmd = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let start = Instant::now();
        let err = run(&cmd, Duration::from_millis(200))
            .await
            .expect_err("must time out");
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(!marker.exists(), "the background child was not killed");
    }

    #[tokio::test]
    async fn a_daemon_holding_the_pipe_does_not_block() {
        let start = Instant::now();
        run("sleep 3 & echo started", Duration::from_secs(10))
            .await
            .expect("the shell exits 0 at once");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
