//! The confd plugin SDK: everything a database plugin author needs, and the
//! host's connection to a running plugin.
//!
//! A plugin implements [`Database`] and calls [`serve`] from `main`:
//!
//! ```no_run
//! # use confd_sdk::{Database, Error, Config};
//! # use std::collections::BTreeMap;
//! # #[derive(Default)] struct Memory;
//! # #[confd_sdk::async_trait]
//! # impl Database for Memory {
//! #   async fn configure(&self, _c: Config) -> Result<(), Error> { Ok(()) }
//! #   async fn get_values(&self, _k: &[String]) -> Result<BTreeMap<String, String>, Error> { Ok(BTreeMap::new()) }
//! #   async fn watch_prefix(&self, _p: &str, _k: &[String], i: u64) -> Result<u64, Error> { Ok(i) }
//! # }
//! fn main() {
//!     confd_sdk::serve(confd_sdk::ServeOpts::new("memory", Memory::default));
//! }
//! ```
//!
//! Settings arrive as a string map; [`config::decode`] turns them into a typed
//! struct with clear, secret-safe errors. Logs written with `tracing` reach the
//! host as hclog JSON lines on stderr.
//!
//! The host side is [`RemoteDatabase`]: a connection to a listening plugin that is
//! itself a [`Database`], so the host cannot tell a plugin from an in-process
//! backend; [`handshake`] parses the line a plugin prints. Starting and
//! supervising plugin processes is the host's own business (the
//! `confd-supervisor` crate): a plugin author compiles no process code and no
//! `unsafe`. See `docs/writing-a-plugin.md`.
//!
//! With the `testing` feature, [`testing`] serves a `Database` in-process through that same
//! path and checks it against the `Database` contract (see "Testing your plugin" in
//! `docs/writing-a-plugin.md`).
//!
//! The wire protocol is HashiCorp go-plugin's gRPC flavour, so a plugin built
//! with this crate loads in a Go go-plugin host and a Go plugin loads in the
//! confd host. The protobuf types never leave this crate. A plugin listens on a Unix socket in
//! a private directory; over TCP it serves only go-plugin's AutoMTLS ([`tls`]).

pub mod config;
mod configured;
mod database;
mod descriptor;
mod error;
pub mod handshake;
pub mod hclog;
mod proto;
mod remote;
mod serve;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod tls;
mod values;

pub use async_trait::async_trait;
/// Key-path rules every backend needs (Go's `path` functions, path-aware matching).
pub use confd_keys as keys;
pub use configured::Configured;
pub use database::{Config, Database, DatabaseInfo, SharedDatabase};
pub use descriptor::{Descriptor, Setting, SrvNodes, shared};
pub use error::{Error, ErrorKind, error_chain};
pub use handshake::{
    APP_PROTOCOL_VERSIONS, CORE_PROTOCOL_VERSION, HandshakeProblem, MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
};
pub use remote::{ConnectError, RemoteDatabase, StdioChannel};
#[doc(hidden)]
pub use serve::{HandshakeOut, ListenOpts, ServeError, serve_listening, serve_until_shutdown};
pub use serve::{ServeOpts, TRANSPORT_VAR, serve};
