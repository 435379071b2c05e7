//! Not a WebSocket library: the least a tokio server must do to echo the frames of
//! `yamabiko bench` — one read, unmask every whole frame in the buffer, one write of
//! all the echoes. No validation, no UTF-8 check, no control-frame handling beyond
//! answering a close, no limits: it trusts its peer, so it is only for measuring on
//! loopback. `bench/compare.sh` runs it as a reference row (FLOOR=1): what the kernel
//! and the runtime cost per message when the WebSocket work is as small as it gets.
//! Usage: `echo-floor [ADDR]`.

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const READ_CHUNK: usize = 64 * 1024;

/// The 101 response for a request, or `None` if it is not complete yet.
fn handshake(request: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(request).ok()? else {
        return None;
    };
    let key = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))?
        .value;
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    Some((len, response.into_bytes()))
}

/// Appends the unmasked echo of every whole frame at the front of `input` to `out`;
/// returns the bytes consumed and whether a close frame was among them.
fn echo_frames(input: &mut [u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut at = 0;
    let mut closed = false;
    while let Some((head, len)) = frame_bounds(&input[at..]) {
        let frame = &mut input[at..at + head + len];
        let (b0, len7) = (frame[0], frame[1] & 0x7f);
        let key = [
            frame[head - 4],
            frame[head - 3],
            frame[head - 2],
            frame[head - 1],
        ];
        let payload = &mut frame[head..];
        unmask(payload, key);
        out.push(b0);
        out.push(len7);
        out.extend_from_slice(&frame[2..head - 4]); // extended length, if any
        out.extend_from_slice(&frame[head..]);
        closed |= b0 & 0x0f == 0x8;
        at += head + len;
    }
    (at, closed)
}

/// Header length and payload length of a whole masked frame at the front of `buf`.
fn frame_bounds(buf: &[u8]) -> Option<(usize, usize)> {
    let len7 = *buf.get(1)? & 0x7f;
    let (ext, len) = match len7 {
        126 => (
            2,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            8,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (0, n as usize),
    };
    let head = 2 + ext + 4;
    (buf.len() >= head + len).then_some((head, len))
}

fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = payload.chunks_exact_mut(8);
    for w in &mut words {
        let x = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ wide;
        w.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut out = Vec::new();
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if let Some((len, response)) = handshake(&buf) {
            stream.write_all(&response).await?;
            buf.drain(..len);
            break;
        }
    }
    loop {
        let (used, closed) = echo_frames(&mut buf, &mut out);
        buf.drain(..used);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if closed {
            return Ok(());
        }
        // Room for the rest of a large frame, or for the next read.
        let need = frame_bounds(&buf)
            .map_or(0, |(h, l)| h + l)
            .max(buf.len() + READ_CHUNK);
        buf.reserve(need - buf.len());
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9004".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("echo-floor listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_whole_frames_unmasked_and_keeps_a_partial_one() {
        // RFC 6455 §5.7: a masked "Hello", then the first byte of another frame.
        let mut input = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x82,
        ];
        let mut out = Vec::new();
        assert_eq!(echo_frames(&mut input, &mut out), (11, false));
        assert_eq!(out, b"\x81\x05Hello");
    }

    #[test]
    fn answers_a_handshake() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (len, response) = handshake(req).expect("complete");
        assert_eq!(len, req.len());
        let text = String::from_utf8(response).expect("ascii");
        assert!(
            text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{text}"
        );
    }
}
