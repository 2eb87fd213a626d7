//! The daemon's own metrics (`gala_gopher_daemon_*`), served beside the probe data.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Name of the scrape duration histogram.
pub const SCRAPE_DURATION: &str = "gala_gopher_daemon_scrape_duration_seconds";

/// Installs the process-wide metrics recorder and returns the handle that renders it.
/// Returns `None` if a recorder is already installed (only in tests running several daemons).
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(SCRAPE_DURATION.to_string()),
            &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

/// Registers the `# HELP` texts of the self-metrics.
fn describe() {
    metrics::describe_counter!(
        "gala_gopher_daemon_records_received_total",
        "Records from a probe stored in the in-memory DB"
    );
    metrics::describe_counter!(
        "gala_gopher_daemon_records_dropped_total",
        "Lines from a probe dropped, by reason"
    );
    metrics::describe_gauge!(
        "gala_gopher_daemon_imdb_series",
        "Series held in the in-memory DB"
    );
    metrics::describe_counter!(
        "gala_gopher_daemon_imdb_series_expired_total",
        "Series removed because they were not reported within imdb.record_timeout"
    );
    metrics::describe_histogram!(SCRAPE_DURATION, "Time to render one /metrics response");
    metrics::describe_counter!(
        "gala_gopher_daemon_metric_log_records_total",
        "Records written to the metric log files (metric.out_channel logs/json)"
    );
    metrics::describe_counter!(
        "gala_gopher_daemon_metric_log_errors_total",
        "Failed writes of the metric log files"
    );
}
