//! `taskprobe`: runs the `proc` probe (`gala_taskprobe`) under the shared eBPF runner.

use std::process::ExitCode;

use gala_taskprobe::{TaskProbe, METAS};

fn main() -> ExitCode {
    gala_ebpf::run_main(TaskProbe::default(), &METAS)
}
