//! An in-process **Vault emulator**: an emulator of the parts of Vault's documented HTTP API the
//! vault backend uses, because no Vault server can be installed here. It is not Vault. It serves
//! KV version 1 and 2 mounts (reads, `?list=true` listings, v2's `data/` and `metadata/`
//! paths and soft deletes), `sys/internal/ui/mounts`, the login endpoints of the token, app-id,
//! approle, userpass, github, kubernetes and cert methods, `auth/token/lookup-self` and
//! `auth/token/renew-self` with leases that really expire, Vault's `{"errors": [...]}` bodies,
//! and paths that answer 403, so every client request stays within what Vault documents.
//! It speaks plain HTTP, or HTTPS with [`VaultEmulator::start_tls`] (client certificates are
//! requested and, when given, must be signed by the CA; the cert login requires one).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use rand::Rng as _;
use serde_json::{Value, json};

use crate::emulator::{self, CLIENT_CERT_HEADER, EmulatorTls, ServerThread};

/// One auth method mounted at a path, with the one identity it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultLogin {
    AppId {
        app_id: String,
        user_id: String,
    },
    AppRole {
        role_id: String,
        secret_id: String,
    },
    UserPass {
        username: String,
        password: String,
    },
    Github {
        token: String,
    },
    Kubernetes {
        role: String,
        jwt: String,
    },
    /// Accepts any login made over TLS with a client certificate.
    Cert,
}

#[derive(Debug, Clone)]
struct Secret {
    data: Value,
    /// KV v2 soft delete: the latest version is deleted, the metadata stays.
    deleted: bool,
}

#[derive(Debug, Default)]
struct Mount {
    version: u8,
    secrets: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone)]
struct Token {
    expires: Option<Instant>,
    ttl: Duration,
    renewable: bool,
}

#[derive(Debug)]
struct State_ {
    mounts: BTreeMap<String, Mount>,
    logins: BTreeMap<String, VaultLogin>,
    tokens: HashMap<String, Token>,
    denied: Vec<String>,
    login_ttl: Duration,
    login_renewable: bool,
    /// The most a renewal extends a token to, counted from its login (Vault's max TTL).
    max_ttl: Option<Duration>,
    issued: HashMap<String, Instant>,
    requests: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State_>,
    tls: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Vault emulator: an HTTP(S) server on 127.0.0.1 on its own thread and runtime.
#[derive(Debug)]
pub struct VaultEmulator {
    shared: Arc<Shared>,
    port: u16,
    root: String,
    server: Option<ServerThread>,
}

impl VaultEmulator {
    /// Starts the emulator on a free loopback port, with no mounts and one root token.
    pub fn start() -> VaultEmulator {
        VaultEmulator::launch(None)
    }

    /// Starts the emulator serving HTTPS with `tls`.
    pub fn start_tls(tls: EmulatorTls) -> VaultEmulator {
        VaultEmulator::launch(Some(tls))
    }

