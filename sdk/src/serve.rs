//! The plugin side of the go-plugin gRPC protocol: `serve()` turns a `Database` into a plugin
//! process any go-plugin host (ours or a Go one) can load.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::handshake::{self, Address};
use crate::proto::goplugin::{self, grpc_broker_server, grpc_controller_server, grpc_stdio_server};
use crate::proto::v1::{self, database_server};
use crate::values::{BatchWriter, Batcher, GetValuesResponse};
use crate::{Database, DatabaseInfo, Error, ErrorKind};

/// How long in-flight calls get to finish after `Shutdown` before the process exits anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);

/// What [`serve`] needs: the plugin's name (its log `@module` and `Info` name), a factory for the
/// database, and optionally a version and capability names for the `Info` call.
pub struct ServeOpts<D> {
    name: String,
    version: String,
    capabilities: Vec<String>,
    factory: Box<dyn FnOnce() -> D + Send>,
    visit: Option<VisitValues<D>>,
}

/// Calls its callback with every entry `get_values` would return, in ascending key order.
type VisitValues<D> = Arc<
    dyn Fn(&D, &[String], &mut dyn FnMut(&str, &str)) -> Result<(), crate::Error> + Send + Sync,
>;

impl<D: Database> ServeOpts<D> {
    /// A plugin called `name` serving the database `factory` builds (called once).
    pub fn new(name: impl Into<String>, factory: impl FnOnce() -> D + Send + 'static) -> Self {
        ServeOpts {
            name: name.into(),
            version: String::new(),
            capabilities: Vec::new(),
            factory: Box::new(factory),
            visit: None,
        }
    }

    /// Optional: answers reads by visiting the entries instead of building the map
    /// `get_values` returns. `visit(db, keys, f)` must call `f(key, value)` for exactly the
    /// entries `get_values(keys)` returns, in ascending key order. It runs on the async runtime
    /// or, for large answers, on a blocking thread: it may take the store's lock but must not
    /// wait for anything else.
    ///
    /// The streaming read then encodes entries straight from the store while confd decodes
    /// the previous batch: no copy of every key and value, no map to free, and the answer
    /// starts flowing before the last entry is found. `get_values` still serves the unary
    /// `GetValues` (Go hosts, older confd) and every in-process use.
    pub fn visit_values(
        mut self,
        visit: impl Fn(&D, &[String], &mut dyn FnMut(&str, &str)) -> Result<(), crate::Error>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.visit = Some(Arc::new(visit));
        self
    }

    /// The version reported by `Info` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Capability names reported by `Info`, such as `"watch"`.
    pub fn capabilities<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Runs the plugin until the host asks it to stop, then exits the process.
///
/// Checks the magic cookie (exit 1 with go-plugin's message when it is wrong), negotiates the
/// protocol version, listens on a Unix socket in a private directory (mode 0700), prints the
/// handshake line on stdout and serves until `Shutdown`. With `PLUGIN_CLIENT_CERT` set it serves
/// go-plugin's AutoMTLS; TCP on 127.0.0.1 only when the host asks for it
/// (`CONFD_PLUGIN_TRANSPORT=tcp`), and then only with AutoMTLS. When no socket can be made the
/// plugin exits 1 with the reason: it never falls back to another transport. Logs go to stderr
/// as hclog JSON; SIGINT is ignored because the host owns the plugin's lifetime.
pub fn serve<D: Database>(opts: ServeOpts<D>) -> ! {
    if std::env::var(handshake::MAGIC_COOKIE_KEY).as_deref() != Ok(handshake::MAGIC_COOKIE_VALUE) {
        eprint!("{}", handshake::COOKIE_MESSAGE);
        std::process::exit(1);
    }
    crate::hclog::init(&opts.name);
    let listen = match ListenOpts::from_env() {
        Ok(listen) => listen,
        Err(err) => {
            tracing::error!("plugin {}: {err}", opts.name);
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(serve_listening(opts, listen, HandshakeOut::Stdout));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            tracing::error!("plugin failed: {err}");
            std::process::exit(1);
        }
    }
}

/// How the plugin listens, as the host asked in the environment.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct ListenOpts {
    /// TCP on 127.0.0.1 instead of a Unix socket (`CONFD_PLUGIN_TRANSPORT=tcp`).
    pub tcp: bool,
    /// The host's AutoMTLS certificate (DER, from `PLUGIN_CLIENT_CERT`): serve TLS and accept
    /// only this client.
    pub client_cert: Option<Vec<u8>>,
    /// Where the private socket directory goes (`PLUGIN_UNIX_SOCKET_DIR`); `TMPDIR` or /tmp
    /// when unset.
    pub socket_dir: Option<PathBuf>,
    /// `PLUGIN_MIN_PORT`, `PLUGIN_MAX_PORT`.
    pub min_port: Option<u16>,
    pub max_port: Option<u16>,
}

/// The variable through which a confd host asks for TCP (go-plugin has none: its plugins use TCP
/// only on Windows). The host's own setting has the same name.
pub const TRANSPORT_VAR: &str = "CONFD_PLUGIN_TRANSPORT";

