/* ioprobe: block-layer latency per stage, I/O errors, bytes per disk, page-cache activity.
 *
 * Every program is autoload-off unless its sub-item's plan chooses it (see SUBITEMS in
 * src/probe.rs). What the kernel side keeps:
 *  - io_trace:   one entry per sampled request in flight; on completion one `io_lat_rec`
 *                goes to the `io_events` ring buffer with the three stage deltas. A plain
 *                hash: an LRU map evicts entries of requests still in flight before it is
 *                full (its free nodes sit in per-CPU lists), which lost their records
 *                silently. A sampled request that finds no room is counted
 *                (`lost_starts`); user space drops entries of requests that never completed
 *                (merged into another after their start) once they are a minute old.
 *  - io_err:     one `io_err_rec` per failed request on the ring buffer.
 *  - io_count:   per-CPU cumulative read/write bytes per disk (user space takes deltas).
 *  - page_cache: per-CPU cumulative page-cache counters per device number (the file system's
 *                device, or the block device itself for its own page cache); user space maps
 *                partitions to their disk.
 *
 * Disks are keyed by GALA_DEV(major, first_minor) of the gendisk, as the kernel's dev_t
 * encoding (major << 20 | minor). Times are CLOCK_MONOTONIC nanoseconds. */
#include "gala.bpf.h"
#include "gala_kernel.bpf.h"

#define REQ_OP_BITS 8
#define REQ_OP_MASK ((1U << REQ_OP_BITS) - 1)
#define MINORBITS 20
#define GALA_DEV(major, minor) (((__u32)(major) << MINORBITS) | ((__u32)(minor) & ((1U << MINORBITS) - 1)))
#define S_IFMT 00170000
#define S_IFBLK 0060000

/* Record kinds of the `io_events` ring buffer (user space: `types::io_rec_kind`). */
enum io_rec_kind {
    REC_LATENCY = 1,
    REC_ERROR = 2,
};

/* Written by user space: the request sampling interval (sample_period), 0 = every request;
 * whether block_rq_issue starts requests (only when block_io_start is not loaded: otherwise
 * a request not sampled at its start must not get a second chance at issue). */
struct io_cfg {
    __u64 sample_ns;
    __u32 start_at_issue;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct io_cfg);
} io_cfg SEC(".maps");

/* Per disk: when the last sampled request started. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u64);
} io_sample SEC(".maps");

/* One sampled request in flight. */
struct io_trace {
    __u64 start_ns;
    __u64 issue_ns;
    __u32 dev;
    __u32 pid;
    __u32 len;
    __u32 op;
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __type(key, __u64);
    __type(value, struct io_trace);
} io_trace SEC(".maps");

/* A completed sampled request (kind REC_LATENCY). */
struct io_lat_rec {
    __u32 kind;
    __u32 dev;
    __u64 req_ns;
    __u64 driver_ns;
    __u64 device_ns;
    __u32 pid;
    __u32 len;
    __u32 op;
    __u32 pad;
    char comm[16];
};

/* A failed request (kind REC_ERROR). */
struct io_err_rec {
    __u32 kind;
    __u32 dev;
    __s32 status;
    __u32 pid;
    __u32 len;
    __u32 op;
    __u32 submitter;
    __u32 pad;
    __u64 sector;
    char comm[16];
};

/* User space drains it every 200 ms (consume, no epoll): submits need no wakeup. Its size
 * is set from `ringbuf_map_size` before load. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1024 * 1024);
} io_events SEC(".maps");

/* Never touched by the programs: keeps the ring buffer records and their kinds in the
 * object's BTF (by value: a pointer would keep only a forward declaration), where the
 * skeleton's `types` module (src/records.rs) takes them from. */
struct io_user_types {
    struct io_lat_rec latency;
    struct io_err_rec error;
    enum io_rec_kind kind;
};
struct io_user_types gala_user_types;

/* Records that found the ring buffer full, and sampled requests that found `io_trace`
 * full (user space reports the increase each period). */
__u64 lost_latency = 0;
__u64 lost_errors = 0;
__u64 lost_starts = 0;

struct io_bytes {
    __u64 read_bytes;
    __u64 write_bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, struct io_bytes);
} io_count SEC(".maps");

struct page_counts {
    __u64 access_pagecache;
    __u64 mark_buffer_dirty;
    __u64 load_page_cache;
    __u64 mark_page_dirty;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, struct page_counts);
} page_cache SEC(".maps");

