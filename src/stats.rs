//! Owns: per-shard counters (plain integers owned by one shard thread) and their merge into the
//! totals the admin listener reports.
//! Must not: be shared between threads. A shard copies its counters into a message when the
//! control thread asks; totals are computed on demand, never maintained on the hot path.
//!
//! Field names are documented API (docs/metrics.md): renaming one breaks users.
//!
//! Latency histograms travel with the counters: each shard's copy of a backend's, server's and
//! listener's histograms (`crate::latency`, never serialized as they are) are merged here with the
//! counters, and the merged view carries their quantiles (`latency` in the JSON).

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::h2::CalmReason;
use crate::latency::{Latency, LatencyScope, LatencySet, LatencySetSnapshot};

/// Counters of one shard. Every field is a monotonically increasing count except `active`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    /// Client connections accepted (including those closed at once as `rejected`).
    pub accepted: u64,
    /// Client connections open now.
    pub active: u64,
    /// Client connections fully closed (both sockets closed, every resource returned).
    pub closed: u64,
    /// Bytes read from clients and written to servers.
    pub bytes_client_to_server: u64,
    /// Bytes read from servers and written to clients.
    pub bytes_server_to_client: u64,
    /// Of the two above, bytes moved by splice(2) through a pipe instead of the buffer ring.
    pub bytes_spliced: u64,
    /// Server connects that failed (refused, unreachable, reset).
    pub connect_errors: u64,
    /// Server connects that did not complete within `timeouts.connect`.
    pub connect_timeouts: u64,
    /// Connects retried on another server after a failure or timeout (`retries`).
    pub connect_retries: u64,
    /// Connections closed because a side was idle longer than its idle timeout.
    pub idle_timeouts: u64,
    /// Clients closed at accept: the shard was at `conns_per_shard_max` or draining.
    pub rejected: u64,
    /// Connections closed by the drain deadline during shutdown.
    pub drain_closed: u64,
    /// SNI passthrough: connections closed because they did not start with a valid TLS
    /// ClientHello, or no route matched its server name.
    pub tls_peek_rejected: u64,
    /// Connections on `accept_proxy` listeners closed for a missing or malformed PROXY header.
    pub proxy_rejected: u64,
    /// HTTP/2 client connections opened (ALPN `h2` or prior-knowledge h2c).
    pub h2_connections: u64,
    /// HTTP/2 streams the clients opened (each one request).
    pub h2_streams: u64,
    /// HTTP/2 streams refused (REFUSED_STREAM): past SETTINGS_MAX_CONCURRENT_STREAMS open at
    /// once, or opened after our GOAWAY.
    pub h2_streams_refused: u64,
    /// RST_STREAM frames received from HTTP/2 clients.
    pub h2_resets_received: u64,
    /// RST_STREAM frames sent to HTTP/2 clients (their errors, backend failures, abandoned
    /// request bodies).
    pub h2_resets_sent: u64,
    /// GOAWAY frames sent (drain, reload, idle, connection errors).
    pub h2_goaway_sent: u64,
    /// GOAWAY frames received from HTTP/2 clients.
    pub h2_goaway_received: u64,
    /// HTTP/2 frames that cost a token of the glitch bucket (SETTINGS after the first, PING,
    /// PRIORITY, empty DATA or CONTINUATION, frames on long-closed streams, refused streams),
    /// whether or not the bucket ran dry.
    pub h2_glitches: u64,
    /// HTTP/2 streams reset (CANCEL) after `client_idle` with their response stalled on a send
    /// window the client kept shut (the stream's or the connection's); each is also one of
    /// `idle_timeouts`.
    pub h2_window_timeouts: u64,
    /// HTTP/2 connections ended with ENHANCE_YOUR_CALM, by the defence that fired: the total
    /// `h2_calm_closes` and one `h2_calm_closes_<reason>` each (serialized flat).
    #[serde(flatten)]
    pub h2_calm_closes: CalmCounts,
    /// TLS termination: handshakes completed with a full key exchange.
    pub tls_handshakes: u64,
    /// TLS termination: handshakes that resumed a session (session ID, stateful or stateless
    /// ticket).
    pub tls_resumed: u64,
    /// TLS termination: handshakes that failed (bad ClientHello, not TLS, no common version or
    /// suite, alert) or broke off.
    pub tls_handshake_errors: u64,
    /// TLS termination: handshakes not finished within `handshake_timeout`.
    pub tls_handshake_timeouts: u64,
    /// TLS connections currently open (handshaking or established; client and upstream sides).
    pub tls_active: u64,
    /// Upstream TLS (`[backend.tls]`): handshakes with servers completed.
    pub tls_upstream_handshakes: u64,
    /// Upstream TLS: connects or handshakes with servers that failed (refused, timed out,
    /// certificate not verified); the request sees a closed server connection (502 / retry).
    pub tls_upstream_errors: u64,
    /// Detect listeners: connections classified as HTTP, TLS, and anything else (TCP backend).
    pub detect_http: u64,
    pub detect_tls: u64,
    pub detect_other: u64,
    /// Detect listeners: connections closed because their protocol has no destination
    /// configured (or the client left before sending anything).
    pub detect_rejected: u64,
    /// HTTP: requests answered (by a backend or by ringway itself), by status class.
    pub http_requests: u64,
    #[serde(flatten)]
    pub http_status: StatusCounts,
    /// HTTP: responses ringway generated itself (400, 404, 408, 413, 431, 502, 503, 504, ...).
    pub http_local_responses: u64,
    /// HTTP: backend responses refused as malformed (answered 502 or cut off).
    pub http_bad_responses: u64,
    /// HTTP: request heads not complete within `timeouts.http_request` (408).
    pub http_request_timeouts: u64,
    /// HTTP: backends that did not start a response within `timeouts.server_response` (504).
    pub http_server_timeouts: u64,
    /// HTTP: requests sent on a pooled keep-alive backend connection instead of a new one.
    pub http_pool_reused: u64,
    /// HTTP: requests replayed on a new connection after a pooled one closed before answering.
    pub http_pool_retries: u64,
    /// HTTP: connections switched to a tunnel by 101 Switching Protocols (WebSocket).
    pub http_tunnels: u64,
    /// HTTP: requests that waited in a backend queue (every server at maxconn).
    pub http_queued: u64,
    /// HTTP: requests answered 503 after `queue_timeout` in a queue.
    pub http_queue_timeouts: u64,
}

