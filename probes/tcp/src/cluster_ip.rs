//! `cluster_ip_backend = 1`: a client connection to an address that netfilter translates
//! (DNAT, as kube-proxy does for a Kubernetes cluster IP) is reported with the backend's
//! address and port as server ip and port, as the original does: the connection's
//! conntrack entry, read with the `conntrack` tool (`conntrack -L`, package `conntrack`),
//! gives the reply direction's source, which is the backend. Looked up once per client
//! link, in the probe's network namespace (where kube-proxy's entries are, on a node).
//! `cluster_ip_backend = 2` (the flowtracer's pinned map) has no flowtracer in this build.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::record::{LinkIdent, ROLE_CLIENT};

/// A backend: address and port.
pub type Backend = (IpAddr, u16);

/// One tuple of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A TCP conntrack entry: the original direction and the reply direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// As the client sent it.
    pub orig: Tuple,
    /// As the server answers.
    pub reply: Tuple,
}

impl Entry {
    /// The backend the original destination was translated to, if it was.
    pub fn dnat_backend(&self) -> Option<Backend> {
        let to = (self.reply.src, self.reply.sport);
        (to != (self.orig.dst, self.orig.dport)).then_some(to)
    }
}

/// One line of `conntrack -L` (`tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=…
/// dst=… sport=… dport=… [ASSURED] mark=0 use=1`): the first `src/dst/sport/dport` are the
/// original direction, the second the reply. `None` for any other line.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let mut words = line.split_whitespace();
    if words.next()? != "tcp" {
        return None;
    }
    let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            values.entry(k).or_default().push(v);
        }
    }
    let get = |k: &str, i: usize| values.get(k).and_then(|v| v.get(i)).copied();
    let tuple = |i: usize| -> Option<Tuple> {
        Some(Tuple {
            src: get("src", i)?.parse().ok()?,
            dst: get("dst", i)?.parse().ok()?,
            sport: get("sport", i)?.parse().ok()?,
            dport: get("dport", i)?.parse().ok()?,
        })
    };
    Some(Entry {
        orig: tuple(0)?,
        reply: tuple(1)?,
    })
}

/// Runs `conntrack -L` for the original tuple `orig`: the backend when the connection was
/// translated, `Ok(None)` when it was not (or has no entry).
pub fn lookup(orig: &Tuple) -> std::io::Result<Option<Backend>> {
    let family = if orig.src.is_ipv4() { "ipv4" } else { "ipv6" };
    let out = Command::new("conntrack")
        .args(["-L", "-f", family, "-p", "tcp"])
        .args(["--orig-src", &orig.src.to_string()])
        .args(["--orig-dst", &orig.dst.to_string()])
        .args(["--orig-port-src", &orig.sport.to_string()])
        .args(["--orig-port-dst", &orig.dport.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_entry)
        .find(|e| e.orig == *orig)
        .and_then(|e| e.dnat_backend()))
}

/// The original tuple of a client link (`None` for a server link).
pub fn client_tuple(id: &LinkIdent) -> Option<Tuple> {
    if id.role != ROLE_CLIENT {
        return None;
    }
    let ip = |a: &[u8; 16]| -> Option<IpAddr> {
        match id.family {
            2 => Some(IpAddr::from(<[u8; 4]>::try_from(&a[..4]).ok()?)),
            10 => Some(IpAddr::from(*a).to_canonical()),
            _ => None,
        }
    };
    Some(Tuple {
        src: ip(&id.cip)?,
        dst: ip(&id.sip)?,
        sport: id.cport,
        dport: id.sport,
    })
}

/// Client links' backends, looked up once per link.
#[derive(Debug, Default)]
pub struct Backends {
    cache: HashMap<u64, Option<Backend>>,
    /// A lookup failed (no `conntrack` tool): none is tried again.
    failed: bool,
    /// Why, until [`Backends::take_failure`] hands it to the log.
    unreported: Option<String>,
}

/// Links whose backend is remembered, at most (a burst of short connections does not grow
/// the cache without bound; a forgotten one is looked up again).
const MAX_CACHED: usize = 65536;

