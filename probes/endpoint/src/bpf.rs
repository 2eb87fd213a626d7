//! The records and map entries shared with `bpf/endpoint.bpf.c` (same layout, `#[repr(C)]`),
//! the counter slots, and the sub-items with the hooks each needs.

use gala_ebpf::{Hook, Need, Pod, Prog, Subitem};

/// `role` of a server endpoint (a listener).
pub const ROLE_SERVER: u8 = 1;
/// `role` of a client endpoint (connect).
pub const ROLE_CLIENT: u8 = 2;

/// Number of counter slots in [`TcpVal`].
pub const C_NUM: usize = 16;
/// Drops with the listener as receiving socket (any reason).
pub const C_LISTEN_DROP: usize = 0;
/// `TCP_LISTEN_OVERFLOW`: the handshake's ACK dropped, accept queue full.
pub const C_ACCEPT_OVERFLOW: usize = 1;
/// Passive opens (`SYN_RECV → ESTABLISHED`).
pub const C_PASSIVE_OPEN: usize = 3;
/// Failed passive opens (`SYN_RECV →` anything else).
pub const C_PASSIVE_FAIL: usize = 4;
/// SYN-ACK retransmissions of the listener.
pub const C_RETRAN_SYNACK: usize = 5;
/// SYN retransmissions of a connect.
pub const C_RETRAN_SYN: usize = 6;
/// `TCP_RESET` on the listener: a pending request reset by the peer.
pub const C_REQ_DROP: usize = 7;
/// Active opens (`SYN_SENT → ESTABLISHED`).
pub const C_ACTIVE_OPEN: usize = 8;
/// Failed active opens (`SYN_SENT → CLOSE`).
pub const C_ACTIVE_FAIL: usize = 9;
/// SYNs sent (`CLOSE → SYN_SENT`).
pub const C_SYN_SENT: usize = 10;
/// SYNs dropped on their way out.
pub const C_SYN_DROP: usize = 11;

/// Key of one TCP endpoint (`struct tcp_key`).
#[repr(C)]
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
    /// Padding.
    pub pad: [u8; 7],
    /// Client address (zero for a server endpoint).
    pub client: [u8; 16],
    /// Server address (the listen address for a server endpoint).
    pub server: [u8; 16],
}

/// Cumulative counters of one TCP endpoint (`struct tcp_val`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpVal {
    /// By slot (`C_*`).
    pub c: [u64; C_NUM],
}

/// Listener lookup key (`struct listen_key`): address normalised to IPv6.
#[repr(C)]
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

/// The watched listener (`struct listen_val`).
#[repr(C)]
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

/// Key of one UDP endpoint (`struct udp_key`).
#[repr(C)]
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

/// Cumulative counters of one UDP endpoint (`struct udp_val`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpVal {
    /// Datagrams the receive queue refused.
    pub drops: u64,
    /// Bytes sent.
    pub sends: u64,
    /// Bytes received.
    pub rcvs: u64,
}

/// A UDP drop on a socket whose owner BPF did not know (`struct udp_unowned`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpUnowned {
    /// The endpoint, `tgid` 0.
    pub key: UdpKey,
    /// Drops counted.
    pub drops: u64,
}

/// Ring buffer record: one connection established (`struct estab_rec`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EstabRec {
    /// The endpoint.
    pub key: TcpKey,
    /// Nanoseconds from SYN to established (client) or SYN-ACK to ACK (server).
    pub latency_ns: u64,
}

/// A socket inode as a map key (`__u64`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Inode(pub u64);

/// A tgid as a map value (`__u32`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tgid(pub u32);

// SAFETY: integers and arrays of integers only.
unsafe impl Pod for Inode {}
// SAFETY: as above.
unsafe impl Pod for Tgid {}
// SAFETY: as above.
unsafe impl Pod for TcpKey {}
// SAFETY: as above.
unsafe impl Pod for TcpVal {}
// SAFETY: as above.
unsafe impl Pod for ListenKey {}
// SAFETY: as above.
unsafe impl Pod for ListenVal {}
// SAFETY: as above.
unsafe impl Pod for UdpKey {}
// SAFETY: as above.
unsafe impl Pod for UdpVal {}
// SAFETY: as above.
unsafe impl Pod for UdpUnowned {}
// SAFETY: as above.
unsafe impl Pod for EstabRec {}

/// The bytes of a [`Pod`] value, for map keys and values.
pub fn bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: a Pod is plain bytes; the slice lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

const fn tp(name: &'static str, hook: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::TpBtf(hook),
    }
}

/// The UDP send/recv programs, attached only while a process in scope has a UDP socket.
pub const UDP_IO: &[&str] = &["ep_udp_send", "ep_udp_recv"];

/// The `cgroup/sock_create` program that sees UDP sockets made in scope.
pub const UDP_CREATE: &str = "ep_udp_create";

/// The sub-items and their hooks, best first (fexit variants are fallbacks for kernels
/// where fentry/fexit load).
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
                variants: &[&[tp("ep_state", "inet_sock_set_state")]],
            },
            Need {
                what: "SYN-ACK retransmits",
                variants: &[&[tp("ep_synack_retrans", "tcp_retransmit_synack")]],
            },
            Need {
                what: "SYN retransmits",
                variants: &[&[tp("ep_retrans", "tcp_retransmit_skb")]],
            },
            Need {
                what: "listener drop reasons",
                variants: &[&[tp("ep_drop", "kfree_skb")]],
            },
        ],
    },
    Subitem {
        name: "udp_socket",
        needs: &[
            Need {
                what: "UDP bytes",
                variants: &[&[
                    tp("ep_udp_send", "sock_send_length"),
                    tp("ep_udp_recv", "sock_recv_length"),
                ]],
            },
            // Optional (the empty variant): without cgroup v2 a new UDP socket is seen
            // by the next refresh instead.
            Need {
                what: "UDP socket creation",
                variants: &[
                    &[Prog {
                        name: UDP_CREATE,
                        hook: Hook::Cgroup("sock_create"),
                    }],
                    &[],
                ],
            },
            Need {
                what: "UDP receive drops",
                variants: &[
                    &[tp("ep_udp_drop", "udp_fail_queue_rcv_skb")],
                    &[Prog {
                        name: "ep_udp_drop_fexit",
                        hook: Hook::Fexit("__udp_enqueue_schedule_skb"),
                    }],
                ],
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn layouts_match_the_bpf_side() {
        assert_eq!(size_of::<TcpKey>(), 48);
        assert_eq!(size_of::<TcpVal>(), 128);
        assert_eq!(size_of::<ListenKey>(), 24);
        assert_eq!(size_of::<ListenVal>(), 32);
        assert_eq!(size_of::<UdpKey>(), 48);
        assert_eq!(size_of::<UdpVal>(), 24);
        assert_eq!(size_of::<UdpUnowned>(), 56);
        assert_eq!(size_of::<EstabRec>(), 56);
    }

    #[test]
    fn bytes_round_trip() {
        let k = TcpKey {
            tgid: 7,
            port: 80,
            role: ROLE_SERVER,
            ..Default::default()
        };
        let back: TcpKey = gala_ebpf::read_pod(bytes(&k)).unwrap();
        assert_eq!(back, k);
    }
}
