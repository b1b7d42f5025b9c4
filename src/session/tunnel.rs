//! Owns: moving bytes both ways between the two sides of a [`Wire`] until both have closed —
//! the part of an L4 proxy connection and of an HTTP Upgrade (WebSocket) tunnel that is the same:
//! backpressure, half-close forwarding, and when a direction may switch to splice(2).
//! Must not: touch sockets or pipes; the driver does the splicing when [`Tunnel::splice_want`]
//! says a direction may, and reports back with [`Tunnel::on_splice_done`].

use super::{QUEUED_MAX, Wire};
use crate::config::SpliceMode;

/// Both directions of a tunnel. Direction `d` reads side `d` and writes side `1 - d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    mode: SpliceMode,
    /// Direction `d` is being spliced by the driver (its wire buffers stay empty meanwhile).
    splicing: [bool; 2],
    /// Direction `d` may not splice any more (a pipe could not be had): copy.
    no_splice: [bool; 2],
}

impl Tunnel {
    /// `mode`: when a direction may switch to splice (the listener's `splice`).
    pub fn new(mode: SpliceMode) -> Tunnel {
        Tunnel {
            mode,
            splicing: [false; 2],
            no_splice: [false; 2],
        }
    }

    /// Moves what each side sent towards the other, as far as backpressure allows, and asks for
    /// a half-close once a side's EOF has been forwarded. Returns true when something changed.
    pub fn progress(&mut self, w: &mut Wire) -> bool {
        let mut changed = false;
        for src in [0, 1] {
            let dst = 1 - src;
            if self.splicing[src] {
                continue;
            }
            if !w.rx[src].is_empty() && w.queued(dst) < QUEUED_MAX {
                if w.tx[dst].is_empty() {
                    // Hand the received bytes over without copying them again.
                    std::mem::swap(&mut w.tx[dst], &mut w.rx[src]);
                } else {
                    let (rx, tx) = split(w, src);
                    tx.append(rx);
                }
                changed = true;
            }
            if w.eof[src] && w.rx[src].is_empty() && !w.shut[dst] {
                w.shut[dst] = true;
                changed = true;
            }
        }
        changed
    }

    /// Whether the driver should read side `side` now (its bytes have somewhere to go, and it
    /// is not about to switch to splice).
    pub fn wants_read(&self, w: &Wire, side: usize) -> bool {
        !self.splicing[side]
            && !self.splice_eligible(w, side)
            && !w.eof[side]
            && w.rx[side].is_empty()
            && w.queued(1 - side) < QUEUED_MAX
    }

    /// Both sides have closed their write half as asked: the tunnel is over.
    pub fn is_done(&self, w: &Wire) -> bool {
        w.shut_done[0] && w.shut_done[1]
    }

    /// Direction `dir` may move by splice(2) from now on (returns the bytes to read: until EOF).
    /// Only once its copy path is quiet, so bytes never overtake each other: nothing received
    /// and unforwarded, nothing queued towards the destination, no EOF yet.
    pub fn splice_want(&self, w: &Wire, dir: usize) -> Option<u64> {
        let quiet = w.rx[dir].is_empty() && w.flushed(1 - dir);
        (self.splice_eligible(w, dir) && quiet).then_some(u64::MAX)
    }

    /// Direction `dir` is to switch to splice (a bulk transfer, or `splice = "always"`): its
    /// source stops being read so the copy path can drain first.
    fn splice_eligible(&self, w: &Wire, dir: usize) -> bool {
        let bulk = w.bulk[dir] || self.mode == SpliceMode::Always;
        self.mode != SpliceMode::Off
            && bulk
            && !w.eof[dir]
            && !self.splicing[dir]
            && !self.no_splice[dir]
            && !w.shut[1 - dir]
    }

    /// The driver started splicing direction `dir`.
    pub fn on_splice_started(&mut self, dir: usize) {
        self.splicing[dir] = true;
    }

