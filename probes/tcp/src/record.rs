//! What the BPF side (`src/bpf/tcp.bpf.c`) hands to user space: the `links` map values and
//! the three ring buffer records, as `#[repr(C)]` mirrors of the C structs, and their
//! decoding. A record that is too short or of an unknown type decodes to `None` (counted
//! by the caller, never a crash).

use gala_ebpf::{read_pod, Pod};

/// `ROLE_CLIENT`: the process connected.
pub const ROLE_CLIENT: u8 = 1;
/// `ROLE_SERVER`: the process accepted.
#[cfg_attr(not(test), allow(dead_code))]
pub const ROLE_SERVER: u8 = 2;

const REC_SAMPLE: u32 = 1;
const REC_CLOSE: u32 = 2;
const REC_DELAY: u32 = 3;

/// `DELAY_TX` (otherwise a receive delay).
const DELAY_TX: u32 = 1;

/// `struct link_ident`: who a link is.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkIdent {
    /// Unique for the probe's lifetime.
    pub id: u64,
    /// Owning process.
    pub tgid: u32,
    /// [`ROLE_CLIENT`] or [`ROLE_SERVER`].
    pub role: u8,
    /// Address family (2, 10).
    pub family: u8,
    /// Client port.
    pub cport: u16,
    /// Server port.
    pub sport: u16,
    _pad0: u16,
    _pad1: u32,
    /// Client address, network order (IPv4 in the first 4 bytes).
    pub cip: [u8; 16],
    /// Server address.
    pub sip: [u8; 16],
    /// The owner's comm when the link was made, NUL-padded.
    pub comm: [u8; 16],
}

/// `struct link`: the `links` map value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// Identity.
    pub ident: LinkIdent,
    /// Bytes sent and acknowledged by the peer (cumulative, without SYN and FIN).
    pub tx_bytes: u64,
    /// Bytes received in order (cumulative, without SYN and FIN).
    pub rx_bytes: u64,
    /// Segments retransmitted (cumulative).
    pub retran_packets: u64,
    /// Drops with reason SOCKET_BACKLOG.
    pub backlog_drops: u32,
    /// Drops with reason SOCKET_FILTER.
    pub filter_drops: u32,
    /// Errors reported with ETIMEDOUT.
    pub tmout_count: u32,
    /// `sock_exceed_buf_limit` for sending.
    pub snd_buf_limit_count: u32,
    /// `sock_exceed_buf_limit` for receiving.
    pub rmem_scheduls: u32,
    /// Drops with reason PROTO_MEM.
    pub tcp_oom: u32,
    /// Resets sent.
    pub send_rsts: u32,
    /// Resets received.
    pub receive_rsts: u32,
    /// Passes that found our receive window 0.
    pub zero_rcv_wnd: u32,
    /// Passes that found the peer's window 0.
    pub zero_snd_wnd: u32,
    /// Passes that read the link (the zero-window ratios' denominator).
    pub win_events: u32,
    _pad2: u32,
    /// `tcp_sock.segs_in` as last read.
    pub segs_in: u32,
    /// `tcp_sock.segs_out` as last read.
    pub segs_out: u32,
    /// `sock.sk_drops` as last read.
    pub sk_drops: u32,
    _pad3: u32,
    /// `segs_in` when the link was made.
    pub segs_in0: u32,
    /// `segs_out` when the link was made.
    pub segs_out0: u32,
    /// `sk_drops` when the link was made.
    pub sk_drops0: u32,
    /// Handshake srtt of a server link, µs (0: none).
    pub syn_srtt: u32,
    /// The epoch `lost_out_hw`/`sacked_out_hw` belong to.
    pub hw_epoch: u32,
    /// Highest `lost_out` seen in that epoch.
    pub lost_out_hw: u32,
    /// Highest `sacked_out` seen in that epoch.
    pub sacked_out_hw: u32,
    _pad4: u32,
    next_sample_j: u64,
    rx_ready_ns: u64,
    rx_next_j: u64,
    tx_send_ns: u64,
    tx_next_j: u64,
    tx_seq: u32,
    /// Whether the handshake completed (client links exist from SYN_SENT on).
    pub established: u32,
    acked0: u64,
    received0: u64,
    fin_seq: u32,
    fin_sent: u32,
    pass: u32,
    sample_segs: u32,
}

