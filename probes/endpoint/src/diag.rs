//! The kernel's own per-listener drop counter (`sk_drops`, raised by `tcp_listendrop()` for
//! every SYN or handshake ACK a listener discards, including the SYNs dropped while its accept
//! queue is full, which no tracepoint sees), read with one `NETLINK_SOCK_DIAG` dump of the
//! LISTEN sockets (`INET_DIAG_SKMEMINFO`, `SK_MEMINFO_DROPS`) — what `ss -ltm` shows.
//! It covers the probe's network namespace.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_SKMEMINFO: u16 = 7;
const SK_MEMINFO_DROPS: usize = 8;
const NLMSG_HDR: usize = 16;
const DIAG_MSG: usize = 72;

/// Errors of the diag dump.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// A syscall failed.
    #[error("sock_diag {what}: {source}")]
    Io {
        /// Which step.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel answered with an error.
    #[error("sock_diag: the kernel refused the dump (errno {0})")]
    Refused(i32),
}

/// One LISTEN socket as the dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenDiag {
    /// Socket inode.
    pub ino: u64,
    /// `sk_drops`.
    pub drops: u64,
    /// Connections waiting in the accept queue.
    pub backlog: u32,
    /// The accept queue's limit.
    pub max_backlog: u32,
}

/// The request: `nlmsghdr` + `inet_diag_req_v2` for LISTEN sockets of `family`, with memory
/// info.
pub fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + 56;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // sdiag_family, sdiag_protocol, idiag_ext, pad
    b.extend_from_slice(&[family, 6, 1 << (INET_DIAG_SKMEMINFO - 1), 0]);
    b.extend_from_slice(&(1u32 << 10).to_ne_bytes()); // idiag_states: LISTEN
    b.resize(len, 0); // inet_diag_sockid: any
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What one `recv` buffer holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The sockets.
    pub sockets: Vec<ListenDiag>,
    /// `NLMSG_DONE` seen.
    pub done: bool,
    /// `NLMSG_ERROR` with this errno.
    pub error: Option<i32>,
}

/// Parses the netlink messages of one buffer; malformed messages end the parse.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at + 4)) {
        let len = len as usize;
        if len < NLMSG_HDR || at + len > buf.len() {
            break;
        }
        let msg = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE => out.done = true,
            NLMSG_ERROR => {
                let errno = u32_at(msg, 0).map_or(0, |e| -(e as i32));
                if errno != 0 {
                    out.error = Some(errno);
                }
                out.done = true;
            }
            SOCK_DIAG_BY_FAMILY if msg.len() >= DIAG_MSG => {
                if let Some(s) = parse_diag_msg(msg) {
                    out.sockets.push(s);
                }
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    out
}

fn parse_diag_msg(msg: &[u8]) -> Option<ListenDiag> {
    // inet_diag_msg: family state timer retrans, sockid (48), expires, rqueue, wqueue, uid, inode
    let backlog = u32_at(msg, 56)?;
    let max_backlog = u32_at(msg, 60)?;
    let ino = u64::from(u32_at(msg, 68)?);
    let mut drops = None;
    let mut at = DIAG_MSG;
    while let (Some(len), Some(kind)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = len as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if kind == INET_DIAG_SKMEMINFO {
            drops = u32_at(msg, at + 4 + SK_MEMINFO_DROPS * 4).map(u64::from);
        }
        at += (len + 3) & !3;
    }
    Some(ListenDiag {
        ino,
        drops: drops?,
        backlog,
        max_backlog,
    })
}

/// Dumps the LISTEN sockets (IPv4 and IPv6) of the probe's network namespace.
pub fn listeners() -> Result<Vec<ListenDiag>, DiagError> {
    // SAFETY: plain syscall; a non-negative result is an fd we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io("socket"));
    }
    // SAFETY: fd was just created and is owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut all = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    for (seq, family) in [(1, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        let req = request(family, seq);
        // SAFETY: req is a valid buffer of req.len() bytes.
        let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if sent < 0 {
            return Err(io("send"));
        }
        loop {
            // SAFETY: buf is writable for buf.len() bytes.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io("recv"));
            }
            let parsed = parse(&buf[..n as usize]);
            all.extend(parsed.sockets);
            if let Some(errno) = parsed.error {
                return Err(DiagError::Refused(errno));
            }
            if parsed.done || n == 0 {
                break;
            }
        }
    }
    Ok(all)
}

fn io(what: &'static str) -> DiagError {
    DiagError::Io {
        what,
        source: std::io::Error::last_os_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(body);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn diag_body(ino: u32, rq: u32, wq: u32, drops: Option<u32>) -> Vec<u8> {
        let mut m = vec![0u8; DIAG_MSG];
        m[0] = 2;
        m[1] = 10;
        m[56..60].copy_from_slice(&rq.to_ne_bytes());
        m[60..64].copy_from_slice(&wq.to_ne_bytes());
        m[68..72].copy_from_slice(&ino.to_ne_bytes());
        // an unrelated attribute first
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        if let Some(d) = drops {
            let mut vars = [0u32; 9];
            vars[SK_MEMINFO_DROPS] = d;
            m.extend_from_slice(&(4 + 36u16).to_ne_bytes());
            m.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
            for v in vars {
                m.extend_from_slice(&v.to_ne_bytes());
            }
        }
        m
    }

    #[test]
    fn request_shape() {
        let r = request(2, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(&r[16..20], &[2, 6, 0x40, 0]);
        assert_eq!(u32_at(&r, 20), Some(1 << 10));
    }

    #[test]
    fn parses_sockets_done_and_errors() {
        let mut buf = msg(SOCK_DIAG_BY_FAMILY, &diag_body(4711, 2, 1, Some(9)));
        buf.extend(msg(SOCK_DIAG_BY_FAMILY, &diag_body(4712, 0, 128, None)));
        buf.extend(msg(NLMSG_DONE, &[0; 4]));
        let p = parse(&buf);
        assert!(p.done);
        assert_eq!(
            p.sockets,
            vec![ListenDiag {
                ino: 4711,
                drops: 9,
                backlog: 2,
                max_backlog: 1
            }]
        );
        let e = parse(&msg(NLMSG_ERROR, &(-13i32).to_ne_bytes()));
        assert_eq!(e.error, Some(13));
    }

    #[test]
    fn truncated_input_is_ignored() {
        let buf = msg(SOCK_DIAG_BY_FAMILY, &diag_body(1, 0, 0, Some(1)));
        for cut in 0..buf.len() {
            let _ = parse(&buf[..cut]);
        }
        assert_eq!(parse(&buf[..buf.len() - 8]).sockets.len(), 0);
    }

    #[test]
    fn dumps_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let row = crate::procfs::Procfs::default()
            .sockets(me, false)
            .into_iter()
            .find(|r| r.lport == port)
            .unwrap();
        let found = listeners().expect("sock_diag");
        let d = found.iter().find(|d| d.ino == row.ino).expect("listener");
        assert_eq!(d.backlog, 0);
        assert!(d.max_backlog > 0);
    }
}
