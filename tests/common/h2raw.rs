//! Raw HTTP/2 frames as ringway sends them, for tests that read frames by hand. The numbers are
//! spelled out after RFC 9113 §6 and §7 rather than taken from ringway's codec, so a test built on
//! them does not trust what it checks.

/// One frame: its header fields (§4.1) and payload.
#[derive(Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY (§6.8) or RST_STREAM (§6.4).
    pub fn code(&self) -> Option<u32> {
        let at = match self.kind {
            0x7 => 4,
            0x3 => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// DATA or HEADERS with END_STREAM.
    pub fn ends_stream(&self) -> bool {
        matches!(self.kind, 0x0 | 0x1) && self.flags & 0x1 != 0
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            0x0 => "DATA",
            0x1 => "HEADERS",
            0x2 => "PRIORITY",
            0x3 => "RST_STREAM",
            0x4 => "SETTINGS",
            0x5 => "PUSH_PROMISE",
            0x6 => "PING",
            0x7 => "GOAWAY",
            0x8 => "WINDOW_UPDATE",
            0x9 => "CONTINUATION",
            _ => "?",
        };
        write!(
            f,
            "{kind}(stream {}, flags {:#x}, {} bytes",
            self.stream,
            self.flags,
            self.payload.len()
        )?;
        if let Some(c) = self.code() {
            write!(f, ", {}", code_name(c))?;
        }
        f.write_str(")")
    }
}

/// The name of an error code (§7).
pub fn code_name(code: u32) -> &'static str {
    match code {
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
        _ => "unknown",
    }
}

/// Takes the first frame off `buf` once it is whole.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    let head = buf.get(..9)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let (kind, flags) = (head[3], head[4]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let payload = buf.get(9..9 + len)?.to_vec();
    buf.drain(..9 + len);
    Some(Frame {
        kind,
        flags,
        stream,
        payload,
    })
}
