//! confd's consul backend: a thin HTTP client for Consul's KV API.
//! Recursive reads, base64 values, path-aware filtering, and WatchPrefix as
//! blocking queries on `X-Consul-Index` with Consul's documented index rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use confd_sdk::keys::{common_prefix, is_under, rooted};
use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use serde::Deserialize;

/// How long to wait for a connection or an answer before calling the agent
/// unreachable.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The blocking-query wait we ask for: Consul's own default.
const BLOCKING_WAIT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Settings {
    #[serde(alias = "machines")]
    nodes: Vec<String>,
    scheme: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    ca_cert: Option<String>,
    insecure: bool,
    basic_auth: bool,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    #[serde(with = "confd_sdk::config::duration")]
    dial_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            nodes: Vec::new(),
            scheme: None,
            cert: None,
            key: None,
            ca_cert: None,
            insecure: false,
            basic_auth: false,
            username: None,
            password: None,
            token: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "consul";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "Consul KV over its HTTP API; watches with blocking queries",
    default_nodes: &["127.0.0.1:8500"],
    settings: &[
        Setting::from("nodes", &["nodes"], "agent addresses (host:port)"),
        Setting::from("scheme", &["scheme"], "http or https"),
        Setting::from("cert", &["client_cert"], "TLS client certificate file"),
        Setting::from("key", &["client_key"], "TLS client key file"),
        Setting::from(
            "caCert",
            &["client_cakeys"],
            "TLS CA certificate file (every certificate of a bundle is trusted)",
        ),
        Setting::from(
            "insecure",
            &["client_insecure"],
            "do not verify the agent's TLS certificate",
        ),
        Setting::from("basicAuth", &["basic_auth"], "use basic authentication"),
        Setting::from("username", &["username"], "basic authentication user"),
        Setting::from("password", &["password"], "basic authentication password"),
        Setting::from("token", &[], "ACL token"),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect and request time limit (default 5s)",
        ),
    ],
    capabilities: &["watch"],
    srv_nodes: SrvNodes::HostPort,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Consul>,
};

/// A new, unconfigured backend (the factory `confd_sdk::serve` takes).
pub fn database() -> Consul {
    Consul::new()
}

/// The consul backend. Configure it, then read and watch.
#[derive(Debug, Default)]
pub struct Consul {
    state: Configured<Agent>,
}

impl Consul {
    pub fn new() -> Consul {
        Consul::default()
    }

    fn agent(&self) -> Result<Arc<Agent>, Error> {
        self.state.get(NAME)
    }
}

/// One KV entry as Consul returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    value: Option<String>,
    modify_index: u64,
}

/// What one watched key set looked like at an index: path → modify index.
type Fingerprint = BTreeMap<String, u64>;

struct Agent {
    /// `scheme://host:port`, without a trailing slash.
    base: String,
    /// The node as configured, for messages.
    node: String,
    http: reqwest::Client,
    token: Option<String>,
    user: Option<(String, Option<String>)>,
    dial_timeout: Duration,
    /// The last fingerprint per key set, so a wake-up caused only by a
    /// sibling such as `/application` (Consul prefixes are plain strings)
    /// does not count as a change of `/app`.
    seen: Mutex<HashMap<Vec<String>, (u64, Fingerprint)>>,
}

