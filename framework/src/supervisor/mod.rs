//! Probe supervision: one task per probe owns its child process, starts and stops it on
//! request, restarts it with capped exponential backoff when it exits on its own, and marks
//! it `failed` after too many quick failures. Everything else sees the probe through
//! [`Supervisor`] (commands in, [`RuntimeState`] out), so a slow or hung probe never blocks the
//! caller beyond its own stop.

pub mod cgroup;
mod child;
mod policy;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use cgroup::Cgroups;
pub use child::{describe, reserve_ipc_fd, LaunchSpec, ProbeChild};
pub use policy::{Decision, RestartPolicy};

use crate::config::SupervisorConfig;
use crate::ingress::Pipeline;
use crate::selfmetrics;

/// Where a probe is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not running, and not wanted.
    Stopped,
    /// Being spawned.
    Starting,
    /// The process runs.
    Running,
    /// It exited on its own; waiting for the backoff before starting it again.
    Restarting,
    /// It failed too often in a row; left stopped until it is asked to start again.
    Failed,
}

impl Status {
    /// The name shown in GET and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stopped => "stopped",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Failed => "failed",
        }
    }

    /// Whether the operator's wish is for the probe to run (it runs or will run again).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Starting | Status::Running | Status::Restarting
        )
    }
}

/// What a probe's supervisor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// Where the probe is.
    pub status: Status,
    /// Pid of the running process.
    pub pid: Option<u32>,
    /// Automatic restarts since the daemon started.
    pub restarts: u32,
    /// How the last process ended (or why it could not start).
    pub last_exit: Option<String>,
}

/// Shared by all supervisors.
pub struct SupervisorContext {
    /// Where every probe's stdout goes.
    pub pipeline: Arc<Pipeline>,
    /// Grace period, backoff and failure limits.
    pub config: SupervisorConfig,
    /// The per-probe cgroups, when the daemon has them.
    pub cgroups: Option<Arc<Cgroups>>,
}

/// Called with the daemon's end of each new process's control socket and the process's pid.
pub type OnSpawn = Arc<dyn Fn(UnixStream, u32) + Send + Sync>;

enum Command {
    Start(LaunchSpec),
    Stop(oneshot::Sender<()>),
}

/// The handle of one probe's supervising task; dropping it stops the probe.
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<RuntimeState>,
}

impl Supervisor {
    /// A supervisor for probe `name`, initially stopped. Must be called inside the runtime.
    pub fn new(name: &str, ctx: Arc<SupervisorContext>, on_spawn: OnSpawn) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RuntimeState {
            status: Status::Stopped,
            pid: None,
            restarts: 0,
            last_exit: None,
        });
        let task = Task {
            name: name.to_string(),
            policy: RestartPolicy::new(&ctx.config),
            ctx,
            on_spawn,
            state: state_tx,
            restarts: selfmetrics::probe_restarts(name),
            up: selfmetrics::probe_up(name),
        };
        tokio::spawn(task.run(rx));
        Supervisor { tx, state }
    }

    /// Starts the probe (or keeps it running; a different `spec` restarts it). Clears a
    /// `failed` state and the failure count.
    pub fn start(&self, spec: LaunchSpec) {
        let _ = self.tx.send(Command::Start(spec));
    }

    /// Stops the probe; returns once its process is reaped.
    pub async fn stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Stop(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// The probe's current state.
    pub fn state(&self) -> RuntimeState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<RuntimeState> {
        self.state.clone()
    }
}

