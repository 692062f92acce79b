//! confd's vault backend: secrets of KV version 1 and 2 mounts read over Vault's documented HTTP
//! API, with the original confd's auth methods (token, app-id, app-role, userpass, github,
//! kubernetes, cert), token renewal before expiry and a new login when a token runs out.
//!
//! A key's first segments name the mount (`/kv-v2/database` is the secret `database` of the mount
//! `kv-v2`); the mount and its KV version come from `sys/internal/ui/mounts` unless `kvVersion`
//! fixes the version. Reading a key reads the secret at that path and every secret listed below
//! it; each secret becomes keys as `flatten` describes. Vault cannot notify changes, so the
//! backend cannot watch: use interval mode.

mod flatten;
mod settings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use confd_sdk::keys::is_under;
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use futures_util::StreamExt as _;
use serde_json::Value;

pub use settings::{Auth, DEFAULT_ADDRESS, DEFAULT_DIAL_TIMEOUT, KUBERNETES_JWT, KvVersion};

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "vault";

/// Secrets read at once while walking a tree.
const PARALLEL_READS: usize = 16;

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "HashiCorp Vault KV v1/v2 secrets; cannot watch (use --interval)",
    // Empty so that VAULT_ADDR can apply; the backend falls back to http://127.0.0.1:8200.
    default_nodes: &[],
    settings: &[
        Setting::from(
            "nodes",
            &["nodes"],
            "Vault address (first node; default VAULT_ADDR or http://127.0.0.1:8200)",
        ),
        Setting::from(
            "authType",
            &["auth_type"],
            "token, app-id, app-role (approle), userpass, github, kubernetes or cert",
        ),
        Setting::from(
            "token",
            &["auth_token"],
            "token (token auth) or GitHub token (github auth); default VAULT_TOKEN",
        ),
        Setting::from("appId", &["app_id"], "app-id auth: app id"),
        Setting::from("userId", &["user_id"], "app-id auth: user id"),
        Setting::from(
            "roleId",
            &["role_id"],
            "app-role auth: role id; kubernetes auth: role",
        ),
        Setting::from("secretId", &["secret_id"], "app-role auth: secret id"),
        Setting::from("username", &["username"], "userpass auth: user"),
        Setting::from("password", &["password"], "userpass auth: password"),
        Setting::from(
            "path",
            &["path"],
            "auth method mount path (default: the method's name, approle for app-role)",
        ),
        Setting::from(
            "cert",
            &["client_cert"],
            "TLS client certificate file (also the cert login)",
        ),
        Setting::from("key", &["client_key"], "TLS client key file"),
        Setting::from(
            "caCert",
            &["client_cakeys"],
            "TLS CA certificate file (default VAULT_CACERT)",
        ),
        Setting::from(
            "insecure",
            &["client_insecure"],
            "do not verify Vault's TLS certificate",
        ),
        Setting::from(
            "kvVersion",
            &[],
            "KV engine version: auto (ask Vault per mount), 1 or 2",
        ),
        Setting::from(
            "jwtFile",
            &[],
            "kubernetes auth: service account token file",
        ),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect and request time limit (default 5s)",
        ),
    ],
    capabilities: &[],
    srv_nodes: SrvNodes::Url,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Vault>,
};

/// A new, unconfigured backend (the factory `confd_sdk::serve` takes).
pub fn database() -> Vault {
    Vault::new()
}

/// The vault backend. Configure it, then read.
#[derive(Debug, Default)]
pub struct Vault {
    state: Configured<Shared>,
}

/// The configured client, shared with its renewal task (which holds it weakly).
struct Shared(Arc<Client>);

impl Vault {
    pub fn new() -> Vault {
        Vault::default()
    }

    fn client(&self) -> Result<Arc<Client>, Error> {
        Ok(self.state.get(NAME)?.0.clone())
    }
}

/// The token in use and what Vault said about its lease.
#[derive(Debug, Default)]
struct Session {
    token: Option<String>,
    /// When the token stops working; `None`: never (root tokens, or not known yet).
    expires: Option<Instant>,
    /// When to renew (or log in again), two thirds into the lease.
    renew_at: Option<Instant>,
    renewable: bool,
    /// The lease the token was issued with, to notice renewals cut short by a max TTL.
    issued_lease: Duration,
}

/// A mount as Vault reported it.
#[derive(Debug, Clone)]
struct Mount {
    /// Without slashes at either end (`kv-v2`, `team/secrets`).
    path: String,
    version: u8,
}

