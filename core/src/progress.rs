//! Flags shared between the host and the processing loops. Whether the first pass over every
//! resource has finished. The host's readiness probe waits for
//! it: until then a destination may still hold what was there before confd started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag the processing loops raise once every resource has been rendered (or has failed)
/// once; clones share it, and the host can wait for it (readiness, systemd's READY=1).
#[derive(Debug, Clone)]
pub struct FirstPass(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for FirstPass {
    fn default() -> Self {
        FirstPass(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl FirstPass {
    /// Marks the first pass done.
    pub fn mark(&self) {
        self.0.send_replace(true);
    }

    /// Whether the first pass is done.
    pub fn done(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the first pass is done.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// Raised by the host when the process is shutting down (SIGTERM, SIGINT): a sync in progress
/// finishes its file write but starts no new command, and no further resource starts. Clones
/// share it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// From now on, no new command and no new resource.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the process is shutting down.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What every pass and watch render of the process did, summed; clones share it (the host's
/// status line).
#[derive(Debug, Clone, Default)]
pub struct Totals(Arc<std::sync::Mutex<crate::run::Summary>>);

impl Totals {
    pub(crate) fn add(&self, summary: crate::run::Summary) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(summary);
    }

    /// The sums so far.
    pub fn get(&self) -> crate::run::Summary {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
