//! The records and map entries shared with `bpf/endpoint.bpf.c` — Rust-side types read from
//! and written as the skeleton's generated `types` (by field name, never by hand-copied
//! layout) —, the counter slots and roles (C enums, through BTF), and the sub-items with the
//! hooks each needs.

use gala_ebpf::{read_pod, Need, Pod, Prog, Subitem};

use crate::skel::types;

/// `role` of a server endpoint (a listener).
pub const ROLE_SERVER: u8 = types::ep_role::ROLE_SERVER.0 as u8;
/// `role` of a client endpoint (connect).
pub const ROLE_CLIENT: u8 = types::ep_role::ROLE_CLIENT.0 as u8;

/// The counter slots of [`TcpVal`] (`enum ep_counter`).
const fn slot(c: types::ep_counter) -> usize {
    c.0 as usize
}
/// Number of counter slots in [`TcpVal`].
pub const C_NUM: usize = slot(types::ep_counter::C_NUM);
/// Drops with the listener as receiving socket (any reason).
pub const C_LISTEN_DROP: usize = slot(types::ep_counter::C_LISTEN_DROP);
/// `TCP_LISTEN_OVERFLOW`: the handshake's ACK dropped, accept queue full.
pub const C_ACCEPT_OVERFLOW: usize = slot(types::ep_counter::C_ACCEPT_OVERFLOW);
/// SYNs that found the SYN queue full (`tcp_conn_request`).
pub const C_SYN_OVERFLOW: usize = slot(types::ep_counter::C_SYN_OVERFLOW);
/// Passive opens (`SYN_RECV → ESTABLISHED`).
pub const C_PASSIVE_OPEN: usize = slot(types::ep_counter::C_PASSIVE_OPEN);
/// Failed passive opens (`SYN_RECV →` anything else).
pub const C_PASSIVE_FAIL: usize = slot(types::ep_counter::C_PASSIVE_FAIL);
/// SYN-ACK retransmissions of the listener.
pub const C_RETRAN_SYNACK: usize = slot(types::ep_counter::C_RETRAN_SYNACK);
/// SYN retransmissions of a connect.
pub const C_RETRAN_SYN: usize = slot(types::ep_counter::C_RETRAN_SYN);
/// `TCP_RESET` on the listener: a pending request reset by the peer.
pub const C_REQ_DROP: usize = slot(types::ep_counter::C_REQ_DROP);
/// Active opens (`SYN_SENT → ESTABLISHED`).
pub const C_ACTIVE_OPEN: usize = slot(types::ep_counter::C_ACTIVE_OPEN);
/// Failed active opens (`SYN_SENT → CLOSE`).
pub const C_ACTIVE_FAIL: usize = slot(types::ep_counter::C_ACTIVE_FAIL);
/// SYNs sent (`CLOSE → SYN_SENT`).
pub const C_SYN_SENT: usize = slot(types::ep_counter::C_SYN_SENT);
/// SYNs dropped on their way out.
pub const C_SYN_DROP: usize = slot(types::ep_counter::C_SYN_DROP);
/// SYN-ACKs sent (`tcp_v4/v6_send_synack`).
pub const C_SYNACK_SENT: usize = slot(types::ep_counter::C_SYNACK_SENT);

/// A map key or value, or a ring buffer record, read from its twin in the skeleton's
/// `types` (generated from the object's BTF), field by field by name: a field moved in C
/// cannot be misread, and a field added in C breaks the build here (the patterns are
/// exhaustive).
pub trait FromBpf: Sized {
    /// The generated type.
    type Raw: Pod;
    /// The Rust-side value of `raw`.
    fn from_bpf(raw: &Self::Raw) -> Self;
}

/// A map key or value written to the BPF side as its twin in the skeleton's `types`
/// (a struct literal naming every field: a field added in C breaks the build here).
pub trait ToBpf {
    /// The generated type.
    type Raw: Pod;
    /// The BPF-side value.
    fn to_bpf(&self) -> Self::Raw;
}

