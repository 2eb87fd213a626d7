/* CO-RE readers of kernel objects whose shape changed between the kernels the probes run
 * on (5.10 to 6.18), shared by the BPF objects of several probes. Include after gala.bpf.h. */
#ifndef GALA_KERNEL_BPF_H
#define GALA_KERNEL_BPF_H

/* The bio of block_bio_queue: its only argument since 5.11, the second one before (after
 * the request queue; that form had its own raw event struct, which is how CO-RE tells). */
struct trace_event_raw_block_bio_queue___old {
    int unused;
};

static __always_inline struct bio *bio_queue_arg(unsigned long long *ctx)
{
    struct bio *bio;
    if (bpf_core_type_exists(struct trace_event_raw_block_bio_queue___old)) {
        bio = (struct bio *)ctx[1];
        barrier_var(bio);
    } else {
        bio = (struct bio *)ctx[0];
        barrier_var(bio);
    }
    return bio;
}

struct folio___old {
    unsigned int _folio_nr_pages;
} __attribute__((preserve_access_index));

/* Pages in `folio` (folio_nr_pages()): 1 unless the folio is large (PG_head), then
 * `_nr_pages` (6.9+) or `_folio_nr_pages` (5.16+). A struct page pointer (the tracepoints
 * of kernels before folios) is read the same way: `flags` is the first word of both, and
 * without struct folio in the kernel every page counts 1. */
static __always_inline __u64 folio_pages(struct folio *folio)
{
    unsigned long flags = 0;
    bpf_probe_read_kernel(&flags, sizeof(flags), folio);
    int head = bpf_core_enum_value(enum pageflags, PG_head);
    if (head < 0 || head > 63 || !(flags & (1UL << head)))
        return 1;
    __u64 n = 0;
    if (bpf_core_field_exists(folio->_nr_pages))
        n = BPF_CORE_READ(folio, _nr_pages);
    else if (bpf_core_field_exists(((struct folio___old *)folio)->_folio_nr_pages))
        n = BPF_CORE_READ((struct folio___old *)folio, _folio_nr_pages);
    return n ? n : 1;
}

#endif
