//! Routes from Redis through the real binary: hosts written with `redis-cli` in hipache's schema
//! reach their backends within a second, on every node, while wrk runs against another host;
//! malformed entries are skipped and counted; Redis going away, coming back, and a node that
//! starts while it is down (serving its cache).

mod common;
mod redis_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::httpd::Httpd;
use common::*;
use redis_support::{NOTIFY, RedisServer, redis_available};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cli(redis: &RedisServer, args: &[&str]) -> String {
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `RPUSH frontend:<host> <id> http://<server>...` (hipache's schema).
fn add_route(redis: &RedisServer, host: &str, id: Option<&str>, servers: &[SocketAddr]) {
    let key = format!("frontend:{host}");
    let urls: Vec<String> = servers.iter().map(|s| format!("http://{s}")).collect();
    let mut args = vec!["rpush", key.as_str()];
    args.extend(id);
    args.extend(urls.iter().map(String::as_str));
    cli(redis, &args);
}

/// An HTTP listener whose default backend is `files`, with routes from `redis`.
fn node_config(listen: u16, admin: u16, redis: &str, files: SocketAddr, cache: &Path) -> String {
    format!(
        "[global]\nshards = 2\ndrain_timeout = \"2s\"\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"files\"\n\
         [[backend]]\nname = \"files\"\nservers = [ {{ address = \"{files}\", name = \"files\" }} ]\n\
         [provider.redis]\naddress = \"{redis}\"\nlisteners = [\"web\"]\ncache_file = \"{}\"\n\
         resync_interval = \"2s\"\nstartup_wait = \"1s\"\nreconnect_backoff_max = \"200ms\"\n\
         [provider.redis.backend]\nretries = 1\n",
        cache.display()
    )
}

/// The first word of the body answering `GET /` with `Host: host`.
fn who(addr: SocketAddr, host: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.split(' ').next().unwrap_or_default().to_string())
}

/// Polls until `host` is answered by `want` on `addr`; returns how long it took since `t`.
fn until_since(
    t: Instant,
    addr: SocketAddr,
    host: &str,
    want: &str,
    limit: Duration,
) -> Option<Duration> {
    poll(limit, || {
        (who(addr, host).as_deref() == Some(want)).then(|| t.elapsed())
    })
}

/// A provider counter from `GET /api/v1/provider` (the same object as `/stats` → `provider`,
/// without gathering every backend's counters: with 10,000 routes that is the cheap one to poll).
fn provider_stat(rw: &Ringway, key: &str) -> u64 {
    let body = http_get(rw.admin, "/api/v1/provider").expect("GET /api/v1/provider");
    let v: serde_json::Value = serde_json::from_str(&body).expect("provider JSON");
    v[key].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn hosts_written_to_redis_are_served_within_a_second_without_failing_other_requests() {
    if !redis_available("redis_routes") {
        return;
    }
    let rt = rt();
    let redis = rt.block_on(RedisServer::start(NOTIFY, &[]));
    let files = Httpd::named("files");
    let a = Httpd::named("a");
    let b = Httpd::named("b");
    let dir = TempDir::new("rr");
    let cache = dir.0.join("routes.json");
    let rw = Ringway::start_text(|l, ad| node_config(l, ad, &redis.url(), files.addr, &cache));
    assert_eq!(who(rw.listen, "www.example.com").as_deref(), Some("files"));

    let url = format!("http://{}/", rw.listen);
    let wrk = Command::new("wrk")
        .args([
            "-t1",
            "-c4",
            "-d60s",
            "-H",
            "Host: static.example.org",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn();
    let wrk_started = wrk.is_ok();
    assert!(
        wrk_started || std::env::var_os("CI").is_none(),
        "wrk is missing"
    );

    let t = Instant::now();
    add_route(&redis, "www.example.com", Some("mysite"), &[a.addr]);
    let took = until_since(t, rw.listen, "www.example.com", "a", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "add took {took:?}"
    );

    // Another server: the split changes.
    add_route(&redis, "www.example.com", None, &[b.addr]);
    let both = poll(Duration::from_secs(1), || {
        let seen: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| who(rw.listen, "www.example.com"))
            .collect();
        (seen.len() == 2).then_some(())
    });
    assert!(both.is_some(), "b joined within 1 s");

    // A wildcard route, and entries that are not valid: skipped and counted, the rest stays.
    add_route(&redis, "*.apps.example.com", Some("apps"), &[b.addr]);
    cli(&redis, &["set", "frontend:bad.example.com", "not-a-list"]);
    cli(
        &redis,
        &[
            "rpush",
            "frontend:worse.example.com",
            "id",
            "ftp://10.0.0.1",
        ],
    );
    assert!(
        until_since(
            Instant::now(),
            rw.listen,
            "x.apps.example.com",
            "b",
            Duration::from_secs(1)
        )
        .is_some()
    );
    assert!(
        poll(Duration::from_secs(2), || (provider_stat(&rw, "skipped")
            == 2)
            .then_some(()))
        .is_some(),
        "{}",
        rw.stats()
    );
    assert!(who(rw.listen, "www.example.com").is_some());
    assert_eq!(
        who(rw.listen, "worse.example.com").as_deref(),
        Some("files")
    );
    let (code, body) = {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .arg(format!(
                "http://{}/api/v1/backends/redis:www.example.com",
                rw.admin
            ))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (b, c) = text.rsplit_once('\n').unwrap_or_default();
        (c.to_string(), b.to_string())
    };
    assert_eq!(code, "200", "{body}");
    assert!(
        body.contains(&a.addr.to_string()) && body.contains(&b.addr.to_string()),
        "{body}"
    );

    // Removing a URL: the split follows.
    cli(
        &redis,
        &[
            "lrem",
            "frontend:www.example.com",
            "0",
            &format!("http://{}", a.addr),
        ],
    );
    let only_b = poll(Duration::from_secs(1), || {
        let seen: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| who(rw.listen, "www.example.com"))
            .collect();
        (seen.len() == 1 && seen.contains("b")).then_some(())
    });
    assert!(only_b.is_some(), "a left within 1 s");

    // Deleting the key: back to the default backend within 1 s.
    let t = Instant::now();
    cli(&redis, &["del", "frontend:www.example.com"]);
    let took = until_since(
        t,
        rw.listen,
        "www.example.com",
        "files",
        Duration::from_secs(5),
    );
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "delete took {took:?}"
    );

    if let Ok(child) = wrk {
        // SAFETY: plain kill(2) on our child, not yet waited for.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().expect("wrk");
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("requests in"), "{out}");
        assert!(
            !out.contains("Socket errors") && !out.contains("Non-2xx"),
            "{out}"
        );
    }
    // The cache file holds the snapshot (atomically rewritten after each change).
    let cached = std::fs::read_to_string(&cache).unwrap_or_default();
    assert!(cached.contains("apps.example.com"), "{cached}");
}