/// Reads a [`FromBpf`] value from the front of `data`; `None` when it is too short.
pub fn decode<T: FromBpf>(data: &[u8]) -> Option<T> {
    read_pod::<T::Raw>(data).map(|raw| T::from_bpf(&raw))
}

/// The bytes of `v` as the BPF side lays it out, for map keys and values.
pub fn bytes<T: ToBpf>(v: &T) -> Vec<u8> {
    gala_ebpf::bytes_of(&v.to_bpf()).to_vec()
}

// SAFETY: generated from the object's BTF: integers and arrays of integers only, the
// padding spelled out in C (the same holds for every impl below).
unsafe impl Pod for types::ep_tcp_key {}
// SAFETY: as above.
unsafe impl Pod for types::ep_tcp_val {}
// SAFETY: as above.
unsafe impl Pod for types::ep_listen_key {}
// SAFETY: as above.
unsafe impl Pod for types::ep_listen_val {}
// SAFETY: as above.
unsafe impl Pod for types::ep_udp_key {}
// SAFETY: as above.
unsafe impl Pod for types::ep_udp_val {}
// SAFETY: as above.
unsafe impl Pod for types::ep_udp_unowned_val {}
// SAFETY: as above.
unsafe impl Pod for types::ep_estab_rec {}
// SAFETY: as above.
unsafe impl Pod for types::ep_addr16 {}
// SAFETY: as above.
unsafe impl Pod for types::ep_toa_key {}
// SAFETY: as above.
unsafe impl Pod for types::ep_toa_val {}

/// Key of one TCP endpoint (`struct ep_tcp_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpKey {
    /// Owner: the connecting process, or the listener's owner.
    pub tgid: u32,
    /// Address family.
    pub family: u16,
    /// Server port (host order).
    pub port: u16,
    /// [`ROLE_SERVER`] or [`ROLE_CLIENT`].
    pub role: u8,
    /// A server endpoint's connections whose SYN carried a TOA address: that address's
    /// family (`AF_INET`), the address in `client`; else 0.
    pub toa: u8,
    /// Padding (kept, so that a key read from a map deletes that entry).
    pub pad: [u8; 6],
    /// Client address (zero for a server endpoint, the TOA address for its TOA entries).
    pub client: [u8; 16],
    /// Server address (the listen address for a server endpoint).
    pub server: [u8; 16],
}

impl FromBpf for TcpKey {
    type Raw = types::ep_tcp_key;
    fn from_bpf(raw: &types::ep_tcp_key) -> Self {
        let types::ep_tcp_key {
            tgid,
            family,
            port,
            role,
            toa,
            pad,
            client,
            server,
        } = *raw;
        TcpKey {
            tgid,
            family,
            port,
            role,
            toa,
            pad,
            client: client.b,
            server: server.b,
        }
    }
}

impl ToBpf for TcpKey {
    type Raw = types::ep_tcp_key;
    fn to_bpf(&self) -> types::ep_tcp_key {
        types::ep_tcp_key {
            tgid: self.tgid,
            family: self.family,
            port: self.port,
            role: self.role,
            toa: self.toa,
            pad: self.pad,
            client: types::ep_addr16 { b: self.client },
            server: types::ep_addr16 { b: self.server },
        }
    }
}

/// Cumulative counters of one TCP endpoint (`struct ep_tcp_val`), by slot (`C_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpVal {
    /// By slot (`C_*`).
    pub c: [u64; C_NUM],
}

impl FromBpf for TcpVal {
    type Raw = types::ep_tcp_val;
    fn from_bpf(raw: &types::ep_tcp_val) -> Self {
        let types::ep_tcp_val { c } = *raw;
        TcpVal { c }
    }
}

/// Listener lookup key (`struct ep_listen_key`): address normalised to IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ListenKey {
    /// Network namespace inode.
    pub netns: u32,
    /// Listen port.
    pub port: u16,
    /// Padding.
    pub pad: u16,
    /// Listen address, IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
}

