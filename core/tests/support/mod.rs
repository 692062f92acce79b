//! Test support: an in-memory `Database` that counts calls and can fail on
//! demand, and a throwaway confdir.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_core::{Backends, RunOptions};
use confd_sdk::{Config, Database, Error};

#[derive(Default)]
struct State {
    values: BTreeMap<String, String>,
    index: u64,
    down: bool,
}

/// A BTreeMap behind the `Database` trait; every change bumps one global index.
pub struct MemDb {
    state: Mutex<State>,
    bump: tokio::sync::watch::Sender<u64>,
    can_watch: bool,
    pub get_calls: AtomicUsize,
    pub watch_first_calls: AtomicUsize,
    pub watch_calls: AtomicUsize,
}

impl MemDb {
    pub fn new(values: &[(&str, &str)]) -> Arc<MemDb> {
        Self::build(values, true)
    }
    pub fn without_watch(values: &[(&str, &str)]) -> Arc<MemDb> {
        Self::build(values, false)
    }
    fn build(values: &[(&str, &str)], can_watch: bool) -> Arc<MemDb> {
        let state = State {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            index: 1,
            down: false,
        };
        Arc::new(MemDb {
            state: Mutex::new(state),
            bump: tokio::sync::watch::channel(0).0,
            can_watch,
            get_calls: AtomicUsize::new(0),
            watch_first_calls: AtomicUsize::new(0),
            watch_calls: AtomicUsize::new(0),
        })
    }
    pub fn set(&self, key: &str, value: &str) {
        {
            let mut s = self.state.lock().expect("lock");
            s.values.insert(key.to_string(), value.to_string());
            s.index += 1;
        }
        self.bump.send_modify(|v| *v += 1);
    }
    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
        self.bump.send_modify(|v| *v += 1);
    }
    pub fn gets(&self) -> usize {
        self.get_calls.load(Ordering::SeqCst)
    }
    pub fn backends(self: &Arc<Self>) -> Backends {
        let mut b = Backends::new();
        b.insert("mem".to_string(), self.clone() as confd_sdk::SharedDatabase);
        b
    }
}

fn under(key: &str, base: &str) -> bool {
    base == "/"
        || key == base
        || key
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[confd_sdk::async_trait]
impl Database for MemDb {
    async fn configure(&self, _config: Config) -> Result<(), Error> {
        Ok(())
    }
    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.get_calls.fetch_add(1, Ordering::SeqCst);
        let s = self.state.lock().expect("lock");
        if s.down {
            return Err(Error::unavailable("memdb is down"));
        }
        Ok(s.values
            .iter()
            .filter(|(k, _)| keys.iter().any(|q| under(k, q)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        if !self.can_watch {
            return Err(Error::unimplemented("memdb without watch"));
        }
        self.watch_calls.fetch_add(1, Ordering::SeqCst);
        if wait_index == 0 {
            self.watch_first_calls.fetch_add(1, Ordering::SeqCst);
        }
        let mut rx = self.bump.subscribe();
        loop {
            {
                let s = self.state.lock().expect("lock");
                if s.down {
                    return Err(Error::unavailable("memdb is down"));
                }
                if wait_index == 0 || s.index > wait_index {
                    return Ok(s.index);
                }
            }
            if rx.changed().await.is_err() {
                return Err(Error::internal("memdb dropped"));
            }
        }
    }
}

/// A confdir with `conf.d`, `templates` and an `out` directory for dests.
pub struct Confdir {
    pub dir: tempfile::TempDir,
}

impl Confdir {
    pub fn new() -> Confdir {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["conf.d", "templates", "out"] {
            fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Confdir { dir }
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    pub fn template(&self, name: &str, text: &str) {
        fs::write(self.dir.path().join("templates").join(name), text).expect("template");
    }
    /// Writes `conf.d/<name>.toml` with dest `out/<name>` and `extra` lines.
    pub fn resource(&self, name: &str, src: &str, keys: &[&str], extra: &str) {
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        let body = format!(
            "[template]\nsrc = {src:?}\ndest = {:?}\nkeys = [{}]\n{extra}\n",
            self.dest(name).display().to_string(),
            keys.join(", ")
        );
        fs::write(
            self.dir.path().join("conf.d").join(format!("{name}.toml")),
            body,
        )
        .expect("resource");
    }
    pub fn dest(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }
    pub fn opts(&self) -> RunOptions {
        RunOptions {
            confdir: self.dir.path().to_path_buf(),
            default_backend: "mem".into(),
            check_cmd_timeout: Duration::from_secs(10),
            reload_cmd_timeout: Duration::from_secs(10),
            debounce: Duration::from_millis(0),
            ..Default::default()
        }
    }
    pub fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dest(name)).ok()
    }
    /// Every entry in `out/`, sorted (stage files included).
    pub fn listing(&self) -> Vec<String> {
        list(&self.out())
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
