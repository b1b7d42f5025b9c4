//! Owns: finding the end of a chunked body (RFC 9112 §7.1) in a byte stream that arrives in
//! arbitrary pieces, and rejecting malformed framing. ringway forwards chunked bodies verbatim, so
//! the scanner mostly counts and validates; [`ChunkedScanner::dechunk`] also extracts the chunk
//! data, for clients that cannot take chunked framing (HTTP/1.0, RFC 9112 §7.1 and §6.3).
//! Must not: allocate or buffer beyond the caller's output: every byte is looked at once, in
//! whatever piece it came.

use super::parse::is_tchar;

/// Longest chunk-size accepted: 16 hex digits (a u64).
const SIZE_DIGITS_MAX: u32 = 16;
/// Longest chunk-ext part of one size line (from the first BWS or `;` to the CR).
const EXT_BYTES_MAX: u32 = 4096;
/// Longest trailer section, final CRLF included.
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
    /// Every byte fed belongs to the body (`consumed_bytes == input.len()`); more is needed.
    NeedMore { consumed_bytes: usize },
    /// The body ended `consumed_bytes` into this piece, just after the final CRLF of the trailer
    /// section; the rest of the piece is the next message.
    Done { consumed_bytes: usize },
}

/// Where the scanner is in RFC 9112 §7.1's grammar:
///
/// ```text
/// chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// last-chunk = 1*("0") [ chunk-ext ] CRLF
/// trailer-section = *( field-line CRLF ), then CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`digits` so far).
    Size {
        digits: u32,
    },
    /// BWS after the size: only `;` may follow.
    SizeWs,
    /// After `;`, BWS then an extension name.
    ExtBeforeName,
    /// In an extension name.
    ExtName,
    /// BWS after a name: `=` or `;` may follow.
    ExtAfterName,
    /// After `=`, BWS then a token or a quoted-string.
    ExtBeforeValue,
    /// In a token value.
    ExtValue,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted-string.
    ExtQuotedPair,
    /// Just after the closing quote: BWS, `;` or CR.
    ExtAfterQuoted,
    /// BWS after a value: only `;` may follow.
    ExtAfterValue,
    /// Expecting LF of the size line.
    SizeLf,
    /// Chunk data still to come (`ChunkedScanner::remaining`).
    Data,
    /// Expecting CR after the data.
    DataCr,
    /// Expecting LF after the data.
    DataLf,
    /// Start of a trailer line, or the CR of the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
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
    /// The chunk size being read.
    size: u64,
    /// Data bytes of the current chunk still to come.
    remaining: u64,
    /// Bytes of chunk-ext on the current size line.
    ext_bytes: u32,
    /// Bytes of the trailer section so far.
    trailer_bytes: u32,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

/// RFC 9110 §5.6.3 BWS.
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 §5.6.4 qdtext.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// RFC 9110 §5.5 field-vchar, SP and HTAB: what a field value may hold.
fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff)
}

impl ChunkedScanner {
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// The final CRLF has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of the current chunk's data still to come (0 outside data). The caller may move
    /// them itself (splice) and report them with [`ChunkedScanner::skip_data`].
    pub fn data_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// The caller moved `n <= data_remaining()` data bytes itself without feeding them. A larger
    /// `n` is treated as `data_remaining()`; outside data this does nothing.
    pub fn skip_data(&mut self, n: u64) {
        if self.state != State::Data {
            return;
        }
        self.remaining = self.remaining.saturating_sub(n);
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
    }

