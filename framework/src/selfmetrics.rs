//! The daemon's own metrics (`gala_gopher_daemon_*`), served beside the probe data: every
//! family's name, type, labels and HELP text in [`FAMILIES`], and one typed function per family
//! that returns its handle. No other module names a self-metric.
//!
//! The functions return [`Counter`]/[`Gauge`]/[`Histogram`] handles rather than recording a
//! value: a hot path (ingress, Kafka delivery) registers its handles once and then only
//! increments them.

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution with fixed buckets.
    Histogram,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One family of self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names, in the order the recording function takes them.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

/// Records of a probe stored in the imdb.
pub const RECORDS_RECEIVED: Family = Family {
    name: "gala_gopher_daemon_records_received_total",
    kind: Kind::Counter,
    labels: &["probe"],
    help: "Records from a probe stored in the in-memory DB",
};
/// Lines of a probe dropped by ingress.
pub const RECORDS_DROPPED: Family = Family {
    name: "gala_gopher_daemon_records_dropped_total",
    kind: Kind::Counter,
    labels: &["probe", "reason"],
    help: "Lines from a probe dropped, by reason",
};
/// Series in the imdb (set at each scrape).
pub const IMDB_SERIES: Family = Family {
    name: "gala_gopher_daemon_imdb_series",
    kind: Kind::Gauge,
    labels: &[],
    help: "Series held in the in-memory DB",
};
/// Series aged out of the imdb.
pub const IMDB_SERIES_EXPIRED: Family = Family {
    name: "gala_gopher_daemon_imdb_series_expired_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Series removed because they were not reported within imdb.record_timeout",
};
/// Time to render `/metrics`.
pub const SCRAPE_DURATION: Family = Family {
    name: "gala_gopher_daemon_scrape_duration_seconds",
    kind: Kind::Histogram,
    labels: &[],
    help: "Time to render one /metrics response",
};
/// Records written to the metric log.
pub const METRIC_LOG_RECORDS: Family = Family {
    name: "gala_gopher_daemon_metric_log_records_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Records written to the metric log files (metric.out_channel logs/json)",
};
/// Failed writes of the metric log.
pub const METRIC_LOG_ERRORS: Family = Family {
    name: "gala_gopher_daemon_metric_log_errors_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Failed writes of the metric log files",
};
/// Automatic restarts of a probe.
pub const PROBE_RESTARTS: Family = Family {
    name: "gala_gopher_daemon_probe_restarts_total",
    kind: Kind::Counter,
    labels: &["probe"],
    help: "Automatic restarts of a probe after it exited on its own",
};
/// Whether a probe's process runs.
pub const PROBE_UP: Family = Family {
    name: "gala_gopher_daemon_probe_up",
    kind: Kind::Gauge,
    labels: &["probe"],
    help: "Whether the probe's process runs (1) or not (0)",
};
/// Failed connections of the HTTP(S) listeners.
pub const HTTP_CONNECTION_FAILURES: Family = Family {
    name: "gala_gopher_daemon_http_connection_failures_total",
    kind: Kind::Counter,
    labels: &["server", "stage"],
    help: "Connections of an HTTP(S) listener that failed, by server and stage (accept, tls)",
};
/// Metadata messages published.
pub const METADATA_MESSAGES: Family = Family {
    name: "gala_gopher_daemon_metadata_messages_total",
    kind: Kind::Counter,
    labels: &["channel", "outcome"],
    help: "Metadata messages (entity descriptions) published, by channel and outcome",
};
/// What happened to a probe's events.
pub const EVENTS: Family = Family {
    name: "gala_gopher_daemon_events_total",
    kind: Kind::Counter,
    labels: &["probe", "outcome"],
    help: "Events of a probe, by outcome (written, suppressed, dropped)",
};
/// Why a probe's events were dropped (event log only).
pub const EVENTS_DROPPED: Family = Family {
    name: "gala_gopher_daemon_events_dropped_total",
    kind: Kind::Counter,
    labels: &["probe", "reason"],
    help: "Events of a probe dropped by the event log, by reason (queue_full, write_error, closed)",
};
/// What happened to Kafka messages.
pub const KAFKA_MESSAGES: Family = Family {
    name: "gala_gopher_daemon_kafka_messages_total",
    kind: Kind::Counter,
    labels: &["channel", "outcome"],
    help: "Kafka messages, by channel and outcome (queued, delivered, dropped)",
};
/// Why Kafka messages were dropped.
pub const KAFKA_DROPPED: Family = Family {
    name: "gala_gopher_daemon_kafka_dropped_total",
    kind: Kind::Counter,
    labels: &["channel", "reason"],
    help: "Kafka messages dropped, by channel and reason",
};
/// Kafka messages waiting for delivery.
pub const KAFKA_QUEUE_DEPTH: Family = Family {
    name: "gala_gopher_daemon_kafka_queue_depth",
    kind: Kind::Gauge,
    labels: &["channel"],
    help: "Kafka messages handed to librdkafka and not yet delivered or dropped, by channel",
};

