//! `yamabiko connect URL`: an interactive WebSocket client in the spirit of wscat and
//! websocat, on the public API only.
//!
//! Each line of standard input is sent as a text message; every message received is
//! printed on standard output (text as is, binary as hex, or appended to a file with
//! `--binary-file`). Status lines (connected, pong, close) go to standard error, so
//! standard output carries only what the server sent. Commands:
//!
//! * `/ping [data]` sends a ping (its pong is reported on standard error);
//! * `/close [code] [reason]` starts the close handshake (default 1000) and exits;
//! * `//…` sends the line without its first `/` (to send a text starting with `/ping`).
//!
//! When standard input ends, the client waits up to `--linger` seconds for the
//! replies to the lines it sent (as many messages as lines), then closes with 1000.
//!
//! Exit status: 0 after a normal close (1000, 1001 or no status, by either side), 1 on
//! any error (handshake refused, TLS, abnormal close, protocol violation).

use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use yamabiko::http::{HeaderName, HeaderValue};
use yamabiko::{CloseCode, CloseFrame, Control, Dialer, Error, HttpVersion, Message};

/// Options of `yamabiko connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The ws:// or wss:// URL to connect to.
    url: String,
    /// Extra request header, `Name: value` (repeatable), e.g. `--header "Origin: https://a.example"`.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(long = "subprotocol", short = 'p', value_name = "NAME")]
    subprotocols: Vec<String>,
    /// Also trust the certificates of this PEM file for wss:// (the CA that signed the
    /// server's certificate, or a self-signed leaf certificate with CA:FALSE).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Append the payloads of binary messages to this file instead of printing hex.
    #[arg(long, value_name = "PATH")]
    binary_file: Option<PathBuf>,
    /// Connect through this HTTP proxy (http://host:port) with CONNECT.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Seconds allowed for connecting (DNS, TCP, TLS and the HTTP handshake).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds to wait for replies after standard input ends, before closing.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    linger: f64,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Offer permessage-deflate compression.
    #[arg(long)]
    compression: bool,
    /// Open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT): ALPN h2 for
    /// wss://, prior knowledge (h2c) for ws://; fail if the server does not offer it.
    /// By default wss:// uses HTTP/2 when the server offers it, else HTTP/1.1.
    #[arg(long, conflicts_with = "http1")]
    http2: bool,
    /// Open the WebSocket over HTTP/1.1 only.
    #[arg(long)]
    http1: bool,
}

/// How long the peer gets to answer our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the client until the connection closes.
pub fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(session(args))
}

/// A line of standard input, understood.
#[derive(Debug, PartialEq)]
enum Command {
    Text(String),
    Ping(String),
    Close(u16, String),
}

fn parse_line(line: &str) -> anyhow::Result<Command> {
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Text(format!("/{escaped}")));
    }
    let (word, rest) = match line.split_once(' ') {
        Some((w, r)) => (w, r),
        None => (line, ""),
    };
    match word {
        "/ping" => Ok(Command::Ping(rest.to_owned())),
        "/close" => {
            let rest = rest.trim_start();
            let (code, reason) = match rest.split_once(' ') {
                Some((c, r)) => (c, r),
                None => (rest, ""),
            };
            let code = if code.is_empty() {
                1000
            } else {
                code.parse()
                    .with_context(|| format!("/close: {code:?} is not a close code"))?
            };
            Ok(Command::Close(code, reason.to_owned()))
        }
        _ => Ok(Command::Text(line.to_owned())),
    }
}

