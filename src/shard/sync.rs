//! Owns: keeping a client connection's sockets in step with its session after each drive —
//! handing queued bytes to sends (through TLS when the transport is TLS), keeping each side's
//! multishot recv armed or cancelled as the session wants (backpressure), half-closes once
//! flushed, and splice(2) flows (start once the copy path is quiet, pump until a side would
//! block, readiness polls, end) — and re-arming recvs that waited for buffers.
//! Must not: interpret bytes; what to send and when to stop reading are the session's answers.

use super::Conn;
use super::driver::Shard;
use super::sock::{Recv, Sock};
use super::stream::{SpliceEv, UpState};
use crate::pipes::{self, PumpStop};
use crate::session::h1::SpliceEnd;
use crate::session::{CLIENT, Lane, Term, UPSTREAM};

/// Splice round trips per readiness event before yielding to other connections.
const SPLICE_ROUNDS_MAX: u32 = 16;

impl Shard {
    pub(super) fn sync_io(&mut self, slot: u32) {
        let group = self.bufs.group;
        let bufs_free = self.bufs.available() > 0;
        let Some(key) = self.slab.key(slot) else {
            return;
        };
        // Client socket.
        {
            let Some(Conn::Stream(c)) = self.slab.get_mut(slot) else {
                return;
            };
            if !c.sock.sending && c.sock.queued() > 0 {
                c.sock.start_send(&mut self.ring, slot);
            } else if !c.sock.sending {
                match &mut c.tls {
                    Some(tls) => {
                        tls.send(&mut c.wire.tx[CLIENT], &mut c.sock.send);
                        let shut_asked = c.wire.shut[CLIENT] || c.closing.is_some();
                        if shut_asked
                            && c.sock.send.is_empty()
                            && !tls.notify_sent
                            && !tls.is_handshaking()
                        {
                            tls.close_notify(&mut c.sock.send);
                        }
                    }
                    None => {
                        if !c.wire.tx[CLIENT].is_empty() {
                            std::mem::swap(&mut c.wire.tx[CLIENT], &mut c.sock.send);
                        }
                    }
                }
                c.sock.start_send(&mut self.ring, slot);
            }
            c.wire.in_flight[CLIENT] = c.sock.queued();
            let handshaking = c
                .tls
                .as_ref()
                .is_some_and(|t| t.is_handshaking() && !t.failed);
            let failed = c.tls.as_ref().is_some_and(|t| t.failed);
            let want = !failed
                && !c.sock.eof
                && (handshaking
                    || (c.closing.is_none()
                        && c.splice[CLIENT].is_none()
                        && c.proto.wants_read(&c.wire, CLIENT, &c.cfg)));
            if !c
                .sock
                .sync_recv(&mut self.ring, slot, group, want, bufs_free)
            {
                self.waiting_bufs.push(key);
            }
            let notify_done = c
                .tls
                .as_ref()
                .is_none_or(|t| t.notify_sent || t.failed || t.is_handshaking());
            if c.wire.shut[CLIENT]
                && !c.wire.shut_done[CLIENT]
                && c.wire.flushed(CLIENT)
                && c.sock.idle_send()
                && notify_done
            {
                c.sock.shutdown_write();
                c.wire.shut_done[CLIENT] = true;
                c.again = true;
            }
            if failed && c.closing.is_none() {
                c.closing = Some((Term::ClientError, self.world.now_ms + 1_000));
                c.abort(&mut self.world, Term::ClientError);
            }
        }
        // Upstream sockets, one per lane.
        let lanes = self.stream(slot).map_or(0, |c| c.proto.lanes());
        for lane in 0..lanes {
            self.sync_upstream(slot, lane, group, bufs_free);
        }
        self.sync_splice(slot);
        // A session that ended: close once the client has what was queued for it.
        if let Some(c) = self.stream(slot)
            && c.closing.is_some()
        {
            let tls_done = c
                .tls
                .as_ref()
                .is_none_or(|t| t.notify_sent || t.failed || t.is_handshaking() || c.sock.eof);
            let flushed = c.wire.tx[CLIENT].is_empty() && c.sock.idle_send() && tls_done;
            if flushed || c.sock.eof {
                self.begin_close_stream(slot);
            }
        }
        if let Some(c) = self.stream(slot)
            && std::mem::take(&mut c.again)
        {
            self.mark_dirty(slot);
        }
    }

