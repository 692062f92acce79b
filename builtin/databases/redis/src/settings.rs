//! The redis backend's settings, decoded from the host's string map.

use std::time::Duration;

use confd_sdk::{Config, Error};
use serde::Deserialize;

/// How long to wait for a connection or an answer before calling the node
/// unreachable.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings as the host sends them (camelCase keys; `machines` is the
/// plugin branch's name for `nodes`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Raw {
    #[serde(alias = "machines")]
    nodes: Vec<String>,
    password: Option<String>,
    separator: Option<String>,
    #[serde(with = "confd_sdk::config::duration")]
    dial_timeout: Duration,
    sentinels: Vec<String>,
    #[serde(alias = "master_name")]
    master_name: Option<String>,
    #[serde(alias = "sentinel_password")]
    sentinel_password: Option<String>,
    scheme: Option<String>,
    #[serde(alias = "client_cakeys")]
    ca_cert: Option<String>,
    #[serde(alias = "client_cert")]
    cert: Option<String>,
    key: Option<String>,
    insecure: bool,
}

impl Default for Raw {
    fn default() -> Raw {
        Raw {
            nodes: Vec::new(),
            password: None,
            separator: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            sentinels: Vec::new(),
            master_name: None,
            sentinel_password: None,
            scheme: None,
            ca_cert: None,
            cert: None,
            key: None,
            insecure: false,
        }
    }
}

/// One redis node: `host:port`, `host:port/db` or a Unix socket path; `tls` for
/// `rediss://host:port` (or any TCP node when `scheme` is `rediss`/`https`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Tcp {
        host: String,
        port: u16,
        db: i64,
        tls: bool,
    },
    Unix {
        path: String,
        db: i64,
    },
}

impl Node {
    pub fn db(&self) -> i64 {
        match self {
            Node::Tcp { db, .. } | Node::Unix { db, .. } => *db,
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Tcp {
                host,
                port,
                tls: true,
                ..
            } => write!(f, "rediss://{host}:{port}"),
            Node::Tcp { host, port, .. } => write!(f, "{host}:{port}"),
            Node::Unix { path, .. } => f.write_str(path),
        }
    }
}

/// Redis Sentinel: the sentinels to ask for the current primary of `master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinel {
    /// `(host, port)` of each sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
}

impl std::fmt::Display for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .collect();
        write!(f, "sentinel://{}/{}", list.join(","), self.master)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The nodes to use (empty with `sentinel`: the sentinels name the primary).
    pub nodes: Vec<Node>,
    pub sentinel: Option<Sentinel>,
    pub password: Option<String>,
    /// `AUTH` password of the sentinels themselves (their `requirepass`), not of the primary.
    pub sentinel_password: Option<String>,
    pub separator: String,
    pub dial_timeout: Duration,
    /// TLS material for `rediss` nodes (and, with scheme `rediss`, the sentinels).
    pub tls: Tls,
    /// `scheme` is `rediss` or `https`: every TCP node and sentinel speaks TLS.
    pub tls_by_default: bool,
}

/// The TLS files' contents (read once, at configure, so that a bad path is a configuration
/// error naming the setting) and `--client-insecure`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tls {
    pub ca_cert: Option<Vec<u8>>,
    /// Client certificate and key (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub insecure: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_cert", &self.ca_cert.is_some())
            .field("identity", &self.identity.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

pub fn decode(config: &Config) -> Result<Settings, Error> {
    let raw: Raw = confd_sdk::config::decode(config)?;
    if raw.dial_timeout.is_zero() {
        return Err(Error::invalid_config("`dialTimeout` must be positive"));
    }
    let tls_by_default = match raw
        .scheme
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "http" | "redis") => false,
        Some("https" | "rediss") => true,
        Some(other) => {
            return Err(Error::invalid_config(format!(
                "`scheme`: {other:?} is not one of redis, rediss, http, https"
            )));
        }
    };
    let sentinel = sentinel(&raw)?;
    let mut nodes = if sentinel.is_some() {
        Vec::new()
    } else {
        raw.nodes
            .iter()
            .map(|n| parse_node(n, tls_by_default))
            .collect::<Result<Vec<_>, _>>()?
    };
    if nodes.is_empty() && sentinel.is_none() {
        for node in crate::DESCRIPTOR.default_nodes {
            nodes.push(parse_node(node, tls_by_default)?);
        }
    }
    let read = |what: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, Error> {
        match path.as_deref().filter(|p| !p.is_empty()) {
            None => Ok(None),
            Some(path) => std::fs::read(path)
                .map(Some)
                .map_err(|e| Error::invalid_config(format!("redis: reading `{what}` {path}: {e}"))),
        }
    };
    let identity = match (read("cert", &raw.cert)?, read("key", &raw.key)?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid_config(
                "redis: `cert` and `key` (the TLS client certificate and its key) must be given \
                 together; `key` is the plugin's own setting (--plugin-config key=PATH, or `key` \
                 in a [backend] table) because confd's client_key is the redis password",
            ));
        }
    };
    let tls = Tls {
        ca_cert: read("caCert", &raw.ca_cert)?,
        identity,
        insecure: raw.insecure,
    };
    Ok(Settings {
        nodes,
        sentinel,
        password: raw.password.filter(|p| !p.is_empty()),
        sentinel_password: raw.sentinel_password.filter(|p| !p.is_empty()),
        tls,
        tls_by_default,
        separator: raw
            .separator
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/".to_string()),
        dial_timeout: raw.dial_timeout,
    })
}

