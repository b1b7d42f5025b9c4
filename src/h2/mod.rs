//! Owns: HTTP/2 towards clients (RFC 9113) as pure, sans-IO parts: [`hpack`] (RFC 7541 field
//! compression), [`frame`] (the 9-byte frame header and every frame type, parsed and encoded) and
//! [`conn`] (one server connection: preface, SETTINGS, stream states, flow control both ways,
//! header rules, abuse defences). Errors carry their RFC 9113 §7 code, chosen in one place
//! ([`H2Error::code`]), and their reach (§5.4: the connection or one stream).
//! Must not: touch sockets, rings, clocks or the router: bytes and time go in, bytes and events
//! come out, and the session that wires a connection to backends lives in `crate::session`.
//! See docs/design/h2.md for why this is written here and for the limits chosen.

pub mod conn;
pub mod frame;
pub mod hpack;
mod huffman_table;

#[cfg(test)]
mod tests;

use std::fmt;

use hpack::HpackError;

/// RFC 9113 §7: an error code as sent in RST_STREAM and GOAWAY. Unknown codes received are kept
/// as they are (§7: they must not trigger special behaviour).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x1);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x2);
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x3);
    pub const SETTINGS_TIMEOUT: ErrorCode = ErrorCode(0x4);
    pub const STREAM_CLOSED: ErrorCode = ErrorCode(0x5);
    pub const FRAME_SIZE_ERROR: ErrorCode = ErrorCode(0x6);
    pub const REFUSED_STREAM: ErrorCode = ErrorCode(0x7);
    pub const CANCEL: ErrorCode = ErrorCode(0x8);
    pub const COMPRESSION_ERROR: ErrorCode = ErrorCode(0x9);
    pub const CONNECT_ERROR: ErrorCode = ErrorCode(0xa);
    pub const ENHANCE_YOUR_CALM: ErrorCode = ErrorCode(0xb);
    pub const INADEQUATE_SECURITY: ErrorCode = ErrorCode(0xc);
    pub const HTTP_1_1_REQUIRED: ErrorCode = ErrorCode(0xd);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How far an error reaches (RFC 9113 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// GOAWAY with the code, then close (§5.4.1).
    Connection,
    /// RST_STREAM on this stream; the connection goes on (§5.4.2).
    Stream(u32),
}

/// An error and its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub scope: Scope,
    pub error: H2Error,
}

impl Violation {
    pub fn connection(error: H2Error) -> Violation {
        Violation {
            scope: Scope::Connection,
            error,
        }
    }

    pub fn stream(stream: u32, error: H2Error) -> Violation {
        Violation {
            scope: Scope::Stream(stream),
            error,
        }
    }
}

/// A frame kind, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
}

/// A flood defence that ran out (docs/design/h2.md, "SETTINGS and limits proposed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glitch {
    Ping,
    Settings,
    /// DATA without payload and without END_STREAM.
    EmptyData,
    /// WINDOW_UPDATE or RST_STREAM on a stream that is already closed.
    ClosedStream,
    Priority,
    /// A stream refused (beyond the concurrent limit, or after GOAWAY).
    Refused,
    /// An empty CONTINUATION without END_HEADERS.
    EmptyContinuation,
}

/// Which abuse defence ended a connection with ENHANCE_YOUR_CALM ([`H2Error::calm_reason`]):
/// the `reason` label of `ringway_h2_calm_closes_total` and the `h2_calm_closes_<reason>` fields
/// of `/stats`. The names are API (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalmReason {
    /// RST_STREAM past the per-second bucket, or streams reset in a row before their response
    /// (CVE-2023-44487).
    RapidReset,
    /// RST_STREAM we were made to send for the client's errors (CVE-2025-8671).
    LocalResets,
    /// A field block of too many frames or bytes (CONTINUATION flood, CVE-2024-27316 class).
    Continuation,
    /// SETTINGS past the glitch bucket (CVE-2019-9515).
    SettingsFlood,
    /// PING past the glitch bucket (CVE-2019-9512).
    PingFlood,
    /// Any other glitch past the bucket: empty DATA or CONTINUATION, PRIORITY, frames on closed
    /// streams, refused streams (CVE-2019-9518 family).
    Glitches,
    /// A field block decoding past the list size or field count bound (HPACK bomb).
    Hpack,
}

