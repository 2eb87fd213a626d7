/* tcpprobe: per-connection TCP health of the snooped processes.
 *
 * A "link" is one TCP socket of a snooped process, keyed by its `struct sock *` in the
 * `links` hash. The value holds the link's identity (tgid, role, addresses, ports) and
 * cumulative counters; user space reads the map every report period and takes the
 * deltas. Nothing here runs per segment or per send/recv outside the delay window:
 *
 * - counters (bytes, segments, drops) are the kernel's own tcp_sock counters, read by
 *   the `tcp_pass` iterator user space runs every sample_period, and at TCP_CLOSE;
 * - the sampled state (rtt, windows, timers, buffers) is sent by the same pass through
 *   the `events` ring buffer, for each link that moved segments since the last pass;
 * - rare events (retransmits, resets, drops, errors, buffer limits) are counted as they
 *   happen; state changes make and bind links;
 * - the tcp_delay programs (send/recv, ACKs, data ready) are attached by user space only
 *   in a window at the start of each sample period.
 * When the socket is destroyed its final counters go through the ring buffer and the
 * entry is deleted, so nothing is lost between two reads.
 *
 * How a socket becomes a link:
 * - client: CLOSE -> SYN_SENT runs in connect()'s context (tgid known and checked);
 * - server: SYN_RECV -> ESTABLISHED runs in softirq (no owner): the socket waits in
 *   `pending` as a link without owner (its counters and events already kept) until the
 *   owner is known: the next pass finds it among a snooped process's files, or the owner
 *   closes it (FIN_WAIT1 / LAST_ACK, or an aborting close()), or it sends or receives
 *   inside the delay window;
 * - any other socket (opened before the probe started): the pass finds it among the
 *   files of a snooped process; server if its local port is a listening port.
 *
 * Every program is autoload-off; user space switches on the ones its plan chose. The
 * `en_*` read-only flags say which sub-items are on (set before load). */
#include "gala.bpf.h"

/* Enums rather than #defines so that they reach the object's BTF: user space takes them
 * from the skeleton (`types::link_role` ...), as it takes the structs below. */

/* `link_ident.role`. */
enum link_role {
    ROLE_CLIENT = 1,
    ROLE_SERVER = 2,
};

/* The `type` every ring buffer record starts with. */
enum rec_kind {
    REC_SAMPLE = 1,
    REC_CLOSE = 2,
    REC_DELAY = 3,
};

/* `rec_delay.dir`. */
enum delay_dir {
    DELAY_RX = 0,
    DELAY_TX = 1,
};

#define SK_MEM_SEND 0
#define SK_MEM_RECV 1
#define ETIMEDOUT 110
#define MSG_PEEK 2
#define SOCK_STREAM 1
#define SHUTDOWN_MASK 3

/* TCP options carrying the client's address (Huawei TOA, as the original parses them):
 * kind 254, length 8 (port, IPv4); kind 253, length 20 (port, IPv6). */
#define TCPOPT_TOA 254
#define TCPOPT_TOA_V6 253
#define TCP_OPTS_MAX 40
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define MAX_LINKS 16384
#define MAX_PENDING 16384
#define MAX_LISTEN 4096

/* Who a link is. `id` is unique for the probe's lifetime (sockets' addresses are reused). */
struct link_ident {
    __u64 id;
    __u32 tgid;
    __u8 role;
    __u8 family;
    __u16 cport;
    __u16 sport;
    __u16 _pad0;
    __u32 _pad1;
    __u8 cip[16];
    __u8 sip[16];
    char comm[16];
    /* The TCP options of the SYN that opened a server link when they may hold a TOA
     * option (user space walks them: toa.rs), `toa_len` 0 otherwise. */
    __u8 toa_opts[TCP_OPTS_MAX];
    __u8 toa_len;
    __u8 _pad5[7];
};

/* One link: identity, cumulative counters, tcp_sock snapshots, gates. User space reads it
 * as the skeleton's `types::link` (src/record.rs). */
