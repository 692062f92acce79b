//! One TLS set-up for the backends that speak HTTP(S) (consul, vault), so that a CA bundle, a
//! client certificate and `--client-insecure` mean the same thing for each of them.

use std::time::Duration;

use confd_sdk::Error;

/// The TLS files and switches of one backend's settings, as paths on the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tls<'a> {
    /// PEM file of one or more CA certificates, each trusted (a bundle, as Consul's and
    /// Vault's own clients accept).
    pub ca_cert: Option<&'a str>,
    /// PEM client certificate (chain); needs `key`.
    pub cert: Option<&'a str>,
    /// PEM private key of `cert`.
    pub key: Option<&'a str>,
    /// The server's certificate is not verified (`--client-insecure`).
    pub insecure: bool,
}

/// A reqwest client for `backend` (named in every error) with `tls` and a connect timeout.
pub fn client_builder(
    backend: &str,
    tls: Tls<'_>,
    connect_timeout: Duration,
) -> Result<reqwest::ClientBuilder, Error> {
    let mut builder = reqwest::Client::builder().connect_timeout(connect_timeout);
    if let Some(ca) = tls.ca_cert {
        let pem = read(backend, "caCert", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::invalid_config(format!("{backend}: caCert {ca}: {e}")))?;
        if certs.is_empty() {
            return Err(Error::invalid_config(format!(
                "{backend}: caCert {ca}: no PEM certificate in the file"
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (tls.cert, tls.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(backend, "cert", cert)?;
            pem.push(b'\n');
            pem.extend(read(backend, "key", key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Error::invalid_config(format!("{backend}: cert/key {cert}: {e}")))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid_config(format!(
                "{backend}: `cert` and `key` (--client-cert, --client-key) must be given together"
            )));
        }
    }
    if tls.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

fn read(backend: &str, what: &str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::invalid_config(format!("{backend}: reading {what} {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confd_test_support::TestCertificates;

    fn err(tls: Tls<'_>) -> String {
        client_builder("consul", tls, Duration::from_secs(1))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_missing_file_is_named_with_the_backend_and_setting() {
        let e = err(Tls {
            ca_cert: Some("/nonexistent/ca.pem"),
            ..Tls::default()
        });
        assert!(
            e.contains("consul: reading caCert /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("http-common-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = err(Tls {
            ca_cert: empty.to_str(),
            ..Tls::default()
        });
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cert_without_key_is_refused() {
        let Some(certs) = TestCertificates::generate() else {
            return;
        };
        let cert = certs.client_cert().display().to_string();
        let e = err(Tls {
            cert: Some(&cert),
            ..Tls::default()
        });
        assert!(e.contains("must be given together"), "{e}");
    }
}
