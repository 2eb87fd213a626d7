//! End-to-end tests of the tcp eBPF probe (being written).
