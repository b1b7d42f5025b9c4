//! Any text given to the config loader yields a Config or located errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match ringway::config::load_str(text, "fuzz.toml") {
            Ok(_) => {}
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.toml"), "{shown}");
            }
        }
    }
});
