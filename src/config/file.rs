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
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub server_idle: Option<Spanned<String>>,
    pub http_request: Option<Spanned<String>>,
    pub http_keep_alive: Option<Spanned<String>>,
    pub server_response: Option<Spanned<String>>,
    pub tunnel: Option<Spanned<String>>,
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
    // mode = "http" only:
    #[serde(default)]
    pub route: Vec<Spanned<RouteFile>>,
    pub x_forwarded_for: Option<Spanned<bool>>,
    pub x_real_ip: Option<Spanned<bool>>,
    pub x_forwarded_proto: Option<Spanned<bool>>,
    pub forwarded: Option<Spanned<bool>>,
    pub head_size_max: Option<Spanned<String>>,
    pub body_size_max: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_format: Option<Spanned<String>>,
    /// TCP listeners with SNI routes: how long to wait for the ClientHello.
    pub peek_timeout: Option<Spanned<String>>,
    /// Connections start with a PROXY header from a trusted load balancer.
    pub accept_proxy: Option<Spanned<bool>>,
    /// TLS termination (mode = "tcp", "http" or "detect").
    pub tls: Option<Spanned<TlsFile>>,
    /// mode = "detect": where clients that speak neither HTTP nor TLS go.
    pub tcp_backend: Option<Spanned<String>>,
    /// mode = "detect" without a `tls` block: TLS clients are tunnelled untouched here.
    pub tls_backend: Option<Spanned<String>>,
}

/// `[listener.tls]`: certificates and session resumption of a TLS-terminating listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Shorthand for one `[[listener.tls.certificate]]`.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub certificate: Vec<Spanned<TlsCertFile>>,
    pub min_version: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<String>>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub session_cache: Option<Spanned<i64>>,
    pub tickets: Option<Spanned<bool>>,
    pub ticket_rotate: Option<Spanned<String>>,
    pub ticket_key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertFile {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Server names this certificate answers (exact or `*.` wildcard); default: its DNS SANs.
    pub names: Option<Spanned<Vec<String>>>,
    /// Answer clients whose SNI matches no certificate (default: the first certificate).
    pub default: Option<Spanned<bool>>,
}

/// `[[listener.route]]`: every key given must match (AND); rules are tried in file order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// TCP listeners: the TLS ClientHello's server name (SNI passthrough).
    pub sni: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub host_suffix: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub header: Option<Spanned<HeaderFile>>,
    pub backend: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFile {
    pub name: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub name: Option<Spanned<String>>,
    pub servers: Option<Spanned<Vec<Spanned<ServerFile>>>>,
    pub idle_conns_max: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub balance: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub redispatch: Option<Spanned<bool>>,
    pub health_check: Option<Spanned<HealthCheckFile>>,
    pub sticky_cookie: Option<Spanned<String>>,
    pub queue_max: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub passive: Option<Spanned<PassiveFile>>,
    /// TLS to the servers (re-encryption).
    pub tls: Option<Spanned<UpstreamTlsFile>>,
}

/// `[backend.tls]`: connect to the servers over TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// PEM CA certificates to verify the servers against (default: the system bundle).
    pub ca: Option<Spanned<String>>,
    /// Server name to send (SNI) and verify; default: the server's IP address.
    pub sni: Option<Spanned<String>>,
    /// `false` accepts any certificate (testing only).
    pub verify: Option<Spanned<bool>>,
}

/// `passive = { failures = 3, backoff = "10s" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveFile {
    pub failures: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
}

/// `health_check = { type = "http", path = "/health", interval = "2s", rise = 2, fall = 3 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub name: Option<Spanned<String>>,
    pub backup: Option<Spanned<bool>>,
    pub maxconn: Option<Spanned<i64>>,
    pub send_proxy: Option<Spanned<String>>,
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
    "route",
    "x_forwarded_for",
    "x_real_ip",
    "x_forwarded_proto",
    "forwarded",
    "head_size_max",
    "body_size_max",
    "access_log",
    "access_log_format",
    "host",
    "host_suffix",
    "path",
    "path_prefix",
    "method",
    "header",
    "value",
    "http_request",
    "http_keep_alive",
    "server_response",
    "tunnel",
    "idle_conns_max",
    "idle_timeout",
    "balance",
    "hash_key",
    "retries",
    "redispatch",
    "backup",
    "health_check",
    "type",
    "interval",
    "timeout",
    "rise",
    "fall",
    "expect",
    "sticky_cookie",
    "maxconn",
    "queue_max",
    "queue_timeout",
    "passive",
    "sni",
    "peek_timeout",
    "send_proxy",
    "accept_proxy",
    "failures",
    "backoff",
    "tls",
    "tcp_backend",
    "tls_backend",
    "cert",
    "key",
    "certificate",
    "min_version",
    "alpn",
    "handshake_timeout",
    "session_cache",
    "tickets",
    "ticket_rotate",
    "ticket_key_file",
    "names",
    "default",
    "ca",
    "verify",
    "user",
    "group",
];