    fn launch(tls: Option<EmulatorTls>) -> VaultEmulator {
        let root = format!("hvs.root-{}", random_id());
        let mut tokens = HashMap::new();
        tokens.insert(
            root.clone(),
            Token {
                expires: None,
                ttl: Duration::ZERO,
                renewable: false,
            },
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State_ {
                mounts: BTreeMap::new(),
                logins: BTreeMap::new(),
                tokens,
                denied: Vec::new(),
                login_ttl: Duration::from_secs(3600),
                login_renewable: true,
                max_ttl: None,
                issued: HashMap::new(),
                requests: Vec::new(),
            }),
            tls: tls.is_some(),
        });
        let (port, server) =
            emulator::spawn(0, router(shared.clone()), tls).expect("starting the Vault emulator");
        VaultEmulator {
            shared,
            port,
            root,
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:<port>` (or `https://`), the form `VAULT_ADDR` and the backend's
    /// `nodes` take.
    pub fn address(&self) -> String {
        let scheme = if self.shared.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The root token: valid for ever, never renewable.
    pub fn root_token(&self) -> String {
        self.root.clone()
    }

    /// Mounts a KV engine of `version` (1 or 2) at `path` (`secret`, `kv-v2`).
    pub fn mount_kv(&self, path: &str, version: u8) {
        self.shared.state().mounts.insert(
            path.trim_matches('/').to_string(),
            Mount {
                version,
                secrets: BTreeMap::new(),
            },
        );
    }

    /// Writes the secret at `mount/path` with `data` (a JSON object), as `vault kv put` would.
    pub fn put(&self, mount: &str, path: &str, data: Value) {
        let mut state = self.shared.state();
        let mount = state
            .mounts
            .get_mut(mount.trim_matches('/'))
            .unwrap_or_else(|| panic!("no mount {mount:?} in the Vault emulator"));
        mount.secrets.insert(
            path.trim_matches('/').to_string(),
            Secret {
                data,
                deleted: false,
            },
        );
    }

    /// Removes a secret: a KV v1 delete, or a KV v2 soft delete of the latest version.
    pub fn delete(&self, mount: &str, path: &str) {
        let mut state = self.shared.state();
        let Some(mount) = state.mounts.get_mut(mount.trim_matches('/')) else {
            return;
        };
        let path = path.trim_matches('/');
        if mount.version == 2 {
            if let Some(secret) = mount.secrets.get_mut(path) {
                secret.deleted = true;
            }
        } else {
            mount.secrets.remove(path);
        }
    }

    /// Mounts an auth method at `path` (`approle`, `test`) accepting one identity.
    pub fn enable_login(&self, path: &str, login: VaultLogin) {
        self.shared
            .state()
            .logins
            .insert(path.trim_matches('/').to_string(), login);
    }

    /// Makes a token that expires after `ttl` (renewable or not).
    pub fn create_token(&self, ttl: Duration, renewable: bool) -> String {
        let token = format!("hvs.{}", random_id());
        let mut state = self.shared.state();
        state.issued.insert(token.clone(), Instant::now());
        state.tokens.insert(
            token.clone(),
            Token {
                expires: Some(Instant::now() + ttl),
                ttl,
                renewable,
            },
        );
        token
    }

    /// The lease of tokens that logins issue from now on (default one hour, renewable).
    pub fn set_login_lease(&self, ttl: Duration, renewable: bool) {
        let mut state = self.shared.state();
        state.login_ttl = ttl;
        state.login_renewable = renewable;
    }

    /// The longest a token can live counted from its login, renewals included.
    pub fn set_max_ttl(&self, max: Option<Duration>) {
        self.shared.state().max_ttl = max;
    }

    /// Every read or list under `prefix` (a full API path such as `secret/private` or
    /// `kv/data/team`) answers 403, as a policy without that path would.
    pub fn deny(&self, prefix: &str) {
        self.shared
            .state()
            .denied
            .push(prefix.trim_matches('/').to_string());
    }

    /// Revokes every token but the root token.
    pub fn revoke_tokens(&self) {
        let root = self.root.clone();
        self.shared.state().tokens.retain(|t, _| *t == root);
    }

    /// Every request seen so far as `METHOD path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared.state().requests.clone()
    }

    /// How many requests went to a path containing `fragment`.
    pub fn count(&self, fragment: &str) -> usize {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|r| r.contains(fragment))
            .count()
    }

    /// Stops serving; the data stays.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for VaultEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn random_id() -> String {
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/{*path}", any(handler))
        .with_state(shared)
}

