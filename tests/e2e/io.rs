//! End-to-end tests of the io eBPF probe (being written).
