//! confd's etcd v3 backend: reads pinned to one revision, batched within
//! etcd's transaction limit, and watches on etcd's native watch API with
//! revisions as the index, so nothing between a read and a watch is missed.
//!
//! In watch mode each watched prefix gets one long-lived etcd watch feeding
//! an in-memory copy of the prefix (see `cache`): `watch_prefix` waits on
//! that copy and `get_values` for keys under it is answered from it, at one
//! revision that is at least as new as the index the last `watch_prefix`
//! returned. Reads no live copy covers (all reads outside watch mode) go to
//! etcd, batched and pinned to one revision. A copy whose watch breaks (error,
//! cancel, compaction) is dropped and the calls go to etcd until a new one is
//! built.

mod cache;
mod settings;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache::{Caches, PrefixCache};
use confd_sdk::keys::{common_prefix, is_under};
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::Mutex;

pub use settings::{DEFAULT_DIAL_TIMEOUT, Settings};

/// etcd's default `--max-txn-ops`: more operations in one Txn are refused.
pub const MAX_OPS_PER_TXN: usize = 128;

/// A prefix holding more keys than this is not copied into memory: its
/// reads and watches go to etcd as outside watch mode.
pub const MAX_CACHED_KEYS: usize = 100_000;

/// The largest answer accepted from etcd: what etcd's own Go client accepts (clientv3's default
/// `MaxCallRecvMsgSize` is `math.MaxInt32`), since etcd itself bounds answers only by that. The
/// gRPC default of 4 MiB failed a 10 MB value, or a prefix of 60 values of 100 KB.
pub const MAX_RESPONSE_BYTES: usize = 0x7fff_ffff;

/// How long a prefix found too big to copy is left alone before trying again.
const TOO_BIG_RETRY: Duration = Duration::from_secs(600);

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "etcd";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &["etcdv3"],
    summary: "etcd v3; watches with etcd watches",
    default_nodes: &["127.0.0.1:2379"],
    settings: &[
        Setting::from(
            "nodes",
            &["nodes"],
            "endpoints (http[s]://host:port or host:port)",
        ),
        Setting::from("cert", &["client_cert"], "TLS client certificate file"),
        Setting::from("key", &["client_key"], "TLS client key file"),
        Setting::from("caCert", &["client_cakeys"], "TLS CA certificate file"),
        Setting::from("basicAuth", &["basic_auth"], "use basic authentication"),
        Setting::from("username", &["username"], "basic authentication user"),
        Setting::from("password", &["password"], "basic authentication password"),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect and request time limit (default 5s)",
        ),
    ],
    capabilities: &["watch"],
    srv_nodes: SrvNodes::Url,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Etcd>,
};

/// A new, unconfigured backend (the factory `confd_sdk::serve` takes).
pub fn database() -> Etcd {
    Etcd::new()
}

/// The etcd backend. Configure it, then read and watch.
#[derive(Debug, Default)]
pub struct Etcd {
    state: Configured<Connection>,
}

/// One configured client; created lazily so a store that is down at
/// start-up gives errors per call instead of a failed configure.
struct Connection {
    settings: Settings,
    options: ConnectOptions,
    client: Mutex<Option<Client>>,
    caches: Caches,
}

impl Etcd {
    pub fn new() -> Etcd {
        Etcd::default()
    }

    fn connection(&self) -> Result<Arc<Connection>, Error> {
        self.state.get(NAME)
    }

    /// How many etcd watches feed in-memory copies right now (one per
    /// distinct watched prefix).
    pub fn open_watches(&self) -> usize {
        self.connection().map_or(0, |c| c.caches.live())
    }
}

/// The key-value API of `client`, taking answers up to [`MAX_RESPONSE_BYTES`].
fn kv(client: &Client) -> KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// The watch API of `client`, taking answers up to [`MAX_RESPONSE_BYTES`].
fn watcher(client: &Client) -> WatchClient {
    client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// A store key as text, when it lies under `requested` (a key that does not is skipped, even
/// when it is not UTF-8: nobody asked for it).
fn key_under<'a>(key: &'a [u8], requested: &str) -> Result<Option<&'a str>, Error> {
    match confd_sdk::text::key(NAME, key) {
        Ok(text) => Ok(is_under(text, requested).then_some(text)),
        Err(e) if is_under(&String::from_utf8_lossy(key), requested) => Err(e),
        Err(_) => Ok(None),
    }
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::invalid_config(format!("reading {what} {}: {e}", path.display())))
}

fn connect_options(settings: &Settings) -> Result<ConnectOptions, Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(settings.dial_timeout)
        // Keep-alive pings notice a silently dead node during a long watch.
        .with_keep_alive(Duration::from_secs(10), settings.dial_timeout)
        .with_keep_alive_while_idle(true);
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.clone());
    }
    if settings.tls() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &settings.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(read_file("caCert", ca)?));
        }
        if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
            tls = tls.identity(Identity::from_pem(
                read_file("cert", cert)?,
                read_file("key", key)?,
            ));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

