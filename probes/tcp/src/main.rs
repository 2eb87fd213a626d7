//! `tcpprobe`: runs the `tcp` probe (`gala_tcpprobe`) under the shared eBPF runner.

use gala_tcpprobe::{TcpProbe, META, NAME};

fn main() {
    if let Err(e) = gala_ebpf::run(TcpProbe::new(), &[META]) {
        gala_ebpf::log(gala_probe_sdk::Level::Error, NAME, &e.to_string());
        std::process::exit(1);
    }
}