/// Every family, each once.
pub const FAMILIES: [Family; 16] = [
    RECORDS_RECEIVED,
    RECORDS_DROPPED,
    IMDB_SERIES,
    IMDB_SERIES_EXPIRED,
    SCRAPE_DURATION,
    METRIC_LOG_RECORDS,
    METRIC_LOG_ERRORS,
    PROBE_RESTARTS,
    PROBE_UP,
    HTTP_CONNECTION_FAILURES,
    METADATA_MESSAGES,
    EVENTS,
    EVENTS_DROPPED,
    KAFKA_MESSAGES,
    KAFKA_DROPPED,
    KAFKA_QUEUE_DEPTH,
];

/// Buckets of [`SCRAPE_DURATION`], seconds.
const SCRAPE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The exporter with the buckets of every histogram (without buckets a histogram would be
/// rendered as a summary).
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(SCRAPE_DURATION.name.to_string()),
            &SCRAPE_BUCKETS,
        )
        .expect("the bucket list is not empty")
}

/// Installs the process-wide metrics recorder, with the HELP text of every family, and returns
/// the handle that renders it. Returns `None` if a recorder is already installed (only in
/// tests running several daemons).
pub fn install() -> Option<PrometheusHandle> {
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

/// Registers the `# HELP` text of every family with the current recorder.
fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
}

/// [`RECORDS_RECEIVED`] of `probe`.
pub fn records_received(probe: &str) -> Counter {
    metrics::counter!(RECORDS_RECEIVED.name, "probe" => probe.to_owned())
}

/// [`RECORDS_DROPPED`] of `probe` for `reason` (an ingress `DropReason` label).
pub fn records_dropped(probe: &str, reason: &'static str) -> Counter {
    metrics::counter!(RECORDS_DROPPED.name, "probe" => probe.to_owned(), "reason" => reason)
}

/// [`IMDB_SERIES`].
pub fn imdb_series() -> Gauge {
    metrics::gauge!(IMDB_SERIES.name)
}

/// [`IMDB_SERIES_EXPIRED`].
pub fn imdb_series_expired() -> Counter {
    metrics::counter!(IMDB_SERIES_EXPIRED.name)
}

/// [`SCRAPE_DURATION`], recorded in seconds.
pub fn scrape_duration() -> Histogram {
    metrics::histogram!(SCRAPE_DURATION.name)
}

/// [`METRIC_LOG_RECORDS`].
pub fn metric_log_records() -> Counter {
    metrics::counter!(METRIC_LOG_RECORDS.name)
}

/// [`METRIC_LOG_ERRORS`].
pub fn metric_log_errors() -> Counter {
    metrics::counter!(METRIC_LOG_ERRORS.name)
}

/// [`PROBE_RESTARTS`] of `probe`.
pub fn probe_restarts(probe: &str) -> Counter {
    metrics::counter!(PROBE_RESTARTS.name, "probe" => probe.to_owned())
}

/// [`PROBE_UP`] of `probe`.
pub fn probe_up(probe: &str) -> Gauge {
    metrics::gauge!(PROBE_UP.name, "probe" => probe.to_owned())
}

/// [`HTTP_CONNECTION_FAILURES`] of listener `server` ("metrics server", "REST server") at
/// `stage` (`accept`, `tls`).
pub fn http_connection_failures(server: &'static str, stage: &'static str) -> Counter {
    metrics::counter!(HTTP_CONNECTION_FAILURES.name, "server" => server, "stage" => stage)
}

