//! The host side of the plugin protocol once a plugin listens: a connection to its gRPC
//! services, seen as an ordinary [`Database`]. Starting, watching and restarting the process is
//! the host's job (the `confd-supervisor` crate); this half lives here because the protobuf types
//! stay private to this crate, and both halves of the wire contract, [`crate::serve`] and this
//! client, are built from the same generated code and tested against each other in one place.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Response, Status};

use crate::handshake::Address;
use crate::proto::goplugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::goplugin::grpc_stdio_client::GrpcStdioClient;
use crate::proto::goplugin::{self, stdio_data};
use crate::proto::v1::{self, database_client::DatabaseClient};
use crate::tls::ClientTls;
use crate::{Config, Database, DatabaseInfo, Error, ErrorKind};

/// Values as large as a whole store must fit in one message; Go hosts allow 2 GiB.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// The largest HTTP/2 frame a plugin may send us (HTTP/2's default is 16 KiB). A 64 KiB
/// `GetValuesStream` batch from an SDK plugin then comes in one DATA frame: the task reading
/// the answer wakes once per batch instead of once per 16 KiB. Go plugins keep their 16 KiB.
const MAX_FRAME: u32 = 1 << 20;

/// Why a listening plugin could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The advertised address did not accept a gRPC connection.
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    /// The health check (`grpc.health.v1.Health/Check` for service `plugin`) failed.
    #[error("health check failed: {message}")]
    Health { message: String },
    /// No healthy connection within the time given.
    #[error("no healthy connection within {0:?}")]
    Timeout(Duration),
}

/// Which of the plugin's output streams a forwarded line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioChannel {
    Stdout,
    Stderr,
}

/// A listening plugin, reached over gRPC: every [`Database`] call is one RPC. Calls carry no
/// deadline of their own (the caller decides); a broken connection is an
/// [`ErrorKind::PluginFailed`] error naming the plugin and the call.
pub struct RemoteDatabase {
    name: String,
    channel: Channel,
    address: Address,
    /// Set once the plugin answered `GetValuesStream` with Unimplemented but `GetValues`
    /// worked: it predates the streaming call, so it is not tried again.
    unary_values_only: AtomicBool,
}

impl std::fmt::Debug for RemoteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDatabase")
            .field("name", &self.name)
            .field("address", &self.address.to_string())
            .finish()
    }
}

impl RemoteDatabase {
    /// Dials the address a plugin's handshake line gave and waits for its health check, all
    /// within `timeout`. `name` tags messages.
    pub async fn connect(
        name: impl Into<String>,
        address: &Address,
        timeout: Duration,
    ) -> Result<RemoteDatabase, ConnectError> {
        RemoteDatabase::connect_with(name, address, None, timeout).await
    }

