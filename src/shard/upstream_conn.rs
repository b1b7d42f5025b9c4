//! Owns: upstream connections as the driver runs them — their completions (connect, TLS
//! handshake, bytes and EOF delivered into the owning session's wire), attaching one to a session
//! (a pooled connection of the same reuse key, or a new connect with the PROXY header first),
//! releasing it (back to the pool when clean, else closed) and freeing it once the kernel is done.
//! Must not: decide whether a request may be retried or where it goes (the session does), or
//! free an entry with ops in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use io_uring::{opcode, types};

use super::driver::Shard;
use super::ring::{Completion, Op, Tag};
use super::sock::{Received, Sock};
use super::stream::{UpState, UpstreamConn};
use super::transport::Tls;
use super::{Conn, sys};
use crate::ids::{BackendId, ServerId};
use crate::session::{CLIENT, Lane, UPSTREAM, UpstreamEvent};
use crate::upstream::UpstreamError;
use crate::upstream::pool::ReuseKey;

impl Shard {
    pub(super) fn on_upstream_completion(&mut self, tag: Tag, c: Completion) {
        let slot = tag.slot;
        let now = self.world.now_ms;
        let buffer_bytes = self.bufs.buffer_bytes();
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        let owner = u.owner;
        let lane = u.lane;
        let mut event: Option<UpstreamEvent> = None;
        let mut close = false;
        match tag.op {
            Op::Connect | Op::Nop => {
                u.sock.inflight = u.sock.inflight.saturating_sub(1);
                if u.state != UpState::Connecting {
                    // Cancelled after a timeout or a release: nothing to report.
                } else if c.result < 0 {
                    u.state = UpState::Dead;
                    event = Some(UpstreamEvent::Failed(UpstreamError::Connect(-c.result)));
                } else if let Some(tls) = &mut u.tls {
                    u.state = UpState::Handshaking;
                    tls.flush(&mut u.sock.send);
                } else {
                    u.state = UpState::Open;
                    event = Some(UpstreamEvent::Connected);
                }
            }
            Op::Recv => {
                let got = u.sock.on_recv(&c);
                let owner_conn = owner.and_then(|k| self.slab.key(k.slot).filter(|&x| x == k));
                match got {
                    Received::Data { bid, len } => {
                        self.bufs.taken();
                        let bytes = self.bufs.slice(bid, 0, len);
                        match (owner_conn, bytes) {
                            (Some(ok), Some(bytes)) => {
                                if let Some((Conn::Upstream(u), Conn::Stream(s))) =
                                    self.slab.get2_mut(slot, ok.slot)
                                {
                                    let lane = u.lane;
                                    let scratch = &mut self.scratch;
                                    let stats = &mut self.world.stats;
                                    let fed = s.with_lane(lane, |w| {
                                        w.active_ms[UPSTREAM] = now;
                                        if len >= buffer_bytes {
                                            w.bulk[UPSTREAM] = true;
                                        }
                                        match &mut u.tls {
                                            Some(tls) => {
                                                let was = tls.is_handshaking();
                                                let got = tls.receive(
                                                    bytes,
                                                    &mut w.rx[UPSTREAM],
                                                    scratch,
                                                );
                                                if tls.peer_done {
                                                    w.eof[UPSTREAM] = true;
                                                }
                                                if tls.failed {
                                                    stats.tls_upstream_errors += 1;
                                                    u.state = UpState::Dead;
                                                    Some(UpstreamEvent::Failed(UpstreamError::Tls))
                                                } else if was && got.handshake.is_some() {
                                                    stats.tls_upstream_handshakes += 1;
                                                    if u.state == UpState::Handshaking {
                                                        u.state = UpState::Open;
                                                        Some(UpstreamEvent::Connected)
                                                    } else {
                                                        None
                                                    }
                                                } else {
                                                    None
                                                }
                                            }
                                            None => {
                                                w.rx[UPSTREAM].extend_from_slice(bytes);
                                                None
                                            }
                                        }
                                    });
                                    match fed {
                                        Some(ev) => event = ev,
                                        // No stream holds the lane any more: nobody reads this.
                                        None => close = true,
                                    }
                                }
                            }
                            _ => {
                                // Unasked bytes on a pooled connection: it cannot be reused.
                                close = true;
                            }
                        }
                        self.bufs.put(bid);
                    }
                    Received::Eof => match owner_conn {
                        Some(ok) => {
                            if let Some((Conn::Upstream(u), Conn::Stream(s))) =
                                self.slab.get2_mut(slot, ok.slot)
                            {
                                let lane = u.lane;
                                let scratch = &mut self.scratch;
                                let stats = &mut self.world.stats;
                                let fed = s.with_lane(lane, |w| {
                                    if let Some(tls) = &mut u.tls {
                                        tls.on_eof(&mut w.rx[UPSTREAM], scratch);
                                    }
                                    match u.state {
                                        UpState::Handshaking => {
                                            stats.tls_upstream_errors += 1;
                                            u.state = UpState::Dead;
                                            Some(UpstreamEvent::Failed(UpstreamError::Tls))
                                        }
                                        _ => {
                                            w.eof[UPSTREAM] = true;
                                            None
                                        }
                                    }
                                });
                                match fed {
                                    Some(ev) => event = ev,
                                    None => close = true,
                                }
                            }
                        }
                        None => close = true,
                    },
                    Received::NoBufs => {
                        if let Some(k) = self.slab.key(slot) {
                            self.waiting_bufs.push(k);
                        }
                    }
                    Received::Cancelled => {}
                    Received::Refused => {
                        self.recv_limit_refused();
                        if owner_conn.is_none()
                            && let Some(Conn::Upstream(u)) = self.slab.get_mut(slot)
                            && u.state == UpState::Pooled
                        {
                            let group = self.bufs.group;
                            u.sock.sync_recv(&mut self.ring, slot, group, true, true);
                        }
                    }
                    Received::Error(errno) => {
                        if owner_conn.is_some() {
                            event = Some(UpstreamEvent::Failed(UpstreamError::Reset(errno)));
                        }
                        close = true;
                    }
                }
            }
            Op::Send => match u.sock.on_send(c.result) {
                Ok(n) => {
                    self.world.stats.bytes_client_to_server += n as u64;
                    let queued = u.sock.queued();
                    let lane = u.lane;
                    if let Some(ok) = owner
                        && let Some(Conn::Stream(s)) = self.slab.get_key_mut(ok)
                        && s.up_key(lane).is_some_and(|k| k.slot == slot)
                    {
                        s.with_lane(lane, |w| {
                            w.active_ms[UPSTREAM] = now;
                            w.in_flight[UPSTREAM] = queued;
                        });
                    }
                }
                Err(errno) => {
                    if owner.is_some() && !u.sock.closing {
                        event = Some(UpstreamEvent::Failed(UpstreamError::Reset(errno)));
                    }
                    close = true;
                }
            },
            Op::PollIn | Op::PollOut => {
                u.sock.on_poll(tag.op);
            }
            Op::Accept | Op::Wake | Op::Tick | Op::Cancel => {}
        }
        if let Some(Conn::Upstream(u)) = self.slab.get_mut(slot)
            && u.state == UpState::Dead
        {
            close = true;
        }
        let owner_live = owner.filter(|k| self.slab.key(k.slot) == Some(*k));
        match (owner_live, event) {
            (Some(ok), Some(ev)) => {
                if let Some(Conn::Stream(s)) = self.slab.get_mut(ok.slot) {
                    s.upstream_event(&mut self.world, lane, ev);
                }
                self.mark_dirty(ok.slot);
            }
            (Some(ok), None) => self.mark_dirty(ok.slot),
            (None, _) => {}
        }
        if close && owner_live.is_none() {
            self.close_upstream(slot);
        }
        self.try_free_upstream(slot);
    }

