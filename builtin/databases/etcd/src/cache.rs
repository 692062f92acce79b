//! A watch-fed copy of each watched prefix. In watch mode the host reads
//! right after every watch wake-up; serving that read from a copy kept up to
//! date by one long-lived etcd watch saves an etcd round trip per change and
//! lets every resource under a prefix share that one watch.
//!
//! Consistency: a copy starts from a read of the whole prefix at revision `S`
//! and a watch from `S + 1`, so it misses nothing. It is always the state of
//! the prefix at one revision (each watch response is applied whole), and it
//! is at least as new as every index a waiter on it was handed. It may lag
//! behind etcd by the watch's delivery time; reads that must be linearizable
//! do not use it (they go to etcd when no live copy covers them).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use confd_sdk::Error;
use confd_sdk::keys::is_under;
use etcd_client::{EventType, WatchStream};
use tokio::task::AbortHandle;

use crate::members::{Failure, Members};

/// The watch feeding a copy: its stream, the member serving it, and all members, to resume on
/// another one when that member fails.
pub(crate) struct Feed {
    pub(crate) stream: WatchStream,
    pub(crate) member: usize,
    pub(crate) members: Arc<Members>,
}

/// Changes remembered for waiters that were busy when they happened. A
/// waiter further behind is woken at once (a render too many, never one too
/// few).
const LOG_CAPACITY: usize = 4096;

/// How long after a failed attempt to build a copy reads and watches go
/// straight to etcd before the next attempt.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The copies of one connection, and the tasks feeding them.
#[derive(Default)]
pub(crate) struct Caches {
    entries: Mutex<Vec<(Arc<PrefixCache>, AbortHandle)>>,
    /// Prefixes not to try copying again before the instant.
    failed: Mutex<BTreeMap<String, Instant>>,
    /// One copy is built at a time, so groups asking for the same prefix at
    /// once share it instead of each opening a watch.
    pub(crate) building: tokio::sync::Mutex<()>,
}

