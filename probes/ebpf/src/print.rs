//! libbpf's own messages (object parsing, relocation, verifier logs of refused programs):
//! routed to the probe's log as debug lines instead of libbpf's default stderr printer,
//! silenced while a probe only tries out programs that may legitimately fail, and captured
//! while loading so that a refusal can be pinned on the program libbpf names.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use libbpf_rs::{PrintCallback, PrintLevel};

/// The probe the messages are logged under (set once, by [`route_to_log`]).
static PROBE: OnceLock<&'static str> = OnceLock::new();

/// The warnings captured by the [`capture`] in progress.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The printer a [`capture`] passes the messages on to (the one set before it).
static NEXT: Mutex<Option<(PrintLevel, PrintCallback)>> = Mutex::new(None);

/// Held for the whole of a [`capture`]: captures never interleave (tests run in threads).
static CAPTURING: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// Runs `f` keeping libbpf's warnings (one entry per message) besides passing every message
/// on to the printer that was set (none inside [`quiet`]). Not to be nested.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let _one = lock(&CAPTURING);
    lock(&CAPTURED).clear();
    let level = libbpf_rs::get_print().map_or(PrintLevel::Warn, |(level, _)| level);
    let previous = libbpf_rs::set_print(Some((level, tee)));
    *lock(&NEXT) = previous;
    let out = f();
    libbpf_rs::set_print(previous);
    *lock(&NEXT) = None;
    let captured = std::mem::take(&mut *lock(&CAPTURED));
    (out, captured)
}

fn tee(level: PrintLevel, message: String) {
    if level == PrintLevel::Warn {
        lock(&CAPTURED).push(message.clone());
    }
    let next = *lock(&NEXT);
    if let Some((max, print)) = next {
        if level <= max {
            print(level, message);
        }
    }
}

fn forward(_level: PrintLevel, message: String) {
    let probe = PROBE.get().copied().unwrap_or("ebpf");
    for line in message.lines().filter(|l| !l.trim().is_empty()) {
        // libbpf's own lines start with "libbpf: " already; verifier log lines do not.
        let line = line.strip_prefix("libbpf: ").unwrap_or(line);
        crate::runner::debug(probe, &format!("libbpf: {line}"));
    }
}

/// The programs libbpf's warnings `messages` say failed, each with the first such line
/// (`prog 'tcp_state': BPF program load failed: Permission denied`); the verifier log
/// between its BEGIN and END markers is skipped.
pub fn failed_programs(messages: &[String]) -> BTreeMap<String, String> {
    let mut failed = BTreeMap::new();
    for line in lines(messages) {
        let Some(rest) = line.strip_prefix("prog '") else {
            continue;
        };
        let Some((name, text)) = rest.split_once("': ") else {
            continue;
        };
        if text.starts_with("-- BEGIN") || text.starts_with("-- END") {
            continue;
        }
        failed
            .entry(name.to_owned())
            .or_insert_with(|| line.to_owned());
    }
    failed
}

/// The lines of libbpf's warnings `messages` about something else than a program that
/// failed (`map 'tasks': failed to create: Invalid argument(-22)`), verifier logs left out.
pub fn failure_lines(messages: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines(messages) {
        let relevant = !line.starts_with("prog '")
            && (line.contains("fail") || line.contains("error") || line.contains("Error"));
        if relevant && !out.iter().any(|l| l == line) {
            out.push(line.to_owned());
        }
    }
    out
}

/// The lines of `messages` outside verifier logs, without libbpf's `libbpf: ` prefix.
fn lines(messages: &[String]) -> impl Iterator<Item = &str> {
    let mut in_log = false;
    messages
        .iter()
        .flat_map(|m| m.lines())
        .map(|l| l.trim_start_matches("libbpf: ").trim())
        .filter(move |l| {
            if l.ends_with("-- BEGIN PROG LOAD LOG --") {
                in_log = true;
                return false;
            }
            if l.starts_with("-- END PROG LOAD LOG --") || l.ends_with("-- END PROG LOAD LOG --") {
                in_log = false;
                return false;
            }
            !in_log && !l.is_empty()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_programs_are_named_with_their_first_line() {
        let messages = [
            "libbpf: prog 'tcp_state': BPF program load failed: Permission denied\n".to_owned(),
            "libbpf: prog 'tcp_state': -- BEGIN PROG LOAD LOG --\n\
             0: R1=ctx() R10=fp0\nprog 'fake': invalid\n-- END PROG LOAD LOG --\n"
                .to_owned(),
            "libbpf: prog 'tcp_state': failed to load: -13\n".to_owned(),
            "libbpf: map 'tasks': failed to create: Invalid argument(-22)\n".to_owned(),
            "libbpf: failed to load object 'tcp_bpf'\n".to_owned(),
            "libbpf: prog 'tcp_ack': failed to attach to raw tracepoint 'tcp_probe': -2\n"
                .to_owned(),
        ];
        let failed = failed_programs(&messages);
        assert_eq!(
            failed.keys().collect::<Vec<_>>(),
            ["tcp_ack", "tcp_state"],
            "{failed:?}"
        );
        assert_eq!(
            failed["tcp_state"],
            "prog 'tcp_state': BPF program load failed: Permission denied"
        );
        assert_eq!(
            failure_lines(&messages),
            [
                "map 'tasks': failed to create: Invalid argument(-22)",
                "failed to load object 'tcp_bpf'"
            ]
        );
    }

    #[test]
    fn capture_keeps_libbpf_warnings() {
        let ((), none) = capture(|| ());
        assert!(none.is_empty());
        // Bytes that are no ELF object: libbpf warns about them.
        let bytes = [0u8; 64];
        let (obj, warned) = quiet(|| {
            capture(|| {
                // SAFETY: the buffer outlives the call; an object or NULL comes back.
                unsafe {
                    libbpf_sys::bpf_object__open_mem(
                        bytes.as_ptr().cast(),
                        bytes.len() as _,
                        std::ptr::null(),
                    )
                }
            })
        });
        assert!(obj.is_null());
        assert!(warned.iter().any(|m| m.contains("elf")), "{warned:?}");
        // Outside a capture nothing is kept.
        let ((), after) = capture(|| ());
        assert!(after.is_empty());
    }
}
