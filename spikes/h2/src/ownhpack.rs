//! HPACK written here (RFC 7541), the shape ringway would own: decode into a callback with
//! borrowed slices and a decoded-size bound checked as it goes (HPACK bombs stop early), a
//! dynamic table in one bounded byte buffer (no allocation per entry), a nibble-at-a-time
//! Huffman DFA built once from the spec's code table; the encoder indexes what repeats
//! (content-type, server, date) and Huffman-codes values when that is shorter.

use std::collections::VecDeque;
use std::sync::OnceLock;

use crate::huffman_table::{ENCODE_CODE_LENGTHS, ENCODE_CODES};

/// RFC 7541 Appendix A.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// RFC 7541 §4.3/§5/§6: a malformed block: COMPRESSION_ERROR.
    Malformed,
    /// The decoded list passed the bound we announced (SETTINGS_MAX_HEADER_LIST_SIZE).
    ListTooLarge,
}

// ---- Huffman ----------------------------------------------------------------------------------

/// One DFA transition: next state, the byte emitted (if `EMIT`), flags.
#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    sym: u8,
    flags: u8,
}
const EMIT: u8 = 1;
const FAIL: u8 = 2;

struct Dfa {
    /// 256 states (the Huffman tree's internal nodes) × 16 nibbles.
    steps: Vec<Step>,
    /// State may end a string: reached from the root by at most 7 one-bits (EOS prefix padding).
    accept: [bool; 256],
}

fn dfa() -> &'static Dfa {
    static DFA: OnceLock<Dfa> = OnceLock::new();
    DFA.get_or_init(|| {
        // The tree: internal nodes 0.. with children; a child is a node (< 0x1000) or a leaf
        // 0x1000 | symbol (256 = EOS).
        let mut kids: Vec<[u16; 2]> = vec![[u16::MAX; 2]];
        let mut codes: Vec<(u32, u8)> = (0..256)
            .map(|s| (ENCODE_CODES[s], ENCODE_CODE_LENGTHS[s]))
            .collect();
        codes.push((0x3fff_ffff, 30));
        for (sym, &(code, len)) in codes.iter().enumerate() {
            let mut n = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                if i == 0 {
                    kids[n][bit] = 0x1000 | sym as u16;
                } else {
                    if kids[n][bit] == u16::MAX {
                        kids.push([u16::MAX; 2]);
                        kids[n][bit] = (kids.len() - 1) as u16;
                    }
                    n = kids[n][bit] as usize;
                }
            }
        }
        assert_eq!(
            kids.len(),
            256,
            "a complete code of 257 symbols has 256 internal nodes"
        );
        let mut accept = [false; 256];
        let (mut n, mut depth) = (0usize, 0);
        while depth <= 7 {
            accept[n] = true;
            let k = kids[n][1];
            if k & 0x1000 != 0 {
                break;
            }
            n = k as usize;
            depth += 1;
        }
        let mut steps = vec![Step::default(); 256 * 16];
        for s in 0..256 {
            for nib in 0..16u8 {
                let mut n = s;
                let mut st = Step::default();
                for i in (0..4).rev() {
                    let k = kids[n][usize::from((nib >> i) & 1)];
                    if k & 0x1000 != 0 {
                        let sym = k & 0xfff;
                        if sym == 256 || st.flags & EMIT != 0 {
                            st.flags |= FAIL; // EOS in a string is an error (§5.2)
                            break;
                        }
                        st.flags |= EMIT;
                        st.sym = sym as u8;
                        n = 0;
                    } else {
                        n = k as usize;
                    }
                }
                st.next = n as u8;
                steps[s * 16 + usize::from(nib)] = st;
            }
        }
        Dfa { steps, accept }
    })
}

fn huffman_decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HpackError> {
    let d = dfa();
    let mut state = 0usize;
    for &b in src {
        for nib in [b >> 4, b & 0xf] {
            let st = d.steps[state * 16 + usize::from(nib)];
            if st.flags & FAIL != 0 {
                return Err(HpackError::Malformed);
            }
            if st.flags & EMIT != 0 {
                dst.push(st.sym);
            }
            state = usize::from(st.next);
        }
    }
    if d.accept[state] {
        Ok(())
    } else {
        Err(HpackError::Malformed)
    }
}

