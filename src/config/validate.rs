//! Owns: turning the raw file (`file.rs`) into a validated [`Config`]: defaults, ranges,
//! references between sections, and every error as `FILE:LINE:COLUMN: what is wrong`.
//! Must not: do I/O beyond reading the one file; `ringway check` runs exactly this.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::file::{self, FileConfig, ShardsFile};
use super::units::{parse_duration, parse_size};
use super::{Backend, Config, Global, Listener, Mode, Server, Shards, SpliceMode, Timeouts};

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

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        diagnostics: Vec::new(),
        io: Some(e.to_string()),
    })?;
    load_str(&text, &name)
}

pub fn load_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        diagnostics: Vec::new(),
    };
    let raw: FileConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = rewrite_toml_message(e.message());
            v.error(span, message);
            return Err(v.finish(file_name));
        }
    };
    let config = v.validate(raw);
    match config {
        Some(c) if v.diagnostics.is_empty() => Ok(c),
        _ => Err(v.finish(file_name)),
    }
}

/// Makes serde's "unknown field `x`, expected one of ..." shorter and adds a did-you-mean.
fn rewrite_toml_message(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or(message).trim();
    if let Some(rest) = first_line.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        let field = &rest[..end];
        let expected: Vec<&str> = first_line
            .split("expected")
            .nth(1)
            .map(|e| e.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let candidates: Vec<&str> = if expected.is_empty() {
            file::KNOWN_KEYS.to_vec()
        } else {
            expected.clone()
        };
        let mut out = format!("unknown field `{field}`");
        if let Some(best) = did_you_mean(field, &candidates) {
            out.push_str(&format!(", did you mean `{best}`?"));
        } else if !expected.is_empty() {
            out.push_str(&format!("; expected one of {}", expected.join(", ")));
        }
        return out;
    }
    first_line.to_string()
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

    fn finish(mut self, file_name: &str) -> ConfigError {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        ConfigError {
            file: file_name.to_string(),
            diagnostics: self.diagnostics,
            io: None,
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
        key: &str,
        table: &str,
        table_span: Range<usize>,
    ) -> Option<&'a Spanned<T>> {
        if value.is_none() {
            self.error(
                table_span,
                format!("{table} is missing required key `{key}`"),
            );
        }
        value.as_ref()
    }

    fn validate(&mut self, raw: FileConfig) -> Option<Config> {
        let global = self.global(raw.global.as_ref());
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
        if raw.listener.is_empty() {
            self.error(
                0..0,
                "no [[listener]] defined: ringway would accept nothing",
            );
        }
        Some(Config {
            global,
            timeouts,
            listeners,
            backends,
        })
    }

    fn global(&mut self, g: Option<&Spanned<file::GlobalFile>>) -> Global {
        let empty = file::GlobalFile {
            shards: None,
            drain_timeout: None,
            admin: None,
            recv_buffer_size: None,
            recv_buffer_count: None,
            pipe_pool_max: None,
            pipe_size: None,
            conns_per_shard_max: None,
        };
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
            recv_buffer_bytes: u32::try_from(recv_buffer_bytes).unwrap_or(16 * 1024),
            recv_buffer_count: u16::try_from(count).unwrap_or(512),
            pipe_pool_max: u32::try_from(pipe_pool_max).unwrap_or(0),
            pipe_bytes: u32::try_from(pipe_bytes).unwrap_or(64 * 1024),
            conns_per_shard_max: u32::try_from(conns).unwrap_or(65_536),
        }
    }

    fn timeouts(&mut self, t: Option<&Spanned<file::TimeoutsFile>>) -> Timeouts {
        let Some(t) = t.map(|t| t.get_ref()) else {
            return Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                client_idle: DEFAULT_IDLE_TIMEOUT,
                server_idle: DEFAULT_IDLE_TIMEOUT,
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
                    servers.push(Server {
                        address,
                        weight: u32::try_from(weight).unwrap_or(1),
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
            out.push(Backend { name, servers });
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
            let mode = match &l.mode {
                None => Mode::Tcp,
                Some(m) if m.get_ref() == "tcp" => Mode::Tcp,
                Some(m) => {
                    self.error(
                        m.span(),
                        format!(
                            "mode `{}` is not supported; this version supports only \"tcp\"",
                            m.get_ref()
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
            let backend = self
                .required(&l.backend, "backend", "[[listener]]", span.clone())
                .and_then(|b| match backend_index.get(b.get_ref().as_str()) {
                    Some(i) => Some(*i),
                    None => {
                        let mut msg = format!(
                            "listener `{name}` uses backend `{}`, which is not defined",
                            b.get_ref()
                        );
                        if let Some(best) = did_you_mean(b.get_ref(), &backend_names) {
                            msg.push_str(&format!("; did you mean `{best}`?"));
                        } else if backend_names.is_empty() {
                            msg.push_str("; add a [[backend]] with that name");
                        }
                        self.error(b.span(), msg);
                        None
                    }
                });
            if let (Some(bind), Some(backend)) = (bind, backend) {
                out.push(Listener {
                    name,
                    bind,
                    mode,
                    backend,
                    splice,
                    backlog: u32::try_from(backlog).unwrap_or(4096),
                });
            }
        }
        out
    }
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
        assert_eq!(c.listeners[0].backend, 0);
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
    fn unknown_key_names_position_and_suggests() {
        let text = "[timeouts]\nconect = \"5s\"\n";
        assert_eq!(
            errors(text),
            "t.toml:2:1: unknown field `conect`, did you mean `connect`?"
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
    fn missing_required_keys_and_modes() {
        let e = errors("[[listener]]\nname = \"x\"\nmode = \"http\"\n");
        assert!(
            e.contains("t.toml:1:1: [[listener]] is missing required key `bind`")
                || e.contains("missing required key `bind`"),
            "{e}"
        );
        assert!(
            e.contains("mode `http` is not supported; this version supports only \"tcp\""),
            "{e}"
        );
        assert!(e.contains("missing required key `backend`"), "{e}");
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
    fn edit_distance_suggestions() {
        assert_eq!(
            did_you_mean("conect", &["connect", "client_idle"]),
            Some("connect")
        );
        assert_eq!(did_you_mean("zzzzzz", &["connect"]), None);
    }
}
