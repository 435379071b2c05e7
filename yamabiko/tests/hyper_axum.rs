//! The hyper 1 and axum 0.8 upgrades over loopback: echo through each, subprotocol
//! selection, compression, refused origins (403) and malformed requests. Bounded by a
//! timeout each.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use yamabiko::upgrade::axum::WebSocketUpgrade;
use yamabiko::upgrade::hyper::error_response;
use yamabiko::{CloseCode, Control, Dialer, Error, Message, Upgrader};

const WAIT: Duration = Duration::from_secs(20);

async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, body)
        .await
        .expect("test took too long")
}

async fn hyper_handle(
    mut req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/ws" {
        return Ok(hyper::Response::new(Full::new(Bytes::from_static(
            b"the page",
        ))));
    }
    let upgrader = Upgrader::new().subprotocols(["chat", "superchat"]);
    match upgrader.upgrade_hyper(&mut req) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let Ok(mut conn) = upgrading.await else {
                    return;
                };
                while let Ok(msg) = conn.read_message().await {
                    if conn.write_message(msg).await.is_err() {
                        break;
                    }
                }
            });
            Ok(response)
        }
        Err(e) => Ok(error_response(&e)),
    }
}

async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(hyper_handle))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends a raw request and returns the whole answer (the server closes or we stop
/// after the head and body arrived).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hyper_serves_a_page_and_a_socket_with_subprotocols() {
    bounded(async {
        let addr = hyper_server().await;
        let page = raw(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.ends_with("the page"));

        let (mut conn, response) = Dialer::new()
            .subprotocols(["superchat", "chat"])
            .dial(&format!("ws://{addr}/ws"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        // The server's preference wins among the offered ones.
        assert_eq!(conn.subprotocol(), Some("chat"));
        for msg in [Message::text("hello"), Message::binary(vec![9u8; 100_000])] {
            conn.write_message(msg.clone()).await.unwrap();
            assert_eq!(conn.read_message().await.unwrap(), msg);
        }
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn hyper_refuses_a_foreign_origin_with_403_and_bad_requests_with_their_status() {
    bounded(async {
        let addr = hyper_server().await;
        let err = Dialer::new()
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_static("https://evil.example"),
            )
            .dial(&format!("ws://{addr}/ws"))
            .await
            .expect_err("refused");
        match err {
            Error::BadHandshake(r) => assert_eq!(r.status(), 403),
            other => panic!("expected 403, got {other}"),
        }
        let v8 = raw(
            addr,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\
             Connection: close\r\n\r\n",
        )
        .await;
        assert!(v8.starts_with("HTTP/1.1 426"), "{v8}");
        assert!(v8
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"));
    })
    .await;
}

async fn axum_echo(ws: WebSocketUpgrade) -> Response {
    ws.protocols(["v2.echo", "v1.echo"])
        .enable_compression(true)
        .max_message_size(1 << 20)
        .on_upgrade(|mut conn| async move {
            // Deadlines and handlers work as on any Conn.
            conn.set_read_deadline(Some(Instant::now() + WAIT));
            while let Ok(msg) = conn.read_message().await {
                if conn.write_message(msg).await.is_err() {
                    break;
                }
            }
        })
}

async fn axum_pinger(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut conn| async move {
        // write_control from another task while this one reads.
        let ping = conn.write_control(Control::ping("are you there"), None);
        tokio::spawn(ping);
        let _ = conn.read_message().await;
    })
}

/// One route for a page and a socket: `Option<WebSocketUpgrade>`.
async fn axum_page_or_socket(ws: Option<WebSocketUpgrade>) -> Response {
    match ws {
        Some(ws) => ws.on_upgrade(|mut conn| async move {
            let _ = conn.write_text("socket").await;
        }),
        None => Response::new("page".into()),
    }
}

async fn axum_server() -> SocketAddr {
    let app = Router::new()
        .route("/", get(axum_echo))
        .route("/both", get(axum_page_or_socket))
        .route("/ping", get(axum_pinger))
        .route("/page", get(|| async { "the page" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn axum_extractor_echoes_with_subprotocol_and_compression() {
    bounded(async {
        let addr = axum_server().await;
        let (mut conn, response) = Dialer::new()
            .subprotocols(["v1.echo", "v2.echo"])
            .enable_compression(true)
            .dial(&format!("ws://{addr}/"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(conn.subprotocol(), Some("v2.echo"));
        assert!(conn.compression_negotiated());
        let text = "axum + yamabiko ".repeat(4000);
        conn.write_text(text.clone()).await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text(text));
        // The read limit set by the builder: a 2 MiB message fails with 1009.
        conn.write_binary(vec![0u8; 2 << 20]).await.unwrap();
        match conn.read_message().await {
            Err(Error::Closed(f)) => assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG),
            other => panic!("expected close 1009, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn axum_handlers_and_write_control() {
    bounded(async {
        let addr = axum_server().await;
        let (mut conn, _) = Dialer::new()
            .dial(&format!("ws://{addr}/ping"))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        conn.set_ping_handler(move |ctx, data| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(data.clone());
            }
            ctx.send(Control::Pong(data.clone()));
            Ok(())
        });
        conn.set_read_deadline(Some(Instant::now() + Duration::from_millis(500)));
        assert!(matches!(conn.read_message().await, Err(Error::Timeout)));
        assert_eq!(&rx.await.unwrap()[..], b"are you there");
    })
    .await;
}

#[tokio::test]
async fn axum_refuses_foreign_origin_and_non_websocket_requests() {
    bounded(async {
        let addr = axum_server().await;
        let err = Dialer::new()
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_static("http://elsewhere.example"),
            )
            .dial(&format!("ws://{addr}/"))
            .await
            .expect_err("refused");
        match err {
            Error::BadHandshake(r) => assert_eq!(r.status(), 403),
            other => panic!("expected 403, got {other}"),
        }
        // Same origin passes the default check.
        let (conn, _) = Dialer::new()
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_str(&format!("http://{addr}")).unwrap(),
            )
            .dial(&format!("ws://{addr}/"))
            .await
            .unwrap();
        conn.close();
        let plain = raw(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
        let page = raw(
            addr,
            "GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200") && page.ends_with("the page"));
        // Option<WebSocketUpgrade>: a page for plain requests, a socket for upgrades.
        let both = raw(
            addr,
            "GET /both HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            both.starts_with("HTTP/1.1 200") && both.ends_with("page"),
            "{both}"
        );
        let (mut conn, _) = Dialer::new()
            .dial(&format!("ws://{addr}/both"))
            .await
            .unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("socket"));
    })
    .await;
}
