//! File change notifications for `watch_prefix`: one notify watcher per
//! waiting call, owned by the call's future so that dropping the future
//! stops the watcher and its thread.
//!
//! Each configured path's parent directory is watched too, because editors
//! save by writing a new file and renaming it over the old one, and
//! Kubernetes updates ConfigMap volumes by swapping a `..data` symlink: in
//! both cases the watched file itself never sees a write. Events only say
//! "look again"; the caller decides whether anything it cares about changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use confd_sdk::Error;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after an event before the files are read, so a burst of
/// events (truncate, write, rename) is read once, after it ends.
const SETTLE: Duration = Duration::from_millis(100);
/// Upper bound on settling, for a file that is written continuously.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// A live watcher plus the channel its events arrive on.
pub(crate) struct FsWatch {
    // Dropped before `_active`, which only counts.
    _watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<()>,
    _active: ActiveGuard,
}

impl std::fmt::Debug for FsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsWatch").finish_non_exhaustive()
    }
}

/// Counts live watchers (tests check that cancelling releases them).
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FsWatch {
    /// Starts watching `paths` (files or directories, existing or not).
    pub(crate) fn start(paths: &[PathBuf], active: &Arc<AtomicUsize>) -> Result<FsWatch, Error> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(event) if is_noise(&event.kind) => {}
                Ok(_) => {
                    // The receiver is gone only while the watch is being
                    // torn down; nothing is waiting for the event then.
                    let _ = tx.send(());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "file watch error; re-reading the files");
                    let _ = tx.send(());
                }
            })
            .map_err(|e| Error::unavailable(format!("cannot start a file watcher: {e}")))?;
        for (path, mode) in targets(paths) {
            watcher
                .watch(&path, mode)
                .map_err(|e| Error::unavailable(format!("cannot watch {}: {e}", path.display())))?;
        }
        active.fetch_add(1, Ordering::SeqCst);
        Ok(FsWatch {
            _watcher: watcher,
            events,
            _active: ActiveGuard(Arc::clone(active)),
        })
    }

    /// Waits for an event, then for the burst it starts to settle.
    pub(crate) async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            // The watcher thread is gone (it never is while we hold the
            // watcher); avoid a busy loop in the caller.
            std::future::pending::<()>().await;
        }
        let deadline = tokio::time::Instant::now() + MAX_SETTLE;
        while let Ok(Some(())) = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + SETTLE),
            self.events.recv(),
        )
        .await
        {}
    }
}

/// Opening and reading files (our own reads included) changes nothing.
fn is_noise(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access)
        if !matches!(access, AccessKind::Close(AccessMode::Write)))
}

/// What to watch for a set of configured paths: each directory
/// recursively, and the parent of every path (or, for a path that does not
/// exist yet, its nearest existing ancestor) on its own.
fn targets(paths: &[PathBuf]) -> BTreeMap<PathBuf, RecursiveMode> {
    let mut out: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
    let mut add = |path: PathBuf, mode: RecursiveMode| {
        let entry = out.entry(path).or_insert(mode);
        if mode == RecursiveMode::Recursive {
            *entry = mode;
        }
    };
    for path in paths {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        if path.is_dir() {
            add(path.clone(), RecursiveMode::Recursive);
        }
        if let Some(ancestor) = path.parent().and_then(existing_ancestor) {
            add(ancestor, RecursiveMode::NonRecursive);
        }
    }
    out
}

fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.is_dir()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_cover_parents_and_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
        std::fs::write(root.join("a.yaml"), "a: 1\n").expect("write");
        let got = targets(&[
            root.join("a.yaml"),
            root.join("dir"),
            root.join("missing/deeper/x.yaml"),
        ]);
        let want: BTreeMap<PathBuf, RecursiveMode> = [
            (root.clone(), RecursiveMode::NonRecursive),
            (root.join("dir"), RecursiveMode::Recursive),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
    }
}
