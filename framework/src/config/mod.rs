//! `gala-gopher.conf`: the daemon's typed configuration, its shipped defaults, validation with
//! `file:line` errors, and the `GOPHER_*` environment overrides of the container image.
//!
//! The file keeps the original's libconfig syntax and key names. Differences (see
//! `docs/configuration.md`): a missing key or section takes its shipped default, unknown keyword
//! values are errors instead of silent fallbacks, nothing is truncated, ranges are checked at
//! load, and there are new optional keys (`paths.*`, `ingress.max_line_len`,
//! `web_server.legacy_histogram`) and sections (`supervisor`, `container_runtimes`).

mod check;
mod env;
mod error;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gala_meta::libconfig;

pub use env::probes_init_override;
pub use error::{ConfigError, Origin, Problem, Result};

/// Where the daemon reads its configuration when no `-c` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/gala-gopher/gala-gopher.conf";

/// A validated configuration together with the non-fatal findings made while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, with environment overrides applied.
    pub config: Config,
    /// Non-fatal findings (unknown or obsolete keys, ignored variables), each naming its
    /// `file:line` or variable; the daemon logs them once the logger is up.
    pub warnings: Vec<String>,
}

/// The whole daemon configuration, one field per section of `gala-gopher.conf`.
///
/// `Config::default()` equals the shipped `config/gala-gopher.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `global`: debug log and REST switch.
    pub global: GlobalConfig,
    /// `metric`: where metrics go.
    pub metric: MetricConfig,
    /// `event`: where events go.
    pub event: EventConfig,
    /// `meta`: where metadata goes.
    pub meta: MetaConfig,
    /// `imdb`: limits of the in-memory database.
    pub imdb: ImdbConfig,
    /// `web_server`: the Prometheus endpoint.
    pub web_server: WebServerConfig,
    /// `rest_api_server`: the probe-control REST endpoint.
    pub rest_api_server: ServerConfig,
    /// `kafka`: producer settings shared by all Kafka channels.
    pub kafka: KafkaConfig,
    /// `logs`: local log directories and the metrics file size.
    pub logs: LogsConfig,
    /// `paths` (new): install and run-time paths the original had fixed.
    pub paths: PathsConfig,
    /// `ingress` (new): limits on what probes write.
    pub ingress: IngressConfig,
    /// `supervisor` (new): how probe processes are stopped, restarted and told about snoopers.
    pub supervisor: SupervisorConfig,
    /// `container_runtimes` (new): where the container runtimes' API sockets are.
    pub container_runtimes: ContainerRuntimesConfig,
}

/// Level of the debug log (`global.log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl LogLevel {
    /// The keyword as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl FromStr for LogLevel {
    type Err = Problem;

    fn from_str(value: &str) -> Result<Self, Problem> {
        match value {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(Problem::UnknownValue {
                value: value.to_owned(),
                allowed: "\"debug\", \"info\", \"warn\", \"error\"",
            }),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// Output of metrics (`metric.out_channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricChannel {
    /// `web_server`: Prometheus exposition on `web_server.port`.
    WebServer,
    /// `logs`: Prometheus text into files under `logs.metric_dir`.
    Logs,
    /// `json`: one JSON object per record into files under `logs.metric_dir`.
    Json,
    /// `kafka`: one message per record to `metric.kafka_topic`.
    Kafka,
    /// `""` (or `off`): stored, never output.
    Off,
}

impl MetricChannel {
    /// The keyword as written in the file (`""` for [`MetricChannel::Off`]).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricChannel::WebServer => "web_server",
            MetricChannel::Logs => "logs",
            MetricChannel::Json => "json",
            MetricChannel::Kafka => "kafka",
            MetricChannel::Off => "",
        }
    }
}

impl FromStr for MetricChannel {
    type Err = Problem;