/// Sentinel mode, from `sentinel://host:port,host:port/master` in `nodes` (the host may hand the
/// comma-separated list over split into several nodes) or from `sentinels` and `masterName`.
fn sentinel(raw: &Raw) -> Result<Option<Sentinel>, Error> {
    let bad = |why: String| Error::invalid_config(format!("redis sentinel: {why}"));
    let in_nodes = raw.nodes.iter().any(|n| n.starts_with("sentinel://"));
    let (list, master): (Vec<String>, Option<String>) = if in_nodes {
        if !raw.sentinels.is_empty() {
            return Err(bad(
                "give the sentinels either in `nodes` (sentinel://...) or in `sentinels`".into(),
            ));
        }
        let joined = raw.nodes.join(",");
        let (list, master) = match joined.rsplit_once('/') {
            Some((list, master)) if !list.ends_with('/') => (list.to_string(), master.to_string()),
            _ => {
                return Err(bad(format!(
                    "{joined:?}: expected sentinel://host:port,host:port/mastername"
                )));
            }
        };
        let list = list
            .split(',')
            .map(|s| s.trim().trim_start_matches("sentinel://").to_string())
            .filter(|s| !s.is_empty())
            .collect();
        (
            list,
            Some(master)
                .filter(|m| !m.is_empty())
                .or(raw.master_name.clone()),
        )
    } else if !raw.sentinels.is_empty() {
        (raw.sentinels.clone(), raw.master_name.clone())
    } else {
        if raw.master_name.as_deref().is_some_and(|m| !m.is_empty()) {
            return Err(bad("`masterName` is set but no sentinels are given".into()));
        }
        return Ok(None);
    };
    let master = master.filter(|m| !m.is_empty()).ok_or_else(|| {
        bad("the primary's name is missing (sentinel://.../mastername or `masterName`)".into())
    })?;
    let mut sentinels = Vec::new();
    for entry in &list {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{entry:?}: expected host:port")))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| bad(format!("{entry:?}: the port must be a number")))?;
        if host.is_empty() {
            return Err(bad(format!("{entry:?}: the host is empty")));
        }
        sentinels.push((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        ));
    }
    if sentinels.is_empty() {
        return Err(bad("no sentinel given".into()));
    }
    Ok(Some(Sentinel { sentinels, master }))
}