    /// [`RemoteDatabase::connect`], over AutoMTLS when `tls` is given (the plugin answered
    /// with a certificate in its handshake line).
    pub async fn connect_with(
        name: impl Into<String>,
        address: &Address,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> Result<RemoteDatabase, ConnectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = tokio::time::timeout(timeout, connect_channel(address, tls, timeout))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?
            .map_err(|message| ConnectError::Connect {
                address: address.to_string(),
                message,
            })?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let check = health.check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        });
        match tokio::time::timeout(remaining, check).await {
            Err(_) => return Err(ConnectError::Timeout(timeout)),
            Ok(Err(status)) => {
                return Err(ConnectError::Health {
                    message: format!("{:?}: {}", status.code(), status.message()),
                });
            }
            Ok(Ok(_)) => {}
        }
        Ok(RemoteDatabase::attached(name, channel, address.clone()))
    }

    /// A client over a channel connected by the caller.
    pub(crate) fn attached(
        name: impl Into<String>,
        channel: Channel,
        address: Address,
    ) -> RemoteDatabase {
        RemoteDatabase {
            name: name.into(),
            channel,
            address,
            unary_values_only: AtomicBool::new(false),
        }
    }

    /// The plugin's name, as given to `connect`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Unix socket path or TCP address the plugin listens on.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// go-plugin's `Ping`: `grpc.health.v1.Health/Check` for service `plugin`.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let check = health.check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        });
        self.finish("Ping", check).await.map(|_| ())
    }

    /// go-plugin's `GRPCController.Shutdown`, waiting at most `grace` for the answer (a plugin
    /// that exits at once may never send one). Errors are not reported: the caller then kills.
    pub async fn shutdown(&self, grace: Duration) {
        let mut controller = GrpcControllerClient::new(self.channel.clone());
        let _ = tokio::time::timeout(grace, controller.shutdown(goplugin::Empty {})).await;
    }

    /// Newer Go plugins send their Go-level stdout/stderr through `GRPCStdio`; without a reader
    /// they stall once a pipe fills. Starts a task that hands each line to `on_line` until the
    /// stream ends. Ours send nothing; Go 1.0.1 plugins lack the service.
    pub fn forward_stdio(&self, on_line: impl Fn(StdioChannel, &str) + Send + 'static) {
        let channel = self.channel.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut client = GrpcStdioClient::new(channel);
            let mut stream = match client.stream_stdio(()).await {
                Ok(stream) => stream.into_inner(),
                Err(status) => {
                    tracing::debug!(plugin = %name, code = ?status.code(), "plugin does not stream stdio");
                    return;
                }
            };
            while let Ok(Some(chunk)) = stream.message().await {
                let which = match chunk.channel() {
                    stdio_data::Channel::Stdout => StdioChannel::Stdout,
                    _ => StdioChannel::Stderr,
                };
                for line in String::from_utf8_lossy(&chunk.data).lines() {
                    on_line(which, line);
                }
            }
        });
    }

    /// One `WatchPrefix` call; with `want_values` the plugin may send the keys' values along.
    async fn watch(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
        want_values: bool,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        let mut client = self.database();
        let request = v1::WatchPrefixRequest {
            prefix: prefix.to_string(),
            keys: keys.to_vec(),
            wait_index,
            want_values,
        };
        // Dropping this future drops the response stream, which cancels the call on the plugin.
        let mut stream = self
            .finish("WatchPrefix", client.watch_prefix(request))
            .await?;
        match stream.message().await {
            Ok(Some(response)) => Ok((
                response.index,
                response.has_values.then_some(response.values),
            )),
            Ok(None) => Err(Error::internal(format!(
                "plugin {}: WatchPrefix ended without sending an index",
                self.name
            ))),
            Err(status) => Err(self.translate("WatchPrefix", status)),
        }
    }

    /// Awaits a call and turns failures into errors that name the plugin.
    async fn finish<T>(
        &self,
        method: &str,
        call: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Error> {
        match call.await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.translate(method, status)),
        }
    }

    /// Tells a plugin's own error apart from an unreachable plugin.
    fn translate(&self, method: &str, status: Status) -> Error {
        // tonic's own statuses for a broken connection; a plugin's error may well mention a
        // transport too (etcd's "tcp connect error (transport error)"), so only the start counts.
        const BROKEN: [&str; 4] = [
            "transport error",
            "h2 protocol error",
            "error trying to connect",
            "connection error",
        ];
        let transport = std::error::Error::source(&status).is_some()
            || (status.code() == tonic::Code::Unavailable
                && BROKEN.iter().any(|m| status.message().starts_with(m)));
        if transport {
            Error::new(
                ErrorKind::PluginFailed,
                format!(
                    "plugin {}: lost the connection during {method}: {}",
                    self.name,
                    status.message()
                ),
            )
        } else {
            Error::from(status)
        }
    }

    fn database(&self) -> DatabaseClient<Channel> {
        DatabaseClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

#[async_trait::async_trait]
impl Database for RemoteDatabase {
    async fn configure(&self, config: Config) -> Result<(), Error> {
        let mut client = self.database();
        self.finish(
            "Configure",
            client.configure(v1::ConfigureRequest { config }),
        )
        .await
        .map(|_| ())
    }

    async fn get_values(&self, keys: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let request = v1::GetValuesRequest {
            keys: keys.to_vec(),
        };
        let entries = if self.unary_values_only.load(Ordering::Relaxed) {
            let mut client = self.database();
            self.finish("GetValues", client.get_values(request))
                .await?
                .into_entries()
        } else {
            let call = get_values_stream(self.database(), request.clone());
            // Named like the unary call: which of the two carried the read is a detail
            // operators need not tell apart.
            match self.finish("GetValues", call).await {
                Err(err) if err.kind() == ErrorKind::Unimplemented => {
                    // Most likely a plugin built before GetValuesStream existed; unless
                    // GetValues answers Unimplemented too (then it was the database's own
                    // answer), use GetValues from now on.
                    let mut client = self.database();
                    let unary = self.finish("GetValues", client.get_values(request)).await;
                    if !matches!(&unary, Err(e) if e.kind() == ErrorKind::Unimplemented) {
                        tracing::debug!(plugin = %self.name, "plugin does not offer GetValuesStream; using GetValues");
                        self.unary_values_only.store(true, Ordering::Relaxed);
                    }
                    unary?.into_entries()
                }
                other => other?,
            }
        };
        // Bulk-built: the entries arrive sorted from our plugins, and a key repeated later in
        // the list replaces the earlier one, as in a protobuf map.
        Ok(entries.into_iter().collect())
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<u64, Error> {
        Ok(self.watch(prefix, keys, wait_index, false).await?.0)
    }

    async fn watch_prefix_values(
        &self,
        prefix: &str,
        keys: &[String],
        wait_index: u64,
    ) -> Result<(u64, Option<BTreeMap<String, String>>), Error> {
        self.watch(prefix, keys, wait_index, true).await
    }

    async fn info(&self) -> Result<DatabaseInfo, Error> {
        let mut client = self.database();
        match self.finish("Info", client.info(v1::InfoRequest {})).await {
            Ok(info) => Ok(DatabaseInfo {
                name: info.name,
                version: info.version,
                capabilities: info.capabilities,
                member: info.member,
            }),
            Err(err) if err.kind() == ErrorKind::Unimplemented => Err(Error::unimplemented(
                format!("plugin {} does not offer Info", self.name),
            )),
            Err(err) => Err(err),
        }
    }
}

/// `Database/GetValuesStream`, all batches joined in order into one list. The generated
/// client carries the values in `crate::values::GetValuesResponse` (build.rs maps the message
/// there), so the method paths come from the .proto while the entries are encoded and decoded
/// by hand.
async fn get_values_stream(
    mut client: DatabaseClient<Channel>,
    request: v1::GetValuesRequest,
) -> Result<Response<Vec<(String, String)>>, Status> {
    let mut stream = client.get_values_stream(request).await?.into_inner();
    // The first batch's list is kept and grows (a large one in place, by mremap) instead of
    // every batch being copied into a new list at the end.
    let mut entries = Vec::new();
    while let Some(batch) = stream.message().await? {
        let mut batch = batch.into_entries();
        if entries.is_empty() {
            entries = batch;
        } else {
            entries.append(&mut batch);
        }
    }
    Ok(Response::new(entries))
}

/// A gRPC channel to a plugin address: plaintext HTTP/2 on a Unix socket, or HTTP/2 inside
/// AutoMTLS on either network. The URI is a placeholder: the connector dials the address.
pub(crate) async fn connect_channel(
    address: &Address,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Channel, String> {
    let address = address.clone();
    let tls = tls.cloned();
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(timeout)
        .max_frame_size(MAX_FRAME)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                match (address, tls) {
                    (Address::Unix(path), None) => Ok(TokioIo::new(Io::Unix(
                        tokio::net::UnixStream::connect(path).await?,
                    ))),
                    (Address::Unix(path), Some(tls)) => {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        let stream = tls
                            .connector()
                            .connect(ClientTls::server_name(), stream)
                            .await?;
                        Ok(TokioIo::new(Io::UnixTls(Box::new(stream))))
                    }
                    (Address::Tcp(addr), Some(tls)) => {
                        let stream = tokio::net::TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        let stream = tls
                            .connector()
                            .connect(ClientTls::server_name(), stream)
                            .await?;
                        Ok(TokioIo::new(Io::TcpTls(Box::new(stream))))
                    }
                    // The host's transport rule refuses this before dialling; kept closed here
                    // too so that no path talks plaintext over TCP.
                    (Address::Tcp(addr), None) => Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("refusing plaintext TCP to {addr}: TCP needs AutoMTLS"),
                    )),
                }
            }
        }))
        .await
        .map_err(|e| crate::error_chain(&e))
}