struct link {
    struct link_ident ident;
    __u64 tx_bytes;
    __u64 rx_bytes;
    __u64 retran_packets;
    __u32 backlog_drops;
    __u32 filter_drops;
    __u32 tmout_count;
    __u32 snd_buf_limit_count;
    __u32 rmem_scheduls;
    __u32 tcp_oom;
    __u32 send_rsts;
    __u32 receive_rsts;
    __u32 zero_rcv_wnd;
    __u32 zero_snd_wnd;
    __u32 win_events;
    __u32 _pad2;
    /* tcp_sock/sock counters as last read, and as read when the link was made */
    __u32 segs_in;
    __u32 segs_out;
    __u32 sk_drops;
    __u32 _pad3;
    __u32 segs_in0;
    __u32 segs_out0;
    __u32 sk_drops0;
    __u32 syn_srtt;
    /* highest lost_out / sacked_out seen while `epoch` was hw_epoch */
    __u32 hw_epoch;
    __u32 lost_out_hw;
    __u32 sacked_out_hw;
    __u32 _pad4;
    /* gates in jiffies (a load, where a clock read costs ~10 ns per event); the delay
     * stamps in ns */
    __u64 next_sample_j;
    __u64 rx_ready_ns;
    __u64 rx_next_j;
    __u64 tx_send_ns;
    __u64 tx_next_j;
    __u32 tx_seq;
    __u32 established;
    /* tcp_sock.bytes_acked / bytes_received when the link was made */
    __u64 acked0;
    __u64 received0;
    /* the sequence number of our FIN, once queued (fin_sent) */
    __u32 fin_seq;
    __u32 fin_sent;
    /* the pass that last read the link, and segs_in + segs_out at its last sample */
    __u32 pass;
    __u32 sample_segs;
};

struct rec_sample {
    __u32 type;
    __u32 _pad;
    struct link_ident ident;
    __u32 srtt;
    __u32 rcv_rtt;
    __u32 snd_cwnd;
    __u32 notsent_bytes;
    __u32 notack_bytes;
    __u32 reordering;
    __u32 snd_wnd;
    __u32 rcv_wnd;
    __u32 avl_snd_wnd;
    __u32 rto;
    __u32 ato;
    __u32 sk_rcvbuf;
    __u32 sk_sndbuf;
    __u32 _pad2;
};

struct rec_close {
    __u32 type;
    __u32 _pad;
    struct link link;
};

struct rec_delay {
    __u32 type;
    __u32 dir;
    struct link_ident ident;
    __u64 delay_ns;
};

/* Never touched by the programs: keeps the ring buffer records and the enums above in the
 * object's BTF (by value: a pointer would keep only a forward declaration), where the
 * skeleton's `types` module (src/record.rs) takes them from. */
struct tcp_user_types {
    struct rec_sample sample;
    struct rec_close close;
    struct rec_delay delay;
    enum rec_kind kind;
    enum link_role role;
    enum delay_dir dir;
};
struct tcp_user_types gala_user_types;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_LINKS);
    __type(key, __u64);
    __type(value, struct link);
} links SEC(".maps");

/* Server sockets established in softirq, waiting for their owner: links with tgid 0,
 * baselines taken at ESTABLISHED, counting events already. LRU: entries of processes
 * that are not snooped and never close are pushed out by newer ones. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_PENDING);
    __type(key, __u64);
    __type(value, struct link);
} pending SEC(".maps");

/* Local ports in LISTEN state (value: number of listening sockets). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_LISTEN);
    __type(key, __u32);
    __type(value, __u32);
} listen_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct link);
} scratch SEC(".maps");

/* A SYN's 4-tuple, as the server socket will have it (IPv4 in the first 4 bytes, ports
 * in host order). */
struct toa_key {
    __u8 family;
    __u8 _pad0;
    __u16 cport;
    __u16 sport;
    __u16 _pad1;
    __u8 cip[16];
    __u8 sip[16];
};

/* A SYN's TCP options (`len` bytes of `b`). */
struct tcp_opts {
    __u8 b[TCP_OPTS_MAX];
    __u8 len;
    __u8 _pad[3];
};