impl FromBpf for ListenKey {
    type Raw = types::ep_listen_key;
    fn from_bpf(raw: &types::ep_listen_key) -> Self {
        let types::ep_listen_key {
            netns,
            port,
            pad,
            addr,
        } = *raw;
        ListenKey {
            netns,
            port,
            pad,
            addr: addr.b,
        }
    }
}

impl ToBpf for ListenKey {
    type Raw = types::ep_listen_key;
    fn to_bpf(&self) -> types::ep_listen_key {
        types::ep_listen_key {
            netns: self.netns,
            port: self.port,
            pad: self.pad,
            addr: types::ep_addr16 { b: self.addr },
        }
    }
}

/// The watched listener (`struct ep_listen_val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenVal {
    /// Owner.
    pub tgid: u32,
    /// Address family of the listen socket.
    pub family: u16,
    /// Padding.
    pub pad: u16,
    /// Listen address in record form (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// Socket inode.
    pub ino: u64,
}

impl FromBpf for ListenVal {
    type Raw = types::ep_listen_val;
    fn from_bpf(raw: &types::ep_listen_val) -> Self {
        let types::ep_listen_val {
            tgid,
            family,
            pad,
            addr,
            ino,
        } = *raw;
        ListenVal {
            tgid,
            family,
            pad,
            addr: addr.b,
            ino,
        }
    }
}

impl ToBpf for ListenVal {
    type Raw = types::ep_listen_val;
    fn to_bpf(&self) -> types::ep_listen_val {
        types::ep_listen_val {
            tgid: self.tgid,
            family: self.family,
            pad: self.pad,
            addr: types::ep_addr16 { b: self.addr },
            ino: self.ino,
        }
    }
}

/// Key of one UDP endpoint (`struct ep_udp_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpKey {
    /// Owner.
    pub tgid: u32,
    /// Address family.
    pub family: u16,
    /// Local port.
    pub lport: u16,
    /// Remote port (0 unless connected).
    pub rport: u16,
    /// Padding.
    pub pad: [u16; 3],
    /// Local address.
    pub laddr: [u8; 16],
    /// Remote address (zero unless connected).
    pub raddr: [u8; 16],
}

impl FromBpf for UdpKey {
    type Raw = types::ep_udp_key;
    fn from_bpf(raw: &types::ep_udp_key) -> Self {
        let types::ep_udp_key {
            tgid,
            family,
            lport,
            rport,
            pad,
            laddr,
            raddr,
        } = *raw;
        UdpKey {
            tgid,
            family,
            lport,
            rport,
            pad,
            laddr: laddr.b,
            raddr: raddr.b,
        }
    }
}

impl ToBpf for UdpKey {
    type Raw = types::ep_udp_key;
    fn to_bpf(&self) -> types::ep_udp_key {
        types::ep_udp_key {
            tgid: self.tgid,
            family: self.family,
            lport: self.lport,
            rport: self.rport,
            pad: self.pad,
            laddr: types::ep_addr16 { b: self.laddr },
            raddr: types::ep_addr16 { b: self.raddr },
        }
    }
}

/// Cumulative counters of one UDP endpoint (`struct ep_udp_val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpVal {
    /// Datagrams the receive queue refused.
    pub drops: u64,
    /// Bytes sent.
    pub sends: u64,
    /// Bytes received.
    pub rcvs: u64,
}

impl FromBpf for UdpVal {
    type Raw = types::ep_udp_val;
    fn from_bpf(raw: &types::ep_udp_val) -> Self {
        let types::ep_udp_val { drops, sends, rcvs } = *raw;
        UdpVal { drops, sends, rcvs }
    }
}

/// A UDP drop on a socket whose owner BPF did not know (`struct ep_udp_unowned_val`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpUnowned {
    /// The endpoint, `tgid` 0.
    pub key: UdpKey,
    /// Drops counted.
    pub drops: u64,
}

