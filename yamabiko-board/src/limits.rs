//! Server hygiene shared by `yamabiko echo` and `yamabiko serve`: a cap on live
//! connections (refused with `503 Service Unavailable` beyond it), the idle timeout's
//! duration syntax, and the Ctrl-C / SIGTERM signal that starts a graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a refused client gets to send its request and read the 503.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many refusals are answered at once; beyond that the TCP connection
/// is simply closed, so a flood of refused clients costs no more than this many tasks.
const MAX_REFUSING: usize = 64;

/// Counts live connections against a limit (`0` = unlimited). Cloning shares the count.
#[derive(Clone, Debug)]
pub struct ConnLimit {
    max: usize,
    live: Arc<AtomicUsize>,
    refusing: Arc<AtomicUsize>,
}

/// One live connection: counted until dropped.
#[derive(Debug)]
pub struct ConnPermit {
    live: Arc<AtomicUsize>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnLimit {
    /// A limit of `max` live connections; `0` means no limit.
    pub fn new(max: usize) -> ConnLimit {
        ConnLimit {
            max,
            live: Arc::new(AtomicUsize::new(0)),
            refusing: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts a new connection, or `None` when `max` are already live.
    pub fn try_acquire(&self) -> Option<ConnPermit> {
        let admitted = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.max == 0 || n < self.max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| ConnPermit {
            live: self.live.clone(),
        })
    }

    /// Connections counted now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Answers a connection over the limit with `503 Service Unavailable` and closes
    /// it, in the background and bounded in time. The request head is read first
    /// (up to 8 KiB) so that closing does not reset the connection before the client
    /// has read the answer.
    pub fn refuse(&self, tcp: TcpStream) {
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            drop(tcp);
            return;
        }
        let refusing = self.refusing.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSE_TIMEOUT, answer_503(tcp)).await;
            refusing.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn answer_503(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Bounded by the 8 KiB cap and the caller's timeout.
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let body = "server busy: too many connections, try again later\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Retry-After: 1\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await?;
    // Wait for the client to close (or the timeout) so our close sends no RST.
    while tcp.read(&mut chunk).await? > 0 {}
    Ok(())
}

/// Parses a duration given as seconds (`30`) or with a unit (`500ms`, `30s`, `2m`);
/// `0` is allowed and means "none".
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30, 500ms, 30s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{text:?}: the unit must be ms, s or m")),
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Accepts the next connection that fits under `limit` (refusing the others with 503),
/// with TCP_NODELAY set; `None` once `shutdown` fires. Accept errors (usually EMFILE)
/// back off briefly instead of spinning.
pub async fn accept_admitted(
    listener: &tokio::net::TcpListener,
    limit: &ConnLimit,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<(TcpStream, std::net::SocketAddr, ConnPermit)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limit.try_acquire() else {
            tracing::debug!(%peer, live = limit.live(), "too many connections, refusing (503)");
            limit.refuse(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        return Some((tcp, peer, permit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_and_releases() {
        let limit = ConnLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.live(), 2);
        drop(a);
        let c = limit.try_acquire().expect("after a release");
        drop((b, c));
        assert_eq!(limit.live(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = ConnLimit::new(0);
        let permits: Vec<_> = (0..1000).filter_map(|_| limit.try_acquire()).collect();
        assert_eq!(permits.len(), 1000);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration_or_zero("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(
            parse_duration_or_zero("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_duration_or_zero("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration_or_zero("soon").is_err());
        assert!(parse_duration_or_zero("1h").is_err());
    }
}
