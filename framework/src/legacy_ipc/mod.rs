//! The legacy control channel (docs/reference/ipc-and-lifecycle.md §6.6): custom probes
//! declared with `"ipc": "sysv"` in `gala-gopher-custom.json` also get the original's control
//! messages on its System V message queue (key `ftok("/usr/bin/gala-gopher", 'g')`, message
//! type `100 + <position in the file>`), so probes written against the original's
//! `recv_custom_ipc_msg` run unchanged.
//!
//! [`wire`] is the message encoding, [`queue`] the queue; [`LegacyIpc`] is the daemon's one
//! queue with the probes using it, and [`Endpoint`] one probe's sender: it clears the probe's
//! stale messages when a process of the probe starts or ends, sends the full snapshot when one
//! starts and after each change, never blocks, and retries a send the full queue refused.

pub mod queue;
pub mod wire;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_ipc_proto::v1::ProbeConfig;
use parking_lot::Mutex;

use crate::probes::catalogue::{ProbeKind, ProbeOrigin};
use crate::probes::CustomProbe;
use crate::ratelimit::{RateLimiter, Verdict};
pub use queue::{Queue, QueueError, SendError};
pub use wire::{LegacyMessage, PARAMS_CHG, SNOOPER_CHG};

/// The file whose `ftok` key the original's probes use.
pub const DEFAULT_KEY_PATH: &str = "/usr/bin/gala-gopher";
/// Environment variable naming another key file (tests, non-standard installs); probes
/// inherit it, so a probe may read it too.
pub const ENV_KEY_PATH: &str = "GALA_GOPHER_LEGACY_IPC_PATH";
/// Message type of custom probe `n` (1-based position in the file) is `MTYPE_BASE + n`
/// (the original's `PROBE_CUSTOM_IPC`).
pub const MTYPE_BASE: u32 = 100;
/// How long after a refused send it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The daemon's legacy queue and the custom probes that use it.
#[derive(Debug)]
pub struct LegacyIpc {
    queue: Arc<Queue>,
    probes: BTreeSet<String>,
}

impl LegacyIpc {
    /// Creates the queue if a custom probe of `custom` asks for the legacy channel (`None`
    /// otherwise), keyed on `$GALA_GOPHER_LEGACY_IPC_PATH` or `/usr/bin/gala-gopher`.
    pub fn open(custom: &[CustomProbe]) -> Result<Option<Arc<Self>>, QueueError> {
        let probes: BTreeSet<String> = custom
            .iter()
            .filter(|p| p.ipc == crate::probes::custom::IpcChannel::Sysv)
            .map(|p| p.name.clone())
            .collect();
        if probes.is_empty() {
            return Ok(None);
        }
        let path = std::env::var_os(ENV_KEY_PATH)
            .map_or_else(|| PathBuf::from(DEFAULT_KEY_PATH), PathBuf::from);
        Self::with_key_path(&path, probes).map(Some)
    }

    /// The queue of `ftok(path, 'g')` for the custom probes named in `probes`.
    pub fn with_key_path(path: &Path, probes: BTreeSet<String>) -> Result<Arc<Self>, QueueError> {
        let queue = Arc::new(Queue::create(path)?);
        tracing::info!(
            "legacy IPC for custom probes {}",
            probes.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(Arc::new(LegacyIpc { queue, probes }))
    }

    /// The sender for `kind`, if it is a custom probe using the legacy channel.
    pub fn endpoint(&self, kind: &ProbeKind) -> Option<Arc<Endpoint>> {
        let ProbeOrigin::Custom { position, params } = &kind.origin else {
            return None;
        };
        if !self.probes.contains(&kind.name) {
            return None;
        }
        Some(Arc::new(Endpoint {
            probe: kind.name.clone(),
            queue: self.queue.clone(),
            mtype: nix::libc::c_long::from(MTYPE_BASE + position),
            labels: params.clone(),
            state: Mutex::new(State {
                generation: 0,
                attached: false,
                config: None,
                unsent: 0,
                retrying: false,
                refused: 0,
                full_log: RateLimiter::new(Duration::from_secs(60), 1),
                truncated_log: RateLimiter::new(Duration::from_secs(60), 1),
            }),
        }))
    }

    /// Removes the queue (at daemon exit).
    pub fn remove(&self) {
        self.queue.remove();
    }
}

/// One probe's sender on the legacy queue.
pub struct Endpoint {
    probe: String,
    queue: Arc<Queue>,
    mtype: nix::libc::c_long,
    /// Declared `custom_param` labels, in file order.
    labels: Vec<String>,
    state: Mutex<State>,
}

struct State {
    /// Bumped when a process of the probe starts.
    generation: u64,
    /// Whether a process of the probe runs (messages go only to a running probe).
    attached: bool,
    /// The latest snapshot.
    config: Option<Arc<ProbeConfig>>,
    /// Change flags of messages the queue refused, sent with the next one.
    unsent: u16,
    /// Whether a retry task is pending.
    retrying: bool,
    /// Sends the queue refused since the daemon started.
    refused: u64,
    full_log: RateLimiter,
    truncated_log: RateLimiter,
}

impl Endpoint {
    /// The message type of the probe (`100 + position`).
    pub fn mtype(&self) -> nix::libc::c_long {
        self.mtype
    }