impl FromBpf for UdpUnowned {
    type Raw = types::ep_udp_unowned_val;
    fn from_bpf(raw: &types::ep_udp_unowned_val) -> Self {
        let types::ep_udp_unowned_val { key, drops } = *raw;
        UdpUnowned {
            key: UdpKey::from_bpf(&key),
            drops,
        }
    }
}

/// Ring buffer record: one connection established (`struct ep_estab_rec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EstabRec {
    /// The endpoint.
    pub key: TcpKey,
    /// Nanoseconds from SYN to established (client) or SYN-ACK to ACK (server).
    pub latency_ns: u64,
}

impl FromBpf for EstabRec {
    type Raw = types::ep_estab_rec;
    fn from_bpf(raw: &types::ep_estab_rec) -> Self {
        let types::ep_estab_rec { key, latency_ns } = *raw;
        EstabRec {
            key: TcpKey::from_bpf(&key),
            latency_ns,
        }
    }
}

/// A socket inode as a map key (`__u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Inode(pub u64);

impl FromBpf for Inode {
    type Raw = u64;
    fn from_bpf(raw: &u64) -> Self {
        Inode(*raw)
    }
}

impl ToBpf for Inode {
    type Raw = u64;
    fn to_bpf(&self) -> u64 {
        self.0
    }
}

/// A tgid as a map value (`__u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tgid(pub u32);

impl FromBpf for Tgid {
    type Raw = u32;
    fn from_bpf(raw: &u32) -> Self {
        Tgid(*raw)
    }
}

impl ToBpf for Tgid {
    type Raw = u32;
    fn to_bpf(&self) -> u32 {
        self.0
    }
}

/// The UDP send/recv programs, attached only while a process in scope has a UDP socket:
/// the tracepoints (6.3+), or the kprobe pairs on kernels without them.
pub const UDP_IO: &[&str] = &[
    UDP_SEND.name,
    UDP_RECV.name,
    UDP_KPROBES[0].name,
    UDP_KPROBES[1].name,
    UDP_KPROBES[2].name,
    UDP_KPROBES[3].name,
    UDP_KPROBES[4].name,
    UDP_KPROBES[5].name,
    UDP_KPROBES[6].name,
    UDP_KPROBES[7].name,
];

/// The `cgroup/sock_create` program that sees UDP sockets made in scope.
pub const UDP_CREATE: &str = "ep_udp_create";

/// `kprobe/tcp_conn_request`: `syn_overflow` and the TOA address of a SYN.
pub const CONN_REQUEST: Prog = Prog::kprobe("ep_conn_request", "tcp_conn_request");
/// `kprobe/tcp_retransmit_skb`: SYN retransmits, failed ones included, on kernels whose
/// tracepoint sees the successful ones only.
pub const RETRANS_KPROBE: Prog = Prog::kprobe("ep_retrans_kp", "tcp_retransmit_skb");
/// `kprobe/tcp_v4_send_synack`, `kprobe/tcp_v6_send_synack`: `synack_sent`.
pub const SYNACK: [Prog; 2] = [
    Prog::kprobe("ep_synack_v4", "tcp_v4_send_synack"),
    Prog::kprobe("ep_synack_v6", "tcp_v6_send_synack"),
];

const UDP_SEND: Prog = Prog::tp_btf("ep_udp_send", "sock_send_length");
const UDP_RECV: Prog = Prog::tp_btf("ep_udp_recv", "sock_recv_length");
const UDP_KPROBES: [Prog; 8] = [
    Prog::kprobe("ep_udp_send_kp", "udp_sendmsg"),
    Prog::kretprobe("ep_udp_send_kret", "udp_sendmsg"),
    Prog::kprobe("ep_udp6_send_kp", "udpv6_sendmsg"),
    Prog::kretprobe("ep_udp6_send_kret", "udpv6_sendmsg"),
    Prog::kprobe("ep_udp_recv_kp", "udp_recvmsg"),
    Prog::kretprobe("ep_udp_recv_kret", "udp_recvmsg"),
    Prog::kprobe("ep_udp6_recv_kp", "udpv6_recvmsg"),
    Prog::kretprobe("ep_udp6_recv_kret", "udpv6_recvmsg"),
];

