//! Owns: peeking at a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3 server_name, RFC 7301 ALPN)
//! without decrypting anything, for SNI passthrough routing and protocol detection.
//! Must not: allocate beyond the handshake it reassembles (bounded), or accept malformed lengths.

/// A ClientHello larger than this (across records) is refused.
pub const CLIENT_HELLO_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name from server_name, lowercased; `None` when the client sent none.
    pub sni: Option<String>,
    /// ALPN protocol names offered, in order.
    pub alpn: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloVerdict {
    Complete(ClientHello),
    /// Read more bytes (still under the limit).
    Partial,
    /// The bytes are not a TLS handshake at all (protocol detection: something else).
    NotTls,
    Invalid(&'static str),
}

/// Whether `first` can start a TLS record carrying a handshake (0x16, version 3.x).
pub fn looks_like_tls(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [] => None,
        [0x16] => Some(true),
        [0x16, 0x03, ..] => Some(true),
        _ => Some(false),
    }
}

/// Parses the ClientHello at the start of `buf` (one or more TLS records).
pub fn parse_client_hello(buf: &[u8]) -> HelloVerdict {
    match looks_like_tls(buf) {
        None => return HelloVerdict::Partial,
        Some(false) => return HelloVerdict::NotTls,
        Some(true) => {}
    }
    // Reassemble the handshake bytes from consecutive handshake records.
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    let needed = loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            return if buf.len() >= CLIENT_HELLO_BYTES_MAX + 5 {
                HelloVerdict::Invalid("ClientHello too large")
            } else {
                HelloVerdict::Partial
            };
        };
        if header[0] != 0x16 || header[1] != 0x03 {
            return HelloVerdict::Invalid("not a handshake record");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16_384 + 256 {
            return HelloVerdict::Invalid("bad record length");
        }
        let Some(body) = buf.get(pos + 5..pos + 5 + len) else {
            return HelloVerdict::Partial;
        };
        handshake.extend_from_slice(body);
        pos += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != 0x01 {
                return HelloVerdict::Invalid("first handshake message is not a ClientHello");
            }
            let msg_len = (usize::from(handshake[1]) << 16)
                | (usize::from(handshake[2]) << 8)
                | usize::from(handshake[3]);
            if msg_len > CLIENT_HELLO_BYTES_MAX {
                return HelloVerdict::Invalid("ClientHello too large");
            }
            if handshake.len() >= 4 + msg_len {
                break msg_len;
            }
        }
        if handshake.len() > CLIENT_HELLO_BYTES_MAX {
            return HelloVerdict::Invalid("ClientHello too large");
        }
    };
    match parse_body(handshake.get(4..4 + needed).unwrap_or_default()) {
        Ok(hello) => HelloVerdict::Complete(hello),
        Err(why) => HelloVerdict::Invalid(why),
    }
}

/// A cursor over big-endian TLS encodings; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.bytes.len() < n {
            return Err("truncated ClientHello");
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, &'static str> {
    let mut r = Reader { bytes: body };
    let version = r.take(2)?;
    if version[0] != 0x03 {
        return Err("unsupported legacy_version");
    }
    r.take(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher_suites");
    }
    let compression = r.vec8()?;
    if compression.is_empty() {
        return Err("bad compression_methods");
    }
    let mut hello = ClientHello {
        sni: None,
        alpn: Vec::new(),
    };
    if r.bytes.is_empty() {
        return Ok(hello); // no extensions (TLS 1.2 and older clients)
    }
    let mut exts = Reader { bytes: r.vec16()? };
    if !r.bytes.is_empty() {
        return Err("trailing bytes after extensions");
    }
    let mut seen_sni = false;
    while !exts.bytes.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match kind {
            0x0000 => {
                if seen_sni {
                    return Err("duplicate server_name");
                }
                seen_sni = true;
                hello.sni = parse_sni(data)?;
            }
            0x0010 => {
                let mut list = Reader { bytes: data };
                let mut names = Reader {
                    bytes: list.vec16()?,
                };
                while !names.bytes.is_empty() {
                    let name = names.vec8()?;
                    if name.is_empty() {
                        return Err("empty ALPN protocol name");
                    }
                    hello.alpn.push(name.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_sni(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut outer = Reader { bytes: data };
    let mut list = Reader {
        bytes: outer.vec16()?,
    };
    if !outer.bytes.is_empty() {
        return Err("trailing bytes in server_name");
    }
    let mut host = None;
    while !list.bytes.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == 0 && host.is_none() {
            // RFC 6066 §3: a DNS hostname, ASCII, no trailing dot.
            if name.is_empty()
                || name.len() > 255
                || !name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err("invalid host_name in server_name");
            }
            host = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    Ok(host)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.3-style ClientHello with optional SNI and ALPN.
    pub fn hello(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(host) = sni {
            let name = host.as_bytes();
            let mut entry = vec![0u8];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name);
            let mut list = (entry.len() as u16).to_be_bytes().to_vec();
            list.extend_from_slice(&entry);
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        if !alpn.is_empty() {
            let mut names = Vec::new();
            for p in alpn {
                names.push(p.len() as u8);
                names.extend_from_slice(p.as_bytes());
            }
            let mut data = (names.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&names);
            exts.extend_from_slice(&0x0010u16.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(&data);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]);
        body.extend_from_slice(&[0x01, 0x00]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn sni_and_alpn_are_read_at_every_split() {
        let h = hello(Some("Api.Example.com"), &["h2", "http/1.1"]);
        for cut in 0..h.len() {
            assert_eq!(
                parse_client_hello(&h[..cut]),
                HelloVerdict::Partial,
                "cut {cut}"
            );
        }
        let HelloVerdict::Complete(c) = parse_client_hello(&h) else {
            panic!("complete");
        };
        assert_eq!(c.sni.as_deref(), Some("api.example.com"));
        assert_eq!(c.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn no_sni_and_fragmented_records() {
        let h = hello(None, &[]);
        assert!(matches!(
            parse_client_hello(&h),
            HelloVerdict::Complete(ClientHello { sni: None, .. })
        ));
        // Split the handshake over two records.
        let hs = &h[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![0x16, 0x03, 0x01];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 0x03, 0x01]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        assert_eq!(parse_client_hello(&two), parse_client_hello(&h));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            HelloVerdict::NotTls
        );
        assert_eq!(
            parse_client_hello(b"<policy-file-request/>\0"),
            HelloVerdict::NotTls
        );
        assert_eq!(parse_client_hello(b""), HelloVerdict::Partial);
    }

    #[test]
    fn malformed_hellos_are_invalid() {
        let mut h = hello(Some("a.example"), &[]);
        let last = h.len() - 1;
        h[last] = b'/'; // invalid host_name byte
        assert!(matches!(parse_client_hello(&h), HelloVerdict::Invalid(_)));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            HelloVerdict::Invalid(_)
        ));
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]),
            HelloVerdict::Invalid(_)
        ));
        let mut bad_len = hello(None, &[]);
        bad_len[9] = 0xff; // handshake length beyond the record
        assert!(matches!(
            parse_client_hello(&bad_len),
            HelloVerdict::Partial | HelloVerdict::Invalid(_)
        ));
    }
}
