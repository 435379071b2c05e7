//! Backpressure: a peer that never reads must not make us buffer without bound.
//!
//! Writes wait (async) until the transport takes the bytes, or fail with
//! [`Error::Timeout`] at the write deadline; either way at most about one message is
//! held in the connection's queue. The same holds for the automatic replies of the
//! read side: a peer that floods pings and never reads the pongs is not read any
//! further once the unsent pongs fill a bounded queue, so TCP pushes back on it.
//!
//! Memory is measured as the resident set size of this test process
//! (`/proc/self/statm`). The tests in this file run one at a time (a mutex) so that
//! they do not disturb each other's measurements.

mod common;

use bytes::Bytes;
use common::{bounded, client_handshake, listener, step};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use yamabiko::{Config, Conn, Error, Message, Role, Upgrader};

/// What the server tries to send: 1 GiB.
const TOTAL: u64 = 1 << 30;
/// In messages of 1 MiB.
const MESSAGE: usize = 1 << 20;
/// The most the server may "send" to a peer that reads nothing: the kernel's socket
/// buffers on both ends plus a message in our queue. Loopback buffers autotune up to
/// a few MiB each; 1 GiB would mean we buffered it ourselves.
const MAX_SENT: u64 = 96 << 20;
/// How much the process may grow while trying.
const MAX_RSS_GROWTH: u64 = 64 << 20;
/// How many bytes of pings a server may take from a peer that reads none of the
/// pongs: the socket buffers, plus 64 KiB of queued pongs' worth.
const MAX_FLOOD: u64 = 32 << 20;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Resident set size of this process in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

/// A fresh 1 MiB message each time (a queue that kept them would grow the heap).
fn message(i: u64) -> Message {
    Message::binary(Bytes::from(vec![(i % 251) as u8; MESSAGE]))
}

/// A server connection and a raw TCP client that has done the handshake and will
/// never read again.
async fn server_and_silent_client() -> (Conn<TcpStream>, TcpStream) {
    let (l, addr) = listener().await;
    let accept = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        Upgrader::new().upgrade(tcp).await.expect("upgrade")
    });
    let mut client = step("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    step(
        "client handshake",
        client_handshake(&mut client, addr, &[], &http::HeaderMap::new()),
    )
    .await
    .expect("client handshake");
    let server = step("server upgrade", accept).await.expect("accept task");
    (server, client)
}

/// With a write deadline, writes to a peer that does not read time out, and little
/// of the 1 GiB was taken.
#[tokio::test]
async fn writes_to_a_peer_that_never_reads_time_out_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (mut server, _client) = server_and_silent_client().await;
        let before = rss();
        let deadline = Instant::now() + Duration::from_secs(2);
        server.set_write_deadline(Some(deadline));
        let mut sent = 0u64;
        let mut peak = before;
        let mut i = 0;
        let end = loop {
            if sent >= TOTAL {
                break None;
            }
            match server.write_message(message(i)).await {
                Ok(()) => sent += MESSAGE as u64,
                Err(e) => break Some(e),
            }
            i += 1;
            peak = peak.max(rss());
        };
        peak = peak.max(rss());
        assert!(
            matches!(end, Some(Error::Timeout)),
            "expected a write timeout, got {end:?} after {sent} bytes"
        );
        assert!(
            sent < MAX_SENT,
            "{} MiB went out to a peer that reads nothing",
            sent >> 20
        );
        let growth = peak.saturating_sub(before);
        assert!(
            growth < MAX_RSS_GROWTH,
            "memory grew by {} MiB",
            growth >> 20
        );
        // Once timed out, later writes fail at once without queueing more.
        let again = server.write_message(message(0)).await;
        assert!(matches!(again, Err(Error::Timeout)), "{again:?}");
        eprintln!(
            "sent {} KiB before the deadline; RSS grew {} KiB",
            sent >> 10,
            growth >> 10
        );
    })
    .await;
}

/// Without a deadline, a write to a peer that does not read waits: the writer makes
/// no progress after the buffers fill.
#[tokio::test]
async fn writes_to_a_peer_that_never_reads_wait() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (mut server, _client) = server_and_silent_client().await;
        let before = rss();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let writer = tokio::spawn(async move {
            let mut i = 0;
            while counter.load(Ordering::Relaxed) < TOTAL {
                server.write_message(message(i)).await.expect("write");
                counter.fetch_add(MESSAGE as u64, Ordering::Relaxed);
                i += 1;
            }
        });
        // Let the socket buffers fill, then check that nothing moves any more.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stalled_at = sent.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let later = sent.load(Ordering::Relaxed);
        let growth = rss().saturating_sub(before);
        writer.abort();
        assert!(!writer.is_finished() || later < TOTAL);
        assert_eq!(stalled_at, later, "the writer kept going");
        assert!(later < MAX_SENT, "{} MiB taken", later >> 20);
        assert!(
            growth < MAX_RSS_GROWTH,
            "memory grew by {} MiB",
            growth >> 20
        );
    })
    .await;
}