/// The sub-items and their hooks, best first. Every hook of the 6.18 target is a
/// tracepoint; the kprobe variants serve kernels without those tracepoints (5.10, 6.1), and
/// the kprobe-only needs end in an empty variant (optional: their fields stay empty where
/// there are no kprobes). The fexit variant is a fallback for kernels where fexit loads.
pub const SUBITEMS: &[Subitem] = &[
    Subitem {
        name: "",
        needs: &[],
    },
    Subitem {
        name: "tcp_socket",
        needs: &[
            Need {
                what: "TCP state changes",
                variants: &[&[Prog::tp_btf("ep_state", "inet_sock_set_state")]],
            },
            Need {
                what: "SYN-ACK retransmits",
                variants: &[&[Prog::tp_btf("ep_synack_retrans", "tcp_retransmit_synack")]],
            },
            Need {
                what: "SYN retransmits",
                variants: &[&[Prog::tp_btf("ep_retrans", "tcp_retransmit_skb")]],
            },
            // Before the tracepoint passed `err` it fired for successful retransmits only:
            // the kprobe counts the failed ones too there (and returns at once elsewhere).
            Need {
                what: "failed SYN retransmits",
                variants: &[&[RETRANS_KPROBE], &[]],
            },
            // One program for every kernel: it reads `reason` (5.17+) and `rx_sk` (6.11+)
            // only where the tracepoint passes them (CO-RE checks in the C).
            Need {
                what: "listener drop reasons",
                variants: &[&[Prog::tp_btf("ep_drop", "kfree_skb")]],
            },
            Need {
                what: "SYN queue overflows and TOA",
                variants: &[&[CONN_REQUEST], &[]],
            },
            Need {
                what: "SYN-ACKs sent",
                variants: &[&SYNACK, &[]],
            },
            // Kernels before 6.11 (no listener in kfree_skb): the handshake ACK dropped for
            // a full accept queue. On 6.11+ kernels with kprobes the program returns at once.
            Need {
                what: "accept queue overflows without rx_sk",
                variants: &[
                    &[
                        Prog::kprobe("ep_syn_recv_v4", "tcp_v4_syn_recv_sock"),
                        Prog::kprobe("ep_syn_recv_v6", "tcp_v6_syn_recv_sock"),
                    ],
                    &[],
                ],
            },
        ],
    },
    Subitem {
        name: "udp_socket",
        needs: &[
            Need {
                what: "UDP bytes",
                variants: &[&[UDP_SEND, UDP_RECV], &UDP_KPROBES],
            },
            // Optional (the empty variant): without cgroup v2 a new UDP socket is seen
            // by the next refresh instead.
            Need {
                what: "UDP socket creation",
                variants: &[&[Prog::cgroup(UDP_CREATE, "sock_create")], &[]],
            },
            Need {
                what: "UDP receive drops",
                variants: &[
                    &[Prog::tp_btf("ep_udp_drop", "udp_fail_queue_rcv_skb")],
                    &[Prog::fexit(
                        "ep_udp_drop_fexit",
                        "__udp_enqueue_schedule_skb",
                    )],
                ],
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_bpf_layout() {
        let k = TcpKey {
            tgid: 7,
            port: 80,
            role: ROLE_SERVER,
            client: [1; 16],
            server: [2; 16],
            ..Default::default()
        };
        let back: TcpKey = decode(&bytes(&k)).unwrap();
        assert_eq!(back, k);
        let u = UdpKey {
            tgid: 3,
            lport: 53,
            rport: 4000,
            laddr: [9; 16],
            ..Default::default()
        };
        assert_eq!(decode::<UdpKey>(&bytes(&u)), Some(u));
        assert_eq!(decode::<TcpKey>(&bytes(&k)[..10]), None);
    }
}
