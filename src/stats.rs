//! Owns: per-shard counters (plain integers owned by one shard thread) and their merge into the
//! totals the admin listener reports.
//! Must not: be shared between threads. A shard copies its counters into a message when the
//! control thread asks; totals are computed on demand, never maintained on the hot path.
//!
//! Field names are documented API (docs/metrics.md): renaming one breaks users.

use serde::Serialize;

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
    /// Connections closed because a side was idle longer than its idle timeout.
    pub idle_timeouts: u64,
    /// Clients closed at accept: the shard was at `conns_per_shard_max` or draining.
    pub rejected: u64,
    /// Connections closed by the drain deadline during shutdown.
    pub drain_closed: u64,
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
        self.idle_timeouts += other.idle_timeouts;
        self.rejected += other.rejected;
        self.drain_closed += other.drain_closed;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    pub shard: usize,
    #[serde(flatten)]
    pub stats: ShardStats,
}

/// The document served at `GET /stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub shards: usize,
    pub uptime_ms: u64,
    pub total: ShardStats,
    pub per_shard: Vec<ShardReport>,
}

impl StatsReport {
    pub fn from_shards(mut reports: Vec<ShardReport>, uptime_ms: u64) -> StatsReport {
        reports.sort_by_key(|r| r.shard);
        let mut total = ShardStats::default();
        for r in &reports {
            total.merge(&r.stats);
        }
        StatsReport {
            shards: reports.len(),
            uptime_ms,
            total,
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
                ShardReport { shard: 1, stats: b },
                ShardReport { shard: 0, stats: a },
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
}
