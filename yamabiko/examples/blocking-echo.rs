//! The echo server on the blocking API: one thread per connection, a read deadline
//! per message, at most 64 connections at once.
//!
//! `cargo run -p yamabiko --example blocking-echo [ADDR]` (default 127.0.0.1:9001).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_CONNS: usize = 64;

fn main() -> yamabiko::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    println!("ws://{}/", listener.local_addr()?);
    let upgrader = yamabiko::Upgrader::new().enable_compression(true);
    let live = Arc::new(AtomicUsize::new(0));
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
            live.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: too many connections
        }
        let (upgrader, live) = (upgrader.clone(), live.clone());
        std::thread::spawn(move || {
            if let Ok(mut conn) = upgrader.upgrade_blocking(tcp) {
                loop {
                    conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(60)));
                    let Ok(msg) = conn.read_message() else { break };
                    if conn.write_message(msg).is_err() {
                        break;
                    }
                }
            }
            live.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}
