//! The Redis route provider against a real `redis-server` on a private loopback port: writes
//! reach a snapshot through keyspace notifications, malformed entries are skipped and counted,
//! a Redis crash keeps the routes, a restart resyncs, the cache file serves while Redis is down,
//! two providers agree, and the connection options (prefix, db, unix socket, ACL user with a
//! password file, TLS) work. Each test starts its own server and stops it on every path.
//! Skipped with a note when `redis-server` is missing, unless `CI` is set.

mod redis_support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis_support::*;
use ringway::provider::redis::KeyspaceEvents;
use ringway::provider::snapshot::report_key;
use ringway::provider::{self, EntryError, RedisProviderCfg, RouteChange, RouteSnapshot, diff};

/// What the brief promises for an event-driven change. Every test below that uses it runs with
/// `resync_interval` at one hour, so only a keyspace event can meet it.
const EVENT_LIMIT: Duration = Duration::from_secs(1);
/// Generous bound for things that take a reconnect or a resync.
const SLOW_LIMIT: Duration = Duration::from_secs(20);

macro_rules! need_redis {
    ($name:expr) => {
        if !redis_available($name) {
            return;
        }
    };
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test]
async fn a_write_shows_up_within_a_second_and_every_change_follows() {
    need_redis!("a_write_shows_up_within_a_second_and_every_change_follows");
    let server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    let (mut rx, handle) = provider::spawn(server.cfg(), None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await, "initial sync");
    assert_eq!(handle.stats().keyspace_events, KeyspaceEvents::Enabled);
    assert!(handle.stats().connected);
    assert!(rx.borrow_and_update().routes.is_empty());

    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:www.example.com",
            b"mysite",
            b"http://127.0.0.1:8001",
        ],
    )
    .await;
    let took = wait_snapshot(&mut rx, EVENT_LIMIT, "new route", |s| {
        has_host(s, "www.example.com")
    })
    .await;
    eprintln!("write -> snapshot (first route): {:.1} ms", ms(took));
    let one = rx.borrow_and_update().clone();
    assert_eq!(servers_of(&one, "www.example.com"), ["127.0.0.1:8001"]);
    assert_eq!(one.route_for_host(b"www.example.com").unwrap().id, "mysite");

    // Add a server.
    run(
        &mut w,
        &[b"RPUSH", b"frontend:www.example.com", b"http://[::1]:8002"],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "server added", |s| {
        servers_of(s, "www.example.com").len() == 2
    })
    .await;
    let two = rx.borrow_and_update().clone();
    assert_eq!(
        servers_of(&two, "www.example.com"),
        ["127.0.0.1:8001", "[::1]:8002"]
    );
    match diff(&one, &two).as_slice() {
        [RouteChange::Changed { old, new }] => {
            assert_eq!((old.servers.len(), new.servers.len()), (1, 2));
        }
        other => panic!("diff: {other:?}"),
    }

    // Remove one; replace the other in place.
    run(
        &mut w,
        &[
            b"LREM",
            b"frontend:www.example.com",
            b"0",
            b"http://127.0.0.1:8001",
        ],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "server removed", |s| {
        servers_of(s, "www.example.com") == ["[::1]:8002"]
    })
    .await;
    run(
        &mut w,
        &[
            b"LSET",
            b"frontend:www.example.com",
            b"1",
            b"http://127.0.0.1:8003",
        ],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "server replaced", |s| {
        servers_of(s, "www.example.com") == ["127.0.0.1:8003"]
    })
    .await;

    // Latency over a series of new hosts, one at a time.
    let mut samples = Vec::new();
    for i in 0..20 {
        let key = format!("frontend:h{i}.example.com");
        let started = Instant::now();
        run(
            &mut w,
            &[b"RPUSH", key.as_bytes(), b"h", b"http://10.0.0.1:80"],
        )
        .await;
        let host = format!("h{i}.example.com");
        wait_snapshot(&mut rx, EVENT_LIMIT, "series", |s| has_host(s, &host)).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    eprintln!(
        "write -> snapshot over 20 writes: min {:.1} ms, median {:.1} ms, max {:.1} ms (coalesce 50 ms)",
        ms(samples[0]),
        ms(samples[10]),
        ms(samples[19])
    );

    // DEL: the route goes.
    let started = Instant::now();
    run(&mut w, &[b"DEL", b"frontend:www.example.com"]).await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "route deleted", |s| {
        s.route_for_host(b"www.example.com").is_none()
    })
    .await;
    eprintln!("DEL -> route gone: {:.1} ms", ms(started.elapsed()));

    let stats = handle.stats();
    assert!(stats.events >= 25, "{stats:?}");
    assert_eq!(stats.resyncs, 1, "only the initial sync ran: {stats:?}");
    assert_eq!(stats.routes, 20);
    assert!(stats.last_sync_unix_ms > 0);
    handle.shutdown().await;
}

