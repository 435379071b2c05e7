//! A wss:// echo server: TLS with tokio-rustls, then the same `Upgrader` as for
//! ws:// — it works over any `AsyncRead + AsyncWrite` stream.
//!
//! ```text
//! cargo run -p yamabiko --example wss-echo -- [ADDR] [CERT.pem KEY.pem]
//! ```
//!
//! Without a certificate it makes a self-signed one for `localhost` and `127.0.0.1`
//! (with rcgen) and writes it to `wss-echo-cert.pem` in the temporary directory, so a
//! client can trust it:
//!
//! ```text
//! cargo run -p yamabiko --example wss-echo -- 127.0.0.1:9443 &
//! echo hello | yamabiko connect wss://localhost:9443/ --ca /tmp/wss-echo-cert.pem
//! ```

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:9443", String::as_str);
    let (certs, key) = match (args.get(1), args.get(2)) {
        (Some(cert), Some(key)) => (
            CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(key)?,
        ),
        _ => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind(addr).await?;
    println!("listening on wss://{}", listener.local_addr()?);
    let upgrader = yamabiko::Upgrader::new();
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, upgrader) = (acceptor.clone(), upgrader.clone());
        tokio::spawn(async move {
            // A client that never finishes the TLS handshake must not hold a task.
            let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(tls)) = tls.await else { return };
            let Ok(mut conn) = upgrader.upgrade(tls).await else {
                return;
            };
            while let Ok(msg) = conn.read_message().await {
                if conn.write_message(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// A self-signed certificate for localhost, written out for clients to trust.
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BoxError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let path = std::env::temp_dir().join("wss-echo-cert.pem");
    std::fs::write(&path, certified.cert.pem())?;
    println!("self-signed certificate: {}", path.display());
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    Ok((vec![certified.cert.der().clone()], key.into()))
}
