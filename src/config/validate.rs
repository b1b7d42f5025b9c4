//! Owns: turning the raw file (`file.rs`) into a validated [`Config`]: defaults, ranges,
//! references between sections, and every error as `FILE:LINE:COLUMN: what is wrong`.
//! Must not: do I/O beyond reading the one file. Files the config names (certificates, keys,
//! CAs, ticket keys) are only recorded here, with where each was written ([`Located`]), and read
//! by `tls::resolve`; `ringway::load_config` runs both, which is what `ringway check` runs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::file::{self, FileConfig, ShardsFile};
use super::units::{parse_duration, parse_size};
use super::{
    AccessLog, AccessLogFormat, Backend, Balance, Config, Global, HashKey, HttpListener, Listener,
    Located, Mode, RedisRoutes, Server, Shards, SpliceMode, Timeouts, TlsCert, TlsListener,
    TlsVersion,
};
use super::{CheckKind, HealthCheck};
use crate::router::{HeaderMatch, HostMatch, PathMatch, Router, Rule};

/// One problem, located in the file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in one file. Displays as one `FILE:LINE:COLUMN: message` line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
    /// Set when the file could not be read at all.
    pub io: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(io) = &self.io {
            return write!(f, "{}: cannot read: {io}", self.file);
        }
        let mut first = true;
        for d in &self.diagnostics {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}:{}:{}: {}", self.file, d.line, d.column, d.message)?;
        }
        Ok(())
    }
}

pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RECV_BUFFER_BYTES: u64 = 16 * 1024;
pub const DEFAULT_RECV_BUFFER_COUNT: i64 = 512;
pub const DEFAULT_PIPE_POOL_MAX: i64 = 256;
pub const DEFAULT_PIPE_BYTES: u64 = 64 * 1024;
pub const DEFAULT_CONNS_PER_SHARD_MAX: i64 = 65_536;
pub const DEFAULT_BACKLOG: i64 = 4096;
pub const SHARDS_MAX: i64 = 1024;
pub const WEIGHT_MAX: i64 = 256;
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HTTP_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SERVER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TUNNEL_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_IDLE_CONNS_MAX: i64 = 256;
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_HEAD_BYTES_MAX: u64 = 64 * 1024;
/// HTTP/2 streams a client may have open at once, as HAProxy announces by default.
pub const DEFAULT_HTTP2_STREAMS_MAX: u32 = 100;
pub const DEFAULT_RETRIES: i64 = 2;

/// Debian's (and most distributions') CA bundle: `[backend.tls]` without `ca` verifies against it.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Reads the config file: the one read this module does.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        diagnostics: Vec::new(),
        io: Some(e.to_string()),
    })
}

/// Parses and validates the file, without reading the files it names (see [`check_str`]).
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = read_file(path)?;
    load_str(&text, &path.display().to_string())
}

/// Parses and validates `text`, without reading the files it names (see [`check_str`]).
pub fn load_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    check_str(text, file_name).into_result(file_name)
}

/// What validation built and everything it found wrong, not yet turned into a `Result`: a later
/// stage that reads the files the config names (`tls::resolve`) adds its diagnostics to these,
/// so one run reports every problem.
#[derive(Debug)]
pub struct Checked {
    /// `None` only after a TOML syntax error; otherwise as much as could be built (complete
    /// and usable only when `diagnostics` is empty).
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// The config when nothing is wrong; otherwise every diagnostic, in file order.
    pub fn into_result(mut self, file_name: &str) -> Result<Config, ConfigError> {
        if !self.diagnostics.is_empty() {
            // Stable: two problems at one position keep the order they were found in.
            self.diagnostics.sort_by_key(|d| (d.line, d.column));
            return Err(ConfigError {
                file: file_name.to_string(),
                diagnostics: self.diagnostics,
                io: None,
            });
        }
        self.config.ok_or_else(|| ConfigError {
            file: file_name.to_string(),
            diagnostics: Vec::new(),
            io: Some("no configuration".into()),
        })
    }
}

/// Parses `text` into a spanned TOML document and checks all of it: every unknown key, value of
/// the wrong type or out of range, and every bad reference between sections is one diagnostic.
/// Only a TOML syntax error stops early (there is no document to check then).
pub fn check_str(text: &str, file_name: &str) -> Checked {
    let mut v = Validator {
        text,
        diagnostics: Vec::new(),
        base: Path::new(file_name)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        rejected: HashSet::new(),
    };
    let read = match file::read(text) {
        Ok(read) => read,
        Err(syntax) => {
            v.error(syntax.span, syntax.message);
            return Checked {
                config: None,
                diagnostics: v.diagnostics,
            };
        }
    };
    for p in read.problems {
        v.error(p.span, p.message);
    }
    v.rejected = read.rejected;
    let config = v.validate(read.file);
    Checked {
        config: Some(config),
        diagnostics: v.diagnostics,
    }
}

/// The closest candidate within an edit distance of a third of the word (at least 2).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

