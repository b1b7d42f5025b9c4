//! Unit tests of the HTTP/1.1 session: byte literals in, bytes and intents out, a fake clock.

use super::*;
use crate::router::Router;
use crate::session::testenv::FakeEnv;
use crate::upstream::test_backend;

/// The listener settings of these tests (also the HTTP/2 session's tests, whose streams run
/// this session).
pub(crate) fn cfg() -> H1Cfg {
    H1Cfg {
        listener: crate::ids::ListenerId(0),
        routes: Routes {
            router: Router {
                rules: Vec::new(),
                default_backend: Some(0),
            },
            ids: vec![Some(BackendId(1))],
        },
        x_forwarded_for: true,
        x_real_ip: false,
        x_forwarded_proto: true,
        forwarded: false,
        head_bytes_max: 64 * 1024,
        body_bytes_max: Some(1000),
        splice: SpliceMode::Auto,
        access_log: true,
        timeouts: TimeoutsMs::default(),
        draining: false,
    }
}

fn env() -> FakeEnv {
    FakeEnv::new().with_backend(test_backend(1, &[(10, "a"), (11, "b")]))
}

fn session(env: &FakeEnv) -> H1Session {
    H1Session::new("192.0.2.7:5555".parse().unwrap(), false, false, env.now)
}

fn intents(s: &mut H1Session) -> Vec<Intent> {
    std::iter::from_fn(|| s.intents.pop()).collect()
}

fn connect(server: u32, allow_pool: bool) -> Intent {
    Intent::Connect {
        backend: BackendId(1),
        server: ServerId(server),
        allow_pool,
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// The driver's side of a send: everything queued towards `side` went out.
fn sent(w: &mut Wire, side: usize) -> String {
    text(&std::mem::take(&mut w.tx[side]))
}

fn no_log(v: Vec<Intent>) -> Vec<Intent> {
    v.into_iter()
        .filter(|i| !matches!(i, Intent::Log(_)))
        .collect()
}

#[test]
fn keep_alive_request_goes_upstream_with_forwarding_headers_and_the_connection_is_reused() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Ready { reused: true },
    );
    s.progress(&mut w, &mut env, &cfg);
    let up = sent(&mut w, UPSTREAM);
    assert!(up.starts_with("GET /a HTTP/1.1\r\nHost: x\r\n"), "{up}");
    assert!(up.contains("X-Forwarded-For: 192.0.2.7\r\n"), "{up}");
    assert!(up.contains("X-Forwarded-Proto: http\r\n"), "{up}");
    assert!(!up.contains("keep-alive"), "hop-by-hop removed: {up}");
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(
        sent(&mut w, CLIENT),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    );
    let done = intents(&mut s);
    assert!(
        matches!(&done[0], Intent::Log(r) if r.status == 200 && r.target == "/a"),
        "{done:?}"
    );
    assert_eq!(done[1], Intent::Release { reusable: true });
    assert!(s.is_idle(&w));
    assert_eq!(env.stats.http_status.http_2xx, 1);
    assert_eq!(env.stats.http_pool_reused, 1);
    // The next request on the same connection asks for a server again.
    w.rx[CLIENT].extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(11, true)]);
}

#[test]
fn pipelined_requests_are_answered_in_order_one_exchange_at_a_time() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT]
        .extend_from_slice(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, UPSTREAM).starts_with("GET /1 "));
    assert!(!w.rx[CLIENT].is_empty(), "the second request waits");
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    s.progress(&mut w, &mut env, &cfg);
    let v = no_log(intents(&mut s));
    assert_eq!(
        v,
        vec![Intent::Release { reusable: true }, connect(11, true)]
    );
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, UPSTREAM).starts_with("GET /2 "));
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
    s.progress(&mut w, &mut env, &cfg);
    let out = sent(&mut w, CLIENT);
    assert!(
        out.ends_with("\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"),
        "{out}"
    );
}

#[test]
fn expect_100_continue_is_relayed_then_the_body_flows() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(
        b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, UPSTREAM).contains("Expect: 100-continue"));
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(sent(&mut w, CLIENT), "HTTP/1.1 100 Continue\r\n\r\n");
    w.rx[CLIENT].extend_from_slice(b"hello");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(sent(&mut w, UPSTREAM), "hello");
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 201 Created"));
    let v = no_log(intents(&mut s));
    assert_eq!(v, vec![Intent::Release { reusable: true }]);
}

