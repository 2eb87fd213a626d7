//! `ioprobe`, the `io` probe of gala-gopher: block-layer latency per stage (request, driver,
//! device), I/O errors (as events and the `io_err` table), bytes read and written, and
//! page-cache activity, per disk. It watches the whole host (no snoopers). Stage definitions,
//! units and what differs from the original are in `probes/io/README.md`. The binary
//! (`src/main.rs`) only runs [`IoProbe`].

mod blockdev;
mod counters;
mod errtext;
mod latency;
mod probe;
mod records;

gala_ebpf::skel_module!(
    /// The BPF skeleton generated from `src/bpf/io.bpf.c`; its `types` are the record layouts.
    "io"
);

pub use probe::{IoProbe, META, NAME, SUBITEMS};
