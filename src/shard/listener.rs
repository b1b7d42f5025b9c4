//! Owns: creating one shard's listening socket for one configured listener (SO_REUSEPORT, so
//! every shard has its own accept queue and the kernel spreads new connections across shards).
//! Must not: accept or touch connections; the shard's ring does that.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listener could not be created, with what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "bind {addr}: address in use by a process that did not set SO_REUSEPORT; see `ss -ltnp 'sport = :{port}'`"
    )]
    InUse { addr: SocketAddr, port: u16 },
    #[error(
        "bind {addr}: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE)"
    )]
    Permission { addr: SocketAddr },
    #[error("bind {addr}: address not available on this host: {source}")]
    NotAvailable {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("listen on {addr}: {source}")]
    Other {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Creates, binds and listens; returns the raw fd, owned by the caller from then on.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> Result<RawFd, ListenError> {
    let other = |source: io::Error| ListenError::Other { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(other)?;
    socket.set_reuse_address(true).map_err(other)?;
    socket.set_reuse_port(true).map_err(other)?;
    socket.set_nonblocking(true).map_err(other)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(other)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EADDRINUSE) => ListenError::InUse {
                addr,
                port: addr.port(),
            },
            Some(libc::EACCES) | Some(libc::EPERM) => ListenError::Permission { addr },
            Some(libc::EADDRNOTAVAIL) => ListenError::NotAvailable { addr, source: e },
            _ => other(e),
        })?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(other)?;
    Ok(socket.into_raw_fd())
}
