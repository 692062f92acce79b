//! go-plugin's AutoMTLS, so a plugin reached over TCP answers only the host that started it: each
//! side makes a one-time self-signed certificate, the host passes its own to the plugin in
//! `PLUGIN_CLIENT_CERT` (PEM) and the plugin answers with its own in handshake field 6 (base64
//! DER); each side then accepts exactly the other's certificate and nothing else.
//!
//! The verifiers pin the exact DER instead of building a chain. go-plugin's certificates are CA
//! certificates used as end-entity certificates, which webpki's default verifiers refuse, and a
//! pinned certificate is the whole trust model here anyway. The crypto provider is aws-lc-rs
//! because Go peers sign with P-521 keys, which ring cannot verify.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The name both certificates carry and the host expects, as in go-plugin (Go hosts check it).
pub(crate) const SERVER_NAME: &str = "localhost";

/// Why a certificate could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Making the one-time key or certificate failed.
    #[error("cannot make a one-time TLS certificate: {0}")]
    Generate(String),
    /// `PLUGIN_CLIENT_CERT` (or another PEM text) holds no usable certificate.
    #[error("PLUGIN_CLIENT_CERT does not hold a PEM certificate: {0}")]
    Pem(String),
    /// The TLS configuration was refused (a key the provider cannot use, for instance).
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// A one-time certificate and its private key: an ECDSA P-256 key, self-signed, named
/// `localhost`, marked as a CA and usable for both server and client authentication, the
/// shape go-plugin gives its own (Go peers check the name and the extended key usages).
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("cert_len", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Makes a fresh key and certificate (a millisecond or so).
    pub fn generate() -> Result<Identity, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "confd");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Identity {
            pem: cert.pem(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The certificate in PEM, as a host puts it in `PLUGIN_CLIENT_CERT`.
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// The certificate in DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert
    }

    /// The certificate as a plugin prints it in handshake field 6: base64 of the DER, standard
    /// alphabet, no padding (go-plugin's `RawStdEncoding`).
    pub fn handshake_field(&self) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&self.cert)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The first certificate in a PEM text (`PLUGIN_CLIENT_CERT`), as DER.
pub fn certificate_from_pem(pem: &str) -> Result<Vec<u8>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| TlsError::Pem(e.to_string()))
}

/// Handshake field 6 decoded: go-plugin writes it without padding; padding is tolerated.
pub(crate) fn decode_handshake_field(field: &str) -> Result<Vec<u8>, String> {
    let field = field.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(field)
        .map_err(|e| e.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a host needs to reach a plugin that serves AutoMTLS: its own identity (the one whose
/// certificate went into `PLUGIN_CLIENT_CERT`) and the certificate the plugin announced.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Presents `identity` and accepts only the plugin certificate `server_cert` (DER).
    pub fn new(identity: &Identity, server_cert: &[u8]) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let verifier = Pinned::new(server_cert.to_vec(), provider.clone());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![identity.cert.clone()], identity.key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }

    pub(crate) fn server_name() -> ServerName<'static> {
        ServerName::DnsName(
            rustls::pki_types::DnsName::try_from(SERVER_NAME)
                .unwrap_or_else(|_| unreachable!("localhost is a DNS name"))
                .to_owned(),
        )
    }
}

/// The plugin's TLS configuration: present `identity`, require a client certificate and accept
/// only `client_cert` (DER).
pub(crate) fn server_config(
    identity: &Identity,
    client_cert: Vec<u8>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Pinned::new(client_cert, provider.clone());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert.clone()], identity.key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly one certificate, whoever presents it, and checks that the peer holds its key
/// (the handshake signature) with the provider's algorithms. Names, dates and CA flags are not
/// looked at: the certificate came over a channel only the two processes share.
struct Pinned {
    cert: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned")
            .field("cert_len", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl Pinned {
    fn new(cert: Vec<u8>, provider: Arc<CryptoProvider>) -> Pinned {
        Pinned { cert, provider }
    }

    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_slice() {
            Ok(())
        } else {
            // Not the certificate exchanged at start-up: somebody else.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_round_trips_through_pem_and_the_handshake_field() {
        let id = Identity::generate().expect("generate");
        assert!(
            id.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let from_pem = certificate_from_pem(id.certificate_pem()).expect("pem");
        assert_eq!(from_pem, id.certificate_der());
        let field = id.handshake_field();
        assert!(!field.ends_with('=') && !field.contains('\n'), "{field}");
        assert!(field.len() > 50, "go-plugin ignores a field 6 this short");
        assert_eq!(
            decode_handshake_field(&field).expect("decode"),
            id.certificate_der()
        );
        assert_ne!(
            Identity::generate().expect("second").certificate_der(),
            id.certificate_der(),
            "one-time: every identity is new"
        );
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = certificate_from_pem("not a certificate").expect_err("refused");
        assert!(err.to_string().contains("PLUGIN_CLIENT_CERT"), "{err}");
    }

    #[test]
    fn the_pinned_verifier_accepts_only_its_certificate() {
        let id = Identity::generate().expect("generate");
        let other = Identity::generate().expect("generate");
        let pinned = Pinned::new(id.certificate_der().to_vec(), provider());
        let name = ClientTls::server_name();
        assert!(
            pinned
                .verify_server_cert(&id.cert, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            pinned
                .verify_server_cert(&other.cert, &[], &name, &[], UnixTime::now())
                .is_err()
        );
        assert!(
            pinned
                .verify_client_cert(&other.cert, std::slice::from_ref(&id.cert), UnixTime::now())
                .is_err(),
            "a chain to the pinned certificate is not the pinned certificate"
        );
        assert!(
            pinned
                .schemes()
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512),
            "Go peers sign with P-521"
        );
    }
}