#[test]
fn two_nodes_converge_survive_a_redis_outage_and_a_node_starts_from_its_cache() {
    if !redis_available("redis_routes") {
        return;
    }
    let rt = rt();
    let mut redis = rt.block_on(RedisServer::start(NOTIFY, &[]));
    let files = Httpd::named("files");
    let a = Httpd::named("a");
    let c = Httpd::named("c");
    let dir = TempDir::new("rr2");
    let (cache1, cache2) = (dir.0.join("n1.json"), dir.0.join("n2.json"));
    let n1 = Ringway::start_text(|l, ad| node_config(l, ad, &redis.url(), files.addr, &cache1));
    let n2 = Ringway::start_text(|l, ad| node_config(l, ad, &redis.url(), files.addr, &cache2));

    let t = Instant::now();
    add_route(&redis, "www.example.com", Some("mysite"), &[a.addr]);
    for n in [&n1, &n2] {
        let took = until_since(t, n.listen, "www.example.com", "a", Duration::from_secs(5));
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(1)),
            "node took {took:?}"
        );
    }

    // Redis goes away: both nodes keep every route.
    redis.kill();
    assert!(
        poll(Duration::from_secs(5), || {
            (n1.stats()["provider"]["connected"] == false).then_some(())
        })
        .is_some()
    );
    for _ in 0..5 {
        assert_eq!(who(n1.listen, "www.example.com").as_deref(), Some("a"));
        assert_eq!(who(n2.listen, "www.example.com").as_deref(), Some("a"));
    }

    // A third node starting while Redis is down serves node 1's cached routes.
    let cache3 = dir.0.join("n3.json");
    std::fs::copy(&cache1, &cache3).expect("copy cache");
    let url = redis.url();
    let n3 = Ringway::start_text(|l, ad| node_config(l, ad, &url, files.addr, &cache3));
    assert_eq!(
        who(n3.listen, "www.example.com").as_deref(),
        Some("a"),
        "{}",
        n3.stderr()
    );

    // Redis back (empty: it keeps nothing on disk): the nodes resync and take what is written.
    rt.block_on(redis.restart(NOTIFY));
    add_route(&redis, "new.example.com", Some("new"), &[c.addr]);
    for (i, n) in [&n1, &n2, &n3].into_iter().enumerate() {
        let got = until_since(
            Instant::now(),
            n.listen,
            "new.example.com",
            "c",
            Duration::from_secs(10),
        );
        assert!(got.is_some(), "{}", n.stderr());
        // The resync also saw that www.example.com is gone from this (new, empty) Redis.
        assert!(
            until_since(
                Instant::now(),
                n.listen,
                "www.example.com",
                "files",
                Duration::from_secs(5)
            )
            .is_some()
        );
        // Nodes 1 and 2 lost a session and synced again; node 3 never had one before.
        let counter = if i < 2 { "reconnects" } else { "resyncs" };
        assert!(provider_stat(n, counter) >= 1, "{}", n.stats());
    }
}

