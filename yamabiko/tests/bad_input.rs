//! Bad input from a peer: every violation is answered with the right close code, the
//! TCP connection is then closed, the server sees a typed error, and nothing panics.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use yamabiko::proto::handshake::{accept_key, build_response, parse_request, validate_request};
use yamabiko::proto::OpCode;
use yamabiko::{CloseCode, Config, Conn, Error, ProtocolError, Role, Upgrader};

const KEY: [u8; 4] = [0x0A, 0x0B, 0x0C, 0x0D];

/// A masked frame.
fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, Some(KEY), payload)
}

/// A masked close frame with a code and reason bytes.
fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    masked(OpCode::Close, true, &payload)
}

/// A header only: opcode, FIN, masked, claiming `len` bytes of payload (none follow).
fn header_only(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out
}

/// Sends `wire` to an echo server built from `upgrader`, expects a close frame with
/// `code` followed by the end of the TCP connection, and returns the server's error.
async fn violation(upgrader: Upgrader, wire: &[u8], code: u16) -> Error {
    let (addr, server) = echo_server(upgrader).await;
    let mut raw = RawClient::connect(addr).await;
    raw.send_raw(wire).await;
    let reason = raw.expect_close(code).await;
    assert!(reason.len() <= 123);
    join(server).await.expect("upgrade")
}

fn protocol_error(e: &Error) -> &ProtocolError {
    match e {
        Error::Protocol(p) => p,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn unmasked_client_frame() {
    bounded(async {
        let wire = frame(OpCode::Text, true, None, b"not masked");
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::UnmaskedFrame);
    })
    .await
}

#[tokio::test]
async fn reserved_bits() {
    bounded(async {
        for bit in [0x40u8, 0x20, 0x10] {
            let mut wire = masked(OpCode::Binary, true, b"rsv");
            wire[0] |= bit;
            let e = violation(Upgrader::new(), &wire, 1002).await;
            assert_eq!(
                protocol_error(&e),
                &ProtocolError::ReservedBits,
                "bit {bit:#x}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn reserved_opcodes() {
    bounded(async {
        for op in [0x3u8, 0x7, 0xB, 0xF] {
            let mut wire = header_only(op, true, 4);
            wire.extend_from_slice(b"\0\0\0\0");
            let e = violation(Upgrader::new(), &wire, 1002).await;
            assert_eq!(protocol_error(&e), &ProtocolError::ReservedOpcode(op));
        }
    })
    .await
}

#[tokio::test]
async fn control_frame_too_long() {
    bounded(async {
        let wire = masked(OpCode::Ping, true, &[b'p'; 126]);
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::ControlFrameTooLong);
        // 125 bytes is fine.
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut raw = RawClient::connect(addr).await;
        raw.send(OpCode::Ping, true, &[b'p'; 125]).await;
        assert_eq!(raw.recv_frame().await.payload.len(), 125);
        raw.send_close(1000, b"").await;
        raw.expect_close(1000).await;
        join(server).await.expect("upgrade");
    })
    .await
}

#[tokio::test]
async fn fragmented_control_frame() {
    bounded(async {
        let wire = masked(OpCode::Ping, false, b"half a ping");
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::FragmentedControlFrame);
    })
    .await
}

#[tokio::test]
async fn continuation_without_start() {
    bounded(async {
        let wire = masked(OpCode::Continuation, true, b"orphan");
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::UnexpectedContinuation);
    })
    .await
}

#[tokio::test]
async fn new_data_frame_mid_message() {
    bounded(async {
        for second in [OpCode::Text, OpCode::Binary] {
            let mut wire = masked(OpCode::Text, false, b"first half");
            wire.extend(masked(second, true, b"intruder"));
            let e = violation(Upgrader::new(), &wire, 1002).await;
            assert_eq!(protocol_error(&e), &ProtocolError::ExpectedContinuation);
        }
    })
    .await
}

#[tokio::test]
async fn invalid_utf8_text() {
    bounded(async {
        let wire = masked(OpCode::Text, true, b"bad \xff text");
        let e = violation(Upgrader::new(), &wire, 1007).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidUtf8);
        // A code point truncated at the end of the message.
        let wire = masked(OpCode::Text, true, b"cut \xE2\x82");
        let e = violation(Upgrader::new(), &wire, 1007).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidUtf8);
    })
    .await
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments() {
    bounded(async {
        // A valid prefix (E2 82 could become "€"), then a byte that cannot continue it.
        let mut wire = masked(OpCode::Text, false, b"price \xE2\x82");
        wire.extend(masked(OpCode::Continuation, true, b"A"));
        let e = violation(Upgrader::new(), &wire, 1007).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidUtf8);
    })
    .await
}

#[tokio::test]
async fn invalid_utf8_fails_fast() {
    bounded(async {
        // The message never finishes: the first impossible byte is enough to fail.
        let wire = masked(OpCode::Text, false, b"ok so far \xC0");
        let e = violation(Upgrader::new(), &wire, 1007).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidUtf8);
    })
    .await
}

#[tokio::test]
async fn invalid_utf8_close_reason() {
    bounded(async {
        let e = violation(Upgrader::new(), &close(1000, b"bye \xff"), 1007).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidUtf8);
    })
    .await
}

