//! Balancing through the real binary: weights, least connections, consistent hashing, retries
//! and redispatch when a server dies, TCP connect retries.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::httpd::{Httpd, Reply, ok};
use common::*;

/// An HTTP listener in front of one backend `app` with the given servers and backend keys.
fn config(listen: u16, admin: u16, shards: u32, servers: &[String], backend_extra: &str) -> String {
    format!(
        "[global]\nshards = {shards}\nadmin = \"127.0.0.1:{admin}\"\n\
         [timeouts]\nconnect = \"1s\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"app\"\n\
         [[backend]]\nname = \"app\"\n{backend_extra}\nservers = [ {} ]\n",
        servers.join(", ")
    )
}

fn server(addr: SocketAddr, extra: &str) -> String {
    format!("{{ address = \"{addr}\"{extra} }}")
}

/// Sends `n` keep-alive GETs on each of `conns` connections (sequentially per connection, the
/// connections in parallel threads) and returns the bodies.
fn get_many(
    addr: SocketAddr,
    conns: usize,
    n: usize,
    path: &'static str,
    header: Option<String>,
) -> Vec<String> {
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let header = header.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                let mut out = Vec::new();
                let mut pending = Vec::new();
                for i in 0..n {
                    let extra = header
                        .as_deref()
                        .map(|h| format!("{h}-{c}\r\n"))
                        .unwrap_or_default();
                    let _ = i;
                    s.write_all(
                        format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}\r\n").as_bytes(),
                    )
                    .expect("write");
                    out.push(read_one(&mut s, &mut pending));
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client"))
        .collect()
}

fn read_one(s: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if pending.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + len]).to_string();
                let status = head.split(' ').nth(1).unwrap_or("").to_string();
                pending.drain(..end + 4 + len);
                return if status == "200" {
                    body
                } else {
                    format!("status {status}")
                };
            }
        }
        let n = s.read(&mut tmp).expect("read");
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&tmp[..n]);
    }
}

fn count(bodies: &[String], name: &str) -> usize {
    bodies.iter().filter(|b| b.starts_with(name)).count()
}

#[test]
fn weights_1_2_3_split_6000_requests_in_proportion() {
    let a = Httpd::named("a");
    let b = Httpd::named("b");
    let c = Httpd::named("c");
    let servers = [
        server(a.addr, ", weight = 1"),
        server(b.addr, ", weight = 2"),
        server(c.addr, ", weight = 3"),
    ];
    let rw = Ringway::start_text(|l, ad| config(l, ad, 2, &servers, ""));
    let bodies = get_many(rw.listen, 6, 1000, "/", None);
    let (na, nb, nc) = (
        count(&bodies, "a "),
        count(&bodies, "b "),
        count(&bodies, "c "),
    );
    assert_eq!(na + nb + nc, 6000, "{na} {nb} {nc}");
    // Smooth WRR is exact per shard and cycle; allow a cycle's worth of slack per shard.
    for (got, want) in [(na, 1000), (nb, 2000), (nc, 3000)] {
        assert!(got.abs_diff(want) <= 12, "{na}:{nb}:{nc}");
    }
}

#[test]
fn least_conn_sends_fewer_requests_to_a_slow_server() {
    let slow = Httpd::spawn(|r| {
        std::thread::sleep(Duration::from_millis(100));
        Reply::Bytes(ok(&format!("slow {}", r.target)))
    });
    let f1 = Httpd::named("fast1");
    let f2 = Httpd::named("fast2");
    let servers = [
        server(slow.addr, ""),
        server(f1.addr, ""),
        server(f2.addr, ""),
    ];
    let rw = Ringway::start_text(|l, ad| config(l, ad, 1, &servers, "balance = \"least_conn\""));
    let bodies = get_many(rw.listen, 8, 40, "/", None);
    let n_slow = count(&bodies, "slow");
    let n_fast = count(&bodies, "fast");
    assert_eq!(n_slow + n_fast, 320);
    // Round robin would give the slow server a third (~107).
    assert!(n_slow * 4 < n_fast / 2, "slow {n_slow}, fast {n_fast}");
}

