//! `yamabiko echo --blocking` on the built binary: echoes (with compression), the
//! thread bound `--max-conns` (503 beyond it, room again after a close), and the idle
//! timeout (1001). The server is killed by PID on drop; every wait is bounded.

use std::time::Duration;
use tokio::process::Child;
use yamabiko::{CloseCode, Dialer, Error, Message};

mod common;
const WAIT: Duration = Duration::from_secs(15);

/// `yamabiko echo --blocking --listen 127.0.0.1:0 EXTRA`, with the address it logged.
async fn start(extra: &[&str]) -> (Child, String) {
    let mut args = vec!["echo", "--blocking", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    common::spawn_logging_addr(&args, WAIT).await
}

#[tokio::test]
async fn blocking_echo_bounds_threads_and_closes_idle_connections() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (_server, addr) = start(&["--max-conns", "2", "--idle-timeout", "1s"]).await;
        let url = format!("ws://{addr}/");
        let dialer = Dialer::new().enable_compression(true);
        let (mut a, _) = dialer.dial(&url).await.unwrap();
        let (mut b, _) = dialer.dial(&url).await.unwrap();
        assert!(a.compression_negotiated());
        let text = "thread per connection ".repeat(1000);
        a.write_text(text.clone()).await.unwrap();
        assert_eq!(a.read_message().await.unwrap(), Message::text(text));
        b.write_binary(vec![1u8; 70_000]).await.unwrap();
        assert_eq!(b.read_message().await.unwrap().len(), 70_000);
        // A third connection is over the limit.
        match dialer.dial(&url).await {
            Err(Error::BadHandshake(r)) => assert_eq!(r.status(), 503),
            Err(e) => panic!("expected 503, got {e}"),
            Ok(_) => panic!("expected 503, got a connection"),
        }
        // Both idle for a second: closed with 1001.
        for conn in [&mut a, &mut b] {
            match conn.read_message().await {
                Err(Error::Closed(f)) => assert_eq!(f.code, CloseCode::GOING_AWAY),
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
        drop((a, b));
        // Their threads ended: there is room again (retry briefly while they exit).
        let mut admitted = false;
        for _ in 0..50 {
            if let Ok((mut c, _)) = dialer.dial(&url).await {
                c.write_text("again").await.unwrap();
                assert_eq!(c.read_message().await.unwrap(), Message::text("again"));
                admitted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(admitted, "no room after the connections closed");
    })
    .await
    .expect("test took too long");
}

#[tokio::test]
async fn blocking_echo_serves_wss() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir =
            std::env::temp_dir().join(format!("yamabiko-echo-blocking-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let (_server, addr) = start(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .await;
        let (mut conn, _) = Dialer::new()
            .add_root_certificates_pem(certified.cert.pem().as_bytes())
            .unwrap()
            .enable_compression(true)
            .dial(&format!("wss://{addr}/"))
            .await
            .unwrap();
        assert_eq!(conn.with_stream(|s| s.is_tls()), Some(true));
        for size in [5usize, 100_000] {
            let msg = Message::binary(vec![b'z'; size]);
            conn.write_message(msg.clone()).await.unwrap();
            assert_eq!(conn.read_message().await.unwrap(), msg);
        }
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("test took too long");
}
