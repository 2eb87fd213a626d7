//! SIGTERM turns into a stop request: `wait` returns `Stop` at once and keeps doing so. In a
//! test binary of its own, because the signal goes to the whole process.

use std::time::{Duration, Instant};

use gala_probe_sdk::{Probe, Wake};

#[test]
fn sigterm_stops_the_probe() {
    std::env::remove_var("GALA_GOPHER_IPC_FD");
    let mut probe = Probe::connect().expect("offline probe");
    assert!(!probe.is_connected());
    assert!(probe.running());
    let killer = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
    });
    let start = Instant::now();
    assert_eq!(probe.wait(Duration::from_secs(30)), Wake::Stop);
    assert!(start.elapsed() < Duration::from_secs(10));
    killer.join().expect("killer");
    assert!(!probe.running());
    assert_eq!(probe.wait(Duration::from_secs(30)), Wake::Stop);
}
