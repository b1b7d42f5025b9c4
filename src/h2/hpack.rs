//! Owns: HPACK (RFC 7541), the field compression of HTTP/2: the static table, a bounded dynamic
//! table each way, prefix integers, Huffman strings, the [`Decoder`] (fields handed to a callback
//! as borrowed slices, the decoded list size and field count checked as it goes, so an HPACK bomb
//! stops as soon as it passes the bound) and the [`Encoder`].
//! Must not: know frames or streams (`conn.rs` assembles blocks and decides what a field means),
//! allocate per field, or panic on any input.
//!
//! Memory: a table of bound `S` bytes keeps its entries in one buffer of `2 × S` bytes (so that
//! compaction happens at most once per `S` bytes inserted) and an index of at most `S / 32 + 1`
//! entries of 12 bytes, both allocated when the table is made. The decoder also keeps three
//! scratch buffers (Huffman name, Huffman value, a copied name) that grow to the longest string
//! seen, never past the header list bound given to [`Decoder::decode`].

use std::collections::VecDeque;

use super::huffman_table::{CODE_LENGTHS, CODES};

/// RFC 7541 Appendix A.
pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
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

/// Longest name in [`STATIC_TABLE`] (`access-control-allow-origin`) and most names of one length.
const STATIC_NAME_BYTES_MAX: usize = 27;
const STATIC_SAME_LEN_MAX: usize = 14;

/// [`STATIC_TABLE`]'s indices (0-based, ascending) by name length, and how many there are: the
/// encoder compares a field's name only with the static names of its length.
static STATIC_BY_LEN: [([u8; STATIC_SAME_LEN_MAX], u8); STATIC_NAME_BYTES_MAX + 1] = {
    let mut t = [([0u8; STATIC_SAME_LEN_MAX], 0u8); STATIC_NAME_BYTES_MAX + 1];
    let mut i = 0;
    while i < STATIC_TABLE.len() {
        let len = STATIC_TABLE[i].0.len();
        let n = t[len].1 as usize;
        t[len].0[n] = i as u8;
        t[len].1 += 1;
        i += 1;
    }
    t
};

/// Integers (indexes, string lengths, table sizes) past this are refused. RFC 7541 §5.1 leaves
/// the bound to the decoder; no string or table size we accept comes near it.
pub const INT_MAX: usize = 1 << 24;

/// RFC 7541 §4.1: every entry costs its name, its value and 32 bytes.
pub const ENTRY_OVERHEAD_BYTES: usize = 32;

/// Why a field block was refused. Every variant ends the connection (RFC 9113 §4.3: the
/// decoder's state is shared by every later block); [`HpackError::is_limit`] tells our own
/// bounds (ENHANCE_YOUR_CALM) from malformed blocks (COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("field block ends inside a representation")]
    Truncated,
    #[error("integer past 2^24 (RFC 7541 §5.1)")]
    IntegerOverflow,
    #[error("index 0 (RFC 7541 §6.1)")]
    IndexZero,
    #[error("index {0} past the static and dynamic tables (RFC 7541 §2.3.3)")]
    IndexOutOfRange(usize),
    #[error("EOS symbol inside a Huffman string (RFC 7541 §5.2)")]
    HuffmanEos,
    #[error("Huffman padding longer than 7 bits or not all ones (RFC 7541 §5.2)")]
    HuffmanPadding,
    #[error("dynamic table size update after a field (RFC 7541 §4.2)")]
    SizeUpdateNotFirst,
    #[error(
        "dynamic table size update to {asked} past SETTINGS_HEADER_TABLE_SIZE {max} (RFC 7541 §6.3)"
    )]
    SizeUpdateTooLarge { asked: usize, max: usize },
    #[error("decoded field list passed {max} bytes (SETTINGS_MAX_HEADER_LIST_SIZE)")]
    ListTooLarge { max: usize },
    #[error("more than {max} fields in one block")]
    TooManyFields { max: usize },
}

impl HpackError {
    /// The block passed one of our bounds (an HPACK bomb, or simply too much) rather than being
    /// malformed.
    pub fn is_limit(self) -> bool {
        match self {
            HpackError::ListTooLarge { .. } | HpackError::TooManyFields { .. } => true,
            HpackError::Truncated
            | HpackError::IntegerOverflow
            | HpackError::IndexZero
            | HpackError::IndexOutOfRange(_)
            | HpackError::HuffmanEos
            | HpackError::HuffmanPadding
            | HpackError::SizeUpdateNotFirst
            | HpackError::SizeUpdateTooLarge { .. } => false,
        }
    }
}

// ---- Huffman (RFC 7541 §5.2, Appendix B) -------------------------------------------------------

/// One DFA transition on a nibble: the next state and, if `EMIT`, the byte decoded on the way.
#[derive(Clone, Copy)]
struct Step {
    next: u8,
    sym: u8,
    flags: u8,
}

const EMIT: u8 = 1;
/// The nibble completes the EOS code: an error inside a string (§5.2).
const FAIL: u8 = 2;

