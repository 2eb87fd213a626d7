//! What a test does when this machine lacks something it needs (BPF, a tool, a peer, a
//! feature of an installed program): in CI it fails with the reason, so that a CI run never
//! reports ok for a test that did not run; on a developer's machine it is skipped and says
//! why on stderr. CI is the environment variable `CI` set to anything but empty, `0`,
//! `false` or `no` (CI systems set `CI=true`; `.ci/run` runs with it).

use std::ffi::OsStr;

/// What becomes of a test that cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The test fails with this message (CI).
    Fail(String),
    /// The test prints this message and returns (not CI).
    Skip(String),
}

/// Whether `value`, the value of the `CI` variable (`None`: unset), marks a CI run.
pub fn is_ci(value: Option<&OsStr>) -> bool {
    let Some(value) = value else {
        return false;
    };
    // A value that is not UTF-8 is still a value someone set.
    let text = value.to_string_lossy().trim().to_ascii_lowercase();
    !matches!(text.as_str(), "" | "0" | "false" | "no")
}

/// Whether this process runs in CI (see the module documentation).
pub fn in_ci() -> bool {
    is_ci(std::env::var_os("CI").as_deref())
}

/// The verdict for a test that cannot run because of `reason`, in CI (`ci`) or not.
pub fn verdict(reason: &str, ci: bool) -> Verdict {
    if ci {
        Verdict::Fail(format!(
            "cannot run here: {reason} (CI is set, where a test that cannot run fails instead of \
             being skipped)"
        ))
    } else {
        Verdict::Skip(format!("skipped: {reason}"))
    }
}

/// Carries out [`verdict`] for this process: panics with the reason in CI, prints it
/// otherwise (the caller then returns, or leaves out the check that cannot run).
pub fn unavailable(reason: &str) {
    match verdict(reason, in_ci()) {
        Verdict::Fail(message) => panic!("{message}"),
        Verdict::Skip(message) => eprintln!("{message}"),
    }
}

/// The value of `Ok`, or — for `Err(reason)` — [`unavailable`] and a return from the
/// calling test: `let python = require!(python_with_gc_probes());`.
#[macro_export]
macro_rules! require {
    ($available:expr) => {
        match $available {
            Ok(value) => value,
            Err(reason) => {
                $crate::require::unavailable(&reason);
                return;
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn ci_is_any_value_but_the_usual_negatives() {
        assert!(!is_ci(None));
        for off in ["", " ", "0", "false", "FALSE", "no", " False "] {
            assert!(!is_ci(Some(OsStr::new(off))), "{off:?}");
        }
        for on in ["true", "TRUE", "1", "yes", "github-actions"] {
            assert!(is_ci(Some(OsStr::new(on))), "{on:?}");
        }
        assert!(is_ci(Some(&OsString::from_vec(vec![0xff, 0xfe]))));
    }

    #[test]
    fn in_ci_a_missing_requirement_fails_and_elsewhere_it_skips() {
        let reason = "the kernel has no BTF (/sys/kernel/btf/vmlinux)";
        match verdict(reason, true) {
            Verdict::Fail(m) => assert!(m.contains(reason) && m.contains("CI"), "{m}"),
            other => panic!("CI: {other:?}"),
        }
        assert_eq!(
            verdict(reason, false),
            Verdict::Skip(format!("skipped: {reason}"))
        );
    }

    /// The macro yields the value of `Ok`; on `Err` it returns from the test outside CI
    /// and fails it in CI (whichever this run is).
    #[test]
    fn require_yields_the_value_or_leaves_the_test() {
        fn test_body(available: Result<u32, String>, ran: &mut Option<u32>) {
            let value = crate::require!(available);
            *ran = Some(value);
        }
        let mut ran = None;
        test_body(Ok(7), &mut ran);
        assert_eq!(ran, Some(7));
        let missing = || {
            let mut ran = None;
            test_body(Err("no such tool".to_owned()), &mut ran);
            ran
        };
        if in_ci() {
            assert!(std::panic::catch_unwind(missing).is_err(), "CI: no failure");
        } else {
            assert_eq!(missing(), None, "the test body went on");
        }
    }
}
