//! Owns: the meaning of one route entry in Redis, hipache's schema: the key
//! `<prefix>frontend:<host>` is a LIST whose element 0 is an identifier and whose other elements
//! are backend URLs (`http://IP[:PORT]`). Pure functions over bytes, a typed error for each way an
//! entry can be wrong, and the bounds every entry is held to.
//! Must not: do I/O, read the clock or know about connections: the Redis layer reads the bytes
//! and hands them here, so every edge is a unit test with byte literals.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed part of every route key after the configured prefix (hipache's name for it).
pub const FRONTEND_TAG: &[u8] = b"frontend:";

/// Most entries (routes plus skipped keys) one snapshot holds. Every route becomes a router rule
/// and a backend on every shard, and each change costs the control thread a copy and a diff of
/// the whole snapshot; 100,000 is ten times the largest hipache fleets we know of and keeps one
/// snapshot in the tens of MiB (docs/fleet.md has the measured size). Past it, the keys that
/// sort first are kept, so every node keeps the same ones.
pub const ROUTES_MAX: usize = 100_000;

/// Most servers in one route. A hipache list holds a handful; each server costs a pool, a health
/// state and balancer slots on every shard, so a list longer than this is more likely a runaway
/// writer than a site. It also bounds one read of a key to `SERVERS_PER_ROUTE_MAX + 2` elements.
pub const SERVERS_PER_ROUTE_MAX: usize = 256;

/// Longest host: 253 bytes, the longest a DNS name can be in text (RFC 1035 §2.3.4: 255 octets
/// on the wire, less the first length octet and the root), so no Host header we could match is
/// longer.
pub const HOST_BYTES_MAX: usize = 253;

/// Longest configured key prefix. Prefixes are namespaces (`hipache:`, `prod:`), not data.
pub const KEY_PREFIX_BYTES_MAX: usize = 128;

/// Longest list element (identifier or URL). The longest URL we accept,
/// `http://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535/`, is 55 bytes; 1 KiB leaves room for
/// long identifiers while a stray blob (a JSON document pushed to the wrong key) is refused
/// instead of being copied into every snapshot.
pub const VALUE_BYTES_MAX: usize = 1024;

/// The port of a URL that names none (`http://10.0.0.5` is port 80, as in hipache).
pub const HTTP_PORT_DEFAULT: u16 = 80;

/// Longest key accepted with a prefix of `prefix_bytes`: prefix, `frontend:`, a host.
pub fn key_bytes_max(prefix_bytes: usize) -> usize {
    prefix_bytes + FRONTEND_TAG.len() + HOST_BYTES_MAX
}

/// Which requests a route takes, by the request's host (lowercased, port and trailing dot
/// removed, as [`crate::router::normalize_host`] does).
///
/// The order (`Ord`) is match precedence, the order hipache tries keys in: exact names first,
/// then wildcards with more labels before fewer (`*.api.example.com` before `*.example.com`),
/// then the catch-all `*`; names sort bytewise within each group. Iterating a
/// [`super::RouteSnapshot`] therefore yields rules in the order a first-match router needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `www.example.com`: exactly this name.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: any name under it (one or more labels), never
    /// the apex, like [`crate::router::HostMatch::Wildcard`].
    Wildcard(String),
    /// `*`: every host no other route takes (hipache's `frontend:*`).
    Any,
}

impl HostPattern {
    /// Parses the host part of a key: `www.example.com`, `*.example.com` or `*`.
    pub fn parse(host: &[u8]) -> Result<HostPattern, HostError> {
        if host.is_empty() {
            return Err(HostError::Empty);
        }
        if host.len() > HOST_BYTES_MAX {
            return Err(HostError::TooLong { bytes: host.len() });
        }
        if host == b"*" {
            return Ok(HostPattern::Any);
        }
        match host.strip_prefix(b"*.") {
            Some(base) => check_name(base).map(HostPattern::Wildcard),
            None => check_name(host).map(HostPattern::Exact),
        }
    }

