//! An in-process **emulator** of Consul's KV HTTP API, because no Consul
//! server can be installed here. It is not Consul: it implements only the
//! documented KV surface confd uses (GET/PUT/DELETE `/v1/kv/<key>`,
//! `?recurse`, `?keys`, base64 `Value`, the index fields, `X-Consul-Index`,
//! blocking queries with `?index=&wait=`, `/v1/status/leader`, an ACL token
//! check) following Consul's documented semantics, so the consul backend can
//! be tested without a network or a real cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use rand::Rng as _;

use crate::emulator::{self, EmulatorTls, ServerThread};

/// Consul's default blocking-query wait and its upper bound.
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    flags: u64,
}

#[derive(Debug, Default)]
struct Kv {
    /// The raft index: bumped by every write.
    index: u64,
    entries: BTreeMap<String, Entry>,
    /// Deleted keys and the index of their deletion (Consul's graveyard),
    /// so a blocking list on a prefix wakes when a key under it is deleted.
    tombstones: BTreeMap<String, u64>,
}

impl Kv {
    /// The index Consul reports for a list of `prefix`: the highest modify
    /// index among the entries and tombstones under it, else the table index.
    fn list_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.index;
        }
        let entries = self
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.modify_index);
        let graves = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i);
        match entries.chain(graves).max() {
            Some(i) if i > 0 => i,
            _ => self.index,
        }
    }

    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn put(&mut self, key: &str, value: Vec<u8>, flags: u64) {
        self.index += 1;
        let index = self.index;
        self.tombstones.remove(key);
        let entry = self.entries.entry(key.to_string()).or_insert(Entry {
            value: Vec::new(),
            create_index: index,
            modify_index: index,
            lock_index: 0,
            flags: 0,
        });
        entry.value = value;
        entry.modify_index = index;
        entry.flags = flags;
    }

    fn delete(&mut self, key: &str, recurse: bool) {
        let doomed: Vec<String> = if recurse {
            self.under(key).map(|(k, _)| k.clone()).collect()
        } else {
            self.entries.keys().filter(|k| *k == key).cloned().collect()
        };
        self.index += 1;
        for k in doomed {
            self.entries.remove(&k);
            self.tombstones.insert(k, self.index);
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    kv: Mutex<Kv>,
    /// Bumped on every change; parked blocking queries wait on it.
    changed: tokio::sync::watch::Sender<u64>,
    token: Mutex<Option<String>>,
    max_wait: Mutex<Option<Duration>>,
    requests: Mutex<Vec<String>>,
}

impl Shared {
    fn kv(&self) -> MutexGuard<'_, Kv> {
        self.kv.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The Consul KV emulator: an HTTP server on 127.0.0.1 running on its own
/// thread and runtime, so it works under any test runtime and `stop` can
/// cut every open connection (as a dying agent would).
#[derive(Debug)]
pub struct ConsulEmulator {
    shared: Arc<Shared>,
    port: u16,
    tls: Option<EmulatorTls>,
    server: Option<ServerThread>,
}

impl ConsulEmulator {
    /// Starts the emulator on a free loopback port.
    pub fn start() -> ConsulEmulator {
        ConsulEmulator::launch(None)
    }

    /// Starts the emulator serving HTTPS with `tls`, as an agent with `verify_incoming` off.
    pub fn start_tls(tls: EmulatorTls) -> ConsulEmulator {
        ConsulEmulator::launch(Some(tls))
    }

    fn launch(tls: Option<EmulatorTls>) -> ConsulEmulator {
        let shared = Arc::new(Shared::default());
        let (port, server) = emulator::spawn(0, router(shared.clone()), tls.clone())
            .expect("binding the Consul emulator");
        ConsulEmulator {
            shared,
            port,
            tls,
            server: Some(server),
        }
    }

    /// `127.0.0.1:<port>`, the form the consul backend's `nodes` takes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`, or `https://` when started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address())
    }

    /// Requires this ACL token on every request (`X-Consul-Token` header,
    /// `Authorization: Bearer` or `?token=`); `None` turns the check off.
    pub fn set_token(&self, token: Option<&str>) {
        *self.shared.token.lock().unwrap_or_else(|p| p.into_inner()) = token.map(str::to_string);
    }

    /// Caps every blocking query's wait (Consul caps at 10 minutes; tests
    /// use a short cap to see timeouts quickly).
    pub fn set_max_wait(&self, wait: Option<Duration>) {
        *self
            .shared
            .max_wait
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = wait;
    }

    /// Writes a key directly (no HTTP), bumping the index like a PUT.
    pub fn put(&self, key: &str, value: &str) {
        self.put_bytes(key, value.as_bytes());
    }

    /// [`Self::put`] with any bytes as the value (Consul stores bytes; the API sends them as
    /// base64), e.g. bytes that are not UTF-8.
    pub fn put_bytes(&self, key: &str, value: &[u8]) {
        self.shared
            .kv()
            .put(key.trim_start_matches('/'), value.to_vec(), 0);
        self.shared.notify();
    }

    /// Deletes a key (or, with `recurse`, everything under the prefix).
    pub fn delete(&self, key: &str, recurse: bool) {
        self.shared
            .kv()
            .delete(key.trim_start_matches('/'), recurse);
        self.shared.notify();
    }

    /// The current raft index.
    pub fn index(&self) -> u64 {
        self.shared.kv().index
    }

    /// Moves the raft index back to `index` (as a snapshot restore or a
    /// rebuilt cluster does): every entry's indexes are clamped to it and
    /// the graveyard is emptied. Clients must notice the index going
    /// backwards and start again from 0.
    pub fn reset_index(&self, index: u64) {
        {
            let mut kv = self.shared.kv();
            kv.index = index;
            kv.tombstones.clear();
            for entry in kv.entries.values_mut() {
                entry.create_index = entry.create_index.min(index);
                entry.modify_index = entry.modify_index.min(index);
            }
        }
        self.shared.notify();
    }

    /// Every request seen so far as `METHOD path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops serving and drops every open connection; the data stays.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Serves again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let (_, server) = emulator::spawn(self.port, router(self.shared.clone()), self.tls.clone())
            .expect("rebinding the emulator port");
        self.server = Some(server);
    }
}