#[test]
fn upgrade_becomes_a_tunnel_until_both_sides_close() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let up = sent(&mut w, UPSTREAM);
    assert!(
        up.contains("Upgrade: websocket") && up.contains("Connection: upgrade"),
        "{up}"
    );
    w.rx[UPSTREAM].extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nsrv",
    );
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(
        sent(&mut w, CLIENT),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nsrv"
    );
    w.rx[CLIENT].extend_from_slice(b"frame");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(sent(&mut w, UPSTREAM), "frame");
    assert_eq!(env.stats.http_tunnels, 1);
    w.eof = [true, true];
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(w.shut, [true, true]);
    w.shut_done = [true, true];
    s.progress(&mut w, &mut env, &cfg);
    let v = no_log(intents(&mut s));
    assert_eq!(
        v,
        vec![
            Intent::Release { reusable: false },
            Intent::Close(Term::Done)
        ]
    );
}

#[test]
fn a_dead_pooled_connection_is_replayed_once_for_free_on_a_new_one() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Ready { reused: true },
    );
    s.progress(&mut w, &mut env, &cfg);
    let first = sent(&mut w, UPSTREAM);
    // The backend had closed it on its keep-alive timeout.
    w.eof[UPSTREAM] = true;
    s.progress(&mut w, &mut env, &cfg);
    let v = intents(&mut s);
    assert_eq!(v[0], Intent::Release { reusable: false });
    assert!(
        matches!(
            v[1],
            Intent::Connect {
                allow_pool: false,
                ..
            }
        ),
        "a new connection, not from the pool: {v:?}"
    );
    assert_eq!(w.tx[UPSTREAM], first.as_bytes(), "the same request again");
    assert!(!w.eof[UPSTREAM]);
    assert_eq!(env.stats.http_pool_retries, 1);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    sent(&mut w, UPSTREAM);
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 204"));
}

#[test]
fn connect_failures_go_to_the_next_server_then_become_502() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    let queued = w.tx[UPSTREAM].clone();
    assert!(
        text(&queued).ends_with("\r\n\r\nabc"),
        "queued until connected"
    );
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Failed(UpstreamError::Connect(111)),
    );
    assert_eq!(
        intents(&mut s),
        vec![Intent::Release { reusable: false }, connect(11, true)]
    );
    assert_eq!(
        w.tx[UPSTREAM], queued,
        "nothing was sent: the same bytes go elsewhere"
    );
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Failed(UpstreamError::Connect(111)),
    );
    assert_eq!(
        intents(&mut s),
        vec![Intent::Release { reusable: false }, connect(10, true)]
    );
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Failed(UpstreamError::Connect(111)),
    );
    let v = no_log(intents(&mut s));
    assert_eq!(v, vec![Intent::Release { reusable: false }]);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
    assert_eq!(env.stats.connect_errors, 3);
    assert_eq!(env.stats.connect_retries, 2);
    assert!(
        w.shut[CLIENT],
        "lingering close after ringway's own response"
    );
    w.shut_done[CLIENT] = true;
    w.eof[CLIENT] = true;
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![Intent::Close(Term::Local)]);
}

#[test]
fn a_request_with_a_body_is_never_replayed_after_it_was_sent() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Ready { reused: true },
    );
    s.progress(&mut w, &mut env, &cfg);
    sent(&mut w, UPSTREAM);
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Failed(UpstreamError::Reset(104)),
    );
    let out = sent(&mut w, CLIENT);
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert_eq!(env.stats.http_pool_retries + env.stats.connect_retries, 0);
}

#[test]
fn timeouts_408_for_a_slow_head_504_for_a_silent_backend_and_keep_alive_close() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHo");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(s.deadline(&w, &env, &cfg), Some(1_000 + 10_000));
    env.now = 11_000;
    s.on_timer(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 408 Request Timeout"));
    assert_eq!(env.stats.http_request_timeouts, 1);

    let mut s = session(&env);
    let mut w = Wire::default();
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    env.now += 60_000;
    s.on_timer(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 504 Gateway Timeout"));
    assert_eq!(env.stats.http_server_timeouts, 1);
    let v = no_log(intents(&mut s));
    assert_eq!(v, vec![Intent::Release { reusable: false }]);

    let mut s = session(&env);
    let mut w = Wire::default();
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    let idle_until = s.deadline(&w, &env, &cfg).unwrap();
    assert_eq!(idle_until, env.now + 60_000, "http_keep_alive");
    env.now = idle_until;
    s.on_timer(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![Intent::Close(Term::Timeout)]);
}

#[test]
fn an_http_1_0_client_gets_a_chunked_response_dechunked_and_close_delimited() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    let up = sent(&mut w, UPSTREAM);
    assert!(up.starts_with("GET / HTTP/1.1\r\n"), "{up}");
    w.rx[UPSTREAM].extend_from_slice(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nT: 1\r\n\r\n",
    );
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(
        sent(&mut w, CLIENT),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, world"
    );
    let v = no_log(intents(&mut s));
    assert_eq!(
        v,
        vec![
            Intent::Release { reusable: true },
            Intent::Close(Term::Done)
        ],
        "the keep-alive 1.0 client is closed after it"
    );
}

