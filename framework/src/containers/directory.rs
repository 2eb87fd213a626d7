//! [`RuntimeDirectory`]: the [`ContainerLookup`] that asks the runtimes in order — containerd,
//! Docker, CRI-O, iSulad over their API sockets, then the installed CLIs — and caches answers.
//!
//! A socket that does not exist is a runtime that is not installed: skipped without a word. A
//! runtime that fails (refuses connections, hangs, answers garbage) is logged once per
//! 10 minutes, and one that cannot be reached or times out is left alone for 30 s, so a hung
//! runtime costs a caller one timeout per 30 s, not one per lookup.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::LookupError;
use super::transport::block_on;
use super::{cli, containerd, crio, docker, isulad, ContainerLookup, ContainerMeta};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::snooper::{is_full_container_id, RuntimeCli};

/// How long one runtime call may take by default (connecting, asking, reading the answer).
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a runtime that could not be reached or timed out is skipped.
const BACKOFF: Duration = Duration::from_secs(30);
/// At most one log line per runtime (and socket) per this period.
const LOG_WINDOW: Duration = Duration::from_secs(600);
/// How long an answer is reused.
const FOUND_TTL: Duration = Duration::from_secs(60);
/// How long "no runtime knows it" is reused (a container being created may appear soon; the
/// label cache asks again after as long).
const NOT_FOUND_TTL: Duration = Duration::from_secs(30);
/// Most cached answers; beyond, the cache is emptied of expired ones, else entirely.
const CACHE_MAX: usize = 8192;

/// A container runtime, or the CLIs as a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuntimeName {
    /// containerd's gRPC API.
    Containerd,
    /// Docker Engine's HTTP API.
    Docker,
    /// CRI-O's inspect HTTP API.
    Crio,
    /// iSulad's gRPC API.
    Isulad,
    /// `docker`/`isula`/`crictl inspect`.
    Cli,
}

impl fmt::Display for RuntimeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeName::Containerd => "containerd",
            RuntimeName::Docker => "docker",
            RuntimeName::Crio => "crio",
            RuntimeName::Isulad => "isulad",
            RuntimeName::Cli => "cli",
        })
    }
}

/// The API sockets tried for each runtime, in order; an empty list leaves that runtime out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSockets {
    /// containerd. Default `/run/containerd/containerd.sock`, `/var/run/containerd/containerd.sock`.
    pub containerd: Vec<PathBuf>,
    /// Docker Engine. Default `/var/run/docker.sock`, `/run/docker.sock`.
    pub docker: Vec<PathBuf>,
    /// CRI-O. Default `/var/run/crio/crio.sock`, `/run/crio/crio.sock`.
    pub crio: Vec<PathBuf>,
    /// iSulad. Default `/var/run/isulad.sock`, `/run/isulad.sock`.
    pub isulad: Vec<PathBuf>,
}

impl Default for RuntimeSockets {
    fn default() -> Self {
        // Both spellings: `/var/run` is a symlink to `/run` on the host, but an absolute
        // symlink does not lead back into a host tree mounted elsewhere (`/host/var/run`).
        let paths = |p: &[&str]| p.iter().map(PathBuf::from).collect();
        RuntimeSockets {
            containerd: paths(&[
                "/run/containerd/containerd.sock",
                "/var/run/containerd/containerd.sock",
            ]),
            docker: paths(&["/var/run/docker.sock", "/run/docker.sock"]),
            crio: paths(&["/var/run/crio/crio.sock", "/run/crio/crio.sock"]),
            isulad: paths(&["/var/run/isulad.sock", "/run/isulad.sock"]),
        }
    }
}

impl RuntimeSockets {
    /// No socket at all (only the CLIs, if any, are asked).
    pub fn none() -> Self {
        RuntimeSockets {
            containerd: Vec::new(),
            docker: Vec::new(),
            crio: Vec::new(),
            isulad: Vec::new(),
        }
    }

    /// Every (runtime, socket) in the order they are asked.
    fn in_order(&self) -> impl Iterator<Item = (RuntimeName, &Path)> {
        [
            (RuntimeName::Containerd, &self.containerd),
            (RuntimeName::Docker, &self.docker),
            (RuntimeName::Crio, &self.crio),
            (RuntimeName::Isulad, &self.isulad),
        ]
        .into_iter()
        .flat_map(|(name, paths)| paths.iter().map(move |p| (name, p.as_path())))
    }
}

