//! The second ingress stage: checks value types and stores batches in the imdb.

use std::sync::Arc;

use gala_meta::TableId;
use metrics::Counter;

use gala_meta::record::check_values;

use super::{received_counter, Batch, DropLog, DropReason};
use crate::imdb::{push_key, Imdb, TableGuard, UpsertError};

/// Stores one probe's validated records; counts them and the ones a full table refuses.
pub struct BatchWriter {
    imdb: Arc<Imdb>,
    drops: DropLog,
    received: Counter,
    /// Records stored by the last [`BatchWriter::write`].
    stored: u64,
    key: Vec<u8>,
}

impl BatchWriter {
    /// A writer storing `probe`'s records in `imdb`.
    pub fn new(probe: &str, imdb: Arc<Imdb>) -> Self {
        BatchWriter {
            imdb,
            drops: DropLog::new(&probe.into()),
            received: received_counter(probe),
            stored: 0,
            key: Vec::with_capacity(128),
        }
    }

    /// Checks and stores every record of `batch`; a run of records for one table takes its
    /// lock once.
    pub fn write(&mut self, batch: &mut Batch) {
        let BatchWriter {
            imdb,
            drops,
            stored,
            key,
            ..
        } = self;
        let registry = imdb.registry().clone();
        let mut held: Option<(TableId, TableGuard)> = None;
        *stored = 0;
        batch.for_each(&mut Vec::new(), |id, line, values| {
            let meta = registry.table(id);
            if let Err(e) = check_values(meta, values) {
                return drops.drop(DropReason::from_record_error(&e), line, &e);
            }
            key.clear();
            push_key(meta, values, key);
            if held.as_ref().is_none_or(|(held_id, _)| *held_id != id) {
                // Release the previous table before locking the next one.
                drop(held.take());
                held = Some((id, imdb.lock_owned(id)));
            }
            let Some((_, table)) = held.as_mut() else {
                return;
            };
            match imdb.upsert(table, key, line, batch.now_ms) {
                Ok(()) => *stored += 1,
                Err(UpsertError::TableFull) => drops.drop(
                    DropReason::TableFull,
                    line,
                    &"table full (imdb.max_records_num)",
                ),
            }
        });
    }

    /// Publishes the counts of the last [`BatchWriter::write`].
    pub fn flush(&mut self) {
        self.received.increment(self.stored);
        self.drops.flush();
    }

    /// Drops counted under `reason` and not yet published.
    #[cfg(test)]
    pub(super) fn pending(&self, reason: DropReason) -> u64 {
        self.drops.pending(reason)
    }

    /// Records stored by the last [`BatchWriter::write`].
    pub fn stored(&self) -> u64 {
        self.stored
    }
}
