//! Response heads from backends: any bytes must give a verdict, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{HeadVerdict, Limits, ResponseOpts, encode_response, parse_response};

fuzz_target!(|data: &[u8]| {
    for request_is_head in [false, true] {
        if let HeadVerdict::Complete {
            head,
            consumed_bytes,
        } = parse_response(data, &Limits::default(), request_is_head)
        {
            assert!(consumed_bytes <= data.len());
            // ringway adds up to four fields, so the output may exceed the input's field limit.
            let roomy = Limits {
                headers_max: Limits::default().headers_max + 8,
                head_bytes_max: 1 << 20,
                ..Limits::default()
            };
            // dechunk: a chunked response relayed to an HTTP/1.0 client loses Transfer-Encoding.
            for dechunk in [false, true] {
                let mut out = Vec::new();
                let opts = ResponseOpts {
                    keep_alive: head.keep_alive && !dechunk,
                    version_minor_client: u8::from(!dechunk),
                    tunnel: head.status == 101,
                    set_cookie: Some(("SERVERID", "s1")),
                    dechunk,
                };
                encode_response(data, &head, &opts, &mut out);
                assert!(matches!(
                    parse_response(&out, &roomy, request_is_head),
                    HeadVerdict::Complete { .. }
                ));
            }
        }
    }
});
