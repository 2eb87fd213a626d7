//! The daemon's lifecycle: [`Setup::load`] reads what the configuration names,
//! [`Daemon::start`] wires ingress, egress, the probe manager and the listeners together,
//! [`Daemon::run`] waits for a signal and [`Daemon::shutdown`] stops everything in one order.
//!
//! Shutdown order (each step awaited before the next; docs/architecture.md says why):
//!
//! 1. the listeners (metrics, REST, gopher-ctl) and the periodic tasks (imdb sweep, snooper
//!    refresh) stop, so nothing asks the probes for anything any more;
//! 2. the running probe configuration is saved to `probes.init`;
//! 3. every probe is stopped (SIGTERM, SIGKILL after the grace period) and reaped, then the
//!    legacy System V queue (if a custom probe uses it) is removed;
//! 4. ingress drains: what the probes wrote before they ended is stored and handed on
//!    (at most [`INGRESS_DRAIN_TIMEOUT`]);
//! 5. the metric log writes its last round;
//! 6. the event log writes what is queued;
//! 7. the Kafka metric and event producers flush (at most [`KAFKA_FLUSH_TIMEOUT`] each);
//! 8. the metadata publisher ends (flushing its own Kafka producer);
//! 9. the pid file is removed and its lock released.

mod egress;
mod error;
mod pidfile;
mod probes_init;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gala_meta::{custom_meta_path, MetaLimits, Registry};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{CgroupMode, Config, ServerConfig};
use crate::containers::{ContainerLookup, RuntimeDirectory};
use crate::ctl::CtlApi;
use crate::egress::event::EventLogWriter;
use crate::egress::kafka::KafkaProducer;
use crate::egress::metadata::MetadataPublisher;
use crate::identity::HostIdentity;
use crate::imdb::{Imdb, ImdbLimits};
use crate::ingress::Pipeline;
use crate::labels::{cache::ProcCache, Labels};
use crate::legacy_ipc::LegacyIpc;
use crate::manager::{ManagerContext, ProbeManager};
use crate::probes::{self, Catalogue, CustomProbe};
use crate::rest::RestApi;
use crate::snooper::ScanRoots;
use crate::supervisor::{Cgroups, SupervisorContext};
use crate::{clock, ctl, selfmetrics, server};

pub use error::DaemonError;
pub use pidfile::PidFile;

/// How long the shutdown waits for each Kafka channel to deliver what is queued.
pub const KAFKA_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the shutdown waits, once the probes are reaped, for ingress to store and hand on
/// their last output. Only a process that left the probe's group and kept its stdout open
/// makes it wait that long.
pub const INGRESS_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the daemon is built from: the configuration and the custom probes and meta files it
/// names, loaded and checked (all `--check` needs).
#[derive(Debug)]
pub struct Setup {
    /// The configuration.
    pub config: Config,
    /// The custom probes of `paths.custom_probes`.
    pub custom: Vec<CustomProbe>,
    /// Every table of the meta directory and of the custom probes.
    pub registry: Arc<Registry>,
}

impl Setup {
    /// Loads the custom probes and the meta files of the meta directory and of every custom
    /// probe; logs the registry's warnings.
    pub fn load(config: Config) -> Result<Self, DaemonError> {
        let custom = probes::custom::load(&config.paths.custom_probes)?;
        let limits = MetaLimits {
            max_fields: config.imdb.max_metrics_num,
        };
        let mut registry = Registry::new();
        registry.load_dir(&config.paths.meta_dir, &limits)?;
        for probe in &custom {
            registry
                .load_file(&custom_meta_path(&probe.bin), &limits)
                .map_err(|source| DaemonError::CustomMeta {
                    probe: probe.name.clone(),
                    source,
                })?;
        }
        registry.check_max_tables(config.imdb.max_tables_num)?;
        for w in registry.entity_warnings() {
            tracing::warn!("{w}");
        }
        Ok(Setup {
            config,
            custom,
            registry: Arc::new(registry),
        })
    }
}