#[test]
fn maglev_on_the_source_keeps_a_client_on_one_server() {
    let s: Vec<Httpd> = ["a", "b", "c"].iter().map(|n| Httpd::named(n)).collect();
    let servers: Vec<String> = s.iter().map(|h| server(h.addr, "")).collect();
    let rw = Ringway::start_text(|l, ad| config(l, ad, 2, &servers, "balance = \"maglev\""));
    // New connections (different shards, different ports): same client address, same server.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let b = get_many(rw.listen, 1, 1, "/", None);
        seen.insert(b[0].split(' ').next().unwrap_or("").to_string());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn maglev_on_a_header_spreads_users_and_keeps_each_on_its_server() {
    let s: Vec<Httpd> = ["a", "b", "c"].iter().map(|n| Httpd::named(n)).collect();
    let servers: Vec<String> = s.iter().map(|h| server(h.addr, "")).collect();
    let rw = Ringway::start_text(|l, ad| {
        config(
            l,
            ad,
            2,
            &servers,
            "balance = \"maglev\"\nhash_key = \"header:X-User\"",
        )
    });
    // 30 users (one connection each, header X-User: user-<conn>), 10 requests each.
    let handles: Vec<_> = (0..30)
        .map(|u| {
            let addr = rw.listen;
            std::thread::spawn(move || {
                let mut owners = std::collections::BTreeSet::new();
                for _ in 0..10 {
                    let mut s = TcpStream::connect(addr).expect("connect");
                    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                    s.write_all(
                        format!("GET / HTTP/1.1\r\nHost: a\r\nX-User: user-{u}\r\n\r\n").as_bytes(),
                    )
                    .expect("write");
                    let mut pending = Vec::new();
                    let body = read_one(&mut s, &mut pending);
                    owners.insert(body.split(' ').next().unwrap_or("").to_string());
                }
                owners
            })
        })
        .collect();
    let mut per_server = std::collections::BTreeMap::new();
    for h in handles {
        let owners = h.join().expect("user");
        assert_eq!(owners.len(), 1, "a user moved: {owners:?}");
        for o in owners {
            *per_server.entry(o).or_insert(0) += 1;
        }
    }
    assert_eq!(
        per_server.len(),
        3,
        "users spread over all servers: {per_server:?}"
    );
}

/// A backend that can be killed: its listener closes and open connections are dropped without
/// an answer, as when the process dies. Its port stays reserved (a second SO_REUSEPORT socket,
/// bound but not listening) so `Httpd::spawn_on` can bring it back there.
struct Killable {
    addr: SocketAddr,
    dead: Arc<AtomicBool>,
    _reservation: socket2::Socket,
}

impl Killable {
    fn spawn(name: &'static str) -> Killable {
        let reservation = reuseport_socket("127.0.0.1:0".parse().expect("addr"));
        let addr = reservation
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("bound address");
        let socket = reuseport_socket(addr);
        socket.listen(128).expect("listen");
        let listener = TcpListener::from(socket);
        let dead = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&dead);
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            loop {
                if d.load(Ordering::SeqCst) {
                    return; // drops the listener: new connects are refused
                }
                match listener.accept() {
                    Ok((s, _)) => {
                        let d = Arc::clone(&d);
                        std::thread::spawn(move || serve_until_dead(s, name, &d));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Killable {
            addr,
            dead,
            _reservation: reservation,
        }
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }
}

fn serve_until_dead(mut s: TcpStream, name: &str, dead: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if dead.load(Ordering::SeqCst) {
            return; // closes without answering
        }
        match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => continue,
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if dead.load(Ordering::SeqCst) {
                return;
            }
            if s.write_all(&ok(name)).is_err() {
                return;
            }
        }
    }
}

#[test]
fn a_server_killed_mid_run_fails_no_idempotent_request() {
    let a = Killable::spawn("a");
    let b = Killable::spawn("b");
    let servers = [server(a.addr, ""), server(b.addr, "")];
    let rw = Ringway::start_text(|l, ad| config(l, ad, 2, &servers, "retries = 2"));
    let addr = rw.listen;
    let client = std::thread::spawn(move || get_many(addr, 4, 300, "/", None));
    // Kill `a` once traffic is flowing.
    let killed = poll(Duration::from_secs(10), || {
        (rw.total("http_requests") >= 200).then_some(())
    });
    assert!(killed.is_some());
    a.kill();
    let bodies = client.join().expect("clients");
    let failed: Vec<&String> = bodies.iter().filter(|b| b.starts_with("status")).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(bodies.len(), 1200);
    assert!(count(&bodies, "b") > 600, "traffic moved to b");
    let retries = rw.total("connect_retries") + rw.total("http_pool_retries");
    assert!(retries > 0, "the kill was noticed and retried");
    drop(b);
}

#[test]
fn tcp_connects_are_retried_on_another_server() {
    let dead = DeadPort::new();
    let live = Backend::echo();
    let rw = Ringway::start(
        &[dead.addr, live.addr],
        &Opts {
            shards: 1,
            ..Opts::default()
        },
    );
    for _ in 0..20 {
        let mut c = connect(rw.listen);
        c.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)
            .expect("echo through the live server");
        assert_eq!(&buf, b"ping");
    }
    assert!(
        rw.total("connect_retries") >= 9,
        "{}",
        rw.total("connect_retries")
    );
}

