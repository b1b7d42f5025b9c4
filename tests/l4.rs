//! Integration tests of the L4 (TCP) data path against the real binary on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// Backend that receives the client's stream (digest sent to `tx`) while sending `total` bytes of
/// seed 2, then shuts down its write side.
fn digest_backend(total: u64) -> (Backend, mpsc::Receiver<Digest>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let mut reader = s.try_clone().expect("clone");
        let got = std::thread::spawn(move || recv_stream(&mut reader));
        let mut w = s;
        let _ = send_stream(&mut w, 2, total);
        let _ = w.shutdown(Shutdown::Write);
        if let Ok(Ok(d)) = got.join() {
            let _ = tx.lock().map(|t| t.send(d));
        }
    });
    (b, rx)
}

fn integrity_each_way(splice: &'static str, total: u64) -> Ringway {
    let (backend, from_client) = digest_backend(total);
    let rw = Ringway::start(
        &[backend.addr],
        &Opts {
            splice,
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    let mut w = c.try_clone().expect("clone");
    let up = std::thread::spawn(move || {
        let d = send_stream(&mut w, 1, total);
        let _ = w.shutdown(Shutdown::Write);
        d
    });
    let down = recv_stream(&mut c).expect("client read");
    let up = up.join().expect("join").expect("client send");
    let at_backend = from_client
        .recv_timeout(IO_TIMEOUT)
        .expect("backend digest");
    assert_eq!(up, expected_digest(1, total));
    assert_eq!(at_backend, up, "client -> server stream corrupted");
    assert_eq!(
        down,
        expected_digest(2, total),
        "server -> client stream corrupted"
    );
    rw.wait_total("closed", Duration::from_secs(10), |n| n >= 1);
    rw
}

#[test]
fn integrity_32mib_each_way_over_splice() {
    let rw = integrity_each_way("always", 32 * MIB);
    // Bytes that arrive before the flow can splice (the client's while the server connection is
    // being made, the server's first read) are copied: at most one 16 KiB recv each way.
    let spliced = rw.total("bytes_spliced");
    assert!(
        spliced >= 64 * MIB - 2 * 16 * 1024,
        "{spliced} bytes spliced"
    );
}

#[test]
fn integrity_32mib_each_way_over_copy() {
    let rw = integrity_each_way("off", 32 * MIB);
    assert_eq!(rw.total("bytes_spliced"), 0);
    assert_eq!(rw.total("bytes_client_to_server"), 32 * MIB);
    assert_eq!(rw.total("bytes_server_to_client"), 32 * MIB);
}

#[test]
fn integrity_32mib_each_way_auto_switches_to_splice() {
    let rw = integrity_each_way("auto", 32 * MIB);
    let spliced = rw.total("bytes_spliced");
    assert!(
        spliced > 32 * MIB,
        "bulk transfer should mostly splice, got {spliced}"
    );
    assert_eq!(rw.total("bytes_client_to_server"), 32 * MIB);
}

#[test]
fn small_messages_stay_on_copy_path_in_auto_mode() {
    let backend = Backend::echo();
    let rw = Ringway::start(&[backend.addr], &Opts::default());
    let mut c = connect(rw.listen);
    let mut buf = [0u8; 64];
    for i in 0..100u8 {
        c.write_all(&[i; 64]).expect("write");
        c.read_exact(&mut buf).expect("read");
        assert_eq!(buf, [i; 64]);
    }
    drop(c);
    rw.wait_total("closed", Duration::from_secs(10), |n| n >= 1);
    assert_eq!(rw.total("bytes_spliced"), 0);
}

#[test]
fn thousand_concurrent_connections() {
    raise_nofile();
    let backend = Backend::echo();
    let rw = Ringway::start(&[backend.addr], &Opts::default());
    let mut clients = Vec::with_capacity(1000);
    for _ in 0..1000 {
        clients.push(connect(rw.listen));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("hello {i:05}\n").as_bytes())
            .expect("write");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).expect("echo");
        assert_eq!(&buf, format!("hello {i:05}\n").as_bytes());
    }
    assert_eq!(rw.total("active"), 1000);
    drop(clients);
    rw.wait_total("active", Duration::from_secs(20), |n| n == 0);
    assert_eq!(rw.total("closed"), 1000);
    assert!(rw.total("accepted") >= 1000);
}

