//! Owns: writing heads back out — a request head towards a backend and a response head towards a
//! client — without hop-by-hop fields (RFC 9110 §7.6.1) and with the forwarding fields ringway
//! adds; and ringway's own small error responses.
//! Must not: touch bodies (they are forwarded verbatim) or decide statuses.

use std::io::Write as _;
use std::net::IpAddr;

use super::parse::{Header, RequestHead, ResponseHead};

/// What `encode_request` adds, per listener.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOpts<'a> {
    pub client_ip: IpAddr,
    /// `http` or `https`.
    pub proto: &'a str,
    pub x_forwarded_for: bool,
    pub x_real_ip: bool,
    pub x_forwarded_proto: bool,
    /// RFC 7239 `Forwarded`.
    pub forwarded: bool,
    /// The request is an Upgrade that will be tunnelled: keep `Upgrade`, send `Connection: upgrade`.
    pub tunnel: bool,
    /// A cookie ringway owns (sticky sessions): removed from `Cookie` before forwarding, so the
    /// backend never sees it (HAProxy `cookie ... indirect`).
    pub strip_cookie: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub struct ResponseOpts<'a> {
    /// ringway keeps the client connection open after this response.
    pub keep_alive: bool,
    /// The client's HTTP minor version.
    pub version_minor_client: u8,
    /// 101 Switching Protocols being relayed: keep `Upgrade`, send `Connection: upgrade`.
    pub tunnel: bool,
    /// Sticky session cookie to insert: `Set-Cookie: NAME=VALUE; Path=/` plus
    /// `Cache-Control: private` so no shared cache stores it (HAProxy `insert nocache`).
    pub set_cookie: Option<(&'a str, &'a str)>,
    /// The chunked body is being de-chunked for an HTTP/1.0 client and sent close-delimited:
    /// drop `Transfer-Encoding` (RFC 9112 §6.1: a 1.0 recipient would not understand it).
    pub dechunk: bool,
}

/// The values of every `Connection` header (their tokens name more hop-by-hop fields). Empty
/// when there is none, which is the common case and costs nothing.
struct ConnectionTokens<'b> {
    values: [&'b [u8]; 4],
    count: usize,
    /// More Connection lines than `values` holds: fall back to scanning the headers.
    overflow: bool,
}

impl<'b> ConnectionTokens<'b> {
    fn new(buf: &'b [u8], headers: &[Header]) -> ConnectionTokens<'b> {
        let mut t = ConnectionTokens {
            values: [&[]; 4],
            count: 0,
            overflow: false,
        };
        for h in headers {
            let name = buf.get(h.name.clone()).unwrap_or_default();
            if name.eq_ignore_ascii_case(b"connection") {
                match t.values.get_mut(t.count) {
                    Some(slot) => {
                        *slot = buf.get(h.value.clone()).unwrap_or_default();
                        t.count += 1;
                    }
                    None => t.overflow = true,
                }
            }
        }
        t
    }

    /// Whether `name` is listed in a Connection header.
    fn lists(&self, buf: &[u8], headers: &[Header], name: &[u8]) -> bool {
        let in_value = |v: &[u8]| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
        };
        if self.overflow {
            return headers.iter().any(|h| {
                buf.get(h.name.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"connection"))
                    && in_value(buf.get(h.value.clone()).unwrap_or_default())
            });
        }
        self.values.iter().take(self.count).any(|v| in_value(v))
    }
}

/// Whether a field must not be forwarded (RFC 9110 §7.6.1).
fn is_hop_by_hop(
    name: &[u8],
    value: &[u8],
    buf: &[u8],
    headers: &[Header],
    tokens: &ConnectionTokens<'_>,
    keep_upgrade: bool,
) -> bool {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"connection") || is(b"keep-alive") || is(b"proxy-connection") {
        return true;
    }
    if is(b"te") {
        // RFC 9110 §10.1.4: TE is hop-by-hop; "trailers" is still meaningful to the next hop.
        return !value.trim_ascii().eq_ignore_ascii_case(b"trailers");
    }
    if is(b"upgrade") {
        return !keep_upgrade;
    }
    // Never drop framing or Host, whatever Connection lists.
    if is(b"transfer-encoding") || is(b"content-length") || is(b"host") {
        return false;
    }
    tokens.count > 0 && tokens.lists(buf, headers, name)
}

