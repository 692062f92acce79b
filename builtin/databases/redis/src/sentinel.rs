//! Redis Sentinel: which node is the primary now, and when it moves. The sentinels are asked in
//! the order given (the first that answers wins); one of them is followed on its `+switch-master`
//! channel so that a failover is noticed the moment the sentinels agree on it, not only when the
//! old primary drops the connection.

use std::sync::Arc;
use std::time::Duration;

use confd_sdk::Error;
use futures_util::StreamExt as _;

use crate::settings::{Node, Sentinel, Settings};

/// Pause before following the next sentinel after losing one.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

/// A client for one sentinel: its own password (`sentinelPassword`, not the primary's), and
/// TLS when the scheme says so.
fn sentinel_client(settings: &Settings, host: &str, port: u16) -> Result<redis::Client, Error> {
    let addr = if settings.tls_by_default {
        redis::ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: settings.tls.insecure,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(host.to_string(), port)
    };
    crate::client(
        &format!("sentinel {host}:{port}"),
        addr,
        0,
        settings.sentinel_password.as_deref(),
        &settings.tls,
    )
}

/// The primary the sentinels name for `sentinel.master`.
pub(crate) async fn primary(settings: &Settings, sentinel: &Sentinel) -> Result<Node, Error> {
    let timeout = settings.dial_timeout;
    let mut causes = Vec::new();
    for (host, port) in &sentinel.sentinels {
        let client = sentinel_client(settings, host, *port)?;
        let ask = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&sentinel.master)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(Some((host, port)))) => {
                return Ok(Node::Tcp {
                    host,
                    port,
                    db: 0,
                    tls: settings.tls_by_default,
                });
            }
            Ok(Ok(None)) => causes.push(format!(
                "{host}:{port}: does not monitor {:?}",
                sentinel.master
            )),
            Ok(Err(e)) => causes.push(format!("{host}:{port}: {e}")),
            Err(_) => causes.push(format!("{host}:{port}: no answer within {timeout:?}")),
        }
    }
    Err(Error::unavailable(format!(
        "redis {sentinel}: no sentinel named the primary ({})",
        causes.join("; ")
    )))
}

/// Follows the sentinels' `+switch-master` announcements for `sentinel.master` and ticks `moved`
/// on each, until aborted.
pub(crate) async fn follow(
    settings: Settings,
    sentinel: Sentinel,
    moved: Arc<tokio::sync::watch::Sender<u64>>,
) {
    let timeout = settings.dial_timeout;
    loop {
        for (host, port) in &sentinel.sentinels {
            let subscribed = async {
                let client = sentinel_client(&settings, host, *port)?;
                let subscribe = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe("+switch-master").await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                subscribe
                    .await
                    .map_err(|e| Error::unavailable(e.to_string()))
            };
            let mut pubsub = match tokio::time::timeout(timeout, subscribed).await {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(e)) => {
                    tracing::debug!("redis: sentinel {host}:{port}: {e}");
                    continue;
                }
                Err(_) => continue,
            };
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                // "<master> <old ip> <old port> <new ip> <new port>"
                let fields: Vec<&str> = payload.split_whitespace().collect();
                if fields.first() == Some(&sentinel.master.as_str()) {
                    tracing::info!(
                        "redis: sentinel {host}:{port}: primary {:?} moved to {}",
                        sentinel.master,
                        fields.get(3..).map(|f| f.join(":")).unwrap_or_default()
                    );
                    moved.send_modify(|g| *g += 1);
                }
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}
