//! confd's redis backend: reads string keys and hashes the way confd does,
//! and watches through keyspace notifications, falling back to polling when
//! the server does not allow them.

mod keys;
mod sentinel;
mod settings;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use confd_sdk::{
    Config, Configured, Database, DatabaseInfo, Descriptor, Error, ErrorKind, Setting, SrvNodes,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::Mutex;

pub use keys::{clean, is_under, transform};
pub use settings::{DEFAULT_DIAL_TIMEOUT, Node, Sentinel, Settings, Tls};

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "redis";

/// Everything the host and the plugin executable know about this backend.
pub const DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    aliases: &[],
    summary: "Redis strings, hashes and SCANned prefixes; watches with keyspace notifications",
    default_nodes: &["127.0.0.1:6379"],
    settings: &[
        Setting::from(
            "nodes",
            &["nodes"],
            "host:port, host:port/db or a unix socket path",
        ),
        // confd passed client_key as the redis password; --password wins over it.
        Setting::from("password", &["password", "client_key"], "AUTH password"),
        Setting::from(
            "separator",
            &["separator"],
            "key separator in place of / (default /)",
        ),
        Setting::from(
            "dialTimeout",
            &["dial_timeout"],
            "connect and request time limit (default 5s)",
        ),
        Setting::from(
            "sentinels",
            &[],
            "Redis Sentinel: host:port of each sentinel (or --node sentinel://host:port,host:port/master)",
        ),
        Setting::from(
            "masterName",
            &[],
            "Redis Sentinel: the name of the monitored primary",
        ),
        Setting::from(
            "sentinelPassword",
            &[],
            "Redis Sentinel: AUTH password of the sentinels themselves (`password` is the primary's)",
        ),
        Setting::from(
            "scheme",
            &["scheme"],
            "rediss or https: TLS to every node and sentinel (a node's own rediss:// or redis:// wins)",
        ),
        Setting::from(
            "caCert",
            &["client_cakeys"],
            "TLS CA certificate file (default: the system's roots)",
        ),
        Setting::from(
            "cert",
            &["client_cert"],
            "TLS client certificate file (needs `key`)",
        ),
        // Not client_key: confd gives redis its password there.
        Setting::from("key", &[], "TLS client key file (--plugin-config key=PATH)"),
        Setting::from(
            "insecure",
            &["client_insecure"],
            "do not verify the server's TLS certificate",
        ),
    ],
    capabilities: &["watch"],
    srv_nodes: SrvNodes::HostPort,
    version: env!("CARGO_PKG_VERSION"),
    database: confd_sdk::shared::<Redis>,
};

/// A new, unconfigured backend (the factory `confd_sdk::serve` takes).
pub fn database() -> Redis {
    Redis::new()
}

/// The redis backend. Configure it, then read and watch.
#[derive(Debug, Default)]
pub struct Redis {
    state: Configured<Connection>,
}

impl Redis {
    pub fn new() -> Redis {
        Redis::default()
    }

    fn connection(&self) -> Result<Arc<Connection>, Error> {
        self.state.get(NAME)
    }
}

/// A connected (or connectable) node; the manager reconnects by itself.
#[derive(Clone)]
pub(crate) struct Link {
    pub node: Node,
    pub client: redis::Client,
    pub manager: ConnectionManager,
    /// The primary generation (see `Connection::primary_moved`) it was made in.
    pub generation: u64,
}

pub(crate) struct Connection {
    pub settings: Settings,
    link: Mutex<Option<Link>>,
    pub watches: watch::Watches,
    /// With Sentinel: counts the primary's moves. A link or a subscription of an older
    /// generation is not used; waiters wake when it ticks, so they re-read and re-subscribe on
    /// the new primary.
    pub primary_moved: Arc<tokio::sync::watch::Sender<u64>>,
    sentinel_task: Option<tokio::task::AbortHandle>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.sentinel_task.take() {
            task.abort();
        }
    }
}

fn client_for(node: &Node, password: Option<&str>, tls: &Tls) -> Result<redis::Client, Error> {
    let addr = match node {
        Node::Tcp {
            host,
            port,
            tls: true,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: tls.insecure,
            tls_params: None,
        },
        Node::Tcp { host, port, .. } => ConnectionAddr::Tcp(host.clone(), *port),
        Node::Unix { path, .. } => ConnectionAddr::Unix(path.into()),
    };
    client(&node.to_string(), addr, node.db(), password, tls)
}

/// A client for `addr` (TLS when it is `TcpTls`, with `tls`'s CA and client certificate);
/// `name` is how errors name the server.
pub(crate) fn client(
    name: &str,
    addr: ConnectionAddr,
    db: i64,
    password: Option<&str>,
    tls: &Tls,
) -> Result<redis::Client, Error> {
    let mut redis_settings = RedisConnectionInfo::default().set_db(db);
    if let Some(password) = password {
        redis_settings = redis_settings.set_password(password);
    }
    let with_tls = matches!(addr, ConnectionAddr::TcpTls { .. });
    let bad = |e: redis::RedisError| Error::invalid_config(format!("redis {name}: {e}"));
    let info = addr
        .into_connection_info()
        .map_err(bad)?
        .set_redis_settings(redis_settings);
    if !with_tls {
        return redis::Client::open(info).map_err(bad);
    }
    let certificates = redis::TlsCertificates {
        client_tls: tls
            .identity
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: tls.ca_cert.clone(),
    };
    redis::Client::build_with_tls(info, certificates).map_err(bad)
}

