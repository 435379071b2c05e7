//! The connection API over real loopback TCP: messages, streaming, control frames and
//! their handlers, deadlines, limits, closing, split halves, Stream/Sink, JSON,
//! subprotocols and addresses.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use yamabiko::proto::OpCode;
use yamabiko::{
    is_close_error, is_unexpected_close_error, CloseCode, CloseFrame, Config, Conn, Control, Error,
    Message, MessageKind, ProtocolError, Upgrader,
};

fn closed_with(e: &Error, code: u16) -> bool {
    matches!(e, Error::Closed(f) if f.code == CloseCode(code))
}

#[tokio::test]
async fn read_write_message_round_trip() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut client = connect(addr).await;

        let big_binary = Bytes::from(pattern(1 << 20));
        let big_text: String = "yamabiko é 山彦 🎌 ".repeat((1 << 20) / 24);
        let messages = vec![
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text(""),
            Message::binary(Vec::new()),
            Message::text("héllo wörld — 山彦"),
            Message::Binary(big_binary.clone()),
            Message::text(big_text.clone()),
        ];
        for m in &messages {
            step("write", client.write_message(m.clone()))
                .await
                .expect("write");
            let back = step("read", client.read_message()).await.expect("read");
            assert_eq!(back.kind(), m.kind());
            assert_eq!(back.len(), m.len());
            assert_eq!(&back, m);
        }
        // Text arrives as validated UTF-8: usable as &str without another check.
        client.write_text("三つ目").await.unwrap();
        match client.read_message().await.unwrap() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), "三つ目");
                assert_eq!(t.chars().count(), 3);
            }
            other => panic!("expected text, got {other:?}"),
        }
        client
            .write_binary(Bytes::from_static(b"\xff\xfe"))
            .await
            .unwrap();
        assert_eq!(
            client.read_message().await.unwrap(),
            Message::binary(Bytes::from_static(b"\xff\xfe"))
        );

        step("close", client.close_with(1000, "", Duration::from_secs(5)))
            .await
            .expect("close handshake");
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1000), "server ended with {end:?}");
    })
    .await
}

/// Large frames take other paths than small ones: a client masks a payload nobody
/// else holds in place and sends it without a copy, a reader that has just seen a large
/// frame reads the next one straight into a buffer of that size. Mixed sizes, several
/// frames in one read and shared payloads must all come through intact.
#[tokio::test]
async fn large_and_small_messages_mixed_round_trip_without_touching_shared_payloads() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut client = connect(addr).await;

        for size in [70_000, 10, 200_000, 300_000, 5, 65_536, 20_000, 1 << 20, 3] {
            // Owned and unique: masked in place when large.
            client
                .write_message(Message::binary(pattern(size)))
                .await
                .expect("write");
            let back = step("read", client.read_message()).await.expect("read");
            assert_eq!(back.as_bytes(), &pattern(size)[..], "size {size}");
        }
        // Several large frames queued together, arriving back to back.
        let sizes = [65_536, 17, 65_536, 40_000, 65_536];
        for &size in &sizes {
            client
                .queue_message(Message::binary(pattern(size)))
                .unwrap();
        }
        client.flush().await.unwrap();
        for &size in &sizes {
            let back = step("read", client.read_message()).await.expect("read");
            assert_eq!(back.as_bytes(), &pattern(size)[..], "queued size {size}");
        }
        // Shared with the caller: must go out masked from a copy, the caller's bytes
        // unchanged.
        let shared = Bytes::from(pattern(100_000));
        client
            .write_message(Message::Binary(shared.clone()))
            .await
            .unwrap();
        let back = client.read_message().await.unwrap();
        assert_eq!(&shared[..], &pattern(100_000)[..]);
        assert_eq!(back.as_bytes(), &shared[..]);
        // Large owned text: masked in place too, and valid UTF-8 on the other side.
        let text = "山彦 echo ".repeat(10_000);
        client
            .write_message(Message::text(text.clone()))
            .await
            .unwrap();
        match client.read_message().await.unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), text),
            other => panic!("expected text, got {other:?}"),
        }

        step("close", client.close_with(1000, "", Duration::from_secs(5)))
            .await
            .expect("close handshake");
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1000), "server ended with {end:?}");
    })
    .await
}