/// HTTP responses by status class (serialized flat: `http_1xx` ... `http_5xx`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub http_1xx: u64,
    pub http_2xx: u64,
    pub http_3xx: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
}

impl StatusCounts {
    pub fn count(&mut self, status: u16) {
        match status / 100 {
            1 => self.http_1xx += 1,
            2 => self.http_2xx += 1,
            3 => self.http_3xx += 1,
            4 => self.http_4xx += 1,
            _ => self.http_5xx += 1,
        }
    }

    pub fn merge(&mut self, o: &StatusCounts) {
        self.http_1xx += o.http_1xx;
        self.http_2xx += o.http_2xx;
        self.http_3xx += o.http_3xx;
        self.http_4xx += o.http_4xx;
        self.http_5xx += o.http_5xx;
    }
}

/// HTTP/2 connections ended with ENHANCE_YOUR_CALM, one count per [`CalmReason`]. The total is
/// their sum, computed, so the two can never disagree. Serialized flat, as `h2_calm_closes` (the
/// total) then `h2_calm_closes_rapid_reset` ... `h2_calm_closes_hpack` (docs/metrics.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CalmCounts {
    pub rapid_reset: u64,
    pub local_resets: u64,
    pub continuation: u64,
    pub settings_flood: u64,
    pub ping_flood: u64,
    pub glitches: u64,
    pub hpack: u64,
}

impl CalmCounts {
    pub fn count(&mut self, reason: CalmReason) {
        *self.slot(reason) += 1;
    }

    pub fn get(&self, reason: CalmReason) -> u64 {
        // One match for both ways (`slot`), on a copy of seven integers.
        let mut c = *self;
        *c.slot(reason)
    }

    /// Every ENHANCE_YOUR_CALM close, whatever its reason.
    pub fn total(&self) -> u64 {
        CalmReason::ALL.iter().map(|&r| self.get(r)).sum()
    }

    pub fn merge(&mut self, o: &CalmCounts) {
        for r in CalmReason::ALL {
            *self.slot(r) += o.get(r);
        }
    }

    fn slot(&mut self, reason: CalmReason) -> &mut u64 {
        match reason {
            CalmReason::RapidReset => &mut self.rapid_reset,
            CalmReason::LocalResets => &mut self.local_resets,
            CalmReason::Continuation => &mut self.continuation,
            CalmReason::SettingsFlood => &mut self.settings_flood,
            CalmReason::PingFlood => &mut self.ping_flood,
            CalmReason::Glitches => &mut self.glitches,
            CalmReason::Hpack => &mut self.hpack,
        }
    }
}

