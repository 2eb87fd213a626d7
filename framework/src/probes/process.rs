//! A probe's child process: spawned in its own process group with stdout piped into
//! ingress, stopped with SIGTERM to the group and SIGKILL after a grace period, always reaped.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::imdb::Imdb;
use crate::ingress::read_probe_output;
use crate::ratelimit::{RateLimiter, Verdict};

/// Pipe capacity asked for a probe's stdout, so a burst does not block the probe.
const PIPE_SIZE: i32 = 1 << 20;

/// A running probe process.
pub struct ProbeProcess {
    name: String,
    pid: u32,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<Option<ExitStatus>>,
}

impl ProbeProcess {
    /// Starts `bin` (no arguments, no shell) as probe `name`, storing its records in `imdb`.
    /// Must be called from a runtime worker thread: the child dies with the daemon
    /// (`PR_SET_PDEATHSIG`), and that signal follows the thread that forked it.
    pub fn spawn(
        name: &str,
        bin: &Path,
        imdb: Arc<Imdb>,
        max_line_len: usize,
    ) -> std::io::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("GALA_GOPHER_PROBE_NAME", name)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        if let Some(out) = &stdout {
            // Best effort: a smaller pipe only means more wake-ups.
            let _ = nix::fcntl::fcntl(
                out.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
            );
        }
        if let Some(out) = stdout {
            let name = name.to_string();
            tokio::spawn(async move {
                if let Err(e) = read_probe_output(out, &name, imdb, max_line_len).await {
                    tracing::warn!(probe = name, "reading stdout failed: {e}");
                }
            });
        }
        if let Some(err) = stderr {
            tokio::spawn(log_stderr(name.to_string(), err));
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(name.to_string(), child, stop_rx));
        tracing::info!(probe = name, pid, "started {}", bin.display());
        Ok(ProbeProcess {
            name: name.to_string(),
            pid,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The probe name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the probe: SIGTERM to its process group, SIGKILL after `grace`; returns once
    /// the process is reaped, with its exit status.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(grace);
        }
        (&mut self.task).await.ok().flatten()
    }
}

/// Waits for the child to exit or for a stop request, then reaps it.
async fn supervise(
    name: String,
    mut child: Child,
    stop: oneshot::Receiver<Duration>,
) -> Option<ExitStatus> {
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let status = tokio::select! {
        status = child.wait() => {
            let status = status.ok();
            tracing::warn!(probe = name, "exited unexpectedly: {}", describe(status));
            // The group may hold children the probe left behind.
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            return status;
        }
        grace = stop => grace.unwrap_or(Duration::from_secs(5)),
    };
    let Some(pgid) = pgid else {
        return child.wait().await.ok();
    };
    let started = Instant::now();
    let _ = killpg(pgid, Signal::SIGTERM);
    let exit = match tokio::time::timeout(status, child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            tracing::warn!(
                probe = name,
                "ignored SIGTERM for {status:?}; sending SIGKILL"
            );
            let _ = killpg(pgid, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    // Whatever else is left in the group goes too.
    let _ = killpg(pgid, Signal::SIGKILL);
    tracing::info!(
        probe = name,
        "stopped in {:?}: {}",
        started.elapsed(),
        describe(exit)
    );
    exit
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".into(), |s| s.to_string())
}

/// Copies the probe's stderr into the daemon log, prefixed by the probe name, rate-limited.
async fn log_stderr(name: String, stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut limiter = RateLimiter::new(Duration::from_secs(1), 50);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if let Verdict::Log { suppressed } = limiter.check(Instant::now()) {
                    if suppressed > 0 {
                        tracing::warn!(probe = name, "{suppressed} stderr lines suppressed");
                    }
                    let text = String::from_utf8_lossy(line.trim_ascii_end());
                    tracing::warn!(probe = name, "stderr: {text}");
                }
            }
        }
    }
}
