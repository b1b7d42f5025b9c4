//! Owns: every plain syscall the data plane makes outside the ring (sockets, shutdown, addresses,
//! peeks, eventfds), each wrapped once with its `// SAFETY:` reasoning so the connection code has
//! no `unsafe` of its own.
//! Must not: keep state or know what a connection is; callers own the fds they pass.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// A new non-blocking, close-on-exec TCP socket for the family of `addr`.
pub fn tcp_socket(v6: bool) -> io::Result<RawFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// Closes an fd the caller owns and no in-flight ring op refers to any more.
pub fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: callers pass an fd they own exactly once, after its last op completed.
        unsafe { libc::close(fd) };
    }
}

/// Half-closes the write side (forwards EOF). A plain syscall: IORING_OP_SHUTDOWN would be run by
/// an io-wq worker thread.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown(2) on a socket the caller owns; no memory is passed.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// TCP_NODELAY: the proxy forwards whatever it has at once and must not add Nagle delay on top
/// of the peer's own.
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

/// The peer's address of a connected socket (multishot accept does not return it).
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    sock_addr(fd, libc::getpeername)
}

/// The local address of a socket (the address a client connected to).
pub fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    sock_addr(fd, libc::getsockname)
}

type AddrCall = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

fn sock_addr(fd: RawFd, call: AddrCall) -> Option<SocketAddr> {
    // SAFETY: socket2 hands the closure storage and its length; getpeername/getsockname write
    // at most that many bytes and update the length.
    let (_, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            if call(fd, storage.cast(), len) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }
    .ok()?;
    addr.as_socket()
}

/// What a non-blocking peek found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// This many bytes are waiting (copied into the caller's buffer, not consumed).
    Bytes(usize),
    /// Nothing yet.
    Empty,
    /// The peer closed without sending anything more.
    Eof,
    Error(i32),
}

/// Copies up to `buf.len()` waiting bytes without consuming them (MSG_PEEK | MSG_DONTWAIT).
pub fn peek(fd: RawFd, buf: &mut [u8]) -> Peeked {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Eof,
        n if n > 0 => Peeked::Bytes(n as usize),
        _ => match errno() {
            libc::EAGAIN => Peeked::Empty,
            e => Peeked::Error(e),
        },
    }
}

/// A blocking-free eventfd for waking a shard (EFD_CLOEXEC only: the ring reads it, and a
/// non-blocking eventfd would make that read fail with EAGAIN instead of waiting).
pub fn eventfd() -> io::Result<RawFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// Adds 1 to an eventfd (wakes the ring reading it).
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd the caller owns.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn peek_sees_bytes_without_consuming_then_eof() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(peek(s.as_raw_fd(), &mut buf), Peeked::Empty);
        c.write_all(b"abc").unwrap();
        let seen = (0..200).find_map(|_| match peek(s.as_raw_fd(), &mut buf) {
            Peeked::Bytes(n) => Some(n),
            _ => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                None
            }
        });
        assert_eq!(seen, Some(3));
        assert_eq!(
            peek(s.as_raw_fd(), &mut buf),
            Peeked::Bytes(3),
            "not consumed"
        );
        assert_eq!(peer_addr(s.as_raw_fd()), c.local_addr().ok());
        assert_eq!(local_addr(s.as_raw_fd()), l.local_addr().ok());
    }
}