    /// Brings the backend connection of `lane` in step with that lane's upstream side.
    fn sync_upstream(&mut self, slot: u32, lane: Lane, group: u16, bufs_free: bool) {
        let Some(ukey) = self.stream(slot).and_then(|c| c.up_key(lane)) else {
            return;
        };
        let Some((Conn::Stream(c), Conn::Upstream(u))) = self.slab.get2_mut(slot, ukey.slot) else {
            return;
        };
        let open = u.state == UpState::Open;
        let want = match u.state {
            UpState::Handshaking => true,
            UpState::Open => {
                c.splice[UPSTREAM].is_none() && c.proto.lane_wants_read(&c.wire, lane, &c.cfg)
            }
            UpState::Connecting | UpState::Pooled | UpState::Dead => false,
        };
        let ring = &mut self.ring;
        let waiting = &mut self.waiting_bufs;
        let again = c.with_lane(lane, |w| {
            if !u.sock.sending && u.sock.queued() > 0 {
                u.sock.start_send(ring, ukey.slot);
            } else if !u.sock.sending && u.state != UpState::Connecting {
                if !u.preamble.is_empty() && open {
                    std::mem::swap(&mut u.preamble, &mut u.sock.send);
                    if u.tls.is_none() && !w.tx[UPSTREAM].is_empty() {
                        u.sock.send.append(&mut w.tx[UPSTREAM]);
                    }
                } else {
                    match &mut u.tls {
                        Some(tls) if open => tls.send(&mut w.tx[UPSTREAM], &mut u.sock.send),
                        Some(tls) => tls.flush(&mut u.sock.send),
                        None if open && !w.tx[UPSTREAM].is_empty() => {
                            std::mem::swap(&mut w.tx[UPSTREAM], &mut u.sock.send)
                        }
                        None => {}
                    }
                }
                u.sock.start_send(ring, ukey.slot);
            }
            w.in_flight[UPSTREAM] = u.sock.queued();
            if !u.sock.eof && !u.sock.sync_recv(ring, ukey.slot, group, want, bufs_free) {
                waiting.push(ukey);
            }
            if w.shut[UPSTREAM]
                && !w.shut_done[UPSTREAM]
                && w.flushed(UPSTREAM)
                && u.sock.idle_send()
                && open
            {
                if let Some(tls) = &mut u.tls
                    && !tls.notify_sent
                {
                    tls.close_notify(&mut u.sock.send);
                    u.sock.start_send(ring, ukey.slot);
                } else {
                    u.sock.shutdown_write();
                    w.shut_done[UPSTREAM] = true;
                    return true;
                }
            }
            false
        });
        if again == Some(true) {
            c.again = true;
        }
    }