/// What answered a lookup, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The runtime that knew the container.
    pub runtime: RuntimeName,
    /// What it said.
    pub meta: ContainerMeta,
}

/// The failure record of one runtime endpoint.
struct Health {
    skip_until: Option<Instant>,
    log: RateLimiter,
}

impl Health {
    /// The record of `runtime` at `socket` in `all`, created healthy.
    fn of<'a>(
        all: &'a mut HashMap<(RuntimeName, PathBuf), Health>,
        runtime: RuntimeName,
        socket: &Path,
    ) -> &'a mut Health {
        all.entry((runtime, socket.to_path_buf()))
            .or_insert_with(|| Health {
                skip_until: None,
                log: RateLimiter::new(LOG_WINDOW, 1),
            })
    }
}

/// Container metadata from whichever runtime runs the container; see the module comment.
pub struct RuntimeDirectory {
    sockets: RuntimeSockets,
    timeout: Duration,
    clis: Vec<RuntimeCli>,
    health: Mutex<HashMap<(RuntimeName, PathBuf), Health>>,
    cache: Mutex<HashMap<String, (Instant, Option<Found>)>>,
}

impl fmt::Debug for RuntimeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeDirectory")
            .field("sockets", &self.sockets)
            .field("timeout", &self.timeout)
            .field("clis", &self.clis)
            .finish_non_exhaustive()
    }
}

impl RuntimeDirectory {
    /// A directory over `sockets`, each call limited to `timeout`, with the runtime CLIs found
    /// in `PATH` as the fallback.
    pub fn new(sockets: RuntimeSockets, timeout: Duration) -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        RuntimeDirectory {
            sockets,
            timeout,
            clis: RuntimeCli::installed(&path),
            health: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same directory with `clis` as the fallback instead (empty: no CLI).
    pub fn with_clis(mut self, clis: Vec<RuntimeCli>) -> Self {
        self.clis = clis;
        self
    }

    /// The directory the daemon configuration describes (`container_runtimes`). A runtime
    /// without a configured socket is looked for at its default paths, then at the same paths
    /// under `host_root` (the host's `/` seen from a container, `$GOPHER_HOST_PATH`) unless that
    /// is `/`.
    pub fn from_config(config: &crate::config::ContainerRuntimesConfig, host_root: &Path) -> Self {
        let mut sockets = RuntimeSockets::default();
        if host_root != Path::new("/") {
            for list in [
                &mut sockets.containerd,
                &mut sockets.docker,
                &mut sockets.crio,
                &mut sockets.isulad,
            ] {
                let under_host: Vec<PathBuf> = list
                    .iter()
                    .map(|p| host_root.join(p.strip_prefix("/").unwrap_or(p)))
                    .collect();
                list.extend(under_host);
            }
        }
        for (slot, configured) in [
            (&mut sockets.containerd, &config.containerd),
            (&mut sockets.docker, &config.docker),
            (&mut sockets.crio, &config.crio),
            (&mut sockets.isulad, &config.isulad),
        ] {
            if let Some(path) = configured {
                *slot = if path.as_os_str().is_empty() {
                    Vec::new()
                } else {
                    vec![path.clone()]
                };
            }
        }
        let directory = RuntimeDirectory::new(sockets, config.timeout);
        if config.cli {
            directory
        } else {
            directory.with_clis(Vec::new())
        }
    }

    /// Asks the runtimes (no cache) which of them knows container `full_id`, and what it says.
    /// Blocking, at most one timeout per runtime that is asked.
    pub fn find(&self, full_id: &str) -> Option<Found> {
        if !is_full_container_id(full_id) {
            return None;
        }
        let id = full_id.to_ascii_lowercase();
        for (runtime, socket) in self.sockets.in_order() {
            if !socket.exists() || self.skipped(runtime, socket) {
                continue;
            }
            let timeout = self.timeout;
            let asked = block_on(async {
                match runtime {
                    RuntimeName::Containerd => containerd::lookup(socket, &id, timeout).await,
                    RuntimeName::Docker => docker::lookup(socket, &id, timeout).await,
                    RuntimeName::Crio => crio::lookup(socket, &id, timeout).await,
                    RuntimeName::Isulad => isulad::lookup(socket, &id, timeout).await,
                    // Sockets are never listed under the CLIs.
                    RuntimeName::Cli => Ok(None),
                }
            });
            match asked {
                Ok(Ok(Some(meta))) => return Some(Found { runtime, meta }),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    self.failed(runtime, socket, &e);
                }
                Err(e) => tracing::error!("container lookup: cannot start an I/O runtime: {e}"),
            }
        }
        for c in &self.clis {
            if self.skipped(RuntimeName::Cli, &c.program) {
                continue;
            }
            match cli::lookup(c, &id, self.timeout) {
                Ok(Some(meta)) => {
                    return Some(Found {
                        runtime: RuntimeName::Cli,
                        meta,
                    })
                }
                Ok(None) => {}
                // A CLI also fails for a container its runtime does not know: not worth a
                // warning; but one that cannot run, hangs or cannot reach its daemon is left
                // alone for a while (else every unknown container costs a process).
                Err(e) => {
                    tracing::debug!("container lookup through {}: {e}", c.program.display());
                    if cli_runtime_unavailable(&e) {
                        self.back_off(RuntimeName::Cli, &c.program);
                    }
                }
            }
        }
        None
    }

