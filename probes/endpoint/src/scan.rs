//! Who owns which socket: for the processes in scope, the socket inodes they hold
//! (`/proc/<pid>/fd`) joined with the socket tables of their network namespaces. The result
//! gives the listeners to preload into BPF (grouped by address: the sockets of one
//! `SO_REUSEPORT` group, or one socket inherited by several processes, are one endpoint),
//! the UDP sockets' owners, and the inode → tgid map used to resolve drops seen in softirq.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gala_ebpf::procnet::{SockRow, TCP_LISTEN};

use crate::procfs::Procfs;

/// One listen endpoint: every LISTEN socket on the same netns, family, address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerGroup {
    /// Network namespace inode.
    pub netns: u32,
    /// Address family.
    pub family: u16,
    /// Listen address in record form.
    pub addr: [u8; 16],
    /// Listen port.
    pub port: u16,
    /// The sockets' inodes.
    pub inos: Vec<u64>,
    /// The processes in scope holding any of them.
    pub holders: BTreeSet<u32>,
}

impl ListenerGroup {
    /// Several processes share the endpoint (the `multi` label).
    pub fn multi(&self) -> bool {
        self.holders.len() > 1
    }
}

/// The processes in scope and their sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Listen endpoints of processes in scope.
    pub listeners: Vec<ListenerGroup>,
    /// UDP socket inode → the lowest tgid in scope holding it.
    pub udp_owner: HashMap<u64, u32>,
}

/// What was read for one process: its tgid, network namespace and socket inodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSockets {
    /// The process.
    pub tgid: u32,
    /// Its network namespace.
    pub netns: u32,
    /// The socket inodes it holds.
    pub inodes: Vec<u64>,
}

/// The socket tables of one network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetnsTables {
    /// TCP rows (v4 and v6).
    pub tcp: Vec<SockRow>,
    /// UDP rows (v4 and v6).
    pub udp: Vec<SockRow>,
}

/// Joins processes and tables (pure).
pub fn build(procs: &[ProcSockets], tables: &HashMap<u32, NetnsTables>) -> Scan {
    let mut holders: HashMap<u64, BTreeSet<u32>> = HashMap::new();
    for p in procs {
        for ino in &p.inodes {
            holders.entry(*ino).or_default().insert(p.tgid);
        }
    }
    let mut groups: BTreeMap<(u32, u16, [u8; 16], u16), ListenerGroup> = BTreeMap::new();
    let mut udp_owner = HashMap::new();
    for (netns, t) in tables {
        for row in t.tcp.iter().filter(|r| r.state == TCP_LISTEN && r.ino != 0) {
            let Some(h) = holders.get(&row.ino) else {
                continue;
            };
            let g = groups
                .entry((*netns, row.family, row.local, row.lport))
                .or_insert_with(|| ListenerGroup {
                    netns: *netns,
                    family: row.family,
                    addr: row.local,
                    port: row.lport,
                    inos: Vec::new(),
                    holders: BTreeSet::new(),
                });
            if !g.inos.contains(&row.ino) {
                g.inos.push(row.ino);
            }
            g.holders.extend(h);
        }
        for row in t.udp.iter().filter(|r| r.ino != 0) {
            if let Some(first) = holders.get(&row.ino).and_then(|h| h.first()) {
                udp_owner.insert(row.ino, *first);
            }
        }
    }
    Scan {
        listeners: groups.into_values().collect(),
        udp_owner,
    }
}

/// Reads `/proc` for the processes `pids` (each network namespace's tables once).
pub fn scan(proc: &Procfs, pids: &[u32]) -> Scan {
    let mut procs = Vec::new();
    let mut tables: HashMap<u32, NetnsTables> = HashMap::new();
    for &pid in pids {
        let inodes = proc.socket_inodes(pid);
        if inodes.is_empty() {
            continue;
        }
        let Some(netns) = proc.netns(pid) else {
            continue;
        };
        tables.entry(netns).or_insert_with(|| NetnsTables {
            tcp: proc.sockets(pid, false),
            udp: proc.sockets(pid, true),
        });
        procs.push(ProcSockets {
            tgid: pid,
            netns,
            inodes,
        });
    }
    build(&procs, &tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::addr::AF_INET;

    fn row(state: u8, port: u16, ino: u64) -> SockRow {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[127, 0, 0, 1]);
        SockRow {
            family: AF_INET,
            local,
            lport: port,
            remote: [0; 16],
            rport: 0,
            state,
            ino,
        }
    }

    #[test]
    fn listeners_group_by_address_and_count_holders() {
        let procs = vec![
            ProcSockets {
                tgid: 100,
                netns: 1,
                inodes: vec![10, 11, 30],
            },
            ProcSockets {
                tgid: 101,
                netns: 1,
                inodes: vec![10],
            },
            ProcSockets {
                tgid: 102,
                netns: 1,
                inodes: vec![12],
            },
        ];
        let mut tables = HashMap::new();
        tables.insert(
            1,
            NetnsTables {
                tcp: vec![
                    row(TCP_LISTEN, 80, 10),
                    row(TCP_LISTEN, 443, 11),
                    row(TCP_LISTEN, 443, 12),
                    row(TCP_LISTEN, 8080, 99), // nobody in scope holds it
                    row(1, 80, 13),            // established, not a listener
                ],
                udp: vec![row(7, 53, 30), row(7, 54, 31)],
            },
        );
        let s = build(&procs, &tables);
        assert_eq!(s.listeners.len(), 2);
        let http = &s.listeners[0];
        assert_eq!((http.port, http.inos.clone()), (80, vec![10]));
        assert!(http.multi(), "fd shared by 100 and 101");
        let https = &s.listeners[1];
        assert_eq!(https.inos, vec![11, 12]);
        assert_eq!(https.holders, BTreeSet::from([100, 102]));
        assert_eq!(s.udp_owner, HashMap::from([(30, 100)]));
    }

    #[test]
    fn single_holder_is_not_multi() {
        let procs = vec![ProcSockets {
            tgid: 5,
            netns: 2,
            inodes: vec![1],
        }];
        let tables = HashMap::from([(
            2,
            NetnsTables {
                tcp: vec![row(TCP_LISTEN, 22, 1)],
                udp: vec![],
            },
        )]);
        let s = build(&procs, &tables);
        assert!(!s.listeners[0].multi());
        assert_eq!(s.listeners[0].netns, 2);
    }

    #[test]
    fn scans_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        let me = std::process::id();
        let s = scan(&Procfs::default(), &[me, u32::MAX]);
        let g = s
            .listeners
            .iter()
            .find(|g| g.port == port)
            .expect("own listener");
        assert_eq!(g.holders, BTreeSet::from([me]));
        let udp_rows = Procfs::default().sockets(me, true);
        let ino = udp_rows.iter().find(|r| r.lport == uport).unwrap().ino;
        assert_eq!(s.udp_owner.get(&ino), Some(&me));
    }
}