#[tokio::test]
async fn fragmented_text_is_reassembled_and_validated() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            conn.read_message().await
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        // "€" (E2 82 AC) split across three frames, with a ping in between.
        raw.send(OpCode::Text, false, b"price: \xE2").await;
        raw.send(OpCode::Ping, true, b"between").await;
        raw.send(OpCode::Continuation, false, b"\x82").await;
        raw.send(OpCode::Continuation, true, b"\xAC5").await;
        let pong = raw.recv_frame().await;
        assert_eq!(pong.header.opcode, OpCode::Pong);
        assert_eq!(pong.payload, b"between");
        let msg = join(server).await.expect("upgrade").expect("read");
        assert_eq!(msg, Message::text("price: €5"));
    })
    .await
}

#[tokio::test]
async fn message_writer_rejects_invalid_utf8_text() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let mut w = conn.next_writer(MessageKind::Text);
            let bad = w.write_all(b"ok \xff").await;
            assert_eq!(
                bad.expect_err("invalid UTF-8 accepted").kind(),
                std::io::ErrorKind::InvalidData
            );
            drop(w);
            // An unfinished code point is only an error at the end of the message.
            let mut w = conn.next_writer(MessageKind::Text);
            w.write_all(b"half \xE2\x82").await.expect("valid prefix");
            let end = w.finish().await;
            assert!(matches!(end, Err(Error::InvalidInput(_))), "{end:?}");
        })
        .await;
        let _client = connect(addr).await;
        join(server).await.expect("upgrade");
    })
    .await
}

#[tokio::test]
async fn next_reader_streams_large_message_in_pieces() {
    const TOTAL: usize = 20 << 20;
    const FRAGMENT: usize = 64 << 10;
    bounded(async {
        let upgrader = Upgrader::new()
            .max_frame_size(1 << 20)
            .read_buffer_size(64 << 10);
        let (addr, server) = serve_one(upgrader, |mut conn| async move {
            // First message through next_chunk: pieces arrive as frames do.
            let mut reader = conn.next_reader().await.expect("next_reader");
            assert_eq!(reader.kind(), MessageKind::Binary);
            let (mut len, mut pieces, mut largest, mut intact) = (0usize, 0usize, 0usize, true);
            while let Some(chunk) = reader.next_chunk().await.expect("chunk") {
                intact &= chunk
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((len + i) % 251) as u8);
                len += chunk.len();
                pieces += 1;
                largest = largest.max(chunk.len());
            }
            drop(reader);
            // Second message through AsyncRead with a small buffer.
            let mut reader = conn.next_reader().await.expect("next_reader");
            let mut buf = vec![0u8; 8192];
            let mut len2 = 0usize;
            loop {
                let n = reader.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                intact &= buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((len2 + i) % 251) as u8);
                len2 += n;
            }
            drop(reader);
            conn.write_text(format!("{len} {len2} {pieces} {largest} {intact}"))
                .await
                .expect("report");
            (len, len2, pieces, largest, intact)
        })
        .await;

        let config = Config {
            write_buffer_size: FRAGMENT,
            ..Config::default()
        };
        let (mut client, _) = connect_with(addr, &config, &[], &http::HeaderMap::new())
            .await
            .expect("connect");
        let data = pattern(TOTAL);
        for _ in 0..2 {
            let mut w = client.next_writer(MessageKind::Binary);
            for piece in data.chunks(100_000) {
                w.write_all(piece).await.expect("write");
            }
            w.finish().await.expect("finish");
        }
        let report = step("report", client.read_message()).await.expect("report");
        let (len, len2, pieces, largest, intact) = join(server).await.expect("upgrade");
        assert_eq!(
            report,
            Message::text(format!("{len} {len2} {pieces} {largest} {intact}"))
        );
        assert_eq!(len, TOTAL);
        assert_eq!(len2, TOTAL);
        assert!(intact, "payload corrupted");
        assert!(pieces >= TOTAL / FRAGMENT, "only {pieces} pieces");
        assert!(largest <= FRAGMENT, "a piece of {largest} bytes");
    })
    .await
}

/// Reads frames until one with FIN set that is not a control frame; returns them all.
async fn read_message_frames(raw: &mut RawClient) -> Vec<RawFrame> {
    let mut frames = Vec::new();
    loop {
        let f = raw.recv_frame().await;
        let done = f.header.fin && !f.header.opcode.is_control();
        frames.push(f);
        if done || frames.len() > 10_000 {
            return frames;
        }
    }
}

/// Checks the fragmentation rules on `frames` (data frames only) and returns the payload.
fn check_fragments(frames: &[&RawFrame], first: OpCode) -> Vec<u8> {
    assert!(frames.len() > 1, "expected several fragments");
    let mut data = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let expected = if i == 0 { first } else { OpCode::Continuation };
        assert_eq!(f.header.opcode, expected, "frame {i}");
        assert_eq!(f.header.fin, i == frames.len() - 1, "FIN on frame {i}");
        data.extend_from_slice(&f.payload);
    }
    data
}

