//! Owns: parsing HTTP/1.1 request and response heads (RFC 9112 §2–§6) into byte ranges over the
//! caller's buffer, with the strict checks that keep two parsers from disagreeing (smuggling).
//! Must not: allocate per header value, do I/O, or choose what to answer beyond [`Reject::status`].

use std::ops::Range;

/// Bounds on one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An incomplete head this large is refused (431).
    pub head_bytes_max: usize,
    /// More header fields than this are refused (431).
    pub headers_max: usize,
    /// A longer request-target is refused (414).
    pub target_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_bytes_max: 64 * 1024,
            headers_max: 100,
            target_bytes_max: 8 * 1024,
        }
    }
}

/// One header field as byte ranges into the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// How the message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    CloseDelimited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub version_minor: u8,
    pub headers: Vec<Header>,
    /// Value of the (single) Host header.
    pub host: Option<Range<usize>>,
    pub framing: Framing,
    /// RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`; 1.0 only with `keep-alive`.
    pub keep_alive: bool,
    /// `Connection: upgrade` and an `Upgrade` header are both present.
    pub upgrade: bool,
    pub expect_continue: bool,
    pub is_head: bool,
    pub is_connect: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub version_minor: u8,
    pub reason: Range<usize>,
    pub headers: Vec<Header>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// The outcome of parsing a head (STYLE.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadVerdict<H> {
    Complete {
        head: H,
        consumed_bytes: usize,
    },
    /// Read more (the buffer is still under `head_bytes_max`).
    Partial,
    Invalid(Reject),
}

/// Why a head was refused. For requests [`Reject::status`] is the answer; for responses every
/// reject is a 502 at the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("head larger than the limit")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request-target longer than the limit")]
    TargetTooLong,
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("more than one Content-Length header")]
    DuplicateContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("transfer coding other than chunked")]
    UnsupportedTransferEncoding,
    #[error("invalid request-target")]
    BadTarget,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl Reject {
    /// The status ringway answers a refused request with: the one place it is chosen.
    pub fn status(&self) -> u16 {
        match self {
            Reject::Malformed(_)
            | Reject::MissingHost
            | Reject::DuplicateHost
            | Reject::BadContentLength
            | Reject::DuplicateContentLength
            | Reject::ContentLengthWithTransferEncoding
            | Reject::BadTarget => 400,
            Reject::HeadTooLarge | Reject::TooManyHeaders => 431,
            Reject::TargetTooLong => 414,
            Reject::UnsupportedTransferEncoding => 501,
            Reject::UnsupportedVersion => 505,
            Reject::MethodNotAllowed => 405,
        }
    }
}

/// What the framing-relevant headers said.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    content_length_count: u32,
    transfer_encoding_count: u32,
    chunked: bool,
    host: Option<Range<usize>>,
    host_count: u32,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    has_upgrade: bool,
    expect_continue: bool,
}

fn offset_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

fn map_error(e: httparse::Error) -> Reject {
    match e {
        httparse::Error::TooManyHeaders => Reject::TooManyHeaders,
        httparse::Error::HeaderName => {
            Reject::Malformed("invalid header name or whitespace before colon")
        }
        httparse::Error::HeaderValue => Reject::Malformed("invalid byte in header value"),
        httparse::Error::NewLine => Reject::Malformed("bare CR or LF"),
        httparse::Error::Status => Reject::Malformed("invalid status line"),
        httparse::Error::Token => Reject::Malformed("invalid method or token"),
        httparse::Error::Version => Reject::UnsupportedVersion,
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks one field and records what matters for framing. Shared by requests and responses.
fn inspect_field(buf: &[u8], name: &[u8], value: &[u8], fields: &mut Fields) -> Result<(), Reject> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::Malformed("invalid header name"));
    }
    // httparse allows obs-text and HTAB; refuse every other control byte (NUL, bare CR, ...).
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Reject::Malformed("control byte in header value"));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        fields.content_length_count += 1;
        if fields.content_length_count > 1 {
            return Err(Reject::DuplicateContentLength);
        }
        let v = value.trim_ascii();
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(Reject::BadContentLength);
        }
        let n = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Reject::BadContentLength)?;
        fields.content_length = Some(n);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        fields.transfer_encoding_count += 1;
        // Only exactly one `chunked` is understood (RFC 9112 §6.1); lists and other codings are
        // refused, as is a second TE line.
        if fields.transfer_encoding_count > 1
            || !value.trim_ascii().eq_ignore_ascii_case(b"chunked")
        {
            return Err(Reject::UnsupportedTransferEncoding);
        }
        fields.chunked = true;
    } else if name.eq_ignore_ascii_case(b"host") {
        fields.host_count += 1;
        fields.host = Some(offset_in(buf, value));
    } else if name.eq_ignore_ascii_case(b"connection") {
        for token in value.split(|&b| b == b',') {
            let t = token.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                fields.conn_close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                fields.conn_keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                fields.conn_upgrade = true;
            }
        }
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        fields.has_upgrade = !value.trim_ascii().is_empty();
    } else if name.eq_ignore_ascii_case(b"expect") {
        fields.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
    }
    Ok(())
}

