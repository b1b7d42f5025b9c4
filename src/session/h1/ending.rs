//! Owns: how exchanges end badly or late — upstream failures with the retry rules, ringway's own
//! responses and lingering close, the access log record, closing, what the session wants to
//! read (backpressure), and every phase's deadline and what happens when it passes.
//! Must not: touch sockets or clocks; the driver passes `now` through `Env`.

use super::*;

/// When the current exchange's request started (µs); 0 outside an exchange.
fn ex_started_us(phase: &Phase) -> u64 {
    match phase {
        Phase::Exchange(ex) => ex.timing.started_us,
        _ => 0,
    }
}

impl H1Session {
    /// The upstream failed. Before any response byte reached the client this is retried where
    /// safe, else it becomes a status; after, the client connection is closed.
    /// - A connect failed or timed out (nothing was sent): another server while attempts remain,
    ///   body or not.
    /// - A reused (pooled) connection died before answering: the backend may have closed it on its
    ///   keep-alive timeout just as it was taken; a bodyless request is replayed once on a new
    ///   connection without using an attempt.
    /// - A fresh connection died before answering: a bodyless request is retried while attempts
    ///   remain. A request whose body was (partly) sent is never replayed.
    pub(super) fn upstream_failed(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H1Cfg,
        e: UpstreamError,
    ) {
        let now = env.now_ms();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let connecting = matches!(ex.up, Up::Connecting { .. });
        let reused = matches!(ex.up, Up::Open { reused: true, .. });
        match e {
            UpstreamError::Connect(_) => env.stats().connect_errors += 1,
            UpstreamError::ConnectTimeout => env.stats().connect_timeouts += 1,
            _ => {}
        }
        if connecting && let (Some(b), Some(s)) = (ex.backend, ex.server) {
            env.outcome(b, s, Outcome::Failed);
        }
        tracing::debug!(backend = ?ex.backend.map(|b| b.0), server = ?ex.server.map(|s| s.0), error = %e, "upstream failed");
        let untouched = !ex.resp_started && !ex.server_answered;
        let connect_retry = connecting && e.is_retryable() && ex.candidates.can_retry();
        let replay = !connecting && untouched && e.is_lost_connection() && ex.replayable;
        let free_replay = replay && reused;
        let paid_replay = replay && !reused && ex.candidates.can_retry();
        if connect_retry || free_replay || paid_replay {
            self.intents.push(Intent::Release { reusable: false });
            ex.timing.retries += 1;
            if connect_retry {
                env.stats().connect_retries += 1;
                // Nothing was sent: what waits for the upstream is the whole request so far.
                let keep = std::mem::take(&mut w.tx[UPSTREAM]);
                w.reset_upstream(now);
                w.tx[UPSTREAM] = keep;
            } else {
                if free_replay {
                    env.stats().http_pool_retries += 1;
                    ex.candidates.forget_last();
                } else {
                    env.stats().connect_retries += 1;
                }
                w.reset_upstream(now);
                w.tx[UPSTREAM].extend_from_slice(&self.replay);
            }
            ex.up = Up::None;
            self.connect(w, env, cfg, !free_replay);
            return;
        }
        let term = if e.is_timeout() {
            Term::Timeout
        } else {
            Term::ServerError
        };
        if ex.resp_started {
            self.log(env, term);
            self.intents.push(Intent::Release { reusable: false });
            self.close(term);
        } else {
            self.local_response(w, env, cfg, LocalReply::Upstream(e), term);
        }
    }

