//! Whether the first pass over every resource has finished. The host's readiness probe waits for
//! it: until then a destination may still hold what was there before confd started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag the processing loops raise once every resource has been rendered (or has failed)
/// once; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FirstPass(Arc<AtomicBool>);

impl FirstPass {
    /// Marks the first pass done.
    pub fn mark(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the first pass is done.
    pub fn done(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
