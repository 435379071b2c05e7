//! The ten-line echo server from the crate docs.
//!
//! `cargo run -p yamabiko --example echo` then connect to ws://127.0.0.1:9001.

#[tokio::main]
async fn main() -> yamabiko::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
    let upgrader = yamabiko::Upgrader::new();
    loop {
        let (tcp, _) = listener.accept().await?;
        let upgrader = upgrader.clone();
        tokio::spawn(async move {
            let Ok(mut conn) = upgrader.upgrade(tcp).await else {
                return;
            };
            while let Ok(msg) = conn.read_message().await {
                if conn.write_message(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}