#[tokio::test]
async fn next_writer_sends_fragments() {
    bounded(async {
        let text = "fragmented text, 山彦. ".repeat(200);
        let binary = pattern(10_000);
        let (t, b) = (text.clone(), binary.clone());
        let upgrader = Upgrader::new().write_buffer_size(1024);
        let (addr, server) = serve_one(upgrader, |mut conn| async move {
            let mut w = conn.next_writer(MessageKind::Text);
            // Small writes: fragments go out as the 1 KiB buffer fills.
            for piece in t.as_bytes().chunks(100) {
                w.write_all(piece).await.expect("write");
            }
            w.finish().await.expect("finish");
            let mut w = conn.next_writer(MessageKind::Binary);
            w.write_all(&b).await.expect("write");
            w.flush().await.expect("flush");
            w.shutdown()
                .await
                .expect("shutdown sends the last fragment");
            drop(w);
            // A message that fits the buffer is one frame.
            let mut w = conn.next_writer(MessageKind::Binary);
            w.write_all(b"small").await.expect("write");
            w.finish().await.expect("finish");
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        let frames = read_message_frames(&mut raw).await;
        let got = check_fragments(&frames.iter().collect::<Vec<_>>(), OpCode::Text);
        assert_eq!(got, text.as_bytes());
        assert!(frames.iter().all(|f| f.payload.len() <= 1024));
        let frames = read_message_frames(&mut raw).await;
        assert!(frames.len() >= 10, "{} frames", frames.len());
        let got = check_fragments(&frames.iter().collect::<Vec<_>>(), OpCode::Binary);
        assert_eq!(got, binary);
        let small = raw.recv_frame().await;
        assert_eq!(small.header.opcode, OpCode::Binary);
        assert!(small.header.fin);
        assert_eq!(small.payload, b"small");
        join(server).await.expect("upgrade");
    })
    .await
}

#[tokio::test]
async fn write_control_goes_between_fragments() {
    bounded(async {
        let data = pattern(5000);
        let d = data.clone();
        let upgrader = Upgrader::new().write_buffer_size(1024);
        let (addr, server) = serve_one(upgrader, |mut conn| async move {
            let handle = conn.control_handle();
            let (go, wait) = oneshot::channel::<()>();
            let pinger = tokio::spawn(async move {
                wait.await.expect("signal");
                handle
                    .write_control(Control::ping("mid-message"), None)
                    .await
            });
            let mut w = conn.next_writer(MessageKind::Binary);
            w.write_all(&d[..3000]).await.expect("write");
            // Two fragments are out and 952 bytes are buffered: ping from another task.
            go.send(()).expect("signal");
            join(pinger).await.expect("ping");
            w.write_all(&d[3000..]).await.expect("write");
            w.finish().await.expect("finish");
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        let frames = read_message_frames(&mut raw).await;
        let ping_at = frames
            .iter()
            .position(|f| f.header.opcode == OpCode::Ping)
            .expect("ping sent");
        assert_eq!(frames[ping_at].payload, b"mid-message");
        assert!(
            ping_at > 0 && ping_at < frames.len() - 1,
            "ping at {ping_at} of {}",
            frames.len()
        );
        let data_frames: Vec<&RawFrame> = frames
            .iter()
            .filter(|f| !f.header.opcode.is_control())
            .collect();
        assert_eq!(check_fragments(&data_frames, OpCode::Binary), data);
        join(server).await.expect("upgrade");
    })
    .await
}

#[tokio::test]
async fn concurrent_pings_never_split_a_frame() {
    bounded(async {
        let data = pattern(1 << 20);
        let d = data.clone();
        let upgrader = Upgrader::new().write_buffer_size(1000);
        let (addr, server) = serve_one(upgrader, |mut conn| async move {
            let handle = conn.control_handle();
            let pinger = tokio::spawn(async move {
                for i in 0..50u32 {
                    handle
                        .write_control(Control::ping(i.to_be_bytes().to_vec()), None)
                        .await
                        .expect("ping");
                    tokio::task::yield_now().await;
                }
            });
            let mut w = conn.next_writer(MessageKind::Binary);
            for piece in d.chunks(777) {
                w.write_all(piece).await.expect("write");
            }
            w.finish().await.expect("finish");
            join(pinger).await;
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        // Every frame parses (a ping inside a frame would corrupt the stream).
        let mut frames = read_message_frames(&mut raw).await;
        join(server).await.expect("upgrade");
        // Pings still queued after the final fragment.
        while frames
            .iter()
            .filter(|f| f.header.opcode == OpCode::Ping)
            .count()
            < 50
        {
            frames.push(raw.recv_frame().await);
        }
        let pings: Vec<u32> = frames
            .iter()
            .filter(|f| f.header.opcode == OpCode::Ping)
            .map(|f| u32::from_be_bytes(f.payload[..].try_into().expect("4 bytes")))
            .collect();
        assert_eq!(pings, (0..50).collect::<Vec<_>>());
        let data_frames: Vec<&RawFrame> = frames
            .iter()
            .filter(|f| !f.header.opcode.is_control())
            .collect();
        assert_eq!(check_fragments(&data_frames, OpCode::Binary), data);
    })
    .await
}

#[tokio::test]
async fn default_ping_and_pong_handlers() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut raw = RawClient::connect(addr).await;
        // Ping → pong with the same payload.
        raw.send(OpCode::Ping, true, b"are you there?").await;
        let pong = raw.recv_frame().await;
        assert_eq!(pong.header.opcode, OpCode::Pong);
        assert!(pong.header.fin);
        assert_eq!(pong.payload, b"are you there?");
        raw.send(OpCode::Ping, true, b"").await;
        let pong = raw.recv_frame().await;
        assert_eq!(pong.header.opcode, OpCode::Pong);
        assert!(pong.payload.is_empty());
        // An unsolicited pong is ignored: the next frame is the echo.
        raw.send(OpCode::Pong, true, b"unsolicited").await;
        raw.send(OpCode::Text, true, b"after pong").await;
        let echo = raw.recv_frame().await;
        assert_eq!(echo.header.opcode, OpCode::Text);
        assert_eq!(echo.payload, b"after pong");
        raw.send_close(1000, b"").await;
        raw.expect_close(1000).await;
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1000), "{end:?}");
    })
    .await
}

#[tokio::test]
async fn default_close_handler_echoes_code() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let first = conn.read_message().await.expect_err("closed");
            let again = conn.read_message().await.expect_err("still closed");
            let write = conn.write_text("too late").await;
            (first, again, write)
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        raw.send_close(4001, "bye now".as_bytes()).await;
        // gorilla's default: the same code back, without the reason.
        let reason = raw.expect_close(4001).await;
        assert_eq!(reason, "");
        let (first, again, write) = join(server).await.expect("upgrade");
        assert_eq!(first.close_frame(), Some(&CloseFrame::new(4001, "bye now")));
        assert!(is_close_error(&first, &[CloseCode(4001)]));
        assert!(!is_close_error(&first, &[CloseCode::NORMAL]));
        assert!(!is_unexpected_close_error(&first, &[CloseCode(4001)]));
        assert!(is_unexpected_close_error(&first, &[CloseCode::NORMAL]));
        assert!(closed_with(&again, 4001), "{again:?}");
        assert!(matches!(write, Err(Error::CloseSent)), "{write:?}");
    })
    .await
}

