//! One run of a probe: the child process in its own process group and (when the daemon has
//! them) its own cgroup, its stdout piped into the ingress [`Pipeline`], its stderr into the
//! daemon log, and the control socket at fd 3.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;

use gala_ipc_proto::{Encoding, ENV_IPC_ENCODING, ENV_IPC_FD, ENV_META, ENV_PROBE_NAME, IPC_FD};

use super::cgroup::{self, ProbeCgroup};
use crate::ingress::Pipeline;
use crate::ratelimit::{RateLimiter, Verdict};

/// Pipe capacity asked for a probe's stdout, so a burst does not block the probe.
const PIPE_SIZE: i32 = 1 << 20;

/// Variables of the daemon's environment a probe gets, besides every `GALA_*` and `GOPHER_*`
/// one (the probe's own settings, `GALA_GOPHER_PROBE_NAME` and the like, are set on top):
/// the search path, the locale and the time zone, the home and temporary directories.
/// Anything else the daemon was started with (credentials, proxies, the service manager's
/// variables) stays with the daemon.
const INHERITED: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR"];

/// Whether a probe inherits the daemon's variable `name` ([`INHERITED`], `LC_*`, `GALA_*`,
/// `GOPHER_*`).
pub fn inherited(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    INHERITED.contains(&name)
        || ["LC_", "GALA_", "GOPHER_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// What to run for a probe.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The probe name (REST name; `GALA_GOPHER_PROBE_NAME`).
    pub name: String,
    /// The program, executed directly (no shell, no arguments).
    pub bin: PathBuf,
    /// The control channel's encoding (`GALA_GOPHER_IPC_ENCODING`).
    pub encoding: Encoding,
    /// The probe's own meta file, passed as `GALA_GOPHER_META` so the SDKs check records
    /// against it (custom probes: the file beside the program).
    pub meta: Option<PathBuf>,
    /// The least lifetime of the probe's series in the imdb, milliseconds (twice its report
    /// period; the manager updates it when the period changes).
    pub series_hold_ms: Arc<AtomicU64>,
}

/// The same program, started the same way, feeding the same series lifetime.
impl PartialEq for LaunchSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.bin == other.bin
            && self.encoding == other.encoding
            && self.meta == other.meta
            && Arc::ptr_eq(&self.series_hold_ms, &other.series_hold_ms)
    }
}

impl Eq for LaunchSpec {}

/// A running probe process.
pub struct ProbeChild {
    child: tokio::process::Child,
    pid: u32,
    started: Instant,
    cgroup: Option<Arc<ProbeCgroup>>,
}

