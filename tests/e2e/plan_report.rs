//! The `--plan` report of every eBPF probe binary (`gala_ebpf::report`), run on this
//! kernel without the daemon:
//! - every stdout line is one JSON object with the documented fields, every sub-item of the
//!   probe's catalogue entry (and its core) appears, and the probe exits 0;
//! - the results fit this kernel: nothing fails, a hook the kernel cannot run (fentry/fexit
//!   where fentry is refused, kprobes where there are none) is never chosen, a skipped or
//!   fallen-back need says what was passed over;
//! - with the kernel's own BTF hidden (a private mount namespace with a tmpfs over
//!   `/sys/kernel/btf`) and a BTF file for the kernel in `GALA_BTF_DIR` — or on a kernel
//!   without BTF, with the file where the probes look for it — the probes say they
//!   use that file, choose no hook that needs the kernel's own BTF, and still load what
//!   CO-RE relocates against the file (nothing fails); tcp is left out of this one (see the
//!   test).
//!
//! The kernel matrix (`tests/kernels`) runs these in its guests too; there the BTF file can
//! come from `GALA_BTF_DIR` (`<dir>/<uname -r>.btf`) instead of a copy of the kernel's own.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use gala_e2e::{gate, require_bpf, workspace_bin};
use serde_json::Value;

/// Each probe binary, its catalogue name, its sub-items (the catalogue's) and whether it has
/// a core (sub-item `""`).
const PROBES: &[(&str, &str, &[&str], bool)] = &[
    (
        "tcpprobe",
        "tcp",
        &[
            "tcp_abnormal",
            "tcp_windows",
            "tcp_rtt",
            "tcp_stats",
            "tcp_sockbuf",
            "tcp_rate",
            "tcp_srtt",
            "tcp_delay",
        ],
        true,
    ),
    ("endpoint", "socket", &["tcp_socket", "udp_socket"], true),
    (
        "ioprobe",
        "io",
        &["io_trace", "io_err", "io_count", "page_cache"],
        false,
    ),
    (
        "taskprobe",
        "proc",
        &[
            "proc_syscall",
            "proc_fs",
            "proc_dns",
            "proc_io",
            "proc_pagecache",
            "proc_net",
            "proc_offcpu",
            "proc_ioctl",
            "proc_pygc",
        ],
        true,
    ),
];

const RESULTS: &[&str] = &["loaded", "fallback", "skipped", "failed"];

/// One report line.
#[derive(Debug)]
struct Line {
    subitem: String,
    need: String,
    result: String,
    hook: String,
    detail: String,
}

/// Runs `bin --plan` (through `prepare`), asserts exit 0, and parses its stdout strictly:
/// every line an object with exactly the documented fields, `probe` the probe's name,
/// `result` one of the four. Returns the lines and stderr.
fn plan(bin: &str, probe: &str, prepare: impl FnOnce(&mut Command)) -> (Vec<Line>, String) {
    let mut cmd = Command::new(workspace_bin(bin));
    cmd.arg("--plan")
        .env_remove("GALA_GOPHER_CONFIG")
        .env_remove("GALA_GOPHER_IPC_FD");
    prepare(&mut cmd);
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap_or_else(|e| panic!("{bin} --plan: {e}"));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(
        status.success(),
        "{bin} --plan: {status}\n{stdout}\n{stderr}"
    );
    let lines: Vec<Line> = stdout
        .lines()
        .map(|raw| {
            let v: Value = serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("{bin}: not JSON ({e}): {raw}\n{stderr}"));
            let object = v.as_object().unwrap_or_else(|| panic!("{bin}: {raw}"));
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["detail", "hook", "need", "probe", "result", "subitem"],
                "{bin}: {raw}"
            );
            let field = |k: &str| {
                object[k]
                    .as_str()
                    .unwrap_or_else(|| panic!("{bin}: {k} is no string: {raw}"))
                    .to_owned()
            };
            assert_eq!(field("probe"), probe, "{raw}");
            let line = Line {
                subitem: field("subitem"),
                need: field("need"),
                result: field("result"),
                hook: field("hook"),
                detail: field("detail"),
            };
            assert!(RESULTS.contains(&line.result.as_str()), "{bin}: {raw}");
            line
        })
        .collect();
    assert!(!lines.is_empty(), "{bin}: no report\n{stderr}");
    (lines, stderr)
}

