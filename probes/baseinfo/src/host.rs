//! Sub-item `host`: the host's identity — OS release, kernel, CPUs, memory, boot time,
//! physical or virtual machine, hostname and IP addresses — as one info-style record of
//! table `system_os` (gauge `value` = 1, everything else labels). No commands are run.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::collector::{Collector, Context, Report};
use crate::error::CollectError;
use crate::record;

/// `PRETTY_NAME` when os-release does not say (the os-release(5) default).
const DEFAULT_PRETTY_NAME: &str = "Linux";

/// Parses os-release(5): `KEY=value` lines, values optionally quoted, `#` comments.
pub fn parse_os_release(text: &str) -> HashMap<&str, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        out.insert(key.trim(), unquote(value.trim()));
    }
    out
}

/// A shell-style value: `"a \"b\""`, `'a b'` or a bare word.
fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The version line of `/etc/openEuler-latest` or `/etc/euleros-latest`
/// (`openeulerversion=openEuler-22.03-LTS-SP4`): the value of the first key naming
/// "euler" and then "version".
pub fn euler_latest_version(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let at = key.find("euler")?;
        key[at..].contains("version").then_some(value.trim())
    })
}

/// The file that names an Euler distribution's exact release, by os-release `ID`.
pub fn euler_latest_file(id: &str) -> Option<&'static str> {
    if id.eq_ignore_ascii_case("openEuler") {
        Some("/etc/openEuler-latest")
    } else if id.eq_ignore_ascii_case("euleros") {
        Some("/etc/euleros-latest")
    } else {
        None
    }
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
pub fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let mut words = line.split_ascii_whitespace();
        (words.next()? == "btime").then(|| words.next()?.parse().ok())?
    })
}

/// Whether `/proc/cpuinfo` has the `hypervisor` CPU flag (x86 guests: CPUID bit 31 of ECX).
pub fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        line.split_once(':').is_some_and(|(key, value)| {
            key.trim() == "flags" && value.split_ascii_whitespace().any(|f| f == "hypervisor")
        })
    })
}

/// DMI vendors and products of virtual machines (as systemd-detect-virt knows them).
const VM_DMI: [&str; 17] = [
    "KVM",
    "QEMU",
    "VMware",
    "VMW",
    "innotek GmbH",
    "VirtualBox",
    "Oracle Corporation",
    "Xen",
    "Bochs",
    "Parallels",
    "BHYVE",
    "Hyper-V",
    "OpenStack",
    "KubeVirt",
    "Amazon EC2",
    "Google Compute Engine",
    "Apple Virtualization",
];

/// Whether `/sys/class/dmi/id/{sys_vendor,product_name}` name a virtual machine. EC2
/// bare-metal instances (`*.metal`) are physical; Microsoft counts only for its
/// `Virtual Machine` product (Hyper-V), not for its laptops.
pub fn dmi_is_vm(sys_vendor: &str, product_name: &str) -> bool {
    let (vendor, product) = (sys_vendor.trim(), product_name.trim());
    if product.ends_with(".metal") {
        return false;
    }
    if vendor.starts_with("Microsoft") {
        return product.contains("Virtual Machine");
    }
    VM_DMI
        .iter()
        .any(|v| vendor.starts_with(v) || product.starts_with(v))
}

/// `pm` or `vm`.
pub fn host_type(
    cpuinfo: Option<&str>,
    sys_vendor: Option<&str>,
    product: Option<&str>,
) -> &'static str {
    let vm = cpuinfo.is_some_and(has_hypervisor_flag)
        || dmi_is_vm(sys_vendor.unwrap_or_default(), product.unwrap_or_default());
    if vm {
        "vm"
    } else {
        "pm"
    }
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// The interface, when the source says (fib_trie does not).
    pub dev: Option<String>,
    /// The address.
    pub ip: IpAddr,
    /// Whether the interface is up.
    pub up: bool,
    /// Whether the interface is a loopback.
    pub loopback: bool,
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The `ip_addr` label: addresses of up, non-loopback interfaces that are neither loopback,
/// link-local nor unspecified, once each, space-separated; only those of `dev_name` if set.
pub fn select_addrs(addrs: &[IfAddr], dev_name: &str) -> String {
    let mut seen: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let wanted = a.up
            && !a.loopback
            && !a.ip.is_loopback()
            && !a.ip.is_unspecified()
            && !is_link_local(&a.ip)
            && (dev_name.is_empty()
                || a.dev
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(dev_name)));
        if wanted && !seen.contains(&a.ip) {
            seen.push(a.ip);
        }
    }
    seen.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `/proc/net/if_inet6`: (device, address) per row