#[test]
fn half_close_from_client_keeps_response_flowing() {
    // Backend reads the whole request (until EOF), then answers with 1 MiB and closes.
    let b = Backend::spawn(|mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let d = recv_stream(&mut s).unwrap_or_default();
        let reply = format!("got {} bytes\n", d.bytes);
        let _ = s.write_all(reply.as_bytes());
        let _ = send_stream(&mut s, 7, MIB);
    });
    let rw = Ringway::start(&[b.addr], &Opts::default());
    let mut c = connect(rw.listen);
    c.write_all(&[b'x'; 1000]).expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let mut head = [0u8; 15];
    c.read_exact(&mut head).expect("reply after half-close");
    assert_eq!(&head, b"got 1000 bytes\n");
    let rest = recv_stream(&mut c).expect("body");
    assert_eq!(rest, expected_digest(7, MIB));
}

#[test]
fn half_close_from_server_keeps_request_flowing() {
    // Backend says hello, half-closes, then keeps reading and reports what it got on a channel.
    let (tx, rx) = mpsc::channel::<u64>();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let _ = s.write_all(b"bye\n");
        let _ = s.shutdown(Shutdown::Write);
        let d = recv_stream(&mut s).unwrap_or_default();
        let _ = tx.lock().map(|t| t.send(d.bytes));
    });
    let rw = Ringway::start(&[b.addr], &Opts::default());
    let mut c = connect(rw.listen);
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("server data then EOF");
    assert_eq!(got, b"bye\n");
    // The client's direction still flows after the server's EOF.
    send_stream(&mut c, 3, 4 * MIB).expect("upload after server EOF");
    c.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(rx.recv_timeout(IO_TIMEOUT).expect("backend count"), 4 * MIB);
}

/// Bound on ringway's RSS growth while a fast server streams 200 MiB to a slow client. Memory per
/// connection is bounded by design (one 64 KiB pipe per spliced direction, or at most a few
/// 16 KiB ring buffers); the shard's whole buffer ring is 8 MiB. 24 MiB leaves room for allocator
/// and stack noise but fails if the stream were buffered (it is 200 MiB).
const SLOW_READER_RSS_GROWTH_MAX_KIB: u64 = 24 * 1024;