impl Connection {
    fn nodes(&self) -> String {
        if let Some(sentinel) = &self.settings.sentinel {
            return sentinel.to_string();
        }
        let nodes: Vec<String> = self
            .settings
            .nodes
            .iter()
            .map(ToString::to_string)
            .collect();
        nodes.join(", ")
    }

    /// The primary generation now.
    pub fn generation(&self) -> u64 {
        *self.primary_moved.borrow()
    }

    /// With Sentinel: the primary may have moved; ask the sentinels again before the next call.
    pub fn primary_may_have_moved(&self) {
        if self.settings.sentinel.is_some() {
            self.primary_moved.send_modify(|g| *g += 1);
        }
    }

    /// The first node that connects (with Sentinel: the primary the sentinels name), cached;
    /// redis-rs's manager then reconnects on its own after errors.
    pub async fn link(&self) -> Result<Link, Error> {
        let mut cached = self.link.lock().await;
        let generation = self.generation();
        if let Some(link) = cached.as_ref()
            && link.generation == generation
        {
            return Ok(link.clone());
        }
        let timeout = self.settings.dial_timeout;
        let candidates = match &self.settings.sentinel {
            Some(sentinel) => vec![sentinel::primary(&self.settings, sentinel).await?],
            None => self.settings.nodes.clone(),
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut causes = Vec::new();
        for node in &candidates {
            let client = client_for(node, self.settings.password.as_deref(), &self.settings.tls)?;
            let attempt = tokio::time::timeout(
                timeout,
                client.get_connection_manager_with_config(config.clone()),
            )
            .await;
            match attempt {
                Ok(Ok(manager)) => {
                    if self.settings.sentinel.is_some() {
                        tracing::debug!("redis: using primary {node}");
                    }
                    let link = Link {
                        node: node.clone(),
                        client,
                        manager,
                        generation,
                    };
                    *cached = Some(link.clone());
                    return Ok(link);
                }
                Ok(Err(e)) => {
                    if e.kind() == redis::ErrorKind::AuthenticationFailed {
                        return Err(redis_error(node, &e));
                    }
                    causes.push(format!("{node}: {e}"));
                }
                Err(_) => causes.push(format!("{node}: no connection within {timeout:?}")),
            }
        }
        Err(Error::unavailable(format!("redis: {}", causes.join("; "))))
    }

    /// Runs one redis call under the dial timeout.
    pub async fn deadline<T>(
        &self,
        node: &Node,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.settings.dial_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(redis_error(node, &e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis {node}: no answer within {:?}",
                self.settings.dial_timeout
            ))),
        }
    }

    pub async fn get_values(
        &self,
        requested: &[String],
    ) -> Result<BTreeMap<String, String>, Error> {
        let link = self.link().await?;
        let mut values = BTreeMap::new();
        for key in requested {
            if let Err(e) = keys::read_key(self, &link, key, &mut values).await {
                // A primary that is gone, or was turned into a replica: ask the sentinels.
                self.primary_may_have_moved();
                return Err(e);
            }
        }
        Ok(values)
    }
}

pub(crate) fn redis_error(node: &Node, err: &redis::RedisError) -> Error {
    let kind = if err.kind() == redis::ErrorKind::AuthenticationFailed
        || err.to_string().contains("NOAUTH")
        || err.to_string().contains("WRONGPASS")
    {
        ErrorKind::PermissionDenied
    } else if err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    Error::new(kind, format!("redis {node}: {err}"))
}

#[confd_sdk::async_trait]
impl Database for Redis {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let settings = settings::decode(&config)?;
        for node in &settings.nodes {
            client_for(node, settings.password.as_deref(), &settings.tls)?;
        }
        let primary_moved = Arc::new(tokio::sync::watch::Sender::new(0));
        let sentinel_task = settings.sentinel.clone().map(|sentinel| {
            tokio::spawn(sentinel::follow(
                settings.clone(),
                sentinel,
                Arc::clone(&primary_moved),
            ))
            .abort_handle()
        });
        let connection = Connection {
            settings,
            link: Mutex::new(None),
            watches: watch::Watches::default(),
            primary_moved,
            sentinel_task,
        };
        self.state.set(connection);
        Ok(())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let connection = self.connection()?;
        let result = connection.get_values(keys).await;
        if let Err(e) = &result {
            tracing::debug!(nodes = %connection.nodes(), error = %e, "redis read failed");
        }
        result
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        let connection = self.connection()?;
        let keys = confd_sdk::keys::watched(prefix, keys);
        watch::watch_prefix(&connection, &keys, wait_index).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        Ok(DESCRIPTOR.info())
    }
}
