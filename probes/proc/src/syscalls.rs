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

/// x86_64 syscall numbers of every timed syscall.
#[cfg(target_arch = "x86_64")]
const SYSCALLS: &[(u16, Class)] = &[
    (0, Class::Read),
    (1, Class::Write),
    (2, Class::Open),
    (16, Class::Ioctl),
    (17, Class::Read),  // pread64
    (18, Class::Write), // pwrite64
    (19, Class::Read),  // readv
    (20, Class::Write), // writev
    (24, Class::SchedYield),
    (46, Class::Sendmsg),
    (47, Class::Recvmsg),
    (56, Class::Clone),
    (57, Class::Fork),
    (58, Class::Vfork),
    (74, Class::Fsync),
    (75, Class::Fsync), // fdatasync
    (85, Class::Open),  // creat
    (165, Class::Mount),
    (166, Class::Umount), // umount2
    (202, Class::Futex),
    (232, Class::EpollWait),
    (257, Class::Open), // openat
    (281, Class::EpollPwait),
    (295, Class::Read),       // preadv
    (296, Class::Write),      // pwritev
    (327, Class::Read),       // preadv2
    (328, Class::Write),      // pwritev2
    (435, Class::Clone),      // clone3
    (437, Class::Open),       // openat2
    (441, Class::EpollPwait), // epoll_pwait2
];

/// x86_64 syscalls whose return value is not an error code.
#[cfg(target_arch = "x86_64")]
const NOFAIL_SYSCALLS: &[u16] = &[15]; // rt_sigreturn

// Other architectures: the BPF side reads the syscall number from x86 registers only, so
// nothing is timed there yet (failures are still counted).
#[cfg(not(target_arch = "x86_64"))]
const SYSCALLS: &[(u16, Class)] = &[];
#[cfg(not(target_arch = "x86_64"))]
const NOFAIL_SYSCALLS: &[u16] = &[];

/// The class of syscall `nr` on this architecture, if it is timed at all.
#[cfg(test)]
pub fn class_of(nr: u16) -> Option<Class> {
    SYSCALLS.iter().find(|(n, _)| *n == nr).map(|(_, c)| *c)
}

/// The BPF class table for the enabled `groups`.
pub fn class_table(groups: &[Group]) -> [u8; TABLE_SIZE] {
    let mut table = [0u8; TABLE_SIZE];
    for &(nr, class) in SYSCALLS {
        if groups.iter().any(|g| class.in_group(*g)) {
            table[usize::from(nr)] = class as u8;
        }
    }
    for &nr in NOFAIL_SYSCALLS {
        table[usize::from(nr)] |= NOFAIL;
    }
    table
}

#[cfg(test)]
#[cfg(target_arch = "x86_64")]
mod tests {
    use super::*;

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
            (libc::SYS_epoll_wait, Class::EpollWait),
            (libc::SYS_epoll_pwait, Class::EpollPwait),
            (libc::SYS_epoll_pwait2, Class::EpollPwait),
            (libc::SYS_fork, Class::Fork),
            (libc::SYS_vfork, Class::Vfork),
            (libc::SYS_clone, Class::Clone),
            (libc::SYS_clone3, Class::Clone),
            (libc::SYS_ioctl, Class::Ioctl),
            (libc::SYS_openat, Class::Open),
            (libc::SYS_openat2, Class::Open),
        ];
        for (nr, class) in expect {
            assert_eq!(class_of(nr as u16), Some(class), "syscall {nr}");
        }
        assert_eq!(class_of(libc::SYS_close as u16), None);
        assert_eq!(class_of(libc::SYS_getppid as u16), None);
        assert_eq!(NOFAIL_SYSCALLS, &[libc::SYS_rt_sigreturn as u16]);
        assert!(SYSCALLS
            .iter()
            .all(|(n, c)| usize::from(*n) < TABLE_SIZE && (*c as usize) < SLOTS));
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
    }
}
