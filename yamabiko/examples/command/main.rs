//! A command on a web page: each connection starts the command; what it prints goes to
//! the page line by line, and what the page sends goes to its standard input
//! (gorilla/websocket's command example, in yamabiko).
//!
//! ```sh
//! cargo run -p yamabiko --example command -- cat           # http://127.0.0.1:8080
//! cargo run -p yamabiko --example command -- sh -c 'while read l; do echo "you said: $l"; done'
//! ```
//!
//! The process is ended when the socket goes (stdin is closed, then after a grace
//! period the process is killed), and the socket is closed when the process ends
//! (stdout ends: a close frame with 1000, then the connection). README.md has more.

use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use yamabiko::http::{header, Method, Response, StatusCode};
use yamabiko::{
    is_websocket_upgrade, write_http_response, CloseCode, Conn, Control, ControlHandle, Error,
    ReadHalf, Upgrader, WriteHalf,
};

const HOME: &str = include_str!("home.html");

/// The command and the connection's timing.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Time allowed to write a message (or a ping) to the peer.
    pub write_wait: Duration,
    /// Time allowed to read the next pong (or anything) from the peer.
    pub pong_wait: Duration,
    /// How often pings go out; less than `pong_wait`.
    pub ping_period: Duration,
    /// Largest message the page may send (a line of input).
    pub max_message_size: usize,
    /// How long the process has to exit once its stdin is closed before it is killed,
    /// and how long the page has to answer our close frame.
    pub grace: Duration,
}

impl Settings {
    /// gorilla's timing, for `command`.
    pub fn new(command: Vec<String>) -> Self {
        let pong_wait = Duration::from_secs(60);
        Settings {
            command,
            write_wait: Duration::from_secs(10),
            pong_wait,
            ping_period: pong_wait * 9 / 10,
            max_message_size: 8192,
            grace: Duration::from_secs(5),
        }
    }
}

/// The longest line sent as one message; a longer one is sent in pieces this long.
const MAX_LINE: usize = 8192;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match args.first() {
        Some(a) if a.starts_with("--addr=") => args.remove(0)["--addr=".len()..].to_string(),
        _ => "127.0.0.1:8080".into(),
    };
    if args.is_empty() {
        eprintln!("usage: command [--addr=HOST:PORT] PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&addr).await?;
    println!("command: {:?} at http://{}", args, listener.local_addr()?);
    serve(listener, Settings::new(args)).await
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, settings: Settings) -> std::io::Result<()> {
    let upgrader = Upgrader::new().max_message_size(settings.max_message_size);
    loop {
        let (tcp, _) = listener.accept().await?;
        let upgrader = upgrader.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, upgrader, settings).await {
                eprintln!("command: {e}");
            }
        });
    }
}

async fn handle(
    mut tcp: TcpStream,
    upgrader: Upgrader,
    settings: Settings,
) -> yamabiko::Result<()> {
    let (request, leftover) = upgrader.read_request(&mut tcp).await?;
    if request.uri().path() == "/ws" && is_websocket_upgrade(&request) {
        let conn = upgrader.upgrade_request(tcp, &request, leftover).await?;
        return run(conn, &settings).await;
    }
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(HOME),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n"),
    };
    let mut response = response.expect("static headers are valid");
    let close = header::HeaderValue::from_static("close");
    response.headers_mut().insert(header::CONNECTION, close);
    write_http_response(&mut tcp, &response).await?;
    Ok(())
}

/// Runs the command for one connection, until one of the two ends.
pub async fn run(conn: Conn<TcpStream>, settings: &Settings) -> yamabiko::Result<()> {
    let (program, args) = settings.command.split_first().expect("a command");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true) // whatever happens to this task, the process goes too
        .spawn()?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let (stdin, stdout) = stdin.zip(stdout).expect("piped");
    let (read, write) = conn.split();
    let control = write.control_handle();
    let pinger = tokio::spawn(ping(control.clone(), settings.clone()));
    let output = tokio::spawn(pump_output(stdout, write, settings.clone()));
    let input = pump_input(read, stdin, settings);
    tokio::pin!(input);

    tokio::select! {
        () = &mut input => {
            // The socket went (or the page closed): stdin is closed, so a well-behaved
            // process ends by itself; one that does not is killed after the grace.
            end_process(&mut child, settings.grace).await;
            control.close();
        }
        _ = output => {
            // The process's output ended: the close frame went out. Give the page the
            // grace to answer it, then hang up and reap the process.
            let _ = tokio::time::timeout(settings.grace, &mut input).await;
            control.close();
            end_process(&mut child, settings.grace).await;
        }
    }
    pinger.abort();
    Ok(())
}

/// The page's messages, a line each, to the process's standard input. Returns when the
/// connection ends (the page closed, or went away, or we closed it); stdin is closed
/// then.
async fn pump_input(mut read: ReadHalf<TcpStream>, mut stdin: ChildStdin, settings: &Settings) {
    read.set_read_deadline(Instant::now() + settings.pong_wait);
    let pong_wait = settings.pong_wait;
    read.set_pong_handler(move |ctx, _| {
        ctx.set_read_deadline(Instant::now() + pong_wait);
        Ok(())
    });
    while let Ok(message) = read.read_message().await {
        let mut line = message.into_bytes().to_vec();
        line.push(b'\n');
        if stdin.write_all(&line).await.is_err() {
            break; // the process stopped reading; its output decides what comes next
        }
    }
}

/// The process's standard output to the page, a text message per line (invalid UTF-8
/// replaced). At the end of the output, a close frame (1000).
async fn pump_output(
    stdout: impl AsyncRead + Unpin,
    mut write: WriteHalf<TcpStream>,
    settings: Settings,
) -> yamabiko::Result<()> {
    let mut lines = Lines::new(stdout);
    while let Some(line) = lines.next().await? {
        write.set_write_deadline(Instant::now() + settings.write_wait);
        write
            .write_text(String::from_utf8_lossy(&line).into_owned())
            .await?;
    }
    let bye = Control::close(CloseCode::NORMAL, "process exited");
    match write
        .write_control(bye, Instant::now() + settings.write_wait)
        .await
    {
        Ok(()) | Err(Error::CloseSent) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pings the page every `ping_period` until the connection ends.
async fn ping(control: ControlHandle<TcpStream>, settings: Settings) {
    let start = tokio::time::Instant::now() + settings.ping_period;
    let mut ticks = tokio::time::interval_at(start, settings.ping_period);
    loop {
        ticks.tick().await;
        let deadline = Instant::now() + settings.write_wait;
        if control
            .write_control(Control::ping(""), deadline)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Waits up to `grace` for the process to exit (its stdin is closed by now), then
/// kills it; always reaps it.
async fn end_process(child: &mut Child, grace: Duration) {
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await; // SIGKILL, then wait
    }
}

/// Lines of a byte stream, each at most [`MAX_LINE`] bytes (without the newline).
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// The next line; `None` at the end of the stream.
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.buf.len() >= MAX_LINE {
                return Ok(Some(self.buf.drain(..MAX_LINE).collect()));
            }
            if self.eof {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
            let mut chunk = [0u8; 4096];
            let n = self.reader.read(&mut chunk).await?;
            self.eof = n == 0;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests;
