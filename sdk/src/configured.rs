//! The slot a database keeps what `configure` built in: every backend needs one, and each copy
//! of it had to get the lock, the shared handle and the "not configured" error right.

use std::sync::{Arc, RwLock};

use crate::Error;

/// What a database's `configure` produced (a client, parsed settings), shared with every call
/// made after it.
///
/// Empty until the first successful `configure`; a later `configure` replaces it whole, while a
/// call already running keeps the value it started with.
///
/// ```
/// use confd_sdk::{Configured, Error};
///
/// struct Client { url: String }
///
/// let state: Configured<Client> = Configured::new();
/// assert!(state.get("demo").is_err());
/// state.set(Client { url: "http://127.0.0.1:2379".into() });
/// assert_eq!(state.get("demo")?.url, "http://127.0.0.1:2379");
/// # Ok::<(), Error>(())
/// ```
pub struct Configured<T> {
    slot: RwLock<Option<Arc<T>>>,
}

impl<T> Configured<T> {
    /// An empty slot: every [`get`](Configured::get) fails until [`set`](Configured::set).
    pub const fn new() -> Configured<T> {
        Configured {
            slot: RwLock::new(None),
        }
    }

    /// Replaces what calls from now on see.
    pub fn set(&self, value: T) {
        // Nothing panics while the lock is held, so a poisoned lock still holds a whole value.
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(value));
    }

    /// The current value, or a `NotConfigured` error naming the `backend`.
    pub fn get(&self, backend: &str) -> Result<Arc<T>, Error> {
        self.slot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::not_configured(format!("the {backend} backend was not configured"))
            })
    }
}

impl<T> Default for Configured<T> {
    fn default() -> Configured<T> {
        Configured::new()
    }
}

/// Says only whether a value is set: the value is often a client holding credentials.
impl<T> std::fmt::Debug for Configured<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self
            .slot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        f.debug_struct("Configured")
            .field("configured", &set)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn empty_until_set_then_the_latest_value() {
        let state = Configured::new();
        let err = state.get("etcd").expect_err("empty");
        assert_eq!(err.kind(), ErrorKind::NotConfigured);
        assert_eq!(err.message(), "the etcd backend was not configured");
        state.set(1);
        let first = state.get("etcd").expect("set");
        state.set(2);
        // a call that started before the second configure keeps its value
        assert_eq!((*first, *state.get("etcd").expect("set")), (1, 2));
    }

    #[test]
    fn debug_shows_no_value() {
        struct Secret;
        let state = Configured::new();
        assert_eq!(format!("{state:?}"), "Configured { configured: false }");
        state.set(Secret);
        assert_eq!(format!("{state:?}"), "Configured { configured: true }");
    }
}