/// Writes the request head for the backend into `out`.
pub fn encode_request(buf: &[u8], head: &RequestHead, opts: &ForwardOpts<'_>, out: &mut Vec<u8>) {
    let tokens = ConnectionTokens::new(buf, &head.headers);
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    out.extend_from_slice(head.target(buf));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff_chain: Vec<&[u8]> = Vec::new();
    for h in &head.headers {
        let name = buf.get(h.name.clone()).unwrap_or_default();
        let value = buf.get(h.value.clone()).unwrap_or_default();
        if is_hop_by_hop(name, value, buf, &head.headers, &tokens, opts.tunnel) {
            continue;
        }
        if let Some(cookie) = opts.strip_cookie
            && name.eq_ignore_ascii_case(b"cookie")
        {
            write_cookie_without(out, name, value, cookie.as_bytes());
            continue;
        }
        if opts.x_forwarded_for && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            let v = value.trim_ascii();
            if !v.is_empty() {
                xff_chain.push(v);
            }
            continue;
        }
        if (opts.x_real_ip && name.eq_ignore_ascii_case(b"x-real-ip"))
            || (opts.x_forwarded_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
        {
            continue;
        }
        field(out, name, value);
    }
    if head.host.is_none() {
        // An HTTP/1.0 request without Host goes out as HTTP/1.1, which requires one: the
        // authority of an absolute-form target, or an empty value (RFC 9112 §3.2).
        let authority = super::parse::absolute_authority(head.target(buf)).unwrap_or_default();
        field(out, b"Host", authority);
    }
    let mut ip_buf = [0u8; IP_TEXT_BYTES];
    let ip = ip_text(opts.client_ip, &mut ip_buf);
    if opts.x_forwarded_for {
        out.extend_from_slice(b"X-Forwarded-For: ");
        for v in &xff_chain {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\r\n");
    }
    if opts.x_real_ip {
        field(out, b"X-Real-IP", ip);
    }
    if opts.x_forwarded_proto {
        field(out, b"X-Forwarded-Proto", opts.proto.as_bytes());
    }
    if opts.forwarded {
        // RFC 7239 §6: an IPv6 address is bracketed and the value quoted.
        out.extend_from_slice(b"Forwarded: for=");
        match opts.client_ip {
            IpAddr::V4(_) => out.extend_from_slice(ip),
            IpAddr::V6(_) => {
                out.extend_from_slice(b"\"[");
                out.extend_from_slice(ip);
                out.extend_from_slice(b"]\"");
            }
        }
        let _ = write!(out, ";proto={}\r\n", opts.proto);
    }
    if opts.tunnel {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Longest text of an IP address (an IPv6 address with an embedded IPv4 one is 45 bytes).
const IP_TEXT_BYTES: usize = 48;

/// `ip` as text in `buf`, without allocating (every proxied request writes its client's
/// address once or twice). IPv4 by hand, IPv6 through its `Display`.
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT_BYTES]) -> &[u8] {
    let mut n = 0;
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                for d in &digits[skip..] {
                    buf[n] = b'0' + d;
                    n += 1;
                }
            }
        }
        IpAddr::V6(v6) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = std::io::Write::write_fmt(&mut cur, format_args!("{v6}"));
            n = cur.position() as usize;
        }
    }
    &buf[..n]
}

