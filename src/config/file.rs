//! Owns: the raw shape of the TOML file, exactly as written, with source spans kept so that
//! validation can point at `file:line:column`; and reading it out of the spanned TOML document
//! ([`read`]), collecting every unknown key and every value of the wrong type instead of stopping
//! at the first, as a `deny_unknown_fields` serde derive would.
//! Must not: apply defaults or check meaning; that is `validate.rs`.

use std::collections::HashSet;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

#[derive(Debug, Default)]
pub struct FileConfig {
    pub global: Option<Spanned<GlobalFile>>,
    pub admin: Option<Spanned<AdminFile>>,
    pub timeouts: Option<Spanned<TimeoutsFile>>,
    pub listener: Vec<Spanned<ListenerFile>>,
    pub backend: Vec<Spanned<BackendFile>>,
    pub provider: Option<Spanned<ProviderFile>>,
}

/// `[provider]`: sources of routes outside this file.
#[derive(Debug, Default)]
pub struct ProviderFile {
    pub redis: Option<Spanned<RedisFile>>,
}

/// `[provider.redis]` (docs/fleet.md).
#[derive(Debug, Default)]
pub struct RedisFile {
    pub address: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub tls_ca_file: Option<Spanned<String>>,
    pub db: Option<Spanned<i64>>,
    pub key_prefix: Option<Spanned<String>>,
    pub listeners: Option<Spanned<Vec<String>>>,
    pub cache_file: Option<Spanned<String>>,
    pub startup_wait: Option<Spanned<String>>,
    pub resync_interval: Option<Spanned<String>>,
    pub coalesce: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub command_timeout: Option<Spanned<String>>,
    pub reconnect_backoff_max: Option<Spanned<String>>,
    /// `[provider.redis.backend]`: the `[[backend]]` keys every route's backend takes.
    pub backend: Option<Spanned<BackendFile>>,
}

/// `shards = "auto"` or `shards = 4`.
#[derive(Debug)]
pub enum ShardsFile {
    Count(i64),
    Word(String),
}

#[derive(Debug, Default)]
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

