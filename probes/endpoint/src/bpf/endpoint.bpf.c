/* The endpoint probe: listen / connect / UDP endpoint health per process.
 *
 * Counters are aggregated in the kernel per endpoint key (cumulative; user space turns them
 * into per-period values); only the establishment latencies go through the ring buffer.
 *
 * Ownership. Hooks in process context (connect's SYN_SENT, listen's LISTEN, UDP send/recv)
 * check the snooper map with the current tgid and remember the owner: the connecting socket
 * in `ep_conn`, the listener in `ep_listen` (by netns, address, port), the UDP socket's inode
 * in `ep_udp_owner`. Hooks in softirq context (passive opens, drops, SYN-ACK retransmits)
 * only count for sockets found there. User space preloads the listeners and UDP sockets that
 * exist already (from /proc) and removes the entries of processes that left the scope. */
#include "gala.bpf.h"

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_UDPLITE_ 136
#define MSG_PEEK_ 2
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD

/* TOA ("TCP option address", docs/reference/probes.md §2): a load balancer in front of
 * the server puts the real client's port and IPv4 address into the SYN as TCP option kind
 * 254, length 8. */
#define TCPOPT_TOA 254
#define TCPOLEN_TOA 8
#define TCP_OPTS_MAX 40 /* bytes of TCP options at most */

/* The running kernel's version (libbpf fills it in from uname at load). */
extern int LINUX_KERNEL_VERSION __kconfig;

/* TCP states (include/net/tcp_states.h). */
#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_SYN_RECV 3
#define ST_CLOSE 7
#define ST_LISTEN 10

/* Enums rather than #defines so that they reach the object's BTF: user space takes them
 * from the skeleton (`types::ep_role`, `types::ep_counter`), as it takes the structs. */

/* `ep_tcp_key.role`. */
enum ep_role {
    ROLE_SERVER = 1,
    ROLE_CLIENT = 2,
};

/* Counter slots of `struct ep_tcp_val`. */
enum ep_counter {
    C_LISTEN_DROP = 0,     /* any drop with the listener as receiving socket */
    C_ACCEPT_OVERFLOW = 1, /* TCP_LISTEN_OVERFLOW: handshake ACK dropped, accept queue full */
    C_SYN_OVERFLOW = 2,    /* SYN queue full at a SYN (kprobe tcp_conn_request; none on 6.18) */
    C_PASSIVE_OPEN = 3,
    C_PASSIVE_FAIL = 4,
    C_RETRAN_SYNACK = 5,
    C_RETRAN_SYN = 6,
    C_REQ_DROP = 7, /* TCP_RESET on the listener: a pending request reset by the peer */
    C_ACTIVE_OPEN = 8,
    C_ACTIVE_FAIL = 9,
    C_SYN_SENT = 10,
    C_SYN_DROP = 11, /* the SYN skb dropped on its way out (neighbour, qdisc, netfilter) */
    C_SYNACK_SENT = 12, /* kprobe tcp_v4/v6_send_synack (none on 6.18) */
    C_NUM = 16,
};

#define MAX_ENDPOINTS 10240
#define MAX_LISTEN 4096
#define MAX_CONNECTING 16384

/* An address as 16 bytes: IPv4 in the first four (the record form), or IPv6. */
struct ep_addr16 {
    __u8 b[16];
};

/* Key of one TCP endpoint: server = listener (client zero), client = (client ip, server ip,
 * server port). A server endpoint's connections whose SYN carried a TOA address have their
 * own key: `toa` is that address's family (AF_INET) and `client` the address. */
struct ep_tcp_key {
    __u32 tgid;
    __u16 family;
    __u16 port;
    __u8 role;
    __u8 toa;
    __u8 pad[6];
    struct ep_addr16 client;
    struct ep_addr16 server;
};

struct ep_tcp_val {
    __u64 c[C_NUM];
};

/* Listener lookup key: netns, port, address normalised to IPv6 (IPv4 as ::ffff:a.b.c.d). */
struct ep_listen_key {
    __u32 netns;
    __u16 port;
    __u16 pad;
    struct ep_addr16 addr;
};

struct ep_listen_val {
    __u32 tgid;
    __u16 family;
    __u16 pad;
    struct ep_addr16 addr; /* record form */
    __u64 ino;
};

/* A pending handshake whose SYN carried a TOA address, by (netns, client address normalised
 * to IPv6, client port, server port). */
