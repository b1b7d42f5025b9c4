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
    #[error("invalid Host")]
    BadHost,
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
            | Reject::BadHost
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

/// The authority of an absolute-form request-target (`scheme://authority/...`, RFC 9112 §3.2.2):
/// what follows `://` up to the first `/`, `?` or `#`. `None` for the other forms.
pub fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        // origin-form: a `://` in its path or query names no authority.
        return None;
    }
    let start = target.windows(3).position(|w| w == b"://")? + 3;
    let rest = target.get(start..)?;
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// RFC 9110 §5.6.2 tchar, as a table (every field name's byte is looked up).
static TCHAR: [bool; 256] = crate::byteset::byte_set(true, b"!#$%&'*+-.^_`|~");

/// RFC 9110 §5.6.2 tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// What is wrong with a field value, if anything. RFC 9110 §5.5: field-value is VCHAR, SP, HTAB
/// and obs-text; NUL and bare CR get their own names because they are the usual smuggling probes.
fn value_problem(value: &[u8]) -> Option<&'static str> {
    // One pass for the usual case (every byte allowed), then the names of what is wrong.
    if value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
    {
        None
    } else if value.contains(&0) {
        Some("NUL in header value")
    } else if value.contains(&b'\r') {
        Some("bare CR")
    } else if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        Some("control byte in header value")
    } else {
        None
    }
}

/// Checks one field and records what matters for framing. Shared by requests and responses.
fn inspect_field(buf: &[u8], name: &[u8], value: &[u8], fields: &mut Fields) -> Result<(), Reject> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::Malformed("invalid header name"));
    }
    // httparse allows obs-text and HTAB; check again so this module's guarantee does not rest
    // on httparse's tables.
    if let Some(problem) = value_problem(value) {
        return Err(Reject::Malformed(problem));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        fields.content_length_count += 1;
        // RFC 9112 §6.3 (5) lets a recipient accept `n, n`; ringway refuses every list and every
        // second line so that it never frames a body differently from the backend.
        if fields.content_length_count > 1 {
            return Err(Reject::DuplicateContentLength);
        }
        fields.content_length = Some(parse_content_length(value)?);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        fields.transfer_encoding_count += 1;
        // Only exactly one `chunked` is understood (RFC 9112 §6.1); lists and other codings are
        // refused (501, RFC 9112 §6.1), as is a second TE line.
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
        // RFC 9110 §7.6.1: a comma-separated list of case-insensitive tokens.
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

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. At most 19 digits, so every accepted value fits
/// a u64 (20 digits may not); no sign, no list, no empty value.
fn parse_content_length(value: &[u8]) -> Result<u64, Reject> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 {
        return Err(Reject::BadContentLength);
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(Reject::BadContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Reject::BadContentLength)
    })
}

/// httparse refuses obs-fold itself; this re-check keeps the guarantee local (RFC 9112 §5.2: a
/// server may reject a message containing obs-fold with 400). httparse also accepts a bare LF as
/// a line end (RFC 9112 §2.2 allows it); ringway does not: a recipient that disagrees about where
/// a line ends is the start of a smuggling attack. One vectorised pass over the line ends finds
/// both: `(obs_fold, bare_lf)`.
fn line_end_problems(head: &[u8]) -> (bool, bool) {
    let (mut obs_fold, mut bare_lf) = (false, false);
    for i in memchr::memchr_iter(b'\n', head) {
        let crlf = i > 0 && head.get(i - 1) == Some(&b'\r');
        if !crlf {
            bare_lf = true;
        } else if matches!(head.get(i + 1), Some(b' ' | b'\t')) {
            obs_fold = true;
        }
    }
    (obs_fold, bare_lf)
}

