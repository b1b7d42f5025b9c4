//! Duration and size parsers: no panic on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ringway::config::units::parse_duration(text);
        let _ = ringway::config::units::parse_size(text);
    }
});
