//! The control channel for probes that cannot keep it open themselves: each `gala-probe`
//! command is a short-lived process, so what one invocation read from fd 3 (the newest
//! configuration, a partial frame, the seq last shown to the script) is kept in a state file
//! named after the socket's inode, under an exclusive lock. Every invocation of one probe
//! shares the same socket and hence the same state file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gala_ipc_proto::v1::{
    daemon_message, probe_message, status, DaemonMessage, Hello, ProbeConfig, ProbeMessage, Status,
};
use gala_ipc_proto::{encode, from_env, Encoding, FrameDecoder};
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, MsgFlags};

use gala_probe_sdk::{probe_name, Config, ConfigError, FIRST_CONFIG_TIMEOUT};

/// The helper's name and version in `Hello`.
pub const SH_SDK_VERSION: &str = concat!("sh-", env!("CARGO_PKG_VERSION"));

/// Variable naming the directory of state files (default `$TMPDIR`, else `/tmp`).
pub const ENV_STATE_DIR: &str = "GALA_PROBE_STATE_DIR";

/// Why a shell-helper operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The control channel is unusable.
    #[error("control channel: {0}")]
    Env(#[from] gala_ipc_proto::EnvError),
    /// Reading or writing the channel or the state file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The daemon sent no configuration in time.
    #[error("no configuration from the daemon within {0:?}")]
    NoConfig(Duration),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShellError {
    let what = what.into();
    move |source| ShellError::Io { what, source }
}

/// Why [`ShellChannel::wait`] returned; the process exit status of `gala-probe wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellWake {
    /// The time elapsed (exit 0).
    Timeout = 0,
    /// A configuration newer than the last one shown arrived (exit 10).
    Config = 10,
    /// The daemon closed the channel (exit 11).
    Stop = 11,
}

/// What is kept between invocations.
#[derive(Debug, Default)]
struct Saved {
    config: Option<ProbeConfig>,
    /// Received bytes of an incomplete frame.
    pending: Vec<u8>,
    /// Seq of the newest configuration shown to the script.
    seen_seq: u64,
    hello_sent: bool,
    closed: bool,
}

impl Saved {
    fn load(file: &mut File) -> Self {
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() || text.is_empty() {
            return Saved::default();
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Saved::default();
        };
        Saved {
            config: v
                .get("config")
                .and_then(|c| serde_json::from_value(c.clone()).ok()),
            pending: v
                .get("pending")
                .and_then(serde_json::Value::as_str)
                .and_then(from_hex)
                .unwrap_or_default(),
            seen_seq: v
                .get("seen_seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            hello_sent: v
                .get("hello_sent")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            closed: v
                .get("closed")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        }
    }

    fn to_json(&self) -> String {
        serde_json::json!({
            "config": self.config,
            "pending": to_hex(&self.pending),
            "seen_seq": self.seen_seq,
            "hello_sent": self.hello_sent,
            "closed": self.closed,
        })
        .to_string()
    }
}

/// The channel as seen by one `gala-probe` invocation: offline, or fd 3 plus its state file.
pub struct ShellChannel {
    link: Option<Link>,
    offline: Config,
}

struct Link {
    stream: UnixStream,
    encoding: Encoding,
    state_path: PathBuf,
}

/// The state file, locked, with what it holds.
struct Locked {
    file: Flock<File>,
    saved: Saved,
}

impl ShellChannel {
    /// Opens the channel the daemon passed (offline if there is none).
    pub fn open() -> Result<Self, ShellError> {
        let offline = Config::offline(&probe_name())?;
        let Some((stream, encoding)) = from_env()? else {
            return Ok(ShellChannel {
                link: None,
                offline,
            });
        };
        let ino = stream
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
            .map_err(io_err("fstat control channel"))?
            .ino();
        let dir = std::env::var_os(ENV_STATE_DIR)
            .or_else(|| std::env::var_os("TMPDIR"))
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        // The probe's process group (the daemon starts each probe as a group leader) and the
        // socket's inode together name this channel; either alone may be reused.
        let uid = nix::unistd::getuid();
        let pgid = nix::unistd::getpgrp();
        let state_path = dir.join(format!("gala-probe-{uid}-{pgid}-{ino}.state"));
        if !state_path.exists() {
            remove_stale_states(&dir, &format!("gala-probe-{uid}-"));
        }
        Ok(ShellChannel {
            link: Some(Link {
                stream,
                encoding,
                state_path,
            }),
            offline,
        })
    }

