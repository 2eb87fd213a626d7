//! Socket addresses as the records print them: dotted IPv4, compressed IPv6, and
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`) shown as the IPv4 address it carries.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// The text of an address stored as 16 bytes in network order (IPv4 in the first four).
pub fn ip_text(family: u16, addr: &[u8; 16]) -> String {
    if family == AF_INET {
        return Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string();
    }
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

/// The `protocol` key of the tcp and socket tables: the address family as a number, as the
/// original prints it (2 = IPv4, 10 = IPv6).
pub fn family_text(family: u16) -> &'static str {
    match family {
        AF_INET => "2",
        AF_INET6 => "10",
        _ => "0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_ipv6_and_mapped_addresses() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(ip_text(AF_INET, &a), "127.0.0.1");
        let v6: [u8; 16] = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(ip_text(AF_INET6, &v6), "fe80::1");
        let mapped = "::ffff:10.0.0.7".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(ip_text(AF_INET6, &mapped), "10.0.0.7");
        assert_eq!(family_text(AF_INET6), "10");
    }
}