/// httparse does not see obs-fold as such in every position; a line that starts with SP or HTAB
/// right after a CRLF inside the head is refused explicitly (RFC 9112 §5.2).
fn has_obs_fold(head: &[u8]) -> bool {
    head.windows(3)
        .any(|w| w[0] == b'\r' && w[1] == b'\n' && (w[2] == b' ' || w[2] == b'\t'))
}

/// httparse accepts a bare LF as a line end (RFC 9112 §2.2 allows it). ringway does not: a
/// recipient that disagrees about where a line ends is the start of a smuggling attack.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head.get(i - 1) != Some(&b'\r')))
}

/// Upper bound of `Limits::headers_max`: httparse's field table lives on the stack (no
/// allocation per head).
pub const HEADERS_MAX: usize = 256;

fn storage_for<'s, 'b>(
    storage: &'s mut [httparse::Header<'b>; HEADERS_MAX],
    limits: &Limits,
) -> &'s mut [httparse::Header<'b>] {
    let n = limits.headers_max.min(HEADERS_MAX);
    &mut storage[..n]
}

fn parser_config() -> httparse::ParserConfig {
    // Strict: no obs-fold, no whitespace after names, no multiple spaces in the request line.
    httparse::ParserConfig::default()
}

/// Parses a request head at the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> HeadVerdict<RequestHead> {
    let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(storage_for(&mut storage, limits));
    let status = parser_config().parse_request(&mut req, buf);
    let consumed = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return partial_or_too_large(buf, limits, true);
        }
        Err(e) => {
            // A target over the limit may make httparse fail first; report the limit.
            if let Some(end) = buf.iter().position(|&b| b == b' ') {
                let rest = buf.get(end + 1..).unwrap_or_default();
                let target_len = rest
                    .iter()
                    .position(|&b| b == b' ' || b == b'\r')
                    .unwrap_or(rest.len());
                if target_len > limits.target_bytes_max {
                    return HeadVerdict::Invalid(Reject::TargetTooLong);
                }
            }
            if e == httparse::Error::Version && !well_formed_version_line(buf) {
                return HeadVerdict::Invalid(Reject::Malformed("bad request line"));
            }
            return HeadVerdict::Invalid(map_error(e));
        }
    };
    if consumed > limits.head_bytes_max {
        return HeadVerdict::Invalid(Reject::HeadTooLarge);
    }
    let head_bytes = buf.get(..consumed).unwrap_or_default();
    if has_obs_fold(head_bytes) {
        return HeadVerdict::Invalid(Reject::Malformed("obs-fold"));
    }
    if has_bare_lf(head_bytes) {
        return HeadVerdict::Invalid(Reject::Malformed("bare LF"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return HeadVerdict::Invalid(Reject::Malformed("bad request line"));
    };
    if version > 1 {
        return HeadVerdict::Invalid(Reject::UnsupportedVersion);
    }
    if target.len() > limits.target_bytes_max {
        return HeadVerdict::Invalid(Reject::TargetTooLong);
    }
    let is_connect = method == "CONNECT";
    let is_options = method == "OPTIONS";
    let tb = target.as_bytes();
    if tb.is_empty() || tb.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return HeadVerdict::Invalid(Reject::BadTarget);
    }
    if is_connect {
        return HeadVerdict::Invalid(Reject::MethodNotAllowed);
    }
    let form_ok = tb.first() == Some(&b'/')
        || (tb == b"*" && is_options)
        || target.find("://").is_some_and(|i| {
            i > 0
                && tb.get(..i).is_some_and(|s| {
                    s.iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
                })
        });
    if !form_ok {
        return HeadVerdict::Invalid(Reject::BadTarget);
    }
    let mut fields = Fields::default();
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if let Err(r) = inspect_field(buf, name, h.value, &mut fields) {
            return HeadVerdict::Invalid(r);
        }
        headers.push(Header {
            name: offset_in(buf, name),
            value: offset_in(buf, h.value),
        });
    }
    if fields.transfer_encoding_count > 0 && fields.content_length_count > 0 {
        return HeadVerdict::Invalid(Reject::ContentLengthWithTransferEncoding);
    }
    if fields.chunked && version == 0 {
        return HeadVerdict::Invalid(Reject::Malformed("transfer-encoding on HTTP/1.0"));
    }
    if fields.host_count > 1 {
        return HeadVerdict::Invalid(Reject::DuplicateHost);
    }
    if version == 1 && fields.host_count == 0 {
        return HeadVerdict::Invalid(Reject::MissingHost);
    }
    let framing = if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = if version == 1 {
        !fields.conn_close
    } else {
        fields.conn_keep_alive && !fields.conn_close
    };
    HeadVerdict::Complete {
        head: RequestHead {
            method: offset_in(buf, method.as_bytes()),
            target: offset_in(buf, tb),
            version_minor: version,
            headers,
            host: fields.host,
            framing,
            keep_alive,
            upgrade: fields.conn_upgrade && fields.has_upgrade,
            expect_continue: fields.expect_continue,
            is_head: method == "HEAD",
            is_connect,
        },
        consumed_bytes: consumed,
    }
}

