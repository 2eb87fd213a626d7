//! Every procfs/sysfs text parser of baseinfo on arbitrary input: none may panic, whatever a
//! kernel (or a broken fixture) writes. `cargo fuzz run procfs` from probes/baseinfo/.
#![no_main]

use gala_baseinfo::{cpu, disk, fs, host, mem, net, nic, proc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cpu::parse_stat(text);
    let _ = cpu::parse_softirqs(text);
    let _ = cpu::parse_softnet(text, &[0, 1, 2, 3]);
    let _ = cpu::parse_cpuinfo_mhz(text);
    let _ = mem::parse_meminfo(text);
    let _ = mem::parse_dentry_state(text);
    let _ = nic::parse_net_dev(text);
    let _ = net::parse_snmp(text);
    let _ = disk::parse_diskstats(text);
    for line in text.lines() {
        let _ = fs::parse_mountinfo_line(line);
    }
    let _ = proc::parse_stat(text);
    let _ = proc::parse_io(text);
    let _ = proc::parse_smaps_rollup(text);
    let _ = proc::parse_max_open_files(text);
    let _ = host::parse_os_release(text);
    let _ = host::parse_btime(text);
    let _ = host::parse_if_inet6(text);
    let _ = host::parse_fib_trie_local(text);
    let _ = host::parse_if_flags(text);
});