impl CalmReason {
    /// Every reason, in the order `/stats` and `/metrics` list them.
    pub const ALL: [CalmReason; 7] = [
        CalmReason::RapidReset,
        CalmReason::LocalResets,
        CalmReason::Continuation,
        CalmReason::SettingsFlood,
        CalmReason::PingFlood,
        CalmReason::Glitches,
        CalmReason::Hpack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CalmReason::RapidReset => "rapid_reset",
            CalmReason::LocalResets => "local_resets",
            CalmReason::Continuation => "continuation",
            CalmReason::SettingsFlood => "settings_flood",
            CalmReason::PingFlood => "ping_flood",
            CalmReason::Glitches => "glitches",
            CalmReason::Hpack => "hpack",
        }
    }
}

/// Why a request or trailer block is malformed (RFC 9113 §8.1.1): a stream error
/// PROTOCOL_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// §8.2.1: uppercase, or a character outside the token set.
    BadName,
    /// §8.2.1: NUL, CR or LF, or whitespace at either end.
    BadValue,
    /// §8.2.2: `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`.
    ConnectionSpecific,
    /// §8.2.2: `te` with a value other than `trailers`.
    TeNotTrailers,
    /// §8.3: a pseudo-header not defined for requests.
    UnknownPseudo,
    /// §8.3: the same pseudo-header twice.
    DuplicatePseudo,
    /// §8.3: a pseudo-header after a regular field.
    PseudoAfterRegular,
    /// §8.1: pseudo-headers in trailers.
    PseudoInTrailers,
    /// §8.3.1: `:method`, or (except CONNECT) `:scheme` or `:path`, missing.
    MissingPseudo,
    /// §8.3.1: an empty `:path` (http and https).
    EmptyPath,
    /// §8.5: CONNECT with `:scheme` or `:path`, or without `:authority`.
    BadConnect,
    /// §8.3.1: `host` naming another entity than `:authority` (compared byte for byte, ASCII
    /// case aside).
    HostMismatch,
    /// §8.3.1, RFC 3986 §3.2: `:authority` (or, without it, a `host` field) that is not
    /// `host[:port]`: userinfo (`user@`), an empty host, a character outside the URI's
    /// authority set (space, control bytes, `/`, `?`, `#`), or a port past 65535.
    BadAuthority,
    /// §8.1.1: a `content-length` that is not one number.
    BadContentLength,
    /// §8.1.1: DATA adding up to more or less than `content-length`.
    ContentLengthMismatch,
    /// §8.1: a second HEADERS without END_STREAM (trailers must end the stream).
    TrailersWithoutEndStream,
}