fn errors(status: StatusCode, messages: &[&str]) -> Response {
    (
        status,
        [("Content-Type", "application/json")],
        json!({ "errors": messages }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("Content-Type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether the request carries a client certificate: the HTTPS layer marks it.
async fn handler(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/v1/")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let mut state = shared.state();
    state.requests.push(format!("{method} {uri}"));
    let token = headers
        .get("X-Vault-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return errors(StatusCode::BAD_REQUEST, &["failed to parse JSON input"]),
        }
    };
    if let Some(rest) = path.strip_prefix("auth/") {
        if rest == "token/lookup-self" && method == Method::GET {
            return lookup_self(&mut state, token.as_deref());
        }
        if rest == "token/renew-self" && (method == Method::POST || method == Method::PUT) {
            return renew_self(&mut state, token.as_deref());
        }
        if method == Method::POST || method == Method::PUT {
            let has_cert = headers.contains_key(CLIENT_CERT_HEADER);
            return login(&mut state, rest, &body, has_cert);
        }
        return errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]);
    }
    if !valid(&mut state, token.as_deref()) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    if method != Method::GET {
        return errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]);
    }
    if path == "sys/internal/ui/mounts" {
        let secret: serde_json::Map<String, Value> = state
            .mounts
            .iter()
            .map(|(p, m)| (format!("{p}/"), mount_json(p, m)))
            .collect();
        return ok(json!({ "data": { "secret": secret, "auth": {} } }));
    }
    if let Some(rest) = path.strip_prefix("sys/internal/ui/mounts/") {
        return match find_mount(&state, rest) {
            Some((p, m)) => ok(json!({ "data": mount_json(p, m) })),
            None => errors(
                StatusCode::BAD_REQUEST,
                &[&format!("no mount found for path {rest:?}")],
            ),
        };
    }
    if state
        .denied
        .iter()
        .any(|d| path == *d || path.starts_with(&format!("{d}/")))
    {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let list = query.get("list").is_some_and(|l| l == "true");
    let Some((mount_path, mount)) = find_mount(&state, &path) else {
        return errors(
            StatusCode::NOT_FOUND,
            &[&format!("no handler for route \"{path}\"")],
        );
    };
    let rest = path[mount_path.len()..].trim_start_matches('/');
    if mount.version == 2 {
        let (kind, secret_path) = match rest.split_once('/') {
            Some((kind, p)) => (kind, p),
            None => (rest, ""),
        };
        match (kind, list) {
            ("metadata", true) => list_keys(mount, secret_path),
            ("data", false) => match mount.secrets.get(secret_path) {
                Some(s) if !s.deleted => ok(json!({
                    "data": { "data": s.data, "metadata": { "version": 1, "destroyed": false,
                        "deletion_time": "" } }
                })),
                Some(_) => (
                    StatusCode::NOT_FOUND,
                    [("Content-Type", "application/json")],
                    json!({ "data": { "data": null, "metadata": { "version": 1,
                        "deletion_time": "2024-01-01T00:00:00Z" } } })
                    .to_string(),
                )
                    .into_response(),
                None => errors(StatusCode::NOT_FOUND, &[]),
            },
            _ => errors(
                StatusCode::NOT_FOUND,
                &[&format!("no handler for route \"{path}\"")],
            ),
        }
    } else if list {
        list_keys(mount, rest)
    } else {
        match mount.secrets.get(rest) {
            Some(s) => ok(json!({ "data": s.data, "lease_duration": 2_764_800 })),
            None => errors(StatusCode::NOT_FOUND, &[]),
        }
    }
}

fn mount_json(path: &str, mount: &Mount) -> Value {
    json!({
        "type": "kv",
        "path": format!("{path}/"),
        "options": { "version": mount.version.to_string() },
    })
}

fn find_mount<'a>(state: &'a State_, path: &str) -> Option<(&'a str, &'a Mount)> {
    state
        .mounts
        .iter()
        .filter(|(p, _)| path == p.as_str() || path.starts_with(&format!("{p}/")))
        .max_by_key(|(p, _)| p.len())
        .map(|(p, m)| (p.as_str(), m))
}