    /// Whether a normalized request host (lowercase, no port, no trailing dot) is taken by this
    /// pattern on its own, ignoring other routes' precedence.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(name) => host == name.as_bytes(),
            HostPattern::Wildcard(base) => {
                host.len() > base.len() + 1
                    && host.ends_with(base.as_bytes())
                    && host.get(host.len() - base.len() - 1) == Some(&b'.')
            }
            HostPattern::Any => true,
        }
    }

    /// The router rule for this pattern; `None` for [`HostPattern::Any`], which is a listener's
    /// default backend rather than a rule.
    pub fn router_match(&self) -> Option<crate::router::HostMatch> {
        match self {
            HostPattern::Exact(name) => Some(crate::router::HostMatch::Exact(name.clone())),
            HostPattern::Wildcard(base) => Some(crate::router::HostMatch::Wildcard(base.clone())),
            HostPattern::Any => None,
        }
    }

    fn precedence(&self) -> (u8, Reverse<usize>, &str) {
        match self {
            HostPattern::Exact(name) => (0, Reverse(0), name),
            HostPattern::Wildcard(base) => (1, Reverse(base.split('.').count()), base),
            HostPattern::Any => (2, Reverse(0), ""),
        }
    }
}

impl Ord for HostPattern {
    fn cmp(&self, other: &Self) -> Ordering {
        // (group, labels, name) names the variant and its string, so this agrees with Eq.
        self.precedence().cmp(&other.precedence())
    }
}

impl PartialOrd for HostPattern {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for HostPattern {
    /// As written in the key: `www.example.com`, `*.example.com`, `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(base) => write!(f, "*.{base}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// Why the host part of a key can never match a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty")]
    Empty,
    #[error("{bytes} bytes; a DNS name has at most {HOST_BYTES_MAX}")]
    TooLong { bytes: usize },
    #[error(
        "upper-case letter: Host headers are compared in lower case, so write the key in lower case"
    )]
    Uppercase,
    #[error("ends with a dot: Host headers are compared without the trailing dot")]
    TrailingDot,
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("a label is longer than 63 bytes (RFC 1035 §2.3.4)")]
    LabelTooLong,
    #[error("`*` only as the whole host or as the first label (`*.example.com`)")]
    MisplacedWildcard,
    #[error(
        "byte 0x{byte:02x} at {at}: only a-z, 0-9, `-`, `_` and `.` (write IDNs as punycode, no port)"
    )]
    BadByte { byte: u8, at: usize },
}

fn check_name(name: &[u8]) -> Result<String, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.ends_with(b".") {
        return Err(HostError::TrailingDot);
    }
    for (at, &byte) in name.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {}
            b'A'..=b'Z' => return Err(HostError::Uppercase),
            b'*' => return Err(HostError::MisplacedWildcard),
            _ => return Err(HostError::BadByte { byte, at }),
        }
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(HostError::LabelTooLong);
        }
    }
    // Only the bytes above remain, all ASCII.
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// One route: the requests for `host` go to `servers`, in the list's order. `id` is the list's
/// element 0 (hipache's identifier), kept for logs and stats; it routes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: HostPattern,
    pub id: String,
    pub servers: Vec<SocketAddr>,
}

/// Why an entry was skipped. Each names what to fix; list positions are Redis's 0-based
/// indexes, so `LSET <key> <index> <value>` repairs one element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("key is {bytes} bytes; the most is {max} (prefix, `frontend:`, a 253-byte host)")]
    KeyTooLong { bytes: usize, max: usize },
    #[error("key does not start with the prefix and `frontend:`")]
    NotARouteKey,
    #[error("host `{host}`: {reason}")]
    BadHost { host: String, reason: HostError },
    #[error("not a list but a {found}; a route is a LIST: RPUSH <key> <identifier> <url>...")]
    NotAList { found: String },
    #[error("empty list")]
    EmptyList,
    #[error("the list holds only the identifier; add servers: RPUSH <key> http://IP:PORT")]
    OnlyIdentifier,
    #[error("more than {max} servers")]
    TooManyServers { max: usize },
    #[error("element {index} is {bytes} bytes; the most is {VALUE_BYTES_MAX}")]
    ValueTooLong { index: usize, bytes: usize },
    #[error("identifier (element 0): {reason}")]
    BadIdentifier { reason: &'static str },
    #[error("element {index} `{url}`: {reason}")]
    BadUrl {
        index: usize,
        url: String,
        reason: &'static str,
    },
    #[error("element {index} `{url}`: scheme `{scheme}` is not supported; write http://IP:PORT")]
    UnsupportedScheme {
        index: usize,
        url: String,
        scheme: String,
    },
    #[error(
        "element {index} `{url}`: `{host}` is a host name; write an IP address (names are not resolved, see docs/fleet.md)"
    )]
    HostnameNotAllowed {
        index: usize,
        url: String,
        host: String,
    },
    #[error("element {index}: {addr} is listed twice")]
    DuplicateServer { index: usize, addr: SocketAddr },
    #[error("Redis refused to read the key: {reason}")]
    Unreadable { reason: String },
}