/// A tree child that is not set yet.
const NONE: u16 = u16::MAX;
/// A tree child that is a leaf: `LEAF | symbol` (256 = EOS).
const LEAF: u16 = 0x1000;

/// A nibble-at-a-time decoder over the code tree: 256 states (the internal nodes of a complete
/// code of 257 symbols) × 16 nibbles. No code is shorter than 5 bits, so one nibble emits at
/// most one byte.
struct Dfa {
    steps: [[Step; 16]; 256],
    /// The state may end a string: it lies at most 7 one-bits down from the root, so the bits
    /// after the last symbol are a prefix of EOS shorter than a byte (§5.2).
    accept: [bool; 256],
}

/// Built by the compiler from the RFC's code table: nothing to initialise at run time.
static DFA: Dfa = build_dfa();

const fn build_dfa() -> Dfa {
    let mut kids = [[NONE; 2]; 256];
    let mut nodes = 1usize;
    let mut sym = 0usize;
    while sym < 257 {
        let (code, len) = if sym == 256 {
            (0x3fff_ffffu32, 30u32)
        } else {
            (CODES[sym], CODE_LENGTHS[sym] as u32)
        };
        let mut n = 0usize;
        let mut i = len;
        while i > 0 {
            i -= 1;
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                assert!(kids[n][bit] == NONE, "the code is prefix-free");
                kids[n][bit] = LEAF | sym as u16;
            } else {
                if kids[n][bit] == NONE {
                    assert!(nodes < 256, "a code of 257 symbols has 256 internal nodes");
                    kids[n][bit] = nodes as u16;
                    nodes += 1;
                }
                assert!(kids[n][bit] & LEAF == 0, "the code is prefix-free");
                n = kids[n][bit] as usize;
            }
        }
        sym += 1;
    }
    assert!(nodes == 256, "a complete code of 257 symbols");

    let mut accept = [false; 256];
    let mut n = 0usize;
    let mut depth = 0;
    while depth <= 7 {
        accept[n] = true;
        let k = kids[n][1];
        if k & LEAF != 0 {
            break;
        }
        n = k as usize;
        depth += 1;
    }

    let mut steps = [[Step {
        next: 0,
        sym: 0,
        flags: 0,
    }; 16]; 256];
    let mut s = 0usize;
    while s < 256 {
        let mut nib = 0usize;
        while nib < 16 {
            let mut n = s;
            let mut step = Step {
                next: 0,
                sym: 0,
                flags: 0,
            };
            let mut i = 4;
            while i > 0 {
                i -= 1;
                let k = kids[n][(nib >> i) & 1];
                if k & LEAF != 0 {
                    let sym = k & !LEAF;
                    if sym == 256 {
                        step.flags |= FAIL;
                        break;
                    }
                    step.flags |= EMIT;
                    step.sym = sym as u8;
                    n = 0;
                } else {
                    n = k as usize;
                }
            }
            step.next = n as u8;
            steps[s][nib] = step;
            nib += 1;
        }
        s += 1;
    }
    Dfa { steps, accept }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HuffmanError {
    Eos,
    Padding,
    /// The decoded string passed the room the caller gave.
    TooLong,
}

/// Appends the decoded `src` to `dst`, refusing once `dst` would pass `dst_bytes_max`.
fn huffman_decode(src: &[u8], dst: &mut Vec<u8>, dst_bytes_max: usize) -> Result<(), HuffmanError> {
    let mut state = 0usize;
    for &b in src {
        for nib in [b >> 4, b & 0xf] {
            let step = DFA.steps[state][usize::from(nib)];
            if step.flags & FAIL != 0 {
                return Err(HuffmanError::Eos);
            }
            if step.flags & EMIT != 0 {
                if dst.len() >= dst_bytes_max {
                    return Err(HuffmanError::TooLong);
                }
                dst.push(step.sym);
            }
            state = usize::from(step.next);
        }
    }
    if DFA.accept[state] {
        Ok(())
    } else {
        Err(HuffmanError::Padding)
    }
}

