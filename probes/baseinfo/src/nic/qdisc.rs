//! Root-qdisc statistics of every interface from one netlink `RTM_GETQDISC` dump (what
//! `tc -s qdisc show` prints as `dropped`, `overlimits`, `backlog` and `ecn_mark`), without
//! running `tc`. The message parsing is pure and tested on built messages; only
//! [`dump_root_qdiscs`] talks to the kernel.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

// From <linux/netlink.h>, <linux/rtnetlink.h>, <linux/pkt_sched.h>, <linux/gen_stats.h>.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWQDISC: u16 = 36;
const RTM_GETQDISC: u16 = 38;
const TCMSG_LEN: usize = 20;
const TCA_KIND: u16 = 1;
const TCA_STATS: u16 = 3;
const TCA_XSTATS: u16 = 4;
const TCA_STATS2: u16 = 7;
const TCA_STATS_QUEUE: u16 = 3;
const TCA_STATS_APP: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const TC_H_ROOT: u32 = 0xffff_ffff;

/// The statistics of one qdisc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qdisc {
    /// Interface index.
    pub ifindex: u32,
    /// `major:minor` handle.
    pub handle: u32,
    /// Handle of the parent (`TC_H_ROOT` for the root qdisc).
    pub parent: u32,
    /// `pfifo_fast`, `mq`, `fq_codel`, ...
    pub kind: String,
    /// Packets dropped (cumulative).
    pub drops: u32,
    /// Times the qdisc was over its limit (cumulative).
    pub overlimits: u32,
    /// Bytes queued now.
    pub backlog: u32,
    /// Packets ECN-marked instead of dropped (cumulative), for the qdiscs that count them.
    pub ecn_mark: Option<u32>,
}

/// What the collector reports for one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootQdiscStats {
    /// Packets dropped by the root qdisc (cumulative).
    pub drops: u64,
    /// Overlimits of the root qdisc (cumulative).
    pub overlimits: u64,
    /// Bytes queued in the root qdisc now.
    pub backlog: u64,
    /// ECN marks (cumulative); 0 when no qdisc of the root counts them.
    pub ecn_mark: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The `(type, payload)` pairs of a run of netlink attributes; stops at a malformed one.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = b.get(align4(len)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The ECN-mark counter in the `xstats` of the qdiscs whose `tc -s` output has `ecn_mark`.
fn ecn_mark(kind: &str, xstats: &[u8]) -> Option<u32> {
    match kind {
        // struct tc_fq_codel_xstats: type (0 = qdisc stats), then maxpacket, drop_overlimit,
        // ecn_mark.
        "fq_codel" if u32_at(xstats, 0) == Some(0) => u32_at(xstats, 12),
        // struct tc_codel_xstats: ecn_mark after six u32.
        "codel" => u32_at(xstats, 24),
        // struct tc_pie_xstats: u64 prob, seven u32, ecn_mark.
        "pie" => u32_at(xstats, 36),
        // struct tc_fq_pie_xstats: four u32, ecn_mark.
        "fq_pie" => u32_at(xstats, 16),
        _ => None,
    }
}

/// One `RTM_NEWQDISC` message body (after the netlink header).
fn parse_qdisc(body: &[u8]) -> Option<Qdisc> {
    let mut q = Qdisc {
        ifindex: u32_at(body, 4)?,
        handle: u32_at(body, 8)?,
        parent: u32_at(body, 12)?,
        ..Qdisc::default()
    };
    let mut queue = None;
    let mut old_stats = None;
    let mut xstats = None;
    for (kind, payload) in attributes(body.get(TCMSG_LEN..)?) {
        match kind {
            TCA_KIND => {
                let name = payload.split(|&c| c == 0).next().unwrap_or_default();
                q.kind = String::from_utf8_lossy(name).into_owned();
            }
            TCA_STATS2 => {
                for (k, p) in attributes(payload) {
                    match k {
                        TCA_STATS_QUEUE => queue = Some(p),
                        TCA_STATS_APP => xstats = Some(p),
                        _ => {}
                    }
                }
            }
            TCA_STATS => old_stats = Some(payload),
            TCA_XSTATS if xstats.is_none() => xstats = Some(payload),
            _ => {}
        }
    }
    if let Some(p) = queue {
        // struct gnet_stats_queue: qlen, backlog, drops, requeues, overlimits.
        q.backlog = u32_at(p, 4)?;
        q.drops = u32_at(p, 8)?;
        q.overlimits = u32_at(p, 16)?;
    } else if let Some(p) = old_stats {
        // struct tc_stats: u64 bytes, packets, drops, overlimits, bps, pps, qlen, backlog.
        q.drops = u32_at(p, 12)?;
        q.overlimits = u32_at(p, 16)?;
        q.backlog = u32_at(p, 32)?;
    } else {
        return None;
    }
    q.ecn_mark = xstats.and_then(|x| ecn_mark(&q.kind, x));
    Some(q)
}

/// What one datagram of the dump held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart {
    /// The qdiscs.
    pub qdiscs: Vec<Qdisc>,
    /// Whether the dump ended (`NLMSG_DONE`).
    pub done: bool,
}