/// The checks every report passes on any kernel: all sub-items appear, the detail fits the
/// result, a chosen hook is named unless skipped.
fn check_shape(bin: &str, subitems: &[&str], core: bool, lines: &[Line]) {
    for item in subitems.iter().chain(core.then_some(&"")) {
        assert!(
            lines.iter().any(|l| l.subitem == *item),
            "{bin}: sub-item {item:?} missing: {lines:#?}"
        );
    }
    for l in lines {
        assert!(
            l.subitem.is_empty() || subitems.contains(&l.subitem.as_str()),
            "{bin}: unknown sub-item: {l:?}"
        );
        match l.result.as_str() {
            "loaded" => assert!(l.detail.is_empty() || l.need.is_empty(), "{bin}: {l:?}"),
            "fallback" => assert!(l.detail.starts_with("passed over "), "{bin}: {l:?}"),
            "skipped" => {
                assert!(l.hook.is_empty(), "{bin}: {l:?}");
                assert!(
                    l.need.is_empty() || l.detail.starts_with("tried "),
                    "{bin}: {l:?}"
                );
            }
            _ => assert!(!l.detail.is_empty(), "{bin}: {l:?}"),
        }
    }
}

/// The hooks of a chosen variant.
fn hooks(l: &Line) -> impl Iterator<Item = &str> {
    l.hook.split(',').filter(|h| !h.is_empty())
}

fn kprobes() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

#[test]
fn every_probe_reports_its_plan_for_this_kernel() {
    require_bpf!();
    let _gate = gate::shared();
    let kernel = gala_ebpf::Kernel::detect();
    for (bin, probe, subitems, core) in PROBES {
        let (lines, stderr) = plan(bin, probe, |_| {});
        check_shape(bin, subitems, *core, &lines);
        assert!(
            stderr.contains("kernel BPF features: btf=true"),
            "{bin}: {stderr}"
        );
        for l in &lines {
            // Whatever loads here loads for real: nothing the kernel accepted at planning
            // time may be refused at load time.
            assert_ne!(l.result, "failed", "{bin}: {l:?}\n{stderr}");
            if l.result == "skipped" {
                continue;
            }
            for hook in hooks(l) {
                let fentry = hook.starts_with("fentry/") || hook.starts_with("fexit/");
                assert!(!fentry || kernel.fentry(), "{bin}: fentry chosen: {l:?}");
                let kprobe = hook.starts_with("kprobe/") || hook.starts_with("kretprobe/");
                assert!(!kprobe || kprobes(), "{bin}: kprobe chosen: {l:?}");
            }
        }
        if *probe == "tcp" {
            // The core's tracepoints and iterator are in every kernel the probes run on (the
            // socket pass in its compatible form without bpf_sock_from_file (5.11) and
            // bpf_rdonly_cast (6.2)); its TOA parsing needs fentry or a kprobe on
            // tcp_conn_request.
            let sock_from_file = kernel.has_enumerator("BPF_FUNC_sock_from_file")
                && kernel.has_function("bpf_rdonly_cast");
            for l in lines.iter().filter(|l| l.subitem.is_empty()) {
                let want = match l.need.as_str() {
                    "TOA client addresses" => match (kernel.fentry(), kprobes()) {
                        (true, _) => "loaded",
                        (false, true) => "fallback",
                        (false, false) => "skipped",
                    },
                    "socket passes" if !sock_from_file => "fallback",
                    _ => "loaded",
                };
                assert_eq!(l.result, want, "{l:?}");
            }
            // The sub-items without needs of their own run on the core's programs.
            for l in lines
                .iter()
                .filter(|l| !l.subitem.is_empty() && l.need.is_empty())
            {
                assert_eq!(l.result, "loaded", "{l:?}");
            }
        }
        // Drop reasons come with `tp_btf/kfree_skb` where it has its `reason` (5.17+).
        if *probe == "tcp" && kernel.has_enumerator("SKB_DROP_REASON_NOT_SPECIFIED") {
            let drops = lines
                .iter()
                .find(|l| l.subitem == "tcp_abnormal" && l.need == "drop reasons")
                .expect("tcp_abnormal drop reasons");
            assert_eq!(
                (drops.result.as_str(), drops.hook.as_str()),
                ("loaded", "tp_btf/kfree_skb")
            );
        }
    }
}

