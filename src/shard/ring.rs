//! Owns: one shard's io_uring instance, its provided-buffer ring, and the encoding of what each
//! in-flight operation is (`user_data`). This is the unsafe-heavy file of the data plane.
//! Must not: know about connections or protocols; it moves SQEs in and CQEs out.
//!
//! Ring flags: SINGLE_ISSUER|DEFER_TASKRUN (Linux >= 6.1): completions are produced only when
//! this thread enters the kernel, so one `submit_and_wait` per loop turn both submits every SQE
//! queued during the turn and reaps the completions. Older kernels fall back to COOP_TASKRUN.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, squeue, types};

/// What a completion belongs to. Packed into the SQE's `user_data`:
/// bits 0..8 = kind, bit 8 = direction, bits 16..48 = slot (connection or listener index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Accept,
    ControlWake,
    Connect,
    Recv,
    Send,
    PollIn,
    PollOut,
    /// An AsyncCancel request; its own completion carries nothing we need.
    Cancel,
    /// The shard's periodic (multishot) timeout: wakes the loop for timers.
    Tick,
    /// Ops of HTTP connections (`shard/http.rs`); `dir` is the side: 0 client, 1 backend.
    HttpConnect,
    HttpRecv,
    HttpSend,
    HttpPollIn,
    HttpPollOut,
    /// Ops of TLS-terminated connections (`shard/tls.rs`); `dir`: 0 client, 1 plaintext side.
    TlsRecv,
    TlsSend,
    /// Connect of a TLS bridge to an upstream server.
    TlsConnect,
    /// POLLIN on a detect listener's new connection (`shard/detect.rs`).
    DetectPoll,
}

impl OpKind {
    fn code(self) -> u64 {
        match self {
            OpKind::Accept => 1,
            OpKind::ControlWake => 2,
            OpKind::Connect => 3,
            OpKind::Recv => 4,
            OpKind::Send => 5,
            OpKind::PollIn => 6,
            OpKind::PollOut => 7,
            OpKind::Cancel => 8,
            OpKind::Tick => 9,
            OpKind::HttpConnect => 10,
            OpKind::HttpRecv => 11,
            OpKind::HttpSend => 12,
            OpKind::HttpPollIn => 13,
            OpKind::HttpPollOut => 14,
            OpKind::TlsRecv => 15,
            OpKind::TlsSend => 16,
            OpKind::DetectPoll => 17,
            OpKind::TlsConnect => 18,
        }
    }

    fn from_code(code: u64) -> Option<OpKind> {
        Some(match code {
            1 => OpKind::Accept,
            2 => OpKind::ControlWake,
            3 => OpKind::Connect,
            4 => OpKind::Recv,
            5 => OpKind::Send,
            6 => OpKind::PollIn,
            7 => OpKind::PollOut,
            8 => OpKind::Cancel,
            9 => OpKind::Tick,
            10 => OpKind::HttpConnect,
            11 => OpKind::HttpRecv,
            12 => OpKind::HttpSend,
            13 => OpKind::HttpPollIn,
            14 => OpKind::HttpPollOut,
            15 => OpKind::TlsRecv,
            16 => OpKind::TlsSend,
            17 => OpKind::DetectPoll,
            18 => OpKind::TlsConnect,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub dir: usize,
    pub slot: u32,
}

impl Op {
    pub fn new(kind: OpKind, slot: u32, dir: usize) -> Op {
        Op { kind, dir, slot }
    }

    pub fn encode(self) -> u64 {
        self.kind.code() | (((self.dir & 1) as u64) << 8) | (u64::from(self.slot) << 16)
    }

    pub fn decode(user_data: u64) -> Option<Op> {
        let kind = OpKind::from_code(user_data & 0xff)?;
        Some(Op {
            kind,
            dir: ((user_data >> 8) & 1) as usize,
            slot: ((user_data >> 16) & 0xffff_ffff) as u32,
        })
    }
}

/// One completion, copied out of the CQ so the ring can be used while it is handled.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    pub fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    pub fn buffer_id(&self) -> Option<u16> {
        io_uring::cqueue::buffer_select(self.flags)
    }
}

/// Which task-run mode the kernel accepted (logged at startup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRun {
    Deferred,
    Cooperative,
}

pub struct Ring {
    ring: IoUring,
    pub task_run: TaskRun,
}

impl Ring {
    /// Builds the ring, preferring SINGLE_ISSUER|DEFER_TASKRUN. Must be called on the thread that
    /// will submit (SINGLE_ISSUER binds the ring to its creator).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Ring> {
        match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq_entries)
            .build(sq_entries)
        {
            Ok(ring) => Ok(Ring {
                ring,
                task_run: TaskRun::Deferred,
            }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let ring = IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)?;
                Ok(Ring {
                    ring,
                    task_run: TaskRun::Cooperative,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Queues one SQE; if the SQ is full, submits what is queued first.
    pub fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every SQE built by the shard points only at memory that outlives the op:
            // buffers in the shard's buffer ring region, the shard's boxed eventfd word, or
            // socket addresses in the shard's immutable server table. See each call site.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit()
                && e.raw_os_error() != Some(libc::EINTR)
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                tracing::error!(error = %e, "io_uring submit failed with a full SQ");
                return;
            }
        }
    }

    /// Submits everything queued and waits for at least one completion. The shard's multishot
    /// tick timeout guarantees a completion at least every tick, so no wait timeout is passed
    /// (which would arm and cancel a kernel timer on every wait).
    pub fn submit_and_wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Moves all available completions into `out`.
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            out.push(Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    pub fn inner(&self) -> &IoUring {
        &self.ring
    }
}