impl Agent {
    fn new(settings: Settings) -> Result<Agent, Error> {
        let node = settings
            .nodes
            .first()
            .map(String::as_str)
            .or(DESCRIPTOR.default_nodes.first().copied())
            .unwrap_or_default()
            .to_string();
        let scheme = settings
            .scheme
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "http".to_string());
        if scheme != "http" && scheme != "https" {
            return Err(Error::invalid_config(format!(
                "`scheme` must be http or https, got {scheme:?}"
            )));
        }
        let base = if node.contains("://") {
            node.trim_end_matches('/').to_string()
        } else {
            format!("{scheme}://{}", node.trim_end_matches('/'))
        };
        let tls = confd_http_common::Tls {
            ca_cert: settings.ca_cert.as_deref(),
            cert: settings.cert.as_deref(),
            key: settings.key.as_deref(),
            insecure: settings.insecure,
        };
        let builder = confd_http_common::client_builder(NAME, tls, settings.dial_timeout)?;
        let http = builder.build().map_err(|e| {
            Error::invalid_config(format!(
                "consul HTTP client: {}",
                confd_sdk::error_chain(&e)
            ))
        })?;
        let token = settings.token.filter(|t| !t.is_empty()).or_else(|| {
            std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        });
        let user = if settings.basic_auth {
            let username = settings.username.filter(|u| !u.is_empty()).ok_or_else(|| {
                Error::invalid_config("`basicAuth` is on but `username` is empty")
            })?;
            Some((username, settings.password))
        } else {
            None
        };
        Ok(Agent {
            base,
            node,
            http,
            token,
            user,
            dial_timeout: settings.dial_timeout,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// One KV list: `(index, pairs)`; a 404 is an empty list.
    async fn list(&self, prefix: &str, blocking: Option<u64>) -> Result<(u64, Vec<Pair>), Error> {
        let mut url = format!("{}/v1/kv/{}?recurse", self.base, encode_path(prefix));
        let timeout = match blocking {
            Some(index) => {
                url.push_str(&format!("&index={index}&wait={}s", BLOCKING_WAIT.as_secs()));
                // Consul adds up to wait/16 of jitter; the answer may come late.
                BLOCKING_WAIT + BLOCKING_WAIT / 16 + self.dial_timeout
            }
            None => self.dial_timeout,
        };
        let mut request = self.http.get(&url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some((user, password)) = &self.user {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok((index.unwrap_or(0), Vec::new()));
        }
        let body = response
            .text()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            let kind = match status.as_u16() {
                401 | 403 => ErrorKind::PermissionDenied,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            };
            return Err(Error::new(
                kind,
                format!("consul {}: HTTP {status}: {}", self.node, body.trim()),
            ));
        }
        let index = index.ok_or_else(|| {
            Error::internal(format!(
                "consul {}: the answer has no X-Consul-Index header",
                self.node
            ))
        })?;
        let pairs: Vec<Pair> = serde_json::from_str(&body).map_err(|e| {
            Error::internal(format!("consul {}: unreadable KV answer: {e}", self.node))
        })?;
        Ok((index, pairs))
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
        Error::unavailable(format!("consul {}: {cause}", self.node))
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let mut values = BTreeMap::new();
        for key in keys {
            let (_, pairs) = self.list(key.trim_start_matches('/'), None).await?;
            for pair in pairs {
                let path = rooted(&pair.key);
                if !is_under(&path, key) {
                    continue;
                }
                let value = match pair.value {
                    None => String::new(),
                    Some(encoded) => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(encoded.as_bytes())
                            .map_err(|e| {
                                Error::internal(format!(
                                    "consul {}: key {}: value is not base64: {e}",
                                    self.node, pair.key
                                ))
                            })?;
                        confd_sdk::text::value_string(NAME, &path, bytes)?
                    }
                };
                values.insert(path, value);
            }
        }
        Ok(values)
    }

    fn fingerprint(pairs: &[Pair], keys: &[String]) -> Fingerprint {
        pairs
            .iter()
            .map(|p| (rooted(&p.key), p.modify_index))
            .filter(|(path, _)| keys.iter().any(|k| is_under(path, k)))
            .collect()
    }

    fn remember(&self, keys: &[String], index: u64, fingerprint: Fingerprint) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(keys.to_vec(), (index, fingerprint));
    }

    async fn watch(&self, keys: &[String], wait_index: u64) -> Result<u64, Error> {
        let prefix = common_prefix(keys);
        let prefix = prefix.trim_start_matches('/');
        if wait_index == 0 {
            let (index, pairs) = self.list(prefix, None).await?;
            let index = index.max(1);
            self.remember(keys, index, Agent::fingerprint(&pairs, keys));
            return Ok(index);
        }
        let mut baseline = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(keys)
            .filter(|(index, _)| *index == wait_index)
            .map(|(_, fingerprint)| fingerprint.clone());
        let mut index = wait_index;
        loop {
            let (new, pairs) = self.list(prefix, Some(index)).await?;
            if new < index {
                // Consul: an index that goes backwards (snapshot restore,
                // rebuilt cluster) means start again from 0; the fresh
                // index tells the caller to read everything again. Never
                // hand out 0 after a result.
                let fresh = new.max(1);
                self.remember(keys, fresh, Agent::fingerprint(&pairs, keys));
                return Ok(fresh);
            }
            if new == index {
                // The wait ran out without a change: ask again.
                continue;
            }
            let fingerprint = Agent::fingerprint(&pairs, keys);
            let unchanged = baseline.as_ref() == Some(&fingerprint);
            self.remember(keys, new, fingerprint.clone());
            if !unchanged {
                return Ok(new);
            }
            // Only a sibling outside our keys changed; keep waiting.
            baseline = Some(fingerprint);
            index = new;
        }
    }
}

/// Percent-encodes a KV key for the URL path, keeping `/` as the separator.
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[confd_sdk::async_trait]
impl Database for Consul {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let settings: Settings = confd_sdk::config::decode(&config)?;
        let agent = Agent::new(settings)?;
        self.state.set(agent);
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        self.agent()?.get_values(keys).await
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        let keys = confd_sdk::keys::watched(prefix, keys);
        self.agent()?.watch(&keys, wait_index).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_urls() {
        assert_eq!(encode_path("app/my key%"), "app/my%20key%25");
        assert_eq!(encode_path("a/b-c_d.e~"), "a/b-c_d.e~");
    }

    #[test]
    fn settings_defaults_and_errors() {
        let settings: Settings =
            confd_sdk::config::decode(&Config::new()).expect("empty config is valid");
        assert_eq!(settings.dial_timeout, DEFAULT_DIAL_TIMEOUT);
        let bad = Config::from([("schema".to_string(), "https".to_string())]);
        let err = confd_sdk::config::decode::<Settings>(&bad).expect_err("unknown key");
        assert!(err.to_string().contains("schema"), "{err}");
    }
}
