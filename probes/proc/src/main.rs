//! `taskprobe`: runs the `proc` probe (`gala_taskprobe`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_taskprobe::{TaskProbe, METAS, NAME};

fn main() -> ExitCode {
    match gala_ebpf::run(TaskProbe::default(), &METAS) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, NAME, &e.to_string());
            ExitCode::FAILURE
        }
    }
}