    /// Queues ringway's own response, then lingers and closes: after an error the framing of what
    /// the client sent next is uncertain, so the connection is never reused.
    pub(super) fn local_response(
        &mut self,
        w: &mut Wire,
        env: &mut impl Env,
        cfg: &H1Cfg,
        reply: LocalReply,
        term: Term,
    ) {
        let now = env.now_ms();
        let status = reply.status();
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let mut ex = match phase {
            Phase::Exchange(ex) => {
                match ex.up {
                    Up::Connecting { .. } | Up::Open { .. } => {
                        self.intents.push(Intent::Release { reusable: false })
                    }
                    Up::Queued { .. } => {
                        if let Some(backend) = ex.backend {
                            self.intents.push(Intent::Dequeue { backend });
                        }
                    }
                    Up::None => {}
                }
                ex
            }
            Phase::Head { started_ms } => {
                // A request refused before it was understood: log its first line.
                let log = cfg
                    .access_log
                    .then(|| Box::new(raw_request_line(&w.rx[CLIENT])));
                Box::new(Exchange {
                    listener: cfg.listener,
                    backend: None,
                    timing: Timing {
                        started_us: if started_ms.is_some() {
                            self.head_started_us
                        } else {
                            env.now_us()
                        },
                        ..Timing::default()
                    },
                    up: Up::None,
                    candidates: Candidates::new(1, true),
                    key: None,
                    sticky: None,
                    set_cookie: false,
                    req_body: Body::Done,
                    req_done: true,
                    req_sent_ms: now,
                    replayable: false,
                    client_keep_alive: false,
                    is_head: false,
                    upgrade: false,
                    version_minor: 1,
                    started_ms: started_ms.unwrap_or(now),
                    req_body_bytes: 0,
                    resp: Resp::Done,
                    resp_started: true,
                    server_answered: false,
                    server_keep_alive: false,
                    status: 0,
                    resp_bytes: 0,
                    log,
                    splicing: [false; 2],
                    no_splice: [false; 2],
                    server: None,
                })
            }
            p @ (Phase::Linger { .. } | Phase::Closed) => {
                self.phase = p;
                return;
            }
        };
        w.rx[CLIENT].clear();
        w.reset_upstream(now);
        let before = w.tx[CLIENT].len();
        http1::error_response(status, true, &mut w.tx[CLIENT]);
        ex.status = status;
        ex.resp_bytes += (w.tx[CLIENT].len() - before) as u64;
        ex.server = None;
        env.stats().http_local_responses += 1;
        self.phase = Phase::Exchange(ex);
        self.log(env, term);
        self.set_phase(Phase::Linger {
            until_ms: now + LINGER_MS,
            discarded: 0,
        });
        w.shut[CLIENT] = true;
    }

    /// One access log record for the current exchange (once), and its status counted.
    pub(super) fn log(&mut self, env: &mut impl Env, term: Term) {
        let now = env.now_ms();
        let request_us = env.now_us().saturating_sub(ex_started_us(&self.phase));
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.status == 0 && term == Term::Done {
            return;
        }
        if ex.status != 0 {
            env.stats().count_status(ex.status);
            env.exchange_done(&ExchangeDone {
                listener: ex.listener,
                backend: ex.backend,
                server: ex.server,
                status: ex.status,
                request_us,
                bytes_received: ex.req_body_bytes,
                bytes_sent: ex.resp_bytes,
            });
        }
        let status = std::mem::take(&mut ex.status);
        let Some(log) = ex.log.take() else {
            return;
        };
        self.intents.push(Intent::Log(Box::new(AccessRecord {
            proto: "h1",
            method: log.method,
            target: log.target,
            version_minor: log.version_minor,
            referer: log.referer,
            user_agent: log.user_agent,
            status,
            bytes_sent: ex.resp_bytes,
            bytes_received: ex.req_body_bytes,
            duration_ms: now.saturating_sub(ex.started_ms),
            request_us,
            queue_us: ex.timing.queue_us,
            connect_us: ex.timing.connect_us,
            response_us: ex.timing.response_us,
            retries: ex.timing.retries,
            backend: ex.backend,
            server: ex.server,
            term,
        })));
    }

    pub(super) fn close(&mut self, term: Term) {
        if !matches!(self.phase, Phase::Closed) {
            if let Phase::Exchange(ex) = &self.phase
                && let (Up::Queued { .. }, Some(backend)) = (ex.up, ex.backend)
            {
                self.intents.push(Intent::Dequeue { backend });
            }
            self.set_phase(Phase::Closed);
            self.intents.push(Intent::Close(term));
        }
    }

    /// Closes at once (drain deadline, client gone): the exchange in flight is logged as `term`.
    pub fn abort(&mut self, env: &mut impl Env, term: Term) {
        self.log(env, term);
        self.close(term);
    }

    /// The client's connection failed (reset, send error): nothing more can reach it.
    pub fn on_client_error(&mut self, env: &mut impl Env) {
        self.abort(env, Term::ClientError);
    }

    /// Whether the driver should read side `side` now. Backpressure: a side is read only while
    /// what it sent so far has somewhere to go.
    pub fn wants_read(&self, w: &Wire, side: usize, cfg: &H1Cfg) -> bool {
        if w.eof[side] {
            return false;
        }
        let head_max = cfg.head_bytes_max as usize;
        match (&self.phase, side) {
            (Phase::Head { .. }, CLIENT) => w.rx[CLIENT].len() < head_max,
            (Phase::Head { .. }, _) => true,
            (Phase::Exchange(ex), CLIENT) => match &ex.resp {
                Resp::Tunnel(t) => t.wants_read(w, CLIENT),
                _ if ex.req_done => w.rx[CLIENT].len() < head_max,
                _ => {
                    !ex.splicing[CLIENT]
                        && self.splice_eligible(w, CLIENT, cfg.splice).is_none()
                        && w.queued(UPSTREAM) < QUEUED_MAX
                        && w.rx[CLIENT].len() < QUEUED_MAX
                }
            },
            (Phase::Exchange(ex), _) => match &ex.resp {
                Resp::Tunnel(t) => t.wants_read(w, UPSTREAM),
                _ => {
                    !ex.splicing[UPSTREAM]
                        && self.splice_eligible(w, UPSTREAM, cfg.splice).is_none()
                        && w.queued(CLIENT) < QUEUED_MAX
                        && w.rx[UPSTREAM].len() < QUEUED_MAX
                }
            },
            (Phase::Linger { .. }, CLIENT) => true,
            (Phase::Linger { .. }, _) | (Phase::Closed, _) => false,
        }
    }

