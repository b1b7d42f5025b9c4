//! Chunked bodies in two pieces split anywhere: the verdict must not depend on the split, and
//! de-chunking (for HTTP/1.0 clients) must end where scanning ends, on the same verdict, with the
//! same data whatever the split, never more data bytes than the body held.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{ChunkVerdict, ChunkedScanner};

type Outcome = Result<Option<usize>, ringway::http1::ChunkError>;

fn run(parts: &[&[u8]], mut dechunk: Option<&mut Vec<u8>>) -> Outcome {
    let mut s = ChunkedScanner::new();
    let mut total = 0;
    for part in parts {
        let verdict = match dechunk.as_deref_mut() {
            Some(out) => s.dechunk(part, out)?,
            None => s.feed(part)?,
        };
        match verdict {
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
    let whole = run(&[rest], None);
    let split = run(&[&rest[..cut], &rest[cut..]], None);
    assert_eq!(whole, split);
    let mut a = Vec::new();
    let mut b = Vec::new();
    let dechunked = run(&[rest], Some(&mut a));
    let dechunked_split = run(&[&rest[..cut], &rest[cut..]], Some(&mut b));
    assert_eq!(dechunked, whole, "de-chunking ends where scanning ends");
    assert_eq!(dechunked_split, whole);
    if whole.is_ok() {
        assert_eq!(a, b, "the same data whatever the split");
    }
    if let Ok(Some(end)) = whole {
        assert!(a.len() <= end, "never more data than the body held");
    }
});
