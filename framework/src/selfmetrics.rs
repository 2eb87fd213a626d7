//! The daemon's own metrics (`gala_gopher_daemon_*`), served beside the probe data: every
//! family's name, type, labels and HELP text in [`FAMILIES`], and one typed function per family
//! that returns its handle, both declared by one table row (`families!`). No other module names
//! a self-metric.
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

/// Declares the families from one table: per family its constant (name, type, HELP; the
/// labels are the parameter names of its function) and its typed function, which returns the
/// handle with those labels; then [`FAMILIES`], in table order. A `&str` label value is
/// copied, a `&'static str` one is not.
macro_rules! families {
    (@handle Counter, $($key:tt)*) => { metrics::counter!($($key)*) };
    (@handle Gauge, $($key:tt)*) => { metrics::gauge!($($key)*) };
    (@handle Histogram, $($key:tt)*) => { metrics::histogram!($($key)*) };
    (@value $arg:ident) => { $arg.to_owned() };
    (@value $arg:ident $lt:lifetime) => { $arg };
    ($(
        $(#[$const_doc:meta])*
        const $family:ident: $kind:ident = $name:literal, $help:literal;
        $(#[$fn_doc:meta])*
        fn $function:ident($($arg:ident: &$($lt:lifetime)? str),*);
    )*) => {
        $(
            $(#[$const_doc])*
            pub const $family: Family = Family {
                name: $name,
                kind: Kind::$kind,
                labels: &[$(stringify!($arg)),*],
                help: $help,
            };

            $(#[$fn_doc])*
            pub fn $function($($arg: &$($lt)? str),*) -> $kind {
                families!(
                    @handle $kind,
                    $family.name $(, stringify!($arg) => families!(@value $arg $($lt)?))*
                )
            }
        )*

        /// Every family, each once.
        pub const FAMILIES: [Family; [$($name),*].len()] = [$($family),*];
    };
}

families! {
    /// Records of a probe stored in the imdb.
    const RECORDS_RECEIVED: Counter = "gala_gopher_daemon_records_received_total",
        "Records from a probe stored in the in-memory DB";
    /// [`RECORDS_RECEIVED`] of `probe`.
    fn records_received(probe: &str);

    /// Lines of a probe dropped by ingress.
    const RECORDS_DROPPED: Counter = "gala_gopher_daemon_records_dropped_total",
        "Lines from a probe dropped, by reason";
    /// [`RECORDS_DROPPED`] of `probe` for `reason` (an ingress `DropReason` label).
    fn records_dropped(probe: &str, reason: &'static str);

    /// Label values repaired for the exposition.
    const LABEL_VALUES_REPAIRED: Counter = "gala_gopher_daemon_label_values_repaired_total",
        "Label values from a probe with bytes Prometheus refuses (invalid UTF-8, NUL, CR), exported with U+FFFD in their place, by reason";
    /// [`LABEL_VALUES_REPAIRED`] of `probe` for `reason` (a `labeltext::Flaw` label).
    fn label_values_repaired(probe: &str, reason: &'static str);

    /// Series in the imdb (set at each scrape).
    const IMDB_SERIES: Gauge = "gala_gopher_daemon_imdb_series",
        "Series held in the in-memory DB";
    /// [`IMDB_SERIES`].
    fn imdb_series();

    /// Series aged out of the imdb.
    const IMDB_SERIES_EXPIRED: Counter = "gala_gopher_daemon_imdb_series_expired_total",
        "Series removed because they were not reported within imdb.record_timeout";
    /// [`IMDB_SERIES_EXPIRED`].
    fn imdb_series_expired();

    /// Time to render `/metrics`.
    const SCRAPE_DURATION: Histogram = "gala_gopher_daemon_scrape_duration_seconds",
        "Time to render one /metrics response";
    /// [`SCRAPE_DURATION`], recorded in seconds.
    fn scrape_duration();

    /// Records written to the metric log.
    const METRIC_LOG_RECORDS: Counter = "gala_gopher_daemon_metric_log_records_total",
        "Records written to the metric log files (metric.out_channel logs/json)";
    /// [`METRIC_LOG_RECORDS`].
    fn metric_log_records();

    /// Failed writes of the metric log.
    const METRIC_LOG_ERRORS: Counter = "gala_gopher_daemon_metric_log_errors_total",
        "Failed writes of the metric log files";
    /// [`METRIC_LOG_ERRORS`].
    fn metric_log_errors();

    /// Automatic restarts of a probe.
    const PROBE_RESTARTS: Counter = "gala_gopher_daemon_probe_restarts_total",
        "Automatic restarts of a probe after it exited on its own";
    /// [`PROBE_RESTARTS`] of `probe`.
    fn probe_restarts(probe: &str);

    /// Whether a probe's process runs.
    const PROBE_UP: Gauge = "gala_gopher_daemon_probe_up",
        "Whether the probe's process runs (1) or not (0)";
    /// [`PROBE_UP`] of `probe`.
    fn probe_up(probe: &str);

    /// CPU time of a probe's process tree.
    const PROBE_CPU_SECONDS: Gauge = "gala_gopher_daemon_probe_cpu_seconds",
        "CPU time used by the processes of the probe's cgroup since the daemon created it (rises monotonically while the probe is configured; use rate())";
    /// [`PROBE_CPU_SECONDS`] of `probe`.
    fn probe_cpu_seconds(probe: &str);

    /// Resident memory of a probe's process tree.
    const PROBE_MEMORY_BYTES: Gauge = "gala_gopher_daemon_probe_memory_bytes",
        "Resident memory of the processes in the probe's cgroup";
    /// [`PROBE_MEMORY_BYTES`] of `probe`.
    fn probe_memory_bytes(probe: &str);

    /// Failed connections of the HTTP(S) listeners.
    const HTTP_CONNECTION_FAILURES: Counter = "gala_gopher_daemon_http_connection_failures_total",
        "Connections of an HTTP(S) listener that failed, by server and stage (accept, tls)";
    /// [`HTTP_CONNECTION_FAILURES`] of listener `server` ("metrics server", "REST server") at
    /// `stage` (`accept`, `tls`).
    fn http_connection_failures(server: &'static str, stage: &'static str);

    /// Metadata messages published.
    const METADATA_MESSAGES: Counter = "gala_gopher_daemon_metadata_messages_total",
        "Metadata messages (entity descriptions) published, by channel and outcome";
    /// [`METADATA_MESSAGES`] of `channel` (`logs`, `kafka`) with `outcome` (`written`,
    /// `write_error`).
    fn metadata_messages(channel: &'static str, outcome: &'static str);

    /// What happened to a probe's events.
    const EVENTS: Counter = "gala_gopher_daemon_events_total",
        "Events of a probe, by outcome (written, suppressed, dropped)";
    /// [`EVENTS`] of `probe` with `outcome` (`written`, `suppressed`, `dropped`).
    fn events(probe: &str, outcome: &'static str);

    /// Why a probe's events were dropped (event log only).
    const EVENTS_DROPPED: Counter = "gala_gopher_daemon_events_dropped_total",
        "Events of a probe dropped by the event log, by reason (queue_full, write_error, closed)";
    /// [`EVENTS_DROPPED`] of `probe` for `reason` (`queue_full`, `write_error`, `closed`).
    fn events_dropped(probe: &str, reason: &'static str);

    /// What happened to Kafka messages.
    const KAFKA_MESSAGES: Counter = "gala_gopher_daemon_kafka_messages_total",
        "Kafka messages, by channel and outcome (queued, delivered, dropped)";
    /// [`KAFKA_MESSAGES`] of `channel` (`metric`, `event`, `meta`) with `outcome` (`queued`,
    /// `delivered`, `dropped`).
    fn kafka_messages(channel: &'static str, outcome: &'static str);

    /// Why Kafka messages were dropped.
    const KAFKA_DROPPED: Counter = "gala_gopher_daemon_kafka_dropped_total",
        "Kafka messages dropped, by channel and reason";
    /// [`KAFKA_DROPPED`] of `channel` for `reason` (a Kafka `DropReason` label).
    fn kafka_dropped(channel: &'static str, reason: &'static str);

    /// Kafka messages waiting for delivery.
    const KAFKA_QUEUE_DEPTH: Gauge = "gala_gopher_daemon_kafka_queue_depth",
        "Kafka messages handed to librdkafka and not yet delivered or dropped, by channel";
    /// [`KAFKA_QUEUE_DEPTH`] of `channel`.
    fn kafka_queue_depth(channel: &'static str);
}
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
            label_values_repaired("p", "nul").increment(1);
            imdb_series().set(1.0);
            imdb_series_expired().increment(1);
            scrape_duration().record(0.002);
            metric_log_records().increment(1);
            metric_log_errors().increment(1);
            probe_restarts("p").increment(1);
            probe_up("p").set(1.0);
            probe_cpu_seconds("p").set(1.0);
            probe_memory_bytes("p").set(1.0);
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
