//! Owns: deciding which inherited listening socket serves which configured listener and shard,
//! for sockets handed over by an old ringway ([`crate::upgrade`]) or passed by systemd
//! ([`crate::sd_listen`]); and [`inspect_listener`], the check that an inherited fd really is a
//! listening TCP socket and where it is bound.
//! Must not: bind, listen on, close or change any socket (matching is pure; inspecting only reads
//! socket options), or know about shards' rings.
//!
//! # Using it
//!
//! ```text
//! let candidates: Vec<Candidate> =
//!     received.iter().map(|(name, fd)| Candidate::inspect(name.clone(), fd.as_fd())).collect();
//! let wanted: Vec<Wanted> =
//!     config.listeners.iter().map(|l| Wanted { name: &l.name, bind: l.bind }).collect();
//! let adoption = match_listeners(&candidates, &wanted, shards);
//! // adoption.listeners[l].per_shard[s]: indices into `candidates` that shard `s` accepts on
//! // adoption.missing: listeners that got no socket (bind them as usual, or refuse to start)
//! // adoption.unmatched: sockets no listener wants, with why (log them; see below before closing)
//! ```
//!
//! # Rules
//!
//! - A candidate whose name equals a configured listener's name belongs to that listener, and its
//!   bound address must equal the listener's `bind` (IP and port); if it differs, the socket is
//!   reported as [`UnmatchedWhy::AddressDiffers`] rather than silently serving another address
//!   than the config says.
//! - Otherwise (no name, systemd's default name such as `ringway.socket`, or a name no listener
//!   has) it belongs to the listener whose `bind` equals its bound address.
//! - A listener's sockets keep the order they were received in (ListenStream= order from systemd,
//!   (name, shard) order from [`crate::upgrade::fetch_handover`]). With `k` sockets and `n`
//!   shards: when `k >= n`, socket `i` goes to shard `i % n`, so a shard may accept on more than
//!   one socket; when `k < n`, shard `s` shares socket `s % k` with shard `s - k` (see
//!   [`ListenerSockets::shards_share`]).
//! - Every socket that belongs to a listener must be accepted on: the kernel spreads new
//!   connections over all sockets of a SO_REUSEPORT group by hash, so a socket nobody accepts on
//!   silently stalls its share of clients. That is why surplus sockets are given to shards
//!   instead of being dropped.
//! - Closing an unmatched socket is safe only if nobody else serves its address: a socket from
//!   an old process (or systemd) that is still in a reuseport group takes a share of new
//!   connections, and closing it resets the connections queued in it.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};

/// Why an fd is not a listening TCP socket we can adopt.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a socket")]
    NotSocket,
    #[error("not a stream socket")]
    NotStream,
    #[error("not an IPv4 or IPv6 socket")]
    NotInet,
    #[error("not a TCP socket")]
    NotTcp,
    #[error("a TCP socket that is not listening (listen(2) was never called on it)")]
    NotListening,
    #[error("reading socket options: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
}

impl InspectError {
    /// Never: the fd will not turn into a listening TCP socket by asking again.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Checks that `fd` is a listening TCP socket (SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN)
/// and returns its bound address (getsockname). Only reads; the socket is not changed.
pub fn inspect_listener(fd: BorrowedFd<'_>) -> Result<SocketAddr, InspectError> {
    let io = |e: Errno| InspectError::Io { source: e.into() };
    match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        Ok(_) => return Err(InspectError::NotStream),
        Err(Errno::NOTSOCK) => return Err(InspectError::NotSocket),
        Err(e) => return Err(io(e)),
    }
    let domain = sockopt::socket_domain(fd).map_err(io)?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(InspectError::NotInet);
    }
    // A stream socket in an inet family may still be MPTCP (or SCTP); ringway expects TCP.
    if sockopt::socket_protocol(fd).map_err(io)? != Some(ipproto::TCP) {
        return Err(InspectError::NotTcp);
    }
    if !sockopt::socket_acceptconn(fd).map_err(io)? {
        return Err(InspectError::NotListening);
    }
    let addr = rustix::net::getsockname(fd).map_err(io)?;
    SocketAddr::try_from(addr).map_err(|_| InspectError::NotInet)
}

/// One received socket, described for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The name it came with: systemd's FileDescriptorName=, or the old process's listener name.
    pub name: Option<String>,
    /// Its bound address; `None` if it is not a listening TCP socket.
    pub addr: Option<SocketAddr>,
}

impl Candidate {
    /// Describes `fd` with [`inspect_listener`]; a socket that fails the check gets `addr: None`
    /// and is reported as [`UnmatchedWhy::NotListeningTcp`].
    pub fn inspect(name: Option<String>, fd: BorrowedFd<'_>) -> Candidate {
        Candidate {
            name,
            addr: inspect_listener(fd).ok(),
        }
    }
}

/// One configured listener, as matching needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub name: &'a str,
    pub bind: SocketAddr,
}