#[tokio::test]
async fn close_without_status_is_reported_as_1005() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut raw = RawClient::connect(addr).await;
        raw.send(OpCode::Close, true, b"").await;
        let reply = raw.recv_frame().await;
        assert_eq!(reply.header.opcode, OpCode::Close);
        assert!(reply.payload.is_empty(), "reply {reply:?}");
        raw.expect_eof().await;
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1005), "{end:?}");
    })
    .await
}

#[tokio::test]
async fn custom_ping_and_close_handlers() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let pings = Arc::new(AtomicUsize::new(0));
            let seen = pings.clone();
            conn.set_ping_handler(move |ctx, data| {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(data);
                ctx.send(Control::pong(reply));
                Ok(())
            });
            conn.set_close_handler(|ctx, frame| {
                assert_eq!(frame, Some(&CloseFrame::new(1001, "leaving")));
                ctx.send(Control::close(4000, "custom"));
                Ok(())
            });
            let msg = conn.read_message().await.expect("message");
            let end = conn.read_message().await.expect_err("closed");
            (msg, end, pings.load(Ordering::SeqCst))
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        raw.send(OpCode::Ping, true, b"x").await;
        let pong = raw.recv_frame().await;
        assert_eq!(pong.header.opcode, OpCode::Pong);
        assert_eq!(pong.payload, b"re:x");
        raw.send(OpCode::Binary, true, b"data").await;
        raw.send_close(1001, b"leaving").await;
        assert_eq!(raw.expect_close(4000).await, "custom");
        let (msg, end, pings) = join(server).await.expect("upgrade");
        assert_eq!(msg, Message::binary(&b"data"[..]));
        assert!(closed_with(&end, 1001), "{end:?}");
        assert_eq!(pings, 1);
    })
    .await
}