fn dialer(args: &ConnectArgs) -> anyhow::Result<Dialer> {
    let mut dialer = Dialer::new()
        .subprotocols(args.subprotocols.iter().cloned())
        .handshake_timeout(Duration::try_from_secs_f64(args.handshake_timeout)?)
        .max_message_size(args.max_message_size)
        .enable_compression(args.compression)
        .http_version(if args.http2 {
            HttpVersion::Http2
        } else if args.http1 {
            HttpVersion::Http1
        } else {
            HttpVersion::Auto
        });
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header {header:?}: expected NAME:VALUE"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header {header:?}: bad name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header {header:?}: bad value"))?;
        dialer = dialer.header(name, value);
    }
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        dialer = dialer
            .add_root_certificates_pem(&pem)
            .with_context(|| format!("loading {}", ca.display()))?;
    }
    if let Some(proxy) = &args.proxy {
        dialer = dialer.proxy(proxy.clone());
    }
    Ok(dialer)
}

/// Standard input, read line by line on a thread of its own (a blocking read there
/// never holds up the exit). `None` at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if tx.blocking_send(text).is_err() {
                return;
            }
        }
    });
    rx
}

/// Where received messages go.
struct Output {
    binary_file: Option<std::fs::File>,
}

impl Output {
    fn message(&mut self, msg: Message) -> anyhow::Result<()> {
        match msg {
            Message::Text(text) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", text.as_str())?;
                out.flush()?;
            }
            Message::Binary(bytes) => match &mut self.binary_file {
                Some(file) => {
                    file.write_all(&bytes)?;
                    file.flush()?;
                    eprintln!("< binary message, {} bytes appended", bytes.len());
                }
                None => {
                    let mut hex = String::with_capacity(bytes.len() * 2);
                    for b in bytes.iter() {
                        let _ = write!(hex, "{b:02x}");
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{hex}")?;
                    out.flush()?;
                }
            },
        }
        Ok(())
    }
}

