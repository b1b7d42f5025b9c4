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
