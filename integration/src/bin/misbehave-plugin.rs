//! A plugin that breaks on demand, so the host's handling of plugins that die or hang in the
//! middle of a call is tested against a real gRPC peer. `MISBEHAVE=crash` exits with status 7
//! inside GetValues (status 8 inside a WatchPrefix with an index); `MISBEHAVE=hang` never
//! answers GetValues. Everything else works.

use std::collections::BTreeMap;

use confd_sdk::{Config, Database, Error, ServeOpts, async_trait, serve};

struct Misbehave {
    mode: String,
}

#[async_trait]
impl Database for Misbehave {
    async fn configure(&self, _config: Config) -> Result<(), Error> {
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        match self.mode.as_str() {
            "crash" => std::process::exit(7),
            "hang" => std::future::pending().await,
            _ => Ok(keys.iter().map(|k| (k.clone(), "ok".to_string())).collect()),
        }
    }

    async fn watch_prefix(&self, _p: &str, _k: &[String], index: u64) -> Result<u64, Error> {
        if self.mode == "crash" && index > 0 {
            // die while the host is waiting on the watch stream
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            std::process::exit(8);
        }
        Ok(index + 1)
    }
}

fn main() {
    let mode = std::env::var("MISBEHAVE").unwrap_or_default();
    serve(ServeOpts::new("misbehave", move || Misbehave { mode }));
}
