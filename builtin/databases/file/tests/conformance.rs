//! The file database against the SDK's conformance suite, called directly and served through
//! the plugin path, reading a JSON file the fixture rewrites. Alone in its test binary because
//! it counts the process's file-watcher threads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};

mod common;
use common::watcher_threads;

/// A JSON file holding the suite's keys as nested objects (`/a/b = v` is `{"a": {"b": "v"}}`),
/// replaced whole on every change as editors save files.
struct JsonFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
    data: Mutex<BTreeMap<String, String>>,
}

impl JsonFile {
    fn new() -> JsonFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.json");
        JsonFile {
            _dir: dir,
            path,
            data: Mutex::default(),
        }
    }

    fn write(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), FixtureError> {
        let mut data = self.data.lock().expect("not poisoned");
        change(&mut data);
        let mut root = serde_json::Map::new();
        for (key, value) in data.iter() {
            let mut parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
            let leaf = parts.pop().ok_or("an empty key")?;
            let mut node = &mut root;
            for part in parts {
                node = node
                    .entry(part)
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
                    .as_object_mut()
                    .ok_or_else(|| format!("{key}: a value where a map should be"))?;
            }
            node.insert(leaf.to_string(), serde_json::Value::String(value.clone()));
        }
        let staged = self.path.with_extension("json.tmp");
        std::fs::write(&staged, serde_json::to_vec(&root)?)?;
        std::fs::rename(&staged, &self.path)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Fixture for JsonFile {
    fn config(&self) -> Config {
        Config::from([("file".to_string(), self.path.display().to_string())])
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.write(|data| {
            data.insert(key.to_string(), value.to_string());
        })
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.write(|data| {
            data.remove(key);
        })
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        self.write(|data| data.extend(entries.iter().cloned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_honours_the_contract() {
    Conformance::new(confd_builtin_file::database, JsonFile::new())
        .name(confd_builtin_file::NAME)
        .bad_setting("yamlFile", "b.yaml")
        .bad_setting("filter", "[a-")
        .watchers(|_| watcher_threads())
        // Not a bug: the index is a hash of the watched values (see the crate docs), so it
        // changes on every change but does not grow. The host only hands it back, and a
        // restarted plugin answers a stale index at once; growing would need a persistent
        // counter, which files do not have.
        .skip(
            "watch-index-grows",
            "the file index is a fingerprint of the values: it changes, but does not grow",
        )
        .run()
        .await;
}