#[tokio::test]
async fn handler_error_is_returned_by_read() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            conn.set_ping_handler(|_, _| Err(Error::InvalidInput("no pings here".into())));
            conn.read_message().await
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        raw.send(OpCode::Ping, true, b"x").await;
        let r = join(server).await.expect("upgrade");
        assert!(
            matches!(r, Err(Error::InvalidInput(ref m)) if m == "no pings here"),
            "{r:?}"
        );
    })
    .await
}

#[tokio::test]
async fn pong_handler_extends_read_deadline() {
    const WAIT: Duration = Duration::from_millis(500);
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let pongs = Arc::new(AtomicUsize::new(0));
            let seen = pongs.clone();
            conn.set_pong_handler(move |ctx, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                ctx.set_read_deadline(Some(Instant::now() + WAIT));
                Ok(())
            });
            let start = Instant::now();
            conn.set_read_deadline(Some(start + WAIT));
            let msg = conn.read_message().await;
            let alive_for = start.elapsed();
            // Now the client is silent: the deadline set by the last pong fires.
            let silent = conn.read_message().await;
            (msg, alive_for, silent, pongs.load(Ordering::SeqCst))
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            raw.send(OpCode::Pong, true, b"keepalive").await;
        }
        raw.send(OpCode::Text, true, b"still here").await;
        let (msg, alive_for, silent, pongs) = join(server).await.expect("upgrade");
        assert_eq!(msg.expect("message"), Message::text("still here"));
        assert!(alive_for >= 2 * WAIT, "read returned after {alive_for:?}");
        assert!(matches!(silent, Err(Error::Timeout)), "{silent:?}");
        assert_eq!(pongs, 12);
    })
    .await
}

#[tokio::test]
async fn read_deadline_fires_and_reading_resumes() {
    bounded(async {
        let (resume, resumed) = oneshot::channel::<()>();
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let start = Instant::now();
            conn.set_read_deadline(Some(start + Duration::from_millis(200)));
            let first = conn.read_message().await;
            let waited = start.elapsed();
            // Past the deadline every read fails at once.
            let second = conn.read_message().await;
            conn.set_read_deadline(None);
            resume.send(()).expect("signal");
            let third = conn.read_message().await;
            (first, waited, second, third)
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        // Half a message before the deadline; it must not be lost by the timeout.
        raw.send(OpCode::Text, false, b"hello ").await;
        step("resume", resumed).await.expect("signal");
        raw.send(OpCode::Continuation, true, b"world").await;
        let (first, waited, second, third) = join(server).await.expect("upgrade");
        assert!(matches!(first, Err(Error::Timeout)), "{first:?}");
        assert!(
            waited >= Duration::from_millis(190),
            "timed out after {waited:?}"
        );
        assert!(matches!(second, Err(Error::Timeout)), "{second:?}");
        assert_eq!(
            third.expect("read after reset"),
            Message::text("hello world")
        );
    })
    .await
}

#[tokio::test]
async fn write_deadline_in_the_past_times_out() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut client = connect(addr).await;
        client.set_write_deadline(Some(Instant::now()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = client.write_text("never sent").await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let r = client.flush().await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let past = Instant::now() - Duration::from_millis(1);
        let r = client.write_control(Control::ping("p"), Some(past)).await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        // Cleared: writing works again, and the timed-out message never went out.
        client.set_write_deadline(None);
        client.write_text("after").await.expect("write");
        assert_eq!(client.read_message().await.unwrap(), Message::text("after"));
        client.set_write_deadline(Some(Instant::now() + Duration::from_secs(5)));
        client.write_text("in time").await.expect("write");
        assert_eq!(
            client.read_message().await.unwrap(),
            Message::text("in time")
        );
        client.close();
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1006), "{end:?}");
    })
    .await
}

#[tokio::test]
async fn read_limit_fails_with_1009() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            conn.set_read_limit(1000);
            let ok = conn.read_message().await.expect("message at the limit");
            (ok, conn.read_message().await)
        })
        .await;
        let mut client = connect(addr).await;
        client.write_binary(vec![7u8; 1000]).await.expect("write");
        client.write_binary(vec![7u8; 1001]).await.expect("write");
        let end = step("close", client.read_message())
            .await
            .expect_err("closed");
        assert!(closed_with(&end, 1009), "client saw {end:?}");
        let (ok, over) = join(server).await.expect("upgrade");
        assert_eq!(ok.len(), 1000);
        assert!(
            matches!(
                over,
                Err(Error::Protocol(ProtocolError::MessageTooLarge {
                    limit: 1000
                }))
            ),
            "{over:?}"
        );
    })
    .await
}