    /// [`RuntimeDirectory::find`] through the cache.
    pub fn find_cached(&self, full_id: &str) -> Option<Found> {
        let now = Instant::now();
        if let Some((at, found)) = self.cache.lock().get(full_id) {
            let ttl = if found.is_some() {
                FOUND_TTL
            } else {
                NOT_FOUND_TTL
            };
            if now.duration_since(*at) < ttl {
                return found.clone();
            }
        }
        let found = self.find(full_id);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, f)| {
                let ttl = if f.is_some() {
                    FOUND_TTL
                } else {
                    NOT_FOUND_TTL
                };
                now.duration_since(*at) < ttl
            });
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(full_id.to_owned(), (Instant::now(), found.clone()));
        found
    }

    fn skipped(&self, runtime: RuntimeName, socket: &Path) -> bool {
        let health = self.health.lock();
        health
            .get(&(runtime, socket.to_path_buf()))
            .and_then(|h| h.skip_until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn back_off(&self, runtime: RuntimeName, socket: &Path) {
        let mut health = self.health.lock();
        Health::of(&mut health, runtime, socket).skip_until = Some(Instant::now() + BACKOFF);
    }

    /// Records a failure of `runtime` at `socket`; whether it was logged.
    fn failed(&self, runtime: RuntimeName, socket: &Path, error: &LookupError) -> bool {
        let unreachable = matches!(
            error,
            LookupError::Connect { .. } | LookupError::Timeout { .. }
        );
        if unreachable {
            self.back_off(runtime, socket);
        }
        let verdict = {
            let mut health = self.health.lock();
            Health::of(&mut health, runtime, socket)
                .log
                .check(Instant::now())
        };
        let Verdict::Log { suppressed } = verdict else {
            return false;
        };
        tracing::warn!(
            runtime = %runtime,
            "container metadata from {runtime}: {error} ({suppressed} similar failures since the last report; {}at most one report per 10 minutes)",
            if unreachable { "skipped for 30 s; " } else { "" }
        );
        true
    }
}

/// Whether a CLI's failure says its runtime is unusable (rather than that it does not know the
/// container): it could not be run, it hung, or it could not connect to its daemon (`docker`:
/// "Cannot connect to the Docker daemon", `crictl`/`isula`: "... connect: ...").
fn cli_runtime_unavailable(error: &LookupError) -> bool {
    use crate::snooper::RuntimeError;
    match error {
        LookupError::Cli(RuntimeError::Spawn { .. } | RuntimeError::Timeout { .. }) => true,
        LookupError::Cli(RuntimeError::Failed { stderr, .. }) => {
            stderr.to_ascii_lowercase().contains("connect")
        }
        _ => false,
    }
}

impl ContainerLookup for RuntimeDirectory {
    fn lookup(&self, full_id: &str) -> Option<ContainerMeta> {
        self.find_cached(full_id).map(|f| f.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2d0c9e1b7a6c3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";

    #[test]
    fn without_runtimes_lookups_are_none_and_quick() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = RuntimeSockets {
            containerd: vec![dir.path().join("absent.sock")],
            docker: vec![dir.path().join("d.sock")],
            crio: Vec::new(),
            isulad: Vec::new(),
        };
        let directory =
            RuntimeDirectory::new(sockets, DEFAULT_LOOKUP_TIMEOUT).with_clis(Vec::new());
        let t = Instant::now();
        assert_eq!(directory.lookup(ID), None);
        assert_eq!(directory.lookup("not-an-id"), None);
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn a_socket_nobody_listens_on_is_skipped_after_one_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        // A bound but never-listening socket file refuses connections.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        let sockets = RuntimeSockets {
            docker: vec![path.clone()],
            ..RuntimeSockets::none()
        };
        let directory =
            RuntimeDirectory::new(sockets, DEFAULT_LOOKUP_TIMEOUT).with_clis(Vec::new());
        assert_eq!(directory.find(ID), None);
        assert!(directory.skipped(RuntimeName::Docker, &path));
        // Logged the first time only (within the 10-minute window).
        let again = LookupError::Timeout {
            socket: path.clone(),
            timeout: DEFAULT_LOOKUP_TIMEOUT,
        };
        assert!(!directory.failed(RuntimeName::Docker, &path, &again));
        let other = dir.path().join("other.sock");
        assert!(directory.failed(RuntimeName::Docker, &other, &again));
    }

    #[test]
    fn a_hung_runtime_costs_one_timeout_then_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hung.sock");
        // Accepts connections (the backlog) but never answers.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sockets = RuntimeSockets {
            containerd: vec![path.clone()],
            ..RuntimeSockets::none()
        };
        let timeout = Duration::from_millis(300);
        let directory = RuntimeDirectory::new(sockets, timeout).with_clis(Vec::new());
        let t = Instant::now();
        assert_eq!(directory.find(ID), None);
        let first = t.elapsed();
        assert!(
            first >= timeout && first < Duration::from_secs(2),
            "{first:?}"
        );
        let t = Instant::now();
        assert_eq!(directory.find(ID), None);
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn configured_sockets_replace_the_defaults_and_the_host_root_adds_its_own() {
        use crate::config::ContainerRuntimesConfig;
        let config = ContainerRuntimesConfig {
            containerd: Some(PathBuf::from("/tmp/c.sock")),
            docker: Some(PathBuf::new()),
            cli: false,
            ..ContainerRuntimesConfig::default()
        };
        let d = RuntimeDirectory::from_config(&config, Path::new("/host"));
        assert_eq!(d.sockets.containerd, [PathBuf::from("/tmp/c.sock")]);
        assert!(d.sockets.docker.is_empty());
        assert_eq!(
            d.sockets.crio,
            [
                "/var/run/crio/crio.sock",
                "/run/crio/crio.sock",
                "/host/var/run/crio/crio.sock",
                "/host/run/crio/crio.sock"
            ]
            .map(PathBuf::from)
        );
        assert!(d.clis.is_empty());
        assert_eq!(d.timeout, DEFAULT_LOOKUP_TIMEOUT);
        let plain =
            RuntimeDirectory::from_config(&ContainerRuntimesConfig::default(), Path::new("/"));
        assert_eq!(plain.sockets, RuntimeSockets::default());
    }

    #[test]
    fn a_cli_whose_daemon_is_down_is_skipped_but_not_one_that_does_not_know_the_id() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, stderr: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            RuntimeCli {
                kind: crate::snooper::RuntimeKind::Docker,
                program: p,
            }
        };
        let down = script(
            "down",
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        );
        let unknown = script("unknown", "Error: No such object: 4f2d0c9e");
        let directory = RuntimeDirectory::new(RuntimeSockets::none(), DEFAULT_LOOKUP_TIMEOUT)
            .with_clis(vec![down.clone(), unknown.clone()]);
        assert_eq!(directory.find(ID), None);
        assert!(directory.skipped(RuntimeName::Cli, &down.program));
        assert!(!directory.skipped(RuntimeName::Cli, &unknown.program));
    }

    #[test]
    fn lookups_work_from_inside_an_async_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let directory = RuntimeDirectory::new(RuntimeSockets::none(), DEFAULT_LOOKUP_TIMEOUT)
            .with_clis(Vec::new());
        rt.block_on(async { assert_eq!(directory.lookup(ID), None) });
    }
}