/// Every reason an HTTP/2 connection or stream fails. Each maps to exactly one code in
/// [`H2Error::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    #[error("bad connection preface (RFC 9113 §3.4)")]
    BadPreface,
    #[error("first frame after the preface is not SETTINGS (RFC 9113 §3.4)")]
    SettingsNotFirst,
    #[error("frame of {len} bytes past SETTINGS_MAX_FRAME_SIZE {max} (RFC 9113 §4.2)")]
    FrameTooLarge { len: u32, max: u32 },
    #[error("{0:?} frame with a size its type does not allow (RFC 9113 §4.2, §6)")]
    BadFrameSize(Kind),
    #[error("{0:?} frame on stream 0 (RFC 9113 §6)")]
    StreamIdZero(Kind),
    #[error("{0:?} frame on a stream; it belongs to the connection (RFC 9113 §6)")]
    StreamIdNotZero(Kind),
    #[error("padding as long as the payload or longer (RFC 9113 §6.1)")]
    PaddingTooLong,
    #[error("a stream cannot depend on itself (RFC 9113 §5.3.1)")]
    SelfDependency,
    #[error("PUSH_PROMISE from a client (RFC 9113 §8.4)")]
    PushPromise,
    #[error(
        "SETTINGS_ENABLE_PUSH, _ENABLE_CONNECT_PROTOCOL or _NO_RFC7540_PRIORITIES not 0 or 1 (RFC 9113 §6.5.2)"
    )]
    BadSettingFlag,
    #[error("SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1 (RFC 9113 §6.5.2)")]
    BadInitialWindowSize,
    #[error("SETTINGS_MAX_FRAME_SIZE outside 2^14..2^24-1 (RFC 9113 §6.5.2)")]
    BadMaxFrameSize,
    #[error("WINDOW_UPDATE of 0 (RFC 9113 §6.9)")]
    ZeroWindowIncrement,
    #[error("stream window past 2^31-1 (RFC 9113 §6.9.1)")]
    StreamWindowOverflow,
    #[error("connection window past 2^31-1 (RFC 9113 §6.9.1)")]
    ConnWindowOverflow,
    #[error("DATA past the stream's receive window (RFC 9113 §6.9)")]
    StreamWindowExceeded,
    #[error("DATA past the connection's receive window (RFC 9113 §6.9)")]
    ConnWindowExceeded,
    #[error("{0:?} frame on an idle stream (RFC 9113 §5.1)")]
    IdleStream(Kind),
    #[error("client stream id even (RFC 9113 §5.1.1)")]
    EvenStreamId,
    #[error("new stream id not above the last one (RFC 9113 §5.1.1)")]
    StreamIdNotIncreasing,
    #[error("{0:?} frame on a closed or half-closed (remote) stream (RFC 9113 §5.1)")]
    StreamClosed(Kind),
    #[error(
        "frame other than CONTINUATION of the same stream inside a field block (RFC 9113 §6.10)"
    )]
    ExpectedContinuation,
    #[error("CONTINUATION without a field block open (RFC 9113 §6.10)")]
    UnexpectedContinuation,
    #[error("stream beyond SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §5.1.2)")]
    TooManyStreams,
    #[error("stream opened after GOAWAY")]
    GoingAway,
    #[error("malformed request: {0:?} (RFC 9113 §8.1.1)")]
    Malformed(Malformed),
    #[error("field block: {0}")]
    Hpack(HpackError),
    #[error("field block of more than {frames_max} frames (CONTINUATION flood)")]
    ContinuationFlood { frames_max: u32 },
    #[error("field block past {bytes_max} bytes")]
    HeaderBlockTooLarge { bytes_max: u32 },
    #[error("more than {per_s} RST_STREAM per second (rapid reset, CVE-2023-44487)")]
    RapidReset { per_s: u32 },
    #[error("more than {max} streams in a row reset before their response (rapid reset)")]
    EarlyResets { max: u32 },
    #[error("more than {max} streams reset by us for the peer's errors (CVE-2025-8671)")]
    LocalResets { max: u32 },
    #[error("flood of {0:?} frames (CVE-2019-9512 family)")]
    Flood(Glitch),
    #[error("our SETTINGS not acknowledged within {ms} ms (RFC 9113 §6.5.3)")]
    SettingsTimeout { ms: u64 },
}

