//! The containers suite: real container runtimes (runc, containerd, Docker) on this machine,
//! and what the daemon and its probes make of the processes inside them.
//!
//! One module per file of `tests/e2e/`; `docs/testing.md` says how the suites are organised.

#[path = "../e2e/container_probe.rs"]
mod container_probe;
#[path = "../e2e/containers.rs"]
mod containers;
#[path = "../e2e/labels.rs"]
mod labels;
#[path = "../e2e/runtimes.rs"]
mod runtimes;
