//! The gate between the tests of one test binary: a test that must have the machine to
//! itself takes it [`exclusive`]ly; everything else holds it [`shared`].
//!
//! The suites of `tests/suites/` run their tests on parallel threads (libtest's default, one
//! per core), so tests of different modules run side by side. Most do not mind, but a test
//! that loads the cores (50 REST clients, a spinning process, a tight I/O loop) would take
//! the margins of the timing checks running beside it, and its own figures would be skewed.
//! Such a test calls [`exclusive`] first and runs once no other test of its binary holds the
//! gate; the others wait meanwhile. Every [`crate::Sandbox`] and every offline eBPF probe
//! ([`crate::ebpf::OfflineProbe`]) holds the shared side for as long as it lives, so a test
//! needs no call of its own unless it starts daemons or probes some other way.
//!
//! Shared holds are counted per thread and nest: a test that holds the gate can take it
//! again even while an exclusive test waits (no deadlock), while a test that holds nothing
//! yet waits for the exclusive one. An exclusive holder's own shared holds pass through. Two
//! rules follow: [`exclusive`] must come before anything that holds the gate in its test,
//! and a thread that a test spawns must not make a sandbox while the test waits for it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Who holds the gate.
#[derive(Default)]
struct State {
    /// Threads holding it shared, with how many holds each.
    shared: Vec<(ThreadId, usize)>,
    /// The thread holding it exclusively.
    exclusive: Option<ThreadId>,
    /// How many threads wait to hold it exclusively.
    waiting: usize,
}

/// A gate: its state and the condition variable its waiters sleep on.
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

/// The gate of this test binary.
static GATE: Gate = Gate::new();

/// How long [`exclusive`] waits before it fails the test: far longer than any test of the
/// suites runs, so reaching it means a hold that is never released.
const EXCLUSIVE_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// Takes the shared side of this binary's gate (see the module documentation).
pub fn shared() -> Guard {
    GATE.shared()
}

/// Takes this binary's gate exclusively: waits until no other test holds it, then keeps
/// every test that does not hold it yet waiting until the guard is dropped.
pub fn exclusive() -> Guard {
    GATE.exclusive(EXCLUSIVE_PATIENCE)
}

impl Gate {
    /// A gate nobody holds.
    pub const fn new() -> Gate {
        Gate {
            state: Mutex::new(State {
                shared: Vec::new(),
                exclusive: None,
                waiting: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the shared side of this gate.
    pub fn shared(&'static self) -> Guard {
        let me = std::thread::current().id();
        let mut s = self.lock();
        if s.exclusive == Some(me) {
            return Guard {
                gate: self,
                hold: Hold::Inside,
            };
        }
        if let Some(entry) = s.shared.iter_mut().find(|(t, _)| *t == me) {
            entry.1 += 1;
            return Guard {
                gate: self,
                hold: Hold::Shared(me),
            };
        }
        while s.exclusive.is_some() || s.waiting > 0 {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.shared.push((me, 1));
        Guard {
            gate: self,
            hold: Hold::Shared(me),
        }
    }

    /// Takes this gate exclusively, failing the test after `patience`.
    pub fn exclusive(&'static self, patience: Duration) -> Guard {
        let me = std::thread::current().id();
        let mut s = self.lock();
        let holds = s.exclusive == Some(me) || s.shared.iter().any(|(t, _)| *t == me);
        if holds {
            drop(s);
            panic!("gate::exclusive() must come first in a test: this test already holds the gate");
        }
        s.waiting += 1;
        let deadline = Instant::now() + patience;
        while s.exclusive.is_some() || !s.shared.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.waiting -= 1;
                drop(s);
                self.changed.notify_all();
                panic!(
                    "the gate stayed held for {patience:?}: a sandbox or probe that never ends?"
                );
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.waiting -= 1;
        s.exclusive = Some(me);
        Guard {
            gate: self,
            hold: Hold::Exclusive,
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// What a [`Guard`] holds.
#[derive(Debug)]
enum Hold {
    /// One shared hold of this thread.
    Shared(ThreadId),
    /// The exclusive side.
    Exclusive,
    /// A shared hold taken by the exclusive holder: nothing to release.
    Inside,
}

/// A hold on a gate, released when dropped.
#[must_use = "the gate is released when the guard is dropped"]
pub struct Guard {
    gate: &'static Gate,
    hold: Hold,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Guard").field(&self.hold).finish()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        match self.hold {
            Hold::Shared(me) => {
                if let Some(i) = s.shared.iter().position(|(t, _)| *t == me) {
                    s.shared[i].1 -= 1;
                    if s.shared[i].1 == 0 {
                        s.shared.swap_remove(i);
                    }
                }
            }
            Hold::Exclusive => s.exclusive = None,
            Hold::Inside => return,
        }
        drop(s);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    fn gate() -> &'static Gate {
        Box::leak(Box::new(Gate::new()))
    }

    const LONG: Duration = Duration::from_secs(30);

    /// Whether `f` finishes on a thread of its own within `ms` milliseconds.
    fn finishes_within(ms: u64, f: impl FnOnce() + Send + 'static) -> (bool, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        let done = rx.recv_timeout(Duration::from_millis(ms)).is_ok();
        (done, rx)
    }

    #[test]
    fn exclusive_waits_for_shared_holders_and_keeps_new_ones_out() {
        let g = gate();
        let held = g.shared();
        let inside = std::sync::Arc::new(AtomicBool::new(false));
        let flag = inside.clone();
        let (done, exclusive_done) = finishes_within(200, move || {
            let _x = g.exclusive(LONG);
            flag.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            flag.store(false, Ordering::SeqCst);
        });
        assert!(!done, "exclusive while another thread holds the gate");
        // A new shared holder now waits behind the waiting exclusive one.
        let (done, newcomer_done) = finishes_within(200, move || drop(g.shared()));
        assert!(!done, "a new shared holder passed a waiting exclusive one");
        // This thread still holds: it takes the gate again without waiting.
        drop(g.shared());
        drop(held);
        exclusive_done.recv_timeout(LONG).expect("exclusive ran");
        newcomer_done
            .recv_timeout(LONG)
            .expect("the newcomer ran after it");
        assert!(!inside.load(Ordering::SeqCst));
    }

    #[test]
    fn the_exclusive_holder_passes_its_own_shared_holds() {
        let g = gate();
        let x = g.exclusive(LONG);
        let inner = g.shared();
        let (done, other) = finishes_within(200, move || drop(g.shared()));
        assert!(!done, "another thread passed an exclusive hold");
        drop(inner);
        drop(x);
        other.recv_timeout(LONG).expect("the other thread ran");
    }

    #[test]
    fn exclusive_after_a_shared_hold_of_the_same_test_fails_at_once() {
        let g = gate();
        let _held = g.shared();
        let result = std::panic::catch_unwind(|| g.exclusive(LONG));
        assert!(result.is_err());
    }

    #[test]
    fn exclusive_gives_up_after_its_patience() {
        let g = gate();
        let (tx, rx) = mpsc::channel::<()>();
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = g.shared();
            held_tx.send(()).expect("report the hold");
            let _ = rx.recv();
        });
        held_rx.recv().expect("the holder holds");
        let result = std::panic::catch_unwind(|| g.exclusive(Duration::from_millis(100)));
        assert!(result.is_err());
        // Gave up cleanly: a new shared holder is not kept waiting.
        let (done, _) = finishes_within(2000, move || drop(g.shared()));
        assert!(done);
        tx.send(()).expect("release");
        holder.join().expect("holder");
    }
}