struct Validator<'t> {
    text: &'t str,
    diagnostics: Vec<Diagnostic>,
    /// The config file's directory: relative certificate paths are taken from here.
    base: PathBuf,
    /// Keys given with the wrong type (`file::ReadFile::rejected`): reported, not missing.
    rejected: HashSet<(usize, &'static str)>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            line,
            column,
            message: message.into(),
        });
    }

    /// A path written in the file: relative to the file's directory, located where written.
    fn path(&self, value: &Spanned<String>) -> Located<PathBuf> {
        self.located(value.span(), self.base.join(value.get_ref()))
    }

    fn located<T>(&self, span: Range<usize>, value: T) -> Located<T> {
        let (line, column) = line_column(self.text, span.start);
        Located {
            value,
            line,
            column,
        }
    }

    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = value else {
            return default;
        };
        match parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.error(v.span(), format!("{key}: {e}"));
                default
            }
        }
    }

    fn size(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: u64,
        range: Range<u64>,
    ) -> u64 {
        let Some(v) = value else {
            return default;
        };
        match parse_size(v.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            Ok(n) => {
                self.error(
                    v.span(),
                    format!(
                        "{key}: {n} bytes is out of range; allowed {} to {} bytes",
                        range.start,
                        range.end - 1
                    ),
                );
                default
            }
            Err(e) => {
                self.error(v.span(), format!("{key}: {e}"));
                default
            }
        }
    }

    fn integer(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        default: i64,
        range: Range<i64>,
    ) -> i64 {
        let Some(v) = value else {
            return default;
        };
        let n = *v.get_ref();
        if range.contains(&n) {
            n
        } else {
            self.error(
                v.span(),
                format!(
                    "{key}: {n} is out of range; allowed {} to {}",
                    range.start,
                    range.end - 1
                ),
            );
            default
        }
    }

    fn address(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: `{}` is not a socket address; write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not resolved)",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn required<'a, T>(
        &mut self,
        value: &'a Option<Spanned<T>>,
        key: &'static str,
        table: &str,
        table_span: Range<usize>,
    ) -> Option<&'a Spanned<T>> {
        if value.is_none() && !self.rejected.contains(&(table_span.start, key)) {
            self.error(
                table_span,
                format!("{table} is missing required key `{key}`"),
            );
        }
        value.as_ref()
    }

    fn validate(&mut self, raw: FileConfig) -> Config {
        let mut global = self.global(raw.global.as_ref());
        self.admin(raw.admin.as_ref(), raw.global.as_ref(), &mut global);
        let timeouts = self.timeouts(raw.timeouts.as_ref());
        let backends = self.backends(&raw.backend);
        let backend_index: HashMap<&str, usize> = raw
            .backend
            .iter()
            .filter_map(|b| b.get_ref().name.as_ref())
            .enumerate()
            .map(|(i, n)| (n.get_ref().as_str(), i))
            .collect();
        let listeners = self.listeners(&raw.listener, &backend_index, &raw.backend);
        // `listener` of the wrong type was reported already.
        if raw.listener.is_empty() && !self.rejected.contains(&(file::ROOT, "listener")) {
            self.error(
                0..0,
                "no [[listener]] defined: ringway would accept nothing",
            );
        }
        let provider = raw
            .provider
            .and_then(|p| p.into_inner().redis)
            .and_then(|r| self.redis(r, &listeners));
        Config {
            provider,
            global,
            timeouts,
            listeners,
            backends,
        }
    }

    /// `[provider.redis]`: listeners must exist and route HTTP; `[provider.redis.backend]` is
    /// checked as a `[[backend]]` without `name` and `servers`.
    fn redis(
        &mut self,
        r: Spanned<file::RedisFile>,
        listeners: &[Listener],
    ) -> Option<RedisRoutes> {
        let span = r.span();
        let at = self.located(span.clone(), ());
        let mut r = r.into_inner();
        let address = match &r.address {
            Some(a) => self.located(a.span(), a.get_ref().clone()),
            None => self.located(span.clone(), "redis://127.0.0.1:6379".to_string()),
        };
        let mut wanted = Vec::new();
        if let Some(list) =
            self.required(&r.listeners, "listeners", "[provider.redis]", span.clone())
        {
            {
                for name in list.get_ref() {
                    match listeners.iter().position(|l| &l.name == name) {
                        Some(i) if listeners[i].http.is_some() => wanted.push(i),
                        Some(_) => self.error(
                            list.span(),
                            format!("listeners: `{name}` does not route HTTP (Redis routes are HTTP host rules); use an http or detect listener"),
                        ),
                        None => self.error(list.span(), format!("listeners: no listener named `{name}`")),
                    }
                }
                if list.get_ref().is_empty() {
                    self.error(list.span(), "listeners: name at least one HTTP listener");
                }
            }
        }
        let (template_span, template) = match r.backend.take() {
            Some(b) => (b.span(), b.into_inner()),
            None => (span.clone(), file::BackendFile::default()),
        };
        for (given, key) in [
            (template.name.as_ref().map(Spanned::span), "name"),
            (template.servers.as_ref().map(Spanned::span), "servers"),
        ] {
            if let Some(at) = given {
                self.error(at, format!("[provider.redis.backend] takes every [[backend]] key but `{key}`: each route gives its own"));
            }
        }
        let backend = self.backend_template(template, template_span)?;
        let dur = |v: &mut Self, value: &Option<Spanned<String>>, key: &str| {
            value
                .as_ref()
                .map(|_| v.duration(value, key, Duration::ZERO))
        };
        Some(RedisRoutes {
            at,
            address,
            username: r.username.as_ref().map(|u| u.get_ref().clone()),
            password_file: r.password_file.as_ref().map(|p| self.path(p).value),
            tls_ca_file: r.tls_ca_file.as_ref().map(|p| self.path(p).value),
            db: u32::try_from(self.integer(&r.db, "db", 0, 0..i64::from(i32::MAX) + 1))
                .unwrap_or(0),
            key_prefix: r
                .key_prefix
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            listeners: wanted,
            cache_file: r.cache_file.as_ref().map(|p| self.path(p).value),
            startup_wait: self.duration(&r.startup_wait, "startup_wait", Duration::from_secs(2)),
            resync_interval: dur(self, &r.resync_interval, "resync_interval"),
            coalesce: dur(self, &r.coalesce, "coalesce"),
            connect_timeout: dur(self, &r.connect_timeout, "connect_timeout"),
            command_timeout: dur(self, &r.command_timeout, "command_timeout"),
            reconnect_backoff_max: dur(self, &r.reconnect_backoff_max, "reconnect_backoff_max"),
            backend,
        })
    }

    /// A backend from `[provider.redis.backend]`'s keys, with a placeholder name and server (the
    /// route's replace them), checked by the same code as every `[[backend]]`.
    fn backend_template(&mut self, t: file::BackendFile, span: Range<usize>) -> Option<Backend> {
        let placeholder = file::ServerFile {
            address: Some(Spanned::new(span.clone(), "127.0.0.1:1".to_string())),
            ..file::ServerFile::default()
        };
        let raw = file::BackendFile {
            name: Some(Spanned::new(span.clone(), "redis".to_string())),
            servers: Some(Spanned::new(
                span.clone(),
                vec![Spanned::new(span.clone(), placeholder)],
            )),
            ..t
        };
        self.backends(&[Spanned::new(span, raw)]).pop()
    }

    fn global(&mut self, g: Option<&Spanned<file::GlobalFile>>) -> Global {
        let empty = file::GlobalFile::default();
        let g = g.map(|g| g.get_ref()).unwrap_or(&empty);
        let shards = match &g.shards {
            None => Shards::Auto,
            Some(s) => match s.get_ref() {
                ShardsFile::Word(w) if w == "auto" => Shards::Auto,
                ShardsFile::Count(n) if (1..=SHARDS_MAX).contains(n) => {
                    Shards::Count(u16::try_from(*n).unwrap_or(1))
                }
                ShardsFile::Count(n) => {
                    self.error(
                        s.span(),
                        format!("shards: {n} is out of range; use \"auto\" or 1 to {SHARDS_MAX}"),
                    );
                    Shards::Auto
                }
                ShardsFile::Word(w) => {
                    self.error(s.span(), format!("shards: `{w}` is not valid; use \"auto\" or a number from 1 to {SHARDS_MAX}"));
                    Shards::Auto
                }
            },
        };
        let drain_timeout = self.duration(&g.drain_timeout, "drain_timeout", DEFAULT_DRAIN_TIMEOUT);
        let admin = g.admin.as_ref().and_then(|a| self.address(a, "admin"));
        let recv_buffer_bytes = self.size(
            &g.recv_buffer_size,
            "recv_buffer_size",
            DEFAULT_RECV_BUFFER_BYTES,
            4096..(1 << 20) + 1,
        );
        let count = self.integer(
            &g.recv_buffer_count,
            "recv_buffer_count",
            DEFAULT_RECV_BUFFER_COUNT,
            16..32_769,
        );
        let count = if count.count_ones() == 1 {
            count
        } else {
            if let Some(v) = &g.recv_buffer_count {
                self.error(v.span(), format!("recv_buffer_count: {count} is not a power of two (the kernel's buffer ring needs one), e.g. 256, 512, 1024"));
            }
            DEFAULT_RECV_BUFFER_COUNT
        };
        let pipe_pool_max = self.integer(
            &g.pipe_pool_max,
            "pipe_pool_max",
            DEFAULT_PIPE_POOL_MAX,
            0..65_537,
        );
        let pipe_bytes = self.size(
            &g.pipe_size,
            "pipe_size",
            DEFAULT_PIPE_BYTES,
            4096..(16 << 20) + 1,
        );
        let conns = self.integer(
            &g.conns_per_shard_max,
            "conns_per_shard_max",
            DEFAULT_CONNS_PER_SHARD_MAX,
            1..10_000_001,
        );
        Global {
            shards,
            drain_timeout,
            admin,
            admin_socket: None,
            admin_token_file: None,
            admin_token: None,
            recv_buffer_bytes: u32::try_from(recv_buffer_bytes).unwrap_or(16 * 1024),
            recv_buffer_count: u16::try_from(count).unwrap_or(512),
            pipe_pool_max: u32::try_from(pipe_pool_max).unwrap_or(0),
            pipe_bytes: u32::try_from(pipe_bytes).unwrap_or(64 * 1024),
            conns_per_shard_max: u32::try_from(conns).unwrap_or(65_536),
            user: g.user.as_ref().and_then(|u| self.account_name(u, "user")),
            group: g.group.as_ref().and_then(|u| self.account_name(u, "group")),
        }
    }

    /// `[admin]` (and its older spelling `[global] admin = "IP:PORT"`). A TCP bind that is not
    /// loopback needs a token: the API's writes change what ringway serves.
    fn admin(
        &mut self,
        a: Option<&Spanned<file::AdminFile>>,
        g: Option<&Spanned<file::GlobalFile>>,
        global: &mut Global,
    ) {
        let empty = file::AdminFile::default();
        let a = a.map_or(&empty, Spanned::get_ref);
        if let Some(bind) = &a.bind {
            if let Some(old) = g.and_then(|g| g.get_ref().admin.as_ref()) {
                let (line, _) = line_column(self.text, old.span().start);
                self.error(
                    bind.span(),
                    format!("the admin address is given twice: here and as `[global] admin` on line {line}; keep one"),
                );
            } else {
                global.admin = self.address(bind, "bind");
            }
        }
        global.admin_socket = a.socket.as_ref().and_then(|p| {
            if p.get_ref().is_empty() {
                self.error(
                    p.span(),
                    "socket: give a path, e.g. \"/run/ringway/admin.sock\"",
                );
                None
            } else {
                Some(self.path(p).value)
            }
        });
        global.admin_token_file = a.token_file.as_ref().map(|p| self.path(p));
        if let (Some(addr), None) = (global.admin, &global.admin_token_file)
            && !addr.ip().is_loopback()
        {
            let span = a
                .bind
                .as_ref()
                .or_else(|| g.and_then(|g| g.get_ref().admin.as_ref()))
                .map_or(0..0, Spanned::span);
            self.error(
                span,
                format!("admin {addr} is not a loopback address: set `[admin] token_file` so that writes need a token, or bind 127.0.0.1"),
            );
        }
    }

    /// A user or group name as `useradd` accepts it (the account itself is looked up at start).
    fn account_name(&mut self, v: &Spanned<String>, key: &str) -> Option<String> {
        let name = v.get_ref();
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Some(name.clone())
        } else {
            self.error(
                v.span(),
                format!("{key} `{name}` is not a valid account name"),
            );
            None
        }
    }

    fn timeouts(&mut self, t: Option<&Spanned<file::TimeoutsFile>>) -> Timeouts {
        let Some(t) = t.map(|t| t.get_ref()) else {
            return Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                client_idle: DEFAULT_IDLE_TIMEOUT,
                server_idle: DEFAULT_IDLE_TIMEOUT,
                http_request: DEFAULT_HTTP_REQUEST_TIMEOUT,
                http_keep_alive: DEFAULT_HTTP_KEEP_ALIVE_TIMEOUT,
                server_response: DEFAULT_SERVER_RESPONSE_TIMEOUT,
                tunnel: DEFAULT_TUNNEL_TIMEOUT,
            };
        };
        let nonzero = |v: &mut Validator, value: &Option<Spanned<String>>, key: &str, default| {
            let d = v.duration(value, key, default);
            if d.is_zero()
                && let Some(s) = value
            {
                v.error(s.span(), format!("{key}: must be greater than zero"));
            }
            d
        };
        Timeouts {
            connect: nonzero(self, &t.connect, "connect", DEFAULT_CONNECT_TIMEOUT),
            client_idle: nonzero(self, &t.client_idle, "client_idle", DEFAULT_IDLE_TIMEOUT),
            server_idle: nonzero(self, &t.server_idle, "server_idle", DEFAULT_IDLE_TIMEOUT),
            http_request: nonzero(
                self,
                &t.http_request,
                "http_request",
                DEFAULT_HTTP_REQUEST_TIMEOUT,
            ),
            http_keep_alive: nonzero(
                self,
                &t.http_keep_alive,
                "http_keep_alive",
                DEFAULT_HTTP_KEEP_ALIVE_TIMEOUT,
            ),
            server_response: nonzero(
                self,
                &t.server_response,
                "server_response",
                DEFAULT_SERVER_RESPONSE_TIMEOUT,
            ),
            tunnel: nonzero(self, &t.tunnel, "tunnel", DEFAULT_TUNNEL_TIMEOUT),
        }
    }

    fn check_name(
        &mut self,
        name: &Spanned<String>,
        what: &str,
        seen: &mut HashMap<String, usize>,
    ) {
        let n = name.get_ref();
        let valid = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            self.error(
                name.span(),
                format!("{what} name `{n}` is not valid: use letters, digits, `_`, `-` and `.`"),
            );
        }
        let (line, _) = line_column(self.text, name.span().start);
        if let Some(first) = seen.insert(n.clone(), line) {
            self.error(
                name.span(),
                format!("duplicate {what} name `{n}` (first defined on line {first})"),
            );
        }
    }

    fn backends(&mut self, raw: &[Spanned<file::BackendFile>]) -> Vec<Backend> {
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for b in raw {
            let span = b.span();
            let b = b.get_ref();
            let name = match self.required(&b.name, "name", "[[backend]]", span.clone()) {
                Some(n) => {
                    self.check_name(n, "backend", &mut seen);
                    n.get_ref().clone()
                }
                None => String::new(),
            };
            let mut servers = Vec::new();
            if let Some(list) = self.required(&b.servers, "servers", "[[backend]]", span.clone()) {
                if list.get_ref().is_empty() {
                    self.error(list.span(), format!("backend `{name}` has no servers"));
                }
                let mut addrs: HashMap<SocketAddr, usize> = HashMap::new();
                let mut names: HashMap<String, usize> = HashMap::new();
                for s in list.get_ref() {
                    let sspan = s.span();
                    let s = s.get_ref();
                    let Some(a) = self.required(&s.address, "address", "server", sspan) else {
                        continue;
                    };
                    let Some(address) = self.address(a, "address") else {
                        continue;
                    };
                    let (line, _) = line_column(self.text, a.span().start);
                    if let Some(first) = addrs.insert(address, line) {
                        self.error(a.span(), format!("duplicate server address {address} in backend `{name}` (first on line {first})"));
                    }
                    let weight = self.integer(&s.weight, "weight", 1, 0..WEIGHT_MAX + 1);
                    let server_name = match &s.name {
                        Some(n) => {
                            self.check_name(n, &format!("server (backend `{name}`)"), &mut names);
                            n.get_ref().clone()
                        }
                        None => address.to_string(),
                    };
                    servers.push(Server {
                        address,
                        weight: u32::try_from(weight).unwrap_or(1),
                        name: server_name,
                        backup: s.backup.as_ref().is_some_and(|b| *b.get_ref()),
                        maxconn: u32::try_from(self.integer(
                            &s.maxconn,
                            "maxconn",
                            0,
                            0..10_000_001,
                        ))
                        .unwrap_or(0),
                        send_proxy: s.send_proxy.as_ref().and_then(|v| match v.get_ref().as_str() {
                            "v1" => Some(crate::proxy_protocol::ProxyVersion::V1),
                            "v2" => Some(crate::proxy_protocol::ProxyVersion::V2),
                            other => {
                                self.error(v.span(), format!("send_proxy `{other}` is not valid; use \"v1\" or \"v2\""));
                                None
                            }
                        }),
                        admin: super::AdminState::Ready,
                    });
                }
                if !servers.is_empty() && servers.iter().all(|s| s.weight == 0) {
                    self.error(
                        list.span(),
                        format!(
                            "backend `{name}`: every server has weight 0, nothing can be picked"
                        ),
                    );
                }
            }
            let idle_conns_max = self.integer(
                &b.idle_conns_max,
                "idle_conns_max",
                DEFAULT_IDLE_CONNS_MAX,
                0..65_537,
            );
            let idle_timeout =
                self.duration(&b.idle_timeout, "idle_timeout", DEFAULT_POOL_IDLE_TIMEOUT);
            let balance = match b.balance.as_ref().map(|v| (v, v.get_ref().as_str())) {
                None | Some((_, "round_robin")) => Balance::RoundRobin,
                Some((_, "least_conn")) => Balance::LeastConn,
                Some((_, "p2c")) => Balance::PowerOfTwo,
                Some((_, "maglev")) => Balance::Maglev,
                Some((v, other)) => {
                    let mut msg = format!(
                        "balance `{other}` is not valid; use \"round_robin\", \"least_conn\", \"p2c\" or \"maglev\""
                    );
                    if let Some(best) =
                        did_you_mean(other, &["round_robin", "least_conn", "p2c", "maglev"])
                    {
                        msg = format!("balance `{other}` is not valid; did you mean `{best}`?");
                    }
                    self.error(v.span(), msg);
                    Balance::RoundRobin
                }
            };
            let hash_key = match b.hash_key.as_ref() {
                None => HashKey::Source,
                Some(v) => {
                    if balance != Balance::Maglev {
                        self.error(v.span(), "hash_key applies only to balance = \"maglev\"");
                    }
                    let text = v.get_ref().as_str();
                    match text.split_once(':') {
                        None if text == "source" => HashKey::Source,
                        None if text == "path" => HashKey::Path,
                        Some(("header", h)) if !h.is_empty() && h.bytes().all(is_token_byte) => {
                            HashKey::Header(h.to_ascii_lowercase())
                        }
                        Some(("cookie", c)) if !c.is_empty() && c.bytes().all(is_token_byte) => {
                            HashKey::Cookie(c.to_string())
                        }
                        _ => {
                            self.error(v.span(), format!("hash_key `{text}` is not valid; use \"source\", \"path\", \"header:NAME\" or \"cookie:NAME\""));
                            HashKey::Source
                        }
                    }
                }
            };
            let retries = self.integer(&b.retries, "retries", DEFAULT_RETRIES, 0..11);
            let health_check = b
                .health_check
                .as_ref()
                .map(|h| self.health_check(h.get_ref()));
            out.push(Backend {
                name,
                servers,
                idle_conns_max: u32::try_from(idle_conns_max).unwrap_or(0),
                idle_timeout,
                balance,
                hash_key,
                retries: u32::try_from(retries).unwrap_or(0),
                redispatch: b.redispatch.as_ref().is_none_or(|v| *v.get_ref()),
                health_check,
                queue_max: u32::try_from(self.integer(
                    &b.queue_max,
                    "queue_max",
                    1024,
                    0..1_000_001,
                ))
                .unwrap_or(1024),
                queue_timeout: self.duration(
                    &b.queue_timeout,
                    "queue_timeout",
                    Duration::from_secs(5),
                ),
                passive: b.passive.as_ref().map(|p| {
                    let p = p.get_ref();
                    super::Passive {
                        failures: u32::try_from(self.integer(&p.failures, "failures", 3, 1..1001))
                            .unwrap_or(3),
                        backoff: self.duration(&p.backoff, "backoff", Duration::from_secs(10)),
                    }
                }),
                sticky_cookie: b.sticky_cookie.as_ref().and_then(|c| {
                    let v = c.get_ref();
                    if !v.is_empty() && v.bytes().all(is_token_byte) {
                        Some(v.clone())
                    } else {
                        self.error(
                            c.span(),
                            format!("sticky_cookie `{v}` is not a valid cookie name"),
                        );
                        None
                    }
                }),
                tls: b.tls.as_ref().map(|t| self.upstream_tls(t)),
            });
        }
        out
    }

    fn listeners(
        &mut self,
        raw: &[Spanned<file::ListenerFile>],
        backend_index: &HashMap<&str, usize>,
        backends: &[Spanned<file::BackendFile>],
    ) -> Vec<Listener> {
        let mut seen = HashMap::new();
        let mut binds: HashMap<SocketAddr, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let backend_names: Vec<&str> = backends
            .iter()
            .filter_map(|b| b.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
            .collect();
        for l in raw {
            let span = l.span();
            let l = l.get_ref();
            let name = match self.required(&l.name, "name", "[[listener]]", span.clone()) {
                Some(n) => {
                    self.check_name(n, "listener", &mut seen);
                    n.get_ref().clone()
                }
                None => String::new(),
            };
            let bind = self
                .required(&l.bind, "bind", "[[listener]]", span.clone())
                .and_then(|b| {
                    let addr = self.address(b, "bind")?;
                    let (line, _) = line_column(self.text, b.span().start);
                    if let Some(first) = binds.insert(addr, line) {
                        self.error(
                            b.span(),
                            format!(
                                "bind {addr} is already used by another listener (line {first})"
                            ),
                        );
                    }
                    Some(addr)
                });
            let mode = match l.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "tcp")) => Mode::Tcp,
                Some((_, "http")) => Mode::Http,
                Some((_, "detect")) => Mode::Detect,
                Some((m, other)) => {
                    self.error(
                        m.span(),
                        format!(
                            "mode `{other}` is not supported; use \"tcp\", \"http\" or \"detect\""
                        ),
                    );
                    Mode::Tcp
                }
            };
            let splice = match l.splice.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "auto")) => SpliceMode::Auto,
                Some((_, "always")) => SpliceMode::Always,
                Some((_, "off")) => SpliceMode::Off,
                Some((s, other)) => {
                    self.error(
                        s.span(),
                        format!(
                            "splice `{other}` is not valid; use \"auto\", \"always\" or \"off\""
                        ),
                    );
                    SpliceMode::Auto
                }
            };
            let backlog = self.integer(&l.backlog, "backlog", DEFAULT_BACKLOG, 1..1_048_577);
            let what = format!("listener `{name}`");
            let sni_routes = mode == Mode::Tcp && !l.route.is_empty();
            let backend = if mode == Mode::Tcp && !sni_routes {
                self.required(&l.backend, "backend", "[[listener]]", span.clone())
                    .map(|b| self.backend_ref(b, &what, backend_index, &backend_names))
            } else {
                l.backend
                    .as_ref()
                    .map(|b| self.backend_ref(b, &what, backend_index, &backend_names))
            };
            let http = match mode {
                Mode::Http | Mode::Detect => Some(self.http_listener(
                    l,
                    &name,
                    backend.flatten(),
                    backend_index,
                    &backend_names,
                )),
                Mode::Tcp => {
                    self.http_only_keys(l);
                    None
                }
            };
            let peek_timeout =
                self.duration(&l.peek_timeout, "peek_timeout", Duration::from_secs(5));
            let sni = sni_routes.then(|| {
                self.sni_routing(l, &name, backend.flatten(), backend_index, &backend_names)
            });
            let mut tls = l.tls.as_ref().map(|t| self.tls_listener(t, mode));
            let http2 = http.as_ref().is_some_and(|h| h.http2);
            self.http2_alpn(l, mode, http2, &mut tls);
            let detect = self.detect(l, mode, &what, tls.is_some(), backend_index, &backend_names);
            if sni_routes && let Some(t) = &l.tls {
                self.error(
                    t.span(),
                    "a tcp listener routes by `sni` without decrypting (passthrough) or terminates TLS with `tls`, not both",
                );
            }
            if mode != Mode::Tcp {
                for r in &l.route {
                    if let Some(v) = &r.get_ref().sni {
                        self.error(
                            v.span(),
                            "`sni` routes apply to mode = \"tcp\" listeners (SNI passthrough)",
                        );
                    }
                }
            }
            if mode == Mode::Http
                && let Some(v) = &l.peek_timeout
            {
                self.error(
                    v.span(),
                    "`peek_timeout` applies to mode = \"tcp\" and \"detect\" listeners",
                );
            }
            let backend = match (mode, backend) {
                (Mode::Tcp, Some(Some(b))) => Some(b),
                (Mode::Tcp, None) if sni_routes => None,
                (Mode::Http | Mode::Detect, Some(Some(b))) => Some(b),
                (Mode::Http | Mode::Detect, None) => None,
                _ => {
                    // An undefined or missing backend was already reported.
                    continue;
                }
            };
            if let Some(bind) = bind {
                out.push(Listener {
                    name,
                    bind,
                    mode,
                    backend,
                    splice,
                    backlog: u32::try_from(backlog).unwrap_or(4096),
                    http,
                    sni,
                    accept_proxy: l.accept_proxy.as_ref().is_some_and(|v| *v.get_ref()),
                    peek_timeout,
                    tls,
                    detect,
                });
            }
        }
        out
    }
}