    fn from_str(value: &str) -> Result<Self, Problem> {
        match value {
            "web_server" => Ok(MetricChannel::WebServer),
            "logs" => Ok(MetricChannel::Logs),
            "json" => Ok(MetricChannel::Json),
            "kafka" => Ok(MetricChannel::Kafka),
            "" | "off" => Ok(MetricChannel::Off),
            _ => Err(Problem::UnknownValue {
                value: value.to_owned(),
                allowed: "\"web_server\", \"logs\", \"json\", \"kafka\", \"\"",
            }),
        }
    }
}

impl fmt::Display for MetricChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output of events (`event.out_channel`) and of metadata (`meta.out_channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventChannel {
    /// `logs`: JSON lines into files under `logs.event_dir` / `logs.meta_dir`.
    Logs,
    /// `kafka`: messages to the section's `kafka_topic`.
    Kafka,
    /// `""` (or `off`): not output.
    Off,
}

/// Output of metadata (`meta.out_channel`); same keywords as events.
pub type MetaChannel = EventChannel;

impl EventChannel {
    /// The keyword as written in the file (`""` for [`EventChannel::Off`]).
    pub fn as_str(self) -> &'static str {
        match self {
            EventChannel::Logs => "logs",
            EventChannel::Kafka => "kafka",
            EventChannel::Off => "",
        }
    }
}

impl FromStr for EventChannel {
    type Err = Problem;

    fn from_str(value: &str) -> Result<Self, Problem> {
        match value {
            "logs" => Ok(EventChannel::Logs),
            "kafka" => Ok(EventChannel::Kafka),
            "" | "off" => Ok(EventChannel::Off),
            _ => Err(Problem::UnknownValue {
                value: value.to_owned(),
                allowed: "\"logs\", \"kafka\", \"\"",
            }),
        }
    }
}

impl fmt::Display for EventChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Section `global`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// File name of the debug log inside `logs.debug_dir` (an empty value in the file means
    /// `gopher_debug.log`, as in the original). Default `gopher.log`.
    pub log_file_name: String,
    /// Level of the debug log. Default `info`.
    pub log_level: LogLevel,
    /// Whether the REST server runs. Default `true`.
    pub rest_api_on: bool,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            log_file_name: "gopher.log".to_owned(),
            log_level: LogLevel::Info,
            rest_api_on: true,
        }
    }
}

/// Section `metric`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricConfig {
    /// Where metrics go. Default `web_server`.
    pub out_channel: MetricChannel,
    /// Kafka topic when `out_channel` is `kafka`. Default `gala_gopher`.
    pub kafka_topic: String,
}

impl Default for MetricConfig {
    fn default() -> Self {
        MetricConfig {
            out_channel: MetricChannel::WebServer,
            kafka_topic: "gala_gopher".to_owned(),
        }
    }
}

/// Section `event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventConfig {
    /// Where events go. Default `logs`.
    pub out_channel: EventChannel,
    /// Kafka topic when `out_channel` is `kafka`. Default `gala_gopher_event`.
    pub kafka_topic: String,
    /// De-duplication period of repeated events; zero disables it. Default 600 s.
    pub timeout: Duration,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            out_channel: EventChannel::Logs,
            kafka_topic: "gala_gopher_event".to_owned(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Section `meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// Where metadata goes. Default `logs`.
    pub out_channel: MetaChannel,
    /// Kafka topic when `out_channel` is `kafka`. Default `gala_gopher_metadata`.
    pub kafka_topic: String,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            out_channel: EventChannel::Logs,
            kafka_topic: "gala_gopher_metadata".to_owned(),
        }
    }
}

/// Section `imdb`: limits of the in-memory database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdbConfig {
    /// Maximum number of meta tables (1–4096). Default 1024.
    pub max_tables_num: usize,
    /// Maximum series per table (≥ 1). Default 16384: a host with 5,000 connections fills a
    /// tcp table to 5,000, and a cardinality bomb stays bounded.
    pub max_records_num: usize,
    /// Maximum fields per table (1–128). Default 64.
    pub max_metrics_num: usize,
    /// Records not refreshed for this long are aged out (≥ 1 s). Default 60 s.
    pub record_timeout: Duration,
}

impl Default for ImdbConfig {
    fn default() -> Self {
        ImdbConfig {
            max_tables_num: 1024,
            max_records_num: 16384,
            max_metrics_num: 64,
            record_timeout: Duration::from_secs(60),
        }
    }
}

/// An HTTP(S) listener: sections `web_server` and `rest_api_server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on (IP address or host name). Default `127.0.0.1`.
    pub bind_addr: String,
    /// TCP port, 1024–65535. Defaults 8888 (`web_server`) and 9999 (`rest_api_server`).
    pub port: u16,
    /// HTTPS (TLS 1.3) instead of plain HTTP (`ssl_auth = "on"`). Default off.
    pub ssl_auth: bool,
    /// PEM private key; required when `ssl_auth` is on, empty otherwise allowed.
    pub private_key: PathBuf,
    /// PEM certificate chain; required when `ssl_auth` is on.
    pub cert_file: PathBuf,
    /// PEM CA bundle; when non-empty, clients must present a certificate signed by it.
    pub ca_file: PathBuf,
}

impl ServerConfig {
    /// Shipped `web_server` listener: `127.0.0.1:8888`, plain HTTP.
    pub fn web_server_default() -> Self {
        ServerConfig::plain_on_loopback(8888)
    }

    /// Shipped `rest_api_server` listener: `127.0.0.1:9999`, plain HTTP.
    pub fn rest_api_default() -> Self {
        ServerConfig::plain_on_loopback(9999)
    }

    fn plain_on_loopback(port: u16) -> Self {
        ServerConfig {
            bind_addr: "127.0.0.1".to_owned(),
            port,
            ssl_auth: false,
            private_key: PathBuf::new(),
            cert_file: PathBuf::new(),
            ca_file: PathBuf::new(),
        }
    }
}

impl Default for ServerConfig {
    /// The `rest_api_server` default; use [`ServerConfig::web_server_default`] for metrics.
    fn default() -> Self {
        ServerConfig::rest_api_default()
    }
}

/// Section `web_server`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebServerConfig {
    /// Listener settings.
    pub server: ServerConfig,
    /// New key `legacy_histogram`: render histograms in the original's form (buckets under the
    /// bare base name, no `_count`) for old dashboards. Default `false`.
    pub legacy_histogram: bool,
}

impl Default for WebServerConfig {
    fn default() -> Self {
        WebServerConfig {
            server: ServerConfig::web_server_default(),
            legacy_histogram: false,
        }
    }
}

/// Section `kafka`: librdkafka producer settings shared by the metric, event and meta channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, kept whole. Default empty (no broker configured).
    pub kafka_broker: String,
    /// `batch.num.messages` (1–1000000). Default 10000.
    pub batch_num_messages: u32,
    /// `compression.codec` (`none`, `gzip`, `snappy`, `lz4`, `zstd`). Default `none`.
    pub compression_codec: String,
    /// `queue.buffering.max.messages` (1–2147483647). Default 100000.
    pub queue_buffering_max_messages: u32,
    /// `queue.buffering.max.kbytes` (1–2147483647). Default 1048576.
    pub queue_buffering_max_kbytes: u32,
    /// `queue.buffering.max.ms` (1–900000). Default 5.
    pub queue_buffering_max_ms: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            kafka_broker: String::new(),
            batch_num_messages: 10_000,
            compression_codec: "none".to_owned(),
            queue_buffering_max_messages: 100_000,
            queue_buffering_max_kbytes: 1_048_576,
            queue_buffering_max_ms: 5,
        }
    }
}

