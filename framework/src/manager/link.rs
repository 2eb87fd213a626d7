//! A probe's control channel as the daemon sees it: the latest configuration snapshot with
//! the change flags gathered since the last send, written to each new process of the probe
//! and again whenever it changes; and the messages the probe sends back, logged.
//!
//! Only the latest snapshot is kept (every message is complete, so skipping an intermediate
//! one loses nothing as long as the flags are OR-ed), and writing happens on a task of its
//! own: a probe that never reads fd 3 only ever stalls that task, never the manager.
//!
//! A custom probe declared with `"ipc": "sysv"` also gets every snapshot on the legacy queue
//! ([`crate::legacy_ipc::Endpoint`]); its socket still tells when its process ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_ipc_proto::v1::{
    daemon_message, probe_message, status, DaemonMessage, ProbeConfig, ProbeMessage,
};
use gala_ipc_proto::{tokio_io, Encoding, PARAMS_CHG, SNOOPER_CHG};
use parking_lot::Mutex;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::legacy_ipc::Endpoint as LegacyEndpoint;
use crate::ratelimit::{RateLimiter, Verdict};

/// What waits to be sent.
#[derive(Default)]
struct Pending {
    config: Option<Arc<ProbeConfig>>,
    /// Change flags OR-ed since the last send.
    flags: u32,
    /// Sequence number of the last message sent.
    seq: u64,
}

/// The daemon's side of one probe's control channel (it outlives the probe's processes).
pub struct ConfigLink {
    probe: String,
    encoding: Encoding,
    pending: Mutex<Pending>,
    /// Bumped on every [`ConfigLink::publish`], to wake the writers.
    version: watch::Sender<u64>,
    /// The probe's sender on the legacy queue, if it uses it.
    legacy: Option<Arc<LegacyEndpoint>>,
}

impl ConfigLink {
    /// The channel of `probe`, speaking `encoding`, mirrored on the legacy queue by
    /// `legacy`.
    pub fn new(probe: &str, encoding: Encoding, legacy: Option<Arc<LegacyEndpoint>>) -> Self {
        ConfigLink {
            probe: probe.to_string(),
            encoding,
            pending: Mutex::new(Pending::default()),
            version: watch::Sender::new(0),
            legacy,
        }
    }

    /// Makes `config` the snapshot to send, adding `flags` to those not yet sent.
    pub fn publish(&self, config: ProbeConfig, flags: u32) {
        let config = Arc::new(config);
        {
            let mut p = self.pending.lock();
            p.config = Some(config.clone());
            p.flags |= flags;
        }
        if let Some(legacy) = &self.legacy {
            legacy.publish(config, flags);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Serves a new process of the probe on `socket`: the current snapshot first (with every
    /// change flag: the process knows nothing yet), then each new one.
    /// On the legacy queue, the unread messages of an earlier process are dropped and the
    /// snapshot is queued at once; they are dropped again when this process closes its socket.
    pub fn attach(self: Arc<Self>, socket: UnixStream, pid: u32) {
        let legacy = self.legacy.as_ref().map(|l| (l.clone(), l.attach()));
        let (read, write) = socket.into_split();
        let link = self.clone();
        let writer = tokio::spawn(async move { link.write_loop(write, pid).await });
        tokio::spawn(async move {
            self.read_loop(read, pid).await;
            // The process closed its end (or exited): nothing more can be delivered.
            writer.abort();
            if let Some((legacy, generation)) = legacy {
                legacy.detach(generation);
            }
        });
    }

    /// The next message to send, if there is a snapshot; `fresh` marks the first one a new
    /// process gets.
    fn take(&self, fresh: bool) -> Option<DaemonMessage> {
        let mut p = self.pending.lock();
        let config = p.config.clone()?;
        let flags = if fresh {
            SNOOPER_CHG | PARAMS_CHG
        } else {
            std::mem::take(&mut p.flags)
        };
        if fresh {
            p.flags = 0;
        }
        p.seq += 1;
        let mut msg = (*config).clone();
        msg.seq = p.seq;
        msg.change_flags = flags;
        Some(DaemonMessage {
            body: Some(daemon_message::Body::Config(msg)),
        })
    }

    async fn write_loop(&self, mut write: tokio::net::unix::OwnedWriteHalf, pid: u32) {
        let mut version = self.version.subscribe();
        let mut fresh = true;
        loop {
            version.borrow_and_update();
            if let Some(msg) = self.take(fresh) {
                fresh = false;
                if let Err(e) = tokio_io::write_message(&mut write, &msg, self.encoding).await {
                    tracing::debug!(probe = self.probe, pid, "control channel closed: {e}");
                    return;
                }
            }
            if version.changed().await.is_err() {
                return;
            }
        }
    }

    async fn read_loop(&self, read: tokio::net::unix::OwnedReadHalf, pid: u32) {
        let mut read = BufReader::new(read);
        let mut limiter = RateLimiter::new(Duration::from_secs(1), 20);
        loop {
            let msg =
                match tokio_io::read_message::<ProbeMessage, _>(&mut read, self.encoding).await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return,
                    Err(e) => {
                        if matches!(
                            e,
                            gala_ipc_proto::ReadError::Io(_) | gala_ipc_proto::ReadError::Truncated
                        ) {
                            return;
                        }
                        if let Verdict::Log { .. } = limiter.check(Instant::now()) {
                            tracing::warn!(probe = self.probe, pid, "bad control message: {e}");
                        }
                        continue;
                    }
                };
            let Verdict::Log { suppressed } = limiter.check(Instant::now()) else {
                continue;
            };
            if suppressed > 0 {
                tracing::warn!(
                    probe = self.probe,
                    pid,
                    "{suppressed} control messages not logged"
                );
            }
            match msg.body {
                Some(probe_message::Body::Hello(h)) => tracing::info!(
                    probe = self.probe,
                    pid,
                    "probe says hello: sdk {:?}",
                    h.sdk_version
                ),
                Some(probe_message::Body::Status(s)) => {
                    let text = &s.text;
                    match s.level() {
                        status::Level::Error => {
                            tracing::error!(probe = self.probe, pid, seq = s.config_seq, "{text}")
                        }
                        status::Level::Warn => {
                            tracing::warn!(probe = self.probe, pid, seq = s.config_seq, "{text}")
                        }
                        _ => tracing::info!(probe = self.probe, pid, seq = s.config_seq, "{text}"),
                    }
                }
                None => {}
            }
        }
    }
}
