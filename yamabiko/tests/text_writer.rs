//! Streamed text messages (`next_writer(Text)`), async and blocking, over loopback:
//! invalid UTF-8 never reaches the wire. The write that supplies it (or `finish`, for a
//! message that ends inside a character) fails, the message on the wire is ended with
//! valid content, and the connection stays usable — the peer, which checks UTF-8 like
//! any browser, reads every message intact and never closes with 1007.
//!
//! The writers' fragment size is the default 4 KiB, so 4,096 bytes fill a fragment.

mod common;

use common::*;
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use yamabiko::{Dialer, Error, Message, MessageKind, Upgrader};

const FRAGMENT: usize = 4096;

fn a(n: usize) -> Vec<u8> {
    vec![b'a'; n]
}

/// What the peer must read, in order, after the writer side ran its cases.
fn expected() -> Vec<Message> {
    let mut whole = a(FRAGMENT - 1);
    whole.extend_from_slice("éb".as_bytes());
    vec![
        // 1. A fragment of 'a's went out; the message ends inside a character.
        Message::text(String::from_utf8(a(FRAGMENT)).unwrap()),
        Message::text("after 1"),
        // 2. A fragment went out; then an invalid byte.
        Message::text(String::from_utf8(a(FRAGMENT)).unwrap()),
        Message::text("after 2"),
        // 3. The first fragment filled up inside a character ('é' = C3 A9, C3 last);
        //    then a byte that cannot continue it. C3 must not have been sent.
        Message::text(String::from_utf8(a(FRAGMENT - 1)).unwrap()),
        Message::text("after 3"),
        // 4. Dropped after a fragment, inside a character.
        Message::text(String::from_utf8(a(FRAGMENT)).unwrap()),
        Message::text("after 4"),
        // 5. Valid text whose character straddles the fragment boundary, intact.
        Message::text(String::from_utf8(whole).unwrap()),
        // 6. Invalid before any fragment went out: nothing at all is sent.
        Message::text("after 6"),
    ]
}

#[tokio::test]
async fn async_text_writer_never_sends_invalid_utf8() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            // 1. The case: `finish` fails, the drop must not send 0xC3.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(&a(FRAGMENT)).await.unwrap();
            w.write_all(&[0xC3]).await.unwrap(); // a valid start, so far
            let end = w.finish().await;
            assert!(matches!(end, Err(Error::InvalidInput(_))), "{end:?}");
            conn.write_text("after 1").await.unwrap();

            // 2. The write that supplies the invalid byte fails; then the writer drops.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(&a(FRAGMENT)).await.unwrap();
            let bad = w.write_all(&[0xFF]).await.expect_err("0xFF accepted");
            assert_eq!(bad.kind(), ErrorKind::InvalidData);
            let again = w
                .write_all(b"more")
                .await
                .expect_err("write after the error");
            assert_eq!(again.kind(), ErrorKind::InvalidData);
            drop(w);
            conn.write_text("after 2").await.unwrap();

            // 3. An unfinished character at the fragment boundary is held back.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(&a(FRAGMENT - 1)).await.unwrap();
            w.write_all(&[0xC3]).await.unwrap();
            w.write_all(b"x").await.expect_err("C3 78 accepted");
            let end = w.finish().await;
            assert!(matches!(end, Err(Error::InvalidInput(_))), "{end:?}");
            conn.write_text("after 3").await.unwrap();

            // 4. Dropped after a fragment went out, inside a character.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(&a(FRAGMENT)).await.unwrap();
            w.write_all(&[0xE2, 0x82]).await.unwrap();
            drop(w);
            conn.write_text("after 4").await.unwrap();

            // 5. Valid: 'é' straddles the boundary.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(&a(FRAGMENT - 1)).await.unwrap();
            w.write_all("é".as_bytes()).await.unwrap();
            w.write_all(b"b").await.unwrap();
            w.finish().await.unwrap();

            // 6. Invalid before any fragment: the message is discarded.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(b"short \xFF")
                .await
                .expect_err("invalid accepted");
            drop(w);
            conn.write_text("after 6").await.unwrap();
            conn
        })
        .await;
        let mut client = connect(addr).await;
        for want in expected() {
            let got = step("a message", client.read_message()).await.unwrap();
            assert_eq!(got, want);
        }
        // Still open in both directions: the server echoes nothing, but hears us.
        client.write_text("still there?").await.unwrap();
        let mut server = join(server).await.expect("upgrade");
        let heard = step("server read", server.read_message()).await.unwrap();
        assert_eq!(heard, Message::text("still there?"));
    })
    .await
}

#[test]
fn blocking_text_writer_never_sends_invalid_utf8() {
    let wait = Duration::from_secs(10);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        conn.set_write_deadline(Some(Instant::now() + wait));

        // 1. `finish` fails before the message is marked finished, and ends it.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(&a(FRAGMENT)).unwrap();
        w.write_all(&[0xC3]).unwrap();
        assert!(matches!(w.finish(), Err(Error::InvalidInput(_))));
        conn.write_text("after 1").unwrap();

        // 2.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(&a(FRAGMENT)).unwrap();
        let bad = w.write_all(&[0xFF]).expect_err("0xFF accepted");
        assert_eq!(bad.kind(), ErrorKind::InvalidData);
        drop(w);
        conn.write_text("after 2").unwrap();

        // 3.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(&a(FRAGMENT - 1)).unwrap();
        w.write_all(&[0xC3]).unwrap();
        w.write_all(b"x").expect_err("C3 78 accepted");
        assert!(matches!(w.finish(), Err(Error::InvalidInput(_))));
        conn.write_text("after 3").unwrap();

        // 4.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(&a(FRAGMENT)).unwrap();
        w.write_all(&[0xE2, 0x82]).unwrap();
        drop(w);
        conn.write_text("after 4").unwrap();

        // 5.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(&a(FRAGMENT - 1)).unwrap();
        w.write_all("é".as_bytes()).unwrap();
        w.write_all(b"b").unwrap();
        w.finish().unwrap();

        // 6.
        let mut w = conn.next_writer(MessageKind::Text);
        w.write_all(b"short \xFF").expect_err("invalid accepted");
        drop(w);
        conn.write_text("after 6").unwrap();

        conn.set_read_deadline(Some(Instant::now() + wait));
        conn.read_message().unwrap()
    });
    let (mut client, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    client.set_read_deadline(Some(Instant::now() + wait));
    for want in expected() {
        assert_eq!(client.read_message().unwrap(), want);
    }
    client.write_text("still there?").unwrap();
    assert_eq!(server.join().unwrap(), Message::text("still there?"));
}
