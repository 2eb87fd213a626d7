//! Every text parser of the container probe on arbitrary input: none may panic, whatever a
//! kernel (or a broken fixture) writes. `cargo fuzz run parsers` from probes/container/.
#![no_main]

use gala_container::{membership, mounts, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse::flat_keyed(text, ["cache", "rss", "oom_kill", "usage_usec"]);
    let _ = parse::single_u64(text);
    let _ = parse::procs(text).count();
    let _ = parse::blkio_bytes(text);
    let _ = parse::io_stat_bytes(text);
    let _ = parse::net_dev(text);
    let _ = parse::stat_start_ticks(text);
    let _ = parse::btime(text);
    let m = mounts::parse_mountinfo(text);
    if let Some(unified) = &m.unified {
        let _ = unified.dir(text);
    }
    if let Some(ms) = membership::parse_membership(text) {
        let _ = ms.dir(&m, "memory");
        let _ = ms.unified_dir(&m);
    }
});