#[test]
fn no_route_is_404_and_a_declared_body_over_the_limit_is_413() {
    let (mut env, mut cfg, mut w) = (env(), cfg(), Wire::default());
    cfg.routes.router.default_backend = None;
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 404 Not Found"));
    let v = intents(&mut s);
    assert!(
        matches!(&v[0], Intent::Log(r) if r.status == 404 && r.term == Term::Local),
        "{v:?}"
    );

    let cfg = super::tests::cfg();
    let mut s = session(&env);
    let mut w = Wire::default();
    w.rx[CLIENT].extend_from_slice(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).starts_with("HTTP/1.1 413"));
    assert!(env.picks.is_empty(), "never reached a backend");
}

#[test]
fn malformed_requests_are_refused_with_their_status_and_a_lingering_close() {
    for (raw, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], "400"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"),
    ] {
        let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
        let mut s = session(&env);
        w.rx[CLIENT].extend_from_slice(raw);
        s.progress(&mut w, &mut env, &cfg);
        let out = sent(&mut w, CLIENT);
        assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{out}");
        assert!(out.contains("Connection: close"));
        assert!(env.picks.is_empty());
        // Whatever the client sends next is discarded until it closes.
        w.rx[CLIENT].extend_from_slice(b"garbage");
        s.progress(&mut w, &mut env, &cfg);
        assert!(w.rx[CLIENT].is_empty());
        assert!(s.wants_read(&w, CLIENT, &cfg));
    }
}

#[test]
fn a_backend_closing_mid_body_truncates_and_closes_the_client() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    w.eof[UPSTREAM] = true;
    s.progress(&mut w, &mut env, &cfg);
    assert!(sent(&mut w, CLIENT).ends_with("abc"));
    let v = intents(&mut s);
    assert!(
        matches!(&v[0], Intent::Log(r) if r.term == Term::ServerError),
        "{v:?}"
    );
    assert_eq!(
        v[1..],
        [
            Intent::Release { reusable: false },
            Intent::Close(Term::ServerError)
        ]
    );
}

#[test]
fn a_full_tier_queues_then_connects_when_dequeued_or_times_out_with_503() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    env.answer = Some(Pick::Queue);
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(
        intents(&mut s),
        vec![Intent::Enqueue {
            backend: BackendId(1)
        }]
    );
    assert_eq!(s.queued_on(), Some(BackendId(1)));
    env.answer = None;
    s.on_dequeued(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);

    env.answer = Some(Pick::Queue);
    let mut s = session(&env);
    let mut w = Wire::default();
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    env.now += 5_000;
    s.on_timer(&mut w, &mut env, &cfg);
    let out = sent(&mut w, CLIENT);
    assert!(
        out.starts_with("HTTP/1.1 503") && out.contains("Retry-After: 1"),
        "{out}"
    );
    assert_eq!(
        no_log(intents(&mut s)),
        vec![Intent::Dequeue {
            backend: BackendId(1)
        }]
    );
    assert_eq!(env.stats.http_queue_timeouts, 1);
}

#[test]
fn sticky_cookie_picks_its_server_is_stripped_and_set_for_a_new_client() {
    let mut b = test_backend(1, &[(10, "a"), (11, "b")]);
    b.sticky_cookie = Some("SRV".into());
    let mut env = FakeEnv::new().with_backend(b);
    let (cfg, mut w) = (cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; SRV=b\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(11, true)]);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    let up = sent(&mut w, UPSTREAM);
    assert!(
        up.contains("Cookie: a=1\r\n") && !up.contains("SRV"),
        "{up}"
    );
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert!(
        !sent(&mut w, CLIENT).contains("Set-Cookie"),
        "already stuck there"
    );
    intents(&mut s);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    let out = sent(&mut w, CLIENT);
    assert!(out.contains("Set-Cookie: SRV="), "{out}");
}

