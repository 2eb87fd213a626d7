//! The second ingress stage: stores validated batches in the imdb.

use std::sync::Arc;

use gala_meta::TableId;
use metrics::Counter;

use super::{received_counter, Batch, DropLog, DropReason};
use crate::imdb::{Imdb, TableGuard, UpsertError};

/// Stores one probe's validated records; counts them and the ones a full table refuses.
pub struct BatchWriter {
    imdb: Arc<Imdb>,
    drops: DropLog,
    received: Counter,
    /// Records stored by the last [`BatchWriter::write`].
    stored: u64,
}

impl BatchWriter {
    /// A writer storing `probe`'s records in `imdb`.
    pub fn new(probe: &str, imdb: Arc<Imdb>) -> Self {
        BatchWriter {
            imdb,
            drops: DropLog::new(&probe.into()),
            received: received_counter(probe),
            stored: 0,
        }
    }

    /// Stores every record of `batch`; a run of records for one table takes its lock once.
    pub fn write(&mut self, batch: &mut Batch) {
        let mut held: Option<(TableId, TableGuard)> = None;
        self.stored = 0;
        for (id, key, line) in batch.iter() {
            if held.as_ref().is_none_or(|(held_id, _)| *held_id != id) {
                // Release the previous table before locking the next one.
                drop(held.take());
                held = Some((id, self.imdb.lock_owned(id)));
            }
            let Some((_, table)) = held.as_mut() else {
                continue;
            };
            match self.imdb.upsert(table, key, line, batch.now_ms) {
                Ok(()) => self.stored += 1,
                Err(UpsertError::TableFull) => {
                    let why = &"table full (imdb.max_records_num)";
                    self.drops.drop(DropReason::TableFull, line, why);
                }
            }
        }
        drop(held);
        self.received.increment(self.stored);
        self.drops.flush();
    }

    /// Records stored by the last [`BatchWriter::write`].
    pub fn stored(&self) -> u64 {
        self.stored
    }
}