/// A directory with `<uname -r>.btf` for this kernel: the one `GALA_BTF_DIR` names when it
/// has the file (the kernel matrix), else a copy of the kernel's own BTF in `tmp`.
fn btf_dir(tmp: &Path) -> std::path::PathBuf {
    let release = gala_ebpf::kernel::kernel_release().expect("uname");
    if let Some(dir) = std::env::var_os("GALA_BTF_DIR") {
        let dir = std::path::PathBuf::from(dir);
        if dir.join(format!("{release}.btf")).is_file() {
            return dir;
        }
    }
    std::fs::copy(
        gala_ebpf::kernel::SYSFS_BTF,
        tmp.join(format!("{release}.btf")),
    )
    .unwrap_or_else(|e| panic!("copy {}: {e}", gala_ebpf::kernel::SYSFS_BTF));
    tmp.to_path_buf()
}

/// Runs the command in its own mount namespace with an empty tmpfs over `/sys/kernel/btf`:
/// for it the kernel has no BTF.
fn hide_kernel_btf(cmd: &mut Command) {
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
    // (unshare, mount) and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"tmpfs".as_ptr(),
                c"/sys/kernel/btf".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ))
        });
    }
}

#[test]
fn a_btf_file_stands_in_for_the_kernels_own() {
    // On a kernel with BTF (this host, the guests) the test hides it from the probes; on one
    // without (a guest of `tests/kernels/guest --hide-btf`) the probes find the file where
    // they look by default, or in `GALA_BTF_DIR`.
    let hide = Path::new(gala_ebpf::kernel::SYSFS_BTF).exists();
    if hide {
        require_bpf!();
    } else {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        gala_e2e::require!(if root {
            Ok(())
        } else {
            Err("eBPF probes need root".to_owned())
        });
    }
    let _gate = gate::shared();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, file) = if hide {
        let dir = btf_dir(tmp.path());
        let release = gala_ebpf::kernel::kernel_release().expect("uname");
        let file = dir.join(format!("{release}.btf"));
        (Some(dir), file)
    } else {
        let file = gala_ebpf::kernel::custom_btf().unwrap_or_else(|| {
            panic!(
                "the kernel has no BTF and there is no <uname -r>.btf in {}",
                gala_ebpf::kernel::btf_dir().display()
            )
        });
        (None, file)
    };
    // tcp is not among them yet: its iterator's `bpf_core_cast` declares the kfunc
    // `bpf_rdonly_cast` (a typed `__ksym`), for which libbpf needs the kernel's own BTF
    // whatever programs load, so its object cannot load at all without it.
    for (bin, probe, subitems, core) in PROBES.iter().filter(|p| p.1 != "tcp") {
        let (lines, stderr) = plan(bin, probe, |cmd| {
            if let Some(dir) = &dir {
                cmd.env("GALA_BTF_DIR", dir);
                hide_kernel_btf(cmd);
            }
        });
        check_shape(bin, subitems, *core, &lines);
        let summary = format!("btf=false btf_source={}", file.display());
        assert!(
            stderr.contains(&summary),
            "{bin}: no {summary:?} in\n{stderr}"
        );
        for l in &lines {
            // CO-RE relocates against the file: what is chosen loads.
            assert_ne!(l.result, "failed", "{bin}: {l:?}\n{stderr}");
            if l.result != "skipped" {
                for hook in hooks(l) {
                    let by_btf = ["tp_btf/", "iter/", "fentry/", "fexit/"]
                        .iter()
                        .any(|p| hook.starts_with(p));
                    assert!(!by_btf, "{bin}: needs the kernel's BTF: {l:?}");
                }
            }
            // Passed over for the right reason: the lookups in the file work, only the
            // attach types that need the kernel's own BTF are out.
            let passed = l
                .detail
                .strip_prefix("tried ")
                .or_else(|| l.detail.strip_prefix("passed over "))
                .unwrap_or("");
            for variant in passed.split("; ").filter(|v| !v.is_empty()) {
                let (hooks, why) = variant
                    .rsplit_once(": ")
                    .unwrap_or_else(|| panic!("{bin}: {l:?}"));
                if hooks
                    .split(',')
                    .all(|h| h.starts_with("tp_btf/") || h.starts_with("iter/"))
                {
                    assert_eq!(why, "no kernel BTF", "{bin}: {l:?}");
                }
            }
        }
    }
}
