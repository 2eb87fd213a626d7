/* taskprobe: per-process kernel-side behaviour of the snooped processes.
 *
 * Every hook starts with `gala_snooped(tgid)` and aggregates into one `proc_stats` record per
 * tgid (map `proc_stats`), which user space reads and deletes once per report period. What
 * is counted depends on the sub-items user space enabled before load (`enabled`, and the
 * syscall class table `syscall_class`, both read-only after load). DNS calls (libc uprobes)
 * go one by one through the `dns_events` ring buffer.
 *
 * Hooks: tp_btf/sys_enter + tp_btf/sys_exit (syscall failures and per-class latency maxima,
 * file-system latency by the super-block magic of the file behind the fd), tp_btf/sched_switch
 * (off-CPU and iowait time), tp_btf/block_bio_queue + block_bio_complete (bio sizes, latency,
 * errors), tp_btf/sched_process_hang, the vmscan/filemap/writeback/block tracepoints (page
 * cache), uprobes on getaddrinfo/gethostbyname/gethostbyname2, and CPython's USDT probes
 * python:gc__start / gc__done (garbage collections).
 *
 * One object for every kernel from 5.10 on: the per-thread state of the syscall and
 * context-switch programs comes in two forms (task-local storage, 5.11+, or hash maps keyed
 * by thread id), each program using one; older tracepoints (writeback_dirty_page) and
 * functions (mark_page_accessed, by fentry or kprobe) have programs of their own; arguments
 * and fields that changed between kernels are read through CO-RE checks. User space picks
 * the programs (src/probe.rs, SUBITEMS) and leaves the maps only unchosen programs use
 * uncreated. */
#include "gala.bpf.h"
#include "gala_kernel.bpf.h"
#include <bpf/usdt.bpf.h>

/* Enums rather than #defines so that they reach the object's BTF: user space takes them
 * from the skeleton (`types::sub_bit`, `types::syscall_class` ...), as it takes the
 * structs. */

/* Sub-item bits of `enabled`. */
enum sub_bit {
    SUB_SYSCALL = 1 << 0,
    SUB_FS = 1 << 1,
    SUB_IO = 1 << 2,
    SUB_OFFCPU = 1 << 3,
    SUB_PAGE = 1 << 4,
};

/* Syscall classes: the value of `syscall_class[nr]` (with the flags below) and the slot in
 * `proc_stats.ns[]`. User space (`syscalls.rs`, `Class`) fills the table. */
enum syscall_class {
    CLS_NONE = 0,
    CLS_MOUNT = 1,
    CLS_UMOUNT = 2,
    CLS_READ = 3,
    CLS_WRITE = 4,
    CLS_FSYNC = 5,
    CLS_SENDMSG = 6,
    CLS_RECVMSG = 7,
    CLS_SCHED_YIELD = 8,
    CLS_FUTEX = 9,
    CLS_EPOLL_WAIT = 10,
    CLS_EPOLL_PWAIT = 11,
    CLS_FORK = 12,
    CLS_VFORK = 13,
    CLS_CLONE = 14,
    CLS_IOCTL = 15,
    CLS_OPEN = 16,
    CLS_SLOTS = 17,
};

/* Flags of a `syscall_class[nr]` entry. */
enum syscall_class_flag {
    CLS_MASK = 0x1f,
    /* The syscall's return value is not an error code (rt_sigreturn): never a failure. */
    CLS_NOFAIL = 0x80,
};

#define SYSCALL_SLOTS 512
#define MAX_ERRNO 4095

/* File systems of proc_fs (the row of `proc_stats.fs_ns`) and their operations (the
 * column). */
enum fs_kind {
    FS_NONE = 0,
    FS_EXT4 = 1,
    FS_OVERLAY = 2,
    FS_TMPFS = 3,
};

enum fs_op {
    FS_OP_READ = 0,
    FS_OP_WRITE = 1,
    FS_OP_OPEN = 2,
    FS_OP_FLUSH = 3,
};

