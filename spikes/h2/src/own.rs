//! "Own framing + HPACK crate": a minimal sans-IO HTTP/2 server written for the spike — the
//! frame layer ringway would own (RFC 9113 §4.1 header, §6 frames it must act on, windows of
//! §5.2/§6.9, a bounded header block for CONTINUATION) — with the HPACK crate behind [`Hpack`].
//! Enough for h2's client to run 100 concurrent streams against it; not a conformance target.

use std::collections::VecDeque;

use crate::hpacks::Hpack;
use crate::work::{BODY, Fields, H1Head, RESPONSE_FIELDS};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE we announce (the RFC's initial value).
const FRAME_BYTES_MAX: usize = 16_384;
/// SETTINGS_MAX_HEADER_LIST_SIZE we announce, and the bound on a HEADERS+CONTINUATION block.
const HEADER_LIST_BYTES_MAX: usize = 64 * 1024;
const HEADER_BLOCK_BYTES_MAX: usize = 64 * 1024;
const STREAMS_MAX: u32 = 100;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIO: u8 = 0x20;

/// RFC 9113 §7 codes the spike can end a connection with.
#[derive(Debug, Clone, Copy)]
pub enum H2Error {
    Protocol,
    FrameSize,
    Compression,
    FlowControl,
}

thread_local! {
    /// When set, every request header block is copied here (for the HPACK-only bench).
    pub static CAPTURE: std::cell::RefCell<Option<Vec<Vec<u8>>>> = const { std::cell::RefCell::new(None) };
}

pub struct Own<H: Hpack> {
    hp: H,
    preface_seen: bool,
    settings_sent: bool,
    peer_window_init: i64,
    peer_frame_max: usize,
    conn_send_window: i64,
    last_stream_id: u32,
    /// HEADERS without END_HEADERS: (stream, END_STREAM) until the last CONTINUATION.
    cont: Option<(u32, bool)>,
    block: Vec<u8>,
    fields: Fields,
    h1: H1Head,
    /// Responses whose DATA waits for window: (stream, its send window). At most STREAMS_MAX.
    blocked: VecDeque<(u32, i64)>,
    resp: Vec<(&'static [u8], &'static [u8])>,
    pub requests: u64,
    /// Memory probe: hold this many requests before answering any, and note live bytes then.
    pub hold: Option<usize>,
    held: Vec<u32>,
    pub held_live_bytes: Option<i64>,
}

impl<H: Hpack> Own<H> {
    pub fn new() -> Own<H> {
        let mut resp: Vec<(&[u8], &[u8])> = vec![(b":status", b"200")];
        resp.extend(
            RESPONSE_FIELDS
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        Own {
            hp: H::new(4096),
            preface_seen: false,
            settings_sent: false,
            peer_window_init: 65_535,
            peer_frame_max: 16_384,
            conn_send_window: 65_535,
            last_stream_id: 0,
            cont: None,
            block: Vec::new(),
            fields: Fields::new(),
            h1: H1Head::new(),
            blocked: VecDeque::new(),
            resp,
            requests: 0,
            hold: None,
            held: Vec::new(),
            held_live_bytes: None,
        }
    }

    /// Consumes complete frames from `rx`, appends what to send to `tx`; returns bytes consumed.
    pub fn step(&mut self, rx: &[u8], tx: &mut Vec<u8>) -> Result<usize, H2Error> {
        if !self.settings_sent {
            self.settings_sent = true;
            // SETTINGS: MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE.
            frame_head(tx, 18, SETTINGS, 0, 0);
            setting(tx, 0x3, STREAMS_MAX);
            setting(tx, 0x4, 65_535);
            setting(tx, 0x6, HEADER_LIST_BYTES_MAX as u32);
        }
        let mut at = 0;
        if !self.preface_seen {
            if rx.len() < PREFACE.len() {
                return Ok(0);
            }
            if &rx[..PREFACE.len()] != PREFACE {
                return Err(H2Error::Protocol);
            }
            self.preface_seen = true;
            at = PREFACE.len();
        }
        loop {
            let Some(head) = rx.get(at..at + 9) else {
                return Ok(at);
            };
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            if len > FRAME_BYTES_MAX {
                return Err(H2Error::FrameSize);
            }
            let Some(payload) = rx.get(at + 9..at + 9 + len) else {
                return Ok(at);
            };
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            // RFC 9113 §6.10: nothing but CONTINUATION of the same stream inside a header block.
            if let Some((cid, _)) = self.cont
                && (kind != CONTINUATION || id != cid)
            {
                return Err(H2Error::Protocol);
            }
            match kind {
                SETTINGS => self.on_settings(id, flags, payload, tx)?,
                WINDOW_UPDATE => self.on_window_update(id, payload, tx)?,
                HEADERS => self.on_headers(id, flags, payload, tx)?,
                CONTINUATION => self.on_continuation(id, flags, payload, tx)?,
                PING => {
                    if id != 0 || len != 8 {
                        return Err(H2Error::Protocol);
                    }
                    if flags & ACK == 0 {
                        frame_head(tx, 8, PING, ACK, 0);
                        tx.extend_from_slice(payload);
                    }
                }
                DATA | RST_STREAM | PRIORITY | GOAWAY => {}
                _ => {} // RFC 9113 §5.5: unknown frame types are ignored.
            }
            at += 9 + len;
        }
    }

    fn on_settings(
        &mut self,
        id: u32,
        flags: u8,
        p: &[u8],
        tx: &mut Vec<u8>,
    ) -> Result<(), H2Error> {
        if id != 0 {
            return Err(H2Error::Protocol);
        }
        if flags & ACK != 0 {
            return Ok(());
        }
        if p.len() % 6 != 0 {
            return Err(H2Error::FrameSize);
        }
        for s in p.chunks_exact(6) {
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match u16::from_be_bytes([s[0], s[1]]) {
                0x1 => self.hp.set_encoder_table_bytes(v as usize),
                0x4 => {
                    if v > 0x7fff_ffff {
                        return Err(H2Error::FlowControl);
                    }
                    // RFC 9113 §6.9.2: the change applies to every open stream's window.
                    let delta = i64::from(v) - self.peer_window_init;
                    self.peer_window_init = i64::from(v);
                    for (_, w) in self.blocked.iter_mut() {
                        *w += delta;
                    }
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&v) {
                        return Err(H2Error::Protocol);
                    }
                    self.peer_frame_max = v as usize;
                }
                _ => {}
            }
        }
        frame_head(tx, 0, SETTINGS, ACK, 0);
        self.flush_blocked(tx);
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, p: &[u8], tx: &mut Vec<u8>) -> Result<(), H2Error> {
        if p.len() != 4 {
            return Err(H2Error::FrameSize);
        }
        let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
        if inc == 0 {
            return Err(H2Error::Protocol);
        }
        if id == 0 {
            self.conn_send_window += inc;
            if self.conn_send_window > 0x7fff_ffff {
                return Err(H2Error::FlowControl);
            }
        } else if let Some((_, w)) = self.blocked.iter_mut().find(|(s, _)| *s == id) {
            *w += inc;
        }
        self.flush_blocked(tx);
        Ok(())
    }

    fn on_headers(
        &mut self,
        id: u32,
        flags: u8,
        p: &[u8],
        tx: &mut Vec<u8>,
    ) -> Result<(), H2Error> {
        // RFC 9113 §5.1.1: client streams are odd and increase.
        if id == 0 || id % 2 == 0 || id <= self.last_stream_id {
            return Err(H2Error::Protocol);
        }
        let mut p = p;
        let mut pad = 0;
        if flags & PADDED != 0 {
            pad = usize::from(*p.first().ok_or(H2Error::FrameSize)?);
            p = &p[1..];
        }
        if flags & PRIO != 0 {
            p = p.get(5..).ok_or(H2Error::FrameSize)?;
        }
        let frag = p
            .get(..p.len().checked_sub(pad).ok_or(H2Error::Protocol)?)
            .ok_or(H2Error::Protocol)?;
        self.last_stream_id = id;
        let end_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS == 0 {
            self.block.clear();
            self.block.extend_from_slice(frag);
            self.cont = Some((id, end_stream));
            return Ok(());
        }
        self.on_request(id, frag, end_stream, tx)
    }

    fn on_continuation(
        &mut self,
        id: u32,
        flags: u8,
        p: &[u8],
        tx: &mut Vec<u8>,
    ) -> Result<(), H2Error> {
        let Some((_, end_stream)) = self.cont else {
            return Err(H2Error::Protocol);
        };
        // CVE-2024-27316 class: the block is bounded, never grown on the peer's say-so.
        if self.block.len() + p.len() > HEADER_BLOCK_BYTES_MAX {
            return Err(H2Error::Compression);
        }
        self.block.extend_from_slice(p);
        if flags & END_HEADERS != 0 {
            self.cont = None;
            let block = std::mem::take(&mut self.block);
            let r = self.on_request(id, &block, end_stream, tx);
            self.block = block;
            return r;
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        id: u32,
        block: &[u8],
        _end_stream: bool,
        tx: &mut Vec<u8>,
    ) -> Result<(), H2Error> {
        CAPTURE.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.push(block.to_vec());
            }
        });
        self.fields.clear();
        let fields = &mut self.fields;
        self.hp
            .decode(block, &mut |n, v| fields.add(n, v))
            .map_err(|_| H2Error::Compression)?;
        // HPACK bomb class: the decoded size is checked against what we announced.
        if self.fields.bytes > HEADER_LIST_BYTES_MAX || self.fields.bad {
            return Err(H2Error::Protocol);
        }
        self.fields.write_h1(&mut self.h1);
        self.requests += 1;
        // The probe's first request is answered at once (the client waits for it).
        if let Some(n) = self.hold.filter(|_| self.requests > 1) {
            self.held.push(id);
            if self.held.len() < n {
                return Ok(());
            }
            self.held_live_bytes = Some(crate::count::live(crate::count::SERVER));
            self.hold = None;
            for id in std::mem::take(&mut self.held) {
                self.respond(id, tx);
            }
            return Ok(());
        }
        self.respond(id, tx);
        Ok(())
    }

    fn respond(&mut self, id: u32, tx: &mut Vec<u8>) {
        let start = tx.len();
        frame_head(tx, 0, HEADERS, END_HEADERS, id);
        self.hp.encode(&self.resp, tx);
        let len = tx.len() - start - 9;
        debug_assert!(len <= self.peer_frame_max);
        tx[start] = (len >> 16) as u8;
        tx[start + 1] = (len >> 8) as u8;
        tx[start + 2] = len as u8;
        self.send_body(id, self.peer_window_init, tx);
    }

    fn send_body(&mut self, id: u32, window: i64, tx: &mut Vec<u8>) {
        let n = BODY.len() as i64;
        if self.conn_send_window >= n && window >= n {
            self.conn_send_window -= n;
            frame_head(tx, BODY.len(), DATA, END_STREAM, id);
            tx.extend_from_slice(BODY);
        } else {
            self.blocked.push_back((id, window));
        }
    }

    fn flush_blocked(&mut self, tx: &mut Vec<u8>) {
        let n = BODY.len() as i64;
        while let Some(&(id, w)) = self.blocked.front() {
            if self.conn_send_window < n || w < n {
                return;
            }
            self.blocked.pop_front();
            self.send_body(id, w, tx);
        }
    }
}

fn frame_head(tx: &mut Vec<u8>, len: usize, kind: u8, flags: u8, id: u32) {
    tx.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    tx.extend_from_slice(&id.to_be_bytes());
}

fn setting(tx: &mut Vec<u8>, id: u16, v: u32) {
    tx.extend_from_slice(&id.to_be_bytes());
    tx.extend_from_slice(&v.to_be_bytes());
}