struct ep_toa_key {
    __u32 netns;
    __u16 cport;
    __u16 sport;
    struct ep_addr16 caddr;
};

struct ep_toa_val {
    __u8 addr[4];
};

struct ep_conn_val {
    struct ep_tcp_key key;
    __u64 ts;
};

struct ep_udp_key {
    __u32 tgid;
    __u16 family;
    __u16 lport;
    __u16 rport;
    __u16 pad[3];
    struct ep_addr16 laddr;
    struct ep_addr16 raddr;
};

struct ep_udp_val {
    __u64 drops;
    __u64 sends;
    __u64 rcvs;
};

/* A UDP drop on a socket without a known owner, for user space to resolve by inode. */
struct ep_udp_unowned_val {
    struct ep_udp_key key;
    __u64 drops;
};

/* Ring buffer record: one established connection and how long it took. */
struct ep_estab_rec {
    struct ep_tcp_key key;
    __u64 latency_ns;
};

/* Never touched by the programs: keeps the ring buffer record and the enums above in the
 * object's BTF (by value: a pointer would keep only a forward declaration), where the
 * skeleton's `types` module (src/bpf.rs) takes them from. */
struct ep_user_types {
    struct ep_estab_rec estab;
    enum ep_role role;
    enum ep_counter counter;
};
struct ep_user_types gala_user_types;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_LISTEN);
    __type(key, struct ep_listen_key);
    __type(value, struct ep_listen_val);
} ep_listen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_CONNECTING);
    __type(key, __u64);
    __type(value, struct ep_conn_val);
} ep_conn SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_ENDPOINTS);
    __type(key, struct ep_tcp_key);
    __type(value, struct ep_tcp_val);
} ep_tcp_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_ENDPOINTS);
    __type(key, __u64);
    __type(value, __u32);
} ep_udp_owner SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_ENDPOINTS);
    __type(key, struct ep_udp_key);
    __type(value, struct ep_udp_val);
} ep_udp_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u64);
    __type(value, struct ep_udp_unowned_val);
} ep_udp_unowned SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_CONNECTING);
    __type(key, struct ep_toa_key);
    __type(value, struct ep_toa_val);
} ep_toa SEC(".maps");

/* A UDP send or receive between its kprobe and its kretprobe (kernels without the
 * sock_send_length/sock_recv_length tracepoints), by thread. */
struct ep_udp_call {
    __u64 sk;
    __u32 peek;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_CONNECTING);
    __type(key, __u64);
    __type(value, struct ep_udp_call);
} ep_udp_calls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} ep_events SEC(".maps");

/* ---- socket helpers ---- */

/* The hooks get BTF-typed pointers: a direct load (CO-RE relocated) is cheaper than a probe
 * read, which matters on the paths that run for every send and receive of the host. */
