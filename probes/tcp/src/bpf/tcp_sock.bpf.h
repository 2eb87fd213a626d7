/* tcpprobe: the helpers that read a socket's fields, included twice by tcp.bpf.c:
 *
 * - `RD(p, field)` a direct CO-RE load, `FN(name)` the name as is: for the programs
 *   whose socket is a trusted BTF pointer (tracepoint arguments, `bpf_skc_to_tcp_sock()`,
 *   `bpf_sock_from_file()` + `bpf_core_cast()` in the socket pass): no helper call per
 *   field;
 * - `RD(p, field)` a CO-RE probe read (`BPF_CORE_READ`), `FN(name)` = `name_probed`: for
 *   the socket pass of kernels without `bpf_sock_from_file()` and `bpf_rdonly_cast()`
 *   (before 5.11 / 6.2), which finds the socket through `file->private_data`, an
 *   untrusted pointer the verifier lets it read only through the helper.
 *
 * No include guard: each inclusion defines one flavour. */

static __always_inline bool FN(inet_family)(const struct sock *sk)
{
    __u16 family = RD(sk, __sk_common.skc_family);
    return family == AF_INET || family == AF_INET6;
}

/* Addresses and ports from the socket, as client/server by `role`. */
static __always_inline void FN(fill_tuple)(struct link_ident *id, const struct sock *sk)
{
    __u16 family = RD(sk, __sk_common.skc_family);
    __u16 lport = RD(sk, __sk_common.skc_num);
    __u16 rport = bpf_ntohs(RD(sk, __sk_common.skc_dport));
    __u32 *local = (__u32 *)(id->role == ROLE_CLIENT ? id->cip : id->sip);
    __u32 *remote = (__u32 *)(id->role == ROLE_CLIENT ? id->sip : id->cip);
    id->family = family;
    if (family == AF_INET) {
        local[0] = RD(sk, __sk_common.skc_rcv_saddr);
        remote[0] = RD(sk, __sk_common.skc_daddr);
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            local[i] = RD(sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[i]);
            remote[i] = RD(sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32[i]);
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
static __always_inline void FN(snapshot)(struct link *l, const struct tcp_sock *tp)
{
    const struct sock *sk = &tp->inet_conn.icsk_inet.sk;
    l->segs_in = RD(tp, segs_in);
    l->segs_out = RD(tp, segs_out);
    l->sk_drops = RD(sk, sk_drops.counter);
    __u64 acked = RD(tp, bytes_acked);
    __u64 received = RD(tp, bytes_received);
    if (l->fin_sent && (__s32)(RD(tp, snd_una) - l->fin_seq) > 0 && acked > 0)
        acked -= 1;
    if ((RD(sk, __sk_common.skc_flags) &
         (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) &&
        received > 0)
        received -= 1;
    if (acked > l->acked0 && acked - l->acked0 > l->tx_bytes)
        l->tx_bytes = acked - l->acked0;
    if (received > l->received0 && received - l->received0 > l->rx_bytes)
        l->rx_bytes = received - l->received0;
}

/* lost_out / sacked_out high water for the current period. */
static __always_inline void FN(high_water)(struct link *l, const struct tcp_sock *tp)
{
    __u32 lost = RD(tp, lost_out);
    __u32 sacked = RD(tp, sacked_out);
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
static __always_inline struct link *FN(init_link)(const struct sock *sk,
                                                  const struct tcp_sock *tp, __u8 role)
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
    FN(fill_tuple)(&l->ident, sk);
    FN(snapshot)(l, tp);
    l->segs_in0 = l->segs_in;
    l->segs_out0 = l->segs_out;
    l->sk_drops0 = l->sk_drops;
    l->acked0 = RD(tp, bytes_acked);
    l->received0 = RD(tp, bytes_received);
    l->established = 1;
    return l;
}

/* An established socket of process `tgid` that is not a link yet becomes one: the
 * pending server socket it is, or else a socket older than the probe (server when its
 * local port is listening), counted from now. */
static __always_inline struct link *FN(bind_socket)(const struct sock *sk,
                                                    const struct tcp_sock *tp, __u32 tgid,
                                                    const struct task_struct *task)
{
    __u64 key = (__u64)sk;
    struct link *p = bpf_map_lookup_elem(&pending, &key);
    if (p)
        return bind_pending(key, p, tgid, task);
    __u32 port = RD(sk, __sk_common.skc_num);
    __u8 role = bpf_map_lookup_elem(&listen_ports, &port) ? ROLE_SERVER : ROLE_CLIENT;
    struct link *l = FN(init_link)(sk, tp, role);
    if (!l)
        return NULL;
    set_owner(l, tgid, task);
    return insert_link(key, l);
}

/* The sampled state of link `l` through the ring buffer. */
static __always_inline void FN(send_sample)(const struct link *l, const struct tcp_sock *tp)
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
        r->srtt = RD(tp, srtt_us) >> 3;
        r->rcv_rtt = RD(tp, rcv_rtt_est.rtt_us) >> 3;
    }
    if (en_win) {
        __u32 write_seq = RD(tp, write_seq);
        __u32 snd_nxt = RD(tp, snd_nxt);
        __u32 snd_una = RD(tp, snd_una);
        __u32 snd_wnd = RD(tp, snd_wnd);
        __u32 in_flight = snd_nxt - snd_una;
        r->snd_cwnd = RD(tp, snd_cwnd);
        r->notsent_bytes = write_seq - snd_nxt;
        r->notack_bytes = in_flight;
        r->reordering = RD(tp, reordering);
        r->snd_wnd = snd_wnd;
        r->rcv_wnd = RD(tp, rcv_wnd);
        r->avl_snd_wnd = snd_wnd > in_flight ? snd_wnd - in_flight : 0;
    }
    if (en_rate) {
        const struct inet_connection_sock *icsk = &tp->inet_conn;
        r->rto = jiffies_to_us(RD(icsk, icsk_rto));
        r->ato = jiffies_to_us(BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ack.ato));
    }
    if (en_sockbuf) {
        r->sk_rcvbuf = RD(sk, sk_rcvbuf);
        r->sk_sndbuf = RD(sk, sk_sndbuf);
    }
    bpf_ringbuf_submit(r, 0);
}

