//! Which system calls the probe times and under which field: the class table written into
//! the BPF object's `syscall_class` (indexed by syscall number) before it is loaded.

use crate::skel::types;

/// A class-table value of the BPF side's enums (they fit a byte).
macro_rules! cls {
    ($v:expr) => {
        $v.0 as u8
    };
}

/// A timed syscall class; the value is the slot in the BPF record's `ns[]`, taken from
/// `enum syscall_class` of `taskprobe.bpf.c` through the skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Class {
    /// mount(2).
    Mount = cls!(types::syscall_class::CLS_MOUNT),
    /// umount2(2).
    Umount = cls!(types::syscall_class::CLS_UMOUNT),
    /// read and its positional / vectored variants.
    Read = cls!(types::syscall_class::CLS_READ),
    /// write and its positional / vectored variants.
    Write = cls!(types::syscall_class::CLS_WRITE),
    /// fsync, fdatasync.
    Fsync = cls!(types::syscall_class::CLS_FSYNC),
    /// sendmsg(2).
    Sendmsg = cls!(types::syscall_class::CLS_SENDMSG),
    /// recvmsg(2).
    Recvmsg = cls!(types::syscall_class::CLS_RECVMSG),
    /// sched_yield(2).
    SchedYield = cls!(types::syscall_class::CLS_SCHED_YIELD),
    /// futex(2).
    Futex = cls!(types::syscall_class::CLS_FUTEX),
    /// epoll_wait(2).
    EpollWait = cls!(types::syscall_class::CLS_EPOLL_WAIT),
    /// epoll_pwait, epoll_pwait2.
    EpollPwait = cls!(types::syscall_class::CLS_EPOLL_PWAIT),
    /// fork(2).
    Fork = cls!(types::syscall_class::CLS_FORK),
    /// vfork(2).
    Vfork = cls!(types::syscall_class::CLS_VFORK),
    /// clone, clone3.
    Clone = cls!(types::syscall_class::CLS_CLONE),
    /// ioctl(2).
    Ioctl = cls!(types::syscall_class::CLS_IOCTL),
    /// open, openat, openat2, creat (timed for proc_fs only).
    Open = cls!(types::syscall_class::CLS_OPEN),
}

/// Number of `ns[]` slots in the BPF record (the largest class + 1).
#[cfg(test)]
pub const SLOTS: usize = types::syscall_class::CLS_SLOTS.0 as usize;

/// Size of the BPF class table (syscall numbers above it are never timed).
pub const TABLE_SIZE: usize = 512;

/// Flag in the class table: the syscall's return value is not an error code.
pub const NOFAIL: u8 = cls!(types::syscall_class_flag::CLS_NOFAIL);

/// The sub-item groups a class belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// proc_syscall: scheduling and process-creation latency.
    Syscall,
    /// proc_io: I/O syscall latency.
    Io,
    /// proc_fs: per-file-system read/write/open/flush latency.
    Fs,
    /// proc_net: sendmsg/recvmsg latency.
    Net,
    /// proc_ioctl: ioctl latency.
    Ioctl,
}

impl Class {
    /// Whether the class is timed when `group` is enabled.
    pub fn in_group(self, group: Group) -> bool {
        use Class::*;
        match group {
            Group::Syscall => matches!(
                self,
                SchedYield | Futex | EpollWait | EpollPwait | Fork | Vfork | Clone
            ),
            Group::Io => matches!(self, Mount | Umount | Read | Write | Fsync),
            Group::Fs => matches!(self, Read | Write | Fsync | Open),
            Group::Net => matches!(self, Sendmsg | Recvmsg),
            Group::Ioctl => self == Ioctl,
        }
    }
}

/// A timed syscall: its name, its number on the target architecture (`None` where the
/// architecture has no such call) and its class.
#[derive(Debug, Clone, Copy)]
struct Syscall {
    name: &'static str,
    nr: Option<libc::c_long>,
    class: Class,
}

/// `timed!(SYS_read, Read)`: a syscall every Linux architecture has, numbered by the target's
/// `libc::SYS_read`. `timed!(SYS_open, Open, legacy)`: one only the architectures with the old
/// syscall table have (x86_64); arm64, riscv64 and loongarch64 use the generic table, which
/// keeps only the `*at` / `p*` / `clone` forms (no open, creat, fork, vfork, epoll_wait).
macro_rules! timed {
    ($sys:ident, $class:ident) => {
        Syscall {
            name: stringify!($sys),
            nr: Some(libc::$sys),
            class: Class::$class,
        }
    };
    ($sys:ident, $class:ident, legacy) => {
        Syscall {
            name: stringify!($sys),
            nr: {
                #[cfg(target_arch = "x86_64")]
                const NR: Option<libc::c_long> = Some(libc::$sys);
                #[cfg(not(target_arch = "x86_64"))]
                const NR: Option<libc::c_long> = None;
                NR
            },
            class: Class::$class,
        }
    };
}

