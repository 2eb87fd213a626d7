//! The connection of a probe to its daemon: the control channel on fd 3 read by a background
//! thread, SIGTERM/SIGINT turned into a stop request, and the probe's checked output.

use std::fmt::Display;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gala_ipc_proto::v1::{
    daemon_message, probe_message, status, DaemonMessage, Hello, ProbeMessage, Status,
};
use gala_ipc_proto::{blocking, from_env, Encoding, ENV_PROBE_NAME};

use crate::config::Config;
use crate::error::{ConnectError, EmitError};
use crate::event::Event;
use crate::output::{Output, Schema};

/// How long `connect` waits for the daemon's first configuration.
pub const FIRST_CONFIG_TIMEOUT: Duration = Duration::from_secs(5);

/// The SDK's name and version in `Hello`.
pub const SDK_VERSION: &str = concat!("rust-", env!("CARGO_PKG_VERSION"));

/// Why [`Probe::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The timeout elapsed.
    Timeout,
    /// A new configuration is in place ([`Probe::config`]).
    Config,
    /// SIGTERM or SIGINT arrived, or the daemon closed the channel: flush and exit.
    Stop,
}

/// Severity of a [`Probe::status`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Degraded, still running.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn wire(self) -> status::Level {
        match self {
            Level::Info => status::Level::Info,
            Level::Warn => status::Level::Warn,
            Level::Error => status::Level::Error,
        }
    }
}

/// What the reader and signal threads hand to [`Probe::wait`].
#[derive(Default)]
struct State {
    /// A configuration not yet taken by the probe.
    fresh: Option<Config>,
    /// The daemon closed the channel.
    closed: bool,
    /// A stop signal arrived.
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking reader thread leaves the state as consistent as before the panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Options of [`Probe::connect`].
#[derive(Debug, Default)]
pub struct ProbeBuilder {
    meta_files: Vec<PathBuf>,
    meta_text: Option<(PathBuf, String)>,
    first_config_timeout: Option<Duration>,
    sdk_version: Option<String>,
}

impl ProbeBuilder {
    /// Checks records against this meta file (instead of discovering one).
    pub fn meta_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.meta_files.push(path.into());
        self
    }

    /// Checks records against this meta text, e.g. `include_str!("../tcp.meta")`.
    pub fn meta_str(mut self, name: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.meta_text = Some((name.into(), text.into()));
        self
    }

    /// How long to wait for the first configuration (default 5 s).
    pub fn first_config_timeout(mut self, timeout: Duration) -> Self {
        self.first_config_timeout = Some(timeout);
        self
    }

    /// The SDK named in `Hello` (default [`SDK_VERSION`]); for SDKs built on this crate, such
    /// as the C library (`c-<ver>`).
    pub fn sdk_version(mut self, version: impl Into<String>) -> Self {
        self.sdk_version = Some(version.into());
        self
    }

    /// Connects (see [`Probe::connect`]).
    pub fn connect(self) -> Result<Probe, ConnectError> {
        let schema = if let Some((name, text)) = &self.meta_text {
            Schema::from_str(name, text)?
        } else if !self.meta_files.is_empty() {
            Schema::from_files(&self.meta_files)?
        } else {
            Schema::discover()?
        };
        Probe::start(
            Output::stdout(schema),
            self.first_config_timeout.unwrap_or(FIRST_CONFIG_TIMEOUT),
            self.sdk_version.as_deref().unwrap_or(SDK_VERSION),
        )
    }
}

/// A probe's connection to the daemon (see `probe-sdk/API.md`).
pub struct Probe {
    config: Arc<Config>,
    shared: Arc<Shared>,
    channel: Option<(UnixStream, Encoding)>,
    out: Output,
}

impl Probe {
    /// Options for connecting.
    pub fn builder() -> ProbeBuilder {
        ProbeBuilder::default()
    }

    /// Picks up the control channel (or runs offline without one), greets the daemon and
    /// waits up to 5 s for the first configuration; installs SIGTERM/SIGINT handlers.
    pub fn connect() -> Result<Probe, ConnectError> {
        Self::builder().connect()
    }

