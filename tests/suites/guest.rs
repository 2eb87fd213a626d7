//! The guest suite: end-to-end tests of what only other kernels have (kprobes and the fields
//! that need them, fallback hooks), run inside qemu guests by `./dev.sh test-kernels`
//! (`tests/kernels/`, docs/kernels.md), never on the host: a kernel without kprobes fails
//! them ([`gala_e2e::require_kprobes`]), in CI and out.
//!
//! One module per file of `tests/e2e/`, as in the other suites.

#[path = "../e2e/tcp_kprobe.rs"]
mod tcp_kprobe;
