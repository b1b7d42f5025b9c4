//! Owns: the HTTP/2 frame layer (RFC 9113 §4, §6): the 9-byte header, every frame type parsed
//! from the caller's bytes into a [`Frame`] borrowing them (with the exact error code and reach
//! of each violation, §5.4), and the encoders for what a server sends.
//! Must not: keep state, know streams beyond their ids, or decode field blocks (that is
//! `conn.rs` and `hpack.rs`). Unknown frame types and flags are not errors (§4.1, §5.5).

use super::{H2Error, Kind, Violation};

/// The 24 octets a client opens with (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEAD_BYTES: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE bounds (§6.5.2); the initial value is the lower one.
pub const FRAME_BYTES_MIN: u32 = 1 << 14;
pub const FRAME_BYTES_LIMIT: u32 = (1 << 24) - 1;
/// Windows and their increments stay under 2^31 (§6.9.1).
pub const WINDOW_MAX: u32 = (1 << 31) - 1;

pub const TYPE_DATA: u8 = 0x0;
pub const TYPE_HEADERS: u8 = 0x1;
pub const TYPE_PRIORITY: u8 = 0x2;
pub const TYPE_RST_STREAM: u8 = 0x3;
pub const TYPE_SETTINGS: u8 = 0x4;
pub const TYPE_PUSH_PROMISE: u8 = 0x5;
pub const TYPE_PING: u8 = 0x6;
pub const TYPE_GOAWAY: u8 = 0x7;
pub const TYPE_WINDOW_UPDATE: u8 = 0x8;
pub const TYPE_CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// SETTINGS identifiers (§6.5.2, RFC 8441 §3, RFC 9218 §2.1).
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
pub const SETTINGS_NO_RFC7540_PRIORITIES: u16 = 0x9;

/// The 9-byte frame header (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The reserved bit is ignored on receipt (§4.1).
    pub stream: u32,
}

impl FrameHead {
    pub fn parse(b: &[u8; HEAD_BYTES]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// RFC 7540 §5.3 priority fields, parsed and otherwise ignored (we announce
/// SETTINGS_NO_RFC7540_PRIORITIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub depends_on: u32,
    pub weight: u8,
}

/// One setting, validated (§6.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    HeaderTableSize(u32),
    EnablePush(bool),
    MaxConcurrentStreams(u32),
    InitialWindowSize(u32),
    MaxFrameSize(u32),
    MaxHeaderListSize(u32),
    EnableConnectProtocol(bool),
    NoRfc7540Priorities(bool),
    /// §6.5.2: unknown settings are ignored.
    Unknown {
        id: u16,
        value: u32,
    },
}

impl Setting {
    fn parse(id: u16, value: u32) -> Result<Setting, H2Error> {
        let flag = |v: u32| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(H2Error::BadSettingFlag),
        };
        Ok(match id {
            SETTINGS_HEADER_TABLE_SIZE => Setting::HeaderTableSize(value),
            SETTINGS_ENABLE_PUSH => Setting::EnablePush(flag(value)?),
            SETTINGS_MAX_CONCURRENT_STREAMS => Setting::MaxConcurrentStreams(value),
            SETTINGS_INITIAL_WINDOW_SIZE if value > WINDOW_MAX => {
                return Err(H2Error::BadInitialWindowSize);
            }
            SETTINGS_INITIAL_WINDOW_SIZE => Setting::InitialWindowSize(value),
            SETTINGS_MAX_FRAME_SIZE if !(FRAME_BYTES_MIN..=FRAME_BYTES_LIMIT).contains(&value) => {
                return Err(H2Error::BadMaxFrameSize);
            }
            SETTINGS_MAX_FRAME_SIZE => Setting::MaxFrameSize(value),
            SETTINGS_MAX_HEADER_LIST_SIZE => Setting::MaxHeaderListSize(value),
            SETTINGS_ENABLE_CONNECT_PROTOCOL => Setting::EnableConnectProtocol(flag(value)?),
            SETTINGS_NO_RFC7540_PRIORITIES => Setting::NoRfc7540Priorities(flag(value)?),
            _ => Setting::Unknown { id, value },
        })
    }
}