/// A provided-buffer ring: `count` buffers of `size` bytes in one anonymous mapping, registered as
/// buffer group `group`. The kernel picks a free buffer for each recv; the shard gives it back
/// (`put`) once every byte in it has been sent on.
pub struct BufRing {
    buffers: *mut u8,
    entries: *mut types::BufRingEntry,
    size: u32,
    count: u16,
    tail: u16,
    /// Buffers currently owned by the kernel (in the ring, free for recv).
    available: u32,
    pub group: u16,
}

impl BufRing {
    pub fn new(ring: &Ring, size: u32, count: u16, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two",
            ));
        }
        let data_len = size as usize * count as usize;
        let ring_len = count as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: anonymous private mappings with no address hint; results are checked below.
        let buffers = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if buffers == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; the ring entries must be page aligned, which mmap guarantees.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: `buffers` was mapped above with `data_len` and is not used after this.
            unsafe { libc::munmap(buffers, data_len) };
            return Err(e);
        }
        let mut br = BufRing {
            buffers: buffers.cast(),
            entries: entries.cast(),
            size,
            count,
            tail: 0,
            available: 0,
            group,
        };
        // SAFETY: `entries` is a live, page-aligned mapping of `count` entries that stays mapped
        // until `BufRing` is dropped, which happens after the ring (see `Shard` field order).
        unsafe {
            ring.inner().submitter().register_buf_ring_with_flags(
                br.entries as u64,
                count,
                group,
                0,
            )?
        };
        for bid in 0..count {
            br.put(bid);
        }
        Ok(br)
    }

    pub fn buffer_bytes(&self) -> u32 {
        self.size
    }

    pub fn available(&self) -> u32 {
        self.available
    }

    /// The first `len` bytes of buffer `bid`, as received.
    pub fn slice(&self, bid: u16, offset: u32, len: u32) -> Option<&[u8]> {
        if bid >= self.count || offset.checked_add(len)? > self.size {
            return None;
        }
        // SAFETY: bounds checked above; the mapping lives as long as `self`, and the kernel does
        // not write into a buffer the shard has taken out of the ring until it is `put` back.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.buffers
                    .add(bid as usize * self.size as usize + offset as usize),
                len as usize,
            )
        })
    }

    /// Pointer to byte `offset` of buffer `bid`, for a send SQE. The caller guarantees the buffer
    /// stays out of the ring until that send completes.
    pub fn ptr(&self, bid: u16, offset: u32) -> *const u8 {
        let bid = bid.min(self.count.saturating_sub(1));
        let offset = offset.min(self.size);
        // SAFETY: clamped into the mapping above.
        unsafe {
            self.buffers
                .add(bid as usize * self.size as usize + offset as usize)
                .cast_const()
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn put(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let mask = self.count - 1;
        // SAFETY: `tail & mask` indexes inside the `count`-entry ring mapping; the entry is owned by
        // user space until the tail store below publishes it.
        unsafe {
            let entry = &mut *self.entries.add((self.tail & mask) as usize);
            entry.set_addr(self.buffers.add(bid as usize * self.size as usize) as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the ring tail lives in the first entry's reserved field (io_uring ABI); the
        // Release store orders the entry writes above before the kernel can see the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries.cast_const()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.available += 1;
    }

    /// Records that the kernel handed a buffer out with a completion.
    pub fn taken(&mut self) {
        self.available = self.available.saturating_sub(1);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths; the ring that referenced
        // them has been dropped first (field order in `Shard`), so the kernel no longer uses them.
        unsafe {
            libc::munmap(
                self.buffers.cast(),
                self.size as usize * self.count as usize,
            );
            libc::munmap(
                self.entries.cast(),
                self.count as usize * std::mem::size_of::<types::BufRingEntry>(),
            );
        }
    }
}

/// Sets an fd to non-blocking close-on-exec use for a peer socket; TCP_NODELAY because the proxy
/// forwards whatever it has at once and must not add Nagle delay on top of the peer's own.
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one` for the given length only.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_roundtrips_through_user_data() {
        for kind in [
            OpKind::Accept,
            OpKind::ControlWake,
            OpKind::Connect,
            OpKind::Recv,
            OpKind::Send,
            OpKind::PollIn,
            OpKind::PollOut,
            OpKind::Cancel,
            OpKind::Tick,
        ] {
            for dir in 0..2 {
                let op = Op::new(kind, 0xdead_beef, dir);
                assert_eq!(Op::decode(op.encode()), Some(op));
            }
        }
        assert_eq!(Op::decode(0), None);
    }
}
