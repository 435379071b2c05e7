//! `yamabiko echo`: echoes every message back, on the public API only.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use yamabiko::{CloseCode, Error, Upgrader};

/// Options of `yamabiko echo`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Run on a single-threaded runtime (for benchmarks pinned to one core).
    #[arg(long)]
    single_thread: bool,
    /// Refuse permessage-deflate offers (accepted by default).
    #[arg(long)]
    no_compression: bool,
    /// With compression, messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    compression_threshold: usize,
    /// Serve wss:// with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Runs the echo server until interrupted.
pub fn run(args: EchoArgs) -> anyhow::Result<()> {
    let runtime = if args.single_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

async fn serve(args: EchoArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let upgrader = Upgrader::new()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_frame_size)
        // An echo server is a test target: accept pages from any origin.
        .check_origin(|_| true)
        .compression((!args.no_compression).then(|| yamabiko::Compression {
            threshold: args.compression_threshold,
            ..Default::default()
        }));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(addr = %listener.local_addr()?, scheme, "echo server listening");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let upgrader = upgrader.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return echo(upgrader, tcp, peer).await;
            };
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => echo(upgrader, stream, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Upgrades `stream` (TCP or TLS) and echoes until the connection ends.
async fn echo<S>(upgrader: Upgrader, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = match upgrader.upgrade(stream).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    loop {
        let msg = match conn.read_message().await {
            Ok(m) => m,
            Err(e) => {
                log_end(peer, &e);
                return;
            }
        };
        if let Err(e) = conn.write_message(msg).await {
            log_end(peer, &e);
            return;
        }
    }
}

fn log_end(peer: SocketAddr, e: &Error) {
    if yamabiko::is_unexpected_close_error(e, &[CloseCode::NORMAL, CloseCode::GOING_AWAY]) {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
