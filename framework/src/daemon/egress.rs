//! Starts the egress channels the configuration asks for (docs/reference/config-and-egress.md).

use std::sync::Arc;
use std::time::Duration;

use gala_meta::Registry;
use metrics_exporter_prometheus::PrometheusHandle;

use super::{listen, DaemonError, Tasks};
use crate::config::{Config, EventChannel, MetricChannel};
use crate::egress::event::{EventLogConfig, EventLogWriter, EventSink};
use crate::egress::http::{self, MetricsEndpoint};
use crate::egress::kafka::KafkaProducer;
use crate::egress::kafka_records::{EventKafka, MetricKafka};
use crate::egress::metadata::{self, KafkaMetaOutput, MetaLogFile, MetadataPublisher};
use crate::egress::metric_log::{MetricLogFormat, MetricLogWriter};
use crate::egress::outputs::Channels;
use crate::egress::prometheus::ScrapeRenderer;
use crate::identity::HostIdentity;
use crate::imdb::Imdb;
use crate::labels::Labels;

/// Starts `metric.out_channel`: the metrics endpoint (`web_server`, also with `kafka`, where it
/// serves the self-metrics, Kafka delivery counters among them, and the latest series; the
/// original had no endpoint then) or the metric log writer. Returns the endpoint, if any.
pub(super) async fn start_metric_channel(
    config: &Config,
    imdb: &Arc<Imdb>,
    machine_id: &str,
    self_metrics: &Option<PrometheusHandle>,
    labels: &Arc<Labels>,
    tasks: &mut Tasks,
) -> Result<Option<Arc<MetricsEndpoint>>, DaemonError> {
    let legacy = config.web_server.legacy_histogram;
    let format = match config.metric.out_channel {
        MetricChannel::WebServer | MetricChannel::Kafka => {
            let server = &config.web_server.server;
            let (listener, tls, url) = listen(server, "web_server", "metrics server").await?;
            let renderer = ScrapeRenderer::new(imdb.registry(), machine_id, legacy)
                .with_labels(labels.clone());
            let endpoint = MetricsEndpoint::new(imdb.clone(), renderer, self_metrics.clone());
            let endpoint = Arc::new(endpoint);
            tracing::info!("metrics on {url}/metrics");
            let serve = http::serve(listener, tls, endpoint.clone(), tasks.stopped());
            tasks.serve("metrics server", serve);
            return Ok(Some(endpoint));
        }
        MetricChannel::Logs => MetricLogFormat::Text,
        MetricChannel::Json => MetricLogFormat::Json,
        MetricChannel::Off => {
            tracing::info!("metric.out_channel = \"\": metrics are stored but not exported");
            return Ok(None);
        }
    };
    let writer = MetricLogWriter::new(
        imdb.clone(),
        format,
        config.logs.metric_dir.clone(),
        config.logs.metric_total_size,
        machine_id.to_owned(),
        legacy,
    )?
    .with_labels(labels.clone());
    let stop = tasks.stop_metric_log.subscribe();
    tasks.metric_log = Some(tokio::spawn(writer.run(Duration::from_secs(1), stop)));
    Ok(None)
}

/// The Kafka channels fed by ingress: metric records (`metric.out_channel = "kafka"`), events
/// and log lines (`event.out_channel = "kafka"`).
pub(super) fn kafka_channels(
    config: &Config,
    identity: &HostIdentity,
) -> Result<Channels, DaemonError> {
    let mut channels = Channels::default();
    let broker = &config.kafka.kafka_broker;
    if config.metric.out_channel == MetricChannel::Kafka {
        let topic = &config.metric.kafka_topic;
        let producer = KafkaProducer::new(&config.kafka, topic, "metric")?;
        tracing::info!("metrics to Kafka topic {topic} at {broker}");
        let system_uuid = identity.system_uuid.clone();
        channels.metric_kafka = Some(Arc::new(MetricKafka::new(Arc::new(producer), system_uuid)));
    }
    if config.event.out_channel == EventChannel::Kafka {
        let topic = &config.event.kafka_topic;
        let producer = KafkaProducer::new(&config.kafka, topic, "event")?;
        tracing::info!("events to Kafka topic {topic} at {broker}");
        let events = EventKafka::new(Arc::new(producer), identity.clone(), config.event.timeout);
        channels.event_kafka = Some(Arc::new(events));
    }
    Ok(channels)
}

/// Starts the event log when `event.out_channel = "logs"`: the sink for ingress and the writer
/// for the shutdown. With `""` ingress counts events as `no_route`.
pub(super) fn start_event_log(
    config: &Config,
    machine_id: &str,
) -> Result<Option<(EventSink, EventLogWriter)>, DaemonError> {
    if config.event.out_channel != EventChannel::Logs {
        return Ok(None);
    }
    let dir = config.logs.event_dir.clone();
    let log_config = EventLogConfig::new(dir.clone(), machine_id.to_owned(), config.event.timeout);
    let started = EventSink::start(log_config).map_err(DaemonError::EventLog)?;
    tracing::info!("events to {}", dir.display());
    Ok(Some(started))
}

/// Starts the metadata publisher for `meta.out_channel` (`logs`: the meta log in
/// `logs.meta_dir`; `kafka`: the meta topic); none when the channel is off.
pub(super) fn start_metadata(
    config: &Config,
    registry: &Arc<Registry>,
) -> Result<Option<MetadataPublisher>, DaemonError> {
    let output: Box<dyn metadata::MetadataOutput> = match config.meta.out_channel {
        EventChannel::Logs => {
            let file = MetaLogFile::open(&config.logs.meta_dir, metadata::MAX_FILE_BYTES)
                .map_err(DaemonError::MetaLog)?;
            tracing::info!("metadata to {}", file.path().display());
            Box::new(file)
        }
        EventChannel::Kafka => {
            let topic = &config.meta.kafka_topic;
            let producer =
                KafkaProducer::new(&config.kafka, topic, "meta").map_err(DaemonError::MetaKafka)?;
            tracing::info!("metadata to Kafka topic {topic}");
            Box::new(KafkaMetaOutput::new(producer))
        }
        EventChannel::Off => return Ok(None),
    };
    let publisher = MetadataPublisher::start(registry.clone(), output, metadata::PERIOD)
        .map_err(DaemonError::Metadata)?;
    Ok(Some(publisher))
}