/// Parses one datagram of the answer to dump request `seq`. Messages of other requests are
/// skipped; an `NLMSG_ERROR` with a non-zero code is that error.
pub fn parse_dump(buf: &[u8], seq: u32) -> io::Result<DumpPart> {
    let mut part = DumpPart::default();
    let mut b = buf;
    while b.len() >= NLMSG_HDRLEN {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
        let len = u32_at(b, 0).ok_or_else(bad)? as usize;
        let kind = u16_at(b, 4).ok_or_else(bad)?;
        let msg_seq = u32_at(b, 8).ok_or_else(bad)?;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad());
        }
        let body = &b[NLMSG_HDRLEN..len];
        b = b.get(align4(len)..).unwrap_or_default();
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => {
                part.done = true;
                break;
            }
            NLMSG_ERROR => {
                let code = u32_at(body, 0).ok_or_else(bad)? as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
            RTM_NEWQDISC => part.qdiscs.extend(parse_qdisc(body)),
            _ => {}
        }
    }
    Ok(part)
}

/// The root qdisc of each interface, by index. Its drops, overlimits and backlog are the
/// root's own (for `mq`/`mqprio` the kernel already sums its queues); `ecn_mark` is the
/// root's, or else the sum over its direct children (the per-queue `fq_codel` under `mq`).
pub fn root_stats(qdiscs: &[Qdisc]) -> HashMap<u32, RootQdiscStats> {
    let mut out = HashMap::new();
    for root in qdiscs.iter().filter(|q| q.parent == TC_H_ROOT) {
        let ecn_mark = match root.ecn_mark {
            Some(v) => u64::from(v),
            None => qdiscs
                .iter()
                .filter(|c| {
                    c.ifindex == root.ifindex
                        && c.parent != TC_H_ROOT
                        && c.parent >> 16 == root.handle >> 16
                })
                .filter_map(|c| c.ecn_mark)
                .map(u64::from)
                .sum(),
        };
        out.insert(
            root.ifindex,
            RootQdiscStats {
                drops: root.drops.into(),
                overlimits: root.overlimits.into(),
                backlog: root.backlog.into(),
                ecn_mark,
            },
        );
    }
    out
}

/// Dumps every qdisc of this network namespace over a netlink route socket.
pub fn dump_qdiscs() -> io::Result<Vec<Qdisc>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // A kernel that never answers must not stall the round.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;
    let seq: u32 = 1;
    let mut req = [0u8; NLMSG_HDRLEN + TCMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETQDISC.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // The tcmsg stays zero: every family, every interface.
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut qdiscs = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed during the qdisc dump",
            ));
        }
        let part = parse_dump(&buf[..n], seq)?;
        qdiscs.extend(part.qdiscs);
        if part.done {
            return Ok(qdiscs);
        }
    }
}