fn slow_reader(splice: &'static str) {
    let total = 200 * MIB;
    let b = Backend::spawn(move |mut s| {
        let _ = send_stream(&mut s, 9, total);
    });
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            splice,
            shards: 1,
            ..Opts::default()
        },
    );
    let base = rw.rss_kib();
    let mut c = connect(rw.listen);
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut d = Digest::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut peak = base;
    let mut reads = 0u64;
    loop {
        let n = c.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
        reads += 1;
        // A slow reader for the first 16 MiB: the proxy must hold back, not buffer.
        if d.bytes < 16 * MIB && reads.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if reads.is_multiple_of(64) {
            peak = peak.max(rw.rss_kib());
        }
    }
    peak = peak.max(rw.rss_kib());
    assert_eq!(d, expected_digest(9, total));
    assert!(
        peak.saturating_sub(base) <= SLOW_READER_RSS_GROWTH_MAX_KIB,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

#[test]
fn slow_reading_client_keeps_proxy_rss_bounded_with_splice() {
    slow_reader("auto");
}

#[test]
fn slow_reading_client_keeps_proxy_rss_bounded_with_copy() {
    slow_reader("off");
}

#[test]
fn backend_refused_closes_client_promptly_and_counts() {
    let dead = DeadPort::new();
    let rw = Ringway::start(&[dead.addr], &Opts::default());
    let mut c = connect(rw.listen);
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "expected EOF or reset, got {r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    rw.wait_total("connect_errors", Duration::from_secs(5), |n| n >= 1);
}

#[test]
fn connect_timeout_closes_client() {
    // A listener whose accept queue is full: further SYNs are dropped, so connects hang.
    let blackhole =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    blackhole
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind");
    blackhole.listen(0).expect("listen");
    let addr = blackhole
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let _filler = TcpStream::connect(addr).expect("fill the accept queue");
    let rw = Ringway::start(
        &[addr],
        &Opts {
            connect: "300ms",
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "expected close, got {r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    rw.wait_total("connect_timeouts", Duration::from_secs(5), |n| n >= 1);
}

#[test]
fn idle_timeout_closes_both_sides() {
    let (tx, rx) = mpsc::channel::<Instant>();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let mut buf = [0u8; 8];
        // Never sends: waits for ringway to close the idle connection.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.lock().map(|t| t.send(Instant::now()));
    });
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            client_idle: "500ms",
            server_idle: "500ms",
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    let t = Instant::now();
    let mut buf = [0u8; 8];
    let r = c.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    rx.recv_timeout(Duration::from_secs(5))
        .expect("backend side closed too");
    rw.wait_total("idle_timeouts", Duration::from_secs(5), |n| n >= 1);
}

#[test]
fn activity_keeps_connection_alive_past_idle_timeout() {
    let b = Backend::echo();
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            client_idle: "500ms",
            server_idle: "500ms",
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    let start = Instant::now();
    let mut buf = [0u8; 1];
    // One byte every 200 ms for 1.5 s: never idle for 500 ms. The pauses are the behaviour under
    // test (a slow but live client), not waits for readiness.
    while start.elapsed() < Duration::from_millis(1500) {
        c.write_all(b"p").expect("write");
        c.read_exact(&mut buf).expect("echo while active");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(rw.total("idle_timeouts"), 0);
}

#[test]
fn round_robin_spreads_over_servers() {
    let named = |name: &'static [u8]| {
        Backend::spawn(move |mut s| {
            let _ = s.write_all(name);
        })
    };
    let (a, b) = (named(b"A"), named(b"B"));
    let rw = Ringway::start(
        &[a.addr, b.addr],
        &Opts {
            shards: 1,
            ..Opts::default()
        },
    );
    let mut seen = String::new();
    for _ in 0..20 {
        let mut c = connect(rw.listen);
        let mut s = String::new();
        c.read_to_string(&mut s).expect("read");
        seen.push_str(&s);
    }
    assert_eq!(seen, "AB".repeat(10));
}

#[test]
fn backend_dies_mid_response_client_sees_close_not_hang() {
    let b = Backend::spawn(|mut s| {
        let _ = send_stream(&mut s, 5, 256 * 1024);
        // Abort with RST: SO_LINGER 0 then close.
        let sock = socket2::Socket::from(s);
        let _ = sock.set_linger(Some(Duration::ZERO));
        drop(sock);
    });
    let rw = Ringway::start(&[b.addr], &Opts::default());
    let mut c = connect(rw.listen);
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    let end = loop {
        match c.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(n) => got += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("client hung after backend reset (got {got} bytes)")
            }
            Err(_) => break "reset",
        }
    };
    assert!(got <= 256 * 1024, "{end}");
    rw.wait_total("active", Duration::from_secs(5), |n| n == 0);
}

#[test]
fn client_reset_mid_upload_closes_backend_side() {
    // The backend says when the upload reaches it, then how many bytes it saw before the end.
    // Until the first bytes arrive ringway may not have connected at all (a client reset
    // before that is answered by closing the client only), so the reset waits for them.
    let (tx, rx) = mpsc::channel::<Option<u64>>();
    let tx = std::sync::Mutex::new(tx);
    let b = Backend::spawn(move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let mut first = [0u8; 1];
        let started = matches!(s.read(&mut first), Ok(1));
        let _ = tx.lock().map(|t| t.send(None));
        let d = if started {
            recv_stream(&mut s)
                .map(|d| d.bytes + 1)
                .unwrap_or(u64::MAX - 1)
        } else {
            0
        };
        let _ = tx.lock().map(|t| t.send(Some(d)));
    });
    let rw = Ringway::start(&[b.addr], &Opts::default());
    let mut c = connect(rw.listen);
    send_stream(&mut c, 4, MIB).expect("upload");
    assert_eq!(
        rx.recv_timeout(IO_TIMEOUT)
            .expect("the upload reached the backend"),
        None
    );
    let sock = socket2::Socket::from(c);
    sock.set_linger(Some(Duration::ZERO)).expect("linger");
    drop(sock);
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("backend saw the end promptly")
        .expect("one connection");
    assert!(seen <= MIB || seen == u64::MAX - 1, "{seen}");
    rw.wait_total("active", Duration::from_secs(5), |n| n == 0);
}

