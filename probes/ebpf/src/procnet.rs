//! The socket tables `/proc/net/{tcp,tcp6,udp,udp6}` (also under `/proc/<pid>/net/`, the
//! tables of that process's network namespace): one row per socket with its addresses and
//! ports in the kernel's hex, its state and its inode. Parsing is pure (text in, rows out);
//! the header line and malformed lines give no row, and a missing file gives none.

use std::path::Path;

use crate::addr::{AF_INET, AF_INET6};

/// TCP state `LISTEN` as `/proc/net/tcp` prints it (`0A`).
pub const TCP_LISTEN: u8 = 10;

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockRow {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local address in record form, network order (IPv4 in the first four bytes).
    pub local: [u8; 16],
    /// Local port.
    pub lport: u16,
    /// Remote address in record form.
    pub remote: [u8; 16],
    /// Remote port.
    pub rport: u16,
    /// Socket state (TCP states, 1 ESTABLISHED … 10 LISTEN; UDP prints 07 unconnected,
    /// 01 connected).
    pub state: u8,
    /// Socket inode, as in the `/proc/<pid>/fd/*` links `socket:[inode]` (0 for sockets
    /// without a file, e.g. in TIME_WAIT).
    pub ino: u64,
}

/// An address as `/proc/net/*` prints it (`%08X` of each 32-bit word in memory order read
/// as a host integer) → bytes and family.
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

/// `ADDR:PORT` in the kernel's hex → address, family, port.
fn parse_endpoint(text: &str) -> Option<([u8; 16], u16, u16)> {
    let (addr, port) = text.split_once(':')?;
    let (addr, family) = parse_addr(addr)?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((addr, family, port))
}

/// One data line of `/proc/net/{tcp,udp}[6]`; `None` for the header or a malformed line.
pub fn parse_line(line: &str) -> Option<SockRow> {
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
pub fn parse_table(text: &str) -> Vec<SockRow> {
    text.lines().filter_map(parse_line).collect()
}

/// The rows of the file at `path`; none if it cannot be read.
pub fn read_table(path: &Path) -> Vec<SockRow> {
    std::fs::read_to_string(path)
        .map(|t| parse_table(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 48213 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   2: garbage line
garbage line
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 20 4 30 10 -1
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   102        0 2345 2 0000000000000000 5
";

    #[test]
    fn tcp_rows_ipv4() {
        let rows = parse_table(TCP);
        assert_eq!(
            rows.len(),
            2,
            "the header and the garbage lines give no row"
        );
        let l = rows[0];
        assert_eq!(l.family, AF_INET);
        assert_eq!(&l.local[..4], &[127, 0, 0, 1]);
        assert_eq!(l.lport, 8080);
        assert_eq!(l.state, TCP_LISTEN);
        assert_eq!(l.ino, 48213);
        assert_eq!(rows[1].rport, 8080);
        assert_eq!(rows[1].lport, 40000);
        assert_eq!(rows[1].state, 1);
        assert_eq!(rows[1].ino, 0);
    }

    #[test]
    fn tcp_rows_ipv6_and_mapped() {
        let rows = parse_table(TCP6);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].family, AF_INET6);
        assert_eq!(rows[0].local, [0; 16]);
        assert_eq!(rows[0].lport, 80);
        let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(rows[1].local, mapped.octets());
        assert_eq!(rows[1].rport, 0xD431);
        assert_eq!(crate::addr::ip_text(AF_INET6, &rows[1].remote), "127.0.0.1");
    }

    #[test]
    fn udp_rows() {
        let rows = parse_table(UDP);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].lport, 53);
        assert_eq!(rows[0].state, 7);
        assert_eq!(rows[0].ino, 2345);
    }

    #[test]
    fn malformed_lines_give_no_row() {
        for line in [
            "",
            "0: 0100007F:1F90",
            "0: 0100007:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 notanumber",
            "0: 0100007F:XYZ 00000000:0000 0A 0:0 0:0 0 0 0 1",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_missing_file_gives_no_row() {
        assert!(read_table(Path::new("/nonexistent/net/tcp")).is_empty());
    }
}