/// The start-line of `buf` without its line end, after the empty lines httparse skips (RFC 9112
/// §2.2). May be cut short when `buf` is.
fn start_line(buf: &[u8]) -> &[u8] {
    let from = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(from..).unwrap_or_default();
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The request-target of a (possibly partial) request line: what follows the first SP, up to the
/// next SP.
fn request_line_target(line: &[u8]) -> Option<&[u8]> {
    let sp = line.iter().position(|&b| b == b' ')?;
    let rest = line.get(sp + 1..)?;
    rest.split(|&b| b == b' ').next()
}

/// httparse reports every request-line token error alike; say whether the target was at fault
/// (RFC 9112 §3.2: empty, controls, spaces, non-UTF-8) or the line as a whole.
fn classify_request_line(line: &[u8]) -> Reject {
    let method = line.split(|&b| b == b' ').next().unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Reject::Malformed("bad request line");
    }
    match request_line_target(line) {
        Some(t) if t.is_empty() || t.iter().any(|&b| b < 0x21 || b == 0x7f) => Reject::BadTarget,
        Some(t) if std::str::from_utf8(t).is_err() => Reject::BadTarget,
        _ => Reject::Malformed("bad request line"),
    }
}

/// `METHOD SP TARGET SP HTTP/d.d`: a version ringway does not speak (505), as opposed to a broken
/// request line (400).
fn well_formed_version_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None) => {
            !method.is_empty() && !target.is_empty() && is_http_version(version)
        }
        _ => false,
    }
}

/// `HTTP/d.d` (RFC 9112 §2.3).
fn is_http_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Names what is wrong with a head httparse refused in its field section. httparse's error kinds
/// are coarser than what an operator needs in a log line to find the offending peer. Only called
/// on the error path; `head` is bounded by `head_bytes_max`.
fn classify_field_error(head: &[u8], start_line_problem: &'static str) -> Reject {
    let first = start_line(head);
    if first.contains(&b'\r') {
        return Reject::Malformed("bare CR");
    }
    let from = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let mut lines = head.get(from..).unwrap_or_default().split(|&b| b == b'\n');
    lines.next();
    for raw in lines {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if let Some(problem) = field_line_problem(line) {
            return Reject::Malformed(problem);
        }
    }
    Reject::Malformed(start_line_problem)
}

/// What is wrong with one `name: value` line, if anything (RFC 9112 §5).
fn field_line_problem(line: &[u8]) -> Option<&'static str> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Some("obs-fold");
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Some("invalid header name");
    };
    let name = line.get(..colon).unwrap_or_default();
    // RFC 9112 §5.1: no whitespace between name and colon; a server MUST reject it with 400.
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Some("whitespace before colon");
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Some("invalid header name");
    }
    value_problem(line.get(colon + 1..).unwrap_or_default())
}

fn request_error(buf: &[u8], limits: &Limits, e: httparse::Error) -> Reject {
    let head = buf.get(..limits.head_bytes_max).unwrap_or(buf);
    let line = start_line(head);
    // A target over the limit may make httparse fail first; report the limit (414).
    if request_line_target(line).is_some_and(|t| t.len() > limits.target_bytes_max) {
        return Reject::TargetTooLong;
    }
    match e {
        httparse::Error::TooManyHeaders => Reject::TooManyHeaders,
        httparse::Error::Token => classify_request_line(line),
        httparse::Error::Version if well_formed_version_line(line) => Reject::UnsupportedVersion,
        httparse::Error::Version | httparse::Error::Status => Reject::Malformed("bad request line"),
        httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine => {
            classify_field_error(head, "bad request line")
        }
    }
}

fn response_error(buf: &[u8], limits: &Limits, e: httparse::Error) -> Reject {
    let head = buf.get(..limits.head_bytes_max).unwrap_or(buf);
    match e {
        httparse::Error::TooManyHeaders => Reject::TooManyHeaders,
        httparse::Error::Version
            if start_line(head)
                .split(|&b| b == b' ')
                .next()
                .is_some_and(is_http_version) =>
        {
            Reject::UnsupportedVersion
        }
        httparse::Error::Version | httparse::Error::Status | httparse::Error::Token => {
            Reject::Malformed("bad status line")
        }
        httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine => {
            classify_field_error(head, "bad status line")
        }
    }
}

/// Upper bound of `Limits::headers_max`: httparse's field table lives on the stack (no
/// allocation per head).
pub const HEADERS_MAX: usize = 256;

