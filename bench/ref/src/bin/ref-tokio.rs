//! Reference: tokio current_thread L4 forwarder, 64 KiB buffers. usage: ref-tokio LISTEN BACKEND
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, backend) = match (args.get(1), args.get(2)) {
        (Some(l), Some(b)) => (l.clone(), b.clone()),
        _ => {
            eprintln!("usage: ref-tokio LISTEN BACKEND");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let (mut client, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => continue,
            };
            let backend = backend.clone();
            tokio::task::spawn_local(async move {
                let Ok(mut server) = TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, 65536, 65536).await;
            });
        }
    })
}