/* TOA options of SYNs seen at tcp_conn_request, until their connection is established
 * (SYN_RECV -> ESTABLISHED takes them into the link). LRU: SYNs that never complete are
 * pushed out. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct toa_key);
    __type(value, struct tcp_opts);
} toa_syn SEC(".maps");
/* Where record_toa reads a SYN's options. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tcp_opts);
} opts_scratch SEC(".maps");

/* Per-CPU sequence for link ids (the id is cpu+1 << 40 | sequence): no atomic with a
 * return value, which the default BPF CPU version lacks. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} id_seq SEC(".maps");

/* Sub-items on, set before load. */
const volatile __u8 en_stats = 0;
const volatile __u8 en_abn = 0;
const volatile __u8 en_win = 0;
const volatile __u8 en_rtt = 0;
const volatile __u8 en_srtt = 0;
const volatile __u8 en_rate = 0;
const volatile __u8 en_sockbuf = 0;
const volatile __u8 en_delay = 0;
/* Whether a tcp_conn_request program records TOA options (set before load). */
const volatile __u8 en_toa = 0;

/* The kernel's CONFIG_HZ (jiffies per second), set by user space before load from the
 * coarse clocks' resolution (one jiffy): a `__kconfig` extern would make libbpf refuse
 * the object on a system without /boot/config-<release> or /proc/config.gz. */
const volatile __u32 kernel_hz = 0;

/* Written by user space at run time. */
__u64 sample_period_ns = 5000000000ULL;
__u32 epoch = 0;
/* The pass user space is running (a socket shared by several files is read once). */
__u32 pass_id = 0;
/* Whether the delay window is open: the tcp_delay programs that stay attached (fentry and
 * fexit, which older kernels attach only once) do nothing while it is closed. */
__u32 delay_open = 0;
/* Read by user space: links refused by a full map, ring buffer records lost. */
__u64 links_full = 0;
__u64 ring_lost = 0;

static __always_inline bool sampled_state(void)
{
    return en_win || en_rtt || en_rate || en_sockbuf;
}

/* sample_period_ns in jiffies (at least 1). */
static __always_inline __u64 period_jiffies(void)
{
    __u64 hz = kernel_hz ? kernel_hz : 1000;
    __u64 j = sample_period_ns / (1000000000ULL / hz);
    return j ? j : 1;
}

static __always_inline __u32 jiffies_to_us(__u32 j)
{
    __u32 hz = kernel_hz ? kernel_hz : 1000;
    return (__u32)(((__u64)j * 1000000ULL) / hz);
}

/* Gives `l` its owner: `task`'s comm, or the current task's where `task` is NULL. */
static __always_inline void set_owner(struct link *l, __u32 tgid, const struct task_struct *task)
{
    l->ident.tgid = tgid;
    if (task)
        bpf_probe_read_kernel_str(l->ident.comm, sizeof(l->ident.comm), task->comm);
    else
        bpf_get_current_comm(l->ident.comm, sizeof(l->ident.comm));
}

/* Inserts `l` into `links` under `key`; returns the map's value (or the one another CPU
 * inserted first). */
static __always_inline struct link *insert_link(__u64 key, const struct link *l)
{
    if (bpf_map_update_elem(&links, &key, l, BPF_NOEXIST) != 0) {
        struct link *other = bpf_map_lookup_elem(&links, &key);
        if (!other)
            __sync_fetch_and_add(&links_full, 1);
        return other;
    }
    return bpf_map_lookup_elem(&links, &key);
}

/* The pending server socket `p` (key `key`) becomes a link of `tgid`. */
static __always_inline struct link *bind_pending(__u64 key, struct link *p, __u32 tgid,
                                                 const struct task_struct *task)
{
    set_owner(p, tgid, task);
    struct link *l = insert_link(key, p);
    bpf_map_delete_elem(&pending, &key);
    return l;
}

/* Binds the pending socket `key` to the current process if it is in scope. */
static __always_inline struct link *bind_current(__u64 key)
{
    struct link *p = bpf_map_lookup_elem(&pending, &key);
    __u32 tgid = gala_tgid();
    if (!p || !gala_snooped(tgid))
        return NULL;
    return bind_pending(key, p, tgid, NULL);
}