/// The daemon's own tasks, stopped in two groups by [`Daemon::shutdown`].
struct Tasks {
    /// Turns true to stop the listeners and the periodic tasks.
    stop: watch::Sender<bool>,
    /// The listeners and periodic tasks, by name.
    serving: Vec<(&'static str, JoinHandle<()>)>,
    /// Turns true to make the metric log write its last round and end.
    stop_metric_log: watch::Sender<bool>,
    /// The metric log writer (`metric.out_channel` `logs` or `json`).
    metric_log: Option<JoinHandle<()>>,
}

impl Tasks {
    fn new() -> Self {
        Tasks {
            stop: watch::Sender::new(false),
            serving: Vec::new(),
            stop_metric_log: watch::Sender::new(false),
            metric_log: None,
        }
    }

    /// The signal the listeners and periodic tasks stop on.
    fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Runs a listener or periodic task until [`Tasks::stopped`] turns true.
    fn serve(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.serving.push((name, tokio::spawn(task)));
    }
}

/// The running daemon; see the module documentation.
pub struct Daemon {
    config: Config,
    manager: Arc<ProbeManager>,
    pipeline: Arc<Pipeline>,
    /// Lines of `probes.init` kept when it is written back (comments, lines that failed).
    kept_init_lines: Vec<String>,
    tasks: Tasks,
    event_log: Option<EventLogWriter>,
    /// The producers of the metric and event channels.
    kafka: Vec<Arc<KafkaProducer>>,
    metadata: Option<MetadataPublisher>,
    /// The per-probe cgroups, removed after the probes stopped.
    cgroups: Option<Arc<Cgroups>>,
    pid_file: PidFile,
}

impl Daemon {
    /// Takes the pid file's lock, starts the egress channels, the probe manager and the
    /// listeners, then applies `probes.init`. Must be called inside the runtime.
    pub async fn start(setup: Setup) -> Result<Self, DaemonError> {
        let Setup {
            config,
            custom,
            registry,
        } = setup;
        let pid_file = PidFile::lock(&config.paths.pid_file())?;
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
        let cgroups = open_cgroups(&config)?;
        let roots = ScanRoots::under_host_root(&host_root);
        // Container and pod names from the runtimes' sockets: the series' container labels and
        // `container_name` snoopers.
        let container_directory = Arc::new(RuntimeDirectory::from_config(
            &config.container_runtimes,
            &host_root,
        ));
        let lookup: Arc<dyn ContainerLookup> = container_directory.clone();
        let labels = Arc::new(Labels::new(
            &registry,
            ProcCache::new(roots.clone(), Some(lookup)),
        ));
        let mut tasks = Tasks::new();
        let metrics_endpoint = egress::start_metric_channel(
            &config,
            &imdb,
            &machine_id,
            &self_metrics,
            &labels,
            &mut tasks,
        )
        .await?;
        let mut channels = egress::kafka_channels(&config, &identity)?;
        channels.labels = Some(labels.clone());
        let event_log = egress::start_event_log(&config, &machine_id)?;
        let (event_sink, event_log) = event_log.unzip();
        channels.event_log = event_sink;
        let metadata = egress::start_metadata(&config, &registry)?;
        let kafka: Vec<_> = [
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
        let legacy_ipc = LegacyIpc::open(&custom)?;
        let catalogue = Catalogue::new(&config.paths.extend_probe_dir, &custom);
        let manager = ProbeManager::new(
            catalogue,
            ManagerContext {
                supervisor: Arc::new(SupervisorContext {
                    pipeline: pipeline.clone(),
                    config: config.supervisor.clone(),
                    cgroups: cgroups.clone(),
                }),
                roots,
                legacy_ipc,
                containers: Some(container_directory.clone()),
                labels: Some(labels.clone()),
            },
        );
        if config.global.rest_api_on {
            let server = &config.rest_api_server;
            let (listener, tls, url) = listen(server, "rest_api_server", "REST server").await?;
            tracing::info!("REST API on {url}/<probe>");
            let api = Arc::new(RestApi::new(manager.clone()));
            let rest = server::serve("REST server", listener, tls, api, tasks.stopped());
            tasks.serve("REST server", rest);
        }
        let ctl = Arc::new(CtlApi::new(manager.clone(), metrics_endpoint));
        match ctl::CtlListener::bind(&config.paths.cmd_socket()) {
            Ok(listener) => tasks.serve("gopher-ctl socket", listener.serve(ctl, tasks.stopped())),
            // gopher-ctl is a convenience: the daemon runs without it (as the original).
            Err(e) => tracing::error!("gopher-ctl socket: {e}"),
        }

        let kept_init_lines = probes_init::apply(&config, &manager).await;
        manager.persist_to(config.paths.probes_init.clone(), kept_init_lines.clone());
        let sweep = housekeeping(imdb, labels, self_metrics, cgroups.clone(), tasks.stopped());
        tasks.serve("imdb sweep", sweep);
        let period = config.supervisor.snooper_period;
        let refresh = refresh_snoopers(manager.clone(), period, tasks.stopped());
        tasks.serve("snooper refresh", refresh);
        Ok(Daemon {
            config,
            manager,
            pipeline,
            kept_init_lines,
            tasks,
            event_log,
            kafka,
            metadata,
            cgroups,
            pid_file,
        })
    }

    /// Runs until SIGTERM or SIGINT. SIGHUP publishes the metadata again (the original
    /// ignores it).
    pub async fn run(&self) -> Result<(), DaemonError> {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()) }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()) }
                _ = hup.recv() => {
                    if let Some(publisher) = &self.metadata {
                        tracing::info!("SIGHUP: publishing the metadata again");
                        publisher.republish();
                    } else {
                        tracing::info!("SIGHUP: ignored (no metadata channel)");
                    }
                }
            }
        }
    }

    /// Stops everything in the order of the module documentation, awaiting each step.
    pub async fn shutdown(self) {
        let Daemon {
            config,
            manager,
            pipeline,
            kept_init_lines,
            tasks,
            event_log,
            kafka,
            metadata,
            cgroups,
            pid_file,
        } = self;
        let _ = tasks.stop.send(true);
        for (name, task) in tasks.serving {
            if let Err(e) = task.await {
                tracing::error!("{name} ended abnormally: {e}");
            }
        }
        // What runs now is what the next start brings back.
        let init = &config.paths.probes_init;
        match manager.save(init, &kept_init_lines).await {
            Ok(()) => tracing::info!("saved the probe configuration to {}", init.display()),
            Err(e) => tracing::error!("saving the probe configuration to {}: {e}", init.display()),
        }
        manager.stop_all().await;
        if let Some(c) = cgroups {
            let _ = tokio::task::spawn_blocking(move || c.close()).await;
            let _ = std::fs::remove_file(config.paths.run_dir.join("cgroups"));
        }
        manager.remove_legacy_queue();
        if !pipeline.drain(INGRESS_DRAIN_TIMEOUT).await {
            tracing::warn!(
                "a probe's stdout is still open {INGRESS_DRAIN_TIMEOUT:?} after it was stopped; its last output may be lost"
            );
        }
        let _ = tasks.stop_metric_log.send(true);
        if let Some(task) = tasks.metric_log {
            if let Err(e) = task.await {
                tracing::error!("metric log ended abnormally: {e}");
            }
        }
        if let Some(writer) = event_log {
            let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
        }
        if !kafka.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for p in kafka {
                    p.flush(KAFKA_FLUSH_TIMEOUT);
                }
            })
            .await;
        }
        if let Some(publisher) = metadata {
            let _ = tokio::task::spawn_blocking(move || publisher.finish()).await;
        }
        pid_file.remove();
        tracing::info!("stopped");
    }
}

