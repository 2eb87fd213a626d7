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

extern unsigned int CONFIG_HZ __kconfig __weak;

/* Written by user space at run time. */
__u64 sample_period_ns = 5000000000ULL;
__u32 epoch = 0;
/* The pass user space is running (a socket shared by several files is read once). */
__u32 pass_id = 0;
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
    __u64 hz = CONFIG_HZ ? CONFIG_HZ : 1000;
    __u64 j = sample_period_ns / (1000000000ULL / hz);
    return j ? j : 1;
}

static __always_inline __u32 jiffies_to_us(__u32 j)
{
    __u32 hz = CONFIG_HZ ? CONFIG_HZ : 1000;
    return (__u32)(((__u64)j * 1000000ULL) / hz);
}

/* The programs' socket arguments are trusted BTF pointers: fields are read with direct
 * CO-RE loads (no helper call). `struct tcp_sock` fields need the typed pointer
 * `bpf_skc_to_tcp_sock()` gives (NULL unless a full TCP stream socket). */
static __always_inline bool inet_family(const struct sock *sk)
{
    __u16 family = sk->__sk_common.skc_family;
    return family == AF_INET || family == AF_INET6;
}

/* Addresses and ports from the socket, as client/server by `role`. */
static __always_inline void fill_tuple(struct link_ident *id, const struct sock *sk)
{
    __u16 family = sk->__sk_common.skc_family;
    __u16 lport = sk->__sk_common.skc_num;
    __u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);
    __u32 *local = (__u32 *)(id->role == ROLE_CLIENT ? id->cip : id->sip);
    __u32 *remote = (__u32 *)(id->role == ROLE_CLIENT ? id->sip : id->cip);
    id->family = family;
    if (family == AF_INET) {
        local[0] = sk->__sk_common.skc_rcv_saddr;
        remote[0] = sk->__sk_common.skc_daddr;
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            local[i] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[i];
            remote[i] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
        }
    }
    if (id->role == ROLE_CLIENT) {
        id->cport = lport;
        id->sport = rport;
    } else {
        id->cport = rport;
        id->sport = lport;
    }
}

/* The tcp_sock/sock counters into the link. Bytes are the kernel's: acknowledged by the
 * peer (tx) and received in order (rx), less our FIN once acknowledged and the peer's
 * FIN once received, so that they are the application's bytes; never decreasing (a
 * disconnect zeroes the kernel's counters). */
static __always_inline void snapshot(struct link *l, const struct tcp_sock *tp)
{
    const struct sock *sk = &tp->inet_conn.icsk_inet.sk;
    l->segs_in = tp->segs_in;
    l->segs_out = tp->segs_out;
    l->sk_drops = sk->sk_drops.counter;
    __u64 acked = tp->bytes_acked;
    __u64 received = tp->bytes_received;
    if (l->fin_sent && (__s32)(tp->snd_una - l->fin_seq) > 0 && acked > 0)
        acked -= 1;
    if ((sk->__sk_common.skc_flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) &&
        received > 0)
        received -= 1;
    if (acked > l->acked0 && acked - l->acked0 > l->tx_bytes)
        l->tx_bytes = acked - l->acked0;
    if (received > l->received0 && received - l->received0 > l->rx_bytes)
        l->rx_bytes = received - l->received0;
}

/* lost_out / sacked_out high water for the current period. */
static __always_inline void high_water(struct link *l, const struct tcp_sock *tp)
{
    __u32 lost = tp->lost_out;
    __u32 sacked = tp->sacked_out;
    __u32 e = epoch;
    if (l->hw_epoch != e) {
        l->hw_epoch = e;
        l->lost_out_hw = 0;
        l->sacked_out_hw = 0;
    }
    if (lost > l->lost_out_hw)
        l->lost_out_hw = lost;
    if (sacked > l->sacked_out_hw)
        l->sacked_out_hw = sacked;
}

/* A link of `sk` in the per-CPU scratch value, without owner: identity, tuple, and the
 * counters as they are now as its baseline. */