    /// The driver could not splice (no pipe): keep copying this direction.
    pub fn on_splice_refused(&mut self, dir: usize) {
        self.no_splice[dir] = true;
    }

    /// Splicing of `dir` ended: the source reached EOF and every byte was written.
    pub fn on_splice_done(&mut self, w: &mut Wire, dir: usize) {
        self.splicing[dir] = false;
        w.eof[dir] = true;
        w.shut[1 - dir] = true;
    }

    pub fn is_splicing(&self, dir: usize) -> bool {
        self.splicing[dir]
    }
}

/// `rx[src]` and `tx[1 - src]` at once.
fn split(w: &mut Wire, src: usize) -> (&mut Vec<u8>, &mut Vec<u8>) {
    let Wire { rx, tx, .. } = w;
    let [rx0, rx1] = rx;
    let [tx0, tx1] = tx;
    if src == 0 { (rx0, tx1) } else { (rx1, tx0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_and_half_closes_are_forwarded_one_way_at_a_time() {
        let mut t = Tunnel::new(SpliceMode::Auto);
        let mut w = Wire::default();
        w.rx[0].extend_from_slice(b"ping");
        assert!(t.progress(&mut w));
        assert_eq!(w.tx[1], b"ping");
        assert!(w.rx[0].is_empty());
        w.rx[0].extend_from_slice(b"-more");
        t.progress(&mut w);
        assert_eq!(w.tx[1], b"ping-more", "appended behind what waits");
        // Client half-closes: the upstream gets its EOF after the bytes; the other way stays open.
        w.eof[0] = true;
        t.progress(&mut w);
        assert!(w.shut[1]);
        assert!(!w.shut[0]);
        assert!(t.wants_read(&w, 1));
        assert!(!t.wants_read(&w, 0));
        w.rx[1].extend_from_slice(b"pong");
        t.progress(&mut w);
        assert_eq!(w.tx[0], b"pong");
        w.eof[1] = true;
        t.progress(&mut w);
        assert!(w.shut[0]);
        assert!(!t.is_done(&w));
        w.shut_done = [true, true];
        assert!(t.is_done(&w));
    }

    #[test]
    fn backpressure_stops_reading_a_side_whose_bytes_cannot_go_anywhere() {
        let t = Tunnel::new(SpliceMode::Auto);
        let mut w = Wire::default();
        w.in_flight[1] = QUEUED_MAX;
        assert!(!t.wants_read(&w, 0));
        assert!(t.wants_read(&w, 1));
        let mut t2 = t;
        w.rx[0].extend_from_slice(b"x");
        assert!(
            !t2.progress(&mut w),
            "nothing moves while the destination is full"
        );
        assert_eq!(w.rx[0], b"x");
    }

    #[test]
    fn splice_only_once_the_copy_path_is_quiet() {
        let mut t = Tunnel::new(SpliceMode::Auto);
        let mut w = Wire::default();
        assert_eq!(t.splice_want(&w, 1), None, "not bulk yet");
        assert!(t.wants_read(&w, 1));
        w.bulk[1] = true;
        w.tx[0].extend_from_slice(b"head");
        assert_eq!(t.splice_want(&w, 1), None, "bytes still queued");
        w.tx[0].clear();
        assert_eq!(Tunnel::new(SpliceMode::Off).splice_want(&w, 1), None);
        assert_eq!(t.splice_want(&w, 1), Some(u64::MAX));
        assert!(
            !t.wants_read(&w, 1),
            "the recv stops so the splice can start"
        );
        t.on_splice_started(1);
        assert!(!t.wants_read(&w, 1));
        t.on_splice_done(&mut w, 1);
        assert!(w.eof[1] && w.shut[0]);
        let mut t = Tunnel::new(SpliceMode::Always);
        assert_eq!(t.splice_want(&w, 0), Some(u64::MAX));
        t.on_splice_refused(0);
        assert_eq!(t.splice_want(&w, 0), None);
        assert!(t.wants_read(&w, 0), "no pipe: keep copying");
    }
}
