//! The one interface every storage backend implements, in-process or as a plugin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::Error;

/// The settings a plugin receives in `Configure`: a flat string map.
///
/// Builtin backends get the host's settings (`nodes`, `scheme`, `caCert`, ...);
/// third-party plugins get what the user put under `[plugins.<name>]` or
/// `--plugin-config`, usually nothing. Decode it with [`crate::config::decode`].
pub type Config = HashMap<String, String>;

/// A database behind a shared pointer, as the host holds it.
pub type SharedDatabase = Arc<dyn Database>;

/// A key-value store as confd sees it.
///
/// Implementations must be safe to call concurrently: the host runs several
/// `get_values` and `watch_prefix` calls at once (one watch per distinct
/// prefix). The host cannot tell an in-process implementation from a plugin
/// process: both are a `dyn Database`.
#[async_trait::async_trait]
pub trait Database: Send + Sync + 'static {
    /// Applies settings. Called once before any other call, and again after
    /// a plugin restart. A bad setting is an [`ErrorKind::InvalidConfig`]
    /// error naming the key.
    async fn configure(&self, config: Config) -> Result<(), Error>;

    /// Returns every store key that equals a requested key or lies below it
    /// as a path (`/app` matches `/app` and `/app/x`, never `/application`).
    /// Keys in the result are absolute store paths starting with `/`.
    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error>;

    /// Blocks until something under `keys` (all below `prefix`) changes after
    /// `wait_index`, and returns the index to pass next time.
    ///
    /// With `wait_index == 0` it returns at once with the current index, so
    /// the host can read after learning the index and miss nothing. Dropping
    /// the future cancels the watch. A store that cannot watch returns
    /// [`ErrorKind::Unimplemented`].
    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error>;

    /// `watch_prefix`, then the values of `keys` as read right after the watch returned, for
    /// a caller that reads next anyway (the host's watch loop). `None` means "read them
    /// yourself". A plugin process sends them along with its watch answer, which saves the
    /// host a round trip per change; the default reads nothing.
    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        Ok((self.watch_prefix(prefix, keys, wait_index).await?, None))
    }

    /// Name, version and capabilities, when the implementation offers them.
    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Err(Error::unimplemented("info is not offered"))
    }
}

/// What a database says about itself through the optional `Info` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    pub version: String,
    /// Capability names such as `"watch"`; unknown names are ignored.
    pub capabilities: Vec<String>,
    /// The store member in use now (e.g. an etcd member's URL); empty when there is nothing
    /// to say. Backends with several members fill it in their `info`.
    pub member: String,
}

#[async_trait::async_trait]
impl<T: Database + ?Sized> Database for Arc<T> {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        (**self).configure(config).await
    }
    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        (**self).get_values(keys).await
    }
    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        (**self).watch_prefix(prefix, keys, wait_index).await
    }
    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        (**self).watch_prefix_values(prefix, keys, wait_index).await
    }
    async fn info(&self) -> Result<DatabaseInfo, Error> {
        (**self).info().await
    }
}
