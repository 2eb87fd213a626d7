//! What the eBPF probes' end-to-end tests share: whether BPF may run here (a test that
//! cannot load BPF fails in CI and is skipped elsewhere, see [`crate::require`]), a sandbox
//! with a built-in eBPF probe installed, and a probe run offline (no daemon) with its stdout
//! collected.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{gate, workspace_bin, Daemon, KillOnDrop, Sandbox};

/// `Ok` when eBPF probes can run on this machine — root, vmlinux BTF with tracepoints, and a
/// BPF map the kernel lets this process create — or why they cannot.
pub fn bpf_usable() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("eBPF probes need root".to_owned());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err("the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_owned());
    }
    let kernel = gala_ebpf::Kernel::detect();
    if !kernel.has_tracepoint("sched_switch") {
        return Err(format!("BTF without tracepoints: {}", kernel.summary()));
    }
    create_map()
}

/// Creates (and closes) a one-entry BPF array map: root alone is not enough where a
/// container, seccomp or `kernel.unprivileged_bpf_disabled` policy refuses `bpf(2)`.
fn create_map() -> Result<(), String> {
    /// The first fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel takes the
    /// rest as zero.
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
    };
    // SAFETY: bpf(2) reads `size_of::<MapCreate>()` bytes of `attr`, which lives across the
    // call; the descriptor it returns is ours and closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>(),
        )
    };
    if fd < 0 {
        return Err(format!(
            "the kernel refuses to create a BPF map: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is the map descriptor bpf(2) just returned to us.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Fails the test in CI, or returns from it printing why elsewhere, when eBPF probes cannot
/// run here ([`bpf_usable`]).
#[macro_export]
macro_rules! require_bpf {
    () => {
        $crate::require!($crate::ebpf::bpf_usable())
    };
}

/// `Ok` when eBPF probes can run here ([`bpf_usable`]) and the kernel has kprobes, or why
/// not. No kernel we build on has kprobes; the guests of `./dev.sh test-kernels` do.
pub fn kprobes_usable() -> Result<(), String> {
    bpf_usable()?;
    let kernel = gala_ebpf::Kernel::detect();
    if !kernel.kprobes() {
        return Err(format!("the kernel has no kprobes: {}", kernel.summary()));
    }
    Ok(())
}

/// Fails the test when kprobes are not usable here ([`kprobes_usable`]), whether in CI or
/// not: the tests that use it run only where kprobes exist (the guest suite).
#[macro_export]
macro_rules! require_kprobes {
    () => {
        if let Err(reason) = $crate::ebpf::kprobes_usable() {
            panic!("{reason} (this test runs inside the guests of ./dev.sh test-kernels)");
        }
    };
}

/// Installs the workspace binary `bin` as a built-in probe of `sb` (extend probe dir) and
/// writes its meta files and `ebpf_prog.meta` into the sandbox's meta dir.
pub fn install_builtin(sb: &Sandbox, bin: &str, metas: &[(&str, &str)]) {
    std::fs::copy(workspace_bin(bin), sb.path().join("probes").join(bin))
        .unwrap_or_else(|e| panic!("install {bin}: {e} (build it: cargo build --bins)"));
    let (name, text) = gala_ebpf::COST_META;
    sb.write_meta(name, text);
    for (name, text) in metas {
        sb.write_meta(name, text);
    }
}

/// The supervisor settings the eBPF tests run the daemon with: a 2 s stop grace, the
/// snoopers refreshed every second.
pub const SUPERVISOR: &str = "supervisor = { stop_grace = 2; snooper_period = 1; };";

/// A sandbox with the workspace binary `bin` installed as a built-in probe (see
/// [`install_builtin`]), configured with `imdb` and [`SUPERVISOR`], and its daemon started
/// with the extra environment `env`.
pub fn builtin_daemon(
    bin: &str,
    metas: &[(&str, &str)],
    imdb: &str,
    env: &[(&str, &str)],
) -> (Sandbox, Daemon) {
    let sb = Sandbox::new();
    install_builtin(&sb, bin, metas);
    sb.write_config(imdb, SUPERVISOR);
    let d = sb.start_with_env(env);
    (sb, d)
}

/// What a `gala_ebpf` probe logs once its programs are loaded and attached.
pub const LOADED: &str = "loaded; active sub-items";

/// A workspace probe binary run offline (no daemon, no IPC fd): its configuration from
/// `GALA_GOPHER_CONFIG` (proto3 JSON), every stdout line collected by a thread. Killed
/// (SIGKILL) if dropped without [`OfflineProbe::stop`]. Holds the [`gate`] shared.
pub struct OfflineProbe {
    bin: String,
    child: KillOnDrop,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    _gate: gate::Guard,
}

impl OfflineProbe {
    /// How long [`OfflineProbe::start`] waits for the [`LOADED`] line.
    pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

    /// Starts the workspace binary `bin` with `config` and waits until it logs [`LOADED`].
    pub fn start(bin: &str, config: &str) -> OfflineProbe {
        let gate = gate::shared();
        let mut child = Command::new(workspace_bin(bin))
            .env("GALA_GOPHER_CONFIG", config)
            .env_remove("GALA_GOPHER_IPC_FD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e} (build it: cargo build --bins)"));
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        let probe = OfflineProbe {
            bin: bin.to_owned(),
            child: KillOnDrop(child),
            lines,
            reader: Some(reader),
            _gate: gate,
        };
        probe.wait_for_line(Self::LOAD_TIMEOUT, |l| l.contains(LOADED));
        probe
    }

    /// The probe's pid.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits up to `timeout` for a line `matches` accepts; returns the lines up to and
    /// including the first such line. Panics, with the lines so far, on timeout or when the
    /// probe's stdout closes first.
    pub fn wait_for_line(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked before the lines: a line read before the end is never missed.
            let closed = self.reader.as_ref().is_none_or(JoinHandle::is_finished);
            {
                let lines = self.lines.lock().expect("lines");
                if let Some(i) = lines.iter().position(|l| matches(l)) {
                    return lines[..=i].to_vec();
                }
                assert!(
                    !closed && Instant::now() < deadline,
                    "{}: no such line {} ({timeout:?}): {lines:?}",
                    self.bin,
                    if closed {
                        "before its output closed"
                    } else {
                        "in time"
                    },
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the probe with SIGINT (it reports a last time and exits), asserts that it
    /// exited cleanly and returns every line it printed.
    pub fn stop(mut self) -> Vec<String> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let status = self.child.0.wait().expect("wait for the probe");
        assert!(status.success(), "{} exited with {status}", self.bin);
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        self.lines()
    }
}

/// An `inet` nft table with a unique name, deleted (with its chains and rules) when dropped.
pub struct NftTable(String);

impl NftTable {
    /// Creates the table `gala_e2e_<tag>_<pid>_<n>` (`n` counts the tables of this process).
    pub fn new(tag: &str) -> NftTable {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("gala_e2e_{tag}_{}_{n}", std::process::id());
        nft(&["add", "table", "inet", &name]);
        NftTable(name)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Adds the base chain `chain` on filter hook `hook` (`input`, `output`, ...), priority
    /// 0, policy accept.
    pub fn chain(&self, chain: &str, hook: &str) -> &Self {
        let spec = format!("{{ type filter hook {hook} priority 0; policy accept; }}");
        nft(&["add", "chain", "inet", &self.0, chain, &spec]);
        self
    }

    /// Adds `rule` (nft syntax, e.g. `tcp dport 80 drop`) to `chain`.
    pub fn rule(&self, chain: &str, rule: &str) -> &Self {
        let mut args = vec!["add", "rule", "inet", &self.0, chain];
        args.extend(rule.split_whitespace());
        nft(&args);
        self
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

/// Runs `nft args`, panicking with its stderr if it fails.
pub fn nft(args: &[&str]) {
    let out = Command::new("nft").args(args).output().expect("nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
