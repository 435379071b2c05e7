//! `yamabiko echo --broadcast` on a free loopback port: every message reaches every
//! connection, the sender included, unchanged and with its opcode; a connection that
//! never reads is closed (`--on-slow close`) without holding up the others.

mod common;

use common::spawn_logging_addr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use yamabiko::{Dialer, Message};

const WAIT: Duration = Duration::from_secs(20);

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test]
async fn every_message_goes_to_every_connection() {
    let (_server, addr) = spawn_logging_addr(
        &[
            "echo",
            "--broadcast",
            "--listen",
            "127.0.0.1:0",
            "--single-thread",
        ],
        WAIT,
    )
    .await;
    let url = format!("ws://{addr}/");
    let mut conns = Vec::new();
    for _ in 0..3 {
        let (conn, _) = step("dial", Dialer::new().dial(&url)).await.expect("dial");
        conns.push(conn);
    }
    // Each connection is subscribed by the time its handshake's answer was written.
    let sent = [
        Message::text("hello, everyone"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("x".repeat(70_000)),
    ];
    for (i, m) in sent.iter().enumerate() {
        conns[i % 3].write_message(m.clone()).await.unwrap();
        for c in &mut conns {
            assert_eq!(&step("broadcast", c.read_message()).await.unwrap(), m);
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_reads_is_closed_and_the_others_go_on() {
    let (_server, addr) = spawn_logging_addr(
        &[
            "echo",
            "--broadcast",
            "--listen",
            "127.0.0.1:0",
            "--single-thread",
            "--max-queued",
            "65536",
            "--on-slow",
            "close",
            "--slow-close-code",
            "1013",
            "--slow-grace",
            "200ms",
        ],
        WAIT,
    )
    .await;
    let url = format!("ws://{addr}/");
    // The stalled one: a handshake, then nothing read (a small receive buffer).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = step("connect", socket.connect(addr.parse().unwrap()))
        .await
        .unwrap();
    let (stalled, _) = step(
        "stalled handshake",
        Dialer::new().dial_with_stream(tcp, &url),
    )
    .await
    .unwrap();
    let (mut talker, _) = step("dial", Dialer::new().dial(&url)).await.unwrap();
    // 4 MiB in 64 KiB messages: far more than the stalled one's socket and queue.
    let payload = Message::binary(vec![7u8; 65536]);
    for _ in 0..64 {
        talker.write_message(payload.clone()).await.unwrap();
        assert_eq!(
            step("own message", talker.read_message()).await.unwrap(),
            payload
        );
    }
    // The stalled connection was given up: reading it now ends in a close frame
    // (1013) after some data, or a reset, within the bound.
    let mut tcp = stalled.into_inner().expect("no other handle");
    let mut buf = vec![0u8; 1 << 16];
    step("the stalled connection to end", async {
        while let Ok(1..) = tcp.read(&mut buf).await {}
    })
    .await;
}