#define EXT4_SUPER_MAGIC 0xEF53
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define TMPFS_MAGIC 0x01021994

#define REQ_OP_MASK_ 0xff
#define REQ_OP_READ_ 0
#define REQ_OP_WRITE_ 1
#define BIG_BIO_SIZE 4096

#define DOMAIN_LEN 256
#define MAX_PROCS 10240
#define MAX_THREADS 65536

const volatile __u32 enabled = 0;
const volatile __u8 syscall_class[SYSCALL_SLOTS] = {};

/* One process's figures for the current period (user space: the skeleton's
 * `types::proc_stats`, `stats.rs`). */
struct proc_stats {
    __u64 syscall_failed;
    __s64 last_failed_nr;
    __s64 last_failed_ret;
    __u64 ns[CLS_SLOTS];     /* max latency per syscall class, ns */
    __u64 fs_ns[4][4];       /* [fs kind][op] max latency, ns; row 0 unused */
    __u64 ioctl_cmd;         /* cmd and fd of the slowest ioctl */
    __s64 ioctl_fd;
    __u64 reclaim_ns;
    __u64 access_pagecache;
    __u64 mark_buffer_dirty;
    __u64 load_page_cache;
    __u64 mark_page_dirty;
    __u64 less_4k_io_read;
    __u64 less_4k_io_write;
    __u64 greater_4k_io_read;
    __u64 greater_4k_io_write;
    __u64 bio_latency;       /* max, ns */
    __u64 bio_err_count;
    __u64 hang_count;
    __u64 iowait_ns;
    __u64 offcpu_ns;
    __u64 python_gc;         /* CPython collections ended in the period */
    __u64 gc_ns_sum;
    __u64 gc_ns_max;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_PROCS);
    __type(key, __u32);
    __type(value, struct proc_stats);
} proc_stats SEC(".maps");

/* A syscall in progress on a thread (only for timed classes). */
struct syscall_start {
    __u64 ts;
    __s64 nr;
    __s64 fd;
    __u64 arg1;
    __u8 cls;
    __u8 fs;
};

/* Per-thread state of the two hot paths, in one of two forms. Task-local storage (5.11+):
 * no hash lookup on the syscall path, freed with the task. Hash maps keyed by thread id
 * (5.10): an entry stays while its thread lives (`ts` 0 = nothing in progress) and is
 * deleted when the thread exits (sched_process_exit for syscalls, the thread's last switch
 * out for off-CPU). A program uses one form only (a compile-time argument of the inline
 * functions below), so the maps of the other form are not referenced and user space does
 * not create them. */
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct syscall_start);
} syscall_start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, struct syscall_start);
} syscall_start_h SEC(".maps");

struct offcpu_start {
    __u64 ts;
    __u32 iowait;
    __u32 tgid;
};

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct offcpu_start);
} offcpu_start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, struct offcpu_start);
} offcpu_start_h SEC(".maps");

struct bio_start {
    __u64 ts;
    __u32 tgid;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u64);
    __type(value, struct bio_start);
} bio_start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, __u64);
} reclaim_start SEC(".maps");

/* A DNS lookup in progress on a thread. */
struct dns_start {
    __u64 ts;
    char domain[DOMAIN_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct dns_start);
} dns_start SEC(".maps");