    /// Starts, continues or ends splice(2) flows the session allows.
    pub(super) fn sync_splice(&mut self, slot: u32) {
        for dir in [CLIENT, UPSTREAM] {
            let Some(c) = self.stream(slot) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            if c.splice[dir].is_some() {
                self.pump(slot, dir);
                continue;
            }
            let Some(ukey) = c.upstream else {
                continue;
            };
            let mode = c.proto.splice_mode(&c.cfg);
            let Some(to_read) = c.proto.splice_want(&c.wire, dir, mode) else {
                continue;
            };
            let client_tls = c.tls.is_some();
            let client_recv = c.sock.recv_armed();
            let (up_plain, up_recv) = match self.slab.get_key_mut(ukey) {
                Some(Conn::Upstream(u)) if u.state == UpState::Open => {
                    (u.tls.is_none(), u.sock.recv_armed())
                }
                _ => continue,
            };
            if client_tls || !up_plain {
                // Encrypted bytes cannot be spliced (no kTLS): this flow keeps copying.
                let world = &mut self.world;
                if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                    c.splice_event(world, dir, SpliceEv::Refused);
                    c.again = true;
                }
                continue;
            }
            let src_recv = if dir == CLIENT { client_recv } else { up_recv };
            if src_recv {
                // Wait for the recv's cancel to complete so bytes keep their order.
                continue;
            }
            match self.pipes.take() {
                Ok(pipe) => {
                    let world = &mut self.world;
                    if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                        c.splice[dir] = Some(pipes::Flow {
                            pipe,
                            in_pipe: 0,
                            to_read,
                            eof: false,
                        });
                        c.splice_event(world, dir, SpliceEv::Started);
                    }
                    self.pump(slot, dir);
                }
                Err(e) => {
                    tracing::debug!(shard = self.world.shard, error = %e, "no pipe for splice; copying");
                    let world = &mut self.world;
                    if let Some(Conn::Stream(c)) = self.slab.get_mut(slot) {
                        c.splice_event(world, dir, SpliceEv::Refused);
                    }
                }
            }
        }
    }

    /// Moves spliced bytes of flow `dir` until a side would block, then arms readiness.
    pub(super) fn pump(&mut self, slot: u32, dir: usize) {
        let now = self.world.now_ms;
        let pipe_bytes = self.pipes.pipe_bytes();
        let Some(c) = self.stream(slot) else {
            return;
        };
        let (Some(mut flow), Some(ukey)) = (c.splice[dir], c.upstream) else {
            return;
        };
        let Some((Conn::Stream(c), Conn::Upstream(u))) = self.slab.get2_mut(slot, ukey.slot) else {
            return;
        };
        let (src, dst, src_slot, dst_slot) = if dir == CLIENT {
            (&mut c.sock, &mut u.sock, slot, ukey.slot)
        } else {
            (&mut u.sock, &mut c.sock, ukey.slot, slot)
        };
        if src.poll_in || dst.poll_out || src.fd < 0 || dst.fd < 0 || src.closing || dst.closing {
            return;
        }
        let (stop, moved) = pipes::pump(src.fd, dst.fd, &mut flow, pipe_bytes, SPLICE_ROUNDS_MAX);
        match stop {
            PumpStop::WaitIn | PumpStop::Yield => src.arm_poll(&mut self.ring, src_slot, true),
            PumpStop::WaitOut => dst.arm_poll(&mut self.ring, dst_slot, false),
            PumpStop::Finished | PumpStop::Eof | PumpStop::Failed(_) => {}
        }
        if flow.eof {
            src.eof = true;
        }
        c.splice[dir] = Some(flow);
        if moved.read_bytes > 0 {
            c.wire.active_ms[dir] = now;
        }
        if moved.written_bytes > 0 {
            c.wire.active_ms[1 - dir] = now;
        }
        let st = &mut self.world.stats;
        st.bytes_spliced += moved.written_bytes;
        if dir == CLIENT {
            st.bytes_client_to_server += moved.written_bytes;
        } else {
            st.bytes_server_to_client += moved.written_bytes;
        }
        let world = &mut self.world;
        if moved.written_bytes > 0 {
            c.splice_event(world, dir, SpliceEv::Moved(moved.written_bytes));
        }
        let end = match stop {
            PumpStop::Finished => Some(SpliceEnd::Finished),
            PumpStop::Eof => Some(SpliceEnd::Eof),
            PumpStop::Failed(errno) => {
                tracing::debug!(shard = world.shard, dir, errno, "splice failed");
                if let Some(f) = c.splice[dir].take() {
                    self.pipes.give_back(f.pipe, false);
                }
                c.abort(world, Term::ServerError);
                c.again = true;
                None
            }
            PumpStop::WaitIn | PumpStop::WaitOut | PumpStop::Yield => None,
        };
        if let Some(end) = end {
            if let Some(f) = c.splice[dir].take() {
                self.pipes.give_back(f.pipe, f.in_pipe == 0);
            }
            c.splice_event(world, dir, SpliceEv::Done(end));
            c.again = true;
        }
    }

    /// A readiness poll on `sock_slot` (client or upstream) completed: continue the flow(s) that
    /// wait on it.
    pub(super) fn on_splice_ready(&mut self, owner_slot: u32) {
        for dir in [CLIENT, UPSTREAM] {
            if self
                .stream(owner_slot)
                .is_some_and(|c| c.splice[dir].is_some())
            {
                self.pump(owner_slot, dir);
            }
        }
        self.mark_dirty(owner_slot);
    }

    /// Buffers came back: re-arm recvs that ended with ENOBUFS.
    pub(super) fn retry_waiting_bufs(&mut self) {
        while self.bufs.available() > 0 {
            let Some(key) = self.waiting_bufs.pop() else {
                return;
            };
            let group = self.bufs.group;
            match self.slab.get_key_mut(key) {
                Some(Conn::Stream(_)) => self.mark_dirty(key.slot),
                Some(Conn::Upstream(u)) => {
                    if let Some(owner) = u.owner {
                        self.mark_dirty(owner.slot);
                    } else if u.state == UpState::Pooled {
                        u.sock
                            .sync_recv(&mut self.ring, key.slot, group, true, true);
                    }
                }
                Some(Conn::Idle(i)) => {
                    if i.recv == Recv::NoBufs {
                        let mut sock = Sock {
                            fd: i.fd,
                            inflight: i.inflight,
                            recv: i.recv,
                            ..Sock::default()
                        };
                        sock.sync_recv(&mut self.ring, key.slot, group, true, true);
                        i.inflight = sock.inflight;
                        i.recv = sock.recv;
                    }
                }
                Some(Conn::Detect(_)) | None => {}
            }
        }
    }
}