/// Bytes `src` takes Huffman-coded.
fn huffman_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&b| usize::from(CODE_LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

fn huffman_encode(src: &[u8], dst: &mut Vec<u8>) {
    // At most 7 bits wait in `acc` between bytes, plus a code of at most 30: fits in 64.
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in src {
        let len = u32::from(CODE_LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        // §5.2: pad with the most significant bits of EOS (all ones).
        dst.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
}

// ---- integers and strings (§5.1, §5.2) ----------------------------------------------------------

fn read_int(block: &[u8], at: &mut usize, prefix_bits: u8) -> Result<usize, HpackError> {
    let mask = (1usize << prefix_bits) - 1;
    let first = *block.get(*at).ok_or(HpackError::Truncated)?;
    *at += 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at).ok_or(HpackError::Truncated)?;
        *at += 1;
        // Past 2^24 within four continuation bytes; a fifth would only add zeros or overflow.
        if shift > 21 {
            return Err(HpackError::IntegerOverflow);
        }
        value += usize::from(b & 0x7f) << shift;
        if value > INT_MAX {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn write_int(dst: &mut Vec<u8>, first: u8, prefix_bits: u8, value: usize) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        dst.push(first | value as u8);
        return;
    }
    dst.push(first | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        dst.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    dst.push(rest as u8);
}

/// One string literal: raw bytes of the block, or decoded into `scratch` (at most
/// `decoded_bytes_max` bytes, else `ListTooLarge { max: list_bytes_max }`).
fn read_str<'a>(
    block: &'a [u8],
    at: &mut usize,
    scratch: &'a mut Vec<u8>,
    decoded_bytes_max: usize,
    list_bytes_max: usize,
) -> Result<&'a [u8], HpackError> {
    let huffman = *block.get(*at).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = read_int(block, at, 7)?;
    let end = at.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = block.get(*at..end).ok_or(HpackError::Truncated)?;
    *at = end;
    let too_long = HpackError::ListTooLarge {
        max: list_bytes_max,
    };
    if !huffman {
        if raw.len() > decoded_bytes_max {
            return Err(too_long);
        }
        return Ok(raw);
    }
    scratch.clear();
    match huffman_decode(raw, scratch, decoded_bytes_max) {
        Ok(()) => Ok(scratch),
        Err(HuffmanError::Eos) => Err(HpackError::HuffmanEos),
        Err(HuffmanError::Padding) => Err(HpackError::HuffmanPadding),
        Err(HuffmanError::TooLong) => Err(too_long),
    }
}

// ---- the dynamic table (§2.3.2, §4) -------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u32,
    name_len: u32,
    value_len: u32,
}

/// Entries newest first, their bytes in one buffer of twice the bound, compacted when its end is
/// reached.
#[derive(Debug)]
struct Table {
    bytes: Vec<u8>,
    entries: VecDeque<Entry>,
    /// §4.1 size of the entries held.
    size: usize,
    /// The current bound (≤ the one the table was made with).
    size_max: usize,
}

impl Table {
    fn new(size_max: usize) -> Table {
        Table {
            bytes: Vec::with_capacity(2 * size_max),
            entries: VecDeque::with_capacity(size_max / ENTRY_OVERHEAD_BYTES + 1),
            size: 0,
            size_max,
        }
    }

    /// Entry `i` (0 = newest).
    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(i)?;
        let o = e.offset as usize;
        let n = o + e.name_len as usize;
        let v = n + e.value_len as usize;
        Some((self.bytes.get(o..n)?, self.bytes.get(n..v)?))
    }

    fn evict_to_fit(&mut self, room: usize) {
        while self.size + room > self.size_max {
            let Some(e) = self.entries.pop_back() else {
                break;
            };
            self.size -= (e.name_len + e.value_len) as usize + ENTRY_OVERHEAD_BYTES;
        }
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }

    fn set_size_max(&mut self, size_max: usize) {
        self.size_max = size_max;
        self.evict_to_fit(0);
    }

    /// §4.4: an entry larger than the whole table empties it and is not added.
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let need = name.len() + value.len();
        if need + ENTRY_OVERHEAD_BYTES > self.size_max {
            self.entries.clear();
            self.bytes.clear();
            self.size = 0;
            return;
        }
        self.evict_to_fit(need + ENTRY_OVERHEAD_BYTES);
        if self.bytes.len() + need > self.bytes.capacity() {
            // Live bytes plus the new entry stay under `size_max`, half the capacity.
            let start = self
                .entries
                .back()
                .map_or(self.bytes.len(), |e| e.offset as usize);
            self.bytes.copy_within(start.., 0);
            self.bytes.truncate(self.bytes.len() - start);
            for e in self.entries.iter_mut() {
                e.offset -= start as u32;
            }
        }
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            offset,
            name_len: name.len() as u32,
            value_len: value.len() as u32,
        });
        self.size += need + ENTRY_OVERHEAD_BYTES;
    }

    fn find(&self, name: &[u8], value: &[u8]) -> Option<usize> {
        (0..self.entries.len()).find(|&i| self.get(i) == Some((name, value)))
    }
}

// ---- decoder (§6) -------------------------------------------------------------------------------

/// Bounds on one decoded block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// RFC 9113 §6.5.2 size (name + value + 32 per field): SETTINGS_MAX_HEADER_LIST_SIZE.
    pub list_bytes_max: usize,
    pub fields_max: usize,
}

/// The decoder of one connection's request blocks.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    /// SETTINGS_HEADER_TABLE_SIZE we announced: the most a size update may ask (§4.2, §6.3).
    settings_table_bytes: usize,
    huffman_name: Vec<u8>,
    huffman_value: Vec<u8>,
    name_copy: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Incremental,
    Without,
    Never,
}

