//! Container names from the container runtime CLIs (`docker`, `isula`, `crictl`).
//!
//! The original resolved a `container_name` entry by running `docker ps -q --filter "name=<value>"`
//! through a shell, an injection hole. Here no request data ever reaches a program: each installed
//! CLI is exec'd directly (argv, no shell) with a fixed argument list that lists every running
//! container with its full id and name, under a timeout, and names are matched in-process. Only
//! the CLIs found in `PATH` are run; on a host without any, `container_name` entries match nothing.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::error::{ListingError, RuntimeError};
use super::ids::{is_full_container_id, normalise_pod_id};

/// Most bytes of stdout accepted from a CLI (about 20 000 containers of docker output).
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;
/// Most bytes of stderr kept for an error message.
const MAX_STDERR_BYTES: usize = 1024;
/// How often a running CLI is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Which container runtime a CLI talks to; decides its arguments and output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuntimeKind {
    /// `docker ps`, Go-template output.
    Docker,
    /// `isula ps` (iSulad), Go-template-like output padded with spaces.
    Isula,
    /// `crictl ps -o json` (containerd, CRI-O).
    Crictl,
}

impl RuntimeKind {
    /// Every kind, in the order they are queried.
    pub const ALL: [RuntimeKind; 3] =
        [RuntimeKind::Docker, RuntimeKind::Isula, RuntimeKind::Crictl];

    /// The program name looked up in `PATH`.
    pub fn program_name(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Isula => "isula",
            RuntimeKind::Crictl => "crictl",
        }
    }

    /// The fixed argument list that lists running containers with full ids and names.
    /// The `\t` in templates is the two characters backslash-t; both CLIs expand it.
    pub fn list_args(self) -> &'static [&'static str] {
        match self {
            RuntimeKind::Docker => &[
                "ps",
                "--no-trunc",
                "--format",
                r#"{{.ID}}\t{{.Names}}\t{{.Label "io.kubernetes.pod.uid"}}"#,
            ],
            RuntimeKind::Isula => &["ps", "--no-trunc", "--format", r"{{.ID}}\t{{.Names}}"],
            RuntimeKind::Crictl => &["ps", "-o", "json"],
        }
    }

    /// Parses the output of [`list_args`](Self::list_args).
    pub fn parse_listing(self, output: &str) -> Result<Listing, ListingError> {
        match self {
            RuntimeKind::Docker | RuntimeKind::Isula => Ok(parse_columns(output)),
            RuntimeKind::Crictl => parse_crictl_json(output),
        }
    }
}

/// An installed runtime CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCli {
    /// Which runtime it is.
    pub kind: RuntimeKind,
    /// Absolute path of the program.
    pub program: PathBuf,
}

impl RuntimeCli {
    /// The runtime CLIs found in the directories of `path_var` (the value of `PATH`).
    pub fn installed(path_var: &std::ffi::OsStr) -> Vec<RuntimeCli> {
        RuntimeKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let program = std::env::split_paths(path_var)
                    .map(|dir| dir.join(kind.program_name()))
                    .find(|p| is_executable_file(p))?;
                Some(RuntimeCli { kind, program })
            })
            .collect()
    }

    /// Runs the listing command (no shell, stdin closed, its own process group, killed after
    /// `timeout`) and parses its output.
    pub fn list(&self, timeout: Duration) -> Result<Listing, RuntimeError> {
        let stdout = run_with_timeout(&self.program, self.kind.list_args(), timeout)?;
        let text = String::from_utf8_lossy(&stdout);
        self.kind
            .parse_listing(&text)
            .map_err(|reason| RuntimeError::BadOutput {
                program: self.program.clone(),
                reason,
            })
    }
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A container as a runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeContainer {
    /// Full 64-hex id, lowercase.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The pod uid from the `io.kubernetes.pod.uid` label, dashed lowercase form.
    pub pod_id: Option<String>,
}

/// The parsed output of one listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The containers with a valid full id.
    pub containers: Vec<RuntimeContainer>,
    /// Non-empty lines or entries that were not understood (a header, a truncated id, ...).
    pub skipped: usize,
}

