//! `endpoint`: the socket probe of gala-gopher — listen, connect and UDP endpoint health
//! per process (not per connection), from tracepoints (see README.md).

mod bpf;
mod diag;
mod probe;
mod procfs;
mod report;
mod scan;

use std::process::ExitCode;

/// The probe's meta file.
const META: (&str, &str) = ("endpoint.meta", include_str!("../endpoint.meta"));

fn main() -> ExitCode {
    match gala_ebpf::run(probe::Endpoint::new(), &[META]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, probe::NAME, &e.to_string());
            ExitCode::FAILURE
        }
    }
}