/// The supervising task's own state.
struct Task {
    name: String,
    ctx: Arc<SupervisorContext>,
    on_spawn: OnSpawn,
    policy: RestartPolicy,
    state: watch::Sender<RuntimeState>,
    restarts: Counter,
    up: Gauge,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut spec: Option<LaunchSpec> = None;
        let mut child: Option<ProbeChild> = None;
        // When a probe that exited on its own is due to start again.
        let mut restart_at: Option<Instant> = None;
        loop {
            let command = tokio::select! {
                status = exited(&mut child) => {
                    let uptime = child.take().map_or(Duration::ZERO, |c| c.uptime());
                    let why = describe(status);
                    tracing::warn!(probe = self.name, "exited unexpectedly after {uptime:?}: {why}");
                    restart_at = self.after_exit(uptime, why);
                    continue;
                }
                _ = sleep_until(restart_at) => {
                    restart_at = None;
                    if let Some(s) = &spec {
                        self.restarts.increment(1);
                        self.state.send_modify(|st| st.restarts += 1);
                        (child, restart_at) = self.launch(s);
                    }
                    continue;
                }
                command = rx.recv() => command,
            };
            match command {
                Some(Command::Start(new_spec)) => {
                    self.policy.reset();
                    if child.is_some() && spec.as_ref() == Some(&new_spec) {
                        continue;
                    }
                    if let Some(c) = child.take() {
                        self.stop_child(c).await;
                    }
                    (child, restart_at) = self.launch(&new_spec);
                    spec = Some(new_spec);
                }
                Some(Command::Stop(ack)) => {
                    if let Some(c) = child.take() {
                        self.stop_child(c).await;
                    }
                    restart_at = None;
                    self.set_status(Status::Stopped, None);
                    let _ = ack.send(());
                }
                None => {
                    if let Some(c) = child.take() {
                        self.stop_child(c).await;
                    }
                    if let Some(cgroups) = &self.ctx.cgroups {
                        cgroups.release(&self.name);
                    }
                    self.set_status(Status::Stopped, None);
                    return;
                }
            }
        }
    }

    /// Spawns the process; when that fails, it counts as a failure at once: the result then
    /// holds when to try again, if at all.
    fn launch(&mut self, spec: &LaunchSpec) -> (Option<ProbeChild>, Option<Instant>) {
        self.set_status(Status::Starting, None);
        let cgroup = self.ctx.cgroups.as_ref().and_then(|c| {
            c.probe(&self.name)
                .inspect_err(|e| {
                    tracing::warn!(
                        probe = self.name,
                        "no cgroup of its own, process group only: {e}"
                    )
                })
                .ok()
        });
        match ProbeChild::spawn(spec, &self.ctx.pipeline, cgroup) {
            Ok((child, socket)) => {
                let pid = child.pid();
                tracing::info!(probe = self.name, pid, "started {}", spec.bin.display());
                (self.on_spawn)(socket, pid);
                self.set_status(Status::Running, Some(pid));
                (Some(child), None)
            }
            Err(e) => {
                let why = format!("failed to start {}: {e}", spec.bin.display());
                tracing::error!(probe = self.name, "{why}");
                (None, self.after_exit(Duration::ZERO, why))
            }
        }
    }

    /// Records an unexpected end and decides when to start again (`None`: give up).
    fn after_exit(&mut self, uptime: Duration, why: String) -> Option<Instant> {
        self.state.send_modify(|st| st.last_exit = Some(why));
        match self.policy.on_exit(uptime) {
            Decision::RestartAfter(wait) => {
                tracing::info!(probe = self.name, "restarting in {wait:?}");
                self.set_status(Status::Restarting, None);
                Some(Instant::now() + wait)
            }
            Decision::GiveUp => {
                tracing::error!(
                    probe = self.name,
                    "failed {} times in a row; marked failed until it is started again",
                    self.ctx.config.failed_after
                );
                self.set_status(Status::Failed, None);
                None
            }
        }
    }

    async fn stop_child(&mut self, child: ProbeChild) {
        let pid = child.pid();
        let status = child.stop(self.ctx.config.stop_grace).await;
        tracing::info!(probe = self.name, pid, "stopped: {}", describe(status));
        self.state
            .send_modify(|st| st.last_exit = Some(describe(status)));
    }

    fn set_status(&self, status: Status, pid: Option<u32>) {
        self.up
            .set(if status == Status::Running { 1.0 } else { 0.0 });
        self.state.send_modify(|st| {
            st.status = status;
            st.pid = pid;
        });
    }
}

/// Waits for the running process (if any) to exit by itself.
async fn exited(child: &mut Option<ProbeChild>) -> Option<std::process::ExitStatus> {
    match child {
        Some(c) => c.exited().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