static __always_inline __u16 sk_proto(const struct sock *sk)
{
    return sk->sk_protocol;
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
    return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u64 sk_ino(const struct sock *sk)
{
    return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/* The local address in record form. */
static __always_inline void sk_local(const struct sock *sk, __u16 family, struct ep_addr16 *out)
{
    if (family == AF_INET) {
        __be32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __builtin_memcpy(out->b, &a, 4);
    } else {
        bpf_core_read(out->b, 16, &sk->__sk_common.skc_v6_rcv_saddr);
    }
}

/* The peer address in record form. */
static __always_inline void sk_peer(const struct sock *sk, __u16 family, struct ep_addr16 *out)
{
    if (family == AF_INET) {
        __be32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(out->b, &a, 4);
    } else {
        bpf_core_read(out->b, 16, &sk->__sk_common.skc_v6_daddr);
    }
}

/* Record form → IPv6 form (IPv4 as ::ffff:a.b.c.d). */
static __always_inline void to_v6(__u16 family, const struct ep_addr16 *in, struct ep_addr16 *out)
{
    if (family == AF_INET) {
        __builtin_memset(out->b, 0, 10);
        out->b[10] = 0xff;
        out->b[11] = 0xff;
        __builtin_memcpy(&out->b[12], in->b, 4);
    } else {
        __builtin_memcpy(out->b, in->b, 16);
    }
}

static __always_inline bool is_v4_mapped(const struct ep_addr16 *a)
{
    __u64 lo;
    __u32 mid;
    __builtin_memcpy(&lo, a->b, 8);
    __builtin_memcpy(&mid, &a->b[8], 4);
    return lo == 0 && mid == bpf_htonl(0x0000ffff);
}

/* The listener a socket with this local address and port belongs to: the exact address
 * first, then the IPv4 wildcard (for IPv4 and mapped addresses), then the IPv6 wildcard. */
static __always_inline struct ep_listen_val *find_listener(const struct sock *sk)
{
    struct ep_listen_key k = {};
    struct ep_addr16 local = {};
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    struct ep_listen_val *v;

    k.netns = sk_netns(sk);
    k.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    sk_local(sk, family, &local);
    to_v6(family, &local, &k.addr);
    v = bpf_map_lookup_elem(&ep_listen, &k);
    if (v)
        return v;
    if (is_v4_mapped(&k.addr)) {
        __builtin_memset(&k.addr.b[12], 0, 4);
        v = bpf_map_lookup_elem(&ep_listen, &k);
        if (v)
            return v;
    }
    __builtin_memset(k.addr.b, 0, 16);
    return bpf_map_lookup_elem(&ep_listen, &k);
}

static __always_inline void server_key(const struct ep_listen_val *l, __u16 port, struct ep_tcp_key *key)
{
    key->tgid = l->tgid;
    key->family = l->family;
    key->port = port;
    key->role = ROLE_SERVER;
    key->server = l->addr;
}

static __always_inline void tcp_count(const struct ep_tcp_key *key, __u32 slot)
{
    struct ep_tcp_val *v = bpf_map_lookup_elem(&ep_tcp_stats, key);
    if (!v) {
        struct ep_tcp_val zero = {};
        bpf_map_update_elem(&ep_tcp_stats, key, &zero, BPF_NOEXIST);
        v = bpf_map_lookup_elem(&ep_tcp_stats, key);
        if (!v)
            return;
    }
    __sync_fetch_and_add(&v->c[slot & (C_NUM - 1)], 1);
}

/* Counts `slot` for the listener `sk` (a LISTEN socket) if it is watched. */
static __always_inline void listener_count(const struct sock *sk, __u32 slot)
{
    struct ep_listen_val *l = find_listener(sk);
    if (!l)
        return;
    struct ep_tcp_key key = {};
    server_key(l, BPF_CORE_READ(sk, __sk_common.skc_num), &key);
    tcp_count(&key, slot);
}

static __always_inline void emit_estab(const struct ep_tcp_key *key, __u64 latency_ns)
{
    struct ep_estab_rec *r = bpf_ringbuf_reserve(&ep_events, sizeof(*r), 0);
    if (!r)
        return;
    r->key = *key;
    r->latency_ns = latency_ns;
    bpf_ringbuf_submit(r, 0);
}

/* ---- TCP ---- */

static __always_inline void on_listen(const struct sock *sk)
{
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return;
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    struct ep_listen_key k = {};
    struct ep_listen_val v = {};
    k.netns = sk_netns(sk);
    k.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    sk_local(sk, family, &v.addr);
    to_v6(family, &v.addr, &k.addr);
    if (k.port == 0)
        return; /* listen() without bind(): the port comes later; the /proc preload finds it */
    v.tgid = tgid;
    v.family = family;
    v.ino = sk_ino(sk);
    bpf_map_update_elem(&ep_listen, &k, &v, BPF_ANY);
}

static __always_inline void on_unlisten(const struct sock *sk)
{
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    struct ep_listen_key k = {};
    struct ep_addr16 local = {};
    k.netns = sk_netns(sk);
    k.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    sk_local(sk, family, &local);
    to_v6(family, &local, &k.addr);
    struct ep_listen_val *v = bpf_map_lookup_elem(&ep_listen, &k);
    /* Another socket of a SO_REUSEPORT group may hold the entry: keep it then. */
    if (v && v->ino == sk_ino(sk))
        bpf_map_delete_elem(&ep_listen, &k);
}

static __always_inline void on_syn_sent(const struct sock *sk)
{
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return;
    __u64 skp = (__u64)sk;
    struct ep_conn_val c = {};
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    c.key.tgid = tgid;
    c.key.family = family;
    c.key.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    c.key.role = ROLE_CLIENT;
    sk_local(sk, family, &c.key.client);
    sk_peer(sk, family, &c.key.server);
    c.ts = bpf_ktime_get_ns();
    bpf_map_update_elem(&ep_conn, &skp, &c, BPF_ANY);
    tcp_count(&c.key, C_SYN_SENT);
}

static __always_inline void on_active_done(const struct sock *sk, bool ok)
{
    __u64 skp = (__u64)sk;
    struct ep_conn_val *c = bpf_map_lookup_elem(&ep_conn, &skp);
    if (!c)
        return;
    struct ep_tcp_key key = c->key;
    __u64 ts = c->ts;
    bpf_map_delete_elem(&ep_conn, &skp);
    tcp_count(&key, ok ? C_ACTIVE_OPEN : C_ACTIVE_FAIL);
    if (ok) {
        __u64 now = bpf_ktime_get_ns();
        if (now > ts)
            emit_estab(&key, now - ts);
    }
}

/* The TOA key of a connection: its listener's netns, the client's address and port, the
 * server port. */
static __always_inline void toa_key(__u32 netns, __u16 family, const struct ep_addr16 *client,
                                    __u16 cport, __u16 sport, struct ep_toa_key *k)
{
    k->netns = netns;
    k->cport = cport;
    k->sport = sport;
    to_v6(family, client, &k->caddr);
}

/* Moves `key` (a server key) to its TOA endpoint when the connection's SYN carried a TOA
 * address; `take`: the handshake is over, forget the entry. */
static __always_inline void apply_toa(const struct ep_toa_key *k, struct ep_tcp_key *key, bool take)
{
    struct ep_toa_val *t = bpf_map_lookup_elem(&ep_toa, k);
    if (!t)
        return;
    key->toa = AF_INET;
    __builtin_memcpy(key->client.b, t->addr, 4);
    if (take)
        bpf_map_delete_elem(&ep_toa, k);
}

static __always_inline void on_passive_done(const struct sock *sk, bool ok)
{
    struct ep_listen_val *l = find_listener(sk);
    if (!l)
        return;
    struct ep_tcp_key key = {};
    server_key(l, BPF_CORE_READ(sk, __sk_common.skc_num), &key);
    struct ep_toa_key tk = {};
    struct ep_addr16 peer = {};
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    sk_peer(sk, family, &peer);
    toa_key(sk_netns(sk), family, &peer, bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)),
            key.port, &tk);
    apply_toa(&tk, &key, true);
    tcp_count(&key, ok ? C_PASSIVE_OPEN : C_PASSIVE_FAIL);
    if (ok) {
        /* The kernel's handshake RTT sample: SYN-ACK sent → ACK received (srtt_us is <<3). */
        __u32 srtt = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
        if (srtt)
            emit_estab(&key, (__u64)srtt * 1000);
    }
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ep_state, const struct sock *sk, const int oldstate, const int newstate)
{
    if (sk_proto(sk) != IPPROTO_TCP_)
        return 0;
    if (newstate == ST_LISTEN) {
        on_listen(sk);
    } else if (oldstate == ST_LISTEN) {
        /* LISTEN → SYN_RECV is a child being cloned from its listener: not a close. */
        if (newstate == ST_CLOSE)
            on_unlisten(sk);
    } else if (newstate == ST_SYN_SENT) {
        on_syn_sent(sk);
    } else if (oldstate == ST_SYN_SENT) {
        on_active_done(sk, newstate == ST_ESTABLISHED);
    } else if (oldstate == ST_SYN_RECV) {
        on_passive_done(sk, newstate == ST_ESTABLISHED);
    }
    return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(ep_synack_retrans, const struct sock *sk, const struct request_sock *req)
{
    listener_count(sk, C_RETRAN_SYNACK);
    return 0;
}

/* Set by user space before load: `ep_retrans_kp` is loaded (kprobes). */
const volatile bool retrans_kprobe = false;

/* Whether the tcp_retransmit_skb tracepoint fires for failed retransmits too: it gained
 * their `err` (6.x; before, it fired after a successful send only, so a SYN dropped on its
 * way out was never seen there). */
#define RETRANS_TP_SEES_FAILURES bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err)

static __always_inline void syn_retransmit(const struct sock *sk)
{
    if (BPF_CORE_READ(sk, __sk_common.skc_state) != ST_SYN_SENT)
        return;
    __u64 skp = (__u64)sk;
    struct ep_conn_val *c = bpf_map_lookup_elem(&ep_conn, &skp);
    if (c)
        tcp_count(&c->key, C_RETRAN_SYN);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(ep_retrans, const struct sock *sk, const struct sk_buff *skb)
{
    /* Where the tracepoint sees successes only, the kprobe (if loaded) counts every try. */
    if (retrans_kprobe && !RETRANS_TP_SEES_FAILURES)
        return 0;
    syn_retransmit(sk);
    return 0;
}

/* The value of drop reason `name` on this kernel; `none` where it does not exist. */
#define DROP_REASON(name, none)                                                               \
    (bpf_core_enum_value_exists(enum skb_drop_reason, name)                                   \
         ? (__u32)bpf_core_enum_value(enum skb_drop_reason, name)                             \
         : (__u32)(none))

/* The tracepoint's arguments grew: `reason` in 5.17, `rx_sk` (the receiving socket) in 6.11.
 * Only the arguments this kernel passes are read — the verifier refuses a read past the last
 * one; the CO-RE checks are constants at load time, so the other branches are dead code. On
 * kernels without `rx_sk` the listener's drops come from sock_diag (listendrop) and the
 * kprobes below (accept_overflow); what stays here is `syn_drop`. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(ep_drop, struct sk_buff *skb, void *location)
{
    __u32 reason = 0;
    bool has_reason = false;
    struct sock *rx_sk = NULL;
    if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk)) {
        reason = (__u32)ctx[2];
        rx_sk = (struct sock *)ctx[3];
        has_reason = true;
    } else if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason)) {
        reason = (__u32)ctx[2];
        has_reason = true;
    }
    /* Not dropped (0), or consumed where consumed skbs come here too (SKB_CONSUMED). */
    if (has_reason && reason <= DROP_REASON(SKB_CONSUMED, 0))
        return 0;
    if (rx_sk) {
        if (sk_proto(rx_sk) != IPPROTO_TCP_ ||
            BPF_CORE_READ(rx_sk, __sk_common.skc_state) != ST_LISTEN)
            return 0;
        struct ep_listen_val *l = find_listener(rx_sk);
        if (!l)
            return 0;
        struct ep_tcp_key key = {};
        server_key(l, BPF_CORE_READ(rx_sk, __sk_common.skc_num), &key);
        tcp_count(&key, C_LISTEN_DROP);
        if (reason == DROP_REASON(SKB_DROP_REASON_TCP_LISTEN_OVERFLOW, ~0U))
            tcp_count(&key, C_ACCEPT_OVERFLOW);
        else if (reason == DROP_REASON(SKB_DROP_REASON_TCP_RESET, ~0U))
            tcp_count(&key, C_REQ_DROP);
        return 0;
    }
    /* An outgoing SYN of a watched connect dropped before it left (no receiving socket). */
    struct sock *sk = BPF_CORE_READ(skb, sk);
    if (!sk || BPF_CORE_READ(sk, __sk_common.skc_state) != ST_SYN_SENT)
        return 0;
    __u64 skp = (__u64)sk;
    struct ep_conn_val *c = bpf_map_lookup_elem(&ep_conn, &skp);
    if (c)
        tcp_count(&c->key, C_SYN_DROP);
    return 0;
}

/* ---- UDP ---- */

static __always_inline bool is_udp(const struct sock *sk)
{
    __u16 p = sk_proto(sk);
    return p == IPPROTO_UDP_ || p == IPPROTO_UDPLITE_;
}

static __always_inline void udp_key_of(const struct sock *sk, __u32 tgid, struct ep_udp_key *k)
{
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    k->tgid = tgid;
    k->family = family;
    k->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
    k->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    sk_local(sk, family, &k->laddr);
    sk_peer(sk, family, &k->raddr);
}

static __always_inline struct ep_udp_val *udp_val_of(const struct ep_udp_key *k)
{
    struct ep_udp_val *v = bpf_map_lookup_elem(&ep_udp_stats, k);
    if (v)
        return v;
    struct ep_udp_val zero = {};
    bpf_map_update_elem(&ep_udp_stats, k, &zero, BPF_NOEXIST);
    return bpf_map_lookup_elem(&ep_udp_stats, k);
}

/* Counts `ret` bytes sent or received on UDP socket `sk` by snooped process `tgid`. */
static __always_inline void udp_account(const struct sock *sk, int ret, bool send, __u32 tgid)
{
    __u64 ino = sk_ino(sk);
    if (ino) {
        __u32 *owner = bpf_map_lookup_elem(&ep_udp_owner, &ino);
        if (!owner || *owner != tgid)
            bpf_map_update_elem(&ep_udp_owner, &ino, &tgid, BPF_ANY);
    }
    struct ep_udp_key k = {};
    udp_key_of(sk, tgid, &k);
    struct ep_udp_val *v = udp_val_of(&k);
    if (!v)
        return;
    if (send)
        __sync_fetch_and_add(&v->sends, (__u64)ret);
    else
        __sync_fetch_and_add(&v->rcvs, (__u64)ret);
}

static __always_inline void udp_io(const struct sock *sk, int ret, bool send)
{
    if (ret <= 0 || !is_udp(sk))
        return;
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return;
    udp_account(sk, ret, send, tgid);
}

/* UDP sockets made by processes in scope (read by user space, which attaches the UDP
 * send/recv programs only while a process in scope has a UDP socket). */
__u64 udp_created = 0;

/* socket(2) anywhere under the cgroup v2 root: counts the UDP sockets of processes in
 * scope. Never refuses a socket. */
SEC("cgroup/sock_create")
int ep_udp_create(struct bpf_sock *ctx)
{
    if ((ctx->protocol == IPPROTO_UDP_ || ctx->protocol == IPPROTO_UDPLITE_) &&
        gala_snooped(gala_tgid()))
        __sync_fetch_and_add(&udp_created, 1);
    return 1;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ep_udp_send, struct sock *sk, int ret, int flags)
{
    udp_io(sk, ret, true);
    return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ep_udp_recv, struct sock *sk, int ret, int flags)
{
    if (flags & MSG_PEEK_)
        return 0;
    udp_io(sk, ret, false);
    return 0;
}

/* A datagram the receive queue of `sk` refused (full buffer, no memory). */
static __always_inline void udp_drop(const struct sock *sk)
{
    if (!sk)
        return;
    __u64 ino = sk_ino(sk);
    __u32 *owner = bpf_map_lookup_elem(&ep_udp_owner, &ino);
    struct ep_udp_key k = {};
    if (owner) {
        udp_key_of(sk, *owner, &k);
        struct ep_udp_val *v = udp_val_of(&k);
        if (v)
            __sync_fetch_and_add(&v->drops, 1);
        return;
    }
    if (!ino)
        return;
    struct ep_udp_unowned_val *u = bpf_map_lookup_elem(&ep_udp_unowned, &ino);
    if (!u) {
        struct ep_udp_unowned_val fresh = {};
        udp_key_of(sk, 0, &fresh.key);
        bpf_map_update_elem(&ep_udp_unowned, &ino, &fresh, BPF_NOEXIST);
        u = bpf_map_lookup_elem(&ep_udp_unowned, &ino);
        if (!u)
            return;
    }
    __sync_fetch_and_add(&u->drops, 1);
}

/* (rc, sk) on every kernel; 6.10 added the skb, not read here. */
SEC("tp_btf/udp_fail_queue_rcv_skb")
int BPF_PROG(ep_udp_drop, int rc, struct sock *sk)
{
    udp_drop(sk);
    return 0;
}

/* Fallback where fexit loads: the enqueue's error return is the drop. */
SEC("fexit/__udp_enqueue_schedule_skb")
int BPF_PROG(ep_udp_drop_fexit, struct sock *sk, struct sk_buff *skb, int ret)
{
    if (ret < 0)
        udp_drop(sk);
    return 0;
}

/* ---- kprobe fallbacks: kernels without the tracepoints above (5.10, 6.1) ---- */

/* UDP bytes where sock_send_length/sock_recv_length (6.3+) are missing: the entry remembers
 * the socket of a snooped caller, the return counts what it moved. UDP-Lite shares these
 * functions; a v4-mapped send through udpv6_sendmsg nests udp_sendmsg, whose return takes the
 * entry, so it counts once. */
static __always_inline void udp_call_enter(const struct sock *sk, __u32 peek)
{
    if (!gala_snooped(gala_tgid()))
        return;
    __u64 id = bpf_get_current_pid_tgid();
    struct ep_udp_call c = {};
    c.sk = (__u64)sk;
    c.peek = peek;
    bpf_map_update_elem(&ep_udp_calls, &id, &c, BPF_ANY);
}

static __always_inline void udp_call_exit(int ret, bool send)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct ep_udp_call *c = bpf_map_lookup_elem(&ep_udp_calls, &id);
    if (!c)
        return;
    const struct sock *sk = (const struct sock *)c->sk;
    __u32 peek = c->peek;
    bpf_map_delete_elem(&ep_udp_calls, &id);
    if (ret > 0 && !peek)
        udp_account(sk, ret, send, id >> 32);
}

