//! Egress: the ways data leaves the daemon (Prometheus endpoint, metric log files).
pub mod http;
pub mod json;
pub mod logfile;
pub mod metric_log;
pub mod prometheus;