impl Serialize for CalmCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1 + CalmReason::ALL.len()))?;
        m.serialize_entry("h2_calm_closes", &self.total())?;
        for r in CalmReason::ALL {
            m.serialize_entry(&format!("h2_calm_closes_{}", r.as_str()), &self.get(r))?;
        }
        m.end()
    }
}

impl ShardStats {
    /// Counts one answered HTTP request with `status`.
    pub fn count_status(&mut self, status: u16) {
        self.http_requests += 1;
        self.http_status.count(status);
    }
}

/// Requests one server of a backend answered, by status class (HTTP listeners).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerStats {
    pub name: String,
    pub address: String,
    /// UP, DOWN (health checks) or DRAIN (weight 0).
    pub state: String,
    pub backup: bool,
    /// Balancing weight in effect (0: draining).
    pub weight: u32,
    /// Connections open to the server now (summed over shards).
    pub active: u64,
    /// Times the balancer chose this server.
    pub selected: u64,
    pub requests: u64,
    #[serde(flatten)]
    pub status: StatusCounts,
    /// HTTP: request body bytes of this server's answered requests (as the access log's
    /// `bytes_received`).
    pub bytes_client_to_server: u64,
    /// HTTP: response bytes (head and body) of this server's answered requests, sent to clients.
    pub bytes_server_to_client: u64,
    /// Health check results (filled by the control thread; absent without `health_check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<CheckStats>,
    /// Request time of this server's answered requests (a shard's copy, then the merge).
    #[serde(skip)]
    pub request_latency: Option<Latency>,
    /// Quantiles of `request_latency` (`{"request": {...}}`), merged view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySetSnapshot>,
}

/// Check results per (backend name, server name); written by the check tasks and read by the
/// admin listener, both on the control thread (never by a shard).
pub type CheckTable =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), CheckStats>>>;

/// What /stats shows of one server's active health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckStats {
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Why the last failed check failed (empty when the last check passed).
    pub last_check_error: String,
    pub transitions: u64,
    pub up: bool,
}

impl ServerStats {
    pub fn count_status(&mut self, status: u16) {
        self.requests += 1;
        self.status.count(status);
    }

    fn merge(&mut self, o: &ServerStats) {
        self.requests += o.requests;
        self.active += o.active;
        self.selected += o.selected;
        self.status.merge(&o.status);
        self.bytes_client_to_server += o.bytes_client_to_server;
        self.bytes_server_to_client += o.bytes_server_to_client;
        merge_latency(&mut self.request_latency, &o.request_latency);
    }
}

fn merge_latency(sum: &mut Option<Latency>, other: &Option<Latency>) {
    match (sum.as_mut(), other) {
        (Some(s), Some(o)) => s.merge(o),
        (None, Some(o)) => *sum = Some(o.clone()),
        (_, None) => {}
    }
}

