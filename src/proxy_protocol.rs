//! Owns: encoding the PROXY protocol header (v1 text, v2 binary — haproxy.org proxy-protocol.txt)
//! that ringway sends to backends configured with `send_proxy`, so they see the real client
//! address. Encoding is done by the `ppp` crate; this module only maps ringway's addresses.
//! Must not: do I/O.

use std::net::SocketAddr;

/// `send_proxy` on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// The header announcing a TCP connection from `client` to `local` (the address the client
/// connected to). Mixed families (an IPv4 client on an IPv6 socket) are announced as
/// IPv4 when the IPv6 side is v4-mapped, else as UNKNOWN / unspecified.
pub fn header(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = normalize(client, local);
    match version {
        ProxyVersion::V1 => {
            let addresses: ppp::v1::Addresses = match (client, local) {
                (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                    (client, local).into()
                }
                _ => ppp::v1::Addresses::Unknown,
            };
            addresses.to_string().into_bytes()
        }
        ProxyVersion::V2 => {
            let builder = ppp::v2::Builder::with_addresses(
                ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                ppp::v2::Protocol::Stream,
                (client, local),
            );
            builder.build().unwrap_or_default()
        }
    }
}

/// A PROXY header read at the start of a connection from a trusted load balancer
/// (`accept_proxy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `source`: the client the header announces; `None` for LOCAL / UNKNOWN (health checks of
    /// the upstream balancer: use the connection's own address). `consumed_bytes`: the header.
    Complete {
        source: Option<SocketAddr>,
        consumed_bytes: usize,
    },
    /// Read more.
    Partial,
    Invalid(&'static str),
}

const V2_PREFIX: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";
/// v1: "PROXY" ... CRLF is at most 107 bytes (proxy-protocol.txt §2.1).
const V1_BYTES_MAX: usize = 107;
/// v2 headers larger than this (addresses plus TLVs) are refused.
const V2_BYTES_MAX: usize = 4096;

/// Parses the PROXY header (v1 or v2, strictly, via `ppp`) at the start of `buf`.
pub fn parse_received(buf: &[u8]) -> Received {
    use ppp::PartialResult;
    let n = buf.len().min(V2_PREFIX.len());
    if buf.get(..n) == V2_PREFIX.get(..n) {
        if buf.len() < V2_PREFIX.len() + 4 {
            return Received::Partial;
        }
        let length = buf
            .get(14..16)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        if 16 + length > V2_BYTES_MAX {
            return Received::Invalid("PROXY v2 header too large");
        }
        return match ppp::v2::Header::try_from(buf) {
            Ok(h) => Received::Complete {
                // proxy-protocol.txt §2.2: LOCAL means "use the real connection endpoints and
                // discard the protocol block including the family", even when one is present.
                source: match (h.command, h.addresses) {
                    (ppp::v2::Command::Local, _) => None,
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (
                        ppp::v2::Command::Proxy,
                        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_),
                    ) => None,
                },
                consumed_bytes: h.len(),
            },
            Err(e) if e.is_incomplete() => Received::Partial,
            Err(_) => Received::Invalid("malformed PROXY v2 header"),
        };
    }
    let n = buf.len().min(6);
    if buf.get(..n) == b"PROXY ".get(..n) {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() < V1_BYTES_MAX {
                Received::Partial
            } else {
                Received::Invalid("PROXY v1 line too long")
            };
        };
        // proxy-protocol.txt §2.1: the line is US-ASCII. ppp 2.3.0 slices it two bytes past
        // its first CR, which panics inside a multi-byte character ("\r\u{1c5}"), so nothing
        // else may reach it.
        let Some(line) = buf
            .get(..end + 2)
            .filter(|l| l.is_ascii())
            .and_then(|l| std::str::from_utf8(l).ok())
        else {
            return Received::Invalid("PROXY v1 line is not ASCII");
        };
        return match ppp::v1::Header::try_from(line) {
            Ok(h) => Received::Complete {
                source: match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Unknown => None,
                },
                consumed_bytes: end + 2,
            },
            Err(_) => Received::Invalid("malformed PROXY v1 line"),
        };
    }
    Received::Invalid("connection does not start with a PROXY header")
}