    /// Gives the session of `slot` a connection to `server`: a pooled one, or a new connect.
    pub(super) fn attach_upstream(
        &mut self,
        slot: u32,
        lane: Lane,
        backend: BackendId,
        server: ServerId,
        allow_pool: bool,
    ) {
        let now = self.world.now_ms;
        let Some(owner) = self.slab.key(slot) else {
            return;
        };
        let Some(b) = self.world.backends.get_mut(&backend) else {
            self.upstream_event(slot, lane, UpstreamEvent::Failed(UpstreamError::Gone));
            return;
        };
        let reuse = ReuseKey {
            server,
            tls_generation: b.tls_generation,
        };
        if allow_pool {
            while let Some(k) = b.pool.take(reuse) {
                match self.slab.get_key_mut(k) {
                    Some(Conn::Upstream(u)) if u.state == UpState::Pooled => {
                        u.owner = Some(owner);
                        u.lane = lane;
                        u.state = UpState::Open;
                        u.counted = true;
                        b.count_active(server, true);
                        if let Some(c) = self.stream(slot) {
                            c.set_up_key(lane, Some(k));
                            c.with_lane(lane, |w| w.active_ms[UPSTREAM] = now);
                        }
                        self.upstream_event(slot, lane, UpstreamEvent::Ready { reused: true });
                        return;
                    }
                    _ => continue,
                }
            }
        }
        let Some(scfg) = b.cfg.server(server) else {
            self.upstream_event(slot, lane, UpstreamEvent::Failed(UpstreamError::Gone));
            return;
        };
        let addr: socket2::SockAddr = scfg.address.into();
        let send_proxy = scfg.send_proxy;
        let tls_cfg = b.cfg.tls.clone();
        let server_ip = scfg.address.ip();
        let fd = match sys::tcp_socket(addr.is_ipv6()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(shard = self.world.shard, error = %e, "cannot create a server socket");
                let errno = e.raw_os_error().unwrap_or(libc::EMFILE);
                self.upstream_event(
                    slot,
                    lane,
                    UpstreamEvent::Failed(UpstreamError::Connect(errno)),
                );
                return;
            }
        };
        sys::set_nodelay(fd);
        let tls = match tls_cfg {
            Some(t) => {
                let name = match t
                    .sni
                    .as_deref()
                    .map(|s| rustls_pki_types::ServerName::try_from(s.to_string()))
                {
                    Some(Ok(n)) => n,
                    _ => rustls_pki_types::ServerName::IpAddress(server_ip.into()),
                };
                match rustls::ClientConnection::new(Arc::clone(&t.config), name) {
                    Ok(conn) => Some(Box::new(Tls::new(rustls::Connection::Client(conn), false))),
                    Err(e) => {
                        tracing::warn!(shard = self.world.shard, error = %e, "upstream TLS setup failed");
                        sys::close(fd);
                        self.world.stats.tls_upstream_errors += 1;
                        self.upstream_event(slot, lane, UpstreamEvent::Failed(UpstreamError::Tls));
                        return;
                    }
                }
            }
            None => None,
        };
        let preamble = match (send_proxy, self.stream(slot)) {
            (Some(version), Some(c)) => {
                let client = c.proto.client_addr(c.peer);
                let local = sys::local_addr(c.sock.fd).unwrap_or_else(|| match client {
                    SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                });
                crate::proxy_protocol::header(version, client, local)
            }
            _ => Vec::new(),
        };
        let is_tls = tls.is_some();
        let up = UpstreamConn {
            sock: Sock::new(fd),
            tls,
            addr,
            backend,
            server,
            reuse,
            private: send_proxy.is_some(),
            owner: Some(owner),
            lane,
            state: UpState::Connecting,
            counted: true,
            preamble,
        };
        let Some(ukey) = self.slab.insert(Conn::Upstream(Box::new(up))) else {
            sys::close(fd);
            self.upstream_event(
                slot,
                lane,
                UpstreamEvent::Failed(UpstreamError::Connect(libc::EMFILE)),
            );
            return;
        };
        if is_tls {
            self.world.stats.tls_active += 1;
        }
        if let Some(b) = self.world.backends.get_mut(&backend) {
            b.count_active(server, true);
        }
        if let Some(Conn::Upstream(u)) = self.slab.get_mut(ukey.slot) {
            u.sock.inflight += 1;
            // SAFETY (pointer lifetime): `addr` lives in the boxed connection, which is freed
            // only when `inflight` (counting this connect) is back to 0.
            let entry = opcode::Connect::new(types::Fd(fd), u.addr.as_ptr().cast(), u.addr.len())
                .build()
                .user_data(Tag::new(Op::Connect, ukey.slot).encode());
            self.ring.push(entry);
        }
        if let Some(c) = self.stream(slot) {
            c.set_up_key(lane, Some(ukey));
            c.with_lane(lane, |w| w.active_ms[UPSTREAM] = now);
        }
    }

    pub(super) fn upstream_event(&mut self, slot: u32, lane: Lane, ev: UpstreamEvent) {
        let world = &mut self.world;
        if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
            c.upstream_event(world, lane, ev);
        }
    }

    /// Releases every lane's backend connection (not reusable: the session is ending).
    pub(super) fn release_all_upstreams(&mut self, slot: u32) {
        // Lane 0, then every lane an HTTP/2 session gave a connection.
        let lanes = self.stream(slot).map_or(0, |c| c.lanes_up.len() + 1);
        for lane in 0..Lane::try_from(lanes).unwrap_or(Lane::MAX) {
            self.release_upstream(slot, lane, false);
        }
    }

    /// The session is done with its upstream connection: back to the pool when clean, else
    /// closed.
    pub(super) fn release_upstream(&mut self, slot: u32, lane: Lane, reusable: bool) {
        let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
            return;
        };
        let Some(ukey) = c.set_up_key(lane, None) else {
            return;
        };
        c.with_lane(lane, |w| w.in_flight[UPSTREAM] = 0);
        let mut spliced = false;
        if lane == 0 {
            for dir in [CLIENT, UPSTREAM] {
                if let Some(flow) = c.splice[dir].take() {
                    self.pipes.give_back(flow.pipe, flow.in_pipe == 0);
                    spliced = true;
                }
            }
        }
        let now = self.world.now_ms;
        let draining = self.world.draining;
        let Some(Conn::Upstream(u)) = self.slab.get_key_mut(ukey) else {
            return;
        };
        u.owner = None;
        u.counted = false;
        let (server, b_id) = (u.server, u.backend);
        let clean = reusable
            && !spliced
            && u.state == UpState::Open
            && u.sock.idle_send()
            && u.preamble.is_empty()
            && !u.private
            && !u.sock.eof
            && !u.sock.closing
            && !draining
            && u.tls
                .as_ref()
                .is_none_or(|t| !t.failed && !t.conn.wants_write());
        let mut pooled = false;
        if let Some(b) = self.world.backends.get_mut(&b_id) {
            b.count_active(server, false);
            if clean && b.is_up(server) && u.reuse.tls_generation == b.tls_generation {
                pooled = b
                    .pool
                    .put(u.reuse, ukey, now, b.cfg.idle_conns_max as usize);
            }
        }
        if pooled {
            u.state = UpState::Pooled;
            // Keep a recv armed: a server closing the idle connection is seen at once.
            let group = self.bufs.group;
            let free = self.bufs.available() > 0;
            if !u
                .sock
                .sync_recv(&mut self.ring, ukey.slot, group, true, free)
            {
                self.waiting_bufs.push(ukey);
            }
        } else {
            self.close_upstream(ukey.slot);
            self.try_free_upstream(ukey.slot);
        }
    }

    /// Closes an upstream connection: out of its pool, every op cancelled, freed once the kernel
    /// is done with it.
    pub(super) fn close_upstream(&mut self, slot: u32) {
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        if u.state == UpState::Pooled
            && let Some(b) = self.world.backends.get_mut(&u.backend)
        {
            b.pool.remove(key);
        }
        if u.counted {
            u.counted = false;
            if let Some(b) = self.world.backends.get_mut(&u.backend) {
                b.count_active(u.server, false);
            }
        }
        u.state = UpState::Dead;
        u.owner = None;
        u.sock.cancel_all(&mut self.ring, slot);
    }

    pub(super) fn try_free_upstream(&mut self, slot: u32) {
        let Some(Conn::Upstream(u)) = self.slab.get_mut(slot) else {
            return;
        };
        if u.state != UpState::Dead || u.owner.is_some() || !u.sock.close_if_done() {
            return;
        }
        if u.tls.is_some() {
            self.world.stats.tls_active = self.world.stats.tls_active.saturating_sub(1);
        }
        self.slab.remove(slot);
    }
}