/// The sockets one configured listener got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSockets {
    /// Indices into the candidates, in received order.
    pub sockets: Vec<usize>,
    /// One entry per shard: the candidates that shard accepts on. Every shard's entry is empty
    /// exactly when `sockets` is.
    pub per_shard: Vec<Vec<usize>>,
}

impl ListenerSockets {
    /// Fewer sockets than shards, so some shards accept on the same socket as another shard.
    /// That works (the kernel hands each connection to one accept), but those shards share an
    /// accept queue instead of having their own; the fix is one more socket per shard (another
    /// identical ListenStream= line, see tuning/GUIDE.md "Socket activation").
    pub fn shards_share(&self) -> bool {
        !self.sockets.is_empty() && self.sockets.len() < self.per_shard.len()
    }
}

/// Why a received socket belongs to no configured listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedWhy {
    /// Not a listening TCP socket (a UDP or unix socket, a FIFO, a connected socket).
    NotListeningTcp,
    /// No listener has its name or its address.
    NoListener { addr: SocketAddr },
    /// Its name is listener `listener`'s (an index into the wanted listeners), but it is bound
    /// to `bound` and the config says otherwise.
    AddressDiffers { listener: usize, bound: SocketAddr },
}

/// A received socket no configured listener takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmatched {
    /// Index into the candidates.
    pub candidate: usize,
    pub why: UnmatchedWhy,
}

/// The result of [`match_listeners`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// One entry per wanted listener, in the same order.
    pub listeners: Vec<ListenerSockets>,
    /// Wanted listeners (indices) that got no socket at all.
    pub missing: Vec<usize>,
    /// Received sockets that no listener takes, in received order.
    pub unmatched: Vec<Unmatched>,
}

/// IP and port: getsockname reports IPv6 flow info and scope as the kernel keeps them, which a
/// configured `[::]:80` does not spell out.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

/// Matches received sockets to configured listeners and spreads each listener's sockets over
/// `shards` shards (0 is taken as 1). Pure; see the module docs for the rules.
pub fn match_listeners(candidates: &[Candidate], wanted: &[Wanted<'_>], shards: u16) -> Adoption {
    let shard_count = usize::from(shards.max(1));
    let mut sockets: Vec<Vec<usize>> = vec![Vec::new(); wanted.len()];
    let mut unmatched = Vec::new();
    for (candidate, c) in candidates.iter().enumerate() {
        let Some(addr) = c.addr else {
            unmatched.push(Unmatched {
                candidate,
                why: UnmatchedWhy::NotListeningTcp,
            });
            continue;
        };
        let by_name = c
            .name
            .as_deref()
            .and_then(|n| wanted.iter().position(|w| w.name == n));
        let found = match by_name {
            Some(listener) => match wanted.get(listener) {
                Some(w) if same_addr(w.bind, addr) => Ok(listener),
                _ => Err(UnmatchedWhy::AddressDiffers {
                    listener,
                    bound: addr,
                }),
            },
            None => wanted
                .iter()
                .position(|w| same_addr(w.bind, addr))
                .ok_or(UnmatchedWhy::NoListener { addr }),
        };
        match found.map(|l| sockets.get_mut(l)) {
            Ok(Some(list)) => list.push(candidate),
            // `position` over `wanted` always yields an index `sockets` has.
            Ok(None) => unmatched.push(Unmatched {
                candidate,
                why: UnmatchedWhy::NoListener { addr },
            }),
            Err(why) => unmatched.push(Unmatched { candidate, why }),
        }
    }
    let missing = sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_empty())
        .map(|(l, _)| l)
        .collect();
    let listeners = sockets
        .into_iter()
        .map(|sockets| {
            let per_shard = spread(&sockets, shard_count);
            ListenerSockets { sockets, per_shard }
        })
        .collect();
    Adoption {
        listeners,
        missing,
        unmatched,
    }
}