    /// Scans `input`, the next bytes of the stream. After `Done`, every call returns
    /// `Done { consumed_bytes: 0 }`. After an error the scanner must not be fed again: the
    /// stream is not HTTP any more.
    pub fn feed(&mut self, input: &[u8]) -> Result<ChunkVerdict, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(ChunkVerdict::Done { consumed_bytes: i }),
                // Data is skipped in one step, not per byte.
                State::Data => {
                    let available = input.len().saturating_sub(i);
                    let take =
                        usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                    self.skip_data(take as u64);
                    i += take;
                }
                _ => {
                    let b = input.get(i).copied().unwrap_or_default();
                    i += 1;
                    self.step(b)?;
                }
            }
        }
        if self.state == State::Done {
            Ok(ChunkVerdict::Done { consumed_bytes: i })
        } else {
            Ok(ChunkVerdict::NeedMore { consumed_bytes: i })
        }
    }

    /// As [`ChunkedScanner::feed`], and appends the chunk data (only) of `input` to `out`: the
    /// body with its framing, extensions and trailer section removed. Used to forward a chunked
    /// response to an HTTP/1.0 client close-delimited (RFC 9112 §7.1: trailers are dropped).
    pub fn dechunk(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<ChunkVerdict, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                return Ok(ChunkVerdict::Done { consumed_bytes: i });
            }
            let data = self.data_remaining();
            if data > 0 {
                let available = input.len() - i;
                let take = usize::try_from(data).map_or(available, |d| d.min(available));
                out.extend_from_slice(input.get(i..i + take).unwrap_or_default());
                self.skip_data(take as u64);
                i += take;
                continue;
            }
            // Framing bytes: scan up to the next data (or the end) without copying.
            let rest = input.get(i..).unwrap_or_default();
            let mut step_end = 0;
            for &b in rest {
                step_end += 1;
                self.step(b)?;
                if self.state == State::Data || self.state == State::Done {
                    break;
                }
            }
            i += step_end;
        }
        if self.state == State::Done {
            Ok(ChunkVerdict::Done { consumed_bytes: i })
        } else {
            Ok(ChunkVerdict::NeedMore { consumed_bytes: i })
        }
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { digits } => self.step_size(digits, b)?,
            State::SizeWs
            | State::ExtBeforeName
            | State::ExtName
            | State::ExtAfterName
            | State::ExtBeforeValue
            | State::ExtValue
            | State::ExtQuoted
            | State::ExtQuotedPair
            | State::ExtAfterQuoted
            | State::ExtAfterValue => {
                self.ext_bytes += 1;
                if self.ext_bytes > EXT_BYTES_MAX {
                    return Err(ChunkError::BadExtension);
                }
                step_ext(self.state, b)?
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    self.remaining = self.size;
                    State::Data
                }
            }
            // `feed` never steps through data; a lone byte here would be data.
            State::Data => {
                self.skip_data(1);
                self.state
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::DataLf => match b {
                b'\n' => {
                    self.size = 0;
                    self.ext_bytes = 0;
                    State::Size { digits: 0 }
                }
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::FinalLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > TRAILER_BYTES_MAX {
                    return Err(ChunkError::TrailerTooLarge);
                }
                step_trailer(self.state, b)?
            }
            State::Done => State::Done,
        };
        Ok(())
    }

    fn step_size(&mut self, digits: u32, b: u8) -> Result<State, ChunkError> {
        if let Some(v) = (b as char).to_digit(16) {
            if digits >= SIZE_DIGITS_MAX {
                return Err(ChunkError::SizeTooLarge);
            }
            self.size = self
                .size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(v)))
                .ok_or(ChunkError::SizeTooLarge)?;
            return Ok(State::Size { digits: digits + 1 });
        }
        // RFC 9112 §7.1: chunk-size = 1*HEXDIG, with no leading whitespace or sign.
        if digits == 0 {
            return Err(ChunkError::BadSize);
        }
        match b {
            b'\r' => Ok(State::SizeLf),
            b'\n' => Err(ChunkError::MissingCrlf),
            b';' => {
                self.ext_bytes = 1;
                Ok(State::ExtBeforeName)
            }
            _ if is_ws(b) => {
                self.ext_bytes = 1;
                Ok(State::SizeWs)
            }
            _ => Err(ChunkError::BadSize),
        }
    }
}