    /// When the session's current phase times out (ms, shard clock).
    pub fn deadline(&self, w: &Wire, env: &impl Env, cfg: &H1Cfg) -> Option<u64> {
        let t = &cfg.timeouts;
        Some(match &self.phase {
            Phase::Head {
                started_ms: Some(s),
            } => s.saturating_add(t.http_request),
            Phase::Head { started_ms: None } => {
                if self.requests == 0 {
                    self.opened_ms.saturating_add(t.http_request)
                } else {
                    w.active_ms[CLIENT].saturating_add(t.http_keep_alive)
                }
            }
            Phase::Exchange(ex) => match ex.up {
                Up::Queued { since_ms } => {
                    let wait = ex
                        .backend
                        .and_then(|b| env.backend(b))
                        .map_or(5_000, |b| b.queue_timeout_ms);
                    since_ms.saturating_add(wait)
                }
                Up::Connecting { since_ms, .. } => since_ms.saturating_add(t.connect),
                Up::Open { .. } | Up::None => match ex.resp {
                    Resp::Tunnel(_) => w.active_ms[CLIENT]
                        .max(w.active_ms[UPSTREAM])
                        .saturating_add(t.tunnel),
                    _ => {
                        let idle = w.active_ms[CLIENT]
                            .saturating_add(t.client_idle)
                            .min(w.active_ms[UPSTREAM].saturating_add(t.server_idle));
                        if matches!(ex.resp, Resp::Head) && ex.req_done {
                            idle.min(self.response_deadline(ex, w, t))
                        } else {
                            idle
                        }
                    }
                },
            },
            Phase::Linger { until_ms, .. } => *until_ms,
            Phase::Closed => return None,
        })
    }

    pub(super) fn response_deadline(&self, ex: &Exchange, w: &Wire, t: &TimeoutsMs) -> u64 {
        ex.req_sent_ms
            .max(w.active_ms[UPSTREAM])
            .saturating_add(t.server_response)
    }

    /// The driver's timer fired: act if the deadline really passed.
    pub fn on_timer(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) {
        let now = env.now_ms();
        if self.deadline(w, env, cfg).is_none_or(|d| now < d) {
            return;
        }
        let t = cfg.timeouts;
        match &self.phase {
            Phase::Head { started_ms: None } => {
                env.stats().idle_timeouts += 1;
                self.close(Term::Timeout);
            }
            Phase::Head {
                started_ms: Some(_),
            } => {
                env.stats().http_request_timeouts += 1;
                self.local_response(w, env, cfg, LocalReply::RequestTimeout, Term::Timeout);
            }
            Phase::Exchange(ex) => match ex.up {
                Up::Queued { .. } => {
                    env.stats().http_queue_timeouts += 1;
                    let now_us = env.now_us();
                    if let Phase::Exchange(ex) = &mut self.phase {
                        ex.left_queue(env, now_us);
                    }
                    self.local_response(
                        w,
                        env,
                        cfg,
                        LocalReply::Upstream(UpstreamError::QueueTimeout),
                        Term::Timeout,
                    );
                }
                Up::Connecting { .. } => {
                    self.upstream_failed(w, env, cfg, UpstreamError::ConnectTimeout)
                }
                Up::Open { .. } | Up::None => {
                    let waiting_head = matches!(ex.resp, Resp::Head)
                        && ex.req_done
                        && now >= self.response_deadline(ex, w, &t);
                    if waiting_head {
                        env.stats().http_server_timeouts += 1;
                        self.upstream_failed(w, env, cfg, UpstreamError::ResponseTimeout);
                    } else {
                        env.stats().idle_timeouts += 1;
                        self.log(env, Term::Timeout);
                        self.intents.push(Intent::Release { reusable: false });
                        self.close(Term::Timeout);
                    }
                }
            },
            Phase::Linger { .. } => self.close(Term::Local),
            Phase::Closed => {}
        }
    }
}