#[tokio::test]
async fn close_drops_without_close_frame() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            conn.write_text("last words").await.expect("write");
            conn.close();
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        let f = raw.recv_frame().await;
        assert_eq!(f.payload, b"last words");
        raw.expect_eof().await;
        join(server).await.expect("upgrade");
    })
    .await
}

#[tokio::test]
async fn close_with_performs_the_handshake() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            conn.close_with(CloseCode::GOING_AWAY, "restarting", Duration::from_secs(5))
                .await
        })
        .await;
        let mut client = connect(addr).await;
        let end = step("close", client.read_message())
            .await
            .expect_err("closed");
        assert_eq!(
            end.close_frame(),
            Some(&CloseFrame::new(1001, "restarting"))
        );
        join(server)
            .await
            .expect("upgrade")
            .expect("close handshake");
        // The server closed TCP after the handshake: the client's transport ends too.
        let again = client.read_message().await.expect_err("closed");
        assert!(closed_with(&again, 1001), "{again:?}");
    })
    .await
}

#[tokio::test]
async fn close_with_times_out_when_peer_is_silent() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let start = Instant::now();
            let r = conn
                .close_with(1000, "bye", Duration::from_millis(300))
                .await;
            (r, start.elapsed())
        })
        .await;
        let mut raw = RawClient::connect(addr).await;
        let f = raw.recv_frame().await;
        assert_eq!(f.close_code(), Some(CloseCode::NORMAL));
        assert_eq!(&f.payload[2..], b"bye");
        // Never answer: the server gives up after its timeout and drops the connection.
        let (r, took) = join(server).await.expect("upgrade");
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(took >= Duration::from_millis(290), "{took:?}");
        raw.expect_eof().await;
    })
    .await
}

#[tokio::test]
async fn close_with_rejects_invalid_code() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let client = connect(addr).await;
        let r = client.close_with(1005, "", Duration::from_secs(1)).await;
        assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1006), "{end:?}");
    })
    .await
}

#[tokio::test]
async fn split_halves_in_two_tasks() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let (mut rd, mut wr) = conn.split();
            let (tx, mut rx) = mpsc::channel::<Message>(4);
            let reader = tokio::spawn(async move {
                let end = loop {
                    match rd.read_message().await {
                        Ok(m) => {
                            if tx.send(m).await.is_err() {
                                break None;
                            }
                        }
                        Err(e) => break Some(e),
                    }
                };
                (rd, end)
            });
            let writer = tokio::spawn(async move {
                let mut n = 0;
                while let Some(m) = rx.recv().await {
                    let Message::Text(t) = m else {
                        panic!("text expected")
                    };
                    wr.write_text(t.to_uppercase()).await.expect("write");
                    n += 1;
                }
                (wr, n)
            });
            let (rd, end) = join(reader).await;
            let (wr, n) = join(writer).await;
            let conn = Conn::reunite(rd, wr).expect("same connection");
            drop(conn);
            (end, n)
        })
        .await;
        let mut client = connect(addr).await;
        let pongs = Arc::new(AtomicUsize::new(0));
        let seen = pongs.clone();
        client.set_pong_handler(move |_, data| {
            assert_eq!(&data[..], b"ping from client");
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        for i in 0..100 {
            client
                .write_text(format!("message {i}"))
                .await
                .expect("write");
            if i % 10 == 0 {
                // Answered by the server's read half through the shared writer.
                client
                    .write_control(Control::ping("ping from client"), None)
                    .await
                    .expect("ping");
            }
        }
        for i in 0..100 {
            let m = step("reply", client.read_message()).await.expect("reply");
            assert_eq!(m, Message::text(format!("MESSAGE {i}")));
        }
        client
            .close_with(1000, "done", Duration::from_secs(5))
            .await
            .expect("close handshake");
        let (end, n) = join(server).await.expect("upgrade");
        assert_eq!(n, 100);
        assert!(closed_with(end.as_ref().expect("error"), 1000), "{end:?}");
        assert_eq!(pongs.load(Ordering::SeqCst), 10);
    })
    .await
}