impl ListenOpts {
    /// Reads the go-plugin variables and [`TRANSPORT_VAR`]. TCP without `PLUGIN_CLIENT_CERT`
    /// is refused: a plugin never serves plaintext TCP, which any local user could read.
    pub fn from_env() -> Result<ListenOpts, ServeError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tcp = match var(TRANSPORT_VAR).as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("unix") => false,
            Some(v) if v.eq_ignore_ascii_case("tcp") => true,
            Some(other) => {
                return Err(ServeError::Listen(format!(
                    "{TRANSPORT_VAR}={other:?} is neither unix nor tcp"
                )));
            }
        };
        let client_cert = match var("PLUGIN_CLIENT_CERT") {
            Some(pem) => Some(
                crate::tls::certificate_from_pem(&pem)
                    .map_err(|e| ServeError::Listen(e.to_string()))?,
            ),
            None => None,
        };
        if tcp && client_cert.is_none() {
            return Err(ServeError::Listen(format!(
                "the host asked for TCP ({TRANSPORT_VAR}=tcp) without AutoMTLS (PLUGIN_CLIENT_CERT \
                 is not set); a confd plugin serves TCP only with AutoMTLS"
            )));
        }
        Ok(ListenOpts {
            tcp,
            client_cert,
            socket_dir: std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            min_port: port_from_env("PLUGIN_MIN_PORT"),
            max_port: port_from_env("PLUGIN_MAX_PORT"),
        })
    }
}

/// Where the handshake line goes: stdout in a real plugin, a channel in in-process tests.
/// With `Stdout` the server also takes over the process's SIGINT and SIGTERM, as a plugin
/// process must; with `Channel` it leaves them alone.
#[doc(hidden)]
pub enum HandshakeOut {
    Stdout,
    Channel(tokio::sync::oneshot::Sender<String>),
}

/// Why serving failed before or while running.
#[derive(Debug, thiserror::Error)]
#[doc(hidden)]
pub enum ServeError {
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot write the handshake line to stdout: {0}")]
    Handshake(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Everything `serve` does after the cookie check, in the caller's runtime, returning once the
/// host called `Shutdown` (or on SIGTERM). The socket directory is removed before returning.
#[doc(hidden)]
pub async fn serve_until_shutdown<D: Database>(
    opts: ServeOpts<D>,
    out: HandshakeOut,
) -> Result<(), ServeError> {
    serve_listening(opts, ListenOpts::from_env()?, out).await
}

/// [`serve_until_shutdown`] with the listening options given instead of read from the
/// environment.
#[doc(hidden)]
pub async fn serve_listening<D: Database>(
    opts: ServeOpts<D>,
    listen: ListenOpts,
    out: HandshakeOut,
) -> Result<(), ServeError> {
    let version = handshake::negotiate(
        std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref(),
        handshake::APP_PROTOCOL_VERSIONS,
    );
    // A fresh identity per process: the certificate lives as long as this plugin.
    let tls = match &listen.client_cert {
        Some(client) => {
            let identity = crate::tls::Identity::generate()?;
            let config = crate::tls::server_config(&identity, client.clone())?;
            Some((
                identity.handshake_field(),
                tokio_rustls::TlsAcceptor::from(config),
            ))
        }
        None => None,
    };
    let listener = Listener::open(&listen)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    // A plugin process owns its signals. A server inside a test binary does not: taking SIGINT
    // there would leave `cargo test` unstoppable with Ctrl-C for the rest of the run.
    if matches!(out, HandshakeOut::Stdout) {
        ignore_sigint();
        watch_sigterm(shutdown_tx.clone());
    }

    let db = Arc::new((opts.factory)());
    let fallback_info = DatabaseInfo {
        name: opts.name.clone(),
        version: opts.version.clone(),
        capabilities: opts.capabilities.clone(),
        member: String::new(),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;

    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            database_server::DatabaseServer::new(DatabaseService {
                db,
                fallback_info,
                visit: opts.visit,
                last_visit_large: Arc::default(),
                shutdown: shutdown_rx.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(grpc_controller_server::GrpcControllerServer::new(
            Controller {
                shutdown: shutdown_tx.clone(),
            },
        ))
        .add_service(grpc_stdio_server::GrpcStdioServer::new(Housekeeping {
            shutdown: shutdown_rx.clone(),
        }))
        .add_service(grpc_broker_server::GrpcBrokerServer::new(Housekeeping {
            shutdown: shutdown_rx.clone(),
        }));

    let cert_field = tls.as_ref().map(|(field, _)| field.as_str()).unwrap_or("");
    let line = handshake::format(version, &listener.address, cert_field);
    match out {
        HandshakeOut::Stdout => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(ServeError::Handshake)?;
        }
        HandshakeOut::Channel(tx) => {
            let _ = tx.send(line);
        }
    }
    tracing::debug!(address = %listener.address, version, tls = !cert_field.is_empty(), "plugin listening");

    let mut stop = shutdown_rx.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = async {
        match (listener.incoming, tls) {
            (Incoming::Unix(l), None) => router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(l),
                    stopped,
                )
                .await
                .map_err(ServeError::from),
            (Incoming::Unix(l), Some((_, acceptor))) => router
                .serve_with_incoming_shutdown(
                    tls_incoming(
                        tokio_stream::wrappers::UnixListenerStream::new(l),
                        acceptor,
                        |s| TlsIo::Unix(Box::new(s)),
                    ),
                    stopped,
                )
                .await
                .map_err(ServeError::from),
            (Incoming::Tcp(l), Some((_, acceptor))) => router
                .serve_with_incoming_shutdown(
                    tls_incoming(
                        tokio_stream::wrappers::TcpListenerStream::new(l),
                        acceptor,
                        |s| TlsIo::Tcp(Box::new(s)),
                    ),
                    stopped,
                )
                .await
                .map_err(ServeError::from),
            // `ListenOpts` never asks for TCP without a client certificate.
            (Incoming::Tcp(_), None) => {
                Err(ServeError::Listen("refusing to serve plaintext TCP".into()))
            }
        }
    };
    // After Shutdown the server drains gracefully; a peer that keeps a stream open must not keep
    // us alive, so the drain is bounded (go-plugin itself stops hard).
    let mut stop = shutdown_rx.clone();
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
        } => Ok(()),
    };
    drop(listener.dir);
    tracing::debug!("plugin stopped");
    result
}

/// Large values (a whole store in one GetValues) must pass; go-plugin hosts allow 2 GiB.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Below this many entries `GetValuesStream` answers in one message.
const STREAM_MIN_ENTRIES: usize = 512;
/// Encoded size of one `GetValuesStream` batch.
const STREAM_BATCH_BYTES: usize = 64 * 1024;
/// Batches encoded ahead of the transport.
const STREAM_QUEUE: usize = 4;

fn ignore_sigint() {
    // Registering a handler replaces the default "terminate" action for the whole process; the
    // host owns our lifetime and a terminal Ctrl-C reaches the whole process group.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(mut sigint) => {
            tokio::spawn(async move {
                while sigint.recv().await.is_some() {
                    tracing::debug!("ignoring SIGINT; the host decides when this plugin stops");
                }
            });
        }
        Err(err) => tracing::warn!(error = %err, "cannot ignore SIGINT"),
    }
}

