//! Fuzzes line classification and value splitting against a table of every field type.
#![no_main]

use gala_meta::{classify, is_null, Field, FieldType, Line, TableMeta};
use libfuzzer_sys::fuzz_target;

fn table() -> TableMeta {
    let fields = FieldType::ALL
        .iter()
        .enumerate()
        .map(|(i, &ty)| Field {
            name: format!("f{i}"),
            description: String::new(),
            ty,
        })
        .collect();
    TableMeta {
        name: "t".into(),
        entity: "e".into(),
        version: "1".into(),
        fields,
        source: "fuzz.meta".into(),
        line: 1,
        key_idx: vec![0],
    }
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
