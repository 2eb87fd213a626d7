//! What `/proc` says about sockets and processes: the rows of `/proc/<pid>/net/{tcp,tcp6,
//! udp,udp6}`, the socket inodes a process holds (`/proc/<pid>/fd`), its network namespace,
//! process group and comm. Parsers are pure (text in, values out); readers skip what is
//! missing (a process that exited, a file that is not there).

use std::path::{Path, PathBuf};

use gala_ebpf::addr::{AF_INET, AF_INET6};

/// TCP state `LISTEN` as `/proc/net/tcp` prints it (`0A`).
pub const TCP_LISTEN: u8 = 10;

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockRow {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local address in record form (IPv4 in the first four bytes).
    pub local: [u8; 16],
    /// Local port.
    pub lport: u16,
    /// Remote address in record form.
    pub remote: [u8; 16],
    /// Remote port.
    pub rport: u16,
    /// Socket state (TCP states; UDP prints 07 unconnected, 01 connected).
    pub state: u8,
    /// Socket inode (0 for sockets without a file, e.g. in TIME_WAIT).
    pub ino: u64,
}

/// An address as `/proc/net/*` prints it (`%08X` per 32-bit word in memory order) → bytes.
fn parse_addr(hex: &str) -> Option<([u8; 16], u16)> {
    let family = match hex.len() {
        8 => AF_INET,
        32 => AF_INET6,
        _ => return None,
    };
    let mut out = [0u8; 16];
    for (i, chunk) in hex.as_bytes().chunks(8).enumerate() {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some((out, family))
}

fn parse_endpoint(text: &str) -> Option<([u8; 16], u16, u16)> {
    let (addr, port) = text.split_once(':')?;
    let (addr, family) = parse_addr(addr)?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((addr, family, port))
}

/// One data line of `/proc/net/{tcp,udp}[6]`; `None` for the header or a malformed line.
pub fn parse_sock_line(line: &str) -> Option<SockRow> {
    let mut f = line.split_whitespace();
    let slot = f.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let (local, family, lport) = parse_endpoint(f.next()?)?;
    let (remote, _, rport) = parse_endpoint(f.next()?)?;
    let state = u8::from_str_radix(f.next()?, 16).ok()?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode
    let ino = f.nth(5)?.parse().ok()?;
    Some(SockRow {
        family,
        local,
        lport,
        remote,
        rport,
        state,
        ino,
    })
}

/// All rows of one such file's text.
pub fn parse_sock_table(text: &str) -> Vec<SockRow> {
    text.lines().filter_map(parse_sock_line).collect()
}

/// The inode of a `/proc/<pid>/fd/<n>` link target `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The namespace inode of a `/proc/<pid>/ns/net` link target `net:[4026531840]`.
pub fn netns_inode(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The process group id from the text of `/proc/<pid>/stat`.
pub fn parse_pgid(stat: &str) -> Option<u32> {
    // comm may hold spaces and parentheses: the fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Where `/proc` is (a `--proc-root`-style prefix for tests and containers).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs::new("/proc")
    }
}

impl Procfs {
    /// `/proc` at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    fn pid_path(&self, pid: u32, rest: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(rest)
    }

    /// Every numeric entry of `/proc`.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The socket inodes `pid` holds (empty if it exited or cannot be read).
    pub fn socket_inodes(&self, pid: u32) -> Vec<u64> {
        let Ok(dir) = std::fs::read_dir(self.pid_path(pid, "fd")) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let link = std::fs::read_link(e.path()).ok()?;
                socket_inode(link.to_str()?)
            })
            .collect()
    }

    /// The network namespace of `pid`.
    pub fn netns(&self, pid: u32) -> Option<u32> {
        let link = std::fs::read_link(self.pid_path(pid, "ns/net")).ok()?;
        netns_inode(link.to_str()?)
    }

    /// The process group of `pid`.
    pub fn pgid(&self, pid: u32) -> Option<u32> {
        parse_pgid(&std::fs::read_to_string(self.pid_path(pid, "stat")).ok()?)
    }

    /// The comm of `pid` (empty if it exited).
    pub fn comm(&self, pid: u32) -> String {
        std::fs::read_to_string(self.pid_path(pid, "comm"))
            .map(|s| s.trim_end_matches('\n').to_owned())
            .unwrap_or_default()
    }

    /// The TCP (`udp` false) or UDP rows, IPv4 and IPv6, of the network namespace `pid` is in.
    pub fn sockets(&self, pid: u32, udp: bool) -> Vec<SockRow> {
        let names: [&str; 2] = if udp {
            ["net/udp", "net/udp6"]
        } else {
            ["net/tcp", "net/tcp6"]
        };
        names
            .iter()
            .flat_map(|n| read(&self.pid_path(pid, n)))
            .collect()
    }
}

fn read(path: &Path) -> Vec<SockRow> {
    std::fs::read_to_string(path)
        .map(|t| parse_sock_table(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 48213 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
garbage line
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn tcp_rows_ipv4() {
        let rows = parse_sock_table(TCP);
        assert_eq!(rows.len(), 2);
        let l = rows[0];
        assert_eq!(l.family, AF_INET);
        assert_eq!(&l.local[..4], &[127, 0, 0, 1]);
        assert_eq!(l.lport, 8080);
        assert_eq!(l.state, TCP_LISTEN);
        assert_eq!(l.ino, 48213);
        assert_eq!(rows[1].rport, 8080);
        assert_eq!(rows[1].lport, 40000);
        assert_eq!(rows[1].ino, 0);
    }

    #[test]
    fn tcp_rows_ipv6_and_mapped() {
        let rows = parse_sock_table(TCP6);
        assert_eq!(rows[0].family, AF_INET6);
        assert_eq!(rows[0].local, [0; 16]);
        assert_eq!(rows[0].lport, 80);
        let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(rows[1].local, mapped.octets());
        assert_eq!(
            gala_ebpf::addr::ip_text(AF_INET6, &rows[1].remote),
            "127.0.0.1"
        );
    }

    #[test]
    fn links_and_stat() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(netns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(
            parse_pgid("4242 (nginx: worker (x)) S 4241 4200 4200 0 -1 4194560 ..."),
            Some(4200)
        );
        assert_eq!(parse_pgid("truncated (x"), None);
    }

    #[test]
    fn missing_proc_entries_are_empty() {
        let p = Procfs::new("/nonexistent-proc");
        assert!(p.pids().is_empty());
        assert!(p.socket_inodes(1).is_empty());
        assert!(p.sockets(1, false).is_empty());
        assert_eq!(p.comm(1), "");
        assert_eq!(p.pgid(1), None);
    }

    #[test]
    fn this_process_is_readable() {
        let p = Procfs::default();
        let me = std::process::id();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mine = p.socket_inodes(me);
        let row = p
            .sockets(me, false)
            .into_iter()
            .find(|r| r.state == TCP_LISTEN && r.lport == port)
            .expect("our listener in /proc/self/net/tcp");
        assert!(mine.contains(&row.ino));
        assert!(p.netns(me).is_some());
        assert!(p.pgid(me).is_some());
    }
}