#[tokio::test]
async fn malformed_entries_are_skipped_and_counted_while_valid_routes_stay() {
    need_redis!("malformed_entries_are_skipped_and_counted_while_valid_routes_stay");
    let server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    let long_key = format!("frontend:{}.example", "a.".repeat(150));
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:good.example",
            b"g",
            b"http://10.0.0.1:80",
        ],
    )
    .await;
    run(
        &mut w,
        &[b"SET", b"frontend:string.example", b"http://10.0.0.1:80"],
    )
    .await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:badurl.example",
            b"b",
            b"http://backend.internal:80",
        ],
    )
    .await;
    run(
        &mut w,
        &[b"RPUSH", long_key.as_bytes(), b"l", b"http://10.0.0.1:80"],
    )
    .await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:Upper.example",
            b"u",
            b"http://10.0.0.1:80",
        ],
    )
    .await;

    // A hash under a route key is announced only with the `h` class, which the recommended
    // flags leave out (it can never replace a list without a DEL or SET, which are announced);
    // the initial sync finds it.
    run(&mut w, &[b"HSET", b"frontend:hash.example", b"f", b"v"]).await;

    let (mut rx, handle) = provider::spawn(server.cfg(), None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await);
    {
        let s = rx.borrow_and_update();
        assert_eq!(s.routes.len(), 1, "{s:#?}");
        assert!(has_host(&s, "good.example"));
        assert_eq!(s.skipped.len(), 5, "{s:#?}");
        assert!(matches!(
            s.skipped.get(b"frontend:hash.example".as_slice()),
            Some(EntryError::NotAList { found }) if found == "hash"
        ));
        assert!(matches!(
            s.skipped.get(b"frontend:string.example".as_slice()),
            Some(EntryError::NotAList { found }) if found == "string"
        ));
        assert!(matches!(
            s.skipped.get(b"frontend:badurl.example".as_slice()),
            Some(EntryError::HostnameNotAllowed { host, .. }) if host == "backend.internal"
        ));
        // Reported under the key cut to the longest valid key length.
        assert!(matches!(
            s.skipped.get(&report_key(b"", long_key.as_bytes())),
            Some(EntryError::KeyTooLong { .. })
        ));
        assert!(matches!(
            s.skipped.get(b"frontend:Upper.example".as_slice()),
            Some(EntryError::BadHost { .. })
        ));
    }
    let stats = handle.stats();
    assert_eq!((stats.skipped, stats.routes), (5, 1));
    assert!(stats.entries_skipped >= 5, "{stats:?}");

    // At run time: more bad entries arrive by event; the good route stays.
    run(&mut w, &[b"RPUSH", b"frontend:onlyid.example", b"o"]).await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:https.example",
            b"s",
            b"https://10.0.0.1:443",
        ],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "two more skipped", |s| {
        s.skipped.len() == 7
    })
    .await;
    {
        let s = rx.borrow_and_update();
        assert!(has_host(&s, "good.example"));
        assert_eq!(
            s.skipped.get(b"frontend:onlyid.example".as_slice()),
            Some(&EntryError::OnlyIdentifier)
        );
        assert!(matches!(
            s.skipped.get(b"frontend:https.example".as_slice()),
            Some(EntryError::UnsupportedScheme { scheme, .. }) if scheme == "https"
        ));
    }
    assert!(handle.stats().entries_skipped >= 7);

    // A fix written as one transaction turns a skipped key into a route.
    redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg("frontend:badurl.example")
        .cmd("RPUSH")
        .arg("frontend:badurl.example")
        .arg("b")
        .arg("http://10.0.0.7:8080")
        .exec_async(&mut w)
        .await
        .unwrap();
    wait_snapshot(&mut rx, EVENT_LIMIT, "fixed entry", |s| {
        servers_of(s, "badurl.example") == ["10.0.0.7:8080"]
    })
    .await;
    assert_eq!(rx.borrow().skipped.len(), 6);
    handle.shutdown().await;
}