fn huffman_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&b| usize::from(ENCODE_CODE_LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

fn huffman_encode(src: &[u8], dst: &mut Vec<u8>) {
    let (mut acc, mut n) = (0u64, 0u32);
    for &b in src {
        let len = u32::from(ENCODE_CODE_LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(ENCODE_CODES[usize::from(b)]);
        n += len;
        while n >= 8 {
            n -= 8;
            dst.push((acc >> n) as u8);
        }
    }
    if n > 0 {
        // §5.2: pad with the most significant bits of EOS (all ones).
        dst.push(((acc << (8 - n)) as u8) | (0xff >> n));
    }
}

// ---- primitives -------------------------------------------------------------------------------

/// §5.1, bounded: values past 2^24 are refused (no field or table size needs more).
fn read_int(buf: &[u8], at: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1u16 << prefix) as usize - 1;
    let first = *buf.get(*at).ok_or(HpackError::Malformed)?;
    *at += 1;
    let mut v = usize::from(first) & mask;
    if v < mask {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let b = *buf.get(*at).ok_or(HpackError::Malformed)?;
        *at += 1;
        v += usize::from(b & 0x7f) << shift;
        if v > 1 << 24 {
            return Err(HpackError::Malformed);
        }
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

fn write_int(dst: &mut Vec<u8>, first: u8, prefix: u8, v: usize) {
    let mask = (1usize << prefix) - 1;
    if v < mask {
        dst.push(first | v as u8);
        return;
    }
    dst.push(first | mask as u8);
    let mut v = v - mask;
    while v >= 0x80 {
        dst.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

// ---- dynamic table ----------------------------------------------------------------------------

/// §4: entries newest first, all in one byte buffer of at most 2 × the table size (compacted
/// when the end is reached), so memory is bounded by the table size we announce.
struct Table {
    bytes: Vec<u8>,
    /// (offset in `bytes`, name length, value length), newest at the front.
    entries: VecDeque<(usize, usize, usize)>,
    size: usize,
    size_max: usize,
}

impl Table {
    fn new(size_max: usize) -> Table {
        Table {
            bytes: Vec::with_capacity(2 * size_max),
            entries: VecDeque::with_capacity(size_max / 32 + 1),
            size: 0,
            size_max,
        }
    }
    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let &(o, n, v) = self.entries.get(i)?;
        Some((&self.bytes[o..o + n], &self.bytes[o + n..o + n + v]))
    }
    fn evict_to(&mut self, room: usize) {
        while self.size + room > self.size_max {
            let Some((_, n, v)) = self.entries.pop_back() else {
                break;
            };
            self.size -= n + v + 32;
        }
    }
    fn set_max(&mut self, size_max: usize) {
        self.size_max = size_max;
        self.evict_to(0);
    }
    /// §4.4: an entry larger than the table empties it and is not added.
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let need = name.len() + value.len();
        self.evict_to(need + 32);
        if need + 32 > self.size_max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        if self.bytes.len() + need > self.bytes.capacity() {
            // Compact: keep only the live entries' bytes, from the oldest.
            let start = self.entries.back().map_or(self.bytes.len(), |e| e.0);
            self.bytes.drain(..start);
            for e in self.entries.iter_mut() {
                e.0 -= start;
            }
        }
        let o = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_front((o, name.len(), value.len()));
        self.size += need + 32;
    }
    fn find(&self, name: &[u8], value: &[u8]) -> Option<usize> {
        (0..self.entries.len()).find(|&i| self.get(i) == Some((name, value)))
    }
}

// ---- decoder ----------------------------------------------------------------------------------

pub struct Decoder {
    table: Table,
    /// SETTINGS_HEADER_TABLE_SIZE we announced: the most a size update may ask (§4.2).
    settings_max: usize,
    huff: [Vec<u8>; 2],
    name_copy: Vec<u8>,
}

impl Decoder {
    pub fn new(table_bytes: usize) -> Decoder {
        Decoder {
            table: Table::new(table_bytes),
            settings_max: table_bytes,
            huff: [Vec::with_capacity(256), Vec::with_capacity(1024)],
            name_copy: Vec::with_capacity(64),
        }
    }

    fn indexed(&self, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match i {
            0 => Err(HpackError::Malformed),
            1..=61 => Ok(STATIC[i - 1]),
            _ => self.table.get(i - 62).ok_or(HpackError::Malformed),
        }
    }

    /// Decodes one complete block; `f` sees every field in order; stops with `ListTooLarge`
    /// as soon as the decoded size (§6.5.2 accounting) passes `list_bytes_max`.
    pub fn decode(
        &mut self,
        block: &[u8],
        list_bytes_max: usize,
        f: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut at = 0;
        let mut list = 0usize;
        let mut fields_seen = false;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                let i = read_int(block, &mut at, 7)?;
                let (n, v) = self.indexed(i)?;
                list += n.len() + v.len() + 32;
                if list > list_bytes_max {
                    return Err(HpackError::ListTooLarge);
                }
                f(n, v);
                fields_seen = true;
            } else if b & 0xe0 == 0x20 {
                // §4.2: size updates only at the start of a block.
                if fields_seen {
                    return Err(HpackError::Malformed);
                }
                let n = read_int(block, &mut at, 5)?;
                if n > self.settings_max {
                    return Err(HpackError::Malformed);
                }
                self.table.set_max(n);
            } else {
                let (prefix, index) = if b & 0x40 != 0 { (6, true) } else { (4, false) };
                let i = read_int(block, &mut at, prefix)?;
                let [hn, hv] = &mut self.huff;
                hn.clear();
                hv.clear();
                self.name_copy.clear();
                let name: &[u8] = if i == 0 {
                    read_str(block, &mut at, hn)?
                } else {
                    let (n, _) = match i {
                        1..=61 => STATIC[i - 1],
                        _ => self.table.get(i - 62).ok_or(HpackError::Malformed)?,
                    };
                    self.name_copy.extend_from_slice(n);
                    &self.name_copy
                };
                let value = read_str(block, &mut at, hv)?;
                list += name.len() + value.len() + 32;
                if list > list_bytes_max {
                    return Err(HpackError::ListTooLarge);
                }
                f(name, value);
                fields_seen = true;
                if index {
                    self.table.insert(name, value);
                }
            }
        }
        Ok(())
    }
}

fn read_str<'a>(
    block: &'a [u8],
    at: &mut usize,
    huff: &'a mut Vec<u8>,
) -> Result<&'a [u8], HpackError> {
    let h = block.get(*at).ok_or(HpackError::Malformed)? & 0x80 != 0;
    let len = read_int(block, at, 7)?;
    let raw = block.get(*at..*at + len).ok_or(HpackError::Malformed)?;
    *at += len;
    if !h {
        return Ok(raw);
    }
    huffman_decode(raw, huff)?;
    Ok(huff)
}