impl Connection {
    fn nodes(&self) -> String {
        self.settings.nodes.join(", ")
    }

    /// Runs one etcd call under the dial timeout; a call that cannot reach
    /// any node otherwise waits forever in the channel's load balancer.
    async fn deadline<T>(
        &self,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.settings.dial_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e).await),
            Err(_) => Err(self.timeout_error().await),
        }
    }

    async fn timeout_error(&self) -> Error {
        // The client cannot say why it got no answer: ask the network.
        self.forget_client().await;
        let mut causes = Vec::new();
        for node in &self.settings.nodes {
            causes.push(format!("{node}: {}", probe(node).await));
        }
        Error::unavailable(format!(
            "etcd: no answer within {:?} ({})",
            self.settings.dial_timeout,
            causes.join("; ")
        ))
    }

    async fn error(&self, err: etcd_client::Error) -> Error {
        let kind = match &err {
            etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
                ErrorKind::InvalidConfig
            }
            etcd_client::Error::GRpcStatus(status) => match status.code() {
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                    ErrorKind::PermissionDenied
                }
                // etcd reports a bad password or a missing user as
                // InvalidArgument ("authentication failed", "user name is empty").
                tonic::Code::InvalidArgument
                    if status.message().contains("authentication")
                        || status.message().contains("user name") =>
                {
                    ErrorKind::PermissionDenied
                }
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ErrorKind::Internal,
                _ => ErrorKind::Unavailable,
            },
            _ => ErrorKind::Unavailable,
        };
        // A broken connection or an expired token: start afresh next call.
        self.forget_client().await;
        Error::new(kind, format!("etcd {}: {}", self.nodes(), describe(&err)))
    }

    async fn forget_client(&self) {
        *self.client.lock().await = None;
    }

    async fn client(&self) -> Result<Client, Error> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref() {
            return Ok(client.clone());
        }
        let nodes = self.settings.nodes.clone();
        let options = self.options.clone();
        let client = match tokio::time::timeout(
            self.settings.dial_timeout,
            Client::connect(nodes, Some(options)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                drop(cached);
                return Err(self.error(e).await);
            }
            Err(_) => {
                drop(cached);
                return Err(self.timeout_error().await);
            }
        };
        *cached = Some(client.clone());
        Ok(client)
    }

    /// A live copy serving `keys` (built on first use), or `None` when
    /// there is none and building one failed recently: ask etcd then.
    async fn cache_for(&self, keys: &[String]) -> Option<Arc<PrefixCache>> {
        let prefix = cache::prefix_for(&common_prefix(keys));
        if let Some(cache) = self.caches.covering(&prefix) {
            return Some(cache);
        }
        if self.caches.recently_failed(&prefix) {
            return None;
        }
        let _building = self.caches.building.lock().await;
        if let Some(cache) = self.caches.covering(&prefix) {
            return Some(cache);
        }
        match self.start_cache(&prefix).await {
            Ok(cache) => Some(cache),
            Err((e, retry_after)) => {
                tracing::debug!("etcd: not copying {prefix:?} into memory: {e}");
                self.caches.note_failure(&prefix, retry_after);
                None
            }
        }
    }

    /// Reads `prefix` at revision `S` and starts the watch from `S + 1` that
    /// keeps the copy current: nothing between the read and the watch is lost.
    async fn start_cache(&self, prefix: &str) -> Result<Arc<PrefixCache>, (Error, Duration)> {
        let retry = |e| (e, cache::RETRY_AFTER);
        let client = self.client().await.map_err(retry)?;
        let limit = i64::try_from(MAX_CACHED_KEYS + 1).unwrap_or(i64::MAX);
        let response = self
            .deadline(kv(&client).get(
                prefix,
                Some(GetOptions::new().with_prefix().with_limit(limit)),
            ))
            .await
            .map_err(retry)?;
        if response.more() || response.kvs().len() > MAX_CACHED_KEYS {
            return Err((
                Error::internal(format!("more than {MAX_CACHED_KEYS} keys")),
                TOO_BIG_RETRY,
            ));
        }
        let revision = response.header().map_or(0, |h| h.revision());
        let revision = u64::try_from(revision).unwrap_or(0).max(1);
        // Bytes as stored: a read decodes them (and fails on any that are not UTF-8).
        let values: BTreeMap<Vec<u8>, Vec<u8>> = response
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        let start = i64::try_from(revision + 1).unwrap_or(i64::MAX);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let stream = self
            .deadline(watcher(&client).watch(prefix, Some(options)))
            .await
            .map_err(retry)?;
        Ok(self
            .caches
            .start(prefix.to_string(), revision, values, stream, self.nodes()))
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        if let Some(cache) = self.caches.covering_keys(keys)
            && let Some(values) = cache.read(keys)
        {
            tracing::trace!(
                "etcd: {} keys read from the copy of {:?}",
                keys.len(),
                cache.prefix()
            );
            return values;
        }
        let client = self.client().await?;
        let mut values = BTreeMap::new();
        // Later batches read at the first batch's revision: one snapshot.
        let mut revision = 0;
        for batch in keys.chunks(MAX_OPS_PER_TXN) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|key| {
                    TxnOp::get(
                        key.as_str(),
                        Some(GetOptions::new().with_prefix().with_revision(revision)),
                    )
                })
                .collect();
            let response = self
                .deadline(kv(&client).txn(Txn::new().and_then(ops)))
                .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for (requested, op) in batch.iter().zip(response.op_responses()) {
                let TxnOpResponse::Get(get) = op else {
                    continue;
                };
                for kv in get.kvs() {
                    if let Some(key) = key_under(kv.key(), requested)? {
                        let value = confd_sdk::text::value(NAME, key, kv.value())?;
                        values.insert(key.to_string(), value.to_string());
                    }
                }
            }
        }
        Ok(values)
    }

    async fn current_revision(&self, key: &str) -> Result<u64, Error> {
        let client = self.client().await?;
        let response = self
            .deadline(kv(&client).get(key, Some(GetOptions::new().with_prefix().with_count_only())))
            .await?;
        let revision = response.header().map_or(1, |h| h.revision());
        Ok(u64::try_from(revision).unwrap_or(1).max(1))
    }

    async fn watch(&self, keys: &[String], wait_index: u64) -> Result<u64, Error> {
        let client = self.client().await?;
        let start = i64::try_from(wait_index.saturating_add(1)).unwrap_or(i64::MAX);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = self
            .deadline(watcher(&client).watch(common_prefix(keys), Some(options)))
            .await?;
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    self.forget_client().await;
                    return Err(Error::unavailable(format!(
                        "etcd {}: the watch stream was closed",
                        self.nodes()
                    )));
                }
                Err(e) => return Err(self.error(e).await),
            };
            if let Some(header) = message.header()
                && header.revision() > 0
                && u64::try_from(header.revision()).unwrap_or(0) < wait_index
            {
                // The store is behind the caller's index: it was rebuilt or
                // restored. Waiting would hide every change until it caught
                // up; start again from its current revision instead.
                return Ok(u64::try_from(header.revision()).unwrap_or(1).max(1));
            }
            if message.compact_revision() > 0 {
                // The revisions after wait_index are gone: everything must
                // be read again, from at least the compaction point.
                let compacted = u64::try_from(message.compact_revision()).unwrap_or(0);
                return Ok(compacted.max(wait_index + 1));
            }
            if message.canceled() {
                return Err(Error::unavailable(format!(
                    "etcd {}: the watch was cancelled: {}",
                    self.nodes(),
                    message.cancel_reason()
                )));
            }
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                if keys.iter().any(|k| is_under(&key, k)) {
                    return Ok(u64::try_from(kv.mod_revision()).unwrap_or(wait_index + 1));
                }
            }
        }
    }
}

