//! Real containers for the tests: a busybox root filesystem and `runc` containers placed in
//! the cgroup a kubelet would give them, removed when dropped.
//!
//! Needs `runc` and `busybox-static` (installed by `./dev.sh test`); [`runc_available`] says
//! why a test cannot run without them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Where the static busybox of Debian's `busybox-static` lives.
const BUSYBOX: &str = "/bin/busybox";

/// The applets linked into a root filesystem (what the tests' containers run).
const APPLETS: [&str; 14] = [
    "sh", "sleep", "dd", "cat", "true", "yes", "nc", "ping", "ls", "echo", "wget", "head",
    "ifconfig", "ip",
];

/// `Ok` when runc and a static busybox are installed, else why not.
pub fn runc_available() -> Result<(), String> {
    if !Path::new(BUSYBOX).exists() {
        return Err(format!("{BUSYBOX} missing (Debian package busybox-static)"));
    }
    match Command::new("runc").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("runc not installed (Debian package runc)".into()),
    }
}

/// Lays out a root filesystem under `dir`: `bin/busybox`, its applets as links, and the
/// empty directories a container needs.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("rootfs/bin");
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(dir.join(d)).expect("rootfs dir");
    }
    fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    for applet in APPLETS {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("applet link");
        }
    }
    dir.to_path_buf()
}

/// A random 64-hex container id.
pub fn container_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random pod uid in the dashed form.
pub fn pod_uid() -> String {
    let mut b = [0u8; 16];
    getrandom(&mut b);
    let h: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn getrandom(out: &mut [u8]) {
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(out))
        .expect("/dev/urandom");
}

/// The cgroup path kubelet's cgroupfs driver gives a container of a best-effort pod.
pub fn kubepods_cgroupfs(pod_uid: &str, id: &str) -> String {
    format!("/kubepods/besteffort/pod{pod_uid}/{id}")
}

/// The cgroup path kubelet's systemd driver gives a containerd container of a burstable pod.
pub fn kubepods_systemd(pod_uid: &str, id: &str) -> String {
    let pod = pod_uid.replace('-', "_");
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod}.slice/cri-containerd-{id}.scope"
    )
}

/// What a [`RuncContainer`] runs, and where.
#[derive(Debug, Clone)]
pub struct RuncSpec {
    /// The 64-hex id (also runc's container name).
    pub id: String,
    /// `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// The container's command.
    pub args: Vec<String>,
    /// `linux.resources.memory.limit`, bytes.
    pub memory_limit: Option<u64>,
    /// Share the host's network namespace (else the container gets its own, with loopback).
    pub host_network: bool,
}

impl RuncSpec {
    /// A container `id` in the cgroupfs kubepods path of `pod_uid`, running `args`.
    pub fn new(pod_uid: &str, args: &[&str]) -> Self {
        let id = container_id();
        RuncSpec {
            cgroups_path: kubepods_cgroupfs(pod_uid, &id),
            id,
            args: args.iter().map(|s| s.to_string()).collect(),
            memory_limit: None,
            host_network: false,
        }
    }
}

/// A running runc container; dropping it kills and deletes it.
#[derive(Debug)]
pub struct RuncContainer {
    /// Its id.
    pub id: String,
    /// The host pid of its first process.
    pub pid: u32,
    /// The bundle directory (rootfs, config.json, runc's output).
    pub bundle: tempfile::TempDir,
    /// Its `linux.cgroupsPath`.
    pub cgroups_path: String,
}

impl RuncContainer {
    /// Creates the bundle and starts the container detached (`runc run -d`).
    pub fn start(spec: &RuncSpec) -> Self {
        let bundle = tempfile::tempdir().expect("bundle dir");
        busybox_rootfs(&bundle.path().join("rootfs"));
        let status = Command::new("runc")
            .arg("spec")
            .current_dir(bundle.path())
            .status()
            .expect("runc spec");
        assert!(status.success(), "runc spec failed");
        let path = bundle.path().join("config.json");
        let mut config: Value =
            serde_json::from_slice(&fs::read(&path).expect("config.json")).expect("json");
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(spec.args);
        config["root"]["readonly"] = json!(false);
        config["linux"]["cgroupsPath"] = json!(spec.cgroups_path);
        if let Some(limit) = spec.memory_limit {
            config["linux"]["resources"]["memory"] = json!({ "limit": limit, "swap": limit });
        }
        if spec.host_network {
            let ns = config["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces");
            ns.retain(|n| n["type"] != "network");
        }
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config");
        // With -d the container inherits runc's stdio: a file, never a pipe.
        let out = fs::File::create(bundle.path().join("runc.out")).expect("runc.out");
        let status = Command::new("runc")
            .args(["run", "-d", &spec.id])
            .current_dir(bundle.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .expect("runc run");
        let log = fs::read_to_string(bundle.path().join("runc.out")).unwrap_or_default();
        assert!(status.success(), "runc run {} failed: {log}", spec.id);
        let pid = state_pid(&spec.id).expect("runc state gives the pid");
        RuncContainer {
            id: spec.id.clone(),
            pid,
            bundle,
            cgroups_path: spec.cgroups_path.clone(),
        }
    }

    /// Runs `args` inside the container (`runc exec`), waiting for it; its output.
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("runc")
            .arg("exec")
            .arg(&self.id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runc exec")
    }

    /// Whether runc still reports the container as running.
    pub fn running(&self) -> bool {
        runc_state(&self.id).is_some_and(|s| s["status"] == "running")
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, "KILL"])
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if !self.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
        remove_cgroup_dirs(&self.cgroups_path);
    }
}

/// Removes the empty directories of cgroup `path` and of its parents but the top one
/// (`/kubepods`, shared) in every hierarchy mounted under `/sys/fs/cgroup` (v1 controllers,
/// and the v2 root or its `unified` mount); the runtimes remove the container's own directory
/// only. Errors (a directory in use or absent) are ignored.
pub fn remove_cgroup_dirs(path: &str) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    let mut dir = Path::new(path.trim_start_matches('/'));
    while dir.components().count() > 1 {
        for root in &roots {
            let _ = fs::remove_dir(root.join(dir));
        }
        dir = dir.parent().unwrap_or(Path::new(""));
    }
}

fn runc_state(id: &str) -> Option<Value> {
    let out = Command::new("runc")
        .args(["state", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn state_pid(id: &str) -> Option<u32> {
    runc_state(id)?["pid"].as_u64().map(|p| p as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_and_ids_have_their_forms() {
        let id = container_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let uid = pod_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(
            kubepods_cgroupfs(&uid, &id),
            format!("/kubepods/besteffort/pod{uid}/{id}")
        );
        let systemd = kubepods_systemd(&uid, &id);
        assert!(systemd.contains(&format!("-pod{}.slice/", uid.replace('-', "_"))));
        assert!(systemd.ends_with(&format!("cri-containerd-{id}.scope")));
    }
}
