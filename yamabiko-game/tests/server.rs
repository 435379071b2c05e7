//! The game server over real loopback sockets, with the library's `Dialer` as the
//! page: joining, snapshots framed once for everyone, inputs applied at the next
//! tick, reconnection within the grace period, takeover, expiry, the lobby, bad input
//! and a stalled reader.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use yamabiko::{Conn, Dialer, Error, Message};
use yamabiko_game::protocol::client::{ClientMsg, Input};
use yamabiko_game::protocol::server::{ServerMsg, Snapshot, Welcome};
use yamabiko_game::protocol::{close, Token};
use yamabiko_game::{GameConfig, Timing};

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(config: GameConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(yamabiko_game::serve(listener, config, shutdown.clone()));
    Server { addr, shutdown }
}

fn no_bots() -> GameConfig {
    GameConfig {
        bots: false,
        ..GameConfig::default()
    }
}

type Page = Conn<yamabiko::MaybeTlsStream>;

async fn dial(server: &Server) -> Page {
    let (conn, _) = Dialer::new()
        .dial(&format!("ws://{}/ws", server.addr))
        .await
        .expect("dial");
    conn
}

async fn send<S>(page: &mut Conn<S>, msg: ClientMsg)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    page.write_message(Message::binary(msg.encode()))
        .await
        .expect("send");
}

/// The next message, raw and decoded.
async fn recv_raw(page: &mut Page) -> (Vec<u8>, ServerMsg) {
    let msg = tokio::time::timeout(WAIT, page.read_message())
        .await
        .expect("a message in time")
        .expect("a message");
    let Message::Binary(bytes) = msg else {
        panic!("text from the server")
    };
    let decoded = ServerMsg::decode(&bytes).expect("a well-formed message");
    (bytes.to_vec(), decoded)
}

async fn recv(page: &mut Page) -> ServerMsg {
    recv_raw(page).await.1
}

/// Reads until `pick` returns something (bounded by WAIT overall).
async fn until<T>(page: &mut Page, mut pick: impl FnMut(&ServerMsg) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let msg = recv(page).await;
        if let Some(t) = pick(&msg) {
            return t;
        }
    }
    panic!("not seen in time");
}

async fn snapshot(page: &mut Page) -> Snapshot {
    until(page, |m| match m {
        ServerMsg::Snapshot(s) => Some(s.clone()),
        _ => None,
    })
    .await
}

fn join(room: &str, name: &str, token: Option<Token>) -> ClientMsg {
    ClientMsg::Join {
        room: room.into(),
        name: name.into(),
        spectate: false,
        token,
    }
}

