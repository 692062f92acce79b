//! The `file` database: confd keys read from YAML and JSON files, flattened
//! into paths the way Go confd did, with a real watch on the files.
//!
//! # Settings
//!
//! * `file` (required): comma-separated paths, files or directories. The host
//!   joins repeated `--file` flags into this list.
//! * `filter` (default `*`): a glob matched against the base names of the
//!   files found while walking a directory. A file named directly is always
//!   read.
//!
//! Any other key is an error naming it.
//!
//! # Reading
//!
//! Paths are read in order; a directory is walked recursively in byte order
//! of names, subdirectories in place; later files overwrite earlier keys
//! leaf by leaf. `.json` files are JSON, `.yaml`, `.yml` and extension-less
//! files are YAML, any other extension is an error naming the file (use
//! `filter` to skip such files). YAML is read with YAML 1.1 semantics, as
//! Go confd's yaml.v2 did (`on` is `true`, `0755` is 493): see the `parse`
//! module. Nested maps and lists become paths (`/app/servers/0/host`); ints
//! print in decimal, floats in shortest form without exponent, booleans as
//! `true`/`false`; nulls produce no key. The files are read on every
//! `get_values` call; a parse is reused while the bytes stay the same.
//!
//! # Watching
//!
//! `watch_prefix` returns at once for `wait_index` 0 (or a stale index)
//! with an index that fingerprints the values under the requested keys.
//! Otherwise it watches the files (and their parent directories, so
//! rename-over saves and Kubernetes symlink swaps are seen), and after each
//! burst of events re-reads them: it returns only when the values under the
//! requested keys differ from what the index describes. Dropping the future
//! stops the watcher.

mod keys;
mod parse;
mod source;
mod watch;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use confd_sdk::config::ConfigError;
use confd_sdk::{Config, Configured, Database, DatabaseInfo, Descriptor, Error, Setting, SrvNodes};
use glob::Pattern;

use crate::source::Cache;
use crate::watch::FsWatch;

/// The name this database is registered under (`--backend file`).
pub const NAME: &str = "file";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "YAML or JSON files and directories; watches the files",
    default_nodes: &[],
    settings: &[
        Setting::from(
            "file",
            &["file"],
            "comma-separated YAML/JSON files or directories (required)",
        ),
        Setting::from(
            "filter",
            &["filter"],
            "glob on base names while walking directories (default *)",
        ),
    ],
    capabilities: &["watch"],
    srv_nodes: SrvNodes::None,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<FileDatabase>,
};

/// Decoded settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// Files and directories, read in this order.
    pub files: Vec<PathBuf>,
    /// Glob on base names applied while walking directories.
    pub filter: String,
}

/// The settings map as the SDK decoder sees it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    file: Vec<String>,
    #[serde(default)]
    filter: String,
}

impl FileConfig {
    /// Decodes the settings map; an unknown key, an empty `file` list or a
    /// malformed `filter` is an error naming the key.
    pub fn from_config(config: &Config) -> Result<FileConfig, Error> {
        let raw: RawSettings = confd_sdk::config::decode(config)?;
        if raw.file.is_empty() {
            return Err(ConfigError::MissingKey {
                key: "file".to_string(),
            }
            .into());
        }
        let filter = if raw.filter.is_empty() {
            "*".to_string()
        } else {
            raw.filter
        };
        Pattern::new(&filter)
            .map_err(|e| ConfigError::invalid_value("filter", &filter, e.to_string()))?;
        Ok(FileConfig {
            files: raw.file.into_iter().map(PathBuf::from).collect(),
            filter,
        })
    }
}

/// Settings in their usable form.
#[derive(Debug)]
struct Active {
    files: Vec<PathBuf>,
    filter: Pattern,
}

/// The `file` database.
#[derive(Debug, Default)]
pub struct FileDatabase {
    active: Configured<Active>,
    cache: Arc<Cache>,
    /// One read at a time. The cache's lock serialises reads anyway; waiting here rather than
    /// on it keeps one blocking thread busy instead of one per concurrent request (a one-shot
    /// run asks for 16 resource groups at once, and each thread cost its own malloc arena).
    reading: tokio::sync::Mutex<()>,
    watchers: Arc<AtomicUsize>,
}

/// Creates an unconfigured database (what `serve` runs).
pub fn database() -> FileDatabase {
    FileDatabase::default()
}

impl FileDatabase {
    fn active(&self) -> Result<Arc<Active>, Error> {
        self.active.get(NAME)
    }

    /// Every key of every file, read off the async runtime's threads.
    async fn load(&self, active: Arc<Active>) -> Result<Arc<BTreeMap<String, String>>, Error> {
        let _one = self.reading.lock().await;
        let cache = Arc::clone(&self.cache);
        tokio::task::spawn_blocking(move || cache.load(&active.files, &active.filter))
            .await
            .map_err(|e| Error::internal(format!("reading the files failed: {e}")))?
    }

    /// The index describing the current values under `keys`.
    async fn index(&self, active: &Arc<Active>, keys: &[String]) -> Result<u64, Error> {
        let all = self.load(Arc::clone(active)).await?;
        Ok(fingerprint(&keys::select(&all, keys)))
    }
}

/// A non-zero hash of the selected values: equal values, equal index.
fn fingerprint(values: &BTreeMap<String, String>) -> u64 {
    let mut hasher = DefaultHasher::new();
    values.hash(&mut hasher);
    hasher.finish().max(1)
}

#[confd_sdk::async_trait]
impl Database for FileDatabase {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let decoded = FileConfig::from_config(&config)?;
        let filter = Pattern::new(&decoded.filter)
            .map_err(|e| Error::invalid_config(format!("filter: {e}")))?;
        self.active.set(Active {
            files: decoded.files,
            filter,
        });
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let active = self.active()?;
        let all = self.load(active).await?;
        Ok(keys::select(&all, keys))
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        let active = self.active()?;
        let keys = confd_sdk::keys::watched(prefix, keys);
        let current = self.index(&active, &keys).await?;
        if wait_index == 0 || wait_index != current {
            return Ok(current);
        }
        loop {
            // The watcher exists before the files are read again, so a
            // change landing between the two reads is not lost. It is
            // rebuilt on every round because a replaced directory takes its
            // old watch with it.
            let mut fs_watch = FsWatch::start(&active.files, &self.watchers)?;
            match self.index(&active, &keys).await {
                Ok(index) if index != wait_index => return Ok(index),
                Ok(_) => {}
                // A file caught half-written or briefly missing; the next
                // event will bring it back.
                Err(err) => tracing::warn!(error = %err, "re-reading after a change failed"),
            }
            fs_watch.changed().await;
        }
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

#[cfg(test)]
mod tests;
