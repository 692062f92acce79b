//! The conformance test shown in docs/writing-a-plugin.md ("Testing your plugin"), run on the
//! documented minimal plugin (examples/minimal.rs), so the documented code keeps compiling and
//! passing. Keep the two in sync.

use std::sync::{Arc, Mutex};

#[allow(dead_code)]
#[path = "../examples/minimal.rs"]
mod minimal;
// The docs import it as `confd_database_memo::Memory`.
use minimal::lib::Memory;

use confd_sdk::testing::{Conformance, Fixture, FixtureError};
use confd_sdk::{Config, Database};

struct Settings {
    store: Arc<Memory>,
    data: Mutex<Config>,
}

impl Settings {
    async fn apply(&self, change: impl FnOnce(&mut Config)) -> Result<(), FixtureError> {
        change(&mut self.data.lock().expect("not poisoned"));
        Ok(self.store.configure(self.config()).await?)
    }
}

#[async_trait::async_trait]
impl Fixture for Settings {
    fn config(&self) -> Config {
        self.data.lock().expect("not poisoned").clone()
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        self.apply(|data| drop(data.insert(format!("data.{key}"), value.to_string())))
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        self.apply(|data| drop(data.remove(&format!("data.{key}"))))
            .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn honours_the_database_contract() {
    let store = Arc::new(Memory::default());
    let fixture = Settings {
        store: Arc::clone(&store),
        data: Mutex::default(),
    };
    Conformance::new(move || Arc::clone(&store), fixture)
        .name("memo")
        .cannot_watch()
        .run()
        .await;
}
