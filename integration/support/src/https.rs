//! HTTPS for the test emulators: rustls over each accepted connection, then the emulator's axum
//! router through hyper. Client certificates are requested but optional; one that is given must
//! be signed by the configured CA, and the router sees a marker header when one was.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt as _;

use crate::emulator::{CLIENT_CERT_HEADER, EmulatorTls};

fn config(tls: &EmulatorTls) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("server certificate {}: {e}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("server key {}: {e}", tls.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.client_ca)
        .map_err(|e| format!("client CA {}: {e}", tls.client_ca.display()))?
    {
        let ca = ca.map_err(|e| format!("client CA: {e}"))?;
        roots.add(ca).map_err(|e| format!("client CA: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate: {e}"))
}

/// Accepts TLS connections on `listener` and serves `app` on each, until the runtime ends.
pub(crate) async fn serve(listener: tokio::net::TcpListener, app: Router, tls: EmulatorTls) {
    let config = match config(&tls) {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("emulator TLS set-up: {e}"),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A failed handshake (an untrusted client certificate) just drops the connection.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let has_cert = stream.get_ref().1.peer_certificates().is_some();
            let service =
                tower::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    if has_cert {
                        request
                            .headers_mut()
                            .insert(CLIENT_CERT_HEADER, HeaderValue::from_static("1"));
                    }
                    app.clone().oneshot(request)
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}