/* One finished DNS lookup (user space: the skeleton's `types::dns_event`, `dns.rs`). */
struct dns_event {
    __u32 tgid;
    __u32 error;
    __u64 duration_ns;
    char domain[DOMAIN_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} dns_events SEC(".maps");

/* Never read by the programs: keeps the ring buffer record and the enums above in the
 * object's BTF (by value: a pointer would keep only a forward declaration), where the
 * skeleton's `types` module takes them from. Read-only data, as the
 * object has no writable globals. */
struct taskprobe_user_types {
    struct dns_event dns;
    enum sub_bit sub;
    enum syscall_class cls;
    enum syscall_class_flag cls_flag;
    enum fs_kind fs;
    enum fs_op fs_op;
};
const volatile struct taskprobe_user_types gala_user_types = {};

/* A zero record to insert (too large for the BPF stack). */
static const struct proc_stats zero_stats = {};
static const struct dns_start zero_dns = {};

static __always_inline struct proc_stats *stats_of(__u32 tgid)
{
    struct proc_stats *st = bpf_map_lookup_elem(&proc_stats, &tgid);
    if (st)
        return st;
    bpf_map_update_elem(&proc_stats, &tgid, &zero_stats, BPF_NOEXIST);
    return bpf_map_lookup_elem(&proc_stats, &tgid);
}

/* Racy but cheap: two threads finishing in the same instant may keep the smaller value. */
static __always_inline void store_max(__u64 *slot, __u64 v)
{
    if (v > *slot)
        *slot = v;
}

static __always_inline __u8 class_of(long nr)
{
    if (nr < 0 || nr >= SYSCALL_SLOTS)
        return CLS_NONE;
    return syscall_class[nr & (SYSCALL_SLOTS - 1)];
}

static __always_inline long syscall_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
    /* A typed tracepoint argument: a direct load, no helper call. */
    return regs->orig_ax;
#elif defined(__TARGET_ARCH_arm64)
    return regs->syscallno;
#else
    return -1;
#endif
}

/* The file behind `fd` of the current task, or NULL. */
static __always_inline struct file *fd_file(long fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    if (!fdt || fd < 0)
        return NULL;
    unsigned int max = BPF_CORE_READ(fdt, max_fds);
    if ((unsigned long)fd >= max)
        return NULL;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *file = NULL;
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    return file;
}

static __always_inline __u8 fs_of_fd(long fd)
{
    struct file *file = fd_file(fd);
    if (!file)
        return FS_NONE;
    unsigned long magic = BPF_CORE_READ(file, f_inode, i_sb, s_magic);
    switch (magic) {
    case EXT4_SUPER_MAGIC:
        return FS_EXT4;
    case OVERLAYFS_SUPER_MAGIC:
        return FS_OVERLAY;
    case TMPFS_MAGIC:
        return FS_TMPFS;
    default:
        return FS_NONE;
    }
}

static __always_inline int fs_op_of(__u8 cls)
{
    switch (cls) {
    case CLS_READ:
        return FS_OP_READ;
    case CLS_WRITE:
        return FS_OP_WRITE;
    case CLS_OPEN:
        return FS_OP_OPEN;
    case CLS_FSYNC:
        return FS_OP_FLUSH;
    default:
        return -1;
    }
}

/* The current thread's syscall record in the form `ts` (task storage) or not (hash), made
 * when `create`; NULL when there is none (or no room). */
static __always_inline struct syscall_start *syscall_start_of(bool ts, bool create, __u32 tid)
{
    if (ts)
        return bpf_task_storage_get(&syscall_start, bpf_get_current_task_btf(), 0,
                                    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
    struct syscall_start *s = bpf_map_lookup_elem(&syscall_start_h, &tid);
    if (s || !create)
        return s;
    struct syscall_start zero = {};
    bpf_map_update_elem(&syscall_start_h, &tid, &zero, BPF_NOEXIST);
    return bpf_map_lookup_elem(&syscall_start_h, &tid);
}

/* Both syscall programs run for every syscall on the host, so each first rules out what it
 * has nothing to do for with a read of the class table, before the scope check (a hash
 * lookup): an untimed syscall that succeeds costs no lookup, snooped or not. */
static __always_inline int sys_enter(struct pt_regs *regs, long id, bool ts)
{
    __u8 cls = class_of(id) & CLS_MASK;
    if (cls == CLS_NONE)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!gala_snooped(pid_tgid >> 32))
        return 0;
    struct syscall_start *start = syscall_start_of(ts, true, (__u32)pid_tgid);
    if (!start)
        return 0;
    start->nr = id;
    start->fd = (long)PT_REGS_PARM1_CORE_SYSCALL(regs);
    start->cls = cls;
    start->arg1 = cls == CLS_IOCTL ? PT_REGS_PARM2_CORE_SYSCALL(regs) : 0;
    start->fs = FS_NONE;
    if ((enabled & SUB_FS) && cls != CLS_OPEN && fs_op_of(cls) >= 0)
        start->fs = fs_of_fd(start->fd);
    start->ts = bpf_ktime_get_ns();
    return 0;
}