/// The table httparse fills, left uninitialised: only the fields a head has are written (an
/// initialised table of `HEADERS_MAX` entries would cost 8 KiB of stores per head).
type Storage<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; HEADERS_MAX];

fn storage_for<'s, 'b>(
    storage: &'s mut Storage<'b>,
    limits: &Limits,
) -> &'s mut [std::mem::MaybeUninit<httparse::Header<'b>>] {
    let n = limits.headers_max.min(HEADERS_MAX);
    storage.get_mut(..n).unwrap_or_default()
}

fn parser_config() -> httparse::ParserConfig {
    // Strict: no obs-fold, no whitespace after names, no multiple spaces in the request line.
    httparse::ParserConfig::default()
}

/// Parses a request head at the start of `buf`. Leading empty lines are skipped (RFC 9112 §2.2)
/// and counted in `consumed_bytes`; bytes after the head (body, a pipelined request) are left.
pub fn parse_request(buf: &[u8], limits: &Limits) -> HeadVerdict<RequestHead> {
    let mut storage: Storage<'_> = [const { std::mem::MaybeUninit::uninit() }; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut []);
    let parsed = parser_config().parse_request_with_uninit_headers(
        &mut req,
        buf,
        storage_for(&mut storage, limits),
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial_or_too_large(buf, limits, true),
        Err(e) => return HeadVerdict::Invalid(request_error(buf, limits, e)),
    };
    if let Err(r) = check_head_bytes(buf, consumed, limits) {
        return HeadVerdict::Invalid(r);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return HeadVerdict::Invalid(Reject::Malformed("bad request line"));
    };
    // httparse only yields HTTP/1.0 and HTTP/1.1; kept in case a later version widens that.
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
    // ringway does not tunnel CONNECT (RFC 9110 §9.3.6), so authority-form is never needed.
    if is_connect {
        return HeadVerdict::Invalid(Reject::MethodNotAllowed);
    }
    // RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form for OPTIONS only.
    let form_ok = tb.first() == Some(&b'/')
        || (tb == b"*" && is_options)
        || target.find("://").is_some_and(|i| {
            i > 0
                && tb.get(..i).is_some_and(|s| {
                    s.iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
                })
        });
    // An absolute-form target's authority is held to Host's rule (below): for an HTTP/1.0
    // request without Host it becomes the Host sent on.
    if !form_ok || absolute_authority(tb).is_some_and(|a| !crate::authority::is_valid(a)) {
        return HeadVerdict::Invalid(Reject::BadTarget);
    }
    let (headers, fields) = match collect_fields(buf, req.headers, version) {
        Ok(v) => v,
        Err(r) => return HeadVerdict::Invalid(r),
    };
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, or with
    // more than one.
    if fields.host_count > 1 {
        return HeadVerdict::Invalid(Reject::DuplicateHost);
    }
    if version == 1 && fields.host_count == 0 {
        return HeadVerdict::Invalid(Reject::MissingHost);
    }
    // RFC 9110 §7.2 / RFC 3986 §3.2: Host is `host [":" port]` (empty when the target has no
    // authority, RFC 9112 §3.2). Anything else (userinfo, spaces, `/`) could route as one host
    // and reach the backend as another; HTTP/2's `:authority` is held to the same rule.
    if let Some(h) = fields.host.clone()
        && let Some(v) = buf.get(h)
        && !v.is_empty()
        && !crate::authority::is_valid(v)
    {
        return HeadVerdict::Invalid(Reject::BadHost);
    }
    // RFC 9112 §6.3 (4)–(7): a request without TE or CL has no body.
    let framing = if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = persists(version, &fields);
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
            // RFC 9110 §10.1.1: a server that receives 100-continue in an HTTP/1.0 request MUST
            // ignore it.
            expect_continue: fields.expect_continue && version == 1,
            is_head: method == "HEAD",
            is_connect,
        },
        consumed_bytes: consumed,
    }
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
fn persists(version_minor: u8, fields: &Fields) -> bool {
    if version_minor == 1 {
        !fields.conn_close
    } else {
        fields.conn_keep_alive && !fields.conn_close
    }
}

