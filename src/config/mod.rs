//! Owns: the validated configuration that every other module reads.
//! Must not: do I/O beyond reading the config file, or know about sockets, rings, threads or
//! TLS (a pure leaf: nothing here imports `tls`, `shard` or `control`).
//!
//! Pipeline (STYLE.md §10): TOML text -> `file` (the spanned TOML document read into raw structs,
//! every unknown key and wrong type collected, spans kept) -> `validate` -> [`Config`]. Paths of
//! files the config names are [`Located`]; `tls::resolve` reads those files, and
//! `ringway::load_config` runs all of it: that is what `ringway check` runs.

pub mod diff;
pub mod file;
pub mod fragment;
pub mod units;
pub mod validate;

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::{
    Checked, ConfigError, Diagnostic, SYSTEM_CA_BUNDLE, check_str, load_file, load_str, read_file,
};

/// A value from the config file with where it was written (1-based line, column in
/// characters), for checks made after validation that must still point at `file:line:column`:
/// `tls::resolve` reads the certificate, key and CA files at these paths. Derefs to the value.
/// Two located values are equal when their values are: where a line moved in the file is not a
/// change of configuration (`config::diff`).
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Located<T>) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Located<T> {}

impl<T> Located<T> {
    /// A diagnostic at this value's location.
    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A fully validated configuration. Every reference (listener -> backend) is resolved to an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[provider.redis]`; routes from it are merged in by `provider::merge`.
    pub provider: Option<RedisRoutes>,
    pub global: Global,
    pub timeouts: Timeouts,
    pub listeners: Vec<Listener>,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// One shard per online CPU.
    Auto,
    Count(u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub shards: Shards,
    /// How long live connections may keep going after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// Admin HTTP listener on TCP (`[admin] bind`, or `[global] admin`); `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// Admin HTTP listener on a unix socket (`[admin] socket`), created with mode 0600: writes
    /// there need no token.
    pub admin_socket: Option<PathBuf>,
    /// `[admin] token_file`: where the bearer token for admin writes on TCP is read from.
    pub admin_token_file: Option<Located<PathBuf>>,
    /// The token read from `admin_token_file` (by `ringway::load_config`; `None` until then).
    pub admin_token: Option<AdminToken>,
    /// Size of one provided buffer in each shard's buffer ring.
    pub recv_buffer_bytes: u32,
    /// Number of buffers in each shard's buffer ring (a power of two).
    pub recv_buffer_count: u16,
    /// Pipes (one per spliced direction) each shard keeps for reuse.
    pub pipe_pool_max: u32,
    /// Size requested for each pipe with F_SETPIPE_SZ.
    pub pipe_bytes: u32,
    /// Connections a shard accepts at most; beyond it new clients are closed at once.
    pub conns_per_shard_max: u32,
    /// Started as root: switch to this user (and `group`, default the user's primary group)
    /// once the listeners are bound, before any connection is served.
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub client_idle: Duration,
    pub server_idle: Duration,
    /// HTTP: a request head must be complete this long after its first byte (408 otherwise).
    pub http_request: Duration,
    /// HTTP: an idle client connection between requests is closed after this long.
    pub http_keep_alive: Duration,
    /// HTTP: the backend must start its response this long after the request was sent (504).
    pub server_response: Duration,
    /// HTTP: an Upgrade tunnel (WebSocket) with no byte either way for this long is closed.
    pub tunnel: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
    /// Peek the first bytes: TLS (terminate or pass through), HTTP, or anything else (TCP).
    Detect,
}

/// `mode = "detect"`: where each kind of client goes. HTTP clients (and, with `tls`, decrypted
/// TLS clients) use the listener's HTTP settings (`Listener::http`).
#[derive(Debug, Clone, PartialEq)]
pub struct Detect {
    /// Clients that send neither an HTTP request line nor a TLS ClientHello within
    /// `peek_timeout` (or send nothing at all).
    pub tcp_backend: Option<usize>,
    /// Without `tls` termination: TLS clients are tunnelled untouched to this backend.
    pub tls_backend: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// One certificate chain and key of a TLS-terminating listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsCert {
    pub cert: Located<PathBuf>,
    pub key: Located<PathBuf>,
    /// Lower-case server names, exact or `*.` wildcard: as given, or (`names_given` false) the
    /// certificate's DNS SANs, filled in by `tls::resolve` when it reads the certificate.
    pub names: Vec<String>,
    /// `names` was written in the file.
    pub names_given: bool,
}

