//! Why a plugin could not be started; every message names the plugin executable.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confd_sdk::handshake::HandshakeProblem;
use confd_sdk::tls::TlsError;
use confd_sdk::{ConnectError, Error, ErrorKind};

/// Why a plugin could not be started. Every message names the plugin executable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The executable could not be run at all.
    // The cause is part of the message, not a `source`, so `{:#}` does not print it twice.
    #[error("plugin {}: cannot run it: {cause}", .path.display())]
    Spawn { path: PathBuf, cause: io::Error },
    /// The process ended before printing its handshake line.
    #[error("plugin {}: exited before the handshake ({status}){}", .path.display(), stderr_note(.stderr))]
    ExitedBeforeHandshake {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    /// Stdout closed without a line, the process still running.
    #[error("plugin {}: closed its stdout without printing a handshake line{}", .path.display(), stderr_note(.stderr))]
    NoHandshake { path: PathBuf, stderr: String },
    /// No line within the start timeout.
    #[error("plugin {}: printed no handshake line within {timeout:?} (timeout while waiting for plugin to start)", .path.display())]
    HandshakeTimeout { path: PathBuf, timeout: Duration },
    /// A line that breaks the go-plugin rules.
    #[error("plugin {}: refused its handshake line {line:?}: {problem}", .path.display())]
    BadHandshake {
        path: PathBuf,
        line: String,
        problem: HandshakeProblem,
    },
    /// The advertised address did not accept a gRPC connection, or its health check failed.
    #[error("plugin {}: {cause}", .path.display())]
    Connect { path: PathBuf, cause: ConnectError },
    /// AutoMTLS could not be set up (the host's certificate, or the plugin's in the handshake).
    #[error("plugin {}: {cause}", .path.display())]
    Tls { path: PathBuf, cause: TlsError },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr said: {stderr}")
    }
}

impl PluginError {
    /// The plugin executable this error is about.
    pub fn path(&self) -> &Path {
        match self {
            PluginError::Spawn { path, .. }
            | PluginError::ExitedBeforeHandshake { path, .. }
            | PluginError::NoHandshake { path, .. }
            | PluginError::HandshakeTimeout { path, .. }
            | PluginError::BadHandshake { path, .. }
            | PluginError::Connect { path, .. }
            | PluginError::Tls { path, .. } => path,
        }
    }
}

impl From<PluginError> for Error {
    fn from(err: PluginError) -> Error {
        let kind = match err {
            PluginError::HandshakeTimeout { .. }
            | PluginError::Connect {
                cause: ConnectError::Timeout(_),
                ..
            } => ErrorKind::Timeout,
            _ => ErrorKind::PluginFailed,
        };
        Error::new(kind, err.to_string())
    }
}
