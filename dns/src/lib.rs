//! DNS SRV lookups, the one resolver confd uses: the host's `--srv-domain` / `--srv-record` node
//! discovery and the templates' `lookupSRV` both go through it, so both honour the system's
//! resolver configuration (`/etc/resolv.conf` options, TCP fallback for truncated answers).
//!
//! confd's rules for discovery: `--srv-record` names the record directly; otherwise
//! `--srv-domain example.com` with backend `etcd` looks up `_etcd._tcp.example.com.`. Each answer
//! becomes `host:port` with the target's trailing dot trimmed. A failed lookup is an error (confd
//! treats it as fatal); how nodes are written for a backend (URLs for etcd) is the backend's own
//! description, not this crate's business.

use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// Why discovery failed; the message names the record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SRV lookup of {record}: the system resolver configuration is unusable: {cause}")]
    Resolver { record: String, cause: String },
    #[error("SRV lookup of {record} failed: {cause}")]
    Lookup { record: String, cause: String },
    #[error("SRV lookup of {record} returned no targets")]
    Empty { record: String },
}

/// One SRV answer, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub priority: u16,
    pub weight: u16,
    pub host: String,
    pub port: u16,
}

/// The record confd builds from `--srv-domain`: `_<backend>._tcp.<domain>.`
pub fn record_name(backend: &str, domain: &str) -> String {
    let domain = domain.trim_end_matches('.');
    format!("_{backend}._tcp.{domain}.")
}

/// The record to look up: `--srv-record` wins over `--srv-domain`; `None`
/// when neither is set (no discovery).
pub fn record_for(
    backend: &str,
    srv_record: Option<&str>,
    srv_domain: Option<&str>,
) -> Option<String> {
    match (
        srv_record.filter(|r| !r.is_empty()),
        srv_domain.filter(|d| !d.is_empty()),
    ) {
        (Some(record), _) => Some(record.to_string()),
        (None, Some(domain)) => Some(record_name(backend, domain)),
        (None, None) => None,
    }
}

/// Orders answers by priority (lowest first), then weight (highest first),
/// then host and port, and renders them as `host:port`. Deterministic, so
/// the same DNS answer always gives the same node list.
pub fn format_targets(mut targets: Vec<Target>) -> Vec<String> {
    targets.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(a.host.cmp(&b.host))
            .then(a.port.cmp(&b.port))
    });
    targets
        .into_iter()
        .map(|t| format!("{}:{}", t.host.trim_end_matches('.'), t.port))
        .collect()
}

/// Looks `record` up with the system resolver and returns its answers in the order DNS gave them.
/// An answer without targets is an error, as in confd.
pub async fn lookup_srv(record: &str) -> Result<Vec<Target>, Error> {
    let resolver = system_resolver(record)?;
    lookup(&resolver, record).await
}

/// [`lookup_srv`] for callers outside an async context (a template function): the lookup runs on
/// a thread of its own with a small runtime, so it works whether or not the caller is itself
/// on a runtime thread.
pub fn lookup_srv_blocking(record: &str) -> Result<Vec<Target>, Error> {
    let record = record.to_string();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Resolver {
                        record: record.clone(),
                        cause: format!("cannot start a runtime for the lookup: {e}"),
                    })?;
                runtime.block_on(lookup_srv(&record))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Lookup {
                    record: record.clone(),
                    cause: "the lookup thread panicked".to_string(),
                })
            })
    })
}

/// Looks `record` up and returns `host:port` nodes, ordered as [`format_targets`] does.
pub async fn discover_nodes(record: &str) -> Result<Vec<String>, Error> {
    Ok(format_targets(lookup_srv(record).await?))
}

fn system_resolver(record: &str) -> Result<TokioResolver, Error> {
    let cause = |e: &dyn std::fmt::Display| Error::Resolver {
        record: record.to_string(),
        cause: e.to_string(),
    };
    Resolver::builder_tokio()
        .map_err(|e| cause(&e))?
        .build()
        .map_err(|e| cause(&e))
}