/// `[listener.tls]`: TLS termination.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsListener {
    pub certificates: Vec<TlsCert>,
    /// Index into `certificates` used when the SNI matches none (or is absent).
    pub default_cert: usize,
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order (HTTP listeners: `http/1.1`).
    pub alpn: Vec<String>,
    pub handshake_timeout: Duration,
    /// Sessions each shard remembers for session-ID (and TLS 1.3 stateful) resumption; 0 = off.
    pub session_cache: u32,
    /// Stateless session tickets, keys shared by all shards and rotated every `ticket_rotate`.
    pub tickets: bool,
    pub ticket_rotate: Duration,
    /// 32+ bytes of secret from which ticket keys are derived (share it between ringway
    /// processes or across restarts); default: random per process. Read by `tls::resolve`.
    pub ticket_key_file: Option<Located<PathBuf>>,
}

/// Where a listener's access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// NCSA combined plus ringway fields (see docs/logging.md).
    Combined,
    Json,
}

/// What a `mode = "http"` listener adds to a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpListener {
    /// Rules in file order plus the default backend (`backend = ...` on the listener).
    pub router: crate::router::Router,
    pub x_forwarded_for: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
    pub forwarded: bool,
    /// A request or response head larger than this is refused (431 / 502).
    pub head_bytes_max: u32,
    /// A request body larger than this is refused with 413; `None` = unlimited.
    pub body_bytes_max: Option<u64>,
    pub access_log: AccessLog,
    pub access_log_format: AccessLogFormat,
    /// Every connection starts with a PROXY header (v1 or v2) from a trusted load balancer;
    /// its source address is the client for headers, logs, hashing and stickiness.
    pub accept_proxy: bool,
    /// HTTP/2 to clients (`http2 = true`): TLS offers ALPN `h2` first, plain connections that
    /// open with the HTTP/2 preface speak h2c (prior knowledge); everything else stays HTTP/1.1.
    pub http2: bool,
    /// HTTP/2 streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub http2_streams_max: u32,
}

/// When a direction switches from recv/send through the buffer ring to splice(2) through a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceMode {
    /// Switch once a single recv fills a whole buffer (a bulk transfer is under way).
    Auto,
    /// Splice from the first byte.
    Always,
    /// Never splice: always copy through the buffer ring.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub mode: Mode,
    /// Index into `Config::backends`: the backend of a TCP listener, the default backend of an
    /// HTTP listener (`None`: requests that match no route get 404).
    pub backend: Option<usize>,
    pub splice: SpliceMode,
    /// listen(2) backlog.
    pub backlog: u32,
    /// Set for `mode = "http"`.
    pub http: Option<HttpListener>,
    /// TCP listeners with `sni` routes: route by the TLS ClientHello's server name without
    /// decrypting (SNI passthrough).
    pub sni: Option<SniRouting>,
    /// Connections start with a PROXY header from a trusted balancer (TCP and HTTP).
    pub accept_proxy: bool,
    /// TCP listeners: how long to wait for a PROXY header or ClientHello before connecting;
    /// detect listeners: how long to wait for the first bytes.
    pub peek_timeout: Duration,
    /// TLS termination: the decrypted stream feeds this listener's TCP or HTTP path.
    pub tls: Option<TlsListener>,
    /// Set for `mode = "detect"`.
    pub detect: Option<Detect>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SniRouting {
    /// Rules match on `host` (the SNI); `default_backend` catches the rest (also clients that
    /// send no SNI); without it those connections are closed.
    pub router: crate::router::Router,
    /// How long to wait for a complete ClientHello (HAProxy `tcp-request inspect-delay`).
    pub peek_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub servers: Vec<Server>,
    /// HTTP: idle keep-alive connections each shard keeps per server for reuse.
    pub idle_conns_max: u32,
    /// HTTP: a pooled connection unused this long is closed.
    pub idle_timeout: Duration,
    pub balance: Balance,
    /// What consistent hashing hashes (`balance = "maglev"`).
    pub hash_key: HashKey,
    /// Further attempts after a failed connect (or, for replayable HTTP requests, a failure before
    /// any response byte).
    pub retries: u32,
    /// Retries go to another server (HAProxy `option redispatch`); otherwise to the same one.
    pub redispatch: bool,
    /// Active health checks of every server, run once per server by the control thread.
    pub health_check: Option<HealthCheck>,
    /// HTTP sticky sessions: ringway inserts this cookie naming the server (HAProxy `cookie NAME
    /// insert indirect nocache`) and sends requests that carry it back to that server while UP.
    pub sticky_cookie: Option<String>,
    /// HTTP requests waiting for a server under its maxconn, per shard; beyond it: 503.
    pub queue_max: u32,
    /// How long a request may wait in the queue before a 503.
    pub queue_timeout: Duration,
    /// Passive health (outlier ejection).
    pub passive: Option<Passive>,
    /// TLS to the servers (re-encryption); `None` = plain TCP.
    pub tls: Option<UpstreamTls>,
}