#[tokio::test]
async fn invalid_close_codes() {
    bounded(async {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            let e = violation(Upgrader::new(), &close(code, b""), 1002).await;
            assert_eq!(
                protocol_error(&e),
                &ProtocolError::InvalidCloseCode(code),
                "code {code}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn one_byte_close_payload() {
    bounded(async {
        let wire = masked(OpCode::Close, true, &[0x03]);
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidClosePayload);
    })
    .await
}

#[tokio::test]
async fn invalid_64_bit_length() {
    bounded(async {
        let wire = header_only(0x2, true, 1 << 63);
        let e = violation(Upgrader::new(), &wire, 1002).await;
        assert_eq!(protocol_error(&e), &ProtocolError::InvalidLength);
    })
    .await
}

#[tokio::test]
async fn frame_over_max_frame_size() {
    bounded(async {
        let upgrader = Upgrader::new().max_frame_size(1024);
        // Only the header: the server must refuse before waiting for the payload.
        let e = violation(upgrader, &header_only(0x2, true, 1025), 1009).await;
        assert_eq!(
            protocol_error(&e),
            &ProtocolError::FrameTooLarge { limit: 1024 }
        );
    })
    .await
}

#[tokio::test]
async fn huge_frame_header_is_refused_at_once() {
    bounded(async {
        // 2^40 bytes claimed with the default limits: answered from the header alone,
        // so nothing of that size is allocated or awaited.
        let start = Instant::now();
        let e = violation(Upgrader::new(), &header_only(0x2, true, 1 << 40), 1009).await;
        assert_eq!(
            protocol_error(&e),
            &ProtocolError::FrameTooLarge { limit: 16 << 20 }
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // With no frame limit, the message limit refuses it the same way.
        let upgrader = Upgrader::new()
            .max_frame_size(usize::MAX)
            .max_message_size(1 << 20);
        let e = violation(upgrader, &header_only(0x1, true, 1 << 40), 1009).await;
        assert_eq!(
            protocol_error(&e),
            &ProtocolError::MessageTooLarge { limit: 1 << 20 }
        );
    })
    .await
}

#[tokio::test]
async fn message_over_max_message_size() {
    bounded(async {
        let upgrader = Upgrader::new().max_frame_size(4096).max_message_size(8192);
        // Two fragments within the frame limit, then a header that would pass the
        // message limit.
        let mut wire = masked(OpCode::Binary, false, &[1u8; 4096]);
        wire.extend(masked(OpCode::Continuation, false, &[2u8; 4000]));
        wire.extend(header_only(0x0, true, 4000));
        let e = violation(upgrader, &wire, 1009).await;
        assert_eq!(
            protocol_error(&e),
            &ProtocolError::MessageTooLarge { limit: 8192 }
        );
    })
    .await
}

#[tokio::test]
async fn data_after_close_is_ignored() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut raw = RawClient::connect(addr).await;
        let mut wire = close(1000, b"done");
        wire.extend(masked(OpCode::Text, true, b"after close"));
        raw.send_raw(&wire).await;
        raw.expect_close(1000).await;
        let end = join(server).await.expect("upgrade");
        assert!(
            matches!(&end, Error::Closed(f) if f.code == CloseCode::NORMAL),
            "{end:?}"
        );
    })
    .await
}

#[tokio::test]
async fn abrupt_disconnect_mid_frame() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut raw = RawClient::connect(addr).await;
        let wire = masked(OpCode::Binary, true, &[9u8; 1000]);
        raw.send_raw(&wire[..500]).await;
        drop(raw);
        let end = join(server).await.expect("upgrade");
        assert!(
            matches!(&end, Error::Closed(f) if f.code == CloseCode::ABNORMAL),
            "{end:?}"
        );
    })
    .await
}

/// The client side applies the same rules: a masked frame from a server is refused with
/// 1002 (the server here is hand-written from the sans-IO handshake functions).
#[tokio::test]
async fn client_rejects_masked_server_frame() {
    bounded(async {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(fake_server(listener));
        let (mut client, _) = connect_with(addr, &Config::default(), &[], &http::HeaderMap::new())
            .await
            .expect("connect");
        let r = step("read", client.read_message()).await;
        assert!(
            matches!(r, Err(Error::Protocol(ProtocolError::MaskedFrame))),
            "{r:?}"
        );
        drop(client);
        // What the client sent back: a masked close frame with 1002.
        let reply = join(server).await;
        let conn_reply = reply.expect("close frame");
        assert_eq!(conn_reply, CloseCode::PROTOCOL_ERROR);
    })
    .await
}

/// Accepts one client, answers its handshake, sends a masked text frame and returns the
/// close code the client replies with.
async fn fake_server(listener: TcpListener) -> Option<CloseCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tcp, _) = listener.accept().await.expect("accept");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let request = loop {
        let n = tcp.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "client went away");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((req, _)) = parse_request(&buf, 8192).expect("request") {
            break req;
        }
    };
    let offer = validate_request(&request).expect("valid request");
    let response = build_response(
        &accept_key(offer.key.as_bytes()),
        None,
        None,
        &http::HeaderMap::new(),
    );
    tcp.write_all(&response).await.expect("response");
    tcp.write_all(&frame(OpCode::Text, true, Some(KEY), b"masked!"))
        .await
        .expect("frame");
    // Read the client's reply as a server would.
    let mut conn = Conn::from_raw(tcp, Role::Server, &Config::default(), Default::default());
    match conn.read_message().await {
        Err(Error::Protocol(ProtocolError::InvalidCloseCode(_))) => None,
        Err(Error::Closed(f)) => Some(f.code),
        other => panic!("expected the client's close frame, got {other:?}"),
    }
}
