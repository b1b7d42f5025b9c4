//! Owns: one TCP proxy connection as a state machine: reading what must come first (a PROXY
//! header from a trusted balancer, a TLS ClientHello for SNI routing) within `peek_timeout`,
//! choosing a server with retries on connect failures, then the tunnel both ways with idle
//! timeouts.
//! Must not: touch sockets. Bytes read while peeking stay in the wire and are forwarded
//! untouched once connected (except the PROXY header, which is never forwarded).

use std::net::SocketAddr;

use super::tunnel::Tunnel;
use super::{
    CLIENT, Env, Intent, Intents, LatencyAt, Pick, QUEUED_MAX, Term, UPSTREAM, UpstreamEvent, Wire,
};
use crate::balancer::{Candidates, hash_bytes};
use crate::config::SpliceMode;
use crate::ids::{BackendId, ServerId};
use crate::latency::LatencyKind;
use crate::proxy_protocol::{Received, parse_received};
use crate::router::Router;
use crate::upstream::{Outcome, UpstreamError};

/// A router whose rules name backends by config index, with those indices' ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub router: Router,
    /// `router` index -> backend id (`None`: the backend is gone).
    pub ids: Vec<Option<BackendId>>,
}

impl Routes {
    pub fn route(&self, req: &crate::router::Request<'_>) -> Option<BackendId> {
        self.router
            .route(req)
            .and_then(|i| self.ids.get(i).copied().flatten())
    }
}

/// What a TCP session needs of its listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpCfg {
    /// The backend of a plain TCP listener (`None` with SNI routing).
    pub backend: Option<BackendId>,
    /// SNI passthrough: route by the ClientHello's server name.
    pub sni: Option<Routes>,
    pub accept_proxy: bool,
    /// How long to wait for the PROXY header / ClientHello.
    pub peek_ms: u64,
    pub splice: SpliceMode,
    pub connect_ms: u64,
    pub client_idle_ms: u64,
    pub server_idle_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the PROXY header and/or the ClientHello; nothing is connected yet.
    Intake,
    Connecting {
        server: ServerId,
        since_ms: u64,
        since_us: u64,
    },
    Tunnel(Tunnel),
    Closed,
}

pub struct TcpSession {
    phase: Phase,
    backend: Option<BackendId>,
    candidates: Candidates,
    key: Option<u64>,
    /// The client: the socket's peer, or what a PROXY header announced.
    pub client: Option<SocketAddr>,
    proxy_pending: bool,
    sni_pending: bool,
    opened_ms: u64,
    pub intents: Intents,
}

impl TcpSession {
    pub fn new(cfg: &TcpCfg, client: Option<SocketAddr>, now_ms: u64) -> TcpSession {
        TcpSession {
            phase: Phase::Intake,
            backend: cfg.backend,
            candidates: Candidates::new(1, true),
            key: None,
            client,
            proxy_pending: cfg.accept_proxy,
            sni_pending: cfg.sni.is_some(),
            opened_ms: now_ms,
            intents: Intents::default(),
        }
    }

    /// Does what the wire allows now.
    pub fn progress(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &TcpCfg) {
        for _ in 0..4 {
            let changed = match self.phase {
                Phase::Intake => self.intake(w, env, cfg),
                Phase::Connecting { .. } => false,
                Phase::Tunnel(mut t) => {
                    let changed = t.progress(w);
                    let done = t.is_done(w);
                    self.phase = Phase::Tunnel(t);
                    if done {
                        self.close(Term::Done);
                    }
                    changed
                }
                Phase::Closed => false,
            };
            if !changed {
                break;
            }
        }
    }