impl ProbeChild {
    /// Starts `spec` in `cgroup` (if any), its stdout read by `pipeline`; returns the child and
    /// the daemon's end of its control socket. Must run on a runtime worker thread: the child
    /// dies with the daemon (`PR_SET_PDEATHSIG`), and that signal follows the thread that
    /// forked it.
    pub fn spawn(
        spec: &LaunchSpec,
        pipeline: &Arc<Pipeline>,
        cgroup: Option<Arc<ProbeCgroup>>,
    ) -> std::io::Result<(Self, UnixStream)> {
        // Opened here, written by the child before exec: the probe is in its cgroup before it
        // runs a single instruction of its own.
        let procs = match &cgroup {
            Some(cg) => cg.procs_files()?,
            None => Vec::new(),
        };
        let procs_raw = cgroup::raw(&procs);
        let (ours, theirs) = StdUnixStream::pair()?;
        let theirs = OwnedFd::from(theirs);
        let theirs_raw = theirs.as_raw_fd();
        let mut cmd = Command::new(&spec.bin);
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| inherited(name)));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env(ENV_PROBE_NAME, &spec.name)
            .env(ENV_IPC_FD, IPC_FD.to_string())
            .env(ENV_IPC_ENCODING, spec.encoding.as_str())
            .env_remove(ENV_META)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: between fork and exec the closure only makes async-signal-safe calls
        // (prctl, write, dup2, fcntl) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                cgroup::join(&procs_raw)?;
                // dup2 leaves the copy without close-on-exec; the original closes at exec.
                // (The daemon keeps fd 3 itself occupied, so it can never be `theirs_raw`.)
                if nix::libc::dup2(theirs_raw, IPC_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(meta) = &spec.meta {
            cmd.env(ENV_META, meta);
        }
        let mut child = cmd.spawn()?;
        drop(theirs);
        drop(procs);
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            // Best effort: a smaller pipe only means more wake-ups.
            let _ = nix::fcntl::fcntl(
                out.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
            );
            pipeline.spawn(out, &spec.name, spec.series_hold_ms.clone());
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(log_stderr(spec.name.clone(), err));
        }
        ours.set_nonblocking(true)?;
        let ours = UnixStream::from_std(ours)?;
        Ok((
            ProbeChild {
                child,
                pid,
                started: Instant::now(),
                cgroup,
            },
            ours,
        ))
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How long the process has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the process to exit by itself (cancel-safe), then kills whatever it left in
    /// its process group and its cgroup.
    pub async fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.wait().await.ok();
        self.kill_tree().await;
        status
    }

    /// Stops the process: SIGTERM to its group, SIGKILL after `grace`; returns once it is
    /// reaped.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let Some(pgid) = self.pgid() else {
            return self.child.wait().await.ok();
        };
        let _ = killpg(pgid, Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => r.ok(),
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    "probe ignored SIGTERM for {grace:?}; sending SIGKILL"
                );
                let _ = killpg(pgid, Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        self.kill_tree().await;
        status
    }

    fn pgid(&self) -> Option<Pid> {
        (self.pid > 0).then(|| Pid::from_raw(self.pid as i32))
    }

    /// Kills what the probe left: its process group, then everything in its cgroup (a
    /// `setsid` grandchild left the group, never the cgroup).
    async fn kill_tree(&self) {
        if let Some(pgid) = self.pgid() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        if let Some(cg) = self.cgroup.clone() {
            let killed = tokio::task::spawn_blocking(move || cg.kill_all())
                .await
                .unwrap_or(0);
            if killed > 0 {
                tracing::info!(
                    pid = self.pid,
                    "killed {killed} processes the probe left in its cgroup"
                );
            }
        }
    }
}

/// An exit status as operators read it: `exit status: 1`, `signal: 9 (SIGKILL)`.
pub fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".into(), |s| s.to_string())
}

/// Makes sure descriptor 3 is open in the daemon, so that no descriptor the runtime creates
/// just before a fork (such as the exec-error pipe of `std::process`) can be 3 and be replaced
/// by a probe's control socket.
pub fn reserve_ipc_fd() -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { nix::libc::fcntl(IPC_FD, nix::libc::F_GETFD) } >= 0 {
        return Ok(());
    }
    let null = std::fs::File::open("/dev/null")?;
    let fd = null.as_raw_fd();
    if fd != IPC_FD {
        // SAFETY: IPC_FD is unused (checked above); dup2 makes it a copy of /dev/null.
        if unsafe { nix::libc::dup2(fd, IPC_FD) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        // The lowest free descriptor was 3: keep it open for the life of the process.
        std::mem::forget(null);
    }
    let _ = fcntl(IPC_FD, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::inherited;
    use std::ffi::OsStr;

    #[test]
    fn probes_inherit_the_documented_variables_only() {
        for name in [
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "HOME",
            "TMPDIR",
            "GALA_EBPF_STATS",
            "GOPHER_HOST_PATH",
        ] {
            assert!(inherited(OsStr::new(name)), "{name}");
        }
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "http_proxy",
            "LD_PRELOAD",
            "NOTIFY_SOCKET",
            "PATHS",
            "gala_x",
        ] {
            assert!(!inherited(OsStr::new(name)), "{name}");
        }
    }
}
