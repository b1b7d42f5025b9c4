//! ClientHello peek: any bytes give a verdict, never a panic; the SNI, when found, is a valid
//! lowercase host name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::tls::{HelloVerdict, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    if let HelloVerdict::Complete(hello) = parse_client_hello(data)
        && let Some(sni) = hello.sni
    {
        assert!(!sni.is_empty() && sni.len() <= 255);
        assert!(sni.bytes().all(|b| !b.is_ascii_uppercase()));
    }
});