static __always_inline struct link *init_link(const struct sock *sk, const struct tcp_sock *tp,
                                              __u8 role)
{
    __u32 zero = 0;
    struct link *l = bpf_map_lookup_elem(&scratch, &zero);
    if (!l)
        return NULL;
    __builtin_memset(l, 0, sizeof(*l));
    __u64 *seq = bpf_map_lookup_elem(&id_seq, &zero);
    if (!seq)
        return NULL;
    *seq += 1;
    l->ident.id = ((__u64)(bpf_get_smp_processor_id() + 1) << 40) | *seq;
    l->ident.role = role;
    fill_tuple(&l->ident, sk);
    snapshot(l, tp);
    l->segs_in0 = l->segs_in;
    l->segs_out0 = l->segs_out;
    l->sk_drops0 = l->sk_drops;
    l->acked0 = tp->bytes_acked;
    l->received0 = tp->bytes_received;
    l->established = 1;
    return l;
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

/* An established socket of process `tgid` that is not a link yet becomes one: the
 * pending server socket it is, or else a socket older than the probe (server when its
 * local port is listening), counted from now. */
static __always_inline struct link *bind_socket(const struct sock *sk, const struct tcp_sock *tp,
                                                __u32 tgid, const struct task_struct *task)
{
    __u64 key = (__u64)sk;
    struct link *p = bpf_map_lookup_elem(&pending, &key);
    if (p)
        return bind_pending(key, p, tgid, task);
    __u32 port = sk->__sk_common.skc_num;
    __u8 role = bpf_map_lookup_elem(&listen_ports, &port) ? ROLE_SERVER : ROLE_CLIENT;
    struct link *l = init_link(sk, tp, role);
    if (!l)
        return NULL;
    set_owner(l, tgid, task);
    return insert_link(key, l);
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

/* A send/recv of `sk` that moved data, and `sk` is not a link yet: makes it one if it is
 * an established TCP socket of a snooped process. Cheapest rejections first: a
 * non-TCP socket, a state without a connection, a process out of scope. */
static __always_inline struct link *link_for_io(const struct sock *sk)
{
    if (sk->sk_protocol != IPPROTO_TCP)
        return NULL;
    __u8 state = sk->__sk_common.skc_state;
    if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT ||
        state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV)
        return NULL;
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return NULL;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
    if (!tp || !inet_family(sk))
        return NULL;
    return bind_socket(sk, tp, tgid, NULL);
}

/* A send/recv inside the delay window: stamps a send (its last byte's sequence number)
 * or ends a receive delay started by sk_data_ready. */
static __always_inline void on_io(struct sock *sk, int ret, int flags, bool tx)
{
    if (ret <= 0 || (!tx && (flags & MSG_PEEK)))
        return;
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l) {
        l = link_for_io(sk);
        if (!l)
            return;
    }
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
    if (!tp)
        return;
    if (tx) {
        if (l->tx_send_ns == 0 && bpf_jiffies64() >= l->tx_next_j) {
            l->tx_seq = tp->write_seq;
            l->tx_send_ns = bpf_ktime_get_ns();
        }
    } else if (l->rx_ready_ns) {
        end_delay(l, &l->rx_ready_ns, &l->rx_next_j, DELAY_RX);
    }
}

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

/* The sampled state of link `l` through the ring buffer. */
static __always_inline void send_sample(const struct link *l, const struct tcp_sock *tp)
{
    const struct sock *sk = &tp->inet_conn.icsk_inet.sk;
    struct rec_sample *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) {
        __sync_fetch_and_add(&ring_lost, 1);
        return;
    }
    __builtin_memset(r, 0, sizeof(*r));
    r->type = REC_SAMPLE;
    __builtin_memcpy(&r->ident, &l->ident, sizeof(r->ident));
    if (en_rtt) {
        r->srtt = tp->srtt_us >> 3;
        r->rcv_rtt = tp->rcv_rtt_est.rtt_us >> 3;
    }
    if (en_win) {
        __u32 write_seq = tp->write_seq;
        __u32 snd_nxt = tp->snd_nxt;
        __u32 snd_una = tp->snd_una;
        __u32 snd_wnd = tp->snd_wnd;
        __u32 in_flight = snd_nxt - snd_una;
        r->snd_cwnd = tp->snd_cwnd;
        r->notsent_bytes = write_seq - snd_nxt;
        r->notack_bytes = in_flight;
        r->reordering = tp->reordering;
        r->snd_wnd = snd_wnd;
        r->rcv_wnd = tp->rcv_wnd;
        r->avl_snd_wnd = snd_wnd > in_flight ? snd_wnd - in_flight : 0;
    }
    if (en_rate) {
        const struct inet_connection_sock *icsk = &tp->inet_conn;
        r->rto = jiffies_to_us(icsk->icsk_rto);
        r->ato = jiffies_to_us(BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ack.ato));
    }
    if (en_sockbuf) {
        r->sk_rcvbuf = sk->sk_rcvbuf;
        r->sk_sndbuf = sk->sk_sndbuf;
    }
    bpf_ringbuf_submit(r, 0);
}

