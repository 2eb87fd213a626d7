//! What `/proc` says about sockets and processes: the rows of `/proc/<pid>/net/{tcp,tcp6,
//! udp,udp6}` (parsed by [`gala_ebpf::procnet`]), the socket inodes a process holds
//! (`/proc/<pid>/fd`), its network namespace, process group and comm. Parsers are pure
//! (text in, values out); readers skip what is missing (a process that exited, a file that
//! is not there).

use std::path::PathBuf;

use gala_ebpf::procnet::{read_table, SockRow};

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
            .flat_map(|n| read_table(&self.pid_path(pid, n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use gala_ebpf::procnet::TCP_LISTEN;
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