/* ---- io_trace ---------------------------------------------------------------------- */

/* Fields of kernels before 5.12 (5.10): the request's and the bio's own disk pointers,
 * where newer kernels go through the queue (request_queue->disk) and the block device
 * (bio->bi_bdev). */
struct request___old {
    struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

struct bio___old {
    struct gendisk *bi_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(struct request *rq)
{
    struct gendisk *disk;
    if (bpf_core_field_exists(((struct request___old *)rq)->rq_disk))
        disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
    else
        disk = BPF_CORE_READ(rq, q, disk);
    if (!disk)
        return 0;
    return GALA_DEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor));
}

/* Whether a new request of `dev` starting at `now` is to be traced: at most one per
 * sample interval per disk. */
static __always_inline bool sample_gate(__u32 dev, __u64 now)
{
    __u32 zero = 0;
    struct io_cfg *cfg = bpf_map_lookup_elem(&io_cfg, &zero);
    __u64 interval = cfg ? cfg->sample_ns : 0;
    if (interval == 0)
        return true;
    __u64 *last = bpf_map_lookup_elem(&io_sample, &dev);
    if (last && (now <= *last || now - *last < interval))
        return false;
    bpf_map_update_elem(&io_sample, &dev, &now, BPF_ANY);
    return true;
}

static __always_inline void trace_start(struct request *rq, __u64 start)
{
    __u64 key = (__u64)rq;
    __u32 dev = rq_dev(rq);
    if (!dev)
        return;
    __u64 now = bpf_ktime_get_ns();
    if (!sample_gate(dev, now))
        return;
    struct io_trace t = {};
    t.start_ns = start ? start : now;
    t.dev = dev;
    t.pid = gala_tgid();
    t.len = BPF_CORE_READ(rq, __data_len);
    t.op = BPF_CORE_READ(rq, cmd_flags);
    bpf_get_current_comm(t.comm, sizeof(t.comm));
    if (bpf_map_update_elem(&io_trace, &key, &t, BPF_ANY) != 0)
        __sync_fetch_and_add(&lost_starts, 1);
}

/* The request leaves the bio → request conversion: the start of the request stage. */
SEC("tp_btf/block_io_start")
int BPF_PROG(io_start, struct request *rq)
{
    trace_start(rq, 0);
    return 0;
}

/* The driver takes the request (queue_rq): end of the driver stage, start of the device
 * stage. Without block_io_start (kernels before 6.5) requests start here, at the request's
 * own start_time_ns when the kernel stamped one. */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(io_issue, struct request *rq)
{
    __u64 key = (__u64)rq;
    struct io_trace *t = bpf_map_lookup_elem(&io_trace, &key);
    if (!t) {
        __u32 zero = 0;
        struct io_cfg *cfg = bpf_map_lookup_elem(&io_cfg, &zero);
        if (!cfg || !cfg->start_at_issue)
            return 0;
        trace_start(rq, BPF_CORE_READ(rq, start_time_ns));
        t = bpf_map_lookup_elem(&io_trace, &key);
        if (!t)
            return 0;
    }
    /* A requeued request is issued again: the device stage counts from the last issue. */
    t->issue_ns = bpf_ktime_get_ns();
    return 0;
}

/* blk_update_request (or the batched completion): the driver reports `nr_bytes` done.
 * The request is complete when nothing is left (the kernel subtracts after the trace).
 * `error` is a blk_status_t (6.1), a negative errno on older kernels (5.10): an int reads
 * both, and user space names both. */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_complete, struct request *rq, int error, unsigned int nr_bytes)
{
    __u64 key = (__u64)rq;
    struct io_trace *t = bpf_map_lookup_elem(&io_trace, &key);
    if (!t)
        return 0;
    if (nr_bytes < BPF_CORE_READ(rq, __data_len))
        return 0;
    __u64 now = bpf_ktime_get_ns();
    if (error == 0 && t->issue_ns && t->start_ns && t->issue_ns >= t->start_ns && now >= t->issue_ns) {
        struct io_lat_rec *r = bpf_ringbuf_reserve(&io_events, sizeof(*r), 0);
        if (r) {
            r->kind = REC_LATENCY;
            r->dev = t->dev;
            r->req_ns = now - t->start_ns;
            r->driver_ns = t->issue_ns - t->start_ns;
            r->device_ns = now - t->issue_ns;
            r->pid = t->pid;
            r->len = t->len;
            r->op = t->op;
            r->pad = 0;
            __builtin_memcpy(r->comm, t->comm, sizeof(r->comm));
            bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
        } else {
            __sync_fetch_and_add(&lost_latency, 1);
        }
    }
    bpf_map_delete_elem(&io_trace, &key);
    return 0;
}

