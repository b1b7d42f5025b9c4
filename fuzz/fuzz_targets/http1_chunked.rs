//! Chunked bodies in two pieces split anywhere: the verdict must not depend on the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{ChunkVerdict, ChunkedScanner};

fn run(parts: &[&[u8]]) -> Result<Option<usize>, ringway::http1::ChunkError> {
    let mut s = ChunkedScanner::new();
    let mut total = 0;
    for part in parts {
        match s.feed(part)? {
            ChunkVerdict::NeedMore { consumed_bytes } => {
                assert_eq!(consumed_bytes, part.len());
                total += consumed_bytes;
            }
            ChunkVerdict::Done { consumed_bytes } => {
                assert!(consumed_bytes <= part.len());
                return Ok(Some(total + consumed_bytes));
            }
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(first) % (rest.len() + 1);
    let whole = run(&[rest]);
    let split = run(&[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split);
});
