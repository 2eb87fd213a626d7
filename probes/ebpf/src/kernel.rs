//! What the running kernel offers to BPF, found out at run time (never assumed at build
//! time): the tracepoints and functions its BTF describes, and whether fentry/fexit and
//! kprobe programs can be used at all (a kernel in lockdown refuses fentry; a kernel without
//! `CONFIG_KPROBES` has no kprobes).
//!
//! The BTF comes from `/sys/kernel/btf/vmlinux`; on a kernel without it, from
//! `/opt/gala-gopher/btf/<uname -r>.btf` (the directory overridable by `GALA_BTF_DIR`, see
//! `docs/btf.md`), which [`crate::Skeleton`] also hands to libbpf for CO-RE. Such a file
//! serves lookups only: `tp_btf`, fentry/fexit and iterators need the kernel's own BTF.

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const BTF_KIND_TYPEDEF: u32 = 8;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_ENUM64: u32 = 19;

/// The running kernel's own BTF.
pub const SYSFS_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where BTF files for kernels without [`SYSFS_BTF`] are looked for, as `<uname -r>.btf`.
pub const BTF_DIR: &str = "/opt/gala-gopher/btf";
/// Overrides [`BTF_DIR`] (tests, other layouts).
pub const ENV_BTF_DIR: &str = "GALA_BTF_DIR";

/// Where the BTF used for lookups came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtfSource {
    /// The kernel's own ([`SYSFS_BTF`]): attaching by BTF (`tp_btf`, fentry, iterators)
    /// works.
    Kernel,
    /// A BTF file for this kernel ([`custom_btf`]); the kernel itself has no BTF.
    File(PathBuf),
    /// A vmlinux image libbpf found (under `/boot` or `/lib/modules`); the kernel itself
    /// has no BTF.
    Vmlinux,
    /// None at all.
    None,
}

impl std::fmt::Display for BtfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BtfSource::Kernel => f.write_str(SYSFS_BTF),
            BtfSource::File(path) => write!(f, "{}", path.display()),
            BtfSource::Vmlinux => f.write_str("vmlinux image"),
            BtfSource::None => f.write_str("none"),
        }
    }
}

/// The BTF file for this kernel when it has no BTF of its own: `<dir>/<uname -r>.btf` with
/// `dir` from `GALA_BTF_DIR` or [`BTF_DIR`], if the file exists. `None` when the kernel has
/// [`SYSFS_BTF`] (libbpf uses that itself).
pub fn custom_btf() -> Option<PathBuf> {
    custom_btf_in(Path::new(SYSFS_BTF), &btf_dir(), &kernel_release()?)
}

/// [`custom_btf`] with the sysfs file, the directory and the release given.
pub fn custom_btf_in(sysfs: &Path, dir: &Path, release: &str) -> Option<PathBuf> {
    if sysfs.exists() {
        return None;
    }
    let path = dir.join(format!("{release}.btf"));
    path.is_file().then_some(path)
}

/// The directory BTF files are looked for in: `GALA_BTF_DIR`, else [`BTF_DIR`].
pub fn btf_dir() -> PathBuf {
    std::env::var_os(ENV_BTF_DIR)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(BTF_DIR), PathBuf::from)
}

/// `uname -r`.
pub fn kernel_release() -> Option<String> {
    // SAFETY: uname fills the struct we own.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_str().ok().map(str::to_owned)
}

/// The kernel's BPF capabilities.
pub struct Kernel {
    btf: *mut libbpf_sys::btf,
    btf_source: BtfSource,
    fentry: bool,
    kprobes: bool,
    cgroup2: Option<PathBuf>,
    /// The functions kprobes can attach to by name, read on first use when there is no BTF.
    symbols: OnceLock<HashSet<String>>,
    /// The tracefs event names, read on first use when there is no BTF.
    events: OnceLock<HashSet<String>>,
}

// SAFETY: the BTF handle is only read (lookups), never shared mutably.
unsafe impl Send for Kernel {}

