//! The memory plugin against the SDK's conformance suite: called directly and served through the
//! plugin path. (The minimal plugin of the docs runs it in documented.rs.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use confd_database_memory::Memory;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_sdk::{Config, Database};

/// The memory store takes its data from `configure` (`data.<path> = value`), so the fixture
/// keeps the map and configures the one store both sides share with it.
struct Settings<M> {
    store: Arc<M>,
    data: Mutex<BTreeMap<String, String>>,
}

impl<M: Database> Settings<M> {
    fn new(store: Arc<M>) -> Settings<M> {
        Settings {
            store,
            data: Mutex::default(),
        }
    }

    async fn apply(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), FixtureError> {
        change(&mut self.data.lock().expect("not poisoned"));
        self.store.configure(self.config()).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<M: Database> Fixture for Settings<M> {
    fn config(&self) -> Config {
        self.data
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (format!("data.{k}"), v.clone()))
            .collect()
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.apply(|data| {
            data.insert(key.to_string(), value.to_string());
        })
        .await
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.apply(|data| {
            data.remove(key);
        })
        .await
    }
    async fn put_all(&self, entries: &[(String, String)]) -> Result<(), FixtureError> {
        self.apply(|data| data.extend(entries.iter().cloned()))
            .await
    }
}

fn suite<M: Database>(store: M) -> Conformance<Arc<M>, Settings<M>> {
    let store = Arc::new(store);
    let fixture = Settings::new(Arc::clone(&store));
    Conformance::new(move || Arc::clone(&store), fixture).name("memory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_as_shipped_honours_the_contract() {
    suite(Memory::new())
        // One version counter for the whole map: every configure wakes every watch.
        .watch_wakes_on_any_change()
        .bad_setting("nodes", "x")
        .serve_options(|opts| {
            opts.visit_values(|memory, keys, visit| memory.visit_values(keys, visit))
        })
        .run()
        .await;
}

/// The same plugin serving only the `Database` trait, as a plugin that does not opt into
/// `visit_values`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_serving_only_the_trait_honours_the_contract() {
    suite(Memory::new()).watch_wakes_on_any_change().run().await;
}