/// Section `logs`: local output directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Size limit of the metrics file in **bytes** (configured in MB, 1–1024). Default 100 MB.
    pub metric_total_size: u64,
    /// Metrics files of the `logs`/`json` channels. Default `/var/log/gala-gopher/metrics`.
    pub metric_dir: PathBuf,
    /// Event files. Default `/var/log/gala-gopher/event`.
    pub event_dir: PathBuf,
    /// Metadata file. Default `/var/log/gala-gopher/meta`.
    pub meta_dir: PathBuf,
    /// Debug log. Default `/var/log/gala-gopher/debug`.
    pub debug_dir: PathBuf,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            metric_total_size: 100 * 1024 * 1024,
            metric_dir: PathBuf::from("/var/log/gala-gopher/metrics"),
            event_dir: PathBuf::from("/var/log/gala-gopher/event"),
            meta_dir: PathBuf::from("/var/log/gala-gopher/meta"),
            debug_dir: PathBuf::from("/var/log/gala-gopher/debug"),
        }
    }
}

/// Section `paths` (new): the original's fixed paths, now configurable (tests, containers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathsConfig {
    /// Directory of the `.meta` files. Default `/opt/gala-gopher/meta`.
    pub meta_dir: PathBuf,
    /// Directory of the probe executables. Default `/opt/gala-gopher/extend_probes`.
    pub extend_probe_dir: PathBuf,
    /// Probe configurations applied at start. Default `/etc/gala-gopher/probes.init`.
    pub probes_init: PathBuf,
    /// Custom probe definitions. Default `/etc/gala-gopher/gala-gopher-custom.json`.
    pub custom_probes: PathBuf,
    /// Run directory holding the pid file and the sockets. Default `/var/run/gala_gopher`.
    pub run_dir: PathBuf,
    /// Fallback host identity when `product_uuid` is unreadable. Default `/opt/gala-gopher/machine_id`.
    pub machine_id_file: PathBuf,
}