/* A timed call has a start record only if sys_enter found its process in scope, so its end
 * needs no scope check: a lookup of the thread's record (none: nothing to do) stands for
 * it. */
static __always_inline int sys_exit(struct pt_regs *regs, long ret, bool ts)
{
    long nr = syscall_nr(regs);
    __u8 raw = class_of(nr);
    __u8 cls = raw & CLS_MASK;
    bool failed =
        (enabled & SUB_SYSCALL) && ret < 0 && ret >= -MAX_ERRNO && !(raw & CLS_NOFAIL);
    if (!failed && cls == CLS_NONE)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    struct proc_stats *st = NULL;
    if (failed && gala_snooped(tgid)) {
        st = stats_of(tgid);
        if (st) {
            __sync_fetch_and_add(&st->syscall_failed, 1);
            st->last_failed_nr = nr;
            st->last_failed_ret = ret;
        }
    }
    if (cls == CLS_NONE)
        return 0;
    struct syscall_start *start = syscall_start_of(ts, false, (__u32)pid_tgid);
    if (!start || start->ts == 0)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    __u64 ts0 = start->ts;
    long start_nr = start->nr;
    long fd = start->fd;
    __u64 arg1 = start->arg1;
    __u8 fs = start->fs;
    start->ts = 0;
    if (start_nr != nr || now < ts0)
        return 0;
    __u64 dur = now - ts0;
    if (!st)
        st = stats_of(tgid);
    if (!st)
        return 0;
    if (cls < CLS_SLOTS)
        store_max(&st->ns[cls], dur);
    if (cls == CLS_IOCTL && dur >= st->ns[CLS_IOCTL]) {
        st->ioctl_cmd = arg1;
        st->ioctl_fd = fd;
    }
    if (enabled & SUB_FS) {
        if (cls == CLS_OPEN && ret >= 0)
            fs = fs_of_fd(ret);
        int op = fs_op_of(cls);
        /* The masks are for the verifier (clang drops the range checks otherwise). */
        if (fs != FS_NONE && op >= 0)
            store_max(&st->fs_ns[fs & 3][op & 3], dur);
    }
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(taskprobe_sys_enter, struct pt_regs *regs, long id)
{
    return sys_enter(regs, id, true);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(taskprobe_sys_exit, struct pt_regs *regs, long ret)
{
    return sys_exit(regs, ret, true);
}

/* The same on kernels without task storage (5.10). */
SEC("tp_btf/sys_enter")
int BPF_PROG(taskprobe_sys_enter_hash, struct pt_regs *regs, long id)
{
    return sys_enter(regs, id, false);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(taskprobe_sys_exit_hash, struct pt_regs *regs, long ret)
{
    return sys_exit(regs, ret, false);
}

/* A thread that dies inside a timed syscall (killed in a futex wait, say) never reaches
 * sys_exit: its hash entry goes here. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(taskprobe_thread_exit_hash, struct task_struct *task)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&syscall_start_h, &tid);
    return 0;
}

/* The off-CPU record of `task` in the form `ts` (task storage) or not (hash), made when
 * `create`. */
static __always_inline struct offcpu_start *offcpu_start_of(struct task_struct *task, bool ts,
                                                            bool create)
{
    if (ts)
        return bpf_task_storage_get(&offcpu_start, task, 0,
                                    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
    __u32 tid = task->pid;
    struct offcpu_start *s = bpf_map_lookup_elem(&offcpu_start_h, &tid);
    if (s || !create)
        return s;
    struct offcpu_start zero = {};
    bpf_map_update_elem(&offcpu_start_h, &tid, &zero, BPF_NOEXIST);
    return bpf_map_lookup_elem(&offcpu_start_h, &tid);
}

/* `prev_state` (5.18+) is not declared: the program reads the first three arguments only,
 * which every kernel has. */
static __always_inline int sched_switch(struct task_struct *prev, struct task_struct *next,
                                        bool ts)
{
    __u64 now = bpf_ktime_get_ns();
    __u32 prev_tgid = prev->tgid;
    if (!ts && prev->exit_state) {
        /* Its last switch out: a dead thread's hash entry would never be read again. */
        __u32 tid = prev->pid;
        bpf_map_delete_elem(&offcpu_start_h, &tid);
    } else if (gala_snooped(prev_tgid)) {
        struct offcpu_start *s = offcpu_start_of(prev, ts, true);
        if (s) {
            s->ts = now;
            s->iowait = BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait);
            s->tgid = prev_tgid;
        }
    }
    struct offcpu_start *s = offcpu_start_of(next, ts, false);
    if (!s || s->ts == 0)
        return 0;
    __u64 ts0 = s->ts;
    __u32 iowait = s->iowait;
    __u32 tgid = s->tgid;
    s->ts = 0;
    if (now < ts0)
        return 0;
    struct proc_stats *st = stats_of(tgid);
    if (!st)
        return 0;
    __sync_fetch_and_add(&st->offcpu_ns, now - ts0);
    if (iowait)
        __sync_fetch_and_add(&st->iowait_ns, now - ts0);
    return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(taskprobe_sched_switch, bool preempt, struct task_struct *prev,
             struct task_struct *next)
{
    return sched_switch(prev, next, true);
}

/* The same on kernels without task storage (5.10). */
SEC("tp_btf/sched_switch")
int BPF_PROG(taskprobe_sched_switch_hash, bool preempt, struct task_struct *prev,
             struct task_struct *next)
{
    return sched_switch(prev, next, false);
}

SEC("tp_btf/block_bio_queue")
int taskprobe_bio_queue(unsigned long long *ctx)
{
    struct bio *bio = bio_queue_arg(ctx);
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return 0;
    __u32 op = BPF_CORE_READ(bio, bi_opf) & REQ_OP_MASK_;
    if (op != REQ_OP_READ_ && op != REQ_OP_WRITE_)
        return 0;
    __u32 size = BPF_CORE_READ(bio, bi_iter.bi_size);
    struct proc_stats *st = stats_of(tgid);
    if (!st)
        return 0;
    if (op == REQ_OP_READ_) {
        if (size > BIG_BIO_SIZE)
            __sync_fetch_and_add(&st->greater_4k_io_read, 1);
        else
            __sync_fetch_and_add(&st->less_4k_io_read, 1);
    } else {
        if (size > BIG_BIO_SIZE)
            __sync_fetch_and_add(&st->greater_4k_io_write, 1);
        else
            __sync_fetch_and_add(&st->less_4k_io_write, 1);
    }
    __u64 key = (__u64)bio;
    struct bio_start b = { .ts = bpf_ktime_get_ns(), .tgid = tgid };
    bpf_map_update_elem(&bio_start, &key, &b, BPF_ANY);
    return 0;
}

/* Accounts the completion of a bio queued by a snooped process. */
static __always_inline void bio_done(struct bio *bio, bool error, __u64 now)
{
    __u64 key = (__u64)bio;
    struct bio_start *b = bpf_map_lookup_elem(&bio_start, &key);
    if (!b)
        return;
    __u64 ts = b->ts;
    __u32 tgid = b->tgid;
    bpf_map_delete_elem(&bio_start, &key);
    struct proc_stats *st = stats_of(tgid);
    if (!st)
        return;
    if (error)
        __sync_fetch_and_add(&st->bio_err_count, 1);
    else if (now > ts)
        store_max(&st->bio_latency, now - ts);
}

/* Bio-based drivers (device mapper, md): the bio itself completes. */
SEC("tp_btf/block_bio_complete")
int BPF_PROG(taskprobe_bio_complete, struct request_queue *q, struct bio *bio)
{
    bio_done(bio, BPF_CORE_READ(bio, bi_status) != 0, bpf_ktime_get_ns());
    return 0;
}

#define RQ_MAX_BIOS 16

/* blk-mq drivers: the request completes with its (merged) bios; the first 16 are looked at.
 * `error` is a blk_status_t (6.1), a negative errno on older kernels (5.10): an int reads both. */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(taskprobe_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
    __u64 now = bpf_ktime_get_ns();
    struct bio *bio = BPF_CORE_READ(rq, bio);
    for (int i = 0; i < RQ_MAX_BIOS && bio; i++) {
        bio_done(bio, error != 0, now);
        bio = BPF_CORE_READ(bio, bi_next);
    }
    return 0;
}

SEC("tp_btf/sched_process_hang")
int BPF_PROG(taskprobe_hang, struct task_struct *task)
{
    __u32 tgid = BPF_CORE_READ(task, tgid);
    if (!gala_snooped(tgid))
        return 0;
    struct proc_stats *st = stats_of(tgid);
    if (st)
        __sync_fetch_and_add(&st->hang_count, 1);
    return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(taskprobe_reclaim_begin, int order, gfp_t gfp_flags)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!gala_snooped(pid_tgid >> 32))
        return 0;
    __u32 tid = (__u32)pid_tgid;
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&reclaim_start, &tid, &now, BPF_ANY);
    return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int BPF_PROG(taskprobe_reclaim_end, unsigned long nr_reclaimed)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    __u64 *start = bpf_map_lookup_elem(&reclaim_start, &tid);
    if (!start)
        return 0;
    __u64 ts = *start;
    bpf_map_delete_elem(&reclaim_start, &tid);
    __u64 now = bpf_ktime_get_ns();
    struct proc_stats *st = stats_of(pid_tgid >> 32);
    if (st && now > ts)
        __sync_fetch_and_add(&st->reclaim_ns, now - ts);
    return 0;
}

static __always_inline struct proc_stats *current_stats(void)
{
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return NULL;
    return stats_of(tgid);
}

SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(taskprobe_filemap_get_pages, struct address_space *mapping, unsigned long index,
             unsigned long last_index)
{
    struct proc_stats *st = current_stats();
    if (st && last_index >= index)
        __sync_fetch_and_add(&st->access_pagecache, last_index - index + 1);
    return 0;
}

SEC("tp_btf/mm_filemap_fault")
int BPF_PROG(taskprobe_filemap_fault, struct address_space *mapping, unsigned long index)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->access_pagecache, 1);
    return 0;
}

