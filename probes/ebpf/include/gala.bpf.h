/* What every gala-gopher BPF program shares: the snooper filter and the control block.
 *
 * User space (the `gala-ebpf` crate, `SnoopMap`) writes the snooped tgids into `gala_snoop`
 * and the mode into `gala_ctl`; `gala_snooped(tgid)` is the one check a hook makes before
 * it records anything for a process. Include this once per BPF object, after nothing else. */
#ifndef GALA_BPF_H
#define GALA_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define GALA_MAX_SNOOP 8192
#define GALA_MODE_WHITELIST 0
#define GALA_MODE_BLACKLIST 1

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Snooped (whitelist) or excluded (blacklist) tgids; the value is unused. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, GALA_MAX_SNOOP);
    __type(key, __u32);
    __type(value, __u8);
} gala_snoop SEC(".maps");

/* Control block written by user space: snooper mode and the probe's own tgid. */
struct gala_ctl {
    __u32 mode;
    __u32 self_tgid;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct gala_ctl);
} gala_ctl SEC(".maps");

static __always_inline __u32 gala_tgid(void)
{
    return bpf_get_current_pid_tgid() >> 32;
}

/* Whether `tgid` is in scope: listed in whitelist mode, not listed in blacklist mode.
 * The probe itself is never in scope. */
static __always_inline bool gala_snooped(__u32 tgid)
{
    __u32 zero = 0;
    struct gala_ctl *ctl = bpf_map_lookup_elem(&gala_ctl, &zero);
    if (!ctl || tgid == 0 || tgid == ctl->self_tgid)
        return false;
    bool listed = bpf_map_lookup_elem(&gala_snoop, &tgid) != NULL;
    return ctl->mode == GALA_MODE_BLACKLIST ? !listed : listed;
}

char LICENSE[] SEC("license") = "GPL";

#endif
