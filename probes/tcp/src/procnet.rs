//! `/proc/net/tcp` and `/proc/net/tcp6`: the listening ports that exist before the probe
//! starts (the BPF side learns later ones from state changes). A socket first seen on
//! send/recv is a server link when its local port is listening. Malformed lines are
//! skipped; a missing file gives nothing.

use std::collections::BTreeMap;
use std::path::Path;

/// `TCP_LISTEN` as `/proc/net/tcp` prints the state (hex).
const TCP_LISTEN: u8 = 0x0A;

/// One socket line of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// Local address, network order (IPv4 in the first 4 bytes).
    pub local: [u8; 16],
    /// Local port.
    pub local_port: u16,
    /// Remote address.
    pub remote: [u8; 16],
    /// Remote port.
    pub remote_port: u16,
    /// TCP state (1 ESTABLISHED … 10 LISTEN).
    pub state: u8,
    /// Socket inode (matches `/proc/<pid>/fd/*` links `socket:[inode]`).
    pub inode: u64,
}

/// `ADDR:PORT` in the kernel's hex: each 32-bit word of the address in host order.
fn parse_endpoint(s: &str) -> Option<([u8; 16], u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if addr.len() != 8 && addr.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in addr.as_bytes().chunks(8).enumerate() {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        // The kernel prints each word with %08X of the in-memory (network order) word
        // read as a host integer.
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some((out, port))
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` (the header line is skipped).
pub fn parse(text: &str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _slot = f.next()?;
            let (local, local_port) = parse_endpoint(f.next()?)?;
            let (remote, remote_port) = parse_endpoint(f.next()?)?;
            let state = u8::from_str_radix(f.next()?, 16).ok()?;
            let inode = f.nth(5)?.parse().ok()?;
            Some(Socket {
                local,
                local_port,
                remote,
                remote_port,
                state,
                inode,
            })
        })
        .collect()
}

/// Listening local ports and how many listening sockets each has.
pub fn listen_ports(sockets: &[Socket]) -> BTreeMap<u16, u32> {
    let mut out = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.state == TCP_LISTEN) {
        *out.entry(s.local_port).or_insert(0) += 1;
    }
    out
}

/// The listening ports of the host (`<root>/net/tcp` and `tcp6`; `root` is `/proc`).
pub fn host_listen_ports(root: &Path) -> BTreeMap<u16, u32> {
    let mut all = Vec::new();
    for file in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(root.join(file)) {
            all.extend(parse(&text));
        }
    }
    listen_ports(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
   2: garbage line
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn ipv4_lines() {
        let s = parse(TCP);
        assert_eq!(s.len(), 2, "the garbage line is skipped");
        assert_eq!(&s[0].local[..4], &[127, 0, 0, 1]);
        assert_eq!(s[0].local_port, 8080);
        assert_eq!(s[0].state, TCP_LISTEN);
        assert_eq!(s[0].inode, 12345);
        assert_eq!(s[1].remote_port, 0xD431);
        assert_eq!(s[1].state, 1);
    }

    #[test]
    fn ipv6_lines_and_listen_ports() {
        let s = parse(TCP6);
        assert_eq!(s.len(), 2);
        let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(s[1].local, mapped.octets());
        let mut all = parse(TCP);
        all.extend(s);
        let ports = listen_ports(&all);
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), [(80, 1), (8080, 1)]);
    }

    #[test]
    fn a_missing_root_gives_nothing() {
        assert!(host_listen_ports(Path::new("/nonexistent")).is_empty());
    }
}
