//! `endpoint`: runs the socket probe (`gala_endpoint`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_endpoint::{Endpoint, META, NAME};

fn main() -> ExitCode {
    match gala_ebpf::run(Endpoint::new(), &[META]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, NAME, &e.to_string());
            ExitCode::FAILURE
        }
    }
}