/* Kernels without the two tracepoints above (5.10 and 6.1 have neither): every page marked
 * accessed (the original's count), by fentry where it loads, else by kprobe;
 * folio_mark_accessed since 5.16, mark_page_accessed (a wrapper of it since) before. */
static __always_inline int mark_accessed(void)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->access_pagecache, 1);
    return 0;
}

SEC("fentry/folio_mark_accessed")
int BPF_PROG(taskprobe_folio_accessed, struct folio *folio)
{
    return mark_accessed();
}

SEC("fentry/mark_page_accessed")
int BPF_PROG(taskprobe_page_accessed, struct page *page)
{
    return mark_accessed();
}

SEC("kprobe/folio_mark_accessed")
int BPF_KPROBE(taskprobe_folio_accessed_kp)
{
    return mark_accessed();
}

SEC("kprobe/mark_page_accessed")
int BPF_KPROBE(taskprobe_page_accessed_kp)
{
    return mark_accessed();
}

SEC("tp_btf/block_dirty_buffer")
int BPF_PROG(taskprobe_dirty_buffer, struct buffer_head *bh)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->mark_buffer_dirty, 1);
    return 0;
}

SEC("tp_btf/mm_filemap_add_to_page_cache")
int BPF_PROG(taskprobe_add_to_page_cache, struct folio *folio)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->load_page_cache, folio_pages(folio));
    return 0;
}

SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(taskprobe_dirty_folio, struct folio *folio, struct address_space *mapping)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->mark_page_dirty, folio_pages(folio));
    return 0;
}

/* Kernels before folios (5.10): the same accounting, per page. */
SEC("tp_btf/writeback_dirty_page")
int BPF_PROG(taskprobe_dirty_page, struct page *page, struct address_space *mapping)
{
    struct proc_stats *st = current_stats();
    if (st)
        __sync_fetch_and_add(&st->mark_page_dirty, 1);
    return 0;
}

/* DNS: the name is read at entry, the outcome at return. */
static __always_inline int dns_enter(const char *name)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!gala_snooped(pid_tgid >> 32) || !name)
        return 0;
    __u32 tid = (__u32)pid_tgid;
    /* A nested call (a resolver calling another) keeps the outer one. */
    if (bpf_map_update_elem(&dns_start, &tid, &zero_dns, BPF_NOEXIST) != 0)
        return 0;
    struct dns_start *s = bpf_map_lookup_elem(&dns_start, &tid);
    if (!s)
        return 0;
    if (bpf_probe_read_user_str(s->domain, sizeof(s->domain), name) <= 1) {
        bpf_map_delete_elem(&dns_start, &tid);
        return 0;
    }
    s->ts = bpf_ktime_get_ns();
    return 0;
}

