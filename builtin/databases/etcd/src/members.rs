//! The members of an etcd cluster and which one confd talks to. One client per member instead of
//! one load-balanced channel over all of them: a balanced channel gives no say over which member
//! a call goes to, keeps sending calls to a member that is gone until the dial timeout passes,
//! and waits forever once every member has failed once. Here a call goes to the member in use; a
//! member that refuses, resets or stops answering is marked down at once and the call is retried
//! on the next member not known to be down, so no time goes to a member known to be dead. A
//! background task rechecks the members marked down and returns them to the pool when they
//! answer again. With `autoSyncInterval` the cluster's own member list is asked for at start and
//! then at that interval: members it names are added, members it no longer names are left (kept
//! in the list as removed, so the indices calls hold stay valid).

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
    options: ConnectOptions,
    dial_timeout: Duration,
    /// How endpoints of members learnt from the member list are made.
    tls: Option<etcd_client::TlsOptions>,
    insecure: bool,
    /// `autoSyncInterval`, when on.
    auto_sync: Option<Duration>,
    state: Mutex<State>,
    recheck: Mutex<Option<AbortHandle>>,
}

struct State {
    /// The member calls go to while it answers.
    current: usize,
    members: Vec<Member>,
}

struct Member {
    url: String,
    endpoint: Endpoint,
    /// No longer named by the cluster's member list: never chosen, never rechecked.
    removed: bool,
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
        let mut list = Vec::new();
        for url in &settings.nodes {
            list.push(Member {
                url: url.clone(),
                endpoint: endpoint(url, settings.dial_timeout, tls.as_ref(), settings.insecure)?,
                removed: false,
                client: None,
                down: None,
            });
        }
        let members = Arc::new(Members {
            options,
            dial_timeout: settings.dial_timeout,
            tls,
            insecure: settings.insecure,
            auto_sync: settings.auto_sync_interval,
            state: Mutex::new(State {
                current: 0,
                members: list,
            }),
            recheck: Mutex::new(None),
        });
        if settings.nodes.len() > 1 || members.auto_sync.is_some() {
            let task = tokio::spawn(recheck(Arc::downgrade(&members)));
            *lock(&members.recheck) = Some(task.abort_handle());
        }
        Ok(members)
    }

    /// The members not removed, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        lock(&self.state)
            .members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| m.url.clone())
            .collect()
    }

    /// All members, as the errors name them.
    pub(crate) fn names(&self) -> String {
        self.urls().join(", ")
    }

    /// How many members there are (removed ones too: each is tried at most once).
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).members.len()
    }

    pub(crate) fn url(&self, index: usize) -> String {
        lock(&self.state)
            .members
            .get(index)
            .map(|m| m.url.clone())
            .unwrap_or_default()
    }

    /// The member in use (for logs, metrics and tests).
    pub(crate) fn current(&self) -> String {
        let state = lock(&self.state);
        state
            .members
            .get(state.current)
            .map(|m| m.url.clone())
            .unwrap_or_default()
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
            .find(|i| {
                !tried.contains(i) && state.members[*i].down.is_none() && !state.members[*i].removed
            })
            .or_else(|| {
                order
                    .iter()
                    .copied()
                    .find(|i| !tried.contains(i) && !state.members[*i].removed)
            })?;
        if pick != state.current {
            tracing::debug!(
                "etcd: using member {} (was {})",
                state.members[pick].url,
                state.members[state.current].url
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
        let endpoint = lock(&self.state).members[index].endpoint.clone();
        let channel = etcd_client::Channel::Tonic(endpoint.connect_lazy());
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
                .find(|i| state.members[*i].down.is_none() && !state.members[*i].removed);
            if let Some(next) = next {
                state.current = next;
            }
            if newly {
                tracing::warn!(
                    "etcd: member {} failed ({why}); using {}",
                    state.members[index].url,
                    state.members[state.current].url
                );
            }
        } else if newly && n > 1 {
            tracing::debug!(
                "etcd: member {} marked down ({why})",
                state.members[index].url
            );
        }
    }

    /// Marks member `index` healthy (it answered).
    fn answered(&self, index: usize) {
        let mut state = lock(&self.state);
        if let Some(member) = state.members.get_mut(index)
            && member.down.take().is_some()
        {
            tracing::debug!("etcd: member {} answers again", member.url);
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
        let down: Vec<(usize, Endpoint)> = {
            let state = lock(&self.state);
            (0..state.members.len())
                .filter(|i| state.members[*i].down.is_some() && !state.members[*i].removed)
                .map(|i| (i, state.members[i].endpoint.clone()))
                .collect()
        };
        for (index, endpoint) in down {
            let channel = etcd_client::Channel::Tonic(endpoint.connect_lazy());
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
                        state.members[index].url
                    );
                }
            }
        }
    }

    /// Asks the cluster for its members and follows the answer: members it names that are not
    /// known are added, known ones it no longer names are left. An empty or failed answer
    /// changes nothing.
    pub(crate) async fn sync(&self) {
        let answer = self
            .run(|client| async move { client.cluster_client().member_list().await })
            .await;
        let response = match answer {
            Ok((response, _)) => response,
            Err((failure, _)) => {
                let why = match failure {
                    Failure::Etcd(e) => crate::describe(&e),
                    Failure::Timeout => format!("no answer within {:?}", self.dial_timeout),
                };
                tracing::debug!("etcd: the member list could not be read: {why}");
                return;
            }
        };
        let listed: Vec<String> = response
            .members()
            .iter()
            .flat_map(|m| m.client_urls().iter().cloned())
            .collect();
        if listed.is_empty() {
            return;
        }
        let mut added = Vec::new();
        for url in &listed {
            let known = lock(&self.state).members.iter().any(|m| &m.url == url);
            if known {
                continue;
            }
            match endpoint(url, self.dial_timeout, self.tls.as_ref(), self.insecure) {
                Ok(endpoint) => added.push(Member {
                    url: url.clone(),
                    endpoint,
                    removed: false,
                    client: None,
                    down: None,
                }),
                Err(e) => tracing::warn!("etcd: member list: {e}"),
            }
        }
        let mut state = lock(&self.state);
        for member in added {
            tracing::info!("etcd: member {} added (from the member list)", member.url);
            state.members.push(member);
        }
        for member in &mut state.members {
            let named = listed.contains(&member.url);
            if member.removed == named {
                member.removed = !named;
                member.client = None;
                tracing::info!(
                    "etcd: member {} {} the member list",
                    member.url,
                    if named { "is back in" } else { "left" }
                );
            }
        }
        if state.members.get(state.current).is_some_and(|m| m.removed)
            && let Some(next) = state.members.iter().position(|m| !m.removed)
        {
            state.current = next;
        }
    }
}