/// Running containers known to the installed runtimes, merged by id.
#[derive(Debug, Default)]
pub struct RuntimeInventory {
    /// Containers by ascending id, each listed once.
    pub containers: Vec<RuntimeContainer>,
    /// Entries skipped as not understood, summed over all runtimes.
    pub skipped: usize,
    /// Runtimes whose listing failed (daemon down, timeout, ...), for the caller to log and count.
    pub failures: Vec<RuntimeError>,
}

impl RuntimeInventory {
    /// Lists the containers of every CLI in `clis`. A failing CLI is recorded in `failures`;
    /// the others still count.
    pub fn collect(clis: &[RuntimeCli], timeout: Duration) -> Self {
        Self::from_listings(clis.iter().map(|cli| cli.list(timeout)))
    }

    /// Merges the outcomes of several listings; a container listed twice (docker and crictl over
    /// dockershim) appears once, keeping a pod uid if either listing had one.
    pub fn from_listings(
        listings: impl IntoIterator<Item = Result<Listing, RuntimeError>>,
    ) -> Self {
        let mut inventory = RuntimeInventory::default();
        for listing in listings {
            match listing {
                Ok(listing) => {
                    inventory.containers.extend(listing.containers);
                    inventory.skipped += listing.skipped;
                }
                Err(e) => inventory.failures.push(e),
            }
        }
        inventory.containers.sort();
        inventory.containers.dedup_by(|later, kept| {
            if later.id != kept.id {
                return false;
            }
            if kept.pod_id.is_none() {
                kept.pod_id = later.pod_id.take();
            }
            true
        });
        inventory
    }

    /// The entry for a container id, if a runtime listed it.
    pub fn get(&self, id: &str) -> Option<&RuntimeContainer> {
        self.containers
            .binary_search_by(|c| c.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.containers[i])
    }
}

/// Parses `<id> <name> [<pod uid>]` lines, separated by tabs or spaces (isula pads columns with
/// spaces; container names never contain white space).
fn parse_columns(output: &str) -> Listing {
    let mut listing = Listing::default();
    for line in output.lines() {
        let mut fields = line.split_whitespace();
        let Some(id) = fields.next() else { continue };
        match (fields.next(), is_full_container_id(id)) {
            (Some(name), true) => listing.containers.push(RuntimeContainer {
                id: id.to_ascii_lowercase(),
                // Docker prefixes names with `/` in some API paths; the CLI does not, but be lenient.
                name: name.trim_start_matches('/').to_string(),
                pod_id: fields.next().and_then(normalise_pod_id),
            }),
            _ => listing.skipped += 1,
        }
    }
    listing
}

/// Parses `crictl ps -o json`: `{"containers": [{"id", "metadata": {"name"}, "labels": {...}}]}`.
fn parse_crictl_json(output: &str) -> Result<Listing, ListingError> {
    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(default)]
        containers: Vec<serde_json::Value>,
    }
    let response: Response = serde_json::from_str(output).map_err(ListingError::NotCrictlJson)?;
    let mut listing = Listing::default();
    for c in &response.containers {
        let id = c.get("id").and_then(serde_json::Value::as_str);
        let name = c
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str);
        match (id, name) {
            (Some(id), Some(name)) if is_full_container_id(id) => {
                listing.containers.push(RuntimeContainer {
                    id: id.to_ascii_lowercase(),
                    name: name.to_string(),
                    pod_id: c
                        .pointer("/labels/io.kubernetes.pod.uid")
                        .and_then(serde_json::Value::as_str)
                        .and_then(normalise_pod_id),
                });
            }
            _ => listing.skipped += 1,
        }
    }
    Ok(listing)
}

