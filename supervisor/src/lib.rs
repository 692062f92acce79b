//! confd-supervisor: starts plugin processes and keeps them running, the host's half of go-plugin
//! that a plugin author never needs. The SDK holds what both sides share (the handshake line, the
//! gRPC connection as a `Database`); this crate owns the process: spawn, environment, handshake,
//! reaping, stderr forwarding with bounded memory, and supervision.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use confd_sdk::Database;
//! use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};
//!
//! let command = PluginCommand::new("env", "/usr/bin/confd")
//!     .arg("internal-plugin")
//!     .arg("database")
//!     .arg("env");
//! let plugin = PluginClient::start(command, ClientOptions::supervised()).await?;
//! plugin.configure(Default::default()).await?;
//! let values = plugin.get_values(&["/app".to_string()]).await?;
//! plugin.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! A supervised plugin that exits, crashes, misses a call deadline or fails a health probe while
//! a watch is open is killed (its whole process group), restarted with exponential backoff and
//! jitter (the first retry at once, at most 30 s apart), configured again with its last settings,
//! and used by the next call; calls made meanwhile wait a little for it, then fail naming it. A
//! caller never sees a half-answer: a call either returns the plugin's answer or an error.

mod child_env;
mod client;
mod error;
mod process;
mod transport;

pub use client::{ClientOptions, PluginClient, PluginCommand, PluginEvent};
pub use error::PluginError;
pub use transport::{SOCKET_DIR_PREFIX, SocketDir, Transport};
