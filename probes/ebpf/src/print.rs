//! libbpf's own messages (object parsing, relocation, verifier logs of refused programs):
//! routed to the probe's log as debug lines instead of libbpf's default stderr printer, and
//! silenced while a probe only tries out programs that may legitimately fail.

use std::sync::OnceLock;

use libbpf_rs::PrintLevel;

/// The probe the messages are logged under (set once, by [`route_to_log`]).
static PROBE: OnceLock<&'static str> = OnceLock::new();

/// From now on, libbpf's warnings and informational messages go to the probe's log as
/// debug lines (libbpf's debug messages, one per relocation, are dropped).
pub fn route_to_log(probe: &'static str) {
    let _ = PROBE.set(probe);
    libbpf_rs::set_print(Some((PrintLevel::Info, forward)));
}

/// Runs `f` with libbpf's printer off, then restores the printer that was set.
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let previous = libbpf_rs::set_print(None);
    let out = f();
    libbpf_rs::set_print(previous);
    out
}

fn forward(_level: PrintLevel, message: String) {
    let probe = PROBE.get().copied().unwrap_or("ebpf");
    for line in message.lines().filter(|l| !l.trim().is_empty()) {
        crate::runner::debug(probe, &format!("libbpf: {line}"));
    }
}
