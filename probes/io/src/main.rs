//! `ioprobe`: runs the `io` probe (`gala_ioprobe`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_ioprobe::{IoProbe, META};

fn main() -> ExitCode {
    gala_ebpf::run_main(IoProbe::new(), &[META])
}