/// `struct rec_sample`: the sampled state of one socket.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    kind: u32,
    _pad: u32,
    /// The link.
    pub ident: LinkIdent,
    /// µs.
    pub srtt: u32,
    /// µs.
    pub rcv_rtt: u32,
    /// Segments.
    pub snd_cwnd: u32,
    /// Bytes.
    pub notsent_bytes: u32,
    /// Bytes.
    pub notack_bytes: u32,
    /// Segments.
    pub reordering: u32,
    /// Bytes.
    pub snd_wnd: u32,
    /// Bytes.
    pub rcv_wnd: u32,
    /// Bytes.
    pub avl_snd_wnd: u32,
    /// µs.
    pub rto: u32,
    /// µs.
    pub ato: u32,
    /// Bytes.
    pub sk_rcvbuf: u32,
    /// Bytes.
    pub sk_sndbuf: u32,
    _pad2: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct CloseRec {
    kind: u32,
    _pad: u32,
    link: Link,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DelayRec {
    kind: u32,
    dir: u32,
    ident: LinkIdent,
    delay_ns: u64,
}

// SAFETY: all of these are integers and arrays of integers only.
unsafe impl Pod for LinkIdent {}
unsafe impl Pod for Link {}
unsafe impl Pod for Sample {}
unsafe impl Pod for CloseRec {}
unsafe impl Pod for DelayRec {}

/// Which way a delay was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Data queued on the socket → read by the application (`sys_delay`).
    Rx,
    /// `sendmsg` → acknowledged by the peer (`net_delay`).
    Tx,
}

/// One ring buffer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Sampled socket state.
    Sample(Sample),
    /// The socket was destroyed; its final counters.
    Close(Link),
    /// One delay measurement.
    Delay(LinkIdent, Direction, u64),
}

/// Decodes one ring buffer record; `None` for a malformed one.
pub fn decode(data: &[u8]) -> Option<Record> {
    let kind = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    match kind {
        REC_SAMPLE => read_pod::<Sample>(data).map(Record::Sample),
        REC_CLOSE => read_pod::<CloseRec>(data).map(|r| Record::Close(r.link)),
        REC_DELAY => read_pod::<DelayRec>(data).map(|r| {
            let dir = if r.dir == DELAY_TX {
                Direction::Tx
            } else {
                Direction::Rx
            };
            Record::Delay(r.ident, dir, r.delay_ns)
        }),
        _ => None,
    }
}

/// Decodes a `links` map value.
pub fn decode_link(data: &[u8]) -> Option<Link> {
    read_pod::<Link>(data)
}

impl LinkIdent {
    /// The comm as text (up to the first NUL, `|` and control characters replaced).
    pub fn comm_text(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end])
            .chars()
            .map(|c| if c == '|' || c.is_control() { '_' } else { c })
            .collect()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) Copy value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    /// A link of `tgid` as the BPF side would make it.
    pub fn link(id: u64, tgid: u32, role: u8, cport: u16, sport: u16) -> Link {
        let mut l = Link::default();
        l.ident.id = id;
        l.ident.tgid = tgid;
        l.ident.role = role;
        l.ident.family = 2;
        l.ident.cport = cport;
        l.ident.sport = sport;
        l.ident.cip[..4].copy_from_slice(&[127, 0, 0, 1]);
        l.ident.sip[..4].copy_from_slice(&[127, 0, 0, 2]);
        l.ident.comm[..4].copy_from_slice(b"curl");
        l
    }

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<LinkIdent>(), 72);
        assert_eq!(std::mem::size_of::<Link>(), 272);
        assert_eq!(std::mem::size_of::<Sample>(), 136);
        assert_eq!(
            std::mem::size_of::<Link>(),
            std::mem::size_of::<crate::skel::types::link>()
        );
        assert_eq!(
            std::mem::size_of::<LinkIdent>(),
            std::mem::size_of::<crate::skel::types::link_ident>()
        );
    }

    #[test]
    fn records_decode_and_malformed_ones_do_not() {
        let l = link(7, 42, ROLE_SERVER, 5555, 80);
        let close = CloseRec {
            kind: REC_CLOSE,
            _pad: 0,
            link: l,
        };
        assert_eq!(decode(&bytes(&close)), Some(Record::Close(l)));
        let delay = DelayRec {
            kind: REC_DELAY,
            dir: DELAY_TX,
            ident: l.ident,
            delay_ns: 1234,
        };
        assert_eq!(
            decode(&bytes(&delay)),
            Some(Record::Delay(l.ident, Direction::Tx, 1234))
        );
        let s = Sample {
            kind: REC_SAMPLE,
            srtt: 99,
            ..Default::default()
        };
        assert!(matches!(decode(&bytes(&s)), Some(Record::Sample(x)) if x.srtt == 99));
        assert_eq!(decode(&bytes(&close)[..100]), None);
        assert_eq!(decode(&[9, 0, 0, 0, 1, 2]), None);
        assert_eq!(decode(&[1, 0]), None);
        assert_eq!(l.ident.comm_text(), "curl");
    }
}
