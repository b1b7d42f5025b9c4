//! WebSocket load generator for bench scenario H4: CONNS connections, each sending a 64-byte
//! binary message and waiting for its echo, in a loop, for SECONDS. Prints one JSON line like the
//! wrk scripts: messages (round trips), duration, bytes, latency percentiles, errors.
//! Usage: ws-load ws://127.0.0.1:PORT/ws CONNS SECONDS
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let hist = Rc::new(RefCell::new(hdrhistogram::Histogram::<u64>::new(3).expect("histogram")));
    let errors = Rc::new(RefCell::new(0u64));
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (url, hist, errors) = (url.clone(), Rc::clone(&hist), Rc::clone(&errors));
            tasks.push(tokio::task::spawn_local(async move {
                let authority = url.trim_start_matches("ws://").split('/').next().unwrap_or("").to_string();
                let Ok(tcp) = tokio::net::TcpStream::connect(authority.as_str()).await else {
                    *errors.borrow_mut() += 1;
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let Ok((mut ws, _)) = tokio_tungstenite::client_async(url.as_str(), tcp).await else {
                    *errors.borrow_mut() += 1;
                    return;
                };
                let payload = vec![0x5au8; 64];
                while Instant::now() < end {
                    let t = Instant::now();
                    if ws.send(Message::binary(payload.clone())).await.is_err() {
                        *errors.borrow_mut() += 1;
                        return;
                    }
                    match ws.next().await {
                        Some(Ok(m)) if m.len() == 64 => {
                            let _ = hist.borrow_mut().record(t.elapsed().as_micros() as u64);
                        }
                        _ => {
                            *errors.borrow_mut() += 1;
                            return;
                        }
                    }
                }
                let _ = ws.close(None).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let h = hist.borrow();
    let dur = started.elapsed().as_micros() as u64;
    println!(
        "JSON {{\"requests\":{},\"duration_us\":{},\"bytes\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"err_connect\":0,\"err_read\":{},\"err_write\":0,\"err_timeout\":0,\"non2xx\":0}}",
        h.len(),
        dur,
        h.len() * 64 * 2,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        errors.borrow()
    );
}
