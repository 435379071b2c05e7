//! Broadcast server on tokio-tungstenite: every text or binary message from any
//! connection goes to every connection (the sender too). The usual tokio idiom: a
//! `tokio::sync::broadcast` channel (bounded, 1024 messages) that every connection's
//! writer task receives from, feeding whatever is queued into the sink before one
//! flush; a writer that lags behind by the whole channel skips what it missed. One
//! thread, limits at 64 MiB. Usage: `broadcast-tungstenite [ADDR]`.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const MAX: usize = 64 << 20;
/// Messages the channel holds for the slowest writer.
const CAPACITY: usize = 1024;

async fn accept_connection(stream: TcpStream, hub: broadcast::Sender<Message>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("handshake error: {e}");
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let mut rx = hub.subscribe();
    let writer = tokio::spawn(async move {
        loop {
            let msg = match rx.recv().await {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
            // Everything else already queued goes out with the same flush.
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        if sink.feed(m).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_text() || msg.is_binary() {
            let _ = hub.send(msg);
        }
    }
    writer.abort();
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9012".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!(
            "broadcast-tungstenite listening on {}",
            listener.local_addr()?
        );
        let (hub, _) = broadcast::channel(CAPACITY);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(accept_connection(stream, hub.clone()));
        }
    })
}
