//! The vault backend's settings, decoded from the host's string map, and the auth method they
//! name, checked up front so a missing role id fails `configure` naming the setting and flag.

use std::time::Duration;

use confd_sdk::{Config, Error};
use serde::Deserialize;

/// How long to wait for a connection or an answer before calling Vault unreachable.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Vault's own default address, as the Vault CLI uses it.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";
/// Where Kubernetes mounts a pod's service account token.
pub const KUBERNETES_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    #[serde(alias = "address")]
    pub nodes: Vec<String>,
    pub auth_type: Option<String>,
    pub token: Option<String>,
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub role_id: Option<String>,
    pub secret_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub path: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca_cert: Option<String>,
    pub insecure: bool,
    pub kv_version: Option<String>,
    pub jwt_file: Option<String>,
    #[serde(with = "confd_sdk::config::duration")]
    pub dial_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            nodes: Vec::new(),
            auth_type: None,
            token: None,
            app_id: None,
            user_id: None,
            role_id: None,
            secret_id: None,
            username: None,
            password: None,
            path: None,
            cert: None,
            key: None,
            ca_cert: None,
            insecure: false,
            kv_version: None,
            jwt_file: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// How confd gets its Vault token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A token given as it is (`authToken` or `VAULT_TOKEN`).
    Token(String),
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
        jwt_file: String,
    },
    /// TLS client certificate login (the certificate is the client's TLS identity).
    Cert,
}

impl Auth {
    /// The name users write for the method (`--auth-type`).
    pub fn name(&self) -> &'static str {
        match self {
            Auth::Token(_) => "token",
            Auth::AppId { .. } => "app-id",
            Auth::AppRole { .. } => "app-role",
            Auth::UserPass { .. } => "userpass",
            Auth::Github { .. } => "github",
            Auth::Kubernetes { .. } => "kubernetes",
            Auth::Cert => "cert",
        }
    }

    /// Where Vault mounts the method unless `path` says otherwise.
    pub fn default_mount(&self) -> &'static str {
        match self {
            Auth::Token(_) => "token",
            Auth::AppId { .. } => "app-id",
            Auth::AppRole { .. } => "approle",
            Auth::UserPass { .. } => "userpass",
            Auth::Github { .. } => "github",
            Auth::Kubernetes { .. } => "kubernetes",
            Auth::Cert => "cert",
        }
    }

    /// Whether confd can get a new token by itself (every method but a given token).
    pub fn can_login(&self) -> bool {
        !matches!(self, Auth::Token(_))
    }
}

/// Which KV engine version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvVersion {
    /// Ask Vault per mount (`sys/internal/ui/mounts`).
    Auto,
    V1,
    V2,
}

