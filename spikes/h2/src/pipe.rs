//! An in-memory, single-threaded duplex: two byte queues (client→server, server→client) with
//! the read wakers of each end, standing in for the shard's `Wire` (`rx`/`tx` Vecs). The h2
//! crate sees it through tokio's `AsyncRead`/`AsyncWrite`; the sans-IO servers read and write
//! the queues directly.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a queue holds before its writer is told to wait (backpressure, like QUEUED_MAX).
pub const QUEUE_BYTES_MAX: usize = 256 * 1024;

#[derive(Default)]
pub struct Queue {
    pub buf: Vec<u8>,
    pub pos: usize,
    pub reader: Option<Waker>,
    pub writer: Option<Waker>,
    pub closed: bool,
}

impl Queue {
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
    pub fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

pub type Pipe = Rc<RefCell<[Queue; 2]>>;

pub const TO_SERVER: usize = 0;
pub const TO_CLIENT: usize = 1;

pub fn pipe() -> Pipe {
    Rc::new(RefCell::new([Queue::default(), Queue::default()]))
}

/// One end: reads queue `rd`, writes queue `1 - rd`.
pub struct End {
    pub pipe: Pipe,
    pub rd: usize,
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut p = self.pipe.borrow_mut();
        let q = &mut p[self.rd];
        let have = q.pending();
        if have.is_empty() {
            if q.closed {
                return Poll::Ready(Ok(()));
            }
            q.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = have.len().min(out.remaining());
        out.put_slice(&have[..n]);
        q.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.pipe.borrow_mut();
        let q = &mut p[1 - self.rd];
        let room = QUEUE_BYTES_MAX.saturating_sub(q.buf.len() - q.pos);
        if room == 0 {
            q.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(room);
        q.push(&data[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut p = self.pipe.borrow_mut();
        let q = &mut p[1 - self.rd];
        q.closed = true;
        q.wake_reader();
        Poll::Ready(Ok(()))
    }
}