/* One socket file of `task` in the socket pass: an established TCP socket of a snooped
 * process is bound if it is not a link yet, its counters are read, its windows counted,
 * and its state sampled if it moved segments since the last pass. */
static __always_inline int FN(pass_socket)(const struct task_struct *task, const struct sock *sk,
                                           const struct tcp_sock *tp)
{
    if (!sk || RD(sk, sk_protocol) != IPPROTO_TCP || RD(sk, sk_type) != SOCK_STREAM ||
        !FN(inet_family)(sk))
        return 0;
    __u8 state = RD(sk, __sk_common.skc_state);
    if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT ||
        state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV)
        return 0;
    __u32 tgid = RD(task, tgid);
    if (!gala_snooped(tgid))
        return 0;
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l)
        l = FN(bind_socket)(sk, tp, tgid, task);
    if (!l || l->pass == pass_id)
        return 0;
    l->pass = pass_id;
    FN(snapshot)(l, tp);
    if (en_abn)
        FN(high_water)(l, tp);
    if (en_win) {
        l->win_events += 1;
        if (RD(tp, snd_wnd) == 0)
            l->zero_snd_wnd += 1;
        if (RD(tp, rcv_wnd) == 0)
            l->zero_rcv_wnd += 1;
    }
    __u32 segs = l->segs_in + l->segs_out;
    if (segs == l->sample_segs || !sampled_state())
        return 0;
    l->sample_segs = segs;
    FN(send_sample)(l, tp);
    return 0;
}

/* A send/recv of `sk` that moved data, and `sk` is not a link yet: makes it one if it is
 * an established TCP socket of a snooped process. Cheapest rejections first: a
 * non-TCP socket, a state without a connection, a process out of scope. */
static __always_inline struct link *FN(link_for_io)(const struct sock *sk)
{
    if (RD(sk, sk_protocol) != IPPROTO_TCP || RD(sk, sk_type) != SOCK_STREAM)
        return NULL;
    __u8 state = RD(sk, __sk_common.skc_state);
    if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT ||
        state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV)
        return NULL;
    __u32 tgid = gala_tgid();
    if (!gala_snooped(tgid))
        return NULL;
    const struct tcp_sock *tp = TCP_SK(sk);
    if (!tp || !FN(inet_family)(sk))
        return NULL;
    return FN(bind_socket)(sk, tp, tgid, NULL);
}

/* A send/recv inside the delay window: stamps a send (its last byte's sequence number)
 * or ends a receive delay started by sk_data_ready. */
static __always_inline void FN(on_io)(struct sock *sk, int ret, int flags, bool tx)
{
    if (ret <= 0 || (!tx && (flags & MSG_PEEK)) || !delay_open)
        return;
    __u64 key = (__u64)sk;
    struct link *l = bpf_map_lookup_elem(&links, &key);
    if (!l) {
        l = FN(link_for_io)(sk);
        if (!l)
            return;
    }
    const struct tcp_sock *tp = TCP_SK(sk);
    if (!tp)
        return;
    if (tx) {
        if (l->tx_send_ns == 0 && bpf_jiffies64() >= l->tx_next_j) {
            l->tx_seq = RD(tp, write_seq);
            l->tx_send_ns = bpf_ktime_get_ns();
        }
    } else if (l->rx_ready_ns) {
        end_delay(l, &l->rx_ready_ns, &l->rx_next_j, DELAY_RX);
    }
}