/// Writes the response head for the client into `out`.
pub fn encode_response(buf: &[u8], head: &ResponseHead, opts: &ResponseOpts, out: &mut Vec<u8>) {
    let tokens = ConnectionTokens::new(buf, &head.headers);
    let _ = write!(out, "HTTP/1.1 {} ", head.status);
    out.extend_from_slice(buf.get(head.reason.clone()).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        let name = buf.get(h.name.clone()).unwrap_or_default();
        let value = buf.get(h.value.clone()).unwrap_or_default();
        if is_hop_by_hop(name, value, buf, &head.headers, &tokens, opts.tunnel)
            || (opts.dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        field(out, name, value);
    }
    if let Some((name, value)) = opts.set_cookie {
        let _ = write!(
            out,
            "Set-Cookie: {name}={value}; Path=/\r\nCache-Control: private\r\n"
        );
    }
    if opts.tunnel {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if !opts.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if opts.version_minor_client == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a `Cookie` field without the pairs named `strip`; nothing when no pair is left.
fn write_cookie_without(out: &mut Vec<u8>, name: &[u8], value: &[u8], strip: &[u8]) {
    let mut kept = Vec::with_capacity(value.len());
    for pair in value.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let pair_name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if pair_name == strip {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    if !kept.is_empty() {
        field(out, name, &kept);
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// ringway's own response: a small text body, `Connection: close` when `close`, and
/// `Retry-After: 1` with 503.
pub fn error_response(status: u16, close: bool, out: &mut Vec<u8>) {
    let reason = reason(status);
    let body_len = 3 + 1 + reason.len() + 1;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\n"
    );
    if status == 503 {
        out.extend_from_slice(b"Retry-After: 1\r\n");
    }
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    let _ = write!(out, "\r\n{status} {reason}\n");
}

#[cfg(test)]
mod tests {

    #[test]
    fn ip_text_matches_display() {
        let mut buf = [0u8; IP_TEXT_BYTES];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "192.0.2.7",
            "10.200.99.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(
                ip_text(parsed, &mut buf),
                parsed.to_string().as_bytes(),
                "{ip}"
            );
        }
    }

    use super::super::parse::{HeadVerdict, Limits, parse_request, parse_response};
    use super::*;

    fn opts() -> ForwardOpts<'static> {
        ForwardOpts {
            client_ip: "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            proto: "http",
            x_forwarded_for: true,
            x_real_ip: false,
            x_forwarded_proto: true,
            forwarded: false,
            tunnel: false,
            strip_cookie: None,
        }
    }

    fn encode_req(raw: &[u8], o: &ForwardOpts<'_>) -> String {
        let HeadVerdict::Complete { head, .. } = parse_request(raw, &Limits::default()) else {
            panic!("parse");
        };
        let mut out = Vec::new();
        encode_request(raw, &head, o, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn hop_by_hop_fields_are_removed_including_those_named_by_connection() {
        let out = encode_req(
            b"GET /p HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, X-Private\r\nX-Private: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: gzip\r\nUpgrade: h2c\r\nX-Keep: 1\r\n\r\n",
            &opts(),
        );
        assert_eq!(
            out,
            "GET /p HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn http10_request_without_host_gets_one() {
        let out = encode_req(b"GET / HTTP/1.0\r\n\r\n", &opts());
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: \r\n"), "{out}");
        let out = encode_req(b"GET http://h.example:8080/x HTTP/1.0\r\n\r\n", &opts());
        assert!(out.contains("Host: h.example:8080\r\n"), "{out}");
    }

    #[test]
    fn many_connection_lines_are_all_honoured() {
        let out = encode_req(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a\r\nConnection: b\r\nConnection: c\r\nConnection: d\r\nConnection: e, f\r\nE: 1\r\nF: 1\r\nA: 1\r\nG: 1\r\n\r\n",
            &opts(),
        );
        for gone in ["\r\nA:", "\r\nE:", "\r\nF:", "Connection"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.contains("\r\nG: 1\r\n"), "{out}");
    }

    #[test]
    fn framing_fields_survive_even_when_listed_in_connection() {
        let out = encode_req(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host\r\nContent-Length: 2\r\nTE: trailers\r\n\r\n",
            &opts(),
        );
        assert!(out.contains("Content-Length: 2\r\n"), "{out}");
        assert!(out.contains("Host: a\r\n"), "{out}");
        assert!(out.contains("TE: trailers\r\n"), "{out}");
    }

    #[test]
    fn xff_appends_to_the_existing_chain_and_proto_is_replaced() {
        let out = encode_req(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
            &ForwardOpts {
                x_real_ip: true,
                ..opts()
            },
        );
        assert!(
            out.contains("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.1\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("X-Forwarded-For").count(), 1);
        assert!(
            out.contains("X-Forwarded-Proto: http\r\n") && !out.contains("https"),
            "{out}"
        );
        assert!(
            out.contains("X-Real-IP: 192.0.2.1\r\n") && !out.contains("6.6.6.6"),
            "{out}"
        );
    }

    #[test]
    fn forwarded_quotes_ipv6_and_keeps_earlier_elements() {
        let out = encode_req(
            b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=10.0.0.1\r\n\r\n",
            &ForwardOpts {
                client_ip: "2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                forwarded: true,
                x_forwarded_for: false,
                x_forwarded_proto: false,
                ..opts()
            },
        );
        assert!(
            out.contains(
                "Forwarded: for=10.0.0.1\r\nForwarded: for=\"[2001:db8::1]\";proto=http\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn tunnel_keeps_upgrade_and_says_connection_upgrade() {
        let out = encode_req(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
            &ForwardOpts {
                tunnel: true,
                ..opts()
            },
        );
        assert!(out.contains("Upgrade: websocket\r\n"), "{out}");
        assert!(out.ends_with("Connection: upgrade\r\n\r\n"), "{out}");
        assert_eq!(out.matches("Connection").count(), 1);
    }

    fn encode_resp(raw: &[u8], o: &ResponseOpts) -> String {
        let HeadVerdict::Complete { head, .. } = parse_response(raw, &Limits::default(), false)
        else {
            panic!("parse");
        };
        let mut out = Vec::new();
        encode_response(raw, &head, o, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn sticky_cookie_is_stripped_before_the_backend_and_inserted_for_the_client() {
        let out = encode_req(
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; SERVERID=s2; b=2\r\nCookie: SERVERID=s1\r\n\r\n",
            &ForwardOpts {
                strip_cookie: Some("SERVERID"),
                ..opts()
            },
        );
        assert!(out.contains("Cookie: a=1; b=2\r\n"), "{out}");
        assert!(!out.contains("SERVERID"), "{out}");
        assert_eq!(out.matches("Cookie:").count(), 1, "{out}");
        let resp = encode_resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            &ResponseOpts {
                keep_alive: true,
                version_minor_client: 1,
                tunnel: false,
                set_cookie: Some(("SERVERID", "s2")),
                dechunk: false,
            },
        );
        assert!(
            resp.contains("Set-Cookie: SERVERID=s2; Path=/\r\nCache-Control: private\r\n"),
            "{resp}"
        );
    }

    #[test]
    fn response_connection_handling() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n";
        let ka = ResponseOpts {
            keep_alive: true,
            version_minor_client: 1,
            tunnel: false,
            set_cookie: None,
            dechunk: false,
        };
        assert_eq!(
            encode_resp(raw, &ka),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        );
        let close = ResponseOpts {
            keep_alive: false,
            ..ka
        };
        assert!(encode_resp(raw, &close).ends_with("Connection: close\r\n\r\n"));
        let old = ResponseOpts {
            version_minor_client: 0,
            ..ka
        };
        assert!(encode_resp(raw, &old).ends_with("Connection: keep-alive\r\n\r\n"));
        let switch = encode_resp(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n",
            &ResponseOpts { tunnel: true, ..ka },
        );
        assert_eq!(
            switch,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn error_responses_are_complete_messages() {
        for status in [400, 404, 408, 413, 414, 431, 502, 503, 504] {
            let mut out = Vec::new();
            error_response(status, true, &mut out);
            let HeadVerdict::Complete {
                head,
                consumed_bytes,
            } = parse_response(&out, &Limits::default(), false)
            else {
                panic!("{status}");
            };
            assert_eq!(head.status, status);
            let super::super::parse::Framing::Length(n) = head.framing else {
                panic!("length");
            };
            assert_eq!(out.len() - consumed_bytes, n as usize);
            assert!(!head.keep_alive);
        }
        let mut out = Vec::new();
        error_response(503, false, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("Retry-After: 1\r\n"));
    }
    #[test]
    fn expect_and_framing_fields_are_forwarded_and_names_keep_their_case() {
        let out = encode_req(
            b"POST /u HTTP/1.1\r\nhOsT: a\r\nEXPECT: 100-continue\r\ntransfer-encoding: chunked\r\nTE: trailers, deflate\r\n\r\n",
            &ForwardOpts {
                x_forwarded_for: false,
                x_forwarded_proto: false,
                ..opts()
            },
        );
        assert_eq!(
            out,
            "POST /u HTTP/1.1\r\nhOsT: a\r\nEXPECT: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn forwarding_fields_are_left_alone_when_not_configured() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Real-IP: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n\r\n";
        let none = ForwardOpts {
            x_forwarded_for: false,
            x_real_ip: false,
            x_forwarded_proto: false,
            forwarded: false,
            ..opts()
        };
        let expected = String::from_utf8_lossy(raw).into_owned();
        assert_eq!(encode_req(raw, &none), expected);
    }

    #[test]
    fn forwarded_for_ipv4_is_a_bare_token() {
        let out = encode_req(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            &ForwardOpts {
                forwarded: true,
                proto: "https",
                x_forwarded_for: false,
                x_forwarded_proto: false,
                ..opts()
            },
        );
        assert!(
            out.ends_with("Forwarded: for=192.0.2.1;proto=https\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn dechunked_response_loses_transfer_encoding_and_closes() {
        let resp = encode_resp(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            &ResponseOpts {
                keep_alive: false,
                version_minor_client: 0,
                tunnel: false,
                set_cookie: None,
                dechunk: true,
            },
        );
        assert_eq!(
            resp,
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_is_dropped_unless_tunnelling() {
        let out = encode_req(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            &opts(),
        );
        assert!(!out.contains("Upgrade"), "{out}");
        assert!(!out.contains("Connection"), "{out}");
        let resp = encode_resp(
            b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
            &ResponseOpts {
                keep_alive: true,
                version_minor_client: 1,
                tunnel: false,
                set_cookie: None,
                dechunk: false,
            },
        );
        assert_eq!(resp, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn response_reason_with_obs_text_is_forwarded_verbatim() {
        let raw = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n";
        let HeadVerdict::Complete { head, .. } = parse_response(raw, &Limits::default(), false)
        else {
            panic!("parse");
        };
        let mut out = Vec::new();
        let ka = ResponseOpts {
            keep_alive: true,
            version_minor_client: 1,
            tunnel: false,
            set_cookie: None,
            dechunk: false,
        };
        encode_response(raw, &head, &ka, &mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn error_response_reasons_and_extra_fields() {
        let cases = [
            (400, "Bad Request"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (417, "Expectation Failed"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
            (599, "Unknown"),
        ];
        for (status, phrase) in cases {
            let mut out = Vec::new();
            error_response(status, false, &mut out);
            let text = String::from_utf8_lossy(&out).into_owned();
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} {phrase}\r\n")),
                "{text}"
            );
            assert!(
                text.ends_with(&format!("\r\n\r\n{status} {phrase}\n")),
                "{text}"
            );
            assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
            assert!(!text.contains("Connection"), "{text}");
            assert_eq!(text.contains("Retry-After: 1\r\n"), status == 503, "{text}");
        }
        let mut out = Vec::new();
        error_response(405, true, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("Allow: ") && text.contains("Connection: close\r\n"),
            "{text}"
        );
    }
}
