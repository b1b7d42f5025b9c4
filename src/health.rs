//! Owns: active health checks. Each server of a backend with `health_check` is checked by one
//! task on the control thread — once per server, not once per shard — and every state change
//! (rise/fall reached) is sent to every shard as a message, so all shards see the same UP/DOWN
//! state without sharing anything on the data path.
//! Must not: touch shard state directly; the rise/fall logic ([`Tracker`]) is pure and takes
//! check results in, state changes out.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{CheckKind, Config, HealthCheck};
use crate::control::Shards;
use crate::shard::ShardMsg;

/// Consecutive results in, UP/DOWN transitions out (HAProxy `rise`/`fall`). Servers start UP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    up: bool,
    streak: u32,
}

impl Tracker {
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            streak: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check; returns the new state when it changes.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

/// What /stats shows of one server's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckStats {
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Why the last failed check failed (empty when the last check passed).
    pub last_check_error: String,
    pub transitions: u64,
    pub up: bool,
}

/// Per backend, per server; written by the check tasks and read by the admin listener, both on
/// the control thread.
pub type CheckTable = Arc<Mutex<Vec<Vec<Option<CheckStats>>>>>;

pub fn new_table(config: &Config) -> CheckTable {
    Arc::new(Mutex::new(
        config
            .backends
            .iter()
            .map(|b| {
                b.servers
                    .iter()
                    .map(|_| {
                        b.health_check.as_ref().map(|_| CheckStats {
                            up: true,
                            ..CheckStats::default()
                        })
                    })
                    .collect()
            })
            .collect(),
    ))
}

/// Starts one check task per server of every backend that has `health_check`.
pub fn spawn_checks(config: &Config, shards: &Arc<Shards>, table: &CheckTable) {
    for (b, backend) in config.backends.iter().enumerate() {
        let Some(hc) = &backend.health_check else {
            continue;
        };
        for (s, server) in backend.servers.iter().enumerate() {
            let task = CheckTask {
                backend: b,
                server: s,
                backend_name: backend.name.clone(),
                server_name: server.name.clone(),
                addr: server.address,
                check: hc.clone(),
                shards: Arc::clone(shards),
                table: Arc::clone(table),
            };
            tokio::spawn(task.run());
        }
    }
}

struct CheckTask {
    backend: usize,
    server: usize,
    backend_name: String,
    server_name: String,
    addr: SocketAddr,
    check: HealthCheck,
    shards: Arc<Shards>,
    table: CheckTable,
}

impl CheckTask {
    async fn run(self) {
        let mut tracker = Tracker::new(self.check.rise, self.check.fall);
        let mut ticker = tokio::time::interval(self.check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = match tokio::time::timeout(
                self.check.timeout,
                check_once(self.addr, &self.check.kind),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(format!("timeout after {:?}", self.check.timeout)),
            };
            let changed = tracker.record(result.is_ok());
            if let Ok(mut t) = self.table.lock()
                && let Some(Some(stats)) =
                    t.get_mut(self.backend).and_then(|b| b.get_mut(self.server))
            {
                match &result {
                    Ok(()) => {
                        stats.checks_passed += 1;
                        stats.last_check_error.clear();
                    }
                    Err(e) => {
                        stats.checks_failed += 1;
                        stats.last_check_error.clone_from(e);
                    }
                }
                stats.up = tracker.is_up();
                if changed.is_some() {
                    stats.transitions += 1;
                }
            }
            if let Some(up) = changed {
                tracing::warn!(
                    backend = %self.backend_name,
                    server = %self.server_name,
                    state = if up { "UP" } else { "DOWN" },
                    reason = %result.as_ref().err().map_or("checks pass", String::as_str),
                    "server state changed"
                );
                self.shards.broadcast(|| ShardMsg::ServerHealth {
                    backend: self.backend,
                    server: self.server,
                    up,
                });
            }
        }
    }
}

/// Events from shards, on the control thread.
/// - Passive health: a shard saw `passive.failures` consecutive failures from a server. Mark it
///   DOWN on every shard, and UP again after `passive.backoff` (active checks, if configured,
///   take it down again if it is still failing). One ejection per server at a time.
/// - TLS sessions a shard created: copied to every other shard's session cache.
pub async fn shard_events(
    config: Arc<Config>,
    shards: Arc<Shards>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::shard::ShardEvent>,
) {
    let ejected: Arc<Mutex<std::collections::HashSet<(usize, usize)>>> = Arc::default();
    while let Some(event) = events.recv().await {
        let (backend, server) = match event {
            crate::shard::ShardEvent::Eject { backend, server } => (backend, server),
            crate::shard::ShardEvent::TlsSessions {
                from,
                listener,
                entries,
            } => {
                let entries = Arc::new(entries);
                shards.broadcast_except(from, || ShardMsg::TlsSessions {
                    listener,
                    entries: Arc::clone(&entries),
                });
                continue;
            }
        };
        let Some(b) = config.backends.get(backend) else {
            continue;
        };
        let (Some(passive), Some(s)) = (b.passive, b.servers.get(server)) else {
            continue;
        };
        if let Ok(mut set) = ejected.lock()
            && !set.insert((backend, server))
        {
            continue;
        }
        tracing::warn!(
            backend = %b.name,
            server = %s.name,
            backoff_ms = passive.backoff.as_millis() as u64,
            "server ejected after consecutive failures"
        );
        shards.broadcast(|| ShardMsg::ServerHealth {
            backend,
            server,
            up: false,
        });
        let (shards, ejected, name) = (Arc::clone(&shards), Arc::clone(&ejected), s.name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(passive.backoff).await;
            tracing::info!(server = %name, "ejection over; server back in rotation");
            shards.broadcast(|| ShardMsg::ServerHealth {
                backend,
                server,
                up: true,
            });
            if let Ok(mut set) = ejected.lock() {
                set.remove(&(backend, server));
            }
        });
    }
}

/// One check: a TCP connect, or an HTTP request whose status must be in the expected range.
async fn check_once(addr: SocketAddr, kind: &CheckKind) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let CheckKind::Http {
        method,
        path,
        host,
        expect,
    } = kind
    else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringway-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while !buf[..got].contains(&b'\n') && got < buf.len() {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let status = status_of(&buf[..got]).ok_or_else(|| "no HTTP status line".to_string())?;
    if (expect.0..=expect.1).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "status {status}, expected {}-{}",
            expect.0, expect.1
        ))
    }
}

/// The status code of `HTTP/1.x NNN ...`.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\n').next()?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_consecutive_failures_take_a_server_down() {
        let mut t = Tracker::new(2, 3);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the streak");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert!(!t.is_up());
    }

    #[test]
    fn rise_consecutive_successes_bring_it_back() {
        let mut t = Tracker::new(2, 1);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None);
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0\r\n"), None);
    }
}
