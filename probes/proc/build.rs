//! Compiles `src/bpf/taskprobe.bpf.c` into the libbpf-rs skeleton.

fn main() {
    gala_ebpf_build::skeletons(&["taskprobe"]);
}