impl PathsConfig {
    /// The singleton lock / pid file, `<run_dir>/gala-gopher.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("gala-gopher.pid")
    }

    /// The local control socket of `gopher-ctl`, `<run_dir>/gala_gopher_cmd.sock`.
    pub fn cmd_socket(&self) -> PathBuf {
        self.run_dir.join("gala_gopher_cmd.sock")
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            meta_dir: PathBuf::from("/opt/gala-gopher/meta"),
            extend_probe_dir: PathBuf::from("/opt/gala-gopher/extend_probes"),
            probes_init: PathBuf::from("/etc/gala-gopher/probes.init"),
            custom_probes: PathBuf::from("/etc/gala-gopher/gala-gopher-custom.json"),
            run_dir: PathBuf::from("/var/run/gala_gopher"),
            machine_id_file: PathBuf::from("/opt/gala-gopher/machine_id"),
        }
    }
}

/// Section `ingress` (new): limits on probe output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    /// Longest accepted record line in bytes (1024–16777216); longer lines are dropped and
    /// counted. Default 65536.
    pub max_line_len: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            max_line_len: 65_536,
        }
    }
}

/// Section `supervisor` (new): probe process supervision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Time a probe has to exit after SIGTERM before its process group is killed (1–300 s).
    /// Default 5 s.
    pub stop_grace: Duration,
    /// Longest wait before restarting a probe that exited on its own (1–3600 s); the wait starts
    /// at 1 s and doubles per consecutive failure. Default 60 s.
    pub restart_backoff_max: Duration,
    /// Consecutive quick failures (exits within `stable_run` of starting) after which a probe is
    /// marked `failed` and left stopped until the next PUT (1–100). Default 5.
    pub failed_after: u32,
    /// A run at least this long counts as stable: the backoff and failure count start over
    /// (1–3600 s). Default 60 s.
    pub stable_run: Duration,
    /// Period of the /proc scan that re-resolves `proc_name`, `container_id` and `pod_id`
    /// snoopers (1–600 s). Default 2 s.
    pub snooper_period: Duration,
    /// Which cgroup hierarchy holds each probe's process tree. Default `auto`.
    pub cgroup: CgroupMode,
}