fn list_keys(mount: &Mount, dir: &str) -> Response {
    let dir = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut keys: Vec<String> = Vec::new();
    for (path, secret) in mount.secrets.range(dir.clone()..) {
        let Some(rest) = path.strip_prefix(&dir) else {
            break;
        };
        // KV v2 lists soft-deleted secrets too: their metadata stays.
        let _ = secret;
        if rest.is_empty() {
            continue;
        }
        let entry = match rest.find('/') {
            Some(at) => rest[..=at].to_string(),
            None => rest.to_string(),
        };
        if !keys.contains(&entry) {
            keys.push(entry);
        }
    }
    if keys.is_empty() {
        return errors(StatusCode::NOT_FOUND, &[]);
    }
    ok(json!({ "data": { "keys": keys } }))
}

fn valid(state: &mut State_, token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    let now = Instant::now();
    match state.tokens.get(token) {
        Some(t) if t.expires.is_none_or(|e| e > now) => true,
        Some(_) => {
            state.tokens.remove(token);
            false
        }
        None => false,
    }
}

fn lookup_self(state: &mut State_, token: Option<&str>) -> Response {
    if !valid(state, token) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let t = &state.tokens[token.unwrap_or_default()];
    let ttl = t
        .expires
        .map_or(0, |e| e.saturating_duration_since(Instant::now()).as_secs());
    ok(json!({ "data": { "ttl": ttl, "renewable": t.renewable, "policies": ["default"] } }))
}

fn renew_self(state: &mut State_, token: Option<&str>) -> Response {
    if !valid(state, token) {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    let token = token.unwrap_or_default().to_string();
    let max = state
        .max_ttl
        .zip(state.issued.get(&token).copied())
        .map(|(max, issued)| issued + max);
    let Some(t) = state.tokens.get_mut(&token) else {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    };
    if !t.renewable {
        return errors(StatusCode::BAD_REQUEST, &["lease is not renewable"]);
    }
    let mut expires = Instant::now() + t.ttl;
    if let Some(max) = max {
        expires = expires.min(max);
    }
    t.expires = Some(expires);
    let lease = expires.saturating_duration_since(Instant::now()).as_secs();
    let renewable = t.renewable;
    ok(
        json!({ "auth": { "client_token": token, "lease_duration": lease,
        "renewable": renewable, "policies": ["default"] } }),
    )
}

fn login(state: &mut State_, rest: &str, body: &Value, has_cert: bool) -> Response {
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    let Some((mount, tail)) = rest.split_once("/login") else {
        return errors(StatusCode::NOT_FOUND, &["no handler for route"]);
    };
    let Some(method) = state.logins.get(mount).cloned() else {
        return errors(
            StatusCode::NOT_FOUND,
            &[&format!("no handler for route \"auth/{rest}\"")],
        );
    };
    let accepted = match &method {
        VaultLogin::AppId { app_id, user_id } => {
            tail.is_empty() && field("app_id") == app_id && field("user_id") == user_id
        }
        VaultLogin::AppRole { role_id, secret_id } => {
            tail.is_empty() && field("role_id") == role_id && field("secret_id") == secret_id
        }
        VaultLogin::UserPass { username, password } => {
            tail.strip_prefix('/') == Some(username.as_str()) && field("password") == password
        }
        VaultLogin::Github { token } => tail.is_empty() && field("token") == token,
        VaultLogin::Kubernetes { role, jwt } => {
            tail.is_empty() && field("role") == role && field("jwt") == jwt
        }
        VaultLogin::Cert => tail.is_empty() && has_cert,
    };
    if !accepted {
        let message = match method {
            VaultLogin::UserPass { .. } => "invalid username or password",
            VaultLogin::Cert => "invalid certificate or no client certificate supplied",
            _ => "invalid credentials",
        };
        return errors(StatusCode::BAD_REQUEST, &[message]);
    }
    let token = format!("hvs.{}", random_id());
    let ttl = state.login_ttl;
    let renewable = state.login_renewable;
    state.issued.insert(token.clone(), Instant::now());
    state.tokens.insert(
        token.clone(),
        Token {
            expires: Some(Instant::now() + ttl),
            ttl,
            renewable,
        },
    );
    ok(
        json!({ "auth": { "client_token": token, "lease_duration": ttl.as_secs(),
        "renewable": renewable, "policies": ["default"] } }),
    )
}