/// The connections a host makes to a plugin, as one type for hyper.
enum Io {
    Unix(tokio::net::UnixStream),
    UnixTls(Box<tokio_rustls::client::TlsStream<tokio::net::UnixStream>>),
    TcpTls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

macro_rules! each_io {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Unix($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            Io::UnixTls($s) => {
                let $s = std::pin::Pin::new(&mut **$s);
                $e
            }
            Io::TcpTls($s) => {
                let $s = std::pin::Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        each_io!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        each_io!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        each_io!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        each_io!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        each_io!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Unix(s) => s.is_write_vectored(),
            Io::UnixTls(s) => s.is_write_vectored(),
            Io::TcpTls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use futures_util::Stream;
    use tonic::{Code, Request};

    use super::*;
    use crate::proto::v1::database_server::{self, DatabaseServer};
    use crate::values::GetValuesResponse;

    fn assert_send<T: Send>(_: &T) {}

    type Batch = Result<Vec<(&'static str, &'static str)>, (Code, &'static str)>;

    fn status((code, message): (Code, &'static str)) -> Status {
        Status::new(code, message)
    }

    fn response(pairs: &[(&str, &str)]) -> GetValuesResponse {
        GetValuesResponse::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A plugin whose answers are scripted: `stream: None` is a plugin built before
    /// `GetValuesStream` existed.
    struct Scripted {
        stream: Option<Vec<Batch>>,
        unary: Batch,
        stream_calls: Arc<AtomicUsize>,
        unary_calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl database_server::Database for Scripted {
        async fn configure(
            &self,
            _: Request<v1::ConfigureRequest>,
        ) -> Result<Response<v1::ConfigureResponse>, Status> {
            Ok(Response::new(v1::ConfigureResponse {}))
        }

        async fn get_values(
            &self,
            _: Request<v1::GetValuesRequest>,
        ) -> Result<Response<GetValuesResponse>, Status> {
            self.unary_calls.fetch_add(1, Ordering::SeqCst);
            match &self.unary {
                Ok(pairs) => Ok(Response::new(response(pairs))),
                Err(err) => Err(status(*err)),
            }
        }

        type WatchPrefixStream =
            Pin<Box<dyn Stream<Item = Result<v1::WatchPrefixResponse, Status>> + Send + 'static>>;

        /// Answers at once with index 7, bringing the unary values along when asked to.
        async fn watch_prefix(
            &self,
            request: Request<v1::WatchPrefixRequest>,
        ) -> Result<Response<Self::WatchPrefixStream>, Status> {
            let values = match (&self.unary, request.into_inner().want_values) {
                (Ok(pairs), true) => Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                _ => None,
            };
            let answer = v1::WatchPrefixResponse {
                index: 7,
                has_values: values.is_some(),
                values: values.unwrap_or_default(),
            };
            Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(
                answer,
            )]))))
        }

        async fn info(
            &self,
            _: Request<v1::InfoRequest>,
        ) -> Result<Response<v1::InfoResponse>, Status> {
            Err(Status::unimplemented("no info"))
        }

        type GetValuesStreamStream =
            Pin<Box<dyn Stream<Item = Result<GetValuesResponse, Status>> + Send + 'static>>;

        async fn get_values_stream(
            &self,
            _: Request<v1::GetValuesRequest>,
        ) -> Result<Response<Self::GetValuesStreamStream>, Status> {
            self.stream_calls.fetch_add(1, Ordering::SeqCst);
            let Some(batches) = &self.stream else {
                // what tonic and grpc-go answer for a method the server does not know
                return Err(Status::unimplemented(
                    "unknown method GetValuesStream for service confd.plugin.v1.Database",
                ));
            };
            let batches: Vec<Result<GetValuesResponse, Status>> = batches
                .iter()
                .map(|batch| match batch {
                    Ok(pairs) => Ok(response(pairs)),
                    Err(err) => Err(status(*err)),
                })
                .collect();
            Ok(Response::new(Box::pin(futures_util::stream::iter(batches))))
        }
    }

    struct Served {
        client: RemoteDatabase,
        stream_calls: Arc<AtomicUsize>,
        unary_calls: Arc<AtomicUsize>,
        _dir: tempfile::TempDir,
    }

    async fn serve(stream: Option<Vec<Batch>>, unary: Batch) -> Served {
        let stream_calls = Arc::new(AtomicUsize::new(0));
        let unary_calls = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plugin.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let service = DatabaseServer::new(Scripted {
            stream,
            unary,
            stream_calls: stream_calls.clone(),
            unary_calls: unary_calls.clone(),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let address = Address::Unix(path);
        let channel = connect_channel(&address, None, Duration::from_secs(5))
            .await
            .expect("connect");
        Served {
            client: RemoteDatabase::attached("scripted", channel, address),
            stream_calls,
            unary_calls,
            _dir: dir,
        }
    }

    fn values_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        values(pairs)
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn stream_batches_join_in_order_and_a_repeated_key_keeps_its_last_value() {
        let served = serve(
            Some(vec![
                Ok(vec![("/a", "1"), ("/b", "old")]),
                Ok(vec![("/b", "new"), ("/c", "3")]),
            ]),
            Err((Code::Internal, "unary must not be called")),
        )
        .await;
        let got = served.client.get_values(&["/".into()]).await.expect("get");
        assert_eq!(got, values(&[("/a", "1"), ("/b", "new"), ("/c", "3")]));
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1);
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn values_come_with_a_watch_answer_only_when_asked_for() {
        let served = serve(
            Some(vec![Ok(vec![("/s", "read")])]),
            Ok(vec![("/w", "watched")]),
        )
        .await;
        let keys = vec!["/".to_string()];
        let (index, values) = served
            .client
            .watch_prefix_values("/", &keys, 3)
            .await
            .expect("watch");
        assert_eq!(index, 7);
        assert_eq!(values, Some(values_of(&[("/w", "watched")])));
        // a plain watch does not ask, and reads stay reads
        assert_eq!(
            served
                .client
                .watch_prefix("/", &keys, 7)
                .await
                .expect("watch"),
            7
        );
        let read = served.client.get_values(&keys).await.expect("get");
        assert_eq!(read, values_of(&[("/s", "read")]));
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1);
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_stream_without_batches_is_an_empty_result() {
        let served = serve(Some(vec![]), Err((Code::Internal, "unused"))).await;
        let got = served.client.get_values(&["/".into()]).await.expect("get");
        assert!(got.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn an_error_mid_stream_fails_the_whole_call() {
        let served = serve(
            Some(vec![
                Ok(vec![("/a", "1")]),
                Err((Code::Unavailable, "store went away")),
                Ok(vec![("/b", "2")]),
            ]),
            Ok(vec![("/unary", "must not be used")]),
        )
        .await;
        let err = served
            .client
            .get_values(&["/".into()])
            .await
            .expect_err("no partial result");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("store went away"), "{err}");
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_plugin_without_the_stream_is_read_with_get_values_from_then_on() {
        let served = serve(None, Ok(vec![("/a", "1"), ("/b", "2")])).await;
        for _ in 0..3 {
            let got = served.client.get_values(&["/".into()]).await.expect("get");
            assert_eq!(got, values(&[("/a", "1"), ("/b", "2")]));
        }
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 1, "asked once");
        assert_eq!(served.unary_calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unimplemented_from_the_database_itself_is_not_taken_for_an_old_plugin() {
        let served = serve(
            Some(vec![Err((Code::Unimplemented, "reads are not offered"))]),
            Err((Code::Unimplemented, "reads are not offered")),
        )
        .await;
        for _ in 0..2 {
            let err = served
                .client
                .get_values(&["/".into()])
                .await
                .expect_err("unimplemented");
            assert_eq!(err.kind(), ErrorKind::Unimplemented, "{err}");
        }
        assert_eq!(served.stream_calls.load(Ordering::SeqCst), 2, "still tried");
    }

    #[test]
    fn remote_futures_are_send() {
        // The host spawns these on a multi-threaded runtime.
        fn with_remote(remote: &RemoteDatabase) {
            assert_send(&remote.shutdown(Duration::from_secs(1)));
            assert_send(&remote.ping());
            assert_send(&remote.get_values(&[]));
            assert_send(&remote.watch_prefix("/", &[], 0));
        }
        let _ = with_remote;
    }
}