impl Decoder {
    /// `settings_table_bytes`: the SETTINGS_HEADER_TABLE_SIZE we announce (4096 unless sent).
    pub fn new(settings_table_bytes: usize) -> Decoder {
        Decoder {
            table: Table::new(settings_table_bytes),
            settings_table_bytes,
            huffman_name: Vec::new(),
            huffman_value: Vec::new(),
            name_copy: Vec::new(),
        }
    }

    /// The §4.1 size of the dynamic table now.
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// Entry `i` of the dynamic table (0 = newest).
    pub fn table_entry(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.table.get(i)
    }

    /// Decodes one complete block: `f` sees every field in order. Stops at the first error,
    /// and as soon as the decoded list passes `limits` (an HPACK bomb costs at most the bound).
    /// After an error the decoder's table is no longer the peer's: end the connection.
    pub fn decode(
        &mut self,
        block: &[u8],
        limits: DecodeLimits,
        f: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut at = 0;
        let mut list_bytes = 0usize;
        let mut fields = 0usize;
        let too_large = HpackError::ListTooLarge {
            max: limits.list_bytes_max,
        };
        while let Some(&b) = block.get(at) {
            if b & 0xe0 == 0x20 {
                // §4.2: size updates only at the start of a block (several may come in a row).
                if fields > 0 {
                    return Err(HpackError::SizeUpdateNotFirst);
                }
                let asked = read_int(block, &mut at, 5)?;
                if asked > self.settings_table_bytes {
                    return Err(HpackError::SizeUpdateTooLarge {
                        asked,
                        max: self.settings_table_bytes,
                    });
                }
                self.table.set_size_max(asked);
                continue;
            }
            fields += 1;
            if fields > limits.fields_max {
                return Err(HpackError::TooManyFields {
                    max: limits.fields_max,
                });
            }
            // Room left for this field's name and value.
            let room = limits
                .list_bytes_max
                .checked_sub(list_bytes + ENTRY_OVERHEAD_BYTES)
                .ok_or(too_large)?;
            if b & 0x80 != 0 {
                // §6.1 indexed field.
                let i = read_int(block, &mut at, 7)?;
                let (name, value) = match i {
                    0 => return Err(HpackError::IndexZero),
                    1..=61 => STATIC_TABLE[i - 1],
                    _ => self
                        .table
                        .get(i - 62)
                        .ok_or(HpackError::IndexOutOfRange(i))?,
                };
                if name.len() + value.len() > room {
                    return Err(too_large);
                }
                list_bytes += name.len() + value.len() + ENTRY_OVERHEAD_BYTES;
                f(name, value);
                continue;
            }
            // §6.2 literals: with incremental indexing (01), without (0000), never (0001).
            let (prefix_bits, indexing) = if b & 0x40 != 0 {
                (6, Indexing::Incremental)
            } else if b & 0x10 != 0 {
                (4, Indexing::Never)
            } else {
                (4, Indexing::Without)
            };
            let i = read_int(block, &mut at, prefix_bits)?;
            // A name from the dynamic table is copied: inserting may evict it.
            let name: &[u8] = match i {
                0 => read_str(
                    block,
                    &mut at,
                    &mut self.huffman_name,
                    room,
                    limits.list_bytes_max,
                )?,
                1..=61 => STATIC_TABLE[i - 1].0,
                _ => {
                    let (n, _) = self
                        .table
                        .get(i - 62)
                        .ok_or(HpackError::IndexOutOfRange(i))?;
                    self.name_copy.clear();
                    self.name_copy.extend_from_slice(n);
                    &self.name_copy
                }
            };
            if name.len() > room {
                return Err(too_large);
            }
            let value = read_str(
                block,
                &mut at,
                &mut self.huffman_value,
                room - name.len(),
                limits.list_bytes_max,
            )?;
            list_bytes += name.len() + value.len() + ENTRY_OVERHEAD_BYTES;
            f(name, value);
            if indexing == Indexing::Incremental {
                self.table.insert(name, value);
            }
        }
        Ok(())
    }
}

// ---- encoder (§6) -------------------------------------------------------------------------------

/// When the encoder Huffman-codes a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanUse {
    Never,
    Always,
    /// When that is shorter (what we send).
    WhenShorter,
}

/// Which fields the encoder adds to its dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUse {
    /// Every literal (RFC 7541 Appendix C does this).
    All,
    /// Not the fields whose values rarely repeat (they would only churn the table), and never
    /// the credentials (§7.1.3: sent as never-indexed). What we send.
    Repeating,
}

/// Fields sent without indexing under [`IndexUse::Repeating`].
fn rarely_repeats(name: &[u8]) -> bool {
    matches!(
        name,
        b":path" | b"content-length" | b"etag" | b"location" | b"age" | b"last-modified"
    )
}

/// §7.1.3: values an intermediary must not index either.
fn sensitive(name: &[u8]) -> bool {
    matches!(
        name,
        b"authorization" | b"proxy-authorization" | b"set-cookie" | b"cookie"
    )
}