/// What is wrong with one backend URL, before the entry adds the element's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    Malformed(&'static str),
    UnsupportedScheme(String),
    Hostname(String),
}

/// The host pattern of a route key, without reading its value (used to drop a deleted key).
pub fn host_of_key(prefix: &[u8], key: &[u8]) -> Result<HostPattern, EntryError> {
    let max = key_bytes_max(prefix.len());
    if key.len() > max {
        return Err(EntryError::KeyTooLong {
            bytes: key.len(),
            max,
        });
    }
    let host = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(FRONTEND_TAG))
        .ok_or(EntryError::NotARouteKey)?;
    HostPattern::parse(host).map_err(|reason| EntryError::BadHost {
        host: lossy(host),
        reason,
    })
}

/// Parses one entry: `key` as stored (with `prefix`), `values` the list's elements in order.
/// A LIST never exists empty in Redis; the Redis layer treats an empty read as a deleted key
/// and never passes one here, but the function still answers [`EntryError::EmptyList`].
pub fn parse_entry(prefix: &[u8], key: &[u8], values: &[Vec<u8>]) -> Result<Route, EntryError> {
    let host = host_of_key(prefix, key)?;
    let (id_bytes, urls) = match values {
        [] => return Err(EntryError::EmptyList),
        [_] => return Err(EntryError::OnlyIdentifier),
        [id, urls @ ..] => (id, urls),
    };
    if urls.len() > SERVERS_PER_ROUTE_MAX {
        return Err(EntryError::TooManyServers {
            max: SERVERS_PER_ROUTE_MAX,
        });
    }
    if let Some((index, value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| v.len() > VALUE_BYTES_MAX)
    {
        return Err(EntryError::ValueTooLong {
            index,
            bytes: value.len(),
        });
    }
    let id = parse_identifier(id_bytes)?;
    let mut servers: Vec<SocketAddr> = Vec::with_capacity(urls.len());
    for (i, raw) in urls.iter().enumerate() {
        let index = i + 1;
        let addr = parse_server_url(raw).map_err(|e| match e {
            UrlError::Malformed(reason) => EntryError::BadUrl {
                index,
                url: lossy(raw),
                reason,
            },
            UrlError::UnsupportedScheme(scheme) => EntryError::UnsupportedScheme {
                index,
                url: lossy(raw),
                scheme,
            },
            UrlError::Hostname(host) => EntryError::HostnameNotAllowed {
                index,
                url: lossy(raw),
                host,
            },
        })?;
        // Backends hold unique addresses (config rule); a duplicate is a writer's mistake, and
        // silently keeping one would hide it. Lists are short, so a scan is fine.
        if servers.contains(&addr) {
            return Err(EntryError::DuplicateServer { index, addr });
        }
        servers.push(addr);
    }
    Ok(Route { host, id, servers })
}

fn parse_identifier(raw: &[u8]) -> Result<String, EntryError> {
    let id = std::str::from_utf8(raw).map_err(|_| EntryError::BadIdentifier {
        reason: "not UTF-8",
    })?;
    // It ends up in logs and stats; control characters would forge or break lines there.
    if id.chars().any(char::is_control) {
        return Err(EntryError::BadIdentifier {
            reason: "contains a control character",
        });
    }
    Ok(id.to_owned())
}

/// Parses `http://IPv4[:PORT][/]` or `http://[IPv6][:PORT][/]` (port 80 when absent).
///
/// Host names are refused, not resolved: the control thread would have to resolve them (and
/// again whenever DNS changes, with no TTL to go by), two nodes resolving at different moments
/// would build different snapshots, and a resolver outage would turn into a routing outage.
/// Whoever writes the routes already knows the addresses; publish those.
pub fn parse_server_url(raw: &[u8]) -> Result<SocketAddr, UrlError> {
    if raw.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return Err(UrlError::Malformed(
            "contains a space, a control character or a non-ASCII byte",
        ));
    }
    let Some(sep) = raw.windows(3).position(|w| w == b"://") else {
        return Err(UrlError::Malformed("no scheme; write http://IP:PORT"));
    };
    let (scheme, rest) = (
        raw.get(..sep).unwrap_or_default(),
        raw.get(sep + 3..).unwrap_or_default(),
    );
    if scheme.is_empty() {
        return Err(UrlError::Malformed("no scheme; write http://IP:PORT"));
    }
    // RFC 3986 §3.1: schemes are case-insensitive.
    if !scheme.eq_ignore_ascii_case(b"http") {
        return Err(UrlError::UnsupportedScheme(lossy(scheme).to_lowercase()));
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, tail) = (
        rest.get(..end).unwrap_or_default(),
        rest.get(end..).unwrap_or_default(),
    );
    match tail {
        b"" | b"/" => {}
        [b'?', ..] | [b'/', b'?', ..] => {
            return Err(UrlError::Malformed("a query is not supported"));
        }
        [b'#', ..] | [b'/', b'#', ..] => {
            return Err(UrlError::Malformed("a fragment is not supported"));
        }
        _ => {
            return Err(UrlError::Malformed(
                "a path is not supported: requests keep their own path",
            ));
        }
    }
    if authority.contains(&b'@') {
        return Err(UrlError::Malformed("user information is not supported"));
    }
    if authority.is_empty() {
        return Err(UrlError::Malformed("no address"));
    }
    let (ip, port) = if let Some(inner) = authority.strip_prefix(b"[") {
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return Err(UrlError::Malformed("`[` without `]`"));
        };
        let text = inner.get(..close).unwrap_or_default();
        let after = inner.get(close + 1..).unwrap_or_default();
        let ip: Ipv6Addr = ascii(text)
            .parse()
            .map_err(|_| UrlError::Malformed("not an IPv6 address (zones are not supported)"))?;
        let port = match after {
            b"" => HTTP_PORT_DEFAULT,
            [b':', digits @ ..] => parse_port(digits)?,
            _ => return Err(UrlError::Malformed("after `]` only `:PORT` may follow")),
        };
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => (
                authority.get(..colon).unwrap_or_default(),
                parse_port(authority.get(colon + 1..).unwrap_or_default())?,
            ),
            None => (authority, HTTP_PORT_DEFAULT),
        };
        if host.contains(&b':') {
            return Err(UrlError::Malformed(
                "an IPv6 address goes in brackets: http://[::1]:8002",
            ));
        }
        match ascii(host).parse::<Ipv4Addr>() {
            Ok(ip) => (IpAddr::V4(ip), port),
            Err(_) if host.iter().any(|b| b.is_ascii_alphabetic()) => {
                return Err(UrlError::Hostname(lossy(host)));
            }
            Err(_) => return Err(UrlError::Malformed("not an IPv4 address")),
        }
    };
    if ip.is_unspecified() {
        // Linux connects 0.0.0.0 and :: to the local host: never what a writer meant.
        return Err(UrlError::Malformed("unspecified address (0.0.0.0 or ::)"));
    }
    Ok(SocketAddr::new(ip, port))
}