/* ---- io_err ------------------------------------------------------------------------ */

/* The submitter is known when the request was sampled by io_trace (`submitter` = 1);
 * otherwise the record names the task the completion ran in (an interrupt's victim, a
 * kworker). */
static __always_inline void report_error(struct request *rq, int error, unsigned int nr_bytes)
{
    struct io_err_rec *r = bpf_ringbuf_reserve(&io_events, sizeof(*r), 0);
    if (!r) {
        __sync_fetch_and_add(&lost_errors, 1);
        return;
    }
    __u64 key = (__u64)rq;
    struct io_trace *t = bpf_map_lookup_elem(&io_trace, &key);
    r->kind = REC_ERROR;
    r->dev = rq_dev(rq);
    r->status = error;
    r->len = nr_bytes;
    r->op = BPF_CORE_READ(rq, cmd_flags);
    r->sector = BPF_CORE_READ(rq, __sector);
    if (t) {
        r->submitter = 1;
        r->pid = t->pid;
        __builtin_memcpy(r->comm, t->comm, sizeof(r->comm));
    } else {
        r->submitter = 0;
        r->pid = gala_tgid();
        bpf_get_current_comm(r->comm, sizeof(r->comm));
    }
    bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* A request failed (not for quiet or passthrough requests, as the kernel's error log). */
SEC("tp_btf/block_rq_error")
int BPF_PROG(io_error, struct request *rq, int error, unsigned int nr_bytes)
{
    report_error(rq, error, nr_bytes);
    return 0;
}

/* Fallback for kernels without block_rq_error: any completion with an error. */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_error_complete, struct request *rq, int error, unsigned int nr_bytes)
{
    if (error != 0)
        report_error(rq, error, nr_bytes);
    return 0;
}

/* ---- io_count ---------------------------------------------------------------------- */

/* A bio enters the block layer (submit_bio, once per bio: remapped bios are not counted
 * twice; a stacked device's clone counts on the lower disk too). */
SEC("tp_btf/block_bio_queue")
int io_bio_queue(unsigned long long *ctx)
{
    struct bio *bio = bio_queue_arg(ctx);
    struct gendisk *disk;
    if (bpf_core_field_exists(bio->bi_bdev))
        disk = BPF_CORE_READ(bio, bi_bdev, bd_disk);
    else
        disk = BPF_CORE_READ((struct bio___old *)bio, bi_disk);
    if (!disk)
        return 0;
    __u32 op = BPF_CORE_READ(bio, bi_opf) & REQ_OP_MASK;
    if (op != REQ_OP_READ && op != REQ_OP_WRITE)
        return 0;
    __u32 dev = GALA_DEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor));
    __u64 size = BPF_CORE_READ(bio, bi_iter.bi_size);
    struct io_bytes *b = bpf_map_lookup_elem(&io_count, &dev);
    if (!b) {
        struct io_bytes zero = {};
        bpf_map_update_elem(&io_count, &dev, &zero, BPF_NOEXIST);
        b = bpf_map_lookup_elem(&io_count, &dev);
        if (!b)
            return 0;
    }
    if (op == REQ_OP_READ)
        b->read_bytes += size;
    else
        b->write_bytes += size;
    return 0;
}

/* ---- page_cache -------------------------------------------------------------------- */

/* Which `struct page_counts` field a page-cache event counts in. */
enum page_count_slot {
    PC_ACCESS = 0,
    PC_BUFFER_DIRTY = 1,
    PC_LOAD = 2,
    PC_PAGE_DIRTY = 3,
};

static __always_inline void page_count(__u32 dev, int which, __u64 n)
{
    if (!dev)
        return;
    struct page_counts *c = bpf_map_lookup_elem(&page_cache, &dev);
    if (!c) {
        struct page_counts zero = {};
        bpf_map_update_elem(&page_cache, &dev, &zero, BPF_NOEXIST);
        c = bpf_map_lookup_elem(&page_cache, &dev);
        if (!c)
            return;
    }
    switch (which) {
    case PC_ACCESS:
        c->access_pagecache += n;
        break;
    case PC_BUFFER_DIRTY:
        c->mark_buffer_dirty += n;
        break;
    case PC_LOAD:
        c->load_page_cache += n;
        break;
    default:
        c->mark_page_dirty += n;
        break;
    }
}