/// `[backend.tls]`: ringway is a TLS client of the servers.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// CA certificates (PEM) the servers' chains must lead to: the `ca` file, or the system
    /// bundle ([`SYSTEM_CA_BUNDLE`], located at the `[backend.tls]` header). Read by
    /// `tls::resolve`.
    pub ca: Located<PathBuf>,
    /// No `ca` was given: `ca` is the system bundle.
    pub ca_is_system: bool,
    /// Name sent as SNI and checked against the certificate; `None`: the server's IP address.
    pub sni: Option<String>,
    /// Verify the servers' certificates (default true).
    pub verify: bool,
}

/// `failures` consecutive connect errors or 5xx responses from a server (seen by one shard) mark
/// it DOWN on every shard for `backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    pub failures: u32,
    pub backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a DOWN server UP.
    pub rise: u32,
    /// Consecutive failures that take an UP server DOWN.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// The TCP connect succeeds.
    Tcp,
    /// An HTTP request gets a status in `expect` (inclusive range).
    Http {
        method: String,
        path: String,
        host: Option<String>,
        expect: (u16, u16),
    },
}

/// Balancing algorithm of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    PowerOfTwo,
    Maglev,
}

/// The key consistent hashing maps to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (TCP and HTTP).
    Source,
    /// A request header's value (HTTP); requests without it fall back to the client address.
    Header(String),
    /// A cookie's value (HTTP); requests without it fall back to the client address.
    Cookie(String),
    /// The request path without query (HTTP).
    Path,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub address: SocketAddr,
    /// 0 drains the server (never picked); default 1.
    pub weight: u32,
    /// Unique within the backend; used in logs, stats and consistent hashing. Default: the address.
    pub name: String,
    /// Used only when no primary server is up.
    pub backup: bool,
    /// Most connections (HTTP: requests in flight) to this server; 0 = unlimited. Split across
    /// shards: each shard allows ceil(maxconn / shards).
    pub maxconn: u32,
    /// Send a PROXY protocol header first on every connection to this server.
    pub send_proxy: Option<crate::proxy_protocol::ProxyVersion>,
    /// Set by the runtime API only (a file always says `Ready`; a reload puts it back).
    pub admin: AdminState,
}

/// `[provider.redis]`: HTTP routes read from Redis in hipache's schema (docs/fleet.md). Durations
/// left out take the provider's defaults; `provider::redis` checks the ranges (at load time, so
/// `ringway check` reports them).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisRoutes {
    /// Where the `[provider.redis]` table starts: checks made after validation point here.
    pub at: Located<()>,
    pub address: Located<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub db: u32,
    pub key_prefix: String,
    /// Indexes of the HTTP listeners that get the routes.
    pub listeners: Vec<usize>,
    pub cache_file: Option<PathBuf>,
    /// At start, how long to wait for the first sync before saying READY with cached routes.
    pub startup_wait: Duration,
    pub resync_interval: Option<Duration>,
    pub coalesce: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub reconnect_backoff_max: Option<Duration>,
    /// `[provider.redis.backend]`: what every route's backend is made from (its name and servers
    /// are placeholders, replaced per route).
    pub backend: Backend,
}

/// A server's administrative state, as HAProxy's `set server ... state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In rotation (subject to health and weight).
    #[default]
    Ready,
    /// No new connections or requests, except sticky ones; open ones finish; idle pooled
    /// connections are closed. Health checks go on.
    Drain,
    /// Out of rotation entirely (sticky requests too) and out of health checks.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// The bearer token that admin writes need (`[admin] token_file`), read when the file is
/// loaded. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Compares in time independent of where the bytes differ (the length is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == presented.len() && bool::from(self.0.ct_eq(presented))
    }
}

impl Config {
    /// Shard count after resolving `auto` against the online CPU count.
    pub fn shard_count(&self, online_cpus: usize) -> usize {
        match self.global.shards {
            Shards::Auto => online_cpus.max(1),
            Shards::Count(n) => usize::from(n).max(1),
        }
    }

    /// Parses and validates the file without reading the certificate files it names;
    /// `ringway::load_config` does both.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load_file(path)
    }
}