impl Drop for ConsulEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/kv/", any(kv_handler))
        .route("/v1/kv/{*key}", any(kv_handler))
        .route("/v1/status/leader", get(leader))
        .with_state(shared)
}

async fn leader() -> impl IntoResponse {
    ([("Content-Type", "application/json")], "\"127.0.0.1:8300\"")
}

fn authorized(shared: &Shared, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let Some(expected) = shared
        .token
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    else {
        return true;
    };
    let header = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let given = header.or(bearer).or_else(|| query.get("token").cloned());
    given.as_deref() == Some(expected.as_str())
}

/// Parses a Go duration as Consul accepts it for `wait` (`10s`, `5m`, `250ms`).
fn parse_wait(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

fn with_index(status: StatusCode, index: u64, body: String) -> Response {
    (
        status,
        [
            ("Content-Type", "application/json".to_string()),
            ("X-Consul-Index", index.to_string()),
            ("X-Consul-KnownLeader", "true".to_string()),
            ("X-Consul-LastContact", "0".to_string()),
        ],
        body,
    )
        .into_response()
}

fn entry_json(key: &str, e: &Entry) -> serde_json::Value {
    let value = if e.value.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
    };
    serde_json::json!({
        "LockIndex": e.lock_index,
        "Key": key,
        "Flags": e.flags,
        "Value": value,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

async fn kv_handler(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{method} {uri}"));
    if !authorized(&shared, &headers, &query) {
        return (StatusCode::FORBIDDEN, "Permission denied").into_response();
    }
    let key = uri
        .path()
        .strip_prefix("/v1/kv/")
        .unwrap_or_default()
        .to_string();
    let key = percent_decode(&key);
    let recurse = query.contains_key("recurse");
    match method {
        Method::GET => get_kv(&shared, &key, &query, recurse).await,
        Method::PUT => {
            let flags = query.get("flags").and_then(|f| f.parse().ok()).unwrap_or(0);
            let applied = {
                let mut kv = shared.kv();
                let cas_ok = match query.get("cas").map(|c| c.parse::<u64>()) {
                    None => true,
                    Some(Err(_)) => return (StatusCode::BAD_REQUEST, "bad cas").into_response(),
                    Some(Ok(0)) => !kv.entries.contains_key(&key),
                    Some(Ok(i)) => kv.entries.get(&key).is_some_and(|e| e.modify_index == i),
                };
                if cas_ok {
                    kv.put(&key, body.to_vec(), flags);
                }
                cas_ok
            };
            if applied {
                shared.notify();
            }
            with_index(StatusCode::OK, shared.kv().index, applied.to_string())
        }
        Method::DELETE => {
            shared.kv().delete(&key, recurse);
            shared.notify();
            with_index(StatusCode::OK, shared.kv().index, "true".to_string())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response(),
    }
}

/// One read of the KV state: status, index and body.
fn read_kv(
    kv: &Kv,
    key: &str,
    query: &HashMap<String, String>,
    recurse: bool,
) -> (u64, Option<String>) {
    if query.contains_key("keys") {
        let separator = query.get("separator").filter(|s| !s.is_empty());
        let mut keys: Vec<String> = Vec::new();
        for (k, _) in kv.under(key) {
            let folded = match separator {
                Some(sep) => match k[key.len()..].find(sep.as_str()) {
                    Some(pos) => k[..key.len() + pos + sep.len()].to_string(),
                    None => k.clone(),
                },
                None => k.clone(),
            };
            if keys.last() != Some(&folded) {
                keys.push(folded);
            }
        }
        let index = kv.list_index(key);
        let body = (!keys.is_empty()).then(|| serde_json::json!(keys).to_string());
        return (index, body);
    }
    if recurse {
        let list: Vec<serde_json::Value> = kv.under(key).map(|(k, e)| entry_json(k, e)).collect();
        let body = (!list.is_empty()).then(|| serde_json::Value::Array(list).to_string());
        return (kv.list_index(key), body);
    }
    match kv.entries.get(key) {
        Some(e) => (
            e.modify_index,
            Some(serde_json::json!([entry_json(key, e)]).to_string()),
        ),
        None => (kv.index, None),
    }
}

async fn get_kv(
    shared: &Shared,
    key: &str,
    query: &HashMap<String, String>,
    recurse: bool,
) -> Response {
    let min_index: u64 = match query.get("index").map(|i| i.parse()) {
        None => 0,
        Some(Ok(i)) => i,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "Invalid index").into_response(),
    };
    let mut wait = match query.get("wait").map(|w| parse_wait(w)) {
        None => DEFAULT_WAIT,
        Some(Some(w)) => w.min(MAX_WAIT),
        Some(None) => return (StatusCode::BAD_REQUEST, "Invalid wait time").into_response(),
    };
    if let Some(cap) = *shared.max_wait.lock().unwrap_or_else(|p| p.into_inner()) {
        wait = wait.min(cap);
    }
    // Consul adds up to wait/16 of random jitter to spread wake-ups.
    let jitter_ms = (wait.as_millis() / 16) as u64;
    let jitter = Duration::from_millis(rand::rng().random_range(0..=jitter_ms));
    let deadline = tokio::time::Instant::now() + wait + jitter;
    let mut changes = shared.changed.subscribe();
    loop {
        let (index, body) = read_kv(&shared.kv(), key, query, recurse);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if min_index == 0 || index > min_index || timed_out {
            return match body {
                Some(body) => with_index(StatusCode::OK, index, body),
                None => with_index(StatusCode::NOT_FOUND, index, String::new()),
            };
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_wait("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_wait("10"), None);
        assert_eq!(parse_wait("x"), None);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn list_index_follows_entries_and_graveyard() {
        let mut kv = Kv::default();
        kv.put("app/a", b"1".to_vec(), 0); // 1
        kv.put("other", b"2".to_vec(), 0); // 2
        assert_eq!(kv.list_index("app/"), 1);
        kv.delete("app/a", false); // 3
        assert_eq!(kv.list_index("app/"), 3);
        assert_eq!(kv.list_index("nothing/"), 3, "no entries: the table index");
    }
}
