//! Fuzzes meta-file parsing and validation.
#![no_main]

use gala_meta::{parse_meta_file, FieldType, MetaLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.meta");
    if let Ok(tables) = parse_meta_file(path, src, &MetaLimits::default()) {
        for t in &tables {
            assert!(!t.key_idx.is_empty());
            assert!(t.key_idx.iter().all(|&i| t.fields[i].ty == FieldType::Key));
        }
    }
});
