//! The env database against the SDK's conformance suite, called directly and served through
//! the plugin path. Its variables are fixed when the database is made, as a process's
//! environment is, so the suite's keys are stored as variable names before that.

use std::sync::{Arc, Mutex};

use confd_builtin_env::{EnvDatabase, key_to_name};
use confd_sdk::Config;
use confd_sdk::testing::{Conformance, Fixture, FixtureError};

/// The environment the databases will be made with: `/conformance/app/port` is
/// `CONFORMANCE_APP_PORT`.
#[derive(Clone, Default)]
struct Environment(Arc<Mutex<Vec<(String, String)>>>);

#[async_trait::async_trait]
impl Fixture for Environment {
    fn config(&self) -> Config {
        Config::new()
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), FixtureError> {
        let mut vars = self.0.lock().expect("not poisoned");
        vars.push((key_to_name(key), value.to_string()));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), FixtureError> {
        let name = key_to_name(key);
        self.0
            .lock()
            .expect("not poisoned")
            .retain(|(n, _)| *n != name);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_honours_the_contract() {
    let environment = Environment::default();
    let vars = environment.clone();
    let factory = move || EnvDatabase::with_vars(vars.0.lock().expect("not poisoned").clone());
    Conformance::new(factory, environment)
        .name(confd_builtin_env::NAME)
        .static_data()
        .cannot_watch()
        .bad_setting("nodes", "x")
        .run()
        .await;
}
