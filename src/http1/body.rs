//! Owns: finding the end of a chunked body (RFC 9112 §7.1) in a byte stream that arrives in
//! arbitrary pieces, and rejecting malformed framing. ringway forwards chunked bodies verbatim, so
//! the scanner only counts and validates; it never copies or rewrites.
//! Must not: allocate or buffer: every byte is looked at once, in whatever piece it came.

/// Longest chunk-size accepted: 16 hex digits (a u64).
const SIZE_DIGITS_MAX: u32 = 16;
/// Longest chunk-ext part of one size line.
const EXT_BYTES_MAX: u32 = 4096;
/// Longest trailer section.
const TRAILER_BYTES_MAX: u32 = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size does not fit 64 bits")]
    SizeTooLarge,
    #[error("invalid or oversized chunk extension")]
    BadExtension,
    #[error("missing CRLF")]
    MissingCrlf,
    #[error("trailer section too large")]
    TrailerTooLarge,
    #[error("invalid trailer field")]
    BadTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Every byte fed belongs to the body; more is needed.
    NeedMore { consumed_bytes: usize },
    /// The body ended `consumed_bytes` into this piece (after the final CRLF).
    Done { consumed_bytes: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size {
        digits: u32,
    },
    /// After the size: optional BWS then `;ext` or CR.
    SizeWs,
    /// Inside chunk extensions (`bytes` so far); `quoted` inside a quoted-string, `escape` after
    /// a backslash in one.
    Ext {
        bytes: u32,
        quoted: bool,
        escape: bool,
    },
    /// Expecting LF of the size line.
    SizeLf,
    /// Chunk data still to come.
    Data,
    /// Expecting CR after the data.
    DataCr,
    /// Expecting LF after the data.
    DataLf,
    /// Start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line; `name` while still in the field name.
    Trailer {
        name: bool,
        empty_name: bool,
    },
    /// Expecting LF of a trailer line.
    TrailerLf,
    /// Expecting LF of the final CRLF.
    FinalLf,
    Done,
}

