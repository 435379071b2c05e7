//! TLS for `wss://` (rustls with the *ring* provider): the default client
//! configuration, extra trusted roots, and turning handshake failures into
//! [`Error::Tls`].

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::io;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::Host;

/// The configuration `wss://` uses unless told otherwise: the Mozilla root
/// certificates (from `webpki-roots`), TLS 1.2 and 1.3, no client certificate. Built
/// once and shared. (It cannot fail with the *ring* provider; the `Result` is
/// rustls's builder API showing through.)
pub fn default_config() -> Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<std::result::Result<Arc<ClientConfig>, rustls::Error>> =
        OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            build_config(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
        .map_err(Error::Tls)
}

/// A configuration trusting the default roots plus `extra` (e.g. a test CA, or the
/// self-signed certificate of a development server).
pub fn config_with_roots(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots.add(cert.clone()).map_err(Error::Tls)?;
    }
    build_config(roots).map_err(Error::Tls)
}

/// Reads every `CERTIFICATE` block of a PEM file; an error when there is none.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidInput(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::InvalidInput(
            "no CERTIFICATE block in the PEM data".into(),
        ));
    }
    Ok(certs)
}

fn build_config(roots: RootCertStore) -> std::result::Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the URL's host (a DNS name or an IP
/// address).
pub(crate) fn server_name(host: &Host<String>) -> Result<ServerName<'static>> {
    match host {
        Host::Domain(d) => ServerName::try_from(d.clone())
            .map_err(|e| Error::Url(format!("{d:?} is not a valid TLS server name: {e}"))),
        Host::Ipv4(a) => Ok(ServerName::IpAddress((*a).into())),
        Host::Ipv6(a) => Ok(ServerName::IpAddress((*a).into())),
    }
}

/// Runs the TLS handshake over `tcp`.
pub(crate) async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>> {
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(map_io_error)
}

/// tokio-rustls reports TLS failures as `io::Error`s wrapping a `rustls::Error`;
/// unwrap those so callers see [`Error::Tls`] (e.g. "invalid peer certificate:
/// UnknownIssuer").
pub(crate) fn map_io_error(e: io::Error) -> Error {
    let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
    if !is_tls {
        return Error::Io(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => Error::Tls(*tls),
        Some(Err(other)) => Error::Io(io::Error::other(other)),
        None => Error::Io(io::Error::other("TLS failure")),
    }
}
