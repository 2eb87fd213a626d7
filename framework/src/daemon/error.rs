//! Why the daemon could not start.

use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;

use gala_meta::MetaError;

use crate::egress::event::EventLogError;
use crate::egress::kafka::KafkaError;
use crate::egress::metadata::MetadataError;
use crate::egress::metric_log::MetricLogError;
use crate::identity::IdentityError;
use crate::legacy_ipc::QueueError;
use crate::probes::custom::CustomProbeError;
use crate::tls::TlsError;

/// A start-up step that failed. The messages name what was being started; the cause is the
/// error's source, so `{:#}` (as `anyhow` prints it) shows both.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `supervisor.cgroup` asks for a hierarchy that cannot be used.
    #[error("supervisor.cgroup")]
    Cgroup(#[from] crate::supervisor::cgroup::CgroupError),
    /// The custom probe list could not be read.
    #[error(transparent)]
    CustomProbes(#[from] CustomProbeError),
    /// The legacy System V queue of the custom probes declared `"ipc": "sysv"` could not be
    /// created.
    #[error("legacy IPC queue")]
    LegacyIpc(#[from] QueueError),
    /// A meta file of the meta directory is invalid, or there are too many tables.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The meta file of a custom probe is invalid.
    #[error("meta file of custom probe {probe}")]
    CustomMeta {
        /// The custom probe.
        probe: String,
        /// What is wrong with its meta file.
        #[source]
        source: MetaError,
    },
    /// The directory of the pid file could not be created.
    #[error("creating run dir {}", path.display())]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The pid file could not be opened or written.
    #[error("opening pid file {}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another daemon holds the pid file's lock.
    #[error("{}: another gala-gopher is running ({errno})", path.display())]
    AlreadyRunning {
        /// The pid file.
        path: PathBuf,
        /// Why the lock was refused.
        errno: nix::Error,
    },
    /// The host's identity (machine id) could not be found.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A listener's TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener's `bind_addr` is not an IP address.
    #[error("{section}.bind_addr {addr:?}")]
    BindAddr {
        /// The configuration section (`web_server`, `rest_api_server`).
        section: &'static str,
        /// The configured text.
        addr: String,
        /// Why it does not parse.
        #[source]
        source: AddrParseError,
    },
    /// A listener could not bind its address.
    #[error("binding the {server} to {addr}")]
    Bind {
        /// The listener ("metrics server", "REST server").
        server: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The metric log could not be started.
    #[error(transparent)]
    MetricLog(#[from] MetricLogError),
    /// The Kafka producer of the metric or event channel could not be created.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The event log could not be started.
    #[error("starting the event log")]
    EventLog(#[source] EventLogError),
    /// The meta log could not be opened.
    #[error("starting the meta log")]
    MetaLog(#[source] MetadataError),
    /// The Kafka producer of the meta channel could not be created.
    #[error("starting the metadata Kafka producer")]
    MetaKafka(#[source] KafkaError),
    /// The metadata publisher thread could not be started.
    #[error("starting the metadata publisher")]
    Metadata(#[source] MetadataError),
    /// The signal handlers could not be installed.
    #[error("installing the signal handlers")]
    Signals(#[source] io::Error),
}