async fn join_as(server: &Server, room: &str, name: &str) -> (Page, Welcome) {
    let mut page = dial(server).await;
    send(&mut page, join(room, name, None)).await;
    let welcome = until(&mut page, |m| match m {
        ServerMsg::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    (page, welcome)
}

/// Waits for the close frame and returns its code.
async fn closed_with(page: &mut Page) -> u16 {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "not closed in time");
        match tokio::time::timeout(WAIT, page.read_message()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(Error::Closed(frame))) => return frame.code.0,
            Ok(Err(e)) => panic!("ended without a close frame: {e}"),
            Err(_) => panic!("not closed in time"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_joins_and_an_input_is_applied_at_the_next_tick() {
    let server = start(no_bots()).await;
    let (mut page, welcome) = join_as(&server, "t", "あい<b>").await;
    assert_eq!(welcome.you, Some(0));
    assert_ne!(welcome.token, [0; 16]);
    assert_eq!(welcome.room, "t");
    assert_eq!(welcome.params.tick_hz, 30);
    assert_eq!(welcome.seats.len(), 1);
    assert_eq!(welcome.seats[0].name, "あい<b>", "names are kept as given");
    let mut late = 0;
    // Toward the farther wall, so that a spawn near one cannot stop the circle; the
    // same way every time (a turn would first brake the circle, which may then not
    // move for a tick).
    let mut rightward = None;
    for seq in 1..=10u32 {
        let before = snapshot(&mut page).await;
        let x0 = before.records[0].x;
        let rightward = *rightward.get_or_insert_with(|| i32::from(x0) < welcome.params.width / 2);
        send(
            &mut page,
            ClientMsg::Input(Input {
                seq,
                dx: if rightward { 127 } else { -127 },
                dy: 0,
                view_tick: before.tick,
            }),
        )
        .await;
        let after = until(&mut page, |m| match m {
            ServerMsg::Snapshot(s) if s.records[0].ack == seq as u8 => Some(s.clone()),
            _ => None,
        })
        .await;
        let x1 = after.records[0].x;
        assert!(
            if rightward { x1 > x0 } else { x1 < x0 },
            "the circle moved toward the farther wall: {x0} → {x1} (rightward: {rightward})"
        );
        // Sent right after tick T arrived: applied at tick T+1, unless the machine
        // was too busy to deliver it within a tick.
        if after.tick != before.tick + 1 {
            late += 1;
        }
        assert!(
            after.tick <= before.tick + 3,
            "{} → {}",
            before.tick,
            after.tick
        );
    }
    assert!(late <= 3, "{late} of 10 inputs missed the next tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_player_and_spectator_gets_the_same_snapshot_bytes() {
    let server = start(GameConfig::default()).await;
    let (mut a, _) = join_as(&server, "same", "a").await;
    let (mut b, _) = join_as(&server, "same", "b").await;
    let mut s = dial(&server).await;
    send(
        &mut s,
        ClientMsg::Join {
            room: "same".into(),
            name: String::new(),
            spectate: true,
            token: None,
        },
    )
    .await;
    let w = until(&mut s, |m| match m {
        ServerMsg::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    assert_eq!(w.you, None, "a spectator has no seat");
    assert_eq!(w.token, [0; 16]);
    assert_eq!(w.seats.len(), 6, "two people and four bots");
    let mut seen: Vec<HashMap<u32, Vec<u8>>> = vec![HashMap::new(), HashMap::new(), HashMap::new()];
    for _ in 0..40 {
        for (i, page) in [&mut a, &mut b, &mut s].into_iter().enumerate() {
            let (bytes, msg) = recv_raw(page).await;
            if let ServerMsg::Snapshot(snap) = msg {
                assert_eq!(snap.records.len(), 6);
                assert!(bytes.len() <= 8 + 16 * 8);
                seen[i].insert(snap.tick, bytes);
            }
        }
    }
    let mut common = 0;
    for (tick, bytes) in &seen[0] {
        if let (Some(b), Some(s)) = (seen[1].get(tick), seen[2].get(tick)) {
            assert_eq!(bytes, b, "tick {tick}");
            assert_eq!(bytes, s, "tick {tick}");
            common += 1;
        }
    }
    assert!(common >= 10, "{common} ticks seen by all three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_who_comes_back_within_the_grace_period_gets_the_seat_back() {
    let server = start(no_bots()).await;
    let (mut a, wa) = join_as(&server, "grace", "a").await;
    let (mut b, wb) = join_as(&server, "grace", "b").await;
    let (sa, sb) = (wa.you.unwrap(), wb.you.unwrap());
    // a moves a little, then drops.
    for seq in 1..=5 {
        send(
            &mut a,
            ClientMsg::Input(Input {
                seq,
                dx: 0,
                dy: 127,
                view_tick: 0,
            }),
        )
        .await;
    }
    until(&mut a, |m| match m {
        ServerMsg::Snapshot(s) if s.records.iter().any(|r| r.slot == sa && r.ack == 5) => Some(()),
        _ => None,
    })
    .await;
    drop(a);
    let (away_tick, away_score) = until(&mut b, |m| match m {
        ServerMsg::Presence {
            slot,
            away: true,
            tick,
            score,
        } if *slot == sa => Some((*tick, *score)),
        _ => None,
    })
    .await;
    let frozen = until(&mut b, |m| match m {
        ServerMsg::Snapshot(s) if s.tick > away_tick => {
            s.records.iter().find(|r| r.slot == sa).copied()
        }
        _ => None,
    })
    .await;
    assert!(frozen.away);
    // Back, with the token.
    let mut a2 = dial(&server).await;
    send(&mut a2, join("grace", "a", Some(wa.token))).await;
    let w2 = until(&mut a2, |m| match m {
        ServerMsg::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    assert_eq!(w2.you, Some(sa), "same seat");
    assert_eq!(w2.token, wa.token, "same token");
    let me = w2.seats.iter().find(|s| s.slot == sa).unwrap();
    assert_eq!(me.score, away_score, "the score waited");
    assert_eq!(w2.seats.len(), 2, "no second avatar");
    // b hears that a is back.
    until(&mut b, |m| match m {
        ServerMsg::Presence {
            slot, away: false, ..
        } if *slot == sa => Some(()),
        _ => None,
    })
    .await;
    let snap = until(&mut a2, |m| match m {
        ServerMsg::Snapshot(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(snap.records.len(), 2, "still two circles");
    let mine = snap.records.iter().find(|r| r.slot == sa).unwrap();
    assert!(!mine.away);
    assert_eq!((mine.x, mine.y), (frozen.x, frozen.y), "same position");
    assert_eq!(mine.ack, 0, "the new connection numbers its inputs from 1");
    assert!(snap.records.iter().any(|r| r.slot == sb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_token_takes_the_seat_over() {
    let server = start(no_bots()).await;
    let (mut a, wa) = join_as(&server, "over", "a").await;
    let mut a2 = dial(&server).await;
    send(&mut a2, join("over", "a", Some(wa.token))).await;
    let w2 = until(&mut a2, |m| match m {
        ServerMsg::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    assert_eq!(w2.you, wa.you);
    assert_eq!(w2.seats.len(), 1);
    assert_eq!(closed_with(&mut a).await, close::TAKEN_OVER);
    // The old connection's end does not send the seat away.
    let later = snapshot(&mut a2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = until(&mut a2, |m| match m {
        ServerMsg::Snapshot(s) if s.tick > later.tick + 3 => Some(s.clone()),
        _ => None,
    })
    .await;
    assert!(!s.records[0].away);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_is_freed_after_the_grace_period() {
    let server = start(GameConfig {
        grace: Duration::from_millis(300),
        ..no_bots()
    })
    .await;
    let (a, wa) = join_as(&server, "expire", "a").await;
    let (mut b, _) = join_as(&server, "expire", "b").await;
    drop(a);
    let slot = wa.you.unwrap();
    until(&mut b, |m| match m {
        ServerMsg::Left { slot: s } if *s == slot => Some(()),
        _ => None,
    })
    .await;
    // The token is worth nothing now: a new seat, a new token.
    let mut a2 = dial(&server).await;
    send(&mut a2, join("expire", "a", Some(wa.token))).await;
    let w2 = until(&mut a2, |m| match m {
        ServerMsg::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    assert_ne!(w2.token, wa.token);
    assert_eq!(
        w2.seats
            .iter()
            .find(|s| Some(s.slot) == w2.you)
            .unwrap()
            .score,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_frees_the_seat_at_once_and_the_lobby_lists_rooms() {
    let server = start(GameConfig::default()).await;
    let (mut a, wa) = join_as(&server, "alpha", "a").await;
    assert_eq!(wa.seats.len(), 6, "bots fill the room to six");
    assert_eq!(wa.seats.iter().filter(|s| s.bot).count(), 5);
    let mut lobby = dial(&server).await;
    send(&mut lobby, ClientMsg::Lobby).await;
    let rooms = until(&mut lobby, |m| match m {
        ServerMsg::Lobby(rooms) if !rooms.is_empty() => Some(rooms.clone()),
        _ => None,
    })
    .await;
    assert_eq!(rooms[0].name, "alpha");
    assert_eq!((rooms[0].players, rooms[0].bots), (6, 5));
    // A second person: one bot makes way.
    let (_b, wb) = join_as(&server, "alpha", "b").await;
    assert_eq!(wb.seats.iter().filter(|s| s.bot).count(), 4);
    let rooms = until(&mut lobby, |m| match m {
        ServerMsg::Lobby(rooms) if rooms.first().is_some_and(|r| r.bots == 4) => {
            Some(rooms.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(rooms[0].players, 6);
    // a leaves for the lobby: the seat is gone at once, a bot takes it.
    send(&mut a, ClientMsg::Leave).await;
    send(&mut a, ClientMsg::Lobby).await;
    until(&mut a, |m| match m {
        ServerMsg::Lobby(rooms) => Some(rooms.clone()),
        _ => None,
    })
    .await;
    let rooms = until(&mut lobby, |m| match m {
        ServerMsg::Lobby(rooms) if rooms.first().is_some_and(|r| r.bots == 5) => {
            Some(rooms.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(rooms[0].players, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_close_with_their_codes() {
    let server = start(no_bots()).await;
    let cases: Vec<(Message, u16)> = vec![
        (Message::text("hello"), close::TEXT_NOT_ACCEPTED),
        (Message::binary(vec![0x7f]), close::BAD_MESSAGE),
        (Message::binary(Vec::<u8>::new()), close::BAD_MESSAGE),
        (Message::binary(vec![0x01, 99]), close::UNSUPPORTED_VERSION),
        (
            Message::binary(ClientMsg::Input(Input::default()).encode()),
            close::OUT_OF_ORDER,
        ),
        (
            Message::binary(vec![0x02, 1, 0, 1, b'r', 2, 0xff, 0xfe]),
            close::INVALID_TEXT,
        ),
        (
            Message::binary(vec![0x02, 1, 0, 1, b'r']),
            close::BAD_MESSAGE,
        ),
        (Message::binary(vec![0u8; 1000]), 1009),
    ];
    for (msg, code) in cases {
        let mut page = dial(&server).await;
        let shown = format!("{:?}", msg.as_bytes());
        page.write_message(msg).await.unwrap();
        assert_eq!(closed_with(&mut page).await, code, "{shown}");
    }
    // A second join while seated is out of order.
    let (mut page, _) = join_as(&server, "x", "x").await;
    send(&mut page, join("y", "x", None)).await;
    assert_eq!(closed_with(&mut page).await, close::OUT_OF_ORDER);
    // Floods are cut off.
    let (mut page, _) = join_as(&server, "x", "x").await;
    for seq in 0..400 {
        let input = ClientMsg::Input(Input {
            seq,
            ..Input::default()
        });
        if page
            .write_message(Message::binary(input.encode()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(closed_with(&mut page).await, close::TOO_MANY_MESSAGES);
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_stats_are_served() {
    let server = start(no_bots()).await;
    let page = http_get(server.addr, "/?room=a&name=b").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"));
    assert!(page.contains("Content-Security-Policy: default-src 'self'"));
    assert!(page.contains("<canvas id=\"arena\">"));
    for path in [
        "/app.js",
        "/sim.js",
        "/netcode.js",
        "/protocol.js",
        "/render.js",
        "/game.css",
    ] {
        assert!(
            http_get(server.addr, path)
                .await
                .starts_with("HTTP/1.1 200 OK"),
            "{path}"
        );
    }
    assert!(http_get(server.addr, "/nope")
        .await
        .starts_with("HTTP/1.1 404"));
    let (_a, _) = join_as(&server, "stats", "a").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = http_get(server.addr, "/stats").await;
    let body = stats.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["rooms"], 1);
    assert_eq!(json["players"], 1);
    assert_eq!(json["connections"], 1);
    assert!(json["ticks"].as_u64().unwrap() >= 3);
    assert!(json["snapshots"].as_u64().unwrap() >= 3);
    assert!(json["cpu_us"].as_u64().unwrap() > 0);
    assert!(!json["tick_us"].as_array().unwrap().is_empty());
}

/// A page that stops reading (with a small receive buffer, so the server's socket
/// fills quickly) is skipped by latest-wins and then dropped at the write deadline;
/// the others keep getting every tick on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_dropped_and_does_not_hold_the_room_back() {
    let server = start(GameConfig {
        tick_hz: 120,
        bot_fill: 16,
        timing: Timing {
            write_timeout: Duration::from_millis(300),
            ..Timing::default()
        },
        ..GameConfig::default()
    })
    .await;
    let (mut fast, _) = join_as(&server, "stall", "fast").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let (mut slow, _) = Dialer::new()
        .dial_with_stream(tcp, &format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    send(
        &mut slow,
        ClientMsg::Join {
            room: "stall".into(),
            name: String::new(),
            spectate: true,
            token: None,
        },
    )
    .await;
    // `slow` never reads again. `fast` keeps reading for a while and must see every
    // tick, close to on time.
    let start_snap = snapshot(&mut fast).await;
    let started = Instant::now();
    let mut last = start_snap.tick;
    let mut gaps = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let s = snapshot(&mut fast).await;
        if s.tick != last + 1 {
            gaps += 1;
        }
        last = s.tick;
    }
    let ticks = last - start_snap.tick;
    assert!(ticks >= 400, "{ticks} ticks in 6 s at 120 Hz");
    assert!(gaps <= ticks / 20, "{gaps} gaps in {ticks} ticks");
    let stats = http_get(server.addr, "/stats").await;
    let body = stats.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(json["slow_closed"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        json["snapshots_replaced"].as_u64().unwrap() >= 1,
        "latest-wins skipped snapshots while the socket was full: {json}"
    );
    assert_eq!(json["spectators"], 0, "the stalled spectator is gone");
    drop(slow);
}