static __always_inline void send_delay(struct link *l, __u32 dir, __u64 delay_ns)
{
    struct rec_delay *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) {
        __sync_fetch_and_add(&ring_lost, 1);
        return;
    }
    r->type = REC_DELAY;
    r->dir = dir;
    __builtin_memcpy(&r->ident, &l->ident, sizeof(r->ident));
    r->delay_ns = delay_ns;
    bpf_ringbuf_submit(r, 0);
}

/* Ends the delay measurement started at `*stamp` (ns): the next may start a sample period
 * from now. */
static __always_inline void end_delay(struct link *l, __u64 *stamp, __u64 *next_j, __u32 dir)
{
    __u64 now = bpf_ktime_get_ns();
    __u64 start = *stamp;
    *stamp = 0;
    *next_j = bpf_jiffies64() + period_jiffies();
    if (now > start)
        send_delay(l, dir, now - start);
}

/* The socket readers, in two flavours (see tcp_sock.bpf.h): direct loads for trusted
 * socket pointers, CO-RE probe reads (`*_probed`) for the socket pass of kernels before
 * 5.11 and for kprobes. `TCP_SK()`: the socket as a `struct tcp_sock`, a typed pointer for
 * direct loads (`bpf_skc_to_tcp_sock()`, NULL unless a full TCP socket) or a plain cast
 * for probe reads (the callers have checked protocol and type). */
#define RD(p, field) ((p)->field)
#define FN(name) name
#define TCP_SK(sk) bpf_skc_to_tcp_sock((void *)(sk))
#include "tcp_sock.bpf.h"
#undef RD
#undef FN
#undef TCP_SK
#define RD(p, field) BPF_CORE_READ(p, field)
#define FN(name) name##_probed
#define TCP_SK(sk) ((const struct tcp_sock *)(sk))
#include "tcp_sock.bpf.h"
#undef RD
#undef FN
#undef TCP_SK

/* Drops `key` from `pending`; the lockless lookup first, since most sockets closing are
 * not there and a delete takes the bucket lock. */
static __always_inline void forget_pending(__u64 key)
{
    if (bpf_map_lookup_elem(&pending, &key))
        bpf_map_delete_elem(&pending, &key);
}

/* The link of `sk`, or its pending entry (a server socket not bound yet). */
static __always_inline struct link *link_of(const struct sock *sk)
{
    if (!sk)
        return NULL;
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    return l ? l : bpf_map_lookup_elem(&pending, &key);
}

/* The toa_syn key of a link's tuple: an IPv4-mapped IPv6 address (an IPv6 socket
 * accepting IPv4) as the IPv4 SYN had it. */
static __always_inline void toa_key_of(struct toa_key *k, const struct link_ident *id)
{
    __builtin_memset(k, 0, sizeof(*k));
    k->family = id->family;
    k->cport = id->cport;
    k->sport = id->sport;
    const __u32 *c = (const __u32 *)id->cip;
    const __u32 *s = (const __u32 *)id->sip;
    __u32 *kc = (__u32 *)k->cip;
    __u32 *ks = (__u32 *)k->sip;
    if (id->family == AF_INET6 && c[0] == 0 && c[1] == 0 && c[2] == bpf_htonl(0xffff)) {
        k->family = AF_INET;
        kc[0] = c[3];
        ks[0] = s[3];
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        kc[i] = c[i];
        ks[i] = s[i];
    }
}

/* Moves the TOA option of the link's SYN, if one was recorded, into its identity. */
static __always_inline void take_toa(struct link_ident *id)
{
    struct toa_key k;
    toa_key_of(&k, id);
    struct tcp_opts *o = bpf_map_lookup_elem(&toa_syn, &k);
    if (!o)
        return;
    __builtin_memcpy(id->toa_opts, o->b, TCP_OPTS_MAX);
    id->toa_len = o->len;
    bpf_map_delete_elem(&toa_syn, &k);
}

/* A SYN reaching a listener (tcp_conn_request): when its TCP options may hold a TOA
 * option (a byte 254 or 253 among them), records them under the SYN's 4-tuple; user space
 * walks them as the kernel's tcp_parse_options() does (toa.rs). The walk is not done
 * here: a data-dependent walk of 40 bytes is beyond older verifiers. Every field is read
 * with CO-RE probe reads (the same code serves the fentry and the kprobe program). */