/// Every timed syscall, numbered for the target architecture by `libc`.
const SYSCALLS: &[Syscall] = &[
    timed!(SYS_read, Read),
    timed!(SYS_write, Write),
    timed!(SYS_open, Open, legacy),
    timed!(SYS_ioctl, Ioctl),
    timed!(SYS_pread64, Read),
    timed!(SYS_pwrite64, Write),
    timed!(SYS_readv, Read),
    timed!(SYS_writev, Write),
    timed!(SYS_sched_yield, SchedYield),
    timed!(SYS_sendmsg, Sendmsg),
    timed!(SYS_recvmsg, Recvmsg),
    timed!(SYS_clone, Clone),
    timed!(SYS_fork, Fork, legacy),
    timed!(SYS_vfork, Vfork, legacy),
    timed!(SYS_fsync, Fsync),
    timed!(SYS_fdatasync, Fsync),
    timed!(SYS_creat, Open, legacy),
    timed!(SYS_mount, Mount),
    timed!(SYS_umount2, Umount),
    timed!(SYS_futex, Futex),
    timed!(SYS_epoll_wait, EpollWait, legacy),
    timed!(SYS_openat, Open),
    timed!(SYS_epoll_pwait, EpollPwait),
    timed!(SYS_preadv, Read),
    timed!(SYS_pwritev, Write),
    timed!(SYS_preadv2, Read),
    timed!(SYS_pwritev2, Write),
    timed!(SYS_clone3, Clone),
    timed!(SYS_openat2, Open),
    timed!(SYS_epoll_pwait2, EpollPwait),
];

/// Syscalls whose return value is not an error code.
const NOFAIL_SYSCALLS: &[libc::c_long] = &[libc::SYS_rt_sigreturn];

// Every number indexes the BPF class table.
const _: () = {
    let mut i = 0;
    while i < SYSCALLS.len() {
        if let Some(nr) = SYSCALLS[i].nr {
            assert!(nr >= 0 && (nr as usize) < TABLE_SIZE);
        }
        i += 1;
    }
    let mut i = 0;
    while i < NOFAIL_SYSCALLS.len() {
        assert!(NOFAIL_SYSCALLS[i] >= 0 && (NOFAIL_SYSCALLS[i] as usize) < TABLE_SIZE);
        i += 1;
    }
};

/// The class of syscall `nr` on this architecture, if it is timed at all.
#[cfg(test)]
fn class_of(nr: libc::c_long) -> Option<Class> {
    SYSCALLS.iter().find(|s| s.nr == Some(nr)).map(|s| s.class)
}

/// The timed syscalls of the enabled `groups` that this architecture does not have.
pub fn absent(groups: &[Group]) -> Vec<&'static str> {
    SYSCALLS
        .iter()
        .filter(|s| s.nr.is_none() && groups.iter().any(|g| s.class.in_group(*g)))
        .map(|s| s.name.trim_start_matches("SYS_"))
        .collect()
}

