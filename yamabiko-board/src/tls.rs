//! TLS for the servers of the `yamabiko` command: a rustls server configuration from
//! a PEM certificate chain and a PEM private key.

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Loads `cert` (the certificate chain, leaf first) and `key` (PKCS#8, PKCS#1 or
/// SEC1) into a TLS acceptor (TLS 1.2 and 1.3, the *ring* provider) whose ALPN
/// offers `h2` and `http/1.1`: the server takes WebSockets over HTTP/2 (RFC 8441) and
/// over HTTP/1.1 (check `alpn_protocol()` after the handshake).
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let mut config = (*server_config(cert, key)?).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The rustls server configuration of [`acceptor`] without ALPN, for blocking
/// servers (HTTP/1.1 only).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no CERTIFICATE block in {}",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not fit together")?;
    Ok(Arc::new(config))
}
