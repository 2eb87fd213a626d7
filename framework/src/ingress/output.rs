//! The output contract of ingress: where a probe's records, events and `|log|` lines go
//! besides the imdb. Egress implements these traits (`crate::egress::outputs`); ingress knows
//! no egress type, and the supervisor passes the whole as one [`super::Pipeline`].

use gala_meta::record::EventLine;
use gala_meta::{TableId, TableMeta};

/// The daemon-wide routing of probe output besides the imdb, asked once per probe run.
pub trait Outputs: Send + Sync {
    /// Where `probe`'s valid records also go; `None`: the imdb only.
    fn records(&self, probe: &str) -> Option<Box<dyn RecordOutput>>;
    /// Where `probe`'s events and `|log|` lines go; `None`: both are dropped as `no_route`.
    fn events(&self, probe: &str) -> Option<Box<dyn EventOutput>>;
}

/// One probe's records, on its writer thread (the hot path: called once per record).
pub trait RecordOutput: Send {
    /// Takes one record of table `id` (`meta`) whose value types are checked: `values` are its
    /// fields in meta order, `wall_ms` the wall-clock time of its batch. Called before the
    /// record is stored, so a full imdb table never holds it back.
    fn record(&mut self, id: TableId, meta: &TableMeta, values: &[&[u8]], wall_ms: u64);
}

/// One probe's events and `|log|` lines, on its reader task.
pub trait EventOutput: Send {
    /// Takes one parsed `|event|` line.
    fn event(&mut self, ev: &EventLine<'_>) -> Result<(), Refused>;
    /// Takes one `|log|` line (the whole line).
    fn log(&mut self, line: &[u8]) -> Result<(), Refused>;
}

/// Why an output did not take a line; ingress counts and logs it as a drop.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// This output does not take this kind of line (`no_route`); the text says what would.
    #[error("{0}")]
    NoRoute(&'static str),
    /// The line is malformed for this output (`bad_event`).
    #[error("{0}")]
    Malformed(Box<dyn std::error::Error + Send + Sync>),
}

impl Refused {
    /// [`Refused::Malformed`] because of `e`.
    pub fn malformed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Refused::Malformed(Box::new(e))
    }
}

/// No output besides the imdb: events and log lines are `no_route`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImdbOnly;

impl Outputs for ImdbOnly {
    fn records(&self, _: &str) -> Option<Box<dyn RecordOutput>> {
        None
    }

    fn events(&self, _: &str) -> Option<Box<dyn EventOutput>> {
        None
    }
}
