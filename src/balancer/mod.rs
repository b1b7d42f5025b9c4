//! Owns: the choice of server for a new connection, per shard.
//! Must not: do I/O, read the clock, or see other shards. Each shard owns its own balancer state;
//! nothing here is shared.
//!
//! A balancer yields candidates in preference order ([`Balancer::pick`] then, on failure, the
//! caller may ask again), so the balancing issue can add least-connections, p2c and consistent
//! hashing behind the same trait.

mod round_robin;

pub use round_robin::SmoothWeightedRoundRobin;

/// One server as a balancer sees it: its configured weight. Index = position in the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
}

pub trait Balancer {
    /// Returns the index of the server to try next, or `None` when no server can be picked
    /// (every weight is 0).
    fn pick(&mut self) -> Option<usize>;
}
