//! Reference: glommio 0.9 L4 forwarder on one executor pinned to CPU 0, 64 KiB buffers.
//! usage: ref-glommio LISTEN BACKEND
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

async fn pump<R, W>(mut from: R, mut to: W)
where
    R: futures_lite::AsyncRead + Unpin,
    W: futures_lite::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    // glommio's close() on a write half shuts down the write side.
    let _ = to.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(backend)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        eprintln!("usage: ref-glommio LISTEN BACKEND");
        std::process::exit(2);
    };
    let handle = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spawn(move || async move {
            let Ok(listener) = TcpListener::bind(&listen) else {
                eprintln!("bind {listen} failed");
                return;
            };
            loop {
                let Ok(client) = listener.accept().await else { continue };
                let backend = backend.clone();
                glommio::spawn_local(async move {
                    let Ok(server) = TcpStream::connect(&backend).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = futures_lite::io::split(client);
                    let (sr, sw) = futures_lite::io::split(server);
                    futures_lite::future::zip(pump(cr, sw), pump(sr, cw)).await;
                })
                .detach();
            }
        });
    match handle {
        Ok(h) => {
            let _ = h.join();
        }
        Err(e) => {
            eprintln!("glommio executor: {e}");
            std::process::exit(1);
        }
    }
}