/// `[admin]`: where the admin API listens and what guards its writes.
#[derive(Debug, Default)]
pub struct AdminFile {
    pub bind: Option<Spanned<String>>,
    pub socket: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub server_idle: Option<Spanned<String>>,
    pub http_request: Option<Spanned<String>>,
    pub http_keep_alive: Option<Spanned<String>>,
    pub server_response: Option<Spanned<String>>,
    pub tunnel: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct ListenerFile {
    pub name: Option<Spanned<String>>,
    pub bind: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub splice: Option<Spanned<String>>,
    pub backlog: Option<Spanned<i64>>,
    // mode = "http" only:
    pub route: Vec<Spanned<RouteFile>>,
    pub x_forwarded_for: Option<Spanned<bool>>,
    pub x_real_ip: Option<Spanned<bool>>,
    pub x_forwarded_proto: Option<Spanned<bool>>,
    pub forwarded: Option<Spanned<bool>>,
    pub head_size_max: Option<Spanned<String>>,
    pub body_size_max: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_format: Option<Spanned<String>>,
    /// HTTP/2 to clients: ALPN `h2` on TLS, prior-knowledge h2c on plain listeners.
    pub http2: Option<Spanned<bool>>,
    /// HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS.
    pub http2_streams_max: Option<Spanned<i64>>,
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
#[derive(Debug, Default)]
pub struct TlsFile {
    /// Shorthand for one `[[listener.tls.certificate]]`.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub certificate: Vec<Spanned<TlsCertFile>>,
    pub min_version: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<String>>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub session_cache: Option<Spanned<i64>>,
    pub tickets: Option<Spanned<bool>>,
    pub ticket_rotate: Option<Spanned<String>>,
    pub ticket_key_file: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct TlsCertFile {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Server names this certificate answers (exact or `*.` wildcard); default: its DNS SANs.
    pub names: Option<Spanned<Vec<String>>>,
    /// Answer clients whose SNI matches no certificate (default: the first certificate).
    pub default: Option<Spanned<bool>>,
}

/// `[[listener.route]]`: every key given must match (AND); rules are tried in file order.
#[derive(Debug, Default)]
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

#[derive(Debug, Default)]
pub struct HeaderFile {
    pub name: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
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
#[derive(Debug, Default)]
pub struct UpstreamTlsFile {
    /// PEM CA certificates to verify the servers against (default: the system bundle).
    pub ca: Option<Spanned<String>>,
    /// Server name to send (SNI) and verify; default: the server's IP address.
    pub sni: Option<Spanned<String>>,
    /// `false` accepts any certificate (testing only).
    pub verify: Option<Spanned<bool>>,
}

/// `passive = { failures = 3, backoff = "10s" }`
#[derive(Debug, Default)]
pub struct PassiveFile {
    pub failures: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
}

/// `health_check = { type = "http", path = "/health", interval = "2s", rise = 2, fall = 3 }`
#[derive(Debug, Default)]
pub struct HealthCheckFile {
    /// `type`
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

#[derive(Debug, Default)]
pub struct ServerFile {
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub name: Option<Spanned<String>>,
    pub backup: Option<Spanned<bool>>,
    pub maxconn: Option<Spanned<i64>>,
    pub send_proxy: Option<Spanned<String>>,
}

/// One problem found while reading the document, at a byte span of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Range<usize>,
    pub message: String,
}

/// What [`read`] made of a document that parsed.
#[derive(Debug)]
pub struct ReadFile {
    /// Everything that has the right shape; a key that was unknown or of the wrong type is left
    /// out (read as absent), so validation still checks the rest of the file.
    pub file: FileConfig,
    /// Unknown keys and values of the wrong type, one each.
    pub problems: Vec<Problem>,
    /// `(span start of the table, key)` of keys that were given with the wrong type: already
    /// reported, so validation must not also call them missing. Top-level keys use [`ROOT`].
    pub rejected: HashSet<(usize, &'static str)>,
}

/// The "span start" of the document's root table in [`ReadFile::rejected`]: no table written in
/// the file starts there (a `[[listener]]` at the top of the file starts at 0, like the root).
pub const ROOT: usize = usize::MAX;

/// Parses `text` into the spanned TOML document, then reads every section of it. Only a TOML
/// syntax error (there is no document to walk then) is returned as `Err`.
pub fn read(text: &str) -> Result<ReadFile, Problem> {
    let doc = DeTable::parse(text).map_err(|e| Problem {
        span: e.span().unwrap_or(0..0),
        message: e.message().lines().next().unwrap_or("").trim().to_string(),
    })?;
    let mut r = Reader {
        text,
        problems: Vec::new(),
        rejected: HashSet::new(),
    };
    let mut t = Table::new(ROOT, doc.get_ref());
    let file = FileConfig {
        global: r.table(&mut t, "global", global),
        admin: r.table(&mut t, "admin", admin),
        timeouts: r.table(&mut t, "timeouts", timeouts),
        listener: r.tables(&mut t, "listener", "[[listener]] tables", listener),
        backend: r.tables(&mut t, "backend", "[[backend]] tables", backend),
        provider: r.table(&mut t, "provider", provider),
    };
    r.finish(t);
    Ok(ReadFile {
        file,
        problems: r.problems,
        rejected: r.rejected,
    })
}

fn global(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> GlobalFile {
    GlobalFile {
        shards: r.shards(t, "shards"),
        drain_timeout: r.duration(t, "drain_timeout"),
        admin: r.string(t, "admin"),
        recv_buffer_size: r.size(t, "recv_buffer_size"),
        recv_buffer_count: r.integer(t, "recv_buffer_count"),
        pipe_pool_max: r.integer(t, "pipe_pool_max"),
        pipe_size: r.size(t, "pipe_size"),
        conns_per_shard_max: r.integer(t, "conns_per_shard_max"),
        user: r.string(t, "user"),
        group: r.string(t, "group"),
    }
}

fn admin(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> AdminFile {
    AdminFile {
        bind: r.string(t, "bind"),
        socket: r.string(t, "socket"),
        token_file: r.string(t, "token_file"),
    }
}

fn provider(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> ProviderFile {
    ProviderFile {
        redis: r.table(t, "redis", redis),
    }
}

fn redis(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> RedisFile {
    RedisFile {
        address: r.string(t, "address"),
        username: r.string(t, "username"),
        password_file: r.string(t, "password_file"),
        tls_ca_file: r.string(t, "tls_ca_file"),
        db: r.integer(t, "db"),
        key_prefix: r.string(t, "key_prefix"),
        listeners: r.strings(t, "listeners"),
        cache_file: r.string(t, "cache_file"),
        startup_wait: r.duration(t, "startup_wait"),
        resync_interval: r.duration(t, "resync_interval"),
        coalesce: r.duration(t, "coalesce"),
        connect_timeout: r.duration(t, "connect_timeout"),
        command_timeout: r.duration(t, "command_timeout"),
        reconnect_backoff_max: r.duration(t, "reconnect_backoff_max"),
        backend: r.table(t, "backend", backend),
    }
}

fn timeouts(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> TimeoutsFile {
    TimeoutsFile {
        connect: r.duration(t, "connect"),
        client_idle: r.duration(t, "client_idle"),
        server_idle: r.duration(t, "server_idle"),
        http_request: r.duration(t, "http_request"),
        http_keep_alive: r.duration(t, "http_keep_alive"),
        server_response: r.duration(t, "server_response"),
        tunnel: r.duration(t, "tunnel"),
    }
}

fn listener(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> ListenerFile {
    ListenerFile {
        name: r.string(t, "name"),
        bind: r.string(t, "bind"),
        mode: r.string(t, "mode"),
        backend: r.string(t, "backend"),
        splice: r.string(t, "splice"),
        backlog: r.integer(t, "backlog"),
        route: r.tables(t, "route", "[[listener.route]] tables", route),
        x_forwarded_for: r.boolean(t, "x_forwarded_for"),
        x_real_ip: r.boolean(t, "x_real_ip"),
        x_forwarded_proto: r.boolean(t, "x_forwarded_proto"),
        forwarded: r.boolean(t, "forwarded"),
        head_size_max: r.size(t, "head_size_max"),
        body_size_max: r.size(t, "body_size_max"),
        access_log: r.string(t, "access_log"),
        access_log_format: r.string(t, "access_log_format"),
        http2: r.boolean(t, "http2"),
        http2_streams_max: r.integer(t, "http2_streams_max"),
        peek_timeout: r.duration(t, "peek_timeout"),
        accept_proxy: r.boolean(t, "accept_proxy"),
        tls: r.table(t, "tls", tls),
        tcp_backend: r.string(t, "tcp_backend"),
        tls_backend: r.string(t, "tls_backend"),
    }
}

fn tls(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> TlsFile {
    TlsFile {
        cert: r.string(t, "cert"),
        key: r.string(t, "key"),
        certificate: r.tables(
            t,
            "certificate",
            "[[listener.tls.certificate]] tables",
            tls_certificate,
        ),
        min_version: r.string(t, "min_version"),
        alpn: r.strings(t, "alpn"),
        handshake_timeout: r.duration(t, "handshake_timeout"),
        session_cache: r.integer(t, "session_cache"),
        tickets: r.boolean(t, "tickets"),
        ticket_rotate: r.duration(t, "ticket_rotate"),
        ticket_key_file: r.string(t, "ticket_key_file"),
    }
}

fn tls_certificate(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> TlsCertFile {
    TlsCertFile {
        cert: r.string(t, "cert"),
        key: r.string(t, "key"),
        names: r.strings(t, "names"),
        default: r.boolean(t, "default"),
    }
}

fn route(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> RouteFile {
    RouteFile {
        sni: r.string(t, "sni"),
        host: r.string(t, "host"),
        host_suffix: r.string(t, "host_suffix"),
        path: r.string(t, "path"),
        path_prefix: r.string(t, "path_prefix"),
        method: r.string(t, "method"),
        header: r.table(t, "header", |r, t| HeaderFile {
            name: r.string(t, "name"),
            value: r.string(t, "value"),
        }),
        backend: r.string(t, "backend"),
    }
}

fn backend(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> BackendFile {
    BackendFile {
        name: r.string(t, "name"),
        servers: r.array_of_tables(
            t,
            "servers",
            "tables, e.g. [ { address = \"127.0.0.1:9001\" } ]",
            server,
        ),
        idle_conns_max: r.integer(t, "idle_conns_max"),
        idle_timeout: r.duration(t, "idle_timeout"),
        balance: r.string(t, "balance"),
        hash_key: r.string(t, "hash_key"),
        retries: r.integer(t, "retries"),
        redispatch: r.boolean(t, "redispatch"),
        health_check: r.table(t, "health_check", health_check),
        sticky_cookie: r.string(t, "sticky_cookie"),
        queue_max: r.integer(t, "queue_max"),
        queue_timeout: r.duration(t, "queue_timeout"),
        passive: r.table(t, "passive", |r, t| PassiveFile {
            failures: r.integer(t, "failures"),
            backoff: r.duration(t, "backoff"),
        }),
        tls: r.table(t, "tls", |r, t| UpstreamTlsFile {
            ca: r.string(t, "ca"),
            sni: r.string(t, "sni"),
            verify: r.boolean(t, "verify"),
        }),
    }
}

fn health_check(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> HealthCheckFile {
    HealthCheckFile {
        kind: r.string(t, "type"),
        interval: r.duration(t, "interval"),
        timeout: r.duration(t, "timeout"),
        rise: r.integer(t, "rise"),
        fall: r.integer(t, "fall"),
        method: r.string(t, "method"),
        path: r.string(t, "path"),
        expect: r.string(t, "expect"),
        host: r.string(t, "host"),
    }
}

fn server(r: &mut Reader<'_>, t: &mut Table<'_, '_>) -> ServerFile {
    ServerFile {
        address: r.string(t, "address"),
        weight: r.integer(t, "weight"),
        name: r.string(t, "name"),
        backup: r.boolean(t, "backup"),
        maxconn: r.integer(t, "maxconn"),
        send_proxy: r.string(t, "send_proxy"),
    }
}

type Entry<'a, 'i> = (&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>);

/// One table of the document being read: each key is taken at most once; what is left when the
/// table is finished is unknown.
struct Table<'a, 'i> {
    /// Where the table starts in the text ([`ROOT`] for the document): its key in `rejected`.
    start: usize,
    rest: Vec<Entry<'a, 'i>>,
    /// Every key the reader asked for: the candidates of a did-you-mean.
    asked: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    fn new(start: usize, table: &'a DeTable<'i>) -> Self {
        Table {
            start,
            rest: table.iter().collect(),
            asked: Vec::new(),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.asked.push(key);
        let i = self.rest.iter().position(|(k, _)| k.get_ref() == key)?;
        Some(self.rest.swap_remove(i).1)
    }
}

struct Reader<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    rejected: HashSet<(usize, &'static str)>,
}

impl Reader<'_> {
    fn problem(&mut self, span: Range<usize>, message: String) {
        self.problems.push(Problem { span, message });
    }

    /// Reports `value` (of key `key` in `t`) as not being `expected`.
    fn wrong_type(
        &mut self,
        t: &Table<'_, '_>,
        key: &'static str,
        value: &Spanned<DeValue<'_>>,
        expected: &str,
    ) {
        self.rejected.insert((t.start, key));
        let found = self.found(value);
        self.problem(
            value.span(),
            format!("{key}: expected {expected}, found {found}"),
        );
    }

    /// `integer `5``: the kind of a value and, when short, its text as written.
    fn found(&self, value: &Spanned<DeValue<'_>>) -> String {
        let kind = value.get_ref().type_str();
        let written = self.text.get(value.span()).unwrap_or("");
        match value.get_ref() {
            DeValue::Array(_) => "an array".to_string(),
            DeValue::Table(_) => "a table".to_string(),
            _ if written.len() <= 40 && !written.contains('\n') => format!("{kind} `{written}`"),
            _ => format!("a {kind}"),
        }
    }

    fn string_with(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        expected: &str,
    ) -> Option<Spanned<String>> {
        let v = t.take(key)?;
        if let DeValue::String(s) = v.get_ref() {
            return Some(Spanned::new(v.span(), s.to_string()));
        }
        self.wrong_type(t, key, v, expected);
        None
    }

    fn string(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<String>> {
        self.string_with(t, key, "a string")
    }

    /// Durations carry their unit (STYLE.md §9): `connect = 5` is refused with that hint.
    fn duration(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<String>> {
        self.string_with(
            t,
            key,
            "a duration string with its unit, e.g. \"5s\" or \"250ms\"",
        )
    }

    fn size(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<String>> {
        self.string_with(t, key, "a size string, e.g. \"16KiB\" or \"512\"")
    }

    fn integer(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<i64>> {
        let v = t.take(key)?;
        if !matches!(v.get_ref(), DeValue::Integer(_)) {
            self.wrong_type(t, key, v, "an integer");
            return None;
        }
        self.integer_value(t, key, v)
            .map(|n| Spanned::new(v.span(), n))
    }

    /// An integer value as i64 (TOML allows any size; none of ours needs more).
    fn integer_value(
        &mut self,
        t: &Table<'_, '_>,
        key: &'static str,
        v: &Spanned<DeValue<'_>>,
    ) -> Option<i64> {
        let DeValue::Integer(n) = v.get_ref() else {
            return None;
        };
        if let Ok(n) = i64::from_str_radix(n.as_str(), n.radix()) {
            return Some(n);
        }
        self.rejected.insert((t.start, key));
        let written = self.text.get(v.span()).unwrap_or(n.as_str()).to_string();
        self.problem(v.span(), format!("{key}: {written} is too large"));
        None
    }

    fn boolean(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<bool>> {
        let v = t.take(key)?;
        if let DeValue::Boolean(b) = v.get_ref() {
            return Some(Spanned::new(v.span(), *b));
        }
        self.wrong_type(t, key, v, "true or false");
        None
    }

    /// `shards = "auto"` or `shards = 4`.
    fn shards(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Spanned<ShardsFile>> {
        let v = t.take(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), ShardsFile::Word(s.to_string()))),
            DeValue::Integer(_) => self
                .integer_value(t, key, v)
                .map(|n| Spanned::new(v.span(), ShardsFile::Count(n))),
            _ => {
                self.wrong_type(t, key, v, "\"auto\" or an integer");
                None
            }
        }
    }

    /// An array of strings; elements of another type are reported (each) and left out.
    fn strings(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
    ) -> Option<Spanned<Vec<String>>> {
        let v = t.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(t, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                _ => {
                    let found = self.found(item);
                    self.problem(
                        item.span(),
                        format!("{key}: every element must be a string, found {found}"),
                    );
                }
            }
        }
        Some(Spanned::new(v.span(), out))
    }

    /// A table (`[key]` or `key = { ... }`), read by `read`, its unknown keys reported.
    fn table<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &mut Table<'_, '_>) -> T,
    ) -> Option<Spanned<T>> {
        let v = t.take(key)?;
        let DeValue::Table(inner) = v.get_ref() else {
            self.wrong_type(t, key, v, "a table");
            return None;
        };
        let mut inner = Table::new(v.span().start, inner);
        let value = read(self, &mut inner);
        self.finish(inner);
        Some(Spanned::new(v.span(), value))
    }

    /// An array of tables (`[[key]]` or `key = [ { ... }, ... ]`) with its own span; elements
    /// that are not tables are reported and left out.
    fn array_of_tables<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        expected: &str,
        mut read: impl FnMut(&mut Self, &mut Table<'_, '_>) -> T,
    ) -> Option<Spanned<Vec<Spanned<T>>>> {
        let v = t.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(t, key, v, &format!("an array of {expected}"));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            let DeValue::Table(inner) = item.get_ref() else {
                let found = self.found(item);
                self.problem(
                    item.span(),
                    format!("{key}: every element must be a table, found {found}"),
                );
                continue;
            };
            let mut inner = Table::new(item.span().start, inner);
            let value = read(self, &mut inner);
            self.finish(inner);
            out.push(Spanned::new(item.span(), value));
        }
        Some(Spanned::new(v.span(), out))
    }

    fn tables<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        expected: &str,
        read: impl FnMut(&mut Self, &mut Table<'_, '_>) -> T,
    ) -> Vec<Spanned<T>> {
        self.array_of_tables(t, key, expected, read)
            .map(Spanned::into_inner)
            .unwrap_or_default()
    }

    /// Every key of `t` not taken is unknown: a typo never falls back to a default.
    fn finish(&mut self, t: Table<'_, '_>) {
        for (k, _) in t.rest {
            let field = k.get_ref().as_ref();
            let mut message = format!("unknown field `{field}`");
            match super::validate::did_you_mean(field, &t.asked) {
                Some(best) => {
                    // The typo stands for `best`: do not also call `best` missing.
                    self.rejected.insert((t.start, best));
                    message.push_str(&format!(", did you mean `{best}`?"));
                }
                None => message.push_str(&format!("; expected one of {}", t.asked.join(", "))),
            }
            self.problem(k.span(), message);
        }
    }
}