#[tokio::test]
async fn redis_killed_keeps_the_snapshot_and_a_restart_resyncs_changes_made_meanwhile() {
    need_redis!("redis_killed_keeps_the_snapshot_and_a_restart_resyncs_changes_made_meanwhile");
    let mut server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    let (mut rx, handle) = provider::spawn(server.cfg(), None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await);
    for (key, url) in [
        (&b"frontend:a.example"[..], &b"http://10.0.0.1:80"[..]),
        (b"frontend:b.example", b"http://10.0.0.2:80"),
    ] {
        run(&mut w, &[b"RPUSH", key, b"id", url]).await;
    }
    wait_snapshot(&mut rx, EVENT_LIMIT, "two routes", |s| s.routes.len() == 2).await;
    let before = rx.borrow_and_update().clone();

    server.kill();
    wait_for(SLOW_LIMIT, "provider sees the loss", || {
        !handle.stats().connected
    })
    .await;
    wait_for(SLOW_LIMIT, "a failed reconnect", || {
        handle.stats().connect_failures >= 1
    })
    .await;
    assert_eq!(**rx.borrow(), *before, "routes kept while Redis is gone");
    assert!(!rx.has_changed().unwrap());
    assert_eq!(handle.stats().disconnects, 1);

    // Back, empty, and locked with a password so that changes are made before the provider
    // can get in; with notifications off, only the reconnect's resync can deliver them.
    server.restart_with(&["--requirepass", "hunter2"], "").await;
    let mut w = redis::Client::open(format!("redis://:hunter2@127.0.0.1:{}", server.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:b.example",
            b"id",
            b"http://10.0.0.20:80",
        ],
    )
    .await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:c.example",
            b"id",
            b"http://10.0.0.3:80",
        ],
    )
    .await;
    let failures = handle.stats().connect_failures;
    wait_for(SLOW_LIMIT, "refused while locked", || {
        handle.stats().connect_failures > failures
    })
    .await;
    assert!(!handle.stats().connected);
    run(&mut w, &[b"CONFIG", b"SET", b"requirepass", b""]).await;

    let took = wait_snapshot(&mut rx, SLOW_LIMIT, "resync after restart", |s| {
        s.routes.len() == 2
            && servers_of(s, "b.example") == ["10.0.0.20:80"]
            && has_host(s, "c.example")
    })
    .await;
    eprintln!("unlocked -> resynced snapshot: {:.1} ms", ms(took));
    let stats = handle.stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert!(stats.connected);
    assert!(stats.resyncs >= 2);
    assert_eq!(stats.keyspace_events, KeyspaceEvents::Disabled);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_provider_started_while_redis_is_down_serves_the_cache_first_then_redis() {
    need_redis!("a_provider_started_while_redis_is_down_serves_the_cache_first_then_redis");
    let scratch = Scratch::new("cache");
    let cache = scratch.path("routes.json");
    let mut server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    for host in ["a.example", "b.example"] {
        let key = format!("frontend:{host}");
        run(
            &mut w,
            &[b"RPUSH", key.as_bytes(), b"id", b"http://10.0.0.1:80"],
        )
        .await;
    }
    let (mut rx, handle) = provider::spawn(server.cfg(), Some(cache.clone())).unwrap();
    wait_snapshot(&mut rx, SLOW_LIMIT, "first provider", |s| {
        s.routes.len() == 2
    })
    .await;
    handle.shutdown().await;
    let text = std::fs::read_to_string(&cache).expect("cache written");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], "ringway-redis-routes");
    assert_eq!(json["version"], 1);
    assert_eq!(json["routes"].as_array().unwrap().len(), 2);
    assert_eq!(json["routes"][0]["host"], "a.example");
    assert_eq!(json["routes"][0]["servers"][0], "10.0.0.1:80");

    server.kill();
    let (mut rx, handle) = provider::spawn(server.cfg(), Some(cache.clone())).unwrap();
    {
        let first = rx.borrow_and_update();
        assert_eq!(
            first.routes.len(),
            2,
            "the cache is published before Redis answers"
        );
        assert!(has_host(&first, "a.example") && has_host(&first, "b.example"));
    }
    wait_for(SLOW_LIMIT, "Redis unreachable", || {
        handle.stats().connect_failures >= 2
    })
    .await;
    assert!(!handle.stats().connected);
    assert!(!handle.wait_synced(Duration::from_millis(10)).await);
    assert_eq!(rx.borrow().routes.len(), 2);

    // Redis comes back with other routes: they replace the cached ones, and the cache follows.
    server
        .restart_with(&["--requirepass", "hunter2"], NOTIFY)
        .await;
    let mut w = redis::Client::open(format!("redis://:hunter2@127.0.0.1:{}", server.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:c.example",
            b"id",
            b"http://10.0.0.3:80",
        ],
    )
    .await;
    run(&mut w, &[b"CONFIG", b"SET", b"requirepass", b""]).await;
    wait_snapshot(&mut rx, SLOW_LIMIT, "Redis's routes", |s| {
        s.routes.len() == 1 && has_host(s, "c.example")
    })
    .await;
    assert!(handle.wait_synced(SLOW_LIMIT).await);
    handle.shutdown().await;
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(
        text.contains("c.example") && !text.contains("a.example"),
        "{text}"
    );
}

