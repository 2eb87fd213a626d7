//! Fuzzes the `|event|` line parser.
#![no_main]

use gala_meta::parse_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = parse_event(data) {
        assert!(!e.entity_name.is_empty() && !e.entity_id.is_empty() && !e.metric.is_empty());
    }
});