/* One pass over every file of every task (run by user space every sample_period): each
 * established TCP socket of a snooped process is bound if it is not a link yet, its
 * counters are read, its windows counted, and its state sampled if it moved segments
 * since the last pass. */
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
    if (!sk || sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM ||
        !inet_family(sk))
        return 0;
    __u8 state = sk->__sk_common.skc_state;
    if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT ||
        state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV)
        return 0;
    __u32 tgid = task->tgid;
    if (!gala_snooped(tgid))
        return 0;
    /* sock->sk is not a trusted pointer: a typed cast for direct loads */
    const struct tcp_sock *tp = bpf_core_cast(sk, struct tcp_sock);
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l)
        l = bind_socket(sk, tp, tgid, task);
    if (!l || l->pass == pass_id)
        return 0;
    l->pass = pass_id;
    snapshot(l, tp);
    if (en_abn)
        high_water(l, tp);
    if (en_win) {
        l->win_events += 1;
        if (tp->snd_wnd == 0)
            l->zero_snd_wnd += 1;
        if (tp->rcv_wnd == 0)
            l->zero_rcv_wnd += 1;
    }
    __u32 segs = l->segs_in + l->segs_out;
    if (segs == l->sample_segs || !sampled_state())
        return 0;
    l->sample_segs = segs;
    send_sample(l, tp);
    return 0;
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

/* Fallbacks for kernels without the sock_*_length tracepoints (before 6.2). */
SEC("fexit/tcp_sendmsg")
int BPF_PROG(tcp_sendmsg_exit, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
    on_io(sk, ret, 0, true);
    return 0;
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(tcp_recvmsg_exit, struct sock *sk, struct msghdr *msg, size_t len, int flags,
             int *addr_len, int ret)
{
    on_io(sk, ret, flags, false);
    return 0;
}

/* Every segment processed in ESTABLISHED, inside the delay window: the ACK that ends a
 * send delay. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_ack, struct sock *sk, const struct sk_buff *skb)
{
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l || !l->tx_send_ns)
        return 0;
    const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)&skb->cb[0];
    __u32 ack = cb->ack_seq;
    if ((__s32)(ack - l->tx_seq) >= 0)
        end_delay(l, &l->tx_send_ns, &l->tx_next_j, DELAY_TX);
    return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retrans, const struct sock *sk, const struct sk_buff *skb, int err)
{
    if (err)
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
int BPF_PROG(tcp_send_rst, const struct sock *sk, const struct sk_buff *skb, int reason)
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

SEC("tp_btf/kfree_skb")
int BPF_PROG(tcp_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason,
             struct sock *rx_sk)
{
    int backlog = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_BACKLOG);
    int filter = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_FILTER);
    int mem = bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_PROTO_MEM);
    if (reason != backlog && reason != filter && reason != mem)
        return 0;
    struct sock *sk = rx_sk ? rx_sk : skb->sk;
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

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(tcp_err_report, const struct sock *sk)
{
    struct link *l = link_of(sk);
    if (l && sk->sk_err == ETIMEDOUT)
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
SEC("tp_btf/sk_data_ready")
int BPF_PROG(tcp_data_ready, const struct sock *sk)
{
    struct link *l = link_of(sk);
    if (!l || l->rx_ready_ns)
        return 0;
    if (bpf_jiffies64() >= l->rx_next_j)
        l->rx_ready_ns = bpf_ktime_get_ns();
    return 0;
}