impl Backends {
    /// Rewrites a client link's server address and port to its backend's, when its
    /// connection was translated.
    pub fn translate(&mut self, id: &mut LinkIdent) {
        let Some(orig) = client_tuple(id) else {
            return;
        };
        if self.failed {
            return;
        }
        let backend = match self.cache.get(&id.id) {
            Some(b) => *b,
            None => {
                let b = match lookup(&orig) {
                    Ok(b) => b,
                    Err(e) => {
                        self.failed = true;
                        self.unreported = Some(format!("cluster_ip_backend: conntrack: {e}"));
                        None
                    }
                };
                if self.cache.len() >= MAX_CACHED {
                    self.cache.clear();
                }
                self.cache.insert(id.id, b);
                b
            }
        };
        if let Some((ip, port)) = backend {
            set_server(id, ip, port);
        }
    }

    /// Why lookups stopped, once.
    pub fn take_failure(&mut self) -> Option<String> {
        self.unreported.take()
    }

    /// Forgets a link (closed, or out of scope).
    pub fn forget(&mut self, id: u64) {
        self.cache.remove(&id);
    }
}

/// Sets a link's server side, in the link's family (an IPv4 backend of an IPv6 socket as
/// IPv4-mapped).
fn set_server(id: &mut LinkIdent, ip: IpAddr, port: u16) {
    let mut sip = [0u8; 16];
    match (id.family, ip) {
        (2, IpAddr::V4(a)) => sip[..4].copy_from_slice(&a.octets()),
        (10, IpAddr::V4(a)) => sip = a.to_ipv6_mapped().octets(),
        (10, IpAddr::V6(a)) => sip = a.octets(),
        _ => return,
    }
    id.sip = sip;
    id.sport = port;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNAT: &str = "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.96.0.10 sport=41234 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=8080 dport=41234 [ASSURED] mark=0 use=1";

    #[test]
    fn a_dnat_entry_gives_its_backend() {
        let e = parse_entry(DNAT).unwrap();
        assert_eq!(e.orig.dst, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(e.orig.sport, 41234);
        assert_eq!(e.dnat_backend(), Some(("10.0.0.2".parse().unwrap(), 8080)));
        let plain = "tcp      6 117 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=5000 dport=80 src=127.0.0.1 dst=127.0.0.1 sport=80 dport=5000 [ASSURED] mark=0 use=1";
        assert_eq!(parse_entry(plain).unwrap().dnat_backend(), None);
        let v6 = "tcp      6 300 ESTABLISHED src=fd00::1 dst=fd00:96::a sport=5000 dport=443 src=fd00::2 dst=fd00::1 sport=8443 dport=5000 [ASSURED] mark=0 use=1";
        assert_eq!(
            parse_entry(v6).unwrap().dnat_backend(),
            Some(("fd00::2".parse().unwrap(), 8443))
        );
    }

    #[test]
    fn other_lines_are_not_entries() {
        assert_eq!(parse_entry(""), None);
        assert_eq!(
            parse_entry("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown."),
            None
        );
        assert_eq!(
            parse_entry("udp      17 29 src=10.0.0.1 dst=10.0.0.53 sport=5353 dport=53 src=10.0.0.53 dst=10.0.0.1 sport=53 dport=5353 mark=0 use=1"),
            None
        );
        assert_eq!(
            parse_entry("tcp 6 10 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED]"),
            None
        );
    }

    #[test]
    fn only_client_links_are_rewritten_in_their_family() {
        let mut id = LinkIdent {
            role: ROLE_CLIENT,
            family: 2,
            cport: 41234,
            sport: 80,
            ..Default::default()
        };
        id.cip[..4].copy_from_slice(&[10, 0, 0, 1]);
        id.sip[..4].copy_from_slice(&[10, 96, 0, 10]);
        let t = client_tuple(&id).unwrap();
        assert_eq!(t, parse_entry(DNAT).unwrap().orig);
        set_server(&mut id, "10.0.0.2".parse().unwrap(), 8080);
        assert_eq!((&id.sip[..4], id.sport), (&[10, 0, 0, 2][..], 8080));
        id.family = 10;
        set_server(&mut id, "10.0.0.3".parse().unwrap(), 8081);
        assert_eq!(
            IpAddr::from(id.sip).to_canonical(),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        id.role = crate::record::ROLE_SERVER;
        assert_eq!(client_tuple(&id), None);
    }
}
