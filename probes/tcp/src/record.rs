//! What the BPF side (`src/bpf/tcp.bpf.c`) hands to user space: the `links` map values and
//! the three ring buffer records, as the types libbpf-cargo generated from the object's BTF
//! (no hand copies: a field moved in C moves here too), and their decoding. A record that
//! is too short or of an unknown type decodes to `None` (counted by the caller, never a
//! crash).

use gala_ebpf::{read_pod, Pod};

use crate::skel::types;

/// `ROLE_CLIENT`: the process connected.
pub const ROLE_CLIENT: u8 = types::link_role::ROLE_CLIENT.0 as u8;
/// `ROLE_SERVER`: the process accepted.
#[cfg_attr(not(test), allow(dead_code))]
pub const ROLE_SERVER: u8 = types::link_role::ROLE_SERVER.0 as u8;

/// `struct link_ident`: who a link is — `id` (unique for the probe's lifetime), the owning
/// `tgid`, the `role` ([`ROLE_CLIENT`] or [`ROLE_SERVER`]), the address `family` (2, 10),
/// client and server ports and addresses (network order, IPv4 in the first 4 bytes) and
/// the owner's `comm` when the link was made.
pub type LinkIdent = types::link_ident;

/// `struct link`: the `links` map value — identity, cumulative counters, the `tcp_sock`
/// counters as last read and as read when the link was made, high-water marks, gates.
pub type Link = types::link;

/// `struct rec_sample`: the sampled state of one socket (times in µs, windows and buffers
/// in bytes, `snd_cwnd` and `reordering` in segments).
pub type Sample = types::rec_sample;

// SAFETY: generated from the object's BTF: integers and arrays of integers only, with the
// padding spelled out in C.
unsafe impl Pod for LinkIdent {}
// SAFETY: as above.
unsafe impl Pod for Link {}
// SAFETY: as above.
unsafe impl Pod for Sample {}
// SAFETY: as above.
unsafe impl Pod for types::rec_close {}
// SAFETY: as above.
unsafe impl Pod for types::rec_delay {}

/// The kind tag every record starts with: [`decode`] reads it before it knows the record.
const _: () = assert!(
    std::mem::offset_of!(types::rec_sample, r#type) == 0
        && std::mem::offset_of!(types::rec_close, r#type) == 0
        && std::mem::offset_of!(types::rec_delay, r#type) == 0
);

/// Which way a delay was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Data queued on the socket → read by the application (`sys_delay`).
    Rx,
    /// `sendmsg` → acknowledged by the peer (`net_delay`).
    Tx,
}

/// One ring buffer record.
#[derive(Debug, Clone)]
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
    let kind = types::rec_kind(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?));
    match kind {
        types::rec_kind::REC_SAMPLE => read_pod::<Sample>(data).map(Record::Sample),
        types::rec_kind::REC_CLOSE => {
            read_pod::<types::rec_close>(data).map(|r| Record::Close(r.link))
        }
        types::rec_kind::REC_DELAY => read_pod::<types::rec_delay>(data).map(|r| {
            let dir = if r.dir == types::delay_dir::DELAY_TX.0 {
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
        let comm = gala_ebpf::char_bytes(&self.comm);
        let end = comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&comm[..end])
            .chars()
            .map(|c| if c == '|' || c.is_control() { '_' } else { c })
            .collect()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn bytes<T: Pod>(v: &T) -> Vec<u8> {
        gala_ebpf::bytes_of(v).to_vec()
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
        for (c, b) in l.ident.comm.iter_mut().zip(b"curl") {
            *c = *b as i8;
        }
        l
    }

    #[test]
    fn records_decode_and_malformed_ones_do_not() {
        let l = link(7, 42, ROLE_SERVER, 5555, 80);
        let close = types::rec_close {
            r#type: types::rec_kind::REC_CLOSE.0,
            link: l,
            ..Default::default()
        };
        assert!(matches!(
            decode(&bytes(&close)),
            Some(Record::Close(c)) if bytes(&c) == bytes(&l)
        ));
        let delay = types::rec_delay {
            r#type: types::rec_kind::REC_DELAY.0,
            dir: types::delay_dir::DELAY_TX.0,
            ident: l.ident,
            delay_ns: 1234,
        };
        assert!(matches!(
            decode(&bytes(&delay)),
            Some(Record::Delay(id, Direction::Tx, 1234)) if id.id == 7 && id.tgid == 42
        ));
        let s = Sample {
            r#type: types::rec_kind::REC_SAMPLE.0,
            srtt: 99,
            ..Default::default()
        };
        assert!(matches!(decode(&bytes(&s)), Some(Record::Sample(x)) if x.srtt == 99));
        assert!(decode(&bytes(&close)[..100]).is_none());
        assert!(decode(&[9, 0, 0, 0, 1, 2]).is_none());
        assert!(decode(&[1, 0]).is_none());
        assert_eq!(l.ident.comm_text(), "curl");
    }
}