/* recvmsg's flags: 5.19 dropped the `noblock` argument before them. Both registers are read
 * as they are (the barriers keep the compiler from choosing the context offset instead, a
 * modified context pointer the verifier refuses). */
static __always_inline __u32 recv_peek(struct pt_regs *ctx)
{
    unsigned long p4 = PT_REGS_PARM4(ctx);
    unsigned long p5 = PT_REGS_PARM5(ctx);
    barrier_var(p4);
    barrier_var(p5);
    unsigned long flags = LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 19, 0) ? p4 : p5;
    return (flags & MSG_PEEK_) != 0;
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(ep_udp_send_kp, struct sock *sk)
{
    udp_call_enter(sk, 0);
    return 0;
}

SEC("kretprobe/udp_sendmsg")
int BPF_KRETPROBE(ep_udp_send_kret, int ret)
{
    udp_call_exit(ret, true);
    return 0;
}

SEC("kprobe/udpv6_sendmsg")
int BPF_KPROBE(ep_udp6_send_kp, struct sock *sk)
{
    udp_call_enter(sk, 0);
    return 0;
}

SEC("kretprobe/udpv6_sendmsg")
int BPF_KRETPROBE(ep_udp6_send_kret, int ret)
{
    udp_call_exit(ret, true);
    return 0;
}

