//! `yamabiko serve` over real sockets: the built binary on a free loopback port with a
//! temporary database, driven by WebSocket clients made from the library's handshake
//! functions.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yamabiko::proto::handshake::{build_request, generate_key, parse_response, validate_response};
use yamabiko::{Config, Conn, Message, Role};

const WAIT: Duration = Duration::from_secs(10);

// ---------- the server process ----------

struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    db: PathBuf,
}

impl Server {
    /// Starts `yamabiko serve` on `listen` with database `db`; waits for its address.
    fn start(db: &Path, listen: &str) -> Server {
        Self::start_with(db, listen, &[])
    }

    /// Like `start`, with extra options. The log goes to `<db>.log`.
    fn start_with(db: &Path, listen: &str, extra: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(db.with_extension("log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_yamabiko"))
            .args(["serve", "--listen", listen, "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn yamabiko serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        let Some(url) = line
            .trim()
            .strip_prefix("yamabiko board listening on http://")
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(db.with_extension("log")).unwrap_or_default();
            panic!("server did not start: {line:?} {err}");
        };
        let addr = url.trim_end_matches('/').parse().expect("address");
        Server {
            child: Some(child),
            addr,
            db: db.to_owned(),
        }
    }

    /// Stops the server with SIGTERM (graceful) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the server logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.db.with_extension("log")).unwrap_or_default()
    }