/// The client role (which copies each payload to mask it) is bounded the same way.
#[tokio::test]
async fn client_writes_to_a_server_that_never_reads_time_out() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (l, addr) = listener().await;
        // A "server" that answers the handshake and then reads nothing.
        let silent = tokio::spawn(async move {
            let (mut tcp, _) = l.accept().await.expect("accept");
            let upgrader = Upgrader::new();
            let (req, _) = upgrader.read_request(&mut tcp).await.expect("request");
            let negotiated = upgrader.negotiate(&req).expect("negotiate");
            tcp.write_all(&negotiated.response).await.expect("101");
            tokio::time::sleep(Duration::from_secs(20)).await;
            drop(tcp);
        });
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let (_, leftover) = client_handshake(&mut tcp, addr, &[], &http::HeaderMap::new())
            .await
            .expect("handshake");
        let mut client = Conn::from_raw(tcp, Role::Client, &Config::default(), leftover);
        let before = rss();
        client.set_write_deadline(Some(Instant::now() + Duration::from_secs(2)));
        let mut sent = 0u64;
        let mut peak = before;
        let mut i = 0;
        let end = loop {
            if sent >= TOTAL {
                break None;
            }
            match client.write_message(message(i)).await {
                Ok(()) => sent += MESSAGE as u64,
                Err(e) => break Some(e),
            }
            i += 1;
            peak = peak.max(rss());
        };
        silent.abort();
        assert!(matches!(end, Some(Error::Timeout)), "{end:?} after {sent}");
        assert!(sent < MAX_SENT, "{} MiB taken", sent >> 20);
        let growth = peak.saturating_sub(before);
        assert!(
            growth < MAX_RSS_GROWTH,
            "memory grew by {} MiB",
            growth >> 20
        );
    })
    .await;
}

/// A peer that sends pings as fast as it can and never reads the pongs: the server
/// keeps reading (it has to, to see the pings) but must stop once the unsent pongs
/// fill its queue, instead of queueing a pong for every ping it is sent.
#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_is_pushed_back() {
    let _serial = SERIAL.lock().await;
    bounded(async {
        let (mut server, client) = server_and_silent_client().await;
        let before = rss();
        let reader = tokio::spawn(async move {
            // No data message ever comes: this only runs the ping handler.
            let r = server.read_message().await;
            (r, server)
        });
        // 125-byte pings, masked: 131 bytes on the wire, 127 bytes of pong each.
        let mut ping = vec![0x89u8, 0x80 | 125, 1, 2, 3, 4];
        ping.extend((0..125).map(|i| (i as u8) ^ [1, 2, 3, 4][i % 4]));
        let batch: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 8192)
            .collect();
        let (mut rd, mut wr) = client.into_split();
        let written = AtomicU64::new(0);
        let flood = async {
            // Up to 1 GiB of pings, bounded in time below.
            while written.load(Ordering::Relaxed) < TOTAL {
                if wr.write_all(&batch).await.is_err() {
                    break;
                }
                written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        };
        if tokio::time::timeout(Duration::from_millis(2500), flood)
            .await
            .is_ok()
        {
            panic!("the server took all of the pings");
        }
        // The server stopped reading: only the socket buffers' worth went out.
        let written = written.load(Ordering::Relaxed);
        assert!(
            written < MAX_FLOOD,
            "{} MiB of pings were taken from a peer that reads no pongs",
            written >> 20
        );
        let growth = rss().saturating_sub(before);
        assert!(
            growth < MAX_RSS_GROWTH,
            "memory grew by {} MiB while pongs could not be sent",
            growth >> 20
        );
        assert!(!reader.is_finished(), "the server's read ended");
        // Reading the pongs now lets the server go on: some arrive.
        let mut sink = vec![0u8; 1 << 16];
        let n = step("pongs", rd.read(&mut sink)).await.expect("read");
        assert!(
            n > 0 && sink[0] == 0x8A,
            "expected a pong, got {:x?}",
            &sink[..n.min(8)]
        );
        reader.abort();
    })
    .await;
}