/// The settings, checked: the address, the auth method with everything it needs, the KV version.
#[derive(Debug, Clone)]
pub struct Checked {
    pub address: String,
    pub auth: Auth,
    pub auth_mount: String,
    pub kv_version: KvVersion,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca_cert: Option<String>,
    pub insecure: bool,
    pub dial_timeout: Duration,
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn env(name: &str) -> Option<String> {
    nonempty(std::env::var(name).ok())
}

/// `value`, or an error naming the setting, the confd flag, and the method that needs it.
fn required(value: Option<String>, key: &str, flag: &str, method: &str) -> Result<String, Error> {
    nonempty(value).ok_or_else(|| {
        Error::invalid_config(format!(
            "vault auth type {method} needs `{key}` ({flag}), which is missing from the configuration"
        ))
    })
}

/// Decodes and checks `config`. The Vault CLI's variables fill what the settings leave empty:
/// `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_CACERT`, `VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY`,
/// `VAULT_SKIP_VERIFY`.
pub fn decode(config: &Config) -> Result<Checked, Error> {
    let s: Settings = confd_sdk::config::decode(config)?;
    let address = s
        .nodes
        .first()
        .cloned()
        .or_else(|| env("VAULT_ADDR"))
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let address = if address.contains("://") {
        address.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", address.trim_end_matches('/'))
    };
    let token = nonempty(s.token).or_else(|| env("VAULT_TOKEN"));
    let auth_type = nonempty(s.auth_type).map(|t| t.trim().to_ascii_lowercase());
    let auth = match auth_type.as_deref() {
        // The original requires the type; a token alone (VAULT_TOKEN) is unambiguous.
        None if token.is_some() => Auth::Token(token.unwrap_or_default()),
        None => {
            return Err(Error::invalid_config(
                "vault needs `authType` (--auth-type): token, app-id, app-role, userpass, github, \
                 kubernetes or cert",
            ));
        }
        Some("token") => Auth::Token(required(
            token,
            "token",
            "--auth-token or VAULT_TOKEN",
            "token",
        )?),
        Some("app-id" | "appid") => Auth::AppId {
            app_id: required(s.app_id, "appId", "--app-id", "app-id")?,
            user_id: required(s.user_id, "userId", "--user-id", "app-id")?,
        },
        Some("app-role" | "approle") => Auth::AppRole {
            role_id: required(s.role_id, "roleId", "--role-id", "app-role")?,
            secret_id: required(s.secret_id, "secretId", "--secret-id", "app-role")?,
        },
        Some("userpass") => Auth::UserPass {
            username: required(s.username, "username", "--username", "userpass")?,
            password: required(s.password, "password", "--password", "userpass")?,
        },
        Some("github") => Auth::Github {
            token: required(token, "token", "--auth-token", "github")?,
        },
        Some("kubernetes") => Auth::Kubernetes {
            role: required(s.role_id, "roleId", "--role-id", "kubernetes")?,
            jwt_file: nonempty(s.jwt_file).unwrap_or_else(|| KUBERNETES_JWT.to_string()),
        },
        Some("cert") => Auth::Cert,
        Some(other) => {
            return Err(Error::invalid_config(format!(
                "vault: unknown authType {other:?} (expected token, app-id, app-role, userpass, \
                 github, kubernetes or cert)"
            )));
        }
    };
    let cert = nonempty(s.cert).or_else(|| env("VAULT_CLIENT_CERT"));
    let key = nonempty(s.key).or_else(|| env("VAULT_CLIENT_KEY"));
    if auth == Auth::Cert && (cert.is_none() || key.is_none()) {
        return Err(Error::invalid_config(
            "vault auth type cert needs `cert` and `key` (--client-cert, --client-key): the TLS \
             client certificate is the login",
        ));
    }
    let kv_version = match nonempty(s.kv_version).as_deref().map(str::trim) {
        None | Some("auto") => KvVersion::Auto,
        Some("1") => KvVersion::V1,
        Some("2") => KvVersion::V2,
        Some(other) => {
            return Err(Error::invalid_config(format!(
                "key \"kvVersion\": invalid value {other:?}: expected auto, 1 or 2"
            )));
        }
    };
    let auth_mount = nonempty(s.path)
        .map(|p| p.trim_matches('/').to_string())
        .unwrap_or_else(|| auth.default_mount().to_string());
    let insecure = s.insecure
        || env("VAULT_SKIP_VERIFY").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE"));
    Ok(Checked {
        address,
        auth,
        auth_mount,
        kv_version,
        cert,
        key,
        ca_cert: nonempty(s.ca_cert).or_else(|| env("VAULT_CACERT")),
        insecure,
        dial_timeout: s.dial_timeout,
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
    fn each_method_names_what_it_misses() {
        for (pairs, missing) in [
            (vec![("authType", "app-role"), ("roleId", "r")], "secretId"),
            (vec![("authType", "approle"), ("secretId", "s")], "roleId"),
            (vec![("authType", "app-id"), ("appId", "a")], "userId"),
            (
                vec![("authType", "userpass"), ("username", "u")],
                "password",
            ),
            (vec![("authType", "kubernetes")], "roleId"),
            (vec![("authType", "cert")], "cert"),
        ] {
            let err = decode(&config(&pairs)).expect_err("incomplete");
            assert!(err.to_string().contains(missing), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn spellings_mounts_and_versions() {
        let c = decode(&config(&[
            ("authType", "approle"),
            ("roleId", "r"),
            ("secretId", "s"),
            ("nodes", "vault:8200"),
        ]))
        .expect("valid");
        assert_eq!(c.auth.name(), "app-role");
        assert_eq!(c.auth_mount, "approle");
        assert_eq!(c.address, "http://vault:8200");
        assert_eq!(c.kv_version, KvVersion::Auto);
        let c = decode(&config(&[
            ("authType", "app-role"),
            ("roleId", "r"),
            ("secretId", "s"),
            ("path", "/test/"),
            ("kvVersion", "2"),
        ]))
        .expect("valid");
        assert_eq!(
            (c.auth_mount.as_str(), c.kv_version),
            ("test", KvVersion::V2)
        );
        let err = decode(&config(&[("authType", "magic")])).expect_err("unknown");
        assert!(err.to_string().contains("magic"), "{err}");
        let err = decode(&config(&[
            ("authType", "token"),
            ("token", "t"),
            ("kvVersion", "3"),
        ]))
        .expect_err("bad version");
        assert!(err.to_string().contains("kvVersion"), "{err}");
    }
}
