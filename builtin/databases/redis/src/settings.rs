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
}

impl Default for Raw {
    fn default() -> Raw {
        Raw {
            nodes: Vec::new(),
            password: None,
            separator: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// One redis node: `host:port`, `host:port/db` or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Tcp { host: String, port: u16, db: i64 },
    Unix { path: String, db: i64 },
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
            Node::Tcp { host, port, .. } => write!(f, "{host}:{port}"),
            Node::Unix { path, .. } => f.write_str(path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub nodes: Vec<Node>,
    pub password: Option<String>,
    pub separator: String,
    pub dial_timeout: Duration,
}

pub fn decode(config: &Config) -> Result<Settings, Error> {
    let raw: Raw = confd_sdk::config::decode(config)?;
    if raw.dial_timeout.is_zero() {
        return Err(Error::invalid_config("`dialTimeout` must be positive"));
    }
    let mut nodes = raw
        .nodes
        .iter()
        .map(|n| parse_node(n))
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        for node in crate::DESCRIPTOR.default_nodes {
            nodes.push(parse_node(node)?);
        }
    }
    Ok(Settings {
        nodes,
        password: raw.password.filter(|p| !p.is_empty()),
        separator: raw
            .separator
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/".to_string()),
        dial_timeout: raw.dial_timeout,
    })
}

fn parse_node(node: &str) -> Result<Node, Error> {
    let bad = |why: &str| Error::invalid_config(format!("`nodes`: bad redis node {node:?}: {why}"));
    let node = node.strip_prefix("redis://").unwrap_or(node);
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
                    db: 0
                },
                Node::Tcp {
                    host: "b".into(),
                    port: 2,
                    db: 3
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
    fn errors_name_the_setting() {
        let err = decode(&config(&[("sep", ":")])).expect_err("unknown");
        assert!(err.to_string().contains("sep"), "{err}");
        let err = decode(&config(&[("nodes", "a:1/x")])).expect_err("bad db");
        assert!(err.to_string().contains("`nodes`"), "{err}");
        let err = decode(&config(&[("nodes", "nohost")])).expect_err("no port");
        assert!(err.to_string().contains("host:port"), "{err}");
    }
}
