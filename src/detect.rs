//! Owns: protocol detection on one port (`mode = "detect"`): what the first bytes a client sent
//! say it speaks. Pure (bytes in, verdict out), like HAProxy's `tcp-request inspect-delay`
//! rules with `req.ssl_hello_type` and `req.proto_http`.
//! Must not: read sockets or clocks; the shard peeks and applies the timeout.

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (ClientHello follows).
    Tls,
    /// An HTTP/1.x request line: a method token and a space.
    Http,
    /// Anything else (e.g. `<policy-file-request/>\0`, a Redis command).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Known(Protocol),
    /// Could still be HTTP (an upper-case token so far): wait for more bytes.
    Partial,
}

/// The longest method token we wait for; longer runs of capitals are not HTTP.
const METHOD_BYTES_MAX: usize = 24;

/// Classifies the first bytes a client sent. `bytes` must not be empty.
pub fn classify(bytes: &[u8]) -> Detected {
    let Some(&first) = bytes.first() else {
        return Detected::Partial;
    };
    // TLS record: handshake (22), protocol major version 3.
    if first == 0x16 {
        return match bytes.get(1) {
            None => Detected::Partial,
            Some(3) => Detected::Known(Protocol::Tls),
            Some(_) => Detected::Known(Protocol::Other),
        };
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            return Detected::Known(if i > 0 {
                Protocol::Http
            } else {
                Protocol::Other
            });
        }
        if !(b.is_ascii_uppercase() || b == b'-' || b == b'_') || i >= METHOD_BYTES_MAX {
            return Detected::Known(Protocol::Other);
        }
    }
    Detected::Partial
}

/// The verdict when no more bytes will come (peek timeout or the client's EOF): what is still
/// undecided is not HTTP.
pub fn classify_final(bytes: &[u8]) -> Protocol {
    match classify(bytes) {
        Detected::Known(p) => p,
        Detected::Partial => Protocol::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_split(input: &[u8], want: Protocol) {
        for n in 1..=input.len() {
            match classify(&input[..n]) {
                Detected::Known(p) => {
                    assert_eq!(p, want, "{:?} at {n}", String::from_utf8_lossy(input));
                    return;
                }
                Detected::Partial => continue,
            }
        }
        panic!("undecided: {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn http_methods() {
        for m in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.0\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"M-SEARCH * HTTP/1.1\r\n",
            b"PROPFIND /a HTTP/1.1\r\n",
        ] {
            every_split(m, Protocol::Http);
        }
    }

    #[test]
    fn tls_and_others() {
        every_split(&[0x16, 0x03, 0x01, 0x02, 0x00], Protocol::Tls);
        every_split(b"<policy-file-request/>\0", Protocol::Other);
        every_split(b"*1\r\n$4\r\nPING\r\n", Protocol::Other);
        every_split(b"get / HTTP/1.1\r\n", Protocol::Other);
        every_split(b" GET", Protocol::Other);
        every_split(&[0x16, 0x01], Protocol::Other);
        every_split(b"SSH-2.0-OpenSSH\r\n", Protocol::Other);
        every_split(&[b'A'; 40], Protocol::Other);
    }

    #[test]
    fn undecided_at_the_end_is_other() {
        assert_eq!(classify(b"GE"), Detected::Partial);
        assert_eq!(classify_final(b"GE"), Protocol::Other);
        assert_eq!(classify_final(&[0x16]), Protocol::Other);
        assert_eq!(classify_final(b""), Protocol::Other);
    }
}