/// (`20010db8000000000000000000000010 02 40 00 80 eth0`).
pub fn parse_if_inet6(text: &str) -> Vec<(&str, Ipv6Addr)> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let [hex, _, _, _, _, dev] = words[..] else {
                return None;
            };
            let bits = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            Some((dev, Ipv6Addr::from(bits)))
        })
        .collect()
}

/// The local IPv4 addresses of `/proc/net/fib_trie`: the leaves with a `/32 host LOCAL`
/// route, once each, in order. (Their devices are not in the file; the kernel drops the
/// local routes of an interface that goes down.)
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut leaf = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            leaf = ip.trim().parse::<Ipv4Addr>().ok();
        } else if t.split_ascii_whitespace().eq(["/32", "host", "LOCAL"]) {
            if let Some(ip) = leaf {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// `IFF_UP` and `IFF_LOOPBACK` from `/sys/class/net/<dev>/flags` (`0x1003`).
pub fn parse_if_flags(text: &str) -> Option<(bool, bool)> {
    let t = text.trim();
    let flags = u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()?;
    Some((flags & 0x1 != 0, flags & 0x8 != 0))
}

/// The addresses of this network namespace, from getifaddrs(3).
fn live_addrs() -> Result<Vec<IfAddr>, CollectError> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| CollectError::Os {
        what: "getifaddrs".into(),
        source: e.into(),
    })?;
    Ok(addrs
        .filter_map(|a| {
            let sa = a.address?;
            let ip = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some(IfAddr {
                dev: Some(a.interface_name),
                ip,
                up: a.flags.contains(InterfaceFlags::IFF_UP),
                loopback: a.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            })
        })
        .collect())
}

/// The addresses as procfs and sysfs under `root` show them: IPv4 from `fib_trie`, IPv6
/// from `if_inet6` with each interface's flags.
fn procfs_addrs(ctx: &Context<'_>, out: &mut Report) -> Vec<IfAddr> {
    let mut addrs = Vec::new();
    match ctx.root.read("/proc/net/fib_trie") {
        Ok(text) => addrs.extend(parse_fib_trie_local(&text).into_iter().map(|ip| IfAddr {
            dev: None,
            ip: IpAddr::V4(ip),
            up: true,
            loopback: false,
        })),
        Err(e) => out.warn("fib_trie", e),
    }
    if !ctx.params().dev_name.is_empty() && !addrs.is_empty() {
        out.warn(
            "dev_name-ipv4",
            format!(
                "ip_addr: the IPv4 addresses of {} cannot be told apart under host root {} (fib_trie names no device); only its IPv6 addresses are listed",
                ctx.params().dev_name,
                ctx.root.root().display()
            ),
        );
    }
    match ctx.root.read("/proc/net/if_inet6") {
        Ok(text) => {
            for (dev, ip) in parse_if_inet6(&text) {
                let flags = ctx
                    .root
                    .read(format!("/sys/class/net/{dev}/flags"))
                    .ok()
                    .and_then(|f| parse_if_flags(&f));
                // An interface whose flags cannot be read counts as up and not loopback.
                let (up, loopback) = flags.unwrap_or((true, false));
                addrs.push(IfAddr {
                    dev: Some(dev.to_owned()),
                    ip: IpAddr::V6(ip),
                    up,
                    loopback,
                });
            }
        }
        // No IPv6 in this kernel (or disabled): nothing to add, nothing to say.
        Err(CollectError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
        }
        Err(e) => out.warn("if_inet6", e),
    }
    addrs
}

/// What does not change while the host runs, read once.
#[derive(Debug, Clone)]
struct Identity {
    os_version: String,
    kversion: String,
    cpu_num: u64,
    memory_mb: u64,
    host_type: &'static str,
    clock_ticks: u64,
    os_btime: String,
}

/// A host file's first line, `None` (and a warning) if it cannot be read.
fn read_line(ctx: &Context<'_>, out: &mut Report, key: &str, abs: &str) -> Option<String> {
    match ctx.root.read(abs) {
        Ok(text) => Some(text.lines().next().unwrap_or_default().trim().to_owned()),
        Err(e) => {
            out.warn(key, e);
            None
        }
    }
}