/// Parses a response head at the start of `buf`. `request_is_head`: the request was HEAD, so the
/// response has no body whatever its headers say (RFC 9112 §6.3 (1)).
///
/// Interim responses: a 1xx other than 101 is complete by itself (`Framing::None`,
/// `consumed_bytes` ends at its blank line); the caller forwards it and parses again from
/// there for the final response (RFC 9110 §15.2). A 101 also has `Framing::None`: what follows
/// it is the upgraded protocol, not HTTP.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_is_head: bool,
) -> HeadVerdict<ResponseHead> {
    let mut storage: Storage<'_> = [const { std::mem::MaybeUninit::uninit() }; HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = parser_config().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        storage_for(&mut storage, limits),
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial_or_too_large(buf, limits, false),
        Err(e) => return HeadVerdict::Invalid(response_error(buf, limits, e)),
    };
    if let Err(r) = check_head_bytes(buf, consumed, limits) {
        return HeadVerdict::Invalid(r);
    }
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return HeadVerdict::Invalid(Reject::Malformed("bad status line"));
    };
    if version > 1 {
        return HeadVerdict::Invalid(Reject::UnsupportedVersion);
    }
    // RFC 9110 §15: three digits, first 1–5 defined; unknown classes are passed through as
    // long as they are three digits and not 0xx.
    if !(100..=999).contains(&status) {
        return HeadVerdict::Invalid(Reject::Malformed("bad status code"));
    }
    let reason = reason_range(buf, resp.reason);
    let (headers, fields) = match collect_fields(buf, resp.headers, version) {
        Ok(v) => v,
        Err(r) => return HeadVerdict::Invalid(r),
    };
    // RFC 9112 §6.3 (1): HEAD responses, 1xx, 204 and 304 end at the head.
    let no_body = request_is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            // RFC 9112 §6.3 (8): read until the server closes.
            None => Framing::CloseDelimited,
        }
    };
    HeadVerdict::Complete {
        head: ResponseHead {
            status,
            version_minor: version,
            reason,
            headers,
            framing,
            // A close-delimited body ends only when the connection does.
            keep_alive: framing != Framing::CloseDelimited && persists(version, &fields),
            upgrade: fields.conn_upgrade && fields.has_upgrade,
        },
        consumed_bytes: consumed,
    }
}

/// The reason-phrase as a range into `buf`. httparse hands back an empty phrase when it holds
/// obs-text, which RFC 9112 §4 allows; it is then taken from the (complete, validated) status
/// line so it is forwarded as received.
fn reason_range(buf: &[u8], parsed: Option<&str>) -> Range<usize> {
    if let Some(r) = parsed.filter(|r| !r.is_empty()) {
        return offset_in(buf, r.as_bytes());
    }
    // `HTTP/1.1 200 ` is 13 bytes.
    let line_start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let Some(rest) = buf
        .get(line_start + 12..)
        .and_then(|r| r.strip_prefix(b" "))
    else {
        return 0..0;
    };
    let len = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(0);
    let start = line_start + 13;
    start..start + len
}

/// Checks on a complete head's raw bytes that httparse leaves to us, for requests and responses
/// alike: the size limit, obs-fold and bare LF line ends.
fn check_head_bytes(buf: &[u8], consumed: usize, limits: &Limits) -> Result<(), Reject> {
    if consumed > limits.head_bytes_max {
        return Err(Reject::HeadTooLarge);
    }
    let head_bytes = buf.get(..consumed).unwrap_or_default();
    match line_end_problems(head_bytes) {
        (true, _) => Err(Reject::Malformed("obs-fold")),
        (false, true) => Err(Reject::Malformed("bare LF")),
        (false, false) => Ok(()),
    }
}