/// Our table towards the peer is never larger than this, whatever its SETTINGS say.
pub const ENCODER_TABLE_BYTES_MAX: usize = 4096;

/// The encoder of one connection's response blocks.
#[derive(Debug)]
pub struct Encoder {
    table: Table,
    huffman: HuffmanUse,
    index: IndexUse,
    /// §4.2: size updates owed at the start of the next block: the lowest size reached since the
    /// last block (when below the final one), then the final one.
    update_low: Option<usize>,
    update_final: Option<usize>,
}

impl Encoder {
    /// `table_bytes`: the peer's SETTINGS_HEADER_TABLE_SIZE (4096 until it says otherwise),
    /// capped at [`ENCODER_TABLE_BYTES_MAX`].
    pub fn new(table_bytes: usize, huffman: HuffmanUse, index: IndexUse) -> Encoder {
        let size = table_bytes.min(ENCODER_TABLE_BYTES_MAX);
        let mut table = Table::new(ENCODER_TABLE_BYTES_MAX);
        table.set_size_max(size);
        Encoder {
            table,
            huffman,
            index,
            update_low: None,
            update_final: None,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed: our table follows (capped), and the next
    /// block starts with the size update(s).
    pub fn set_table_bytes(&mut self, table_bytes: usize) {
        let size = table_bytes.min(ENCODER_TABLE_BYTES_MAX);
        if size == self.table.size_max && self.update_final.is_none() {
            return;
        }
        let low = self.update_low.unwrap_or(self.table.size_max).min(size);
        self.table.set_size_max(size);
        self.update_low = Some(low);
        self.update_final = Some(size);
    }

    /// The §4.1 size of the dynamic table now.
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// Starts a block: writes the size updates owed.
    pub fn start_block(&mut self, dst: &mut Vec<u8>) {
        if let Some(last) = self.update_final.take() {
            if let Some(low) = self.update_low.take()
                && low < last
            {
                write_int(dst, 0x20, 5, low);
            }
            write_int(dst, 0x20, 5, last);
        }
        self.update_low = None;
    }

    /// Appends one field (`name` lowercase) to the block being written.
    pub fn field(&mut self, name: &[u8], value: &[u8], dst: &mut Vec<u8>) {
        let mut name_index = None;
        let same_len = STATIC_BY_LEN.get(name.len()).map_or(&[][..], |(ids, n)| {
            ids.get(..usize::from(*n)).unwrap_or_default()
        });
        for &i in same_len {
            let i = usize::from(i);
            let Some(&(n, v)) = STATIC_TABLE.get(i) else {
                continue;
            };
            if n == name {
                if v == value {
                    write_int(dst, 0x80, 7, i + 1);
                    return;
                }
                name_index.get_or_insert(i + 1);
            }
        }
        let is_sensitive = sensitive(name);
        if !is_sensitive && let Some(i) = self.table.find(name, value) {
            write_int(dst, 0x80, 7, i + 62);
            return;
        }
        let indexing = match self.index {
            IndexUse::All => Indexing::Incremental,
            IndexUse::Repeating if is_sensitive => Indexing::Never,
            IndexUse::Repeating if rarely_repeats(name) => Indexing::Without,
            IndexUse::Repeating => Indexing::Incremental,
        };
        let (first, prefix_bits) = match indexing {
            Indexing::Incremental => (0x40, 6),
            Indexing::Without => (0x00, 4),
            Indexing::Never => (0x10, 4),
        };
        match name_index {
            Some(i) => write_int(dst, first, prefix_bits, i),
            None => {
                write_int(dst, first, prefix_bits, 0);
                self.string(name, dst);
            }
        }
        self.string(value, dst);
        if indexing == Indexing::Incremental {
            self.table.insert(name, value);
        }
    }

    /// One whole block: the size updates owed, then `fields` (names lowercase).
    pub fn encode<'f>(
        &mut self,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        dst: &mut Vec<u8>,
    ) {
        self.start_block(dst);
        for (name, value) in fields {
            self.field(name, value, dst);
        }
    }

    fn string(&self, s: &[u8], dst: &mut Vec<u8>) {
        let huffman = match self.huffman {
            HuffmanUse::Never => false,
            HuffmanUse::Always => true,
            HuffmanUse::WhenShorter => huffman_len(s) < s.len(),
        };
        if huffman {
            write_int(dst, 0x80, 7, huffman_len(s));
            huffman_encode(s, dst);
        } else {
            write_int(dst, 0x00, 7, s.len());
            dst.extend_from_slice(s);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_static_entry_is_found_by_the_encoder() {
        for (i, &(name, value)) in STATIC_TABLE.iter().enumerate() {
            let mut enc = Encoder::new(4096, HuffmanUse::Never, IndexUse::Repeating);
            let mut out = Vec::new();
            enc.field(name, value, &mut out);
            let mut want = Vec::new();
            write_int(&mut want, 0x80, 7, i + 1);
            assert_eq!(out, want, "entry {}", i + 1);
            // Another value: a literal whose name is the static index, not the name's bytes.
            let mut out = Vec::new();
            enc.field(name, b"zz-not-in-table", &mut out);
            assert!(
                !out.windows(name.len()).any(|w| w == name),
                "entry {}: {out:?}",
                i + 1
            );
        }
    }

    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    const LIMITS: DecodeLimits = DecodeLimits {
        list_bytes_max: 64 * 1024,
        fields_max: 128,
    };

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
        let mut got = Vec::new();
        d.decode(block, LIMITS, &mut |n, v| {
            got.push((n.to_vec(), v.to_vec()))
        })?;
        Ok(got)
    }

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn table(d: &Decoder) -> Vec<(String, String)> {
        (0..)
            .map_while(|i| d.table_entry(i))
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn encode(e: &mut Encoder, list: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        e.encode(
            list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut out,
        );
        out
    }

    #[test]
    fn c2_1_literal_with_indexing() {
        let mut d = Decoder::new(4096);
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            fields(&[("custom-key", "custom-header")])
        );
        assert_eq!(d.table_size(), 55);
        let mut e = Encoder::new(4096, HuffmanUse::Never, IndexUse::All);
        assert_eq!(encode(&mut e, &[("custom-key", "custom-header")]), block);
    }

    #[test]
    fn c2_2_literal_without_indexing() {
        let mut d = Decoder::new(4096);
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            fields(&[(":path", "/sample/path")])
        );
        assert_eq!(d.table_size(), 0);
        let mut e = Encoder::new(4096, HuffmanUse::Never, IndexUse::Repeating);
        assert_eq!(encode(&mut e, &[(":path", "/sample/path")]), block);
    }

    #[test]
    fn c2_3_literal_never_indexed() {
        let mut d = Decoder::new(4096);
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            fields(&[("password", "secret")])
        );
        assert_eq!(d.table_size(), 0);
    }