fn health_backend(check: &str) -> String {
    format!("health_check = {{ {check} }}")
}

#[test]
fn health_checks_mark_a_dead_server_down_and_back_up() {
    let a = Killable::spawn("a");
    let b = Httpd::named("b");
    let servers = [server(a.addr, ""), server(b.addr, "")];
    let check = "type = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 2, fall = 3";
    let rw = Ringway::start_text(|l, ad| config(l, ad, 2, &servers, &health_backend(check)));
    let state = |rw: &Ringway| stat_str(&rw.stats(), "/backends/0/servers/0/state").to_string();
    assert_eq!(state(&rw), "UP");
    a.kill();
    let t = std::time::Instant::now();
    let down = poll(Duration::from_secs(5), || {
        (state(&rw) == "DOWN").then_some(())
    });
    assert!(down.is_some(), "{}", rw.stats());
    // fall (3) x interval (100 ms), plus slack for a loaded CI machine.
    assert!(
        t.elapsed() < Duration::from_millis(3 * 100 + 1000),
        "{:?}",
        t.elapsed()
    );
    let stats = rw.stats();
    assert!(
        stat_u64(&stats, "/backends/0/servers/0/checks/checks_failed") >= 3,
        "{stats}"
    );
    // Every request now goes to b, without a retry.
    let bodies = get_many(rw.listen, 2, 20, "/", None);
    assert_eq!(count(&bodies, "b "), 40);
    // Back on the same port: UP after rise (2) x interval.
    let a2 = Httpd::spawn_on(a.addr, |_| Reply::Bytes(ok("a")));
    let t = std::time::Instant::now();
    let up = poll(Duration::from_secs(5), || {
        (state(&rw) == "UP").then_some(())
    });
    assert!(up.is_some());
    assert!(
        t.elapsed() < Duration::from_millis(2 * 100 + 1000),
        "{:?}",
        t.elapsed()
    );
    let bodies = get_many(rw.listen, 2, 20, "/", None);
    assert!(count(&bodies, "a") > 0, "a takes traffic again");
    drop(a2);
}

#[test]
fn backup_server_takes_over_only_when_every_primary_is_down() {
    let a = Killable::spawn("a");
    let bk = Httpd::named("backup");
    let servers = [server(a.addr, ""), server(bk.addr, ", backup = true")];
    let check = "interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1";
    let rw = Ringway::start_text(|l, ad| config(l, ad, 2, &servers, &health_backend(check)));
    let bodies = get_many(rw.listen, 2, 50, "/", None);
    assert_eq!(
        count(&bodies, "a"),
        100,
        "the backup gets nothing while a is up"
    );
    a.kill();
    let switched = poll(Duration::from_secs(5), || {
        let b = get_many(rw.listen, 1, 1, "/", None);
        b[0].starts_with("backup").then_some(())
    });
    assert!(switched.is_some());
    assert!(stat_bool(&rw.stats(), "/backends/0/servers/1/backup"));
}

#[test]
fn http_health_check_runs_once_per_server_whatever_the_shard_count() {
    let be = Httpd::spawn(|r| {
        Reply::Bytes(if r.target == "/health" {
            ok("fine")
        } else {
            ok("app")
        })
    });
    let servers = [server(be.addr, "")];
    let check = "type = \"http\", path = \"/health\", expect = \"200\", interval = \"100ms\", timeout = \"200ms\"";
    let started = std::time::Instant::now();
    let rw = Ringway::start_text(|l, ad| {
        config(l, ad, 2, &servers, &health_backend(check)).replace("shards = 2", "shards = 4")
    });
    std::thread::sleep(Duration::from_millis(1000)); // let checks run for a known time
    let elapsed = started.elapsed().as_millis() as usize;
    let checks = be
        .requests()
        .iter()
        .filter(|r| r.target == "/health")
        .count();
    // One checker: about elapsed / 100 ms. Four shards each checking would be four times that.
    assert!(
        checks >= 5 && checks <= elapsed / 100 + 2,
        "{checks} checks in {elapsed} ms"
    );
    let r = &be.requests()[0];
    assert_eq!(
        r.header("user-agent").as_deref(),
        Some("ringway-health-check")
    );
    assert!(stat_bool(&rw.stats(), "/backends/0/servers/0/checks/up"));
}

