fn main() {
    gala_ebpf_build::skeletons(&["endpoint"]);
}
