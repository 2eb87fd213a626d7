//! `endpoint`: the socket probe of gala-gopher — listen, connect and UDP endpoint health
//! per process (not per connection), from tracepoints (see README.md). The binary
//! (`src/main.rs`) only runs [`Endpoint`].

mod bpf;
mod diag;
mod probe;
mod procfs;
mod report;
mod scan;

gala_ebpf::skel_module!(
    /// The BPF skeleton generated from `src/bpf/endpoint.bpf.c`; its `types` are the record
    /// layouts.
    "endpoint"
);

pub use bpf::SUBITEMS;
pub use probe::{Endpoint, NAME};

/// The probe's meta file.
pub const META: (&str, &str) = ("endpoint.meta", include_str!("../endpoint.meta"));
