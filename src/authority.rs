//! Owns: the syntax of a request's authority, as HTTP/1.1's `Host` and HTTP/2's `:authority`
//! carry it (RFC 3986 §3.2, RFC 9110 §4.2.1, RFC 9113 §8.3.1). Shared so that both protocols
//! refuse the same values.
//! Must not: allocate, or accept anything the router and the backend could read as another
//! host than the one routed.

/// RFC 3986 §3.2.2 `reg-name` and `IPv4address` characters: unreserved, sub-delims and `%`
/// (pct-encoded, checked by [`is_valid`]).
const REG_NAME_BYTES: [bool; 256] = crate::byteset::byte_set(true, b"-._~!$&'()*+,;=%");

/// Whether `a` is an authority an `http`/`https` request may carry (RFC 9113 §8.3.1, RFC 3986
/// §3.2): `host [":" port]`, with no userinfo (no `@`), a host that is not empty (RFC 9110
/// §4.2.1) and a port of at most 65535. The host is an IP-literal in brackets or a reg-name /
/// IPv4 address. Anything else (spaces, control bytes, `/`, `?`, `#`, `\`) would reach the
/// backend as a Host that names something else than what was routed.
pub fn is_valid(a: &[u8]) -> bool {
    let pct_ok = |host: &[u8]| {
        host.iter().enumerate().all(|(i, &b)| {
            b != b'%'
                || host
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        })
    };
    let (host_ok, rest) = match a.strip_prefix(b"[") {
        // IPv6address or IPvFuture (RFC 3986 §3.2.2): the reg-name set and `:`, in brackets.
        Some(inner) => {
            let Some(end) = inner.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = inner.get(..end).unwrap_or_default();
            let ok = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b == b':' || (b != b'%' && REG_NAME_BYTES[usize::from(b)]));
            (ok, inner.get(end + 1..).unwrap_or_default())
        }
        None => {
            let end = a.iter().position(|&b| b == b':').unwrap_or(a.len());
            let host = a.get(..end).unwrap_or_default();
            let ok = !host.is_empty()
                && host.iter().all(|&b| REG_NAME_BYTES[usize::from(b)])
                && pct_ok(host);
            (ok, a.get(end..).unwrap_or_default())
        }
    };
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => {
            port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65_535
        }
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn host_and_port_forms() {
        for ok in [
            &b"example.com"[..],
            b"Example.COM:8443",
            b"127.0.0.1",
            b"[::1]:443",
            b"[v1.fe80::a+en1]",
            b"xn--bcher-kva.example",
            b"a%41b",
            b"a:65535",
            b"a:",
        ] {
            assert!(is_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b":80",
            b"user@host",
            b"a b",
            b"a\tb",
            b"a/b",
            b"a?b",
            b"a#b",
            b"a\\b",
            b"a:65536",
            b"a:8x",
            b"a:1:2",
            b"[::1",
            b"[]",
            b"a%4",
            b"a%zz",
            b"\x01",
        ] {
            assert!(!is_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
