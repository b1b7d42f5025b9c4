//! Owns: active health checks. Each server of a backend with `health_check` is checked by one
//! task on the control thread — once per server, not once per shard — and every state change
//! (rise/fall reached) is sent to every shard as a message, so all shards see the same UP/DOWN
//! state without sharing anything on the data path.
//! Must not: touch shard state directly; the rise/fall logic ([`Tracker`]) is pure and takes
//! check results in, state changes out.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bus::Shards;
use crate::config::{CheckKind, Config, HealthCheck, Passive};
use crate::ids::{BackendId, Registry, ServerId};
pub use crate::stats::{CheckStats, CheckTable};

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

/// One server to check, with the ids shards know it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: BackendId,
    pub server: ServerId,
    pub backend_name: String,
    pub server_name: String,
    pub addr: SocketAddr,
    pub check: HealthCheck,
}

/// Every server of `config` that has active checks.
pub fn targets(config: &Config, registry: &Registry) -> Vec<Target> {
    let mut out = Vec::new();
    for b in &config.backends {
        let (Some(hc), Some(bid)) = (&b.health_check, registry.find_backend(&b.name)) else {
            continue;
        };
        // A server in maintenance is not checked (HAProxy `state maint`).
        for s in b
            .servers
            .iter()
            .filter(|s| s.admin != crate::config::AdminState::Maint)
        {
            let Some(sid) = registry.find_server(bid, &s.name) else {
                continue;
            };
            out.push(Target {
                backend: bid,
                server: sid,
                backend_name: b.name.clone(),
                server_name: s.name.clone(),
                addr: s.address,
                check: hc.clone(),
            });
        }
    }
    out
}

/// The running check tasks: exactly one per checked server.
#[derive(Default)]
pub struct Checks {
    running: Vec<(Target, tokio::task::AbortHandle)>,
}

impl Checks {
    /// Starts tasks for new targets and stops those of targets that went away or changed (must
    /// run inside the control runtime). Boot is a sync from nothing.
    pub fn sync(&mut self, targets: Vec<Target>, shards: &Arc<Shards>) {
        let table = Arc::clone(&shards.checks);
        self.running.retain(|(t, h)| {
            let keep = targets.contains(t);
            if !keep {
                h.abort();
                if let Ok(mut table) = table.lock() {
                    table.remove(&(t.backend_name.clone(), t.server_name.clone()));
                }
            }
            keep
        });
        for t in targets {
            if self.running.iter().any(|(r, _)| *r == t) {
                continue;
            }
            if let Ok(mut table) = table.lock() {
                table.insert(
                    (t.backend_name.clone(), t.server_name.clone()),
                    CheckStats {
                        up: true,
                        ..CheckStats::default()
                    },
                );
            }
            let task = CheckTask {
                target: t.clone(),
                shards: Arc::clone(shards),
            };
            let handle = tokio::spawn(task.run()).abort_handle();
            self.running.push((t, handle));
        }
    }
}

struct CheckTask {
    target: Target,
    shards: Arc<Shards>,
}

impl CheckTask {
    async fn run(self) {
        let t = &self.target;
        let mut tracker = Tracker::new(t.check.rise, t.check.fall);
        let mut ticker = tokio::time::interval(t.check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let key = (t.backend_name.clone(), t.server_name.clone());
        loop {
            ticker.tick().await;
            let result = match tokio::time::timeout(
                t.check.timeout,
                check_once(t.addr, &t.check.kind),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(format!("timeout after {:?}", t.check.timeout)),
            };
            let changed = tracker.record(result.is_ok());
            if let Ok(mut table) = self.shards.checks.lock()
                && let Some(stats) = table.get_mut(&key)
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
                    backend = %t.backend_name,
                    server = %t.server_name,
                    state = if up { "UP" } else { "DOWN" },
                    reason = %result.as_ref().err().map_or("checks pass", String::as_str),
                    "server state changed"
                );
                self.shards.broadcast_health(t.backend, t.server, up);
            }
        }
    }
}

/// What passive health needs to know of a backend (names for logs, the backoff).
#[derive(Debug, Clone)]
pub struct PassiveInfo {
    pub backend_name: String,
    pub passive: Option<Passive>,
    pub servers: HashMap<ServerId, String>,
}

/// Passive health settings by backend id, refreshed when the configuration changes.
pub type PassiveTable = Arc<Mutex<HashMap<BackendId, PassiveInfo>>>;

pub fn passive_table(config: &Config, registry: &Registry) -> HashMap<BackendId, PassiveInfo> {
    config
        .backends
        .iter()
        .filter_map(|b| {
            let id = registry.find_backend(&b.name)?;
            Some((
                id,
                PassiveInfo {
                    backend_name: b.name.clone(),
                    passive: b.passive,
                    servers: b
                        .servers
                        .iter()
                        .filter_map(|s| Some((registry.find_server(id, &s.name)?, s.name.clone())))
                        .collect(),
                },
            ))
        })
        .collect()
}

/// Passive health: a shard saw `passive.failures` consecutive failures from a server. Mark it DOWN
/// on every shard, and UP again after `passive.backoff` (active checks, if configured, take it
/// down again if it is still failing). One ejection per server at a time.
pub fn eject(
    table: &PassiveTable,
    ejected: &Arc<Mutex<HashSet<(BackendId, ServerId)>>>,
    shards: &Arc<Shards>,
    backend: BackendId,
    server: ServerId,
) {
    let info = table.lock().ok().and_then(|t| t.get(&backend).cloned());
    let Some(info) = info else {
        return;
    };
    let (Some(passive), Some(name)) = (info.passive, info.servers.get(&server).cloned()) else {
        return;
    };
    if let Ok(mut set) = ejected.lock()
        && !set.insert((backend, server))
    {
        return;
    }
    tracing::warn!(
        backend = %info.backend_name,
        server = %name,
        backoff_ms = passive.backoff.as_millis() as u64,
        "server ejected after consecutive failures"
    );
    shards.broadcast_health(backend, server, false);
    let (shards, ejected) = (Arc::clone(shards), Arc::clone(ejected));
    tokio::spawn(async move {
        tokio::time::sleep(passive.backoff).await;
        tracing::info!(server = %name, "ejection over; server back in rotation");
        shards.broadcast_health(backend, server, true);
        if let Ok(mut set) = ejected.lock() {
            set.remove(&(backend, server));
        }
    });
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