/// The parameters of a SETTINGS frame, every one already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings<'a> {
    raw: &'a [u8],
}

impl<'a> Settings<'a> {
    pub fn iter(&self) -> impl Iterator<Item = Setting> + 'a {
        self.raw.chunks_exact(6).map(|s| {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            // Validated when the frame was parsed.
            Setting::parse(id, value).unwrap_or(Setting::Unknown { id, value })
        })
    }
}

/// One parsed frame, borrowing the caller's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        /// Without the padding.
        data: &'a [u8],
        end_stream: bool,
        /// The whole payload, padding included: what flow control counts (§6.9.1).
        flow_bytes: u32,
    },
    Headers {
        stream: u32,
        fragment: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: super::ErrorCode,
    },
    Settings {
        ack: bool,
        settings: Settings<'a>,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: super::ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        fragment: &'a [u8],
        end_headers: bool,
    },
    /// §5.5: a type we do not know, to be ignored (except inside a field block, §6.10).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// The outcome of parsing one frame (STYLE.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict<'a> {
    Complete {
        frame: Frame<'a>,
        consumed_bytes: usize,
    },
    /// Read more: the frame is not whole yet (its length is within the bound).
    Partial,
    /// A violation; `frame_bytes` is the whole frame's size, to skip it when the error only
    /// reaches a stream.
    Invalid {
        violation: Violation,
        frame_bytes: usize,
    },
}

/// Parses the frame at the start of `buf`. A length past `frame_bytes_max` (our
/// SETTINGS_MAX_FRAME_SIZE) is refused as soon as the header is in, before the payload is
/// buffered.
pub fn parse(buf: &[u8], frame_bytes_max: u32) -> FrameVerdict<'_> {
    let Some(head) = buf.first_chunk::<HEAD_BYTES>() else {
        return FrameVerdict::Partial;
    };
    let head = FrameHead::parse(head);
    let frame_bytes = HEAD_BYTES + head.len as usize;
    if head.len > frame_bytes_max {
        // §4.2: a connection error for every frame that can change the connection's state;
        // for the rest we may choose, and we do not buffer a frame we refused to accept.
        return FrameVerdict::Invalid {
            violation: Violation::connection(H2Error::FrameTooLarge {
                len: head.len,
                max: frame_bytes_max,
            }),
            frame_bytes,
        };
    }
    let Some(payload) = buf.get(HEAD_BYTES..frame_bytes) else {
        return FrameVerdict::Partial;
    };
    match parse_payload(head, payload) {
        Ok(frame) => FrameVerdict::Complete {
            frame,
            consumed_bytes: frame_bytes,
        },
        Err(violation) => FrameVerdict::Invalid {
            violation,
            frame_bytes,
        },
    }
}

fn conn(error: H2Error) -> Violation {
    Violation::connection(error)
}

