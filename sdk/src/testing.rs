//! A test kit for plugin authors (cargo feature `testing`): every backend used to build its own
//! scaffolding, and nothing let a third-party plugin check that it honours the [`Database`]
//! contract the host relies on.
//!
//! Two parts:
//!
//! * [`serve_in_process`] serves a `Database` inside the test through the real plugin path: the
//!   server `serve` runs, a Unix socket, the handshake line parsed as the host parses it, and the
//!   host's own connection, [`RemoteDatabase`]. What it returns is itself a `Database`, so a test calls the
//!   served plugin exactly as confd does.
//! * [`Conformance`] runs the contract checks (settings errors name the key, path matching,
//!   concurrent and large reads, exact values, the watch index rules, cancelled watches leave
//!   nothing behind) through both the database itself and its served twin, and reports every
//!   violation at once.
//!
//! ```toml
//! [dev-dependencies]
//! confd-sdk = { version = "...", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! ```no_run
//! use confd_sdk::testing::{Conformance, Fixture, FixtureError};
//! # use confd_sdk::{Config, Database, Error, async_trait};
//! # use std::collections::BTreeMap;
//! # #[derive(Default)] struct MyStore;
//! # #[async_trait] impl Database for MyStore {
//! #   async fn configure(&self, _c: Config) -> Result<(), Error> { Ok(()) }
//! #   async fn get_values(&self, _k: &[String]) -> Result<BTreeMap<String, String>, Error> { Ok(BTreeMap::new()) }
//! #   async fn watch_prefix(&self, _p: &str, _k: &[String], i: u64) -> Result<u64, Error> { Ok(i) }
//! # }
//!
//! /// Writes into the real store the plugin reads (a test server, a temp file, ...).
//! struct MyFixture { address: String }
//!
//! #[async_trait]
//! impl Fixture for MyFixture {
//!     fn config(&self) -> Config {
//!         Config::from([("nodes".to_string(), self.address.clone())])
//!     }
//!     async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
//!         // e.g. client.set(key, value).await?
//!         Ok(())
//!     }
//!     async fn delete(&self, key: &str) -> Result<(), FixtureError> {
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::test]
//! async fn honours_the_database_contract() {
//!     let fixture = MyFixture { address: "127.0.0.1:7000".into() };
//!     Conformance::new(MyStore::default, fixture)
//!         .name("mystore")
//!         .bad_setting("nodes", "")
//!         .run()
//!         .await;
//! }
//! ```

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handshake;
use crate::serve::{HandshakeOut, ServeError, serve_until_shutdown};
use crate::{Config, Database, DatabaseInfo, Error, ErrorKind, RemoteDatabase, ServeOpts};

mod conformance;
#[cfg(test)]
mod tests;

pub use conformance::{
    CHECKS, Conformance, Fixture, FixtureError, Outcome, Report, Target, Verdict,
};

/// From spawning the server to a healthy connection, as `ClientOptions::start_timeout`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server gets to return after `Shutdown` (it drains for at most 500 ms).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A plugin served in this process and the host-side client connected to it.
///
/// It is a [`Database`] (every call goes over gRPC to the server) and dereferences to the
/// [`RemoteDatabase`] for `ping`, `address` and the like. Dropping it stops the server abruptly;
/// [`InProcessPlugin::shutdown`] stops it the way confd does and reports how it went.
pub struct InProcessPlugin {
    client: RemoteDatabase,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

impl std::fmt::Debug for InProcessPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessPlugin")
            .field("name", &self.client.name())
            .field("address", &self.client.address())
            .finish()
    }
}

/// Serves `opts` on the current runtime, as `confd_sdk::serve` would in a plugin process, and
/// connects the host's client to it.
///
/// The server listens on a private Unix socket (TCP with `CONFD_PLUGIN_TRANSPORT=tcp`), hands
/// over the handshake line through a channel instead of stdout, and leaves the test process's
/// signals alone. The client parses that line with the host's rules, dials the address and
/// waits for the health check, as it does for a plugin process.
pub async fn serve_in_process<D: Database>(opts: ServeOpts<D>) -> Result<InProcessPlugin, Error> {
    let name = opts.name().to_string();
    let failed =
        |what: String| Error::new(ErrorKind::PluginFailed, format!("plugin {name}: {what}"));
    let (line_tx, line_rx) = oneshot::channel();
    let mut server =
        tokio::spawn(
            async move { serve_until_shutdown(opts, HandshakeOut::Channel(line_tx)).await },
        );
    let line = tokio::select! {
        line = line_rx => line.ok(),
        () = tokio::time::sleep(START_TIMEOUT) => None,
    };
    let Some(line) = line else {
        // The server ended (or hangs) before its handshake: say why if it can.
        server.abort();
        let why = match tokio::time::timeout(Duration::from_secs(1), &mut server).await {
            Ok(Ok(Err(err))) => err.to_string(),
            Ok(Err(join)) if join.is_panic() => "the database factory or server panicked".into(),
            _ => format!("no handshake line within {START_TIMEOUT:?}"),
        };
        return Err(failed(format!("did not start: {why}")));
    };
    let connected = async {
        let hs = handshake::parse(&line, handshake::APP_PROTOCOL_VERSIONS)
            .map_err(|problem| failed(format!("refused its handshake line {line:?}: {problem}")))?;
        RemoteDatabase::connect(name.clone(), &hs.address, START_TIMEOUT)
            .await
            .map_err(|e| failed(e.to_string()))
    };
    let client = match connected.await {
        Ok(client) => client,
        Err(err) => {
            server.abort();
            return Err(err);
        }
    };
    let stdio_name = name.clone();
    client.forward_stdio(move |_, line| {
        tracing::debug!(plugin = %stdio_name, "{line}");
    });
    Ok(InProcessPlugin {
        client,
        server: Some(server),
    })
}

impl InProcessPlugin {
    /// The host-side client talking to the server.
    pub fn client(&self) -> &RemoteDatabase {
        &self.client
    }

    /// Stops the plugin as confd does (`Shutdown`, then waiting for the server) and returns an
    /// error when the server failed or did not stop within 5 s.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let name = self.client.name().to_string();
        let failed =
            |what: String| Error::new(ErrorKind::PluginFailed, format!("plugin {name}: {what}"));
        self.client.shutdown(STOP_TIMEOUT).await;
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(STOP_TIMEOUT, server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(failed(format!("the server failed: {err}"))),
            Ok(Err(join)) => Err(failed(format!("the server task ended abnormally: {join}"))),
            Err(_) => Err(failed(format!(
                "did not stop within {STOP_TIMEOUT:?} of Shutdown"
            ))),
        }
    }
}

impl std::ops::Deref for InProcessPlugin {
    type Target = RemoteDatabase;
    fn deref(&self) -> &RemoteDatabase {
        &self.client
    }
}

impl Drop for InProcessPlugin {
    fn drop(&mut self) {
        // Dropping the server's future closes its listener and removes the socket directory.
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

#[async_trait::async_trait]
impl Database for InProcessPlugin {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        self.client.configure(config).await
    }
    async fn get_values(
        &self,
        keys: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, Error> {
        self.client.get_values(keys).await
    }
    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        self.client.watch_prefix(prefix, keys, wait_index).await
    }
    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<std::collections::BTreeMap<String, String>>), Error> {
        self.client
            .watch_prefix_values(prefix, keys, wait_index)
            .await
    }
    async fn info(&self) -> Result<DatabaseInfo, Error> {
        self.client.info().await
    }
}