    fn intake(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &TcpCfg) -> bool {
        if self.proxy_pending {
            match parse_received(&w.rx[CLIENT]) {
                Received::Partial if !w.eof[CLIENT] => return false,
                Received::Partial | Received::Invalid(_) => {
                    env.stats().proxy_rejected += 1;
                    tracing::debug!("PROXY header refused");
                    self.close(Term::ClientError);
                    return false;
                }
                Received::Complete {
                    source,
                    consumed_bytes,
                } => {
                    let n = consumed_bytes.min(w.rx[CLIENT].len());
                    w.rx[CLIENT].drain(..n);
                    if source.is_some() {
                        self.client = source;
                    }
                    self.proxy_pending = false;
                }
            }
        }
        if self.sni_pending {
            let Some(routes) = &cfg.sni else {
                self.sni_pending = false;
                return true;
            };
            let routed = match crate::tls::parse_client_hello(&w.rx[CLIENT]) {
                crate::tls::HelloVerdict::Partial if !w.eof[CLIENT] => return false,
                crate::tls::HelloVerdict::Partial
                | crate::tls::HelloVerdict::NotTls
                | crate::tls::HelloVerdict::Invalid(_) => None,
                crate::tls::HelloVerdict::Complete(hello) => {
                    let no_headers = |_: &str, _: &mut dyn FnMut(&[u8]) -> bool| false;
                    let picked = routes.route(&crate::router::Request {
                        host: hello.sni.as_deref().map(str::as_bytes),
                        target: b"/",
                        method: b"",
                        headers: &no_headers,
                    });
                    tracing::debug!(sni = ?hello.sni, backend = ?picked, "SNI routed");
                    Some(picked)
                }
            };
            match routed {
                Some(Some(backend)) => {
                    self.backend = Some(backend);
                    self.sni_pending = false;
                }
                Some(None) | None => {
                    env.stats().tls_peek_rejected += 1;
                    self.close(Term::ClientError);
                    return false;
                }
            }
        }
        let Some(backend) = self.backend else {
            self.close(Term::Local);
            return false;
        };
        let Some(b) = env.backend(backend) else {
            self.close(Term::Local);
            return false;
        };
        self.candidates = b.candidates();
        if b.is_maglev() {
            self.key = self
                .client
                .map(|a| hash_bytes(a.ip().to_string().as_bytes()));
        }
        self.connect_next(env);
        true
    }

    fn connect_next(&mut self, env: &mut impl Env) {
        let Some(backend) = self.backend else {
            self.close(Term::Local);
            return;
        };
        match env.pick(backend, &mut self.candidates, self.key, None) {
            Pick::Server(server) => {
                self.phase = Phase::Connecting {
                    server,
                    since_ms: env.now_ms(),
                    since_us: env.now_us(),
                };
                self.intents.push(Intent::Connect {
                    backend,
                    server,
                    allow_pool: false,
                });
            }
            Pick::Queue | Pick::Unavailable => {
                env.stats().connect_errors += 1;
                tracing::debug!(backend = backend.0, "no server can be picked");
                self.close(Term::ServerError);
            }
        }
    }

    pub fn on_upstream(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &TcpCfg,
        ev: UpstreamEvent,
    ) {
        if let (Phase::Tunnel(_), UpstreamEvent::Failed(e)) = (self.phase, ev) {
            // The server reset the tunnel: nothing more can flow; close both sides.
            tracing::debug!(error = %e, "server connection failed");
            self.close(Term::ServerError);
            return;
        }
        let Phase::Connecting {
            server, since_us, ..
        } = self.phase
        else {
            return;
        };
        let backend = self.backend.unwrap_or(BackendId(0));
        match ev {
            UpstreamEvent::Ready { .. } | UpstreamEvent::Connected => {
                env.outcome(backend, server, Outcome::Connected);
                let connect_us = env.now_us().saturating_sub(since_us);
                env.record(
                    LatencyAt::Backend(backend),
                    LatencyKind::Connect,
                    connect_us,
                );
                let now = env.now_ms();
                w.active_ms = [now, now];
                self.phase = Phase::Tunnel(Tunnel::new(cfg.splice));
            }
            UpstreamEvent::Failed(e) => self.connect_failed(w, env, server, e),
        }
    }