/// Runs `program args` without a shell and returns its stdout. The child gets its own process
/// group so that a timeout kills everything it started.
pub fn run_with_timeout(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<Vec<u8>, RuntimeError> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| RuntimeError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    // Readers run on their own threads so a chatty child never blocks on a full pipe.
    let stdout = child
        .stdout
        .take()
        .map(|s| read_in_background(s, MAX_OUTPUT_BYTES + 1));
    let stderr = child
        .stderr
        .take()
        .map(|s| read_in_background(s, MAX_STDERR_BYTES));

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                kill_group(&mut child);
                return Err(RuntimeError::Timeout {
                    program: program.to_path_buf(),
                    timeout,
                });
            }
            Err(source) => {
                kill_group(&mut child);
                return Err(RuntimeError::Wait {
                    program: program.to_path_buf(),
                    source,
                });
            }
        }
    };
    // A grandchild may still hold the pipes open; wait for them only until the deadline.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(POLL_INTERVAL);
        rx.and_then(|rx| rx.recv_timeout(left).ok())
    };
    let out = collect(stdout).ok_or_else(|| RuntimeError::Timeout {
        program: program.to_path_buf(),
        timeout,
    })?;
    if !status.success() {
        let err = collect(stderr).unwrap_or_default();
        return Err(RuntimeError::Failed {
            program: program.to_path_buf(),
            status,
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(RuntimeError::OutputTooLarge {
            program: program.to_path_buf(),
            limit: MAX_OUTPUT_BYTES,
        });
    }
    Ok(out)
}

/// Reads up to `limit` bytes on a thread, then drains and discards the rest.
fn read_in_background(
    mut source: impl Read + Send + 'static,
    limit: usize,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut source).take(limit as u64).read_to_end(&mut kept);
        let _ = std::io::copy(&mut source, &mut std::io::sink());
        let _ = tx.send(kept);
    });
    rx
}