/* The device a mapping's pages belong to: the block device itself for a block device's
 * own page cache, the file system's device otherwise (anonymous for tmpfs & co, which
 * user space drops). */
static __always_inline __u32 mapping_dev(struct address_space *mapping)
{
    if (!mapping)
        return 0;
    struct inode *host = BPF_CORE_READ(mapping, host);
    if (!host)
        return 0;
    __u16 mode = BPF_CORE_READ(host, i_mode);
    if ((mode & S_IFMT) == S_IFBLK)
        return BPF_CORE_READ(host, i_rdev);
    return BPF_CORE_READ(host, i_sb, s_dev);
}

/* A buffered read looks up a batch of page-cache folios (one per read call and batch). */
SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(pc_get_pages, struct address_space *mapping, unsigned long index, unsigned long last)
{
    page_count(mapping_dev(mapping), PC_ACCESS, 1);
    return 0;
}

/* A page fault on a file mapping looks up the page cache. */
SEC("tp_btf/mm_filemap_fault")
int BPF_PROG(pc_fault, struct address_space *mapping, unsigned long index)
{
    page_count(mapping_dev(mapping), PC_ACCESS, 1);
    return 0;
}

/* The page cache `page` (or folio) belongs to: its `mapping`, at the same place in both
 * (read through struct page, which every kernel has); NULL for anonymous memory (the low
 * bits tag anon_vma and movable pointers). */
static __always_inline struct address_space *page_mapping_of(struct page *page)
{
    struct address_space *mapping = BPF_CORE_READ(page, mapping);
    if ((unsigned long)mapping & 3)
        return NULL;
    return mapping;
}

/* Fallbacks where the lookup tracepoints are missing (5.10 and 6.1 have neither): every
 * page marked accessed (the original's count), by fentry where it loads, else by kprobe;
 * folio_mark_accessed since 5.16, mark_page_accessed (a wrapper of it since) before. */
static __always_inline int mark_accessed(void *page)
{
    page_count(mapping_dev(page_mapping_of(page)), PC_ACCESS, 1);
    return 0;
}

SEC("fentry/folio_mark_accessed")
int BPF_PROG(pc_mark_accessed, struct folio *folio)
{
    return mark_accessed(folio);
}

SEC("fentry/mark_page_accessed")
int BPF_PROG(pc_page_accessed, struct page *page)
{
    return mark_accessed(page);
}

SEC("kprobe/folio_mark_accessed")
int BPF_KPROBE(pc_mark_accessed_kp, struct folio *folio)
{
    return mark_accessed(folio);
}

SEC("kprobe/mark_page_accessed")
int BPF_KPROBE(pc_page_accessed_kp, struct page *page)
{
    return mark_accessed(page);
}

SEC("tp_btf/block_dirty_buffer")
int BPF_PROG(pc_dirty_buffer, struct buffer_head *bh)
{
    page_count(BPF_CORE_READ(bh, b_bdev, bd_dev), PC_BUFFER_DIRTY, 1);
    return 0;
}

/* A folio (a page on 5.10) enters the page cache: counted in pages. */
SEC("tp_btf/mm_filemap_add_to_page_cache")
int BPF_PROG(pc_add, struct folio *folio)
{
    page_count(mapping_dev(page_mapping_of((struct page *)folio)), PC_LOAD, folio_pages(folio));
    return 0;
}

/* A folio becomes dirty (the accounting the original hooked in folio_account_dirtied):
 * counted in pages. */
SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(pc_dirty_folio, struct folio *folio, struct address_space *mapping)
{
    page_count(mapping_dev(mapping), PC_PAGE_DIRTY, folio_pages(folio));
    return 0;
}

/* Kernels before folios (5.10): the same accounting, per page. */
SEC("tp_btf/writeback_dirty_page")
int BPF_PROG(pc_dirty_page, struct page *page, struct address_space *mapping)
{
    page_count(mapping_dev(mapping), PC_PAGE_DIRTY, 1);
    return 0;
}
