//! Owns: route providers, sources of routes outside the config file. Today one, Redis in
//! hipache's schema ([`redis`]). A provider produces [`RouteSnapshot`]s on the control thread;
//! the integrator turns each new one into configuration changes with [`diff`], which then go
//! through the same diff/apply path as a reload.
//! Must not: touch shards, the config loader or the data path. Shards never talk to Redis: a
//! Redis outage can stop route changes, never requests.
//!
//! Pure parts (no I/O, no clock): [`schema`] (what one entry means, typed errors, bounds) and
//! [`snapshot`] (snapshot, per-key update, diff). [`cache`] is the on-disk copy of the last
//! snapshot; [`redis`] is the client, the watching and the failure behaviour.
//!
//! How changes are watched, and why: keyspace notifications
//! (`PSUBSCRIBE __keyspace@<db>__:<prefix>frontend:*`), not a channel that writers publish to.
//! Existing hipache writers (`redis-cli rpush`, hipache's own tools, scripts) keep working
//! unchanged, and every write path — `RPUSH`, `LSET`, `LREM`, `DEL`, `RENAME`, `EXPIRE` expiry,
//! eviction — is announced by Redis itself, so a writer cannot forget to publish. The cost is one
//! Redis setting (`notify-keyspace-events Kgl$xe`); the provider checks it at every connect and
//! says in a warning when it is off, but never sets it (see [`redis`] for why). Notifications
//! are lossy across disconnects, so a full resync (`SCAN` + pipelined `LRANGE`) runs on every
//! connect and every `resync_interval`, and each event re-reads only its own key. docs/fleet.md
//! is the operator's side of all this.

pub mod cache;
pub mod merge;
pub mod redis;
pub mod schema;
pub mod snapshot;

pub use self::redis::{ProviderHandle, ProviderStats, RedisProviderCfg, spawn};
pub use schema::{EntryError, HostPattern, Route, parse_entry};
pub use snapshot::{KeyRead, RouteChange, RouteSnapshot, diff};

/// The provider's settings from `[provider.redis]` (defaults where a key was left out).
pub fn provider_cfg(r: &crate::config::RedisRoutes) -> RedisProviderCfg {
    let d = RedisProviderCfg::default();
    RedisProviderCfg {
        address: r.address.value.clone(),
        username: r.username.clone(),
        password_file: r.password_file.clone(),
        tls_ca_file: r.tls_ca_file.clone(),
        db: r.db,
        key_prefix: r.key_prefix.clone(),
        resync_interval: r.resync_interval.unwrap_or(d.resync_interval),
        coalesce: r.coalesce.unwrap_or(d.coalesce),
        connect_timeout: r.connect_timeout.unwrap_or(d.connect_timeout),
        command_timeout: r.command_timeout.unwrap_or(d.command_timeout),
        reconnect_backoff_max: r.reconnect_backoff_max.unwrap_or(d.reconnect_backoff_max),
    }
}

/// `ringway check`'s view of `[provider.redis]`: what the provider would refuse, located at the
/// address (for address problems) or the table.
pub fn check_config(c: &crate::config::Config) -> Option<crate::config::Diagnostic> {
    let r = c.provider.as_ref()?;
    match provider_cfg(r).validate() {
        Ok(_) => None,
        Err(
            e @ (redis::CfgError::BadAddress { .. } | redis::CfgError::CredentialsInAddress { .. }),
        ) => Some(r.address.diagnostic(format!("provider.redis {e}"))),
        Err(e) => Some(r.at.diagnostic(format!("provider.redis: {e}"))),
    }
}