/// Incremental scanner for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    remaining: u64,
    trailer_bytes: u32,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ChunkedScanner {
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            trailer_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of the current chunk's data still to come (0 outside data).
    pub fn data_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// The caller moved `n` data bytes itself (e.g. by splice) without feeding them.
    pub fn skip_data(&mut self, n: u64) {
        if self.state != State::Data {
            return;
        }
        self.remaining = self.remaining.saturating_sub(n);
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
    }

    /// Scans `input`, the next bytes of the stream.
    pub fn feed(&mut self, input: &[u8]) -> Result<ChunkVerdict, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                return Ok(ChunkVerdict::Done { consumed_bytes: i });
            }
            if self.state == State::Data {
                let take = self.remaining.min((input.len() - i) as u64);
                self.remaining -= take;
                i += take as usize;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input.get(i).copied().unwrap_or(0);
            i += 1;
            self.step(b)?;
        }
        if self.state == State::Done {
            Ok(ChunkVerdict::Done { consumed_bytes: i })
        } else {
            Ok(ChunkVerdict::NeedMore { consumed_bytes: i })
        }
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= SIZE_DIGITS_MAX {
                        return Err(ChunkError::SizeTooLarge);
                    }
                    let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self.size.checked_mul(16).ok_or(ChunkError::SizeTooLarge)? | v;
                    State::Size { digits: digits + 1 }
                }
                _ if digits == 0 => return Err(ChunkError::BadSize),
                b'\n' => return Err(ChunkError::MissingCrlf),
                b' ' | b'\t' => State::SizeWs,
                b';' => State::Ext {
                    bytes: 0,
                    quoted: false,
                    escape: false,
                },
                b'\r' => State::SizeLf,
                _ => return Err(ChunkError::BadSize),
            },
            State::SizeWs => match b {
                b' ' | b'\t' => State::SizeWs,
                b';' => State::Ext {
                    bytes: 0,
                    quoted: false,
                    escape: false,
                },
                b'\r' => State::SizeLf,
                _ => return Err(ChunkError::BadSize),
            },
            State::Ext {
                bytes,
                quoted,
                escape,
            } => {
                if bytes >= EXT_BYTES_MAX {
                    return Err(ChunkError::BadExtension);
                }
                let bytes = bytes + 1;
                if quoted {
                    match b {
                        _ if escape => {
                            if b < 0x20 && b != b'\t' || b == 0x7f {
                                return Err(ChunkError::BadExtension);
                            }
                            State::Ext {
                                bytes,
                                quoted: true,
                                escape: false,
                            }
                        }
                        b'\\' => State::Ext {
                            bytes,
                            quoted: true,
                            escape: true,
                        },
                        b'"' => State::Ext {
                            bytes,
                            quoted: false,
                            escape: false,
                        },
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext {
                            bytes,
                            quoted: true,
                            escape: false,
                        },
                        _ => return Err(ChunkError::BadExtension),
                    }
                } else {
                    match b {
                        b'\r' => State::SizeLf,
                        b'\n' => return Err(ChunkError::MissingCrlf),
                        b'"' => State::Ext {
                            bytes,
                            quoted: true,
                            escape: false,
                        },
                        b';' | b'=' | b' ' | b'\t' => State::Ext {
                            bytes,
                            quoted: false,
                            escape: false,
                        },
                        _ if is_tchar(b) => State::Ext {
                            bytes,
                            quoted: false,
                            escape: false,
                        },
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    self.remaining = self.size;
                    self.size = 0;
                    State::Data
                }
            }
            State::Data => State::Data,
            State::DataCr => {
                if b != b'\r' {
                    return Err(ChunkError::MissingCrlf);
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                State::Size { digits: 0 }
            }
            State::TrailerStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::FinalLf,
                    _ if is_tchar(b) => State::Trailer {
                        name: true,
                        empty_name: false,
                    },
                    _ => return Err(ChunkError::BadTrailer),
                }
            }
            State::Trailer { name, empty_name } => {
                self.count_trailer()?;
                if name {
                    match b {
                        b':' if !empty_name => State::Trailer {
                            name: false,
                            empty_name: false,
                        },
                        _ if is_tchar(b) => State::Trailer {
                            name: true,
                            empty_name: false,
                        },
                        _ => return Err(ChunkError::BadTrailer),
                    }
                } else {
                    match b {
                        b'\r' => State::TrailerLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Trailer {
                            name: false,
                            empty_name: false,
                        },
                        _ => return Err(ChunkError::BadTrailer),
                    }
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                State::TrailerStart
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                State::Done
            }
            State::Done => State::Done,
        };
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(ChunkError::TrailerTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at `cut`; returns total consumed and whether it finished.
    fn run_split(input: &[u8], cut: usize) -> Result<(usize, bool), ChunkError> {
        let mut s = ChunkedScanner::new();
        let mut total = 0;
        for part in [&input[..cut], &input[cut..]] {
            match s.feed(part)? {
                ChunkVerdict::NeedMore { consumed_bytes } => {
                    assert_eq!(consumed_bytes, part.len());
                    total += consumed_bytes;
                }
                ChunkVerdict::Done { consumed_bytes } => {
                    total += consumed_bytes;
                    return Ok((total, true));
                }
            }
        }
        Ok((total, s.is_done()))
    }

    fn ends_at(input: &[u8], end: usize) {
        for cut in 0..=input.len() {
            assert_eq!(run_split(input, cut), Ok((end, true)), "cut at {cut}");
        }
        let mut s = ChunkedScanner::new();
        let mut total = 0;
        for b in input {
            match s.feed(std::slice::from_ref(b)) {
                Ok(ChunkVerdict::NeedMore { consumed_bytes }) => total += consumed_bytes,
                Ok(ChunkVerdict::Done { consumed_bytes }) => {
                    total += consumed_bytes;
                    break;
                }
                Err(e) => panic!("byte-by-byte: {e}"),
            }
        }
        assert_eq!(total, end);
    }

    fn fails(input: &[u8], err: ChunkError) {
        for cut in 0..=input.len() {
            assert_eq!(
                run_split(input, cut),
                Err(err),
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn simple_body_ends_after_final_crlf_and_leaves_the_rest() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        ends_at(&input, body.len());
    }

    #[test]
    fn extensions_trailers_and_uppercase_hex() {
        let body =
            b"A;name=value;q=\"a \\\" b\"\r\n0123456789\r\n0 ; last\r\nX-Sum: abc\r\nX-2: \r\n\r\n";
        ends_at(body, body.len());
    }

    #[test]
    fn malformed_sizes() {
        fails(b"zz\r\n", ChunkError::BadSize);
        fails(b"\r\n", ChunkError::BadSize);
        fails(b" 5\r\n", ChunkError::BadSize);
        fails(b"-5\r\n", ChunkError::BadSize);
        fails(b"5 x\r\n", ChunkError::BadSize);
        fails(b"11111111111111111\r\n", ChunkError::SizeTooLarge);
    }

    #[test]
    fn missing_crlfs() {
        fails(b"5\nhello\r\n0\r\n\r\n", ChunkError::MissingCrlf);
        fails(b"5\r\nhelloX\r\n", ChunkError::MissingCrlf);
        fails(b"5\r\nhello\rX", ChunkError::MissingCrlf);
        fails(b"0\r\n\rX", ChunkError::MissingCrlf);
        fails(b"0\r\nX: 1\rX", ChunkError::MissingCrlf);
    }

    #[test]
    fn bad_extensions_and_trailers() {
        fails(b"5;a\x01\r\n", ChunkError::BadExtension);
        let long = format!("5;{}\r\n", "a".repeat(5000));
        fails(long.as_bytes(), ChunkError::BadExtension);
        fails(b"0\r\n: x\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\nX : 1\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\nX: a\x00\r\n\r\n", ChunkError::BadTrailer);
        let mut big = b"0\r\n".to_vec();
        for _ in 0..2000 {
            big.extend_from_slice(b"X-Trailer: 0123\r\n");
        }
        big.extend_from_slice(b"\r\n");
        fails(&big, ChunkError::TrailerTooLarge);
    }

    #[test]
    fn skip_data_lets_the_caller_splice_chunk_data() {
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.feed(b"10000\r\n"),
            Ok(ChunkVerdict::NeedMore { consumed_bytes: 7 })
        );
        assert_eq!(s.data_remaining(), 0x10000);
        s.skip_data(0x10000);
        assert_eq!(s.data_remaining(), 0);
        assert_eq!(
            s.feed(b"\r\n0\r\n\r\nrest"),
            Ok(ChunkVerdict::Done { consumed_bytes: 7 })
        );
        assert!(s.is_done());
        assert_eq!(s.feed(b"x"), Ok(ChunkVerdict::Done { consumed_bytes: 0 }));
    }
}
