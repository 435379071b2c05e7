//! The board on several servers: two `yamabiko serve` instances sharing one PostgreSQL
//! database and one Redis, driven by WebSocket clients over loopback.
//!
//! Needs real servers, named by `YAMABIKO_TEST_POSTGRES` (postgres://…) and
//! `YAMABIKO_TEST_REDIS` (redis://127.0.0.1:PORT/); without them the test fails. The
//! Redis restart needs `redis-server` (or `YAMABIKO_TEST_REDIS_SERVER`).
//! `scripts/multi-instance-test.sh` provides all of it:
//!
//! ```text
//! cargo test -p yamabiko-cli --features multi-instance-tests --test multi_instance
//! ```

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yamabiko::proto::handshake::{build_request, generate_key, parse_response, validate_response};
use yamabiko::{Config, Conn, Message, Role};

/// Longest wait for one expected message.
const WAIT: Duration = Duration::from_secs(20);

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs real PostgreSQL and Redis servers \
             (run scripts/multi-instance-test.sh)"
        ),
    }
}

// ---------- the board servers ----------

struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, name: &str, pg: &str, redis: &str, prefix: &str) -> Server {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_yamabiko"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", pg])
            .args(["--redis", redis, "--redis-prefix", prefix])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
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
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("server {name} did not start: {line:?}\n{err}");
        };
        Server {
            child: Some(child),
            addr: url.trim_end_matches('/').parse().expect("address"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and waits for the process to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not stop on SIGTERM:\n{}", self.log());
        }
    }

    /// The instance id it logged at start.
    fn instance(&self) -> String {
        let log = self.log();
        let at = log.find("instance=").expect("instance id logged");
        log[at + "instance=".len()..]
            .split_whitespace()
            .next()
            .expect("instance id")
            .to_string()
    }

    /// SIGKILL, as a crash.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the log contains `text` `n` times.
    async fn wait_log(&self, text: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(text).count() < n {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged {n} times:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------- Redis, stopped by PID and started again on the same port ----------

struct Redis {
    port: u16,
    restarted: Option<Child>,
}

impl Redis {
    fn from_url(url: &str) -> Redis {
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in YAMABIKO_TEST_REDIS={url:?}"));
        Redis {
            port,
            restarted: None,
        }
    }

    fn connect(&self) -> std::io::Result<std::net::TcpStream> {
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    }

    /// The server's PID, from `INFO server`.
    fn pid(&self) -> u32 {
        let mut s = self.connect().expect("connect to redis");
        s.write_all(b"INFO server\r\n").expect("write");
        let mut text = String::new();
        let mut buf = [0u8; 8192];
        for _ in 0..100 {
            let n = s.read(&mut buf).expect("read INFO");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || text.contains("process_id:") && text.ends_with("\r\n\r\n") {
                break;
            }
            if let Some(line) = text.lines().find(|l| l.starts_with("process_id:")) {
                if text.contains("run_id:") {
                    return line["process_id:".len()..].trim().parse().expect("pid");
                }
            }
        }
        let line = text
            .lines()
            .find(|l| l.starts_with("process_id:"))
            .unwrap_or_else(|| panic!("no process_id in INFO: {text}"));
        line["process_id:".len()..].trim().parse().expect("pid")
    }

    /// Sends one inline command; returns the raw reply.
    fn command(&self, cmd: &str) -> String {
        let mut s = self.connect().expect("connect to redis");
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).expect("read reply");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Stops the server by PID (SIGTERM) and waits until the port refuses.
    fn stop(&mut self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
        if let Some(mut c) = self.restarted.take() {
            let _ = c.wait();
        }
        for _ in 0..200 {
            if self.connect().is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis {pid} did not stop");
    }

    /// Starts a new server on the same port and waits until it answers.
    fn start(&mut self) {
        let bin = std::env::var("YAMABIKO_TEST_REDIS_SERVER").unwrap_or("redis-server".into());
        let dir = std::env::var("YAMABIKO_TEST_REDIS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        self.restarted = Some(child);
        for _ in 0..200 {
            if let Ok(mut s) = self.connect() {
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis did not come back on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Only the copy this test started; the script stops its own.
        if let Some(mut c) = self.restarted.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------- a WebSocket client ----------

struct Client {
    conn: Conn<TcpStream>,
    /// Messages read while waiting for an ack, for later reads.
    stash: std::collections::VecDeque<Value>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let key = generate_key();
        let request = build_request(
            &addr.to_string(),
            "/ws",
            &key,
            &[],
            None,
            &http::HeaderMap::new(),
        );
        tcp.write_all(&request).await.expect("write handshake");
        let mut buf = bytes::BytesMut::with_capacity(1024);
        let response = loop {
            if let Some((resp, used)) = parse_response(&buf, 8192).expect("response") {
                let _ = buf.split_to(used);
                break resp;
            }
            let n = tokio::time::timeout(WAIT, tcp.read_buf(&mut buf))
                .await
                .expect("handshake timed out")
                .expect("read handshake");
            assert!(n > 0, "connection closed during handshake");
        };
        validate_response(&response, &key, &[], false).expect("valid response");
        let conn = Conn::from_raw(tcp, Role::Client, &Config::default(), buf);
        let mut client = Client {
            conn,
            stash: Default::default(),
        };
        assert_eq!(client.recv().await["type"], "hello");
        client
    }

    async fn send(&mut self, v: Value) {
        self.conn
            .write_message(Message::text(v.to_string()))
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

    /// Reads until a message satisfies `want`; returns it and what came before.
    async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(v) = self.stash.pop_front() {
            if want(&v) {
                return (v, seen);
            }
            seen.push(v);
        }
        for _ in 0..10_000 {
            let msg = tokio::time::timeout_at(deadline, self.conn.read_message())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}; got {seen:?}"))
                .expect("read");
            let v: Value = serde_json::from_slice(msg.as_bytes()).expect("JSON");
            if want(&v) {
                return (v, seen);
            }
            seen.push(v);
        }
        panic!("no {what}; got {seen:?}");
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.until(kind, |v| v["type"] == kind).await.0
    }

    /// Waits for the connection to end (its server died).
    async fn closed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..10_000 {
            match tokio::time::timeout_at(deadline, self.conn.read_message()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return,
                Err(_) => panic!("connection still open"),
            }
        }
    }

    async fn new_thread(&mut self, title: &str, cid: &str) -> (i64, Value) {
        self.send(
            json!({"type":"new_thread","title":title,"name":"","body":"first","client_id":cid}),
        )
        .await;
        let ack = self.expect("ack").await;
        (ack["thread"]["id"].as_i64().expect("thread id"), ack)
    }

    /// Posts and returns the acknowledged post.
    async fn post(&mut self, thread: i64, body: &str, cid: &str) -> Value {
        self.send(json!({"type":"post","thread_id":thread,"name":"t","body":body,"client_id":cid}))
            .await;
        let (ack, seen) = self
            .until("ack", |v| v["type"] == "ack" || v["type"] == "error")
            .await;
        assert_eq!(ack["type"], "ack", "{ack} after {seen:?}");
        assert_eq!(ack["client_id"], cid);
        // Live posts (its own, too) may come before the ack: keep them.
        self.stash.extend(seen);
        ack["post"].clone()
    }

    async fn open(&mut self, thread: i64, after: Option<i64>) -> Value {
        let mut m = json!({"type":"open_thread","thread_id":thread});
        if let Some(a) = after {
            m["after"] = json!(a);
        }
        self.send(m).await;
        self.expect("thread").await
    }

    /// Ids of the live posts of `thread` received until post `last` (inclusive).
    async fn live_posts_until(&mut self, thread: i64, last: i64) -> Vec<i64> {
        let mut ids = Vec::new();
        loop {
            let (msg, _) = self
                .until(&format!("post {last}"), |v| {
                    v["type"] == "post" && v["post"]["thread_id"] == thread
                })
                .await;
            let id = msg["post"]["id"].as_i64().expect("id");
            ids.push(id);
            if id == last {
                return ids;
            }
            assert!(ids.len() < 1000, "{ids:?}");
        }
    }
}

fn id(post: &Value) -> i64 {
    post["id"].as_i64().expect("post id")
}

fn ids(posts: &Value) -> Vec<i64> {
    posts
        .as_array()
        .expect("posts")
        .iter()
        .map(id)
        .collect::<Vec<_>>()
}

// ---------- the test ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_posts_survive_a_crash_and_a_redis_restart() {
    let pg = env("YAMABIKO_TEST_POSTGRES");
    let redis_url = env("YAMABIKO_TEST_REDIS");
    let mut redis = Redis::from_url(&redis_url);
    let run = format!("{}-{}", std::process::id(), redis.pid());
    let prefix = format!("yamabiko-test-{run}");
    let dir = std::env::temp_dir().join(format!("yamabiko-multi-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cid = |s: &str| format!("{run}-{s}");

    let a = Server::start(&dir, "a", &pg, &redis_url, &prefix);
    let mut b = Server::start(&dir, "b", &pg, &redis_url, &prefix);
    a.wait_log("subscribed to Redis", 1).await;
    b.wait_log("subscribed to Redis", 1).await;

    // 1. A client on A posts; clients on B see the thread and the post live.
    let mut poster = Client::connect(a.addr).await;
    let mut list_b = Client::connect(b.addr).await;
    list_b.send(json!({"type":"list_threads"})).await;
    list_b.expect("threads").await;
    let (t, first) = poster.new_thread("across servers", &cid("t")).await;
    let (upd, _) = list_b
        .until("thread_updated", |v| {
            v["type"] == "thread_updated" && v["thread"]["id"] == t
        })
        .await;
    assert_eq!(upd["thread"]["post_count"], 1);

    let mut on_b = Client::connect(b.addr).await;
    let opened = on_b.open(t, None).await;
    assert_eq!(ids(&opened["posts"]), [id(&first["post"])]);
    let p1 = poster.post(t, "hello from A", &cid("p1")).await;
    let (live, _) = on_b.until("post", |v| v["type"] == "post").await;
    assert_eq!(live["post"], p1, "B's client got A's post as acknowledged");

    // Online counts add up across servers: one viewer on B, one on A.
    let mut viewer_a = Client::connect(a.addr).await;
    viewer_a.open(t, None).await;
    on_b.until("online 2", |v| {
        v["type"] == "presence" && v["thread_id"] == t && v["online"] == 2
    })
    .await;

    // 2. B crashes; its client comes back on A and resyncs from its last id.
    let last = id(&p1);
    b.kill9();
    on_b.closed().await;
    let p2 = poster.post(t, "while B is gone (1)", &cid("p2")).await;
    let p3 = poster.post(t, "while B is gone (2)", &cid("p3")).await;
    let mut moved = Client::connect(a.addr).await;
    let resync = moved.open(t, Some(last)).await;
    assert_eq!(
        ids(&resync["posts"]),
        [id(&p2), id(&p3)],
        "no gap, no repeat"
    );
    assert_eq!(resync["has_newer"], false);
    let mut poster2 = Client::connect(a.addr).await;
    let p4 = poster2.post(t, "after the resync", &cid("p4")).await;
    assert_eq!(moved.live_posts_until(t, id(&p4)).await, [id(&p4)]);

    // 3. A new B; Redis is stopped and started again while both serve.
    let b2 = Server::start(&dir, "b2", &pg, &redis_url, &prefix);
    b2.wait_log("subscribed to Redis", 1).await;
    let mut on_b2 = Client::connect(b2.addr).await;
    let opened = on_b2.open(t, None).await;
    assert_eq!(ids(&opened["posts"]).last(), Some(&id(&p4)));
    let p5 = poster2
        .post(t, "before the Redis restart", &cid("p5"))
        .await;
    assert_eq!(on_b2.live_posts_until(t, id(&p5)).await, [id(&p5)]);
    assert_eq!(moved.live_posts_until(t, id(&p5)).await, [id(&p5)]);

    redis.stop();
    a.wait_log("lost the Redis subscription", 1).await;
    b2.wait_log("lost the Redis subscription", 1).await;
    // Without Redis each server still serves its own clients live.
    let p6 = poster2
        .post(t, "Redis is down, posted on A", &cid("p6"))
        .await;
    assert_eq!(moved.live_posts_until(t, id(&p6)).await, [id(&p6)]);
    let p7 = on_b2
        .post(t, "Redis is down, posted on B", &cid("p7"))
        .await;
    // B's client gets A's post first: B fills the gap from the database, in order.
    assert_eq!(on_b2.live_posts_until(t, id(&p7)).await, [id(&p6), id(&p7)]);

    // Down for a while: both servers go through a few reconnection attempts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.start();
    a.wait_log("Redis subscription is back", 1).await;
    b2.wait_log("Redis subscription is back", 1).await;
    // A's client catches up on B's post of the outage, then live again both ways.
    let p8 = poster2
        .post(t, "Redis is back, posted on A", &cid("p8"))
        .await;
    assert_eq!(
        moved.live_posts_until(t, id(&p8)).await,
        [id(&p7), id(&p8)],
        "in order, nothing missed, nothing twice"
    );
    assert_eq!(on_b2.live_posts_until(t, id(&p8)).await, [id(&p8)]);
    let p9 = on_b2
        .post(t, "Redis is back, posted on B", &cid("p9"))
        .await;
    assert_eq!(on_b2.live_posts_until(t, id(&p9)).await, [id(&p9)]);
    assert_eq!(moved.live_posts_until(t, id(&p9)).await, [id(&p9)]);
    let since_p1: Vec<i64> = [&p2, &p3, &p4, &p5, &p6, &p7, &p8, &p9]
        .iter()
        .map(|p| id(p))
        .collect();
    assert_eq!(viewer_a.live_posts_until(t, id(&p9)).await, since_p1);

    // A server stopping gracefully withdraws its online counts at once.
    let online_key = format!("{prefix}:online");
    let b2_instance = b2.instance();
    let fields = redis.command(&format!("HKEYS {online_key}"));
    assert!(fields.contains(&format!("{b2_instance}:{t}")), "{fields}");
    let mut b2 = b2;
    b2.stop();
    let fields = redis.command(&format!("HKEYS {online_key}"));
    assert!(!fields.contains(&b2_instance), "{fields}");

    // The database has it all, once, in order.
    let mut check = Client::connect(a.addr).await;
    let all = check.open(t, None).await;
    let expected: Vec<i64> = [&first["post"], &p1, &p2, &p3, &p4, &p5, &p6, &p7, &p8, &p9]
        .iter()
        .map(|p| id(p))
        .collect();
    assert_eq!(ids(&all["posts"]), expected);
    assert!(
        !a.log().contains("panicked") && !b2.log().contains("panicked"),
        "{}\n{}",
        a.log(),
        b2.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
