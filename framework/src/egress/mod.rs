//! Egress: the ways data leaves the daemon (Prometheus endpoint, metric and event log files).
pub mod event;
pub mod http;
pub mod json;
pub mod logfile;
pub mod metric_log;
pub mod prometheus;
