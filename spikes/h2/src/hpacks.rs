//! One interface over the HPACK crates weighed for "own framing + HPACK crate": decode a header
//! block field by field into a callback (so the caller bounds and copies), encode a response's
//! fields into the caller's buffer.

pub trait Hpack {
    fn new(table_bytes: usize) -> Self;
    /// Decodes one complete header block. `Err` = COMPRESSION_ERROR (RFC 9113 §4.3).
    fn decode(&mut self, block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()>;
    fn encode(&mut self, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>);
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: the most our encoder may use.
    fn set_encoder_table_bytes(&mut self, n: usize);
}

/// loona-hpack (Sōzu's choice; fork of `hpack` 0.3): no Huffman on encode, bit-by-bit Huffman
/// decode, `Cow` per field.
pub struct Loona {
    dec: loona_hpack::Decoder<'static>,
    enc: loona_hpack::Encoder<'static>,
}

impl Hpack for Loona {
    fn new(table_bytes: usize) -> Loona {
        let mut dec = loona_hpack::Decoder::new();
        dec.set_max_allowed_table_size(table_bytes);
        Loona {
            dec,
            enc: loona_hpack::Encoder::new(),
        }
    }
    fn decode(&mut self, block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()> {
        self.dec
            .decode_with_cb(block, |n, v| f(&n, &v))
            .map_err(|_| ())
    }
    fn encode(&mut self, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        let _ = self.enc.encode_into(fields.iter().copied(), out);
    }
    fn set_encoder_table_bytes(&mut self, n: usize) {
        self.enc.set_max_table_size(n.min(4096));
    }
}

/// shiguredo_http2's HPACK module (usable alone): table-driven Huffman, `Vec<HeaderField>` per
/// block on decode, header-list size bound built in.
pub struct Shiguredo {
    dec: shiguredo_http2::HpackDecoder,
    enc: shiguredo_http2::HpackEncoder,
}

impl Hpack for Shiguredo {
    fn new(table_bytes: usize) -> Shiguredo {
        let mut dec = shiguredo_http2::HpackDecoder::new(table_bytes);
        dec.set_max_header_list_size(Some(64 * 1024));
        let mut enc = shiguredo_http2::HpackEncoder::new(4096);
        enc.set_huffman(true);
        Shiguredo { dec, enc }
    }
    fn decode(&mut self, block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()> {
        let fields = self.dec.decode(block).map_err(|_| ())?;
        for h in &fields {
            f(h.name(), h.value());
        }
        Ok(())
    }
    fn encode(&mut self, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        for (n, v) in fields {
            self.enc.encode_header(out, n, v, true);
        }
    }
    fn set_encoder_table_bytes(&mut self, n: usize) {
        self.enc.set_max_table_size(n.min(4096));
    }
}

/// httlib-hpack: owned `Vec`s in and out for every field.
pub struct Httlib {
    dec: httlib_hpack::Decoder<'static>,
    enc: httlib_hpack::Encoder<'static>,
    scratch: Vec<u8>,
    out: Vec<(Vec<u8>, Vec<u8>, u8)>,
}

impl Hpack for Httlib {
    fn new(table_bytes: usize) -> Httlib {
        Httlib {
            dec: httlib_hpack::Decoder::with_dynamic_size(table_bytes as u32),
            enc: httlib_hpack::Encoder::with_dynamic_size(4096),
            scratch: Vec::new(),
            out: Vec::new(),
        }
    }
    fn decode(&mut self, block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()> {
        self.scratch.clear();
        self.scratch.extend_from_slice(block);
        self.out.clear();
        self.dec
            .decode(&mut self.scratch, &mut self.out)
            .map_err(|_| ())?;
        for (n, v, _) in &self.out {
            f(n, v);
        }
        Ok(())
    }
    fn encode(&mut self, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        let flags = httlib_hpack::Encoder::HUFFMAN_VALUE
            | httlib_hpack::Encoder::WITH_INDEXING
            | httlib_hpack::Encoder::BEST_FORMAT;
        for (n, v) in fields {
            let _ = self.enc.encode((n.to_vec(), v.to_vec(), flags), out);
        }
    }
    fn set_encoder_table_bytes(&mut self, _n: usize) {}
}

/// No HPACK work at all: decode hands over the request's fields as they were sent, encode
/// appends a stateless block computed once. Own framing + translation alone = the floor.
pub struct Null {
    resp: Vec<u8>,
    req: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Hpack for Null {
    fn new(_: usize) -> Null {
        let mut enc = httlib_hpack::Encoder::with_dynamic_size(0);
        let mut resp = Vec::new();
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", b"200")];
        fields.extend(
            crate::work::RESPONSE_FIELDS
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        for (n, v) in fields {
            // Literal without indexing, static name where there is one: no decoder state.
            let _ = enc.encode(
                (n.to_vec(), v.to_vec(), httlib_hpack::Encoder::BEST_FORMAT),
                &mut resp,
            );
        }
        let mut req = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":scheme".to_vec(), b"https".to_vec()),
            (
                b":authority".to_vec(),
                crate::work::AUTHORITY.as_bytes().to_vec(),
            ),
            (b":path".to_vec(), crate::work::path(7).into_bytes()),
        ];
        req.extend(
            crate::work::REQUEST_FIELDS
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        Null { resp, req }
    }
    fn decode(&mut self, _block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()> {
        for (n, v) in &self.req {
            f(n, v);
        }
        Ok(())
    }
    fn encode(&mut self, _fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.resp);
    }
    fn set_encoder_table_bytes(&mut self, _n: usize) {}
}

/// HPACK written here (`ownhpack.rs`): what ringway would own.
pub struct Own {
    dec: crate::ownhpack::Decoder,
    enc: crate::ownhpack::Encoder,
}

impl Hpack for Own {
    fn new(table_bytes: usize) -> Own {
        Own {
            dec: crate::ownhpack::Decoder::new(table_bytes),
            enc: crate::ownhpack::Encoder::new(4096),
        }
    }
    fn decode(&mut self, block: &[u8], f: &mut impl FnMut(&[u8], &[u8])) -> Result<(), ()> {
        self.dec.decode(block, 64 * 1024, f).map_err(|_| ())
    }
    fn encode(&mut self, fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        self.enc.encode(fields, out);
    }
    fn set_encoder_table_bytes(&mut self, n: usize) {
        self.enc.set_max(n);
    }
}
