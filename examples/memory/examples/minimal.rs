//! The complete plugin shown in docs/writing-a-plugin.md (there split into lib.rs and main.rs);
//! built by `cargo test` so the documented code keeps compiling. Keep the two in sync.

#[rustfmt::skip]
pub mod lib {
use confd_sdk::{Config, Database, Error, async_trait};
use std::{collections::BTreeMap, sync::RwLock};

/// Settings `data.<path> = <value>` become the store.
#[derive(Default)]
pub struct Memory(RwLock<BTreeMap<String, String>>);

#[async_trait]
impl Database for Memory {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let mut data = BTreeMap::new();
        for (key, value) in config {
            let path = key.strip_prefix("data.").ok_or_else(|| Error::invalid_config(format!("unknown key {key:?}")))?;
            data.insert(path.to_owned(), value);
        }
        *self.0.write().map_err(|_| Error::internal("lock poisoned"))? = data;
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let data = self.0.read().map_err(|_| Error::internal("lock poisoned"))?;
        // `/app` covers `/app` and `/app/x`, not `/application`; `/` covers everything.
        let wanted = |k: &str| keys.iter().any(|p| confd_sdk::keys::is_under(k, p));
        Ok(data.iter().filter(|(k, _)| wanted(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn watch_prefix(&self, _prefix: &str, _keys: &[String], _index: u64) -> Result<u64, Error> {
        Err(Error::unimplemented("the memory store never changes"))
    }
}
}

fn main() {
    confd_sdk::serve(confd_sdk::ServeOpts::new("memory", lib::Memory::default));
}