    fn connect_failed(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        server: ServerId,
        e: UpstreamError,
    ) {
        let backend = self.backend.unwrap_or(BackendId(0));
        if e == UpstreamError::ConnectTimeout {
            env.stats().connect_timeouts += 1;
        } else {
            env.stats().connect_errors += 1;
        }
        tracing::debug!(backend = backend.0, server = server.0, error = %e, "connect failed");
        env.outcome(backend, server, Outcome::Failed);
        self.intents.push(Intent::Release { reusable: false });
        w.reset_upstream(env.now_ms());
        if self.candidates.can_retry() {
            env.stats().connect_retries += 1;
            self.connect_next(env);
        } else {
            self.close(if e.is_timeout() {
                Term::Timeout
            } else {
                Term::ServerError
            });
        }
    }

    pub fn wants_read(&self, w: &Wire, side: usize) -> bool {
        match self.phase {
            Phase::Intake | Phase::Connecting { .. } => {
                side == CLIENT && !w.eof[CLIENT] && w.rx[CLIENT].len() < QUEUED_MAX
            }
            Phase::Tunnel(t) => t.wants_read(w, side),
            Phase::Closed => false,
        }
    }

    pub fn deadline(&self, w: &Wire, cfg: &TcpCfg) -> Option<u64> {
        Some(match self.phase {
            Phase::Intake => self.opened_ms.saturating_add(cfg.peek_ms),
            Phase::Connecting { since_ms, .. } => since_ms.saturating_add(cfg.connect_ms),
            Phase::Tunnel(_) => w.active_ms[CLIENT]
                .saturating_add(cfg.client_idle_ms)
                .min(w.active_ms[UPSTREAM].saturating_add(cfg.server_idle_ms)),
            Phase::Closed => return None,
        })
    }

    /// The deadline passed (the driver checked `deadline`).
    pub fn on_timer(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &TcpCfg) {
        let now = env.now_ms();
        if self.deadline(w, cfg).is_none_or(|d| now < d) {
            return;
        }
        match self.phase {
            Phase::Intake => {
                env.stats().idle_timeouts += 1;
                if self.sni_pending {
                    env.stats().tls_peek_rejected += 1;
                } else if self.proxy_pending {
                    env.stats().proxy_rejected += 1;
                }
                self.close(Term::Timeout);
            }
            Phase::Connecting { server, .. } => {
                self.connect_failed(w, env, server, UpstreamError::ConnectTimeout)
            }
            Phase::Tunnel(_) => {
                env.stats().idle_timeouts += 1;
                self.close(Term::Timeout);
            }
            Phase::Closed => {}
        }
    }

    pub fn splice_want(&self, w: &Wire, dir: usize) -> Option<u64> {
        match &self.phase {
            Phase::Tunnel(t) => t.splice_want(w, dir),
            _ => None,
        }
    }

    pub fn tunnel_mut(&mut self) -> Option<&mut Tunnel> {
        match &mut self.phase {
            Phase::Tunnel(t) => Some(t),
            _ => None,
        }
    }

    pub fn server(&self) -> Option<(BackendId, ServerId)> {
        match self.phase {
            Phase::Connecting { server, .. } => self.backend.map(|b| (b, server)),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn close(&mut self, term: Term) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.intents.push(Intent::Close(term));
        }
    }