    /// The newest configuration (waiting up to 5 s for the first one); it counts as shown
    /// to the script, so a following `wait` does not report it again.
    pub fn config(&self) -> Result<Config, ShellError> {
        let Some(link) = &self.link else {
            return Ok(self.offline.clone());
        };
        let mut locked = link.lock()?;
        link.pump(&mut locked.saved)?;
        let deadline = Instant::now() + FIRST_CONFIG_TIMEOUT;
        while locked.saved.config.is_none() && !locked.saved.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ShellError::NoConfig(FIRST_CONFIG_TIMEOUT));
            }
            link.poll(left)?;
            link.pump(&mut locked.saved)?;
        }
        let Some(raw) = locked.saved.config.clone() else {
            link.save(&mut locked)?;
            return Ok(self.offline.clone());
        };
        link.mark_seen(&mut locked.saved, raw.seq);
        link.save(&mut locked)?;
        Ok(Config::from_proto(raw))
    }

    /// Sleeps up to `timeout`, returning early when a configuration newer than the last one
    /// shown arrives (which then counts as shown) or the daemon closes the channel.
    pub fn wait(&self, timeout: Duration) -> Result<ShellWake, ShellError> {
        let Some(link) = &self.link else {
            std::thread::sleep(timeout);
            return Ok(ShellWake::Timeout);
        };
        let deadline = Instant::now() + timeout;
        loop {
            let mut locked = link.lock()?;
            link.pump(&mut locked.saved)?;
            let saved = &mut locked.saved;
            let newer = saved
                .config
                .as_ref()
                .map(|c| c.seq)
                .filter(|&seq| seq > saved.seen_seq);
            let wake = if let Some(seq) = newer {
                link.mark_seen(saved, seq);
                Some(ShellWake::Config)
            } else if saved.closed {
                Some(ShellWake::Stop)
            } else {
                None
            };
            link.save(&mut locked)?;
            drop(locked);
            if let Some(wake) = wake {
                return Ok(wake);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ShellWake::Timeout);
            }
            link.poll(left)?;
        }
    }

    /// Sends a status report for the newest configuration seen.
    pub fn status(&self, level: status::Level, text: &str) -> Result<(), ShellError> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let mut locked = link.lock()?;
        link.pump(&mut locked.saved)?;
        let seq = locked.saved.seen_seq;
        link.send_status(level, text, seq);
        link.save(&mut locked)
    }
}

impl Link {
    fn lock(&self) -> Result<Locked, ShellError> {
        let path = &self.state_path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err(format!("open {}", path.display())))?;
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| ShellError::Io {
                what: format!("lock {}", path.display()),
                source: e.into(),
            })?;
        let mut saved = Saved::load(&mut file);
        if !saved.hello_sent {
            saved.hello_sent = true;
            let hello = Hello {
                sdk_version: SH_SDK_VERSION.to_owned(),
                probe_name: probe_name(),
                pid: nix::unistd::getppid().as_raw().unsigned_abs(),
            };
            self.send(probe_message::Body::Hello(hello));
        }
        Ok(Locked { file, saved })
    }

    fn save(&self, locked: &mut Locked) -> Result<(), ShellError> {
        let what = || format!("write {}", self.state_path.display());
        let text = locked.saved.to_json();
        let file: &mut File = &mut locked.file;
        file.set_len(0).map_err(io_err(what()))?;
        std::io::Seek::rewind(file).map_err(io_err(what()))?;
        file.write_all(text.as_bytes()).map_err(io_err(what()))
    }

    /// Reads what the socket holds without blocking and keeps the newest configuration.
    fn pump(&self, saved: &mut Saved) -> Result<(), ShellError> {
        let mut buf = [0u8; 64 * 1024];
        let mut got = std::mem::take(&mut saved.pending);
        loop {
            match recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.stream),
                &mut buf,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => {
                    saved.closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io_err("read control channel")(e.into())),
            }
        }
        let mut decoder = FrameDecoder::<DaemonMessage>::new(self.encoding);
        decoder.push(&got);
        loop {
            match decoder.next() {
                Ok(Some(DaemonMessage {
                    body: Some(daemon_message::Body::Config(mut config)),
                })) => {
                    if let Some(old) = &saved.config {
                        if old.seq > saved.seen_seq {
                            config.change_flags |= old.change_flags;
                        }
                    }
                    saved.config = Some(config);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => eprintln!("[WARN] control channel: bad message skipped: {e}"),
            }
        }
        let left = decoder.buffered_len();
        saved.pending = got.split_off(got.len() - left);
        Ok(())
    }

    fn poll(&self, timeout: Duration) -> Result<(), ShellError> {
        let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(io_err("poll control channel")(e.into())),
        }
    }

    fn mark_seen(&self, saved: &mut Saved, seq: u64) {
        if seq > saved.seen_seq {
            saved.seen_seq = seq;
            self.send_status(status::Level::Info, &format!("applied config {seq}"), seq);
        }
    }

    fn send_status(&self, level: status::Level, text: &str, seq: u64) {
        self.send(probe_message::Body::Status(Status {
            level: level.into(),
            text: text.to_owned(),
            config_seq: seq,
        }));
    }

    /// Best effort: a daemon that went away shows as a closed channel on the next read.
    fn send(&self, body: probe_message::Body) {
        if let Ok(frame) = encode(&ProbeMessage { body: Some(body) }, self.encoding) {
            let _ = (&self.stream).write_all(&frame);
        }
    }
}

/// Removes the state files (`<prefix><pgid>-<ino>.state`) of probes whose process group is
/// gone, so that finished probes leave nothing behind. Runs once per probe start.
fn remove_stale_states(dir: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pgid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .filter(|n| n.ends_with(".state"))
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0x7f, 0xff, b'{'];
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn saved_state_round_trip() {
        let saved = Saved {
            config: Some(ProbeConfig {
                seq: 4,
                probe_name: "x".into(),
                ..Default::default()
            }),
            pending: b"{\"conf".to_vec(),
            seen_seq: 3,
            hello_sent: true,
            closed: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, saved.to_json()).unwrap();
        let back = Saved::load(&mut File::open(&path).unwrap());
        assert_eq!(back.config, saved.config);
        assert_eq!(back.pending, saved.pending);
        assert_eq!(back.seen_seq, 3);
        assert!(back.hello_sent);
        // A damaged file starts afresh rather than failing the probe.
        std::fs::write(&path, "garbage").unwrap();
        assert!(Saved::load(&mut File::open(&path).unwrap())
            .config
            .is_none());
    }
}