    fn start(
        out: Output,
        first_config_timeout: Duration,
        sdk_version: &str,
    ) -> Result<Probe, ConnectError> {
        let name = probe_name();
        let shared = Arc::new(Shared::default());
        watch_signals(&shared)?;
        let offline = Arc::new(Config::offline(&name)?);
        let Some((stream, encoding)) = from_env()? else {
            return Ok(Probe {
                config: offline,
                shared,
                channel: None,
                out,
            });
        };
        let hello = ProbeMessage {
            body: Some(probe_message::Body::Hello(Hello {
                sdk_version: sdk_version.to_owned(),
                probe_name: name.clone(),
                pid: std::process::id(),
            })),
        };
        blocking::write_message(&mut &stream, &hello, encoding)?;
        let reader = stream.try_clone()?;
        let for_reader = shared.clone();
        std::thread::Builder::new()
            .name("gala-probe-ipc".into())
            .spawn(move || read_channel(reader, encoding, &for_reader))?;
        let mut probe = Probe {
            config: offline,
            shared,
            channel: Some((stream, encoding)),
            out,
        };
        let deadline = Instant::now() + first_config_timeout;
        let mut state = probe.shared.lock();
        while state.fresh.is_none() && !state.closed && !state.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = probe
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let first = state.fresh.take();
        drop(state);
        match first {
            Some(config) => probe.adopt(config),
            None => eprintln!(
                "[WARN] {name}: no configuration from the daemon within {first_config_timeout:?}; using defaults"
            ),
        }
        Ok(probe)
    }

    /// The latest configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    /// False once a stop was requested.
    pub fn running(&self) -> bool {
        let state = self.shared.lock();
        !state.stop && !state.closed
    }

    /// Whether the probe runs under the daemon (false: offline).
    pub fn is_connected(&self) -> bool {
        self.channel.is_some()
    }

    /// Flushes the output, then sleeps until `timeout` elapses, a new configuration arrives
    /// or a stop is requested.
    pub fn wait(&mut self, timeout: Duration) -> Wake {
        if self.out.flush().is_err() {
            // stdout is gone: nobody reads what the probe reports any more.
            self.shared.update(|s| s.stop = true);
        }
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.stop || state.closed {
                state.stop = true;
                return Wake::Stop;
            }
            if let Some(config) = state.fresh.take() {
                drop(state);
                self.adopt(config);
                return Wake::Config;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Timeout;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Makes `config` current and tells the daemon it is applied.
    fn adopt(&mut self, config: Config) {
        let seq = config.seq();
        self.config = Arc::new(config);
        self.status(Level::Info, &format!("applied config {seq}"));
    }

    /// Writes the record `|table|v1|...|` (see [`crate::emit!`] for mixed value types).
    pub fn emit(&mut self, table: &str, values: &[&dyn Display]) -> Result<(), EmitError> {
        self.out.emit(table, values)
    }

    /// Writes an event line.
    pub fn event(&mut self, event: &Event<'_>) -> Result<(), EmitError> {
        self.out.event(event)
    }

    /// Writes buffered output to stdout now.
    pub fn flush(&mut self) -> Result<(), EmitError> {
        self.out.flush()
    }

    /// Sends a status report with the seq of the current configuration. Best effort: a
    /// daemon that went away is noticed by [`Probe::wait`].
    pub fn status(&mut self, level: Level, text: &str) {
        let Some((stream, encoding)) = &self.channel else {
            return;
        };
        let message = ProbeMessage {
            body: Some(probe_message::Body::Status(Status {
                level: level.wire().into(),
                text: text.to_owned(),
                config_seq: self.config.seq(),
            })),
        };
        let _ = blocking::write_message(&mut &*stream, &message, *encoding);
    }

    /// Whether records are checked against a meta file.
    pub fn checks_meta(&self) -> bool {
        self.out.schema().is_checked()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// The probe's name: `GALA_GOPHER_PROBE_NAME`, else the program's file stem.
pub fn probe_name() -> String {
    if let Ok(name) = std::env::var(ENV_PROBE_NAME) {
        if !name.is_empty() {
            return name;
        }
    }
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "probe".to_owned())
}

/// Reads daemon messages until the channel closes; a newer configuration replaces one not
/// yet taken, keeping the change flags of both.
fn read_channel(stream: UnixStream, encoding: Encoding, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        match blocking::read_message::<DaemonMessage, _>(&mut reader, encoding) {
            Ok(Some(DaemonMessage {
                body: Some(daemon_message::Body::Config(raw)),
            })) => shared.update(|s| {
                let mut config = raw;
                if let Some(skipped) = s.fresh.take() {
                    config.change_flags |= skipped.change_flags();
                }
                s.fresh = Some(Config::from_proto(config));
            }),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(gala_ipc_proto::ReadError::Decode(e)) => {
                eprintln!("[WARN] control channel: bad message skipped: {e}");
            }
            Err(e) => {
                eprintln!("[WARN] control channel: {e}");
                break;
            }
        }
    }
    shared.update(|s| s.closed = true);
}

/// Turns SIGTERM and SIGINT into a stop request.
fn watch_signals(shared: &Arc<Shared>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("gala-probe-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                shared.update(|s| s.stop = true);
            }
        })?;
    Ok(())
}

/// Writes one record with values of mixed types: `emit!(probe, "table", a, b, c)`.
#[macro_export]
macro_rules! emit {
    ($probe:expr, $table:expr $(, $value:expr)* $(,)?) => {
        $probe.emit($table, &[$(&$value as &dyn ::std::fmt::Display),*])
    };
}
