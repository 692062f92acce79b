//! A plugin that breaks on demand, so the host's handling of plugins that die or hang in the
//! middle of a call is tested against a real gRPC peer. `MISBEHAVE=crash` exits with status 7
//! inside GetValues (status 8 inside a WatchPrefix with an index); `MISBEHAVE=hang` never
//! answers GetValues; `MISBEHAVE=crash-once` exits with status 7 in the first GetValues of the
//! first process only (a marker file, `MISBEHAVE_MARK`, remembers it across restarts);
//! `MISBEHAVE=flood` writes `MISBEHAVE_BYTES` (100 MiB) bytes to stderr without a newline inside
//! GetValues, then exits 3; `MISBEHAVE=block-watch` holds every WatchPrefix with an index open;
//! `MISBEHAVE=no-watch` says in Info that it watches (what the host assumes of a Go plugin
//! without Info) yet answers WatchPrefix with Unimplemented, and GetValues with the contents of
//! the file `MISBEHAVE_VALUE` names, so that a test sees it polled.
//! Otherwise GetValues answers every key with the `value` setting of the last Configure (or
//! `ok`), so a test sees whether a restarted plugin got its settings back.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use confd_sdk::{Config, Database, Error, ServeOpts, async_trait, serve};

struct Misbehave {
    mode: String,
    value: Mutex<String>,
}

impl Misbehave {
    /// True the first time any process of this plugin asks (the marker file survives restarts).
    fn first_time() -> bool {
        let Some(mark) = std::env::var_os("MISBEHAVE_MARK") else {
            return true;
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(mark)
            .is_ok()
    }
}

#[async_trait]
impl Database for Misbehave {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        if let (Some(v), Ok(mut value)) = (config.get("value"), self.value.lock()) {
            value.clone_from(v);
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        match self.mode.as_str() {
            "crash" => std::process::exit(7),
            "crash-once" if Self::first_time() => std::process::exit(7),
            "hang" => std::future::pending().await,
            "no-watch" => {
                let path = std::env::var_os("MISBEHAVE_VALUE").unwrap_or_default();
                let value = std::fs::read_to_string(&path)
                    .map_err(|e| Error::unavailable(format!("reading the value file: {e}")))?;
                Ok(keys
                    .iter()
                    .map(|k| (k.clone(), value.trim().to_string()))
                    .collect())
            }
            "flood" => flood(
                std::env::var("MISBEHAVE_BYTES")
                    .ok()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(100 << 20),
            ),
            _ => {
                let value = self.value.lock().map(|v| v.clone()).unwrap_or_default();
                Ok(keys.iter().map(|k| (k.clone(), value.clone())).collect())
            }
        }
    }

    async fn watch_prefix(&self, _p: &str, _k: &[String], index: u64) -> Result<u64, Error> {
        if self.mode == "no-watch" {
            return Err(Error::unimplemented("this plugin cannot watch"));
        }
        if self.mode == "crash" && index > 0 {
            // die while the host is waiting on the watch stream
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            std::process::exit(8);
        }
        if self.mode == "block-watch" && index > 0 {
            // a watch that waits for a change that never comes, as a quiet store does
            std::future::pending::<()>().await;
        }
        Ok(index + 1)
    }
}

/// Writes `bytes` bytes of `x` to stderr without a newline, in chunks.
fn flood(bytes: usize) -> ! {
    let chunk = vec![b'x'; 1 << 16];
    let mut stderr = std::io::stderr().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if stderr.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let _ = stderr.flush();
    std::process::exit(3);
}

fn main() {
    let mode = std::env::var("MISBEHAVE").unwrap_or_default();
    let claims: &[&str] = if mode == "no-watch" { &["watch"] } else { &[] };
    serve(
        ServeOpts::new("misbehave", move || Misbehave {
            mode,
            value: Mutex::new("ok".to_string()),
        })
        .capabilities(claims.iter().copied()),
    );
}