/// The channel settings of the member at `url`.
fn endpoint(
    url: &str,
    dial_timeout: Duration,
    tls: Option<&etcd_client::TlsOptions>,
    insecure: bool,
) -> Result<Endpoint, Error> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid_config(format!("etcd: the node {url:?} is not a URL: {e}")))?;
    if url.starts_with("https://") {
        let config = tls.cloned().unwrap_or_default();
        endpoint = if insecure {
            endpoint.tls_config_with_verifier(config, Arc::new(AnyCertificate::new()))
        } else {
            endpoint.tls_config(config)
        }
        .map_err(|e| Error::invalid_config(format!("etcd: TLS for {url}: {e}")))?;
    }
    Ok(endpoint
        .connect_timeout(dial_timeout)
        // Keep-alive pings notice a silently dead member during a long watch.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(dial_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// The background recheck of members marked down, and the member list sync when it is on, until
/// the members are dropped.
async fn recheck(members: Weak<Members>) {
    let mut last_sync: Option<tokio::time::Instant> = None;
    loop {
        let Some(strong) = members.upgrade() else {
            return;
        };
        if let Some(every) = strong.auto_sync
            && last_sync.is_none_or(|at| at.elapsed() >= every)
        {
            last_sync = Some(tokio::time::Instant::now());
            strong.sync().await;
        }
        strong.recheck_once().await;
        drop(strong);
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
}
