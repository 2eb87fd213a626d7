//! The eBPF suite: the eBPF probes (tcp, socket, io, proc) under the daemon and offline,
//! against real traffic, block I/O and workloads; root and a kernel that loads BPF
//! ([`gala_e2e::ebpf::bpf_usable`]: a test that cannot load BPF fails in CI and is skipped
//! elsewhere).
//!
//! One module per file of `tests/e2e/`; `docs/testing.md` says how the suites are organised.
//! Runs alone ([`gala_e2e::gate::exclusive`]): `io::a_full_ring_buffer_is_counted_and_logged`
//! (20 s of back-to-back O_DIRECT reads, a busy core beside the timing checks of `proc`).

#[path = "../e2e/endpoint.rs"]
mod endpoint;
#[path = "../e2e/io.rs"]
mod io;
#[path = "../e2e/plan_report.rs"]
mod plan_report;
#[path = "../e2e/proc.rs"]
mod proc;
#[path = "../e2e/tcp.rs"]
mod tcp;