/// Parses a response head at the start of `buf`. `request_is_head`: the request was HEAD, so the
/// response has no body whatever its headers say (RFC 9112 §6.3 (1)). A 1xx other than 101 is
/// complete by itself (`Framing::None`); the caller forwards it and parses the next head.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_is_head: bool,
) -> HeadVerdict<ResponseHead> {
    let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut resp = httparse::Response::new(storage_for(&mut storage, limits));
    let consumed = match parser_config().parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial_or_too_large(buf, limits, false),
        Err(e) => return HeadVerdict::Invalid(map_error(e)),
    };
    if consumed > limits.head_bytes_max {
        return HeadVerdict::Invalid(Reject::HeadTooLarge);
    }
    let head_bytes = buf.get(..consumed).unwrap_or_default();
    if has_obs_fold(head_bytes) {
        return HeadVerdict::Invalid(Reject::Malformed("obs-fold"));
    }
    if has_bare_lf(head_bytes) {
        return HeadVerdict::Invalid(Reject::Malformed("bare LF"));
    }
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return HeadVerdict::Invalid(Reject::Malformed("bad status line"));
    };
    if version > 1 {
        return HeadVerdict::Invalid(Reject::UnsupportedVersion);
    }
    if !(100..=999).contains(&status) {
        return HeadVerdict::Invalid(Reject::Malformed("bad status code"));
    }
    let reason = resp.reason.map_or(0..0, |r| offset_in(buf, r.as_bytes()));
    let mut fields = Fields::default();
    let mut headers = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if let Err(r) = inspect_field(buf, name, h.value, &mut fields) {
            return HeadVerdict::Invalid(r);
        }
        headers.push(Header {
            name: offset_in(buf, name),
            value: offset_in(buf, h.value),
        });
    }
    if fields.transfer_encoding_count > 0 && fields.content_length_count > 0 {
        return HeadVerdict::Invalid(Reject::ContentLengthWithTransferEncoding);
    }
    let no_body = request_is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::CloseDelimited,
        }
    };
    let keep_alive = framing != Framing::CloseDelimited
        && if version == 1 {
            !fields.conn_close
        } else {
            fields.conn_keep_alive && !fields.conn_close
        };
    HeadVerdict::Complete {
        head: ResponseHead {
            status,
            version_minor: version,
            reason,
            headers,
            framing,
            keep_alive,
            upgrade: fields.conn_upgrade && fields.has_upgrade,
        },
        consumed_bytes: consumed,
    }
}