static __always_inline void record_toa(const struct sk_buff *skb)
{
    unsigned char *head = BPF_CORE_READ(skb, head);
    __u16 th_off = BPF_CORE_READ(skb, transport_header);
    __u16 nh_off = BPF_CORE_READ(skb, network_header);
    __u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
    /* Wire formats, read as bytes: ports at 0 and 2, data offset in the high nibble
     * of byte 12; IPv4 addresses at 12 and 16, IPv6 at 8 and 24. */
    __u8 th[20];
    if (!head || bpf_probe_read_kernel(th, sizeof(th), head + th_off))
        return;
    __u32 optlen = (th[12] >> 4) * 4;
    if (optlen <= sizeof(th))
        return;
    optlen -= sizeof(th);
    if (optlen > TCP_OPTS_MAX)
        return;
    __u32 zero = 0;
    struct tcp_opts *o = bpf_map_lookup_elem(&opts_scratch, &zero);
    if (!o || bpf_probe_read_kernel(o->b, TCP_OPTS_MAX, head + th_off + sizeof(th)))
        return;
    o->len = optlen;
    /* Bytes past the options (payload, rare in a SYN) can only make a false candidate,
     * which user space's walk rejects. */
    bool candidate = false;
#pragma unroll
    for (int j = 0; j < TCP_OPTS_MAX; j++) {
        __u8 c = o->b[j];
        if (c == TCPOPT_TOA || c == TCPOPT_TOA_V6)
            candidate = true;
    }
    if (!candidate)
        return;
    struct toa_key k = {};
    k.cport = ((__u16)th[0] << 8) | th[1];
    k.sport = ((__u16)th[2] << 8) | th[3];
    if (proto == ETH_P_IP) {
        k.family = AF_INET;
        if (bpf_probe_read_kernel(k.cip, 4, head + nh_off + 12) ||
            bpf_probe_read_kernel(k.sip, 4, head + nh_off + 16))
            return;
    } else if (proto == ETH_P_IPV6) {
        k.family = AF_INET6;
        if (bpf_probe_read_kernel(k.cip, 16, head + nh_off + 8) ||
            bpf_probe_read_kernel(k.sip, 16, head + nh_off + 24))
            return;
    } else {
        return;
    }
    bpf_map_update_elem(&toa_syn, &k, o, BPF_ANY);
}

SEC("fentry/tcp_conn_request")
int BPF_PROG(tcp_conn_request_entry, struct request_sock_ops *rsk_ops,
             const struct tcp_request_sock_ops *af_ops, struct sock *sk, struct sk_buff *skb)
{
    record_toa(skb);
    return 0;
}