    #[test]
    fn c2_4_indexed_field() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0x82]).unwrap(),
            fields(&[(":method", "GET")])
        );
        let mut e = Encoder::new(4096, HuffmanUse::Never, IndexUse::All);
        assert_eq!(encode(&mut e, &[(":method", "GET")]), [0x82]);
    }

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    /// Decodes and encodes a series of blocks on one connection, byte for byte, checking the
    /// table size after each.
    /// One step: the block in hex, the fields it carries, the table size after it.
    type Step<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

    fn series(table_bytes: usize, huffman: HuffmanUse, steps: &[Step<'_>]) {
        let mut d = Decoder::new(table_bytes);
        let mut e = Encoder::new(table_bytes, huffman, IndexUse::All);
        for (i, &(block, list, size)) in steps.iter().enumerate() {
            let block = hex(block);
            assert_eq!(decode(&mut d, &block).unwrap(), fields(list), "step {i}");
            assert_eq!(d.table_size(), size, "decoder table after step {i}");
            assert_eq!(encode(&mut e, list), block, "encoded step {i}");
            assert_eq!(e.table_size(), size, "encoder table after step {i}");
        }
    }

    #[test]
    fn c3_requests_without_huffman() {
        series(
            4096,
            HuffmanUse::Never,
            &[
                (
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    REQ1,
                    57,
                ),
                ("8286 84be 5808 6e6f 2d63 6163 6865", REQ2, 110),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    REQ3,
                    164,
                ),
            ],
        );
    }

    #[test]
    fn c4_requests_with_huffman() {
        series(
            4096,
            HuffmanUse::Always,
            &[
                ("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQ1, 57),
                ("8286 84be 5886 a8eb 1064 9cbf", REQ2, 110),
                (
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    REQ3,
                    164,
                ),
            ],
        );
    }

    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    #[test]
    fn c5_responses_without_huffman_evict() {
        series(
            256,
            HuffmanUse::Never,
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
                     3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
                     7861 6d70 6c65 2e63 6f6d",
                    RESP1,
                    222,
                ),
                ("4803 3330 37c1 c0bf", RESP2, 222),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220
                     474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157
                     454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076
                     6572 7369 6f6e 3d31",
                    RESP3,
                    215,
                ),
            ],
        );
    }

    #[test]
    fn c6_responses_with_huffman_evict() {
        series(
            256,
            HuffmanUse::Always,
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0
                     82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    RESP1,
                    222,
                ),
                ("4883 640e ffc1 c0bf", RESP2, 222),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b
                     d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27
                     0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    RESP3,
                    215,
                ),
            ],
        );
    }

    #[test]
    fn c5_table_holds_the_newest_entries_after_eviction() {
        let mut d = Decoder::new(256);
        decode(&mut d, &hex("4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
        decode(&mut d, &hex("4803 3330 37c1 c0bf")).unwrap();
        assert_eq!(
            table(&d),
            [
                (":status", "307"),
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let src: Vec<u8> = (0..=255u8)
            .chain(b"www.example.com".iter().copied())
            .collect();
        let mut enc = Vec::new();
        huffman_encode(&src, &mut enc);
        assert_eq!(enc.len(), huffman_len(&src));
        let mut dec = Vec::new();
        huffman_decode(&enc, &mut dec, usize::MAX).unwrap();
        assert_eq!(dec, src);
        for b in 0..=255u8 {
            let mut enc = Vec::new();
            huffman_encode(&[b], &mut enc);
            let mut dec = Vec::new();
            huffman_decode(&enc, &mut dec, 1).unwrap();
            assert_eq!(dec, [b]);
        }
    }

    #[test]
    fn huffman_eos_inside_a_string_is_refused() {
        // EOS is 30 one-bits; four 0xff bytes hold it whole.
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0x00, 0x01, b'a', 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::HuffmanEos)
        );
    }

    #[test]
    fn huffman_padding_of_a_whole_byte_is_refused() {
        // 'a' is 00011 (5 bits): 0x1f pads it with 3 ones; then a whole 0xff byte of padding.
        let mut d = Decoder::new(4096);
        assert!(decode(&mut d, &[0x00, 0x01, b'a', 0x81, 0x1f]).is_ok());
        assert_eq!(
            decode(&mut d, &[0x00, 0x01, b'a', 0x82, 0x1f, 0xff]),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn huffman_padding_not_all_ones_is_refused() {
        // 'a' (00011) then 000 instead of 111.
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0x00, 0x01, b'a', 0x81, 0x18]),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn size_update_after_a_field_is_refused() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0x82, 0x20]),
            Err(HpackError::SizeUpdateNotFirst)
        );
    }

    #[test]
    fn size_updates_at_the_start_apply() {
        let mut d = Decoder::new(4096);
        decode(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        )
        .unwrap();
        assert_eq!(d.table_size(), 55);
        // Two updates in a row (0, then 4096), then a field: the table was emptied.
        let mut block = vec![0x20];
        write_int(&mut block, 0x20, 5, 4096);
        block.push(0x82);
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            fields(&[(":method", "GET")])
        );
        assert_eq!(d.table_size(), 0);
        assert_eq!(
            decode(&mut d, &[0xbe]),
            Err(HpackError::IndexOutOfRange(62))
        );
    }

    #[test]
    fn size_update_past_our_setting_is_refused() {
        let mut d = Decoder::new(4096);
        let mut block = Vec::new();
        write_int(&mut block, 0x20, 5, 4097);
        assert_eq!(
            decode(&mut d, &block),
            Err(HpackError::SizeUpdateTooLarge {
                asked: 4097,
                max: 4096
            })
        );
    }

    #[test]
    fn index_zero_is_refused() {
        let mut d = Decoder::new(4096);
        assert_eq!(decode(&mut d, &[0x80]), Err(HpackError::IndexZero));
    }

    #[test]
    fn index_past_the_tables_is_refused() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0xbe]),
            Err(HpackError::IndexOutOfRange(62))
        );
        // A literal whose name index is past the tables.
        assert_eq!(
            decode(&mut d, &[0x7f, 0x00, 0x01, b'x']),
            Err(HpackError::IndexOutOfRange(63))
        );
    }

    #[test]
    fn integer_overflow_is_refused() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(HpackError::IntegerOverflow)
        );
        // Zero-valued continuation bytes cannot run on forever either.
        let mut long = vec![0xff];
        long.extend(std::iter::repeat_n(0x80, 100));
        assert_eq!(decode(&mut d, &long), Err(HpackError::IntegerOverflow));
    }

    #[test]
    fn integers_round_trip_at_every_prefix() {
        for prefix in 1..=8u8 {
            for v in [0, 1, 30, 31, 126, 127, 128, 255, 1337, 65_535, INT_MAX] {
                let mut b = Vec::new();
                write_int(&mut b, 0, prefix, v);
                let mut at = 0;
                assert_eq!(
                    read_int(&b, &mut at, prefix),
                    Ok(v),
                    "prefix {prefix} value {v}"
                );
                assert_eq!(at, b.len());
            }
        }
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut b = Vec::new();
        write_int(&mut b, 0, 5, 1337);
        assert_eq!(b, [31, 154, 10]);
    }

    #[test]
    fn truncated_blocks_are_refused_at_every_cut() {
        let block = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        // Cuts that fall between representations decode fine; every other cut is Truncated.
        for cut in 1..block.len() {
            let mut d = Decoder::new(4096);
            decode(
                &mut d,
                &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            )
            .unwrap();
            decode(&mut d, &hex("8286 84be 5808 6e6f 2d63 6163 6865")).unwrap();
            let r = decode(&mut d, &block[..cut]);
            if cut <= 4 {
                assert!(r.is_ok(), "cut {cut}");
            } else {
                assert_eq!(r, Err(HpackError::Truncated), "cut {cut}");
            }
        }
    }

    #[test]
    fn bomb_stops_at_the_bound() {
        // One 3000-byte entry, then referenced 1000 times at 1 byte each: 3 MB decoded from
        // 4 KB unless the bound stops it.
        let mut b = vec![0x40, 0x01, b'x'];
        write_int(&mut b, 0x00, 7, 3000);
        b.extend(std::iter::repeat_n(b'y', 3000));
        b.extend(std::iter::repeat_n(0xbe, 1000));
        let mut d = Decoder::new(4096);
        let mut seen = 0usize;
        let r = d.decode(&b, LIMITS, &mut |n, v| seen += n.len() + v.len() + 32);
        assert_eq!(r, Err(HpackError::ListTooLarge { max: 64 * 1024 }));
        assert!(seen <= 64 * 1024, "stopped at the bound, not after: {seen}");
    }

    #[test]
    fn one_literal_past_the_bound_is_refused_before_it_is_decoded() {
        let limits = DecodeLimits {
            list_bytes_max: 100,
            fields_max: 128,
        };
        let mut b = vec![0x00, 0x01, b'x'];
        write_int(&mut b, 0x80, 7, 200);
        b.extend(std::iter::repeat_n(0x00, 200)); // '0' is 5 bits: 320 bytes decoded
        let mut d = Decoder::new(4096);
        assert_eq!(
            d.decode(&b, limits, &mut |_, _| {}),
            Err(HpackError::ListTooLarge { max: 100 })
        );
    }

    #[test]
    fn too_many_fields_are_refused() {
        let limits = DecodeLimits {
            list_bytes_max: 1 << 20,
            fields_max: 3,
        };
        let mut d = Decoder::new(4096);
        assert!(d.decode(&[0x82; 3], limits, &mut |_, _| {}).is_ok());
        assert_eq!(
            d.decode(&[0x82; 4], limits, &mut |_, _| {}),
            Err(HpackError::TooManyFields { max: 3 })
        );
    }

    #[test]
    fn an_entry_larger_than_the_table_empties_it() {
        let mut d = Decoder::new(64);
        decode(&mut d, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
        assert_eq!(d.table_size(), 34);
        let mut b = vec![0x40, 0x01, b'a'];
        write_int(&mut b, 0x00, 7, 40);
        b.extend(std::iter::repeat_n(b'z', 40));
        decode(&mut d, &b).unwrap();
        assert_eq!(d.table_size(), 0);
    }

    #[test]
    fn table_compaction_keeps_entries_intact() {
        let mut d = Decoder::new(128);
        let mut e = Encoder::new(128, HuffmanUse::WhenShorter, IndexUse::All);
        for i in 0..200u32 {
            let name = format!("x-{}", i % 7);
            let value = "v".repeat((i % 23) as usize) + &i.to_string();
            let list = [(name.as_str(), value.as_str()), ("x-2", "same")];
            let block = encode(&mut e, &list);
            assert_eq!(decode(&mut d, &block).unwrap(), fields(&list), "block {i}");
            assert_eq!(d.table_size(), e.table_size());
        }
    }

    #[test]
    fn encoder_signals_a_lowered_then_raised_table_size() {
        let mut e = Encoder::new(4096, HuffmanUse::Never, IndexUse::All);
        let mut d = Decoder::new(4096);
        let first = encode(&mut e, &[("x-a", "b")]);
        decode(&mut d, &first).unwrap();
        e.set_table_bytes(0);
        e.set_table_bytes(2048);
        let block = encode(&mut e, &[("x-a", "b")]);
        // 0 first (the table is emptied), then 2048, then the field as a new literal.
        assert_eq!(&block[..1], &[0x20]);
        let mut expect = vec![0x20];
        write_int(&mut expect, 0x20, 5, 2048);
        assert_eq!(&block[..expect.len()], &expect[..]);
        assert_eq!(decode(&mut d, &block).unwrap(), fields(&[("x-a", "b")]));
        assert_eq!(d.table_size(), e.table_size());
    }

    #[test]
    fn encoder_sends_credentials_never_indexed() {
        let mut e = Encoder::new(4096, HuffmanUse::Never, IndexUse::Repeating);
        let block = encode(&mut e, &[("set-cookie", "a=b")]);
        // 0001 with name index 55 (0x0f + 40), never added to the table.
        assert_eq!(block[0] & 0xf0, 0x10);
        assert_eq!(e.table_size(), 0);
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            fields(&[("set-cookie", "a=b")])
        );
    }

    #[test]
    fn repeated_responses_shrink_to_indexes() {
        let mut e = Encoder::new(4096, HuffmanUse::WhenShorter, IndexUse::Repeating);
        let list = [
            (":status", "200"),
            ("server", "ringway"),
            ("content-type", "text/html"),
            ("content-length", "100"),
        ];
        let first = encode(&mut e, &list);
        let second = encode(&mut e, &list);
        assert!(second.len() < first.len());
        // 200 static, two dynamic indexes, content-length literal without indexing.
        assert_eq!(&second[..3], &[0x88, 0xbf, 0xbe]);
    }
}