    fn restart(&mut self) {
        self.stop();
        *self = Server::start(&self.db.clone(), &self.addr.to_string());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh temporary directory for one test's database.
fn temp_db(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("yamabiko-board-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("board.db")
}

// ---------- a WebSocket client from the library's handshake pieces ----------

struct Client {
    conn: Conn<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Self::connect_with_origin(addr, None)
            .await
            .expect("websocket handshake")
    }

    async fn connect_with_origin(addr: SocketAddr, origin: Option<&str>) -> Result<Client, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Self::handshake(tcp, addr, origin).await
    }

    /// A client whose socket takes little data in before the server must wait.
    async fn connect_slow_reader(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        Self::handshake(tcp, addr, None).await.unwrap()
    }

    async fn handshake(
        mut tcp: TcpStream,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<Client, String> {
        let key = generate_key();
        let mut headers = http::HeaderMap::new();
        if let Some(o) = origin {
            headers.insert(http::header::ORIGIN, o.parse().unwrap());
        }
        let request = build_request(&addr.to_string(), "/ws", &key, &[], None, &headers);
        tcp.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut buf = bytes::BytesMut::with_capacity(1024);
        let response = loop {
            if let Some((resp, used)) = parse_response(&buf, 8192).map_err(|e| e.to_string())? {
                let _ = buf.split_to(used);
                break resp;
            }
            let n = tokio::time::timeout(WAIT, tcp.read_buf(&mut buf))
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed during handshake".into());
            }
        };
        validate_response(&response, &key, &[], false).map_err(|e| e.to_string())?;
        let conn = Conn::from_raw(tcp, Role::Client, &Config::default(), buf);
        let mut client = Client { conn };
        let hello = client.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        Ok(client)
    }

    async fn send(&mut self, v: Value) {
        self.conn
            .write_message(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    async fn send_raw(&mut self, text: &str) {
        self.conn
            .write_message(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> Value {
        let msg = tokio::time::timeout(WAIT, self.conn.read_message())
            .await
            .expect("timed out waiting for a message")
            .expect("read");
        serde_json::from_slice(msg.as_bytes()).expect("server sent JSON")
    }

    /// The next message of type `kind`, skipping others (returned too, in order).
    async fn recv_type(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        for _ in 0..1000 {
            let v = self.recv().await;
            if v["type"] == kind {
                return (v, skipped);
            }
            skipped.push(v);
        }
        panic!("no {kind} message; got {skipped:?}");
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.recv_type(kind).await.0
    }

    /// Waits for the online count of `thread` to read `n` (counts are latest-wins:
    /// intermediate ones may or may not come).
    async fn expect_online(&mut self, thread: i64, n: u64) {
        for _ in 0..100 {
            let p = self.expect("presence").await;
            if p["thread_id"].as_i64() == Some(thread) && p["online"].as_u64() == Some(n) {
                return;
            }
        }
        panic!("the online count of thread {thread} never read {n}");
    }

    /// Collects messages until `quiet` passes without one.
    async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        while let Ok(r) = tokio::time::timeout(quiet, self.conn.read_message()).await {
            let msg = r.expect("read");
            got.push(serde_json::from_slice(msg.as_bytes()).expect("JSON"));
        }
        got
    }

    async fn new_thread(&mut self, title: &str, body: &str, cid: &str) -> (i64, Value) {
        self.send(json!({"type":"new_thread","title":title,"name":"","body":body,"client_id":cid}))
            .await;
        let ack = self.expect("ack").await;
        assert_eq!(ack["client_id"], cid);
        (ack["thread"]["id"].as_i64().expect("thread id"), ack)
    }

    async fn post(&mut self, thread: i64, body: &str, cid: &str) -> Value {
        self.send(
            json!({"type":"post","thread_id":thread,"name":"tester","body":body,"client_id":cid}),
        )
        .await;
        let (ack, skipped) = self.recv_type("ack").await;
        assert!(
            skipped.iter().all(|m| m["type"] != "error"),
            "error before ack: {skipped:?}"
        );
        assert_eq!(ack["client_id"], cid);
        ack
    }

    async fn open(&mut self, thread: i64, after: Option<i64>) -> Value {
        let mut m = json!({"type":"open_thread","thread_id":thread});
        if let Some(a) = after {
            m["after"] = json!(a);
        }
        self.send(m).await;
        self.expect("thread").await
    }
}

fn ids(posts: &Value) -> Vec<i64> {
    posts
        .as_array()
        .expect("posts array")
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

// ---------- the tests ----------

#[tokio::test]
async fn post_is_acked_and_broadcast_to_other_clients() {
    let server = Server::start(&temp_db("broadcast"), "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let mut b = Client::connect(server.addr).await;

    b.send(json!({"type":"list_threads"})).await;
    let threads = b.expect("threads").await;
    assert_eq!(threads["threads"], json!([]));

    let (t, ack) = a.new_thread("Hello board", "first post", "nt1").await;
    assert_eq!(ack["post"]["no"], 1);
    assert_eq!(
        ack["post"]["name"], "名無しさん",
        "empty name gets the default"
    );
    // The list viewer learns about the new thread live.
    let upd = b.expect("thread_updated").await;
    assert_eq!(upd["thread"]["id"], t);
    assert_eq!(upd["thread"]["post_count"], 1);

    let opened = b.open(t, None).await;
    assert_eq!(opened["thread"]["title"], "Hello board");
    assert_eq!(opened["posts"].as_array().unwrap().len(), 1);
    assert_eq!(opened["has_older"], false);

    let ack = a.post(t, "second <script>alert(1)</script>", "p1").await;
    let post = b.expect("post").await;
    assert_eq!(
        post["post"], ack["post"],
        "broadcast equals the acknowledged post"
    );
    assert_eq!(post["post"]["no"], 2);
    assert_eq!(post["post"]["body"], "second <script>alert(1)</script>");

    // A third client on the list sees the thread move with its new count.
    let mut c = Client::connect(server.addr).await;
    c.send(json!({"type":"list_threads"})).await;
    let list = c.expect("threads").await;
    assert_eq!(list["threads"][0]["post_count"], 2);
    assert_eq!(list["threads"][0]["online"], 1, "b is viewing the thread");
}

#[tokio::test]
async fn online_count_and_live_reordering() {
    let server = Server::start(&temp_db("presence"), "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t1, _) = a.new_thread("one", "x", "t1").await;
    let (t2, _) = a.new_thread("two", "y", "t2").await;
    let mut list = Client::connect(server.addr).await;
    list.send(json!({"type":"list_threads"})).await;
    let l = list.expect("threads").await;
    assert_eq!(l["threads"][0]["id"], t2, "newest activity first");
    assert_eq!(l["threads"][1]["id"], t1);

    let mut v1 = Client::connect(server.addr).await;
    let opened = v1.open(t1, None).await;
    assert_eq!(opened["thread"]["online"], 1);
    list.expect_online(t1, 1).await;
    let mut v2 = Client::connect(server.addr).await;
    v2.open(t1, None).await;
    v1.expect_online(t1, 2).await;

    // A post in the older thread moves it to the top of every list.
    a.post(t1, "bump", "bump1").await;
    let upd = list.expect("thread_updated").await;
    assert_eq!(upd["thread"]["id"], t1);
    assert!(upd["thread"]["last_post_id"].as_i64() > l["threads"][0]["last_post_id"].as_i64());
    assert_eq!(upd["thread"]["online"], 2);

    drop(v2);
    v1.expect_online(t1, 1).await; // a closed tab leaves the count
}

/// Defect 1 of issue 17: every join used to send the new count to every viewer of the
/// thread, queued behind posts — 300 joins were 45,000 messages, viewers whose queue
/// filled were closed as too slow, came back and set it off again. Counts are now
/// latest-wins, at most four a second per thread: a join storm costs each viewer a few
/// counts and nobody its connection.
#[tokio::test]
async fn a_join_storm_costs_each_viewer_a_few_counts_and_nobody_its_connection() {
    let server = Server::start_with(&temp_db("joinstorm"), "127.0.0.1:0", &["--max-conns", "0"]);
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("storm", "x", "storm0").await;
    let mut watcher = Client::connect(server.addr).await;
    watcher.open(t, None).await;
    let started = std::time::Instant::now();
    let addr = server.addr;
    let joins = (0..300).map(|_| async move {
        let mut c = Client::connect(addr).await;
        c.open(t, None).await;
        c
    });
    let mut viewers = futures_util::future::join_all(joins).await;
    watcher.expect_online(t, 301).await;
    // Settled: nothing more comes once the last count is out.
    let rest = watcher.drain(Duration::from_millis(600)).await;
    assert!(
        rest.iter().all(|m| m["type"] != "presence"),
        "counts after the last: {rest:?}"
    );
    // Everybody is still connected: a post reaches all 300, behind at most four
    // counts a second (plus the edges) — not one per join.
    let ack = a.post(t, "after the storm", "storm1").await;
    let budget = (started.elapsed().as_secs_f64() * 4.0).ceil() as usize + 2;
    for v in &mut viewers {
        let (p, skipped) = v.recv_type("post").await;
        assert_eq!(p["post"]["id"], ack["post"]["id"]);
        let counts = skipped.iter().filter(|m| m["type"] == "presence").count();
        assert!(counts <= budget, "{counts} counts (at most {budget})");
    }
    assert!(!server.log().contains("too slow"), "{}", server.log());
}

#[tokio::test]
async fn history_and_paging_by_id() {
    let server = Server::start(&temp_db("paging"), "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("long", "post 1", "first").await;
    // 120 more posts, 5 per connection (the rate limit).
    let mut n = 1;
    for c in 0..24 {
        let mut w = Client::connect(server.addr).await;
        for i in 0..5 {
            n += 1;
            w.post(t, &format!("post {n}"), &format!("c{c}-{i}")).await;
        }
    }
    assert_eq!(n, 121);
    let mut r = Client::connect(server.addr).await;
    let first = r.open(t, None).await;
    assert_eq!(first["thread"]["post_count"], 121);
    assert_eq!(first["has_older"], true);
    let page1 = ids(&first["posts"]);
    assert_eq!(page1.len(), 50);
    assert_eq!(first["posts"][49]["body"], "post 121");
    let mut all = page1.clone();
    let mut before = page1[0];
    let mut pages = 1;
    loop {
        r.send(json!({"type":"older","thread_id":t,"before":before}))
            .await;
        let older = r.expect("older_posts").await;
        let page = ids(&older["posts"]);
        assert!(!page.is_empty());
        assert!(page.windows(2).all(|w| w[0] < w[1]), "ascending ids");
        assert!(*page.last().unwrap() < before);
        before = page[0];
        all.splice(0..0, page);
        pages += 1;
        if older["has_older"] == false {
            break;
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 121);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, all, "no duplicates, in order");
    // Small pages work too.
    r.send(json!({"type":"older","thread_id":t,"before":page1[0],"limit":3}))
        .await;
    let small = r.expect("older_posts").await;
    assert_eq!(small["posts"].as_array().unwrap().len(), 3);
    assert_eq!(small["posts"][2]["no"], 71);
}

#[tokio::test]
async fn resync_after_reconnect_has_no_gaps_and_no_duplicates() {
    let server = Server::start(&temp_db("resync"), "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("resync", "p1", "r0").await;
    a.post(t, "p2", "r1").await;

    let mut b = Client::connect(server.addr).await;
    let opened = b.open(t, None).await;
    let mut have = ids(&opened["posts"]);
    assert_eq!(have.len(), 2);
    // b goes away (a dropped network); posts continue meanwhile.
    drop(b);
    let mut a2 = Client::connect(server.addr).await;
    let mut missed = Vec::new();
    for i in 0..4 {
        let ack = a2
            .post(t, &format!("while away {i}"), &format!("away{i}"))
            .await;
        missed.push(ack["post"]["id"].as_i64().unwrap());
    }
    let mut b = Client::connect(server.addr).await;
    let resync = b.open(t, Some(*have.last().unwrap())).await;
    assert_eq!(
        ids(&resync["posts"]),
        missed,
        "exactly the posts made while away"
    );
    assert_eq!(resync["has_newer"], false);
    have.extend(ids(&resync["posts"]));
    // Live again: the next post arrives once.
    let ack = a.post(t, "after return", "back").await;
    let live = b.expect("post").await;
    assert_eq!(live["post"]["id"], ack["post"]["id"]);
    let rest = b.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|m| m["type"] != "post"),
        "no duplicate: {rest:?}"
    );

    // A pending post re-sent after a reconnect (its ack was lost) is stored once.
    let mut c = Client::connect(server.addr).await;
    let first = c.post(t, "maybe lost", "idem-1").await;
    drop(c);
    let seen = b.expect("post").await;
    assert_eq!(seen["post"]["id"], first["post"]["id"]);
    let mut c = Client::connect(server.addr).await;
    let again = c.post(t, "maybe lost", "idem-1").await;
    assert_eq!(
        again["post"], first["post"],
        "the resend gets the same post"
    );
    let rest = b.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter().all(|m| m["type"] != "post"),
        "not broadcast twice: {rest:?}"
    );
    // The same client id on a different post is refused.
    c.send(json!({"type":"post","thread_id":t,"body":"other text","client_id":"idem-1"}))
        .await;
    let err = c.expect("error").await;
    assert_eq!(err["client_id"], "idem-1");
    let whole = c.open(t, None).await;
    assert_eq!(whole["thread"]["post_count"], 8);
}

#[tokio::test]
async fn every_bad_message_gets_a_clear_error_and_the_connection_survives() {
    let server = Server::start(&temp_db("validation"), "127.0.0.1:0");
    let mut c = Client::connect(server.addr).await;
    let (t, _) = c.new_thread("v", "v", "v0").await;
    let long = |n: usize| "あ".repeat(n);
    let cases: Vec<(String, &str, &str)> = vec![
        ("{not json".into(), "bad_json", "bad JSON"),
        ("[1,2]".into(), "bad_json", "object"),
        (
            r#"{"type":"dance"}"#.into(),
            "unknown_type",
            "unknown message type \"dance\"",
        ),
        (r#"{"body":"x"}"#.into(), "unknown_type", "missing \"type\""),
        (
            json!({"type":"post","thread_id":t,"name":long(41),"body":"b","client_id":"e1"})
                .to_string(),
            "invalid",
            "name is too long: 41 characters, at most 40",
        ),
        (
            json!({"type":"post","thread_id":t,"body":long(2001),"client_id":"e2"}).to_string(),
            "invalid",
            "body is too long: 2001 characters, at most 2000",
        ),
        (
            json!({"type":"new_thread","title":long(101),"body":"b","client_id":"e3"}).to_string(),
            "invalid",
            "title is too long: 101 characters, at most 100",
        ),
        (
            json!({"type":"post","thread_id":t,"body":"  \n\t ","client_id":"e4"}).to_string(),
            "invalid",
            "body is empty",
        ),
        (
            json!({"type":"new_thread","title":" ","body":"b","client_id":"e5"}).to_string(),
            "invalid",
            "title is empty",
        ),
        (
            json!({"type":"post","thread_id":"seven","body":"b","client_id":"e6"}).to_string(),
            "invalid",
            "invalid \"post\" message",
        ),
        (
            json!({"type":"post","thread_id":t,"body":"b"}).to_string(),
            "invalid",
            "missing field `client_id`",
        ),
        (
            json!({"type":"post","thread_id":999999,"body":"b","client_id":"e7"}).to_string(),
            "not_found",
            "thread 999999 does not exist",
        ),
        (
            json!({"type":"open_thread","thread_id":424242}).to_string(),
            "not_found",
            "does not exist",
        ),
    ];
    for (text, code, needle) in &cases {
        c.send_raw(text).await;
        let err = c.expect("error").await;
        assert_eq!(err["code"], *code, "for {text:.80}: {err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(needle), "for {text:.80}: {message}");
    }
    // The client id of a refused post comes back so the page can restore the text.
    c.send(json!({"type":"post","thread_id":t,"body":"","client_id":"mine"}))
        .await;
    assert_eq!(c.expect("error").await["client_id"], "mine");
    // A binary message is answered too.
    c.conn
        .write_message(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(c.expect("error").await["code"], "bad_message");
    // Exactly at the limits is fine; the connection still works.
    let ok =
        json!({"type":"post","thread_id":t,"name":long(40),"body":long(2000),"client_id":"edge"});
    c.send(ok).await;
    let ack = c.expect("ack").await;
    assert_eq!(ack["post"]["body"].as_str().unwrap().chars().count(), 2000);
}

#[tokio::test]
async fn rate_limit_is_per_connection_with_a_clear_error() {
    let server = Server::start(&temp_db("ratelimit"), "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("rl", "1", "rl0").await; // 1 of 5
    for i in 1..5 {
        a.post(t, "ok", &format!("rl{i}")).await;
    }
    a.send(json!({"type":"post","thread_id":t,"body":"sixth","client_id":"rl5"}))
        .await;
    let err = a.expect("error").await;
    assert_eq!(err["code"], "rate_limited");
    assert_eq!(err["client_id"], "rl5");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("at most 5 every 10 seconds"), "{msg}");
    let retry = err["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 10_000, "{retry}");
    // Other connections are not affected.
    let mut b = Client::connect(server.addr).await;
    b.post(t, "from b", "b1").await;
    // Reading is not limited by the post limit.
    a.send(json!({"type":"open_thread","thread_id":t})).await;
    assert_eq!(a.expect("thread").await["thread"]["post_count"], 6);
}

#[tokio::test]
async fn posts_survive_a_restart() {
    let db = temp_db("restart");
    let mut server = Server::start(&db, "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("persistent", "before restart", "s0").await;
    let ack = a.post(t, "second", "s1").await;
    drop(a);
    server.restart();
    let mut b = Client::connect(server.addr).await;
    b.send(json!({"type":"list_threads"})).await;
    let list = b.expect("threads").await;
    assert_eq!(list["threads"][0]["title"], "persistent");
    let opened = b.open(t, None).await;
    assert_eq!(opened["posts"][1], ack["post"]);
    // Ids keep increasing after the restart.
    let next = b.post(t, "third", "s2").await;
    assert!(next["post"]["id"].as_i64() > ack["post"]["id"].as_i64());
    assert_eq!(next["post"]["no"], 3);
}

#[tokio::test]
async fn an_acknowledged_post_survives_kill_9() {
    let db = temp_db("kill9");
    let mut server = Server::start(&db, "127.0.0.1:0");
    let mut a = Client::connect(server.addr).await;
    let (t, _) = a.new_thread("crash", "first", "k0").await;
    let ack = a.post(t, "acknowledged just before the crash", "k1").await;
    server.kill9();
    let mut server = Server::start(&db, &server.addr.to_string());
    let mut b = Client::connect(server.addr).await;
    let opened = b.open(t, None).await;
    assert_eq!(opened["posts"][1], ack["post"]);
    server.stop();
}

#[tokio::test]
async fn http_assets_and_origin_check() {
    let server = Server::start(&temp_db("http"), "127.0.0.1:0");
    async fn get(addr: SocketAddr, path: &str) -> String {
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
    let index = get(server.addr, "/").await;
    assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index:.200}");
    assert!(index.contains("Content-Type: text/html"));
    assert!(index.contains("<script src=\"/app.js\""));
    let js = get(server.addr, "/app.js").await;
    assert!(js.contains("text/javascript") && js.contains("new WebSocket"));
    assert!(!js.contains("innerHTML"), "user text is never set as HTML");
    assert!(get(server.addr, "/style.css").await.contains("text/css"));
    assert!(get(server.addr, "/missing")
        .await
        .starts_with("HTTP/1.1 404"));
    // Same origin is accepted; another site's page is refused (CSWSH protection).
    let same = format!("http://{}", server.addr);
    assert!(Client::connect_with_origin(server.addr, Some(&same))
        .await
        .is_ok());
    let evil = Client::connect_with_origin(server.addr, Some("http://evil.example")).await;
    let err = evil.err().expect("cross-origin refused");
    assert!(err.contains("403"), "{err}");
}

#[tokio::test]
async fn keepalive_pings_and_dead_peers_are_dropped() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = Server::start_with(
        &temp_db("keepalive"),
        "127.0.0.1:0",
        &["--ping-interval", "200ms", "--idle-timeout", "1s"],
    );
    // A live peer answers pings (the library's default handler, while reading).
    let mut live = Client::connect(server.addr).await;
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = pings.clone();
    live.conn.set_ping_handler(move |ctx, data| {
        counter.fetch_add(1, Ordering::Relaxed);
        ctx.send(yamabiko::Control::Pong(data.clone()));
        Ok(())
    });
    // A dead peer: reads, but never answers a ping.
    let mut dead = Client::connect(server.addr).await;
    dead.conn.set_ping_handler(|_, _| Ok(()));
    // Both keep reading (handlers run only inside reads), at the same time.
    let started = std::time::Instant::now();
    let dead_end = async {
        let end = tokio::time::timeout(Duration::from_secs(5), dead.conn.read_message()).await;
        (end, started.elapsed())
    };
    let ((end, after), quiet) = tokio::join!(dead_end, live.drain(Duration::from_millis(2500)));
    let err = end
        .expect("dropped within 5 s")
        .expect_err("no message expected");
    assert!(
        yamabiko::is_close_error(
            &err,
            &[
                yamabiko::CloseCode::ABNORMAL,
                yamabiko::CloseCode::INTERNAL_ERROR
            ]
        ) || matches!(err, yamabiko::Error::Io(_)),
        "{err}"
    );
    assert!(
        after >= Duration::from_millis(900),
        "not before the deadline"
    );
    // Meanwhile the live one kept answering and is still served.
    assert!(quiet.is_empty(), "{quiet:?}");
    let n = pings.load(Ordering::Relaxed);
    assert!(n >= 5, "pings: {n}");
    live.send(json!({"type":"list_threads"})).await;
    live.expect("threads").await;
}

#[tokio::test]
async fn a_client_too_slow_to_read_is_disconnected() {
    let server = Server::start_with(&temp_db("slow"), "127.0.0.1:0", &["--write-timeout", "1s"]);
    // 100 threads with long titles make every thread list ~50 KB.
    let title = "🐢".repeat(100);
    for c in 0..20 {
        let mut w = Client::connect(server.addr).await;
        for i in 0..5 {
            w.new_thread(&title, "x", &format!("slow{c}-{i}")).await;
        }
    }
    let mut slow = Client::connect_slow_reader(server.addr).await;
    for _ in 0..100 {
        slow.send(json!({"type":"list_threads"})).await;
    }
    // Not reading: the server's writes stall, pass their deadline, and the server
    // gives up on the client (close 1008, or just the transport when even the close
    // frame cannot get through).
    let gone = async {
        loop {
            if let Err(e) = slow.conn.read_message().await {
                return e;
            }
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = tokio::time::timeout(Duration::from_secs(20), gone)
        .await
        .expect("slow client disconnected");
    assert!(
        yamabiko::is_close_error(
            &err,
            &[
                yamabiko::CloseCode::POLICY_VIOLATION,
                yamabiko::CloseCode::ABNORMAL
            ]
        ) || matches!(err, yamabiko::Error::Io(_)),
        "{err}"
    );
    assert!(
        server.log().contains("too slow"),
        "logged: {}",
        server.log()
    );
    // Everyone else is fine.
    let mut ok = Client::connect(server.addr).await;
    ok.send(json!({"type":"list_threads"})).await;
    assert_eq!(
        ok.expect("threads").await["threads"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let server = Server::start(&temp_db("toobig"), "127.0.0.1:0");
    let mut c = Client::connect(server.addr).await;
    let huge = "x".repeat(70 * 1024);
    c.send(json!({"type":"post","thread_id":1,"body":huge,"client_id":"big"}))
        .await;
    let err = tokio::time::timeout(WAIT, c.conn.read_message())
        .await
        .expect("answered")
        .expect_err("closed");
    assert!(
        yamabiko::is_close_error(&err, &[yamabiko::CloseCode::MESSAGE_TOO_BIG]),
        "{err}"
    );
}
