//! wss:// over loopback: an Upgrader behind tokio-rustls, a Dialer in front of it, and
//! certificates made at test time with rcgen. Each test is bounded by a timeout.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use yamabiko::{CloseCode, Dialer, Error, Message, Upgrader};

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test took too long")
}

/// A self-signed certificate for `names` (DNS names or IP addresses): (PEM, DER,
/// private key).
fn certificate(names: &[&str]) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    (certified.cert.pem(), certified.cert.der().clone(), key)
}

fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

/// A wss:// echo server: TLS, then the Upgrader over the TLS stream.
async fn wss_echo_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = Upgrader::new().upgrade(tls).await else {
                    return;
                };
                for _ in 0..1000 {
                    let Ok(msg) = conn.read_message().await else {
                        return;
                    };
                    if conn.write_message(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_round_trip_with_an_extra_root() {
    bounded(async {
        let (pem, der, key) = certificate(&["localhost", "127.0.0.1"]);
        let addr = wss_echo_server(server_config(der, key)).await;
        let dialer = Dialer::new()
            .add_root_certificates_pem(pem.as_bytes())
            .unwrap();
        for url in [
            format!("wss://127.0.0.1:{}/secure", addr.port()),
            format!("wss://localhost:{}/secure", addr.port()),
        ] {
            let (mut conn, response) = dialer.dial(&url).await.unwrap();
            assert_eq!(response.status(), 101);
            assert_eq!(conn.with_stream(|s| s.is_tls()), Some(true));
            assert_eq!(conn.with_stream(|s| s.tls_session().is_some()), Some(true));
            conn.write_text("secret").await.unwrap();
            assert_eq!(conn.read_message().await.unwrap(), Message::text("secret"));
            let big = vec![0xA5u8; 300_000];
            conn.write_binary(big.clone()).await.unwrap();
            assert_eq!(conn.read_message().await.unwrap(), Message::binary(big));
            conn.close_with(CloseCode::NORMAL, "done", Duration::from_secs(5))
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn wss_with_a_custom_client_config() {
    bounded(async {
        let (_, der, key) = certificate(&["localhost"]);
        let addr = wss_echo_server(server_config(der.clone(), key)).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (mut conn, _) = Dialer::new()
            .tls_config(Arc::new(config))
            .dial(&format!("wss://localhost:{}/", addr.port()))
            .await
            .unwrap();
        conn.write_text("custom").await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("custom"));
    })
    .await;
}

fn tls_error(result: yamabiko::Result<impl Sized>) -> rustls::Error {
    match result {
        Err(Error::Tls(e)) => e,
        Err(e) => panic!("expected a TLS error, got {e:?}"),
        Ok(_) => panic!("expected a TLS error, got a connection"),
    }
}

#[tokio::test]
async fn certificate_for_another_name_is_a_clear_tls_error() {
    bounded(async {
        let (pem, der, key) = certificate(&["other.example"]);
        let addr = wss_echo_server(server_config(der, key)).await;
        let dialer = Dialer::new()
            .add_root_certificates_pem(pem.as_bytes())
            .unwrap();
        let result = dialer
            .dial(&format!("wss://localhost:{}/", addr.port()))
            .await;
        let err = tls_error(result);
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
        let text = Error::Tls(err).to_string();
        assert!(text.contains("not valid for name"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn untrusted_root_is_a_clear_tls_error() {
    bounded(async {
        let (_, der, key) = certificate(&["localhost"]);
        let addr = wss_echo_server(server_config(der, key)).await;
        let result = Dialer::new()
            .dial(&format!("wss://localhost:{}/", addr.port()))
            .await;
        let err = tls_error(result);
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
        let text = Error::Tls(err).to_string();
        assert!(
            text.contains("tls") && text.contains("UnknownIssuer"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn wss_to_a_plain_server_fails_quickly() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A plain WebSocket server: answers the ClientHello with a 400.
            let _ = Upgrader::new().upgrade(tcp).await;
        });
        let result = Dialer::new()
            .handshake_timeout(Duration::from_secs(5))
            .dial(&format!("wss://127.0.0.1:{}/", addr.port()))
            .await;
        match result {
            Err(Error::Tls(_)) | Err(Error::Io(_)) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn bad_pem_is_refused() {
    match Dialer::new().add_root_certificates_pem(b"not a certificate") {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("CERTIFICATE"), "{msg}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