SEC("kprobe/tcp_conn_request")
int BPF_KPROBE(tcp_conn_request_kprobe, struct request_sock_ops *rsk_ops,
               const struct tcp_request_sock_ops *af_ops, struct sock *sk, struct sk_buff *skb)
{
    record_toa(skb);
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return 0;
    __u64 key = (__u64)sk;
    if (newstate == TCP_LISTEN) {
        __u32 port = sk->__sk_common.skc_num;
        __u32 one = 1;
        __u32 *n = bpf_map_lookup_elem(&listen_ports, &port);
        if (n)
            __sync_fetch_and_add(n, 1);
        else
            bpf_map_update_elem(&listen_ports, &port, &one, BPF_NOEXIST);
        return 0;
    }
    if (oldstate == TCP_LISTEN) {
        __u32 port = sk->__sk_common.skc_num;
        __u32 *n = bpf_map_lookup_elem(&listen_ports, &port);
        if (n) {
            if (*n <= 1)
                bpf_map_delete_elem(&listen_ports, &port);
            else
                *n -= 1;
        }
        return 0;
    }
    if (!inet_family(sk))
        return 0;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
    if (!tp)
        return 0;
    if (newstate == TCP_SYN_SENT) {
        __u32 tgid = gala_tgid();
        if (!gala_snooped(tgid))
            return 0;
        struct link *l = init_link(sk, tp, ROLE_CLIENT);
        if (!l)
            return 0;
        set_owner(l, tgid, NULL);
        /* The tracepoint runs before the state is stored; the SYN, once acknowledged,
         * counts one in bytes_acked. */
        l->established = 0;
        l->acked0 += 1;
        insert_link(key, l);
        return 0;
    }
    if (newstate == TCP_ESTABLISHED) {
        struct link *l = bpf_map_lookup_elem(&links, &key);
        if (l) {
            /* The source port is chosen after SYN_SENT: fill the tuple again. */
            fill_tuple(&l->ident, sk);
            l->established = 1;
            return 0;
        }
        if (oldstate == TCP_SYN_RECV) {
            struct link *p = init_link(sk, tp, ROLE_SERVER);
            if (p) {
                p->syn_srtt = tp->srtt_us >> 3;
                if (en_toa)
                    take_toa(&p->ident);
                bpf_map_update_elem(&pending, &key, p, BPF_ANY);
            }
        }
        return 0;
    }
    if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
        /* close() or shutdown() by the owner, always in process context: the FIN is
         * queued right after, at write_seq. */
        struct link *l = bpf_map_lookup_elem(&links, &key);
        if (!l)
            l = bind_current(key);
        if (l) {
            l->fin_seq = tp->write_seq;
            l->fin_sent = 1;
        }
        return 0;
    }
    if (newstate == TCP_CLOSE) {
        /* The last moment the counters are whole: a disconnect zeroes them next. A
         * close() that aborts (SO_LINGER 0, unread data) has shut the socket down both
         * ways before this change, in the owner's context; a reset or timeout in softirq
         * shuts it down only after (tcp_done). */
        struct link *l = bpf_map_lookup_elem(&links, &key);
        if (!l && sk->sk_shutdown == SHUTDOWN_MASK)
            l = bind_current(key);
        if (l)
            snapshot(l, tp);
    }
    return 0;
}

/* The socket is freed: send the final counters, forget it. Comes after the last state
 * change and after any reset sent on close (tcp_disconnect sends it after CLOSE). */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tcp_destroy, struct sock *sk)
{
    __u64 key = (__u64)sk;
    /* A server socket still pending (reset by the peer before its owner was known) has
     * no owner to report to. */
    forget_pending(key);
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l)
        return 0;
    /* A client that never got established has no local port yet; a failed connect()
     * has cleared the rest by now (tcp_disconnect), so fill only the missing port. */
    if (l->ident.role == ROLE_CLIENT && l->ident.cport == 0)
        l->ident.cport = sk->__sk_common.skc_num;
    struct rec_close *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (r) {
        r->type = REC_CLOSE;
        r->_pad = 0;
        __builtin_memcpy(&r->link, l, sizeof(r->link));
        bpf_ringbuf_submit(r, 0);
    } else {
        __sync_fetch_and_add(&ring_lost, 1);
    }
    bpf_map_delete_elem(&links, &key);
    return 0;
}

/* The socket pass (run by user space every sample_period): every file of every task;
 * each established TCP socket of a snooped process is handled by pass_socket(). The
 * socket is recognised by bpf_sock_from_file() (5.11+). */
SEC("iter/task_file")
int tcp_pass(struct bpf_iter__task_file *ctx)
{
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!task || !file)
        return 0;
    struct socket *sock = bpf_sock_from_file(file);
    if (!sock)
        return 0;
    struct sock *sk = sock->sk;
    if (!sk)
        return 0;
    /* sock->sk is not a trusted pointer: a typed cast for direct loads */
    return pass_socket(task, sk, bpf_core_cast(sk, struct tcp_sock));
}

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The socket pass where bpf_sock_from_file() is missing (before 5.11): a socket file is
 * one whose inode is a socket, and its private_data is the `struct socket` (as
 * sock_alloc_file() sets it); every field is read with CO-RE probe reads. */
SEC("iter/task_file")
int tcp_pass_compat(struct bpf_iter__task_file *ctx)
{
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!task || !file)
        return 0;
    umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
    if ((mode & S_IFMT) != S_IFSOCK)
        return 0;
    struct socket *sock = BPF_CORE_READ(file, private_data);
    struct sock *sk = BPF_CORE_READ(sock, sk);
    return pass_socket_probed(task, sk, (const struct tcp_sock *)sk);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tcp_send_len, struct sock *sk, int ret, int flags)
{
    on_io(sk, ret, flags, true);
    return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tcp_recv_len, struct sock *sk, int ret, int flags)
{
    on_io(sk, ret, flags, false);
    return 0;
}
/* Fallbacks for kernels without the sock_*_length tracepoints (before 6.3). The receive
 * side is tcp_cleanup_rbuf(sk, copied), called at the end of every read that copied
 * data, with the same arguments on every kernel (tcp_recvmsg's changed in 5.19). */