impl H2Error {
    /// The RFC 9113 §7 code sent for this error: the one place it is chosen.
    pub fn code(self) -> ErrorCode {
        match self {
            H2Error::BadPreface
            | H2Error::SettingsNotFirst
            | H2Error::StreamIdZero(_)
            | H2Error::StreamIdNotZero(_)
            | H2Error::PaddingTooLong
            | H2Error::SelfDependency
            | H2Error::PushPromise
            | H2Error::BadSettingFlag
            | H2Error::BadMaxFrameSize
            | H2Error::ZeroWindowIncrement
            | H2Error::IdleStream(_)
            | H2Error::EvenStreamId
            | H2Error::StreamIdNotIncreasing
            | H2Error::ExpectedContinuation
            | H2Error::UnexpectedContinuation
            | H2Error::Malformed(_) => ErrorCode::PROTOCOL_ERROR,
            H2Error::FrameTooLarge { .. } | H2Error::BadFrameSize(_) => ErrorCode::FRAME_SIZE_ERROR,
            H2Error::BadInitialWindowSize
            | H2Error::StreamWindowOverflow
            | H2Error::ConnWindowOverflow
            | H2Error::StreamWindowExceeded
            | H2Error::ConnWindowExceeded => ErrorCode::FLOW_CONTROL_ERROR,
            H2Error::StreamClosed(_) => ErrorCode::STREAM_CLOSED,
            H2Error::SettingsTimeout { .. } => ErrorCode::SETTINGS_TIMEOUT,
            H2Error::TooManyStreams | H2Error::GoingAway => ErrorCode::REFUSED_STREAM,
            H2Error::Hpack(e) if e.is_limit() => ErrorCode::ENHANCE_YOUR_CALM,
            H2Error::Hpack(_) => ErrorCode::COMPRESSION_ERROR,
            H2Error::ContinuationFlood { .. }
            | H2Error::HeaderBlockTooLarge { .. }
            | H2Error::RapidReset { .. }
            | H2Error::EarlyResets { .. }
            | H2Error::LocalResets { .. }
            | H2Error::Flood(_) => ErrorCode::ENHANCE_YOUR_CALM,
        }
    }

    /// For ENHANCE_YOUR_CALM closes (exactly those: [`H2Error::code`]), the defence that fired,
    /// counted per reason in `h2_calm_closes`.
    pub fn calm_reason(self) -> Option<CalmReason> {
        Some(match self {
            H2Error::RapidReset { .. } | H2Error::EarlyResets { .. } => CalmReason::RapidReset,
            H2Error::LocalResets { .. } => CalmReason::LocalResets,
            H2Error::ContinuationFlood { .. } | H2Error::HeaderBlockTooLarge { .. } => {
                CalmReason::Continuation
            }
            H2Error::Flood(Glitch::Settings) => CalmReason::SettingsFlood,
            H2Error::Flood(Glitch::Ping) => CalmReason::PingFlood,
            H2Error::Flood(
                Glitch::EmptyData
                | Glitch::ClosedStream
                | Glitch::Priority
                | Glitch::Refused
                | Glitch::EmptyContinuation,
            ) => CalmReason::Glitches,
            H2Error::Hpack(e) if e.is_limit() => CalmReason::Hpack,
            H2Error::Hpack(_)
            | H2Error::BadPreface
            | H2Error::SettingsNotFirst
            | H2Error::FrameTooLarge { .. }
            | H2Error::BadFrameSize(_)
            | H2Error::StreamIdZero(_)
            | H2Error::StreamIdNotZero(_)
            | H2Error::PaddingTooLong
            | H2Error::SelfDependency
            | H2Error::PushPromise
            | H2Error::BadSettingFlag
            | H2Error::BadInitialWindowSize
            | H2Error::BadMaxFrameSize
            | H2Error::ZeroWindowIncrement
            | H2Error::StreamWindowOverflow
            | H2Error::ConnWindowOverflow
            | H2Error::StreamWindowExceeded
            | H2Error::ConnWindowExceeded
            | H2Error::IdleStream(_)
            | H2Error::EvenStreamId
            | H2Error::StreamIdNotIncreasing
            | H2Error::StreamClosed(_)
            | H2Error::ExpectedContinuation
            | H2Error::UnexpectedContinuation
            | H2Error::TooManyStreams
            | H2Error::GoingAway
            | H2Error::Malformed(_)
            | H2Error::SettingsTimeout { .. } => return None,
        })
    }
}
