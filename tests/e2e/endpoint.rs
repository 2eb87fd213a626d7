//! End-to-end tests of the endpoint eBPF probe (being written).
