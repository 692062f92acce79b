//! The thread, runtime and loopback listener every HTTP API emulator (Consul, Vault) runs on,
//! plain or HTTPS, so that `stop` cuts every open connection as a dying server would, and a
//! restart can take the same port again.

use std::path::PathBuf;

use axum::Router;

/// The TLS material of an HTTPS emulator: PEM files of the server's chain and key, and the CA
/// client certificates must come from (a client certificate is optional).
#[derive(Debug, Clone)]
pub struct EmulatorTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// Set by the HTTPS server on requests that came with a verified client certificate.
pub(crate) const CLIENT_CERT_HEADER: &str = "x-emulator-client-cert";

/// One running emulator server; dropping the sender ends its runtime.
#[derive(Debug)]
pub(crate) struct ServerThread {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerThread {
    /// Stops serving and waits until every connection is gone.
    pub(crate) fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.thread.join();
    }
}

/// Serves `app` on 127.0.0.1:`port` (0: a free port) on a thread of its own; returns the port.
pub(crate) fn spawn(
    port: u16,
    app: Router,
    tls: Option<EmulatorTls>,
) -> std::io::Result<(u16, ServerThread)> {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match bind(port) {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = bound_tx.send(listener.local_addr().map(|a| a.port()));
            match tls {
                None => {
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, app).await;
                    });
                }
                Some(tls) => {
                    tokio::spawn(crate::https::serve(listener, app, tls));
                }
            }
            let _ = shutdown_rx.await;
        });
        // Dropping the runtime here cancels every connection task.
    });
    let port = bound_rx
        .recv()
        .map_err(|_| std::io::Error::other("emulator thread died"))??;
    Ok((port, ServerThread { shutdown, thread }))
}

fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Our own closed connections linger in TIME_WAIT; a restart must rebind the port.
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    socket.listen(1024)
}