/// Checks every field of a head and records the ones that decide framing; the framing rules
/// shared by requests and responses are applied here once.
fn collect_fields(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    version: u8,
) -> Result<(Vec<Header>, Fields), Reject> {
    let mut fields = Fields::default();
    let mut headers = Vec::with_capacity(parsed.len());
    for h in parsed {
        let name = h.name.as_bytes();
        inspect_field(buf, name, h.value, &mut fields)?;
        headers.push(Header {
            name: offset_in(buf, name),
            value: offset_in(buf, h.value),
        });
    }
    // RFC 9112 §6.3 (3): TE with CL may be smuggling; §6.1 lets a recipient reject it. Reject.
    if fields.transfer_encoding_count > 0 && fields.content_length_count > 0 {
        return Err(Reject::ContentLengthWithTransferEncoding);
    }
    // RFC 9112 §6.1, last paragraph: TE in an HTTP/1.0 message means faulty framing.
    if fields.transfer_encoding_count > 0 && version == 0 {
        return Err(Reject::Malformed("transfer-encoding on HTTP/1.0"));
    }
    Ok((headers, fields))
}

fn partial_or_too_large<H>(buf: &[u8], limits: &Limits, request: bool) -> HeadVerdict<H> {
    if request {
        // A request line already longer than the target limit will never be accepted: answer
        // 414 now rather than read up to head_bytes_max first.
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
    /// The reason-phrase as received (may be empty).
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.reason.clone()).unwrap_or_default()
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header_value<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        header_value(&self.headers, buf, name)
    }
}

impl Header {
    /// The field name as received.
    pub fn name_in<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.name.clone()).unwrap_or_default()
    }

    /// The field value, without surrounding whitespace (httparse trims it).
    pub fn value_in<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.value.clone()).unwrap_or_default()
    }
}