/// 10,000 hosts: how long the first sync and a later change take through the binary, and what
/// they cost in memory (printed for the closing note; only the 1 s change bound is asserted).
#[test]
fn ten_thousand_hosts_sync_and_a_change_still_applies_within_a_second() {
    if !redis_available("redis_routes") {
        return;
    }
    let rt = rt();
    let redis = rt.block_on(RedisServer::start(NOTIFY, &[]));
    let files = Httpd::named("files");
    let a = Httpd::named("a");
    let hosts = 10_000;
    let mut script = String::new();
    for i in 0..hosts {
        script.push_str(&format!(
            "RPUSH frontend:h{i}.example.com id{i} http://{}\n",
            a.addr
        ));
    }
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("redis-cli").success());
    assert_eq!(cli(&redis, &["dbsize"]).trim(), hosts.to_string());

    let dir = TempDir::new("rr3");
    let cache = dir.0.join("routes.json");
    let t = Instant::now();
    let rw = Ringway::start_text(|l, ad| node_config(l, ad, &redis.url(), files.addr, &cache));
    let synced = poll(Duration::from_secs(30), || {
        (provider_stat(&rw, "routes") == hosts).then(|| t.elapsed())
    });
    let last = format!("h{}.example.com", hosts - 1);
    let served = until_since(
        Instant::now(),
        rw.listen,
        &last,
        "a",
        Duration::from_secs(30),
    );
    let rss_kib = rw.rss_kib();
    eprintln!(
        "10k hosts: start to synced {synced:?}, to served {:?} more; RSS {rss_kib} KiB",
        served
    );
    // /stats and /metrics stay usable with 10,000 backends (no histograms for idle ones).
    let t = Instant::now();
    let stats = rw.stats();
    let backends = stats["backends"].as_array().map_or(0, Vec::len);
    assert_eq!(
        backends,
        hosts as usize + 1,
        "every Redis backend and `files`"
    );
    let metrics = http_get(rw.admin, "/metrics").expect("GET /metrics");
    assert!(metrics.contains("backend=\"redis:h9999.example.com\""));
    eprintln!(
        "10k hosts: /stats and /metrics in {:?}; RSS {} KiB after",
        t.elapsed(),
        rw.rss_kib()
    );
    assert!(served.is_some(), "{}", rw.stderr());
    let n = Httpd::named("n");
    let t = Instant::now();
    add_route(&redis, "new.example.com", Some("new"), &[n.addr]);
    let took = until_since(t, rw.listen, "new.example.com", "n", Duration::from_secs(5));
    eprintln!("10k hosts: a new host served after {took:?}");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "change took {took:?}"
    );
}

/// examples/redis-routes.toml on private ports, and the walkthrough its header shows.
#[test]
fn redis_routes_example_walkthrough() {
    if !redis_available("redis_routes") {
        return;
    }
    let rt = rt();
    let redis = rt.block_on(RedisServer::start(NOTIFY, &[]));
    let site = Httpd::named("mysite");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/redis-routes.toml"),
    )
    .expect("example");
    let dir = TempDir::new("rrx");
    let rw = Ringway::start_text(|l, a| {
        text.replace("127.0.0.1:8080", &format!("127.0.0.1:{l}"))
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{a}"))
            .replace("redis://127.0.0.1:6379", &redis.url())
            .replace(
                "/tmp/ringway-redis-routes.json",
                &dir.0.join("routes.json").display().to_string(),
            )
    });
    let t = Instant::now();
    add_route(&redis, "www.example.com", Some("mysite"), &[site.addr]);
    let took = until_since(
        t,
        rw.listen,
        "www.example.com",
        "mysite",
        Duration::from_secs(5),
    );
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
    cli(&redis, &["del", "frontend:www.example.com"]);
    // The fallback has no server listening: 502 once the route is gone.
    let gone = poll(Duration::from_secs(2), || {
        (who(rw.listen, "www.example.com").is_none()).then_some(())
    });
    assert!(gone.is_some());
    assert_eq!(rw.stats()["provider"]["connected"], true);
}
