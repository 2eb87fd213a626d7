//! Test helpers: a registry and imdb built from meta text.

use std::path::Path;
use std::sync::Arc;

use gala_meta::{parse_meta_file, MetaLimits, Registry, TableId};

use crate::imdb::{Imdb, ImdbLimits};

/// The demo tables used across unit tests: `demo_latency` (histogram) and `demo_conn`.
pub const DEMO_META: &str = r#"
version = "1.0.0";
measurements: (
  { table_name: "demo_latency"; entity_name: "demo_http";
    fields: (
      { description: "server port"; type: "key"; name: "port"; },
      { description: "request method"; type: "label"; name: "method"; },
      { description: "request latency in ms"; type: "histogram"; name: "latency"; },
    ); },
  { table_name: "demo_conn"; entity_name: "demo_conn";
    fields: (
      { description: "connection id"; type: "key"; name: "conn"; },
      { description: "bytes sent"; type: "counter"; name: "tx_bytes"; },
      { description: "smoothed\nround-trip \\ time"; type: "gauge"; name: "srtt"; },
    ); },
);
"#;

/// A registry of `meta`.
pub fn registry(meta: &str) -> Arc<Registry> {
    let tables = parse_meta_file(Path::new("test.meta"), meta, &MetaLimits { max_fields: 64 })
        .expect("test meta parses");
    let mut r = Registry::new();
    r.add_tables(tables).expect("unique tables");
    Arc::new(r)
}

/// An imdb over the demo tables.
pub fn demo_imdb(max_records: usize, record_timeout_ms: u64) -> Arc<Imdb> {
    Arc::new(Imdb::new(
        registry(DEMO_META),
        ImdbLimits {
            max_records,
            record_timeout_ms,
        },
    ))
}

/// Stores a record line (`|table|v1|...|`) as ingress would; panics if it is invalid.
pub fn store(imdb: &Imdb, line: &str, now_ms: u64) -> Result<(), crate::imdb::UpsertError> {
    store_at(imdb, line, crate::imdb::Stamp::at(now_ms))
}

/// [`store`] with a series lifetime request.
pub fn store_at(
    imdb: &Imdb,
    line: &str,
    at: crate::imdb::Stamp,
) -> Result<(), crate::imdb::UpsertError> {
    let gala_meta::record::Line::Record(rec) =
        gala_meta::record::classify(line.as_bytes()).expect("classify")
    else {
        panic!("not a record: {line}");
    };
    let id: TableId = imdb.registry().lookup(rec.table).expect("known table");
    let meta = imdb.registry().table(id);
    let mut values = Vec::new();
    rec.split_values(meta, &mut values).expect("valid record");
    let mut key = Vec::new();
    crate::imdb::push_key(meta, &values, &mut key);
    let mut table = imdb.lock(id);
    imdb.upsert(&mut table, &key, rec.rest, at)
}