SEC("fexit/tcp_sendmsg")
int BPF_PROG(tcp_sendmsg_exit, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
    on_io(sk, ret, 0, true);
    return 0;
}

SEC("fentry/tcp_cleanup_rbuf")
int BPF_PROG(tcp_cleanup_rbuf_entry, struct sock *sk, int copied)
{
    on_io(sk, copied, 0, false);
    return 0;
}

/* Where fentry is refused (kprobes, or fentry on arm64 before 6.0): tcp_sendmsg's socket
 * kept from its entry to its return, per thread. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, __u64);
} sendmsg_sk SEC(".maps");

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(tcp_sendmsg_kprobe, struct sock *sk)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u64 s = (__u64)sk;
    bpf_map_update_elem(&sendmsg_sk, &id, &s, BPF_ANY);
    return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(tcp_sendmsg_kretprobe, int ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u64 *s = bpf_map_lookup_elem(&sendmsg_sk, &id);
    if (!s)
        return 0;
    struct sock *sk = (struct sock *)*s;
    bpf_map_delete_elem(&sendmsg_sk, &id);
    on_io_probed(sk, ret, 0, true);
    return 0;
}

SEC("kprobe/tcp_cleanup_rbuf")
int BPF_KPROBE(tcp_cleanup_rbuf_kprobe, struct sock *sk, int copied)
{
    on_io_probed(sk, copied, 0, false);
    return 0;
}

/* Every segment processed in ESTABLISHED, inside the delay window: the ACK that ends a
 * send delay. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_ack, struct sock *sk, const struct sk_buff *skb)
{
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l || !l->tx_send_ns || !delay_open)
        return 0;
    const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)&skb->cb[0];
    __u32 ack = cb->ack_seq;
    if ((__s32)(ack - l->tx_seq) >= 0)
        end_delay(l, &l->tx_send_ns, &l->tx_next_j, DELAY_TX);
    return 0;
}

/* A retransmission. The tracepoint's `err` argument exists since 6.8 (before, it fired
 * only for a retransmission that succeeded); the CO-RE check on the tracepoint's record
 * keeps the program loadable on both (the branch not taken is never verified). */
SEC("tp_btf/tcp_retransmit_skb")
int tcp_retrans(__u64 *ctx)
{
    const struct sock *sk = (const struct sock *)ctx[0];
    const struct sk_buff *skb = (const struct sk_buff *)ctx[1];
    if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && ctx[2])
        return 0;
    struct link *l = link_of(sk);
    if (!l)
        return 0;
    const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)&skb->cb[0];
    __u32 segs = cb->tcp_gso_segs;
    __sync_fetch_and_add(&l->retran_packets, segs ? segs : 1);
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
    if (tp)
        high_water(l, tp);
    return 0;
}

/* Resets the stack sends for a segment without a socket have sk NULL: not counted. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_rst, const struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l)
        __sync_fetch_and_add(&l->send_rsts, 1);
    return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_recv_rst, struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l)
        __sync_fetch_and_add(&l->receive_rsts, 1);
    return 0;
}

/* Drops with a reason (5.17+). The receiving socket is the `rx_sk` argument where the
 * tracepoint has it (6.12+), else `skb->sk` (set by early demux for established
 * sockets). */
SEC("tp_btf/kfree_skb")
int tcp_drop(__u64 *ctx)
{
    struct sk_buff *skb = (struct sk_buff *)ctx[0];
    int reason = (int)ctx[2];
    int backlog = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_BACKLOG);
    int filter = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_FILTER);
    int mem = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_PROTO_MEM);
    if (reason != backlog && reason != filter && reason != mem)
        return 0;
    struct sock *sk = NULL;
    if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
        sk = (struct sock *)ctx[3];
    if (!sk)
        sk = skb->sk;
    struct link *l = link_of(sk);
    if (!l)
        return 0;
    if (reason == backlog)
        __sync_fetch_and_add(&l->backlog_drops, 1);
    else if (reason == filter)
        __sync_fetch_and_add(&l->filter_drops, 1);
    else
        __sync_fetch_and_add(&l->tcp_oom, 1);
    return 0;
}