impl Validator<'_> {
    /// `http2 = true`: mode = "http" only; TLS offers `h2` first in ALPN (RFC 9113 §3.2), so
    /// clients that speak it choose it. An `alpn` list naming `h2` without `http2` is refused:
    /// clients would pick a protocol the listener does not speak.
    fn http2_alpn(
        &mut self,
        l: &file::ListenerFile,
        mode: Mode,
        http2: bool,
        tls: &mut Option<super::TlsListener>,
    ) {
        if mode == Mode::Detect
            && let Some(v) = &l.http2
            && *v.get_ref()
        {
            self.error(
                v.span(),
                "`http2` is not supported on mode = \"detect\" listeners yet; use mode = \"http\"",
            );
            return;
        }
        if mode == Mode::Tcp {
            return;
        }
        let Some(t) = tls else {
            return;
        };
        if http2 {
            if !t.alpn.iter().any(|p| p == "h2") {
                t.alpn.insert(0, "h2".to_string());
            }
        } else if t.alpn.iter().any(|p| p == "h2")
            && let Some(a) = l.tls.as_ref().and_then(|f| f.get_ref().alpn.as_ref())
        {
            self.error(
                a.span(),
                "ALPN `h2` is offered but the listener speaks only HTTP/1.1; set `http2 = true` on the listener",
            );
        }
    }

    /// `tcp_backend` / `tls_backend`: only on detect listeners; `tls_backend` (passthrough) and
    /// `tls` (termination) exclude each other.
    fn detect(
        &mut self,
        l: &file::ListenerFile,
        mode: Mode,
        what: &str,
        terminates: bool,
        backend_index: &HashMap<&str, usize>,
        backend_names: &[&str],
    ) -> Option<super::Detect> {
        if mode != Mode::Detect {
            for (key, v) in [
                ("tcp_backend", &l.tcp_backend),
                ("tls_backend", &l.tls_backend),
            ] {
                if let Some(v) = v {
                    self.error(
                        v.span(),
                        format!("`{key}` applies only to mode = \"detect\" listeners"),
                    );
                }
            }
            return None;
        }
        if let Some(v) = &l.accept_proxy {
            self.error(
                v.span(),
                "`accept_proxy` is not supported on mode = \"detect\" listeners yet",
            );
        }
        if terminates && let Some(v) = &l.tls_backend {
            self.error(
                v.span(),
                "TLS clients are either terminated (`tls`) or passed through (`tls_backend`), not both",
            );
        }
        let tcp_backend = l
            .tcp_backend
            .as_ref()
            .and_then(|b| self.backend_ref(b, what, backend_index, backend_names));
        let tls_backend = l
            .tls_backend
            .as_ref()
            .and_then(|b| self.backend_ref(b, what, backend_index, backend_names));
        Some(super::Detect {
            tcp_backend,
            tls_backend,
        })
    }

    /// `[listener.tls]`: the certificate and key paths are recorded with their locations;
    /// `tls::resolve` reads them, so a missing file, a key that does not match its certificate
    /// or a bad PEM is still refused with its line.
    fn tls_listener(&mut self, t: &Spanned<file::TlsFile>, mode: Mode) -> TlsListener {
        let span = t.span();
        let t = t.get_ref();
        let mut certificates = Vec::new();
        let mut default_cert = None;
        let one = |v: &mut Self,
                   cert: &Option<Spanned<String>>,
                   key: &Option<Spanned<String>>,
                   names: Option<&Spanned<Vec<String>>>,
                   span: Range<usize>|
         -> Option<TlsCert> {
            let cert = v.required(cert, "cert", "TLS certificate", span.clone());
            let key = v.required(key, "key", "TLS certificate", span);
            let names = names.map(|n| {
                let mut out = Vec::new();
                for name in n.get_ref() {
                    let lower = name.to_ascii_lowercase();
                    if valid_name_pattern(&lower) {
                        out.push(lower);
                    } else {
                        v.error(
                            n.span(),
                            format!("`{name}` is not a server name (write `example.com` or `*.example.com`)"),
                        );
                    }
                }
                out
            });
            Some(TlsCert {
                cert: v.path(cert?),
                key: v.path(key?),
                names_given: names.is_some(),
                names: names.unwrap_or_default(),
            })
        };
        if (t.cert.is_some() || t.key.is_some())
            && let Some(c) = one(self, &t.cert, &t.key, None, span.clone())
        {
            certificates.push(c);
        }
        for c in &t.certificate {
            let cspan = c.span();
            let c = c.get_ref();
            if let Some(parsed) = one(self, &c.cert, &c.key, c.names.as_ref(), cspan) {
                if c.default.as_ref().is_some_and(|d| *d.get_ref()) {
                    if default_cert.is_some()
                        && let Some(d) = &c.default
                    {
                        self.error(d.span(), "only one certificate can be the default");
                    }
                    default_cert = Some(certificates.len());
                }
                certificates.push(parsed);
            }
        }
        if t.cert.is_none() && t.key.is_none() && t.certificate.is_empty() {
            self.error(
                span.clone(),
                "[listener.tls] needs a certificate: `cert` and `key`, or [[listener.tls.certificate]] tables",
            );
        }
        let min_version = match t.min_version.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "1.2")) => TlsVersion::Tls12,
            Some((_, "1.3")) => TlsVersion::Tls13,
            Some((v, other)) => {
                self.error(
                    v.span(),
                    format!("min_version `{other}` is not supported; use \"1.2\" or \"1.3\" (older versions are never offered)"),
                );
                TlsVersion::Tls12
            }
        };
        let alpn = match &t.alpn {
            Some(a) => {
                for p in a.get_ref() {
                    if p.is_empty() || p.len() > 255 {
                        self.error(
                            a.span(),
                            format!("ALPN protocol `{p}` must be 1 to 255 bytes"),
                        );
                    }
                }
                a.get_ref().clone()
            }
            None if mode == Mode::Tcp => Vec::new(),
            None => vec!["http/1.1".to_string()],
        };
        let session_cache = self.integer(&t.session_cache, "session_cache", 20_000, 0..10_000_001);
        TlsListener {
            certificates,
            default_cert: default_cert.unwrap_or(0),
            min_version,
            alpn,
            handshake_timeout: self.duration(
                &t.handshake_timeout,
                "handshake_timeout",
                Duration::from_secs(10),
            ),
            session_cache: u32::try_from(session_cache).unwrap_or(20_000),
            tickets: t.tickets.as_ref().is_none_or(|v| *v.get_ref()),
            ticket_rotate: self.duration(
                &t.ticket_rotate,
                "ticket_rotate",
                Duration::from_secs(3600),
            ),
            ticket_key_file: t.ticket_key_file.as_ref().map(|f| self.path(f)),
        }
    }

    /// `[backend.tls]`: the CA path is recorded with its location (of the table, for the system
    /// bundle); `tls::resolve` reads it.
    fn upstream_tls(&mut self, t: &Spanned<file::UpstreamTlsFile>) -> super::UpstreamTls {
        let span = t.span();
        let t = t.get_ref();
        let verify = t.verify.as_ref().is_none_or(|v| *v.get_ref());
        let ca = match &t.ca {
            Some(c) => self.path(c),
            None => self.located(span, PathBuf::from(SYSTEM_CA_BUNDLE)),
        };
        let sni = t.sni.as_ref().and_then(|s| {
            let v = s.get_ref().to_ascii_lowercase();
            if valid_name_pattern(&v) && !v.starts_with("*.") {
                Some(v)
            } else {
                self.error(
                    s.span(),
                    format!("sni `{}` is not a server name", s.get_ref()),
                );
                None
            }
        });
        super::UpstreamTls {
            ca_is_system: t.ca.is_none(),
            ca,
            sni,
            verify,
        }
    }

    /// Resolves a backend name; reports it (with a did-you-mean) when it is not defined.
    fn backend_ref(
        &mut self,
        b: &Spanned<String>,
        what: &str,
        backend_index: &HashMap<&str, usize>,
        backend_names: &[&str],
    ) -> Option<usize> {
        if let Some(i) = backend_index.get(b.get_ref().as_str()) {
            return Some(*i);
        }
        let mut msg = format!(
            "{what} uses backend `{}`, which is not defined",
            b.get_ref()
        );
        if let Some(best) = did_you_mean(b.get_ref(), backend_names) {
            msg.push_str(&format!("; did you mean `{best}`?"));
        } else if backend_names.is_empty() {
            msg.push_str("; add a [[backend]] with that name");
        }
        self.error(b.span(), msg);
        None
    }

    /// HTTP keys on a TCP listener are mistakes, not silently ignored settings.
    fn http_only_keys(&mut self, l: &file::ListenerFile) {
        let spans = [
            l.x_forwarded_for
                .as_ref()
                .map(|v| ("x_forwarded_for", v.span())),
            l.x_real_ip.as_ref().map(|v| ("x_real_ip", v.span())),
            l.x_forwarded_proto
                .as_ref()
                .map(|v| ("x_forwarded_proto", v.span())),
            l.forwarded.as_ref().map(|v| ("forwarded", v.span())),
            l.head_size_max
                .as_ref()
                .map(|v| ("head_size_max", v.span())),
            l.body_size_max
                .as_ref()
                .map(|v| ("body_size_max", v.span())),
            l.access_log.as_ref().map(|v| ("access_log", v.span())),
            l.access_log_format
                .as_ref()
                .map(|v| ("access_log_format", v.span())),
            l.http2.as_ref().map(|v| ("http2", v.span())),
            l.http2_streams_max
                .as_ref()
                .map(|v| ("http2_streams_max", v.span())),
        ];
        for (key, span) in spans.into_iter().flatten() {
            self.error(
                span,
                format!("`{key}` applies only to mode = \"http\" listeners"),
            );
        }
    }

    fn http_listener(
        &mut self,
        l: &file::ListenerFile,
        name: &str,
        default_backend: Option<usize>,
        backend_index: &HashMap<&str, usize>,
        backend_names: &[&str],
    ) -> HttpListener {
        let mut rules = Vec::with_capacity(l.route.len());
        for (n, r) in l.route.iter().enumerate() {
            let span = r.span();
            let r = r.get_ref();
            let what = format!("listener `{name}` route {}", n + 1);
            let backend = self
                .required(&r.backend, "backend", "[[listener.route]]", span.clone())
                .and_then(|b| self.backend_ref(b, &what, backend_index, backend_names));
            let host = match (&r.host, &r.host_suffix) {
                (Some(_), Some(s)) => {
                    self.error(
                        s.span(),
                        "use either `host` or `host_suffix` in one route, not both",
                    );
                    None
                }
                (Some(h), None) => self.host_pattern(h),
                (None, Some(s)) => Some(HostMatch::Suffix(s.get_ref().to_ascii_lowercase())),
                (None, None) => None,
            };
            let path = match (&r.path, &r.path_prefix) {
                (Some(_), Some(p)) => {
                    self.error(
                        p.span(),
                        "use either `path` or `path_prefix` in one route, not both",
                    );
                    None
                }
                (Some(p), None) => self.path_pattern(p).map(PathMatch::Exact),
                (None, Some(p)) => self.path_pattern(p).map(PathMatch::Prefix),
                (None, None) => None,
            };
            let method = r.method.as_ref().and_then(|m| {
                let v = m.get_ref();
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
                    Some(v.clone())
                } else {
                    self.error(
                        m.span(),
                        format!("method `{v}` is not valid: write it in upper case, e.g. \"GET\""),
                    );
                    None
                }
            });
            let mut headers = Vec::new();
            if let Some(h) = &r.header {
                let hspan = h.span();
                let h = h.get_ref();
                if let Some(n) = self.required(&h.name, "name", "header", hspan) {
                    let v = n.get_ref();
                    if v.is_empty() || !v.bytes().all(is_token_byte) {
                        self.error(
                            n.span(),
                            format!("header name `{v}` is not a valid field name"),
                        );
                    } else {
                        headers.push(HeaderMatch {
                            name: v.to_ascii_lowercase(),
                            value: h
                                .value
                                .as_ref()
                                .map(|v| v.get_ref().trim().to_ascii_lowercase()),
                        });
                    }
                }
            }
            if let Some(backend) = backend {
                rules.push(Rule {
                    host,
                    path,
                    method,
                    headers,
                    backend,
                });
            }
        }
        let flag =
            |v: &Option<Spanned<bool>>, default: bool| v.as_ref().map_or(default, |v| *v.get_ref());
        let head_bytes_max = self.size(
            &l.head_size_max,
            "head_size_max",
            DEFAULT_HEAD_BYTES_MAX,
            1024..(1 << 20) + 1,
        );
        // Bounded so that a connection's request bodies (each stream's receive window, 64 KiB)
        // stay within 16 MiB.
        let http2_streams_max = u32::try_from(self.integer(
            &l.http2_streams_max,
            "http2_streams_max",
            i64::from(DEFAULT_HTTP2_STREAMS_MAX),
            1..257,
        ))
        .unwrap_or(DEFAULT_HTTP2_STREAMS_MAX);
        if let Some(v) = &l.http2_streams_max
            && !flag(&l.http2, false)
        {
            self.error(
                v.span(),
                "`http2_streams_max` needs `http2 = true`".to_string(),
            );
        }
        let body_bytes_max = l
            .body_size_max
            .as_ref()
            .map(|_| self.size(&l.body_size_max, "body_size_max", 0, 1..u64::MAX));
        let access_log = match l.access_log.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "off")) => AccessLog::Off,
            Some((_, "stdout")) => AccessLog::Stdout,
            Some((v, "")) => {
                self.error(
                    v.span(),
                    "access_log: use \"off\", \"stdout\" or a file path",
                );
                AccessLog::Off
            }
            Some((_, path)) => AccessLog::File(path.into()),
        };
        let access_log_format = match l
            .access_log_format
            .as_ref()
            .map(|v| (v, v.get_ref().as_str()))
        {
            None | Some((_, "combined")) => AccessLogFormat::Combined,
            Some((_, "json")) => AccessLogFormat::Json,
            Some((v, other)) => {
                self.error(
                    v.span(),
                    format!(
                        "access_log_format `{other}` is not valid; use \"combined\" or \"json\""
                    ),
                );
                AccessLogFormat::Combined
            }
        };
        HttpListener {
            router: Router {
                rules,
                default_backend,
            },
            x_forwarded_for: flag(&l.x_forwarded_for, true),
            x_real_ip: flag(&l.x_real_ip, false),
            x_forwarded_proto: flag(&l.x_forwarded_proto, true),
            forwarded: flag(&l.forwarded, false),
            head_bytes_max: u32::try_from(head_bytes_max).unwrap_or(64 * 1024),
            body_bytes_max,
            access_log,
            access_log_format,
            accept_proxy: l.accept_proxy.as_ref().is_some_and(|v| *v.get_ref()),
            http2: flag(&l.http2, false),
            http2_streams_max,
        }
    }

    /// TCP listener routes: only `sni` (exact or `*.` wildcard) and `backend`.
    fn sni_routing(
        &mut self,
        l: &file::ListenerFile,
        name: &str,
        default_backend: Option<usize>,
        backend_index: &HashMap<&str, usize>,
        backend_names: &[&str],
    ) -> super::SniRouting {
        let mut rules = Vec::new();
        for (n, r) in l.route.iter().enumerate() {
            let span = r.span();
            let r = r.get_ref();
            for (key, v) in [
                ("host", r.host.as_ref().map(|v| v.span())),
                ("host_suffix", r.host_suffix.as_ref().map(|v| v.span())),
                ("path", r.path.as_ref().map(|v| v.span())),
                ("path_prefix", r.path_prefix.as_ref().map(|v| v.span())),
                ("method", r.method.as_ref().map(|v| v.span())),
                ("header", r.header.as_ref().map(|v| v.span())),
            ] {
                if let Some(v) = v {
                    self.error(
                        v,
                        format!(
                            "`{key}` needs mode = \"http\"; a tcp listener routes by `sni` only"
                        ),
                    );
                }
            }
            let what = format!("listener `{name}` route {}", n + 1);
            let host = self
                .required(
                    &r.sni,
                    "sni",
                    "[[listener.route]] of a tcp listener",
                    span.clone(),
                )
                .and_then(|h| self.host_pattern(h));
            let backend = self
                .required(&r.backend, "backend", "[[listener.route]]", span)
                .and_then(|b| self.backend_ref(b, &what, backend_index, backend_names));
            if let (Some(host), Some(backend)) = (host, backend) {
                rules.push(Rule {
                    host: Some(host),
                    path: None,
                    method: None,
                    headers: Vec::new(),
                    backend,
                });
            }
        }
        super::SniRouting {
            router: Router {
                rules,
                default_backend,
            },
            peek_timeout: Duration::from_secs(5),
        }
    }

    fn health_check(&mut self, h: &file::HealthCheckFile) -> HealthCheck {
        let interval = self.duration(&h.interval, "interval", Duration::from_secs(2));
        let timeout = self.duration(&h.timeout, "timeout", Duration::from_secs(1));
        for (value, key, d) in [
            (&h.interval, "interval", interval),
            (&h.timeout, "timeout", timeout),
        ] {
            if d.is_zero()
                && let Some(v) = value
            {
                self.error(v.span(), format!("{key}: must be greater than zero"));
            }
        }
        let rise = self.integer(&h.rise, "rise", 2, 1..101);
        let fall = self.integer(&h.fall, "fall", 3, 1..101);
        let http_keys = [
            h.method.as_ref().map(|v| v.span()),
            h.path.as_ref().map(|v| v.span()),
            h.expect.as_ref().map(|v| v.span()),
            h.host.as_ref().map(|v| v.span()),
        ];
        let kind = match h.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
            None | Some((_, "tcp")) => {
                for span in http_keys.into_iter().flatten() {
                    self.error(
                        span,
                        "method, path, expect and host apply only to type = \"http\" checks",
                    );
                }
                CheckKind::Tcp
            }
            Some((_, "http")) => {
                let method = h.method.as_ref().map_or_else(
                    || "GET".to_string(),
                    |m| {
                        let v = m.get_ref();
                        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                            self.error(m.span(), format!("method `{v}` is not valid: write it in upper case, e.g. \"GET\""));
                        }
                        v.clone()
                    },
                );
                let path = h
                    .path
                    .as_ref()
                    .and_then(|p| {
                        let v = p.get_ref();
                        if v.starts_with('/') && !v.bytes().any(|b| b <= b' ' || b == 0x7f) {
                            Some(v.clone())
                        } else {
                            self.error(p.span(), format!("path `{v}` must start with `/` and contain no spaces or control characters"));
                            None
                        }
                    })
                    .unwrap_or_else(|| "/".into());
                let expect = match &h.expect {
                    None => (200, 399),
                    Some(e) => match parse_status_range(e.get_ref()) {
                        Some(r) => r,
                        None => {
                            self.error(e.span(), format!("expect `{}` is not a status or range; write e.g. \"200\" or \"200-399\"", e.get_ref()));
                            (200, 399)
                        }
                    },
                };
                CheckKind::Http {
                    method,
                    path,
                    host: h.host.as_ref().map(|v| v.get_ref().clone()),
                    expect,
                }
            }
            Some((k, other)) => {
                self.error(
                    k.span(),
                    format!("health check type `{other}` is not valid; use \"tcp\" or \"http\""),
                );
                CheckKind::Tcp
            }
        };
        HealthCheck {
            kind,
            interval,
            timeout,
            rise: u32::try_from(rise).unwrap_or(2),
            fall: u32::try_from(fall).unwrap_or(3),
        }
    }

    fn host_pattern(&mut self, h: &Spanned<String>) -> Option<HostMatch> {
        let v = h.get_ref().to_ascii_lowercase();
        let (wild, base) = match v.strip_prefix("*.") {
            Some(base) => (true, base.to_string()),
            None => (false, v.clone()),
        };
        let valid = !base.is_empty()
            && base.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
            });
        if !valid {
            self.error(h.span(), format!("host `{}` is not a host name; write e.g. \"example.com\" or \"*.example.com\" (no port)", h.get_ref()));
            return None;
        }
        Some(if wild {
            HostMatch::Wildcard(base)
        } else {
            HostMatch::Exact(base)
        })
    }

    fn path_pattern(&mut self, p: &Spanned<String>) -> Option<String> {
        let v = p.get_ref();
        if v.starts_with('/') && !v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?') {
            Some(v.clone())
        } else {
            self.error(p.span(), format!("path `{v}` must start with `/` and contain no spaces, control characters or `?`"));
            None
        }
    }
}

