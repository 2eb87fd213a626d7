//! `ioprobe`, the `io` probe of gala-gopher: block-layer latency per stage (request, driver,
//! device), I/O errors (as events and the `io_err` table), bytes read and written, and
//! page-cache activity, per disk. It watches the whole host (no snoopers). Stage definitions,
//! units and what differs from the original are in `probes/io/README.md`.

mod blockdev;
mod counters;
mod errtext;
mod latency;
mod probe;
mod records;

use std::process::ExitCode;

fn main() -> ExitCode {
    match gala_ebpf::run(probe::IoProbe::new(), &[probe::META]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, "io", &e.to_string());
            ExitCode::FAILURE
        }
    }
}
