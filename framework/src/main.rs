//! `gala-gopher`: the daemon's command line, start-up and shutdown.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser};
use gala_gopher::config::{
    probes_init_override, Config, EventChannel, Loaded, MetricChannel, DEFAULT_CONFIG_PATH,
};
use gala_gopher::egress::event::{EventLogConfig, EventLogWriter, EventSink};
use gala_gopher::egress::http::{self, MetricsEndpoint};
use gala_gopher::egress::kafka::KafkaProducer;
use gala_gopher::egress::kafka_records::{EventKafka, MetricKafka};
use gala_gopher::egress::metadata::{self, KafkaMetaOutput, MetaLogFile, MetadataPublisher};
use gala_gopher::egress::metric_log::{MetricLogFormat, MetricLogWriter};
use gala_gopher::egress::outputs::Channels;
use gala_gopher::egress::prometheus::ScrapeRenderer;
use gala_gopher::identity::HostIdentity;
use gala_gopher::imdb::{Imdb, ImdbLimits};
use gala_gopher::ingress::Pipeline;
use gala_gopher::manager::{ManagerContext, ProbeManager};
use gala_gopher::probes::{self, init_file, Catalogue, CustomProbe};
use gala_gopher::rest::{CtlApi, RestApi};
use gala_gopher::snooper::ScanRoots;
use gala_gopher::supervisor::{reserve_ipc_fd, SupervisorContext};
use gala_gopher::{clock, logging, selfmetrics};
use gala_gopher::{ctl, server};
use gala_meta::{custom_meta_path, MetaLimits, Registry};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long the shutdown waits for each Kafka channel to deliver what is queued.
const KAFKA_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// gala-gopher: host observability agent (Rust edition).
#[derive(Parser, Debug)]
#[command(name = "gala-gopher", version, disable_version_flag = true)]
struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config_path", visible_alias = "config", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Check the configuration, meta files and custom probes, print a summary and exit.
    #[arg(long)]
    check: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before any thread or child exists: descriptor 3 must stay taken (see reserve_ipc_fd).
    if let Err(e) = reserve_ipc_fd() {
        eprintln!("gala-gopher: reserving descriptor 3: {e}");
        return ExitCode::FAILURE;
    }
    let loaded = match Config::load(&args.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gala-gopher: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(loaded, args.check)),
        Err(e) => Err(e).context("starting the async runtime"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gala-gopher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(loaded: Loaded, check_only: bool) -> Result<()> {
    let config = loaded.config;
    let _log = logging::init(
        config.global.log_level.as_str(),
        (!check_only).then(|| {
            (
                config.logs.debug_dir.clone(),
                config.global.log_file_name.clone(),
            )
        }),
    )?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let custom = probes::custom::load(&config.paths.custom_probes)?;
    let registry = Arc::new(load_registry(&config, &custom)?);
    for w in registry.entity_warnings() {
        tracing::warn!("{w}");
    }
    if check_only {
        println!(
            "configuration OK: {} tables, {} custom probes",
            registry.len(),
            custom.len()
        );
        return Ok(());
    }
    let _pid_lock = lock_pid_file(&config.paths.pid_file())?;
    let host_root =
        std::env::var_os("GOPHER_HOST_PATH").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let identity = HostIdentity::detect(&host_root, &config.paths.machine_id_file)?;
    let machine_id = identity.machine_id();
    tracing::info!(machine_id, tables = registry.len(), "starting");

    let imdb = Arc::new(Imdb::new(
        registry.clone(),
        ImdbLimits {
            max_records: config.imdb.max_records_num,
            record_timeout_ms: config.imdb.record_timeout.as_millis() as u64,
        },
    ));
    let self_metrics = selfmetrics::install();
    let (shutdown_tx, shutdown) = watch::channel(false);
    let legacy = config.web_server.legacy_histogram;
    let mut metrics_endpoint = None;
    let mut channels = Channels::default();
    match config.metric.out_channel {
        // With Kafka the endpoint still serves the daemon's self-metrics (Kafka delivery
        // counters among them) and the latest series; the original had no endpoint then.
        MetricChannel::WebServer | MetricChannel::Kafka => {
            let server = &config.web_server.server;
            let tls = gala_gopher::tls::acceptor(server, "web_server")?;
            let addr = socket_addr(&server.bind_addr, server.port, "web_server")?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics server to {addr}"))?;
            let renderer = ScrapeRenderer::new(&registry, &machine_id, legacy);
            let endpoint = Arc::new(MetricsEndpoint::new(
                imdb.clone(),
                renderer,
                self_metrics.clone(),
            ));
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!("metrics on {scheme}://{addr}/metrics");
            metrics_endpoint = Some(endpoint.clone());
            tokio::spawn(http::serve(listener, tls, endpoint, shutdown.clone()));
        }
        MetricChannel::Logs | MetricChannel::Json => {
            let format = if config.metric.out_channel == MetricChannel::Json {
                MetricLogFormat::Json
            } else {
                MetricLogFormat::Text
            };
            let writer = MetricLogWriter::new(
                imdb.clone(),
                format,
                config.logs.metric_dir.clone(),
                config.logs.metric_total_size,
                machine_id.clone(),
                legacy,
            )?;
            tokio::spawn(writer.run(Duration::from_secs(1), shutdown.clone()));
        }
        MetricChannel::Off => {
            tracing::info!("metric.out_channel = \"\": metrics are stored but not exported");
        }
    }
    if config.metric.out_channel == MetricChannel::Kafka {
        let topic = &config.metric.kafka_topic;
        let producer = KafkaProducer::new(&config.kafka, topic, "metric")?;
        tracing::info!(
            "metrics to Kafka topic {topic} at {}",
            config.kafka.kafka_broker
        );
        channels.metric_kafka = Some(Arc::new(MetricKafka::new(
            Arc::new(producer),
            identity.system_uuid.clone(),
        )));
    }
    if config.event.out_channel == EventChannel::Kafka {
        let topic = &config.event.kafka_topic;
        let producer = KafkaProducer::new(&config.kafka, topic, "event")?;
        tracing::info!(
            "events to Kafka topic {topic} at {}",
            config.kafka.kafka_broker
        );
        channels.event_kafka = Some(Arc::new(EventKafka::new(
            Arc::new(producer),
            identity.clone(),
            config.event.timeout,
        )));
    }

    let (event_sink, event_writer) = start_event_log(&config, &machine_id)?;
    channels.event_log = event_sink;
    let metadata = start_metadata(&config, &registry)?;
    let producers: Vec<_> = [
        channels.metric_kafka.as_ref().map(|m| m.producer().clone()),
        channels.event_kafka.as_ref().map(|e| e.producer().clone()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let max_line_len = config.ingress.max_line_len;
    let pipeline = Arc::new(Pipeline::new(
        imdb.clone(),
        Box::new(channels),
        max_line_len,
    ));

    let catalogue = Catalogue::new(&config.paths.extend_probe_dir, &custom);
    let manager = ProbeManager::new(
        catalogue,
        ManagerContext {
            supervisor: Arc::new(SupervisorContext {
                pipeline,
                config: config.supervisor.clone(),
            }),
            roots: ScanRoots::under_host_root(&host_root),
        },
    );
    if config.global.rest_api_on {
        let server = &config.rest_api_server;
        let tls = gala_gopher::tls::acceptor(server, "rest_api_server")?;
        let addr = socket_addr(&server.bind_addr, server.port, "rest_api_server")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the REST server to {addr}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("REST API on {scheme}://{addr}/<probe>");
        let api = Arc::new(RestApi::new(manager.clone()));
        tokio::spawn(server::serve(
            "REST server",
            listener,
            tls,
            api,
            shutdown.clone(),
        ));
    }
    let ctl = Arc::new(CtlApi::new(manager.clone(), metrics_endpoint));
    match ctl::CtlListener::bind(&config.paths.cmd_socket()) {
        Ok(listener) => {
            tokio::spawn(listener.serve(ctl, shutdown.clone()));
        }
        // gopher-ctl is a convenience: the daemon runs without it (as the original).
        Err(e) => tracing::error!("gopher-ctl socket: {e}"),
    }

    let kept_init_lines = apply_probes_init(&config, &manager).await;
    tokio::spawn(housekeeping(imdb.clone(), self_metrics, shutdown.clone()));
    tokio::spawn(refresh_snoopers(
        manager.clone(),
        config.supervisor.snooper_period,
        shutdown.clone(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // The original ignores SIGHUP; here it also re-sends the metadata.
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = hup.recv() => {
                if let Some(publisher) = &metadata {
                    tracing::info!("SIGHUP: publishing the metadata again");
                    publisher.republish();
                } else {
                    tracing::info!("SIGHUP: ignored (no metadata channel)");
                }
            }
        }
    }
    let _ = shutdown_tx.send(true);
    // What runs now is what the next start brings back.
    let init = &config.paths.probes_init;
    match manager.save(init, &kept_init_lines).await {
        Ok(()) => tracing::info!("saved the probe configuration to {}", init.display()),
        Err(e) => tracing::error!("saving the probe configuration to {}: {e}", init.display()),
    }
    manager.stop_all().await;
    if let Some(writer) = event_writer {
        // Writes what the probes reported up to their end.
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    }
    // Delivers what the probes reported up to their end, waiting at most KAFKA_FLUSH_TIMEOUT.
    if !producers.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            for p in producers {
                p.flush(KAFKA_FLUSH_TIMEOUT);
            }
        })
        .await;
    }
    if let Some(publisher) = metadata {
        let _ = tokio::task::spawn_blocking(move || publisher.finish()).await;
    }
    let _ = std::fs::remove_file(config.paths.pid_file());
    tracing::info!("stopped");
    Ok(())
}

/// Starts the event log when `event.out_channel = "logs"`; with `""` events are counted as
/// `no_route` by ingress.
fn start_event_log(
    config: &Config,
    machine_id: &str,
) -> Result<(Option<EventSink>, Option<EventLogWriter>)> {
    match config.event.out_channel {
        EventChannel::Logs => {
            let dir = config.logs.event_dir.clone();
            let (sink, writer) = EventSink::start(EventLogConfig::new(
                dir.clone(),
                machine_id.to_owned(),
                config.event.timeout,
            ))
            .context("starting the event log")?;
            tracing::info!("events to {}", dir.display());
            Ok((Some(sink), Some(writer)))
        }
        // The Kafka event channel is built in `run`.
        EventChannel::Kafka | EventChannel::Off => Ok((None, None)),
    }
}

/// Starts the metadata publisher for `meta.out_channel` (`logs`: the meta log in
/// `logs.meta_dir`; `kafka`: the meta topic); none when the channel is off.
fn start_metadata(config: &Config, registry: &Arc<Registry>) -> Result<Option<MetadataPublisher>> {
    let output: Box<dyn metadata::MetadataOutput> = match config.meta.out_channel {
        EventChannel::Logs => {
            let file = MetaLogFile::open(&config.logs.meta_dir, metadata::MAX_FILE_BYTES)
                .context("starting the meta log")?;
            tracing::info!("metadata to {}", file.path().display());
            Box::new(file)
        }
        EventChannel::Kafka => {
            let topic = &config.meta.kafka_topic;
            let producer = KafkaProducer::new(&config.kafka, topic, "meta")
                .context("starting the metadata Kafka producer")?;
            tracing::info!("metadata to Kafka topic {topic}");
            Box::new(KafkaMetaOutput::new(producer))
        }
        EventChannel::Off => return Ok(None),
    };
    let publisher = MetadataPublisher::start(registry.clone(), output, metadata::PERIOD)
        .context("starting the metadata publisher")?;
    Ok(Some(publisher))
}

/// Loads the meta files of the meta dir and of every custom probe.
fn load_registry(config: &Config, custom: &[CustomProbe]) -> Result<Registry> {
    let limits = MetaLimits {
        max_fields: config.imdb.max_metrics_num,
    };
    let mut registry = Registry::new();
    registry.load_dir(&config.paths.meta_dir, &limits)?;
    for probe in custom {
        registry
            .load_file(&custom_meta_path(&probe.bin), &limits)
            .with_context(|| format!("meta file of custom probe {}", probe.name))?;
    }
    registry.check_max_tables(config.imdb.max_tables_num)?;
    Ok(registry)
}

/// Takes the singleton lock: an exclusive `flock` on the pid file, which holds our pid.
fn lock_pid_file(path: &Path) -> Result<nix::fcntl::Flock<File>> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating run dir {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("opening pid file {}", path.display()))?;
    let mut lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            anyhow::anyhow!("{}: another gala-gopher is running ({e})", path.display())
        })?;
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// Applies `probes.init` (or `GOPHER_PROBES_INIT`) line by line, as PUTs: a bad line or a
/// probe that cannot start is logged with its line number; the other lines still apply.
/// Returns the lines to keep when the file is written back: comments, and the lines that
/// could not be applied (so an operator's line is never lost to a typo).
async fn apply_probes_init(config: &Config, manager: &ProbeManager) -> Vec<String> {
    let path = &config.paths.probes_init;
    let text = match probes_init_override(&|v| std::env::var(v).ok()) {
        Some(text) => text,
        None => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                String::new()
            }
        },
    };
    let lines: Vec<&str> = text.lines().collect();
    let (entries, errors) = init_file::parse(&text);
    let mut keep: Vec<usize> = (1..=lines.len())
        .filter(|&n| lines[n - 1].trim_start().starts_with('#'))
        .collect();
    for e in errors {
        tracing::error!("{}:{e}", path.display());
        keep.push(e.line);
    }
    for entry in entries {
        let body = serde_json::Value::Object(entry.body).to_string();
        if let Err(e) = manager.put(&entry.probe, body.as_bytes()).await {
            tracing::error!(
                "{}:line {}: probe {}: {}",
                path.display(),
                entry.line,
                entry.probe,
                e.message
            );
            keep.push(entry.line);
        }
    }
    keep.sort_unstable();
    keep.into_iter().map(|n| lines[n - 1].to_string()).collect()
}

/// Re-resolves the probes' snoopers every `period`, so processes that start or end reach the
/// probes that watch for them.
async fn refresh_snoopers(
    manager: Arc<ProbeManager>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => manager.refresh_snoopers().await,
            _ = shutdown.changed() => return,
        }
    }
}

/// `bind_addr:port` of a listener section.
fn socket_addr(bind_addr: &str, port: u16, section: &str) -> Result<SocketAddr> {
    let ip: IpAddr = bind_addr
        .parse()
        .with_context(|| format!("{section}.bind_addr {bind_addr:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Once a second: ages out stale series and refreshes the self-metrics.
async fn housekeeping(
    imdb: Arc<Imdb>,
    self_metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let expired = selfmetrics::imdb_series_expired();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let removed = imdb.sweep(clock::now_ms());
        expired.increment(removed as u64);
        if let Some(h) = &self_metrics {
            h.run_upkeep();
        }
    }
}
