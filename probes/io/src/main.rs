//! `ioprobe`: runs the `io` probe (`gala_ioprobe`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_ioprobe::{IoProbe, META, NAME};

fn main() -> ExitCode {
    match gala_ebpf::run(IoProbe::new(), &[META]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, NAME, &e.to_string());
            ExitCode::FAILURE
        }
    }
}
