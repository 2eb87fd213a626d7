//! `tcpprobe`: runs the `tcp` probe (`gala_tcpprobe`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_tcpprobe::{TcpProbe, META};

fn main() -> ExitCode {
    gala_ebpf::run_main(TcpProbe::new(), &[META])
}
