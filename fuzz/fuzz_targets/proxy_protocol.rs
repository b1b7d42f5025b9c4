//! PROXY protocol headers read on `accept_proxy` listeners: any bytes give a verdict, never a
//! panic, and the verdict does not depend on how the bytes were split across reads. Walking
//! every prefix: `Partial` until a decision, then the same decision for every longer prefix; a
//! header is complete exactly when its last byte arrives; LOCAL (v2) announces no client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::proxy_protocol::{Received, parse_received};

const V2_PREFIX: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

fuzz_target!(|data: &[u8]| {
    let mut decided: Option<Received> = None;
    for n in 0..=data.len() {
        let verdict = parse_received(&data[..n]);
        match (&decided, &verdict) {
            (None, Received::Partial) => {}
            (None, Received::Complete { consumed_bytes, .. }) => {
                assert_eq!(*consumed_bytes, n, "complete before or after its last byte");
                decided = Some(verdict);
            }
            (None, Received::Invalid(_)) => decided = Some(verdict),
            (Some(Received::Complete { .. }), _) => {
                assert_eq!(
                    decided.as_ref(),
                    Some(&verdict),
                    "complete header changed at {n}"
                );
            }
            (Some(Received::Invalid(_)), Received::Invalid(_)) => {}
            (Some(d), v) => panic!("verdict {d:?} became {v:?} at {n}"),
        }
    }
    // proxy-protocol.txt §2.2: with LOCAL the receiver uses the connection's own addresses,
    // whatever address block the header carries.
    if let Some(Received::Complete { source, .. }) = &decided
        && data.starts_with(V2_PREFIX)
        && data.get(12).is_some_and(|b| b & 0x0f == 0x00)
    {
        assert_eq!(*source, None, "a LOCAL header announced a client");
    }
});