async fn lookup(resolver: &TokioResolver, record: &str) -> Result<Vec<Target>, Error> {
    let answer = resolver
        .srv_lookup(record)
        .await
        .map_err(|e| Error::Lookup {
            record: record.to_string(),
            cause: e.to_string(),
        })?;
    let targets: Vec<Target> = answer
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(Target {
                priority: srv.priority,
                weight: srv.weight,
                host: srv.target.to_utf8(),
                port: srv.port,
            }),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return Err(Error::Empty {
            record: record.to_string(),
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(priority: u16, weight: u16, host: &str, port: u16) -> Target {
        Target {
            priority,
            weight,
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn record_name_is_confds() {
        assert_eq!(
            record_name("etcd", "example.com"),
            "_etcd._tcp.example.com."
        );
        assert_eq!(
            record_name("consul", "example.com."),
            "_consul._tcp.example.com."
        );
    }

    #[test]
    fn explicit_record_wins_over_domain() {
        assert_eq!(
            record_for("etcd", Some("_x._tcp.a.b."), Some("example.com")).as_deref(),
            Some("_x._tcp.a.b.")
        );
        assert_eq!(
            record_for("redis", None, Some("example.com")).as_deref(),
            Some("_redis._tcp.example.com.")
        );
        assert_eq!(record_for("redis", Some(""), Some("")), None);
    }

    #[test]
    fn targets_are_trimmed_and_ordered() {
        let nodes = format_targets(vec![
            t(20, 0, "c.example.com.", 2379),
            t(10, 5, "b.example.com.", 2379),
            t(10, 50, "a.example.com.", 22379),
        ]);
        assert_eq!(
            nodes,
            [
                "a.example.com:22379",
                "b.example.com:2379",
                "c.example.com:2379"
            ]
        );
    }

    /// A DNS server on a loopback port answering every SRV query with `answers`
    /// (priority, weight, port, target); none means an empty answer.
    async fn fake_dns(answers: Vec<(u16, u16, u16, &'static str)>) -> std::net::SocketAddr {
        use hickory_resolver::proto::op::Message;
        use hickory_resolver::proto::rr::rdata::SRV;
        use hickory_resolver::proto::rr::{Name, Record};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = socket.local_addr().expect("local addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                for q in &query.queries {
                    reply.add_query(q.clone());
                    for (priority, weight, port, target) in &answers {
                        let target = Name::from_ascii(target).expect("target name");
                        reply.add_answer(Record::from_rdata(
                            q.name.clone(),
                            60,
                            RData::SRV(SRV::new(*priority, *weight, *port, target)),
                        ));
                    }
                }
                let bytes = reply.to_vec().expect("encode reply");
                let _ = socket.send_to(&bytes, peer).await;
            }
        });
        addr
    }

    fn resolver_for(server: std::net::SocketAddr) -> TokioResolver {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut ns = NameServerConfig::udp(server.ip());
        for connection in &mut ns.connections {
            connection.port = server.port();
        }
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .build()
        .expect("resolver")
    }

    #[tokio::test]
    async fn a_dns_answer_becomes_ordered_nodes() {
        let server = fake_dns(vec![
            (20, 0, 2379, "backup.example.test."),
            (10, 5, 2379, "b.example.test."),
            (10, 50, 2380, "a.example.test."),
        ])
        .await;
        let nodes = format_targets(
            lookup(&resolver_for(server), "_etcd._tcp.example.test.")
                .await
                .expect("lookup"),
        );
        assert_eq!(
            nodes,
            [
                "a.example.test:2380",
                "b.example.test:2379",
                "backup.example.test:2379"
            ]
        );
    }

    #[tokio::test]
    async fn an_answer_without_targets_is_an_error_naming_the_record() {
        let server = fake_dns(vec![]).await;
        let err = lookup(&resolver_for(server), "_etcd._tcp.empty.test.")
            .await
            .expect_err("no targets");
        assert!(err.to_string().contains("_etcd._tcp.empty.test."), "{err}");
    }

    #[test]
    fn a_blocking_lookup_works_inside_and_outside_a_runtime() {
        let outside = lookup_srv_blocking("_confd-test._tcp.invalid.").expect_err("never resolves");
        assert!(
            outside.to_string().contains("_confd-test._tcp.invalid."),
            "{outside}"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let inside = runtime.block_on(async {
            lookup_srv_blocking("_confd-test._tcp.invalid.").expect_err("never resolves")
        });
        assert!(
            inside.to_string().contains("_confd-test._tcp.invalid."),
            "{inside}"
        );
    }

    #[tokio::test]
    async fn a_bad_record_is_an_error_naming_it() {
        // Offline this fails in the resolver or the lookup; online the name
        // does not exist. Either way it must be an error naming the record.
        let err = discover_nodes("_confd-test._tcp.invalid.")
            .await
            .expect_err("the .invalid TLD never resolves");
        assert!(
            err.to_string().contains("_confd-test._tcp.invalid."),
            "{err}"
        );
    }
}