/// One byte of a size line after the size: `chunk-ext` then CR. BWS is allowed before `;`, after
/// `;` and around `=`, nowhere else (RFC 9112 §7.1.1); a bare LF ends no line.
fn step_ext(state: State, b: u8) -> Result<State, ChunkError> {
    if b == b'\n' {
        return Err(ChunkError::MissingCrlf);
    }
    let next = match state {
        State::SizeWs => match b {
            b';' => State::ExtBeforeName,
            _ if is_ws(b) => State::SizeWs,
            _ => return Err(ChunkError::BadSize),
        },
        State::ExtBeforeName => match b {
            _ if is_ws(b) => State::ExtBeforeName,
            _ if is_tchar(b) => State::ExtName,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtName => match b {
            b'\r' => State::SizeLf,
            b';' => State::ExtBeforeName,
            b'=' => State::ExtBeforeValue,
            _ if is_ws(b) => State::ExtAfterName,
            _ if is_tchar(b) => State::ExtName,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtAfterName => match b {
            b';' => State::ExtBeforeName,
            b'=' => State::ExtBeforeValue,
            _ if is_ws(b) => State::ExtAfterName,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtBeforeValue => match b {
            b'"' => State::ExtQuoted,
            _ if is_ws(b) => State::ExtBeforeValue,
            _ if is_tchar(b) => State::ExtValue,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtValue => match b {
            b'\r' => State::SizeLf,
            b';' => State::ExtBeforeName,
            _ if is_ws(b) => State::ExtAfterValue,
            _ if is_tchar(b) => State::ExtValue,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtQuoted => match b {
            b'"' => State::ExtAfterQuoted,
            b'\\' => State::ExtQuotedPair,
            _ if is_qdtext(b) => State::ExtQuoted,
            _ => return Err(ChunkError::BadExtension),
        },
        // RFC 9110 §5.6.4: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ).
        State::ExtQuotedPair => match b {
            b'\t' | 0x20..=0x7e | 0x80..=0xff => State::ExtQuoted,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtAfterQuoted => match b {
            b'\r' => State::SizeLf,
            b';' => State::ExtBeforeName,
            _ if is_ws(b) => State::ExtAfterValue,
            _ => return Err(ChunkError::BadExtension),
        },
        State::ExtAfterValue => match b {
            b';' => State::ExtBeforeName,
            _ if is_ws(b) => State::ExtAfterValue,
            _ => return Err(ChunkError::BadExtension),
        },
        State::Size { .. }
        | State::SizeLf
        | State::Data
        | State::DataCr
        | State::DataLf
        | State::TrailerStart
        | State::TrailerName
        | State::TrailerValue
        | State::TrailerLf
        | State::FinalLf
        | State::Done => state,
    };
    Ok(next)
}

/// One byte of the trailer section. Fields are checked like header fields (RFC 9112 §7.1.2,
/// RFC 9110 §5): a token name, a colon with no whitespace before it, a value without controls;
/// no obs-fold (a line may not start with whitespace).
fn step_trailer(state: State, b: u8) -> Result<State, ChunkError> {
    let next = match state {
        State::TrailerStart => match b {
            b'\r' => State::FinalLf,
            b'\n' => return Err(ChunkError::MissingCrlf),
            _ if is_tchar(b) => State::TrailerName,
            _ => return Err(ChunkError::BadTrailer),
        },
        State::TrailerName => match b {
            b':' => State::TrailerValue,
            b'\n' => return Err(ChunkError::MissingCrlf),
            _ if is_tchar(b) => State::TrailerName,
            _ => return Err(ChunkError::BadTrailer),
        },
        State::TrailerValue => match b {
            b'\r' => State::TrailerLf,
            b'\n' => return Err(ChunkError::MissingCrlf),
            _ if is_field_value_byte(b) => State::TrailerValue,
            _ => return Err(ChunkError::BadTrailer),
        },
        State::TrailerLf => match b {
            b'\n' => State::TrailerStart,
            _ => return Err(ChunkError::MissingCrlf),
        },
        State::FinalLf => match b {
            b'\n' => State::Done,
            _ => return Err(ChunkError::MissingCrlf),
        },
        State::Size { .. }
        | State::SizeWs
        | State::ExtBeforeName
        | State::ExtName
        | State::ExtAfterName
        | State::ExtBeforeValue
        | State::ExtValue
        | State::ExtQuoted
        | State::ExtQuotedPair
        | State::ExtAfterQuoted
        | State::ExtAfterValue
        | State::SizeLf
        | State::Data
        | State::DataCr
        | State::DataLf
        | State::Done => state,
    };
    Ok(next)
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
    fn fails_byte_by_byte(input: &[u8], err: ChunkError) {
        let mut s = ChunkedScanner::new();
        for b in input {
            match s.feed(std::slice::from_ref(b)) {
                Ok(ChunkVerdict::NeedMore { consumed_bytes }) => assert_eq!(consumed_bytes, 1),
                Ok(ChunkVerdict::Done { .. }) => {
                    panic!("done on {:?}", String::from_utf8_lossy(input))
                }
                Err(e) => {
                    assert_eq!(e, err, "{:?}", String::from_utf8_lossy(input));
                    return;
                }
            }
        }
        panic!("no error for {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn bws_is_allowed_before_semicolon_and_around_equals() {
        for body in [
            &b"5 ;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t; a = b ;c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"q \\\" ;\" ;b=1\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\"\r\nhello\r\n000;x=y\r\n\r\n",
        ] {
            ends_at(body, body.len());
        }
    }

    #[test]
    fn bws_elsewhere_and_empty_extension_parts_are_refused() {
        fails(b"5 \r\nhello\r\n0\r\n\r\n", ChunkError::BadSize);
        fails(b"5;a b\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;a \r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;a=b \r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;=b\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;a=\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            ChunkError::BadExtension,
        );
        fails(b"5;a=\"b\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
        fails(b"5;a=b=c\r\nhello\r\n0\r\n\r\n", ChunkError::BadExtension);
    }

    #[test]
    fn bare_lf_is_missing_crlf_everywhere() {
        for input in [
            &b"5 \nhello\r\n0\r\n\r\n"[..],
            b"5;a\nhello\r\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\n\r\n",
            b"0\r\n\n",
            b"0\r\nX\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            fails(input, ChunkError::MissingCrlf);
            fails_byte_by_byte(input, ChunkError::MissingCrlf);
        }
    }

    #[test]
    fn bare_cr_is_missing_crlf() {
        fails(b"5\rhello\r\n0\r\n\r\n", ChunkError::MissingCrlf);
        fails(b"5\r\nhello\r\r\n0\r\n\r\n", ChunkError::MissingCrlf);
        fails(b"0\r\nX: 1\r\r\n\r\n", ChunkError::MissingCrlf);
    }

    #[test]
    fn trailer_fields_are_checked_like_header_fields() {
        fails(b"0\r\nX: 1\r\n 2\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\n\tX: 1\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\nX\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\nX\x01: 1\r\n\r\n", ChunkError::BadTrailer);
        fails(b"0\r\nX: \x7f\r\n\r\n", ChunkError::BadTrailer);
        let body = b"0\r\nX: a\tb \xff\r\nY:\r\n\r\n";
        ends_at(body, body.len());
    }

    #[test]
    fn sixteen_hex_digits_fit_and_seventeen_do_not() {
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.feed(b"ffffffffffffffff\r\n"),
            Ok(ChunkVerdict::NeedMore { consumed_bytes: 18 })
        );
        assert_eq!(s.data_remaining(), u64::MAX);
        fails(b"00000000000000000\r\n", ChunkError::SizeTooLarge);
        fails_byte_by_byte(b"fffffffffffffffff\r\n", ChunkError::SizeTooLarge);
    }

    #[test]
    fn byte_by_byte_errors_match_split_errors() {
        fails_byte_by_byte(b"zz\r\n", ChunkError::BadSize);
        fails_byte_by_byte(b"5;a\x01\r\n", ChunkError::BadExtension);
        fails_byte_by_byte(b"0\r\n: x\r\n\r\n", ChunkError::BadTrailer);
        fails_byte_by_byte(b"5\r\nhelloX", ChunkError::MissingCrlf);
    }

    #[test]
    fn extension_bytes_are_bounded_per_line() {
        let fits = format!(
            "5;{}\r\nhello\r\n0;{}\r\n\r\n",
            "a".repeat(4094),
            "b".repeat(4094)
        );
        ends_at(fits.as_bytes(), fits.len());
        let over = format!("5;{}\r\n", "a".repeat(4095));
        fails(over.as_bytes(), ChunkError::BadExtension);
        let padded = format!("5{};a\r\n", " ".repeat(4100));
        fails(padded.as_bytes(), ChunkError::BadExtension);
    }

    #[test]
    fn trailer_section_is_bounded() {
        let mut fits = b"0\r\nX: ".to_vec();
        fits.resize(16 * 1024 - 4 + 3, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(run_split(&fits, 0), Ok((fits.len(), true)));
        let mut over = fits.clone();
        over.insert(6, b'a');
        assert_eq!(run_split(&over, 0), Err(ChunkError::TrailerTooLarge));
    }

    #[test]
    fn partial_skip_data_then_feed_the_rest() {
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.feed(b"a\r\n0123"),
            Ok(ChunkVerdict::NeedMore { consumed_bytes: 7 })
        );
        assert_eq!(s.data_remaining(), 6);
        s.skip_data(4);
        assert_eq!(s.data_remaining(), 2);
        assert_eq!(
            s.feed(b"89\r\n0\r\n\r\nGET"),
            Ok(ChunkVerdict::Done { consumed_bytes: 9 })
        );
        // Outside data, skip_data is a no-op.
        let mut s = ChunkedScanner::new();
        s.skip_data(5);
        assert_eq!(s.data_remaining(), 0);
        assert_eq!(
            s.feed(b"0\r\n\r\n"),
            Ok(ChunkVerdict::Done { consumed_bytes: 5 })
        );
    }

    #[test]
    fn dechunk_extracts_the_data_at_every_split_and_drops_extensions_and_trailers() {
        let input: &[u8] =
            b"5;ext=1\r\nhello\r\n1\r\n \r\nB\r\nworld again\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let body_len = input.len() - 4;
        for cut in 0..=input.len() {
            for cut2 in cut..=input.len() {
                let mut s = ChunkedScanner::new();
                let mut out = Vec::new();
                let mut consumed = 0;
                let mut done = false;
                for piece in [&input[..cut], &input[cut..cut2], &input[cut2..]] {
                    if done {
                        break;
                    }
                    match s.dechunk(piece, &mut out).unwrap() {
                        ChunkVerdict::NeedMore { consumed_bytes } => {
                            assert_eq!(consumed_bytes, piece.len());
                            consumed += consumed_bytes;
                        }
                        ChunkVerdict::Done { consumed_bytes } => {
                            consumed += consumed_bytes;
                            done = true;
                        }
                    }
                }
                assert!(done, "cut {cut} {cut2}");
                assert_eq!(consumed, body_len, "cut {cut} {cut2}");
                assert_eq!(out, b"hello world again", "cut {cut} {cut2}");
            }
        }
    }

    #[test]
    fn dechunk_rejects_what_feed_rejects() {
        let mut s = ChunkedScanner::new();
        let mut out = Vec::new();
        assert!(s.dechunk(b"zz\r\n", &mut out).is_err());
        let mut s = ChunkedScanner::new();
        assert!(s.dechunk(b"2\r\nabX", &mut out).is_err());
    }

    #[test]
    fn feed_after_done_consumes_nothing() {
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.feed(b"0\r\n\r\n"),
            Ok(ChunkVerdict::Done { consumed_bytes: 5 })
        );
        assert_eq!(s.feed(b""), Ok(ChunkVerdict::Done { consumed_bytes: 0 }));
        assert_eq!(
            s.feed(b"0\r\n\r\n"),
            Ok(ChunkVerdict::Done { consumed_bytes: 0 })
        );
    }

    #[test]
    fn every_three_way_split_gives_the_same_end() {
        let body = b"3;x=\"y\"\r\nabc\r\n0\r\nT: v\r\n\r\n";
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut s = ChunkedScanner::new();
                let mut total = 0;
                for part in [&body[..a], &body[a..b], &body[b..]] {
                    match s.feed(part) {
                        Ok(ChunkVerdict::NeedMore { consumed_bytes }) => total += consumed_bytes,
                        Ok(ChunkVerdict::Done { consumed_bytes }) => total += consumed_bytes,
                        Err(e) => panic!("{a},{b}: {e}"),
                    }
                }
                assert!(s.is_done(), "{a},{b}");
                assert_eq!(total, body.len(), "{a},{b}");
            }
        }
    }
}
