//! WatchPrefix for redis: keyspace notifications (enabled by the backend
//! when the server allows it), else polling with one warning.
//!
//! One pattern subscription per watched prefix lives from the first
//! `watch_prefix(.., 0)` on, so a change between the host's read and its
//! next watch call is already recorded. Indexes come from one counter per
//! backend: every notification takes the next number.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_sdk::Error;
use confd_sdk::keys::common_prefix;
use futures_util::StreamExt as _;

use crate::keys::{clean, escape_glob, is_under, transform};
use crate::{Connection, Link};

/// Notifications kept per subscription for callers that are behind.
const LOG_LIMIT: usize = 4096;
/// Polling period when notifications cannot be used.
const POLL_PERIOD: Duration = Duration::from_secs(1);

/// Values read for one key set, and the index they were given.
type Snapshot = (u64, BTreeMap<String, String>);

#[derive(Default)]
pub(crate) struct Watches {
    /// Never 0, which means "no index yet".
    counter: Counter,
    subscriptions: tokio::sync::Mutex<HashMap<String, Arc<Subscription>>>,
    warned_polling: AtomicBool,
    /// Polling mode: the last values seen per key set, with their index.
    snapshots: Mutex<HashMap<Vec<String>, Snapshot>>,
}

struct Counter(Arc<AtomicU64>);

impl Default for Counter {
    /// Seeded from the wall clock in microseconds, so a new backend (a
    /// restarted plugin, a reconfigure) hands out indexes above any the old
    /// one did: a caller's stale index then reads as "subscribed after your
    /// read" and returns at once instead of waiting for the counter to
    /// catch up.
    fn default() -> Counter {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Counter(Arc::new(AtomicU64::new(micros.max(1))))
    }
}

impl Counter {
    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[derive(Default)]
struct Log {
    /// `(index, confd path)` of recent notifications, oldest first.
    events: VecDeque<(u64, String)>,
    /// The highest index dropped from `events`.
    dropped: u64,
    failure: Option<Error>,
}

struct Subscription {
    /// The counter value when the subscription became active: a caller
    /// whose index is older may have missed changes.
    started: u64,
    /// The primary generation of the link it listens on (see `Connection::primary_moved`).
    generation: u64,
    log: Arc<Mutex<Log>>,
    changed: tokio::sync::watch::Sender<()>,
    task: tokio::task::AbortHandle,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the server's `notify-keyspace-events` covers what we need:
/// keyspace channels (K) for all commands (A) or at least generic, string
/// and hash events.
fn flags_suffice(flags: &str) -> bool {
    flags.contains('K')
        && (flags.contains('A') || ['g', '$', 'h'].iter().all(|c| flags.contains(*c)))
}

/// Makes sure keyspace notifications are on. `Ok(false)` when the server
/// refuses CONFIG (managed redis) and they are not already on.
async fn ensure_notifications(connection: &Connection, link: &Link) -> Result<bool, Error> {
    let mut conn = link.manager.clone();
    let current: Result<Vec<String>, Error> = connection
        .deadline(
            &link.node,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query_async(&mut conn),
        )
        .await;
    let current = match current {
        Ok(pair) => pair.get(1).cloned().unwrap_or_default(),
        Err(e) if e.kind() == confd_sdk::ErrorKind::Unavailable => return Err(e),
        Err(_) => return Ok(false),
    };
    if flags_suffice(&current) {
        return Ok(true);
    }
    // Keep whatever else the operator enabled; add keyspace + all events.
    let mut wanted: String = current.chars().filter(|c| *c != 'K' && *c != 'A').collect();
    wanted.push_str("KA");
    let set: Result<String, Error> = connection
        .deadline(
            &link.node,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(&wanted)
                .query_async(&mut conn),
        )
        .await;
    match set {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == confd_sdk::ErrorKind::Unavailable => Err(e),
        Err(_) => Ok(false),
    }
}

/// Whether a change at `path` can affect what `keys` read: below a key, or
/// a hash above it whose fields are the key's subkeys.
fn affects(path: &str, keys: &[String]) -> bool {
    keys.iter().any(|key| {
        let key = key.replace("/*", "");
        is_under(path, &key) || is_under(&key, path)
    })
}

pub(crate) async fn watch_prefix(
    connection: &Connection,
    keys: &[String],
    wait_index: u64,
) -> Result<u64, Error> {
    let link = connection.link().await?;
    let watches = &connection.watches;
    let sep = connection.settings.separator.as_str();
    let db = link.node.db();
    let prefix = transform(&common_prefix(keys), sep);
    let channel_prefix = format!("__keyspace@{db}__:");
    let pattern = format!("{channel_prefix}{}*", escape_glob(&prefix));

    let subscription = {
        let mut subscriptions = watches.subscriptions.lock().await;
        let alive = subscriptions
            .get(&pattern)
            .filter(|s| {
                s.generation == link.generation
                    && s.log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failure
                        .is_none()
            })
            .cloned();
        match alive {
            Some(s) => Some(s),
            None => {
                subscriptions.remove(&pattern);
                if ensure_notifications(connection, &link).await? {
                    let s = subscribe(
                        connection,
                        &link,
                        &pattern,
                        &channel_prefix,
                        sep,
                        &watches.counter,
                    )
                    .await?;
                    subscriptions.insert(pattern.clone(), s.clone());
                    Some(s)
                } else {
                    None
                }
            }
        }
    };
    let Some(subscription) = subscription else {
        return poll(connection, keys, wait_index).await;
    };
    if wait_index == 0 {
        return Ok(watches.counter.current());
    }
    let mut changed = subscription.changed.subscribe();
    let mut moved = connection.primary_moved.subscribe();
    loop {
        if *moved.borrow_and_update() != subscription.generation {
            // The primary moved: changes on the new one were not heard here. The caller
            // re-reads (from the new primary) and subscribes there.
            return Ok(watches.counter.bump());
        }
        {
            let log = subscription.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(failure) = &log.failure {
                if connection.settings.sentinel.is_some() {
                    // The primary closed the connection: turned into a replica by a failover
                    // (sentinels then drop its clients) or gone. Ask the sentinels again and
                    // have the caller re-read, which fails if no primary answers.
                    drop(log);
                    connection.primary_may_have_moved();
                    return Ok(watches.counter.bump());
                }
                return Err(failure.clone());
            }
            if subscription.started > wait_index || log.dropped > wait_index {
                // Changes may have happened while nobody listened.
                return Ok(watches.counter.current());
            }
            if let Some((index, _)) = log
                .events
                .iter()
                .find(|(index, path)| *index > wait_index && affects(path, keys))
            {
                return Ok(*index);
            }
        }
        tokio::select! {
            result = changed.changed() => {
                if result.is_err() {
                    return Err(Error::unavailable(format!(
                        "redis {}: the notification subscription ended",
                        link.node
                    )));
                }
            }
            _ = moved.changed() => {}
        }
    }
}

async fn subscribe(
    connection: &Connection,
    link: &Link,
    pattern: &str,
    channel_prefix: &str,
    sep: &str,
    counter: &Counter,
) -> Result<Arc<Subscription>, Error> {
    let mut pubsub = connection
        .deadline(&link.node, link.client.get_async_pubsub())
        .await?;
    connection
        .deadline(&link.node, pubsub.psubscribe(pattern))
        .await?;
    let started = counter.bump();
    let log = Arc::new(Mutex::new(Log::default()));
    let (changed, _) = tokio::sync::watch::channel(());
    let task_log = log.clone();
    let task_changed = changed.clone();
    let task_counter = counter.0.clone();
    let node = link.node.clone();
    let channel_prefix = channel_prefix.to_string();
    let sep = sep.to_string();
    let task = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Some(key) = message.get_channel_name().strip_prefix(&channel_prefix) else {
                continue;
            };
            let index = task_counter.fetch_add(1, Ordering::SeqCst) + 1;
            {
                let mut log = task_log.lock().unwrap_or_else(|p| p.into_inner());
                log.events.push_back((index, clean(key, &sep)));
                while log.events.len() > LOG_LIMIT {
                    if let Some((dropped, _)) = log.events.pop_front() {
                        log.dropped = dropped;
                    }
                }
            }
            task_changed.send_replace(());
        }
        let failure = Error::unavailable(format!(
            "redis {node}: the keyspace notification connection was closed"
        ));
        task_log.lock().unwrap_or_else(|p| p.into_inner()).failure = Some(failure);
        task_changed.send_replace(());
    })
    .abort_handle();
    Ok(Arc::new(Subscription {
        started,
        generation: link.generation,
        log,
        changed,
        task,
    }))
}