#[tokio::test]
async fn stream_and_sink() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let (rd, wr) = conn.split();
            // The read half is a Stream of messages, the write half a Sink.
            rd.forward(wr).await
        })
        .await;
        let mut client = connect(addr).await;
        client.send(Message::text("one")).await.expect("send");
        let mut batch = futures_util::stream::iter(["two", "three"].map(|t| Ok(Message::text(t))));
        client.send_all(&mut batch).await.expect("send_all");
        for expected in ["one", "two", "three"] {
            let m = step("next", client.next())
                .await
                .expect("a message")
                .expect("ok");
            assert_eq!(m, Message::text(expected));
        }
        // Sink::close sends a close frame (1000); the stream then ends.
        SinkExt::close(&mut client).await.expect("close");
        assert!(step("end", client.next()).await.is_none());
        join(server).await.expect("upgrade").expect("forward");
    })
    .await
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Note {
    id: u32,
    text: String,
    tags: Vec<String>,
}

#[tokio::test]
async fn json_helpers() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            let mut note: Note = conn.read_json().await.expect("json");
            note.id += 1;
            note.tags.push("seen".into());
            conn.write_json(&note).await.expect("write json");
            conn.read_json::<Note>().await
        })
        .await;
        let mut client = connect(addr).await;
        let note = Note {
            id: 41,
            text: "掲示板".into(),
            tags: vec!["a".into()],
        };
        client.write_json(&note).await.expect("write json");
        let back: Note = step("json", client.read_json()).await.expect("json");
        assert_eq!(
            back,
            Note {
                id: 42,
                text: "掲示板".into(),
                tags: vec!["a".into(), "seen".into()],
            }
        );
        // The raw text on the wire is JSON.
        client.write_text("{\"id\": \"nope\"}").await.unwrap();
        let r = join(server).await.expect("upgrade");
        assert!(matches!(r, Err(Error::Json(_))), "{r:?}");
    })
    .await
}

async fn negotiate(
    server_protocols: &[&str],
    offered: &[&str],
) -> (Option<String>, Option<String>) {
    let upgrader = Upgrader::new().subprotocols(server_protocols.iter().copied());
    let (addr, server) = serve_one(upgrader, |conn| async move {
        conn.subprotocol().map(str::to_owned)
    })
    .await;
    let (_client, hs) = connect_with(addr, &Config::default(), offered, &http::HeaderMap::new())
        .await
        .expect("handshake");
    let header = hs
        .response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header, hs.protocol);
    (hs.protocol, join(server).await.expect("upgrade"))
}

#[tokio::test]
async fn subprotocol_negotiation_follows_server_preference() {
    bounded(async {
        let v2 = Some("v2.chat".to_owned());
        assert_eq!(
            negotiate(&["v2.chat", "v1.chat"], &["v1.chat", "v2.chat"]).await,
            (v2.clone(), v2.clone())
        );
        assert_eq!(
            negotiate(&["v3.chat", "v2.chat"], &["v1.chat", "v2.chat"]).await,
            (v2.clone(), v2)
        );
        assert_eq!(negotiate(&["v2.chat"], &["other"]).await, (None, None));
        assert_eq!(negotiate(&["v2.chat"], &[]).await, (None, None));
        assert_eq!(negotiate(&[], &["v1.chat"]).await, (None, None));
    })
    .await
}

#[tokio::test]
async fn local_and_peer_addresses() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            (conn.local_addr().unwrap(), conn.peer_addr().unwrap())
        })
        .await;
        let client = connect(addr).await;
        let (server_local, server_peer) = join(server).await.expect("upgrade");
        assert_eq!(server_local, addr);
        assert_eq!(client.peer_addr().unwrap(), addr);
        assert_eq!(server_peer, client.local_addr().unwrap());
        assert!(server_peer.ip().is_loopback());
        // The stream itself is reachable too.
        let nodelay = client.with_stream(|s| s.nodelay()).expect("open").unwrap();
        assert!(!nodelay);
        assert!(client.into_inner().is_some());
    })
    .await
}

#[tokio::test]
async fn queued_messages_are_flushed_together() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut client = connect(addr).await;
        for i in 0..20 {
            client
                .queue_message(Message::text(format!("q{i}")))
                .expect("queue");
        }
        client.flush().await.expect("flush");
        for i in 0..20 {
            let m = step("echo", client.read_message()).await.unwrap();
            assert_eq!(m, Message::text(format!("q{i}")));
        }
        client.close();
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1006), "{end:?}");
    })
    .await
}

/// Regression: `Conn::write_control` (and so `close_with`) used to hold `&Conn` across
/// an await, and `Conn` is not `Sync` (its handlers are `FnMut`), so neither future
/// could be awaited inside `tokio::spawn`.
#[tokio::test]
async fn connection_futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let client = connect(addr).await;
        let task = tokio::spawn(async move {
            let mut client = client;
            assert_send(client.write_control(Control::ping("p"), None))
                .await
                .expect("ping");
            assert_send(client.write_text("t")).await.expect("write");
            assert_send(client.read_message()).await.expect("echo");
            assert_send(client.close_with(1000, "", Duration::from_secs(5))).await
        });
        join(task).await.expect("close handshake");
        let end = join(server).await.expect("upgrade");
        assert!(closed_with(&end, 1000), "{end:?}");
    })
    .await
}

