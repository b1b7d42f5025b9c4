//! WebSocket echo backend for bench scenario H4 (runs on the load generator's CPU).
//! Usage: ws-echo 127.0.0.1:PORT
use futures_util::{SinkExt, StreamExt};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9302".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(async move {
                        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_close() {
                                break;
                            }
                            if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            })
            .await;
    });
}
