//! ringway: an io_uring, thread-per-core load balancer and reverse proxy.
//!
//! Module map (dependencies point inward; pure leaves never touch sockets, clocks or rings; see
//! docs/architecture.md):
//! - pure: [`config`] (and `config::diff`), [`http1`], [`router`], [`balancer`], [`session`]
//!   (sans-IO HTTP/1.1 and TCP sessions), [`upstream`] (per-shard backends, pools, errors),
//!   [`ids`], [`timer`], [`stats`], [`latency`] (per-shard HDR histograms), [`metrics`]
//!   (Prometheus exposition), [`detect`], [`proxy_protocol`].
//! - shard data plane: [`shard`] (one pinned thread per core: the io_uring driver, its slab of
//!   connections, TLS inline), [`pipes`] (per-shard pipe pool for splice(2)).
//! - control plane: [`control`] (startup, signals, drain), [`plan`] (config -> per-shard ops),
//!   [`bus`] (messages to and from shards), [`admin`] (with [`dashboard`]: /metrics and the
//!   stats page), [`health`], [`tls`] (certificate loading and
//!   rustls configurations), [`upgrade`], [`sd_listen`] and [`adopt`] (inheriting listening
//!   sockets from an old ringway or from systemd), [`inherit`] (adopting them at start) and
//!   [`takeover`] (the binary upgrade: socket table, new binary, hand-over).
//! - edges: [`startup`] (environment checks and explained failures), [`tune`], [`demo`].

pub mod access_log;
pub mod admin;
pub mod adopt;
pub mod api;
pub mod authority;
pub mod balancer;
pub mod bus;
pub mod byteset;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod detect;
pub mod h2;
pub mod health;
pub mod http1;
pub mod ids;
pub mod inherit;
pub mod latency;
pub mod live;
pub mod metrics;
pub mod pipes;
pub mod plan;
pub mod provider;
pub mod proxy_protocol;
pub mod router;
pub mod sd_listen;
pub mod session;
pub mod shard;
pub mod startup;
pub mod stats;
pub mod takeover;
pub mod timer;
pub mod tls;
pub mod tune;
pub mod upgrade;
pub mod upstream;

use std::path::Path;

/// Loads a config file the way `ringway check`, `ringway run` (and reload) need it: parse and
/// validate (`config`, no I/O beyond this one file), then read the certificate, key and CA
/// files it names (`tls::resolve`). Every problem of both steps comes back together, in file
/// order, as `FILE:LINE:COLUMN: message`.
pub fn load_config(path: &Path) -> Result<config::Config, config::ConfigError> {
    let text = config::read_file(path)?;
    load_config_str(&text, &path.display().to_string())
}

/// [`load_config`] on text already read; `file_name` names it in errors, and relative paths in
/// it are taken from its directory.
pub fn load_config_str(text: &str, file_name: &str) -> Result<config::Config, config::ConfigError> {
    let mut checked = config::check_str(text, file_name);
    if let Some(c) = checked.config.as_mut() {
        checked.diagnostics.extend(tls::resolve::read_files(c));
        checked.diagnostics.extend(admin::read_token(c));
        checked.diagnostics.extend(provider::check_config(c));
    }
    checked.into_result(file_name)
}