#[test]
fn http_health_check_with_a_bad_status_takes_the_server_down() {
    let be = Httpd::spawn(|r| {
        Reply::Bytes(if r.target == "/health" {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            ok("app")
        })
    });
    let other = Httpd::named("other");
    let servers = [server(be.addr, ""), server(other.addr, "")];
    let check = "type = \"http\", path = \"/health\", interval = \"100ms\", fall = 2";
    let rw = Ringway::start_text(|l, ad| config(l, ad, 1, &servers, &health_backend(check)));
    let down = poll(Duration::from_secs(5), || {
        (stat_str(&rw.stats(), "/backends/0/servers/0/state") == "DOWN").then_some(())
    });
    assert!(down.is_some());
    let stats = rw.stats();
    let err = stat_str(&stats, "/backends/0/servers/0/checks/last_check_error");
    assert!(err.contains("status 503"), "{err}");
}

/// Sends one GET with `cookie` (if any); returns (body, Set-Cookie value if any).
fn get_with_cookie(addr: SocketAddr, cookie: Option<&str>) -> (String, Option<String>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let line = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{line}\r\n").as_bytes())
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .map(|v| v.split(';').next().unwrap_or("").to_string());
    (body.to_string(), set)
}

#[test]
fn sticky_cookie_keeps_a_client_on_one_server_and_moves_it_when_that_server_goes_down() {
    let a = Killable::spawn("a");
    let b = Killable::spawn("b");
    let c = Killable::spawn("c");
    let servers = [
        server(a.addr, ", name = \"a\""),
        server(b.addr, ", name = \"b\""),
        server(c.addr, ", name = \"c\""),
    ];
    let rw = Ringway::start_text(|l, ad| {
        config(
            l,
            ad,
            2,
            &servers,
            "sticky_cookie = \"SERVERID\"\nhealth_check = { interval = \"100ms\", fall = 1, rise = 1 }",
        )
    });
    let (first, cookie) = get_with_cookie(rw.listen, None);
    let cookie = cookie.expect("first response inserts the cookie");
    let home = first.clone();
    assert_eq!(cookie, format!("SERVERID={home}"));
    for _ in 0..100 {
        let (body, set) = get_with_cookie(rw.listen, Some(&format!("theme=dark; {cookie}")));
        assert_eq!(body, home, "stays on its server");
        assert_eq!(set, None, "no new cookie while it stays");
    }
    // Kill the home server; once it is DOWN the client moves and is re-stuck.
    match home.as_str() {
        "a" => a.kill(),
        "b" => b.kill(),
        _ => c.kill(),
    }
    let moved = poll(Duration::from_secs(5), || {
        let (body, set) = get_with_cookie(rw.listen, Some(&cookie));
        (body != home && !body.is_empty()).then_some((body, set))
    });
    let (new_home, set) = moved.expect("moved to another server");
    assert_eq!(set, Some(format!("SERVERID={new_home}")));
    for _ in 0..10 {
        let (body, _) = get_with_cookie(rw.listen, set.as_deref());
        assert_eq!(body, new_home);
    }
}

#[test]
fn the_sticky_cookie_never_reaches_the_backend() {
    let a = Httpd::spawn(|r| Reply::Bytes(ok(&r.header("cookie").unwrap_or_default())));
    let servers = [server(a.addr, ", name = \"a\"")];
    let rw =
        Ringway::start_text(|l, ad| config(l, ad, 1, &servers, "sticky_cookie = \"SERVERID\""));
    let (body, set) = get_with_cookie(rw.listen, Some("x=1; SERVERID=a; y=2"));
    assert_eq!(body, "x=1; y=2");
    assert_eq!(set, None, "already stuck to a");
}