impl Kernel {
    /// Probes this kernel. Never fails: what cannot be found out counts as absent.
    pub fn detect() -> Self {
        let custom = kernel_release().map(|r| (btf_dir(), r));
        Self::detect_with(
            Path::new(SYSFS_BTF),
            custom
                .as_ref()
                .map(|(dir, release)| (dir.as_path(), release.as_str())),
        )
    }

    /// [`Kernel::detect`] with the kernel's BTF file `sysfs` and the BTF directory and
    /// release `custom` given (for tests: a `sysfs` path that does not exist stands for a
    /// kernel without BTF).
    pub fn detect_with(sysfs: &Path, custom: Option<(&Path, &str)>) -> Self {
        let (btf, btf_source) = load_btf(sysfs, custom);
        let mut kernel = Kernel {
            btf,
            btf_source,
            fentry: false,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
            cgroup2: cgroup2_root(),
            symbols: OnceLock::new(),
            events: OnceLock::new(),
        };
        // A refused probe load is the expected answer on a lockdown kernel, not news. Without
        // the kernel's own BTF there is no attach target at all.
        kernel.fentry = kernel.has_btf() && crate::print::quiet(|| kernel.probe_fentry());
        kernel
    }

    /// Whether the kernel has its own BTF, so that programs attached by BTF id (`tp_btf`,
    /// fentry/fexit, iterators) can be used. A BTF file for lookups does not count.
    pub fn has_btf(&self) -> bool {
        self.btf_source == BtfSource::Kernel && !self.btf.is_null()
    }

    /// Whether some BTF describes this kernel (its own or a file), for the lookups
    /// ([`Kernel::has_tracepoint`], [`Kernel::has_function`], [`Kernel::has_enumerator`])
    /// and CO-RE.
    pub fn has_lookup_btf(&self) -> bool {
        !self.btf.is_null()
    }

    /// Where the BTF for lookups came from.
    pub fn btf_source(&self) -> &BtfSource {
        &self.btf_source
    }

    /// Whether raw tracepoint `name` exists (usable as `tp_btf/<name>` and `raw_tp/<name>`):
    /// its `btf_trace_<name>` typedef is in BTF or, without the kernel's own BTF (a file may
    /// be minimised), a tracefs event of that name exists.
    pub fn has_tracepoint(&self, name: &str) -> bool {
        self.find(&format!("btf_trace_{name}"), BTF_KIND_TYPEDEF)
            .is_some()
            || (!self.has_btf() && self.events.get_or_init(read_events).contains(name))
    }

    /// Whether classic tracepoint `<category>/<name>` exists in tracefs (usable as
    /// `tracepoint/<category>/<name>`).
    pub fn has_trace_event(&self, category: &str, name: &str) -> bool {
        ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .any(|root| {
                Path::new(root)
                    .join("events")
                    .join(category)
                    .join(name)
                    .exists()
            })
    }

    /// Whether kernel function `name` is in BTF (a candidate for fentry/fexit/kprobe).
    pub fn has_function(&self, name: &str) -> bool {
        self.find(name, BTF_KIND_FUNC).is_some()
    }

    /// Whether a kprobe can be put on kernel function `name`: it is in BTF or, without the
    /// kernel's own BTF (none, or a file that may be minimised), among the traceable
    /// functions (`available_filter_functions`, else `/proc/kallsyms`; read once, on first
    /// use).
    pub fn has_kprobe_function(&self, name: &str) -> bool {
        self.has_function(name)
            || (!self.has_btf() && self.symbols.get_or_init(read_symbols).contains(name))
    }

