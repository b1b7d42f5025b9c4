//! Request heads: any bytes must give a verdict, never a panic; complete heads must re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{ForwardOpts, HeadVerdict, Limits, encode_request, parse_request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let HeadVerdict::Complete {
        head,
        consumed_bytes,
    } = parse_request(data, &limits)
    {
        assert!(consumed_bytes <= data.len());
        // ringway adds up to four fields, so the output may exceed the input's field limit.
        let roomy = Limits {
            headers_max: Limits::default().headers_max + 8,
            head_bytes_max: 1 << 20,
            ..Limits::default()
        };
        let mut out = Vec::new();
        let opts = ForwardOpts {
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            proto: "http",
            x_forwarded_for: true,
            x_real_ip: true,
            x_forwarded_proto: true,
            forwarded: true,
            tunnel: head.upgrade,
            strip_cookie: Some("SERVERID"),
        };
        encode_request(data, &head, &opts, &mut out);
        // What ringway sends on must itself parse as one complete request.
        assert!(matches!(
            parse_request(&out, &roomy),
            HeadVerdict::Complete { .. }
        ));
    }
});
