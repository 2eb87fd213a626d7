//! The netlink qdisc dump parser on arbitrary bytes (a kernel answer is outside input too).
//! `cargo fuzz run qdisc_dump` from probes/baseinfo/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gala_baseinfo::nic::qdisc::parse_dump(data, 1);
});