/// Kills the child's process group (the child leads it), then reaps the child.
fn kill_group(child: &mut std::process::Child) {
    // The child is not reaped yet, so its pid (= the group id) cannot have been reused.
    if let Ok(pgid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "4f2d0c9e1b7a6c3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const POD: &str = "3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab";

    fn container(id: &str, name: &str, pod_id: Option<&str>) -> RuntimeContainer {
        RuntimeContainer {
            id: id.into(),
            name: name.into(),
            pod_id: pod_id.map(str::to_string),
        }
    }

    #[test]
    fn docker_listing_with_and_without_pod_label() {
        let output = format!(
            "{ID}\tweb-1\t\n{}\tk8s_app_pod\t{POD}\n\n",
            ID2.to_uppercase()
        );
        let listing = RuntimeKind::Docker.parse_listing(&output).unwrap();
        assert_eq!(
            listing,
            Listing {
                containers: vec![
                    container(ID, "web-1", None),
                    container(ID2, "k8s_app_pod", Some(POD)),
                ],
                skipped: 0,
            }
        );
    }

    #[test]
    fn isula_listing_is_space_padded() {
        let output = format!("{ID}  db      \n{ID2}  web-long\n");
        let listing = RuntimeKind::Isula.parse_listing(&output).unwrap();
        assert_eq!(
            listing.containers,
            vec![container(ID, "db", None), container(ID2, "web-long", None)]
        );
    }

    #[test]
    fn column_lines_without_full_id_or_name_are_counted_as_skipped() {
        let output = format!(
            "CONTAINER ID   NAMES\n{}\tshort\n{ID}\n{ID}\tok\n",
            &ID[..12]
        );
        let listing = RuntimeKind::Docker.parse_listing(&output).unwrap();
        assert_eq!(listing.containers, vec![container(ID, "ok", None)]);
        assert_eq!(listing.skipped, 3);
    }

    #[test]
    fn crictl_json_listing() {
        let output = format!(
            r#"{{"containers": [
                {{"id": "{ID}", "podSandboxId": "abc", "metadata": {{"name": "nginx", "attempt": 0}},
                  "state": "CONTAINER_RUNNING", "labels": {{"io.kubernetes.pod.uid": "{POD}"}}}},
                {{"id": "{ID2}", "metadata": {{"name": "plain"}}}},
                {{"id": "deadbeef", "metadata": {{"name": "short"}}}},
                {{"metadata": {{"name": "noid"}}}}
            ]}}"#
        );
        let listing = RuntimeKind::Crictl.parse_listing(&output).unwrap();
        assert_eq!(
            listing,
            Listing {
                containers: vec![
                    container(ID, "nginx", Some(POD)),
                    container(ID2, "plain", None),
                ],
                skipped: 2,
            }
        );
        assert_eq!(
            RuntimeKind::Crictl.parse_listing("{}").unwrap(),
            Listing::default()
        );
        let err = RuntimeKind::Crictl
            .parse_listing("FATA[0000] connect: no such file")
            .unwrap_err();
        assert!(
            matches!(err, ListingError::NotCrictlJson(_))
                && err.to_string().starts_with("not crictl JSON: "),
            "{err}"
        );
    }

    #[test]
    fn installed_finds_only_executable_files_in_path_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let write = |dir: &Path, name: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/true\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(first.path(), "docker", 0o644); // not executable: ignored
        write(second.path(), "docker", 0o755);
        write(second.path(), "crictl", 0o755);
        std::fs::create_dir(first.path().join("isula")).unwrap(); // a directory: ignored
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        assert_eq!(
            RuntimeCli::installed(&path),
            vec![
                RuntimeCli {
                    kind: RuntimeKind::Docker,
                    program: second.path().join("docker"),
                },
                RuntimeCli {
                    kind: RuntimeKind::Crictl,
                    program: second.path().join("crictl"),
                },
            ]
        );
    }

    #[test]
    fn runner_returns_stdout_and_reports_failures() {
        let out = run_with_timeout(
            Path::new("/bin/echo"),
            &["a", "b c"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out, b"a b c\n");
        let err = run_with_timeout(
            Path::new("/bin/ls"),
            &["/nonexistent-dir"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            matches!(&err, RuntimeError::Failed { stderr, .. } if stderr.contains("/nonexistent-dir")),
            "{err}"
        );
        let err = run_with_timeout(
            Path::new("/nonexistent/docker"),
            &[],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(err, RuntimeError::Spawn { .. }), "{err}");
    }

    #[test]
    fn runner_kills_a_program_that_outlives_its_timeout() {
        let started = Instant::now();
        let err = run_with_timeout(
            Path::new("/bin/sleep"),
            &["30.5"],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn inventory_merges_listings_by_id_and_keeps_failures() {
        let docker = Listing {
            containers: vec![container(ID2, "k8s_app", None), container(ID, "web", None)],
            skipped: 1,
        };
        let crictl = Listing {
            containers: vec![container(ID2, "k8s_app", Some(POD))],
            skipped: 2,
        };
        let down = RuntimeError::BadOutput {
            program: PathBuf::from("/usr/bin/crictl"),
            reason: RuntimeKind::Crictl.parse_listing("x").unwrap_err(),
        };
        let inventory = RuntimeInventory::from_listings([Ok(docker), Err(down), Ok(crictl)]);
        assert_eq!(
            inventory.containers,
            vec![
                container(ID2, "k8s_app", Some(POD)),
                container(ID, "web", None)
            ]
        );
        assert_eq!(inventory.skipped, 3);
        assert_eq!(inventory.failures.len(), 1);
        assert_eq!(inventory.get(ID).map(|c| c.name.as_str()), Some("web"));
        assert_eq!(inventory.get(&ID[..12]), None);
    }

    #[test]
    fn collect_records_a_cli_whose_output_is_not_understood() {
        // `/bin/true` prints nothing, which is not crictl JSON.
        let cli = RuntimeCli {
            kind: RuntimeKind::Crictl,
            program: PathBuf::from("/bin/true"),
        };
        let got = RuntimeInventory::collect(&[cli], Duration::from_secs(5));
        assert!(got.containers.is_empty());
        assert_eq!(got.failures.len(), 1);
        assert!(got.failures[0].to_string().contains("/bin/true"));
    }

    proptest! {
        #[test]
        fn column_parsing_never_panics(text in "\\PC*") {
            let _ = RuntimeKind::Docker.parse_listing(&text);
        }

        #[test]
        fn crictl_parsing_never_panics(text in "\\PC*") {
            let _ = RuntimeKind::Crictl.parse_listing(&text);
        }
    }
}