fn parse_port(digits: &[u8]) -> Result<u16, UrlError> {
    if digits.is_empty() {
        return Err(UrlError::Malformed("empty port"));
    }
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(UrlError::Malformed("port is not a number from 1 to 65535"));
    }
    match ascii(digits).parse::<u16>() {
        Ok(0) => Err(UrlError::Malformed("port 0")),
        Ok(port) => Ok(port),
        Err(_) => Err(UrlError::Malformed("port is not a number from 1 to 65535")),
    }
}

/// The bytes as text; only called on bytes already checked to be printable ASCII.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Text for a message: invalid UTF-8 replaced, at most 256 bytes (values are bounded, keys may
/// not be), so one bad entry cannot write a megabyte into a log line.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    const SHOWN_BYTES_MAX: usize = 256;
    match bytes.get(..SHOWN_BYTES_MAX) {
        Some(head) if bytes.len() > SHOWN_BYTES_MAX => {
            format!(
                "{}...({} bytes)",
                String::from_utf8_lossy(head),
                bytes.len()
            )
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(items: &[&[u8]]) -> Vec<Vec<u8>> {
        items.iter().map(|v| v.to_vec()).collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_route_with_ipv4_and_ipv6_servers() {
        let route = parse_entry(
            b"",
            b"frontend:www.example.com",
            &vals(&[b"mysite", b"http://127.0.0.1:8001", b"http://[::1]:8002"]),
        )
        .unwrap();
        assert_eq!(
            route,
            Route {
                host: HostPattern::Exact("www.example.com".into()),
                id: "mysite".into(),
                servers: vec![addr("127.0.0.1:8001"), addr("[::1]:8002")],
            }
        );
    }

    #[test]
    fn wildcard_and_catch_all_keys() {
        let wild = parse_entry(
            b"",
            b"frontend:*.example.com",
            &vals(&[b"w", b"http://10.0.0.1:80"]),
        )
        .unwrap();
        assert_eq!(wild.host, HostPattern::Wildcard("example.com".into()));
        let any = parse_entry(b"", b"frontend:*", &vals(&[b"all", b"http://10.0.0.2"])).unwrap();
        assert_eq!(any.host, HostPattern::Any);
        assert_eq!(any.servers, vec![addr("10.0.0.2:80")]);
    }

    #[test]
    fn prefix_is_part_of_the_key() {
        let route = parse_entry(
            b"hipache:",
            b"hipache:frontend:a.example",
            &vals(&[b"a", b"http://10.0.0.1:81"]),
        )
        .unwrap();
        assert_eq!(route.host, HostPattern::Exact("a.example".into()));
        assert_eq!(
            parse_entry(
                b"hipache:",
                b"frontend:a.example",
                &vals(&[b"a", b"http://10.0.0.1:81"])
            ),
            Err(EntryError::NotARouteKey)
        );
        assert_eq!(
            parse_entry(b"", b"backend:a", &vals(&[b"a", b"http://10.0.0.1"])),
            Err(EntryError::NotARouteKey)
        );
    }

    #[test]
    fn url_forms_accepted() {
        for (raw, want) in [
            (&b"http://127.0.0.1:8001"[..], "127.0.0.1:8001"),
            (b"http://127.0.0.1:8001/", "127.0.0.1:8001"),
            (b"HTTP://127.0.0.1", "127.0.0.1:80"),
            (b"http://[::1]", "[::1]:80"),
            (b"http://[2001:db8::5]:65535/", "[2001:db8::5]:65535"),
            (b"http://[::ffff:10.0.0.1]:8080", "[::ffff:10.0.0.1]:8080"),
        ] {
            assert_eq!(parse_server_url(raw), Ok(addr(want)), "{raw:?}");
        }
    }

    #[test]
    fn url_errors() {
        let malformed = |raw: &[u8]| match parse_server_url(raw) {
            Err(UrlError::Malformed(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        };
        for raw in [
            &b"127.0.0.1:8001"[..],
            b"://127.0.0.1",
            b"http://",
            b"http:///",
            b"http://127.0.0.1:",
            b"http://127.0.0.1:0",
            b"http://127.0.0.1:65536",
            b"http://127.0.0.1:+80",
            b"http://127.0.0.1:80x",
            b"http://127.0.0.1:8001/app",
            b"http://127.0.0.1:8001?x=1",
            b"http://127.0.0.1:8001/?x=1",
            b"http://127.0.0.1#frag",
            b"http://user@127.0.0.1",
            b"http://127.0.0.1 ",
            b" http://127.0.0.1",
            b"http://127.0.0.1\n",
            b"http://1.2.3",
            b"http://01.2.3.4",
            b"http://256.0.0.1",
            b"http://::1",
            b"http://[::1",
            b"http://[::1]x",
            b"http://[fe80::1%25eth0]:80",
            b"http://[zz::1]",
            b"http://0.0.0.0:80",
            b"http://[::]:80",
            b"http://\xc3\xa9.example",
        ] {
            malformed(raw);
        }
    }

    #[test]
    fn unsupported_schemes_and_host_names_are_named() {
        assert_eq!(
            parse_server_url(b"https://10.0.0.1:443"),
            Err(UrlError::UnsupportedScheme("https".into()))
        );
        assert_eq!(
            parse_server_url(b"WS://10.0.0.1"),
            Err(UrlError::UnsupportedScheme("ws".into()))
        );
        assert_eq!(
            parse_server_url(b"http://backend.internal:8080"),
            Err(UrlError::Hostname("backend.internal".into()))
        );
        assert_eq!(
            parse_server_url(b"http://localhost"),
            Err(UrlError::Hostname("localhost".into()))
        );
    }

    #[test]
    fn entry_errors_for_the_list() {
        let key = b"frontend:www.example.com";
        assert_eq!(parse_entry(b"", key, &[]), Err(EntryError::EmptyList));
        assert_eq!(
            parse_entry(b"", key, &vals(&[b"mysite"])),
            Err(EntryError::OnlyIdentifier)
        );
        assert_eq!(
            parse_entry(b"", key, &vals(&[b"mysite", b"http://bad"])),
            Err(EntryError::HostnameNotAllowed {
                index: 1,
                url: "http://bad".into(),
                host: "bad".into()
            })
        );
        assert_eq!(
            parse_entry(
                b"",
                key,
                &vals(&[b"m", b"http://10.0.0.1:1", b"http://10.0.0.1:1/app"])
            ),
            Err(EntryError::BadUrl {
                index: 2,
                url: "http://10.0.0.1:1/app".into(),
                reason: "a path is not supported: requests keep their own path"
            })
        );
        assert_eq!(
            parse_entry(b"", key, &vals(&[b"m", b"https://10.0.0.1"])),
            Err(EntryError::UnsupportedScheme {
                index: 1,
                url: "https://10.0.0.1".into(),
                scheme: "https".into()
            })
        );
        assert_eq!(
            parse_entry(
                b"",
                key,
                &vals(&[b"m", b"http://10.0.0.1:1", b"http://10.0.0.1:1/"])
            ),
            Err(EntryError::DuplicateServer {
                index: 2,
                addr: addr("10.0.0.1:1")
            })
        );
    }

    #[test]
    fn bad_identifiers() {
        let key = b"frontend:a.example";
        assert_eq!(
            parse_entry(b"", key, &vals(&[b"\xff\xfe", b"http://10.0.0.1"])),
            Err(EntryError::BadIdentifier {
                reason: "not UTF-8"
            })
        );
        assert_eq!(
            parse_entry(b"", key, &vals(&[b"a\nb", b"http://10.0.0.1"])),
            Err(EntryError::BadIdentifier {
                reason: "contains a control character"
            })
        );
        // Any printable UTF-8 is fine, also empty.
        assert!(parse_entry(b"", key, &vals(&[b"", b"http://10.0.0.1"])).is_ok());
        assert!(
            parse_entry(
                b"",
                key,
                &vals(&["caf\u{e9}".as_bytes(), b"http://10.0.0.1"])
            )
            .is_ok()
        );
    }

    #[test]
    fn server_count_bounds() {
        let key = b"frontend:a.example";
        let mut list = vec![b"id".to_vec()];
        for i in 0..SERVERS_PER_ROUTE_MAX {
            list.push(format!("http://10.0.{}.{}:80", i / 256, i % 256).into_bytes());
        }
        assert_eq!(
            parse_entry(b"", key, &list).unwrap().servers.len(),
            SERVERS_PER_ROUTE_MAX
        );
        list.push(b"http://10.1.0.0:80".to_vec());
        assert_eq!(
            parse_entry(b"", key, &list),
            Err(EntryError::TooManyServers {
                max: SERVERS_PER_ROUTE_MAX
            })
        );
    }

    #[test]
    fn value_length_bound() {
        let key = b"frontend:a.example";
        let long = vec![b'a'; VALUE_BYTES_MAX + 1];
        assert_eq!(
            parse_entry(b"", key, &[long.clone(), b"http://10.0.0.1".to_vec()]),
            Err(EntryError::ValueTooLong {
                index: 0,
                bytes: VALUE_BYTES_MAX + 1
            })
        );
        assert_eq!(
            parse_entry(
                b"",
                key,
                &[b"id".to_vec(), b"http://10.0.0.1".to_vec(), long]
            ),
            Err(EntryError::ValueTooLong {
                index: 2,
                bytes: VALUE_BYTES_MAX + 1
            })
        );
        let fits = vec![b'a'; VALUE_BYTES_MAX];
        assert!(parse_entry(b"", key, &[fits, b"http://10.0.0.1".to_vec()]).is_ok());
    }

    #[test]
    fn key_length_bound() {
        // A 253-byte name of 7-byte labels (a longer label fails on its own).
        let name = "abcdefg.".repeat(31) + "examp";
        assert_eq!(name.len(), HOST_BYTES_MAX);
        let ok_key = format!("p:frontend:{name}");
        assert!(parse_entry(b"p:", ok_key.as_bytes(), &vals(&[b"i", b"http://10.0.0.1"])).is_ok());
        let long_key = format!("p:frontend:x{name}");
        assert_eq!(
            parse_entry(
                b"p:",
                long_key.as_bytes(),
                &vals(&[b"i", b"http://10.0.0.1"])
            ),
            Err(EntryError::KeyTooLong {
                bytes: long_key.len(),
                max: 2 + 9 + HOST_BYTES_MAX
            })
        );
    }

    #[test]
    fn bad_hosts() {
        for (host, want) in [
            (&b""[..], HostError::Empty),
            (b"*.", HostError::Empty),
            (b"WWW.example.com", HostError::Uppercase),
            (b"www.example.com.", HostError::TrailingDot),
            (b"www..example.com", HostError::EmptyLabel),
            (b".example.com", HostError::EmptyLabel),
            (b"a*.example.com", HostError::MisplacedWildcard),
            (b"*.*.example.com", HostError::MisplacedWildcard),
            (b"**", HostError::MisplacedWildcard),
            (
                b"www.example.com:80",
                HostError::BadByte { byte: b':', at: 15 },
            ),
            (b"[::1]", HostError::BadByte { byte: b'[', at: 0 }),
            (
                b"caf\xc3\xa9.example",
                HostError::BadByte { byte: 0xc3, at: 3 },
            ),
        ] {
            assert_eq!(HostPattern::parse(host), Err(want), "{host:?}");
        }
        let label = "a".repeat(64);
        assert_eq!(
            HostPattern::parse(format!("{label}.example").as_bytes()),
            Err(HostError::LabelTooLong)
        );
        assert_eq!(
            HostPattern::parse("a.".repeat(127).as_bytes()),
            Err(HostError::TooLong { bytes: 254 })
        );
        let err = parse_entry(
            b"",
            b"frontend:Www.example.com",
            &vals(&[b"i", b"http://1.1.1.1"]),
        );
        assert_eq!(
            err,
            Err(EntryError::BadHost {
                host: "Www.example.com".into(),
                reason: HostError::Uppercase
            })
        );
    }

    #[test]
    fn good_hosts() {
        for host in [
            &b"example.com"[..],
            b"localhost",
            b"10.0.0.1",
            b"xn--caf-dma.example",
            b"_acme.example",
            b"a-b.example",
        ] {
            assert!(
                matches!(HostPattern::parse(host), Ok(HostPattern::Exact(_))),
                "{host:?}"
            );
        }
    }

    #[test]
    fn precedence_order_is_exact_then_longer_wildcards_then_any() {
        let mut patterns = [
            HostPattern::Any,
            HostPattern::Wildcard("example.com".into()),
            HostPattern::Exact("z.example.com".into()),
            HostPattern::Wildcard("api.example.com".into()),
            HostPattern::Exact("a.example.com".into()),
            HostPattern::Wildcard("com".into()),
            HostPattern::Wildcard("example.org".into()),
        ];
        patterns.sort();
        let shown: Vec<String> = patterns.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "a.example.com",
                "z.example.com",
                "*.api.example.com",
                "*.example.com",
                "*.example.org",
                "*.com",
                "*"
            ]
        );
    }

    #[test]
    fn matching_follows_the_router() {
        let wild = HostPattern::Wildcard("example.com".into());
        assert!(wild.matches(b"www.example.com"));
        assert!(wild.matches(b"a.b.example.com"));
        assert!(!wild.matches(b"example.com"));
        assert!(!wild.matches(b"wwwexample.com"));
        assert!(HostPattern::Exact("example.com".into()).matches(b"example.com"));
        assert!(HostPattern::Any.matches(b"anything"));
        assert_eq!(HostPattern::Any.router_match(), None);
        assert_eq!(
            wild.router_match(),
            Some(crate::router::HostMatch::Wildcard("example.com".into()))
        );
    }

    #[test]
    fn messages_are_bounded() {
        let shown = lossy(&vec![b'k'; 10_000]);
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("...(10000 bytes)"));
    }
}