/* The same three drops before drop reasons (5.10): the functions that decide them, as
 * the original probed them. tcp_add_backlog() returns true when the segment is dropped
 * (SOCKET_BACKLOG), tcp_filter() non-zero (SOCKET_FILTER), tcp_try_rmem_schedule()
 * non-zero when receive memory could not be charged (PROTO_MEM). Their argument lists are
 * those of 5.10 (tcp_add_backlog() has a third since 5.19, where kfree_skb has reasons). */
SEC("fexit/tcp_add_backlog")
int BPF_PROG(tcp_backlog_exit, struct sock *sk, struct sk_buff *skb, bool dropped)
{
    struct link *l = dropped ? link_of(sk) : NULL;
    if (l)
        __sync_fetch_and_add(&l->backlog_drops, 1);
    return 0;
}

SEC("fexit/tcp_filter")
int BPF_PROG(tcp_filter_exit, struct sock *sk, struct sk_buff *skb, int dropped)
{
    struct link *l = dropped ? link_of(sk) : NULL;
    if (l)
        __sync_fetch_and_add(&l->filter_drops, 1);
    return 0;
}

SEC("fexit/tcp_try_rmem_schedule")
int BPF_PROG(tcp_rmem_exit, struct sock *sk, struct sk_buff *skb, unsigned int size, int err)
{
    struct link *l = err ? link_of(sk) : NULL;
    if (l)
        __sync_fetch_and_add(&l->tcp_oom, 1);
    return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(tcp_err_report, const struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l && sk->sk_err == ETIMEDOUT)
        __sync_fetch_and_add(&l->tmout_count, 1);
    return 0;
}

/* Before the inet_sk_error_report tracepoint (5.15): the error report callback of TCP
 * sockets, which the tracepoint sits in. */
SEC("fentry/sock_def_error_report")
int BPF_PROG(tcp_err_report_entry, struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l && sk->sk_err == ETIMEDOUT)
        __sync_fetch_and_add(&l->tmout_count, 1);
    return 0;
}

SEC("kprobe/sock_def_error_report")
int BPF_KPROBE(tcp_err_report_kprobe, struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l && BPF_CORE_READ(sk, sk_err) == ETIMEDOUT)
        __sync_fetch_and_add(&l->tmout_count, 1);
    return 0;
}

SEC("tp_btf/sock_exceed_buf_limit")
int BPF_PROG(tcp_buf_limit, struct sock *sk, struct proto *prot, long allocated, int kind)
{
    struct link *l = link_of(sk);
    if (!l)
        return 0;
    if (kind == SK_MEM_SEND)
        __sync_fetch_and_add(&l->snd_buf_limit_count, 1);
    else
        __sync_fetch_and_add(&l->rmem_scheduls, 1);
    return 0;
}

/* Data queued on the socket: the start of a receive delay. */
static __always_inline void on_data_ready(const struct sock *sk)
{
    if (!delay_open)
        return;
    struct link *l = link_of(sk);
    if (!l || l->rx_ready_ns)
        return;
    if (bpf_jiffies64() >= l->rx_next_j)
        l->rx_ready_ns = bpf_ktime_get_ns();
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(tcp_data_ready, const struct sock *sk)
{
    on_data_ready(sk);
    return 0;
}

/* Before the sk_data_ready tracepoint (6.6): TCP's own data-ready step, which wakes the
 * reader (sk->sk_data_ready) once enough data is queued. */
SEC("fentry/tcp_data_ready")
int BPF_PROG(tcp_data_ready_entry, struct sock *sk)
{
    on_data_ready(sk);
    return 0;
}

SEC("kprobe/tcp_data_ready")
int BPF_KPROBE(tcp_data_ready_kprobe, struct sock *sk)
{
    on_data_ready(sk);
    return 0;
}