/// `k >= n`: socket `i` to shard `i % n`; `0 < k < n`: shard `s` takes socket `s % k`.
fn spread(sockets: &[usize], shard_count: usize) -> Vec<Vec<usize>> {
    let mut per_shard = vec![Vec::new(); shard_count];
    if sockets.is_empty() {
        return per_shard;
    }
    if sockets.len() >= shard_count {
        for (i, &socket) in sockets.iter().enumerate() {
            if let Some(shard) = per_shard.get_mut(i % shard_count) {
                shard.push(socket);
            }
        }
    } else {
        for (s, shard) in per_shard.iter_mut().enumerate() {
            if let Some(&socket) = sockets.get(s % sockets.len()) {
                shard.push(socket);
            }
        }
    }
    per_shard
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsFd;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn cand(name: Option<&str>, a: &str) -> Candidate {
        Candidate {
            name: name.map(str::to_owned),
            addr: Some(addr(a)),
        }
    }

    const HTTP: &str = "0.0.0.0:80";
    const HTTPS: &str = "0.0.0.0:443";

    fn wanted() -> Vec<Wanted<'static>> {
        vec![
            Wanted {
                name: "http",
                bind: addr(HTTP),
            },
            Wanted {
                name: "https",
                bind: addr(HTTPS),
            },
        ]
    }

    #[test]
    fn names_pick_the_listener_and_each_shard_gets_its_own_socket() {
        let c = vec![
            cand(Some("https"), HTTPS),
            cand(Some("http"), HTTP),
            cand(Some("https"), HTTPS),
            cand(Some("http"), HTTP),
        ];
        let a = match_listeners(&c, &wanted(), 2);
        assert_eq!(a.listeners[0].sockets, vec![1, 3]);
        assert_eq!(a.listeners[0].per_shard, vec![vec![1], vec![3]]);
        assert_eq!(a.listeners[1].per_shard, vec![vec![0], vec![2]]);
        assert!(a.missing.is_empty() && a.unmatched.is_empty());
        assert!(!a.listeners[0].shards_share());
    }

    #[test]
    fn unknown_names_fall_back_to_the_bound_address() {
        // systemd names fds after the socket unit unless FileDescriptorName= says otherwise.
        let c = vec![
            cand(Some("ringway.socket"), HTTP),
            cand(None, HTTPS),
            cand(Some("unknown"), "[::]:8080"),
        ];
        let a = match_listeners(&c, &wanted(), 1);
        assert_eq!(a.listeners[0].per_shard, vec![vec![0]]);
        assert_eq!(a.listeners[1].per_shard, vec![vec![1]]);
        assert_eq!(
            a.unmatched,
            vec![Unmatched {
                candidate: 2,
                why: UnmatchedWhy::NoListener {
                    addr: addr("[::]:8080")
                }
            }]
        );
    }

    #[test]
    fn a_named_socket_on_another_address_is_refused_not_adopted() {
        // ListenStream=80 binds [::]:80 (dual stack), not the configured 0.0.0.0:80.
        let c = vec![cand(Some("http"), "[::]:80")];
        let a = match_listeners(&c, &wanted(), 1);
        assert_eq!(a.missing, vec![0, 1]);
        assert_eq!(
            a.unmatched[0].why,
            UnmatchedWhy::AddressDiffers {
                listener: 0,
                bound: addr("[::]:80")
            }
        );
    }

    #[test]
    fn listeners_without_sockets_and_non_tcp_sockets_are_reported() {
        let c = vec![
            Candidate {
                name: Some("http".into()),
                addr: None,
            },
            cand(None, HTTPS),
        ];
        let a = match_listeners(&c, &wanted(), 4);
        assert_eq!(a.missing, vec![0]);
        assert_eq!(a.listeners[0].per_shard, vec![Vec::<usize>::new(); 4]);
        assert_eq!(a.unmatched[0].why, UnmatchedWhy::NotListeningTcp);
    }

    #[test]
    fn surplus_sockets_are_spread_so_every_socket_is_accepted_on() {
        let c: Vec<Candidate> = (0..5).map(|_| cand(Some("http"), HTTP)).collect();
        let a = match_listeners(&c, &wanted(), 2);
        assert_eq!(a.listeners[0].per_shard, vec![vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn fewer_sockets_than_shards_share_round_robin() {
        let c = vec![cand(Some("http"), HTTP), cand(Some("http"), HTTP)];
        let a = match_listeners(&c, &wanted(), 5);
        assert_eq!(
            a.listeners[0].per_shard,
            vec![vec![0], vec![1], vec![0], vec![1], vec![0]]
        );
        assert!(a.listeners[0].shards_share());
        // Zero shards is taken as one rather than dropping the sockets.
        let a = match_listeners(&c, &wanted(), 0);
        assert_eq!(a.listeners[0].per_shard, vec![vec![0, 1]]);
    }

    #[test]
    fn ipv6_scope_and_flow_info_do_not_prevent_a_match() {
        let w = [Wanted {
            name: "v6",
            bind: addr("[::1]:8443"),
        }];
        let bound = std::net::SocketAddrV6::new("::1".parse().expect("ip"), 8443, 7, 0);
        let c = [Candidate {
            name: None,
            addr: Some(SocketAddr::V6(bound)),
        }];
        assert_eq!(match_listeners(&c, &w, 1).listeners[0].sockets, vec![0]);
    }

    #[test]
    fn inspect_accepts_a_listening_tcp_socket_and_names_what_else_is_wrong() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let bound = l.local_addr().expect("addr");
        assert_eq!(inspect_listener(l.as_fd()).expect("listening"), bound);

        let conn = std::net::TcpStream::connect(bound).expect("connect");
        assert!(matches!(
            inspect_listener(conn.as_fd()),
            Err(InspectError::NotListening)
        ));
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(matches!(
            inspect_listener(udp.as_fd()),
            Err(InspectError::NotStream)
        ));
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(matches!(
            inspect_listener(unix.as_fd()),
            Err(InspectError::NotInet)
        ));
        let file = std::fs::File::open("/proc/self/status").expect("file");
        assert!(matches!(
            inspect_listener(file.as_fd()),
            Err(InspectError::NotSocket)
        ));
        assert_eq!(Candidate::inspect(None, udp.as_fd()).addr, None);
    }
}
