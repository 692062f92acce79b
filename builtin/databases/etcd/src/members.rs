//! The members of an etcd cluster and which one confd talks to. One client per member instead of
//! one load-balanced channel over all of them: a balanced channel gives no say over which member
//! a call goes to, keeps sending calls to a member that is gone until the dial timeout passes,
//! and waits forever once every member has failed once. Here a call goes to the member in use; a
//! member that refuses, resets or stops answering is marked down at once and the call is retried
//! on the next member not known to be down, so no time goes to a member known to be dead. A
//! background task rechecks the members marked down and returns them to the pool when they
//! answer again.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use confd_sdk::Error;
use etcd_client::{Client, ConnectOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::task::AbortHandle;
use tonic::transport::Endpoint;

use crate::settings::Settings;

/// How often members marked down are asked whether they are back.
pub(crate) const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The members and the client of each.
pub(crate) struct Members {
    urls: Vec<String>,
    endpoints: Vec<Endpoint>,
    options: ConnectOptions,
    dial_timeout: Duration,
    state: Mutex<State>,
    recheck: Mutex<Option<AbortHandle>>,
}

struct State {
    /// The member calls go to while it answers.
    current: usize,
    members: Vec<Member>,
}

#[derive(Default)]
struct Member {
    client: Option<Client>,
    /// Why it was left, while it is marked down.
    down: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves the state whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Members {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.recheck).take() {
            task.abort();
        }
    }
}

/// Whether `err` says the member is unusable (gone, unreachable, without a leader) rather than
/// that the request was wrong: only then is the next member tried.
pub(crate) fn member_failed(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Internal
        ),
        _ => false,
    }
}