#[tokio::test]
async fn two_providers_on_one_redis_converge_on_identical_snapshots() {
    need_redis!("two_providers_on_one_redis_converge_on_identical_snapshots");
    let server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    let (mut rx1, h1) = provider::spawn(server.cfg(), None).unwrap();
    assert!(h1.wait_synced(SLOW_LIMIT).await);
    let writes: Vec<Vec<&[u8]>> = vec![
        vec![
            b"RPUSH",
            b"frontend:a.example",
            b"a",
            b"http://10.0.0.1",
            b"http://10.0.0.2",
        ],
        vec![b"RPUSH", b"frontend:*.example", b"w", b"http://10.0.0.9:81"],
        vec![b"RPUSH", b"frontend:*", b"any", b"http://10.0.0.10:82"],
        vec![b"RPUSH", b"frontend:tmp.example", b"t", b"http://10.0.0.3"],
        vec![b"RPUSH", b"frontend:old.example", b"o", b"http://10.0.0.4"],
    ];
    for cmd in &writes {
        run(&mut w, cmd).await;
    }
    // The second node starts in the middle of the writes.
    let (mut rx2, h2) = provider::spawn(server.cfg(), None).unwrap();
    for cmd in [
        &[
            &b"LSET"[..],
            b"frontend:a.example",
            b"2",
            b"http://10.0.0.5",
        ][..],
        &[b"RENAME", b"frontend:old.example", b"frontend:new.example"],
        &[b"PEXPIRE", b"frontend:tmp.example", b"100"],
        &[b"RPUSH", b"frontend:broken.example", b"b"],
        &[b"LPOP", b"frontend:*"],
        &[b"LPUSH", b"frontend:*", b"any2"],
    ] {
        run(&mut w, cmd).await;
    }
    let settled = |s: &RouteSnapshot| {
        servers_of(s, "a.example") == ["10.0.0.1:80", "10.0.0.5:80"]
            && has_host(s, "new.example")
            && !has_host(s, "old.example")
            && !has_host(s, "tmp.example")
            && s.route_for_host(b"z.org").is_some_and(|r| r.id == "any2")
            && s.skipped.len() == 1
    };
    wait_snapshot(&mut rx1, SLOW_LIMIT, "node 1 settled", settled).await;
    wait_snapshot(&mut rx2, SLOW_LIMIT, "node 2 settled", settled).await;
    assert_eq!(**rx1.borrow(), **rx2.borrow());
    // What the events built equals what a fresh full read of Redis builds.
    let (rx3, h3) = provider::spawn(server.cfg(), None).unwrap();
    assert!(h3.wait_synced(SLOW_LIMIT).await);
    assert_eq!(**rx1.borrow(), **rx3.borrow());
    let shown: Vec<String> = rx3
        .borrow()
        .routes
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["a.example", "new.example", "*.example", "*"]);
    for h in [h1, h2, h3] {
        h.shutdown().await;
    }
}

/// Captures the log lines of every test in this binary. A process-wide subscriber, not a
/// per-thread one: tracing caches per call site whether anyone listens, and a thread-local
/// subscriber can miss a line whose call site another test's thread registered first.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

