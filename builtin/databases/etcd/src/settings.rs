//! The etcd backend's settings, decoded from the host's string map.

use std::path::PathBuf;
use std::time::Duration;

use confd_sdk::{Config, Error};

/// etcd's own default client port, used when no node is given.
const DEFAULT_NODE: &str = "127.0.0.1:2379";
/// How long to wait for a connection or an answer before calling the node
/// unreachable (etcd's and confd's default).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

const KNOWN: &[&str] = &[
    "nodes",
    "machines",
    "cert",
    "key",
    "caCert",
    "basicAuth",
    "username",
    "password",
    "dialTimeout",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Endpoint URLs with a scheme (`http://` or `https://`).
    pub nodes: Vec<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    /// `(username, password)` when basic auth is on.
    pub user: Option<(String, String)>,
    pub dial_timeout: Duration,
}

impl Settings {
    pub fn tls(&self) -> bool {
        self.ca_cert.is_some() || self.cert.is_some()
    }
}

pub fn decode(config: &Config) -> Result<Settings, Error> {
    let mut nodes = Vec::new();
    let (mut cert, mut key, mut ca_cert) = (None, None, None);
    let mut basic_auth = false;
    let (mut username, mut password) = (String::new(), String::new());
    let mut dial_timeout = DEFAULT_DIAL_TIMEOUT;
    for (name, value) in config {
        // The host passes every known setting, unset ones as "".
        let value = value.trim();
        match name.as_str() {
            "nodes" | "machines" => nodes.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            ),
            "cert" => cert = path(value),
            "key" => key = path(value),
            "caCert" => ca_cert = path(value),
            "basicAuth" => basic_auth = boolean(name, value)?,
            "username" => username = value.to_string(),
            "password" => password = value.to_string(),
            "dialTimeout" => dial_timeout = duration(name, value)?,
            other => {
                return Err(Error::invalid_config(format!(
                    "unknown setting `{other}` for the etcd backend (known: {})",
                    KNOWN.join(", ")
                )));
            }
        }
    }
    if cert.is_some() != key.is_some() {
        return Err(Error::invalid_config(
            "`cert` and `key` must be given together for etcd client TLS",
        ));
    }
    if basic_auth && username.is_empty() {
        return Err(Error::invalid_config(
            "`basicAuth` is on but `username` is empty",
        ));
    }
    let tls = ca_cert.is_some() || cert.is_some();
    if nodes.is_empty() {
        nodes.push(DEFAULT_NODE.to_string());
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
        user: basic_auth.then_some((username, password)),
        dial_timeout,
    })
}

fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn boolean(name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "" | "false" | "0" => Ok(false),
        "true" | "1" => Ok(true),
        _ => Err(Error::invalid_config(format!(
            "`{name}` must be true or false, got {value:?}"
        ))),
    }
}

fn duration(name: &str, value: &str) -> Result<Duration, Error> {
    if value.is_empty() {
        return Ok(DEFAULT_DIAL_TIMEOUT);
    }
    let parsed = match value.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(value),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::invalid_config(format!(
            "`{name}` must be a positive duration such as 5s or 500ms, got {value:?}"
        ))),
    }
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
        assert!(!s.tls());
    }

    #[test]
    fn basic_auth_and_timeout() {
        let s = decode(&config(&[
            ("basicAuth", "true"),
            ("username", "root"),
            ("password", "pw"),
            ("dialTimeout", "250ms"),
        ]))
        .expect("valid");
        assert_eq!(s.user, Some(("root".to_string(), "pw".to_string())));
        assert_eq!(s.dial_timeout, Duration::from_millis(250));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = decode(&config(&[("nodse", "x")])).expect_err("unknown");
        assert!(err.to_string().contains("`nodse`"), "{err}");
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