/// What a newcomer reaches for after `split`: JSON, the addresses, a prepared message,
/// and putting halves back together with `?`.
#[tokio::test]
async fn split_halves_keep_json_addresses_and_reunite_with_question_mark() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let (mut read, mut write) = conn.split();
            assert_eq!(write.local_addr().unwrap(), read.local_addr().unwrap());
            let peer = read.peer_addr().unwrap();
            let mut note: Note = read.read_json().await.expect("json");
            note.id += 1;
            write.write_json(&note).await.expect("write json");
            let conn = Conn::reunite(read, write).expect("same connection");
            (peer, conn)
        })
        .await;
        let mut client = connect(addr).await;
        let note = Note {
            id: 1,
            text: "half".into(),
            tags: vec![],
        };
        client.write_json(&note).await.unwrap();
        let back: Note = step("json", client.read_json()).await.unwrap();
        assert_eq!(back.id, 2);
        let (peer, mut conn) = join(server).await.expect("upgrade");
        assert_eq!(peer, client.local_addr().unwrap());
        // A prepared message straight from the Conn, queued and flushed.
        conn.queue_prepared(&yamabiko::PreparedMessage::new("prepared"))
            .unwrap();
        conn.flush().await.unwrap();
        assert_eq!(
            step("prepared", client.read_message()).await.unwrap(),
            Message::text("prepared")
        );

        // Halves of two connections: the error gives them back, and `?` takes it.
        let (addr2, _other) = serve_one(Upgrader::new(), |conn| async move { conn }).await;
        let other = connect(addr2).await;
        let (read_a, _write_a) = conn.split();
        let (_read_b, write_b) = other.split();
        fn put_back(
            read: yamabiko::ReadHalf<tokio::net::TcpStream>,
            write: yamabiko::WriteHalf<tokio::net::TcpStream>,
        ) -> yamabiko::Result<Conn<tokio::net::TcpStream>> {
            Ok(Conn::reunite(read, write)?)
        }
        let mismatch = Conn::reunite(read_a, write_b).expect_err("different connections");
        let yamabiko::ReuniteError(read_a, write_b) = mismatch;
        let err = put_back(read_a, write_b).map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        let boxed: Box<dyn std::error::Error> = Box::new(yamabiko::ReuniteError((), ()));
        assert_eq!(
            boxed.to_string(),
            "tried to reunite the halves of two different connections"
        );
    })
    .await
}

/// `write_message` takes borrowed text and bytes of any lifetime, not only literals.
#[tokio::test]
async fn borrowed_text_and_bytes_are_messages() {
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let mut client = connect(addr).await;
        let line = String::from("a line read at run time");
        let bytes = vec![1u8, 2, 3];
        client.write_message(line.as_str()).await.unwrap();
        client.write_message(&line).await.unwrap();
        client.write_message(&bytes[..]).await.unwrap();
        client.write_message(b"raw").await.unwrap();
        client
            .write_message(yamabiko::bytes::Bytes::from(bytes.clone()))
            .await
            .unwrap();
        client.write_text(line.as_str()).await.unwrap();
        for want in [
            Message::text(line.clone()),
            Message::text(line.clone()),
            Message::binary(bytes.clone()),
            Message::binary(b"raw".to_vec()),
            Message::binary(bytes),
            Message::text(line),
        ] {
            assert_eq!(step("echo", client.read_message()).await.unwrap(), want);
        }
        client.close();
        let _ = join(server).await;
    })
    .await
}

/// Deadlines take tokio's `Instant` as well as std's.
#[tokio::test]
async fn deadlines_take_tokio_instants() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |mut conn| async move {
            conn.set_read_deadline(tokio::time::Instant::now() + Duration::from_millis(50));
            let first = conn.read_message().await;
            conn.set_read_deadline(None);
            let second = conn.read_message().await;
            (first, second)
        })
        .await;
        let mut client = connect(addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .write_control(
                Control::ping("x"),
                tokio::time::Instant::now() + STEP_TIMEOUT,
            )
            .await
            .unwrap();
        client.write_text("late").await.unwrap();
        let (first, second) = join(server).await.expect("upgrade");
        assert!(matches!(first, Err(Error::Timeout)), "{first:?}");
        assert_eq!(second.unwrap(), Message::text("late"));
    })
    .await
}