    /// Whether an enumerator called `name` is in one of the kernel's BTF enums: how a
    /// probe asks for a BPF helper (`BPF_FUNC_sock_from_file`) or map type
    /// (`BPF_MAP_TYPE_TASK_STORAGE`) without loading a program. The UAPI enums only grow,
    /// so a known enumerator means a kernel that has the feature.
    pub fn has_enumerator(&self, name: &str) -> bool {
        if self.btf.is_null() {
            return false;
        }
        // SAFETY: `btf` is a valid handle; ids below `btf__type_cnt` are valid; an enum's
        // `vlen` entries (`btf_enum` or `btf_enum64`, both starting with `name_off`) follow
        // its `btf_type` in the same buffer; names come back NUL-terminated or NULL.
        unsafe {
            let count = libbpf_sys::btf__type_cnt(self.btf);
            for id in 1..count {
                let t = libbpf_sys::btf__type_by_id(self.btf, id);
                if t.is_null() {
                    continue;
                }
                let info = (*t).info;
                let kind = (info >> 24) & 0x1f;
                let stride = match kind {
                    BTF_KIND_ENUM => std::mem::size_of::<libbpf_sys::btf_enum>(),
                    BTF_KIND_ENUM64 => std::mem::size_of::<libbpf_sys::btf_enum64>(),
                    _ => continue,
                };
                let first = t.add(1).cast::<u8>();
                for i in 0..(info & 0xffff) as usize {
                    let name_off = first.add(i * stride).cast::<u32>().read_unaligned();
                    let s = libbpf_sys::btf__name_by_offset(self.btf, name_off);
                    if !s.is_null() && std::ffi::CStr::from_ptr(s).to_bytes() == name.as_bytes() {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Whether fentry/fexit programs load and attach on this kernel.
    pub fn fentry(&self) -> bool {
        self.fentry
    }

    /// Where the cgroup v2 hierarchy is mounted (its root is where `cgroup/*` programs
    /// attach), if it is.
    pub fn cgroup2(&self) -> Option<&Path> {
        self.cgroup2.as_deref()
    }

    /// Whether kprobes exist on this kernel.
    pub fn kprobes(&self) -> bool {
        self.kprobes
    }

    /// One line for the probe's log: what was found.
    pub fn summary(&self) -> String {
        format!(
            "kernel BPF features: btf={} btf_source={} fentry={} kprobes={}",
            self.has_btf(),
            self.btf_source,
            self.fentry,
            self.kprobes
        )
    }

    fn find(&self, name: &str, kind: u32) -> Option<u32> {
        if self.btf.is_null() {
            return None;
        }
        let name = CString::new(name).ok()?;
        // SAFETY: `btf` is a valid handle, `name` a NUL-terminated string.
        let id = unsafe { libbpf_sys::btf__find_by_name_kind(self.btf, name.as_ptr(), kind) };
        (id > 0).then_some(id as u32)
    }

    /// Loads and attaches an empty fentry program (`r0 = 0; exit`) on a function every
    /// kernel with BPF has; lockdown refuses the load with EPERM.
    fn probe_fentry(&self) -> bool {
        let Some(target) = ["bpf_fentry_test1", "security_file_open", "vfs_read"]
            .iter()
            .find_map(|f| self.find(f, BTF_KIND_FUNC))
        else {
            return false;
        };
        let insns = [
            libbpf_sys::bpf_insn {
                code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
                ..Default::default()
            },
            libbpf_sys::bpf_insn {
                code: 0x95, // BPF_JMP | BPF_EXIT
                ..Default::default()
            },
        ];
        let opts = libbpf_sys::bpf_prog_load_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
            expected_attach_type: libbpf_sys::BPF_TRACE_FENTRY,
            attach_btf_id: target,
            ..Default::default()
        };
        let license = c"GPL";
        // SAFETY: the instructions and options outlive the call; the fd is closed below.
        let fd = unsafe {
            libbpf_sys::bpf_prog_load(
                libbpf_sys::BPF_PROG_TYPE_TRACING,
                std::ptr::null(),
                license.as_ptr(),
                insns.as_ptr(),
                insns.len() as _,
                &opts as *const _ as *mut _,
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is the program just loaded; the link fd is closed at once.
        unsafe {
            let link =
                libbpf_sys::bpf_link_create(fd, 0, libbpf_sys::BPF_TRACE_FENTRY, std::ptr::null());
            if link >= 0 {
                libc::close(link);
            }
            libc::close(fd);
            link >= 0
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if !self.btf.is_null() {
            // SAFETY: the handle came from libbpf (btf__load_vmlinux_btf or btf__parse)
            // and is freed once.
            unsafe { libbpf_sys::btf__free(self.btf) };
        }
    }
}

/// The kernel's BTF: [`SYSFS_BTF`] when it exists; else the file `<dir>/<release>.btf` of
/// `custom`; else a vmlinux image libbpf finds. A null handle when there is none.
fn load_btf(sysfs: &Path, custom: Option<(&Path, &str)>) -> (*mut libbpf_sys::btf, BtfSource) {
    if sysfs.exists() {
        if let Some(btf) = parse_btf(sysfs) {
            return (btf, BtfSource::Kernel);
        }
    }
    if let Some(path) = custom.and_then(|(dir, release)| custom_btf_in(sysfs, dir, release)) {
        if let Some(btf) = parse_btf(&path) {
            return (btf, BtfSource::File(path));
        }
    }
    if sysfs != Path::new(SYSFS_BTF) {
        // A test standing for a kernel without BTF: not libbpf's search of the real one.
        return (std::ptr::null_mut(), BtfSource::None);
    }
    // SAFETY: libbpf returns an owned handle, or NULL (errno set) when there is no BTF.
    let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        (btf, BtfSource::None)
    } else {
        (btf, BtfSource::Vmlinux)
    }
}

/// The BTF in file `path` (raw BTF or an ELF file with a `.BTF` section), if it parses.
fn parse_btf(path: &Path) -> Option<*mut libbpf_sys::btf> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; libbpf returns an owned handle or NULL (libbpf 1.x).
    let btf = unsafe { libbpf_sys::btf__parse(c_path.as_ptr(), std::ptr::null_mut()) };
    (!btf.is_null()).then_some(btf)
}

/// The functions kprobes can attach to by name: tracefs' `available_filter_functions`, else
/// the text symbols of `/proc/kallsyms`; empty when neither can be read.
fn read_symbols() -> HashSet<String> {
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let path = Path::new(root).join("available_filter_functions");
        if let Ok(text) = std::fs::read_to_string(path) {
            return filter_functions(&text);
        }
    }
    std::fs::read_to_string("/proc/kallsyms")
        .map(|text| kallsyms_functions(&text))
        .unwrap_or_default()
}

/// The names of the tracefs events (`events/<category>/<name>`), which are the raw
/// tracepoints' names too; empty without tracefs.
fn read_events() -> HashSet<String> {
    let mut names = HashSet::new();
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let Ok(categories) = std::fs::read_dir(Path::new(root).join("events")) else {
            continue;
        };
        for category in categories.flatten() {
            if let Ok(events) = std::fs::read_dir(category.path()) {
                names.extend(
                    events
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .filter_map(|e| e.file_name().into_string().ok()),
                );
            }
        }
        if !names.is_empty() {
            break;
        }
    }
    names
}

/// The function names of `available_filter_functions` text: the first word of each line
/// (`tcp_sendmsg`, `nf_hook [nf_tables]`).
pub fn filter_functions(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The text (code) symbols of `/proc/kallsyms` text (`ffffffff81000000 T tcp_sendmsg`).
pub fn kallsyms_functions(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let _address = words.next()?;
            let kind = words.next()?;
            let name = words.next()?;
            matches!(kind, "t" | "T").then(|| name.to_owned())
        })
        .collect()
}

/// The mount point of the cgroup v2 hierarchy on this machine, if it is mounted.
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// The mount point of the cgroup v2 hierarchy in `/proc/self/mountinfo` text: the first
/// line whose file system type (after the ` - ` separator) is `cgroup2`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    gala_cgroup::mountinfo::parse(mountinfo)
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_unified_and_hybrid_layouts() {
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "\
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount(""), None);
        assert_eq!(cgroup2_mount("garbage - \n - cgroup2\n"), None);
    }

    #[test]
    fn function_lists_are_read_from_tracefs_and_kallsyms_text() {
        let f = filter_functions("tcp_sendmsg\nnf_hook_slow [nf_tables]\n\n");
        assert!(f.contains("tcp_sendmsg") && f.contains("nf_hook_slow"));
        assert_eq!(f.len(), 2);
        let k = kallsyms_functions(
            "ffffffff81000000 T tcp_sendmsg\n0000000000000000 t inet_csk_accept.cold\n\
             ffffffff82000000 D init_net\nffffffffc0000000 t nft_do_chain\t[nf_tables]\n",
        );
        assert!(k.contains("tcp_sendmsg") && k.contains("nft_do_chain"));
        assert!(k.contains("inet_csk_accept.cold") && !k.contains("init_net"));
    }

    #[test]
    fn a_btf_file_serves_lookups_when_the_kernel_has_no_btf() {
        let sysfs = Path::new(SYSFS_BTF);
        assert!(
            sysfs.exists(),
            "this test copies the kernel's own BTF, {SYSFS_BTF}"
        );
        let dir = std::env::temp_dir().join(format!("gala-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("9.9.9-test.btf");
        std::fs::copy(sysfs, &file).unwrap();
        let missing = dir.join("no-sysfs-vmlinux");
        assert_eq!(
            custom_btf_in(&missing, &dir, "9.9.9-test"),
            Some(file.clone())
        );
        assert_eq!(custom_btf_in(sysfs, &dir, "9.9.9-test"), None);
        assert_eq!(custom_btf_in(&missing, &dir, "other"), None);

        let k = Kernel::detect_with(&missing, Some((&dir, "9.9.9-test")));
        assert_eq!(k.btf_source(), &BtfSource::File(file.clone()));
        assert!(!k.has_btf() && k.has_lookup_btf() && !k.fentry());
        assert!(k.has_tracepoint("sched_switch"));
        assert!(k.has_function("tcp_sendmsg"));
        assert!(k.has_enumerator("BPF_MAP_TYPE_RINGBUF"));
        assert!(
            k.summary().contains(&file.display().to_string()),
            "{}",
            k.summary()
        );
        use crate::plan::Hook;
        assert!(!Hook::TpBtf("sched_switch").available(&k));
        assert!(!Hook::Iter("task_file").available(&k));
        assert!(!Hook::Fentry("tcp_sendmsg").available(&k));
        assert!(Hook::RawTp("sched_switch").available(&k));
        assert_eq!(
            Hook::TpBtf("sched_switch").unavailable(&k).as_deref(),
            Some("no kernel BTF")
        );
        // A kfunc resolves against the kernel's own BTF only; helpers are enumerators.
        let raw = crate::plan::Prog::raw_tp("p", "sched_switch");
        assert_eq!(
            raw.requiring(&["bpf_rdonly_cast"])
                .unavailable(&k)
                .as_deref(),
            Some("no bpf_rdonly_cast")
        );
        assert_eq!(
            raw.requiring(&["BPF_FUNC_map_lookup_elem"]).unavailable(&k),
            None
        );

        let none = Kernel::detect_with(&missing, Some((&dir, "other")));
        assert_eq!(none.btf_source(), &BtfSource::None);
        assert!(!none.has_lookup_btf() && !none.has_function("tcp_sendmsg"));
        // Kprobes attach by symbol: the kernel's symbol list stands in for BTF.
        assert!(none.has_kprobe_function("tcp_sendmsg"));
        assert!(!none.has_kprobe_function("no_such_function_gala"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detection_is_consistent() {
        let k = Kernel::detect();
        if !k.has_btf() {
            eprintln!("skipped: no vmlinux BTF on this kernel");
            return;
        }
        // Every kernel with BTF and networking has these.
        assert!(k.has_tracepoint("sched_switch"), "{}", k.summary());
        assert!(k.has_function("tcp_sendmsg"));
        assert!(!k.has_tracepoint("no_such_tracepoint_gala"));
        assert!(!k.has_function("no_such_function_gala"));
        // In every kernel with BPF (3.18+) and with ring buffers (5.8+, which we need).
        assert!(k.has_enumerator("BPF_FUNC_map_lookup_elem"));
        assert!(k.has_enumerator("BPF_MAP_TYPE_RINGBUF"));
        assert!(!k.has_enumerator("BPF_FUNC_no_such_helper_gala"));
    }
}