/// The server certificate check of `--client-insecure`: any certificate is accepted, but the
/// handshake signatures are still checked, so the connection is encrypted to whoever holds the
/// key of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl AnyCertificate {
    fn new() -> AnyCertificate {
        AnyCertificate(
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// What went wrong on one member.
pub(crate) enum Failure {
    /// The member answered with an error or the connection broke.
    Etcd(etcd_client::Error),
    /// No answer within the dial timeout.
    Timeout,
}

impl Members {
    pub(crate) fn new(
        settings: &Settings,
        options: ConnectOptions,
        tls: Option<etcd_client::TlsOptions>,
    ) -> Result<Arc<Members>, Error> {
        let mut endpoints = Vec::new();
        for url in &settings.nodes {
            let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| {
                Error::invalid_config(format!("etcd: the node {url:?} is not a URL: {e}"))
            })?;
            if url.starts_with("https://") {
                let config = tls.clone().unwrap_or_default();
                endpoint = if settings.insecure {
                    endpoint.tls_config_with_verifier(config, Arc::new(AnyCertificate::new()))
                } else {
                    endpoint.tls_config(config)
                }
                .map_err(|e| Error::invalid_config(format!("etcd: TLS for {url}: {e}")))?;
            }
            endpoint = endpoint
                .connect_timeout(settings.dial_timeout)
                // Keep-alive pings notice a silently dead member during a long watch.
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(settings.dial_timeout)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            endpoints.push(endpoint);
        }
        let members = Arc::new(Members {
            urls: settings.nodes.clone(),
            endpoints,
            options,
            dial_timeout: settings.dial_timeout,
            state: Mutex::new(State {
                current: 0,
                members: settings.nodes.iter().map(|_| Member::default()).collect(),
            }),
            recheck: Mutex::new(None),
        });
        if members.urls.len() > 1 {
            let task = tokio::spawn(recheck(Arc::downgrade(&members)));
            *lock(&members.recheck) = Some(task.abort_handle());
        }
        Ok(members)
    }

    /// All members, as the errors name them.
    pub(crate) fn names(&self) -> String {
        self.urls.join(", ")
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        self.urls.get(index).map_or("", String::as_str)
    }

    /// The member in use (for logs and tests).
    pub(crate) fn current(&self) -> &str {
        self.url(lock(&self.state).current)
    }

    /// How many members are marked down.
    pub(crate) fn down(&self) -> usize {
        lock(&self.state)
            .members
            .iter()
            .filter(|m| m.down.is_some())
            .count()
    }

    /// The member a call should go to, skipping those in `tried`: the one in use while it is not
    /// marked down, else the next one not marked down, else (every member is down, as far as
    /// anyone knows) the next one not tried yet, since a mark can be stale.
    fn choose(&self, tried: &[usize]) -> Option<(usize, Option<Client>)> {
        let mut state = lock(&self.state);
        let n = state.members.len();
        let order: Vec<usize> = (0..n).map(|i| (state.current + i) % n).collect();
        let pick = order
            .iter()
            .copied()
            .find(|i| !tried.contains(i) && state.members[*i].down.is_none())
            .or_else(|| order.iter().copied().find(|i| !tried.contains(i)))?;
        if pick != state.current {
            tracing::debug!(
                "etcd: using member {} (was {})",
                self.urls[pick],
                self.urls[state.current]
            );
            state.current = pick;
        }
        Some((pick, state.members[pick].client.clone()))
    }

    /// A client of member `index`, made on first use. The channel connects lazily: a member that
    /// is gone fails the first call at once (connection refused) instead of at connect time.
    async fn client_of(&self, index: usize, cached: Option<Client>) -> Result<Client, Failure> {
        if let Some(client) = cached {
            return Ok(client);
        }
        let channel = etcd_client::Channel::Tonic(self.endpoints[index].connect_lazy());
        let client = match tokio::time::timeout(
            self.dial_timeout,
            Client::from_channel(channel, Some(self.options.clone())),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(Failure::Etcd(e)),
            Err(_) => return Err(Failure::Timeout),
        };
        let mut state = lock(&self.state);
        let member = &mut state.members[index];
        Ok(member.client.get_or_insert(client).clone())
    }

    /// Marks member `index` down and moves on from it.
    pub(crate) fn failed(&self, index: usize, why: &str) {
        let mut state = lock(&self.state);
        let n = state.members.len();
        let Some(member) = state.members.get_mut(index) else {
            return;
        };
        member.client = None;
        let newly = member.down.is_none();
        member.down = Some(why.to_string());
        if n > 1 && state.current == index {
            let next = (1..n)
                .map(|i| (index + i) % n)
                .find(|i| state.members[*i].down.is_none());
            if let Some(next) = next {
                state.current = next;
            }
            if newly {
                tracing::warn!(
                    "etcd: member {} failed ({why}); using {}",
                    self.urls[index],
                    self.urls[state.current]
                );
            }
        } else if newly && n > 1 {
            tracing::debug!("etcd: member {} marked down ({why})", self.urls[index]);
        }
    }

    /// Marks member `index` healthy (it answered).
    fn answered(&self, index: usize) {
        let mut state = lock(&self.state);
        if let Some(member) = state.members.get_mut(index)
            && member.down.take().is_some()
        {
            tracing::debug!("etcd: member {} answers again", self.urls[index]);
        }
    }

    /// Runs `call` on the member in use under the dial timeout; when that member fails (see
    /// [`member_failed`]) it is marked down and the call runs again on the next member, each
    /// member at most once. Returns the answer and the member that gave it.
    pub(crate) async fn run<T, F, Fut>(&self, mut call: F) -> Result<(T, usize), (Failure, usize)>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut tried = Vec::new();
        let mut last = None;
        while let Some((index, cached)) = self.choose(&tried) {
            tried.push(index);
            let outcome = match self.client_of(index, cached).await {
                Ok(client) => match tokio::time::timeout(self.dial_timeout, call(client)).await {
                    Ok(Ok(value)) => {
                        self.answered(index);
                        return Ok((value, index));
                    }
                    Ok(Err(e)) => Failure::Etcd(e),
                    Err(_) => Failure::Timeout,
                },
                Err(failure) => failure,
            };
            match &outcome {
                Failure::Etcd(e) if !member_failed(e) => return Err((outcome, index)),
                Failure::Etcd(e) => self.failed(index, &crate::describe(e)),
                Failure::Timeout => {
                    self.failed(index, &format!("no answer within {:?}", self.dial_timeout))
                }
            }
            last = Some((outcome, index));
        }
        Err(last.unwrap_or((Failure::Timeout, 0)))
    }

    /// Asks every member marked down whether it is back.
    async fn recheck_once(&self) {
        let down: Vec<usize> = {
            let state = lock(&self.state);
            (0..state.members.len())
                .filter(|i| state.members[*i].down.is_some())
                .collect()
        };
        for index in down {
            let channel = etcd_client::Channel::Tonic(self.endpoints[index].connect_lazy());
            let check = async {
                let client = Client::from_channel(channel, Some(self.options.clone())).await?;
                client.maintenance_client().status().await
            };
            // The client is dropped: the member in use is the only one with a connection, so
            // nothing is kept open to a member until a call goes to it.
            if let Ok(Ok(_)) = tokio::time::timeout(self.dial_timeout, check).await {
                let mut state = lock(&self.state);
                if state.members[index].down.take().is_some() {
                    tracing::debug!(
                        "etcd: member {} is back; it is used again",
                        self.urls[index]
                    );
                }
            }
        }
    }
}

/// The background recheck of members marked down, until the members are dropped.
async fn recheck(members: Weak<Members>) {
    loop {
        tokio::time::sleep(RECHECK_INTERVAL).await;
        let Some(members) = members.upgrade() else {
            return;
        };
        members.recheck_once().await;
    }
}