    /// A process of the probe started: drops what an earlier one left unread and sends the
    /// latest snapshot with both change flags. Returns the generation to pass to
    /// [`Endpoint::detach`].
    pub fn attach(self: &Arc<Self>) -> u64 {
        let mut st = self.state.lock();
        st.generation += 1;
        st.attached = true;
        st.unsent = 0;
        self.clear();
        self.send(&mut st, SNOOPER_CHG | PARAMS_CHG);
        st.generation
    }

    /// The process of `generation` ended: unless a newer one has started, its unread
    /// messages are removed and nothing more is sent until the next start.
    pub fn detach(&self, generation: u64) {
        let mut st = self.state.lock();
        if st.generation == generation && st.attached {
            st.attached = false;
            st.unsent = 0;
            self.clear();
        }
    }

    /// A new snapshot with change `flags`: kept, and sent if the probe runs.
    pub fn publish(self: &Arc<Self>, config: Arc<ProbeConfig>, flags: u32) {
        let mut st = self.state.lock();
        st.config = Some(config);
        if st.attached {
            self.send(&mut st, flags as u16 & (SNOOPER_CHG | PARAMS_CHG));
        }
    }

    fn clear(&self) {
        let n = self.queue.clear(self.mtype);
        if n > 0 {
            tracing::info!(
                probe = self.probe,
                "legacy IPC: removed {n} unread messages of type {}",
                self.mtype
            );
        }
    }

    /// Sends the latest snapshot with `flags` and those of refused sends; on a full queue,
    /// keeps the flags and schedules a retry.
    fn send(self: &Arc<Self>, st: &mut State, flags: u16) {
        let Some(config) = st.config.clone() else {
            return;
        };
        let flags = flags | st.unsent;
        let max_len = self.queue.msgmax();
        let (msg, dropped) = LegacyMessage::from_config(&config, flags, Some(&self.labels), max_len);
        if dropped > 0 {
            if let Verdict::Log { .. } = st.truncated_log.check(Instant::now()) {
                tracing::warn!(
                    probe = self.probe,
                    "legacy IPC: {dropped} snooper objects left out (at most {} objects and kernel.msgmax = {max_len} bytes per message)",
                    wire::SNOOPER_MAX
                );
            }
        }
        match self.queue.send(self.mtype, &wire::encode(&msg)) {
            Ok(()) => st.unsent = 0,
            Err(e) => {
                st.unsent = flags;
                st.refused += 1;
                if let Verdict::Log { suppressed } = st.full_log.check(Instant::now()) {
                    tracing::warn!(
                        probe = self.probe,
                        "legacy IPC: message type {} not queued ({e}); {} refused so far ({suppressed} not logged), retrying every {RETRY_AFTER:?}",
                        self.mtype,
                        st.refused
                    );
                }
                if e == SendError::Full && !st.retrying {
                    st.retrying = true;
                    let me = self.clone();
                    tokio::spawn(async move { me.retry().await });
                }
            }
        }
    }

    /// Resends the latest snapshot until the queue takes it or the probe stops.
    async fn retry(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RETRY_AFTER).await;
            let mut st = self.state.lock();
            if !st.attached || st.unsent == 0 {
                st.retrying = false;
                return;
            }
            self.send(&mut st, 0);
            if st.unsent == 0 {
                st.retrying = false;
                return;
            }
        }
    }
}
