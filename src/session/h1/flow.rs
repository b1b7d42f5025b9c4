//! Owns: the middle of an exchange — request bodies towards the upstream, the response head and
//! body back (verbatim or de-chunked), interim responses, the switch to a tunnel on 101, the end
//! of an exchange (release, keep-alive or close), the lingering close after a local response, and
//! the splice(2) hand-offs the driver asks about.
//! Must not: touch sockets; see `mod.rs`.

use super::*;

impl H1Session {
    pub(super) fn step_exchange(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let mut changed = self.flow_request(w, env, cfg);
        changed |= self.flow_response(w, env, cfg);
        changed |= self.finish_if_done(w, env, cfg);
        changed
    }

    /// Moves request body bytes from the client towards the upstream.
    pub(super) fn flow_request(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if ex.req_done || ex.splicing[CLIENT] || w.queued(UPSTREAM) >= QUEUED_MAX {
            return false;
        }
        let moved = {
            let Wire { rx, tx, .. } = w;
            let [rx0, _] = rx;
            let [_, tx1] = tx;
            move_body(&mut ex.req_body, rx0, tx1)
        };
        match moved {
            Ok(0) => {}
            Ok(n) => {
                ex.req_body_bytes += n as u64;
                ex.replayable = false;
                if cfg
                    .body_bytes_max
                    .is_some_and(|max| ex.req_body_bytes > max)
                {
                    // A chunked body over the limit: part of it may be at the backend already,
                    // so that connection is closed (not pooled) and the client gets 413.
                    self.local_response(w, env, cfg, LocalReply::BodyTooLarge, Term::ClientError);
                    return true;
                }
            }
            Err(()) => {
                tracing::debug!("malformed chunked request body");
                self.local_response(w, env, cfg, LocalReply::BadBody, Term::ClientError);
                return true;
            }
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if matches!(ex.req_body, Body::Done) {
            ex.req_done = true;
            return true;
        }
        if w.eof[CLIENT] && w.rx[CLIENT].is_empty() {
            // The client closed before its body was complete.
            self.log(env, Term::ClientClosed);
            self.close(Term::ClientClosed);
            return true;
        }
        false
    }

    pub(super) fn flow_response(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if !matches!(ex.up, Up::Open { .. }) {
            return false;
        }
        if !w.rx[UPSTREAM].is_empty() {
            ex.server_answered = true;
        }
        match &mut ex.resp {
            Resp::Head => self.response_head(w, env, cfg),
            Resp::Body(_) => self.response_body(w, env),
            Resp::Tunnel(t) => {
                let changed = t.progress(w);
                if t.is_done(w) {
                    self.log(env, Term::Done);
                    self.intents.push(Intent::Release { reusable: false });
                    self.close(Term::Done);
                    return true;
                }
                changed
            }
            Resp::Done => false,
        }
    }

    pub(super) fn response_head(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let draining = env.draining() || cfg.draining;
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if w.rx[UPSTREAM].is_empty() {
            if w.eof[UPSTREAM] {
                // Closed before any response byte (replayed where that is safe).
                self.upstream_failed(w, env, cfg, UpstreamError::Closed);
                return true;
            }
            return false;
        }
        let head =
            match http1::parse_response(&w.rx[UPSTREAM], &http1::Limits::default(), ex.is_head) {
                HeadVerdict::Partial => {
                    if w.eof[UPSTREAM] {
                        self.upstream_failed(w, env, cfg, UpstreamError::Closed);
                        return true;
                    }
                    return false;
                }
                HeadVerdict::Invalid(reject) => {
                    tracing::debug!(reason = %reject, "invalid response from backend");
                    env.stats().http_bad_responses += 1;
                    self.upstream_failed(w, env, cfg, UpstreamError::BadResponse);
                    return true;
                }
                HeadVerdict::Complete {
                    head,
                    consumed_bytes,
                } => (head, consumed_bytes),
            };
        let (head, consumed_bytes) = head;
        let status = head.status;
        if ex.timing.response_us.is_none() {
            // The first head (an interim 100 counts): how long the server took to start answering.
            let waited = env.now_us().saturating_sub(ex.timing.req_sent_us);
            ex.timing.response_us = Some(waited);
            if let Some(b) = ex.backend {
                env.record(LatencyAt::Backend(b), LatencyKind::ResponseHead, waited);
            }
        }
        let interim = (100..200).contains(&status) && status != 101;
        let tunnel = status == 101;
        if tunnel && !ex.upgrade {
            env.stats().http_bad_responses += 1;
            self.upstream_failed(w, env, cfg, UpstreamError::BadResponse);
            return true;
        }
        // RFC 9112 §7.1 / §6.3: an HTTP/1.0 client gets no chunked coding: de-chunk, then close.
        let dechunk =
            !interim && !tunnel && ex.version_minor == 0 && head.framing == Framing::Chunked;
        let keep_alive = !interim && !tunnel && !dechunk && ex.client_keep_alive && !draining;
        let backend_cfg = ex.backend.and_then(|b| env.backend(b));
        let cookie = (ex.set_cookie && !interim)
            .then(|| {
                let b = backend_cfg?;
                let server = b.server(ex.server?)?;
                Some((b.sticky_cookie.as_deref()?, server.name.as_str()))
            })
            .flatten();
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
        let relay = !(interim && ex.version_minor == 0);
        if relay {
            let opts = ResponseOpts {
                keep_alive: keep_alive || interim || tunnel,
                version_minor_client: ex.version_minor,
                tunnel,
                set_cookie: cookie,
                dechunk,
            };
            let before = w.tx[CLIENT].len();
            let Wire { rx, tx, .. } = &mut *w;
            http1::encode_response(&rx[UPSTREAM], &head, &opts, &mut tx[CLIENT]);
            let len = w.tx[CLIENT].len() - before;
            ex.resp_bytes += len as u64;
            ex.resp_started = true;
            self.relayed = Some(RelayedHead {
                start: before,
                len,
                status,
                framing: if dechunk {
                    Framing::CloseDelimited
                } else {
                    head.framing
                },
            });
        }
        let n = consumed_bytes.min(w.rx[UPSTREAM].len());
        w.rx[UPSTREAM].drain(..n);
        if interim {
            return true;
        }
        ex.status = status;
        ex.server_keep_alive = head.keep_alive;
        if !keep_alive {
            ex.client_keep_alive = false;
        }
        if let (Some(b), Some(s)) = (ex.backend, ex.server) {
            env.outcome(b, s, Outcome::Response(status));
        }
        if tunnel {
            ex.req_body = Body::Done;
            ex.req_done = true;
            ex.resp = Resp::Tunnel(Tunnel::new(cfg.splice));
            env.stats().http_tunnels += 1;
            return true;
        }
        ex.resp = Resp::Body(match head.framing {
            Framing::Chunked if dechunk => Body::Dechunk(ChunkedScanner::new()),
            Framing::CloseDelimited => {
                ex.client_keep_alive = false;
                Body::UntilEof
            }
            f => Body::of(f),
        });
        true
    }

    pub(super) fn response_body(&mut self, w: &mut Wire, env: &mut impl Env) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        let Resp::Body(body) = &mut ex.resp else {
            return false;
        };
        let mut changed = false;
        if !ex.splicing[UPSTREAM] && w.queued(CLIENT) < QUEUED_MAX {
            let before = w.tx[CLIENT].len();
            let moved = {
                let Wire { rx, tx, .. } = &mut *w;
                let [_, rx1] = rx;
                let [tx0, _] = tx;
                move_body(body, rx1, tx0)
            };
            match moved {
                Ok(0) => {}
                Ok(_) => {
                    ex.resp_bytes += w.tx[CLIENT].len().saturating_sub(before) as u64;
                    changed = true;
                }
                Err(()) => {
                    env.stats().http_bad_responses += 1;
                    tracing::debug!("malformed chunked response body");
                    self.log(env, Term::ServerError);
                    self.intents.push(Intent::Release { reusable: false });
                    self.close(Term::ServerError);
                    return true;
                }
            }
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return changed;
        };
        let Resp::Body(body) = &mut ex.resp else {
            return changed;
        };
        let drained = w.eof[UPSTREAM] && w.rx[UPSTREAM].is_empty() && !ex.splicing[UPSTREAM];
        match body {
            Body::Done => {
                ex.resp = Resp::Done;
                true
            }
            Body::UntilEof if drained => {
                ex.resp = Resp::Done;
                ex.server_keep_alive = false;
                true
            }
            _ if drained => {
                // The backend closed mid-body: the client gets a truncated response and a close,
                // never a hang, and this connection is not pooled.
                tracing::debug!("backend closed mid-response");
                self.log(env, Term::ServerError);
                self.intents.push(Intent::Release { reusable: false });
                self.close(Term::ServerError);
                true
            }
            _ => changed,
        }
    }