SEC("kprobe/udp_recvmsg")
int BPF_KPROBE(ep_udp_recv_kp, struct sock *sk)
{
    udp_call_enter(sk, recv_peek(ctx));
    return 0;
}

SEC("kretprobe/udp_recvmsg")
int BPF_KRETPROBE(ep_udp_recv_kret, int ret)
{
    udp_call_exit(ret, false);
    return 0;
}

SEC("kprobe/udpv6_recvmsg")
int BPF_KPROBE(ep_udp6_recv_kp, struct sock *sk)
{
    udp_call_enter(sk, recv_peek(ctx));
    return 0;
}

SEC("kretprobe/udpv6_recvmsg")
int BPF_KRETPROBE(ep_udp6_recv_kret, int ret)
{
    udp_call_exit(ret, false);
    return 0;
}

/* The TOA address in the TCP options of SYN `skb`, if any, remembered for the connection
 * (its SYN-ACKs and the end of its handshake count on the TOA endpoint). Options: kind 0
 * ends, kind 1 is one byte, the others carry their length. */
static __always_inline void toa_record(const struct sock *listener, const struct sk_buff *skb)
{
    unsigned char *head = BPF_CORE_READ(skb, head);
    __u16 nh = BPF_CORE_READ(skb, network_header);
    __u16 thoff = BPF_CORE_READ(skb, transport_header);
    __u16 proto = BPF_CORE_READ(skb, protocol);
    struct ep_addr16 client = {};
    __u16 family;
    if (proto == bpf_htons(ETH_P_IP_)) {
        family = AF_INET;
        if (bpf_probe_read_kernel(client.b, 4, head + nh + 12))
            return;
    } else if (proto == bpf_htons(ETH_P_IPV6_)) {
        family = AF_INET6;
        if (bpf_probe_read_kernel(client.b, 16, head + nh + 8))
            return;
    } else {
        return;
    }
    __u8 th[20];
    if (bpf_probe_read_kernel(th, sizeof(th), head + thoff))
        return;
    int len = (th[12] >> 4) * 4 - (int)sizeof(th);
    if (len <= 0 || len > TCP_OPTS_MAX)
        return;
    /* Read from the packet option by option: a variable offset into a stack buffer is only
     * allowed from 5.12. */
    const unsigned char *opts = head + thoff + sizeof(th);
    int i = 0;
    for (int n = 0; n < TCP_OPTS_MAX; n++) {
        if (i >= len)
            return;
        __u8 hdr[2] = {};
        if (bpf_probe_read_kernel(hdr, sizeof(hdr), opts + i))
            return;
        if (hdr[0] == 0)
            return;
        if (hdr[0] == 1) {
            i++;
            continue;
        }
        if (hdr[1] < 2 || i + hdr[1] > len)
            return;
        if (hdr[0] == TCPOPT_TOA && hdr[1] == TCPOLEN_TOA) {
            struct ep_toa_val v = {};
            if (bpf_probe_read_kernel(v.addr, sizeof(v.addr), opts + i + 4))
                return;
            struct ep_toa_key k = {};
            toa_key(sk_netns(listener), family, &client, ((__u16)th[0] << 8) | th[1],
                    ((__u16)th[2] << 8) | th[3], &k);
            bpf_map_update_elem(&ep_toa, &k, &v, BPF_ANY);
            return;
        }
        i += hdr[1];
    }
}

