//! What the running kernel offers to BPF, found out at run time (never assumed at build
//! time): the tracepoints and functions its BTF describes, and whether fentry/fexit and
//! kprobe programs can be used at all (a kernel in lockdown refuses fentry; a kernel without
//! `CONFIG_KPROBES` has no kprobes).

use std::ffi::CString;
use std::path::{Path, PathBuf};

const BTF_KIND_TYPEDEF: u32 = 8;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_ENUM64: u32 = 19;

/// The kernel's BPF capabilities.
pub struct Kernel {
    btf: *mut libbpf_sys::btf,
    fentry: bool,
    kprobes: bool,
    cgroup2: Option<PathBuf>,
}

// SAFETY: the BTF handle is only read (lookups), never shared mutably.
unsafe impl Send for Kernel {}

impl Kernel {
    /// Probes this kernel. Never fails: what cannot be found out counts as absent.
    pub fn detect() -> Self {
        // SAFETY: libbpf returns an owned handle or an error pointer/NULL.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        // libbpf 1.x returns NULL (errno set) when there is no BTF.
        let mut kernel = Kernel {
            btf,
            fentry: false,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
            cgroup2: cgroup2_root(),
        };
        // A refused probe load is the expected answer on a lockdown kernel, not news.
        kernel.fentry = crate::print::quiet(|| kernel.probe_fentry());
        kernel
    }

    /// Whether the kernel has vmlinux BTF (needed for `tp_btf`, fentry and CO-RE).
    pub fn has_btf(&self) -> bool {
        !self.btf.is_null()
    }

    /// Whether raw tracepoint `name` exists (usable as `tp_btf/<name>` and `raw_tp/<name>`).
    pub fn has_tracepoint(&self, name: &str) -> bool {
        self.find(&format!("btf_trace_{name}"), BTF_KIND_TYPEDEF)
            .is_some()
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
            "kernel BPF features: btf={} fentry={} kprobes={}",
            self.has_btf(),
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
            // SAFETY: the handle came from btf__load_vmlinux_btf and is freed once.
            unsafe { libbpf_sys::btf__free(self.btf) };
        }
    }
}

/// The mount point of the cgroup v2 hierarchy on this machine, if it is mounted.
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// The mount point of the cgroup v2 hierarchy in `/proc/self/mountinfo` text: the first
/// line whose file system type (after the ` - ` separator) is `cgroup2`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        // Fields: id, parent, major:minor, root, mount point, ...
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
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
