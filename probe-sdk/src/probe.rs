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

    /// Waits until `ready` holds or `deadline` has passed, and returns the state either way.
    fn wait_until(
        &self,
        deadline: Instant,
        ready: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        while !ready(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state
    }
}

/// Options of [`Probe::connect`].
#[derive(Debug, Default)]
pub struct ProbeBuilder {
    meta_files: Vec<PathBuf>,
    meta_text: Vec<(PathBuf, String)>,
    first_config_timeout: Option<Duration>,
    sdk_version: Option<String>,
}

impl ProbeBuilder {
    /// Checks records against this meta file (instead of discovering one).
    pub fn meta_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.meta_files.push(path.into());
        self
    }

    /// Checks records against this meta text, e.g. `include_str!("../tcp.meta")`; call it
    /// once per meta file of the probe.
    pub fn meta_str(mut self, name: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.meta_text.push((name.into(), text.into()));
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
        let schema = if !self.meta_text.is_empty() {
            let files: Vec<(&Path, &str)> = self
                .meta_text
                .iter()
                .map(|(name, text)| (name.as_path(), text.as_str()))
                .collect();
            Schema::from_strs(&files)?
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
        let channel = from_env()?;
        let probe = Self::start_on(out, channel, first_config_timeout, sdk_version)?;
        watch_signals(&probe.shared)?;
        Ok(probe)
    }

    /// Starts on `channel` (offline without one): greets the daemon and takes its first
    /// configuration.
    fn start_on(
        out: Output,
        channel: Option<(UnixStream, Encoding)>,
        first_config_timeout: Duration,
        sdk_version: &str,
    ) -> Result<Probe, ConnectError> {
        let name = probe_name();
        let shared = Arc::new(Shared::default());
        let offline = Arc::new(Config::offline(&name)?);
        let Some((stream, encoding)) = channel else {
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
            shared: shared.clone(),
            channel: Some((stream, encoding)),
            out,
        };
        let deadline = Instant::now() + first_config_timeout;
        let first = shared
            .wait_until(deadline, |s| s.fresh.is_some() || s.closed || s.stop)
            .fresh
            .take();
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
        let shared = self.shared.clone();
        let mut state = shared.wait_until(deadline, |s| s.stop || s.closed || s.fresh.is_some());
        if state.stop || state.closed {
            state.stop = true;
            return Wake::Stop;
        }
        match state.fresh.take() {
            Some(config) => {
                drop(state);
                self.adopt(config);
                Wake::Config
            }
            None => Wake::Timeout,
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

    /// Writes the record `|table|v1|...|` from any iterable of displayable values, each
    /// written straight into the output buffer (see [`crate::Output::emit_iter`]).
    pub fn emit_iter<I>(&mut self, table: &str, values: I) -> Result<(), EmitError>
    where
        I: IntoIterator,
        I::Item: Display,
    {
        self.out.emit_iter(table, values)
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
        // Ends the reader thread too, so the daemon sees the channel close now.
        if let Some((stream, _)) = &self.channel {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use gala_ipc_proto::v1::{Params, ProbeConfig};
    use gala_ipc_proto::{encode, FrameDecoder};

    use super::*;

    /// A probe on one end of a socket pair; the test plays the daemon on the other.
    fn probe_on(encoding: Encoding, first: Option<ProbeConfig>) -> (Probe, UnixStream) {
        let (daemon, probe_end) = UnixStream::pair().unwrap();
        if let Some(c) = first {
            send(&daemon, encoding, c);
        }
        let out = Output::new(Schema::unchecked(), std::io::stdout());
        let probe = Probe::start_on(
            out,
            Some((probe_end, encoding)),
            Duration::from_millis(300),
            SDK_VERSION,
        )
        .unwrap();
        (probe, daemon)
    }

    fn config(seq: u64, flags: u32, period: u32) -> ProbeConfig {
        ProbeConfig {
            probe_name: "t".into(),
            seq,
            change_flags: flags,
            params: Some(Params {
                report_period: period,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn send(daemon: &UnixStream, encoding: Encoding, c: ProbeConfig) {
        let m = DaemonMessage {
            body: Some(daemon_message::Body::Config(c)),
        };
        (&*daemon)
            .write_all(&encode(&m, encoding).unwrap())
            .unwrap();
    }

    /// What the probe sent, read until `count` messages arrived.
    fn replies(daemon: &UnixStream, encoding: Encoding, count: usize) -> Vec<ProbeMessage> {
        daemon
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut decoder = FrameDecoder::<ProbeMessage>::new(encoding);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < count {
            let n = std::io::Read::read(&mut &*daemon, &mut buf).unwrap();
            assert!(n > 0, "channel closed after {got:?}");
            decoder.push(&buf[..n]);
            while let Some(m) = decoder.next().unwrap() {
                got.push(m);
            }
        }
        got
    }

    #[test]
    fn greets_takes_the_first_config_and_acknowledges_it() {
        for encoding in [Encoding::Proto, Encoding::Json] {
            let (probe, daemon) = probe_on(encoding, Some(config(1, 3, 30)));
            assert!(probe.is_connected());
            assert_eq!(probe.config().seq(), 1);
            assert_eq!(probe.config().params().report_period, 30);
            let got = replies(&daemon, encoding, 2);
            let Some(probe_message::Body::Hello(hello)) = &got[0].body else {
                panic!("{got:?}")
            };
            assert_eq!(hello.sdk_version, SDK_VERSION);
            assert_eq!(hello.pid, std::process::id());
            let Some(probe_message::Body::Status(status)) = &got[1].body else {
                panic!("{got:?}")
            };
            assert_eq!(status.config_seq, 1);
        }
    }

    #[test]
    fn wait_wakes_on_a_change_and_collapses_queued_ones() {
        let encoding = Encoding::Json;
        let (mut probe, daemon) = probe_on(encoding, Some(config(1, 3, 30)));
        let start = Instant::now();
        assert_eq!(probe.wait(Duration::from_millis(100)), Wake::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(100));

        let sender = daemon.try_clone().unwrap();
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            send(&sender, encoding, config(2, 2, 10));
        });
        let start = Instant::now();
        assert_eq!(probe.wait(Duration::from_secs(10)), Wake::Config);
        assert!(start.elapsed() < Duration::from_secs(5));
        later.join().unwrap();
        assert_eq!(probe.config().seq(), 2);
        assert_eq!(probe.config().params().report_period, 10);

        // Two changes while the probe was busy: it sees the newest, with both flags.
        send(&daemon, encoding, config(3, 1, 10));
        send(&daemon, encoding, config(4, 2, 20));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(probe.wait(Duration::from_secs(5)), Wake::Config);
        assert_eq!(probe.config().seq(), 4);
        assert_eq!(probe.config().change_flags(), 3);
        assert_eq!(probe.wait(Duration::from_millis(50)), Wake::Timeout);
    }

    #[test]
    fn a_closed_channel_means_stop() {
        let (mut probe, daemon) = probe_on(Encoding::Proto, Some(config(1, 3, 30)));
        assert!(probe.running());
        drop(daemon);
        assert_eq!(probe.wait(Duration::from_secs(5)), Wake::Stop);
        assert!(!probe.running());
        assert_eq!(probe.wait(Duration::from_secs(5)), Wake::Stop);
    }

    #[test]
    fn without_a_first_config_the_defaults_apply_until_one_arrives() {
        let (mut probe, daemon) = probe_on(Encoding::Proto, None);
        assert_eq!(probe.config().params().report_period, 60);
        send(&daemon, Encoding::Proto, config(1, 3, 7));
        assert_eq!(probe.wait(Duration::from_secs(5)), Wake::Config);
        assert_eq!(probe.config().params().report_period, 7);
    }

    #[test]
    fn dropping_the_probe_closes_the_channel() {
        let (probe, daemon) = probe_on(Encoding::Json, Some(config(1, 3, 30)));
        let _ = replies(&daemon, Encoding::Json, 2);
        drop(probe);
        let mut buf = [0u8; 16];
        daemon
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut &daemon, &mut buf).unwrap(), 0);
    }
}