fn normalize(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |s: SocketAddr| match s {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::from((ip, v6.port())),
            None => s,
        },
        SocketAddr::V4(_) => s,
    };
    (v4(a), v4(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn v1_text_header() {
        let h = header(
            ProxyVersion::V1,
            addr("192.0.2.7:5555"),
            addr("10.0.0.1:443"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 443\r\n");
        let h6 = header(
            ProxyVersion::V1,
            addr("[2001:db8::1]:1"),
            addr("[2001:db8::2]:2"),
        );
        assert_eq!(h6, b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
        let mapped = header(
            ProxyVersion::V1,
            addr("[::ffff:192.0.2.7]:1"),
            addr("10.0.0.1:2"),
        );
        assert_eq!(mapped, b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\n");
        let mixed = header(
            ProxyVersion::V1,
            addr("[2001:db8::1]:1"),
            addr("10.0.0.1:2"),
        );
        assert_eq!(mixed, b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn received_v1_and_v2_at_every_split() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let mut bytes = header(version, addr("203.0.113.9:5555"), addr("10.0.0.1:80"));
            let len = bytes.len();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            for cut in 0..len {
                assert_eq!(
                    parse_received(&bytes[..cut]),
                    Received::Partial,
                    "{version:?} cut {cut}"
                );
            }
            assert_eq!(
                parse_received(&bytes),
                Received::Complete {
                    source: Some(addr("203.0.113.9:5555")),
                    consumed_bytes: len
                }
            );
        }
    }

    #[test]
    fn received_unknown_and_garbage() {
        assert_eq!(
            parse_received(b"PROXY UNKNOWN\r\nx"),
            Received::Complete {
                source: None,
                consumed_bytes: 15
            }
        );
        assert!(matches!(
            parse_received(b"GET / HTTP/1.1\r\n"),
            Received::Invalid(_)
        ));
        assert!(matches!(
            parse_received(b"PROXY TCP4 1.2.3.4\r\n"),
            Received::Invalid(_)
        ));
        assert!(matches!(
            parse_received(b"PROXY TCP4 999.2.3.4 1.2.3.4 1 2\r\n"),
            Received::Invalid(_)
        ));
        // A CR, then a two-byte character: ppp would slice inside it (found by fuzzing).
        assert!(matches!(
            parse_received("PROXY TCP4 \u{1c}\u{1c5}\0\r\u{1c5}\0\r&.&.5\r\n".as_bytes()),
            Received::Invalid(_)
        ));
        assert!(matches!(
            parse_received("PROXY UNKNOWN \u{e9}\r\n".as_bytes()),
            Received::Invalid(_)
        ));
        let long = format!("PROXY {}", "1".repeat(200));
        assert!(matches!(
            parse_received(long.as_bytes()),
            Received::Invalid(_)
        ));
    }

    #[test]
    fn received_v2_local_announces_no_client_even_with_addresses() {
        // Version 2, LOCAL; TCP over IPv4, 12 address bytes (an upstream balancer's health
        // check may fill them in); then the request.
        let mut bytes = V2_PREFIX.to_vec();
        bytes.extend_from_slice(&[0x20, 0x11, 0x00, 0x0c]);
        bytes.extend_from_slice(&[203, 0, 113, 9, 10, 0, 0, 1, 0x15, 0xb3, 0x01, 0xbb]);
        let len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse_received(&bytes),
            Received::Complete {
                source: None,
                consumed_bytes: len
            }
        );
        // The same block with PROXY announces its source.
        bytes[12] = 0x21;
        assert_eq!(
            parse_received(&bytes),
            Received::Complete {
                source: Some(addr("203.0.113.9:5555")),
                consumed_bytes: len
            }
        );
    }

    #[test]
    fn v2_binary_header_round_trips() {
        let h = header(
            ProxyVersion::V2,
            addr("192.0.2.7:5555"),
            addr("10.0.0.1:443"),
        );
        assert!(h.starts_with(b"\r\n\r\n\x00\r\nQUIT\n"));
        let parsed = ppp::v2::Header::try_from(h.as_slice()).map(|p| p.addresses);
        assert_eq!(
            parsed.ok(),
            Some(ppp::v2::Addresses::from((
                addr("192.0.2.7:5555"),
                addr("10.0.0.1:443")
            )))
        );
    }
}
