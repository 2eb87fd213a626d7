//! `tcpprobe`: the eBPF probe (being written).

fn main() {}
