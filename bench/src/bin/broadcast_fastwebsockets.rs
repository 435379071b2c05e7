//! Broadcast server on fastwebsockets: every text or binary message from any
//! connection goes to every connection (the sender too). A hub of per-connection
//! bounded channels (256 messages, as in gorilla's chat example): the reader that
//! receives a message `try_send`s it to every connection's writer task (a full
//! channel drops it for that connection), and each writer writes frame by frame, as
//! fastwebsockets does. hyper 1 upgrade, one thread. Usage:
//! `broadcast-fastwebsockets [ADDR]`.

use fastwebsockets::{upgrade, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Largest message accepted.
const MAX_MESSAGE: usize = (64 << 20) + 1024;
/// Messages a connection may have waiting.
const QUEUE: usize = 256;

type Shared = Arc<(OpCode, Vec<u8>)>;

/// The connections' queues, by connection number.
#[derive(Default)]
struct Hub {
    next: u64,
    queues: HashMap<u64, mpsc::Sender<Shared>>,
}

async fn handle_client(
    fut: upgrade::UpgradeFut,
    hub: Arc<Mutex<Hub>>,
) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_max_message_size(MAX_MESSAGE);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    let (mut read, mut write) = ws.split(tokio::io::split);
    let (tx, mut rx) = mpsc::channel::<Shared>(QUEUE);
    let id = {
        let mut h = hub.lock().unwrap();
        h.next += 1;
        let id = h.next;
        h.queues.insert(id, tx);
        id
    };
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let frame = Frame::new(true, msg.0, None, Payload::Borrowed(&msg.1));
            if write.write_frame(frame).await.is_err() {
                return;
            }
        }
    });
    let mut ignore = |_: Frame<'_>| async { Ok::<(), WebSocketError>(()) };
    loop {
        let frame = match read.read_frame(&mut ignore).await {
            Ok(f) => f,
            Err(_) => break,
        };
        match frame.opcode {
            OpCode::Close => break,
            // Messages are not fragmented in the benchmark.
            OpCode::Text | OpCode::Binary if frame.fin => {
                let msg: Shared = Arc::new((frame.opcode, frame.payload.to_vec()));
                let h = hub.lock().unwrap();
                for q in h.queues.values() {
                    let _ = q.try_send(msg.clone());
                }
            }
            _ => {}
        }
    }
    hub.lock().unwrap().queues.remove(&id);
    writer.abort();
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    hub: Arc<Mutex<Hub>>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(handle_client(fut, hub)).await {
            eprintln!("connection error: {e}");
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9013".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!(
            "broadcast-fastwebsockets listening on {}",
            listener.local_addr()?
        );
        let hub = Arc::new(Mutex::new(Hub::default()));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let hub = hub.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(move |req| server_upgrade(req, hub.clone())))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("http error: {e:?}");
                }
            });
        }
    })
}