fn watch_sigterm(shutdown: Arc<watch::Sender<bool>>) {
    // SIGTERM stops the plugin the same clean way as Shutdown, so the socket is removed.
    if let Ok(mut sigterm) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            if sigterm.recv().await.is_some() {
                tracing::debug!("SIGTERM: shutting down");
                let _ = shutdown.send(true);
            }
        });
    }
}

enum Incoming {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

struct Listener {
    address: Address,
    incoming: Incoming,
    /// The private socket directory, removed (with the socket) when dropped.
    dir: Option<tempfile::TempDir>,
}

impl Listener {
    /// A Unix socket, or TCP when asked for; never one in place of the other.
    fn open(listen: &ListenOpts) -> Result<Listener, ServeError> {
        if listen.tcp {
            open_tcp(listen.min_port, listen.max_port)
        } else {
            open_unix(listen.socket_dir.as_deref()).map_err(|problems| {
                ServeError::Listen(format!(
                    "cannot make a Unix socket ({problems}); a confd plugin does not fall back \
                     to TCP (a host asks for TCP with {TRANSPORT_VAR}=tcp and AutoMTLS)"
                ))
            })
        }
    }
}

/// Where the private socket directory may go: `PLUGIN_UNIX_SOCKET_DIR` only when the host set
/// it, otherwise `TMPDIR` (when set) and /tmp.
fn socket_bases(socket_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = socket_dir {
        return vec![dir.to_path_buf()];
    }
    let mut bases = Vec::new();
    if let Some(dir) = std::env::var_os("TMPDIR").filter(|d| !d.is_empty()) {
        bases.push(PathBuf::from(dir));
    }
    bases.push(PathBuf::from("/tmp"));
    bases
}

fn open_unix(socket_dir: Option<&Path>) -> Result<Listener, String> {
    let mut problems = Vec::new();
    for base in socket_bases(socket_dir) {
        match open_unix_in(&base) {
            Ok(listener) => return Ok(listener),
            Err(err) => problems.push(format!("{}: {err}", base.display())),
        }
    }
    Err(problems.join("; "))
}

fn open_unix_in(base: &Path) -> Result<Listener, String> {
    use std::os::unix::fs::PermissionsExt as _;
    // Mode 0700: only our user (the host's) can reach the socket.
    let dir = tempfile::Builder::new()
        .prefix("plugin")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
        .map_err(|e| e.to_string())?;
    let path = dir.path().join("plugin.sock");
    // sun_path holds 108 bytes; stay well below so every platform accepts it.
    if path.as_os_str().len() >= 100 {
        return Err(format!("socket path {} is too long", path.display()));
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| e.to_string())?;
    Ok(Listener {
        address: Address::Unix(path),
        incoming: Incoming::Unix(listener),
        dir: Some(dir),
    })
}

fn port_from_env(name: &str) -> Option<u16> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn open_tcp(min_port: Option<u16>, max_port: Option<u16>) -> Result<Listener, ServeError> {
    let (min, max) = match (min_port, max_port) {
        (None, None) => (0, 0),
        (min, max) => (min.unwrap_or(0), max.unwrap_or(u16::MAX)),
    };
    if min > max {
        return Err(ServeError::Listen(format!(
            "PLUGIN_MIN_PORT {min} is above PLUGIN_MAX_PORT {max}"
        )));
    }
    for port in min..=max {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(std_listener) = std::net::TcpListener::bind(addr) else {
            continue;
        };
        let bound = std_listener
            .local_addr()
            .and_then(|a| std_listener.set_nonblocking(true).map(|()| a))
            .map_err(|e| ServeError::Listen(e.to_string()))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| ServeError::Listen(e.to_string()))?;
        return Ok(Listener {
            address: Address::Tcp(bound),
            incoming: Incoming::Tcp(listener),
            dir: None,
        });
    }
    Err(ServeError::Listen(format!(
        "no free TCP port on 127.0.0.1 between {min} and {max}"
    )))
}

