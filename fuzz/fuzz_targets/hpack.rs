//! HPACK: any bytes decode to a verdict, never a panic, and never past the list bound; and
//! whatever fields the encoder is given decode back to the same fields, block after block,
//! with the two tables in step, whatever the table size, its changes and the encoder's policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::h2::hpack::{DecodeLimits, Decoder, Encoder, HuffmanUse, IndexUse};

const TABLE_BYTES: [usize; 4] = [0, 64, 256, 4096];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };

    // Any block: a verdict, and the bound honoured while decoding.
    let limits = DecodeLimits {
        list_bytes_max: 64 + usize::from(first) * 64,
        fields_max: 1 + usize::from(first % 64),
    };
    let mut d = Decoder::new(TABLE_BYTES[usize::from(first >> 6)]);
    let mut list_bytes = 0;
    let mut fields = 0;
    let verdict = d.decode(rest, limits, &mut |n, v| {
        list_bytes += n.len() + v.len() + 32;
        fields += 1;
    });
    assert!(list_bytes <= limits.list_bytes_max);
    assert!(fields <= limits.fields_max);
    if verdict.is_ok() {
        // A second pass over the same block with the state it left: still no panic.
        let _ = d.decode(rest, limits, &mut |_, _| {});
    }

    // Round trip: the input read as NUL-separated names and values.
    let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let pairs: Vec<(&[u8], &[u8])> = parts
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or(b"")))
        .collect();
    let huffman = [
        HuffmanUse::Never,
        HuffmanUse::Always,
        HuffmanUse::WhenShorter,
    ][usize::from(first % 3)];
    let index = if first & 8 != 0 {
        IndexUse::All
    } else {
        IndexUse::Repeating
    };
    // As in a connection: the peer's decoder announced 4096, then a setting moves our table.
    let mut e = Encoder::new(4096, huffman, index);
    e.set_table_bytes(TABLE_BYTES[usize::from(first >> 6)]);
    let mut d = Decoder::new(4096);
    let unbounded = DecodeLimits {
        list_bytes_max: usize::MAX / 2,
        fields_max: usize::MAX,
    };
    for (i, chunk) in pairs.chunks(3).enumerate() {
        if i % 2 == 1 {
            e.set_table_bytes(TABLE_BYTES[(usize::from(first) + i) % 4]);
        }
        let mut block = Vec::new();
        e.encode(chunk.iter().copied(), &mut block);
        let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        d.decode(&block, unbounded, &mut |n, v| {
            got.push((n.to_vec(), v.to_vec()))
        })
        .expect("our own block decodes");
        let want: Vec<(Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(d.table_size(), e.table_size());
    }
});
