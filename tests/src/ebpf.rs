//! What the eBPF probes' end-to-end tests share: whether BPF may run here (the tests report
//! themselves skipped with the reason where it may not), and a sandbox with a built-in
//! eBPF probe installed.

use crate::{workspace_bin, Sandbox};

/// Why eBPF probes cannot run on this machine, or `None` when they can: root, vmlinux BTF
/// and a BPF map the kernel lets us create.
pub fn skip_reason() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("eBPF probes need root".to_owned());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_owned());
    }
    let kernel = gala_ebpf::Kernel::detect();
    if !kernel.has_tracepoint("sched_switch") {
        return Some(format!("BTF without tracepoints: {}", kernel.summary()));
    }
    None
}

/// Returns from the test, printing why, when eBPF probes cannot run here.
#[macro_export]
macro_rules! require_bpf {
    () => {
        if let Some(reason) = $crate::ebpf::skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// Installs the workspace binary `bin` as a built-in probe of `sb` (extend probe dir) and
/// writes its meta files and `ebpf_prog.meta` into the sandbox's meta dir.
pub fn install_builtin(sb: &Sandbox, bin: &str, metas: &[(&str, &str)]) {
    std::fs::copy(workspace_bin(bin), sb.path().join("probes").join(bin))
        .unwrap_or_else(|e| panic!("install {bin}: {e} (build it: cargo build --bins)"));
    let (name, text) = gala_ebpf::COST_META;
    sb.write_meta(name, text);
    for (name, text) in metas {
        sb.write_meta(name, text);
    }
}