/// `METHOD SP TARGET SP HTTP/d.d CRLF`: a version we do not speak (505), as opposed to a broken
/// request line (400).
fn well_formed_version_line(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    matches!(parts.as_slice(), [m, t, v] if !m.is_empty() && !t.is_empty()
        && v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit())
}

fn partial_or_too_large<H>(buf: &[u8], limits: &Limits, request: bool) -> HeadVerdict<H> {
    if request {
        // A request line that is already longer than the target limit will never be accepted.
        let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        if line_end > limits.target_bytes_max + 32 {
            return HeadVerdict::Invalid(Reject::TargetTooLong);
        }
    }
    if buf.len() >= limits.head_bytes_max {
        HeadVerdict::Invalid(Reject::HeadTooLarge)
    } else {
        HeadVerdict::Partial
    }
}

impl RequestHead {
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.method.clone()).unwrap_or_default()
    }

    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.target.clone()).unwrap_or_default()
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header_value<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        header_value(&self.headers, buf, name)
    }
}

impl ResponseHead {
    pub fn header_value<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        header_value(&self.headers, buf, name)
    }
}

fn header_value<'b>(headers: &[Header], buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| {
            buf.get(h.name.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })
        .and_then(|h| buf.get(h.value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &[u8]) -> HeadVerdict<RequestHead> {
        parse_request(bytes, &Limits::default())
    }

    fn reject(bytes: &[u8]) -> Reject {
        match req(bytes) {
            HeadVerdict::Invalid(r) => r,
            other => panic!(
                "expected a reject for {:?}, got {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    fn complete(bytes: &[u8]) -> (RequestHead, usize) {
        match req(bytes) {
            HeadVerdict::Complete {
                head,
                consumed_bytes,
            } => (head, consumed_bytes),
            other => panic!(
                "expected complete for {:?}, got {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn simple_get_is_complete_with_ranges() {
        let b = b"GET /a?b HTTP/1.1\r\nHost: Example.com:80\r\nX-A: 1\r\n\r\n";
        let (h, n) = complete(b);
        assert_eq!(n, b.len());
        assert_eq!(h.method(b), b"GET");
        assert_eq!(h.target(b), b"/a?b");
        assert_eq!(
            h.host.clone().and_then(|r| b.get(r)),
            Some(&b"Example.com:80"[..])
        );
        assert_eq!(h.header_value(b, "x-a"), Some(&b"1"[..]));
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        assert!(!h.upgrade);
    }

    #[test]
    fn partial_at_every_split_then_complete() {
        let b = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = b.len() - 3;
        for cut in 0..head_len {
            assert_eq!(req(&b[..cut]), HeadVerdict::Partial, "cut {cut}");
        }
        let (h, n) = complete(b);
        assert_eq!(n, head_len);
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn pipelined_requests_consume_only_the_first() {
        let b = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let (h, n) = complete(b);
        assert_eq!(h.target(b), b"/1");
        assert_eq!(&b[n..n + 6], b"GET /2");
    }

    #[test]
    fn keep_alive_rules_by_version() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn upgrade_needs_connection_token_and_header() {
        let (h, _) = complete(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.upgrade);
        let (h, _) = complete(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
        assert!(!h.upgrade);
    }

    #[test]
    fn expect_continue_and_head_flags() {
        let (h, _) = complete(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expect_continue);
        assert!(complete(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").0.is_head);
    }

    #[test]
    fn chunked_framing() {
        let (h, _) =
            complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
    }

    #[test]
    fn smuggling_vectors_are_rejected() {
        assert_eq!(reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), Reject::ContentLengthWithTransferEncoding);
        assert_eq!(reject(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"), Reject::ContentLengthWithTransferEncoding);
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            Reject::DuplicateContentLength
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Reject::UnsupportedTransferEncoding
        );
        assert_eq!(reject(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), Reject::UnsupportedTransferEncoding);
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
            Reject::UnsupportedTransferEncoding
        );
        assert!(matches!(
            reject(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Reject::Malformed(_)
        ));
    }

    #[test]
    fn field_syntax_is_strict() {
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX(: 1\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"),
            Reject::Malformed(_)
        ));
        // HTAB inside a value is fine.
        complete(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n");
    }

    #[test]
    fn host_rules() {
        assert_eq!(reject(b"GET / HTTP/1.1\r\n\r\n"), Reject::MissingHost);
        assert_eq!(
            reject(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Reject::DuplicateHost
        );
        complete(b"GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn targets() {
        assert!(matches!(
            reject(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::Malformed(_) | Reject::BadTarget | Reject::UnsupportedVersion
        ));
        assert!(matches!(
            reject(b"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::Malformed(_) | Reject::BadTarget
        ));
        assert_eq!(
            reject(b"GET a HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        complete(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        complete(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            reject(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::MethodNotAllowed
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(reject(long.as_bytes()), Reject::TargetTooLong);
        let long_partial = format!("GET /{}", "a".repeat(9000));
        assert_eq!(reject(long_partial.as_bytes()), Reject::TargetTooLong);
    }

    #[test]
    fn versions() {
        assert_eq!(
            reject(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Reject::UnsupportedVersion
        );
        assert!(matches!(
            reject(b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n"),
            Reject::Malformed(_)
        ));
        assert!(matches!(
            reject(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::Malformed(_)
        ));
    }

    #[test]
    fn limits_give_431() {
        let limits = Limits {
            head_bytes_max: 100,
            ..Limits::default()
        };
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "x".repeat(200)
        );
        assert_eq!(
            parse_request(big.as_bytes(), &limits),
            HeadVerdict::Invalid(Reject::HeadTooLarge)
        );
        assert_eq!(
            parse_request(&big.as_bytes()[..150], &limits),
            HeadVerdict::Invalid(Reject::HeadTooLarge)
        );
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..120 {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(reject(many.as_bytes()), Reject::TooManyHeaders);
        assert_eq!(Reject::TooManyHeaders.status(), 431);
    }

    #[test]
    fn statuses_are_chosen_in_one_place() {
        assert_eq!(Reject::Malformed("x").status(), 400);
        assert_eq!(Reject::TargetTooLong.status(), 414);
        assert_eq!(Reject::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(Reject::MethodNotAllowed.status(), 405);
    }

    fn resp(bytes: &[u8], head: bool) -> HeadVerdict<ResponseHead> {
        parse_response(bytes, &Limits::default(), head)
    }

    fn resp_framing(bytes: &[u8], head: bool) -> Framing {
        match resp(bytes, head) {
            HeadVerdict::Complete { head, .. } => head.framing,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_framing_rules() {
        assert_eq!(
            resp_framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Framing::Length(5)
        );
        assert_eq!(
            resp_framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Framing::None
        );
        assert_eq!(
            resp_framing(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Framing::None
        );
        assert_eq!(
            resp_framing(
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Framing::None
        );
        assert_eq!(
            resp_framing(b"HTTP/1.1 100 Continue\r\n\r\n", false),
            Framing::None
        );
        assert_eq!(
            resp_framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(
            resp_framing(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Framing::CloseDelimited
        );
        assert_eq!(
            resp_framing(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            Framing::None
        );
    }

    #[test]
    fn response_keep_alive() {
        let HeadVerdict::Complete { head, .. } = resp(b"HTTP/1.1 200 OK\r\n\r\n", false) else {
            panic!()
        };
        assert!(!head.keep_alive, "close-delimited never keeps alive");
        let HeadVerdict::Complete { head, .. } =
            resp(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false)
        else {
            panic!()
        };
        assert!(!head.keep_alive);
        let HeadVerdict::Complete { head, .. } = resp(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        ) else {
            panic!()
        };
        assert!(!head.keep_alive);
        let HeadVerdict::Complete { head, .. } = resp(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false) else { panic!() };
        assert!(head.upgrade);
        assert_eq!(head.status, 101);
    }

    #[test]
    fn bad_responses_are_invalid() {
        for b in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            assert!(
                matches!(resp(b, false), HeadVerdict::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            HeadVerdict::Partial
        );
    }
}
