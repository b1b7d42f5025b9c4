//! ringway: an io_uring, thread-per-core load balancer and reverse proxy.
//!
//! Module map (dependencies point inward; pure leaves never touch sockets, clocks or rings):
//! - pure: [`config`], [`http1`], [`router`], [`balancer`], [`timer`], [`stats`] (plain counters and their merge).
//! - shard data plane: [`shard`] (one pinned thread per core: ring driver, listener, connections),
//!   [`pipes`] (per-shard pipe pool for splice(2)).
//! - control plane: [`control`] (signals, admin listener, talks to shards by message), [`admin`],
//!   [`provider`] (routes from Redis as snapshots, off the data path).
//! - edges: [`startup`] (environment checks and explained failures), [`demo`].

pub mod access_log;
pub mod admin;
pub mod balancer;
pub mod config;
pub mod control;
pub mod demo;
pub mod detect;
pub mod health;
pub mod http1;
pub mod ids;
pub mod pipes;
pub mod provider;
pub mod proxy_protocol;
pub mod router;
pub mod session;
pub mod shard;
pub mod startup;
pub mod stats;
pub mod timer;
pub mod tls;
pub mod tune;
pub mod upstream;
