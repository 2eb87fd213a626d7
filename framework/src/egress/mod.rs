//! Egress: the ways data leaves the daemon (Prometheus endpoint, metric, event and meta log files, Kafka).
pub mod event;
pub mod http;
pub mod json;
pub mod kafka;
pub mod kafka_records;
pub mod metadata;
pub mod metric_log;
pub mod outputs;
pub mod prometheus;
