//! A TCP proxy on loopback that can be told to stop forwarding, in both directions,
//! without closing anything: a half-open path, as a peer that slept or a NAT that
//! forgot the mapping leaves behind. What arrives while frozen is read and thrown
//! away (as the network would lose it), and an end of stream is not passed on; the
//! proxy notes when each side closed its socket, to show that a side gave up the
//! connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Which end of the proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that connected to the proxy.
    Client,
    /// The end the proxy connected to.
    Server,
}

/// The proxy; dropping it aborts its tasks (and so closes every socket).
pub struct HalfOpenProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    closed: Arc<Mutex<Vec<(Side, Instant)>>>,
    _tasks: JoinSet<()>,
}

impl HalfOpenProxy {
    /// Forwards every connection made to [`addr`](Self::addr) to `upstream`.
    pub async fn start(upstream: SocketAddr) -> HalfOpenProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let frozen = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let (f, c) = (frozen.clone(), closed.clone());
        tasks.spawn(async move {
            let mut links = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                // Each direction owns its reader; the writers are shared so that the
                // sockets stay open while frozen, whatever ends first.
                let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
                let server_write = Arc::new(tokio::sync::Mutex::new(server_write));
                links.spawn(pump(
                    client_read,
                    server_write.clone(),
                    client_write.clone(),
                    Side::Client,
                    f.clone(),
                    c.clone(),
                ));
                links.spawn(pump(
                    server_read,
                    client_write,
                    server_write,
                    Side::Server,
                    f.clone(),
                    c.clone(),
                ));
            }
        });
        HalfOpenProxy {
            addr,
            frozen,
            closed,
            _tasks: tasks,
        }
    }

    /// Stops forwarding in both directions; nothing is closed.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// When `side` closed its socket (end of stream or reset), if it did.
    pub fn closed_at(&self, side: Side) -> Option<Instant> {
        let closed = self.closed.lock().expect("proxy state");
        closed.iter().find(|(s, _)| *s == side).map(|(_, at)| *at)
    }

    /// Waits (at most `limit`) until `side` closed its socket; when it did.
    pub async fn wait_closed(&self, side: Side, limit: Duration) -> Option<Instant> {
        let give_up = Instant::now() + limit;
        // Bounded by `limit`.
        while Instant::now() < give_up {
            if let Some(at) = self.closed_at(side) {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.closed_at(side)
    }
}

/// Copies `from` to `to` until `from` ends, throwing bytes away while frozen. Holds
/// on to both writers after the end while frozen, so that nothing is closed.
async fn pump(
    mut from: OwnedReadHalf,
    to: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    own: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    side: Side,
    frozen: Arc<AtomicBool>,
    closed: Arc<Mutex<Vec<(Side, Instant)>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            closed
                .lock()
                .expect("proxy state")
                .push((side, Instant::now()));
            if frozen.load(Ordering::SeqCst) {
                // Pass nothing on: the other side must find out by itself.
                let _keep = (&from, &to, &own);
                std::future::pending::<()>().await;
            }
            let _ = to.lock().await.shutdown().await;
            return;
        }
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        if to.lock().await.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
