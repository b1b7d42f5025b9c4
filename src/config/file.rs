//! Owns: the raw shape of the TOML file, exactly as written, with source spans kept so that
//! validation can point at `file:line:column`.
//! Must not: apply defaults or check meaning; that is `validate.rs`.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub global: Option<Spanned<GlobalFile>>,
    pub timeouts: Option<Spanned<TimeoutsFile>>,
    #[serde(default)]
    pub listener: Vec<Spanned<ListenerFile>>,
    #[serde(default)]
    pub backend: Vec<Spanned<BackendFile>>,
}

/// `shards = "auto"` or `shards = 4`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ShardsFile {
    Count(i64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalFile {
    pub shards: Option<Spanned<ShardsFile>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub recv_buffer_size: Option<Spanned<String>>,
    pub recv_buffer_count: Option<Spanned<i64>>,
    pub pipe_pool_max: Option<Spanned<i64>>,
    pub pipe_size: Option<Spanned<String>>,
    pub conns_per_shard_max: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub server_idle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: Option<Spanned<String>>,
    pub bind: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub splice: Option<Spanned<String>>,
    pub backlog: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub name: Option<Spanned<String>>,
    pub servers: Option<Spanned<Vec<Spanned<ServerFile>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
}

/// Every key the file may contain, by table, for did-you-mean suggestions.
pub const KNOWN_KEYS: &[&str] = &[
    "global",
    "timeouts",
    "listener",
    "backend",
    "shards",
    "drain_timeout",
    "admin",
    "recv_buffer_size",
    "recv_buffer_count",
    "pipe_pool_max",
    "pipe_size",
    "conns_per_shard_max",
    "connect",
    "client_idle",
    "server_idle",
    "name",
    "bind",
    "mode",
    "splice",
    "backlog",
    "servers",
    "address",
    "weight",
];