/* A SYN reaching a listener (every family: the v4 and v6 conn_request both call it).
 * `inet_csk_reqsk_queue_is_full`: the SYN queue holds as many requests as the backlog
 * allows — the kernel then answers with a syncookie or drops the SYN. */
SEC("kprobe/tcp_conn_request")
int BPF_KPROBE(ep_conn_request, void *rsk_ops, void *af_ops, struct sock *sk, struct sk_buff *skb)
{
    struct ep_listen_val *l = find_listener(sk);
    if (!l)
        return 0;
    struct ep_tcp_key key = {};
    server_key(l, BPF_CORE_READ(sk, __sk_common.skc_num), &key);
    __u32 qlen = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
    __u32 max = BPF_CORE_READ(sk, sk_max_ack_backlog);
    if (qlen >= max)
        tcp_count(&key, C_SYN_OVERFLOW);
    toa_record(sk, skb);
    return 0;
}

/* A SYN-ACK about to be sent for request `req` of listener `sk` (first sends and
 * retransmits, syncookies included). */
static __always_inline void synack_sent(const struct sock *sk, const struct request_sock *req)
{
    struct ep_listen_val *l = find_listener(sk);
    if (!l)
        return;
    struct ep_tcp_key key = {};
    server_key(l, BPF_CORE_READ(sk, __sk_common.skc_num), &key);
    __u16 family = BPF_CORE_READ(req, __req_common.skc_family);
    struct ep_addr16 client = {};
    if (family == AF_INET) {
        __be32 a = BPF_CORE_READ(req, __req_common.skc_daddr);
        __builtin_memcpy(client.b, &a, 4);
    } else {
        bpf_core_read(client.b, 16, &req->__req_common.skc_v6_daddr);
    }
    struct ep_toa_key tk = {};
    toa_key(sk_netns(sk), family, &client, bpf_ntohs(BPF_CORE_READ(req, __req_common.skc_dport)),
            key.port, &tk);
    apply_toa(&tk, &key, false);
    tcp_count(&key, C_SYNACK_SENT);
}

