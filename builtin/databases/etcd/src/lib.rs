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
mod members;
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
    TxnOpResponse, WatchClient, WatchOptions, WatchStream,
};
use members::{Failure, Members};

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
        Setting::from(
            "insecure",
            &["client_insecure"],
            "do not verify the members' TLS certificates",
        ),
        Setting::from("basicAuth", &["basic_auth"], "use basic authentication"),
        Setting::from("username", &["username"], "basic authentication user"),
        Setting::from("password", &["password"], "basic authentication password"),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect and request time limit (default 5s)",
        ),
        Setting::from(
            "autoSyncInterval",
            &[],
            "read the cluster's member list at start and at this interval, and use the \
             members it names (off by default)",
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
    members: Arc<Members>,
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

    /// The member calls go to now (its URL), empty before configure.
    pub fn member_in_use(&self) -> String {
        self.connection()
            .map(|c| c.members.current())
            .unwrap_or_default()
    }

    /// The members known now (the nodes given, and with `autoSyncInterval` those the cluster's
    /// member list names), without those the list no longer names.
    pub fn member_urls(&self) -> Vec<String> {
        self.connection()
            .map(|c| c.members.urls())
            .unwrap_or_default()
    }

    /// How many members are known now (see [`Etcd::member_urls`]).
    pub fn members_known(&self) -> usize {
        self.member_urls().len()
    }

    /// How many members are marked down right now.
    pub fn members_down(&self) -> usize {
        self.connection().map_or(0, |c| c.members.down())
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

/// The client options every member shares (authentication), and the TLS settings of the members'
/// channels.
fn connect_options(settings: &Settings) -> Result<(ConnectOptions, Option<TlsOptions>), Error> {
    let mut options = ConnectOptions::new();
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.clone());
    }
    let mut tls = None;
    if settings.tls() {
        let mut config = TlsOptions::new();
        if let Some(ca) = &settings.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read_file("caCert", ca)?));
        }
        if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
            config = config.identity(Identity::from_pem(
                read_file("cert", cert)?,
                read_file("key", key)?,
            ));
        }
        tls = Some(config);
    }
    Ok((options, tls))
}

impl Connection {
    fn nodes(&self) -> String {
        self.members.names()
    }

    /// Runs one etcd call on the member in use, moving to the next member when it fails (see
    /// `members`), each call under the dial timeout: a call that cannot reach a member would
    /// otherwise wait as long as the connection attempt does.
    async fn call<T, F, Fut>(&self, call: F) -> Result<(T, usize), Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        match self.members.run(call).await {
            Ok(answer) => Ok(answer),
            Err((Failure::Etcd(e), _)) => Err(self.error(e)),
            Err((Failure::Timeout, _)) => Err(self.timeout_error().await),
        }
    }

    async fn timeout_error(&self) -> Error {
        // The client cannot say why it got no answer: ask the network.
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

    fn error(&self, err: etcd_client::Error) -> Error {
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
        Error::new(kind, format!("etcd {}: {}", self.nodes(), describe(&err)))
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
        let limit = i64::try_from(MAX_CACHED_KEYS + 1).unwrap_or(i64::MAX);
        let (response, _) = self
            .call(|client| async move {
                kv(&client)
                    .get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_limit(limit)),
                    )
                    .await
            })
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
        let (stream, member) = open_watch(&self.members, prefix, revision).await.map_err(
            |(failure, _)| match failure {
                Failure::Etcd(e) => retry(self.error(e)),
                Failure::Timeout => retry(Error::unavailable(format!(
                    "etcd {}: no answer within {:?}",
                    self.nodes(),
                    self.settings.dial_timeout
                ))),
            },
        )?;
        Ok(self.caches.start(
            prefix.to_string(),
            revision,
            values,
            cache::Feed {
                stream,
                member,
                members: Arc::clone(&self.members),
            },
        ))
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
        // Every batch goes to one member, the later ones at the first one's revision: one
        // snapshot. A member failing half way starts the read again on the next one.
        let (values, _) = self
            .call(|client| async move { read_batches(&client, keys).await })
            .await?;
        values
    }

    async fn current_revision(&self, key: &str) -> Result<u64, Error> {
        let (response, _) = self
            .call(|client| async move {
                kv(&client)
                    .get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await
            })
            .await?;
        let revision = response.header().map_or(1, |h| h.revision());
        Ok(u64::try_from(revision).unwrap_or(1).max(1))
    }

    async fn watch(&self, keys: &[String], wait_index: u64) -> Result<u64, Error> {
        let prefix = common_prefix(keys);
        // A stream that breaks is opened again on the next member, from the same index: nothing
        // was returned yet, so nothing is missed or repeated. Each member gets one chance.
        let mut breaks = 0;
        loop {
            let (mut stream, member) = open_watch(&self.members, &prefix, wait_index)
                .await
                .map_err(|(failure, _)| match failure {
                    Failure::Etcd(e) => self.error(e),
                    Failure::Timeout => Error::unavailable(format!(
                        "etcd {}: no answer within {:?}",
                        self.nodes(),
                        self.settings.dial_timeout
                    )),
                })?;
            let broken = loop {
                let message = match stream.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break "the watch stream was closed".to_string(),
                    Err(e) if members::member_failed(&e) => break describe(&e),
                    Err(e) => return Err(self.error(e)),
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
            };
            self.members.failed(member, &broken);
            breaks += 1;
            if breaks >= self.members.len() {
                return Err(Error::unavailable(format!(
                    "etcd {}: {broken}",
                    self.members.url(member)
                )));
            }
        }
    }
}

/// Opens a watch of everything under `prefix` after revision `after` on the member in use (or the
/// next one that answers).
pub(crate) async fn open_watch(
    members: &Members,
    prefix: &str,
    after: u64,
) -> Result<(WatchStream, usize), (Failure, usize)> {
    let start = i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX);
    members
        .run(|client| async move {
            let options = WatchOptions::new().with_prefix().with_start_revision(start);
            watcher(&client).watch(prefix, Some(options)).await
        })
        .await
}

/// Every value under `keys`, read in transactions of at most [`MAX_OPS_PER_TXN`] gets from one
/// member at one revision. A key or value that is not UTF-8 is the inner error.
async fn read_batches(
    client: &Client,
    keys: &[String],
) -> Result<Result<BTreeMap<String, String>, Error>, etcd_client::Error> {
    let mut values = BTreeMap::new();
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
        let response = kv(client).txn(Txn::new().and_then(ops)).await?;
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        for (requested, op) in batch.iter().zip(response.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                continue;
            };
            for kv in get.kvs() {
                let key = match key_under(kv.key(), requested) {
                    Ok(Some(key)) => key,
                    Ok(None) => continue,
                    Err(e) => return Ok(Err(e)),
                };
                match confd_sdk::text::value(NAME, key, kv.value()) {
                    Ok(value) => {
                        values.insert(key.to_string(), value.to_string());
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
    }
    Ok(Ok(values))
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
        let (options, tls) = connect_options(&settings)?;
        let members = Members::new(&settings, options, tls)?;
        let connection = Connection {
            settings,
            members,
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
        let keys = confd_sdk::keys::watched(prefix, keys);
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
        let mut info = DESCRIPTOR.info();
        info.member = self.member_in_use();
        Ok(info)
    }
}
