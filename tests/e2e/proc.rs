//! End-to-end tests of the proc eBPF probe (being written).