/// Plain error text: the client's `Display` for a gRPC status is verbose.
fn describe(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let mut text = status.message().to_string();
            if let Some(source) = std::error::Error::source(status) {
                text = format!("{text} ({source})");
            }
            text
        }
        other => other.to_string(),
    }
}

/// What a plain TCP connect to a node says, for "why is it unreachable".
async fn probe(node: &str) -> String {
    let address = node
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    match tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(address.as_str()),
    )
    .await
    {
        Ok(Ok(_)) => "the port accepts connections but etcd did not answer".to_string(),
        Ok(Err(e)) => format!("connect: {e}"),
        Err(_) => "connect: no answer within 1s".to_string(),
    }
}

#[confd_sdk::async_trait]
impl Database for Etcd {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let settings = settings::decode(&config)?;
        let options = connect_options(&settings)?;
        let connection = Connection {
            settings,
            options,
            client: Mutex::new(None),
            caches: Caches::default(),
        };
        self.state.set(connection);
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.connection()?.get_values(keys).await
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        let connection = self.connection()?;
        let keys = if keys.is_empty() {
            vec![prefix.to_string()]
        } else {
            keys.to_vec()
        };
        let cache = connection.cache_for(&keys).await;
        if wait_index == 0 {
            if let Some(revision) = cache.as_ref().and_then(|c| c.revision()) {
                return Ok(revision);
            }
            return connection.current_revision(&common_prefix(&keys)).await;
        }
        if let Some(cache) = cache
            && let Some(revision) = cache.wait(&keys, wait_index).await
        {
            return Ok(revision);
        }
        connection.watch(&keys, wait_index).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}
