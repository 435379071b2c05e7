//! The sans-IO echo server against yamabiko's own blocking client (which speaks the
//! protocol through `Conn`), and against a client made of the sans-IO handshake and
//! encoder that sends what a well-behaved peer never would. Run by `cargo test`.

use super::*;
use std::net::SocketAddr;
use std::time::Instant;
use yamabiko::proto::FrameHeader;
use yamabiko::{CloseCode, Control, Dialer, Error, Message, MessageKind};

const WAIT: Duration = Duration::from_secs(10);

/// The server on a loopback port, for `conns` connections.
fn start(conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(conns) {
            let tcp = tcp.unwrap();
            std::thread::spawn(move || serve(tcp));
        }
    });
    addr
}

#[test]
fn it_echoes_answers_pings_and_closes_like_a_websocket_server() {
    let addr = start(1);
    let (mut conn, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    conn.set_read_deadline(Instant::now() + WAIT);
    let pongs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = pongs.clone();
    conn.set_pong_handler(move |_, data| {
        assert_eq!(&data[..], b"are you there");
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });

    conn.write_text("hello, sans-IO").unwrap();
    assert_eq!(
        conn.read_message().unwrap(),
        Message::text("hello, sans-IO")
    );
    conn.write_binary(vec![0u8, 1, 2, 255]).unwrap();
    assert_eq!(
        conn.read_message().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );

    // A message in many fragments (the writer's buffer is 4 KiB), with a ping between.
    let text = "日本語のテキスト。".repeat(2000);
    let mut w = conn.next_writer(MessageKind::Text);
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
    conn.write_control(Control::ping("are you there"), Instant::now() + WAIT)
        .unwrap();
    assert_eq!(conn.read_message().unwrap(), Message::text(text));
    conn.write_text("after the ping").unwrap();
    assert_eq!(
        conn.read_message().unwrap(),
        Message::text("after the ping")
    );
    assert_eq!(pongs.load(std::sync::atomic::Ordering::SeqCst), 1);

    conn.close_with(CloseCode::NORMAL, "bye", WAIT)
        .expect("the close handshake");
}

#[test]
fn protocol_violations_and_bad_requests_get_their_codes() {
    let addr = start(3);

    // A client frame without a mask (§5.1): 1002.
    let (mut tcp, mut buf) = sans_io_client(addr);
    let mut frame = BytesMut::new();
    encode_frame(&mut frame, OpCode::Text, true, false, None, b"unmasked");
    tcp.write_all(&frame).unwrap();
    assert_eq!(
        read_close_code(&mut tcp, &mut buf),
        CloseCode::PROTOCOL_ERROR
    );

    // Invalid UTF-8 in a text message (§8.1): 1007.
    let (mut tcp, mut buf) = sans_io_client(addr);
    let mut frame = BytesMut::new();
    encode_frame(
        &mut frame,
        OpCode::Text,
        true,
        false,
        Some([1, 2, 3, 4]),
        b"\xff\xfe",
    );
    tcp.write_all(&frame).unwrap();
    assert_eq!(
        read_close_code(&mut tcp, &mut buf),
        CloseCode::INVALID_PAYLOAD
    );

    // A page of another site: 403.
    let err = Dialer::new()
        .header(
            yamabiko::http::header::ORIGIN,
            yamabiko::http::HeaderValue::from_static("https://evil.example"),
        )
        .dial_blocking(&format!("ws://{addr}/"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadHandshake(r) if r.status() == 403),
        "{err}"
    );
}

/// A client made of the sans-IO handshake functions: the connection after the 101,
/// and the bytes read past it.
fn sans_io_client(addr: SocketAddr) -> (TcpStream, BytesMut) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let key = handshake::generate_key();
    let request =
        handshake::build_request(&addr.to_string(), "/", &key, &[], None, &HeaderMap::new());
    tcp.write_all(&request).unwrap();
    let mut buf = BytesMut::new();
    let response = loop {
        if let Some((response, used)) = handshake::parse_response(&buf, MAX_HEAD).unwrap() {
            let _ = buf.split_to(used);
            break response;
        }
        assert!(
            read_more(&mut tcp, &mut buf).unwrap() > 0,
            "closed during the handshake"
        );
    };
    handshake::validate_response(&response, &key, &[], false).unwrap();
    (tcp, buf)
}

/// Reads frames until the server's close frame; returns its code.
fn read_close_code(tcp: &mut TcpStream, buf: &mut BytesMut) -> CloseCode {
    loop {
        if let Some((header, used)) = FrameHeader::parse(buf).unwrap() {
            if buf.len() >= used + header.len as usize {
                let frame = buf.split_to(used + header.len as usize);
                if header.opcode == OpCode::Close {
                    let close = CloseFrame::parse(&frame[used..]).unwrap().unwrap();
                    return close.code;
                }
                continue;
            }
        }
        assert!(
            read_more(tcp, buf).unwrap() > 0,
            "closed without a close frame"
        );
    }
}
