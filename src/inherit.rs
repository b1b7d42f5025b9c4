//! Owns: the listening sockets a starting ringway gets for its listeners — adopted from the
//! sockets it inherited (an old ringway's hand-over, [`crate::upgrade`], or systemd's,
//! [`crate::sd_listen`]) as [`crate::adopt::match_listeners`] assigns them, bound (SO_REUSEPORT,
//! one per shard) for every listener that got none — and the shard count that serves them all.
//! Must not: accept on, shut down or change any socket; decide anything about shards beyond their
//! count; run after startup.
//!
//! Every fd handed out is the caller's to close; every inherited fd that no shard takes is closed
//! here (dropped), after it has been logged.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use crate::adopt::{Candidate, UnmatchedWhy, Wanted, match_listeners};
use crate::config::Config;
use crate::shard::listener::{ListenError, bind_listener};

/// Where an inherited socket came from (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// LISTEN_FDS from the service manager.
    Systemd,
    /// The hand-over of the ringway with this pid.
    OldProcess { pid: i32 },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Systemd => f.write_str("systemd"),
            Origin::OldProcess { pid } => write!(f, "the old process (pid {pid})"),
        }
    }
}

/// One inherited socket, with the name it came with.
#[derive(Debug)]
pub struct Passed {
    pub name: Option<String>,
    pub fd: OwnedFd,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error("{0}")]
    Listen(#[from] ListenError),
    #[error("listener `{name}`: duplicating inherited socket for shard {shard}: {source}")]
    Dup {
        name: String,
        shard: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Each shard's listening sockets, by listener index, and how many shards that takes.
#[derive(Debug)]
pub struct Listening {
    /// One list per shard: `(listener index, fd)`, owned by the caller.
    pub per_shard: Vec<Vec<(usize, RawFd)>>,
    /// Inherited sockets in use (listeners that got none were bound).
    pub adopted: usize,
}

impl Listening {
    /// Closes every fd (a start that fails before the shards take them).
    pub fn close_all(&self) {
        for fds in &self.per_shard {
            for &(_, fd) in fds {
                crate::shard::close_fd(fd);
            }
        }
    }
}

/// The shard count that lets every inherited socket of a listener have its own shard: a shard
/// accepts on one socket per listener, and a socket nobody accepts on silently stalls its share
/// of new connections (the kernel spreads them over every socket of a SO_REUSEPORT group). So
/// with more sockets than shards (an old process with more shards, a socket unit with more
/// `ListenStream=` lines) ringway runs one shard per socket.
pub fn shard_count_for(config: &Config, configured: usize, passed: &[Passed]) -> usize {
    let candidates = candidates(passed);
    let wanted = wanted(config);
    let adoption = match_listeners(&candidates, &wanted, shards_u16(configured));
    let most = adoption
        .listeners
        .iter()
        .map(|l| l.sockets.len())
        .max()
        .unwrap_or(0);
    if most > configured {
        for (l, got) in config.listeners.iter().zip(&adoption.listeners) {
            if got.sockets.len() > configured {
                tracing::warn!(
                    listener = %l.name,
                    sockets = got.sockets.len(),
                    shards = configured,
                    "more inherited sockets than shards: running one shard per socket so every socket is accepted on"
                );
            }
        }
    }
    configured.max(most)
}

/// Every listener's socket for each of `shard_count` shards: inherited ones where `passed` has
/// them (see [`crate::adopt`] for which goes where), freshly bound ones otherwise. Inherited
/// sockets no listener takes are logged and closed. On error everything bound or duplicated so
/// far is closed. `shard_count` should come from [`shard_count_for`].
pub fn listeners(
    config: &Config,
    shard_count: usize,
    passed: Vec<Passed>,
) -> Result<Listening, InheritError> {
    let candidates = candidates(&passed);
    let wanted = wanted(config);
    let adoption = match_listeners(&candidates, &wanted, shards_u16(shard_count));
    for u in &adoption.unmatched {
        let Some(p) = passed.get(u.candidate) else {
            continue;
        };
        let name = p.name.as_deref().unwrap_or("");
        match u.why {
            UnmatchedWhy::NotListeningTcp => tracing::warn!(
                name, from = %p.origin,
                "inherited fd is not a listening TCP socket; closing it"
            ),
            UnmatchedWhy::NoListener { addr } => tracing::warn!(
                name, %addr, from = %p.origin,
                "inherited socket matches no listener (by name or address); closing it"
            ),
            UnmatchedWhy::AddressDiffers { listener, bound } => tracing::warn!(
                name,
                %bound,
                config = %wanted.get(listener).map_or_else(String::new, |w| w.bind.to_string()),
                from = %p.origin,
                "inherited socket of this listener is bound elsewhere than the config says; closing it and binding the configured address"
            ),
        }
    }
    let mut out = Listening {
        per_shard: (0..shard_count).map(|_| Vec::new()).collect(),
        adopted: 0,
    };
    for (index, (l, got)) in config.listeners.iter().zip(&adoption.listeners).enumerate() {
        if got.sockets.is_empty() {
            for shard in 0..shard_count {
                match bind_listener(l.bind, l.backlog) {
                    Ok(fd) => push(&mut out, shard, index, fd),
                    Err(e) => {
                        out.close_all();
                        return Err(e.into());
                    }
                }
            }
            continue;
        }
        if got.shards_share() {
            tracing::warn!(
                listener = %l.name,
                sockets = got.sockets.len(),
                shards = shard_count,
                "fewer inherited sockets than shards: some shards share an accept queue (add a ListenStream= line per shard)"
            );
        }
        let origin = got
            .sockets
            .first()
            .and_then(|&c| passed.get(c))
            .map_or(Origin::Systemd, |p| p.origin);
        tracing::info!(
            listener = %l.name,
            bind = %l.bind,
            sockets = got.sockets.len(),
            from = %origin,
            "adopted inherited listening sockets"
        );
        out.adopted += got.sockets.len();
        for (shard, sockets) in got.per_shard.iter().enumerate() {
            // `shard_count_for` makes every listener's share one socket per shard at most; a
            // shard's first one is all it can accept on.
            let Some(fd) = sockets.first().and_then(|&c| passed.get(c)) else {
                continue;
            };
            // Each shard owns (and at drain closes) its own fd; a socket shared by two shards is
            // one open socket with two fds, and the inherited fd itself is closed below.
            match dup(fd.fd.as_fd()) {
                Ok(own) => push(&mut out, shard, index, own.into_raw_fd()),
                Err(source) => {
                    out.close_all();
                    return Err(InheritError::Dup {
                        name: l.name.clone(),
                        shard,
                        source,
                    });
                }
            }
        }
    }
    drop(passed);
    Ok(out)
}

fn push(out: &mut Listening, shard: usize, index: usize, fd: RawFd) {
    match out.per_shard.get_mut(shard) {
        Some(list) => list.push((index, fd)),
        None => crate::shard::close_fd(fd),
    }
}

/// A close-on-exec duplicate of `fd`: the same open socket under a second fd.
pub fn dup(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(std::io::Error::from)
}

fn candidates(passed: &[Passed]) -> Vec<Candidate> {
    passed
        .iter()
        .map(|p| Candidate::inspect(p.name.clone(), p.fd.as_fd()))
        .collect()
}

fn wanted(config: &Config) -> Vec<Wanted<'_>> {
    config
        .listeners
        .iter()
        .map(|l| Wanted {
            name: &l.name,
            bind: l.bind,
        })
        .collect()
}

fn shards_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    fn bound_addr(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
        crate::adopt::inspect_listener(fd).ok()
    }

    fn config(text: &str) -> Config {
        crate::config::load_str(text, "t.toml").expect("valid config")
    }

    fn reuseport_listener(addr: SocketAddr) -> OwnedFd {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        s.set_reuse_port(true).expect("reuseport");
        s.bind(&addr.into()).expect("bind");
        s.listen(16).expect("listen");
        OwnedFd::from(s)
    }

    fn inode(fd: RawFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: `fd` is open for the duration of this call (the test owns it); the borrow
        // does not outlive it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let own = dup(borrowed).expect("dup");
        std::fs::File::from(own).metadata().expect("fstat").ino()
    }

    fn close(listening: Listening) {
        listening.close_all();
    }

    #[test]
    fn inherited_sockets_are_adopted_per_shard_and_missing_listeners_bound() {
        let a = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let addr = bound_addr(a.as_fd()).expect("bound");
        let b = reuseport_listener(addr);
        let want = [inode(a.as_raw_fd()), inode(b.as_raw_fd())];
        let cfg = config(&format!(
            "[[listener]]\nname = \"web\"\nbind = \"{addr}\"\nbackend = \"b\"\n\
             [[listener]]\nname = \"other\"\nbind = \"127.0.0.1:0\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\nservers = [{{ address = \"127.0.0.1:1\" }}]\n"
        ));
        let passed = vec![
            Passed {
                name: Some("web".into()),
                fd: a,
                origin: Origin::Systemd,
            },
            Passed {
                name: Some("web".into()),
                fd: b,
                origin: Origin::Systemd,
            },
        ];
        assert_eq!(shard_count_for(&cfg, 2, &passed), 2);
        let got = listeners(&cfg, 2, passed).expect("listeners");
        assert_eq!(got.adopted, 2);
        for (shard, fds) in got.per_shard.iter().enumerate() {
            assert_eq!(fds.len(), 2, "shard {shard}: {fds:?}");
            assert_eq!(inode(fds[0].1), want[shard], "web on shard {shard}");
            assert!(!want.contains(&inode(fds[1].1)), "other is bound afresh");
        }
        close(got);
    }

    #[test]
    fn more_sockets_than_shards_grow_the_shard_count_and_unmatched_ones_are_closed() {
        let first = reuseport_listener("127.0.0.1:0".parse().expect("addr"));
        let addr = bound_addr(first.as_fd()).expect("bound");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let mut passed = vec![Passed {
            name: None,
            fd: first,
            origin: Origin::OldProcess { pid: 1 },
        }];
        for _ in 0..2 {
            passed.push(Passed {
                name: None,
                fd: reuseport_listener(addr),
                origin: Origin::OldProcess { pid: 1 },
            });
        }
        passed.push(Passed {
            name: Some("dns".into()),
            fd: OwnedFd::from(udp),
            origin: Origin::OldProcess { pid: 1 },
        });
        let cfg = config(&format!(
            "[[listener]]\nname = \"web\"\nbind = \"{addr}\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\nservers = [{{ address = \"127.0.0.1:1\" }}]\n"
        ));
        let shards = shard_count_for(&cfg, 2, &passed);
        assert_eq!(shards, 3);
        let got = listeners(&cfg, shards, passed).expect("listeners");
        assert_eq!(got.adopted, 3);
        assert!(got.per_shard.iter().all(|f| f.len() == 1));
        close(got);
    }
}
