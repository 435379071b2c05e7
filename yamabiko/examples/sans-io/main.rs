//! A WebSocket echo server on plain `std::net::TcpStream`s, built from yamabiko's
//! sans-IO core ([`yamabiko::proto`]) alone: no `Conn`, no tokio. The same handshake
//! functions, decoder and encoder that yamabiko's own async and blocking connections
//! are made of, driven by a blocking loop of its own — the way you would drive them
//! from another event loop (mio, io_uring, a game engine's frame loop).
//!
//! ```sh
//! cargo run -p yamabiko --example sans-io                 # ws://127.0.0.1:9001
//! cargo run -p yamabiko --example sans-io -- 127.0.0.1:9100
//! cargo test -p yamabiko --example sans-io                # its tests
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;
use yamabiko::bytes::BytesMut;
use yamabiko::http::HeaderMap;
use yamabiko::proto::encoder::encode_frame;
use yamabiko::proto::handshake::{self, HandshakeError};
use yamabiko::proto::{CloseFrame, Decoder, DecoderConfig, Incoming, OpCode, Role};

/// Largest request head read (→ 431 beyond it).
const MAX_HEAD: usize = 8192;
/// Largest message echoed (→ close 1009 beyond it): the memory one connection may hold.
const MAX_MESSAGE: u64 = 1 << 20;
/// A peer silent this long is dropped.
const IDLE: Duration = Duration::from_secs(60);

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    println!("sans-io echo on ws://{}", listener.local_addr()?);
    for tcp in listener.incoming() {
        let tcp = tcp?;
        std::thread::spawn(move || {
            if let Err(e) = serve(tcp) {
                eprintln!("sans-io: {e}");
            }
        });
    }
    Ok(())
}

/// One connection: the opening handshake, then echo until the close.
pub fn serve(mut tcp: TcpStream) -> io::Result<()> {
    tcp.set_read_timeout(Some(IDLE))?;
    tcp.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);

    // RFC 6455 §4.2.1: read the request head; what follows it belongs to the frames.
    let request = loop {
        match handshake::parse_request(&buf, MAX_HEAD) {
            Ok(Some((request, used))) => {
                let _ = buf.split_to(used);
                break request;
            }
            Ok(None) if read_more(&mut tcp, &mut buf)? > 0 => {}
            Ok(None) => return Ok(()), // gone before the end of the head
            Err(e) => return refuse(&mut tcp, &e),
        }
    };
    // §4.2.1 and §10.2: a valid upgrade, from a page of this site (or no browser).
    let offer = match handshake::validate_request(&request) {
        Ok(_) if !handshake::is_same_origin(&request) => {
            return refuse(&mut tcp, &HandshakeError::OriginRejected)
        }
        Ok(offer) => offer,
        Err(e) => return refuse(&mut tcp, &e),
    };
    // §4.2.2: 101 with the accept key; no subprotocol, no extension.
    let accept = handshake::accept_key(offer.key.as_bytes());
    tcp.write_all(&handshake::build_response(
        &accept,
        None,
        None,
        &HeaderMap::new(),
    ))?;

    let mut decoder = Decoder::new(DecoderConfig {
        role: Role::Server,
        max_frame_size: MAX_MESSAGE,
        max_message_size: MAX_MESSAGE,
    });
    let mut message = BytesMut::new();
    let mut out = BytesMut::new();
    loop {
        match decoder.decode(&mut buf) {
            // A piece of a message (pieces of one message come in order; text is
            // already checked to be UTF-8): echo the message once it is whole.
            Ok(Some(Incoming::Data {
                kind,
                payload,
                last,
            })) => {
                message.extend_from_slice(&payload);
                if last {
                    // Server frames are not masked (§5.1).
                    encode_frame(&mut out, kind.opcode(), true, false, None, &message);
                    message.clear();
                }
            }
            // §5.5.2: answer a ping with a pong carrying the same data.
            Ok(Some(Incoming::Ping(data))) => {
                encode_frame(&mut out, OpCode::Pong, true, false, None, &data);
            }
            Ok(Some(Incoming::Pong(_))) => {}
            // §5.5.1: answer a close with a close (the same code), then hang up first,
            // as a server does (§7.1.1).
            Ok(Some(Incoming::Close(frame))) => {
                let reply = frame.map(|f| CloseFrame::new(f.code, ""));
                return close(&mut tcp, &mut out, reply);
            }
            // Nothing more in the buffer: send what is due, then read.
            Ok(None) => {
                if !out.is_empty() {
                    tcp.write_all(&out)?;
                    out.clear();
                }
                if read_more(&mut tcp, &mut buf)? == 0 {
                    return Ok(()); // gone without a close frame
                }
            }
            // §7.1.7: fail the connection with the violation's close code (1002, 1007,
            // 1009).
            Err(violation) => return close(&mut tcp, &mut out, Some(violation.close_frame())),
        }
    }
}

/// Reads what is there (at most 4 KiB) onto the end of `buf`; 0 at the end of stream.
fn read_more(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = tcp.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Sends what is due and a close frame, then ends the connection.
fn close(tcp: &mut TcpStream, out: &mut BytesMut, frame: Option<CloseFrame>) -> io::Result<()> {
    let mut payload = Vec::new();
    if let Some(frame) = frame {
        // Codes that may not be sent were refused by the decoder already.
        frame.encode(&mut payload).map_err(io::Error::other)?;
    }
    encode_frame(out, OpCode::Close, true, false, None, &payload);
    tcp.write_all(out)?;
    tcp.shutdown(Shutdown::Write)
}

/// Answers a refused handshake with its HTTP error (400, 403, 405, 426, 431).
fn refuse(tcp: &mut TcpStream, e: &HandshakeError) -> io::Result<()> {
    tcp.write_all(&e.to_http_response())?;
    tcp.shutdown(Shutdown::Write)
}

#[cfg(test)]
mod tests;
