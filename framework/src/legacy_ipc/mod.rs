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
        let (msg, dropped) =
            LegacyMessage::from_config(&config, flags, Some(&self.labels), max_len);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::catalogue::Catalogue;
    use crate::probes::custom::IpcChannel;
    use gala_ipc_proto::v1::Params;

    /// A queue on a key file of its own, custom probes `plain` (1) and `old` (2, legacy).
    fn setup() -> (tempfile::TempDir, Arc<LegacyIpc>, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "").unwrap();
        let probe = |name: &str, ipc| CustomProbe {
            name: name.into(),
            bin: format!("/x/{name}").into(),
            subprobes: vec!["a".into()],
            params: vec!["threshold".into()],
            ipc_encoding: gala_ipc_proto::Encoding::Json,
            ipc,
        };
        let custom = [
            probe("plain", IpcChannel::Socket),
            probe("old", IpcChannel::Sysv),
        ];
        let names = custom
            .iter()
            .filter(|p| p.ipc == IpcChannel::Sysv)
            .map(|p| p.name.clone())
            .collect();
        let ipc = LegacyIpc::with_key_path(&key, names).unwrap();
        (dir, ipc, Catalogue::new(Path::new("/x"), &custom))
    }

    fn config(period: u32) -> Arc<ProbeConfig> {
        Arc::new(ProbeConfig {
            params: Some(Params {
                report_period: period,
                ..Params::default()
            }),
            ..ProbeConfig::default()
        })
    }

    /// The messages waiting for `mtype`, decoded, oldest first (removing them).
    fn drain(ipc: &LegacyIpc, mtype: nix::libc::c_long) -> Vec<LegacyMessage> {
        let mut buf: Vec<nix::libc::c_long> = vec![0; 1 + ipc.queue.msgmax() / 8 + 1];
        let mut out = Vec::new();
        loop {
            // SAFETY: `buf` has room for the type and msgmax bytes.
            let n = unsafe {
                nix::libc::msgrcv(
                    ipc.queue.id(),
                    buf.as_mut_ptr().cast(),
                    ipc.queue.msgmax(),
                    mtype,
                    nix::libc::IPC_NOWAIT,
                )
            };
            if n < 0 {
                return out;
            }
            // SAFETY: the kernel wrote `n` bytes of text after the type.
            let text =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().add(1).cast::<u8>(), n as usize) };
            out.push(wire::decode(text, true).unwrap());
        }
    }

    #[tokio::test]
    async fn only_legacy_probes_get_an_endpoint_addressed_by_position() {
        let (_dir, ipc, cat) = setup();
        assert!(ipc.endpoint(cat.lookup("plain").unwrap()).is_none());
        assert!(ipc.endpoint(cat.lookup("tcp").unwrap()).is_none());
        assert_eq!(
            ipc.endpoint(cat.lookup("old").unwrap()).unwrap().mtype(),
            102
        );
    }

    #[tokio::test]
    async fn messages_follow_the_process_lifetime() {
        let (_dir, ipc, cat) = setup();
        let ep = ipc.endpoint(cat.lookup("old").unwrap()).unwrap();
        // Not running: kept, not sent.
        ep.publish(config(10), u32::from(PARAMS_CHG));
        assert!(drain(&ipc, 102).is_empty());
        // A start sends the snapshot with both flags.
        let first = ep.attach();
        let got = drain(&ipc, 102);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].flags, SNOOPER_CHG | PARAMS_CHG);
        assert_eq!(got[0].params.period, 10);
        assert_eq!(
            got[0].custom.as_ref().unwrap().params,
            [("threshold".into(), String::new())]
        );
        // Changes while running, left unread; a new process starts before the old one's end is
        // seen: the unread messages go, the new process gets one message, the late end of the
        // old one removes nothing.
        ep.publish(config(11), u32::from(PARAMS_CHG));
        ep.publish(config(12), u32::from(SNOOPER_CHG));
        let second = ep.attach();
        ep.detach(first);
        let got = drain(&ipc, 102);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].flags, got[0].params.period), (3, 12));
        // The end of the current process removes what it did not read; then nothing is sent.
        ep.publish(config(13), u32::from(PARAMS_CHG));
        ep.detach(second);
        ep.publish(config(14), u32::from(PARAMS_CHG));
        assert!(drain(&ipc, 102).is_empty());
        ipc.remove();
    }

    #[tokio::test]
    async fn a_full_queue_is_retried_with_the_missed_flags() {
        let (_dir, ipc, cat) = setup();
        let ep = ipc.endpoint(cat.lookup("old").unwrap()).unwrap();
        ep.publish(config(10), 0);
        ep.attach();
        // Fill the queue with another type's messages up to kernel.msgmnb.
        let filler = vec![0u8; ipc.queue.msgmax()];
        while ipc.queue.send(500, &filler).is_ok() {}
        while ipc.queue.send(500, &filler[..64]).is_ok() {}
        ep.publish(config(20), u32::from(PARAMS_CHG));
        ep.publish(config(30), u32::from(SNOOPER_CHG));
        assert_eq!(ep.state.lock().unsent, SNOOPER_CHG | PARAMS_CHG);
        assert_eq!(ep.state.lock().refused, 2);
        // Room again: the retry sends the newest snapshot with every missed flag.
        ipc.queue.clear(500);
        let start = drain(&ipc, 102);
        assert_eq!(start.len(), 1, "the start message went through");
        tokio::time::sleep(RETRY_AFTER * 2).await;
        let got = drain(&ipc, 102);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].flags, got[0].params.period), (3, 30));
        assert!(!ep.state.lock().retrying);
    }
}
