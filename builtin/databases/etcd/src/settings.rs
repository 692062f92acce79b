//! The etcd backend's settings, decoded from the host's string map.

use std::path::PathBuf;
use std::time::Duration;

use confd_sdk::{Config, Error};
use serde::Deserialize;

/// How long to wait for a connection or an answer before calling the node
/// unreachable (etcd's and confd's default).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings as the host sends them (camelCase keys, as in confd's
/// plugin branch; `machines` is that branch's name for `nodes`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Raw {
    #[serde(alias = "machines")]
    nodes: Vec<String>,
    cert: Option<String>,
    key: Option<String>,
    ca_cert: Option<String>,
    basic_auth: bool,
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
    #[serde(with = "confd_sdk::config::duration")]
    dial_timeout: Duration,
    #[serde(with = "confd_sdk::config::duration")]
    auto_sync_interval: Duration,
}

impl Default for Raw {
    fn default() -> Raw {
        Raw {
            nodes: Vec::new(),
            cert: None,
            key: None,
            ca_cert: None,
            basic_auth: false,
            insecure: false,
            username: None,
            password: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            auto_sync_interval: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Endpoint URLs with a scheme (`http://` or `https://`).
    pub nodes: Vec<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    /// The members' certificates are not verified (`--client-insecure`); only `https://` members
    /// use TLS at all.
    pub insecure: bool,
    /// `(username, password)` when basic auth is on.
    pub user: Option<(String, String)>,
    pub dial_timeout: Duration,
    /// How often the cluster's member list is read (`autoSyncInterval`); `None`: never, the
    /// nodes given are all the members used.
    pub auto_sync_interval: Option<Duration>,
}

impl Settings {
    pub fn tls(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some()
    }
}

pub fn decode(config: &Config) -> Result<Settings, Error> {
    let raw: Raw = confd_sdk::config::decode(config)?;
    let path = |value: Option<String>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    let (cert, key, ca_cert) = (path(raw.cert), path(raw.key), path(raw.ca_cert));
    if cert.is_some() != key.is_some() {
        return Err(Error::invalid_config(
            "`cert` and `key` must be given together for etcd client TLS",
        ));
    }
    let username = raw.username.unwrap_or_default();
    if raw.basic_auth && username.is_empty() {
        return Err(Error::invalid_config(
            "`basicAuth` is on but `username` is empty",
        ));
    }
    if raw.dial_timeout.is_zero() {
        return Err(Error::invalid_config("`dialTimeout` must be positive"));
    }
    let tls = ca_cert.is_some() || cert.is_some();
    let mut nodes = raw.nodes;
    if nodes.is_empty() {
        nodes.extend(
            crate::DESCRIPTOR
                .default_nodes
                .iter()
                .map(|n| n.to_string()),
        );
    }
    let nodes = nodes
        .into_iter()
        .map(|n| {
            if n.starts_with("http://") || n.starts_with("https://") {
                n
            } else if tls {
                format!("https://{n}")
            } else {
                format!("http://{n}")
            }
        })
        .collect();
    Ok(Settings {
        nodes,
        cert,
        key,
        ca_cert,
        insecure: raw.insecure,
        user: raw
            .basic_auth
            .then(|| (username, raw.password.unwrap_or_default())),
        dial_timeout: raw.dial_timeout,
        auto_sync_interval: (!raw.auto_sync_interval.is_zero()).then_some(raw.auto_sync_interval),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nodes_get_a_scheme() {
        let s = decode(&config(&[("nodes", "a:2379, http://b:2379,https://c:1")])).expect("valid");
        assert_eq!(s.nodes, ["http://a:2379", "http://b:2379", "https://c:1"]);
        let s = decode(&config(&[("nodes", "a:2379"), ("caCert", "/ca.pem")])).expect("valid");
        assert_eq!(s.nodes, ["https://a:2379"]);
    }

    #[test]
    fn defaults() {
        let s = decode(&config(&[("cert", ""), ("basicAuth", "false")])).expect("valid");
        assert_eq!(s.nodes, ["http://127.0.0.1:2379"]);
        assert_eq!(s.dial_timeout, DEFAULT_DIAL_TIMEOUT);
        assert_eq!(s.user, None);
        assert_eq!(s.auto_sync_interval, None);
        assert!(!s.tls());
    }

    #[test]
    fn basic_auth_and_timeout() {
        let s = decode(&config(&[
            ("basicAuth", "true"),
            ("username", "root"),
            ("password", "pw"),
            ("dialTimeout", "250ms"),
            ("autoSyncInterval", "30s"),
        ]))
        .expect("valid");
        assert_eq!(s.user, Some(("root".to_string(), "pw".to_string())));
        assert_eq!(s.dial_timeout, Duration::from_millis(250));
        assert_eq!(s.auto_sync_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = decode(&config(&[("nodse", "x")])).expect_err("unknown");
        assert!(err.to_string().contains("nodse"), "{err}");
        let err = decode(&config(&[("basicAuth", "yes please")])).expect_err("bad bool");
        assert!(err.to_string().contains("basicAuth"), "{err}");
        let err = decode(&config(&[("dialTimeout", "soon")])).expect_err("bad duration");
        assert!(err.to_string().contains("dialTimeout"), "{err}");
        let err = decode(&config(&[("cert", "/c.pem")])).expect_err("cert without key");
        assert!(err.to_string().contains("`key`"), "{err}");
    }

    #[test]
    fn password_is_never_echoed() {
        let err = decode(&config(&[("password", "hunter2"), ("bogus", "1")])).expect_err("unknown");
        assert!(!err.to_string().contains("hunter2"));
    }
}