    /// Ends an exchange whose request and response are both complete: log it, release the
    /// upstream connection (reusable when clean), and read the next request (or close).
    pub(super) fn finish_if_done(&mut self, w: &mut Wire, env: &mut impl Env, cfg: &H1Cfg) -> bool {
        let Phase::Exchange(ex) = &self.phase else {
            return false;
        };
        if !matches!(ex.resp, Resp::Done) || !ex.req_done || ex.splicing[CLIENT] {
            return false;
        }
        let reusable = ex.server_keep_alive
            && w.flushed(UPSTREAM)
            && w.rx[UPSTREAM].is_empty()
            && !w.eof[UPSTREAM];
        let keep_client = ex.client_keep_alive && !env.draining() && !cfg.draining;
        self.log(env, Term::Done);
        self.intents.push(Intent::Release { reusable });
        w.reset_upstream(env.now_ms());
        if keep_client {
            self.set_phase(Phase::Head { started_ms: None });
            w.active_ms[CLIENT] = env.now_ms();
        } else {
            self.close(Term::Done);
        }
        true
    }

    pub(super) fn step_linger(&mut self, w: &mut Wire) -> bool {
        let Phase::Linger { discarded, .. } = &mut self.phase else {
            return false;
        };
        *discarded += w.rx[CLIENT].len() as u64;
        w.rx[CLIENT].clear();
        let over = *discarded > LINGER_BYTES_MAX;
        w.shut[CLIENT] = true;
        if w.shut_done[CLIENT] && (w.eof[CLIENT] || over) {
            self.close(Term::Local);
            return true;
        }
        false
    }

