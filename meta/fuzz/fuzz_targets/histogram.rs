//! Fuzzes the histogram column decoder; validation and parsing must agree.
#![no_main]

use gala_meta::histogram::{validate, Histogram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Histogram::parse(data);
    assert_eq!(validate(data).is_ok(), parsed.is_ok());
    if let Ok(h) = parsed {
        assert!(!h.buckets.is_empty() && h.buckets.len() <= 256);
        assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }
});
