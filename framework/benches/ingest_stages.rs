//! CPU cost per record of the two ingest stages, measured single-threaded from memory so the
//! figures do not depend on the pipe or on scheduling (the end-to-end figure is
//! `gopher-bench`'s). The stream is gopher-bench's: 100-byte records over 10,000 series.
//!
//! Run: `cargo bench -p gala-gopher --bench ingest_stages`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gala_gopher::imdb::{Imdb, ImdbLimits};
use gala_gopher::ingress::{Batch, BatchWriter, LineSplitter, LineValidator};
use gala_meta::{parse_meta_file, MetaLimits, Registry};

const META: &str = include_str!("../../tests/fixtures/bench.meta");

const SERIES: usize = 10_000;
const RECORD_LEN: usize = 100;
/// Bytes handed to the splitter at once, like one pipe read.
const READ: usize = 1 << 20;
const ROUNDS: usize = 20;
/// Passes over the series per round.
const PASSES: usize = 5;

fn records() -> Vec<u8> {
    let mut out = Vec::with_capacity(SERIES * RECORD_LEN);
    for i in 0..SERIES {
        let head = format!("|bench|s{i:07}|");
        let tail = format!("|{}.25|{}|{}|\n", i % 977, i % 13, i * 7);
        out.extend_from_slice(head.as_bytes());
        out.extend(std::iter::repeat_n(
            b'n',
            RECORD_LEN - head.len() - tail.len(),
        ));
        out.extend_from_slice(tail.as_bytes());
    }
    out
}

fn main() {
    let tables = parse_meta_file(
        Path::new("bench.meta"),
        META,
        &MetaLimits { max_fields: 64 },
    )
    .expect("meta");
    let mut registry = Registry::new();
    registry.add_tables(tables).expect("tables");
    let registry = Arc::new(registry);
    let limits = ImdbLimits {
        max_records: SERIES * 2,
        record_timeout_ms: 600_000,
    };
    let imdb = Arc::new(Imdb::new(registry.clone(), limits));
    let data = records();
    let mut splitter = LineSplitter::new(64 * 1024);
    let mut validator = LineValidator::new("bench", registry);
    let mut writer = BatchWriter::new("bench", imdb);
    let (mut read_ns, mut write_ns) = (Vec::new(), Vec::new());
    let mut batches: Vec<Batch> = Vec::new();
    for _ in 0..ROUNDS {
        // Stage 1: split lines and fields of READ bytes at a time into batches.
        let t = Instant::now();
        let mut spare = std::mem::take(&mut batches);
        let mut full = Vec::new();
        for chunk in data
            .chunks(READ)
            .cycle()
            .take(PASSES * data.len().div_ceil(READ))
        {
            let mut batch = spare.pop().unwrap_or_default();
            splitter.spare()[..chunk.len()].copy_from_slice(chunk);
            splitter.filled(chunk.len(), false, |item| match item {
                Ok(line) => validator.line(line, &mut batch),
                Err(head) => validator.too_long(head),
            });
            full.push(batch);
        }
        read_ns.push(t.elapsed().as_nanos() as f64 / (PASSES * SERIES) as f64);
        // Stage 2: check, key and store them.
        let t = Instant::now();
        for batch in &mut full {
            writer.write(batch);
            assert_eq!(writer.stored(), batch.len() as u64);
            batch.clear();
        }
        write_ns.push(t.elapsed().as_nanos() as f64 / (PASSES * SERIES) as f64);
        batches = full;
    }
    for (name, mut v) in [("split + validate", read_ns), ("check + store", write_ns)] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: {:.1} ns/record (min {:.1}, max {:.1}, {ROUNDS} rounds of {PASSES} x {SERIES})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
