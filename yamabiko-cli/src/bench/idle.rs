//! `--idle N`: holds N idle connections, to measure a server's memory per connection.

use super::{rss_bytes, secs, BenchArgs, Report};
use anyhow::{bail, Context};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};
use yamabiko::Dialer;
/// `--idle N`: opens N connections, holds them, reports how many opened.
pub(super) async fn idle(args: &BenchArgs, n: usize) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    let hold = secs("hold", args.hold)?;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let uri: http::Uri = args.url.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    if uri.scheme_str() == Some("wss") {
        bail!("--idle supports ws:// only");
    }
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("the host has no address")?;
    // Past one source address's ephemeral ports, spread over 127.0.0.2, .3, …
    let spread = n > 20_000 && matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let dialer = Dialer::new().handshake_timeout(connect_timeout);
    let rss_before = args.server_pid.and_then(rss_bytes);
    let started = Instant::now();
    let deadline = started + connect_timeout;
    let gate = Arc::new(Semaphore::new(256));
    let mut dials = JoinSet::new();
    for i in 0..n {
        let dialer = dialer.clone();
        let url = args.url.clone();
        let gate = gate.clone();
        dials.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if spread {
                let third = (2 + i / 20_000 / 254) as u8;
                let fourth = (2 + (i / 20_000) % 254) as u8;
                socket.bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth)),
                    0,
                ))?;
            }
            let tcp: TcpStream = socket.connect(addr).await?;
            let (conn, _) = dialer.dial_with_stream(tcp, &url).await?;
            anyhow::Ok(conn)
        });
    }
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut first_error = None;
    loop {
        match timeout_at(deadline, dials.join_next()).await {
            Ok(Some(Ok(Ok(conn)))) => conns.push(conn),
            Ok(Some(Ok(Err(e)))) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(Some(Err(_))) => failed += 1,
            Ok(None) => break,
            Err(_) => {
                failed += dials.len() as u64;
                first_error.get_or_insert_with(|| "timed out".to_string());
                dials.abort_all();
                break;
            }
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_secs(1).min(hold)).await;
    let rss_after = args.server_pid.and_then(rss_bytes);
    tokio::time::sleep(hold.saturating_sub(Duration::from_secs(1))).await;
    let opened = conns.len();
    drop(conns);
    let per_conn = match (rss_before, rss_after) {
        (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) / opened as f64),
        _ => None,
    };
    let json = serde_json::json!({
        "url": args.url,
        "idle_requested": n,
        "idle_opened": opened,
        "failed": failed,
        "first_error": first_error,
        "open_seconds": open_secs,
        "nofile_limit": nofile,
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_bytes_per_conn": per_conn,
        "errors": failed,
    });
    let mut table = format!(
        "idle: {opened} of {n} connections opened in {open_secs:.1} s, held {:.0} s ({failed} failed)",
        hold.as_secs_f64()
    );
    if let Some(e) = &first_error {
        table.push_str(&format!("\n  first error: {e}"));
    }
    if let Some(b) = per_conn {
        table.push_str(&format!(
            "\n  server RSS growth: {b:.0} bytes per connection"
        ));
    }
    Ok(Report {
        json,
        table,
        errors: failed,
    })
}