/// How long a peer gets to finish the TLS handshake before its connection is dropped.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The accepted connections, each after a successful AutoMTLS handshake. Handshakes run in their
/// own tasks so that a peer that stalls holds up nobody; one that fails (no certificate, another
/// certificate) is logged and dropped.
fn tls_incoming<S, L>(
    mut listener: L,
    acceptor: tokio_rustls::TlsAcceptor,
    wrap: fn(tokio_rustls::server::TlsStream<S>) -> TlsIo,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsIo>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    L: Stream<Item = std::io::Result<S>> + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                conn = listener.next() => conn,
                () = tx.closed() => break,
            };
            let conn = match conn {
                Some(Ok(conn)) => conn,
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "accept failed");
                    continue;
                }
                None => break,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(wrap(stream))).await;
                    }
                    Ok(Err(err)) => tracing::warn!(
                        error = %err,
                        "refused a connection without the host's certificate (AutoMTLS)"
                    ),
                    Err(_) => {
                        tracing::warn!("refused a connection that did not finish the TLS handshake")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A connection that passed the AutoMTLS handshake, as one type for the gRPC server.
enum TlsIo {
    Unix(Box<tokio_rustls::server::TlsStream<tokio::net::UnixStream>>),
    Tcp(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

macro_rules! each_tls_io {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            TlsIo::Unix($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            TlsIo::Tcp($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_tls_io!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_tls_io!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_tls_io!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_tls_io!(self, s => s.poll_shutdown(cx))
    }
}

/// Waits until the plugin is told to stop.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `confd.plugin.v1.Database` service over a user's `Database`.
struct DatabaseService<D> {
    db: Arc<D>,
    fallback_info: DatabaseInfo,
    visit: Option<VisitValues<D>>,
    /// Whether the visitor's last answer filled a batch (see `visit_in_batches`).
    last_visit_large: Arc<AtomicBool>,
    shutdown: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl<D: Database> database_server::Database for DatabaseService<D> {
    async fn configure(
        &self,
        request: Request<v1::ConfigureRequest>,
    ) -> Result<Response<v1::ConfigureResponse>, Status> {
        self.db.configure(request.into_inner().config).await?;
        Ok(Response::new(v1::ConfigureResponse {}))
    }

    async fn get_values(
        &self,
        request: Request<v1::GetValuesRequest>,
    ) -> Result<Response<GetValuesResponse>, Status> {
        let values = self.db.get_values(&request.into_inner().keys).await?;
        Ok(Response::new(GetValuesResponse::from_map(values)))
    }

    type GetValuesStreamStream = BoxStream<GetValuesResponse>;

    async fn get_values_stream(
        &self,
        request: Request<v1::GetValuesRequest>,
    ) -> Result<Response<Self::GetValuesStreamStream>, Status> {
        let keys = request.into_inner().keys;
        if let Some(visit) = &self.visit {
            return Ok(Response::new(self.visit_in_batches(visit.clone(), keys)));
        }
        let values = self.db.get_values(&keys).await?;
        let stream: Self::GetValuesStreamStream = if values.len() < STREAM_MIN_ENTRIES {
            // Too small to gain from overlap: one message, no task.
            Box::pin(futures_util::stream::iter([Ok(
                GetValuesResponse::from_map(values),
            )]))
        } else {
            // The batches are encoded on their own task, so the next one is being encoded while
            // the transport sends the last and the host decodes it. A full channel (slow host)
            // pauses encoding; a cancelled call closes it and ends the task.
            let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
            tokio::spawn(Batcher::new(STREAM_BATCH_BYTES).run(values, move |batch| {
                let tx = tx.clone();
                async move { tx.send(Ok(batch)).await.is_ok() }
            }));
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
        };
        Ok(Response::new(stream))
    }

    type WatchPrefixStream = BoxStream<v1::WatchPrefixResponse>;

    async fn watch_prefix(
        &self,
        request: Request<v1::WatchPrefixRequest>,
    ) -> Result<Response<Self::WatchPrefixStream>, Status> {
        let req = request.into_inner();
        let db = self.db.clone();
        let shutdown = self.shutdown.clone();
        // The watch runs inside the response stream, so when the host cancels the call and tonic
        // drops the stream, the database's future is dropped with it.
        let once = futures_util::stream::once(async move {
            let watched = async {
                let index = db
                    .watch_prefix(&req.prefix, &req.keys, req.wait_index)
                    .await?;
                // The host reads the keys next; reading them here saves it a round trip. A
                // failed read is left for the host's own GetValues to report.
                let values = if req.want_values && !req.keys.is_empty() {
                    db.get_values(&req.keys).await.ok()
                } else {
                    None
                };
                Ok::<_, Error>(v1::WatchPrefixResponse {
                    index,
                    has_values: values.is_some(),
                    values: values.unwrap_or_default(),
                })
            };
            tokio::select! {
                r = watched => r.map_err(Status::from),
                () = stopped(shutdown) => Err(Status::unavailable("plugin is shutting down")),
            }
        });
        Ok(Response::new(Box::pin(once)))
    }

    async fn info(
        &self,
        _request: Request<v1::InfoRequest>,
    ) -> Result<Response<v1::InfoResponse>, Status> {
        let info = match self.db.info().await {
            Ok(info) => info,
            Err(err) if err.kind() == ErrorKind::Unimplemented => self.fallback_info.clone(),
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(v1::InfoResponse {
            name: info.name,
            version: info.version,
            capabilities: info.capabilities,
            member: info.member,
        }))
    }
}

impl<D: Database> DatabaseService<D> {
    /// `GetValuesStream` through the plugin's visitor: batches are encoded straight from the
    /// store. A large answer is visited on a blocking thread, so the runtime's workers send
    /// each batch (and serve other calls) while the next is encoded: on a worker, the visit
    /// held that worker until its end and the first batch left only then. Its queue is
    /// unbounded because the visitor cannot wait, and at worst holds the encoded answer, as a
    /// unary answer would.
    /// A small one is visited right here, as a handoff would cost more than it overlaps. Which
    /// one comes is guessed from the previous answer; a wrong guess only costs the overlap.
    /// An error from the visitor ends the stream with its status, after the batches sent.
    fn visit_in_batches(
        &self,
        visit: VisitValues<D>,
        keys: Vec<String>,
    ) -> BoxStream<GetValuesResponse> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let db = self.db.clone();
        let last_was_large = self.last_visit_large.clone();
        let run = move |own_thread: bool| {
            let mut batches = BatchWriter::new(STREAM_BATCH_BYTES);
            let mut open = true;
            let mut large = false;
            let result = visit(&db, &keys, &mut |key, value| {
                if open && let Some(batch) = batches.push(key, value) {
                    large = true;
                    open = tx.send(Ok(batch)).is_ok();
                    if own_thread {
                        // The send woke a worker to pass the batch on; on a machine with few
                        // cores the kernel often queues it behind this thread, and the
                        // batch would wait for the end of the visit.
                        std::thread::yield_now();
                    }
                }
            });
            last_was_large.store(large, Ordering::Relaxed);
            if !open {
                return;
            }
            let last = match result {
                Ok(()) => batches.finish().map(Ok),
                Err(err) => Some(Err(Status::from(err))),
            };
            if let Some(last) = last {
                let _ = tx.send(last);
            }
        };
        if self.last_visit_large.load(Ordering::Relaxed) {
            tokio::task::spawn_blocking(move || run(true));
        } else {
            run(false);
        }
        Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }
}

/// `plugin.GRPCController`: Shutdown replies, then the server stops.
struct Controller {
    shutdown: Arc<watch::Sender<bool>>,
}

#[tonic::async_trait]
impl grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _request: Request<goplugin::Empty>,
    ) -> Result<Response<goplugin::Empty>, Status> {
        tracing::debug!("host asked the plugin to shut down");
        let _ = self.shutdown.send(true);
        Ok(Response::new(goplugin::Empty {}))
    }
}

/// `plugin.GRPCStdio` and `plugin.GRPCBroker`: present so Go hosts are content, otherwise idle.
struct Housekeeping {
    shutdown: watch::Receiver<bool>,
}

fn silent_until<T: Send + 'static>(
    done: impl std::future::Future<Output = ()> + Send + 'static,
) -> BoxStream<T> {
    Box::pin(futures_util::stream::once(done).filter_map(|()| async { None }))
}

#[tonic::async_trait]
impl grpc_stdio_server::GrpcStdio for Housekeeping {
    type StreamStdioStream = BoxStream<goplugin::StdioData>;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        // Our plugins log to the real stderr, so there is never anything to send; the stream
        // stays open until the host cancels it or we stop (Go hosts 1.1-1.2 busy-loop on errors).
        Ok(Response::new(silent_until(stopped(self.shutdown.clone()))))
    }
}