impl Drop for Caches {
    fn drop(&mut self) {
        for (_, task) in lock(&self.entries).iter() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves the data whole; a panic elsewhere
    // cannot leave it half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Caches {
    /// A live copy holding everything under `prefix` (a string prefix).
    pub(crate) fn covering(&self, prefix: &str) -> Option<Arc<PrefixCache>> {
        let mut entries = lock(&self.entries);
        entries.retain(|(cache, _)| cache.is_live());
        entries
            .iter()
            .find(|(cache, _)| prefix.starts_with(cache.prefix.as_str()))
            .map(|(cache, _)| Arc::clone(cache))
    }

    /// A live copy able to answer a read of all `keys` at one revision.
    pub(crate) fn covering_keys(&self, keys: &[String]) -> Option<Arc<PrefixCache>> {
        if keys.is_empty() {
            return None;
        }
        let entries = lock(&self.entries);
        entries
            .iter()
            .find(|(cache, _)| cache.is_live() && keys.iter().all(|k| cache.covers(k)))
            .map(|(cache, _)| Arc::clone(cache))
    }

    /// Number of live copies (one etcd watch each).
    pub(crate) fn live(&self) -> usize {
        lock(&self.entries)
            .iter()
            .filter(|(cache, _)| cache.is_live())
            .count()
    }

    pub(crate) fn recently_failed(&self, prefix: &str) -> bool {
        let mut failed = lock(&self.failed);
        let now = Instant::now();
        failed.retain(|_, until| *until > now);
        failed.contains_key(prefix)
    }

    /// No new attempt to copy `prefix` for `retry_after`.
    pub(crate) fn note_failure(&self, prefix: &str, retry_after: Duration) {
        lock(&self.failed).insert(prefix.to_string(), Instant::now() + retry_after);
    }

    /// Starts feeding a copy filled from a read at `revision` with the
    /// watch `stream` that starts at `revision + 1`.
    pub(crate) fn start(
        &self,
        prefix: String,
        revision: u64,
        values: BTreeMap<Vec<u8>, Vec<u8>>,
        watch: Feed,
    ) -> Arc<PrefixCache> {
        let (changed, _) = tokio::sync::watch::channel(());
        let cache = Arc::new(PrefixCache {
            prefix,
            data: Mutex::new(Data {
                live: true,
                revision,
                log_floor: revision,
                log: VecDeque::new(),
                values,
            }),
            changed,
        });
        let task = tokio::spawn(feed(Arc::clone(&cache), watch));
        lock(&self.failed).remove(&cache.prefix);
        lock(&self.entries).push((Arc::clone(&cache), task.abort_handle()));
        cache
    }
}

/// One prefix's copy.
pub(crate) struct PrefixCache {
    prefix: String,
    data: Mutex<Data>,
    /// Ticks after every applied change and when the copy dies.
    changed: tokio::sync::watch::Sender<()>,
}

struct Data {
    /// False once the watch ended: the copy may be stale and is not used.
    live: bool,
    /// The copy is the prefix's state at this revision.
    revision: u64,
    /// Changes after this revision are all in `log`.
    log_floor: u64,
    /// (mod revision, key) of every put and delete after `log_floor`; a key that is not UTF-8
    /// is logged with its bad bytes replaced (the log only decides whom to wake).
    log: VecDeque<(u64, String)>,
    /// Keys and values as etcd holds them; [`PrefixCache::read`] decodes them.
    values: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl PrefixCache {
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn is_live(&self) -> bool {
        lock(&self.data).live
    }

    /// Whether every store key a request for `key` can return lies under
    /// this copy's prefix.
    fn covers(&self, key: &str) -> bool {
        let base = key.trim_end_matches('/');
        !base.is_empty() && base.starts_with(self.prefix.as_str())
    }

    /// The revision of the copy, `None` when it died.
    pub(crate) fn revision(&self) -> Option<u64> {
        let data = lock(&self.data);
        data.live.then_some(data.revision)
    }

    /// Every value under `keys` at one revision; `None` when the copy died. A key or value
    /// that is not UTF-8 fails the read (see `confd_sdk::text`).
    pub(crate) fn read(&self, keys: &[String]) -> Option<Result<BTreeMap<String, String>, Error>> {
        let data = lock(&self.data);
        if !data.live {
            return None;
        }
        let mut out = BTreeMap::new();
        for requested in keys {
            let base = requested.trim_end_matches('/').as_bytes();
            for (key, value) in data
                .values
                .range::<[u8], _>((std::ops::Bound::Included(base), std::ops::Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(base))
            {
                let decoded = crate::key_under(key, requested).and_then(|key| match key {
                    Some(key) => confd_sdk::text::value(crate::NAME, key, value)
                        .map(|value| Some((key.to_string(), value.to_string()))),
                    None => Ok(None),
                });
                match decoded {
                    Ok(Some((key, value))) => {
                        out.insert(key, value);
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        Some(Ok(out))
    }

    /// Waits until something under `keys` changes after `index` and returns
    /// the copy's revision then. `None`: the copy cannot answer (it died, or
    /// the caller knows of revisions it has not seen); ask etcd instead.
    pub(crate) async fn wait(&self, keys: &[String], index: u64) -> Option<u64> {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            {
                let data = lock(&self.data);
                if !data.live || index > data.revision {
                    return None;
                }
                if index < data.log_floor {
                    // What changed between `index` and the floor is not
                    // remembered: assume it matters.
                    return Some(data.revision);
                }
                let relevant = data
                    .log
                    .iter()
                    .rev()
                    .take_while(|(revision, _)| *revision > index)
                    .any(|(_, key)| keys.iter().any(|k| is_under(key, k)));
                if relevant {
                    return Some(data.revision);
                }
            }
            if changed.changed().await.is_err() {
                return None;
            }
        }
    }

    fn die(&self, why: &str) {
        lock(&self.data).live = false;
        self.changed.send_replace(());
        tracing::warn!(
            "etcd: the watch-fed copy of {:?} stopped ({why}); reading from etcd until it is re-established",
            self.prefix
        );
    }
}

/// Applies the watch's events to the copy until the watch ends. When the member serving it
/// fails, the watch is opened again on the next member from the revision after the copy's: every
/// change after it arrives once, none is missed.
async fn feed(cache: Arc<PrefixCache>, watch: Feed) {
    let Feed {
        mut stream,
        mut member,
        members,
    } = watch;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => {
                let why = "the watch stream was closed".to_string();
                match resume(&cache, &members, member, &why).await {
                    Ok((next, at)) => (stream, member) = (next, at),
                    Err(why) => return cache.die(&why),
                }
                continue;
            }
            Err(e) if crate::members::member_failed(&e) => {
                let why = crate::describe(&e);
                match resume(&cache, &members, member, &why).await {
                    Ok((next, at)) => (stream, member) = (next, at),
                    Err(why) => return cache.die(&why),
                }
                continue;
            }
            Err(e) => return cache.die(&format!("etcd {}: {e}", members.url(member))),
        };
        if message.compact_revision() > 0 {
            return cache.die(&format!(
                "revisions up to {} were compacted",
                message.compact_revision()
            ));
        }
        if message.canceled() {
            return cache.die(&format!(
                "etcd {} cancelled the watch: {}",
                members.url(member),
                message.cancel_reason()
            ));
        }
        if message.events().is_empty() {
            continue;
        }
        {
            let mut data = lock(&cache.data);
            // One response holds whole revisions: after it the copy is again
            // the state at one revision.
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
                match event.event_type() {
                    EventType::Put => {
                        data.values.insert(kv.key().to_vec(), kv.value().to_vec());
                    }
                    EventType::Delete => {
                        data.values.remove(kv.key());
                    }
                }
                data.revision = data.revision.max(revision);
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                data.log.push_back((revision, key));
            }
            while data.log.len() > LOG_CAPACITY {
                if let Some((revision, _)) = data.log.pop_front() {
                    data.log_floor = data.log_floor.max(revision);
                }
            }
        }
        cache.changed.send_replace(());
    }
}

/// Leaves the failed `member` and opens the copy's watch on the next one, after the copy's
/// revision. `Err` (why) when no member takes it.
async fn resume(
    cache: &PrefixCache,
    members: &Members,
    member: usize,
    why: &str,
) -> Result<(WatchStream, usize), String> {
    members.failed(member, why);
    let after = lock(&cache.data).revision;
    match crate::open_watch(members, &cache.prefix, after).await {
        Ok((stream, at)) => {
            tracing::debug!(
                "etcd: the watch of {:?} resumed on {} after revision {after}",
                cache.prefix,
                members.url(at)
            );
            Ok((stream, at))
        }
        Err((Failure::Etcd(e), at)) => Err(format!(
            "etcd {}: {why}; then {}: {}",
            members.url(member),
            members.url(at),
            crate::describe(&e)
        )),
        Err((Failure::Timeout, at)) => Err(format!(
            "etcd {}: {why}; then {}: no answer",
            members.url(member),
            members.url(at)
        )),
    }
}

/// The prefix a copy for `keys` holds: their common string prefix, without
/// a trailing `/` so that `/app/` also serves the key `/app`.
pub(crate) fn prefix_for(common: &str) -> String {
    let trimmed = common.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(prefix: &str, revision: u64, values: &[(&str, &str)]) -> PrefixCache {
        let (changed, _) = tokio::sync::watch::channel(());
        PrefixCache {
            prefix: prefix.to_string(),
            data: Mutex::new(Data {
                live: true,
                revision,
                log_floor: revision,
                log: VecDeque::new(),
                values: values
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            }),
            changed,
        }
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn reads_are_path_aware() {
        let c = cache(
            "/app",
            5,
            &[
                ("/app", "0"),
                ("/app/a", "1"),
                ("/app/b/c", "2"),
                ("/appx", "3"),
            ],
        );
        let all = c.read(&keys(&["/app"])).expect("live").expect("UTF-8");
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(!all.contains_key("/appx"));
        let sub = c
            .read(&keys(&["/app/b/", "/app/missing"]))
            .expect("live")
            .expect("UTF-8");
        assert_eq!(sub.keys().collect::<Vec<_>>(), ["/app/b/c"]);
    }

    /// The one rule for bytes that are not UTF-8 holds for reads served from the copy too.
    #[test]
    fn reads_of_bytes_that_are_not_utf8_fail_naming_the_key() {
        let c = cache("/b", 3, &[("/b/ok", "1")]);
        {
            let mut data = lock(&c.data);
            data.values.insert(b"/b/v/blob".to_vec(), b"x\xff".to_vec());
            data.values.insert(b"/b/k/\xff".to_vec(), b"1".to_vec());
            data.values.insert(b"/b/okay\xff".to_vec(), b"1".to_vec());
        }
        let read_err = |k: &str| {
            let err = c.read(&keys(&[k])).expect("live").expect_err("not UTF-8");
            assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidData);
            err.message().to_string()
        };
        assert_eq!(
            read_err("/b/v"),
            "etcd: the value of key \"/b/v/blob\" is not UTF-8 text (byte 0xff at offset 1)"
        );
        assert_eq!(
            read_err("/b/k"),
            "etcd: key \"/b/k/\\xff\" is not UTF-8 text (byte 0xff at offset 5)"
        );
        // `/b/okay\xff` shares the string prefix `/b/ok` but lies outside the path: skipped.
        let ok = c.read(&keys(&["/b/ok"])).expect("live").expect("UTF-8");
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["/b/ok"]);
    }

    #[test]
    fn coverage_is_by_string_prefix_of_the_requested_key() {
        let c = cache("/app/d", 1, &[]);
        assert!(c.covers("/app/db"));
        assert!(c.covers("/app/d"));
        assert!(c.covers("/app/db/"));
        assert!(!c.covers("/app"));
        assert!(!c.covers("/app/"));
        assert!(!c.covers("/"));
        let root = cache("/", 1, &[]);
        assert!(root.covers("/x"));
        assert!(!root.covers("/"), "a read of everything goes to etcd");
    }

    #[test]
    fn copy_prefix_drops_trailing_slashes() {
        assert_eq!(prefix_for("/app/"), "/app");
        assert_eq!(prefix_for("/app/d"), "/app/d");
        assert_eq!(prefix_for("/"), "/");
        assert_eq!(prefix_for(""), "/");
    }

    #[tokio::test]
    async fn waiters_see_logged_changes_under_their_keys_only() {
        let c = cache("/w", 10, &[]);
        {
            let mut data = lock(&c.data);
            data.log.push_back((11, "/w/application".to_string()));
            data.log.push_back((12, "/w/app/x".to_string()));
            data.revision = 12;
        }
        assert_eq!(c.wait(&keys(&["/w/app"]), 10).await, Some(12));
        assert_eq!(c.wait(&keys(&["/w/app"]), 11).await, Some(12));
        let quiet =
            tokio::time::timeout(Duration::from_millis(50), c.wait(&keys(&["/w/app"]), 12)).await;
        assert!(quiet.is_err(), "nothing after 12: {quiet:?}");
        let lookalike_only =
            tokio::time::timeout(Duration::from_millis(50), c.wait(&keys(&["/w/applic"]), 10))
                .await;
        assert!(lookalike_only.is_err(), "{lookalike_only:?}");
        // Behind the floor: woken at once; ahead of the copy: ask etcd.
        assert_eq!(c.wait(&keys(&["/w/app"]), 9).await, Some(12));
        assert_eq!(c.wait(&keys(&["/w/app"]), 13).await, None);
        c.die("test");
        assert_eq!(c.wait(&keys(&["/w/app"]), 12).await, None);
        assert!(c.read(&keys(&["/w"])).is_none());
    }
}