#[test]
fn no_fd_leak_after_5000_connections() {
    raise_nofile();
    let b = Backend::echo();
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            splice: "off",
            ..Opts::default()
        },
    );
    let baseline = rw.fd_count();
    let run_batch = |n: usize| {
        let mut handles = Vec::new();
        for t in 0..50 {
            let addr = rw.listen;
            handles.push(std::thread::spawn(move || {
                for i in 0..n / 50 {
                    let mut c = connect(addr);
                    match (t + i) % 5 {
                        // Close right after connect, before the backend connect may complete.
                        0 => drop(c),
                        // Reset mid-conversation.
                        1 => {
                            let _ = c.write_all(b"ping");
                            let s = socket2::Socket::from(c);
                            let _ = s.set_linger(Some(Duration::ZERO));
                        }
                        _ => {
                            c.write_all(b"ping").expect("write");
                            let mut buf = [0u8; 4];
                            c.read_exact(&mut buf).expect("echo");
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.join().expect("client thread");
        }
    };
    run_batch(5000);
    rw.wait_total("active", Duration::from_secs(20), |n| n == 0);
    let after = poll(Duration::from_secs(5), || {
        let n = rw.fd_count();
        (n == baseline).then_some(n)
    });
    assert_eq!(
        after,
        Some(baseline),
        "fds: baseline {baseline}, now {}",
        rw.fd_count()
    );
    assert!(rw.total("closed") >= 5000);
}

#[test]
fn spliced_connections_return_pipes_to_a_bounded_pool() {
    raise_nofile();
    let b = Backend::spawn(|mut s| {
        let _ = send_stream(&mut s, 1, 256 * 1024);
    });
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            splice: "always",
            extra_global: "pipe_pool_max = 8".into(),
            ..Opts::default()
        },
    );
    let baseline = rw.fd_count();
    for round in 0..2 {
        let mut handles = Vec::new();
        for _ in 0..20 {
            let addr = rw.listen;
            handles.push(std::thread::spawn(move || {
                for _ in 0..10 {
                    let mut c = connect(addr);
                    let d = recv_stream(&mut c).expect("read");
                    assert_eq!(d, expected_digest(1, 256 * 1024));
                }
            }));
        }
        for h in handles {
            h.join().expect("client");
        }
        rw.wait_total("active", Duration::from_secs(20), |n| n == 0);
        // Two shards, each keeps at most 8 idle pipes of 2 fds.
        let bound = baseline + 2 * 8 * 2;
        let settled = poll(Duration::from_secs(5), || {
            (rw.fd_count() <= bound).then_some(())
        });
        assert!(
            settled.is_some(),
            "round {round}: fds {}, baseline {baseline}",
            rw.fd_count()
        );
    }
    assert!(rw.total("bytes_spliced") >= 400 * 256 * 1024);
}

#[test]
fn connections_over_conns_per_shard_max_are_rejected() {
    let b = Backend::echo();
    let rw = Ringway::start(
        &[b.addr],
        &Opts {
            shards: 1,
            extra_global: "conns_per_shard_max = 2".into(),
            ..Opts::default()
        },
    );
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(rw.listen)).collect();
    for c in &mut held {
        c.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).expect("echo");
    }
    let mut third = connect(rw.listen);
    let mut buf = [0u8; 1];
    let r = third.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    rw.wait_total("rejected", Duration::from_secs(5), |n| n >= 1);
}

#[test]
fn client_closing_at_once_while_server_streams_does_not_linger() {
    let b = Backend::spawn(|mut s| {
        let _ = send_stream(&mut s, 12, 64 * MIB);
    });
    let rw = Ringway::start(&[b.addr], &Opts::default());
    for _ in 0..20 {
        drop(connect(rw.listen));
    }
    rw.wait_total("closed", Duration::from_secs(10), |n| n >= 20);
}