#[tonic::async_trait]
impl grpc_broker_server::GrpcBroker for Housekeeping {
    type StartStreamStream = BoxStream<goplugin::ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<goplugin::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let shutdown = self.shutdown.clone();
        // No brokered connections are offered: read (and drop) until the host closes its side.
        let drain = async move {
            tokio::select! {
                () = async { while let Ok(Some(_)) = inbound.message().await {} } => {}
                () = stopped(shutdown) => {}
            }
        };
        Ok(Response::new(silent_until(drain)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::proto::goplugin::grpc_controller_client::GrpcControllerClient;
    use crate::proto::v1::database_client::DatabaseClient;
    use crate::{Config, Error};

    /// A database whose watch never fires and reports when its future is dropped.
    #[derive(Default)]
    struct Probe {
        watching: AtomicUsize,
        dropped: Arc<AtomicBool>,
    }

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl Database for Arc<Probe> {
        async fn configure(&self, _config: Config) -> Result<(), Error> {
            Ok(())
        }
        async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
            if keys.is_empty() {
                return Err(Error::invalid_argument("no keys"));
            }
            Ok(keys.iter().map(|k| (k.clone(), format!("v{k}"))).collect())
        }
        async fn watch_prefix(&self, _p: &str, _k: &[String], _i: u64) -> Result<u64, Error> {
            let _guard = SetOnDrop(self.dropped.clone());
            self.watching.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    /// A database whose watch answers at once with the next index.
    struct Ticker;

    #[async_trait::async_trait]
    impl Database for Ticker {
        async fn configure(&self, _config: Config) -> Result<(), Error> {
            Ok(())
        }
        async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
            if keys.iter().any(|k| k == "/fail") {
                return Err(Error::unavailable("store went away"));
            }
            Ok(keys.iter().map(|k| (k.clone(), format!("v{k}"))).collect())
        }
        async fn watch_prefix(&self, _p: &str, _k: &[String], index: u64) -> Result<u64, Error> {
            Ok(index + 1)
        }
    }

    #[tokio::test]
    async fn a_watch_answer_brings_the_values_only_when_asked_and_readable() {
        let opts = ServeOpts::new("ticker", || Ticker);
        let (server, channel) = start(opts).await;
        let mut db = DatabaseClient::new(channel);
        let mut watch = async |keys: &[&str], want_values: bool| {
            let request = v1::WatchPrefixRequest {
                prefix: "/".into(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
                wait_index: 4,
                want_values,
            };
            let mut stream = db.watch_prefix(request).await.expect("watch").into_inner();
            stream.message().await.expect("answer").expect("one answer")
        };
        let asked = watch(&["/a", "/b"], true).await;
        assert_eq!(asked.index, 5);
        assert!(asked.has_values);
        let expected: BTreeMap<String, String> = [("/a", "v/a"), ("/b", "v/b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(asked.values, expected);
        // a Go host does not ask: nothing extra is read or sent
        let plain = watch(&["/a"], false).await;
        assert!(!plain.has_values && plain.values.is_empty());
        // a failed read leaves the values out; the host's own GetValues reports it
        let failed = watch(&["/a", "/fail"], true).await;
        assert_eq!(failed.index, 5);
        assert!(!failed.has_values && failed.values.is_empty());
        server.abort();
    }

    /// Serves `opts` in this process and connects to it, as a host would after the handshake.
    async fn start<D: Database>(
        opts: ServeOpts<D>,
    ) -> (
        tokio::task::JoinHandle<Result<(), ServeError>>,
        tonic::transport::Channel,
    ) {
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve_until_shutdown(opts, HandshakeOut::Channel(line_tx)));
        let hs = handshake::parse(&line_rx.await.expect("line"), &[1]).expect("handshake");
        let channel = crate::remote::connect_channel(&hs.address, None, Duration::from_secs(5))
            .await
            .expect("connect");
        (server, channel)
    }

    /// TCP as a host asks for it: AutoMTLS with the host's certificate pinned.
    #[tokio::test]
    async fn over_tcp_only_the_host_with_its_certificate_reads_values() {
        let host = crate::tls::Identity::generate().expect("host identity");
        let listen = ListenOpts {
            tcp: true,
            client_cert: Some(host.certificate_der().to_vec()),
            ..ListenOpts::default()
        };
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default()));
        let server = tokio::spawn(serve_listening(
            opts,
            listen,
            HandshakeOut::Channel(line_tx),
        ));
        let hs = handshake::parse(&line_rx.await.expect("line"), &[1]).expect("handshake");
        let Address::Tcp(addr) = hs.address else {
            panic!("asked for TCP, got {}", hs.address);
        };
        assert!(addr.ip().is_loopback());
        let plugin_cert = hs.server_cert.clone().expect("a certificate in field 6");
        let timeout = Duration::from_secs(5);
        let read = async |channel: tonic::transport::Channel| {
            DatabaseClient::new(channel)
                .get_values(v1::GetValuesRequest {
                    keys: vec!["/a".into()],
                })
                .await
        };

        // plaintext HTTP/2, as curl or a gRPC client without TLS would try
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(timeout)
            .connect()
            .await
            .expect("TCP itself accepts");
        assert!(read(plain).await.is_err(), "plaintext must not be answered");
        // our own client refuses to even try plaintext TCP
        assert!(
            crate::remote::connect_channel(&hs.address, None, timeout)
                .await
                .is_err()
        );
        // TLS with a certificate the plugin was not given
        let stranger = crate::tls::Identity::generate().expect("stranger");
        let tls = crate::tls::ClientTls::new(&stranger, &plugin_cert).expect("client tls");
        let refused = match crate::remote::connect_channel(&hs.address, Some(&tls), timeout).await {
            Err(_) => true,
            Ok(channel) => read(channel).await.is_err(),
        };
        assert!(
            refused,
            "a client with another certificate must not read values"
        );
        // the right client, pinning a certificate the plugin does not hold
        let tls = crate::tls::ClientTls::new(&host, stranger.certificate_der()).expect("tls");
        assert!(
            crate::remote::connect_channel(&hs.address, Some(&tls), timeout)
                .await
                .is_err(),
            "the host must refuse a plugin certificate other than the announced one"
        );

        // the host itself
        let tls = crate::tls::ClientTls::new(&host, &plugin_cert).expect("client tls");
        let channel = crate::remote::connect_channel(&hs.address, Some(&tls), timeout)
            .await
            .expect("the host connects");
        let values = read(channel.clone())
            .await
            .expect("the host reads")
            .into_inner()
            .into_entries();
        assert_eq!(values, [("/a".to_string(), "v/a".to_string())]);
        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown replies");
        server.await.expect("join").expect("clean stop");
    }

    #[tokio::test]
    async fn no_unix_socket_is_an_error_never_tcp() {
        let listen = ListenOpts {
            socket_dir: Some("/nonexistent/confd-sockets".into()),
            ..ListenOpts::default()
        };
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default()));
        let err = serve_listening(opts, listen, HandshakeOut::Channel(line_tx))
            .await
            .expect_err("no socket, no plugin");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/confd-sockets")
                && message.contains("does not fall back to TCP"),
            "{message}"
        );
        assert!(line_rx.await.is_err(), "no handshake line was printed");
    }

    #[tokio::test]
    async fn the_socket_directory_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().expect("tempdir");
        let listen = ListenOpts {
            socket_dir: Some(base.path().to_path_buf()),
            ..ListenOpts::default()
        };
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default()));
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve_listening(
            opts,
            listen,
            HandshakeOut::Channel(line_tx),
        ));
        let hs = handshake::parse(&line_rx.await.expect("line"), &[1]).expect("handshake");
        let Address::Unix(socket) = &hs.address else {
            panic!("expected a unix socket");
        };
        let dir = socket.parent().expect("directory");
        assert_eq!(dir.parent(), Some(base.path()));
        let mode = std::fs::metadata(dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        assert_eq!(hs.server_cert, None);
        let channel = crate::remote::connect_channel(&hs.address, None, Duration::from_secs(5))
            .await
            .expect("connect");
        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown");
        server.await.expect("join").expect("clean stop");
        assert!(!dir.exists(), "removed on exit");
    }

    async fn wait_until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn get_values_stream_batches_large_answers_and_reports_errors_up_front() {
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default()));
        let (server, channel) = start(opts).await;
        let mut db = DatabaseClient::new(channel.clone());

        for count in [1, STREAM_MIN_ENTRIES - 1, STREAM_MIN_ENTRIES, 20_000] {
            let keys: Vec<String> = (0..count).map(|i| format!("/key/{i:06}")).collect();
            let mut stream = db
                .get_values_stream(v1::GetValuesRequest { keys: keys.clone() })
                .await
                .expect("stream starts")
                .into_inner();
            let mut batches = 0;
            let mut got = Vec::new();
            while let Some(batch) = stream.message().await.expect("batch") {
                batches += 1;
                got.extend(batch.into_entries());
            }
            let want: Vec<(String, String)> =
                keys.iter().map(|k| (k.clone(), format!("v{k}"))).collect();
            assert_eq!(got, want, "{count} keys");
            if count < STREAM_MIN_ENTRIES {
                assert_eq!(batches, 1, "{count} keys in one message");
            } else {
                // every batch but the last is full, overshooting by less than one entry
                let size = prost::Message::encoded_len(&GetValuesResponse::from_map(
                    want.into_iter().collect(),
                ));
                assert!(
                    batches >= size / (STREAM_BATCH_BYTES + 64)
                        && batches <= size.div_ceil(STREAM_BATCH_BYTES),
                    "{count} keys, {size} bytes in {batches} batches"
                );
                if count == 20_000 {
                    assert!(batches > 4, "{batches} batches");
                }
            }
        }

        let status = db
            .get_values_stream(v1::GetValuesRequest { keys: vec![] })
            .await
            .expect_err("the database's error is the call's status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown replies");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("stops promptly")
            .expect("join")
            .expect("clean stop");
    }

    #[tokio::test]
    async fn a_visitor_streams_batches_and_its_error_ends_the_stream() {
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default())).visit_values(
            |_probe, keys, visit| {
                for key in keys.iter().filter(|k| *k != "/fail") {
                    visit(key, "visited");
                }
                if keys.iter().any(|k| k == "/fail") {
                    return Err(Error::unavailable("store went away"));
                }
                Ok(())
            },
        );
        let (server, channel) = start(opts).await;
        let mut db = DatabaseClient::new(channel.clone());
        let mut keys: Vec<String> = (0..20_000).map(|i| format!("/key/{i:06}")).collect();

        for fail in [false, true] {
            if fail {
                keys.push("/fail".into());
            }
            let mut stream = db
                .get_values_stream(v1::GetValuesRequest { keys: keys.clone() })
                .await
                .expect("stream starts")
                .into_inner();
            let mut got = Vec::new();
            let mut batches = 0;
            let end = loop {
                match stream.message().await {
                    Ok(Some(batch)) => {
                        batches += 1;
                        got.extend(batch.into_entries());
                    }
                    other => break other,
                }
            };
            assert!(batches > 4, "{batches} batches");
            if fail {
                let status = end.expect_err("the visitor's error ends the stream");
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!(status.message().contains("store went away"), "{status:?}");
            } else {
                assert!(matches!(end, Ok(None)), "{end:?}");
                let want: Vec<(String, String)> =
                    keys.iter().map(|k| (k.clone(), "visited".into())).collect();
                assert_eq!(got, want);
            }
        }

        // the unary call still goes through get_values
        let values = db
            .get_values(v1::GetValuesRequest {
                keys: vec!["/a".into()],
            })
            .await
            .expect("get")
            .into_inner()
            .into_entries();
        assert_eq!(values, [("/a".to_string(), "v/a".to_string())]);

        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown replies");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("stops promptly")
            .expect("join")
            .expect("clean stop");
    }

    /// The test runtime has one thread: were a large visit run on it, the first batch could
    /// only leave once the visit ended, and this visitor ends only after the host has that
    /// first batch (or after 20 s, when the test has failed already).
    #[tokio::test]
    async fn the_first_batch_of_a_large_visit_leaves_before_the_visit_ends() {
        let (first_seen, first_seen_rx) = std::sync::mpsc::channel::<()>();
        let first_seen_rx = std::sync::Mutex::new(first_seen_rx);
        let pause = Arc::new(AtomicBool::new(false));
        let opts = ServeOpts::new("probe", || Arc::new(Probe::default())).visit_values({
            let pause = pause.clone();
            move |_probe, keys, visit| {
                let (head, tail) = keys.split_at(keys.len() / 2);
                head.iter().for_each(|key| visit(key, "visited"));
                if pause.load(Ordering::SeqCst) {
                    let waited = first_seen_rx
                        .lock()
                        .map(|rx| rx.recv_timeout(Duration::from_secs(20)));
                    assert!(matches!(waited, Ok(Ok(()))), "the host never saw a batch");
                }
                tail.iter().for_each(|key| visit(key, "visited"));
                Ok(())
            }
        });
        let (server, channel) = start(opts).await;
        let mut db = DatabaseClient::new(channel.clone());
        let keys: Vec<String> = (0..20_000).map(|i| format!("/key/{i:06}")).collect();
        // The first large answer teaches the plugin that answers are large here.
        for round in 0..2 {
            pause.store(round == 1, Ordering::SeqCst);
            let mut stream = db
                .get_values_stream(v1::GetValuesRequest { keys: keys.clone() })
                .await
                .expect("stream starts")
                .into_inner();
            let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the first batch arrives while the visit goes on")
                .expect("batch")
                .expect("not the end");
            if round == 1 {
                let _ = first_seen.send(());
            }
            let mut got = first.into_entries().len();
            while let Some(batch) = stream.message().await.expect("batch") {
                got += batch.into_entries().len();
            }
            assert_eq!(got, keys.len());
        }
        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown replies");
        server.await.expect("join").expect("clean stop");
    }

    #[tokio::test]
    async fn cancelled_watch_drops_the_database_future_and_shutdown_stops_serving() {
        let probe = Arc::new(Probe::default());
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let opts = ServeOpts::new("probe", {
            let probe = probe.clone();
            move || probe
        });
        let server = tokio::spawn(serve_until_shutdown(opts, HandshakeOut::Channel(line_tx)));
        let line = line_rx.await.expect("handshake line");
        let hs = handshake::parse(&line, &[1]).expect("valid handshake");
        let Address::Unix(socket) = &hs.address else {
            panic!("expected a unix socket: {line}");
        };
        assert!(socket.exists());
        let channel = crate::remote::connect_channel(&hs.address, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let mut db = DatabaseClient::new(channel.clone());

        let values = db
            .get_values(v1::GetValuesRequest {
                keys: vec!["/a".into()],
            })
            .await
            .expect("get")
            .into_inner()
            .into_entries();
        assert_eq!(values, [("/a".to_string(), "v/a".to_string())]);
        let status = db
            .get_values(v1::GetValuesRequest { keys: vec![] })
            .await
            .expect_err("error travels");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let watch = db
            .watch_prefix(v1::WatchPrefixRequest::default())
            .await
            .expect("watch starts")
            .into_inner();
        let watch = tokio::spawn(async move {
            let mut watch = watch;
            watch.message().await
        });
        wait_until("the watch runs", || {
            probe.watching.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(!probe.dropped.load(Ordering::SeqCst));
        watch.abort();
        wait_until("the watch future is dropped", || {
            probe.dropped.load(Ordering::SeqCst)
        })
        .await;

        let info = db
            .info(v1::InfoRequest {})
            .await
            .expect("info")
            .into_inner();
        assert_eq!(info.name, "probe", "falls back to the serve options");

        GrpcControllerClient::new(channel)
            .shutdown(goplugin::Empty {})
            .await
            .expect("shutdown replies");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("stops promptly")
            .expect("join")
            .expect("clean stop");
        assert!(!socket.exists(), "socket removed");
    }
}