#[test]
fn large_bodies_switch_to_splice_once_the_copy_path_is_quiet() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    sent(&mut w, UPSTREAM);
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nab");
    s.progress(&mut w, &mut env, &cfg);
    intents(&mut s);
    assert_eq!(
        s.splice_want(&w, UPSTREAM, cfg.splice),
        None,
        "head still queued"
    );
    sent(&mut w, CLIENT);
    let rest = s.splice_want(&w, UPSTREAM, cfg.splice);
    assert_eq!(rest, Some(999_998));
    assert!(
        !s.wants_read(&w, UPSTREAM, &cfg),
        "the recv must stop for the splice"
    );
    s.on_splice_started(UPSTREAM);
    s.on_spliced(UPSTREAM, 999_998);
    s.on_splice_done(&mut w, &mut env, UPSTREAM, SpliceEnd::Finished);
    s.progress(&mut w, &mut env, &cfg);
    let v = intents(&mut s);
    assert!(
        matches!(&v[0], Intent::Log(r) if r.bytes_sent > 999_998),
        "{v:?}"
    );
    assert_eq!(v[1], Intent::Release { reusable: true });
}

#[test]
fn every_phase_is_timed_in_microseconds_and_the_answered_request_is_reported_once() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET /t HTTP/1.1\r\nHost: x\r\n");
    s.progress(&mut w, &mut env, &cfg); // the head starts at 1_000_000 µs
    env.extra_us = 250;
    w.rx[CLIENT].extend_from_slice(b"\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    env.extra_us = 1_250; // connected 1 ms after the connect was asked for
    s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
    s.progress(&mut w, &mut env, &cfg);
    env.now += 200; // the server thinks for 200 ms
    w.rx[UPSTREAM].extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    s.progress(&mut w, &mut env, &cfg);
    let at = LatencyAt::Backend(BackendId(1));
    assert_eq!(
        env.recorded,
        vec![
            (at, LatencyKind::Connect, 1_000),
            (at, LatencyKind::ResponseHead, 200_000),
        ]
    );
    let total = 201_250;
    assert_eq!(
        env.done,
        vec![ExchangeDone {
            listener: crate::ids::ListenerId(0),
            backend: Some(BackendId(1)),
            server: Some(ServerId(10)),
            status: 200,
            request_us: total,
            bytes_received: 0,
            bytes_sent: 40,
        }]
    );
    let log = intents(&mut s).into_iter().find_map(|i| match i {
        Intent::Log(r) => Some(r),
        _ => None,
    });
    let log = log.expect("a log record");
    assert_eq!(log.request_us, total);
    assert_eq!(log.connect_us, Some(1_000));
    assert_eq!(log.response_us, Some(200_000));
    assert_eq!((log.queue_us, log.retries), (None, 0));
}

#[test]
fn a_failed_request_is_reported_with_its_retries_and_no_connect_time() {
    let (mut env, cfg, mut w) = (env(), cfg(), Wire::default());
    let mut s = session(&env);
    w.rx[CLIENT].extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.progress(&mut w, &mut env, &cfg);
    assert_eq!(intents(&mut s), vec![connect(10, true)]);
    s.on_upstream(
        &mut w,
        &mut env,
        &cfg,
        UpstreamEvent::Failed(UpstreamError::Connect(libc::ECONNREFUSED)),
    );
    s.progress(&mut w, &mut env, &cfg);
    let v = intents(&mut s);
    assert!(v.contains(&connect(11, true)), "{v:?}");
    // `retries = 2`: the third refusal is the last.
    let mut log = None;
    for _ in 0..2 {
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(libc::ECONNREFUSED)),
        );
        s.progress(&mut w, &mut env, &cfg);
        log = intents(&mut s).into_iter().find_map(|i| match i {
            Intent::Log(r) => Some(r),
            _ => None,
        });
    }
    let log = log.expect("a log record");
    assert_eq!((log.status, log.retries, log.connect_us), (502, 2, None));
    assert_eq!(env.done.len(), 1);
    assert_eq!(env.done[0].status, 502);
    assert!(
        env.recorded.is_empty(),
        "no connect succeeded: {:?}",
        env.recorded
    );
}
