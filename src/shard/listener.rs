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

/// TLS termination on a listener, as one shard runs it.
#[derive(Clone)]
pub struct TlsListenerCfg {
    /// This shard's own configuration (own session cache and ticketer instance).
    pub config: std::sync::Arc<rustls::ServerConfig>,
    /// The session cache inside `config` (for replication to the other shards).
    pub cache: Option<std::sync::Arc<crate::tls::server::ShardSessionCache>>,
    pub handshake_ms: u64,
    /// A PROXY header comes before the ClientHello.
    pub accept_proxy: bool,
}

impl std::fmt::Debug for TlsListenerCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListenerCfg")
            .field("handshake_ms", &self.handshake_ms)
            .field("accept_proxy", &self.accept_proxy)
            .finish()
    }
}

/// `mode = "detect"`: where each kind of client goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectCfg {
    /// TLS clients passed through untouched (when the listener does not terminate TLS).
    pub tls_backend: Option<crate::ids::BackendId>,
    /// Neither HTTP nor TLS (or silence): raw TCP.
    pub tcp_backend: Option<crate::ids::BackendId>,
    pub peek_ms: u64,
}

/// One listener's configuration as a shard holds it (a per-shard copy). Connections keep the
/// `Arc` they were accepted with; HTTP connections take the listener's current one for each new
/// request, so a reload reaches keep-alive clients too.
#[derive(Debug, Clone)]
pub struct ListenerCfg {
    pub id: crate::ids::ListenerId,
    pub name: String,
    pub bind: SocketAddr,
    /// HTTP clients (mode http, and detect's HTTP and decrypted TLS clients).
    pub http: Option<crate::session::h1::H1Cfg>,
    /// `http2 = true`: clients that choose HTTP/2 (ALPN `h2`, or the preface on a plain
    /// connection) get an HTTP/2 session.
    pub h2: Option<crate::session::h2::H2ListenerCfg>,
    /// Plain HTTP listeners: a PROXY header comes first.
    pub http_accept_proxy: bool,
    /// TCP clients (mode tcp; detect's TCP and TLS passthrough clients use it with their backend).
    pub tcp: Option<crate::session::tcp::TcpCfg>,
    pub tls: Option<TlsListenerCfg>,
    pub detect: Option<DetectCfg>,
    pub access_log: crate::config::AccessLog,
    pub access_log_format: crate::config::AccessLogFormat,
}