fn parse_node(node: &str, tls_by_default: bool) -> Result<Node, Error> {
    let bad = |why: &str| Error::invalid_config(format!("`nodes`: bad redis node {node:?}: {why}"));
    let (node, tls) = if let Some(rest) = node.strip_prefix("rediss://") {
        (rest, true)
    } else if let Some(rest) = node.strip_prefix("redis://") {
        (rest, false)
    } else {
        (node, tls_by_default)
    };
    if node.starts_with('/') {
        return Ok(Node::Unix {
            path: node.to_string(),
            db: 0,
        });
    }
    let (address, db) = match node.split_once('/') {
        Some((address, db)) => (
            address,
            db.parse::<i64>()
                .map_err(|_| bad("the database after `/` must be a number"))?,
        ),
        None => (node, 0),
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port or host:port/db"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port must be a number"))?;
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    Ok(Node::Tcp {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        db,
        tls,
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
    fn nodes_with_and_without_db() {
        let s = decode(&config(&[("nodes", "a:1, b:2/3")])).expect("valid");
        assert_eq!(
            s.nodes,
            [
                Node::Tcp {
                    host: "a".into(),
                    port: 1,
                    db: 0,
                    tls: false,
                },
                Node::Tcp {
                    host: "b".into(),
                    port: 2,
                    db: 3,
                    tls: false,
                },
            ]
        );
        assert_eq!(s.separator, "/");
        assert_eq!(s.password, None);
    }

    #[test]
    fn defaults_and_separator() {
        let s = decode(&config(&[("separator", ":"), ("password", "")])).expect("valid");
        assert_eq!(s.nodes[0].to_string(), "127.0.0.1:6379");
        assert_eq!(s.separator, ":");
    }

    #[test]
    fn sentinels_in_nodes_or_settings() {
        let expected = Sentinel {
            sentinels: vec![("a".into(), 1), ("b".into(), 2)],
            master: "main".into(),
        };
        for pairs in [
            vec![("nodes", "sentinel://a:1,b:2/main")],
            // The host splits a comma-separated --node into several nodes.
            vec![("nodes", "sentinel://a:1, b:2/main")],
            vec![("sentinels", "a:1,b:2"), ("masterName", "main")],
            vec![("sentinels", "a:1,b:2"), ("master_name", "main")],
        ] {
            let s = decode(&config(&pairs)).expect("valid");
            assert_eq!(s.sentinel.as_ref(), Some(&expected), "{pairs:?}");
            assert!(s.nodes.is_empty());
        }
        assert_eq!(expected.to_string(), "sentinel://a:1,b:2/main");
        let err = decode(&config(&[("nodes", "sentinel://a:1")])).expect_err("no name");
        assert!(err.to_string().contains("mastername"), "{err}");
        let err = decode(&config(&[("sentinels", "a:1")])).expect_err("no name");
        assert!(err.to_string().contains("masterName"), "{err}");
        let err = decode(&config(&[("nodes", "sentinel://a/m")])).expect_err("no port");
        assert!(err.to_string().contains("host:port"), "{err}");
    }

    #[test]
    fn tls_from_the_node_or_the_scheme() {
        let s = decode(&config(&[("nodes", "rediss://a:1, b:2, redis://c:3")])).expect("valid");
        let tls: Vec<bool> = s
            .nodes
            .iter()
            .map(|n| matches!(n, Node::Tcp { tls: true, .. }))
            .collect();
        assert_eq!(tls, [true, false, false]);
        assert_eq!(s.nodes[0].to_string(), "rediss://a:1");
        let s = decode(&config(&[
            ("nodes", "a:1, redis://c:3"),
            ("scheme", "https"),
        ]))
        .expect("valid");
        assert!(matches!(s.nodes[0], Node::Tcp { tls: true, .. }));
        assert!(matches!(s.nodes[1], Node::Tcp { tls: false, .. }));
        assert!(s.tls_by_default);
        let err = decode(&config(&[("scheme", "ftp")])).expect_err("bad scheme");
        assert!(err.to_string().contains("`scheme`"), "{err}");
        let err = decode(&config(&[("caCert", "/nonexistent/ca.pem")])).expect_err("no file");
        assert!(err.to_string().contains("caCert"), "{err}");
        let err = decode(&config(&[("cert", "/etc/hostname")])).expect_err("no key");
        assert!(err.to_string().contains("together"), "{err}");
        let s = decode(&config(&[("insecure", "true"), ("sentinelPassword", "s")])).expect("valid");
        assert!(s.tls.insecure);
        assert_eq!(s.sentinel_password.as_deref(), Some("s"));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = decode(&config(&[("sep", ":")])).expect_err("unknown");
        assert!(err.to_string().contains("sep"), "{err}");
        let err = decode(&config(&[("nodes", "a:1/x")])).expect_err("bad db");
        assert!(err.to_string().contains("`nodes`"), "{err}");
        let err = decode(&config(&[("nodes", "nohost")])).expect_err("no port");
        assert!(err.to_string().contains("host:port"), "{err}");
    }
}
