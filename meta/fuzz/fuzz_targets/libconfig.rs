//! Fuzzes the libconfig parser: any UTF-8 text must parse or fail with a line number.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Err(e) = gala_meta::libconfig::parse(src) {
            assert!(e.line >= 1);
        }
    }
});