static __always_inline int dns_exit(bool error)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    struct dns_start *s = bpf_map_lookup_elem(&dns_start, &tid);
    if (!s)
        return 0;
    struct dns_event *e = bpf_ringbuf_reserve(&dns_events, sizeof(*e), 0);
    if (e) {
        __u64 now = bpf_ktime_get_ns();
        e->tgid = pid_tgid >> 32;
        e->error = error;
        e->duration_ns = now > s->ts ? now - s->ts : 0;
        __builtin_memcpy(e->domain, s->domain, DOMAIN_LEN);
        bpf_ringbuf_submit(e, 0);
    }
    bpf_map_delete_elem(&dns_start, &tid);
    return 0;
}

SEC("uprobe")
int BPF_UPROBE(taskprobe_getaddrinfo, const char *node)
{
    return dns_enter(node);
}

SEC("uretprobe")
int BPF_URETPROBE(taskprobe_getaddrinfo_ret, int ret)
{
    return dns_exit(ret != 0);
}

SEC("uprobe")
int BPF_UPROBE(taskprobe_gethostbyname, const char *name)
{
    return dns_enter(name);
}

SEC("uretprobe")
int BPF_URETPROBE(taskprobe_gethostbyname_ret, void *ret)
{
    return dns_exit(ret == NULL);
}

/* CPython's garbage collector: gc__start / gc__done bracket one collection on one thread
 * (collections do not nest). Keyed by thread id. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, __u64);
} gc_start SEC(".maps");

SEC("usdt")
int BPF_USDT(taskprobe_gc_start)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!gala_snooped(pid_tgid >> 32))
        return 0;
    __u32 tid = (__u32)pid_tgid;
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&gc_start, &tid, &now, BPF_ANY);
    return 0;
}

SEC("usdt")
int BPF_USDT(taskprobe_gc_done)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    __u64 *start = bpf_map_lookup_elem(&gc_start, &tid);
    if (!start)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    __u64 d = now > *start ? now - *start : 0;
    bpf_map_delete_elem(&gc_start, &tid);
    struct proc_stats *st = stats_of(pid_tgid >> 32);
    if (!st)
        return 0;
    __sync_fetch_and_add(&st->python_gc, 1);
    __sync_fetch_and_add(&st->gc_ns_sum, d);
    store_max(&st->gc_ns_max, d);
    return 0;
}