/// The fallback: read every second and compare.
async fn poll(connection: &Connection, keys: &[String], wait_index: u64) -> Result<u64, Error> {
    let watches = &connection.watches;
    if !watches.warned_polling.swap(true, Ordering::SeqCst) {
        tracing::warn!(
            nodes = %connection.settings.nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            "redis refuses CONFIG SET notify-keyspace-events and keyspace notifications are off: \
             watching by polling every second (enable them with `notify-keyspace-events KA` for instant updates)"
        );
    }
    let key_set = keys.to_vec();
    let stored = watches
        .snapshots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key_set)
        .cloned();
    let baseline = match stored {
        Some((index, values)) if index == wait_index => values,
        _ => {
            let values = connection.get_values(keys).await?;
            let index = watches.counter.bump();
            watches
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key_set.clone(), (index, values.clone()));
            if wait_index == 0 || wait_index < index {
                // First look (or a forgotten baseline): the caller reads next.
                return Ok(index);
            }
            values
        }
    };
    loop {
        tokio::time::sleep(POLL_PERIOD).await;
        let current = connection.get_values(keys).await?;
        if current != baseline {
            let index = watches.counter.bump();
            watches
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key_set, (index, current));
            return Ok(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_flags() {
        assert!(flags_suffice("AK"));
        assert!(flags_suffice("AKE"));
        assert!(flags_suffice("Kg$h"));
        assert!(!flags_suffice(""));
        assert!(!flags_suffice("AE"));
        assert!(!flags_suffice("K$"));
    }

    #[test]
    fn changes_affect_keys_below_and_hashes_above() {
        let keys = vec!["/app/db/host".to_string(), "/web".to_string()];
        assert!(affects("/app/db/host", &keys));
        assert!(affects("/app/db", &keys), "a hash holding the key's field");
        assert!(affects("/web/port", &keys));
        assert!(!affects("/application", &keys));
        assert!(!affects("/webapp", &keys));
    }
}
