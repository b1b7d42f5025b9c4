//! Owns: one shard's io_uring instance, its provided-buffer ring, and the encoding of what each
//! in-flight operation is (`user_data`: an op and a slot). This is the unsafe-heavy file of the
//! data plane.
//! Must not: know about connections or protocols; it moves SQEs in and CQEs out.
//!
//! Ring flags: SINGLE_ISSUER|DEFER_TASKRUN (Linux >= 6.1): completions are produced only when
//! this thread enters the kernel, so one `submit_and_wait` per loop turn both submits every SQE
//! queued during the turn and reaps the completions. Older kernels fall back to COOP_TASKRUN.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, squeue, types};

/// What an operation is. Together with a slot it is packed into the SQE's `user_data`
/// (bits 0..8 the op, bits 32..64 the slot); what the slot holds (a listener, a client connection,
/// an upstream connection) is the driver's business, not the ring's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Multishot accept; slot = listener id.
    Accept,
    /// The control eventfd read.
    Wake,
    /// The periodic (multishot) timeout that wakes the loop for timers.
    Tick,
    /// An AsyncCancel / PollRemove request; its own completion carries nothing we need.
    Cancel,
    Connect,
    /// Multishot recv into the buffer ring.
    Recv,
    Send,
    PollIn,
    PollOut,
    /// Completes at once (an upstream connection that needs no connect).
    Nop,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Accept => 1,
            Op::Wake => 2,
            Op::Tick => 3,
            Op::Cancel => 4,
            Op::Connect => 5,
            Op::Recv => 6,
            Op::Send => 7,
            Op::PollIn => 8,
            Op::PollOut => 9,
            Op::Nop => 10,
        }
    }

    fn from_code(code: u64) -> Option<Op> {
        Some(match code {
            1 => Op::Accept,
            2 => Op::Wake,
            3 => Op::Tick,
            4 => Op::Cancel,
            5 => Op::Connect,
            6 => Op::Recv,
            7 => Op::Send,
            8 => Op::PollIn,
            9 => Op::PollOut,
            10 => Op::Nop,
            _ => return None,
        })
    }
}

/// An op and the slot it belongs to, as carried in `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub op: Op,
    pub slot: u32,
}

impl Tag {
    pub fn new(op: Op, slot: u32) -> Tag {
        Tag { op, slot }
    }

    pub fn encode(self) -> u64 {
        self.op.code() | (u64::from(self.slot) << 32)
    }

    pub fn decode(user_data: u64) -> Option<Tag> {
        Some(Tag {
            op: Op::from_code(user_data & 0xff)?,
            slot: (user_data >> 32) as u32,
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
    /// Multishot recvs carry `RECV_MULTISHOT_BYTES_MAX` (cleared the first time the kernel
    /// refuses it).
    pub recv_limit: bool,
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
                recv_limit: true,
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
                    recv_limit: true,
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

/// Bytes one multishot recv may deliver before the kernel ends it (`sqe->optlen`, Linux >= 6.17
/// for `IORING_OP_RECV` multishot; older kernels ignore the field or refuse it with EINVAL, and
/// the shard then arms without it). Bounds how far a fast peer can run ahead of a decision to
/// stop reading: a large body that is to be spliced has at most this much on the copy path, where
/// an unbounded multishot recv keeps receiving for as long as the peer sends within one
/// `io_uring_enter`.
pub const RECV_MULTISHOT_BYTES_MAX: u32 = 16 * 1024;

/// `entry` with its `optlen` field set (the multishot recv's total byte limit).
pub fn with_optlen(entry: squeue::Entry, optlen: u32) -> squeue::Entry {
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe` (the
    // crate's own size test holds it to that); bytes 44..48 are the `optlen` member of the ABI's
    // union with `splice_fd_in` / `file_index`, unused by IORING_OP_RECV otherwise. The bytes are
    // written back as the same type.
    unsafe {
        let mut raw: [u8; 64] = std::mem::transmute(entry);
        if let Some(field) = raw.get_mut(44..48) {
            field.copy_from_slice(&optlen.to_le_bytes());
        }
        std::mem::transmute::<[u8; 64], squeue::Entry>(raw)
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
        // Populated at once: the kernel hands buffers out in ring order, so under load every one
        // of them is soon touched anyway; faulting them in now makes the shard's memory a fixed
        // cost known at start instead of one that creeps up with the first few hundred requests.
        // SAFETY: anonymous private mappings with no address hint; results are checked below.
        let buffers = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_roundtrips_through_user_data() {
        for op in [
            Op::Accept,
            Op::Wake,
            Op::Tick,
            Op::Cancel,
            Op::Connect,
            Op::Recv,
            Op::Send,
            Op::PollIn,
            Op::PollOut,
            Op::Nop,
        ] {
            for slot in [0, 1, 0xdead_beef, u32::MAX] {
                let t = Tag::new(op, slot);
                assert_eq!(Tag::decode(t.encode()), Some(t));
            }
        }
        assert_eq!(Tag::decode(0), None);
    }
}
