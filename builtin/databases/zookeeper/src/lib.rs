//! confd's zookeeper backend: znode trees read recursively, as the original confd reads them (a
//! node without children is a key whose value is its data; a node with children contributes
//! only its children), and watches on ZooKeeper's persistent recursive watches.
//!
//! One persistent recursive watch per watched prefix lives as long as the backend: it records
//! which paths changed and when, in one sequence shared by every watch, so a change made
//! between two `watch_prefix` calls is seen by the next call and nothing is missed between a
//! wake-up and the next wait (there is no re-arming). A lost session ends the client and its
//! watches, and a reconnect ends the watches too (ZooKeeper may not report what changed while
//! the client was away): the running watch returns so the host reads everything again, and the
//! next call sets a new watch (connecting afresh if the session is gone).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_sdk::keys::{common_prefix, is_under};
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use futures_util::StreamExt as _;
use serde::Deserialize;
use zookeeper_client as zk;

/// How long to wait for a connection, and the session timeout asked for.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Znodes read at once while walking a tree.
const PARALLEL_READS: usize = 32;

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "zookeeper";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "ZooKeeper znodes; watches with persistent recursive watches",
    default_nodes: &["127.0.0.1:2181"],
    settings: &[
        Setting::from("nodes", &["nodes"], "servers (host:port)"),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect time limit and session timeout (default 5s)",
        ),
    ],
    capabilities: &["watch"],
    srv_nodes: SrvNodes::HostPort,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Zookeeper>,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Settings {
    #[serde(alias = "machines")]
    nodes: Vec<String>,
    #[serde(with = "confd_sdk::config::duration")]
    dial_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            nodes: Vec::new(),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// A new, unconfigured backend (the factory `confd_sdk::serve` takes).
pub fn database() -> Zookeeper {
    Zookeeper::new()
}

/// The zookeeper backend. Configure it, then read and watch.
#[derive(Debug, Default)]
pub struct Zookeeper {
    state: Configured<Connection>,
}

impl Zookeeper {
    pub fn new() -> Zookeeper {
        Zookeeper::default()
    }

    fn connection(&self) -> Result<Arc<Connection>, Error> {
        self.state.get(NAME)
    }

    /// How many persistent watches are open (one per distinct watched prefix).
    pub fn open_watches(&self) -> usize {
        self.connection().map_or(0, |c| {
            c.watches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|w| !w.is_broken())
                .count()
        })
    }
}

/// What one persistent watch has seen: the sequence number of the last change per path.
#[derive(Debug, Default)]
struct Seen {
    changed: BTreeMap<String, u64>,
    /// The watch ended (session lost or closed) at this sequence number.
    broken: Option<u64>,
}

struct Watch {
    /// The sequence number when the watch was set: a caller's index older than this may have
    /// missed changes.
    since: u64,
    seen: Mutex<Seen>,
    bumped: tokio::sync::watch::Sender<u64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Watch {
    fn is_broken(&self) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .broken
            .is_some()
    }