impl Identity {
    fn read(ctx: &Context<'_>, out: &mut Report) -> Identity {
        let root = ctx.root;
        let os_release = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| root.read_optional(p).ok().flatten());
        if os_release.is_none() {
            out.warn(
                "os-release",
                format!(
                    "neither {} nor {} is readable; os_version is \"{DEFAULT_PRETTY_NAME}\"",
                    root.path("/etc/os-release").display(),
                    root.path("/usr/lib/os-release").display()
                ),
            );
        }
        let fields = os_release
            .as_deref()
            .map(parse_os_release)
            .unwrap_or_default();
        let pretty = fields
            .get("PRETTY_NAME")
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_PRETTY_NAME.to_owned());
        let id = fields.get("ID").map(String::as_str).unwrap_or_default();
        let latest = euler_latest_file(id).and_then(|file| {
            let text = root
                .read(file)
                .map_err(|e| out.warn("euler-latest", e))
                .ok()?;
            let version = euler_latest_version(&text)
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
            if version.is_none() {
                out.warn(
                    "euler-latest",
                    format!("{}: no version line", root.path(file).display()),
                );
            }
            version
        });
        let cpuinfo = root.read("/proc/cpuinfo").ok();
        let dmi = |f: &str| root.read(format!("/sys/class/dmi/id/{f}")).ok();
        let os_btime = root
            .read("/proc/stat")
            .map_err(|e| out.warn("btime", e))
            .ok()
            .and_then(|s| parse_btime(&s))
            .map_or_else(String::new, |b| b.to_string());
        let sys = ctx.system;
        Identity {
            os_version: latest.unwrap_or(pretty),
            kversion: read_line(ctx, out, "osrelease", "/proc/sys/kernel/osrelease")
                .unwrap_or_default(),
            cpu_num: sys.cpus_configured,
            memory_mb: sys.page_size.saturating_mul(sys.phys_pages) / (1024 * 1024),
            host_type: host_type(
                cpuinfo.as_deref(),
                dmi("sys_vendor").as_deref(),
                dmi("product_name").as_deref(),
            ),
            clock_ticks: sys.clk_tck,
            os_btime,
        }
    }
}

/// The `host` collector.
#[derive(Debug, Default)]
pub struct HostCollector {
    identity: Option<Identity>,
}

