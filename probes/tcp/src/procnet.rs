//! `/proc/net/tcp` and `/proc/net/tcp6` (rows parsed by [`gala_ebpf::procnet`]): the
//! listening ports that exist before the probe starts (the BPF side learns later ones from
//! state changes). A socket first seen on send/recv is a server link when its local port
//! is listening. Malformed lines are skipped; a missing file gives nothing.

use std::collections::BTreeMap;
use std::path::Path;

use gala_ebpf::procnet::{read_table, SockRow, TCP_LISTEN};

/// Listening local ports and how many listening sockets each has.
pub fn listen_ports(sockets: &[SockRow]) -> BTreeMap<u16, u32> {
    let mut out = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.state == TCP_LISTEN) {
        *out.entry(s.lport).or_insert(0) += 1;
    }
    out
}

/// The listening ports of the host (`<root>/net/tcp` and `tcp6`; `root` is `/proc`).
pub fn host_listen_ports(root: &Path) -> BTreeMap<u16, u32> {
    let all: Vec<SockRow> = ["net/tcp", "net/tcp6"]
        .iter()
        .flat_map(|file| read_table(&root.join(file)))
        .collect();
    listen_ports(&all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::procnet::parse_table;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12347 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12348 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listen_ports_count_listening_sockets_only() {
        let mut all = parse_table(TCP);
        all.extend(parse_table(TCP6));
        let ports = listen_ports(&all);
        assert_eq!(
            ports.into_iter().collect::<Vec<_>>(),
            [(80, 1), (8080, 1), (8081, 2)]
        );
    }

    #[test]
    fn a_missing_root_gives_nothing() {
        assert!(host_listen_ports(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn this_host_lists_our_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(host_listen_ports(Path::new("/proc")).contains_key(&port));
    }
}
