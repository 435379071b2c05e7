//! Shared pieces of the integration tests: a one-connection test server, a WebSocket
//! client built from the public handshake functions, and a raw client that writes and
//! reads frames byte by byte so tests can send what a well-behaved peer never would.
//!
//! Everything runs on 127.0.0.1 and every wait is bounded by a timeout.

#![allow(dead_code)] // each test file uses a different subset

pub mod halfopen;

use bytes::{Buf, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use yamabiko::proto::encoder::encode_frame;
use yamabiko::proto::handshake::{build_request, generate_key, parse_response, validate_response};
use yamabiko::proto::{FrameHeader, OpCode};
use yamabiko::{CloseCode, Config, Conn, Role, Upgrader};

/// Upper bound for any single test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a single wait inside a test (a frame, an EOF, a task).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a test body, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out")
}

/// Awaits `f` for at most [`STEP_TIMEOUT`].
pub async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Awaits a spawned task, propagating its panic.
pub async fn join<T>(h: JoinHandle<T>) -> T {
    match step("server task", h).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("server task failed: {e}"),
    }
}

/// A listener on an ephemeral loopback port.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

/// Accepts one connection, upgrades it with `upgrader` and runs `handler` on it. The
/// task's output is the upgrade error or the handler's result.
pub async fn serve_one<F, Fut, R>(
    upgrader: Upgrader,
    handler: F,
) -> (SocketAddr, JoinHandle<Result<R, yamabiko::Error>>)
where
    F: FnOnce(Conn<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send,
    R: Send + 'static,
{
    let (l, addr) = listener().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let conn = upgrader.upgrade(tcp).await?;
        Ok(handler(conn).await)
    });
    (addr, task)
}

