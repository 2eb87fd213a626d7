//! Fuzzes line classification and value splitting against a table of every field type.
#![no_main]

use gala_meta::{classify, is_null, Field, FieldType, Line, TableMeta};
use libfuzzer_sys::fuzz_target;

fn table() -> TableMeta {
    let fields = FieldType::ALL
        .iter()
        .enumerate()
        .map(|(i, &ty)| Field::new(format!("f{i}"), ty))
        .collect();
    // `FieldType::ALL` has one key, the first field.
    TableMeta::new("t", "e", "1", fields, "fuzz.meta", 1)
}

fuzz_target!(|data: &[u8]| {
    let table = table();
    let mut out = Vec::new();
    if let Ok(Line::Record(r)) = classify(data) {
        if r.split_values(&table, &mut out).is_ok() {
            assert_eq!(out.len(), table.fields.len());
            assert!(!is_null(out[0]));
        }
    }
});
