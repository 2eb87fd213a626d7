//! `endpoint`: runs the socket probe (`gala_endpoint`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_endpoint::{Endpoint, META};

fn main() -> ExitCode {
    gala_ebpf::run_main(Endpoint::new(), &[META])
}