/// [`root_stats`] of a fresh [`dump_qdiscs`].
pub fn dump_root_qdiscs() -> io::Result<HashMap<u32, RootQdiscStats>> {
    Ok(root_stats(&dump_qdiscs()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(align4(v.len()), 0);
        v
    }

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&2u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(body);
        v.resize(align4(v.len()), 0);
        v
    }

    /// An `RTM_NEWQDISC` as the kernel sends it: tcmsg, kind, stats2 (queue + app).
    pub(crate) fn qdisc_message(
        seq: u32,
        ifindex: u32,
        handle: u32,
        parent: u32,
        kind: &str,
        queue: [u32; 5],
        xstats: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        body.extend(words(&[ifindex, handle, parent, 1]));
        let mut name = kind.as_bytes().to_vec();
        name.push(0);
        body.extend(attr(TCA_KIND, &name));
        let mut stats2 = attr(TCA_STATS_QUEUE, &words(&queue));
        if let Some(x) = &xstats {
            stats2.extend(attr(TCA_STATS_APP, x));
        }
        body.extend(attr(TCA_STATS2 | 0x8000, &stats2));
        message(RTM_NEWQDISC, seq, &body)
    }

    fn fq_codel_xstats(ecn: u32) -> Vec<u8> {
        words(&[0, 1514, 0, ecn, 9, 0, 0, 0, 0, 0])
    }

    #[test]
    fn a_dump_of_pfifo_fast_and_mq_with_fq_codel_queues() {
        let mut buf = Vec::new();
        // eth0: pfifo_fast root. Queue: qlen, backlog, drops, requeues, overlimits.
        buf.extend(qdisc_message(
            7,
            2,
            0,
            TC_H_ROOT,
            "pfifo_fast",
            [3, 4500, 12, 1, 40],
            None,
        ));
        // eth1: mq root (aggregated stats) with two fq_codel queues that mark.
        buf.extend(qdisc_message(
            7,
            3,
            0,
            TC_H_ROOT,
            "mq",
            [0, 100, 5, 0, 6],
            None,
        ));
        for (minor, ecn) in [(1, 10), (2, 32)] {
            buf.extend(qdisc_message(
                7,
                3,
                0,
                minor,
                "fq_codel",
                [0, 50, 2, 0, 3],
                Some(fq_codel_xstats(ecn)),
            ));
        }
        // An ingress qdisc is not the root.
        buf.extend(qdisc_message(
            7,
            2,
            0xffff_0000,
            0xffff_fff1,
            "ingress",
            [0; 5],
            None,
        ));
        // A message of another request is not ours.
        buf.extend(qdisc_message(8, 9, 0, TC_H_ROOT, "noqueue", [0; 5], None));
        let part = parse_dump(&buf, 7).unwrap();
        assert!(!part.done);
        assert_eq!(part.qdiscs.len(), 5);
        assert_eq!(part.qdiscs[2].ecn_mark, Some(10));
        let roots = root_stats(&part.qdiscs);
        assert_eq!(roots.len(), 2);
        assert_eq!(
            roots[&2],
            RootQdiscStats {
                drops: 12,
                overlimits: 40,
                backlog: 4500,
                ecn_mark: 0
            }
        );
        assert_eq!(
            roots[&3],
            RootQdiscStats {
                drops: 5,
                overlimits: 6,
                backlog: 100,
                ecn_mark: 42
            }
        );
    }

    #[test]
    fn a_root_that_marks_itself() {
        let buf = qdisc_message(
            1,
            4,
            0x8001_0000,
            TC_H_ROOT,
            "fq_codel",
            [0, 0, 1, 0, 2],
            Some(fq_codel_xstats(77)),
        );
        let roots = root_stats(&parse_dump(&buf, 1).unwrap().qdiscs);
        assert_eq!(roots[&4].ecn_mark, 77);
        // pie, fq_pie and codel keep it elsewhere in their xstats.
        let mut pie = vec![0u8; 8];
        pie.extend(words(&[0, 0, 0, 0, 0, 0, 0, 5]));
        assert_eq!(ecn_mark("pie", &pie), Some(5));
        assert_eq!(ecn_mark("fq_pie", &words(&[0, 0, 0, 0, 6])), Some(6));
        assert_eq!(
            ecn_mark("codel", &words(&[0, 0, 0, 0, 0, 0, 7, 0])),
            Some(7)
        );
        assert_eq!(ecn_mark("htb", &words(&[1, 2, 3, 4])), None);
        // fq_codel class stats (type 1) have no ecn_mark.
        assert_eq!(ecn_mark("fq_codel", &words(&[1, 0, 0, 9])), None);
        assert_eq!(ecn_mark("codel", &words(&[0, 0])), None);
    }

    #[test]
    fn old_tca_stats_when_there_is_no_stats2() {
        let mut body = vec![0u8; 4];
        body.extend(words(&[5, 0, TC_H_ROOT, 1]));
        body.extend(attr(TCA_KIND, b"pfifo\0"));
        // struct tc_stats: u64 bytes, packets, drops, overlimits, bps, pps, qlen, backlog.
        let mut stats = 1000u64.to_ne_bytes().to_vec();
        stats.extend(words(&[10, 3, 4, 0, 0, 1, 1500, 0]));
        body.extend(attr(TCA_STATS, &stats));
        let q = parse_dump(&message(RTM_NEWQDISC, 1, &body), 1)
            .unwrap()
            .qdiscs;
        assert_eq!(
            (
                q[0].drops,
                q[0].overlimits,
                q[0].backlog,
                q[0].kind.as_str()
            ),
            (3, 4, 1500, "pfifo")
        );
        // Without any statistics the qdisc is left out.
        let mut body = vec![0u8; 4];
        body.extend(words(&[5, 0, TC_H_ROOT, 1]));
        body.extend(attr(TCA_KIND, b"noqueue\0"));
        assert!(parse_dump(&message(RTM_NEWQDISC, 1, &body), 1)
            .unwrap()
            .qdiscs
            .is_empty());
    }

    #[test]
    fn done_errors_and_garbage() {
        let done = message(NLMSG_DONE, 3, &words(&[0]));
        assert!(parse_dump(&done, 3).unwrap().done);
        let eperm = message(NLMSG_ERROR, 3, &words(&[(-1i32) as u32, 0, 0, 0, 0]));
        assert_eq!(
            parse_dump(&eperm, 3).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        let ack = message(NLMSG_ERROR, 3, &words(&[0, 0, 0, 0, 0]));
        assert_eq!(parse_dump(&ack, 3).unwrap(), DumpPart::default());
        // A length running past the datagram.
        let mut bad = done.clone();
        bad[0] = 200;
        assert!(parse_dump(&bad, 3).is_err());
        // A truncated attribute ends the attributes, not the dump.
        let mut body = vec![0u8; 4];
        body.extend(words(&[5, 0, TC_H_ROOT, 1]));
        body.extend_from_slice(&[40, 0, 1, 0, b'x']);
        assert!(parse_dump(&message(RTM_NEWQDISC, 1, &body), 1)
            .unwrap()
            .qdiscs
            .is_empty());
    }

    #[test]
    fn live_dump_of_this_namespace() {
        // Works wherever a netlink route socket can be opened (no privilege needed); the
        // loopback device's root qdisc (noqueue) has statistics too.
        match dump_qdiscs() {
            Ok(qdiscs) => assert!(qdiscs.iter().all(|q| !q.kind.is_empty())),
            Err(e) => eprintln!("no netlink here: {e}"),
        }
    }
}