/// Parses one payload whose length already passed the frame-size bound.
pub fn parse_payload(head: FrameHead, p: &[u8]) -> Result<Frame<'_>, Violation> {
    let FrameHead {
        kind,
        flags,
        stream,
        ..
    } = head;
    match kind {
        TYPE_DATA => {
            if stream == 0 {
                return Err(conn(H2Error::StreamIdZero(Kind::Data)));
            }
            let data = unpad(flags, p)?;
            Ok(Frame::Data {
                stream,
                data,
                end_stream: flags & FLAG_END_STREAM != 0,
                flow_bytes: p.len() as u32,
            })
        }
        TYPE_HEADERS => {
            if stream == 0 {
                return Err(conn(H2Error::StreamIdZero(Kind::Headers)));
            }
            let too_small = conn(H2Error::BadFrameSize(Kind::Headers));
            let (pad, rest) = if flags & FLAG_PADDED != 0 {
                let (&pad, rest) = p.split_first().ok_or(too_small)?;
                (usize::from(pad), rest)
            } else {
                (0, p)
            };
            let (priority, rest) = if flags & FLAG_PRIORITY != 0 {
                let (fields, after) = rest.split_first_chunk::<5>().ok_or(too_small)?;
                (Some(parse_priority(fields)), after)
            } else {
                (None, rest)
            };
            // §6.2: "Padding that exceeds the size remaining for the header block fragment".
            let keep = rest
                .len()
                .checked_sub(pad)
                .ok_or(conn(H2Error::PaddingTooLong))?;
            let rest = &rest[..keep];
            // A self-dependency is a stream error, left to the connection: the block must
            // still be decoded to keep HPACK state (§4.3).
            Ok(Frame::Headers {
                stream,
                fragment: rest,
                end_stream: flags & FLAG_END_STREAM != 0,
                end_headers: flags & FLAG_END_HEADERS != 0,
                priority,
            })
        }
        TYPE_PRIORITY => {
            if stream == 0 {
                return Err(conn(H2Error::StreamIdZero(Kind::Priority)));
            }
            // §6.3: a wrong length here is a stream error.
            let fields = p
                .first_chunk::<5>()
                .filter(|_| p.len() == 5)
                .ok_or(Violation::stream(
                    stream,
                    H2Error::BadFrameSize(Kind::Priority),
                ))?;
            let priority = parse_priority(fields);
            if priority.depends_on == stream {
                return Err(Violation::stream(stream, H2Error::SelfDependency));
            }
            Ok(Frame::Priority { stream, priority })
        }
        TYPE_RST_STREAM => {
            if stream == 0 {
                return Err(conn(H2Error::StreamIdZero(Kind::RstStream)));
            }
            let code = exact::<4>(p, Kind::RstStream)?;
            Ok(Frame::RstStream {
                stream,
                code: super::ErrorCode(u32::from_be_bytes(code)),
            })
        }
        TYPE_SETTINGS => {
            if stream != 0 {
                return Err(conn(H2Error::StreamIdNotZero(Kind::Settings)));
            }
            let ack = flags & FLAG_ACK != 0;
            // §6.5: an ACK carries nothing; parameters come in sixes.
            if (ack && !p.is_empty()) || !p.len().is_multiple_of(6) {
                return Err(conn(H2Error::BadFrameSize(Kind::Settings)));
            }
            for s in p.chunks_exact(6) {
                let id = u16::from_be_bytes([s[0], s[1]]);
                let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                Setting::parse(id, value).map_err(conn)?;
            }
            Ok(Frame::Settings {
                ack,
                settings: Settings { raw: p },
            })
        }
        TYPE_PUSH_PROMISE => Err(conn(H2Error::PushPromise)),
        TYPE_PING => {
            if stream != 0 {
                return Err(conn(H2Error::StreamIdNotZero(Kind::Ping)));
            }
            let data = exact::<8>(p, Kind::Ping)?;
            Ok(Frame::Ping {
                ack: flags & FLAG_ACK != 0,
                data,
            })
        }
        TYPE_GOAWAY => {
            if stream != 0 {
                return Err(conn(H2Error::StreamIdNotZero(Kind::GoAway)));
            }
            let (fixed, debug) = p
                .split_first_chunk::<8>()
                .ok_or(conn(H2Error::BadFrameSize(Kind::GoAway)))?;
            Ok(Frame::GoAway {
                last_stream: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]])
                    & 0x7fff_ffff,
                code: super::ErrorCode(u32::from_be_bytes([
                    fixed[4], fixed[5], fixed[6], fixed[7],
                ])),
                debug,
            })
        }
        TYPE_WINDOW_UPDATE => {
            let b = exact::<4>(p, Kind::WindowUpdate)?;
            let increment = u32::from_be_bytes(b) & 0x7fff_ffff;
            if increment == 0 {
                // §6.9: a stream error on a stream, a connection error on the connection.
                return Err(if stream == 0 {
                    conn(H2Error::ZeroWindowIncrement)
                } else {
                    Violation::stream(stream, H2Error::ZeroWindowIncrement)
                });
            }
            Ok(Frame::WindowUpdate { stream, increment })
        }
        TYPE_CONTINUATION => {
            if stream == 0 {
                return Err(conn(H2Error::StreamIdZero(Kind::Continuation)));
            }
            Ok(Frame::Continuation {
                stream,
                fragment: p,
                end_headers: flags & FLAG_END_HEADERS != 0,
            })
        }
        _ => Ok(Frame::Unknown { kind, stream }),
    }
}