/// `"200"` or `"200-399"`, statuses 100..=599.
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = text.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// `example.com` or `*.example.com`: labels of letters, digits and hyphens.
pub fn valid_name_pattern(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// RFC 9110 §5.6.2 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[global]
shards = 2
drain_timeout = "3s"
admin = "127.0.0.1:9900"
recv_buffer_size = "32KiB"
recv_buffer_count = 256

[timeouts]
connect = "500ms"
client_idle = "30s"
server_idle = "1m"

[[listener]]
name = "l4"
bind = "127.0.0.1:8080"
mode = "tcp"
backend = "app"
splice = "off"

[[backend]]
name = "app"
servers = [ { address = "127.0.0.1:9001", weight = 3 }, { address = "[::1]:9002" } ]
"#;

    fn errors(text: &str) -> String {
        match load_str(text, "t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn valid_config_resolves_everything() {
        let c = load_str(GOOD, "t.toml").map_err(|e| e.to_string());
        let Ok(c) = c else {
            panic!("{c:?}");
        };
        assert_eq!(c.global.shards, Shards::Count(2));
        assert_eq!(c.global.drain_timeout, Duration::from_secs(3));
        assert_eq!(c.global.admin, "127.0.0.1:9900".parse().ok());
        assert_eq!(c.global.recv_buffer_bytes, 32 * 1024);
        assert_eq!(c.global.recv_buffer_count, 256);
        assert_eq!(c.timeouts.connect, Duration::from_millis(500));
        assert_eq!(c.timeouts.server_idle, Duration::from_secs(60));
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].backend, Some(0));
        assert_eq!(c.listeners[0].splice, SpliceMode::Off);
        assert_eq!(c.backends[0].servers[0].weight, 3);
        assert_eq!(c.backends[0].servers[1].weight, 1);
        assert!(c.backends[0].servers[1].address.is_ipv6());
    }

    #[test]
    fn defaults_apply() {
        let c = load_str(
            "[[listener]]\nname=\"a\"\nbind=\"127.0.0.1:1\"\nbackend=\"b\"\n[[backend]]\nname=\"b\"\nservers=[{address=\"127.0.0.1:2\"}]\n",
            "t",
        );
        let Ok(c) = c else {
            panic!("{c:?}");
        };
        assert_eq!(c.global.shards, Shards::Auto);
        assert_eq!(c.global.admin, None);
        assert_eq!(c.timeouts.connect, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.listeners[0].splice, SpliceMode::Auto);
        assert_eq!(c.listeners[0].backlog, 4096);
    }

    #[test]
    fn admin_table() {
        let tail = "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\nbackend = \"b\"\n\
                    [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:2\" } ]\n";
        let c = load_str(
            &format!("[admin]\nbind = \"127.0.0.1:9900\"\nsocket = \"admin.sock\"\ntoken_file = \"tok\"\n{tail}"),
            "/etc/ringway/t.toml",
        )
        .expect("valid");
        assert_eq!(c.global.admin, "127.0.0.1:9900".parse().ok());
        assert_eq!(
            c.global.admin_socket.as_deref(),
            Some(Path::new("/etc/ringway/admin.sock"))
        );
        assert_eq!(
            c.global.admin_token_file.as_ref().map(|f| f.value.clone()),
            Some(PathBuf::from("/etc/ringway/tok"))
        );
        assert_eq!(
            errors(&format!("[admin]\nbind = \"0.0.0.0:9900\"\n{tail}")),
            "t.toml:2:8: admin 0.0.0.0:9900 is not a loopback address: set `[admin] token_file` so that writes need a token, or bind 127.0.0.1"
        );
        assert_eq!(
            errors(&format!("[global]\nadmin = \"10.0.0.1:9900\"\n{tail}")),
            "t.toml:2:9: admin 10.0.0.1:9900 is not a loopback address: set `[admin] token_file` so that writes need a token, or bind 127.0.0.1"
        );
        assert!(
            load_str(
                &format!("[admin]\nbind = \"0.0.0.0:9900\"\ntoken_file = \"t\"\n{tail}"),
                "t"
            )
            .is_ok()
        );
        assert_eq!(
            errors(&format!(
                "[global]\nadmin = \"127.0.0.1:1\"\n[admin]\nbind = \"127.0.0.1:2\"\n{tail}"
            )),
            "t.toml:4:8: the admin address is given twice: here and as `[global] admin` on line 2; keep one"
        );
        assert_eq!(
            errors(&format!("[admin]\nbnid = \"127.0.0.1:2\"\n{tail}")),
            "t.toml:2:1: unknown field `bnid`, did you mean `bind`?"
        );
    }

    #[test]
    fn provider_redis_table() {
        let base = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\n\
                    [[listener]]\nname = \"l4\"\nbind = \"127.0.0.1:2\"\nbackend = \"b\"\n\
                    [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:3\" } ]\n";
        let c = load_str(
            &format!("{base}[provider.redis]\nlisteners = [\"web\"]\nresync_interval = \"5s\"\n[provider.redis.backend]\nretries = 4\n"),
            "t.toml",
        )
        .expect("valid");
        let p = c.provider.expect("provider");
        assert_eq!(p.listeners, [0]);
        assert_eq!(p.resync_interval, Some(Duration::from_secs(5)));
        assert_eq!(p.backend.retries, 4);
        assert_eq!(
            errors(&format!(
                "{base}[provider.redis]\nlisteners = [\"l4\", \"nope\"]\n[provider.redis.backend]\nname = \"x\"\nbalance = \"fastest\"\n"
            )),
            "t.toml:13:13: listeners: `l4` does not route HTTP (Redis routes are HTTP host rules); use an http or detect listener\n\
             t.toml:13:13: listeners: no listener named `nope`\n\
             t.toml:15:8: [provider.redis.backend] takes every [[backend]] key but `name`: each route gives its own\n\
             t.toml:16:11: balance `fastest` is not valid; use \"round_robin\", \"least_conn\", \"p2c\" or \"maglev\""
        );
        assert!(
            errors(&format!("{base}[provider.redis]\n"))
                .contains("missing required key `listeners`")
        );
    }

    #[test]
    fn unknown_key_names_position_and_suggests() {
        // Otherwise valid, so the unknown key is the only problem.
        let text = "[timeouts]\nconect = \"5s\"\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n\
                    backend = \"b\"\n[[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:2\" } ]\n";
        assert_eq!(
            errors(text),
            "t.toml:2:1: unknown field `conect`, did you mean `connect`?"
        );
    }

    #[test]
    fn every_error_of_every_section_is_reported_in_file_order() {
        let text = "[timeouts]\nconnect = \"5s\"\nclient_idel = \"30s\"\n\n\
                    [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\nbackend = \"ap\"\n\n\
                    [[backend]]\nname = \"app\"\nidle_timeout = \"15 seconds\"\n\
                    servers = [ { address = \"127.0.0.1:9001\" } ]\n";
        let Err(e) = load_str(text, "t.toml") else {
            panic!("accepted");
        };
        let found: Vec<(usize, usize, &str)> = e
            .diagnostics
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    3,
                    1,
                    "unknown field `client_idel`, did you mean `client_idle`?"
                ),
                (
                    8,
                    11,
                    "listener `web` uses backend `ap`, which is not defined; did you mean `app`?"
                ),
                (
                    12,
                    16,
                    "idle_timeout: `15 seconds` is not a duration: write a number with a unit, e.g. \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\""
                ),
            ]
        );
    }

    #[test]
    fn wrong_types_and_unknown_keys_everywhere_are_each_reported_once() {
        let text = "[globl]\nshards = 2\n[timeouts]\nconnect = 5\n\
                    [[listener]]\nname = \"a\"\nbind = 8080\nbackend = \"b\"\nx_real_ip = \"yes\"\n\
                    [[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\", wieght = 2 }, 7 ]\n\
                    health_check = { type = \"tcp\", rise = 2.5 }\n";
        let e = errors(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            vec![
                "t.toml:1:2: unknown field `globl`, did you mean `global`?",
                "t.toml:4:11: connect: expected a duration string with its unit, e.g. \"5s\" or \"250ms\", found integer `5`",
                "t.toml:7:8: bind: expected a string, found integer `8080`",
                "t.toml:9:13: x_real_ip: expected true or false, found string `\"yes\"`",
                "t.toml:12:40: unknown field `wieght`, did you mean `weight`?",
                "t.toml:12:54: servers: every element must be a table, found integer `7`",
                "t.toml:13:39: rise: expected an integer, found float `2.5`",
            ],
            "{e}"
        );
    }

    #[test]
    fn a_typo_of_a_required_key_is_not_also_called_missing() {
        let e = errors(&GOOD.replace("name = \"app\"", "nmae = \"app\""));
        assert!(
            e.contains("t.toml:22:1: unknown field `nmae`, did you mean `name`?"),
            "{e}"
        );
        assert!(!e.contains("missing required key `name`"), "{e}");
    }

    #[test]
    fn a_rejected_top_level_key_does_not_hide_a_missing_key_of_the_first_table() {
        // `[backend]` (one table, not [[backend]]) is refused; the listener at offset 0 still
        // lacks its `backend`.
        let e =
            errors("[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[backend]\nname = \"b\"\n");
        assert!(
            e.contains("t.toml:1:1: [[listener]] is missing required key `backend`"),
            "{e}"
        );
        assert!(
            e.contains(
                "t.toml:4:1: backend: expected an array of [[backend]] tables, found a table"
            ),
            "{e}"
        );
    }

    #[test]
    fn undefined_backend_is_pointed_at() {
        let text = GOOD.replace("backend = \"app\"", "backend = \"apq\"");
        let e = errors(&text);
        assert!(e.starts_with("t.toml:18:11: listener `l4` uses backend `apq`, which is not defined; did you mean `app`?"), "{e}");
    }

    #[test]
    fn bad_values_each_reported_with_location() {
        let text = GOOD
            .replace("\"500ms\"", "\"500\"")
            .replace("\"127.0.0.1:8080\"", "\"localhost:8080\"")
            .replace("recv_buffer_count = 256", "recv_buffer_count = 300")
            .replace("shards = 2", "shards = 0");
        let e = errors(&text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(
            lines[0].starts_with("t.toml:3:10: shards: 0 is out of range"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("t.toml:7:21: recv_buffer_count: 300 is not a power of two"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("t.toml:10:11: connect: `500` is not a duration"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("t.toml:16:8: bind: `localhost:8080` is not a socket address"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_are_errors() {
        let text = format!(
            "{GOOD}\n[[backend]]\nname = \"app\"\nservers = [ {{ address = \"127.0.0.1:1\" }}, {{ address = \"127.0.0.1:1\" }} ]\n[[listener]]\nname = \"l4\"\nbind = \"127.0.0.1:8080\"\nbackend = \"app\"\n"
        );
        let e = errors(&text);
        assert!(
            e.contains("duplicate backend name `app` (first defined on line 22)"),
            "{e}"
        );
        assert!(e.contains("duplicate server address 127.0.0.1:1"), "{e}");
        assert!(e.contains("duplicate listener name `l4`"), "{e}");
        assert!(
            e.contains("bind 127.0.0.1:8080 is already used by another listener"),
            "{e}"
        );
    }

    #[test]
    fn http2_offers_h2_first_and_is_refused_where_it_cannot_run() {
        let base = "[[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n";
        let listener = |mode: &str, extra: &str| {
            format!(
                "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"{mode}\"\nbackend = \"b\"\n\
                 {extra}{base}"
            )
        };
        let tls = "[listener.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n";
        let c = load_str(&listener("http", &format!("http2 = true\n{tls}")), "t.toml");
        let Ok(c) = c else { panic!("{c:?}") };
        assert!(c.listeners[0].http.as_ref().is_some_and(|h| h.http2));
        let alpn = c.listeners[0].tls.as_ref().map(|t| t.alpn.clone());
        assert_eq!(alpn, Some(vec!["h2".to_string(), "http/1.1".to_string()]));
        // Off by default: nothing changes for listeners that do not ask for it.
        let c = load_str(&listener("http", tls), "t.toml");
        let Ok(c) = c else { panic!("{c:?}") };
        assert!(c.listeners[0].http.as_ref().is_some_and(|h| !h.http2));
        let alpn = c.listeners[0].tls.as_ref().map(|t| t.alpn.clone());
        assert_eq!(alpn, Some(vec!["http/1.1".to_string()]));
        let e = errors(&listener("tcp", "http2 = true\n"));
        assert!(
            e.contains("t.toml:6:9: `http2` applies only to mode = \"http\" listeners"),
            "{e}"
        );
        let e = errors(&listener("detect", "http2 = true\n"));
        assert!(
            e.contains("t.toml:6:9: `http2` is not supported on mode = \"detect\""),
            "{e}"
        );
        let e = errors(&listener(
            "http",
            "[listener.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nalpn = [\"h2\", \"http/1.1\"]\n",
        ));
        assert!(
            e.contains("t.toml:9:8: ALPN `h2` is offered but the listener speaks only HTTP/1.1"),
            "{e}"
        );
        let e = errors(&listener("http", "http2 = \"yes\"\n"));
        assert!(e.contains("t.toml:6:9:"), "{e}");
    }

    #[test]
    fn http2_streams_max_is_bounded_and_needs_http2() {
        let base = "[[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n";
        let listener = |extra: &str| {
            format!(
                "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nbackend = \"b\"\n\
                 {extra}{base}"
            )
        };
        let streams = |text: &str| {
            let c = load_str(&listener(text), "t.toml");
            let Ok(c) = c else { panic!("{c:?}") };
            c.listeners[0].http.as_ref().map(|h| h.http2_streams_max)
        };
        assert_eq!(streams("http2 = true\n"), Some(DEFAULT_HTTP2_STREAMS_MAX));
        assert_eq!(streams("http2 = true\nhttp2_streams_max = 8\n"), Some(8));
        assert_eq!(
            streams("http2 = true\nhttp2_streams_max = 256\n"),
            Some(256)
        );
        for bad in ["0", "257", "-1"] {
            let e = errors(&listener(&format!(
                "http2 = true\nhttp2_streams_max = {bad}\n"
            )));
            assert!(e.contains("t.toml:7:21:"), "{bad}: {e}");
        }
        let e = errors(&listener("http2_streams_max = 8\n"));
        assert!(
            e.contains("t.toml:6:21: `http2_streams_max` needs `http2 = true`"),
            "{e}"
        );
    }

    #[test]
    fn tls_and_detect_errors_point_at_the_key() {
        let base = "[[backend]]\nname = \"b\"\nservers = [ { address = \"127.0.0.1:1\" } ]\n";
        // Certificate paths are only recorded, with their location; tls::resolve reads them
        // (its tests check "t.toml:7:8: certificate file /nonexistent/c.pem: ...").
        let c = load_str(
            &format!(
                "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nbackend = \"b\"\n\
                 [listener.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n{base}"
            ),
            "t.toml",
        );
        let Ok(c) = c else { panic!("{c:?}") };
        let Some(tls) = &c.listeners[0].tls else {
            panic!("no tls")
        };
        let cert = &tls.certificates[0];
        assert_eq!(cert.cert.value, PathBuf::from("/nonexistent/c.pem"));
        assert_eq!((cert.cert.line, cert.cert.column), (7, 8));
        assert_eq!((cert.key.line, cert.key.column), (8, 7));
        assert!(!cert.names_given);
        let e = errors(&format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"http\"\nbackend = \"b\"\n\
             tcp_backend = \"b\"\n[listener.tls]\nmin_version = \"1.0\"\n{base}"
        ));
        assert!(
            e.contains("t.toml:6:15: `tcp_backend` applies only to mode = \"detect\" listeners"),
            "{e}"
        );
        assert!(e.contains("min_version `1.0` is not supported"), "{e}");
        assert!(e.contains("[listener.tls] needs a certificate"), "{e}");
        let e = errors(&format!(
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"detect\"\nbackend = \"b\"\n\
             tcp_backend = \"nope\"\naccept_proxy = true\n{base}"
        ));
        assert!(
            e.contains("uses backend `nope`, which is not defined"),
            "{e}"
        );
        assert!(
            e.contains("`accept_proxy` is not supported on mode = \"detect\""),
            "{e}"
        );
        let ok = load_str(
            &format!(
                "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"detect\"\nbackend = \"b\"\n\
                 tcp_backend = \"b\"\ntls_backend = \"b\"\npeek_timeout = \"500ms\"\n{base}"
            ),
            "t.toml",
        );
        let Ok(c) = ok else { panic!("{ok:?}") };
        assert_eq!(c.listeners[0].mode, Mode::Detect);
        assert_eq!(
            c.listeners[0].detect,
            Some(super::super::Detect {
                tcp_backend: Some(0),
                tls_backend: Some(0)
            })
        );
        assert_eq!(c.listeners[0].peek_timeout, Duration::from_millis(500));
    }

    #[test]
    fn missing_required_keys_and_modes() {
        let e = errors("[[listener]]\nname = \"x\"\nmode = \"http\"\n");
        assert!(
            e.contains("t.toml:1:1: [[listener]] is missing required key `bind`")
                || e.contains("missing required key `bind`"),
            "{e}"
        );
        // An HTTP listener may omit `backend` (no default: unmatched requests get 404).
        assert!(!e.contains("missing required key `backend`"), "{e}");
        let e = errors("[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\nmode = \"udp\"\n");
        assert!(
            e.contains("mode `udp` is not supported; use \"tcp\", \"http\" or \"detect\""),
            "{e}"
        );
        assert!(e.contains("missing required key `backend`"), "{e}");
    }

    const HTTP: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
mode = "http"
backend = "www"
x_real_ip = true
head_size_max = "8KiB"
body_size_max = "1MiB"
access_log = "/tmp/access.log"
access_log_format = "json"

[[listener.route]]
host = "*.Example.com"
path_prefix = "/ws/"
backend = "ws"

[[listener.route]]
host_suffix = "api.example"
method = "POST"
header = { name = "Upgrade", value = "WebSocket" }
backend = "ws"

[[backend]]
name = "www"
servers = [ { address = "127.0.0.1:9001" } ]
idle_conns_max = 8
idle_timeout = "5s"

[[backend]]
name = "ws"
servers = [ { address = "127.0.0.1:9002" } ]
"#;

    #[test]
    fn http_listener_with_routes_resolves() {
        let c = load_str(HTTP, "t.toml").map_err(|e| e.to_string());
        let Ok(c) = c else {
            panic!("{c:?}");
        };
        let l = &c.listeners[0];
        assert_eq!(l.mode, Mode::Http);
        let h = l.http.clone();
        let Some(h) = h else { panic!("http") };
        assert_eq!(h.router.default_backend, Some(0));
        assert_eq!(h.router.rules.len(), 2);
        assert_eq!(
            h.router.rules[0].host,
            Some(HostMatch::Wildcard("example.com".into()))
        );
        assert_eq!(
            h.router.rules[0].path,
            Some(PathMatch::Prefix("/ws/".into()))
        );
        assert_eq!(
            h.router.rules[1].host,
            Some(HostMatch::Suffix("api.example".into()))
        );
        assert_eq!(
            h.router.rules[1].headers[0].value.as_deref(),
            Some("websocket")
        );
        assert_eq!(h.router.rules[1].backend, 1);
        assert!(h.x_real_ip && h.x_forwarded_for && !h.forwarded);
        assert_eq!(h.head_bytes_max, 8192);
        assert_eq!(h.body_bytes_max, Some(1 << 20));
        assert_eq!(h.access_log_format, AccessLogFormat::Json);
        assert_eq!(c.backends[0].idle_conns_max, 8);
        assert_eq!(c.backends[0].idle_timeout, Duration::from_secs(5));
        assert_eq!(c.timeouts.tunnel, DEFAULT_TUNNEL_TIMEOUT);
    }

    #[test]
    fn http_route_errors_point_at_the_key() {
        let text = HTTP
            .replace(
                "backend = \"ws\"\n\n[[listener.route]]",
                "backend = \"wss\"\n\n[[listener.route]]",
            )
            .replace("method = \"POST\"", "method = \"post\"")
            .replace("path_prefix = \"/ws/\"", "path_prefix = \"ws\"");
        let e = errors(&text);
        assert!(
            e.contains("t.toml:15:15: path `ws` must start with `/`"),
            "{e}"
        );
        assert!(e.contains("t.toml:16:11: listener `web` route 1 uses backend `wss`, which is not defined; did you mean `ws`?"), "{e}");
        assert!(
            e.contains("t.toml:20:10: method `post` is not valid"),
            "{e}"
        );
    }

    #[test]
    fn http_keys_on_a_tcp_listener_are_errors() {
        let e = errors(&GOOD.replace("splice = \"off\"", "splice = \"off\"\nx_real_ip = true"));
        assert!(
            e.contains("`x_real_ip` applies only to mode = \"http\" listeners"),
            "{e}"
        );
    }

    #[test]
    fn all_zero_weights_and_empty_servers() {
        let e = errors(
            "[[listener]]\nname=\"a\"\nbind=\"127.0.0.1:1\"\nbackend=\"b\"\n[[backend]]\nname=\"b\"\nservers=[{address=\"127.0.0.1:2\", weight=0}]\n[[backend]]\nname=\"c\"\nservers=[]\n",
        );
        assert!(e.contains("every server has weight 0"), "{e}");
        assert!(e.contains("backend `c` has no servers"), "{e}");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = errors("[global\nshards = 1\n");
        assert!(e.starts_with("t.toml:1:"), "{e}");
    }

    #[test]
    fn no_listener_is_an_error() {
        assert!(errors("").contains("no [[listener]] defined"));
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncéd", 6), (2, 3));
        assert_eq!(line_column("", 10), (1, 1));
    }

    #[test]
    fn name_patterns() {
        assert!(valid_name_pattern("example.com"));
        assert!(valid_name_pattern("*.example.com"));
        assert!(!valid_name_pattern("*"));
        assert!(!valid_name_pattern("a..b"));
        assert!(!valid_name_pattern("a b"));
        assert!(!valid_name_pattern("x.*.com"));
    }

    #[test]
    fn edit_distance_suggestions() {
        assert_eq!(
            did_you_mean("conect", &["connect", "client_idle"]),
            Some("connect")
        );
        assert_eq!(did_you_mean("zzzzzz", &["connect"]), None);
    }
}