/// `supervisor.cgroup`: where each probe's process tree is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// cgroup v2 if mounted, else v1; without either (or without the rights), probes run
    /// in the daemon's cgroup, stopped by process group only (logged once).
    #[default]
    Auto,
    /// cgroup v2 only; not usable stops the start.
    V2,
    /// cgroup v1 (`freezer`, and `cpuacct` for CPU) only; not usable stops the start.
    V1,
    /// No per-probe cgroups (process groups only, as the original).
    Off,
}

impl FromStr for CgroupMode {
    type Err = Problem;

    fn from_str(value: &str) -> Result<Self, Problem> {
        match value {
            "auto" => Ok(CgroupMode::Auto),
            "v2" => Ok(CgroupMode::V2),
            "v1" => Ok(CgroupMode::V1),
            "off" => Ok(CgroupMode::Off),
            _ => Err(Problem::UnknownValue {
                value: value.to_owned(),
                allowed: "\"auto\", \"v2\", \"v1\", \"off\"",
            }),
        }
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            stop_grace: Duration::from_secs(5),
            restart_backoff_max: Duration::from_secs(60),
            failed_after: 5,
            stable_run: Duration::from_secs(60),
            snooper_period: Duration::from_secs(2),
            cgroup: CgroupMode::Auto,
        }
    }
}

/// Section `container_runtimes` (new): the API sockets container and pod names are read from
/// (see `crate::containers`). A key left out keeps the runtime's default sockets; an empty
/// string leaves that runtime out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRuntimesConfig {
    /// `containerd`: containerd's gRPC socket. Default `/run/containerd/containerd.sock`, then
    /// `/var/run/containerd/containerd.sock`.
    pub containerd: Option<PathBuf>,
    /// `docker`: Docker Engine's socket. Default `/var/run/docker.sock`.
    pub docker: Option<PathBuf>,
    /// `crio`: CRI-O's socket. Default `/var/run/crio/crio.sock`.
    pub crio: Option<PathBuf>,
    /// `isulad`: iSulad's socket. Default `/var/run/isulad.sock`.
    pub isulad: Option<PathBuf>,
    /// `timeout_ms`: how long one runtime call may take (100–10000 ms). Default 1000 ms.
    pub timeout: Duration,
    /// `cli`: fall back to `docker`/`isula`/`crictl inspect` found in `PATH`. Default `true`.
    pub cli: bool,
}

impl Default for ContainerRuntimesConfig {
    fn default() -> Self {
        ContainerRuntimesConfig {
            containerd: None,
            docker: None,
            crio: None,
            isulad: None,
            timeout: Duration::from_secs(1),
            cli: true,
        }
    }
}

impl Config {
    /// Reads, validates and environment-overrides the configuration file at `path`, taking the
    /// `GOPHER_*` variables from the process environment.
    pub fn load(path: &Path) -> Result<Loaded> {
        let src = gala_meta::read_text(path).map_err(|e| match e {
            gala_meta::TextError::Io(source) => ConfigError::Read {
                path: path.to_owned(),
                source,
            },
            gala_meta::TextError::NotUtf8 { line, column } => ConfigError::Syntax {
                path: path.to_owned(),
                line,
                message: format!("not valid UTF-8 (byte {column} of the line)"),
            },
        })?;
        Config::parse(&src, path, &|var| std::env::var(var).ok())
    }