fn header_value<'b>(headers: &[Header], buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name_in(buf).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value_in(buf))
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

    #[test]
    fn an_absolute_target_needs_a_valid_authority() {
        for b in [
            &b"GET http://hex.ample:61>0/x HTTP/1.0\r\n\r\n"[..],
            b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http:///x HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(
                reject(b),
                Reject::BadTarget,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        complete(b"GET http://a.example:8080/x?y HTTP/1.0\r\n\r\n");
        // A `://` in an origin-form target's query is no authority.
        complete(b"GET /go?to=http://u@x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(absolute_authority(b"/go?to=http://x"), None);
        assert_eq!(absolute_authority(b"http://a:1/b"), Some(&b"a:1"[..]));
        assert_eq!(absolute_authority(b"http://a"), Some(&b"a"[..]));
    }

    #[test]
    fn host_may_be_empty_or_any_authority_form() {
        for b in [
            &b"GET / HTTP/1.1\r\nHost: \r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: Example.com:80\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            complete(b);
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
    fn malformed(bytes: &[u8]) -> &'static str {
        match reject(bytes) {
            Reject::Malformed(what) => what,
            other => panic!(
                "expected Malformed for {:?}, got {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn malformed_says_what_was_wrong() {
        let cases: [(&[u8], &str); 14] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
                "obs-fold",
            ),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obs-fold"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
                "whitespace before colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX\t: 1\r\n\r\n",
                "whitespace before colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX(: 1\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX 1\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
                "NUL in header value",
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bare CR"),
            (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", "bare CR"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
                "control byte in header value",
            ),
            (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "bad request line"),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "bad request line"),
        ];
        for (bytes, what) in cases {
            assert_eq!(
                malformed(bytes),
                what,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(malformed(b"GET /\r\n\r\n"), "bad request line");
        assert_eq!(
            malformed(b"GET / http/1.1\r\nHost: a\r\n\r\n"),
            "bad request line"
        );
        assert_eq!(
            malformed(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "transfer-encoding on HTTP/1.0"
        );
    }

    #[test]
    fn every_request_reject_has_a_vector() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(8 * 1024));
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "x".repeat(64 * 1024));
        let cases: [(&[u8], Reject, u16); 14] = [
            (b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n", Reject::Malformed("NUL in header value"), 400),
            (big.as_bytes(), Reject::HeadTooLarge, 431),
            (many.as_bytes(), Reject::TooManyHeaders, 431),
            (long_target.as_bytes(), Reject::TargetTooLong, 414),
            (b"GET / HTTP/1.1\r\n\r\n", Reject::MissingHost, 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Reject::DuplicateHost, 400),
            (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", Reject::BadHost, 400),
            (b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 \x31\r\n\r\n", Reject::BadContentLength, 400),
            (b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n", Reject::DuplicateContentLength, 400),
            (b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", Reject::ContentLengthWithTransferEncoding, 400),
            (b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Reject::UnsupportedTransferEncoding, 501),
            (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Reject::BadTarget, 400),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Reject::UnsupportedVersion, 505),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", Reject::MethodNotAllowed, 405),
        ];
        for (bytes, want, status) in cases {
            let got = reject(bytes);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(got.status(), status, "{want:?}");
        }
    }

    #[test]
    fn empty_or_non_utf8_target_is_bad_target() {
        assert_eq!(
            reject(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"GET ://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            reject(b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Reject::BadTarget
        );
        let (h, _) = complete(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            h.target(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
            "/café".as_bytes()
        );
    }

    #[test]
    fn target_at_the_limit_is_accepted() {
        let at = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(8 * 1024 - 1)
        );
        assert_eq!(complete(at.as_bytes()).0.target.len(), 8 * 1024);
    }

    #[test]
    fn content_length_values() {
        let cl = |v: &str| {
            req(format!("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n").as_bytes())
        };
        let framing = |v: &str| match cl(v) {
            HeadVerdict::Complete { head, .. } => head.framing,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(framing("0"), Framing::None);
        assert_eq!(framing("007"), Framing::Length(7));
        assert_eq!(
            framing("9999999999999999999"),
            Framing::Length(9_999_999_999_999_999_999)
        );
        for bad in [
            "+1",
            "1,1",
            "1, 1",
            "1.0",
            "",
            "18446744073709551615",
            "01234567890123456789",
        ] {
            assert_eq!(
                cl(bad),
                HeadVerdict::Invalid(Reject::BadContentLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        for bad in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "chunked,",
            "identity",
            "chunked;q=1",
        ] {
            let b = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {bad}\r\n\r\n");
            assert_eq!(
                reject(b.as_bytes()),
                Reject::UnsupportedTransferEncoding,
                "{bad:?}"
            );
        }
        let (h, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
    }

    #[test]
    fn connection_tokens_are_a_case_insensitive_list() {
        let (h, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,  CLOSE \r\n\r\n");
        assert!(!h.keep_alive);
        let (h, _) = complete(b"GET / HTTP/1.0\r\nConnection: x\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        let (h, _) =
            complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\nUpgrade: x\r\n\r\n");
        assert!(!h.upgrade);
    }

    #[test]
    fn expect_continue_is_ignored_on_http10() {
        let (h, _) =
            complete(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue);
        let (h, _) = complete(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn leading_empty_line_is_skipped_and_counted() {
        let b = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (h, n) = complete(b);
        assert_eq!(n, b.len());
        assert_eq!(h.method(b), b"GET");
    }

    #[test]
    fn obs_text_in_values_is_kept() {
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n";
        assert_eq!(complete(b).0.header_value(b, "X"), Some(&b"caf\xe9"[..]));
    }

    #[test]
    fn partial_then_complete_at_every_split_with_pipelined_rest() {
        let b = b"GET /1 HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\nGET /2 HTTP/1.1\r\n";
        let head_len = b.len() - 17;
        for cut in 0..head_len {
            assert_eq!(req(&b[..cut]), HeadVerdict::Partial, "cut {cut}");
        }
        for cut in head_len..=b.len() {
            assert_eq!(complete(&b[..cut]).1, head_len, "cut {cut}");
        }
    }

    #[test]
    fn incomplete_head_at_the_limit_is_too_large() {
        let limits = Limits {
            head_bytes_max: 32,
            ..Limits::default()
        };
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789";
        assert_eq!(parse_request(&b[..31], &limits), HeadVerdict::Partial);
        assert_eq!(
            parse_request(&b[..32], &limits),
            HeadVerdict::Invalid(Reject::HeadTooLarge)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nX: 0123456789abcdef", &limits, false),
            HeadVerdict::Invalid(Reject::HeadTooLarge)
        );
    }

    fn resp_reject(bytes: &[u8]) -> Reject {
        match resp(bytes, false) {
            HeadVerdict::Invalid(r) => r,
            other => panic!(
                "expected a reject for {:?}, got {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    fn resp_head(bytes: &[u8], head: bool) -> ResponseHead {
        match resp(bytes, head) {
            HeadVerdict::Complete { head, .. } => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn response_rejects_name_the_rule() {
        let cases: [(&[u8], Reject); 11] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", Reject::DuplicateContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", Reject::BadContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Reject::BadContentLength),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", Reject::ContentLengthWithTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Reject::UnsupportedTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Reject::UnsupportedTransferEncoding),
            (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Reject::Malformed("transfer-encoding on HTTP/1.0")),
            (b"HTTP/1.1 200 OK\r\nX: 1\r\n\t2\r\n\r\n", Reject::Malformed("obs-fold")),
            (b"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n", Reject::Malformed("whitespace before colon")),
            (b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", Reject::Malformed("NUL in header value")),
            (b"HTTP/2.0 200 OK\r\n\r\n", Reject::UnsupportedVersion),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                resp_reject(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        for bytes in [
            &b"HTTP/1.1 000 Zero\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\nX: 1\r\n\r\n",
        ] {
            assert!(
                matches!(resp_reject(bytes), Reject::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn head_request_response_has_no_body_even_when_chunked() {
        let h = resp_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        let h = resp_head(b"HTTP/1.1 200 OK\r\n\r\n", true);
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive, "no body to read until close");
    }

    #[test]
    fn interim_response_is_complete_by_itself() {
        let b = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let HeadVerdict::Complete {
            head,
            consumed_bytes,
        } = resp(b, false)
        else {
            panic!()
        };
        assert_eq!((head.status, head.framing), (100, Framing::None));
        let rest = &b[consumed_bytes..];
        let HeadVerdict::Complete {
            head,
            consumed_bytes,
        } = resp(rest, false)
        else {
            panic!()
        };
        assert_eq!((head.status, head.framing), (200, Framing::Length(2)));
        assert_eq!(&rest[consumed_bytes..], b"ok");
        let h = resp_head(
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::None);
    }

    #[test]
    fn response_partial_at_every_split() {
        let b = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for cut in 0..b.len() - 2 {
            assert_eq!(resp(&b[..cut], false), HeadVerdict::Partial, "cut {cut}");
        }
        assert_eq!(resp_head(b, false).framing, Framing::Length(2));
    }

    #[test]
    fn http10_response_keeps_alive_only_when_asked() {
        let h = resp_head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(h.keep_alive);
        let h = resp_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false);
        assert_eq!(h.framing, Framing::CloseDelimited);
        assert!(!h.keep_alive);
    }

    #[test]
    fn reason_phrase_is_kept_as_received() {
        let b = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(resp_head(b, false).reason(b), b"Tr\xe8s bien");
        let b = b"HTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(resp_head(b, false).reason(b), b"Not Found");
        let b = b"HTTP/1.1 204\r\n\r\n";
        assert_eq!(resp_head(b, false).reason(b), b"");
        let b = b"\r\nHTTP/1.1 204 \xff\r\n\r\n";
        assert_eq!(resp_head(b, false).reason(b), b"\xff");
    }

    #[test]
    fn header_helpers_find_the_first_match() {
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        let (h, _) = complete(b);
        assert_eq!(h.header_value(b, "X-a"), Some(&b"1"[..]));
        assert_eq!(h.header_value(b, "missing"), None);
        let names: Vec<&[u8]> = h.headers.iter().map(|f| f.name_in(b)).collect();
        assert_eq!(names, [&b"Host"[..], b"X-A", b"x-a"]);
        assert_eq!(h.headers.last().map(|f| f.value_in(b)), Some(&b"2"[..]));
    }
}
