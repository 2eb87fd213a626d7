//! TOA ("TCP Option Address"): the TCP option a layer-4 load balancer (Huawei ELB, LVS
//! with the TOA module) adds to the SYN it forwards, carrying the real client's address,
//! which the server's socket only sees as the balancer's. `toa_client_ip` is that address.
//! The BPF side (`record_toa` in `src/bpf/tcp.bpf.c`, at `tcp_conn_request`) hands over
//! the SYN's TCP options when a byte of them could be a TOA kind; this module walks them
//! and reads the address.
//!
//! Layouts, as the original parses them: kind 254, length 8: port (2 bytes), IPv4
//! address (4); kind 253, length 20: port, IPv6 address (16); both in network order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Option kind of the IPv4 TOA.
pub const KIND_V4: u8 = 254;
/// Length of the IPv4 TOA option (kind and length bytes included).
pub const LEN_V4: u8 = 8;
/// Option kind of the IPv6 TOA.
pub const KIND_V6: u8 = 253;
/// Length of the IPv6 TOA option.
pub const LEN_V6: u8 = 20;

/// The client address in one TOA option (`opt` starts at its kind byte; trailing bytes
/// are ignored). `None` for no option (kind 0), another option, a wrong length, or an
/// unspecified address.
pub fn client_ip(opt: &[u8]) -> Option<IpAddr> {
    let ip = match (opt.first()?, opt.get(1)?) {
        (&KIND_V4, &LEN_V4) => {
            let a: [u8; 4] = opt.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (&KIND_V6, &LEN_V6) => {
            let a: [u8; 16] = opt.get(4..20)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(a)).to_canonical()
        }
        _ => return None,
    };
    (!ip.is_unspecified()).then_some(ip)
}

/// The client address in a SYN's TCP options as the BPF side hands them over: the first
/// `len` bytes of `options` (`len` 0: none).
pub fn client_ip_in(options: &[u8], len: u8) -> Option<IpAddr> {
    find_option(options.get(..usize::from(len))?).and_then(client_ip)
}

/// The TOA option in a TCP header's options (`options` as they follow the 20-byte
/// header), walked as the kernel's `tcp_parse_options()` does: EOL ends, NOP is one byte,
/// every other option has a length of at least 2 that fits.
pub fn find_option(options: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                if (kind == KIND_V4 && len == usize::from(LEN_V4))
                    || (kind == KIND_V6 && len == usize::from(LEN_V6))
                {
                    return Some(&options[i..i + len]);
                }
                i += len;
            }
        }
    }
    None
}

/// An IPv4 TOA option for `ip:port`.
pub fn option_v4(ip: Ipv4Addr, port: u16) -> [u8; 8] {
    let mut o = [KIND_V4, LEN_V4, 0, 0, 0, 0, 0, 0];
    o[2..4].copy_from_slice(&port.to_be_bytes());
    o[4..8].copy_from_slice(&ip.octets());
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_options_give_the_client_address() {
        let v4 = option_v4(Ipv4Addr::new(203, 0, 113, 7), 40000);
        assert_eq!(v4, [254, 8, 0x9c, 0x40, 203, 0, 113, 7]);
        assert_eq!(client_ip(&v4), Some("203.0.113.7".parse().unwrap()));
        // the BPF side hands over 20 bytes whatever the option's length
        let mut padded = [0u8; 20];
        padded[..8].copy_from_slice(&v4);
        assert_eq!(client_ip(&padded), Some("203.0.113.7".parse().unwrap()));
        let mut v6 = [0u8; 20];
        v6[..4].copy_from_slice(&[253, 20, 0x1f, 0x90]);
        v6[4..].copy_from_slice(&"2001:db8::42".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(client_ip(&v6), Some("2001:db8::42".parse().unwrap()));
        // an IPv4-mapped IPv6 address prints as IPv4
        v6[4..].copy_from_slice(&"::ffff:198.51.100.1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(client_ip(&v6), Some("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn no_option_other_kinds_and_bad_lengths_give_nothing() {
        assert_eq!(client_ip(&[0u8; 20]), None);
        assert_eq!(client_ip(&[]), None);
        assert_eq!(client_ip(&[254]), None);
        // kind 254 with the IPv6 length, kind 253 with the IPv4 length, truncated
        assert_eq!(client_ip(&[254, 20, 0, 0, 1, 2, 3, 4]), None);
        assert_eq!(client_ip(&[253, 8, 0, 0, 1, 2, 3, 4]), None);
        assert_eq!(client_ip(&[254, 8, 0, 0, 1, 2]), None);
        // MSS option
        assert_eq!(client_ip(&[2, 4, 0x05, 0xb4, 0, 0, 0, 0]), None);
        assert_eq!(client_ip(&option_v4(Ipv4Addr::UNSPECIFIED, 1)), None);
    }

    #[test]
    fn the_walk_skips_nops_and_other_options_and_stops_at_eol_or_bad_lengths() {
        let toa = option_v4(Ipv4Addr::new(10, 1, 2, 3), 80);
        // MSS, NOP, NOP, SACK-permitted, TOA: as a SYN from a balancer would have them
        let mut opts = vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2];
        opts.extend_from_slice(&toa);
        assert_eq!(find_option(&opts), Some(&toa[..]));
        assert_eq!(
            find_option(&opts).and_then(client_ip),
            Some("10.1.2.3".parse().unwrap())
        );
        // EOL before the option: not parsed
        let mut eol = vec![2, 4, 0x05, 0xb4, 0];
        eol.extend_from_slice(&toa);
        assert_eq!(find_option(&eol), None);
        // a "silly" length ends the walk, as in the kernel
        let mut silly = vec![8, 1];
        silly.extend_from_slice(&toa);
        assert_eq!(find_option(&silly), None);
        // an option longer than what is left
        assert_eq!(find_option(&toa[..7]), None);
        // a TOA kind with another length is skipped, the next one found
        let mut wrong = vec![254, 4, 0, 0];
        wrong.extend_from_slice(&toa);
        assert_eq!(find_option(&wrong), Some(&toa[..]));
    }

    #[test]
    fn options_as_handed_over_are_cut_at_their_length() {
        // 40 bytes, of which the SYN's options are the first 16; a 254 in the timestamp
        // value is not an option
        let mut block = [0u8; 40];
        let opts = [2, 4, 0x05, 0xb4, 1, 1, 8, 10, 0xfe, 8, 1, 2, 3, 4, 0, 0];
        block[..16].copy_from_slice(&opts);
        assert_eq!(client_ip_in(&block, 16), None);
        let toa = option_v4(Ipv4Addr::new(192, 0, 2, 9), 1);
        block[16..24].copy_from_slice(&toa);
        assert_eq!(client_ip_in(&block, 16), None, "past the options' length");
        assert_eq!(client_ip_in(&block, 24), Some("192.0.2.9".parse().unwrap()));
        assert_eq!(client_ip_in(&block, 0), None);
        assert_eq!(client_ip_in(&block, 41), None);
    }
}