/// The payload must be exactly `N` bytes: else a connection FRAME_SIZE_ERROR (§6.4, §6.7, §6.9).
fn exact<const N: usize>(p: &[u8], kind: Kind) -> Result<[u8; N], Violation> {
    match p.first_chunk::<N>() {
        Some(b) if p.len() == N => Ok(*b),
        _ => Err(conn(H2Error::BadFrameSize(kind))),
    }
}

/// §6.1: strips DATA's Pad Length octet and its padding when PADDED is set.
fn unpad(flags: u8, p: &[u8]) -> Result<&[u8], Violation> {
    if flags & FLAG_PADDED == 0 {
        return Ok(p);
    }
    let (&pad, rest) = p
        .split_first()
        .ok_or(conn(H2Error::BadFrameSize(Kind::Data)))?;
    // "the length of the padding is the length of the frame payload or greater": the payload
    // counts the Pad Length octet, so padding may take all of `rest` but no more.
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(conn(H2Error::PaddingTooLong))?;
    Ok(&rest[..keep])
}

fn parse_priority(b: &[u8; 5]) -> Priority {
    let dep = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Priority {
        exclusive: dep & 0x8000_0000 != 0,
        depends_on: dep & 0x7fff_ffff,
        weight: b[4],
    }
}

// ---- encoding -----------------------------------------------------------------------------------

/// Appends a frame header. `len` must fit the peer's SETTINGS_MAX_FRAME_SIZE (the caller splits).
pub fn write_head(dst: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= FRAME_BYTES_LIMIT as usize);
    let len = len as u32;
    dst.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    dst.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Any frame, payload given whole (tests and fuzzing build client frames with it).
pub fn write_frame(dst: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    write_head(dst, payload.len(), kind, flags, stream);
    dst.extend_from_slice(payload);
}