// ---- encoder ----------------------------------------------------------------------------------

pub struct Encoder {
    table: Table,
    /// A size update owed at the start of the next block (the peer lowered its table size).
    pending_update: Option<usize>,
}

/// Fields whose values rarely repeat, never indexed (as h2 and nghttp2 do): they would only
/// churn the table.
fn never_index(name: &[u8]) -> bool {
    matches!(
        name,
        b"content-length"
            | b"set-cookie"
            | b"cookie"
            | b"authorization"
            | b"etag"
            | b"location"
            | b"age"
            | b":path"
    )
}

impl Encoder {
    pub fn new(table_bytes: usize) -> Encoder {
        Encoder {
            table: Table::new(table_bytes),
            pending_update: None,
        }
    }

    pub fn set_max(&mut self, n: usize) {
        let n = n.min(4096);
        if n != self.table.size_max {
            self.table.set_max(n);
            self.pending_update = Some(n);
        }
    }

    pub fn encode(&mut self, fields: &[(&[u8], &[u8])], dst: &mut Vec<u8>) {
        if let Some(n) = self.pending_update.take() {
            write_int(dst, 0x20, 5, n);
        }
        for &(name, value) in fields {
            if let Some(i) = STATIC.iter().position(|e| *e == (name, value)) {
                write_int(dst, 0x80, 7, i + 1);
                continue;
            }
            if let Some(i) = self.table.find(name, value) {
                write_int(dst, 0x80, 7, i + 62);
                continue;
            }
            let index = !never_index(name);
            let (first, prefix) = if index { (0x40, 6) } else { (0x00, 4) };
            match STATIC.iter().position(|e| e.0 == name) {
                Some(i) => write_int(dst, first, prefix, i + 1),
                None => {
                    write_int(dst, first, prefix, 0);
                    write_str(dst, name);
                }
            }
            write_str(dst, value);
            if index {
                self.table.insert(name, value);
            }
        }
    }
}

fn write_str(dst: &mut Vec<u8>, s: &[u8]) {
    let h = huffman_len(s);
    if h < s.len() {
        write_int(dst, 0x80, 7, h);
        huffman_encode(s, dst);
    } else {
        write_int(dst, 0x00, 7, s.len());
        dst.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_round_trips_every_byte() {
        let src: Vec<u8> = (0..=255u8)
            .chain(b"www.example.com".iter().copied())
            .collect();
        let mut enc = Vec::new();
        huffman_encode(&src, &mut enc);
        let mut dec = Vec::new();
        huffman_decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, src);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        // RFC 7541 C.4.1 and C.4.2.
        let mut d = Decoder::new(4096);
        let mut got = Vec::new();
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        d.decode(&b1, 1 << 16, &mut |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(
            got[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        got.clear();
        let b2 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        d.decode(&b2, 1 << 16, &mut |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(
            got[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        assert_eq!(got[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
    }

    #[test]
    fn encoder_output_decodes() {
        let mut e = Encoder::new(4096);
        let mut d = Decoder::new(4096);
        let fields: [(&[u8], &[u8]); 3] = [
            (b":status", b"200"),
            (b"server", b"ringway"),
            (b"x-a", b"b"),
        ];
        for _ in 0..3 {
            let mut blk = Vec::new();
            e.encode(&fields, &mut blk);
            let mut got = Vec::new();
            d.decode(&blk, 1 << 16, &mut |n, v| {
                got.push((n.to_vec(), v.to_vec()))
            })
            .unwrap();
            assert_eq!(got.len(), 3);
            assert_eq!(got[1], (b"server".to_vec(), b"ringway".to_vec()));
        }
    }

    #[test]
    fn bomb_stops_at_the_bound() {
        // One 3000-byte entry inserted, then referenced 1000 times at 1 byte each: 3 MB decoded
        // from 4 KB on the wire unless the bound stops it.
        let mut b = vec![0x40, 0x01, b'x'];
        write_int(&mut b, 0x00, 7, 3000);
        b.extend(std::iter::repeat_n(b'y', 3000));
        b.extend(std::iter::repeat_n(0xbe, 1000));
        let mut d = Decoder::new(4096);
        let r = d.decode(&b, 64 * 1024, &mut |_, _| {});
        assert_eq!(r, Err(HpackError::ListTooLarge));
    }
}