struct Client {
    base: String,
    http: reqwest::Client,
    auth: Auth,
    auth_mount: String,
    kv_version: KvVersion,
    session: tokio::sync::Mutex<Session>,
    mounts: Mutex<Vec<Mount>>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    this: Weak<Client>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = self
            .renewer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Vault's `{"errors": [...]}` as one line, or the body as it is.
fn vault_errors(body: &str) -> String {
    let listed = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.get("errors").and_then(Value::as_array).map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    match listed {
        Some(text) if !text.is_empty() => text,
        Some(_) => "no details".to_string(),
        None => body.trim().to_string(),
    }
}

/// Percent-encodes a path for the URL, keeping `/` as the separator.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One answer: the status and the JSON body (`Null` when empty or not JSON).
struct Answer {
    status: reqwest::StatusCode,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Client {
    fn new(config: &Config) -> Result<Arc<Client>, Error> {
        let c = settings::decode(config)?;
        let tls = confd_http_common::Tls {
            ca_cert: c.ca_cert.as_deref(),
            cert: c.cert.as_deref(),
            key: c.key.as_deref(),
            insecure: c.insecure,
        };
        let builder = confd_http_common::client_builder("vault", tls, c.dial_timeout)?
            .timeout(c.dial_timeout.max(Duration::from_secs(1)) * 6);
        let http = builder.build().map_err(|e| {
            Error::invalid_config(format!("vault HTTP client: {}", confd_sdk::error_chain(&e)))
        })?;
        Ok(Arc::new_cyclic(|this| Client {
            base: c.address,
            http,
            auth: c.auth,
            auth_mount: c.auth_mount,
            kv_version: c.kv_version,
            session: tokio::sync::Mutex::new(Session::default()),
            mounts: Mutex::new(Vec::new()),
            renewer: Mutex::new(None),
            this: this.clone(),
        }))
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        let cause = if err.is_timeout() {
            format!(
                "no answer within the timeout ({})",
                confd_sdk::error_chain(err)
            )
        } else {
            confd_sdk::error_chain(err)
        };
        Error::unavailable(format!("vault {}: {cause}", self.base))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let url = format!("{}/v1/{}", self.base, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.transport_error(&e))?;
        Ok(Answer { status, body })
    }

    /// A valid token: the current one, or a new one from a login when there is none yet or it
    /// has expired.
    async fn token(&self) -> Result<String, Error> {
        let mut session = self.session.lock().await;
        let fresh = session
            .expires
            .is_none_or(|e| Instant::now() + Duration::from_millis(500) < e);
        if let Some(token) = &session.token
            && fresh
        {
            return Ok(token.clone());
        }
        self.login(&mut session).await?;
        session
            .token
            .clone()
            .ok_or_else(|| Error::internal("vault: a login left no token"))
    }

    /// Gets a token by the configured method (for a given token: checks it with
    /// `lookup-self`), records its lease, and schedules its renewal.
    async fn login(&self, session: &mut Session) -> Result<(), Error> {
        let method = self.auth.name();
        let (token, lease, renewable) = match &self.auth {
            Auth::Token(token) => {
                let answer = self
                    .send(
                        reqwest::Method::GET,
                        "auth/token/lookup-self",
                        Some(token),
                        None,
                    )
                    .await?;
                if !answer.status.is_success() {
                    return Err(self.login_error(&answer));
                }
                let data = answer.json();
                let ttl = data["data"]["ttl"].as_u64().unwrap_or(0);
                let renewable = data["data"]["renewable"].as_bool().unwrap_or(false);
                (token.clone(), Duration::from_secs(ttl), renewable)
            }
            other => {
                let mut path = format!("auth/{}/login", self.auth_mount);
                let body = match other {
                    Auth::AppId { app_id, user_id } => {
                        serde_json::json!({ "app_id": app_id, "user_id": user_id })
                    }
                    Auth::AppRole { role_id, secret_id } => {
                        serde_json::json!({ "role_id": role_id, "secret_id": secret_id })
                    }
                    Auth::UserPass { username, password } => {
                        path = format!("{path}/{}", encode_path(username));
                        serde_json::json!({ "password": password })
                    }
                    Auth::Github { token } => serde_json::json!({ "token": token }),
                    Auth::Kubernetes { role, jwt_file } => {
                        let jwt = std::fs::read_to_string(jwt_file).map_err(|e| {
                            Error::invalid_config(format!(
                                "vault auth type kubernetes: reading the service account token \
                                 {jwt_file}: {e}"
                            ))
                        })?;
                        serde_json::json!({ "role": role, "jwt": jwt.trim() })
                    }
                    Auth::Cert | Auth::Token(_) => serde_json::json!({}),
                };
                let answer = self
                    .send(reqwest::Method::POST, &path, None, Some(&body))
                    .await?;
                if !answer.status.is_success() {
                    return Err(self.login_error(&answer));
                }
                let data = answer.json();
                let token = data["auth"]["client_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "vault {}: the {method} login answer has no auth.client_token",
                            self.base
                        ))
                    })?
                    .to_string();
                let lease = data["auth"]["lease_duration"].as_u64().unwrap_or(0);
                let renewable = data["auth"]["renewable"].as_bool().unwrap_or(false);
                (token, Duration::from_secs(lease), renewable)
            }
        };
        tracing::debug!(
            "vault: {method} login gave a token with a lease of {lease:?} (renewable: {renewable})"
        );
        session.token = Some(token);
        session.renewable = renewable;
        session.issued_lease = lease;
        self.note_lease(session, lease);
        Ok(())
    }

    fn login_error(&self, answer: &Answer) -> Error {
        let kind = match answer.status.as_u16() {
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::PermissionDenied,
        };
        let what = match &self.auth {
            Auth::Token(_) => {
                "the token was refused (auth method token, auth/token/lookup-self)".to_string()
            }
            other => format!(
                "login refused (auth method {}, auth/{}/login)",
                other.name(),
                self.auth_mount
            ),
        };
        Error::new(
            kind,
            format!(
                "vault {}: {what}: HTTP {}: {}",
                self.base,
                answer.status,
                vault_errors(&answer.body)
            ),
        )
    }

    /// Records a lease that starts now and makes sure a renewer runs for it.
    fn note_lease(&self, session: &mut Session, lease: Duration) {
        if lease.is_zero() {
            session.expires = None;
            session.renew_at = None;
            return;
        }
        let now = Instant::now();
        session.expires = Some(now + lease);
        session.renew_at = Some(now + lease * 2 / 3);
        let mut renewer = self.renewer.lock().unwrap_or_else(|p| p.into_inner());
        if renewer.as_ref().is_none_or(|t| t.is_finished()) {
            let this = self.this.clone();
            *renewer = Some(tokio::spawn(renew_loop(this)));
        }
    }

    /// Renews the token, or logs in again when it cannot be renewed (not renewable, refused,
    /// or cut short by its max TTL). Returns when the next renewal is due, if any.
    async fn renew(&self) -> Option<Instant> {
        let mut session = self.session.lock().await;
        let due = session.renew_at?;
        if Instant::now() < due {
            return Some(due);
        }
        let mut renewed = false;
        if session.renewable
            && let Some(token) = session.token.clone()
        {
            match self
                .send(
                    reqwest::Method::POST,
                    "auth/token/renew-self",
                    Some(&token),
                    Some(&serde_json::json!({})),
                )
                .await
            {
                Ok(answer) if answer.status.is_success() => {
                    let data = answer.json();
                    let lease =
                        Duration::from_secs(data["auth"]["lease_duration"].as_u64().unwrap_or(0));
                    // A renewal Vault cut to a fraction of the lease: the max TTL is near, and a
                    // method that can log in gets a whole new token instead.
                    if !(self.auth.can_login() && lease < session.issued_lease / 3) {
                        tracing::debug!("vault: token renewed for {lease:?}");
                        self.note_lease(&mut session, lease);
                        renewed = true;
                    }
                }
                Ok(answer) => tracing::warn!(
                    "vault {}: renewing the token failed: HTTP {}: {}",
                    self.base,
                    answer.status,
                    vault_errors(&answer.body)
                ),
                Err(e) => tracing::warn!("vault: renewing the token failed: {e}"),
            }
        }
        if !renewed {
            if self.auth.can_login() {
                if let Err(e) = self.login(&mut session).await {
                    tracing::warn!("{e}");
                    // Try again soon; reads log in by themselves once the token is gone.
                    session.renew_at = Some(Instant::now() + Duration::from_secs(5));
                }
            } else {
                // A given token that cannot be renewed runs out; say so once.
                tracing::warn!(
                    "vault {}: the token cannot be renewed and expires in {:?}",
                    self.base,
                    session
                        .expires
                        .map(|e| e.saturating_duration_since(Instant::now()))
                );
                session.renew_at = None;
            }
        }
        session.renew_at
    }

    /// Forgets the token if it is still `token`, so the next call logs in again.
    async fn drop_token(&self, token: &str) {
        let mut session = self.session.lock().await;
        if session.token.as_deref() == Some(token) {
            session.token = None;
        }
    }

    /// A GET of `path` with the token. `Ok(None)` for 404. A 403 with a token that no longer
    /// works (expired or revoked) logs in again and retries once; any other 403 is a
    /// permission error naming `path` and the auth method.
    async fn get(&self, path: &str, list: bool) -> Result<Option<Value>, Error> {
        let url_path = if list {
            format!("{}?list=true", encode_path(path))
        } else {
            encode_path(path)
        };
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let answer = self
                .send(reqwest::Method::GET, &url_path, Some(&token), None)
                .await?;
            match answer.status.as_u16() {
                200..=299 => return Ok(Some(answer.json())),
                404 => return Ok(None),
                403 => {
                    if !retried && !self.token_works(&token).await? {
                        self.drop_token(&token).await;
                        if self.auth.can_login() {
                            retried = true;
                            continue;
                        }
                        return Err(Error::new(
                            ErrorKind::PermissionDenied,
                            format!(
                                "vault {}: the token (auth method token) is no longer valid \
                                 (expired or revoked) reading {path}",
                                self.base
                            ),
                        ));
                    }
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "vault {}: permission denied {} {path} (auth method {}): {}",
                            self.base,
                            if list { "listing" } else { "reading" },
                            self.auth.name(),
                            vault_errors(&answer.body)
                        ),
                    ));
                }
                500..=599 => {
                    return Err(Error::unavailable(format!(
                        "vault {}: {path}: HTTP {}: {}",
                        self.base,
                        answer.status,
                        vault_errors(&answer.body)
                    )));
                }
                _ => {
                    return Err(Error::internal(format!(
                        "vault {}: {path}: HTTP {}: {}",
                        self.base,
                        answer.status,
                        vault_errors(&answer.body)
                    )));
                }
            }
        }
    }

    async fn token_works(&self, token: &str) -> Result<bool, Error> {
        let answer = self
            .send(
                reqwest::Method::GET,
                "auth/token/lookup-self",
                Some(token),
                None,
            )
            .await?;
        Ok(answer.status.is_success())
    }

    /// The mount holding `path` (no leading slash), or `None` when nothing is mounted there.
    async fn mount_for(&self, path: &str) -> Result<Option<Mount>, Error> {
        let cached = self
            .mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|m| path == m.path || path.starts_with(&format!("{}/", m.path)))
            .max_by_key(|m| m.path.len())
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let mount = match self.kv_version {
            KvVersion::V1 | KvVersion::V2 => Mount {
                path: path.split('/').next().unwrap_or_default().to_string(),
                version: if self.kv_version == KvVersion::V2 {
                    2
                } else {
                    1
                },
            },
            KvVersion::Auto => {
                let token = self.token().await?;
                let answer = self
                    .send(
                        reqwest::Method::GET,
                        &format!("sys/internal/ui/mounts/{}", encode_path(path)),
                        Some(&token),
                        None,
                    )
                    .await?;
                if answer.status.as_u16() == 400 || answer.status.as_u16() == 404 {
                    tracing::debug!(
                        "vault: no mount holds {path:?}: {}",
                        vault_errors(&answer.body)
                    );
                    return Ok(None);
                }
                if !answer.status.is_success() {
                    return Err(Error::new(
                        if answer.status.as_u16() == 403 {
                            ErrorKind::PermissionDenied
                        } else {
                            ErrorKind::Internal
                        },
                        format!(
                            "vault {}: finding the mount of {path} (sys/internal/ui/mounts) \
                             failed: HTTP {}: {}; set kvVersion (1 or 2) to skip this",
                            self.base,
                            answer.status,
                            vault_errors(&answer.body)
                        ),
                    ));
                }
                match mount_of(&answer.json()["data"]) {
                    Ok(m) => m,
                    Err(problem) => {
                        return Err(Error::invalid_argument(format!(
                            "vault {}: {path}: {problem}",
                            self.base
                        )));
                    }
                }
            }
        };
        self.mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mount.clone());
        Ok(Some(mount))
    }

    /// Every KV mount the token can see, for a read of `/`.
    async fn all_mounts(&self) -> Result<Vec<Mount>, Error> {
        let Some(answer) = self.get("sys/internal/ui/mounts", false).await? else {
            return Ok(Vec::new());
        };
        let mut mounts = Vec::new();
        if let Some(secret) = answer["data"]["secret"].as_object() {
            for (path, info) in secret {
                let mut info = info.clone();
                info["path"] = Value::String(path.clone());
                if let Ok(mount) = mount_of(&info) {
                    mounts.push(mount);
                }
            }
        }
        Ok(mounts)
    }

    /// Reads one secret; `None` when there is none (or a KV v2 latest version is deleted).
    async fn read_secret(&self, mount: &Mount, rel: &str) -> Result<Option<Value>, Error> {
        if rel.is_empty() {
            let answer = self.get(&mount.path, false).await?;
            return Ok(answer.map(|a| a["data"].clone()).filter(|d| !d.is_null()));
        }
        if mount.version == 2 {
            let answer = self
                .get(&format!("{}/data/{rel}", mount.path), false)
                .await?;
            Ok(answer
                .map(|a| a["data"]["data"].clone())
                .filter(|d| !d.is_null()))
        } else {
            let answer = self.get(&format!("{}/{rel}", mount.path), false).await?;
            Ok(answer.map(|a| a["data"].clone()).filter(|d| !d.is_null()))
        }
    }

    /// The entries listed in directory `dir` ("" for the mount's root).
    async fn list(&self, mount: &Mount, dir: &str) -> Result<Vec<String>, Error> {
        let path = match (mount.version, dir.is_empty()) {
            (2, true) => format!("{}/metadata", mount.path),
            (2, false) => format!("{}/metadata/{dir}", mount.path),
            (_, true) => mount.path.clone(),
            (_, false) => format!("{}/{dir}", mount.path),
        };
        let Some(answer) = self.get(&path, true).await? else {
            return Ok(Vec::new());
        };
        Ok(answer["data"]["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The secret at `rel` and every secret below it, flattened, keyed under `shown` (the
    /// path as the caller wrote it, up to `rel`).
    ///
    /// Policies often grant reading a secret but not listing its path, or listing a directory
    /// but not reading the directory's own name as a secret: a refusal of one of those two
    /// first requests counts only when the other found nothing either.
    async fn read_tree(
        &self,
        mount: &Mount,
        rel: &str,
        shown: &str,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), Error> {
        // A KV v1 mount's own path can hold a secret (the original's `vault write key
        // value=foobar` on the mount `key`); a KV v2 mount's cannot.
        let own = if rel.is_empty() && mount.version == 2 {
            Ok(None)
        } else {
            self.read_secret(mount, rel).await
        };
        let listed = self.list(mount, rel).await;
        let (own, listed) = match (own, listed) {
            (Ok(own), Ok(listed)) => (own, listed),
            (Ok(Some(own)), listed) if denied(&listed) => (Some(own), Vec::new()),
            (own, Ok(listed)) if denied(&own) && !listed.is_empty() => (None, listed),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        if let Some(data) = &own {
            flatten::secret(shown, data, out);
        }
        let mut secrets: Vec<String> = Vec::new();
        let mut entries = listed;
        let mut dir = rel.to_string();
        let mut dirs: Vec<String> = Vec::new();
        loop {
            for entry in entries.into_iter().filter(|e| !e.is_empty()) {
                let child = if dir.is_empty() {
                    entry.clone()
                } else {
                    format!("{dir}/{entry}")
                };
                match child.strip_suffix('/') {
                    Some(sub) => dirs.push(sub.to_string()),
                    None => secrets.push(child),
                }
            }
            let Some(next) = dirs.pop() else { break };
            entries = self.list(mount, &next).await?;
            dir = next;
        }
        let mut reads = futures_util::stream::iter(secrets.into_iter().map(|secret| async move {
            let data = self.read_secret(mount, &secret).await;
            (secret, data)
        }))
        .buffer_unordered(PARALLEL_READS);
        while let Some((secret, data)) = reads.next().await {
            if let Some(data) = data? {
                let tail = secret
                    .strip_prefix(rel)
                    .unwrap_or(&secret)
                    .trim_start_matches('/');
                flatten::secret(
                    &format!("{}/{tail}", shown.trim_end_matches('/')),
                    &data,
                    out,
                );
            }
        }
        if own.is_none() && out.is_empty() && !rel.is_empty() {
            self.read_field(mount, rel, shown, out).await?;
        }
        Ok(())
    }

    /// A key that names no secret and no directory may name a field of a secret above it
    /// (`/kv/database/host` is the field `host` of the secret `database`): the nearest secret
    /// above is read and flattened, and the caller keeps what lies under the key.
    async fn read_field(
        &self,
        mount: &Mount,
        rel: &str,
        shown: &str,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut parent = rel;
        let mut shown_parent = shown.trim_end_matches('/');
        while let (Some((up, _)), Some((shown_up, _))) =
            (parent.rsplit_once('/'), shown_parent.rsplit_once('/'))
        {
            parent = up;
            shown_parent = shown_up;
            match self.read_secret(mount, parent).await {
                Ok(Some(data)) => {
                    flatten::secret(shown_parent, &data, out);
                    return Ok(());
                }
                Ok(None) => {}
                // The field's secret is what was asked for: a refusal of it counts.
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let mut values = BTreeMap::new();
        for key in keys {
            let logical = key.trim_matches('/');
            let mut found = BTreeMap::new();
            if logical.is_empty() {
                for mount in self.all_mounts().await? {
                    let shown = format!("/{}", mount.path);
                    self.read_tree(&mount, "", &shown, &mut found).await?;
                }
            } else if let Some(mount) = self.mount_for(logical).await? {
                let mut rel = logical[mount.path.len()..].trim_start_matches('/');
                // The fork's keys name KV v2 secrets with the API's `data/` segment
                // (`/kv-v2/data/app`); that reads the secret `app`, keyed as written.
                if mount.version == 2 {
                    if rel == "data" {
                        rel = "";
                    } else if let Some(rest) = rel.strip_prefix("data/") {
                        rel = rest;
                    }
                }
                self.read_tree(&mount, rel, &format!("/{logical}"), &mut found)
                    .await?;
            }
            values.extend(found.into_iter().filter(|(path, _)| is_under(path, key)));
        }
        Ok(values)
    }
}

fn denied<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::PermissionDenied)
}

/// A mount description of `sys/internal/ui/mounts`: a KV engine and its version.
fn mount_of(data: &Value) -> Result<Mount, String> {
    let path = data["path"].as_str().unwrap_or_default().trim_matches('/');
    let kind = data["type"].as_str().unwrap_or_default();
    if kind != "kv" && kind != "generic" {
        return Err(format!(
            "the mount {path:?} is a {kind:?} engine; confd reads kv (version 1 or 2) mounts only"
        ));
    }
    let version = match data["options"]["version"].as_str() {
        Some("2") => 2,
        _ => 1,
    };
    Ok(Mount {
        path: path.to_string(),
        version,
    })
}

/// Renews the client's token before it expires, for as long as the client lives.
async fn renew_loop(client: Weak<Client>) {
    loop {
        let due = match client.upgrade() {
            Some(c) => c.session.lock().await.renew_at,
            None => return,
        };
        let Some(due) = due else { return };
        tokio::time::sleep_until(due.into()).await;
        let Some(c) = client.upgrade() else { return };
        if c.renew().await.is_none() {
            return;
        }
    }
}

#[confd_sdk::async_trait]
impl Database for Vault {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let client = Client::new(&config)?;
        self.state.set(Shared(client));
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.client()?.get_values(keys).await
    }

    async fn watch_prefix(
        &self,
        _prefix: &str,
        _keys: &[String],
        _wait_index: u64,
    ) -> Result<u64, Error> {
        Err(Error::unimplemented(
            "the vault backend cannot watch: Vault does not notify changes to secrets; read \
             Vault resources in interval mode (--interval)",
        ))
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_error_bodies_read_as_one_line() {
        assert_eq!(
            vault_errors(r#"{"errors":["permission denied","again"]}"#),
            "permission denied; again"
        );
        assert_eq!(vault_errors(r#"{"errors":[]}"#), "no details");
        assert_eq!(vault_errors("plain"), "plain");
    }

    #[test]
    fn mounts_are_kv_only() {
        let m = mount_of(
            &serde_json::json!({"path": "kv/", "type": "kv", "options": {"version": "2"}}),
        )
        .expect("kv");
        assert_eq!((m.path.as_str(), m.version), ("kv", 2));
        let err = mount_of(&serde_json::json!({"path": "pki/", "type": "pki"})).expect_err("pki");
        assert!(err.contains("pki"), "{err}");
    }
}