pub fn write_settings(dst: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_head(dst, settings.len() * 6, TYPE_SETTINGS, 0, 0);
    for &(id, value) in settings {
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(dst: &mut Vec<u8>) {
    write_head(dst, 0, TYPE_SETTINGS, FLAG_ACK, 0);
}

pub fn write_ping(dst: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    write_frame(dst, TYPE_PING, if ack { FLAG_ACK } else { 0 }, 0, &data);
}

pub fn write_goaway(dst: &mut Vec<u8>, last_stream: u32, code: super::ErrorCode, debug: &[u8]) {
    write_head(dst, 8 + debug.len(), TYPE_GOAWAY, 0, 0);
    dst.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    dst.extend_from_slice(&code.0.to_be_bytes());
    dst.extend_from_slice(debug);
}

pub fn write_rst_stream(dst: &mut Vec<u8>, stream: u32, code: super::ErrorCode) {
    write_frame(dst, TYPE_RST_STREAM, 0, stream, &code.0.to_be_bytes());
}

pub fn write_window_update(dst: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!((1..=WINDOW_MAX).contains(&increment));
    write_frame(dst, TYPE_WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// One DATA frame (no padding); `data` must fit the peer's frame size.
pub fn write_data(dst: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { FLAG_END_STREAM } else { 0 };
    write_frame(dst, TYPE_DATA, flags, stream, data);
}

/// A field block as HEADERS then as many CONTINUATION frames as `frame_bytes_max` needs.
pub fn write_headers(
    dst: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    frame_bytes_max: u32,
) {
    let max = (frame_bytes_max as usize).max(1);
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { FLAG_END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame(dst, TYPE_HEADERS, flags, stream, first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            FLAG_END_HEADERS
        } else {
            0
        };
        write_frame(dst, TYPE_CONTINUATION, flags, stream, chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ErrorCode, Scope};
    use super::*;

    const MAX: u32 = FRAME_BYTES_MIN;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        write_frame(&mut b, kind, flags, stream, payload);
        b
    }

    fn ok(buf: &[u8]) -> Frame<'_> {
        match parse(buf, MAX) {
            FrameVerdict::Complete {
                frame,
                consumed_bytes,
            } => {
                assert_eq!(consumed_bytes, buf.len());
                frame
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn bad(buf: &[u8]) -> Violation {
        match parse(buf, MAX) {
            FrameVerdict::Invalid { violation, .. } => violation,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    fn conn_err(buf: &[u8]) -> (ErrorCode, H2Error) {
        let v = bad(buf);
        assert_eq!(v.scope, Scope::Connection, "{v:?}");
        (v.error.code(), v.error)
    }

    #[test]
    fn head_parses_length_type_flags_and_ignores_the_reserved_bit() {
        let h = FrameHead::parse(&[0x01, 0x02, 0x03, 0x08, 0x25, 0x80, 0x00, 0x00, 0x07]);
        assert_eq!(
            h,
            FrameHead {
                len: 0x010203,
                kind: 8,
                flags: 0x25,
                stream: 7
            }
        );
    }

    #[test]
    fn partial_until_whole_at_every_cut() {
        let b = frame(TYPE_DATA, FLAG_END_STREAM, 1, b"hello");
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut], MAX), FrameVerdict::Partial, "cut {cut}");
        }
        assert_eq!(
            ok(&b),
            Frame::Data {
                stream: 1,
                data: b"hello",
                end_stream: true,
                flow_bytes: 5
            }
        );
    }

    #[test]
    fn oversized_frame_refused_from_the_header_alone() {
        let mut b = Vec::new();
        write_head(&mut b, MAX as usize + 1, TYPE_DATA, 0, 1);
        assert_eq!(
            conn_err(&b),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::FrameTooLarge {
                    len: MAX + 1,
                    max: MAX
                }
            )
        );
    }

    #[test]
    fn data_padding_is_stripped_and_counted_for_flow_control() {
        let b = frame(TYPE_DATA, FLAG_PADDED, 3, &[2, b'a', b'b', 0, 0]);
        assert_eq!(
            ok(&b),
            Frame::Data {
                stream: 3,
                data: b"ab",
                end_stream: false,
                flow_bytes: 5
            }
        );
        // Padding may fill the rest of the payload.
        let b = frame(TYPE_DATA, FLAG_PADDED, 3, &[2, 0, 0]);
        assert!(matches!(ok(&b), Frame::Data { data: b"", .. }));
    }

    #[test]
    fn data_padding_longer_than_the_payload_is_a_protocol_error() {
        let b = frame(TYPE_DATA, FLAG_PADDED, 1, &[3, 0, 0]);
        assert_eq!(
            conn_err(&b),
            (ErrorCode::PROTOCOL_ERROR, H2Error::PaddingTooLong)
        );
        // PADDED with no room for the Pad Length octet.
        let b = frame(TYPE_DATA, FLAG_PADDED, 1, &[]);
        assert_eq!(conn_err(&b).0, ErrorCode::FRAME_SIZE_ERROR);
    }

    #[test]
    fn data_on_stream_zero_is_a_protocol_error() {
        let b = frame(TYPE_DATA, 0, 0, b"x");
        assert_eq!(
            conn_err(&b),
            (ErrorCode::PROTOCOL_ERROR, H2Error::StreamIdZero(Kind::Data))
        );
    }

    #[test]
    fn headers_with_padding_and_priority() {
        let mut p = vec![1]; // pad length
        p.extend_from_slice(&[0x80, 0, 0, 3, 15]); // exclusive on 3, weight 16
        p.extend_from_slice(&[0x82, 0x84]);
        p.push(0); // padding
        let b = frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM,
            5,
            &p,
        );
        assert_eq!(
            ok(&b),
            Frame::Headers {
                stream: 5,
                fragment: &[0x82, 0x84],
                end_stream: true,
                end_headers: true,
                priority: Some(Priority {
                    exclusive: true,
                    depends_on: 3,
                    weight: 15
                })
            }
        );
    }

    #[test]
    fn headers_too_short_for_priority_is_a_frame_size_error() {
        let b = frame(
            TYPE_HEADERS,
            FLAG_PRIORITY | FLAG_END_HEADERS,
            1,
            &[0, 0, 0],
        );
        assert_eq!(
            conn_err(&b),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::BadFrameSize(Kind::Headers)
            )
        );
    }

    #[test]
    fn headers_padding_over_the_priority_fields_is_a_protocol_error() {
        // Pad Length 5, then the 5 priority octets: nothing is left for the padding.
        let b = frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS,
            1,
            &[5, 0, 0, 0, 0, 16],
        );
        assert_eq!(
            conn_err(&b),
            (ErrorCode::PROTOCOL_ERROR, H2Error::PaddingTooLong)
        );
    }

    #[test]
    fn headers_padding_too_long_and_stream_zero() {
        let b = frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[5, 0x82]);
        assert_eq!(conn_err(&b).1, H2Error::PaddingTooLong);
        let b = frame(TYPE_HEADERS, FLAG_END_HEADERS, 0, &[0x82]);
        assert_eq!(conn_err(&b).1, H2Error::StreamIdZero(Kind::Headers));
    }

    #[test]
    fn priority_frame_rules() {
        let b = frame(TYPE_PRIORITY, 0, 3, &[0, 0, 0, 1, 200]);
        assert!(matches!(ok(&b), Frame::Priority { stream: 3, .. }));
        // §6.3: a wrong length is a stream error.
        let v = bad(&frame(TYPE_PRIORITY, 0, 3, &[0, 0, 0, 1]));
        assert_eq!(
            v,
            Violation::stream(3, H2Error::BadFrameSize(Kind::Priority))
        );
        assert_eq!(v.error.code(), ErrorCode::FRAME_SIZE_ERROR);
        let v = bad(&frame(TYPE_PRIORITY, 0, 3, &[0, 0, 0, 3, 0]));
        assert_eq!(v, Violation::stream(3, H2Error::SelfDependency));
        assert_eq!(v.error.code(), ErrorCode::PROTOCOL_ERROR);
        assert_eq!(
            conn_err(&frame(TYPE_PRIORITY, 0, 0, &[0, 0, 0, 1, 0])).1,
            H2Error::StreamIdZero(Kind::Priority)
        );
    }

    #[test]
    fn rst_stream_rules() {
        let b = frame(TYPE_RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        assert_eq!(
            ok(&b),
            Frame::RstStream {
                stream: 1,
                code: ErrorCode::CANCEL
            }
        );
        assert_eq!(
            conn_err(&frame(TYPE_RST_STREAM, 0, 1, &[0, 0, 8])),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::BadFrameSize(Kind::RstStream)
            )
        );
        assert_eq!(
            conn_err(&frame(TYPE_RST_STREAM, 0, 0, &[0, 0, 0, 8])).1,
            H2Error::StreamIdZero(Kind::RstStream)
        );
    }

    fn settings(list: &[(u16, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        write_settings(&mut b, list);
        b
    }

    #[test]
    fn settings_parse_every_known_parameter() {
        let b = settings(&[
            (1, 0),
            (2, 0),
            (3, 100),
            (4, 1 << 20),
            (5, 1 << 20),
            (6, 8192),
            (8, 1),
            (9, 1),
            (0xfe, 7),
        ]);
        let Frame::Settings {
            ack: false,
            settings,
        } = ok(&b)
        else {
            panic!("settings");
        };
        let got: Vec<Setting> = settings.iter().collect();
        assert_eq!(
            got,
            [
                Setting::HeaderTableSize(0),
                Setting::EnablePush(false),
                Setting::MaxConcurrentStreams(100),
                Setting::InitialWindowSize(1 << 20),
                Setting::MaxFrameSize(1 << 20),
                Setting::MaxHeaderListSize(8192),
                Setting::EnableConnectProtocol(true),
                Setting::NoRfc7540Priorities(true),
                Setting::Unknown { id: 0xfe, value: 7 },
            ]
        );
    }

    #[test]
    fn settings_values_are_validated() {
        let cases = [
            ((2, 2), ErrorCode::PROTOCOL_ERROR, H2Error::BadSettingFlag),
            ((8, 2), ErrorCode::PROTOCOL_ERROR, H2Error::BadSettingFlag),
            ((9, 5), ErrorCode::PROTOCOL_ERROR, H2Error::BadSettingFlag),
            (
                (4, 1 << 31),
                ErrorCode::FLOW_CONTROL_ERROR,
                H2Error::BadInitialWindowSize,
            ),
            (
                (5, (1 << 14) - 1),
                ErrorCode::PROTOCOL_ERROR,
                H2Error::BadMaxFrameSize,
            ),
            (
                (5, 1 << 24),
                ErrorCode::PROTOCOL_ERROR,
                H2Error::BadMaxFrameSize,
            ),
        ];
        for (setting, code, error) in cases {
            assert_eq!(
                conn_err(&settings(&[setting])),
                (code, error),
                "{setting:?}"
            );
        }
        // The bounds themselves are fine.
        ok(&settings(&[
            (4, WINDOW_MAX),
            (5, FRAME_BYTES_MIN),
            (5, FRAME_BYTES_LIMIT),
        ]));
    }

    #[test]
    fn settings_sizes_and_stream() {
        assert_eq!(
            conn_err(&frame(TYPE_SETTINGS, 0, 0, &[0, 1, 0, 0, 0])),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::BadFrameSize(Kind::Settings)
            )
        );
        assert_eq!(
            conn_err(&frame(TYPE_SETTINGS, FLAG_ACK, 0, &[0, 1, 0, 0, 0, 0])).1,
            H2Error::BadFrameSize(Kind::Settings)
        );
        assert_eq!(
            conn_err(&frame(TYPE_SETTINGS, 0, 1, &[])),
            (
                ErrorCode::PROTOCOL_ERROR,
                H2Error::StreamIdNotZero(Kind::Settings)
            )
        );
        let mut b = Vec::new();
        write_settings_ack(&mut b);
        assert!(matches!(ok(&b), Frame::Settings { ack: true, .. }));
    }

    #[test]
    fn push_promise_from_a_client_is_a_protocol_error() {
        let b = frame(TYPE_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2, 0x82]);
        assert_eq!(
            conn_err(&b),
            (ErrorCode::PROTOCOL_ERROR, H2Error::PushPromise)
        );
    }

    #[test]
    fn ping_rules() {
        let mut b = Vec::new();
        write_ping(&mut b, false, *b"12345678");
        assert_eq!(
            ok(&b),
            Frame::Ping {
                ack: false,
                data: *b"12345678"
            }
        );
        assert_eq!(
            conn_err(&frame(TYPE_PING, 0, 0, b"1234567")),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::BadFrameSize(Kind::Ping)
            )
        );
        assert_eq!(
            conn_err(&frame(TYPE_PING, 0, 1, b"12345678")).1,
            H2Error::StreamIdNotZero(Kind::Ping)
        );
    }

    #[test]
    fn goaway_rules() {
        let mut b = Vec::new();
        write_goaway(&mut b, 7, ErrorCode::ENHANCE_YOUR_CALM, b"calm");
        assert_eq!(
            ok(&b),
            Frame::GoAway {
                last_stream: 7,
                code: ErrorCode::ENHANCE_YOUR_CALM,
                debug: b"calm"
            }
        );
        assert_eq!(
            conn_err(&frame(TYPE_GOAWAY, 0, 0, &[0; 7])).1,
            H2Error::BadFrameSize(Kind::GoAway)
        );
        assert_eq!(
            conn_err(&frame(TYPE_GOAWAY, 0, 3, &[0; 8])).1,
            H2Error::StreamIdNotZero(Kind::GoAway)
        );
    }

    #[test]
    fn window_update_rules() {
        let mut b = Vec::new();
        write_window_update(&mut b, 0, 1000);
        assert_eq!(
            ok(&b),
            Frame::WindowUpdate {
                stream: 0,
                increment: 1000
            }
        );
        // The reserved bit of the increment is ignored.
        let b = frame(TYPE_WINDOW_UPDATE, 0, 1, &[0x80, 0, 0, 1]);
        assert_eq!(
            ok(&b),
            Frame::WindowUpdate {
                stream: 1,
                increment: 1
            }
        );
        assert_eq!(
            conn_err(&frame(TYPE_WINDOW_UPDATE, 0, 0, &[0; 4])),
            (ErrorCode::PROTOCOL_ERROR, H2Error::ZeroWindowIncrement)
        );
        assert_eq!(
            bad(&frame(TYPE_WINDOW_UPDATE, 0, 5, &[0; 4])),
            Violation::stream(5, H2Error::ZeroWindowIncrement)
        );
        assert_eq!(
            conn_err(&frame(TYPE_WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0, 1])),
            (
                ErrorCode::FRAME_SIZE_ERROR,
                H2Error::BadFrameSize(Kind::WindowUpdate)
            )
        );
    }

    #[test]
    fn continuation_rules() {
        let b = frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]);
        assert_eq!(
            ok(&b),
            Frame::Continuation {
                stream: 1,
                fragment: &[0x82],
                end_headers: true
            }
        );
        assert_eq!(
            conn_err(&frame(TYPE_CONTINUATION, 0, 0, &[])).1,
            H2Error::StreamIdZero(Kind::Continuation)
        );
    }

    #[test]
    fn unknown_types_and_flags_are_not_errors() {
        let b = frame(0x42, 0xff, 9, b"whatever");
        assert_eq!(
            ok(&b),
            Frame::Unknown {
                kind: 0x42,
                stream: 9
            }
        );
        let b = frame(TYPE_PING, 0xfe, 0, b"12345678");
        assert!(matches!(ok(&b), Frame::Ping { ack: false, .. }));
    }

    #[test]
    fn headers_split_into_continuations_at_the_frame_size() {
        let block: Vec<u8> = (0..40).collect();
        let mut b = Vec::new();
        write_headers(&mut b, 1, &block, true, 16);
        let mut at = 0;
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while at < b.len() {
            let FrameVerdict::Complete {
                frame,
                consumed_bytes,
            } = parse(&b[at..], MAX)
            else {
                panic!("frame");
            };
            at += consumed_bytes;
            match frame {
                Frame::Headers {
                    fragment,
                    end_stream: true,
                    end_headers,
                    ..
                } => {
                    got.extend_from_slice(fragment);
                    kinds.push(('H', end_headers));
                }
                Frame::Continuation {
                    fragment,
                    end_headers,
                    ..
                } => {
                    got.extend_from_slice(fragment);
                    kinds.push(('C', end_headers));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, block);
        assert_eq!(kinds, [('H', false), ('C', false), ('C', true)]);
        let mut b = Vec::new();
        write_headers(&mut b, 1, &[0x88], false, 16);
        assert_eq!(b, frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x88]));
    }

    #[test]
    fn encoders_write_the_rfc_layouts() {
        let mut b = Vec::new();
        write_rst_stream(&mut b, 3, ErrorCode::REFUSED_STREAM);
        assert_eq!(b, [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 7]);
        b.clear();
        write_window_update(&mut b, 0, 0x10000);
        assert_eq!(b, [0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        b.clear();
        write_settings(&mut b, &[(3, 100)]);
        assert_eq!(b, [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        b.clear();
        write_data(&mut b, 1, b"ab", true);
        assert_eq!(b, [0, 0, 2, 0, 1, 0, 0, 0, 1, b'a', b'b']);
    }
}