    /// The newest change after `index` under one of `keys`.
    fn change_after(&self, keys: &[String], index: u64) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .flat_map(|key| {
                seen.changed
                    .range(key.clone()..)
                    .take_while(move |(path, _)| path.starts_with(key.as_str()))
                    .filter(move |(path, _)| is_under(path, key))
                    .map(|(_, seq)| *seq)
            })
            .chain(seen.broken)
            .filter(|seq| *seq > index)
            .max()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

struct Connection {
    servers: String,
    dial_timeout: Duration,
    client: tokio::sync::Mutex<Option<zk::Client>>,
    /// One sequence for every watch, so indexes stay comparable across a re-made watch.
    sequence: Arc<AtomicU64>,
    watches: Mutex<HashMap<String, Arc<Watch>>>,
    building: tokio::sync::Mutex<()>,
}

fn error(servers: &str, path: &str, err: &zk::Error) -> Error {
    let kind = match err {
        zk::Error::NoAuth | zk::Error::AuthFailed => ErrorKind::PermissionDenied,
        zk::Error::ConnectionLoss
        | zk::Error::SessionExpired
        | zk::Error::ClientClosed
        | zk::Error::Timeout
        | zk::Error::NoHosts
        | zk::Error::SessionMoved
        | zk::Error::Throttled => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let at = if path.is_empty() {
        String::new()
    } else {
        format!(" ({path})")
    };
    Error::new(kind, format!("zookeeper {servers}{at}: {err}"))
}

/// Whether the client is done for and must be made anew.
fn fatal(err: &zk::Error) -> bool {
    matches!(
        err,
        zk::Error::SessionExpired
            | zk::Error::ClientClosed
            | zk::Error::AuthFailed
            | zk::Error::ConnectionLoss
    )
}

/// The deepest znode path every key lies under (`/app` for `/app/a` and `/app/b`, `/` for
/// `/app` and `/apple`).
fn path_prefix(keys: &[String]) -> String {
    let common = common_prefix(keys);
    let whole = znode(&common);
    if keys.iter().all(|k| is_under(&znode(k), &whole)) {
        return whole;
    }
    match common.rfind('/') {
        Some(at) => znode(&common[..at]),
        None => "/".to_string(),
    }
}

/// A store key as a znode path: `/` for the root, no trailing slash otherwise.
fn znode(key: &str) -> String {
    let trimmed = key.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

impl Connection {
    async fn client(&self) -> Result<zk::Client, Error> {
        let mut cached = self.client.lock().await;
        if let Some(client) = cached.as_ref()
            && !client.state().is_terminated()
        {
            return Ok(client.clone());
        }
        let connect = zk::Client::connector()
            .with_session_timeout(self.dial_timeout)
            .with_connection_timeout(self.dial_timeout)
            .connect(&self.servers);
        let client = match tokio::time::timeout(self.dial_timeout * 2, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(error(&self.servers, "", &e)),
            Err(_) => {
                return Err(Error::unavailable(format!(
                    "zookeeper {}: no session within {:?}",
                    self.servers,
                    self.dial_timeout * 2
                )));
            }
        };
        *cached = Some(client.clone());
        Ok(client)
    }

    /// Maps a client error, dropping a client that cannot go on.
    async fn failed(&self, path: &str, err: zk::Error) -> Error {
        if fatal(&err) {
            *self.client.lock().await = None;
        }
        error(&self.servers, path, &err)
    }

    /// The leaves under `path` (itself, if it has no children) with their values.
    async fn walk(
        &self,
        client: &zk::Client,
        path: String,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut pending = vec![path];
        while !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            let mut reads = futures_util::stream::iter(batch.into_iter().map(|path| async move {
                let read = client.get_data(&path).await;
                (path, read)
            }))
            .buffer_unordered(PARALLEL_READS);
            let mut parents = Vec::new();
            while let Some((path, read)) = reads.next().await {
                match read {
                    Ok((data, stat)) if stat.num_children == 0 => {
                        let value = confd_sdk::text::value_string(NAME, &path, data)?;
                        out.insert(path, value);
                    }
                    Ok(_) => parents.push(path),
                    // Deleted while we walked: it is not there.
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(self.failed(&path, e).await),
                }
            }
            drop(reads);
            for parent in parents {
                match client.list_children(&parent).await {
                    Ok(children) => {
                        pending.extend(children.iter().map(|c| child_path(&parent, c)));
                    }
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(self.failed(&parent, e).await),
                }
            }
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let client = self.client().await?;
        let mut values = BTreeMap::new();
        for key in keys {
            let mut found = BTreeMap::new();
            self.walk(&client, znode(key), &mut found).await?;
            values.extend(found.into_iter().filter(|(path, _)| is_under(path, key)));
        }
        Ok(values)
    }

    /// The live watch of `prefix`, set now if there is none (or the last one broke).
    async fn watch_for(&self, prefix: &str) -> Result<Arc<Watch>, Error> {
        let existing = |watches: &HashMap<String, Arc<Watch>>| {
            watches.get(prefix).filter(|w| !w.is_broken()).cloned()
        };
        if let Some(w) = existing(&self.watches.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(w);
        }
        let _building = self.building.lock().await;
        if let Some(w) = existing(&self.watches.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(w);
        }
        let client = self.client().await?;
        let mut watcher = match client
            .watch(prefix, zk::AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(w) => w,
            Err(e) => return Err(self.failed(prefix, e).await),
        };
        let since = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let (bumped, _) = tokio::sync::watch::channel(since);
        let watch = Arc::new(Watch {
            since,
            seen: Mutex::new(Seen::default()),
            bumped,
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&watch);
        let sequence = self.sequence.clone();
        let task = tokio::spawn(async move {
            let mut disconnected = false;
            loop {
                let event = watcher.changed().await;
                let Some(watch) = weak.upgrade() else { return };
                let seq = sequence.fetch_add(1, Ordering::SeqCst) + 1;
                let mut seen = watch.seen.lock().unwrap_or_else(|p| p.into_inner());
                match event.event_type {
                    zk::EventType::Session => match event.session_state {
                        zk::SessionState::Disconnected => {
                            disconnected = true;
                            continue;
                        }
                        // Changes made while disconnected may not be reported, and the watch
                        // may not be set again on the server: this watch ends, the next call
                        // sets a new one and the host reads everything again.
                        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
                            if disconnected =>
                        {
                            seen.broken = Some(seq);
                            drop(seen);
                            watch.bumped.send_replace(seq);
                            return;
                        }
                        state if state.is_terminated() => {
                            // The watcher must not be polled after a terminal state.
                            seen.broken = Some(seq);
                            drop(seen);
                            watch.bumped.send_replace(seq);
                            return;
                        }
                        _ => continue,
                    },
                    _ => {
                        seen.changed.insert(event.path.clone(), seq);
                    }
                }
                drop(seen);
                watch.bumped.send_replace(seq);
            }
        });
        *watch.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(prefix.to_string(), watch.clone());
        Ok(watch)
    }

    async fn watch(&self, prefix: &str, keys: &[String], wait_index: u64) -> Result<u64, Error> {
        let watch = self.watch_for(&znode(prefix)).await?;
        if wait_index == 0 {
            return Ok(self.sequence.load(Ordering::SeqCst).max(1));
        }
        if wait_index < watch.since {
            // Set after the caller's index: what changed in between is unknown.
            return Ok(self.sequence.load(Ordering::SeqCst).max(wait_index + 1));
        }
        let mut bumped = watch.bumped.subscribe();
        loop {
            if let Some(seq) = watch.change_after(keys, wait_index) {
                return Ok(seq);
            }
            if bumped.changed().await.is_err() {
                return Ok(self.sequence.fetch_add(1, Ordering::SeqCst) + 1);
            }
        }
    }
}

#[confd_sdk::async_trait]
impl Database for Zookeeper {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let settings: Settings = confd_sdk::config::decode(&config)?;
        let nodes: Vec<String> = if settings.nodes.is_empty() {
            DESCRIPTOR
                .default_nodes
                .iter()
                .map(|n| n.to_string())
                .collect()
        } else {
            settings.nodes
        };
        for node in &nodes {
            if node.contains("://") || !node.contains(':') {
                return Err(Error::invalid_config(format!(
                    "key \"nodes\": invalid value {node:?}: expected host:port"
                )));
            }
        }
        self.state.set(Connection {
            servers: nodes.join(","),
            dial_timeout: settings.dial_timeout,
            client: tokio::sync::Mutex::new(None),
            sequence: Arc::new(AtomicU64::new(0)),
            watches: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
        });
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
        let keys = confd_sdk::keys::watched(prefix, keys);
        // Watch the znode above every key: a resource's keys may lie outside its prefix.
        let watched = path_prefix(&keys);
        self.connection()?.watch(&watched, &keys, wait_index).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_znode_paths() {
        assert_eq!(znode("/"), "/");
        assert_eq!(znode(""), "/");
        assert_eq!(znode("/app/"), "/app");
        assert_eq!(znode("app"), "/app");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        let keys = |list: &[&str]| list.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(path_prefix(&keys(&["/app/a", "/app/b"])), "/app");
        assert_eq!(path_prefix(&keys(&["/app", "/apple"])), "/");
        assert_eq!(path_prefix(&keys(&["/app/x", "/app/xy"])), "/app");
        assert_eq!(path_prefix(&keys(&["/app/"])), "/app");
    }

    #[test]
    fn settings_refuse_urls_and_unknown_keys() {
        let bad = Config::from([("dialTimout".to_string(), "1s".to_string())]);
        assert!(confd_sdk::config::decode::<Settings>(&bad).is_err());
    }
}
