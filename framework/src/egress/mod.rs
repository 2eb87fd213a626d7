//! Egress: the ways data leaves the daemon (Prometheus endpoint, metric log files).
pub mod http;
pub mod prometheus;
pub mod logfile;
pub mod json;
pub mod metric_log;