/// [`METADATA_MESSAGES`] of `channel` (`logs`, `kafka`) with `outcome` (`written`,
/// `write_error`).
pub fn metadata_messages(channel: &'static str, outcome: &'static str) -> Counter {
    metrics::counter!(METADATA_MESSAGES.name, "channel" => channel, "outcome" => outcome)
}

/// [`EVENTS`] of `probe` with `outcome` (`written`, `suppressed`, `dropped`).
pub fn events(probe: &str, outcome: &'static str) -> Counter {
    metrics::counter!(EVENTS.name, "probe" => probe.to_owned(), "outcome" => outcome)
}

/// [`EVENTS_DROPPED`] of `probe` for `reason` (`queue_full`, `write_error`, `closed`).
pub fn events_dropped(probe: &str, reason: &'static str) -> Counter {
    metrics::counter!(EVENTS_DROPPED.name, "probe" => probe.to_owned(), "reason" => reason)
}

/// [`KAFKA_MESSAGES`] of `channel` (`metric`, `event`, `meta`) with `outcome` (`queued`,
/// `delivered`, `dropped`).
pub fn kafka_messages(channel: &'static str, outcome: &'static str) -> Counter {
    metrics::counter!(KAFKA_MESSAGES.name, "channel" => channel, "outcome" => outcome)
}

/// [`KAFKA_DROPPED`] of `channel` for `reason` (a Kafka `DropReason` label).
pub fn kafka_dropped(channel: &'static str, reason: &'static str) -> Counter {
    metrics::counter!(KAFKA_DROPPED.name, "channel" => channel, "reason" => reason)
}

/// [`KAFKA_QUEUE_DEPTH`] of `channel`.
pub fn kafka_queue_depth(channel: &'static str) -> Gauge {
    metrics::gauge!(KAFKA_QUEUE_DEPTH.name, "channel" => channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed_and_counters_end_in_total() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a family is listed twice");
        for f in FAMILIES {
            assert!(f.name.starts_with("gala_gopher_daemon_"), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(!f.help.is_empty(), "{}", f.name);
        }
    }

    /// Every recording function writes the family it documents, with the declared labels,
    /// and the exposition has its HELP and TYPE.
    #[test]
    fn every_function_records_its_described_family() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            records_received("p").increment(1);
            records_dropped("p", "field_count").increment(1);
            imdb_series().set(1.0);
            imdb_series_expired().increment(1);
            scrape_duration().record(0.002);
            metric_log_records().increment(1);
            metric_log_errors().increment(1);
            probe_restarts("p").increment(1);
            probe_up("p").set(1.0);
            http_connection_failures("REST server", "tls").increment(1);
            metadata_messages("logs", "written").increment(1);
            events("p", "written").increment(1);
            events_dropped("p", "queue_full").increment(1);
            kafka_messages("metric", "queued").increment(1);
            kafka_dropped("metric", "queue_full").increment(1);
            kafka_queue_depth("metric").set(1.0);
        });
        let text = handle.render();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        assert_eq!(
            types.len(),
            FAMILIES.len(),
            "one function per family:\n{text}"
        );
        for f in FAMILIES {
            let help = format!("# HELP {} {}", f.name, f.help);
            let kind = format!("# TYPE {} {}", f.name, f.kind.as_str());
            assert!(text.lines().any(|l| l == help), "{help:?} missing:\n{text}");
            assert!(text.lines().any(|l| l == kind), "{kind:?} missing:\n{text}");
            let sample = text
                .lines()
                .find(|l| {
                    l.strip_prefix(f.name)
                        .is_some_and(|r| r.starts_with([' ', '{']) || r.starts_with("_bucket"))
                })
                .unwrap_or_else(|| panic!("no sample of {}:\n{text}", f.name));
            for label in f.labels {
                assert!(sample.contains(&format!("{label}=\"")), "{sample}");
            }
            let labelled = sample.contains('{') && !sample.contains("{le=");
            assert_eq!(labelled, !f.labels.is_empty(), "{sample}");
        }
    }
}