    /// Direction `dir` may move by splice(2) now: returns the bytes to move (`u64::MAX`: until
    /// the source closes). Only once the copy path is quiet so bytes keep their order.
    pub fn splice_want(&self, w: &Wire, dir: usize, mode: SpliceMode) -> Option<u64> {
        if let Phase::Exchange(ex) = &self.phase
            && let Resp::Tunnel(t) = &ex.resp
        {
            return t.splice_want(w, dir);
        }
        let quiet = w.rx[dir].is_empty() && w.flushed(1 - dir) && !w.eof[dir];
        self.splice_eligible(w, dir, mode).filter(|_| quiet)
    }

    /// The body of direction `dir` is to move by splice(2) (its length, `u64::MAX` until the
    /// source closes): the side must stop being read so the copy path can drain first.
    pub(super) fn splice_eligible(&self, w: &Wire, dir: usize, mode: SpliceMode) -> Option<u64> {
        let Phase::Exchange(ex) = &self.phase else {
            return None;
        };
        if mode == SpliceMode::Off
            || ex.splicing[dir]
            || !matches!(ex.up, Up::Open { .. })
            || ex.no_splice[dir]
            || w.eof[dir]
        {
            return None;
        }
        let body = match (&ex.resp, dir) {
            (Resp::Tunnel(_), _) => return None,
            (_, CLIENT) if !ex.req_done => &ex.req_body,
            (Resp::Body(b), UPSTREAM) => b,
            _ => return None,
        };
        match body {
            Body::Length(rest) => (*rest >= SPLICE_BODY_MIN
                || (mode == SpliceMode::Always && *rest > 0))
                .then_some(*rest),
            Body::UntilEof => (w.bulk[dir] || mode == SpliceMode::Always).then_some(u64::MAX),
            Body::Done | Body::Chunked(_) | Body::Dechunk(_) => None,
        }
    }

    pub fn on_splice_started(&mut self, dir: usize) {
        if let Phase::Exchange(ex) = &mut self.phase {
            match &mut ex.resp {
                Resp::Tunnel(t) => t.on_splice_started(dir),
                _ => ex.splicing[dir] = true,
            }
        }
    }

    /// The driver could not get a pipe: this direction keeps copying.
    pub fn on_splice_refused(&mut self, dir: usize) {
        if let Phase::Exchange(ex) = &mut self.phase {
            match &mut ex.resp {
                Resp::Tunnel(t) => t.on_splice_refused(dir),
                _ => ex.no_splice[dir] = true,
            }
        }
    }

    /// `written` more bytes of direction `dir` were spliced.
    pub fn on_spliced(&mut self, dir: usize, written: u64) {
        if let Phase::Exchange(ex) = &mut self.phase {
            if dir == CLIENT {
                ex.req_body_bytes += written;
            } else {
                ex.resp_bytes += written;
            }
            let body = match (&mut ex.resp, dir) {
                (_, CLIENT) => &mut ex.req_body,
                (Resp::Body(b), _) => b,
                _ => return,
            };
            if let Body::Length(rest) = body {
                *rest = rest.saturating_sub(written);
            }
        }
    }

    /// Splicing of `dir` ended.
    pub fn on_splice_done(&mut self, w: &mut Wire, env: &mut impl Env, dir: usize, end: SpliceEnd) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if let Resp::Tunnel(t) = &mut ex.resp {
            t.on_splice_done(w, dir);
            return;
        }
        ex.splicing[dir] = false;
        let body = match (&mut ex.resp, dir) {
            (_, CLIENT) => &mut ex.req_body,
            (Resp::Body(b), _) => b,
            _ => return,
        };
        match (end, &*body) {
            (SpliceEnd::Finished, _) | (SpliceEnd::Eof, Body::Length(0)) => *body = Body::Done,
            (SpliceEnd::Eof, Body::UntilEof) => {
                *body = Body::Done;
                ex.server_keep_alive = false;
                w.eof[dir] = true;
            }
            (SpliceEnd::Eof, _) => {
                // The source closed before the announced length: a truncated body.
                w.eof[dir] = true;
                let term = if dir == CLIENT {
                    Term::ClientClosed
                } else {
                    Term::ServerError
                };
                self.log(env, term);
                self.intents.push(Intent::Release { reusable: false });
                self.close(term);
                return;
            }
        }
        if dir == CLIENT && matches!(ex.req_body, Body::Done) {
            ex.req_done = true;
        }
    }
}