fn merge_set(sum: &mut Option<LatencySet>, other: &Option<LatencySet>) {
    match (sum.as_mut(), other) {
        (Some(s), Some(o)) => s.merge(o),
        (None, Some(o)) => *sum = Some(o.clone()),
        (_, None) => {}
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackendStats {
    pub name: String,
    /// HTTP requests waiting in this backend's queues now (summed over shards).
    pub queue: u64,
    pub servers: Vec<ServerStats>,
    /// This backend's histograms (a shard's copy, then the merge); `None` with histograms off.
    #[serde(skip)]
    pub latency_set: Option<LatencySet>,
    /// Quantiles of `latency_set`, merged view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySetSnapshot>,
}

/// One listener: its connections, and for HTTP its answered requests (counted when each one
/// ends, as the access log sees it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListenerStats {
    pub name: String,
    /// `tcp`, `http` or `detect`.
    pub mode: String,
    /// Client connections accepted on this listener (including those rejected at once).
    pub accepted: u64,
    /// Client connections of this listener open now.
    pub active: u64,
    /// HTTP: requests answered (by a backend or by ringway itself).
    pub http_requests: u64,
    #[serde(flatten)]
    pub http_status: StatusCounts,
    /// HTTP: request body bytes received from clients.
    pub bytes_client_to_server: u64,
    /// HTTP: response bytes (head and body) sent to clients.
    pub bytes_server_to_client: u64,
    #[serde(skip)]
    pub latency_set: Option<LatencySet>,
    /// Quantiles of `latency_set`, merged view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySetSnapshot>,
}

impl ListenerStats {
    fn merge(&mut self, o: &ListenerStats) {
        self.accepted += o.accepted;
        self.active += o.active;
        self.http_requests += o.http_requests;
        self.http_status.merge(&o.http_status);
        self.bytes_client_to_server += o.bytes_client_to_server;
        self.bytes_server_to_client += o.bytes_server_to_client;
        merge_set(&mut self.latency_set, &o.latency_set);
    }
}

impl ShardStats {
    /// Adds `other` into `self` (for totals across shards).
    pub fn merge(&mut self, other: &ShardStats) {
        self.accepted += other.accepted;
        self.active += other.active;
        self.closed += other.closed;
        self.bytes_client_to_server += other.bytes_client_to_server;
        self.bytes_server_to_client += other.bytes_server_to_client;
        self.bytes_spliced += other.bytes_spliced;
        self.connect_errors += other.connect_errors;
        self.connect_timeouts += other.connect_timeouts;
        self.connect_retries += other.connect_retries;
        self.idle_timeouts += other.idle_timeouts;
        self.rejected += other.rejected;
        self.drain_closed += other.drain_closed;
        self.tls_peek_rejected += other.tls_peek_rejected;
        self.proxy_rejected += other.proxy_rejected;
        self.h2_connections += other.h2_connections;
        self.h2_streams += other.h2_streams;
        self.h2_streams_refused += other.h2_streams_refused;
        self.h2_resets_received += other.h2_resets_received;
        self.h2_resets_sent += other.h2_resets_sent;
        self.h2_goaway_sent += other.h2_goaway_sent;
        self.h2_goaway_received += other.h2_goaway_received;
        self.h2_glitches += other.h2_glitches;
        self.h2_window_timeouts += other.h2_window_timeouts;
        self.h2_calm_closes.merge(&other.h2_calm_closes);
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        self.tls_handshake_errors += other.tls_handshake_errors;
        self.tls_handshake_timeouts += other.tls_handshake_timeouts;
        self.tls_active += other.tls_active;
        self.tls_upstream_handshakes += other.tls_upstream_handshakes;
        self.tls_upstream_errors += other.tls_upstream_errors;
        self.detect_http += other.detect_http;
        self.detect_tls += other.detect_tls;
        self.detect_other += other.detect_other;
        self.detect_rejected += other.detect_rejected;
        self.http_requests += other.http_requests;
        self.http_status.merge(&other.http_status);
        self.http_local_responses += other.http_local_responses;
        self.http_bad_responses += other.http_bad_responses;
        self.http_request_timeouts += other.http_request_timeouts;
        self.http_server_timeouts += other.http_server_timeouts;
        self.http_pool_reused += other.http_pool_reused;
        self.http_pool_retries += other.http_pool_retries;
        self.http_tunnels += other.http_tunnels;
        self.http_queued += other.http_queued;
        self.http_queue_timeouts += other.http_queue_timeouts;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    pub shard: usize,
    #[serde(flatten)]
    pub stats: ShardStats,
    /// Per backend and server request counts (HTTP listeners).
    pub backends: Vec<BackendStats>,
    pub listeners: Vec<ListenerStats>,
}

/// The document served at `GET /stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub shards: usize,
    pub uptime_ms: u64,
    pub total: ShardStats,
    /// Per backend and server, summed over shards.
    pub backends: Vec<BackendStats>,
    /// Per listener, summed over shards.
    pub listeners: Vec<ListenerStats>,
    pub per_shard: Vec<ShardReport>,
}

impl StatsReport {
    /// Sums the shards' reports. Backends and servers are matched by name (every shard lists the
    /// same ones, in file order, but a reload may reach one shard before another).
    pub fn from_shards(mut reports: Vec<ShardReport>, uptime_ms: u64) -> StatsReport {
        reports.sort_by_key(|r| r.shard);
        let mut total = ShardStats::default();
        let mut backends: Vec<BackendStats> = Vec::new();
        let mut listeners: Vec<ListenerStats> = Vec::new();
        for r in &mut reports {
            total.merge(&r.stats);
            for l in &r.listeners {
                match listeners.iter_mut().find(|x| x.name == l.name) {
                    Some(sum) => sum.merge(l),
                    None => listeners.push(l.clone()),
                }
            }
            for b in &r.backends {
                let i = match backends.iter().position(|x| x.name == b.name) {
                    Some(i) => i,
                    None => {
                        backends.push(BackendStats {
                            name: b.name.clone(),
                            ..BackendStats::default()
                        });
                        backends.len() - 1
                    }
                };
                let Some(sum) = backends.get_mut(i) else {
                    continue;
                };
                sum.queue += b.queue;
                merge_set(&mut sum.latency_set, &b.latency_set);
                for s in &b.servers {
                    let j = match sum.servers.iter().position(|x| x.name == s.name) {
                        Some(j) => j,
                        None => {
                            sum.servers.push(ServerStats {
                                name: s.name.clone(),
                                address: s.address.clone(),
                                state: s.state.clone(),
                                backup: s.backup,
                                weight: s.weight,
                                ..ServerStats::default()
                            });
                            sum.servers.len() - 1
                        }
                    };
                    if let Some(x) = sum.servers.get_mut(j) {
                        x.merge(s);
                    }
                }
            }
        }
        // The merged histograms stay with the merged view (for /metrics); the shards' copies
        // are not needed any more.
        for r in &mut reports {
            for l in &mut r.listeners {
                l.latency_set = None;
            }
            for b in &mut r.backends {
                b.latency_set = None;
                for s in &mut b.servers {
                    s.request_latency = None;
                }
            }
        }
        for l in &mut listeners {
            l.latency = l
                .latency_set
                .as_ref()
                .map(|set| set.snapshot(LatencyScope::Listener));
        }
        for b in &mut backends {
            b.latency = b
                .latency_set
                .as_ref()
                .map(|set| set.snapshot(LatencyScope::Backend));
            for s in &mut b.servers {
                s.latency = s.request_latency.as_ref().map(|l| LatencySetSnapshot {
                    request: Some(l.snapshot()),
                    ..LatencySetSnapshot::default()
                });
            }
        }
        StatsReport {
            shards: reports.len(),
            uptime_ms,
            total,
            backends,
            listeners,
            per_shard: reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_shard() {
        let a = ShardStats {
            accepted: 3,
            active: 1,
            bytes_spliced: 10,
            ..ShardStats::default()
        };
        let b = ShardStats {
            accepted: 4,
            active: 2,
            bytes_spliced: 5,
            ..ShardStats::default()
        };
        let report = StatsReport::from_shards(
            vec![
                ShardReport {
                    shard: 1,
                    stats: b,
                    backends: Vec::new(),
                    listeners: Vec::new(),
                },
                ShardReport {
                    shard: 0,
                    stats: a,
                    backends: Vec::new(),
                    listeners: Vec::new(),
                },
            ],
            7,
        );
        assert_eq!(report.total.accepted, 7);
        assert_eq!(report.total.active, 3);
        assert_eq!(report.total.bytes_spliced, 15);
        assert_eq!(report.per_shard[0].shard, 0);
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(json.contains("\"per_shard\":[{\"shard\":0,\"accepted\":3"));
    }

    #[test]
    fn calm_closes_are_their_reasons_summed_and_serialized_flat() {
        let mut a = ShardStats::default();
        a.h2_calm_closes.count(CalmReason::RapidReset);
        a.h2_calm_closes.count(CalmReason::RapidReset);
        a.h2_calm_closes.count(CalmReason::Hpack);
        let mut b = ShardStats::default();
        b.h2_calm_closes.count(CalmReason::PingFlood);
        a.merge(&b);
        assert_eq!(a.h2_calm_closes.total(), 4);
        assert_eq!(a.h2_calm_closes.get(CalmReason::RapidReset), 2);
        let json = serde_json::to_value(a).unwrap_or_default();
        let field = |name: &str| json.get(name).and_then(|v| v.as_u64());
        assert_eq!(field("h2_calm_closes"), Some(4));
        for (reason, n) in [
            ("rapid_reset", 2),
            ("local_resets", 0),
            ("continuation", 0),
            ("settings_flood", 0),
            ("ping_flood", 1),
            ("glitches", 0),
            ("hpack", 1),
        ] {
            assert_eq!(
                field(&format!("h2_calm_closes_{reason}")),
                Some(n),
                "{json}"
            );
        }
    }
}