fn captured_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        logs
    })
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn with_keyspace_events_off_the_log_says_so_and_resyncs_still_deliver() {
    need_redis!("with_keyspace_events_off_the_log_says_so_and_resyncs_still_deliver");
    let logs = captured_logs();

    let server = RedisServer::start("", &[]).await;
    let mut w = server.client().await;
    let cfg = RedisProviderCfg {
        resync_interval: Duration::from_secs(1),
        ..server.cfg()
    };
    let (mut rx, handle) = provider::spawn(cfg, None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await);
    assert_eq!(handle.stats().keyspace_events, KeyspaceEvents::Disabled);
    let address = format!("address={}", server.url());
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("keyspace notifications are DISABLED") && l.contains(&address))
        .unwrap_or_else(|| panic!("no DISABLED line for {address}:\n{text}"));
    assert!(
        line.contains("WARN") && line.contains("CONFIG SET notify-keyspace-events Kgl$xe"),
        "{line}"
    );
    run(
        &mut w,
        &[b"RPUSH", b"frontend:a.example", b"a", b"http://10.0.0.1"],
    )
    .await;
    let took = wait_snapshot(&mut rx, SLOW_LIMIT, "resync delivers", |s| {
        has_host(s, "a.example")
    })
    .await;
    eprintln!(
        "notifications off, resync every 1 s: write -> snapshot {:.1} ms",
        ms(took)
    );
    assert_eq!(handle.stats().events, 0);
    handle.shutdown().await;
}