    /// Parses and validates configuration text; `path` is only used in messages and `env` looks up
    /// the `GOPHER_*` overrides (pass `&|_| None` for none).
    pub fn parse(src: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded> {
        let root = libconfig::parse(src).map_err(|err| ConfigError::Syntax {
            path: path.to_owned(),
            line: err.line,
            message: err.message,
        })?;
        let reader::FileRead {
            mut config,
            mut origins,
            mut warnings,
        } = reader::read(&root, path)?;
        env::apply(&mut config, &mut origins, env, &mut warnings)?;
        config.check_consistency(&origins)?;
        Ok(Loaded { config, warnings })
    }

    /// The debug log file, `<logs.debug_dir>/<global.log_file_name>`.
    pub fn debug_log_file(&self) -> PathBuf {
        self.logs.debug_dir.join(&self.global.log_file_name)
    }

    /// Checks between keys, run after the environment overrides so that a variable can complete
    /// (or break) what the file says. Errors point at the setting that made the other mandatory.
    fn check_consistency(&self, origins: &Origins) -> Result<()> {
        for (section, server) in [
            ("web_server", &self.web_server.server),
            ("rest_api_server", &self.rest_api_server),
        ] {
            if !server.ssl_auth {
                continue;
            }
            for (key, path) in [
                ("private_key", &server.private_key),
                ("cert_file", &server.cert_file),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        origins.get(section, "ssl_auth"),
                        format!("{section}.{key}"),
                        Problem::Required {
                            because: format!("{section}.ssl_auth is \"on\""),
                        },
                    ));
                }
            }
        }

        let kafka_users = [
            (
                "metric",
                self.metric.out_channel == MetricChannel::Kafka,
                &self.metric.kafka_topic,
            ),
            (
                "event",
                self.event.out_channel == EventChannel::Kafka,
                &self.event.kafka_topic,
            ),
            (
                "meta",
                self.meta.out_channel == EventChannel::Kafka,
                &self.meta.kafka_topic,
            ),
        ];
        for (section, uses_kafka, topic) in kafka_users {
            if !uses_kafka {
                continue;
            }
            let because = format!("{section}.out_channel is \"kafka\"");
            if self.kafka.kafka_broker.is_empty() {
                return Err(ConfigError::invalid(
                    origins.get(section, "out_channel"),
                    "kafka.kafka_broker",
                    Problem::Required { because },
                ));
            }
            if topic.is_empty() {
                return Err(ConfigError::invalid(
                    origins.get(section, "out_channel"),
                    format!("{section}.kafka_topic"),
                    Problem::Required { because },
                ));
            }
        }

        let (web, rest) = (&self.web_server.server, &self.rest_api_server);
        if self.global.rest_api_on
            && web.port == rest.port
            && addresses_overlap(&web.bind_addr, &rest.bind_addr)
        {
            let mut origin = origins.get("rest_api_server", "port");
            if origin == Origin::Default {
                origin = origins.get("web_server", "port");
            }
            return Err(ConfigError::invalid(
                origin,
                "rest_api_server.port",
                Problem::Conflict(format!(
                    "web_server.port: both servers would listen on port {} ({} and {})",
                    rest.port, web.bind_addr, rest.bind_addr
                )),
            ));
        }
        Ok(())
    }
}

/// Whether two listeners on the same port would collide: same address, or one of them on the
/// wildcard address.
fn addresses_overlap(a: &str, b: &str) -> bool {
    let wildcard = |addr: &str| matches!(addr, "0.0.0.0" | "::");
    a == b || wildcard(a) || wildcard(b)
}

/// Where each key's current value came from, so that cross-key errors can point at the line
/// (or variable) the operator has to fix.
#[derive(Debug, Default)]
pub(crate) struct Origins(HashMap<(&'static str, &'static str), Origin>);

impl Origins {
    /// Records that `section.key` was set from `origin`.
    pub(crate) fn set(&mut self, section: &'static str, key: &'static str, origin: Origin) {
        self.0.insert((section, key), origin);
    }

    /// Where `section.key` came from; [`Origin::Default`] if nothing set it.
    pub(crate) fn get(&self, section: &'static str, key: &'static str) -> Origin {
        self.0
            .get(&(section, key))
            .cloned()
            .unwrap_or(Origin::Default)
    }
}