/// A server that echoes every message until reading fails, then returns the error.
pub async fn echo_server(
    upgrader: Upgrader,
) -> (
    SocketAddr,
    JoinHandle<Result<yamabiko::Error, yamabiko::Error>>,
) {
    serve_one(upgrader, |mut conn| async move {
        loop {
            match conn.read_message().await {
                Ok(m) => {
                    if let Err(e) = conn.write_message(m).await {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    })
    .await
}

/// What a handshake returned besides the connection.
pub struct Handshake {
    /// The server's response head.
    pub response: http::Response<()>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

/// Performs the client handshake on `tcp`; returns the response and the bytes read past it.
pub async fn client_handshake(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    protocols: &[&str],
    extra: &http::HeaderMap,
) -> Result<(Handshake, BytesMut), yamabiko::Error> {
    let key = generate_key();
    let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
    let request = build_request(&addr.to_string(), "/", &key, &protocols, None, extra);
    tcp.write_all(&request).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let (response, used) = loop {
        if let Some(r) = parse_response(&buf, 8192)? {
            break r;
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    };
    buf.advance(used);
    let protocol = validate_response(&response, &key, &protocols, false)?;
    Ok((Handshake { response, protocol }, buf))
}

/// Connects a WebSocket client (a `Conn` in the client role) with `config`.
pub async fn connect_with(
    addr: SocketAddr,
    config: &Config,
    protocols: &[&str],
    extra: &http::HeaderMap,
) -> Result<(Conn<TcpStream>, Handshake), yamabiko::Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    let (hs, leftover) = client_handshake(&mut tcp, addr, protocols, extra).await?;
    Ok((Conn::from_raw(tcp, Role::Client, config, leftover), hs))
}

/// Connects a WebSocket client with the default configuration.
pub async fn connect(addr: SocketAddr) -> Conn<TcpStream> {
    let (conn, _) = step(
        "client handshake",
        connect_with(addr, &Config::default(), &[], &http::HeaderMap::new()),
    )
    .await
    .expect("client handshake");
    conn
}

/// One frame as read off the wire by [`RawClient`].
#[derive(Debug)]
pub struct RawFrame {
    /// The header.
    pub header: FrameHeader,
    /// The (unmasked) payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<CloseCode> {
        assert_eq!(self.header.opcode, OpCode::Close, "not a close frame");
        match self.payload.as_slice() {
            [hi, lo, ..] => Some(CloseCode(u16::from_be_bytes([*hi, *lo]))),
            _ => None,
        }
    }
}

/// What the raw client saw when it expected a frame.
#[derive(Debug)]
pub enum Received {
    /// A whole frame.
    Frame(RawFrame),
    /// The server closed the TCP connection (EOF or reset) at a frame boundary.
    Eof,
}

/// A client that speaks frames byte by byte.
pub struct RawClient {
    /// The TCP connection.
    pub tcp: TcpStream,
    /// Bytes read but not yet parsed.
    pub buf: BytesMut,
}

impl RawClient {
    /// Connects and performs a valid handshake.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let mut tcp = step("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let (_, buf) = step(
            "raw handshake",
            client_handshake(&mut tcp, addr, &[], &http::HeaderMap::new()),
        )
        .await
        .expect("raw handshake");
        RawClient { tcp, buf }
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        step("write", self.tcp.write_all(bytes))
            .await
            .expect("write");
    }

    /// Writes a masked frame (what a client must send).
    pub async fn send(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let wire = frame(opcode, fin, Some([0x11, 0x22, 0x33, 0x44]), payload);
        self.send_raw(&wire).await;
    }

    /// Writes a close frame with `code` and `reason`.
    pub async fn send_close(&mut self, code: u16, reason: &[u8]) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        self.send(OpCode::Close, true, &payload).await;
    }

    /// Reads the next frame, or notes that the connection ended.
    pub async fn recv(&mut self) -> Received {
        step("a frame from the server", async {
            loop {
                if let Some((header, used)) = FrameHeader::parse(&self.buf).expect("server frame") {
                    let total = used + header.len as usize;
                    if self.buf.len() >= total {
                        assert!(header.mask.is_none(), "server frames must not be masked");
                        self.buf.advance(used);
                        let payload = self.buf.split_to(header.len as usize).to_vec();
                        return Received::Frame(RawFrame { header, payload });
                    }
                }
                match self.tcp.read_buf(&mut self.buf).await {
                    Ok(0) => {
                        assert!(self.buf.is_empty(), "connection ended inside a frame");
                        return Received::Eof;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        assert!(self.buf.is_empty(), "connection reset inside a frame");
                        return Received::Eof;
                    }
                    Err(e) => panic!("read: {e}"),
                }
            }
        })
        .await
    }

    /// Reads the next frame, which must exist.
    pub async fn recv_frame(&mut self) -> RawFrame {
        match self.recv().await {
            Received::Frame(f) => f,
            Received::Eof => panic!("connection closed, expected a frame"),
        }
    }

    /// Asserts that the server closes the TCP connection next, without another frame.
    pub async fn expect_eof(&mut self) {
        match self.recv().await {
            Received::Eof => {}
            Received::Frame(f) => panic!("expected end of connection, got {f:?}"),
        }
    }

    /// Asserts that the next frame is a close frame with `code`, and that the server
    /// then closes the TCP connection. Returns the close reason.
    pub async fn expect_close(&mut self, code: u16) -> String {
        let f = self.recv_frame().await;
        assert_eq!(f.header.opcode, OpCode::Close, "expected close, got {f:?}");
        assert_eq!(f.close_code(), Some(CloseCode(code)), "close frame {f:?}");
        let reason = String::from_utf8(f.payload[2..].to_vec()).expect("UTF-8 close reason");
        self.expect_eof().await;
        reason
    }
}

/// Encodes one frame; `mask` decides whether it is masked.
pub fn frame(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, opcode, fin, false, mask, payload);
    out.to_vec()
}

/// Reads a whole HTTP response (head and body) until the server closes the connection.
pub async fn read_http_response(tcp: &mut TcpStream) -> (http::Response<()>, String) {
    let mut buf = Vec::new();
    step("HTTP response", async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the response (unread request bytes) ends it too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => {
                    break
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    })
    .await;
    let (response, used) = parse_response(&buf, 8192)
        .expect("valid HTTP response")
        .expect("complete HTTP response head");
    let body = String::from_utf8(buf[used..].to_vec()).expect("UTF-8 body");
    (response, body)
}

/// A deterministic test pattern of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