#[test]
fn maxconn_queues_requests_beyond_the_limit_and_times_them_out_with_503() {
    let slow = Httpd::spawn(|r| {
        std::thread::sleep(Duration::from_millis(if r.target == "/slow" {
            1500
        } else {
            0
        }));
        Reply::Bytes(ok("done"))
    });
    let servers = [server(slow.addr, ", maxconn = 2")];
    // One shard: the per-shard share of maxconn is the whole limit (ceil(2 / 1)).
    let rw = Ringway::start_text(|l, ad| {
        config(
            l,
            ad,
            1,
            &servers,
            "queue_max = 5\nqueue_timeout = \"500ms\"",
        )
    });
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let addr = rw.listen;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    .expect("write");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out
            })
        })
        .collect();
    // While they wait: exactly 2 in flight at the backend, the rest queued (up to queue_max).
    let queued = poll(Duration::from_secs(5), || {
        let st = rw.stats();
        (stat_u64(&st, "/backends/0/queue") == 5).then_some(st)
    })
    .expect("5 queued");
    assert_eq!(
        stat_u64(&queued, "/backends/0/servers/0/active"),
        2,
        "{queued}"
    );
    let results: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    let ok_count = results
        .iter()
        .filter(|r| r.starts_with("HTTP/1.1 200"))
        .count();
    let unavailable: Vec<&String> = results
        .iter()
        .filter(|r| r.starts_with("HTTP/1.1 503"))
        .collect();
    // 2 served; 3 refused at once (queue full); 5 waited 500 ms and timed out.
    assert_eq!(ok_count, 2, "{results:?}");
    assert_eq!(unavailable.len(), 8);
    assert!(unavailable.iter().all(|r| r.contains("Retry-After: 1")));
    assert_eq!(rw.total("http_queue_timeouts"), 5);
    assert!(
        slow.requests().len() == 2,
        "nothing beyond maxconn reached the server"
    );
}

#[test]
fn queued_requests_are_served_in_order_when_a_slot_frees() {
    const REQUESTS: usize = 12;
    // `/q/0` holds the one slot (maxconn = 1) until every other request has queued behind it.
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&release);
    let be = Httpd::spawn(move |r| {
        if r.target == "/q/0" {
            // Bounded: a failing test still ends.
            let _ = poll(Duration::from_secs(20), || {
                gate.load(Ordering::SeqCst).then_some(())
            });
        }
        Reply::Bytes(ok(&r.target))
    });
    let servers = [server(be.addr, ", maxconn = 1")];
    // One shard: one queue, so the order of arrival is the order of the queue.
    let rw = Ringway::start_text(|l, ad| config(l, ad, 1, &servers, "queue_timeout = \"20s\""));
    let mut clients = Vec::new();
    for i in 0..REQUESTS {
        let addr = rw.listen;
        clients.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.write_all(format!("GET /q/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
                .expect("write");
            read_one(&mut s, &mut Vec::new())
        }));
        // Start the next one only once this one has its place: the first at the server, each
        // other counted as queued.
        if i == 0 {
            let at_server = poll(Duration::from_secs(10), || {
                (!be.requests().is_empty()).then_some(())
            });
            assert!(at_server.is_some(), "/q/0 never reached the server");
        } else {
            rw.wait_total("http_queued", Duration::from_secs(10), |n| n == i as u64);
        }
    }
    assert_eq!(
        stat_u64(&rw.stats(), "/backends/0/queue"),
        REQUESTS as u64 - 1
    );
    release.store(true, Ordering::SeqCst);
    let bodies: Vec<String> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let want: Vec<String> = (0..REQUESTS).map(|i| format!("/q/{i}")).collect();
    assert_eq!(bodies, want, "each client gets its own response");
    let order: Vec<String> = be.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(order, want, "the server sees the requests in queue order");
    assert_eq!(rw.total("http_queue_timeouts"), 0);
}

#[test]
fn passive_health_ejects_a_server_returning_5xx_then_lets_it_back() {
    let bad = Httpd::spawn(|_| {
        Reply::Bytes(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad".to_vec())
    });
    let good = Httpd::named("good");
    let servers = [
        server(bad.addr, ", name = \"bad\""),
        server(good.addr, ", name = \"good\""),
    ];
    let rw = Ringway::start_text(|l, ad| {
        config(
            l,
            ad,
            2,
            &servers,
            "passive = { failures = 3, backoff = \"1s\" }",
        )
    });
    let state = |rw: &Ringway| stat_str(&rw.stats(), "/backends/0/servers/0/state").to_string();
    let ejected = poll(Duration::from_secs(5), || {
        let _ = get_many(rw.listen, 1, 4, "/", None);
        (state(&rw) == "DOWN").then_some(())
    });
    assert!(ejected.is_some(), "{}", rw.stats());
    let before = bad.requests().len();
    let bodies = get_many(rw.listen, 2, 20, "/", None);
    assert_eq!(
        count(&bodies, "good"),
        40,
        "ejected: every request to the good server"
    );
    assert_eq!(bad.requests().len(), before);
    assert!(
        rw.stderr()
            .contains("server ejected after consecutive failures")
    );
    let back = poll(Duration::from_secs(5), || {
        (state(&rw) == "UP").then_some(())
    });
    assert!(back.is_some(), "back after the backoff");
}
