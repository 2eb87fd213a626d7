//! Real container runtime daemons for the tests, each in a temporary directory of its own so it
//! never clashes with a runtime of the host: containerd (driven with `ctr`) and Docker Engine
//! (`dockerd`, driven with the `docker` CLI). Dropping one removes its containers and stops it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::containers::{busybox_rootfs, remove_cgroup_dirs, runc_available};
use crate::KillOnDrop;

/// `Ok` when `program` runs with `args` (a version query), else why not.
fn tool(program: &str, args: &[&str], package: &str) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(format!(
            "{program} not installed (Debian package {package})"
        )),
    }
}

/// `Ok` when containerd, ctr, runc and a static busybox are installed, else why not.
pub fn containerd_available() -> Result<(), String> {
    runc_available()?;
    tool("containerd", &["--version"], "containerd")?;
    tool("ctr", &["--version"], "containerd")
}

/// `Ok` when dockerd and the docker CLI are installed, else why not.
pub fn dockerd_available() -> Result<(), String> {
    runc_available()?;
    tool("dockerd", &["--version"], "docker.io")?;
    tool("docker", &["--version"], "docker.io")
}

/// The pids whose `/proc/<pid>/cgroup` names container `id` (its processes), ascending.
pub fn pids_in_container(id: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// SIGTERM, then SIGKILL after `grace`.
fn stop(child: &mut KillOnDrop, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.0.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.0.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A containerd of its own: root, state and sockets in a temporary directory, the CRI plugin
/// off (it would want a CNI setup), no debug or metrics listener.
pub struct Containerd {
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// The busybox root filesystem containers run from.
    pub rootfs: PathBuf,
    /// (namespace, id, cgroup) of every container started.
    started: Mutex<Vec<(String, String, String)>>,
    child: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts it and waits until it serves its socket.
    pub fn start() -> Self {
        // No leading '.' in the path: the daemon's configuration refuses "/.".
        let dir = tempfile::Builder::new()
            .prefix("gala-ctd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let rootfs = busybox_rootfs(&d.join("rootfs"));
        let c = Containerd {
            socket,
            rootfs,
            started: Mutex::new(Vec::new()),
            child: KillOnDrop(child),
            dir,
        };
        wait_for("containerd", Duration::from_secs(20), || {
            c.ctr("default", &["version"]).status.success()
        });
        c
    }

    /// The directory it lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `ctr` against it in `namespace`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    /// Imports the busybox root filesystem into `namespace` as image `name` (an OCI image
    /// layout of one uncompressed layer, written here), so containers can record an image.
    pub fn import_busybox_image(&self, namespace: &str, name: &str) {
        let layout = self.path().join("oci");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("blobs dir");
        // Adds `bytes` as a blob; its descriptor fields (digest, size).
        let blob = |bytes: &[u8]| {
            let tmp = layout.join("blob.tmp");
            std::fs::write(&tmp, bytes).expect("blob");
            let sum = crate::run_ok("sha256sum", &[tmp.to_str().expect("utf-8 path")]);
            let hex = sum
                .split_whitespace()
                .next()
                .expect("sha256sum output")
                .to_owned();
            std::fs::rename(&tmp, blobs.join(&hex)).expect("blob in place");
            (format!("sha256:{hex}"), bytes.len())
        };
        let layer_tar = self.path().join("layer.tar");
        crate::run_ok(
            "tar",
            &[
                "-C",
                self.rootfs.to_str().expect("utf-8 path"),
                "-cf",
                layer_tar.to_str().expect("utf-8 path"),
                ".",
            ],
        );
        let (layer, layer_size) = blob(&std::fs::read(&layer_tar).expect("layer"));
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/sleep", "60"]},
            "rootfs": {"type": "layers", "diff_ids": [layer]},
        });
        let (config, config_size) = blob(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer, "size": layer_size}],
        });
        let (manifest, manifest_size) = blob(manifest.to_string().as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest, "size": manifest_size,
                           "annotations": {"io.containerd.image.name": name}}],
        });
        std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        let image_tar = self.path().join("image.tar");
        crate::run_ok(
            "tar",
            &[
                "-C",
                layout.to_str().expect("utf-8 path"),
                "-cf",
                image_tar.to_str().expect("utf-8 path"),
                ".",
            ],
        );
        let import = ["images", "import", image_tar.to_str().expect("utf-8 path")];
        check("ctr images import", Ok(self.ctr(namespace, &import)));
    }

    /// Runs container `id` detached in `namespace` from the busybox rootfs, with `labels`, in
    /// cgroup `cgroup`, running `args`; returns its first process's pid.
    pub fn run(
        &self,
        namespace: &str,
        id: &str,
        labels: &[(&str, &str)],
        cgroup: &str,
        args: &[&str],
    ) -> u32 {
        self.run_from(namespace, None, id, labels, cgroup, args)
    }

    /// [`Containerd::run`] from `image` (imported before) when given, else from the rootfs.
    pub fn run_from(
        &self,
        namespace: &str,
        image: Option<&str>,
        id: &str,
        labels: &[(&str, &str)],
        cgroup: &str,
        args: &[&str],
    ) -> u32 {
        let mut argv: Vec<String> = vec!["run".into(), "-d".into()];
        for (k, v) in labels {
            argv.push("--label".into());
            argv.push(format!("{k}={v}"));
        }
        argv.extend(["--cgroup".into(), cgroup.into()]);
        match image {
            Some(image) => argv.push(image.into()),
            None => {
                argv.push("--rootfs".into());
                argv.push(self.rootfs.display().to_string());
            }
        }
        argv.push(id.into());
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        check("ctr run", Ok(self.ctr(namespace, &argv)));
        self.started
            .lock()
            .unwrap()
            .push((namespace.into(), id.into(), cgroup.into()));
        let tasks = check("ctr task ls", Ok(self.ctr(namespace, &["task", "ls"])));
        tasks
            .lines()
            .find(|l| l.starts_with(id))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no task {id} in {tasks}"))
    }

    /// Starts `args` inside container `id` (`ctr task exec -d`) as exec `exec_id`.
    pub fn exec(&self, namespace: &str, id: &str, exec_id: &str, args: &[&str]) {
        let mut argv = vec!["task", "exec", "-d", "--exec-id", exec_id, id];
        argv.extend_from_slice(args);
        check("ctr task exec", Ok(self.ctr(namespace, &argv)));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for (ns, id, cgroup) in self.started.lock().unwrap().drain(..) {
            let _ = self.ctr(&ns, &["task", "kill", "-s", "KILL", &id]);
            for _ in 0..50 {
                if self.ctr(&ns, &["task", "delete", &id]).status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(&ns, &["container", "delete", &id]);
            remove_cgroup_dirs(&cgroup);
        }
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A Docker Engine of its own: data, exec root and socket in a temporary directory; no
/// iptables, no bridge (containers run with `--network none`).
pub struct Dockerd {
    /// Its API socket.
    pub socket: PathBuf,
    started: Mutex<Vec<String>>,
    child: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts it, waits until it answers, and imports the busybox rootfs as `busybox:local`.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gala-dockerd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("d.sock");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none"])
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let docker = Dockerd {
            socket,
            started: Mutex::new(Vec::new()),
            child: KillOnDrop(child),
            dir,
        };
        wait_for("dockerd", Duration::from_secs(60), || {
            docker.docker(&["version"]).status.success()
        });
        let rootfs = busybox_rootfs(&docker.dir.path().join("rootfs"));
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let import = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", docker.socket.display()))
            .args(["import", "-", "busybox:local"])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output();
        let tarred = tar.wait().expect("tar");
        check("docker import", import);
        assert!(tarred.success(), "tar of the busybox rootfs failed");
        docker
    }

    /// The directory it lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the docker CLI against it.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker")
    }

    /// `docker run -d --network none` of `busybox:local` named `name` with `labels`, running
    /// `args`; its full id.
    pub fn run(&self, name: &str, labels: &[(&str, &str)], args: &[&str]) -> String {
        let mut argv: Vec<String> = ["run", "-d", "--network", "none", "--name", name]
            .map(String::from)
            .to_vec();
        for (k, v) in labels {
            argv.push("--label".into());
            argv.push(format!("{k}={v}"));
        }
        argv.push("busybox:local".into());
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let id = check("docker run", Ok(self.docker(&argv)));
        self.started.lock().unwrap().push(id.clone());
        id
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        for id in self.started.lock().unwrap().drain(..) {
            let _ = self.docker(&["rm", "-f", &id]);
        }
        stop(&mut self.child, Duration::from_secs(20));
    }
}
