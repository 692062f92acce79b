//! An in-memory key-value database served as a plugin: the smallest complete confd plugin, and
//! the SDK's end-to-end test fixture.
//!
//! Settings: every key `data.<path>` sets `<path>` to the value (`data./app/port = 8080`).
//! Each `configure` replaces the whole map and wakes pending watches.

use std::collections::BTreeMap;
use std::sync::RwLock;

use confd_sdk::{Config, Database, Error, async_trait};
use tokio::sync::watch;

/// The store: a sorted map plus a version counter that watches wait on.
pub struct Memory {
    data: RwLock<BTreeMap<String, String>>,
    version: watch::Sender<u64>,
}

impl Memory {
    /// An empty store at index 1 (0 means "no index yet" to `watch_prefix`).
    pub fn new() -> Memory {
        Memory {
            data: RwLock::default(),
            version: watch::Sender::new(1),
        }
    }
}

impl Memory {
    /// Calls `visit` with every entry `get_values(keys)` returns, in key order, without copying
    /// any: the plugin encodes its streaming answer straight from the store
    /// (`ServeOpts::visit_values`, set in main.rs).
    pub fn visit_values(
        &self,
        keys: &[String],
        visit: &mut dyn FnMut(&str, &str),
    ) -> Result<(), Error> {
        let data = self
            .data
            .read()
            .map_err(|_| Error::internal("store lock poisoned"))?;
        for (k, v) in data
            .iter()
            .filter(|(k, _)| keys.iter().any(|key| under(k, key)))
        {
            visit(k, v);
        }
        Ok(())
    }
}

/// Whether store key `k` is the requested `key` or lies below it as a path.
fn under(k: &str, key: &str) -> bool {
    let key = key.trim_end_matches('/');
    k == key
        || k.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Default for Memory {
    fn default() -> Memory {
        Memory::new()
    }
}

#[async_trait]
impl Database for Memory {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let mut data = BTreeMap::new();
        for (key, value) in config {
            let Some(path) = key.strip_prefix("data.") else {
                return Err(Error::invalid_config(format!(
                    "unknown key {key:?} (expected data.<path>)"
                )));
            };
            data.insert(path.to_string(), value);
        }
        *self
            .data
            .write()
            .map_err(|_| Error::internal("store lock poisoned"))? = data;
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let data = self
            .data
            .read()
            .map_err(|_| Error::internal("store lock poisoned"))?;
        Ok(data
            .iter()
            .filter(|(k, _)| keys.iter().any(|key| under(k, key)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        index: u64,
    ) -> Result<u64, Error> {
        let mut version = self.version.subscribe();
        let now = version
            .wait_for(|v| index == 0 || *v > index)
            .await
            .map_err(|_| Error::internal("store dropped"))?;
        Ok(*now)
    }
}

// Path matching, watches and the rest of the `Database` contract are checked by the SDK's
// conformance suite in tests/conformance.rs.
#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn visits_what_get_values_returns_in_order() {
        let db = Memory::new();
        db.configure(config(&[
            ("data./app/x", "1"),
            ("data./app/y/z", "2"),
            ("data./application", "3"),
            ("data./b", "4"),
        ]))
        .await
        .expect("configure");
        for keys in [&["/app"][..], &["/"], &["/b", "/app/"], &["/none"], &[]] {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            let mut visited = Vec::new();
            db.visit_values(&keys, &mut |k, v| {
                visited.push((k.to_string(), v.to_string()))
            })
            .expect("visit");
            let want: Vec<_> = db
                .get_values(&keys)
                .await
                .expect("get")
                .into_iter()
                .collect();
            assert_eq!(visited, want, "{keys:?}");
        }
    }

    #[tokio::test]
    async fn refuses_unknown_settings() {
        let err = Memory::new()
            .configure(config(&[("nodes", "x")]))
            .await
            .expect_err("unknown key");
        assert_eq!(err.kind(), confd_sdk::ErrorKind::InvalidConfig);
        assert!(err.message().contains("\"nodes\""), "{err}");
    }
}