SEC("kprobe/tcp_v4_send_synack")
int BPF_KPROBE(ep_synack_v4, const struct sock *sk, void *dst, void *fl, struct request_sock *req)
{
    synack_sent(sk, req);
    return 0;
}

SEC("kprobe/tcp_v6_send_synack")
int BPF_KPROBE(ep_synack_v6, const struct sock *sk, void *dst, void *fl, struct request_sock *req)
{
    synack_sent(sk, req);
    return 0;
}

/* The handshake's ACK creating the child: with the accept queue full the kernel drops it
 * (LISTENOVERFLOWS), what 6.11+ kernels report to kfree_skb as TCP_LISTEN_OVERFLOW with the
 * listener — where they do, `ep_drop` counts it and this does nothing. */
static __always_inline void syn_recv_sock(const struct sock *sk)
{
    if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
        return;
    __u32 backlog = BPF_CORE_READ(sk, sk_ack_backlog);
    __u32 max = BPF_CORE_READ(sk, sk_max_ack_backlog);
    if (backlog > max)
        listener_count(sk, C_ACCEPT_OVERFLOW);
}

SEC("kprobe/tcp_v4_syn_recv_sock")
int BPF_KPROBE(ep_syn_recv_v4, const struct sock *sk)
{
    syn_recv_sock(sk);
    return 0;
}

/* An IPv4 packet on an IPv6 listener goes on to tcp_v4_syn_recv_sock: counted there. */
SEC("kprobe/tcp_v6_syn_recv_sock")
int BPF_KPROBE(ep_syn_recv_v6, const struct sock *sk, struct sk_buff *skb)
{
    if (BPF_CORE_READ(skb, protocol) == bpf_htons(ETH_P_IPV6_))
        syn_recv_sock(sk);
    return 0;
}

/* Every retransmit try, failed ones included, on kernels whose tracepoint sees only the
 * successful ones (see RETRANS_TP_SEES_FAILURES); elsewhere it returns at once. */
SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(ep_retrans_kp, struct sock *sk)
{
    if (RETRANS_TP_SEES_FAILURES)
        return 0;
    syn_retransmit(sk);
    return 0;
}