async fn session(args: ConnectArgs) -> anyhow::Result<()> {
    let dialer = dialer(&args)?;
    let binary_file = match &args.binary_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let (conn, _response) = match dialer.dial(&args.url).await {
        Ok(c) => c,
        Err(Error::BadHandshake(refused)) => {
            let body = String::from_utf8_lossy(refused.body());
            if !body.trim().is_empty() {
                eprintln!("{}", body.trim_end());
            }
            bail!("connecting to {}: {refused}", args.url);
        }
        Err(e) => {
            if let Error::Tls(tls) = &e {
                if tls.to_string().contains("CaUsedAsEndEntity") {
                    eprintln!(
                        "hint: the server's certificate is a CA certificate (basicConstraints \
                         CA:TRUE); serve a leaf certificate (e.g. openssl req -x509 … -addext \
                         basicConstraints=critical,CA:FALSE) or one signed by the --ca"
                    );
                }
            }
            return Err(e).with_context(|| format!("connecting to {}", args.url));
        }
    };
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        let over = if conn.with_stream(|s| s.is_http2()).unwrap_or(false) {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        match conn.subprotocol() {
            Some(p) => eprintln!("connected to {} over {over} (subprotocol {p})", args.url),
            None => eprintln!("connected to {} over {over}", args.url),
        }
    }
    let (mut reader, mut writer) = conn.split();
    let control = writer.control_handle();
    reader.set_pong_handler(|_, data| {
        eprintln!("< pong {:?}", String::from_utf8_lossy(data));
        Ok(())
    });

    // The reader runs in its own task so pings are answered and messages printed
    // while we wait for input. It counts the messages it printed.
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let mut output = Output { binary_file };
    let mut read_task: JoinHandle<anyhow::Result<Error>> = tokio::spawn(async move {
        loop {
            match reader.read_message().await {
                Ok(msg) => {
                    output.message(msg)?;
                    count_tx.send_modify(|n| *n += 1);
                }
                Err(e) => return Ok(e),
            }
        }
    });

    let mut lines = stdin_lines();
    let mut sent = 0usize;
    let write_deadline = || Some(std::time::Instant::now() + Duration::from_secs(10));
    loop {
        let line = tokio::select! {
            end = &mut read_task => return ended_by_peer(end),
            line = lines.recv() => line,
        };
        let Some(line) = line else { break };
        let command = match parse_line(&line) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e:#}");
                continue;
            }
        };
        let result = match command {
            Command::Text(text) => {
                sent += 1;
                writer.write_text(text).await
            }
            Command::Ping(data) => {
                control
                    .write_control(Control::ping(data.into_bytes()), write_deadline())
                    .await
            }
            Command::Close(code, reason) => {
                let frame = Control::Close(Some(CloseFrame::new(code, reason)));
                match control.write_control(frame, write_deadline()).await {
                    Ok(()) => return await_close(read_task).await,
                    Err(e @ Error::InvalidInput(_)) => {
                        eprintln!("{e}");
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(e @ (Error::InvalidInput(_) | Error::Timeout)) => eprintln!("{e}"),
            // The connection is ending: the reader says how.
            Err(_) => {
                let end = tokio::time::timeout(CLOSE_TIMEOUT, &mut read_task).await;
                return match end {
                    Ok(end) => ended_by_peer(end),
                    Err(_) => bail!("the connection broke"),
                };
            }
        }
    }

    // End of input: give the replies a moment, then close normally.
    let linger = Duration::try_from_secs_f64(args.linger)?;
    let replies = async {
        let _ = count_rx.wait_for(|n| *n >= sent).await;
    };
    tokio::select! {
        end = &mut read_task => return ended_by_peer(end),
        _ = tokio::time::timeout(linger, replies) => {}
    }
    let frame = Control::close(CloseCode::NORMAL, "");
    if let Err(e) = control.write_control(frame, write_deadline()).await {
        eprintln!("sending close: {e}");
    }
    await_close(read_task).await
}

/// After our close frame: wait for the peer's (or for it to hang up).
async fn await_close(read_task: JoinHandle<anyhow::Result<Error>>) -> anyhow::Result<()> {
    match tokio::time::timeout(CLOSE_TIMEOUT, read_task).await {
        Err(_) => bail!("the server did not answer the close frame within {CLOSE_TIMEOUT:?}"),
        Ok(Err(join)) => bail!("reader failed: {join}"),
        Ok(Ok(Err(output))) => Err(output),
        // The echo of our close, or a server that just hangs up after it.
        Ok(Ok(Ok(Error::Closed(_) | Error::CloseSent))) => Ok(()),
        Ok(Ok(Ok(e))) => Err(e.into()),
    }
}

/// The reader ended before we closed: the server closed, or the connection failed.
fn ended_by_peer(
    end: std::result::Result<anyhow::Result<Error>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    let e = match end {
        Err(join) => bail!("reader failed: {join}"),
        Ok(Err(output)) => return Err(output),
        Ok(Ok(e)) => e,
    };
    match e {
        Error::Closed(frame)
            if [
                CloseCode::NORMAL,
                CloseCode::GOING_AWAY,
                CloseCode::NO_STATUS,
            ]
            .contains(&frame.code) =>
        {
            eprintln!("closed by the server: {frame}");
            Ok(())
        }
        Error::Closed(frame) => bail!("the server closed the connection: {frame}"),
        other => Err(other).context("connection failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_line("hello").unwrap(), Command::Text("hello".into()));
        assert_eq!(parse_line("").unwrap(), Command::Text("".into()));
        assert_eq!(parse_line("/ping").unwrap(), Command::Ping("".into()));
        assert_eq!(
            parse_line("/ping a b").unwrap(),
            Command::Ping("a b".into())
        );
        assert_eq!(
            parse_line("/pingx").unwrap(),
            Command::Text("/pingx".into())
        );
        assert_eq!(parse_line("//ping").unwrap(), Command::Text("/ping".into()));
        assert_eq!(
            parse_line("/close").unwrap(),
            Command::Close(1000, "".into())
        );
        assert_eq!(
            parse_line("/close 4000 going home").unwrap(),
            Command::Close(4000, "going home".into())
        );
        assert!(parse_line("/close soon").is_err());
        assert_eq!(
            parse_line("/other").unwrap(),
            Command::Text("/other".into())
        );
    }
}