impl Collector for HostCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let id = match &self.identity {
            Some(id) => id.clone(),
            None => self.identity.insert(Identity::read(ctx, out)).clone(),
        };
        let hostname =
            read_line(ctx, out, "hostname", "/proc/sys/kernel/hostname").unwrap_or_default();
        let addrs = if ctx.root.root() == Path::new("/") {
            live_addrs().unwrap_or_else(|e| {
                out.warn("getifaddrs", e);
                Vec::new()
            })
        } else {
            procfs_addrs(ctx, out)
        };
        let ip_addr = select_addrs(&addrs, &ctx.params().dev_name);
        record!(
            out,
            "system_os",
            id.os_version,
            hostname,
            id.kversion,
            id.cpu_num,
            id.memory_mb,
            ip_addr,
            id.host_type,
            id.clock_ticks,
            id.os_btime,
            1
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_unquoted() {
        let f = parse_os_release(
            "# comment\nNAME=\"openEuler\"\nID=openEuler\nPRETTY_NAME=\"openEuler 22.03 (LTS-SP4)\"\nX='a b'\nY=\"say \\\"hi\\\"\"\nbroken line\n",
        );
        assert_eq!(f["ID"], "openEuler");
        assert_eq!(f["PRETTY_NAME"], "openEuler 22.03 (LTS-SP4)");
        assert_eq!(f["X"], "a b");
        assert_eq!(f["Y"], "say \"hi\"");
        assert_eq!(f.len(), 5);
    }

    #[test]
    fn euler_version_lines() {
        let latest = "openeulerversion=openEuler-22.03-LTS-SP4\ncompiletime=2024-06-27\nkernelversion=5.10.0\n";
        assert_eq!(
            euler_latest_version(latest),
            Some("openEuler-22.03-LTS-SP4")
        );
        assert_eq!(
            euler_latest_version("compiletime=x\neulerversion=EulerOS-V2.0SP10\n"),
            Some("EulerOS-V2.0SP10")
        );
        // "version" before "euler" is another key.
        assert_eq!(
            euler_latest_version("kernelversion=5.10\nversioneuler=x\n"),
            None
        );
        assert_eq!(
            euler_latest_file("openeuler"),
            Some("/etc/openEuler-latest")
        );
        assert_eq!(euler_latest_file("euleros"), Some("/etc/euleros-latest"));
        assert_eq!(euler_latest_file("debian"), None);
    }

    #[test]
    fn btime_of_stat() {
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1764600000\nprocesses 3\n"),
            Some(1764600000)
        );
        assert_eq!(parse_btime("cpu 1 2\n"), None);
        assert_eq!(parse_btime("btime x\n"), None);
    }

    #[test]
    fn physical_or_virtual() {
        let guest = "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n";
        let metal = "processor\t: 0\nflags\t\t: fpu vme lahf_lm\n";
        assert_eq!(host_type(Some(guest), None, None), "vm");
        assert_eq!(host_type(Some(metal), None, None), "pm");
        assert_eq!(
            host_type(Some(metal), Some("Dell Inc.\n"), Some("PowerEdge R740\n")),
            "pm"
        );
        // arm64 has no flags line: DMI decides.
        assert_eq!(
            host_type(
                Some("Features\t: fp asimd\n"),
                Some("QEMU\n"),
                Some("KVM Virtual Machine\n")
            ),
            "vm"
        );
        assert_eq!(
            host_type(None, Some("VMware, Inc.\n"), Some("VMware7,1\n")),
            "vm"
        );
        assert_eq!(
            host_type(None, Some("OpenStack Foundation"), Some("OpenStack Nova")),
            "vm"
        );
        assert_eq!(host_type(None, Some("Amazon EC2"), Some("m5.large")), "vm");
        assert_eq!(host_type(None, Some("Amazon EC2"), Some("m5.metal")), "pm");
        assert_eq!(
            host_type(None, Some("Microsoft Corporation"), Some("Virtual Machine")),
            "vm"
        );
        assert_eq!(
            host_type(
                None,
                Some("Microsoft Corporation"),
                Some("Surface Laptop 5")
            ),
            "pm"
        );
        assert_eq!(
            host_type(None, Some("innotek GmbH"), Some("VirtualBox")),
            "vm"
        );
        assert_eq!(host_type(None, None, None), "pm");
    }

    fn a(dev: Option<&str>, ip: &str, up: bool, loopback: bool) -> IfAddr {
        IfAddr {
            dev: dev.map(str::to_owned),
            ip: ip.parse().unwrap(),
            up,
            loopback,
        }
    }

    #[test]
    fn addresses_worth_listing() {
        let addrs = [
            a(Some("lo"), "127.0.0.1", true, true),
            a(Some("eth0"), "192.0.2.10", true, false),
            a(Some("eth0"), "169.254.1.2", true, false),
            a(Some("eth1"), "198.51.100.7", false, false),
            a(Some("eth2"), "198.51.100.8", true, false),
            a(Some("lo"), "::1", true, true),
            a(Some("eth0"), "2001:db8::10", true, false),
            a(Some("eth0"), "fe80::1", true, false),
            a(Some("eth2"), "192.0.2.10", true, false),
            a(None, "203.0.113.5", true, false),
        ];
        assert_eq!(
            select_addrs(&addrs, ""),
            "192.0.2.10 198.51.100.8 2001:db8::10 203.0.113.5"
        );
        assert_eq!(select_addrs(&addrs, "eth0"), "192.0.2.10 2001:db8::10");
        assert_eq!(select_addrs(&addrs, "ETH2"), "198.51.100.8 192.0.2.10");
        assert_eq!(select_addrs(&addrs, "eth9"), "");
        assert_eq!(select_addrs(&[], ""), "");
    }

    #[test]
    fn if_inet6_rows() {
        let rows = parse_if_inet6(
            "20010db8000000000000000000000010 02 40 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\nshort row\nzz010db8000000000000000000000010 02 40 00 80 eth0\n",
        );
        assert_eq!(
            rows,
            [
                ("eth0", "2001:db8::10".parse().unwrap()),
                ("lo", Ipv6Addr::LOCALHOST)
            ]
        );
    }

    #[test]
    fn fib_trie_local_leaves() {
        let text = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     |-- 192.0.2.0
        /24 link UNICAST
     |-- 192.0.2.10
        /32 host LOCAL
Local:
     |-- 192.0.2.10
        /32 host LOCAL
     |-- 192.0.2.255
        /32 link BROADCAST
";
        let ips = parse_fib_trie_local(text);
        assert_eq!(
            ips,
            [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 10)]
        );
        assert!(parse_fib_trie_local("").is_empty());
    }

    #[test]
    fn sysfs_interface_flags() {
        assert_eq!(parse_if_flags("0x1003\n"), Some((true, false)));
        assert_eq!(parse_if_flags("0x1002\n"), Some((false, false)));
        assert_eq!(parse_if_flags("0x9\n"), Some((true, true)));
        assert_eq!(parse_if_flags("up\n"), None);
    }

    #[test]
    fn live_addresses_of_this_machine() {
        // getifaddrs needs no privilege; whatever this machine has, no loopback is listed.
        let addrs = live_addrs().unwrap();
        let listed = select_addrs(&addrs, "");
        assert!(
            !listed.split(' ').any(|ip| ip == "127.0.0.1" || ip == "::1"),
            "{listed}"
        );
    }
}
