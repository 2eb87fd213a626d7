//! The second ingress stage: checks value types and stores batches in the imdb.

use std::sync::Arc;

use gala_meta::TableId;
use metrics::Counter;

use gala_meta::record::check_values;

use super::output::RecordOutput;
use super::{Batch, DropLog, DropReason};
use crate::clock;
use crate::imdb::{push_key, Imdb, Pending, Stamp};
use crate::labeltext;
use crate::selfmetrics;

/// Stores one probe's validated records; counts them and the ones a full table refuses.
pub struct BatchWriter {
    imdb: Arc<Imdb>,
    /// The probe, noted as the writer of the tables it writes.
    probe: Arc<str>,
    drops: DropLog,
    received: Counter,
    /// Records stored by the last [`BatchWriter::write`].
    stored: u64,
    /// Keys of the current run of records, back to back.
    keys: Vec<u8>,
    /// Allocation reused for each run (always empty between runs).
    run: Vec<Pending<'static>>,
    /// Where each valid record also goes, as it arrives (`metric.out_channel = "kafka"`).
    output: Option<Box<dyn RecordOutput>>,
    /// Label values the exposition repairs, by [`labeltext::Flaw`] (see [`LabelRepairs`]).
    repairs: LabelRepairs,
}

/// Counts the label values with a [`labeltext::Flaw`], per probe and flaw; the first of each flaw is
/// also logged, naming the table and field. The value is stored as the probe wrote it (JSON
/// and Kafka write it as U+FFFD too); the renderers repair it.
struct LabelRepairs {
    probe: Box<str>,
    counters: [Option<Counter>; 3],
}

impl LabelRepairs {
    /// Counts the flawed label values of one record.
    fn check(&mut self, meta: &gala_meta::TableMeta, values: &[&[u8]]) {
        for (f, v) in meta.fields.iter().zip(values) {
            let Some(flaw) = f.ty.is_label().then(|| labeltext::flaw(v)).flatten() else {
                continue;
            };
            let counter = self.counters[flaw.index()].get_or_insert_with(|| {
                tracing::warn!(
                    probe = &*self.probe,
                    "table {} field {}: a label value with {} bytes; exported with U+FFFD in their place (counted in gala_gopher_daemon_label_values_repaired_total)",
                    meta.name,
                    f.name,
                    flaw.what()
                );
                selfmetrics::label_values_repaired(&self.probe, flaw.as_str())
            });
            counter.increment(1);
        }
    }
}

impl BatchWriter {
    /// A writer storing `probe`'s records in `imdb`.
    pub fn new(probe: &str, imdb: Arc<Imdb>) -> Self {
        BatchWriter {
            imdb,
            probe: probe.into(),
            drops: DropLog::new(&probe.into()),
            received: selfmetrics::records_received(probe),
            stored: 0,
            keys: Vec::with_capacity(64 * 1024),
            run: Vec::new(),
            output: None,
            repairs: LabelRepairs {
                probe: probe.into(),
                counters: [None, None, None],
            },
        }
    }

    /// Also hands every valid record to `output`, whether or not its imdb table has room.
    pub fn with_output(mut self, output: Box<dyn RecordOutput>) -> Self {
        self.output = Some(output);
        self
    }

    /// Checks and stores every record of `batch`; each run of records for one table is
    /// stored under one lock with [`Imdb::upsert_run`].
    pub fn write(&mut self, batch: &mut Batch) {
        let BatchWriter {
            imdb,
            probe,
            drops,
            stored,
            keys,
            output,
            repairs,
            ..
        } = self;
        let registry = imdb.registry().clone();
        let mut run = recycle_run(std::mem::take(&mut self.run));
        let mut run_table: Option<TableId> = None;
        *stored = 0;
        let at = batch.at;
        let wall_ms = if output.is_some() {
            clock::wall_ms()
        } else {
            0
        };
        batch.for_each(&mut Vec::new(), |id, line, values| {
            let meta = registry.table(id);
            if let Err(e) = check_values(meta, values) {
                return drops.drop(DropReason::from_record_error(&e), line, &e);
            }
            repairs.check(meta, values);
            if let Some(output) = output {
                output.record(id, meta, values, wall_ms);
            }
            if run_table.is_some_and(|t| t != id) {
                *stored += store_run(
                    imdb,
                    probe,
                    drops,
                    run_table.unwrap_or(id),
                    &mut run,
                    keys,
                    at,
                );
            }
            run_table = Some(id);
            let start = keys.len();
            push_key(meta, values, keys);
            run.push(Pending {
                hash: imdb.hash_key(&keys[start..]),
                key: start..keys.len(),
                line,
            });
        });
        if let Some(id) = run_table {
            *stored += store_run(imdb, probe, drops, id, &mut run, keys, at);
        }
        self.run = recycle_run(run);
    }

    /// Publishes the counts of the last [`BatchWriter::write`].
    pub fn flush(&mut self) {
        self.received.increment(self.stored);
        self.drops.flush();
    }

    /// Drops counted under `reason` and not yet published.
    #[cfg(test)]
    pub(crate) fn pending(&self, reason: DropReason) -> u64 {
        self.drops.pending(reason)
    }

    /// Records stored by the last [`BatchWriter::write`].
    pub fn stored(&self) -> u64 {
        self.stored
    }
}

/// Stores a run of records of table `id` under one lock, then empties it; returns the number
/// stored.
fn store_run(
    imdb: &Imdb,
    probe: &Arc<str>,
    drops: &mut DropLog,
    id: TableId,
    run: &mut Vec<Pending>,
    keys: &mut Vec<u8>,
    at: Stamp,
) -> u64 {
    let mut table = imdb.lock(id);
    table.set_writer(probe);
    let stored = imdb.upsert_run(&mut table, keys, run, at, |line| {
        let why = &"table full (imdb.max_records_num)";
        drops.drop(DropReason::TableFull, line, why)
    });
    run.clear();
    keys.clear();
    stored
}

/// Empties a run and hands back its allocation under another lifetime (see
/// [`super::recycle`]).
fn recycle_run<'b>(mut v: Vec<Pending<'_>>) -> Vec<Pending<'b>> {
    v.clear();
    v.into_iter().map(|p| Pending { line: &[], ..p }).collect()
}