/// Binds the listener `name` ("metrics server", "REST server") of configuration section
/// `section`, with TLS when the section asks for it; returns it with its TLS acceptor and its
/// URL (`<scheme>://<addr>`).
async fn listen(
    server: &ServerConfig,
    section: &'static str,
    name: &'static str,
) -> Result<(TcpListener, Option<TlsAcceptor>, String), DaemonError> {
    let tls = crate::tls::acceptor(server, section)?;
    let ip: IpAddr = server
        .bind_addr
        .parse()
        .map_err(|source| DaemonError::BindAddr {
            section,
            addr: server.bind_addr.clone(),
            source,
        })?;
    let addr = SocketAddr::new(ip, server.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            server: name,
            addr,
            source,
        })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok((listener, tls, format!("{scheme}://{addr}")))
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

/// Once a second: ages out stale series and refreshes the self-metrics.
/// The per-probe cgroups of `supervisor.cgroup`, after killing what a previous instance of
/// this daemon (same `paths.run_dir`) left in them. `auto` without usable cgroups logs and
/// goes on without; `v1`/`v2` fail.
fn open_cgroups(config: &Config) -> Result<Option<Arc<Cgroups>>, DaemonError> {
    let mode = config.supervisor.cgroup;
    let run_dir = &config.paths.run_dir;
    let opened = match Cgroups::open(mode, &cgroup_instance(run_dir)) {
        Ok(c) => c,
        Err(e) if mode == CgroupMode::Auto => {
            tracing::warn!("no per-probe cgroups (supervisor.cgroup = \"auto\"): {e}; probes are stopped by process group only");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(cgroups) = opened else {
        return Ok(None);
    };
    // Where they are, for operators and tools (one directory per line).
    let list = config.paths.run_dir.join("cgroups");
    let dirs: String = cgroups
        .instance_dirs()
        .iter()
        .map(|d| format!("{}\n", d.display()))
        .collect();
    if let Err(e) = std::fs::write(&list, dirs) {
        tracing::warn!("writing {}: {e}", list.display());
    }
    let killed = cgroups.sweep();
    if killed > 0 {
        tracing::warn!(
            "killed {killed} processes a previous daemon's probes left in {}",
            cgroups.base().display()
        );
    }
    tracing::info!(
        "probes run in cgroup {} under {}",
        cgroups.version(),
        cgroups.base().display()
    );
    Ok(Some(Arc::new(cgroups)))
}

/// The name of this daemon's cgroup directory: `gala-gopher` for the default `run_dir`,
/// with a hash of any other one, so that daemons with their own `run_dir` (tests, a second
/// instance) never sweep each other's probes while a restarted daemon finds its own.
fn cgroup_instance(run_dir: &Path) -> String {
    if run_dir == crate::config::PathsConfig::default().run_dir {
        return "gala-gopher".into();
    }
    // FNV-1a: stable across builds (std's hasher is not).
    let hash = run_dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("gala-gopher-{:08x}", hash as u32)
}

async fn housekeeping(
    imdb: Arc<Imdb>,
    labels: Arc<Labels>,
    self_metrics: Option<PrometheusHandle>,
    cgroups: Option<Arc<Cgroups>>,
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
        let labels = labels.clone();
        // Lists /proc: off the executor.
        let _ = tokio::task::spawn_blocking(move || labels.cache().refresh()).await;
        if let Some(c) = &cgroups {
            c.record_usage();
        }
        if let Some(h) = &self_metrics {
            h.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_run_dir_owns_the_plain_cgroup_name_and_others_a_hashed_one() {
        let default = crate::config::PathsConfig::default().run_dir;
        assert_eq!(cgroup_instance(&default), "gala-gopher");
        let a = cgroup_instance(Path::new("/tmp/a/run"));
        assert!(
            a.starts_with("gala-gopher-") && a.len() == "gala-gopher-".len() + 8,
            "{a}"
        );
        assert_eq!(a, cgroup_instance(Path::new("/tmp/a/run")), "stable");
        assert_ne!(a, cgroup_instance(Path::new("/tmp/b/run")));
    }
}