#[tokio::test]
async fn prefix_db_unix_socket_and_a_read_only_acl_user() {
    need_redis!("prefix_db_unix_socket_and_a_read_only_acl_user");
    let scratch = Scratch::new("acl");
    let socket = scratch.path("redis.sock");
    let socket_arg = socket.to_str().unwrap().to_owned();
    // Read-only: no CONFIG (so the provider cannot check notify-keyspace-events), keys and
    // channels limited to the routes of db 3 under the prefix.
    let server = RedisServer::start(
        NOTIFY,
        &[
            "--unixsocket",
            &socket_arg,
            "--unixsocketperm",
            "700",
            "--user",
            "ringway",
            "on",
            ">s3cret",
            "~hipache:frontend:*",
            "&__keyspace@3__:hipache:frontend:*",
            "+@read",
            "+@pubsub",
            "+@connection",
            "--user",
            "noscan",
            "on",
            ">s3cret",
            "~hipache:frontend:*",
            "&__keyspace@3__:hipache:frontend:*",
            "+@read",
            "+@pubsub",
            "+@connection",
            "-scan",
        ],
    )
    .await;
    let password_file = scratch.path("redis.pass");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let mut w = redis::Client::open(format!("{}/3", server.url()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut w0 = server.client().await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"hipache:frontend:a.example",
            b"a",
            b"http://10.0.0.1",
        ],
    )
    .await;
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:noprefix.example",
            b"n",
            b"http://10.0.0.1",
        ],
    )
    .await;
    run(
        &mut w0,
        &[
            b"RPUSH",
            b"hipache:frontend:db0.example",
            b"d",
            b"http://10.0.0.1",
        ],
    )
    .await;

    let cfg = RedisProviderCfg {
        address: format!("unix://{socket_arg}"),
        username: Some("ringway".into()),
        password_file: Some(password_file.clone()),
        db: 3,
        key_prefix: "hipache:".into(),
        ..server.cfg()
    };
    let (mut rx, handle) = provider::spawn(cfg.clone(), None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await, "{:?}", handle.stats());
    assert_eq!(handle.stats().keyspace_events, KeyspaceEvents::Unknown);
    {
        let s = rx.borrow_and_update();
        let hosts: Vec<String> = s.routes.keys().map(ToString::to_string).collect();
        assert_eq!(hosts, ["a.example"]);
    }
    run(
        &mut w,
        &[
            b"RPUSH",
            b"hipache:frontend:b.example",
            b"b",
            b"http://10.0.0.2",
        ],
    )
    .await;
    run(
        &mut w0,
        &[
            b"RPUSH",
            b"hipache:frontend:c.example",
            b"c",
            b"http://10.0.0.2",
        ],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "event through the ACL user", |s| {
        has_host(s, "b.example")
    })
    .await;
    assert!(!has_host(&rx.borrow(), "c.example"), "db 0 is not db 3");
    handle.shutdown().await;

    // A session that connects but cannot sync (SCAN refused) is a failed attempt too: retried
    // with growing delays, never counted as a session that was lost.
    let noscan = RedisProviderCfg {
        username: Some("noscan".into()),
        ..cfg.clone()
    };
    let (_rx, handle) = provider::spawn(noscan, None).unwrap();
    wait_for(SLOW_LIMIT, "sync refused", || {
        handle.stats().connect_failures >= 3
    })
    .await;
    let stats = handle.stats();
    assert!(
        stats.reconnects == 0 && stats.disconnects == 0 && stats.resyncs == 0,
        "{stats:?}"
    );
    assert!(!handle.wait_synced(Duration::from_millis(10)).await);
    handle.shutdown().await;

    // A wrong password is a failed connect, retried, never a session.
    std::fs::write(&password_file, "wrong\n").unwrap();
    let (_rx, handle) = provider::spawn(cfg, None).unwrap();
    wait_for(SLOW_LIMIT, "refused", || {
        handle.stats().connect_failures >= 2
    })
    .await;
    let stats = handle.stats();
    assert!(
        !stats.connected && stats.reconnects == 0 && stats.disconnects == 0,
        "{stats:?}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    need_redis!("rediss_with_a_private_ca");
    let scratch = Scratch::new("tls");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (redis-cli) takes a leaf whose subject equals its issuer for a
    // self-signed certificate.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringway test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca_file, cert_file, key_file) = (
        scratch.path("ca.pem"),
        scratch.path("redis.pem"),
        scratch.path("redis.key"),
    );
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let paths: Vec<String> = [&cert_file, &key_file, &ca_file]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let mut server = RedisServer::start_tls(
        NOTIFY,
        &[
            "--tls-cert-file",
            &paths[0],
            "--tls-key-file",
            &paths[1],
            "--tls-ca-cert-file",
            &paths[2],
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;
    let cfg = RedisProviderCfg {
        address: format!("rediss://localhost:{}", server.port),
        tls_ca_file: Some(ca_file.clone()),
        ..server.cfg()
    };
    let (mut rx, handle) = provider::spawn(cfg, None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await, "{:?}", handle.stats());
    // The writer is redis-cli over TLS with the same CA.
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &paths[2], "-h", "localhost", "-p"])
        .arg(server.port.to_string())
        .args(["RPUSH", "frontend:tls.example", "t", "http://10.0.0.1:443"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_snapshot(&mut rx, EVENT_LIMIT, "route over TLS", |s| {
        has_host(s, "tls.example")
    })
    .await;
    handle.shutdown().await;
    server.kill();
}

#[tokio::test]
async fn a_provider_on_a_replica_sees_writes_made_on_the_primary() {
    need_redis!("a_provider_on_a_replica_sees_writes_made_on_the_primary");
    // notify-keyspace-events is not replicated: only the replica, where the provider reads,
    // needs it. Expiry reaches a replica as a DEL from the primary (class `g`).
    let primary = RedisServer::start("", &["--repl-diskless-sync-delay", "0"]).await;
    let primary_port = primary.port.to_string();
    let replica =
        RedisServer::start(NOTIFY, &["--replicaof", "127.0.0.1", primary_port.as_str()]).await;
    // Replication streams once the replica's full sync is done and a probe written after it
    // shows on the replica within a moment: after a diskless sync the primary streams only from
    // the replica's first ACK (up to a second later), so keep writing fresh values until one
    // arrives promptly. (A probe written before the sync would travel in the snapshot.)
    let mut w = primary.client().await;
    let mut r = replica.client().await;
    let deadline = Instant::now() + SLOW_LIMIT;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut r)
            .await
            .unwrap_or_default();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0u64.. {
        assert!(Instant::now() < deadline, "replication never streamed");
        let value = n.to_string();
        run(&mut w, &[b"SET", b"probe", value.as_bytes()]).await;
        let seen = Instant::now() + Duration::from_millis(100);
        let mut arrived = false;
        while Instant::now() < seen && !arrived {
            let v: Option<String> = redis::cmd("GET")
                .arg("probe")
                .query_async(&mut r)
                .await
                .unwrap_or(None);
            arrived = v.as_deref() == Some(value.as_str());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if arrived {
            break;
        }
    }
    let (mut rx, handle) = provider::spawn(replica.cfg(), None).unwrap();
    assert!(handle.wait_synced(SLOW_LIMIT).await);
    run(
        &mut w,
        &[b"RPUSH", b"frontend:a.example", b"a", b"http://10.0.0.1"],
    )
    .await;
    wait_snapshot(&mut rx, EVENT_LIMIT, "write on the primary", |s| {
        has_host(s, "a.example")
    })
    .await;
    run(&mut w, &[b"PEXPIRE", b"frontend:a.example", b"100"]).await;
    wait_snapshot(&mut rx, SLOW_LIMIT, "expiry on the primary", |s| {
        s.routes.is_empty()
    })
    .await;
    assert_eq!(handle.stats().resyncs, 1, "events did it, not a resync");
    handle.shutdown().await;
}
