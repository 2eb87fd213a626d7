//! `endpoint`: the socket probe of gala-gopher — listen, connect and UDP endpoint health
//! per process (not per connection), from tracepoints (see README.md). The binary
//! (`src/main.rs`) only runs [`Endpoint`].

mod bpf;
mod diag;
mod probe;
mod procfs;
mod report;
mod scan;

/// The BPF skeleton generated from `src/bpf/endpoint.bpf.c`; its `types` are the record
/// layouts.
#[allow(
    dead_code,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::unwrap_used,
    missing_docs,
    non_camel_case_types,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/endpoint.skel.rs"));
}

pub use bpf::SUBITEMS;
pub use probe::{Endpoint, NAME};

/// The probe's meta file.
pub const META: (&str, &str) = ("endpoint.meta", include_str!("../endpoint.meta"));