    /// The drain deadline passed: close now.
    pub fn abort(&mut self, term: Term) {
        self.close(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::testenv::FakeEnv;
    use crate::upstream::test_backend;

    fn cfg() -> TcpCfg {
        TcpCfg {
            backend: Some(BackendId(1)),
            sni: None,
            accept_proxy: false,
            peek_ms: 500,
            splice: SpliceMode::Auto,
            connect_ms: 1_000,
            client_idle_ms: 30_000,
            server_idle_ms: 30_000,
        }
    }

    fn drain(s: &mut TcpSession) -> Vec<Intent> {
        std::iter::from_fn(|| s.intents.pop()).collect()
    }

    #[test]
    fn connects_at_once_then_tunnels_and_closes_when_both_sides_shut() {
        let mut env = FakeEnv::new().with_backend(test_backend(1, &[(10, "a")]));
        let cfg = cfg();
        let mut w = Wire::default();
        let mut s = TcpSession::new(&cfg, None, env.now);
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(
            drain(&mut s),
            vec![Intent::Connect {
                backend: BackendId(1),
                server: ServerId(10),
                allow_pool: false
            }]
        );
        w.rx[CLIENT].extend_from_slice(b"early bytes");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(w.tx[UPSTREAM], b"", "nothing goes out before the connect");
        s.on_upstream(&mut w, &mut env, &cfg, UpstreamEvent::Connected);
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(w.tx[UPSTREAM], b"early bytes");
        w.eof = [true, true];
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(w.shut, [true, true]);
        w.shut_done = [true, true];
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(drain(&mut s), vec![Intent::Close(Term::Done)]);
    }

    #[test]
    fn connect_failures_retry_on_the_next_server_then_give_up() {
        let mut env = FakeEnv::new().with_backend(test_backend(1, &[(10, "a"), (11, "b")]));
        let cfg = cfg();
        let mut w = Wire::default();
        let mut s = TcpSession::new(&cfg, None, env.now);
        s.progress(&mut w, &mut env, &cfg);
        drain(&mut s);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(111)),
        );
        assert_eq!(
            drain(&mut s),
            vec![
                Intent::Release { reusable: false },
                Intent::Connect {
                    backend: BackendId(1),
                    server: ServerId(11),
                    allow_pool: false
                }
            ]
        );
        env.now += 2_000;
        s.on_timer(&mut w, &mut env, &cfg);
        assert_eq!(env.stats.connect_timeouts, 1);
        s.on_upstream(
            &mut w,
            &mut env,
            &cfg,
            UpstreamEvent::Failed(UpstreamError::Connect(111)),
        );
        let last = drain(&mut s);
        assert_eq!(
            last.last(),
            Some(&Intent::Close(Term::ServerError)),
            "{last:?}"
        );
        assert_eq!(env.stats.connect_retries, 2);
    }

    #[test]
    fn proxy_header_is_read_and_never_forwarded() {
        let mut env = FakeEnv::new().with_backend(test_backend(1, &[(10, "a")]));
        let cfg = TcpCfg {
            accept_proxy: true,
            ..cfg()
        };
        let mut w = Wire::default();
        let mut s = TcpSession::new(&cfg, None, env.now);
        w.rx[CLIENT].extend_from_slice(b"PROXY TCP4 10.1.2.3 10.0.0.1 5000 80\r");
        s.progress(&mut w, &mut env, &cfg);
        assert!(drain(&mut s).is_empty(), "partial header: wait");
        w.rx[CLIENT].extend_from_slice(b"\nhello");
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(drain(&mut s).len(), 1);
        assert_eq!(s.client, "10.1.2.3:5000".parse().ok());
        assert_eq!(w.rx[CLIENT], b"hello");
    }

    #[test]
    fn silence_past_peek_timeout_closes() {
        let mut env = FakeEnv::new().with_backend(test_backend(1, &[(10, "a")]));
        let cfg = TcpCfg {
            accept_proxy: true,
            ..cfg()
        };
        let mut w = Wire::default();
        let mut s = TcpSession::new(&cfg, None, env.now);
        s.progress(&mut w, &mut env, &cfg);
        assert_eq!(s.deadline(&w, &cfg), Some(1_500));
        env.now = 1_500;
        s.on_timer(&mut w, &mut env, &cfg);
        assert_eq!(drain(&mut s), vec![Intent::Close(Term::Timeout)]);
        assert_eq!(env.stats.proxy_rejected, 1);
    }
}