/// The BPF class table for the enabled `groups`. The first time a group would time a syscall
/// this architecture lacks, one log line names them: they are skipped, not an error.
pub fn class_table(groups: &[Group]) -> [u8; TABLE_SIZE] {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let absent = absent(groups);
    if !absent.is_empty() && !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        gala_ebpf::log(
            gala_probe_sdk::Level::Info,
            crate::probe::NAME,
            &format!(
                "not timed, {} has no such syscalls: {}",
                std::env::consts::ARCH,
                absent.join(", ")
            ),
        );
    }
    let mut table = [0u8; TABLE_SIZE];
    for s in SYSCALLS {
        if let Some(nr) = s.nr {
            if groups.iter().any(|g| s.class.in_group(*g)) {
                table[nr as usize] = s.class as u8;
            }
        }
    }
    for &nr in NOFAIL_SYSCALLS {
        table[nr as usize] |= NOFAIL;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Group] = &[
        Group::Syscall,
        Group::Io,
        Group::Fs,
        Group::Net,
        Group::Ioctl,
    ];

    #[test]
    fn numbers_match_the_libc_constants() {
        let expect = [
            (libc::SYS_read, Class::Read),
            (libc::SYS_write, Class::Write),
            (libc::SYS_pread64, Class::Read),
            (libc::SYS_pwritev2, Class::Write),
            (libc::SYS_fsync, Class::Fsync),
            (libc::SYS_fdatasync, Class::Fsync),
            (libc::SYS_mount, Class::Mount),
            (libc::SYS_umount2, Class::Umount),
            (libc::SYS_sendmsg, Class::Sendmsg),
            (libc::SYS_recvmsg, Class::Recvmsg),
            (libc::SYS_sched_yield, Class::SchedYield),
            (libc::SYS_futex, Class::Futex),
            (libc::SYS_epoll_pwait, Class::EpollPwait),
            (libc::SYS_epoll_pwait2, Class::EpollPwait),
            (libc::SYS_clone, Class::Clone),
            (libc::SYS_clone3, Class::Clone),
            (libc::SYS_ioctl, Class::Ioctl),
            (libc::SYS_openat, Class::Open),
            (libc::SYS_openat2, Class::Open),
        ];
        for (nr, class) in expect {
            assert_eq!(class_of(nr), Some(class), "syscall {nr}");
        }
        assert_eq!(class_of(libc::SYS_close), None);
        assert_eq!(class_of(libc::SYS_getppid), None);
        assert_eq!(NOFAIL_SYSCALLS, &[libc::SYS_rt_sigreturn]);
        assert!(SYSCALLS.iter().all(|s| (s.class as usize) < SLOTS));
        // No number twice (two names for one call would hide a wrong constant).
        let mut nrs: Vec<_> = SYSCALLS.iter().filter_map(|s| s.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(
            nrs.len(),
            SYSCALLS.iter().filter(|s| s.nr.is_some()).count()
        );
    }

    #[test]
    fn the_table_holds_only_the_enabled_groups() {
        let t = class_table(&[Group::Syscall]);
        assert_eq!(t[libc::SYS_futex as usize], Class::Futex as u8);
        assert_eq!(t[libc::SYS_read as usize], 0);
        assert_eq!(t[libc::SYS_rt_sigreturn as usize], NOFAIL);

        let t = class_table(&[Group::Fs]);
        assert_eq!(t[libc::SYS_openat as usize], Class::Open as u8);
        assert_eq!(t[libc::SYS_read as usize], Class::Read as u8);
        assert_eq!(t[libc::SYS_mount as usize], 0);

        let t = class_table(&[Group::Io]);
        assert_eq!(t[libc::SYS_openat as usize], 0, "open is proc_fs only");
        assert_eq!(t[libc::SYS_mount as usize], Class::Mount as u8);

        let t = class_table(&[Group::Net, Group::Ioctl]);
        assert_eq!(t[libc::SYS_recvmsg as usize], Class::Recvmsg as u8);
        assert_eq!(t[libc::SYS_ioctl as usize], Class::Ioctl as u8);
        assert_eq!(t[libc::SYS_write as usize], 0);
        assert_eq!(
            class_table(&[]).iter().filter(|v| **v != 0).count(),
            NOFAIL_SYSCALLS.len()
        );
        let timed = SYSCALLS.iter().filter(|s| s.nr.is_some()).count();
        let t = class_table(ALL);
        assert_eq!(
            t.iter().filter(|v| **v & !NOFAIL != 0).count(),
            timed,
            "every syscall the architecture has is in the table"
        );
    }

    /// The kernel's x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl), so a wrong
    /// `libc` constant or a mix-up of architectures shows.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn x86_64_has_every_timed_syscall_under_its_own_number() {
        assert_eq!(absent(ALL), Vec::<&str>::new());
        let expect = [
            (0, Class::Read),
            (1, Class::Write),
            (2, Class::Open),
            (16, Class::Ioctl),
            (24, Class::SchedYield),
            (46, Class::Sendmsg),
            (47, Class::Recvmsg),
            (56, Class::Clone),
            (57, Class::Fork),
            (58, Class::Vfork),
            (74, Class::Fsync),
            (85, Class::Open),
            (165, Class::Mount),
            (166, Class::Umount),
            (202, Class::Futex),
            (232, Class::EpollWait),
            (257, Class::Open),
            (281, Class::EpollPwait),
            (435, Class::Clone),
            (437, Class::Open),
            (441, Class::EpollPwait),
        ];
        for (nr, class) in expect {
            assert_eq!(class_of(nr), Some(class), "syscall {nr}");
        }
        assert_eq!(NOFAIL_SYSCALLS, &[15]);
        let t = class_table(&[Group::Syscall]);
        assert_eq!(t[libc::SYS_epoll_wait as usize], Class::EpollWait as u8);
        assert_eq!(t[libc::SYS_fork as usize], Class::Fork as u8);
    }

    /// The kernel's generic numbers (include/uapi/asm-generic/unistd.h) that arm64 uses; the
    /// old calls are absent and skipped, and the table never holds x86_64 numbers.
    #[test]
    #[cfg(target_arch = "aarch64")]
    fn aarch64_times_the_generic_syscalls_and_skips_the_legacy_ones() {
        assert_eq!(
            absent(ALL),
            ["open", "fork", "vfork", "creat", "epoll_wait"]
        );
        assert_eq!(absent(&[Group::Io, Group::Net]), Vec::<&str>::new());
        assert_eq!(absent(&[Group::Fs]), ["open", "creat"]);
        let expect = [
            (22, Class::EpollPwait),
            (29, Class::Ioctl),
            (39, Class::Umount),
            (40, Class::Mount),
            (56, Class::Open),
            (63, Class::Read),
            (64, Class::Write),
            (67, Class::Read),
            (68, Class::Write),
            (82, Class::Fsync),
            (83, Class::Fsync),
            (98, Class::Futex),
            (124, Class::SchedYield),
            (211, Class::Sendmsg),
            (212, Class::Recvmsg),
            (220, Class::Clone),
            (435, Class::Clone),
            (437, Class::Open),
            (441, Class::EpollPwait),
        ];
        for (nr, class) in expect {
            assert_eq!(class_of(nr), Some(class), "syscall {nr}");
        }
        assert_eq!(NOFAIL_SYSCALLS, &[139]);
        // x86_64's read (0) and openat (257) are no timed syscalls here.
        assert_eq!(class_of(0), None);
        assert_eq!(class_of(257), None);
    }
}
