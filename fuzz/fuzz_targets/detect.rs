//! Protocol detection: any bytes give a verdict, never a panic, and a verdict once given never
//! changes when more bytes arrive (a prefix decides).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::detect::{Detected, classify, classify_final};

fuzz_target!(|data: &[u8]| {
    let mut decided = None;
    for n in 1..=data.len() {
        match classify(&data[..n]) {
            Detected::Known(p) => {
                if let Some(d) = decided {
                    assert_eq!(d, p, "verdict changed at {n}");
                }
                decided = Some(p);
            }
            Detected::Partial => assert!(decided.is_none(), "undecided again at {n}"),
        }
    }
    let _ = classify_final(data);
});
